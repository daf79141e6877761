// The warp's arithmetic, shared by the CPU kernel (warp.cc) and its CUDA twin (warp.cu): the same
// steps as the TypeScript kernel in packages/lipsync/src/render/warp.ts (warpPlanes) and
// triangle-map.ts (TriangleMap), so all three give the same bytes. Doubles where TypeScript uses
// numbers; see hd.h on rounding.
#pragma once

#include "hd.h"

namespace avatar {

// std::floor and std::ceil without SSE4.1 are library calls; a row needs several. These agree with them
// (and with JavaScript's Math.floor/Math.ceil) for every finite value: from 2^52 on a double is a whole
// number already, and below it the conversion through int64 is exact (and defined).
AVATAR_HD double FloorI(double v) {
  if (!(v > -4503599627370496.0 && v < 4503599627370496.0)) return v;
  const double t = static_cast<double>(static_cast<int64_t>(v));
  return t > v ? t - 1 : t;
}
AVATAR_HD double CeilI(double v) {
  if (!(v > -4503599627370496.0 && v < 4503599627370496.0)) return v;
  const double t = static_cast<double>(static_cast<int64_t>(v));
  return t < v ? t + 1 : t;
}

// On a row, u >= 0, v >= 0 and u + v <= 1 each hold on one side of an x that moves linearly with y.
// kind: +1 a lower bound on x, -1 an upper bound, 0 the row is all in (at >= 0) or all out
struct SpanBound {
  int kind;
  double slope, at;
};

AVATAR_HD SpanBound MakeBound(double kx, double ky, double k0) {
  if (kx > 1e-12) return {1, -ky / kx, -(k0 + 1e-7) / kx};
  if (kx < -1e-12) return {-1, -ky / kx, -(k0 + 1e-7) / kx};
  return {0, ky, k0};
}

// One triangle's map from destination pixels to source pixels on one plane's grid, and the bounds of
// the span of pixels each row has inside it. Plain data: a GPU thread builds it, others read it.
struct TriangleMap {
  double xx, xy, x0, yx, yy, y0;
  double ux, uy, u0, vx, vy, v0;
  int minX, maxX, minY, maxY;
  bool inside;
  bool valid;  // false: the triangle is degenerate on this plane and draws nothing
  SpanBound bounds[3];
};

// The map of triangle a, b, c (corner indices) moved -> rest on a plane `scale` of the luma grid.
AVATAR_HD TriangleMap MapTriangle(const double* moved, const double* rest, uint32_t a, uint32_t b, uint32_t c, double scale, double shift, int W, int H) {
  TriangleMap m{};
  const double ax = (moved[2 * a] - shift) * scale, ay = (moved[2 * a + 1] - shift) * scale;
  const double bx = (moved[2 * b] - shift) * scale, by = (moved[2 * b + 1] - shift) * scale;
  const double cx = (moved[2 * c] - shift) * scale, cy = (moved[2 * c + 1] - shift) * scale;
  const double det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay);
  m.valid = fabs(det) >= 1e-9;
  if (!m.valid) return m;
  const double sax = (rest[2 * a] - shift) * scale, say = (rest[2 * a + 1] - shift) * scale;
  const double sbx = (rest[2 * b] - shift) * scale, sby = (rest[2 * b + 1] - shift) * scale;
  const double scx = (rest[2 * c] - shift) * scale, scy = (rest[2 * c + 1] - shift) * scale;
  const double inv = 1 / det;
  m.ux = (cy - ay) * inv;
  m.uy = -(cx - ax) * inv;
  m.u0 = -(m.ux * ax + m.uy * ay);
  m.vx = -(by - ay) * inv;
  m.vy = (bx - ax) * inv;
  m.v0 = -(m.vx * ax + m.vy * ay);
  m.xx = (sbx - sax) * m.ux + (scx - sax) * m.vx;
  m.xy = (sbx - sax) * m.uy + (scx - sax) * m.vy;
  m.x0 = sax + (sbx - sax) * m.u0 + (scx - sax) * m.v0;
  m.yx = (sby - say) * m.ux + (scy - say) * m.vx;
  m.yy = (sby - say) * m.uy + (scy - say) * m.vy;
  m.y0 = say + (sby - say) * m.u0 + (scy - say) * m.v0;
  m.minX = static_cast<int>(Max2(0.0, floor(Min3(ax, bx, cx))));
  m.maxX = static_cast<int>(Min2(static_cast<double>(W - 1), ceil(Max3(ax, bx, cx))));
  m.minY = static_cast<int>(Max2(0.0, floor(Min3(ay, by, cy))));
  m.maxY = static_cast<int>(Min2(static_cast<double>(H - 1), ceil(Max3(ay, by, cy))));
  m.inside = Min3(sax, sbx, scx) >= 1 && Min3(say, sby, scy) >= 1 && Max3(sax, sbx, scx) <= W - 3 && Max3(say, sby, scy) <= H - 3;
  m.bounds[0] = MakeBound(m.ux, m.uy, m.u0);
  m.bounds[1] = MakeBound(m.vx, m.vy, m.v0);
  m.bounds[2] = MakeBound(-(m.ux + m.vx), -(m.uy + m.vy), 1 - (m.u0 + m.v0));
  return m;
}

// Row y's span of pixels inside the triangle, lo..hi; false when the row has none.
AVATAR_HD bool RowSpan(const TriangleMap& m, int y, int& lo, int& hi) {
  double l = m.minX;
  double h = m.maxX;
  for (int k = 0; k < 3; k++) {
    const SpanBound& b = m.bounds[k];
    // clamped near the triangle's box: the same span, and never a value too big to round through int64
    const double x = Min2(m.maxX + 1.0, Max2(m.minX - 1.0, b.slope * y + b.at));
    if (b.kind > 0) l = Max2(l, CeilI(x));
    else if (b.kind < 0) h = Min2(h, FloorI(x));
    else if (x < -1e-7) return false;
  }
  if (l > h) return false;
  lo = static_cast<int>(l);
  hi = static_cast<int>(h);
  return true;
}

// Bilinear blend with 7-bit weights (1/128 of a pixel): every product fits a signed 16-bit lane pair,
// which is what lets the CPU's SSE2 loop do four pixels with two multiply-adds each. The TypeScript
// kernel computes exactly this.
AVATAR_HD uint8_t Bilinear(const uint8_t* p, int W, int fx, int fy) {
  const int top = p[0] * (128 - fx) + p[1] * fx;
  const int bottom = p[W] * (128 - fx) + p[W + 1] * fx;
  return static_cast<uint8_t>((top * (128 - fy) + bottom * fy + 8192) >> 14);
}

// One row of a triangle on one plane (o2 < 0) or on two planes of the same geometry (the chroma pair).
struct WarpRow {
  int y, lo, hi;
  double sx, sy;      // the source position of pixel lo
  bool fixed;         // every read of the 16.16 fixed-point path stays inside the plane
  int32_t fxp, fyp;   // pixel lo's source position in 16.16 (fixed rows)
  int32_t stepX, stepY;
};

AVATAR_HD bool StartRow(const TriangleMap& m, int y, int W, int H, WarpRow& r) {
  if (!RowSpan(m, y, r.lo, r.hi)) return false;
  r.y = y;
  // the steps as doubles, as TypeScript has them: a sliver's step can be far beyond 32 bits, and is then
  // never used (its row is not fixed, or has one pixel)
  const double stepX = floor(m.xx * 65536 + 0.5);
  const double stepY = floor(m.yx * 65536 + 0.5);
  r.sx = m.xx * r.lo + m.xy * y + m.x0;
  r.sy = m.yx * r.lo + m.yy * y + m.y0;
  const double fx0 = FloorI(r.sx * 65536 + 0.5);
  const double fy0 = FloorI(r.sy * 65536 + 0.5);
  const double fx1 = fx0 + static_cast<double>(r.hi - r.lo) * stepX;
  const double fy1 = fy0 + static_cast<double>(r.hi - r.lo) * stepY;
  const double limitX = (W - 1) * 65536.0;
  const double limitY = (H - 1) * 65536.0;
  // The triangle test says the source is inside, and the row's two ends (positions move linearly
  // along it) confirm it even for a sliver of a triangle.
  r.fixed = m.inside && fx0 >= 0 && fx1 >= 0 && fx0 < limitX && fx1 < limitX && fy0 >= 0 && fy1 >= 0 && fy0 < limitY && fy1 < limitY;
  r.fxp = r.fixed ? static_cast<int32_t>(fx0) : 0;
  r.fyp = r.fixed ? static_cast<int32_t>(fy0) : 0;
  // on a fixed row of two pixels or more both ends are inside the plane, so a step is below 2^31
  const bool steps = r.fixed && r.hi > r.lo;
  r.stepX = steps ? static_cast<int32_t>(stepX) : 0;
  r.stepY = steps ? static_cast<int32_t>(stepY) : 0;
  return true;
}

// Pixels from..hi of a fixed row (from >= lo); `owns(x)` says which are this triangle's to draw.
template <typename Owns>
AVATAR_HD void DrawFixed(const WarpRow& r, const uint8_t* src, uint8_t* dst, int64_t o1, int64_t o2, int W, int from, const Owns& owns) {
  int32_t fxp = r.fxp + (from - r.lo) * r.stepX;
  int32_t fyp = r.fyp + (from - r.lo) * r.stepY;
  const int64_t row = static_cast<int64_t>(r.y) * W;
  for (int x = from; x <= r.hi; x++, fxp += r.stepX, fyp += r.stepY) {
    if (!owns(x)) continue;
    const int i = (fyp >> 16) * W + (fxp >> 16);
    const int fx = (fxp >> 9) & 127;
    const int fy = (fyp >> 9) & 127;
    dst[o1 + row + x] = Bilinear(src + o1 + i, W, fx, fy);
    if (o2 >= 0) dst[o2 + row + x] = Bilinear(src + o2 + i, W, fx, fy);
  }
}

// A row whose source reaches the plane's edge: floating point, clamped. Positions are summed pixel
// by pixel from lo, as TypeScript does, so each pixel's rounding is the same.
template <typename Owns>
AVATAR_HD void DrawClamped(const WarpRow& r, const TriangleMap& m, const uint8_t* src, uint8_t* dst, int64_t o1, int64_t o2, int W, int H, const Owns& owns) {
  const int64_t row = static_cast<int64_t>(r.y) * W;
  double px = r.sx;
  double py = r.sy;
  for (int x = r.lo; x <= r.hi; x++, px += m.xx, py += m.yx) {
    if (!owns(x)) continue;
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

struct Everyone {
  AVATAR_HD bool operator()(int) const { return true; }
};

// ---- The GPU's decomposition: one thread per triangle and row ---------------------------------------
// Later triangles in the active list draw over earlier ones where they overlap (the mesh draws some
// triangles first on purpose), so threads cannot simply race: a first pass has each (triangle, row)
// mark the pixels it covers with the largest triangle number (atomicMax), a second draws only the
// pixels it won. Each pixel then holds what the CPU's in-order loop leaves there, in any thread order.

// What one frame's warp threads read and write. Plane 0 is luma; plane 1 the chroma pair.
struct WarpGrid {
  const uint8_t* src;
  uint8_t* dst;
  int width, height;
  const double* moved;
  const double* rest;
  const uint32_t* triangles;
  const uint32_t* active;
  uint32_t count;
  TriangleMap* maps;  // 2 per active triangle: luma, chroma
  uint32_t* owner;    // width*height for luma, then (width/2)*(height/2) for chroma; zeroed per frame
};

AVATAR_HD void AtomicMaxU32(uint32_t* at, uint32_t value) {
#if defined(__CUDA_ARCH__)
  atomicMax(reinterpret_cast<unsigned int*>(at), value);
#else
  if (*at < value) *at = value;
#endif
}

// Thread n: triangle n's maps on both planes.
AVATAR_HD void WarpMapThread(const WarpGrid& g, uint32_t n) {
  if (n >= g.count) return;
  const uint32_t t = g.active[n];
  const uint32_t a = g.triangles[t], b = g.triangles[t + 1], c = g.triangles[t + 2];
  g.maps[2 * n] = MapTriangle(g.moved, g.rest, a, b, c, 1, 0, g.width, g.height);
  g.maps[2 * n + 1] = MapTriangle(g.moved, g.rest, a, b, c, 0.5, 0.5, g.width / 2, g.height / 2);
}

AVATAR_HD const TriangleMap* PlaneRow(const WarpGrid& g, uint32_t n, int plane, int k, int& y, int& W, int& H, uint32_t*& owner) {
  if (n >= g.count) return nullptr;
  const TriangleMap* m = &g.maps[2 * n + plane];
  y = m->minY + k;
  if (!m->valid || y > m->maxY) return nullptr;
  W = plane == 0 ? g.width : g.width / 2;
  H = plane == 0 ? g.height : g.height / 2;
  owner = plane == 0 ? g.owner : g.owner + static_cast<int64_t>(g.width) * g.height;
  return m;
}

// Thread (n, k): row minY + k of triangle n on `plane` claims its pixels.
AVATAR_HD void WarpClaimThread(const WarpGrid& g, uint32_t n, int plane, int k) {
  int y, W, H;
  uint32_t* owner;
  const TriangleMap* m = PlaneRow(g, n, plane, k, y, W, H, owner);
  int lo, hi;
  if (m == nullptr || !RowSpan(*m, y, lo, hi)) return;
  for (int x = lo; x <= hi; x++) AtomicMaxU32(owner + static_cast<int64_t>(y) * W + x, n + 1);
}

struct OwnedBy {
  const uint32_t* row;
  uint32_t id;
  AVATAR_HD bool operator()(int x) const { return row[x] == id; }
};

// Thread (n, k): draws the pixels of its row it won.
AVATAR_HD void WarpDrawThread(const WarpGrid& g, uint32_t n, int plane, int k) {
  int y, W, H;
  uint32_t* owner;
  const TriangleMap* m = PlaneRow(g, n, plane, k, y, W, H, owner);
  WarpRow r;
  if (m == nullptr || !StartRow(*m, y, W, H, r)) return;
  const int64_t luma = static_cast<int64_t>(g.width) * g.height;
  const int64_t o1 = plane == 0 ? 0 : luma;
  const int64_t o2 = plane == 0 ? -1 : luma + luma / 4;
  const OwnedBy owns{owner + static_cast<int64_t>(y) * W, n + 1};
  if (r.fixed) DrawFixed(r, g.src, g.dst, o1, o2, W, r.lo, owns);
  else DrawClamped(r, *m, g.src, g.dst, o1, o2, W, H, owns);
}

}  // namespace avatar
