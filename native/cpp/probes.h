// Plain C++ probes for the GPU path. They never touch N-API, so they can run on a worker thread,
// and they never throw: every failure becomes a reason string.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace avatar {

struct NvmlDevice {
  unsigned index = 0;
  std::string name;
  std::string uuid;  // "GPU-...", as nvidia-smi -L and CUDA_VISIBLE_DEVICES write it; empty when unknown
  uint64_t totalBytes = 0;
  uint64_t usedBytes = 0;
  uint64_t freeBytes = 0;
  std::string error;  // non-empty when this device could not be read
};

struct NvmlReport {
  bool libraryFound = false;
  bool ok = false;             // NVML initialised and at least the device count was read
  std::string reason;          // why not ok
  std::string driverVersion;   // empty when unknown
  std::string nvmlVersion;     // empty when unknown
  std::vector<NvmlDevice> devices;
};

struct NvencReport {
  bool available = false;
  bool cudaFound = false;
  bool encodeLibraryFound = false;
  bool sessionTried = false;   // an encode session was actually attempted
  std::string device;          // name of the CUDA device probed, when known
  std::string reason;
};

NvmlReport QueryNvml();
NvencReport ProbeNvenc();
bool NvencHeaderCompiled();
std::string NvencHeaderVersion();

}  // namespace avatar
