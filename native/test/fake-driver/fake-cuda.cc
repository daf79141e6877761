/* Stand-in for libcuda.so.1 (the driver API's C ABI): one device named "Fake GPU 0" whose "device
 * memory" is host memory. Kernels are run on the CPU: the module's PTX is checked to be PTX naming the
 * kernel, and a launch runs the kernel's thread function from the renderer's shared sources
 * (warp_kernel.h, mouth_kernel.h) for every thread of the grid, blocks in reverse order, with the index
 * arithmetic of warp.cu and mouth.cu. It logs context retains and releases, module loads and unloads,
 * and allocations and frees, so a test can see they balance. FAKE_CUDA picks a failure:
 * no-device, old-driver, bad-ptx, oom (the fourth allocation fails), launch-fails (the third frame's
 * first launch fails), wrong-pixel (every frame copied back has one byte changed), no-pinned (page-locked
 * host memory is refused), sync-fails (the fifth cuCtxSynchronize reports a kernel's fault, and from then on copies, launches and allocations fail with it, as a real context's do), slow-context (retaining the context takes 0.4 s). Page-locked host allocations and frees, and copies to the host, are logged too. Built by the tests with a C++ compiler and -I native/cpp. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <time.h>

#include "mouth_kernel.h"
#include "warp_kernel.h"

extern "C" {
int fake_primary_context; /* its address is the CUcontext */
}

namespace {
bool faulted;  // a kernel faulted: as on a real GPU, the context answers every later call with the fault
thread_local void* current;  // as CUDA's: the context current on each thread
int allocations;
int launches;

std::string Mode() {
  const char* m = std::getenv("FAKE_CUDA");
  return m != nullptr ? m : "";
}

struct Module {
  std::string ptx;
};

enum Kernel { kMap, kClaim, kDraw, kMouth };
struct Function {
  Kernel kernel;
};
Function functions[] = {{kMap}, {kClaim}, {kDraw}, {kMouth}};
const char* names[] = {"avatar_warp_map", "avatar_warp_claim", "avatar_warp_draw", "avatar_mouth"};
}  // namespace

extern "C" {
typedef unsigned long long CUdeviceptr;

int cuInit(unsigned flags) { (void)flags; return 0; }
int cuDriverGetVersion(int* v) { *v = Mode() == "old-driver" ? 12040 : 13000; return 0; }
int cuDeviceGetCount(int* n) { *n = Mode() == "no-device" ? 0 : 1; return 0; }
int cuDeviceGet(int* dev, int ordinal) { *dev = ordinal; return ordinal == 0 ? 0 : 101; }
int cuDeviceGetName(char* name, int len, int dev) { (void)dev; snprintf(name, (size_t)len, "Fake GPU 0"); return 0; }
int cuDeviceGetUuid_v2(unsigned char* uuid, int dev) { for (int i = 0; i < 16; i++) uuid[i] = (unsigned char)(i + dev); return 0; }
int cuDevicePrimaryCtxRetain(void** ctx, int dev) {
  (void)dev;
  // a context that takes its time, as a real one does on first use
  if (Mode() == "slow-context") {
    struct timespec pause = {0, 400 * 1000 * 1000};
    nanosleep(&pause, nullptr);
  }
  *ctx = &fake_primary_context;
  fprintf(stderr, "fake-cuda: retain\n");
  return 0;
}
int cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; fprintf(stderr, "fake-cuda: release\n"); return 0; }
int cuCtxPushCurrent_v2(void* ctx) { current = ctx; return 0; }
int cuCtxPopCurrent_v2(void** ctx) { *ctx = current; current = NULL; return 0; }
void* fake_cuda_current(void) { return current; }
int cuCtxSynchronize(void) {
  static int calls;
  if (current != &fake_primary_context) return 201;
  // a kernel's fault, reported when the context is next synchronised (as a real GPU reports one)
  if (Mode() == "sync-fails" && ++calls == 5) faulted = true;
  return faulted ? 719 : 0;
}

int cuGetErrorName(int rc, const char** name) {
  switch (rc) {
    case 0: *name = "CUDA_SUCCESS"; break;
    case 2: *name = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case 201: *name = "CUDA_ERROR_INVALID_CONTEXT"; break;
    case 218: *name = "CUDA_ERROR_INVALID_PTX"; break;
    case 500: *name = "CUDA_ERROR_NOT_FOUND"; break;
    case 719: *name = "CUDA_ERROR_LAUNCH_FAILED"; break;
    default: *name = "CUDA_ERROR_UNKNOWN";
  }
  return 0;
}

int cuModuleLoadData(void** module, const void* image) {
  if (current != &fake_primary_context) return 201;
  const char* text = static_cast<const char*>(image);
  if (Mode() == "bad-ptx" || std::strstr(text, ".version") == nullptr || std::strstr(text, ".entry") == nullptr) return 218;
  *module = new Module{text};
  fprintf(stderr, "fake-cuda: module load\n");
  return 0;
}

int cuModuleUnload(void* module) {
  delete static_cast<Module*>(module);
  fprintf(stderr, "fake-cuda: module unload\n");
  return 0;
}

int cuModuleGetFunction(void** fn, void* module, const char* name) {
  const std::string entry = std::string(".entry ") + name + "(";
  if (static_cast<Module*>(module)->ptx.find(entry) == std::string::npos) return 500;
  for (int k = 0; k < 4; k++) {
    if (std::strcmp(names[k], name) == 0) {
      *fn = &functions[k];
      return 0;
    }
  }
  return 500;
}

int cuMemAlloc_v2(CUdeviceptr* at, size_t bytes) {
  if (current != &fake_primary_context) return 201;
  if (faulted) return 719;
  if (Mode() == "oom" && allocations == 3) return 2;
  void* p = std::malloc(bytes);
  if (p == nullptr) return 2;
  std::memset(p, 0xcd, bytes);  // device memory starts as garbage: nothing may rely on zeros
  allocations++;
  *at = reinterpret_cast<CUdeviceptr>(p);
  fprintf(stderr, "fake-cuda: alloc\n");
  return 0;
}

int cuMemFree_v2(CUdeviceptr at) {
  std::free(reinterpret_cast<void*>(at));
  fprintf(stderr, "fake-cuda: free\n");
  return 0;
}

int cuMemHostAlloc(void** at, size_t bytes, unsigned flags) {
  (void)flags;
  if (current != &fake_primary_context) return 201;
  if (Mode() == "no-pinned") return 2;  // the system will lock no more memory
  *at = std::malloc(bytes);
  if (*at == nullptr) return 2;
  fprintf(stderr, "fake-cuda: host alloc\n");
  return 0;
}

int cuMemFreeHost(void* at) {
  if (current != &fake_primary_context) return 201;
  std::free(at);
  fprintf(stderr, "fake-cuda: host free\n");
  return 0;
}

int cuMemcpyHtoD_v2(CUdeviceptr to, const void* from, size_t bytes) {
  if (faulted) return 719;
  std::memcpy(reinterpret_cast<void*>(to), from, bytes); return current ? 0 : 201; }
int cuMemcpyDtoH_v2(void* to, CUdeviceptr from, size_t bytes) {
  if (faulted) return 719;
  std::memcpy(to, reinterpret_cast<void*>(from), bytes);
  fprintf(stderr, "fake-cuda: to host\n");
  // a GPU that draws one pixel wrong: the renderer's check against the CPU must catch it
  if (Mode() == "wrong-pixel") static_cast<unsigned char*>(to)[bytes / 3] ^= 0x10;
  return current ? 0 : 201;
}
int cuMemcpyDtoD_v2(CUdeviceptr to, CUdeviceptr from, size_t bytes) {
  if (faulted) return 719;
  std::memcpy(reinterpret_cast<void*>(to), reinterpret_cast<void*>(from), bytes); return current ? 0 : 201; }
int cuMemsetD32_v2(CUdeviceptr to, unsigned value, size_t n) {
  unsigned* p = reinterpret_cast<unsigned*>(to);
  for (size_t i = 0; i < n; i++) p[i] = value;
  return current ? 0 : 201;
}

int cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared, void* stream, void** params, void** extra) {
  (void)shared, (void)stream, (void)extra;
  if (current != &fake_primary_context) return 201;
  if (faulted) return 719;
  if (bx * by * bz > 1024 || gy > 65535 || gz > 65535 || gx == 0 || gy == 0 || gz == 0) return 1; /* CUDA_ERROR_INVALID_VALUE */
  if (Mode() == "launch-fails" && static_cast<Function*>(fn)->kernel == kMap && ++launches == 3) return 719;
  const Kernel kernel = static_cast<Function*>(fn)->kernel;
  for (unsigned y = gy; y-- > 0;) {
    for (unsigned x = gx; x-- > 0;) {
      for (unsigned ty = by; ty-- > 0;) {
        for (unsigned tx = bx; tx-- > 0;) {
          switch (kernel) {
            case kMap: avatar::WarpMapThread(*static_cast<avatar::WarpGrid*>(params[0]), x * bx + tx); break;
            case kClaim: avatar::WarpClaimThread(*static_cast<avatar::WarpGrid*>(params[0]), x, *static_cast<int*>(params[1]), static_cast<int>(y * bx + tx)); break;
            case kDraw: avatar::WarpDrawThread(*static_cast<avatar::WarpGrid*>(params[0]), x, *static_cast<int*>(params[1]), static_cast<int>(y * bx + tx)); break;
            case kMouth: avatar::MouthCellThread(*static_cast<avatar::MouthGrid*>(params[0]), static_cast<int>(x * bx + tx), static_cast<int>(y * by + ty)); break;
          }
        }
      }
    }
  }
  return 0;
}
}
