// Signed distance to the mouth's outline, row by row (twin of packages/lipsync/src/render/outline.ts).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace avatar {
constexpr double kReach = 5;  // OUTLINE_REACH

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

// columnSpans: per column x0..x1, the outline's topmost and lowest crossing, or the fallbacks.
inline void ColumnSpans(const double* poly, size_t n, int x0, int x1, double fallbackTop, double fallbackBottom, double* tops, double* bottoms) {
  for (int xi = x0; xi <= x1; xi++) {
    const double x = xi;
    double top = INFINITY;
    double bottom = -INFINITY;
    for (size_t i = 0, j = n - 1; i < n; j = i++) {
      const double ax = poly[2 * i], ay = poly[2 * i + 1], bx = poly[2 * j], by = poly[2 * j + 1];
      if ((ax > x) != (bx > x)) {
        const double y = ay + ((by - ay) * (x - ax)) / (bx - ax);
        if (y < top) top = y;
        if (y > bottom) bottom = y;
      }
    }
    tops[xi - x0] = top <= bottom ? top : fallbackTop;
    bottoms[xi - x0] = top <= bottom ? bottom : fallbackBottom;
  }
}

}  // namespace avatar
