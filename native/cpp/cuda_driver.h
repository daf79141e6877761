// The CUDA driver API, loaded once with dlopen (never linked): the few types and entry points the addon
// uses, declared from the driver's documented C ABI, so no CUDA header is needed to build. Shared by the
// NVENC probe (nvenc.cc) and the CUDA renderer (cuda_render.cc).
#pragma once

#include <cstddef>
#include <memory>
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
  CUresult (*synchronize)() = nullptr;
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
    return HasContexts() && driverVersion && deviceGetName && synchronize && moduleLoadData && moduleGetFunction && moduleUnload && memAlloc && memFree &&
           memcpyHtoD && memcpyDtoH && memcpyDtoD && memsetD32 && launch;
  }
};

// "<call> failed: CUDA_ERROR_..." (the driver's name for the code, where it can say).
std::string CudaFailed(const CudaDriver& cu, const char* call, CUresult rc);

// libcuda.so.1, opened on first use and kept for the life of the process.
const CudaDriver& Cuda();

// A device's primary context, retained once and released when the last holder lets go (a renderer, the
// page-locked buffers it handed out, an encoder).
struct CudaContextHold {
  const CudaDriver* cu;
  CUdevice device;
  CUcontext context;
  std::string name;  // the GPU's name, as CUDA reports it
  CudaContextHold(const CudaDriver* driver, CUdevice d, CUcontext c, std::string gpuName) : cu(driver), device(d), context(c), name(std::move(gpuName)) {}
  ~CudaContextHold() { cu->primaryRelease(device); }
  CudaContextHold(const CudaContextHold&) = delete;
  CudaContextHold& operator=(const CudaContextHold&) = delete;

  // Runs `fn` with the context current on this thread, restoring whatever was current before.
  template <typename Fn>
  bool InContext(std::string& why, Fn fn) const {
    const CUresult rc = cu->pushCurrent(context);
    if (rc != 0) {
      why = CudaFailed(*cu, "cuCtxPushCurrent", rc);
      return false;
    }
    const bool ok = fn();
    CUcontext popped = nullptr;
    cu->popCurrent(&popped);
    return ok;
  }
};

// The GPU with `uuid` as NVML writes it ("GPU-..."; CUDA device 0 when empty), its primary context
// retained; null with `why` (no driver, cuInit failed, no device, no such UUID).
std::shared_ptr<CudaContextHold> RetainGpu(const CudaDriver& cu, const std::string& uuid, std::string& why);

}  // namespace avatar
