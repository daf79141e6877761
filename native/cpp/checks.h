// The frame kernels' argument checks, shared by every entry point that hands JavaScript's arrays to them:
// a wrong argument is a TypeError/RangeError naming the function, never a read out of bounds.
#pragma once

#include <napi.h>

#include <cmath>
#include <string>

#include "mouth.h"

namespace avatar {

// Coordinates far outside any frame (or not numbers at all) would overflow the kernels' integer
// conversions; a mesh never has them.
inline void CheckPoints(Napi::Env env, const std::string& fn, const Napi::Float64Array& points) {
  for (size_t i = 0; i < points.ElementLength(); i++) {
    const double v = points[i];
    if (!std::isfinite(v) || std::fabs(v) > 1048576) throw Napi::RangeError::New(env, fn + ": a point is not a finite coordinate within 2^20 pixels");
  }
}

inline void CheckTriangles(Napi::Env env, const std::string& fn, const Napi::Uint32Array& triangles, size_t points) {
  for (size_t i = 0; i < triangles.ElementLength(); i++) {
    if (triangles[i] >= points) throw Napi::RangeError::New(env, fn + ": a triangle names a point that does not exist");
  }
}

inline void CheckActive(Napi::Env env, const std::string& fn, const Napi::Uint32Array& active, int64_t count, size_t triangleIndices) {
  if (count < 0 || static_cast<size_t>(count) > active.ElementLength()) throw Napi::RangeError::New(env, fn + ": activeCount out of range");
  for (size_t i = 0; i < static_cast<size_t>(count); i++) {
    const uint32_t t = active[i];
    if (t % 3 != 0 || static_cast<size_t>(t) + 2 >= triangleIndices) throw Napi::RangeError::New(env, fn + ": an active triangle is out of range");
  }
}

// The outline and the parameter block of the inner mouth (mouth.h's AVATAR_MOUTH_PARAMS, in list order).
inline MouthParams CheckMouth(Napi::Env env, const std::string& fn, int64_t width, int64_t height, const Napi::Float64Array& outline, const Napi::Float64Array& params) {
  if (outline.ElementLength() < 6 || outline.ElementLength() % 2 != 0 || outline.ElementLength() > 4096) throw Napi::RangeError::New(env, fn + ": the outline needs 3 to 2048 points");
  if (params.ElementLength() != kMouthParamCount) throw Napi::RangeError::New(env, fn + ": params must hold " + std::to_string(kMouthParamCount) + " numbers");
  for (size_t i = 0; i < outline.ElementLength(); i++) {
    if (!std::isfinite(outline[i]) || std::fabs(outline[i]) > 1048576) throw Napi::RangeError::New(env, fn + ": an outline point is not a finite coordinate within 2^20 pixels");
  }
  for (size_t i = 0; i < kMouthParamCount; i++) {
    if (!std::isfinite(params[i])) throw Napi::RangeError::New(env, fn + ": a parameter is not a finite number");
  }
  // the figures the kernel divides by
  const MouthParams figures = MouthParamsFrom(params.Data());
  if (!(figures.mouthW >= 1) || !(figures.gapHeight >= 1) || !(figures.archHalf > 0) || !(figures.softness > 0)) {
    throw Napi::RangeError::New(env, fn + ": mouthW and gapHeight must be at least 1, archHalf and softness above 0");
  }
  const double x0 = params[0], x1 = params[1], y0 = params[2], y1 = params[3];
  if (x0 != std::floor(x0) || x1 != std::floor(x1) || y0 != std::floor(y0) || y1 != std::floor(y1) || x0 < 0 || y0 < 0 || x1 < x0 || y1 < y0 ||
      x1 > static_cast<double>(width - 1) || y1 > static_cast<double>(height - 1)) {
    throw Napi::RangeError::New(env, fn + ": the box must be whole pixels inside the frame");
  }
  return figures;
}

// Frames of an even size from 4 (a chroma plane then has the two samples a side bilinear reads need) to 16384.
inline void CheckFrameSize(Napi::Env env, const std::string& fn, int64_t width, int64_t height) {
  if (width < 4 || height < 4 || width % 2 != 0 || height % 2 != 0 || width > 16384 || height > 16384) {
    throw Napi::RangeError::New(env, fn + ": width and height must be even, 4..16384");
  }
}

}  // namespace avatar
