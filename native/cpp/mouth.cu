// The inner mouth's CUDA twin (mouth.cc on the CPU): a thread per 2x2 block of the mouth's box, running
// mouth_kernel.h's functions. Built to PTX by nvcc (--fmad=false) where nvcc exists and embedded in the addon.
#include "mouth_kernel.h"

extern "C" __global__ void avatar_mouth(avatar::MouthGrid g) {
  avatar::MouthCellThread(g, static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x), static_cast<int>(blockIdx.y * blockDim.y + threadIdx.y));
}
