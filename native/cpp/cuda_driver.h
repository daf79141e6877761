// The CUDA driver API, loaded once with dlopen (never linked): the few types and entry points the addon
// uses, declared from the driver's documented C ABI, so no CUDA header is needed to build. Shared by the
// NVENC probe (nvenc.cc) and the CUDA renderer (cuda_render.cc).
#pragma once

#include <cstddef>
#include <string>

namespace avatar {

using CUresult = int;  // CUDA_SUCCESS == 0
using CUdevice = int;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
using CUstream = void*;
using CUdeviceptr = unsigned long long;
struct CUuuid {
  unsigned char bytes[16];
};

struct CudaDriver {
  void* lib = nullptr;
  std::string loadError;  // why lib is null: missing, or present but unusable
  CUresult (*init)(unsigned) = nullptr;
  CUresult (*driverVersion)(int*) = nullptr;
  CUresult (*deviceGetCount)(int*) = nullptr;
  CUresult (*deviceGet)(CUdevice*, int) = nullptr;
  CUresult (*deviceGetName)(char*, int, CUdevice) = nullptr;
  CUresult (*deviceGetUuid)(CUuuid*, CUdevice) = nullptr;
  CUresult (*primaryRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*primaryRelease)(CUdevice) = nullptr;
  CUresult (*pushCurrent)(CUcontext) = nullptr;
  CUresult (*popCurrent)(CUcontext*) = nullptr;
  CUresult (*moduleLoadData)(CUmodule*, const void*) = nullptr;
  CUresult (*moduleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*moduleUnload)(CUmodule) = nullptr;
  CUresult (*memAlloc)(CUdeviceptr*, size_t) = nullptr;
  CUresult (*memFree)(CUdeviceptr) = nullptr;
  CUresult (*memcpyHtoD)(CUdeviceptr, const void*, size_t) = nullptr;
  CUresult (*memcpyDtoH)(void*, CUdeviceptr, size_t) = nullptr;
  CUresult (*memcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t) = nullptr;
  CUresult (*memsetD32)(CUdeviceptr, unsigned, size_t) = nullptr;
  // page-locked host memory (optional: frames then come back to ordinary memory)
  CUresult (*memHostAlloc)(void**, size_t, unsigned) = nullptr;
  CUresult (*memFreeHost)(void*) = nullptr;
  CUresult (*launch)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void**, void**) = nullptr;
  CUresult (*errorName)(CUresult, const char**) = nullptr;

  // a device and its primary context can be used (what the NVENC probe needs)
  bool HasContexts() const {
    return init && deviceGetCount && deviceGet && primaryRetain && primaryRelease && pushCurrent && popCurrent;
  }
  // and modules, memory and launches (what the renderer needs)
  bool HasKernels() const {
    return HasContexts() && driverVersion && deviceGetName && moduleLoadData && moduleGetFunction && moduleUnload && memAlloc && memFree &&
           memcpyHtoD && memcpyDtoH && memcpyDtoD && memsetD32 && launch;
  }
};

// libcuda.so.1, opened on first use and kept for the life of the process.
const CudaDriver& Cuda();

// "<call> failed: CUDA_ERROR_..." (the driver's name for the code, where it can say).
std::string CudaFailed(const CudaDriver& cu, const char* call, CUresult rc);

}  // namespace avatar
