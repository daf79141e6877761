// Marks the renderer's per-pixel functions as callable from both the CPU and a CUDA thread: nvcc
// compiles them for both (__host__ __device__), g++ as plain inline functions. Only what both
// compilers give alike is used inside: the C math functions of <math.h> (correctly rounded, so
// floor and sqrt agree everywhere), no std:: algorithms, no globals. Both builds turn off fused
// multiply-add (g++ -ffp-contract=off, nvcc --fmad=false) so every rounding matches TypeScript's.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define AVATAR_HD __host__ __device__ inline
#else
#define AVATAR_HD inline
#endif

namespace avatar {

// std::min / std::max's rule (the first argument when neither is smaller), which the TypeScript twins'
// Math.min / Math.max agree with for the finite values the kernels see (nvcc may compile them to
// min.f64 / max.f64, which differ only for NaN and the sign of a zero: neither reaches a pixel).
AVATAR_HD double Min2(double a, double b) { return b < a ? b : a; }
AVATAR_HD double Max2(double a, double b) { return a < b ? b : a; }
AVATAR_HD double Min3(double a, double b, double c) { return Min2(Min2(a, b), c); }
AVATAR_HD double Max3(double a, double b, double c) { return Max2(Max2(a, b), c); }

// JavaScript's conversion of a number to an unsigned byte: truncation, then modulo 256.
// (NaN stores 0 in JavaScript; casting it is undefined in C++, so it is caught first)
AVATAR_HD uint8_t ToByte(double v) { return v == v ? static_cast<uint8_t>(static_cast<int32_t>(v)) : 0; }

}  // namespace avatar
