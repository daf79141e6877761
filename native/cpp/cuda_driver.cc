// See cuda_driver.h.
#include "cuda_driver.h"

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

std::string CudaFailed(const CudaDriver& cu, const char* call, CUresult rc) {
  const char* name = nullptr;
  if (cu.errorName != nullptr) cu.errorName(rc, &name);
  return std::string(call) + " failed: " + (name != nullptr ? name : "CUDA error " + std::to_string(rc));
}

}  // namespace avatar
