// GPU memory through NVML. The library is loaded at run time so the addon loads (and says "no GPU")
// on machines without the NVIDIA driver. NVML ships no header here, so the few types are declared
// below from the documented ABI.
#include <mutex>

#include "dl.h"
#include "probes.h"

namespace avatar {
namespace {

using nvmlReturn_t = int;  // NVML_SUCCESS == 0
using nvmlDevice_t = struct nvmlDevice_opaque*;
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

constexpr unsigned kNameBuffer = 96;     // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr unsigned kVersionBuffer = 80;  // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE
constexpr unsigned kUuidBuffer = 96;     // NVML_DEVICE_UUID_V2_BUFFER_SIZE

struct NvmlApi {
  void* lib = nullptr;
  std::string loadError;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  const char* (*errorString)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*getCount)(unsigned*) = nullptr;
  nvmlReturn_t (*getHandle)(unsigned, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*getName)(nvmlDevice_t, char*, unsigned) = nullptr;
  nvmlReturn_t (*getUuid)(nvmlDevice_t, char*, unsigned) = nullptr;
  nvmlReturn_t (*getMemory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*driverVersion)(char*, unsigned) = nullptr;
  nvmlReturn_t (*nvmlVersion)(char*, unsigned) = nullptr;
};

// Prefer the _v2 entry points; very old drivers only export the unversioned ones.
template <typename Fn>
Fn Pick(void* lib, const char* v2, const char* v1) {
  Fn fn = Symbol<Fn>(lib, v2);
  return fn != nullptr ? fn : Symbol<Fn>(lib, v1);
}

const NvmlApi& Api() {
  static NvmlApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    api.lib = OpenDriverLibrary("libnvidia-ml.so.1", api.loadError);
    if (api.lib == nullptr) return;
    api.init = Pick<decltype(api.init)>(api.lib, "nvmlInit_v2", "nvmlInit");
    api.shutdown = Symbol<decltype(api.shutdown)>(api.lib, "nvmlShutdown");
    api.errorString = Symbol<decltype(api.errorString)>(api.lib, "nvmlErrorString");
    api.getCount = Pick<decltype(api.getCount)>(api.lib, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    api.getHandle = Pick<decltype(api.getHandle)>(api.lib, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
    api.getName = Symbol<decltype(api.getName)>(api.lib, "nvmlDeviceGetName");
    api.getUuid = Symbol<decltype(api.getUuid)>(api.lib, "nvmlDeviceGetUUID");
    api.getMemory = Symbol<decltype(api.getMemory)>(api.lib, "nvmlDeviceGetMemoryInfo");
    api.driverVersion = Symbol<decltype(api.driverVersion)>(api.lib, "nvmlSystemGetDriverVersion");
    api.nvmlVersion = Symbol<decltype(api.nvmlVersion)>(api.lib, "nvmlSystemGetNVMLVersion");
  });
  return api;
}

std::string ErrorText(const NvmlApi& api, const char* call, nvmlReturn_t rc) {
  const char* text = api.errorString != nullptr ? api.errorString(rc) : nullptr;
  return std::string(call) + ": " + (text != nullptr ? text : "NVML error") + " (" + std::to_string(rc) + ")";
}

}  // namespace

NvmlReport QueryNvml() {
  NvmlReport report;
  const NvmlApi& api = Api();
  if (api.lib == nullptr) {
    report.reason = "no GPU: " + api.loadError;
    return report;
  }
  report.libraryFound = true;
  if (api.init == nullptr || api.shutdown == nullptr || api.getCount == nullptr || api.getHandle == nullptr ||
      api.getMemory == nullptr) {
    report.reason = "no GPU: libnvidia-ml.so.1 lacks the functions needed (driver too old?)";
    return report;
  }

  nvmlReturn_t rc = api.init();
  if (rc != 0) {
    report.reason = "no GPU: " + ErrorText(api, "nvmlInit", rc);
    return report;
  }

  char buffer[kVersionBuffer] = {0};
  if (api.driverVersion != nullptr && api.driverVersion(buffer, sizeof buffer) == 0) report.driverVersion = buffer;
  buffer[0] = '\0';
  if (api.nvmlVersion != nullptr && api.nvmlVersion(buffer, sizeof buffer) == 0) report.nvmlVersion = buffer;

  unsigned count = 0;
  rc = api.getCount(&count);
  if (rc != 0) {
    report.reason = "no GPU: " + ErrorText(api, "nvmlDeviceGetCount", rc);
  } else {
    report.ok = true;
    for (unsigned i = 0; i < count; ++i) {
      NvmlDevice device;
      device.index = i;
      nvmlDevice_t handle = nullptr;
      rc = api.getHandle(i, &handle);
      if (rc != 0) {
        device.error = ErrorText(api, "nvmlDeviceGetHandleByIndex", rc);
        report.devices.push_back(device);
        continue;
      }
      char name[kNameBuffer] = {0};
      if (api.getName != nullptr && api.getName(handle, name, sizeof name) == 0) device.name = name;
      char uuid[kUuidBuffer] = {0};
      if (api.getUuid != nullptr && api.getUuid(handle, uuid, sizeof uuid) == 0) device.uuid = uuid;
      nvmlMemory_t memory{};
      rc = api.getMemory(handle, &memory);
      if (rc != 0) {
        device.error = ErrorText(api, "nvmlDeviceGetMemoryInfo", rc);
      } else {
        device.totalBytes = memory.total;
        device.usedBytes = memory.used;
        device.freeBytes = memory.free;
      }
      report.devices.push_back(device);
    }
  }
  api.shutdown();
  return report;
}

}  // namespace avatar
