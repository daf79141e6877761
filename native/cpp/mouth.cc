// The renderer's inner mouth for I420 frames on the CPU, in the TypeScript kernel's order: rows of
// pixels, then the chroma blocks. The arithmetic is in mouth_kernel.h, shared with the CUDA twin.
#include "mouth.h"

#include <vector>

#include "mouth_kernel.h"

namespace avatar {

void MouthI420(const MouthFrame& f) {
  const MouthParams& p = f.p;
  const int W = f.width;
  const int x0 = static_cast<int>(p.x0), x1 = static_cast<int>(p.x1), y0 = static_cast<int>(p.y0), y1 = static_cast<int>(p.y1);
  const int cx0 = x0 >> 1, cx1 = x1 >> 1, cy0 = y0 >> 1, cy1 = y1 >> 1;
  const int cw = cx1 - cx0 + 1;
  std::vector<double> chroma(static_cast<size_t>(3) * cw * (cy1 - cy0 + 1), 0.0);
  OutlineRows rows(f.outline, f.points);
  std::vector<double> tops(static_cast<size_t>(x1 - x0 + 1)), bottoms(static_cast<size_t>(x1 - x0 + 1));
  ColumnSpans(f.outline, f.points, x0, x1, p.top, p.top + p.gapHeight, tops.data(), bottoms.data());
  for (int y = y0; y <= y1; y++) {
    rows.Row(y);
    for (int x = x0; x <= x1; x++) {
      double* cell = &chroma[3 * (static_cast<size_t>((y >> 1) - cy0) * cw + (x >> 1) - cx0)];
      MouthPixel(p, f.dst, W, x, y, rows.Distance(x), tops[x - x0], bottoms[x - x0], cell);
    }
  }
  for (int cy = cy0; cy <= cy1; cy++) {
    for (int cx = cx0; cx <= cx1; cx++) MouthChroma(f.dst, W, f.height, cx, cy, &chroma[3 * (static_cast<size_t>(cy - cy0) * cw + cx - cx0)]);
  }
}

}  // namespace avatar
