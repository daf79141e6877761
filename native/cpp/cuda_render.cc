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

const char* FindPtx(const char* name) {
  for (size_t i = 0; i < kPtxModuleCount; i++) {
    if (std::strcmp(kPtxModules[i].name, name) == 0) return kPtxModules[i].ptx;
  }
  return nullptr;
}

}  // namespace

void PinnedBuffer::Free() {
  if (data_ == nullptr) return;
  const CudaDriver& cu = *hold_->cu;
  // freed in its own context, made current for the call (it may be freed long after the renderer)
  if (cu.pushCurrent(hold_->context) == 0) {
    cu.memFreeHost(data_);
    CUcontext popped = nullptr;
    cu.popCurrent(&popped);
  }
  data_ = nullptr;
  bytes_ = 0;
  hold_.reset();
}

struct CudaRenderer::State {
  const CudaDriver* cu = nullptr;
  std::shared_ptr<CudaContextHold> hold;
  CUcontext context = nullptr;
  CUmodule warpModule = nullptr, mouthModule = nullptr;
  CUfunction map = nullptr, claim = nullptr, draw = nullptr, mouth = nullptr;
  std::vector<CUdeviceptr> allocations;
  CUdeviceptr photo = 0, frame = 0, triangles = 0, rest = 0, moved = 0, active = 0, maps = 0, owner = 0, outline = 0;
  int width = 0, height = 0;
  size_t frameBytes = 0, points = 0, maxActive = 0, ownerCount = 0;

  template <typename Fn>
  bool InContext(std::string& why, Fn fn) {
    return hold->InContext(why, fn);
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

const std::string& CudaRenderer::device() const { return state_->hold->name; }

std::shared_ptr<CudaContextHold> CudaRenderer::context() const { return state_->hold; }

unsigned long long CudaRenderer::DeviceFrame() const { return state_->frame; }

size_t CudaRenderer::frameBytes() const { return state_->frameBytes; }

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
  // (cuInit comes with RetainGpu below; the driver's version needs none)
  int version = 0;
  const CUresult rc = cu.driverVersion(&version);
  const int needed = kPtxCudaVersion > kMinDriverVersion ? kPtxCudaVersion : kMinDriverVersion;
  const auto cuda = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  if (rc != 0 || version < needed) {
    why = rc != 0 ? CudaFailed(cu, "cuDriverGetVersion", rc)
                  : "the NVIDIA driver supports CUDA " + cuda(version) + "; the renderer's kernels (PTX by nvcc " + cuda(kPtxCudaVersion) +
                        ") need a driver for CUDA " + cuda(needed) + " or newer (or build the addon with an older CUDA toolkit)";
    return nullptr;
  }
  auto s = std::make_unique<State>();
  s->cu = &cu;
  s->hold = RetainGpu(cu, setup.uuid, why);
  if (s->hold == nullptr) return nullptr;
  s->context = s->hold->context;
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
    // synchronous either way: it waits for the kernels, so a kernel's fault surfaces here, named as the
    // renderer's (and the CPU takes over), not later in whatever reads the frame next
    return out == nullptr ? check("cuCtxSynchronize", cu.synchronize()) : check("cuMemcpyDtoH", cu.memcpyDtoH(out, s.frame, s.frameBytes));
  });
}

}  // namespace avatar
