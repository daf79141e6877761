// openCudaRenderer(photo, width, height, triangles, rest, uuid) -> { ok: true, renderer, device } or
// { ok: false, reason }: never throws for a missing GPU, only for wrong arguments. renderer.frame(moved,
// active, activeCount, outline | null, params | null, out) draws one frame into `out` (throws with the
// CUDA call's name when the GPU fails mid-run); renderer.close() frees the GPU memory at once (also done
// when the object is collected); renderer.hostBuffers(n) gives n frames of page-locked host memory to draw
// into. Frames are drawn synchronously on the calling thread.
#include "cuda_addon.h"

#include <memory>
#include <string>
#include <vector>

#include "checks.h"
#include "cuda_render.h"

namespace avatar {
namespace {

class CudaRendererObject : public Napi::ObjectWrap<CudaRendererObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CudaRenderer",
                       {InstanceMethod<&CudaRendererObject::Frame>("frame"), InstanceMethod<&CudaRendererObject::HostBuffers>("hostBuffers"),
                        InstanceMethod<&CudaRendererObject::Close>("close")});
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
    if (info.Length() < 6 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() || !(mouth || noMouth) || !info[5].IsTypedArray()) {
      throw Napi::TypeError::New(env, "frame(moved, active, activeCount, outline | null, params | null, out)");
    }
    auto moved = info[0].As<Napi::TypedArray>();
    auto active = info[1].As<Napi::TypedArray>();
    auto out = info[5].As<Napi::TypedArray>();
    if (moved.TypedArrayType() != napi_float64_array || active.TypedArrayType() != napi_uint32_array || out.TypedArrayType() != napi_uint8_array) {
      throw Napi::TypeError::New(env, "frame: moved Float64Array, active Uint32Array, out Uint8Array");
    }
    auto movedArray = info[0].As<Napi::Float64Array>();
    auto activeArray = info[1].As<Napi::Uint32Array>();
    auto outArray = info[5].As<Napi::Uint8Array>();
    const int64_t count = info[2].As<Napi::Number>().Int64Value();
    if (movedArray.ElementLength() != 2 * points_) throw Napi::RangeError::New(env, "frame: moved must hold the mesh's points");
    if (outArray.ElementLength() != static_cast<size_t>(width_) * height_ * 3 / 2) throw Napi::RangeError::New(env, "frame: out must be one I420 frame");
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
                          mouth ? &figures : nullptr, outArray.Data(), why)) {
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
      Napi::ArrayBuffer memory = Napi::ArrayBuffer::New(env, buffer->data(), buffer->size(), [](Napi::Env, void*, PinnedBuffer* held) { delete held; }, buffer);
      made[i].release();  // owned by the ArrayBuffer's finalizer from here
      list.Set(static_cast<uint32_t>(i), Napi::Uint8Array::New(env, buffer->size(), memory, 0));
    }
    return list;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    renderer_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<CudaRenderer> renderer_;
  int width_ = 0, height_ = 0;
  size_t points_ = 0, triangleIndices_ = 0;
};

Napi::Value OpenCudaRenderer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsTypedArray() || !info[4].IsTypedArray() ||
      !info[5].IsString()) {
    throw Napi::TypeError::New(env, "openCudaRenderer(photo, width, height, triangles, rest, uuid)");
  }
  auto photo = info[0].As<Napi::TypedArray>();
  auto triangles = info[3].As<Napi::TypedArray>();
  auto rest = info[4].As<Napi::TypedArray>();
  if (photo.TypedArrayType() != napi_uint8_array || triangles.TypedArrayType() != napi_uint32_array || rest.TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(env, "openCudaRenderer: photo Uint8Array, triangles Uint32Array, rest Float64Array");
  }
  const int64_t width = info[1].As<Napi::Number>().Int64Value();
  const int64_t height = info[2].As<Napi::Number>().Int64Value();
  CheckFrameSize(env, "openCudaRenderer", width, height);
  auto photoArray = info[0].As<Napi::Uint8Array>();
  auto triangleArray = info[3].As<Napi::Uint32Array>();
  auto restArray = info[4].As<Napi::Float64Array>();
  if (photoArray.ElementLength() != static_cast<size_t>(width * height * 3 / 2)) throw Napi::RangeError::New(env, "openCudaRenderer: the photo must be one I420 frame");
  if (restArray.ElementLength() % 2 != 0 || restArray.ElementLength() == 0) throw Napi::RangeError::New(env, "openCudaRenderer: rest must hold x, y pairs");
  if (triangleArray.ElementLength() % 3 != 0) throw Napi::RangeError::New(env, "openCudaRenderer: triangles must hold corner indices in threes");
  CheckPoints(env, "openCudaRenderer", restArray);
  CheckTriangles(env, "openCudaRenderer", triangleArray, restArray.ElementLength() / 2);
  const CudaRendererSetup setup{photoArray.Data(), static_cast<int>(width), static_cast<int>(height), triangleArray.Data(), triangleArray.ElementLength(),
                                restArray.Data(), restArray.ElementLength() / 2, info[5].As<Napi::String>().Utf8Value()};
  Napi::Object result = Napi::Object::New(env);
  std::string why;
  std::unique_ptr<CudaRenderer> renderer = CudaRenderer::Open(setup, why);
  if (!renderer) {
    result.Set("ok", false);
    result.Set("reason", why);
    return result;
  }
  const std::string device = renderer->device();
  Napi::Object object = env.GetInstanceData<Napi::FunctionReference>()->New({});
  CudaRendererObject::Unwrap(object)->Adopt(std::move(renderer), setup.width, setup.height, setup.points, setup.triangleIndices);
  result.Set("ok", true);
  result.Set("renderer", object);
  result.Set("device", device);
  return result;
}

}  // namespace

void InitCudaRenderer(Napi::Env env, Napi::Object exports) {
  // per environment (each worker thread loads the addon afresh); freed with it
  env.SetInstanceData<Napi::FunctionReference>(new Napi::FunctionReference(Napi::Persistent(CudaRendererObject::Define(env))));
  exports.Set("openCudaRenderer", Napi::Function::New(env, OpenCudaRenderer, "openCudaRenderer"));
}

}  // namespace avatar
