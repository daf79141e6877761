// The renderer's inner mouth for I420 frames: the same arithmetic as drawMouth and OutlineRows in
// packages/lipsync/src/render.ts, in the same order, so both draw the same bytes (see warp.cc on why).
#include <algorithm>
#include <cmath>
#include <vector>

#include "warp.h"

namespace avatar {
namespace {

constexpr double kReach = 3;  // OUTLINE_REACH

// Signed distance to the outline (positive inside), row by row and capped at kReach.
class OutlineRows {
 public:
  explicit OutlineRows(const double* poly, size_t n)
      : ax_(n), ay_(n), bx_(n), by_(n), ex_(n), ey_(n), reachX0_(n), reachX1_(n), len_(n), near_(n), crossings_(n) {
    for (size_t i = 0, j = n - 1; i < n; j = i++) {
      const double ax = poly[2 * i], ay = poly[2 * i + 1], bx = poly[2 * j], by = poly[2 * j + 1];
      ax_[i] = ax;
      ay_[i] = ay;
      bx_[i] = bx;
      by_[i] = by;
      const double ex = bx - ax, ey = by - ay;
      ex_[i] = ex;
      ey_[i] = ey;
      reachX0_[i] = std::min(ax, ax + ex) - kReach;
      reachX1_[i] = std::max(ax, ax + ex) + kReach;
      len_[i] = ex * ex + ey * ey;
    }
  }

  void Row(int y) {
    y_ = y;
    nearCount_ = 0;
    crossCount_ = 0;
    for (size_t i = 0; i < ax_.size(); i++) {
      const double ay = ay_[i], by = by_[i], ax = ax_[i], bx = bx_[i];
      if ((ay > y) != (by > y)) crossings_[crossCount_++] = ((bx - ax) * (y - ay)) / (by - ay) + ax;
      if (std::min(ay, by) - kReach <= y && y <= std::max(ay, by) + kReach) near_[nearCount_++] = i;
    }
  }

  double Distance(int xi) const {
    const double x = xi;
    bool inside = false;
    for (size_t k = 0; k < crossCount_; k++) if (x < crossings_[k]) inside = !inside;
    double best = kReach * kReach;
    const double y = y_;
    for (size_t k = 0; k < nearCount_; k++) {
      const size_t i = near_[k];
      if (reachX0_[i] > x || reachX1_[i] < x) continue;
      const double ax = ax_[i], ay = ay_[i], ex = ex_[i], ey = ey_[i], len = len_[i];
      const double t = len > 0 ? std::max(0.0, std::min(1.0, ((x - ax) * ex + (y - ay) * ey) / len)) : 0;
      const double dx = ax + t * ex - x;
      const double dy = ay + t * ey - y;
      best = std::min(best, dx * dx + dy * dy);
    }
    const double d = std::sqrt(best);
    return inside ? d : -d;
  }

 private:
  std::vector<double> ax_, ay_, bx_, by_, ex_, ey_, reachX0_, reachX1_, len_;
  std::vector<size_t> near_;
  std::vector<double> crossings_;
  size_t nearCount_ = 0, crossCount_ = 0;
  int y_ = 0;
};

// JavaScript's conversion of a number to an unsigned byte: truncation, then modulo 256.
inline uint8_t ToByte(double v) { return static_cast<uint8_t>(static_cast<int32_t>(v)); }

}  // namespace

void MouthI420(const MouthFrame& f) {
  const int W = f.width;
  const int x0 = f.x0, x1 = f.x1, y0 = f.y0, y1 = f.y1;
  const int cx0 = x0 >> 1, cx1 = x1 >> 1, cy0 = y0 >> 1, cy1 = y1 >> 1;
  const int cw = cx1 - cx0 + 1;
  std::vector<double> chroma(static_cast<size_t>(3) * cw * (cy1 - cy0 + 1), 0.0);
  OutlineRows outline(f.outline, f.points);
  uint8_t* out = f.dst;
  const double height = f.gapHeight;
  for (int y = y0; y <= y1; y++) {
    outline.Row(y);
    for (int x = x0; x <= x1; x++) {
      const double d = outline.Distance(x);
      const double alpha = d >= 0.7 ? 1 : d <= -0.7 ? 0 : (d + 0.7) / 1.4;
      if (alpha <= 0) continue;
      const double along = (x - f.centerX) * f.uxx + (y - f.top) * f.uxy;
      const double down = (x - f.centerX) * f.uyx + (y - f.top) * f.uyy;
      const double side = std::min(1.0, std::fabs(along) / (f.mouthW / 2));
      const double depth = std::min(1.0, std::max(0.0, d / 3));
      double cr = 70 - 35 * depth - 20 * side;
      double cg = 24 - 12 * depth - 8 * side;
      double cb = 28 - 12 * depth - 8 * side;
      const double bottomDist = f.bottom - y;
      if (height > 0.22 * f.mouthWidth && bottomDist < height * 0.45) {
        const double tz = 1 - std::min(1.0, std::fabs(along) / (f.mouthW * 0.32));
        const double tt = std::min(1.0, (height * 0.45 - bottomDist) / (height * 0.3)) * tz;
        cr += (150 - cr) * tt * 0.8;
        cg += (62 - cg) * tt * 0.8;
        cb += (70 - cb) * tt * 0.8;
      }
      if (down >= -1 && down < f.teethH) {
        const double edge = 1 - std::max(0.0, (down - f.teethH * 0.7) / (f.teethH * 0.3 + 1e-6)) * 0.3;
        const double gum = std::min(1.0, std::max(0.0, down + 1) / (f.teethH * 0.25 + 1));
        const double shade = (1 - 0.6 * side * side) * edge * (0.7 + 0.3 * gum);
        const double gapLine = std::fabs(std::fmod(along / f.toothPitch + 100.5, 1.0) - 0.5) < 0.07 ? 0.86 : 1;
        const double k = shade * gapLine;
        cr = 232 * k;
        cg = 218 * k;
        cb = 192 * k;
      } else if (f.lowerTeethH > 0.5 && bottomDist >= 0 && bottomDist < f.lowerTeethH) {
        const double shade = (1 - 0.6 * side * side) * 0.75;
        cr = 222 * shade;
        cg = 212 * shade;
        cb = 194 * shade;
      }
      const double rim = std::max(0.0, 1 - d / 1.6) * 0.35;
      cr *= 1 - rim;
      cg *= 1 - rim;
      cb *= 1 - rim;
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
