// N-API surface. Both probes run on the libuv thread pool (NVML init alone can take 100 ms or more,
// a CUDA context far longer) and resolve promises; "no GPU" is a resolved value, never a rejection.
#include <napi.h>

#include "checks.h"
#include "cuda_ptx.h"
#include "cuda_addon.h"
#include "probes.h"
#include "mouth.h"
#include "warp.h"

#include <cmath>
#include <string>

namespace {

Napi::Object ToJs(Napi::Env env, const avatar::NvmlReport& r) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", r.ok);
  out.Set("libraryFound", r.libraryFound);
  out.Set("reason", r.reason);
  out.Set("driverVersion", r.driverVersion);
  out.Set("nvmlVersion", r.nvmlVersion);
  Napi::Array devices = Napi::Array::New(env, r.devices.size());
  for (size_t i = 0; i < r.devices.size(); ++i) {
    const avatar::NvmlDevice& d = r.devices[i];
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", d.index);
    dev.Set("name", d.name);
    dev.Set("uuid", d.uuid);
    // Byte counts stay exact as doubles up to 8 PiB.
    dev.Set("totalBytes", static_cast<double>(d.totalBytes));
    dev.Set("usedBytes", static_cast<double>(d.usedBytes));
    dev.Set("freeBytes", static_cast<double>(d.freeBytes));
    dev.Set("error", d.error);
    devices.Set(static_cast<uint32_t>(i), dev);
  }
  out.Set("devices", devices);
  return out;
}

Napi::Object ToJs(Napi::Env env, const avatar::NvencReport& r) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("available", r.available);
  out.Set("reason", r.reason);
  out.Set("cudaFound", r.cudaFound);
  out.Set("encodeLibraryFound", r.encodeLibraryFound);
  out.Set("sessionTried", r.sessionTried);
  out.Set("device", r.device);
  return out;
}

// Runs `Probe` off the JS thread and settles a promise with its report.
template <typename Report, Report (*Probe)()>
class ProbeWorker : public Napi::AsyncWorker {
 public:
  explicit ProbeWorker(Napi::Env env) : Napi::AsyncWorker(env, "avatar:gpu-probe"), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { report_ = Probe(); }
  void OnOK() override { deferred_.Resolve(ToJs(Env(), report_)); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Report report_;
};

template <typename Report, Report (*Probe)()>
Napi::Value StartProbe(const Napi::CallbackInfo& info) {
  auto* worker = new ProbeWorker<Report, Probe>(info.Env());  // deleted by N-API after OnOK/OnError
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// warpI420(src, dst, width, height, moved, rest, triangles, active, activeCount): synchronous, since a
// frame takes about a millisecond and the caller draws frames one after another anyway. Every
// size is checked here, so a wrong argument is a TypeError/RangeError, never a read out of bounds.
template <void (*Draw)(const avatar::WarpFrame&)>
Napi::Value WarpWith(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber() ||
      !info[4].IsTypedArray() || !info[5].IsTypedArray() || !info[6].IsTypedArray() || !info[7].IsTypedArray() || !info[8].IsNumber()) {
    throw Napi::TypeError::New(env, "warpI420(src, dst, width, height, moved, rest, triangles, active, activeCount)");
  }
  auto src = info[0].As<Napi::Uint8Array>();
  auto dst = info[1].As<Napi::Uint8Array>();
  const int64_t width = info[2].As<Napi::Number>().Int64Value();
  const int64_t height = info[3].As<Napi::Number>().Int64Value();
  auto moved = info[4].As<Napi::Float64Array>();
  auto rest = info[5].As<Napi::Float64Array>();
  auto triangles = info[6].As<Napi::Uint32Array>();
  auto active = info[7].As<Napi::Uint32Array>();
  const int64_t count = info[8].As<Napi::Number>().Int64Value();
  if (src.TypedArrayType() != napi_uint8_array || dst.TypedArrayType() != napi_uint8_array || moved.TypedArrayType() != napi_float64_array ||
      rest.TypedArrayType() != napi_float64_array || triangles.TypedArrayType() != napi_uint32_array || active.TypedArrayType() != napi_uint32_array) {
    throw Napi::TypeError::New(env, "warpI420: src/dst Uint8Array, moved/rest Float64Array, triangles/active Uint32Array");
  }
  // at least 4: a chroma plane then has two samples a side, which bilinear sampling needs
  if (width < 4 || height < 4 || width % 2 != 0 || height % 2 != 0 || width > 16384 || height > 16384) {
    throw Napi::RangeError::New(env, "warpI420: width and height must be even, 4..16384");
  }
  const size_t frameBytes = static_cast<size_t>(width * height * 3 / 2);
  if (src.ElementLength() != frameBytes || dst.ElementLength() != frameBytes) throw Napi::RangeError::New(env, "warpI420: src and dst must be one I420 frame");
  if (moved.ElementLength() != rest.ElementLength() || moved.ElementLength() % 2 != 0) throw Napi::RangeError::New(env, "warpI420: moved and rest differ in length");
  avatar::CheckPoints(env, "warpI420", moved);
  avatar::CheckPoints(env, "warpI420", rest);
  avatar::CheckTriangles(env, "warpI420", triangles, moved.ElementLength() / 2);
  avatar::CheckActive(env, "warpI420", active, count, triangles.ElementLength());
  Draw({src.Data(), dst.Data(), static_cast<int>(width), static_cast<int>(height), moved.Data(), rest.Data(), triangles.Data(), active.Data(),
                    static_cast<size_t>(count)});
  return env.Undefined();
}

// mouthI420(dst, width, height, outline, params): params is the block of mouth.h's AVATAR_MOUTH_PARAMS,
// in list order (exported as mouthParamFields).
template <void (*Draw)(const avatar::MouthFrame&)>
Napi::Value MouthWith(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsTypedArray() || !info[4].IsTypedArray()) {
    throw Napi::TypeError::New(env, "mouthI420(dst, width, height, outline, params)");
  }
  auto dst = info[0].As<Napi::Uint8Array>();
  const int64_t width = info[1].As<Napi::Number>().Int64Value();
  const int64_t height = info[2].As<Napi::Number>().Int64Value();
  auto outline = info[3].As<Napi::Float64Array>();
  auto params = info[4].As<Napi::Float64Array>();
  if (dst.TypedArrayType() != napi_uint8_array || outline.TypedArrayType() != napi_float64_array || params.TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(env, "mouthI420: dst Uint8Array, outline and params Float64Array");
  }
  if (width < 4 || height < 4 || width % 2 != 0 || height % 2 != 0 || width > 16384 || height > 16384) {
    throw Napi::RangeError::New(env, "mouthI420: width and height must be even, 4..16384");
  }
  if (dst.ElementLength() != static_cast<size_t>(width * height * 3 / 2)) throw Napi::RangeError::New(env, "mouthI420: dst must be one I420 frame");
  const avatar::MouthParams figures = avatar::CheckMouth(env, "mouthI420", width, height, outline, params);
  avatar::MouthFrame frame{dst.Data(), static_cast<int>(width), static_cast<int>(height), outline.Data(), outline.ElementLength() / 2,
                           figures};
  Draw(frame);
  return env.Undefined();
}

// What PTX the addon carries: each module's name, size and kernel entry points, and how it was built.
Napi::Object CudaKernels(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("status", avatar::kPtxStatus);
  Napi::Array modules = Napi::Array::New(env, avatar::kPtxModuleCount);
  for (size_t i = 0; i < avatar::kPtxModuleCount; i++) {
    const std::string ptx = avatar::kPtxModules[i].ptx;
    Napi::Array entries = Napi::Array::New(env);
    const std::string mark = ".entry ";
    for (size_t at = ptx.find(mark); at != std::string::npos; at = ptx.find(mark, at + 1)) {
      const size_t start = at + mark.size();
      entries.Set(entries.Length(), ptx.substr(start, ptx.find('(', start) - start));
    }
    Napi::Object module = Napi::Object::New(env);
    module.Set("name", avatar::kPtxModules[i].name);
    module.Set("bytes", static_cast<double>(ptx.size()));
    module.Set("entries", entries);
    modules.Set(static_cast<uint32_t>(i), module);
  }
  out.Set("modules", modules);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("queryNvml", Napi::Function::New(env, StartProbe<avatar::NvmlReport, avatar::QueryNvml>, "queryNvml"));
  exports.Set("probeNvenc", Napi::Function::New(env, StartProbe<avatar::NvencReport, avatar::ProbeNvenc>, "probeNvenc"));
  exports.Set("warpI420", Napi::Function::New(env, WarpWith<avatar::WarpI420>, "warpI420"));
  exports.Set("mouthI420", Napi::Function::New(env, MouthWith<avatar::MouthI420>, "mouthI420"));
  exports.Set("warpI420Threads", Napi::Function::New(env, WarpWith<avatar::WarpI420Threads>, "warpI420Threads"));
  exports.Set("mouthI420Threads", Napi::Function::New(env, MouthWith<avatar::MouthI420Threads>, "mouthI420Threads"));
  exports.Set("cudaKernels", CudaKernels(env));
  avatar::InitCudaRenderer(env, exports);
  Napi::Array fields = Napi::Array::New(env, avatar::kMouthParamCount);
  for (size_t i = 0; i < avatar::kMouthParamCount; i++) fields.Set(static_cast<uint32_t>(i), avatar::MouthParamNames()[i]);
  exports.Set("mouthParamFields", fields);
  Napi::Object build = Napi::Object::New(env);
  build.Set("nvencHeader", avatar::NvencHeaderCompiled());
  build.Set("nvencApiVersion", avatar::NvencHeaderVersion());
  build.Set("napiVersion", NAPI_VERSION);
  exports.Set("buildInfo", build);
  return exports;
}

}  // namespace

NODE_API_MODULE(avatar_native, Init)
