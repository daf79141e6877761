// openCudaRenderer(photo, width, height, triangles, rest, uuid) -> { ok: true, renderer, device } or
// { ok: false, reason }: never throws for a missing GPU, only for wrong arguments. renderer.frame(moved,
// active, activeCount, outline | null, params | null, out) draws one frame into `out` (throws with the
// CUDA call's name when the GPU fails mid-run); renderer.close() frees the GPU memory at once (also done
// when the object is collected); renderer.hostBuffers(n) gives n frames of page-locked host memory to draw
// into. Frames are drawn synchronously on the calling thread.
#include "cuda_addon.h"

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "checks.h"
#include "cuda_render.h"
#include "nvenc_encode.h"

namespace avatar {
namespace {

// the classes' constructors, per environment (each worker thread loads the addon afresh)
struct Constructors {
  Napi::FunctionReference renderer;
  Napi::FunctionReference encoder;
};

class CudaRendererObject : public Napi::ObjectWrap<CudaRendererObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CudaRenderer",
                       {InstanceMethod<&CudaRendererObject::Frame>("frame"), InstanceMethod<&CudaRendererObject::HostBuffers>("hostBuffers"),
                        InstanceMethod<&CudaRendererObject::ReleaseHostBuffers>("releaseHostBuffers"), InstanceMethod<&CudaRendererObject::Close>("close")});
  }

  explicit CudaRendererObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaRendererObject>(info) {}

  void Adopt(std::unique_ptr<CudaRenderer> renderer, int width, int height, size_t points, size_t triangleIndices) {
    renderer_ = std::move(renderer);
    width_ = width;
    height_ = height;
    points_ = points;
    triangleIndices_ = triangleIndices;
  }

 private:
  Napi::Value Frame(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!renderer_) throw Napi::Error::New(env, "frame: the CUDA renderer is closed");
    const bool mouth = info.Length() >= 6 && info[3].IsTypedArray() && info[4].IsTypedArray();
    const bool noMouth = info.Length() >= 6 && info[3].IsNull() && info[4].IsNull();
    if (info.Length() < 6 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() || !(mouth || noMouth) || !(info[5].IsTypedArray() || info[5].IsNull())) {
      throw Napi::TypeError::New(env, "frame(moved, active, activeCount, outline | null, params | null, out | null)");
    }
    auto moved = info[0].As<Napi::TypedArray>();
    auto active = info[1].As<Napi::TypedArray>();
    // out null: the frame stays on the GPU for an encoder there (encodeFrom)
    const bool keep = info[5].IsNull();
    if (moved.TypedArrayType() != napi_float64_array || active.TypedArrayType() != napi_uint32_array || (!keep && info[5].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)) {
      throw Napi::TypeError::New(env, "frame: moved Float64Array, active Uint32Array, out Uint8Array");
    }
    auto movedArray = info[0].As<Napi::Float64Array>();
    auto activeArray = info[1].As<Napi::Uint32Array>();
    Napi::Uint8Array outArray;
    if (!keep) outArray = info[5].As<Napi::Uint8Array>();
    const int64_t count = info[2].As<Napi::Number>().Int64Value();
    if (movedArray.ElementLength() != 2 * points_) throw Napi::RangeError::New(env, "frame: moved must hold the mesh's points");
    if (!keep && outArray.ElementLength() != static_cast<size_t>(width_) * height_ * 3 / 2) throw Napi::RangeError::New(env, "frame: out must be one I420 frame");
    CheckPoints(env, "frame", movedArray);
    CheckActive(env, "frame", activeArray, count, triangleIndices_);
    // the GPU's lists hold each triangle once: more would write past them
    if (static_cast<size_t>(count) > triangleIndices_ / 3) throw Napi::RangeError::New(env, "frame: activeCount exceeds the mesh's triangles");
    MouthParams figures{};
    Napi::Float64Array outline;
    if (mouth) {
      outline = info[3].As<Napi::Float64Array>();
      auto params = info[4].As<Napi::Float64Array>();
      if (outline.TypedArrayType() != napi_float64_array || params.TypedArrayType() != napi_float64_array) throw Napi::TypeError::New(env, "frame: outline and params Float64Array");
      figures = CheckMouth(env, "frame", width_, height_, outline, params);
    }
    std::string why;
    if (!renderer_->Frame(movedArray.Data(), activeArray.Data(), static_cast<size_t>(count), mouth ? outline.Data() : nullptr, mouth ? outline.ElementLength() / 2 : 0,
                          mouth ? &figures : nullptr, keep ? nullptr : outArray.Data(), why)) {
      throw Napi::Error::New(env, "the GPU failed to draw a frame: " + why);
    }
    return env.Undefined();
  }

  // Frames' worth of page-locked host memory as Uint8Arrays over it (no copy): each is freed when
  // collected, not at close(), as ffmpeg's pipe may still be reading it. Throws with the reason when
  // the memory cannot be had; none is kept then.
  Napi::Value HostBuffers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!renderer_) throw Napi::Error::New(env, "hostBuffers: the CUDA renderer is closed");
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "hostBuffers(count)");
    const int64_t count = info[0].As<Napi::Number>().Int64Value();
    if (count < 1 || count > 64) throw Napi::RangeError::New(env, "hostBuffers: count must be 1 to 64");
    std::vector<std::unique_ptr<PinnedBuffer>> made;
    for (int64_t i = 0; i < count; i++) {
      std::string why;
      std::unique_ptr<PinnedBuffer> buffer = renderer_->HostBuffer(why);
      if (!buffer) throw Napi::Error::New(env, why);
      made.push_back(std::move(buffer));
    }
    Napi::Array list = Napi::Array::New(env, made.size());
    for (size_t i = 0; i < made.size(); i++) {
      PinnedBuffer* buffer = made[i].get();
      const size_t bytes = buffer->size();
      Napi::ArrayBuffer memory = Napi::ArrayBuffer::New(env, buffer->data(), bytes, [](Napi::Env, void*, PinnedBuffer* held) { delete held; }, buffer);
      made[i].release();  // owned by the ArrayBuffer's finalizer from here
      handedOut_.push_back({Napi::Weak(memory), buffer});
      list.Set(static_cast<uint32_t>(i), Napi::Uint8Array::New(env, bytes, memory, 0));
    }
    return list;
  }

  // releaseHostBuffers(): frees the page-locked buffers handed out, now rather than when collected (and
  // with the last, the context), detaching their ArrayBuffers: for when nothing reads them any more.
  Napi::Value ReleaseHostBuffers(const Napi::CallbackInfo& info) {
    for (auto& out : handedOut_) {
      // an empty reference: collected, and its finalizer has freed it; else it is alive and ours to free
      Napi::ArrayBuffer memory = out.memory.Value();
      if (memory.IsEmpty()) continue;
      // detached by someone else (a transfer): the memory is theirs now, and so is its finalizer
      if (memory.IsDetached()) continue;
      memory.Detach();
      out.buffer->Free();
    }
    handedOut_.clear();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    renderer_.reset();
    return info.Env().Undefined();
  }

 public:
  // the renderer behind a JavaScript object, when it is one and open
  static CudaRenderer* From(Napi::Env env, const Napi::Value& value) {
    if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(env.GetInstanceData<Constructors>()->renderer.Value())) return nullptr;
    return Unwrap(value.As<Napi::Object>())->renderer_.get();
  }

 private:
  std::unique_ptr<CudaRenderer> renderer_;
  struct HandedOut {
    Napi::Reference<Napi::ArrayBuffer> memory;  // weak
    PinnedBuffer* buffer;                       // deleted by the ArrayBuffer's finalizer
  };
  std::vector<HandedOut> handedOut_;
  int width_ = 0, height_ = 0;
  size_t points_ = 0, triangleIndices_ = 0;
};

// openCudaRenderer's arguments, checked, with the bytes copied (an asynchronous open reads them on
// another thread, after the caller's arrays may have changed)
struct RendererArgs {
  std::vector<uint8_t> photo;
  std::vector<uint32_t> triangles;
  std::vector<double> rest;
  int width = 0, height = 0;
  std::string uuid;
  CudaRendererSetup Setup() const { return {photo.data(), width, height, triangles.data(), triangles.size(), rest.data(), rest.size() / 2, uuid}; }
};

RendererArgs ReadRendererArgs(const Napi::CallbackInfo& info, const char* name) {
  Napi::Env env = info.Env();
  const std::string fn = name;
  if (info.Length() < 6 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsTypedArray() || !info[4].IsTypedArray() ||
      !info[5].IsString()) {
    throw Napi::TypeError::New(env, fn + "(photo, width, height, triangles, rest, uuid)");
  }
  auto photo = info[0].As<Napi::TypedArray>();
  auto triangles = info[3].As<Napi::TypedArray>();
  auto rest = info[4].As<Napi::TypedArray>();
  if (photo.TypedArrayType() != napi_uint8_array || triangles.TypedArrayType() != napi_uint32_array || rest.TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(env, fn + ": photo Uint8Array, triangles Uint32Array, rest Float64Array");
  }
  const int64_t width = info[1].As<Napi::Number>().Int64Value();
  const int64_t height = info[2].As<Napi::Number>().Int64Value();
  CheckFrameSize(env, name, width, height);
  auto photoArray = info[0].As<Napi::Uint8Array>();
  auto triangleArray = info[3].As<Napi::Uint32Array>();
  auto restArray = info[4].As<Napi::Float64Array>();
  if (photoArray.ElementLength() != static_cast<size_t>(width * height * 3 / 2)) throw Napi::RangeError::New(env, fn + ": the photo must be one I420 frame");
  if (restArray.ElementLength() % 2 != 0 || restArray.ElementLength() == 0) throw Napi::RangeError::New(env, fn + ": rest must hold x, y pairs");
  if (triangleArray.ElementLength() % 3 != 0) throw Napi::RangeError::New(env, fn + ": triangles must hold corner indices in threes");
  CheckPoints(env, name, restArray);
  CheckTriangles(env, name, triangleArray, restArray.ElementLength() / 2);
  RendererArgs args;
  args.photo.assign(photoArray.Data(), photoArray.Data() + photoArray.ElementLength());
  args.triangles.assign(triangleArray.Data(), triangleArray.Data() + triangleArray.ElementLength());
  args.rest.assign(restArray.Data(), restArray.Data() + restArray.ElementLength());
  args.width = static_cast<int>(width);
  args.height = static_cast<int>(height);
  args.uuid = info[5].As<Napi::String>().Utf8Value();
  return args;
}

// { ok: true, renderer, device } or { ok: false, reason }
Napi::Object RendererResult(Napi::Env env, std::unique_ptr<CudaRenderer> renderer, const RendererArgs& args, const std::string& why) {
  Napi::Object result = Napi::Object::New(env);
  if (!renderer) {
    result.Set("ok", false);
    result.Set("reason", why);
    return result;
  }
  const std::string device = renderer->device();
  Napi::Object object = env.GetInstanceData<Constructors>()->renderer.New({});
  CudaRendererObject::Unwrap(object)->Adopt(std::move(renderer), args.width, args.height, args.rest.size() / 2, args.triangles.size());
  result.Set("ok", true);
  result.Set("renderer", object);
  result.Set("device", device);
  return result;
}

Napi::Value OpenCudaRenderer(const Napi::CallbackInfo& info) {
  const RendererArgs args = ReadRendererArgs(info, "openCudaRenderer");
  std::string why;
  std::unique_ptr<CudaRenderer> renderer = CudaRenderer::Open(args.Setup(), why);
  return RendererResult(info.Env(), std::move(renderer), args, why);
}

// The same, opened on the thread pool: retaining the context, compiling the PTX (the driver's JIT, a
// second or more the first time on a machine) and the uploads happen off the JavaScript thread.
class OpenRendererWorker : public Napi::AsyncWorker {
 public:
  OpenRendererWorker(Napi::Env env, RendererArgs args) : Napi::AsyncWorker(env, "avatar:cuda-open"), deferred_(Napi::Promise::Deferred::New(env)), args_(std::move(args)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { renderer_ = CudaRenderer::Open(args_.Setup(), why_); }
  void OnOK() override { deferred_.Resolve(RendererResult(Env(), std::move(renderer_), args_, why_)); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  RendererArgs args_;
  std::unique_ptr<CudaRenderer> renderer_;
  std::string why_;
};

Napi::Value OpenCudaRendererAsync(const Napi::CallbackInfo& info) {
  auto* worker = new OpenRendererWorker(info.Env(), ReadRendererArgs(info, "openCudaRendererAsync"));  // deleted by N-API when done
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

class NvencEncoderObject : public Napi::ObjectWrap<NvencEncoderObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NvencEncoder",
                       {InstanceMethod<&NvencEncoderObject::Encode>("encode"), InstanceMethod<&NvencEncoderObject::EncodeFrom>("encodeFrom"),
                        InstanceMethod<&NvencEncoderObject::Stage>("stage"), InstanceMethod<&NvencEncoderObject::EncodeSlot>("encodeSlot"),
                        InstanceMethod<&NvencEncoderObject::Finish>("finish"), InstanceMethod<&NvencEncoderObject::Close>("close")});
  }

  explicit NvencEncoderObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NvencEncoderObject>(info) {}

  void Adopt(std::unique_ptr<NvencEncoder> encoder) { encoder_ = std::shared_ptr<NvencEncoder>(std::move(encoder)); }

 private:
  // Encodes a staged slot on the thread pool. It holds the encoder, so a close() meanwhile frees it
  // only once the picture is done.
  class EncodeWorker : public Napi::AsyncWorker {
   public:
    EncodeWorker(Napi::Env env, NvencEncoderObject* owner, std::shared_ptr<NvencEncoder> encoder, int slot)
        : Napi::AsyncWorker(env, "avatar:nvenc-encode"), deferred_(Napi::Promise::Deferred::New(env)), owner_(Napi::Persistent(owner->Value())), self_(owner),
          encoder_(std::move(encoder)), slot_(slot) {}
    Napi::Promise Promise() const { return deferred_.Promise(); }

   protected:
    void Execute() override {
      if (!encoder_->EncodeSlot(slot_, out_, why_)) SetError("NVENC failed to encode a frame: " + why_);
    }
    void OnOK() override {
      Done();
      // (a copy that fails, out of memory, still settles the promise)
      try {
        deferred_.Resolve(Bytes(Env(), out_));
      } catch (const Napi::Error& error) {
        deferred_.Reject(error.Value());
      }
    }
    void OnError(const Napi::Error& error) override {
      Done();
      deferred_.Reject(error.Value());
    }

   private:
    void Done() {
      self_->running_ = false;
      self_->busy_[slot_] = false;
      if (!self_->staged_.empty() && self_->staged_.front() == slot_) self_->staged_.pop_front();
    }
    Napi::Promise::Deferred deferred_;
    Napi::ObjectReference owner_;  // keeps the JavaScript object (and so self_) alive until done
    NvencEncoderObject* self_;
    std::shared_ptr<NvencEncoder> encoder_;
    int slot_;
    std::vector<uint8_t> out_;
    std::string why_;
  };

  NvencEncoder& Open(Napi::Env env, const char* call) {
    if (!encoder_) throw Napi::Error::New(env, std::string(call) + ": the NVENC encoder is closed");
    return *encoder_;
  }

  void Idle(Napi::Env env, const char* call) {
    if (running_) throw Napi::Error::New(env, std::string(call) + ": an encode is running on another thread; await it first");
  }

  // The open encoder, for a one-step call: nothing running, nothing staged (they use slot 0).
  NvencEncoder& Ready(Napi::Env env, const char* call) {
    NvencEncoder& encoder = Open(env, call);
    Idle(env, call);
    for (bool busy : busy_) {
      if (busy) throw Napi::Error::New(env, std::string(call) + ": frames are staged and not yet encoded; encode them first");
    }
    return encoder;
  }

  static Napi::Value Bytes(Napi::Env env, const std::vector<uint8_t>& bytes) { return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size()); }

  // a host frame of the encoder's size, or null when the argument is not one
  const uint8_t* HostFrame(Napi::Env env, const Napi::Value& value, const NvencEncoder& encoder, const char* call) {
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return nullptr;
    auto frame = value.As<Napi::Uint8Array>();
    if (frame.ElementLength() != encoder.frameBytes()) throw Napi::RangeError::New(env, std::string(call) + ": frame must be one I420 frame of the encoder's size");
    return frame.Data();
  }

  // the open CUDA renderer on the encoder's GPU, or null when the argument is not one
  static CudaRenderer* RendererOf(Napi::Env env, const Napi::Value& value, const NvencEncoder& encoder, const char* call) {
    CudaRenderer* renderer = CudaRendererObject::From(env, value);
    if (renderer == nullptr) return nullptr;
    if (renderer->context()->context != encoder.gpu().context) throw Napi::Error::New(env, std::string(call) + ": the renderer draws on another GPU than the encoder's");
    if (renderer->frameBytes() != encoder.frameBytes()) throw Napi::RangeError::New(env, std::string(call) + ": the renderer's frames are not the encoder's size");
    return renderer;
  }

  // encode(frame): one I420 frame from host memory; returns its H.264 bytes
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NvencEncoder& encoder = Ready(env, "encode");
    const uint8_t* frame = info.Length() >= 1 ? HostFrame(env, info[0], encoder, "encode") : nullptr;
    if (frame == nullptr) throw Napi::TypeError::New(env, "encode(frame: Uint8Array)");
    std::vector<uint8_t> out;
    std::string why;
    if (!encoder.EncodeHost(frame, out, why)) throw Napi::Error::New(env, "NVENC failed to encode a frame: " + why);
    return Bytes(env, out);
  }

  // encodeFrom(renderer): the frame the CUDA renderer last drew and left on the GPU, copied there
  Napi::Value EncodeFrom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NvencEncoder& encoder = Ready(env, "encodeFrom");
    CudaRenderer* renderer = info.Length() >= 1 ? RendererOf(env, info[0], encoder, "encodeFrom") : nullptr;
    if (renderer == nullptr) throw Napi::TypeError::New(env, "encodeFrom(renderer): an open CUDA renderer");
    std::vector<uint8_t> out;
    std::string why;
    if (!encoder.EncodeDevice(renderer->DeviceFrame(), out, why)) throw Napi::Error::New(env, "NVENC failed to encode a frame: " + why);
    return Bytes(env, out);
  }

  // stage(frame | renderer): copies a frame into the next input slot now (from host memory, or from
  // the renderer's frame on the GPU) and returns the slot, for encodeSlot
  Napi::Value Stage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NvencEncoder& encoder = Open(env, "stage");
    const uint8_t* frame = info.Length() >= 1 ? HostFrame(env, info[0], encoder, "stage") : nullptr;
    CudaRenderer* renderer = frame == nullptr && info.Length() >= 1 ? RendererOf(env, info[0], encoder, "stage") : nullptr;
    if (frame == nullptr && renderer == nullptr) throw Napi::TypeError::New(env, "stage(frame: Uint8Array | renderer)");
    if (busy_[next_]) throw Napi::Error::New(env, "stage: both input slots hold frames not yet encoded; await an encode first");
    std::string why;
    const int slot = next_;
    if (!(frame != nullptr ? encoder.StageHost(slot, frame, why) : encoder.StageDevice(slot, renderer->DeviceFrame(), why))) {
      throw Napi::Error::New(env, "NVENC failed to encode a frame: " + why);
    }
    busy_[slot] = true;
    staged_.push_back(slot);
    next_ = (slot + 1) % kNvencSlots;
    return Napi::Number::New(env, slot);
  }

  // encodeSlot(slot) -> Promise<Buffer>: the staged frame encoded on the thread pool, one at a time
  Napi::Value EncodeSlot(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Open(env, "encodeSlot");
    Idle(env, "encodeSlot");
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "encodeSlot(slot: number)");
    const int slot = info[0].As<Napi::Number>().Int32Value();
    if (slot < 0 || slot >= kNvencSlots || !busy_[slot]) throw Napi::RangeError::New(env, "encodeSlot: that slot holds no staged frame");
    // pictures go to NVENC in the order they were staged
    if (staged_.front() != slot) throw Napi::Error::New(env, "encodeSlot: an older staged frame must be encoded first");
    auto* worker = new EncodeWorker(env, this, encoder_, slot);  // deleted by N-API when done
    Napi::Promise promise = worker->Promise();
    running_ = true;
    worker->Queue();
    return promise;
  }

  Napi::Value Finish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    NvencEncoder& encoder = Ready(env, "finish");
    std::vector<uint8_t> out;
    std::string why;
    if (!encoder.Finish(out, why)) throw Napi::Error::New(env, "NVENC failed to end the stream: " + why);
    return Bytes(env, out);
  }

  // Frees the session and its GPU memory now, or, with an encode running, as soon as it is done.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    encoder_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<NvencEncoder> encoder_;
  bool busy_[kNvencSlots] = {};
  std::deque<int> staged_;  // staged slots, oldest first
  int next_ = 0;
  bool running_ = false;
};

// openNvencEncoder(width, height, fps, quality, gop, uuid) -> { ok: true, encoder, device } | { ok: false, reason }
Napi::Value OpenNvencEncoder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (size_t i = 0; i < 5; i++) {
    if (info.Length() < 6 || !info[i].IsNumber()) throw Napi::TypeError::New(env, "openNvencEncoder(width, height, fps, quality, gop, uuid)");
  }
  if (!info[5].IsString()) throw Napi::TypeError::New(env, "openNvencEncoder(width, height, fps, quality, gop, uuid)");
  const int64_t width = info[0].As<Napi::Number>().Int64Value(), height = info[1].As<Napi::Number>().Int64Value();
  CheckFrameSize(env, "openNvencEncoder", width, height);
  const NvencSetup setup{static_cast<int>(width), static_cast<int>(height), info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Int32Value(),
                         info[4].As<Napi::Number>().Int32Value()};
  Napi::Object result = Napi::Object::New(env);
  const auto refuse = [&](const std::string& why) {
    result.Set("ok", false);
    result.Set("reason", why);
    return result;
  };
  const CudaDriver& cu = Cuda();
  if (cu.lib == nullptr) return refuse(cu.loadError + " (no NVIDIA driver)");
  if (!cu.HasContexts() || !cu.memAlloc || !cu.memFree || !cu.memcpyHtoD || !cu.memcpyDtoD) return refuse("libcuda.so.1 lacks driver API functions the encoder needs (driver too old?)");
  std::string why;
  std::shared_ptr<CudaContextHold> gpu = RetainGpu(cu, info[5].As<Napi::String>().Utf8Value(), why);
  if (!gpu) return refuse(why);
  std::unique_ptr<NvencEncoder> encoder = NvencEncoder::Open(gpu, setup, why);
  if (!encoder) return refuse(why);
  Napi::Object object = env.GetInstanceData<Constructors>()->encoder.New({});
  NvencEncoderObject::Unwrap(object)->Adopt(std::move(encoder));
  result.Set("ok", true);
  result.Set("encoder", object);
  result.Set("device", gpu->name);
  return result;
}

}  // namespace

void InitCudaRenderer(Napi::Env env, Napi::Object exports) {
  // per environment (each worker thread loads the addon afresh); freed with it
  auto* constructors = new Constructors();
  constructors->renderer = Napi::Persistent(CudaRendererObject::Define(env));
  constructors->encoder = Napi::Persistent(NvencEncoderObject::Define(env));
  env.SetInstanceData<Constructors>(constructors);
  exports.Set("openCudaRenderer", Napi::Function::New(env, OpenCudaRenderer, "openCudaRenderer"));
  exports.Set("openCudaRendererAsync", Napi::Function::New(env, OpenCudaRendererAsync, "openCudaRendererAsync"));
  exports.Set("openNvencEncoder", Napi::Function::New(env, OpenNvencEncoder, "openNvencEncoder"));
}

}  // namespace avatar
