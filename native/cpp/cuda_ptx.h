// The renderer's CUDA kernels as PTX, embedded at build time (build/generated/cuda_ptx.cc, written by
// scripts/build-addon.mjs): none where nvcc was not there, with the reason in kPtxStatus.
#pragma once

#include <cstddef>

namespace avatar {

struct PtxModule {
  const char* name;  // "warp" (warp.cu), "mouth" (mouth.cu)
  const char* ptx;
};

extern const char* const kPtxStatus;
extern const PtxModule kPtxModules[];
extern const size_t kPtxModuleCount;
// the CUDA version of the nvcc that wrote the PTX, as cuDriverGetVersion counts (13000 for 13.0): the
// driver must be at least as new to compile it
extern const int kPtxCudaVersion;

}  // namespace avatar
