// The renderer's inner mouth for I420 frames (twin of packages/lipsync/src/render/mouth.ts).
#pragma once

#include <cstddef>
#include <cstdint>

namespace avatar {

// The figures one frame's mouth is drawn from, in the order of the block JavaScript hands over: the
// same list as MOUTH_PARAM_FIELDS in mouth.ts (the addon exports these names, and a test compares them).
#define AVATAR_MOUTH_PARAMS(X) \
  X(x0) X(x1) X(y0) X(y1) \
  X(centerX) X(top) X(bottom) X(gapHeight) X(mouthW) \
  X(teethH) X(lowerTeethH) X(archHalf) \
  X(mouthWidth) X(uxx) X(uxy) X(uyx) X(uyy) \
  X(teethR) X(teethG) X(teethB) X(cavityR) X(cavityG) X(cavityB) X(tongueR) X(tongueG) X(tongueB) X(tongue) \
  X(softness) X(grain) X(grainScale)

struct MouthParams {
#define AVATAR_FIELD(name) double name;
  AVATAR_MOUTH_PARAMS(AVATAR_FIELD)
#undef AVATAR_FIELD
};

#define AVATAR_COUNT(name) +1
constexpr size_t kMouthParamCount = 0 AVATAR_MOUTH_PARAMS(AVATAR_COUNT);
#undef AVATAR_COUNT

// Reads the block (kMouthParamCount numbers, in list order).
inline MouthParams MouthParamsFrom(const double* block) {
  MouthParams p{};
  size_t i = 0;
#define AVATAR_READ(name) p.name = block[i++];
  AVATAR_MOUTH_PARAMS(AVATAR_READ)
#undef AVATAR_READ
  return p;
}

// The field names in block order, for the addon to export.
inline const char* const* MouthParamNames() {
#define AVATAR_NAME(name) #name,
  static const char* const names[] = {AVATAR_MOUTH_PARAMS(AVATAR_NAME)};
#undef AVATAR_NAME
  return names;
}

// The inside of an open mouth drawn into an I420 frame: a closed outline (the inner lips, x, y pairs)
// filled with cavity, teeth and tongue shading, its edge blended over about a pixel; luma per pixel,
// chroma per 2x2 block by the share of it the mouth covers. The box p.x0..p.x1, p.y0..p.y1 must be
// whole pixels inside the frame (the addon checks).
struct MouthFrame {
  uint8_t* dst;
  int width;
  int height;
  const double* outline;
  size_t points;
  MouthParams p;
};

void MouthI420(const MouthFrame& frame);

// The same mouth drawn by the CUDA kernel's thread function run on the CPU (threads.cc).
void MouthI420Threads(const MouthFrame& frame);

}  // namespace avatar
