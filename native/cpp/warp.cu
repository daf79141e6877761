// The warp's CUDA twin (warp.cc on the CPU): each kernel is one thread function of warp_kernel.h, so the
// GPU runs the same arithmetic as the CPU and TypeScript. Per frame: map (a thread per active triangle),
// then per plane claim and draw (a block per triangle, a thread per row); see warp_kernel.h on why two
// passes. Built to PTX by nvcc (--fmad=false) where nvcc exists and embedded in the addon.
#include "warp_kernel.h"

extern "C" __global__ void avatar_warp_map(avatar::WarpGrid g) { avatar::WarpMapThread(g, blockIdx.x * blockDim.x + threadIdx.x); }

extern "C" __global__ void avatar_warp_claim(avatar::WarpGrid g, int plane) {
  avatar::WarpClaimThread(g, blockIdx.x, plane, static_cast<int>(blockIdx.y * blockDim.x + threadIdx.x));
}

extern "C" __global__ void avatar_warp_draw(avatar::WarpGrid g, int plane) {
  avatar::WarpDrawThread(g, blockIdx.x, plane, static_cast<int>(blockIdx.y * blockDim.x + threadIdx.x));
}
