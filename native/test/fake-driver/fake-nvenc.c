/* Stand-in for libnvidia-encode.so.1 built against the same nvEncodeAPI.h as the addon.
 * FAKE_NVENC: "unsupported" (default; what an H100 answers), "h264", or "hevc-only". */
#include <nvEncodeAPI.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void* fake_cuda_current(void);
extern int fake_primary_context;
static int encoder;

static const char* mode(void) { const char* m = getenv("FAKE_NVENC"); return m ? m : "unsupported"; }

static NVENCSTATUS NVENCAPI open_session(NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS* p, void** enc) {
  if (p->version != NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER || p->apiVersion != NVENCAPI_VERSION) return NV_ENC_ERR_INVALID_VERSION;
  if (p->deviceType != NV_ENC_DEVICE_TYPE_CUDA || p->device != &fake_primary_context) return NV_ENC_ERR_INVALID_DEVICE;
  if (fake_cuda_current() != &fake_primary_context) return NV_ENC_ERR_INVALID_CALL;
  if (strcmp(mode(), "unsupported") == 0) return NV_ENC_ERR_UNSUPPORTED_DEVICE;
  *enc = &encoder;
  fprintf(stderr, "fake-nvenc: open\n");
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI guid_count(void* enc, uint32_t* n) { (void)enc; *n = strcmp(mode(), "h264") == 0 ? 2 : 1; return NV_ENC_SUCCESS; }
static NVENCSTATUS NVENCAPI guids(void* enc, GUID* out, uint32_t size, uint32_t* n) {
  (void)enc;
  uint32_t k = 0;
  if (k < size) out[k++] = NV_ENC_CODEC_HEVC_GUID;
  if (strcmp(mode(), "h264") == 0 && k < size) out[k++] = NV_ENC_CODEC_H264_GUID;
  *n = k;
  return NV_ENC_SUCCESS;
}
static NVENCSTATUS NVENCAPI destroy(void* enc) { (void)enc; fprintf(stderr, "fake-nvenc: destroy\n"); return NV_ENC_SUCCESS; }

NVENCSTATUS NVENCAPI NvEncodeAPIGetMaxSupportedVersion(uint32_t* v) { *v = (12u << 4) | 2u; return NV_ENC_SUCCESS; }
NVENCSTATUS NVENCAPI NvEncodeAPICreateInstance(NV_ENCODE_API_FUNCTION_LIST* fl) {
  if (fl->version != NV_ENCODE_API_FUNCTION_LIST_VER) return NV_ENC_ERR_INVALID_VERSION;
  fl->nvEncOpenEncodeSessionEx = open_session;
  fl->nvEncGetEncodeGUIDCount = guid_count;
  fl->nvEncGetEncodeGUIDs = guids;
  fl->nvEncDestroyEncoder = destroy;
  return NV_ENC_SUCCESS;
}
