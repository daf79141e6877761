// See cuda_render.h. The driver API's few types and functions are declared here from its documented C
// ABI (no CUDA header is needed to build); every call's result is checked and named in the reason.
#include "cuda_render.h"

#include <cstdio>
#include <cstring>
#include <vector>

#include "cuda_ptx.h"
#include "cuda_driver.h"
#include "mouth_kernel.h"
#include "warp_kernel.h"

namespace avatar {
namespace {

// the oldest driver the renderer is written for (its driver API calls); the PTX may need a newer one
constexpr int kMinDriverVersion = 12000;
constexpr unsigned kWarpBlock = 64;   // rows per block of the claim and draw passes
constexpr unsigned kMapBlock = 128;   // triangles per block of the map pass
constexpr unsigned kMouthBlock = 16;  // 16x16 chroma blocks per block of the mouth pass

// NVML writes a UUID as "GPU-" and 32 hex digits in 8-4-4-4-12 groups; CUDA gives the 16 bytes.
std::string UuidText(const CUuuid& u) {
  char text[64];
  const unsigned char* b = u.bytes;
  std::snprintf(text, sizeof text, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5], b[6],
                b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return text;
}

const char* FindPtx(const char* name) {
  for (size_t i = 0; i < kPtxModuleCount; i++) {
    if (std::strcmp(kPtxModules[i].name, name) == 0) return kPtxModules[i].ptx;
  }
  return nullptr;
}

}  // namespace

// The device's primary context, retained once and released when the renderer and every pinned buffer
// made on it are gone.
struct CudaContextHold {
  const CudaDriver* cu;
  CUdevice device;
  CUcontext context;
  CudaContextHold(const CudaDriver* driver, CUdevice d, CUcontext c) : cu(driver), device(d), context(c) {}
  ~CudaContextHold() { cu->primaryRelease(device); }
  CudaContextHold(const CudaContextHold&) = delete;
  CudaContextHold& operator=(const CudaContextHold&) = delete;
};

PinnedBuffer::~PinnedBuffer() {
  const CudaDriver& cu = *hold_->cu;
  // freed in its own context, made current for the call (it may be collected long after the renderer)
  if (cu.pushCurrent(hold_->context) == 0) {
    cu.memFreeHost(data_);
    CUcontext popped = nullptr;
    cu.popCurrent(&popped);
  }
}

struct CudaRenderer::State {
  const CudaDriver* cu = nullptr;
  CUdevice device = 0;
  std::shared_ptr<CudaContextHold> hold;
  CUcontext context = nullptr;
  CUmodule warpModule = nullptr, mouthModule = nullptr;
  CUfunction map = nullptr, claim = nullptr, draw = nullptr, mouth = nullptr;
  std::vector<CUdeviceptr> allocations;
  CUdeviceptr photo = 0, frame = 0, triangles = 0, rest = 0, moved = 0, active = 0, maps = 0, owner = 0, outline = 0;
  int width = 0, height = 0;
  size_t frameBytes = 0, points = 0, maxActive = 0, ownerCount = 0;
  std::string name;

  // Runs `fn` with the context current on this thread, restoring whatever was current before.
  template <typename Fn>
  bool InContext(std::string& why, Fn fn) {
    CUresult rc = cu->pushCurrent(context);
    if (rc != 0) {
      why = CudaFailed(*cu, "cuCtxPushCurrent", rc);
      return false;
    }
    const bool ok = fn();
    CUcontext popped = nullptr;
    cu->popCurrent(&popped);
    return ok;
  }

  bool Alloc(CUdeviceptr& at, size_t bytes, std::string& why) {
    const CUresult rc = cu->memAlloc(&at, bytes == 0 ? 1 : bytes);
    if (rc != 0) {
      why = CudaFailed(*cu, "cuMemAlloc", rc) + " (" + std::to_string(bytes >> 10) + " KiB)";
      return false;
    }
    allocations.push_back(at);
    return true;
  }

  void Release() {
    if (context != nullptr && cu->pushCurrent(context) == 0) {
      for (CUdeviceptr p : allocations) cu->memFree(p);
      if (warpModule != nullptr) cu->moduleUnload(warpModule);
      if (mouthModule != nullptr) cu->moduleUnload(mouthModule);
      CUcontext popped = nullptr;
      cu->popCurrent(&popped);
    }
    allocations.clear();
    warpModule = mouthModule = nullptr;
    hold.reset();
    context = nullptr;
  }
};

CudaRenderer::CudaRenderer(std::unique_ptr<State> state) : state_(std::move(state)) {}

CudaRenderer::~CudaRenderer() { state_->Release(); }

const std::string& CudaRenderer::device() const { return state_->name; }

std::unique_ptr<CudaRenderer> CudaRenderer::Open(const CudaRendererSetup& setup, std::string& why) {
  if (kPtxModuleCount == 0 || FindPtx("warp") == nullptr || FindPtx("mouth") == nullptr) {
    why = std::string("this build has no CUDA kernels: ") + kPtxStatus;
    return nullptr;
  }
  const CudaDriver& cu = Cuda();
  if (cu.lib == nullptr) {
    why = cu.loadError + " (no NVIDIA driver)";
    return nullptr;
  }
  if (!cu.HasKernels()) {
    why = "libcuda.so.1 lacks driver API functions the renderer needs (driver too old?)";
    return nullptr;
  }
  CUresult rc = cu.init(0);
  if (rc != 0) {
    why = CudaFailed(cu, "cuInit", rc);
    return nullptr;
  }
  int version = 0;
  rc = cu.driverVersion(&version);
  const int needed = kPtxCudaVersion > kMinDriverVersion ? kPtxCudaVersion : kMinDriverVersion;
  const auto cuda = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  if (rc != 0 || version < needed) {
    why = rc != 0 ? CudaFailed(cu, "cuDriverGetVersion", rc)
                  : "the NVIDIA driver supports CUDA " + cuda(version) + "; the renderer's kernels (PTX by nvcc " + cuda(kPtxCudaVersion) +
                        ") need a driver for CUDA " + cuda(needed) + " or newer (or build the addon with an older CUDA toolkit)";
    return nullptr;
  }
  int count = 0;
  rc = cu.deviceGetCount(&count);
  if (rc != 0 || count == 0) {
    why = rc != 0 ? CudaFailed(cu, "cuDeviceGetCount", rc) : "CUDA reports no device";
    return nullptr;
  }
  auto s = std::make_unique<State>();
  s->cu = &cu;
  // the GPU the host chose, by UUID (NVML's and CUDA's orders may differ); device 0 when none was named
  bool found = setup.uuid.empty();
  for (int ordinal = 0; ordinal < count && !found; ordinal++) {
    CUdevice d = 0;
    CUuuid u{};
    if (cu.deviceGet(&d, ordinal) == 0 && cu.deviceGetUuid != nullptr && cu.deviceGetUuid(&u, d) == 0 && UuidText(u) == setup.uuid) {
      s->device = d;
      found = true;
    }
  }
  if (!found) {
    why = "no CUDA device has the UUID " + setup.uuid + " (hidden by CUDA_VISIBLE_DEVICES?)";
    return nullptr;
  }
  if (setup.uuid.empty() && (rc = cu.deviceGet(&s->device, 0)) != 0) {
    why = CudaFailed(cu, "cuDeviceGet", rc);
    return nullptr;
  }
  char name[256] = {0};
  if (cu.deviceGetName(name, sizeof name, s->device) == 0) s->name = name;
  rc = cu.primaryRetain(&s->context, s->device);
  if (rc != 0) {
    why = CudaFailed(cu, "cuDevicePrimaryCtxRetain", rc);
    return nullptr;
  }
  s->hold = std::make_shared<CudaContextHold>(&cu, s->device, s->context);
  s->width = setup.width;
  s->height = setup.height;
  s->frameBytes = static_cast<size_t>(setup.width) * setup.height * 3 / 2;
  s->points = setup.points;
  s->maxActive = setup.triangleIndices / 3;
  s->ownerCount = static_cast<size_t>(setup.width) * setup.height + static_cast<size_t>(setup.width / 2) * (setup.height / 2);
  State* st = s.get();
  const bool ok = st->InContext(why, [&]() {
    CUresult r = cu.moduleLoadData(&st->warpModule, FindPtx("warp"));
    if (r != 0) {
      why = CudaFailed(cu, "cuModuleLoadData (warp.cu's PTX)", r);
      return false;
    }
    r = cu.moduleLoadData(&st->mouthModule, FindPtx("mouth"));
    if (r != 0) {
      why = CudaFailed(cu, "cuModuleLoadData (mouth.cu's PTX)", r);
      return false;
    }
    const struct {
      CUfunction* fn;
      CUmodule module;
      const char* name;
    } kernels[] = {{&st->map, st->warpModule, "avatar_warp_map"},
                   {&st->claim, st->warpModule, "avatar_warp_claim"},
                   {&st->draw, st->warpModule, "avatar_warp_draw"},
                   {&st->mouth, st->mouthModule, "avatar_mouth"}};
    for (const auto& k : kernels) {
      r = cu.moduleGetFunction(k.fn, k.module, k.name);
      if (r != 0) {
        why = CudaFailed(cu, "cuModuleGetFunction", r) + " (" + k.name + ")";
        return false;
      }
    }
    const size_t tri = setup.triangleIndices * sizeof(uint32_t), pts = setup.points * 2 * sizeof(double);
    if (!st->Alloc(st->photo, st->frameBytes, why) || !st->Alloc(st->frame, st->frameBytes, why) || !st->Alloc(st->triangles, tri, why) ||
        !st->Alloc(st->rest, pts, why) || !st->Alloc(st->moved, pts, why) || !st->Alloc(st->active, st->maxActive * sizeof(uint32_t), why) ||
        !st->Alloc(st->maps, 2 * st->maxActive * sizeof(TriangleMap), why) || !st->Alloc(st->owner, st->ownerCount * sizeof(uint32_t), why) ||
        !st->Alloc(st->outline, 2 * 2048 * sizeof(double), why)) {
      return false;
    }
    const struct {
      CUdeviceptr to;
      const void* from;
      size_t bytes;
      const char* what;
    } uploads[] = {{st->photo, setup.photo, st->frameBytes, "the photo"}, {st->triangles, setup.triangles, tri, "the mesh"}, {st->rest, setup.rest, pts, "the mesh"}};
    for (const auto& u : uploads) {
      r = cu.memcpyHtoD(u.to, u.from, u.bytes);
      if (r != 0) {
        why = CudaFailed(cu, "cuMemcpyHtoD", r) + " (" + u.what + ")";
        return false;
      }
    }
    return true;
  });
  if (!ok) {
    st->Release();
    return nullptr;
  }
  return std::unique_ptr<CudaRenderer>(new CudaRenderer(std::move(s)));
}

std::unique_ptr<PinnedBuffer> CudaRenderer::HostBuffer(std::string& why) {
  State& s = *state_;
  const CudaDriver& cu = *s.cu;
  if (s.hold == nullptr) {
    why = "the CUDA renderer is closed";
    return nullptr;
  }
  if (cu.memHostAlloc == nullptr || cu.memFreeHost == nullptr) {
    why = "libcuda.so.1 lacks cuMemHostAlloc";
    return nullptr;
  }
  void* data = nullptr;
  const bool ok = s.InContext(why, [&]() {
    const CUresult rc = cu.memHostAlloc(&data, s.frameBytes, 0);
    if (rc != 0) why = CudaFailed(cu, "cuMemHostAlloc", rc) + " (" + std::to_string(s.frameBytes >> 10) + " KiB)";
    return rc == 0;
  });
  if (!ok) return nullptr;
  return std::make_unique<PinnedBuffer>(s.hold, static_cast<uint8_t*>(data), s.frameBytes);
}

bool CudaRenderer::Frame(const double* moved, const uint32_t* active, size_t count, const double* outline, size_t outlinePoints, const MouthParams* mouth,
                         uint8_t* out, std::string& why) {
  State& s = *state_;
  const CudaDriver& cu = *s.cu;
  return s.InContext(why, [&]() {
    auto check = [&](const char* call, CUresult r) {
      if (r != 0) why = CudaFailed(cu, call, r);
      return r == 0;
    };
    // the photo first: the frame is the photo wherever no triangle and no mouth draws
    if (!check("cuMemcpyDtoD", cu.memcpyDtoD(s.frame, s.photo, s.frameBytes))) return false;
    if (count > 0) {
      if (!check("cuMemcpyHtoD", cu.memcpyHtoD(s.moved, moved, s.points * 2 * sizeof(double)))) return false;
      if (!check("cuMemcpyHtoD", cu.memcpyHtoD(s.active, active, count * sizeof(uint32_t)))) return false;
      if (!check("cuMemsetD32", cu.memsetD32(s.owner, 0, s.ownerCount))) return false;
      WarpGrid g{reinterpret_cast<const uint8_t*>(s.photo), reinterpret_cast<uint8_t*>(s.frame), s.width, s.height,
                 reinterpret_cast<const double*>(s.moved), reinterpret_cast<const double*>(s.rest), reinterpret_cast<const uint32_t*>(s.triangles),
                 reinterpret_cast<const uint32_t*>(s.active), static_cast<uint32_t>(count), reinterpret_cast<TriangleMap*>(s.maps),
                 reinterpret_cast<uint32_t*>(s.owner)};
      void* mapArgs[] = {&g};
      const unsigned mapBlocks = static_cast<unsigned>((count + kMapBlock - 1) / kMapBlock);
      if (!check("cuLaunchKernel (avatar_warp_map)", cu.launch(s.map, mapBlocks, 1, 1, kMapBlock, 1, 1, 0, nullptr, mapArgs, nullptr))) return false;
      for (int plane = 0; plane < 2; plane++) {
        const unsigned rows = static_cast<unsigned>(plane == 0 ? s.height : s.height / 2);
        const unsigned rowBlocks = (rows + kWarpBlock - 1) / kWarpBlock;
        void* args[] = {&g, &plane};
        if (!check("cuLaunchKernel (avatar_warp_claim)", cu.launch(s.claim, static_cast<unsigned>(count), rowBlocks, 1, kWarpBlock, 1, 1, 0, nullptr, args, nullptr))) return false;
        if (!check("cuLaunchKernel (avatar_warp_draw)", cu.launch(s.draw, static_cast<unsigned>(count), rowBlocks, 1, kWarpBlock, 1, 1, 0, nullptr, args, nullptr))) return false;
      }
    }
    if (outline != nullptr && mouth != nullptr) {
      if (!check("cuMemcpyHtoD", cu.memcpyHtoD(s.outline, outline, outlinePoints * 2 * sizeof(double)))) return false;
      MouthGrid m{reinterpret_cast<uint8_t*>(s.frame), s.width, s.height, reinterpret_cast<const double*>(s.outline), outlinePoints, *mouth};
      const unsigned cols = static_cast<unsigned>((static_cast<int>(mouth->x1) >> 1) - (static_cast<int>(mouth->x0) >> 1) + 1);
      const unsigned rows = static_cast<unsigned>((static_cast<int>(mouth->y1) >> 1) - (static_cast<int>(mouth->y0) >> 1) + 1);
      void* args[] = {&m};
      if (!check("cuLaunchKernel (avatar_mouth)", cu.launch(s.mouth, (cols + kMouthBlock - 1) / kMouthBlock, (rows + kMouthBlock - 1) / kMouthBlock, 1, kMouthBlock,
                                                          kMouthBlock, 1, 0, nullptr, args, nullptr))) {
        return false;
      }
    }
    // synchronous: it waits for the kernels, and a kernel's fault surfaces here
    return check("cuMemcpyDtoH", cu.memcpyDtoH(out, s.frame, s.frameBytes));
  });
}

}  // namespace avatar
