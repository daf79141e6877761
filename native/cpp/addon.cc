// N-API surface. Both probes run on the libuv thread pool (NVML init alone can take 100 ms or more,
// a CUDA context far longer) and resolve promises; "no GPU" is a resolved value, never a rejection.
#include <napi.h>

#include "probes.h"

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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("queryNvml", Napi::Function::New(env, StartProbe<avatar::NvmlReport, avatar::QueryNvml>, "queryNvml"));
  exports.Set("probeNvenc", Napi::Function::New(env, StartProbe<avatar::NvencReport, avatar::ProbeNvenc>, "probeNvenc"));
  Napi::Object build = Napi::Object::New(env);
  build.Set("nvencHeader", avatar::NvencHeaderCompiled());
  build.Set("nvencApiVersion", avatar::NvencHeaderVersion());
  build.Set("napiVersion", NAPI_VERSION);
  exports.Set("buildInfo", build);
  return exports;
}

}  // namespace

NODE_API_MODULE(avatar_native, Init)
