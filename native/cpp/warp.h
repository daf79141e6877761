// CPU kernels for the lip-sync renderer (see warp.cc).
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

}  // namespace avatar

namespace avatar {

// The inside of an open mouth drawn into an I420 frame (the renderer's drawMouth, step for step): a
// closed outline (the inner lips) filled with cavity, teeth and tongue shading, its edge blended over
// about a pixel; luma per pixel, chroma per 2x2 block by the share of it the mouth covers.
struct MouthFrame {
  uint8_t* dst;
  int width;
  int height;
  const double* outline;  // x, y pairs
  size_t points;
  int x0, x1, y0, y1;     // the box to draw in, inside the frame
  double centerX, top, bottom, gapHeight, mouthW, teethH, lowerTeethH, toothPitch, mouthWidth;
  double uxx, uxy, uyx, uyy;
};

void MouthI420(const MouthFrame& frame);

}  // namespace avatar
