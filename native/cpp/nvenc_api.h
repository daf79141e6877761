// The NVENC API's status names and GUID comparison, shared by the probe (nvenc.cc) and the encoder
// (nvenc_encode.cc). Only with the header (Debian: libffmpeg-nvenc-dev).
#pragma once

#include <nvEncodeAPI.h>

#include <cstring>
#include <string>

namespace avatar {

inline const char* NvencStatusName(NVENCSTATUS status) {
  switch (status) {
    case NV_ENC_SUCCESS: return "NV_ENC_SUCCESS";
    case NV_ENC_ERR_NO_ENCODE_DEVICE: return "NV_ENC_ERR_NO_ENCODE_DEVICE";
    case NV_ENC_ERR_UNSUPPORTED_DEVICE: return "NV_ENC_ERR_UNSUPPORTED_DEVICE";
    case NV_ENC_ERR_INVALID_ENCODERDEVICE: return "NV_ENC_ERR_INVALID_ENCODERDEVICE";
    case NV_ENC_ERR_INVALID_DEVICE: return "NV_ENC_ERR_INVALID_DEVICE";
    case NV_ENC_ERR_DEVICE_NOT_EXIST: return "NV_ENC_ERR_DEVICE_NOT_EXIST";
    case NV_ENC_ERR_INVALID_PTR: return "NV_ENC_ERR_INVALID_PTR";
    case NV_ENC_ERR_INVALID_PARAM: return "NV_ENC_ERR_INVALID_PARAM";
    case NV_ENC_ERR_INVALID_CALL: return "NV_ENC_ERR_INVALID_CALL";
    case NV_ENC_ERR_OUT_OF_MEMORY: return "NV_ENC_ERR_OUT_OF_MEMORY";
    case NV_ENC_ERR_INVALID_VERSION: return "NV_ENC_ERR_INVALID_VERSION";
    case NV_ENC_ERR_GENERIC: return "NV_ENC_ERR_GENERIC";
    case NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY: return "NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY";
    case NV_ENC_ERR_UNIMPLEMENTED: return "NV_ENC_ERR_UNIMPLEMENTED";
    case NV_ENC_ERR_ENCODER_BUSY: return "NV_ENC_ERR_ENCODER_BUSY";
    case NV_ENC_ERR_ENCODER_NOT_INITIALIZED: return "NV_ENC_ERR_ENCODER_NOT_INITIALIZED";
    case NV_ENC_ERR_NEED_MORE_INPUT: return "NV_ENC_ERR_NEED_MORE_INPUT";
    case NV_ENC_ERR_LOCK_BUSY: return "NV_ENC_ERR_LOCK_BUSY";
    case NV_ENC_ERR_MAP_FAILED: return "NV_ENC_ERR_MAP_FAILED";
    case NV_ENC_ERR_RESOURCE_REGISTER_FAILED: return "NV_ENC_ERR_RESOURCE_REGISTER_FAILED";
    case NV_ENC_ERR_RESOURCE_NOT_REGISTERED: return "NV_ENC_ERR_RESOURCE_NOT_REGISTERED";
    case NV_ENC_ERR_RESOURCE_NOT_MAPPED: return "NV_ENC_ERR_RESOURCE_NOT_MAPPED";
    default: return "NVENC error";
  }
}

inline std::string NvencError(const char* call, NVENCSTATUS status) {
  return std::string(call) + " returned " + NvencStatusName(status) + " (" + std::to_string(static_cast<int>(status)) + ")";
}

// libnvidia-encode.so.1 and its function list, loaded once for the life of the process (nvenc_encode.cc):
// `found` the library file, `ok` a driver new enough with every entry point the encoder calls.
struct NvencLibrary {
  bool found = false;
  bool ok = false;
  std::string loadError;  // why not ok
  NV_ENCODE_API_FUNCTION_LIST fns;
};
const NvencLibrary& NvencApi();

// Opens an encode session on `context` (current on this thread) and checks that it offers H.264: the
// session, or null with `why` ("<device> could not open an encode session (...)", "the encoder on
// <device> does not offer H.264", or the GUID query's failure). The caller destroys the session.
void* OpenH264Session(const NvencLibrary& lib, void* context, const std::string& device, std::string& why);

inline bool SameGuid(const GUID& a, const GUID& b) {
  return a.Data1 == b.Data1 && a.Data2 == b.Data2 && a.Data3 == b.Data3 && std::memcmp(a.Data4, b.Data4, sizeof a.Data4) == 0;
}

}  // namespace avatar
