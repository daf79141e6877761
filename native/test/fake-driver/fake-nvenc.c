/* Stand-in for libnvidia-encode.so.1, built against the same nvEncodeAPI.h as the addon. Its "GPU
 * memory" is the stand-in libcuda's (host memory), and with HAVE_X264 it encodes for real: each picture
 * is read from the registered buffer and encoded by x264 into a valid H.264 stream (Annex B), so a test
 * can decode what came out. It checks what a driver checks (struct versions, the context, the order of
 * register, map, encode, lock, unlock, unmap) and logs each acquire and release so a test can see they
 * balance. FAKE_NVENC: "unsupported" (default; what an H100 answers), "h264", "hevc-only", "old-api"
 * (the driver offers API 9.0), "init-fails" (nvEncInitializeEncoder runs out of memory), "encode-fails"
 * (the fifth picture fails). */
#include <nvEncodeAPI.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_X264
#include <x264.h>
#endif

extern void* fake_cuda_current(void);
extern int fake_primary_context;

static const char* mode(void) { const char* m = getenv("FAKE_NVENC"); return m ? m : "unsupported"; }
static int is(const char* m) { return strcmp(mode(), m) == 0; }
static int in_context(void) { return fake_cuda_current() == &fake_primary_context; }

typedef struct { void* memory; uint32_t width, height, pitch; NV_ENC_BUFFER_FORMAT format; int mapped; } Resource;
typedef struct { uint8_t* data; uint32_t size, capacity; int locked, written; } Bitstream;
typedef struct {
  int initialised;
  uint32_t width, height, gop, pictures;
#ifdef HAVE_X264
  x264_t* x264;
#endif
} Encoder;

static NVENCSTATUS NVENCAPI open_session(NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS* p, void** enc) {
  if (p->version != NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER || p->apiVersion != NVENCAPI_VERSION) return NV_ENC_ERR_INVALID_VERSION;
  if (p->deviceType != NV_ENC_DEVICE_TYPE_CUDA || p->device != &fake_primary_context) return NV_ENC_ERR_INVALID_DEVICE;
  if (!in_context()) return NV_ENC_ERR_INVALID_CALL;
  if (is("unsupported")) return NV_ENC_ERR_UNSUPPORTED_DEVICE;
  *enc = calloc(1, sizeof(Encoder));
  fprintf(stderr, "fake-nvenc: open\n");
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI guid_count(void* enc, uint32_t* n) { (void)enc; *n = is("hevc-only") ? 1 : 2; return NV_ENC_SUCCESS; }
static NVENCSTATUS NVENCAPI guids(void* enc, GUID* out, uint32_t size, uint32_t* n) {
  (void)enc;
  uint32_t k = 0;
  if (k < size) out[k++] = NV_ENC_CODEC_HEVC_GUID;
  if (!is("hevc-only") && k < size) out[k++] = NV_ENC_CODEC_H264_GUID;
  *n = k;
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI destroy(void* e) {
  Encoder* enc = (Encoder*)e;
#ifdef HAVE_X264
  if (enc->x264) x264_encoder_close(enc->x264);
#endif
  free(enc);
  fprintf(stderr, "fake-nvenc: destroy\n");
  return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI preset_config(void* enc, GUID codec, GUID preset, NV_ENC_TUNING_INFO tuning, NV_ENC_PRESET_CONFIG* out) {
  (void)enc, (void)preset;
  if (out->version != NV_ENC_PRESET_CONFIG_VER || out->presetCfg.version != NV_ENC_CONFIG_VER) return NV_ENC_ERR_INVALID_VERSION;
  if (memcmp(&codec, &NV_ENC_CODEC_H264_GUID, sizeof codec) != 0 || tuning == NV_ENC_TUNING_INFO_UNDEFINED) return NV_ENC_ERR_INVALID_PARAM;
  /* what a P4 high-quality preset looks like: B-frames on, which the caller must turn off */
  out->presetCfg.gopLength = 250;
  out->presetCfg.frameIntervalP = 3;
  out->presetCfg.rcParams.rateControlMode = NV_ENC_PARAMS_RC_VBR;
  out->presetCfg.rcParams.averageBitRate = 5000000;
  out->presetCfg.encodeCodecConfig.h264Config.idrPeriod = 250;
  return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI initialize(void* e, NV_ENC_INITIALIZE_PARAMS* p) {
  Encoder* enc = (Encoder*)e;
  if (!in_context()) return NV_ENC_ERR_INVALID_CALL;
  if (p->version != NV_ENC_INITIALIZE_PARAMS_VER || !p->encodeConfig || p->encodeConfig->version != NV_ENC_CONFIG_VER) return NV_ENC_ERR_INVALID_VERSION;
  if (memcmp(&p->encodeGUID, &NV_ENC_CODEC_H264_GUID, sizeof(GUID)) != 0 || p->encodeWidth == 0 || p->encodeHeight == 0 || p->frameRateNum == 0 || p->frameRateDen == 0) return NV_ENC_ERR_INVALID_PARAM;
  const NV_ENC_CONFIG* c = p->encodeConfig;
  /* one buffer in flight: the caller must not ask for B-frames (pictures held back for later ones) */
  if (c->frameIntervalP != 1 || c->gopLength == 0 || c->rcParams.targetQuality == 0 || c->rcParams.targetQuality > 51) return NV_ENC_ERR_INVALID_PARAM;
  if (is("init-fails")) return NV_ENC_ERR_OUT_OF_MEMORY;
#ifdef HAVE_X264
  x264_param_t x;
  if (x264_param_default_preset(&x, "ultrafast", "zerolatency") < 0) return NV_ENC_ERR_GENERIC;
  x.i_width = (int)p->encodeWidth;
  x.i_height = (int)p->encodeHeight;
  x.i_csp = X264_CSP_I420;
  x.i_fps_num = p->frameRateNum;
  x.i_fps_den = p->frameRateDen;
  x.i_keyint_max = x.i_keyint_min = (int)c->gopLength;
  x.b_repeat_headers = 1;
  x.b_annexb = 1;
  x.i_threads = 1;
  x.i_log_level = X264_LOG_NONE;
  x.rc.i_rc_method = X264_RC_CRF;
  x.rc.f_rf_constant = c->rcParams.targetQuality;
  const NV_ENC_CONFIG_H264_VUI_PARAMETERS* vui = &c->encodeCodecConfig.h264Config.h264VUIParameters;
  if (vui->colourDescriptionPresentFlag) {
    x.vui.i_colorprim = (int)vui->colourPrimaries;
    x.vui.i_transfer = (int)vui->transferCharacteristics;
    x.vui.i_colmatrix = (int)vui->colourMatrix;
  }
  x.vui.b_fullrange = (int)vui->videoFullRangeFlag;
  enc->x264 = x264_encoder_open(&x);
  if (!enc->x264) return NV_ENC_ERR_INVALID_PARAM;
#endif
  enc->width = p->encodeWidth;
  enc->height = p->encodeHeight;
  enc->gop = c->gopLength;
  enc->initialised = 1;
  fprintf(stderr, "fake-nvenc: init %ux%u gop %u cq %u\n", p->encodeWidth, p->encodeHeight, c->gopLength, c->rcParams.targetQuality);
  return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI register_resource(void* e, NV_ENC_REGISTER_RESOURCE* r) {
  Encoder* enc = (Encoder*)e;
  if (!in_context()) return NV_ENC_ERR_INVALID_CALL;
  if (r->version != NV_ENC_REGISTER_RESOURCE_VER) return NV_ENC_ERR_INVALID_VERSION;
  if (!enc->initialised || r->resourceType != NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR || r->bufferUsage != NV_ENC_INPUT_IMAGE) return NV_ENC_ERR_INVALID_PARAM;
  if (r->bufferFormat != NV_ENC_BUFFER_FORMAT_IYUV || r->pitch % 4 != 0 || r->pitch < r->width || r->width != enc->width || r->height != enc->height || !r->resourceToRegister) return NV_ENC_ERR_INVALID_PARAM;
  Resource* res = calloc(1, sizeof(Resource));
  res->memory = r->resourceToRegister;
  res->width = r->width, res->height = r->height, res->pitch = r->pitch, res->format = r->bufferFormat;
  r->registeredResource = res;
  fprintf(stderr, "fake-nvenc: register\n");
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI unregister_resource(void* e, NV_ENC_REGISTERED_PTR r) {
  (void)e;
  if (((Resource*)r)->mapped) return NV_ENC_ERR_RESOURCE_REGISTER_FAILED; /* still mapped */
  free(r);
  fprintf(stderr, "fake-nvenc: unregister\n");
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI map_input(void* e, NV_ENC_MAP_INPUT_RESOURCE* m) {
  (void)e;
  if (!in_context()) return NV_ENC_ERR_INVALID_CALL;
  if (m->version != NV_ENC_MAP_INPUT_RESOURCE_VER) return NV_ENC_ERR_INVALID_VERSION;
  Resource* res = (Resource*)m->registeredResource;
  if (!res || res->mapped) return NV_ENC_ERR_RESOURCE_NOT_REGISTERED;
  res->mapped = 1;
  m->mappedResource = res;
  m->mappedBufferFmt = res->format;
  fprintf(stderr, "fake-nvenc: map\n");
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI unmap_input(void* e, NV_ENC_INPUT_PTR m) {
  (void)e;
  Resource* res = (Resource*)m;
  if (!res->mapped) return NV_ENC_ERR_RESOURCE_NOT_MAPPED;
  res->mapped = 0;
  fprintf(stderr, "fake-nvenc: unmap\n");
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI create_bitstream(void* e, NV_ENC_CREATE_BITSTREAM_BUFFER* b) {
  (void)e;
  if (b->version != NV_ENC_CREATE_BITSTREAM_BUFFER_VER) return NV_ENC_ERR_INVALID_VERSION;
  b->bitstreamBuffer = calloc(1, sizeof(Bitstream));
  fprintf(stderr, "fake-nvenc: bitstream create\n");
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI destroy_bitstream(void* e, NV_ENC_OUTPUT_PTR b) {
  (void)e;
  Bitstream* bs = (Bitstream*)b;
  if (bs->locked) return NV_ENC_ERR_LOCK_BUSY;
  free(bs->data);
  free(bs);
  fprintf(stderr, "fake-nvenc: bitstream destroy\n");
  return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI encode_picture(void* e, NV_ENC_PIC_PARAMS* p) {
  Encoder* enc = (Encoder*)e;
  if (!in_context()) return NV_ENC_ERR_INVALID_CALL;
  if (p->version != NV_ENC_PIC_PARAMS_VER) return NV_ENC_ERR_INVALID_VERSION;
  if (!enc->initialised) return NV_ENC_ERR_ENCODER_NOT_INITIALIZED;
  if (p->encodePicFlags & NV_ENC_PIC_FLAG_EOS) {
    fprintf(stderr, "fake-nvenc: eos\n");
    return NV_ENC_SUCCESS;
  }
  Resource* res = (Resource*)p->inputBuffer;
  Bitstream* bs = (Bitstream*)p->outputBitstream;
  if (!res || !res->mapped || !bs || bs->locked) return NV_ENC_ERR_INVALID_PARAM;
  if (p->inputWidth != enc->width || p->inputHeight != enc->height || p->inputPitch != res->pitch || p->bufferFmt != res->format || p->pictureStruct != NV_ENC_PIC_STRUCT_FRAME) return NV_ENC_ERR_INVALID_PARAM;
  if (is("encode-fails") && ++enc->pictures == 5) return NV_ENC_ERR_ENCODER_BUSY;
  bs->size = 0;
#ifdef HAVE_X264
  x264_picture_t in, out;
  x264_picture_init(&in);
  in.img.i_csp = X264_CSP_I420;
  in.img.i_plane = 3;
  uint8_t* y = (uint8_t*)res->memory;
  in.img.plane[0] = y;
  in.img.i_stride[0] = (int)res->pitch;
  in.img.plane[1] = y + (size_t)res->pitch * res->height;
  in.img.i_stride[1] = (int)res->pitch / 2;
  in.img.plane[2] = in.img.plane[1] + (size_t)(res->pitch / 2) * (res->height / 2);
  in.img.i_stride[2] = (int)res->pitch / 2;
  in.i_pts = (int64_t)p->inputTimeStamp;
  x264_nal_t* nals;
  int count;
  const int bytes = x264_encoder_encode(enc->x264, &nals, &count, &in, &out);
  if (bytes < 0) return NV_ENC_ERR_GENERIC;
  if (bytes > 0) {
    if ((uint32_t)bytes > bs->capacity) {
      bs->data = realloc(bs->data, (size_t)bytes);
      bs->capacity = (uint32_t)bytes;
    }
    memcpy(bs->data, nals[0].p_payload, (size_t)bytes); /* x264 lays a picture's NAL units out back to back */
    bs->size = (uint32_t)bytes;
  }
#endif
  bs->written = 1;
  return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI lock_bitstream(void* e, NV_ENC_LOCK_BITSTREAM* l) {
  (void)e;
  if (l->version != NV_ENC_LOCK_BITSTREAM_VER) return NV_ENC_ERR_INVALID_VERSION;
  Bitstream* bs = (Bitstream*)l->outputBitstream;
  if (!bs || bs->locked || !bs->written) return NV_ENC_ERR_INVALID_PARAM;
  bs->locked = 1;
  l->bitstreamBufferPtr = bs->data;
  l->bitstreamSizeInBytes = bs->size;
  fprintf(stderr, "fake-nvenc: lock\n");
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI unlock_bitstream(void* e, NV_ENC_OUTPUT_PTR b) {
  (void)e;
  Bitstream* bs = (Bitstream*)b;
  if (!bs->locked) return NV_ENC_ERR_INVALID_PARAM;
  bs->locked = 0;
  bs->written = 0;
  fprintf(stderr, "fake-nvenc: unlock\n");
  return NV_ENC_SUCCESS;
}
static const char* NVENCAPI last_error(void* e) { (void)e; return "fake-nvenc: see the stand-in's checks"; }

NVENCSTATUS NVENCAPI NvEncodeAPIGetMaxSupportedVersion(uint32_t* v) { *v = is("old-api") ? (9u << 4) : ((12u << 4) | 2u); return NV_ENC_SUCCESS; }
NVENCSTATUS NVENCAPI NvEncodeAPICreateInstance(NV_ENCODE_API_FUNCTION_LIST* fl) {
  if (fl->version != NV_ENCODE_API_FUNCTION_LIST_VER) return NV_ENC_ERR_INVALID_VERSION;
  fl->nvEncOpenEncodeSessionEx = open_session;
  fl->nvEncGetEncodeGUIDCount = guid_count;
  fl->nvEncGetEncodeGUIDs = guids;
  fl->nvEncDestroyEncoder = destroy;
  fl->nvEncGetEncodePresetConfigEx = preset_config;
  fl->nvEncInitializeEncoder = initialize;
  fl->nvEncRegisterResource = register_resource;
  fl->nvEncUnregisterResource = unregister_resource;
  fl->nvEncMapInputResource = map_input;
  fl->nvEncUnmapInputResource = unmap_input;
  fl->nvEncCreateBitstreamBuffer = create_bitstream;
  fl->nvEncDestroyBitstreamBuffer = destroy_bitstream;
  fl->nvEncEncodePicture = encode_picture;
  fl->nvEncLockBitstream = lock_bitstream;
  fl->nvEncUnlockBitstream = unlock_bitstream;
  fl->nvEncGetLastErrorString = last_error;
  return NV_ENC_SUCCESS;
}
