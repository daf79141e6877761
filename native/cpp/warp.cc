// The talking-head renderer's piecewise-affine warp of I420 frames, the same arithmetic as the
// TypeScript kernel in packages/lipsync/src/render/warp.ts (warpPlanes) and triangle-map.ts (TriangleMap), step for step, so
// both give the same bytes: compiled, it costs a fraction of the JIT's time per sample, which leaves the
// CPU to the video encoder running beside it. Doubles throughout where the TypeScript uses numbers, and
// no fused multiply-add (see CMakeLists.txt), so every rounding matches.
#include "warp.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace avatar {
namespace {

// std::floor and std::ceil without SSE4.1 are library calls; a row needs several. These agree with them
// (and with JavaScript's Math.floor/Math.ceil) for every value the warp meets: spans and positions are
// far inside the range of a 64-bit integer.
inline double Floor(double v) {
  const double t = static_cast<double>(static_cast<int64_t>(v));
  return t > v ? t - 1 : t;
}
inline double Ceil(double v) {
  const double t = static_cast<double>(static_cast<int64_t>(v));
  return t < v ? t + 1 : t;
}

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
    SetUpSpans();
    return true;
  }

  // Each row's span, from three bounds linear in y set up once per triangle: on a row, u >= 0, v >= 0
  // and u + v <= 1 each hold on one side of an x that moves linearly with y.
  // kind: +1 a lower bound on x, -1 an upper bound, 0 the row is all in (at >= 0) or all out
  struct Bound {
    int kind;
    double slope, at;
  };
  Bound bounds[3];

  static Bound MakeBound(double kx, double ky, double k0) {
    if (kx > 1e-12) return {1, -ky / kx, -(k0 + 1e-7) / kx};
    if (kx < -1e-12) return {-1, -ky / kx, -(k0 + 1e-7) / kx};
    return {0, ky, k0};
  }

  void SetUpSpans() {
    bounds[0] = MakeBound(ux, uy, u0);
    bounds[1] = MakeBound(vx, vy, v0);
    bounds[2] = MakeBound(-(ux + vx), -(uy + vy), 1 - (u0 + v0));
  }

  bool Span(int y) {
    double l = minX;
    double h = maxX;
    for (const Bound& b : bounds) {
      // clamped near the triangle's box: the same span, and never a value too big to round through int64
      const double x = std::min(maxX + 1.0, std::max(minX - 1.0, b.slope * y + b.at));
      if (b.kind > 0) l = std::max(l, Ceil(x));
      else if (b.kind < 0) h = std::min(h, Floor(x));
      else if (x < -1e-7) return false;
    }
    if (l > h) return false;
    lo = static_cast<int>(l);
    hi = static_cast<int>(h);
    return true;
  }
};

// JavaScript's conversion of a number to an unsigned byte for values the clamped path produces
// (0.5 .. 255.5): truncation.
inline uint8_t ToByte(double v) { return static_cast<uint8_t>(static_cast<int32_t>(v)); }

// Bilinear blend with 7-bit weights (1/128 of a pixel): every product fits a signed 16-bit lane pair,
// which is what lets the SSE2 loop below do four pixels with two multiply-adds each. The TypeScript
// kernel computes exactly this.
inline uint8_t Bilinear(const uint8_t* p, int W, int fx, int fy) {
  const int top = p[0] * (128 - fx) + p[1] * fx;
  const int bottom = p[W] * (128 - fx) + p[W + 1] * fx;
  return static_cast<uint8_t>((top * (128 - fy) + bottom * fy + 8192) >> 14);
}

#if defined(__SSE2__)
// Four pixels of a row span at once. Positions are 16.16 fixed point; per lane the source index is
// iy * W + ix (one multiply-add of 16-bit pairs), the four source bytes of each pixel are read as two
// 16-bit pairs, and both blends are 16-bit multiply-adds. Same results as Bilinear, lane for lane.
struct Quad {
  __m128i index;
  __m128i wx;
  __m128i wy;
};

inline Quad QuadAt(__m128i fxp, __m128i fyp, __m128i rowMul) {
  const __m128i low16 = _mm_set1_epi32(0xffff);
  const __m128i seven = _mm_set1_epi32(127);
  const __m128i full = _mm_set1_epi32(128);
  const __m128i ix = _mm_srai_epi32(fxp, 16);
  const __m128i iy = _mm_srai_epi32(fyp, 16);
  const __m128i index = _mm_madd_epi16(_mm_or_si128(_mm_slli_epi32(ix, 16), _mm_and_si128(iy, low16)), rowMul);
  const __m128i fx = _mm_and_si128(_mm_srai_epi32(fxp, 9), seven);
  const __m128i fy = _mm_and_si128(_mm_srai_epi32(fyp, 9), seven);
  return {index, _mm_or_si128(_mm_slli_epi32(fx, 16), _mm_sub_epi32(full, fx)), _mm_or_si128(_mm_slli_epi32(fy, 16), _mm_sub_epi32(full, fy))};
}

inline uint16_t Pair(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline void QuadStore(const Quad& q, const uint8_t* s, int W, uint8_t* d) {
  alignas(16) int32_t at[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(at), q.index);
  const __m128i raw = _mm_set_epi16(static_cast<short>(Pair(s + at[3] + W)), static_cast<short>(Pair(s + at[2] + W)), static_cast<short>(Pair(s + at[1] + W)),
                                    static_cast<short>(Pair(s + at[0] + W)), static_cast<short>(Pair(s + at[3])), static_cast<short>(Pair(s + at[2])),
                                    static_cast<short>(Pair(s + at[1])), static_cast<short>(Pair(s + at[0])));
  const __m128i zero = _mm_setzero_si128();
  const __m128i top = _mm_madd_epi16(_mm_unpacklo_epi8(raw, zero), q.wx);
  const __m128i bottom = _mm_madd_epi16(_mm_unpackhi_epi8(raw, zero), q.wx);
  const __m128i blended = _mm_madd_epi16(_mm_or_si128(top, _mm_slli_epi32(bottom, 16)), q.wy);
  const __m128i out = _mm_srai_epi32(_mm_add_epi32(blended, _mm_set1_epi32(8192)), 14);
  const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(out, out), zero);
  const int32_t four = _mm_cvtsi128_si32(bytes);
  std::memcpy(d, &four, 4);
}
#endif

// One triangle of one plane (o2 < 0) or of two planes with the same geometry, as warpPlanes does.
void WarpPlanes(TriangleMap& m, const uint8_t* src, uint8_t* dst, int64_t o1, int64_t o2, int W, int H) {
  const int32_t stepX = static_cast<int32_t>(std::floor(m.xx * 65536 + 0.5));
  const int32_t stepY = static_cast<int32_t>(std::floor(m.yx * 65536 + 0.5));
#if defined(__SSE2__)
  const __m128i rowMul = _mm_set1_epi32((1 << 16) | W);
  const __m128i stepX4 = _mm_set1_epi32(stepX * 4);
  const __m128i stepY4 = _mm_set1_epi32(stepY * 4);
  const __m128i laneX = _mm_set_epi32(stepX * 3, stepX * 2, stepX, 0);
  const __m128i laneY = _mm_set_epi32(stepY * 3, stepY * 2, stepY, 0);
#endif
  const double limitX = (W - 1) * 65536.0;
  const double limitY = (H - 1) * 65536.0;
  for (int y = m.minY; y <= m.maxY; y++) {
    if (!m.Span(y)) continue;
    const int lo = m.lo;
    const int hi = m.hi;
    const double sx = m.xx * lo + m.xy * y + m.x0;
    const double sy = m.yx * lo + m.yy * y + m.y0;
    const int64_t row = static_cast<int64_t>(y) * W;
    const double fx0 = Floor(sx * 65536 + 0.5);
    const double fy0 = Floor(sy * 65536 + 0.5);
    const double fx1 = fx0 + static_cast<double>(hi - lo) * stepX;
    const double fy1 = fy0 + static_cast<double>(hi - lo) * stepY;
    // Every read of the fixed-point path must stay inside the plane. The triangle test says so, and the
    // row's two ends (positions move linearly along it) confirm it even for a sliver of a triangle.
    if (m.inside && fx0 >= 0 && fx1 >= 0 && fx0 < limitX && fx1 < limitX && fy0 >= 0 && fy1 >= 0 && fy0 < limitY && fy1 < limitY) {
      int32_t fxp = static_cast<int32_t>(fx0);
      int32_t fyp = static_cast<int32_t>(fy0);
      uint8_t* d1 = dst + o1 + row;
      const uint8_t* s1 = src + o1;
      uint8_t* d2 = o2 < 0 ? nullptr : dst + o2 + row;
      const uint8_t* s2 = o2 < 0 ? nullptr : src + o2;
      int x = lo;
#if defined(__SSE2__)
      // lane k starts at fxp + k * stepX, exactly where the scalar loop would be at x + k
      __m128i vx = _mm_add_epi32(_mm_set1_epi32(fxp), laneX);
      __m128i vy = _mm_add_epi32(_mm_set1_epi32(fyp), laneY);
      for (; x + 3 <= hi; x += 4) {
        const Quad q = QuadAt(vx, vy, rowMul);
        QuadStore(q, s1, W, d1 + x);
        if (d2) QuadStore(q, s2, W, d2 + x);
        vx = _mm_add_epi32(vx, stepX4);
        vy = _mm_add_epi32(vy, stepY4);
      }
      fxp += (x - lo) * stepX;
      fyp += (x - lo) * stepY;
#endif
      for (; x <= hi; x++, fxp += stepX, fyp += stepY) {
        const int i = (fyp >> 16) * W + (fxp >> 16);
        const int fx = (fxp >> 9) & 127;
        const int fy = (fyp >> 9) & 127;
        d1[x] = Bilinear(s1 + i, W, fx, fy);
        if (d2) d2[x] = Bilinear(s2 + i, W, fx, fy);
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
