#!/usr/bin/env bash
# Builds gpu-check (see gpu-check.cc) into $1 (default native/build/gpu-check): one binary, libstdc++
# linked in, that loads the NVIDIA libraries at run time, so it runs on a GPU machine with nothing
# installed. Needs the addon built first (npm run build:addon -w native), for its PTX.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
native="$(cd "$here/../.." && pwd)"
out="${1:-$native/build/gpu-check}"
ptx="$native/build/generated/cuda_ptx.cc"
[ -f "$ptx" ] || { echo "gpu-check: $ptx is missing: build the addon first (npm run build:addon -w native)" >&2; exit 1; }
nvenc=()
if [ -f /usr/include/ffnvcodec/nvEncodeAPI.h ]; then nvenc=(-isystem /usr/include/ffnvcodec -DAVATAR_HAVE_NVENC_HEADER); fi
c++ -O2 -std=c++17 -ffp-contract=off -Wall -I "$native/cpp" "${nvenc[@]}" -o "$out" "$here/gpu-check.cc" \
  "$native/cpp/warp.cc" "$native/cpp/mouth.cc" "$native/cpp/cuda_driver.cc" "$native/cpp/cuda_render.cc" \
  "$native/cpp/nvml.cc" "$native/cpp/nvenc.cc" "$native/cpp/nvenc_encode.cc" "$ptx" \
  -static-libstdc++ -static-libgcc -ldl -pthread
echo "$out"
