// The renderer's frames drawn on an NVIDIA GPU: the photo, the mesh and the working buffers stay in GPU
// memory for the run; per frame the moved points go up, the warp and inner mouth kernels (warp.cu,
// mouth.cu) run, and the finished I420 frame comes back once. CUDA is the driver API loaded with dlopen,
// so a machine without it builds and loads the addon and gets the reason instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "cuda_driver.h"
#include "mouth.h"

namespace avatar {

struct CudaRendererSetup {
  const uint8_t* photo;  // the photo as one I420 frame
  int width;
  int height;
  const uint32_t* triangles;  // corner indices in threes
  size_t triangleIndices;     // their count (3 per triangle)
  const double* rest;         // the mesh's rest points, x y pairs
  size_t points;
  std::string uuid;  // the GPU to use, as NVML names it ("GPU-..."); empty: CUDA device 0
};

// One frame's worth of page-locked host memory on the renderer's context. The GPU copies a finished frame
// into it by DMA, at about twice the speed of ordinary memory, and ffmpeg's pipe reads it from there. It
// keeps the context alive, so it may outlive the renderer (a frame still being written to ffmpeg).
class PinnedBuffer {
 public:
  PinnedBuffer(std::shared_ptr<CudaContextHold> hold, uint8_t* data, size_t bytes) : hold_(std::move(hold)), data_(data), bytes_(bytes) {}
  ~PinnedBuffer() { Free(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  uint8_t* data() const { return data_; }
  size_t size() const { return bytes_; }
  // Frees the memory now (nothing may read it after), and lets go of the context; idempotent.
  void Free();

 private:
  std::shared_ptr<CudaContextHold> hold_;
  uint8_t* data_;
  size_t bytes_;
};

class CudaRenderer {
 public:
  // Opens a renderer on the GPU, or returns null with `why` (no driver, no device, too old a driver, no
  // PTX in this build, out of memory...). Nothing is left allocated on failure.
  static std::unique_ptr<CudaRenderer> Open(const CudaRendererSetup& setup, std::string& why);
  ~CudaRenderer();
  CudaRenderer(const CudaRenderer&) = delete;
  CudaRenderer& operator=(const CudaRenderer&) = delete;

  // One frame: the photo, the active triangles drawn moved <- rest, the inner mouth when `outline` is
  // not null, copied into `out` (one I420 frame); with `out` null the frame stays in device memory
  // (DeviceFrame) for an encoder on the same context, until the next call. False with `why` when a CUDA
  // call fails.
  bool Frame(const double* moved, const uint32_t* active, size_t count, const double* outline, size_t outlinePoints, const MouthParams* mouth,
             uint8_t* out, std::string& why);

  // One frame's bytes of page-locked host memory for `Frame` to copy into, or null with `why` (the driver
  // lacks the call, or the system refuses to lock more memory).
  std::unique_ptr<PinnedBuffer> HostBuffer(std::string& why);

  const std::string& device() const;
  // the context it draws in (an encoder reading DeviceFrame must share it)
  std::shared_ptr<CudaContextHold> context() const;
  // the frame last drawn, in device memory (one I420 frame), and its size in bytes
  unsigned long long DeviceFrame() const;
  size_t frameBytes() const;

  struct State;

 private:
  explicit CudaRenderer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace avatar
