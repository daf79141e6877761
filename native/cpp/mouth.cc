// The renderer's inner mouth for I420 frames: the same arithmetic as drawMouthI420 and shadeMouth in
// packages/lipsync/src/render/mouth.ts, in the same order, so both draw the same bytes (see warp.cc on why).
#include "mouth.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "outline.h"

namespace avatar {
namespace {

// JavaScript's conversion of a number to an unsigned byte: truncation, then modulo 256.
inline uint8_t ToByte(double v) { return static_cast<uint8_t>(static_cast<int32_t>(v)); }

struct Shade {
  double r, g, b;
};

// The colour inside the mouth at (x, y), d pixels inside the outline (shadeMouth).
inline void ShadeMouth(const MouthParams& p, int xi, int yi, double d, Shade& out) {
  const double x = xi, y = yi;
  const double height = p.gapHeight;
  const double along = (x - p.centerX) * p.uxx + (y - p.top) * p.uxy;
  const double down = (x - p.centerX) * p.uyx + (y - p.top) * p.uyy;
  const double side = std::min(1.0, std::fabs(along) / (p.mouthW / 2));
  const double depth = std::min(1.0, std::max(0.0, d / 3));
  double cr = 70 - 35 * depth - 20 * side;
  double cg = 24 - 12 * depth - 8 * side;
  double cb = 28 - 12 * depth - 8 * side;
  const double bottomDist = p.bottom - y;
  if (height > 0.22 * p.mouthWidth && bottomDist < height * 0.45) {
    const double tz = 1 - std::min(1.0, std::fabs(along) / (p.mouthW * 0.32));
    const double tt = std::min(1.0, (height * 0.45 - bottomDist) / (height * 0.3)) * tz;
    cr += (150 - cr) * tt * 0.8;
    cg += (62 - cg) * tt * 0.8;
    cb += (70 - cb) * tt * 0.8;
  }
  if (down >= -1 && down < p.teethH) {
    const double edge = 1 - std::max(0.0, (down - p.teethH * 0.7) / (p.teethH * 0.3 + 1e-6)) * 0.3;
    const double gum = std::min(1.0, std::max(0.0, down + 1) / (p.teethH * 0.25 + 1));
    const double shade = (1 - 0.6 * side * side) * edge * (0.7 + 0.3 * gum);
    const double gapLine = std::fabs(std::fmod(along / p.toothPitch + 100.5, 1.0) - 0.5) < 0.07 ? 0.86 : 1;
    const double k = shade * gapLine;
    cr = 232 * k;
    cg = 218 * k;
    cb = 192 * k;
  } else if (p.lowerTeethH > 0.5 && bottomDist >= 0 && bottomDist < p.lowerTeethH) {
    const double shade = (1 - 0.6 * side * side) * 0.75;
    cr = 222 * shade;
    cg = 212 * shade;
    cb = 194 * shade;
  }
  const double rim = std::max(0.0, 1 - d / 1.6) * 0.35;
  out.r = cr * (1 - rim);
  out.g = cg * (1 - rim);
  out.b = cb * (1 - rim);
}

inline double Coverage(double d) { return d >= 0.7 ? 1 : d <= -0.7 ? 0 : (d + 0.7) / 1.4; }

}  // namespace

void MouthI420(const MouthFrame& f) {
  const MouthParams& p = f.p;
  const int W = f.width;
  const int x0 = static_cast<int>(p.x0), x1 = static_cast<int>(p.x1), y0 = static_cast<int>(p.y0), y1 = static_cast<int>(p.y1);
  const int cx0 = x0 >> 1, cx1 = x1 >> 1, cy0 = y0 >> 1, cy1 = y1 >> 1;
  const int cw = cx1 - cx0 + 1;
  std::vector<double> chroma(static_cast<size_t>(3) * cw * (cy1 - cy0 + 1), 0.0);
  OutlineRows rows(f.outline, f.points);
  uint8_t* out = f.dst;
  Shade c{0, 0, 0};
  for (int y = y0; y <= y1; y++) {
    rows.Row(y);
    for (int x = x0; x <= x1; x++) {
      const double d = rows.Distance(x);
      const double alpha = Coverage(d);
      if (alpha <= 0) continue;
      ShadeMouth(p, x, y, d, c);
      const double cr = c.r, cg = c.g, cb = c.b;
      const size_t o = static_cast<size_t>(y) * W + x;
      out[o] = ToByte(out[o] * (1 - alpha) + (16 + (47 * cr + 157 * cg + 16 * cb) / 256) * alpha + 0.5);
      const size_t cell = 3 * (static_cast<size_t>((y >> 1) - cy0) * cw + (x >> 1) - cx0);
      chroma[cell] = chroma[cell] + alpha;
      chroma[cell + 1] = chroma[cell + 1] + alpha * (128 + (-26 * cr - 86 * cg + 112 * cb) / 256);
      chroma[cell + 2] = chroma[cell + 2] + alpha * (128 + (112 * cr - 102 * cg - 10 * cb) / 256);
    }
  }
  const size_t half = W / 2;
  const size_t uPlane = static_cast<size_t>(W) * f.height;
  const size_t vPlane = uPlane + uPlane / 4;
  for (int cy = cy0; cy <= cy1; cy++) {
    for (int cx = cx0; cx <= cx1; cx++) {
      const size_t cell = 3 * (static_cast<size_t>(cy - cy0) * cw + cx - cx0);
      const double cover = chroma[cell] / 4;
      if (cover <= 0) continue;
      const size_t u = uPlane + cy * half + cx;
      const size_t v = vPlane + cy * half + cx;
      out[u] = ToByte(out[u] * (1 - cover) + chroma[cell + 1] / 4 + 0.5);
      out[v] = ToByte(out[v] * (1 - cover) + chroma[cell + 2] / 4 + 0.5);
    }
  }
}

}  // namespace avatar
