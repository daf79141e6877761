// Signed distance to the mouth's outline (twin of packages/lipsync/src/render/outline.ts). The CPU
// kernel caches each row's crossings and nearby edges (OutlineRows); a CUDA thread asks per pixel
// (OutlineDistanceAt). Both run each edge through the same functions below, so they agree exactly:
// the minimum and the count of crossings do not depend on the order edges are visited in.
#pragma once

#include <vector>

#include "hd.h"

namespace avatar {
constexpr double kReach = 5;  // OUTLINE_REACH

// Edge i of a closed outline runs from point i to point i - 1 (the last point for i = 0).
struct Edge {
  double ax, ay, bx, by, ex, ey, reachX0, reachX1, len;
};

AVATAR_HD Edge EdgeAt(const double* poly, size_t n, size_t i) {
  const size_t j = i == 0 ? n - 1 : i - 1;
  Edge e;
  e.ax = poly[2 * i];
  e.ay = poly[2 * i + 1];
  e.bx = poly[2 * j];
  e.by = poly[2 * j + 1];
  e.ex = e.bx - e.ax;
  e.ey = e.by - e.ay;
  e.reachX0 = Min2(e.ax, e.ax + e.ex) - kReach;
  e.reachX1 = Max2(e.ax, e.ax + e.ex) + kReach;
  e.len = e.ex * e.ex + e.ey * e.ey;
  return e;
}

AVATAR_HD bool EdgeCrosses(const Edge& e, int y) { return (e.ay > y) != (e.by > y); }
AVATAR_HD double EdgeCrossing(const Edge& e, int y) { return ((e.bx - e.ax) * (y - e.ay)) / (e.by - e.ay) + e.ax; }
AVATAR_HD bool EdgeNearRow(const Edge& e, int y) { return Min2(e.ay, e.by) - kReach <= y && y <= Max2(e.ay, e.by) + kReach; }

// The squared distance from (x, y) to an edge near the row, or kReach^2 when it is not near x.
AVATAR_HD double EdgeDistance2(const Edge& e, double x, double y) {
  if (e.reachX0 > x || e.reachX1 < x) return kReach * kReach;
  const double t = e.len > 0 ? Max2(0.0, Min2(1.0, ((x - e.ax) * e.ex + (y - e.ay) * e.ey) / e.len)) : 0;
  const double dx = e.ax + t * e.ex - x;
  const double dy = e.ay + t * e.ey - y;
  return dx * dx + dy * dy;
}

// Signed distance to the outline (positive inside), capped at kReach, for one pixel.
AVATAR_HD double OutlineDistanceAt(const double* poly, size_t n, int xi, int y) {
  const double x = xi;
  bool inside = false;
  double best = kReach * kReach;
  for (size_t i = 0; i < n; i++) {
    const Edge e = EdgeAt(poly, n, i);
    if (EdgeCrosses(e, y) && x < EdgeCrossing(e, y)) inside = !inside;
    if (EdgeNearRow(e, y)) best = Min2(best, EdgeDistance2(e, x, y));
  }
  const double d = sqrt(best);
  return inside ? d : -d;
}

// columnSpans for one column: the outline's topmost and lowest crossing, or the fallbacks.
AVATAR_HD void ColumnSpan(const double* poly, size_t n, int xi, double fallbackTop, double fallbackBottom, double& top, double& bottom) {
  const double x = xi;
  double lo = INFINITY;
  double hi = -INFINITY;
  for (size_t i = 0, j = n - 1; i < n; j = i++) {
    const double ax = poly[2 * i], ay = poly[2 * i + 1], bx = poly[2 * j], by = poly[2 * j + 1];
    if ((ax > x) != (bx > x)) {
      const double y = ay + ((by - ay) * (x - ax)) / (bx - ax);
      if (y < lo) lo = y;
      if (y > hi) hi = y;
    }
  }
  top = lo <= hi ? lo : fallbackTop;
  bottom = lo <= hi ? hi : fallbackBottom;
}

// The same distances, row by row, for the CPU's in-order loop: each row's crossings and near edges once.
class OutlineRows {
 public:
  explicit OutlineRows(const double* poly, size_t n) : edges_(n), near_(n), crossings_(n) {
    for (size_t i = 0; i < n; i++) edges_[i] = EdgeAt(poly, n, i);
  }

  void Row(int y) {
    y_ = y;
    nearCount_ = 0;
    crossCount_ = 0;
    for (size_t i = 0; i < edges_.size(); i++) {
      if (EdgeCrosses(edges_[i], y)) crossings_[crossCount_++] = EdgeCrossing(edges_[i], y);
      if (EdgeNearRow(edges_[i], y)) near_[nearCount_++] = i;
    }
  }

  double Distance(int xi) const {
    const double x = xi;
    bool inside = false;
    for (size_t k = 0; k < crossCount_; k++) if (x < crossings_[k]) inside = !inside;
    double best = kReach * kReach;
    for (size_t k = 0; k < nearCount_; k++) best = Min2(best, EdgeDistance2(edges_[near_[k]], x, y_));
    const double d = sqrt(best);
    return inside ? d : -d;
  }

 private:
  std::vector<Edge> edges_;
  std::vector<size_t> near_;
  std::vector<double> crossings_;
  size_t nearCount_ = 0, crossCount_ = 0;
  int y_ = 0;
};

// columnSpans: per column x0..x1.
inline void ColumnSpans(const double* poly, size_t n, int x0, int x1, double fallbackTop, double fallbackBottom, double* tops, double* bottoms) {
  for (int xi = x0; xi <= x1; xi++) ColumnSpan(poly, n, xi, fallbackTop, fallbackBottom, tops[xi - x0], bottoms[xi - x0]);
}

}  // namespace avatar
