// The talking-head renderer's piecewise-affine warp of I420 frames on the CPU: the arithmetic shared with
// its CUDA twin (warp.cu) is in warp_kernel.h, the same steps as the TypeScript kernel, so all give the
// same bytes; compiled, it costs a fraction of the JIT's time per sample, which leaves the CPU to the
// video encoder running beside it. This file adds the in-order loop and an SSE2 path for fixed rows.
#include "warp.h"

#include <cstring>

#include "warp_kernel.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace avatar {
namespace {

#if defined(__SSE2__)
// Four pixels of a row span at once. Positions are 16.16 fixed point; per lane the source index is
// iy * W + ix (one multiply-add of 16-bit pairs), the four source bytes of each pixel are read as two
// 16-bit pairs, and both blends are 16-bit multiply-adds. Same results as Bilinear (warp_kernel.h), lane for lane.
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
void WarpPlanes(const TriangleMap& m, const uint8_t* src, uint8_t* dst, int64_t o1, int64_t o2, int W, int H) {
  const Everyone all;
  WarpRow r;
  for (int y = m.minY; y <= m.maxY; y++) {
    if (!StartRow(m, y, W, H, r)) continue;
    if (!r.fixed) {
      DrawClamped(r, m, src, dst, o1, o2, W, H, all);
      continue;
    }
    int x = r.lo;
#if defined(__SSE2__)
    // lane k starts at fxp + k * stepX, exactly where the scalar loop would be at x + k
    const __m128i rowMul = _mm_set1_epi32((1 << 16) | W);
    // (multiples in unsigned arithmetic: a lane past the row's end may wrap, and is never stored)
    const auto times = [](int32_t step, uint32_t k) { return static_cast<int32_t>(static_cast<uint32_t>(step) * k); };
    const __m128i stepX4 = _mm_set1_epi32(times(r.stepX, 4));
    const __m128i stepY4 = _mm_set1_epi32(times(r.stepY, 4));
    __m128i vx = _mm_add_epi32(_mm_set1_epi32(r.fxp), _mm_set_epi32(times(r.stepX, 3), times(r.stepX, 2), r.stepX, 0));
    __m128i vy = _mm_add_epi32(_mm_set1_epi32(r.fyp), _mm_set_epi32(times(r.stepY, 3), times(r.stepY, 2), r.stepY, 0));
    const int64_t row = static_cast<int64_t>(y) * W;
    uint8_t* d1 = dst + o1 + row;
    uint8_t* d2 = o2 < 0 ? nullptr : dst + o2 + row;
    for (; x + 3 <= r.hi; x += 4) {
      const Quad q = QuadAt(vx, vy, rowMul);
      QuadStore(q, src + o1, W, d1 + x);
      if (d2) QuadStore(q, src + o2, W, d2 + x);
      vx = _mm_add_epi32(vx, stepX4);
      vy = _mm_add_epi32(vy, stepY4);
    }
#endif
    DrawFixed(r, src, dst, o1, o2, W, x, all);
  }
}

}  // namespace

void WarpI420(const WarpFrame& f) {
  const int W = f.width;
  const int H = f.height;
  const int64_t lumaSize = static_cast<int64_t>(W) * H;
  for (size_t n = 0; n < f.activeCount; n++) {
    const uint32_t t = f.active[n];
    const uint32_t a = f.triangles[t], b = f.triangles[t + 1], c = f.triangles[t + 2];
    const TriangleMap luma = MapTriangle(f.moved, f.rest, a, b, c, 1, 0, W, H);
    if (luma.valid) WarpPlanes(luma, f.src, f.dst, 0, -1, W, H);
    const TriangleMap chroma = MapTriangle(f.moved, f.rest, a, b, c, 0.5, 0.5, W / 2, H / 2);
    if (chroma.valid) WarpPlanes(chroma, f.src, f.dst, lumaSize, lumaSize + lumaSize / 4, W / 2, H / 2);
  }
}

}  // namespace avatar
