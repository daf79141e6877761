// See nvenc_encode.h. Call order per picture, as the NVENC API requires: map the registered input,
// encode into the bitstream buffer, lock it (synchronous mode: waits for the picture), copy the bytes,
// unlock, unmap. Every acquire is undone on every path, failure included.
#include "nvenc_encode.h"

#include <cstring>
#include <mutex>

#include "dl.h"

#if defined(AVATAR_HAVE_NVENC_HEADER)
#include "nvenc_api.h"
#endif

namespace avatar {

#if defined(AVATAR_HAVE_NVENC_HEADER)

const NvencLibrary& NvencApi() {
  static NvencLibrary lib;
  static std::once_flag once;
  std::call_once(once, [] {
    std::memset(&lib.fns, 0, sizeof lib.fns);
    void* handle = OpenDriverLibrary("libnvidia-encode.so.1", lib.loadError);
    if (handle == nullptr) return;
    lib.found = true;
    using MaxVersionFn = NVENCSTATUS (*)(uint32_t*);
    using CreateFn = NVENCSTATUS (*)(NV_ENCODE_API_FUNCTION_LIST*);
    auto maxVersion = Symbol<MaxVersionFn>(handle, "NvEncodeAPIGetMaxSupportedVersion");
    auto create = Symbol<CreateFn>(handle, "NvEncodeAPICreateInstance");
    if (maxVersion == nullptr || create == nullptr) {
      lib.loadError = "libnvidia-encode.so.1 lacks NvEncodeAPICreateInstance";
      return;
    }
    uint32_t driverMax = 0;
    NVENCSTATUS status = maxVersion(&driverMax);
    const uint32_t wanted = (NVENCAPI_MAJOR_VERSION << 4) | NVENCAPI_MINOR_VERSION;
    if (status != NV_ENC_SUCCESS) {
      lib.loadError = NvencError("NvEncodeAPIGetMaxSupportedVersion", status);
      return;
    }
    if (driverMax < wanted) {
      lib.loadError = "the driver supports NVENC API " + std::to_string(driverMax >> 4) + "." + std::to_string(driverMax & 0xf) + ", the addon needs " +
                      std::to_string(NVENCAPI_MAJOR_VERSION) + "." + std::to_string(NVENCAPI_MINOR_VERSION);
      return;
    }
    lib.fns.version = NV_ENCODE_API_FUNCTION_LIST_VER;
    status = create(&lib.fns);
    const auto& f = lib.fns;
    if (status != NV_ENC_SUCCESS) {
      lib.loadError = NvencError("NvEncodeAPICreateInstance", status);
      return;
    }
    if (!f.nvEncOpenEncodeSessionEx || !f.nvEncDestroyEncoder || !f.nvEncGetEncodeGUIDCount || !f.nvEncGetEncodeGUIDs || !f.nvEncGetEncodePresetConfigEx ||
        !f.nvEncInitializeEncoder || !f.nvEncRegisterResource || !f.nvEncUnregisterResource || !f.nvEncMapInputResource || !f.nvEncUnmapInputResource ||
        !f.nvEncCreateBitstreamBuffer || !f.nvEncDestroyBitstreamBuffer || !f.nvEncEncodePicture || !f.nvEncLockBitstream || !f.nvEncUnlockBitstream) {
      lib.loadError = "libnvidia-encode.so.1 lacks entry points the encoder needs (driver too old?)";
      return;
    }
    lib.ok = true;
  });
  return lib;
}

void* OpenH264Session(const NvencLibrary& lib, void* context, const std::string& device, std::string& why) {
  const NV_ENCODE_API_FUNCTION_LIST& f = lib.fns;
  NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS params;
  std::memset(&params, 0, sizeof params);
  params.version = NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER;
  params.deviceType = NV_ENC_DEVICE_TYPE_CUDA;
  params.device = context;
  params.apiVersion = NVENCAPI_VERSION;
  void* session = nullptr;
  NVENCSTATUS status = f.nvEncOpenEncodeSessionEx(&params, &session);
  if (status != NV_ENC_SUCCESS) {
    // the driver may hand back a half-made session even on failure; it must still be destroyed
    if (session != nullptr) f.nvEncDestroyEncoder(session);
    why = device + " could not open an encode session (" + NvencError("nvEncOpenEncodeSessionEx", status) + ")";
    return nullptr;
  }
  uint32_t count = 0;
  bool h264 = false;
  status = f.nvEncGetEncodeGUIDCount(session, &count);
  if (status == NV_ENC_SUCCESS && count > 0) {
    std::vector<GUID> guids(count);
    uint32_t filled = 0;
    status = f.nvEncGetEncodeGUIDs(session, guids.data(), count, &filled);
    for (uint32_t i = 0; status == NV_ENC_SUCCESS && i < filled && i < count; i++) h264 = h264 || SameGuid(guids[i], NV_ENC_CODEC_H264_GUID);
  }
  if (status == NV_ENC_SUCCESS && h264) return session;
  f.nvEncDestroyEncoder(session);
  why = status != NV_ENC_SUCCESS ? NvencError("nvEncGetEncodeGUIDs", status) : "the encoder on " + device + " does not offer H.264";
  return nullptr;
}

struct NvencEncoder::State {
  std::shared_ptr<CudaContextHold> gpu;
  const NV_ENCODE_API_FUNCTION_LIST* fns = nullptr;
  void* session = nullptr;
  // two inputs, each with its own bitstream: one picture is staged while the other is encoded
  struct Slot {
    CUdeviceptr input = 0;
    NV_ENC_REGISTERED_PTR registered = nullptr;
    NV_ENC_OUTPUT_PTR bitstream = nullptr;
  };
  Slot slots[kNvencSlots];
  NvencSetup setup{};
  size_t frameBytes = 0;
  uint64_t pictures = 0;

  // "<call> returned NV_ENC_ERR_... (n): <the driver's words>"
  std::string Failed(const char* call, NVENCSTATUS status) const {
    std::string text = NvencError(call, status);
    if (session != nullptr && fns->nvEncGetLastErrorString != nullptr) {
      const char* detail = fns->nvEncGetLastErrorString(session);
      if (detail != nullptr && *detail != 0) text += std::string(": ") + detail;
    }
    return text;
  }

  // Called with the context current.
  void Release() {
    for (Slot& slot : slots) {
      if (session != nullptr) {
        if (slot.registered != nullptr) fns->nvEncUnregisterResource(session, slot.registered);
        if (slot.bitstream != nullptr) fns->nvEncDestroyBitstreamBuffer(session, slot.bitstream);
      }
      if (slot.input != 0) gpu->cu->memFree(slot.input);
      slot = Slot{};
    }
    if (session != nullptr) fns->nvEncDestroyEncoder(session);
    session = nullptr;
  }

  // Copies a frame into a slot's input with `copy(to, bytes)` (the context made current for it).
  template <typename Copy>
  bool Stage(int slot, std::string& why, const char* call, const char* what, Copy copy) {
    if (slot < 0 || slot >= kNvencSlots) {
      why = "no such slot";
      return false;
    }
    return gpu->InContext(why, [&]() {
      const CUresult rc = copy(slots[slot].input, frameBytes);
      if (rc != 0) why = CudaFailed(*gpu->cu, call, rc) + " (" + what + ")";
      return rc == 0;
    });
  }

  // The picture staged in a slot: mapped, encoded, its bytes appended to `out`, unmapped.
  bool EncodeInput(const Slot& slot, std::vector<uint8_t>& out, std::string& why) {
    const NV_ENC_OUTPUT_PTR bitstream = slot.bitstream;
    NV_ENC_MAP_INPUT_RESOURCE map;
    std::memset(&map, 0, sizeof map);
    map.version = NV_ENC_MAP_INPUT_RESOURCE_VER;
    map.registeredResource = slot.registered;
    NVENCSTATUS status = fns->nvEncMapInputResource(session, &map);
    if (status != NV_ENC_SUCCESS) {
      why = Failed("nvEncMapInputResource", status);
      return false;
    }
    NV_ENC_PIC_PARAMS pic;
    std::memset(&pic, 0, sizeof pic);
    pic.version = NV_ENC_PIC_PARAMS_VER;
    pic.inputWidth = static_cast<uint32_t>(setup.width);
    pic.inputHeight = static_cast<uint32_t>(setup.height);
    pic.inputPitch = static_cast<uint32_t>(setup.width);
    pic.inputBuffer = map.mappedResource;
    pic.outputBitstream = bitstream;
    pic.bufferFmt = map.mappedBufferFmt;
    pic.pictureStruct = NV_ENC_PIC_STRUCT_FRAME;
    pic.inputTimeStamp = pictures;
    pic.frameIdx = static_cast<uint32_t>(pictures);
    status = fns->nvEncEncodePicture(session, &pic);
    bool ok = status == NV_ENC_SUCCESS;
    // without B-frames every picture comes out at once; "need more input" would mean one is held back
    if (!ok) why = Failed("nvEncEncodePicture", status);
    if (ok) {
      NV_ENC_LOCK_BITSTREAM lock;
      std::memset(&lock, 0, sizeof lock);
      lock.version = NV_ENC_LOCK_BITSTREAM_VER;
      lock.outputBitstream = bitstream;
      status = fns->nvEncLockBitstream(session, &lock);
      if (status != NV_ENC_SUCCESS) {
        why = Failed("nvEncLockBitstream", status);
        ok = false;
      } else {
        const auto* bytes = static_cast<const uint8_t*>(lock.bitstreamBufferPtr);
        if (bytes != nullptr) out.insert(out.end(), bytes, bytes + lock.bitstreamSizeInBytes);
        status = fns->nvEncUnlockBitstream(session, bitstream);
        if (status != NV_ENC_SUCCESS) {
          why = Failed("nvEncUnlockBitstream", status);
          ok = false;
        }
      }
    }
    status = fns->nvEncUnmapInputResource(session, map.mappedResource);
    if (ok && status != NV_ENC_SUCCESS) {
      why = Failed("nvEncUnmapInputResource", status);
      ok = false;
    }
    if (ok) pictures++;
    return ok;
  }
};

std::unique_ptr<NvencEncoder> NvencEncoder::Open(std::shared_ptr<CudaContextHold> gpu, const NvencSetup& setup, std::string& why) {
  if (setup.width < 16 || setup.height < 16 || setup.width % 4 != 0 || setup.height % 2 != 0) {
    why = "NVENC needs a frame width that is a multiple of 4 and an even height, at least 16x16; the frames are " + std::to_string(setup.width) + "x" +
          std::to_string(setup.height);
    return nullptr;
  }
  if (setup.fps < 1 || setup.quality < 1 || setup.quality > 51 || setup.gop < 1) {
    why = "NVENC settings out of range (fps " + std::to_string(setup.fps) + ", quality " + std::to_string(setup.quality) + ", gop " + std::to_string(setup.gop) + ")";
    return nullptr;
  }
  const NvencLibrary& lib = NvencApi();
  if (!lib.ok) {
    why = lib.loadError;
    return nullptr;
  }
  const CudaDriver& cu = *gpu->cu;
  auto s = std::make_unique<State>();
  s->gpu = gpu;
  s->fns = &lib.fns;
  s->setup = setup;
  s->frameBytes = static_cast<size_t>(setup.width) * setup.height * 3 / 2;
  State* st = s.get();
  const auto& f = lib.fns;
  const bool ok = gpu->InContext(why, [&]() {
    void* session = OpenH264Session(lib, gpu->context, gpu->name, why);
    if (session == nullptr) return false;
    st->session = session;
    NVENCSTATUS status = NV_ENC_SUCCESS;
    NV_ENC_PRESET_CONFIG preset;
    std::memset(&preset, 0, sizeof preset);
    preset.version = NV_ENC_PRESET_CONFIG_VER;
    preset.presetCfg.version = NV_ENC_CONFIG_VER;
    status = f.nvEncGetEncodePresetConfigEx(session, NV_ENC_CODEC_H264_GUID, NV_ENC_PRESET_P4_GUID, NV_ENC_TUNING_INFO_HIGH_QUALITY, &preset);
    if (status != NV_ENC_SUCCESS) {
      why = st->Failed("nvEncGetEncodePresetConfigEx", status);
      return false;
    }
    NV_ENC_CONFIG config = preset.presetCfg;
    config.version = NV_ENC_CONFIG_VER;
    config.profileGUID = NV_ENC_H264_PROFILE_HIGH_GUID;
    config.gopLength = static_cast<uint32_t>(setup.gop);
    // one picture in flight: no B-frames, so every picture comes out when it goes in
    config.frameIntervalP = 1;
    // constant quality (the crf's scale); no bitrate target or cap
    config.rcParams.rateControlMode = NV_ENC_PARAMS_RC_VBR;
    config.rcParams.averageBitRate = 0;
    config.rcParams.maxBitRate = 0;
    config.rcParams.targetQuality = static_cast<uint8_t>(setup.quality);
    NV_ENC_CONFIG_H264& h = config.encodeCodecConfig.h264Config;
    h.idrPeriod = static_cast<uint32_t>(setup.gop);
    // SPS/PPS before every IDR: each fragment of a live stream starts decodable
    h.repeatSPSPPS = 1;
    h.chromaFormatIDC = 1;
    // BT.709, limited range: what the renderer draws and what the CPU path tags
    h.h264VUIParameters.videoSignalTypePresentFlag = 1;
    h.h264VUIParameters.videoFormat = 5;
    h.h264VUIParameters.videoFullRangeFlag = 0;
    h.h264VUIParameters.colourDescriptionPresentFlag = 1;
    h.h264VUIParameters.colourPrimaries = 1;
    h.h264VUIParameters.transferCharacteristics = 1;
    h.h264VUIParameters.colourMatrix = 1;

    NV_ENC_INITIALIZE_PARAMS init;
    std::memset(&init, 0, sizeof init);
    init.version = NV_ENC_INITIALIZE_PARAMS_VER;
    init.encodeGUID = NV_ENC_CODEC_H264_GUID;
    init.presetGUID = NV_ENC_PRESET_P4_GUID;
    init.tuningInfo = NV_ENC_TUNING_INFO_HIGH_QUALITY;
    init.encodeWidth = init.maxEncodeWidth = init.darWidth = static_cast<uint32_t>(setup.width);
    init.encodeHeight = init.maxEncodeHeight = init.darHeight = static_cast<uint32_t>(setup.height);
    init.frameRateNum = static_cast<uint32_t>(setup.fps);
    init.frameRateDen = 1;
    init.enablePTD = 1;
    init.encodeConfig = &config;
    status = f.nvEncInitializeEncoder(session, &init);
    if (status != NV_ENC_SUCCESS) {
      why = st->Failed("nvEncInitializeEncoder", status);
      return false;
    }
    for (State::Slot& slot : st->slots) {
      CUresult rc = cu.memAlloc(&slot.input, st->frameBytes);
      if (rc != 0) {
        slot.input = 0;
        why = CudaFailed(cu, "cuMemAlloc", rc) + " (the encoder's input, " + std::to_string(st->frameBytes >> 10) + " KiB)";
        return false;
      }
      NV_ENC_REGISTER_RESOURCE reg;
      std::memset(&reg, 0, sizeof reg);
      reg.version = NV_ENC_REGISTER_RESOURCE_VER;
      reg.resourceType = NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR;
      reg.width = static_cast<uint32_t>(setup.width);
      reg.height = static_cast<uint32_t>(setup.height);
      reg.pitch = static_cast<uint32_t>(setup.width);
      reg.resourceToRegister = reinterpret_cast<void*>(slot.input);
      reg.bufferFormat = NV_ENC_BUFFER_FORMAT_IYUV;
      reg.bufferUsage = NV_ENC_INPUT_IMAGE;
      status = f.nvEncRegisterResource(session, &reg);
      if (status != NV_ENC_SUCCESS) {
        why = st->Failed("nvEncRegisterResource", status);
        return false;
      }
      slot.registered = reg.registeredResource;
      NV_ENC_CREATE_BITSTREAM_BUFFER out;
      std::memset(&out, 0, sizeof out);
      out.version = NV_ENC_CREATE_BITSTREAM_BUFFER_VER;
      status = f.nvEncCreateBitstreamBuffer(session, &out);
      if (status != NV_ENC_SUCCESS) {
        why = st->Failed("nvEncCreateBitstreamBuffer", status);
        return false;
      }
      slot.bitstream = out.bitstreamBuffer;
    }
    return true;
  });
  if (!ok) {
    std::string ignored;
    gpu->InContext(ignored, [&]() {
      st->Release();
      return true;
    });
    return nullptr;
  }
  return std::unique_ptr<NvencEncoder>(new NvencEncoder(std::move(s)));
}

NvencEncoder::NvencEncoder(std::unique_ptr<State> state) : state_(std::move(state)) {}

NvencEncoder::~NvencEncoder() {
  std::string ignored;
  state_->gpu->InContext(ignored, [&]() {
    state_->Release();
    return true;
  });
}

const CudaContextHold& NvencEncoder::gpu() const { return *state_->gpu; }
size_t NvencEncoder::frameBytes() const { return state_->frameBytes; }

bool NvencEncoder::StageHost(int slot, const uint8_t* frame, std::string& why) {
  const CudaDriver& cu = *state_->gpu->cu;
  return state_->Stage(slot, why, "cuMemcpyHtoD", "a frame to the encoder", [&](CUdeviceptr to, size_t bytes) { return cu.memcpyHtoD(to, frame, bytes); });
}

bool NvencEncoder::StageDevice(int slot, unsigned long long frame, std::string& why) {
  const CudaDriver& cu = *state_->gpu->cu;
  return state_->Stage(slot, why, "cuMemcpyDtoD", "the drawn frame to the encoder", [&](CUdeviceptr to, size_t bytes) { return cu.memcpyDtoD(to, frame, bytes); });
}

bool NvencEncoder::EncodeSlot(int slot, std::vector<uint8_t>& out, std::string& why) {
  State& s = *state_;
  if (slot < 0 || slot >= kNvencSlots) {
    why = "no such slot";
    return false;
  }
  return s.gpu->InContext(why, [&]() { return s.EncodeInput(s.slots[slot], out, why); });
}

bool NvencEncoder::EncodeHost(const uint8_t* frame, std::vector<uint8_t>& out, std::string& why) {
  return StageHost(0, frame, why) && EncodeSlot(0, out, why);
}

bool NvencEncoder::EncodeDevice(unsigned long long frame, std::vector<uint8_t>& out, std::string& why) {
  return StageDevice(0, frame, why) && EncodeSlot(0, out, why);
}

bool NvencEncoder::Finish(std::vector<uint8_t>& out, std::string& why) {
  (void)out;  // no picture is ever held back (no B-frames): the end of stream only closes the session's stream
  State& s = *state_;
  return s.gpu->InContext(why, [&]() {
    NV_ENC_PIC_PARAMS eos;
    std::memset(&eos, 0, sizeof eos);
    eos.version = NV_ENC_PIC_PARAMS_VER;
    eos.encodePicFlags = NV_ENC_PIC_FLAG_EOS;
    const NVENCSTATUS status = s.fns->nvEncEncodePicture(s.session, &eos);
    if (status != NV_ENC_SUCCESS) why = s.Failed("nvEncEncodePicture (end of stream)", status);
    return status == NV_ENC_SUCCESS;
  });
}

#else  // built without nvEncodeAPI.h

struct NvencEncoder::State {
  std::shared_ptr<CudaContextHold> gpu;
};

std::unique_ptr<NvencEncoder> NvencEncoder::Open(std::shared_ptr<CudaContextHold>, const NvencSetup&, std::string& why) {
  why = "the addon was built without nvEncodeAPI.h (Debian: libffmpeg-nvenc-dev), so it has no NVENC encoder";
  return nullptr;
}
NvencEncoder::NvencEncoder(std::unique_ptr<State> state) : state_(std::move(state)) {}
NvencEncoder::~NvencEncoder() = default;
const CudaContextHold& NvencEncoder::gpu() const { return *state_->gpu; }
size_t NvencEncoder::frameBytes() const { return 0; }
bool NvencEncoder::EncodeHost(const uint8_t*, std::vector<uint8_t>&, std::string& why) { why = "no NVENC in this build"; return false; }
bool NvencEncoder::StageHost(int, const uint8_t*, std::string& why) { why = "no NVENC in this build"; return false; }
bool NvencEncoder::StageDevice(int, unsigned long long, std::string& why) { why = "no NVENC in this build"; return false; }
bool NvencEncoder::EncodeSlot(int, std::vector<uint8_t>&, std::string& why) { why = "no NVENC in this build"; return false; }
bool NvencEncoder::EncodeDevice(unsigned long long, std::vector<uint8_t>&, std::string& why) { why = "no NVENC in this build"; return false; }
bool NvencEncoder::Finish(std::vector<uint8_t>&, std::string& why) { why = "no NVENC in this build"; return false; }

#endif

}  // namespace avatar
