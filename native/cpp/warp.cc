// The talking-head renderer's piecewise-affine warp of I420 frames, the same arithmetic as the
// TypeScript kernel in packages/lipsync/src/render.ts (warpPlanes and TriangleMap), step for step, so
// both give the same bytes: compiled, it costs a fraction of the JIT's time per sample, which leaves the
// CPU to the video encoder running beside it. Doubles throughout where the TypeScript uses numbers, and
// no fused multiply-add (see CMakeLists.txt), so every rounding matches.
#include "warp.h"

#include <algorithm>
#include <cmath>

namespace avatar {
namespace {

// One triangle's map from destination pixels to source pixels on one plane's grid, and the span of
// pixels each row has inside it.
struct TriangleMap {
  double xx = 0, xy = 0, x0 = 0, yx = 0, yy = 0, y0 = 0;
  double ux = 0, uy = 0, u0 = 0, vx = 0, vy = 0, v0 = 0;
  int minX = 0, maxX = 0, minY = 0, maxY = 0;
  bool inside = false;
  int lo = 0, hi = 0;

  bool Set(const double* moved, const double* rest, uint32_t a, uint32_t b, uint32_t c, double scale, double shift, int W, int H) {
    const double ax = (moved[2 * a] - shift) * scale, ay = (moved[2 * a + 1] - shift) * scale;
    const double bx = (moved[2 * b] - shift) * scale, by = (moved[2 * b + 1] - shift) * scale;
    const double cx = (moved[2 * c] - shift) * scale, cy = (moved[2 * c + 1] - shift) * scale;
    const double det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay);
    if (std::fabs(det) < 1e-9) return false;
    const double sax = (rest[2 * a] - shift) * scale, say = (rest[2 * a + 1] - shift) * scale;
    const double sbx = (rest[2 * b] - shift) * scale, sby = (rest[2 * b + 1] - shift) * scale;
    const double scx = (rest[2 * c] - shift) * scale, scy = (rest[2 * c + 1] - shift) * scale;
    const double inv = 1 / det;
    ux = (cy - ay) * inv;
    uy = -(cx - ax) * inv;
    u0 = -(ux * ax + uy * ay);
    vx = -(by - ay) * inv;
    vy = (bx - ax) * inv;
    v0 = -(vx * ax + vy * ay);
    xx = (sbx - sax) * ux + (scx - sax) * vx;
    xy = (sbx - sax) * uy + (scx - sax) * vy;
    x0 = sax + (sbx - sax) * u0 + (scx - sax) * v0;
    yx = (sby - say) * ux + (scy - say) * vx;
    yy = (sby - say) * uy + (scy - say) * vy;
    y0 = say + (sby - say) * u0 + (scy - say) * v0;
    minX = static_cast<int>(std::max(0.0, std::floor(std::min({ax, bx, cx}))));
    maxX = static_cast<int>(std::min(static_cast<double>(W - 1), std::ceil(std::max({ax, bx, cx}))));
    minY = static_cast<int>(std::max(0.0, std::floor(std::min({ay, by, cy}))));
    maxY = static_cast<int>(std::min(static_cast<double>(H - 1), std::ceil(std::max({ay, by, cy}))));
    inside = std::min({sax, sbx, scx}) >= 1 && std::min({say, sby, scy}) >= 1 && std::max({sax, sbx, scx}) <= W - 3 &&
             std::max({say, sby, scy}) <= H - 3;
    return true;
  }

  bool Span(int y) {
    double l = minX;
    double h = maxX;
    const double cu = uy * y + u0;
    const double cv = vy * y + v0;
    const double cw = 1 - (uy + vy) * y - (u0 + v0);
    const double kw = -(ux + vx);
    if (ux > 1e-12) l = std::max(l, std::ceil(-(cu + 1e-7) / ux));
    else if (ux < -1e-12) h = std::min(h, std::floor(-(cu + 1e-7) / ux));
    else if (cu < -1e-7) return false;
    if (vx > 1e-12) l = std::max(l, std::ceil(-(cv + 1e-7) / vx));
    else if (vx < -1e-12) h = std::min(h, std::floor(-(cv + 1e-7) / vx));
    else if (cv < -1e-7) return false;
    if (kw > 1e-12) l = std::max(l, std::ceil(-(cw + 1e-7) / kw));
    else if (kw < -1e-12) h = std::min(h, std::floor(-(cw + 1e-7) / kw));
    else if (cw < -1e-7) return false;
    if (l > h) return false;
    lo = static_cast<int>(l);
    hi = static_cast<int>(h);
    return true;
  }
};

// JavaScript's conversion of a number to an unsigned byte for values the clamped path produces
// (0.5 .. 255.5): truncation.
inline uint8_t ToByte(double v) { return static_cast<uint8_t>(static_cast<int32_t>(v)); }

inline uint8_t Bilinear(const uint8_t* p, int W, int fx, int fy) {
  const int a = p[0];
  const int c = p[W];
  const int top = (a << 8) + (p[1] - a) * fx;
  const int bottom = (c << 8) + (p[W + 1] - c) * fx;
  return static_cast<uint8_t>(((top << 8) + (bottom - top) * fy + 32768) >> 16);
}

// One triangle of one plane (o2 < 0) or of two planes with the same geometry, as warpPlanes does.
void WarpPlanes(TriangleMap& m, const uint8_t* src, uint8_t* dst, int64_t o1, int64_t o2, int W, int H) {
  const int32_t stepX = static_cast<int32_t>(std::floor(m.xx * 65536 + 0.5));
  const int32_t stepY = static_cast<int32_t>(std::floor(m.yx * 65536 + 0.5));
  for (int y = m.minY; y <= m.maxY; y++) {
    if (!m.Span(y)) continue;
    const int lo = m.lo;
    const int hi = m.hi;
    const double sx = m.xx * lo + m.xy * y + m.x0;
    const double sy = m.yx * lo + m.yy * y + m.y0;
    const int64_t row = static_cast<int64_t>(y) * W;
    if (m.inside) {
      int32_t fxp = static_cast<int32_t>(std::floor(sx * 65536 + 0.5));
      int32_t fyp = static_cast<int32_t>(std::floor(sy * 65536 + 0.5));
      uint8_t* d1 = dst + o1 + row;
      const uint8_t* s1 = src + o1;
      if (o2 < 0) {
        for (int x = lo; x <= hi; x++, fxp += stepX, fyp += stepY) {
          const int i = (fyp >> 16) * W + (fxp >> 16);
          d1[x] = Bilinear(s1 + i, W, (fxp >> 8) & 255, (fyp >> 8) & 255);
        }
      } else {
        uint8_t* d2 = dst + o2 + row;
        const uint8_t* s2 = src + o2;
        for (int x = lo; x <= hi; x++, fxp += stepX, fyp += stepY) {
          const int i = (fyp >> 16) * W + (fxp >> 16);
          const int fx = (fxp >> 8) & 255;
          const int fy = (fyp >> 8) & 255;
          d1[x] = Bilinear(s1 + i, W, fx, fy);
          d2[x] = Bilinear(s2 + i, W, fx, fy);
        }
      }
      continue;
    }
    // a source reaching the plane's edge: floating point, clamped
    double px = sx;
    double py = sy;
    for (int x = lo; x <= hi; x++, px += m.xx, py += m.yx) {
      const double fx = px < 0 ? 0 : px > W - 1.001 ? W - 1.001 : px;
      const double fy = py < 0 ? 0 : py > H - 1.001 ? H - 1.001 : py;
      const int ix = static_cast<int>(fx);
      const int iy = static_cast<int>(fy);
      const double tx = fx - ix;
      const double ty = fy - iy;
      const int64_t i = static_cast<int64_t>(iy) * W + ix;
      const double w11 = tx * ty;
      const double w10 = tx - w11;
      const double w01 = ty - w11;
      const double w00 = 1 - tx - w01;
      const uint8_t* k = src + o1 + i;
      dst[o1 + row + x] = ToByte(k[0] * w00 + k[1] * w10 + k[W] * w01 + k[W + 1] * w11 + 0.5);
      if (o2 >= 0) {
        k = src + o2 + i;
        dst[o2 + row + x] = ToByte(k[0] * w00 + k[1] * w10 + k[W] * w01 + k[W + 1] * w11 + 0.5);
      }
    }
  }
}

}  // namespace

void WarpI420(const WarpFrame& f) {
  const int W = f.width;
  const int H = f.height;
  const int64_t lumaSize = static_cast<int64_t>(W) * H;
  TriangleMap map;
  for (size_t n = 0; n < f.activeCount; n++) {
    const uint32_t t = f.active[n];
    const uint32_t a = f.triangles[t], b = f.triangles[t + 1], c = f.triangles[t + 2];
    if (map.Set(f.moved, f.rest, a, b, c, 1, 0, W, H)) WarpPlanes(map, f.src, f.dst, 0, -1, W, H);
    if (map.Set(f.moved, f.rest, a, b, c, 0.5, 0.5, W / 2, H / 2)) WarpPlanes(map, f.src, f.dst, lumaSize, lumaSize + lumaSize / 4, W / 2, H / 2);
  }
}

}  // namespace avatar
