/* Stand-in for libnvidia-ml.so.1 following NVML's C ABI, so the addon's loaded path can be run on a
 * machine without a GPU. FAKE_NVML selects the behaviour: "two-gpus" (default: GPU 0 readable, GPU 1
 * denies memory info) or "no-driver" (nvmlInit fails). FAKE_NVML_INIT_MS delays nvmlInit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { unsigned long long total, free, used; } mem_t;
static int devices[2];

static const char* mode(void) { const char* m = getenv("FAKE_NVML"); return m ? m : "two-gpus"; }

const char* nvmlErrorString(int rc) {
  switch (rc) {
    case 4: return "Insufficient Permissions";
    case 9: return "Driver Not Loaded";
    default: return "Unknown Error";
  }
}

int nvmlInit_v2(void) {
  const char* delay = getenv("FAKE_NVML_INIT_MS");
  if (delay) { struct timespec ts = {0, atol(delay) * 1000000L}; nanosleep(&ts, NULL); }
  return strcmp(mode(), "no-driver") == 0 ? 9 : 0;
}
int nvmlShutdown(void) { fprintf(stderr, "fake-nvml: shutdown\n"); return 0; }
int nvmlSystemGetDriverVersion(char* buf, unsigned len) { snprintf(buf, len, "999.1.2"); return 0; }
int nvmlSystemGetNVMLVersion(char* buf, unsigned len) { snprintf(buf, len, "99.999.1"); return 0; }
int nvmlDeviceGetCount_v2(unsigned* count) { *count = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void** handle) {
  if (i > 1) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
  *handle = &devices[i];
  return 0;
}
int nvmlDeviceGetName(void* handle, char* buf, unsigned len) {
  snprintf(buf, len, "Fake GPU %d", handle == &devices[0] ? 0 : 1);
  return 0;
}
int nvmlDeviceGetUUID(void* handle, char* buf, unsigned len) {
  /* GPU 0's is the stand-in CUDA device's (fake-cuda.cc: bytes 0..15), so the two name the same GPU */
  snprintf(buf, len, handle == &devices[0] ? "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f" : "GPU-ffffffff-0405-0607-0809-0a0b0c0d0e0f");
  return 0;
}
int nvmlDeviceGetMemoryInfo(void* handle, mem_t* m) {
  if (handle != &devices[0]) return 4;
  m->total = 80ULL << 30;  /* 81920 MiB */
  m->used = 1536ULL << 20; /* 1536 MiB */
  m->free = m->total - m->used;
  return 0;
}
