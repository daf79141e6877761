/* Stand-in for libcuda.so.1: one device named "Fake GPU 0" and a primary context whose address the
 * fake encoder checks. It logs retain/release so the test can see they balance. */
#include <stdio.h>
#include <string.h>

int fake_primary_context; /* its address is the CUcontext */
static void* current;

int cuInit(unsigned flags) { (void)flags; return 0; }
int cuDeviceGetCount(int* n) { *n = 1; return 0; }
int cuDeviceGet(int* dev, int ordinal) { *dev = ordinal; return ordinal == 0 ? 0 : 101; }
int cuDeviceGetName(char* name, int len, int dev) { (void)dev; snprintf(name, (size_t)len, "Fake GPU 0"); return 0; }
int cuDevicePrimaryCtxRetain(void** ctx, int dev) { (void)dev; *ctx = &fake_primary_context; fprintf(stderr, "fake-cuda: retain\n"); return 0; }
int cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; fprintf(stderr, "fake-cuda: release\n"); return 0; }
int cuCtxPushCurrent_v2(void* ctx) { current = ctx; return 0; }
int cuCtxPopCurrent_v2(void** ctx) { *ctx = current; current = NULL; return 0; }
int cuGetErrorName(int rc, const char** name) { *name = rc == 0 ? "CUDA_SUCCESS" : "CUDA_ERROR_UNKNOWN"; return 0; }
void* fake_cuda_current(void) { return current; }
