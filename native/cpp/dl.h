#pragma once

#include <dlfcn.h>

#include <cstring>
#include <string>

namespace avatar {

// dlopen a driver library and keep it for the life of the process: unloading NVIDIA's driver
// libraries while other threads may still hold state in them is not safe.
// On failure `why` says whether the file is missing or present but unusable.
inline void* OpenDriverLibrary(const char* soname, std::string& why) {
  void* handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (handle != nullptr) return handle;
  const char* err = dlerror();
  std::string text = err != nullptr ? err : "unknown dlopen error";
  if (text.find("No such file") != std::string::npos || text.find("cannot open shared object") != std::string::npos) {
    why = std::string(soname) + " not found";
  } else {
    why = std::string(soname) + " could not be loaded: " + text;
  }
  return nullptr;
}

template <typename Fn>
inline Fn Symbol(void* handle, const char* name) {
  return reinterpret_cast<Fn>(dlsym(handle, name));
}

}  // namespace avatar
