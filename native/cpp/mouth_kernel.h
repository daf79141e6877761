// The inner mouth's arithmetic, shared by the CPU kernel (mouth.cc) and its CUDA twin (mouth.cu): the same
// steps as drawMouthI420 and shadeMouth in packages/lipsync/src/render/mouth.ts, in the same order, so all
// draw the same bytes (see hd.h on rounding).
#pragma once

#include "hd.h"
#include "mouth.h"
#include "outline.h"

namespace avatar {

// a drawn edge's linear ramp, in the photo's edge blur: as wide as a Gaussian edge's 10-90 % rise (mouth.ts EDGE_RAMP)
constexpr double kEdgeRamp = 3.2;

AVATAR_HD double Clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }
AVATAR_HD double Clamp255(double v) { return v < 0 ? 0 : v > 255 ? 255 : v; }
AVATAR_HD double Bump(double t) {
  const double a = t < 0 ? -t : t;
  if (a >= 1) return 0;
  const double q = 1 - a * a;
  return q * q;
}

// grainAt: the same 32-bit integer hash as JavaScript's Math.imul arithmetic.
AVATAR_HD double GrainAt(int x, int y) {
  uint32_t h = static_cast<uint32_t>(x) * 374761393u + static_cast<uint32_t>(y) * 668265263u;
  h = (h ^ (h >> 13)) * 1274126177u;
  h ^= h >> 16;
  return static_cast<double>(h & 0xffff) / 32768 - 1;
}

// grainAtScale: the grain on a grid `scale` pixels apart, blended bilinearly (the same arithmetic).
AVATAR_HD double GrainAtScale(int x, int y, double scale) {
  if (scale <= 1) return GrainAt(x, y);
  const double gx = x / scale, gy = y / scale;
  const double fix = floor(gx), fiy = floor(gy);
  const int ix = static_cast<int>(fix), iy = static_cast<int>(fiy);
  const double fx = gx - fix, fy = gy - fiy;
  const double g00 = GrainAt(ix, iy), g10 = GrainAt(ix + 1, iy), g01 = GrainAt(ix, iy + 1), g11 = GrainAt(ix + 1, iy + 1);
  const double top = g00 + (g10 - g00) * fx;
  const double bottom = g01 + (g11 - g01) * fx;
  return 1.5 * (top + (bottom - top) * fy);
}

struct Tooth {
  double cover, shade, edge;
};

// toothAt
AVATAR_HD void ToothAt(const MouthParams& p, double along, double reach, double length, Tooth& out) {
  const double a = Clamp01((along < 0 ? -along : along) / p.archHalf);
  const double a4 = a * a * a * a;
  const double s = a * (0.72 + 0.28 * a4);
  // the teeth's ends along the arch and their lengths (local: a CUDA thread cannot read host globals)
  const double kToothEnds[6] = {0.185, 0.328, 0.491, 0.642, 0.784, 1};
  const double kToothReach[6] = {1, 0.86, 0.95, 0.8, 0.74, 0.66};
  int j = 0;
  while (j < 5 && s >= kToothEnds[j]) j++;
  const double lo = j == 0 ? 0 : kToothEnds[j - 1];
  const double hi = kToothEnds[j];
  const double u = (s - lo) / (hi - lo);
  const double widthPx = ((hi - lo) * p.archHalf) / (0.72 + 1.4 * a4);
  const double fromSide = (u < 0.5 ? u : 1 - u) * widthPx;
  const double toothLength = length * kToothReach[j];
  const double radius = Min2(0.22 * widthPx, 0.25 * toothLength);
  double edge = toothLength;
  if (fromSide < radius) {
    const double k = radius - fromSide;
    edge = toothLength - (radius - sqrt(radius * radius - k * k));
  }
  out.edge = edge;
  out.cover = Clamp01((edge - reach) / (kEdgeRamp * p.softness) + 0.5);
  const double g = Clamp01(reach / (0.22 * toothLength + 1));
  const double gum = 0.62 + 0.38 * g * (2 - g);
  const double back = 1 - 0.45 * s * s - 0.15 * s * s * s * s;
  const double round = 0.95 + 0.05 * (1 - (2 * u - 1) * (2 * u - 1));
  const double between = 1 - 0.12 * Bump(fromSide / (0.6 + 0.6 * p.softness));
  const double shine = 0.08 * Bump((reach - 0.35 * toothLength) / (0.22 * toothLength + 1)) * Bump((2 * u - 1) / 0.8) * (1 - s);
  out.shade = gum * back * round * between + shine;
}

struct Shade {
  double r, g, b;
};

// shadeMouth: the colour inside the mouth at (x, y), d pixels inside the outline, whose column spans
// top to bottom there.
AVATAR_HD void ShadeMouth(const MouthParams& p, int xi, int yi, double d, double top, double bottom, Shade& out) {
  const double x = xi, y = yi;
  const double along = (x - p.centerX) * p.uxx + (y - p.top) * p.uxy;
  const double down = (x - p.centerX) * p.uyx + (y - p.top) * p.uyy;
  const double side = Min2(1.0, (along < 0 ? -along : along) / (p.mouthW / 2));
  const double fromBottom = p.bottom - y;
  const double v = Clamp01((y - top) / (bottom - top + 1));
  const double deep = (1 - side * side) * 4 * v * (1 - v);
  const double k = 1 - 0.72 * deep - 0.3 * side * side;
  double cr = p.cavityR * k, cg = p.cavityG * k, cb = p.cavityB * k;
  if (p.tongue > 0) {
    const double q = along / (0.45 * p.mouthW);
    const double rise = 0.4 * p.gapHeight * p.tongue * (1 - q * q);
    if (rise > 0) {
      const double cover = Clamp01((rise - fromBottom) / (2 * p.softness + 0.08 * rise) + 0.5);
      const double lit = (0.35 + 0.4 * Clamp01(1 - fromBottom / (rise + 1))) * (1 - 0.35 * q * q);
      cr += (p.tongueR * lit - cr) * cover;
      cg += (p.tongueG * lit - cg) * cover;
      cb += (p.tongueB * lit - cb) * cover;
    }
  }
  Tooth upper{0, 0, 0}, tooth{0, 0, 0};
  double edge = 0;
  if (p.teethH > 0) {
    ToothAt(p, along, down, p.teethH, upper);
    edge = upper.edge;
  }
  const double below = down - edge;
  if (below > 0) {
    const double shadow = 1 - 0.45 * Bump(below / (0.3 * p.gapHeight + 1));
    cr *= shadow;
    cg *= shadow;
    cb *= shadow;
  }
  const double lowerReach = p.lowerTeethH * (1 - side * side);
  if (p.lowerTeethH > 0.5 && fromBottom > -1 && fromBottom < lowerReach + 0.5 * kEdgeRamp * p.softness + 1) {
    ToothAt(p, along * 1.12, fromBottom, lowerReach, tooth);
    const double lit = tooth.shade * 0.6;
    cr += (p.teethR * lit - cr) * tooth.cover;
    cg += (p.teethG * lit - cg) * tooth.cover;
    cb += (p.teethB * lit - cb) * tooth.cover;
  }
  if (p.teethH > 0 && upper.cover > 0) {
    const double clear = Clamp01((down - 0.82 * upper.edge) / (0.18 * upper.edge + 0.5));
    const double lit = upper.shade * (1 - 0.12 * clear);
    cr += (p.teethR * lit * (1 - 0.06 * clear) - cr) * upper.cover;
    cg += (p.teethG * lit * (1 - 0.03 * clear) - cg) * upper.cover;
    cb += (p.teethB * lit - cb) * upper.cover;
  }
  const double rim = 1 - 0.35 * Clamp01(1 - d / Min2(kReach, 1.2 + p.softness));
  const double noise = p.grain * 0.9 * GrainAtScale(xi, yi, p.grainScale);
  out.r = Clamp255(cr * rim + noise);
  out.g = Clamp255(cg * rim + noise);
  out.b = Clamp255(cb * rim + noise);
}

AVATAR_HD double Coverage(double d, double softness) {
  const double w = softness * 0.5 * kEdgeRamp < 0.7 ? 0.7 : softness * 0.5 * kEdgeRamp;  // coverageReach
  return d >= w ? 1 : d <= -w ? 0 : (d + w) / (2 * w);
}


// One pixel's luma written and its share of its 2x2 block's chroma summed into cell[0..2]: coverage,
// then coverage-weighted U and V.
AVATAR_HD void MouthPixel(const MouthParams& p, uint8_t* out, int W, int x, int y, double d, double top, double bottom, double* cell) {
  const double alpha = Coverage(d, p.softness);
  if (alpha <= 0) return;
  Shade c{0, 0, 0};
  ShadeMouth(p, x, y, d, top, bottom, c);
  const double cr = c.r, cg = c.g, cb = c.b;
  const size_t o = static_cast<size_t>(y) * W + x;
  out[o] = ToByte(out[o] * (1 - alpha) + (16 + (47 * cr + 157 * cg + 16 * cb) / 256) * alpha + 0.5);
  cell[0] = cell[0] + alpha;
  cell[1] = cell[1] + alpha * (128 + (-26 * cr - 86 * cg + 112 * cb) / 256);
  cell[2] = cell[2] + alpha * (128 + (112 * cr - 102 * cg - 10 * cb) / 256);
}

// A 2x2 block's chroma, from its summed shares.
AVATAR_HD void MouthChroma(uint8_t* out, int W, int H, int cx, int cy, const double* cell) {
  const double cover = cell[0] / 4;
  if (cover <= 0) return;
  const size_t half = W / 2;
  const size_t uPlane = static_cast<size_t>(W) * H;
  const size_t u = uPlane + cy * half + cx;
  const size_t v = uPlane + uPlane / 4 + cy * half + cx;
  out[u] = ToByte(out[u] * (1 - cover) + cell[1] / 4 + 0.5);
  out[v] = ToByte(out[v] * (1 - cover) + cell[2] / 4 + 0.5);
}

// ---- The GPU's decomposition: one thread per 2x2 block of the mouth's box ---------------------------
// A block's four pixels are shaded in the CPU loop's order (row by row), so its chroma sums add up in
// the same order; blocks share nothing, so threads may run in any order.
struct MouthGrid {
  uint8_t* dst;
  int width, height;
  const double* outline;
  size_t points;
  MouthParams p;
};

// Thread (i, j): the block at (x0 >> 1) + i, (y0 >> 1) + j.
AVATAR_HD void MouthCellThread(const MouthGrid& g, int i, int j) {
  const MouthParams& p = g.p;
  const int x0 = static_cast<int>(p.x0), x1 = static_cast<int>(p.x1), y0 = static_cast<int>(p.y0), y1 = static_cast<int>(p.y1);
  const int cx = (x0 >> 1) + i, cy = (y0 >> 1) + j;
  if (cx > (x1 >> 1) || cy > (y1 >> 1)) return;
  double cell[3] = {0, 0, 0};
  double tops[2], bottoms[2];
  for (int k = 0; k < 2; k++) ColumnSpan(g.outline, g.points, 2 * cx + k, p.top, p.top + p.gapHeight, tops[k], bottoms[k]);
  for (int y = 2 * cy; y <= 2 * cy + 1; y++) {
    if (y < y0 || y > y1) continue;
    for (int x = 2 * cx; x <= 2 * cx + 1; x++) {
      if (x < x0 || x > x1) continue;
      MouthPixel(p, g.dst, g.width, x, y, OutlineDistanceAt(g.outline, g.points, x, y), tops[x - 2 * cx], bottoms[x - 2 * cx], cell);
    }
  }
  MouthChroma(g.dst, g.width, g.height, cx, cy, cell);
}

}  // namespace avatar
