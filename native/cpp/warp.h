// The lip-sync renderer's warp (warp.cc on the CPU, warp.cu on a GPU; their arithmetic in warp_kernel.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace avatar {

// One frame's warp: every active triangle of the mesh, moved -> rest, drawn from the photo's I420
// planes (src) into the frame's (dst). Both are width x height I420; the triangle list holds corner
// indices in threes, `active` the offsets into it of the triangles that move this frame.
struct WarpFrame {
  const uint8_t* src;
  uint8_t* dst;
  int width;
  int height;
  const double* moved;
  const double* rest;
  const uint32_t* triangles;
  const uint32_t* active;
  size_t activeCount;
};

void WarpI420(const WarpFrame& frame);

// The same frame drawn by the CUDA kernels' thread functions run on the CPU in reverse order (threads.cc):
// the same bytes as WarpI420, which a test checks.
void WarpI420Threads(const WarpFrame& frame);

}  // namespace avatar
