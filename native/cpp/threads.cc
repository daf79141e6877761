// The CUDA kernels' thread functions run on the CPU, one thread after another in reverse order: the
// check, on any machine, that the GPU's decomposition of a frame (warp_kernel.h, mouth_kernel.h) draws
// the bytes of the in-order CPU loop whatever order its threads run in. Reverse order is the hard case
// for a warp whose later triangles must win where triangles overlap. The launch shapes are the ones
// warp.cu and mouth.cu are launched with: a block per triangle and rows up to the plane's height; a
// thread per 2x2 block of the mouth's box.
#include <vector>

#include "mouth.h"
#include "mouth_kernel.h"
#include "warp.h"
#include "warp_kernel.h"

namespace avatar {

void WarpI420Threads(const WarpFrame& f) {
  const uint32_t count = static_cast<uint32_t>(f.activeCount);
  std::vector<TriangleMap> maps(2 * static_cast<size_t>(count) + 1);
  std::vector<uint32_t> owner(static_cast<size_t>(f.width) * f.height + static_cast<size_t>(f.width / 2) * (f.height / 2), 0);
  const WarpGrid g{f.src, f.dst, f.width, f.height, f.moved, f.rest, f.triangles, f.active, count, maps.data(), owner.data()};
  for (uint32_t n = count; n-- > 0;) WarpMapThread(g, n);
  for (int plane = 0; plane < 2; plane++) {
    const int rows = plane == 0 ? f.height : f.height / 2;
    for (uint32_t n = count; n-- > 0;) {
      for (int k = rows; k-- > 0;) WarpClaimThread(g, n, plane, k);
    }
    for (uint32_t n = count; n-- > 0;) {
      for (int k = rows; k-- > 0;) WarpDrawThread(g, n, plane, k);
    }
  }
}

void MouthI420Threads(const MouthFrame& f) {
  const MouthGrid g{f.dst, f.width, f.height, f.outline, f.points, f.p};
  const int cols = (static_cast<int>(f.p.x1) >> 1) - (static_cast<int>(f.p.x0) >> 1) + 1;
  const int rows = (static_cast<int>(f.p.y1) >> 1) - (static_cast<int>(f.p.y0) >> 1) + 1;
  for (int j = rows; j-- > 0;) {
    for (int i = cols; i-- > 0;) MouthCellThread(g, i, j);
  }
}

}  // namespace avatar
