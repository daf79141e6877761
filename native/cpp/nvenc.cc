// NVENC detection by trying it: load the CUDA driver and the encode library, open an encode session
// on CUDA device 0 and look for H.264 among the encoder's codecs. CUDA being present says nothing
// about NVENC (H100, H200 and A100 have none), so anything short of an open session is "not available".
#include <mutex>

#include "cuda_driver.h"
#include "dl.h"
#include "probes.h"

#if defined(AVATAR_HAVE_NVENC_HEADER)
#include "nvenc_api.h"
#endif

namespace avatar {

#if defined(AVATAR_HAVE_NVENC_HEADER)
namespace {

// Runs with the device's primary context current; fills report.available / reason.
void TrySession(const NvencLibrary& lib, CUcontext ctx, NvencReport& report) {
  if (!lib.ok) {
    report.reason = "no NVENC: " + lib.loadError;
    return;
  }
  report.sessionTried = true;
  std::string why;
  void* session = OpenH264Session(lib, ctx, report.device.empty() ? std::string("device 0") : report.device, why);
  if (session == nullptr) {
    report.reason = "no NVENC: " + why;
    return;
  }
  lib.fns.nvEncDestroyEncoder(session);
  report.available = true;
  report.reason = "NVENC H.264 encode session opened on " + report.device;
}

}  // namespace

bool NvencHeaderCompiled() { return true; }
std::string NvencHeaderVersion() {
  return std::to_string(NVENCAPI_MAJOR_VERSION) + "." + std::to_string(NVENCAPI_MINOR_VERSION);
}

NvencReport ProbeNvenc() {
  // One probe at a time: consumer GPUs allow only a few concurrent encode sessions.
  static std::mutex probeMutex;
  std::lock_guard<std::mutex> lock(probeMutex);

  NvencReport report;
  const CudaDriver& cu = Cuda();
  if (cu.lib == nullptr) {
    report.reason = "no NVENC: " + cu.loadError + " (no NVIDIA driver)";
    return report;
  }
  report.cudaFound = true;
  const NvencLibrary& lib = NvencApi();
  if (!lib.found) {
    report.reason = "no NVENC: " + lib.loadError;
    return report;
  }
  report.encodeLibraryFound = true;
  if (!cu.HasContexts()) {
    report.reason = "no NVENC: libcuda.so.1 lacks the driver API functions needed";
    return report;
  }

  CUresult rc = cu.init(0);
  if (rc != 0) {
    report.reason = "no NVENC: " + CudaFailed(cu, "cuInit", rc);
    return report;
  }
  int count = 0;
  rc = cu.deviceGetCount(&count);
  if (rc != 0 || count < 1) {
    report.reason = rc != 0 ? "no NVENC: " + CudaFailed(cu, "cuDeviceGetCount", rc) : "no NVENC: CUDA reports no device";
    return report;
  }
  CUdevice device = 0;
  rc = cu.deviceGet(&device, 0);
  if (rc != 0) {
    report.reason = "no NVENC: " + CudaFailed(cu, "cuDeviceGet", rc);
    return report;
  }
  char name[256] = {0};
  if (cu.deviceGetName != nullptr && cu.deviceGetName(name, sizeof name, device) == 0) report.device = name;
  if (report.device.empty()) report.device = "CUDA device 0";

  // The primary context is shared with any other CUDA user in this process, so probing does not
  // leave a second context (and its memory) behind.
  CUcontext ctx = nullptr;
  rc = cu.primaryRetain(&ctx, device);
  if (rc != 0) {
    report.reason = "no NVENC: " + CudaFailed(cu, "cuDevicePrimaryCtxRetain", rc);
    return report;
  }
  rc = cu.pushCurrent(ctx);
  if (rc != 0) {
    report.reason = "no NVENC: " + CudaFailed(cu, "cuCtxPushCurrent", rc);
  } else {
    TrySession(lib, ctx, report);
    CUcontext popped = nullptr;
    cu.popCurrent(&popped);
  }
  cu.primaryRelease(device);
  return report;
}

#else  // built without nvEncodeAPI.h: only library presence can be reported

bool NvencHeaderCompiled() { return false; }
std::string NvencHeaderVersion() { return ""; }

NvencReport ProbeNvenc() {
  NvencReport report;
  std::string why;
  report.cudaFound = OpenDriverLibrary("libcuda.so.1", why) != nullptr;
  if (!report.cudaFound) {
    report.reason = "no NVENC: " + why + " (no NVIDIA driver)";
    return report;
  }
  report.encodeLibraryFound = OpenDriverLibrary("libnvidia-encode.so.1", why) != nullptr;
  report.reason = report.encodeLibraryFound
                      ? "no NVENC: libnvidia-encode.so.1 is present but the addon was built without nvEncodeAPI.h "
                        "(libffmpeg-nvenc-dev), so no encode session could be tried"
                      : "no NVENC: " + why;
  return report;
}

#endif

}  // namespace avatar
