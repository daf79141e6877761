// See cuda_driver.h.
#include "cuda_driver.h"

#include <cstdio>
#include <mutex>

#include "dl.h"

namespace avatar {

const CudaDriver& Cuda() {
  static CudaDriver cu;
  static std::once_flag once;
  std::call_once(once, [] {
    cu.lib = OpenDriverLibrary("libcuda.so.1", cu.loadError);
    if (cu.lib == nullptr) return;
    void* l = cu.lib;
    cu.init = Symbol<decltype(cu.init)>(l, "cuInit");
    cu.driverVersion = Symbol<decltype(cu.driverVersion)>(l, "cuDriverGetVersion");
    cu.deviceGetCount = Symbol<decltype(cu.deviceGetCount)>(l, "cuDeviceGetCount");
    cu.deviceGet = Symbol<decltype(cu.deviceGet)>(l, "cuDeviceGet");
    cu.deviceGetName = Symbol<decltype(cu.deviceGetName)>(l, "cuDeviceGetName");
    cu.deviceGetUuid = Symbol<decltype(cu.deviceGetUuid)>(l, "cuDeviceGetUuid_v2");
    if (cu.deviceGetUuid == nullptr) cu.deviceGetUuid = Symbol<decltype(cu.deviceGetUuid)>(l, "cuDeviceGetUuid");
    cu.primaryRetain = Symbol<decltype(cu.primaryRetain)>(l, "cuDevicePrimaryCtxRetain");
    cu.primaryRelease = Symbol<decltype(cu.primaryRelease)>(l, "cuDevicePrimaryCtxRelease_v2");
    if (cu.primaryRelease == nullptr) cu.primaryRelease = Symbol<decltype(cu.primaryRelease)>(l, "cuDevicePrimaryCtxRelease");
    cu.pushCurrent = Symbol<decltype(cu.pushCurrent)>(l, "cuCtxPushCurrent_v2");
    cu.popCurrent = Symbol<decltype(cu.popCurrent)>(l, "cuCtxPopCurrent_v2");
    cu.synchronize = Symbol<decltype(cu.synchronize)>(l, "cuCtxSynchronize");
    cu.moduleLoadData = Symbol<decltype(cu.moduleLoadData)>(l, "cuModuleLoadData");
    cu.moduleGetFunction = Symbol<decltype(cu.moduleGetFunction)>(l, "cuModuleGetFunction");
    cu.moduleUnload = Symbol<decltype(cu.moduleUnload)>(l, "cuModuleUnload");
    cu.memAlloc = Symbol<decltype(cu.memAlloc)>(l, "cuMemAlloc_v2");
    cu.memFree = Symbol<decltype(cu.memFree)>(l, "cuMemFree_v2");
    cu.memcpyHtoD = Symbol<decltype(cu.memcpyHtoD)>(l, "cuMemcpyHtoD_v2");
    cu.memcpyDtoH = Symbol<decltype(cu.memcpyDtoH)>(l, "cuMemcpyDtoH_v2");
    cu.memcpyDtoD = Symbol<decltype(cu.memcpyDtoD)>(l, "cuMemcpyDtoD_v2");
    cu.memsetD32 = Symbol<decltype(cu.memsetD32)>(l, "cuMemsetD32_v2");
    cu.memHostAlloc = Symbol<decltype(cu.memHostAlloc)>(l, "cuMemHostAlloc");
    cu.memFreeHost = Symbol<decltype(cu.memFreeHost)>(l, "cuMemFreeHost");
    cu.launch = Symbol<decltype(cu.launch)>(l, "cuLaunchKernel");
    cu.errorName = Symbol<decltype(cu.errorName)>(l, "cuGetErrorName");
  });
  return cu;
}

namespace {
// NVML writes a UUID as "GPU-" and 32 hex digits in 8-4-4-4-12 groups; CUDA gives the 16 bytes.
std::string UuidText(const CUuuid& u) {
  char text[64];
  const unsigned char* b = u.bytes;
  std::snprintf(text, sizeof text, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5], b[6],
                b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return text;
}
}  // namespace

std::shared_ptr<CudaContextHold> RetainGpu(const CudaDriver& cu, const std::string& uuid, std::string& why) {
  CUresult rc = cu.init(0);
  if (rc != 0) {
    why = CudaFailed(cu, "cuInit", rc);
    return nullptr;
  }
  int count = 0;
  rc = cu.deviceGetCount(&count);
  if (rc != 0 || count == 0) {
    why = rc != 0 ? CudaFailed(cu, "cuDeviceGetCount", rc) : "CUDA reports no device";
    return nullptr;
  }
  // the GPU the host chose, by UUID (NVML's and CUDA's orders may differ); device 0 when none was named
  CUdevice device = 0;
  bool found = false;
  if (uuid.empty()) {
    if ((rc = cu.deviceGet(&device, 0)) != 0) {
      why = CudaFailed(cu, "cuDeviceGet", rc);
      return nullptr;
    }
    found = true;
  }
  for (int ordinal = 0; ordinal < count && !found; ordinal++) {
    CUdevice d = 0;
    CUuuid u{};
    if (cu.deviceGet(&d, ordinal) == 0 && cu.deviceGetUuid != nullptr && cu.deviceGetUuid(&u, d) == 0 && UuidText(u) == uuid) {
      device = d;
      found = true;
    }
  }
  if (!found) {
    why = "no CUDA device has the UUID " + uuid + " (hidden by CUDA_VISIBLE_DEVICES?)";
    return nullptr;
  }
  char name[256] = {0};
  if (cu.deviceGetName == nullptr || cu.deviceGetName(name, sizeof name, device) != 0) name[0] = 0;
  CUcontext context = nullptr;
  rc = cu.primaryRetain(&context, device);
  if (rc != 0) {
    why = CudaFailed(cu, "cuDevicePrimaryCtxRetain", rc);
    return nullptr;
  }
  return std::make_shared<CudaContextHold>(&cu, device, context, name);
}

std::string CudaFailed(const CudaDriver& cu, const char* call, CUresult rc) {
  const char* name = nullptr;
  if (cu.errorName != nullptr) cu.errorName(rc, &name);
  return std::string(call) + " failed: " + (name != nullptr ? name : "CUDA error " + std::to_string(rc));
}

}  // namespace avatar
