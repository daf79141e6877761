// openCudaRenderer for JavaScript (see cuda_render.h).
#pragma once

#include <napi.h>

namespace avatar {

void InitCudaRenderer(Napi::Env env, Napi::Object exports);

}  // namespace avatar
