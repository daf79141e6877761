// H.264 encoding on the GPU's NVENC from I420 frames in GPU memory: the CUDA renderer's frame is copied
// device to device into the encoder's registered input (no trip through host memory), or a frame in
// host memory is uploaded. The bitstream (Annex B, SPS/PPS before every IDR) comes back per picture for
// ffmpeg to mux (-c:v copy). No B-frames: each picture's bytes come back with it; a picture may be copied
// in while the one before is being encoded (two input slots).
// libnvidia-encode.so.1 is loaded with dlopen; without the NVENC header the addon still builds and the
// encoder says why it cannot open.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda_driver.h"

namespace avatar {

// input buffers: one picture is staged (copied in) while the one before is encoded
constexpr int kNvencSlots = 2;

struct NvencSetup {
  int width;    // a multiple of 4 (the input's pitch must be)
  int height;   // even
  int fps;      // whole frames a second
  int quality;  // constant quality, 1 (best) to 51, as x264's crf
  int gop;      // a key frame (IDR) every this many pictures
};

class NvencEncoder {
 public:
  // Opens and initialises an H.264 session on `gpu`, or returns null with `why` (no encode library, an
  // old driver, a GPU without NVENC (H100, H200, A100), no H.264, out of memory...). Nothing is kept on failure.
  static std::unique_ptr<NvencEncoder> Open(std::shared_ptr<CudaContextHold> gpu, const NvencSetup& setup, std::string& why);
  ~NvencEncoder();
  NvencEncoder(const NvencEncoder&) = delete;
  NvencEncoder& operator=(const NvencEncoder&) = delete;

  // One picture from an I420 frame in host memory (uploaded) or in device memory on the same context
  // (copied on the device); its bytes are appended to `out`. False with `why` naming the failed call.
  bool EncodeHost(const uint8_t* frame, std::vector<uint8_t>& out, std::string& why);
  bool EncodeDevice(unsigned long long frame, std::vector<uint8_t>& out, std::string& why);
  // The same in two steps (slot 0 above), for a caller that encodes on another thread: Stage* copies the
  // frame into input slot `slot` (not one whose encode has not finished), EncodeSlot encodes it. The
  // session's calls are not thread-safe: one EncodeSlot at a time, in the order staged.
  bool StageHost(int slot, const uint8_t* frame, std::string& why);
  bool StageDevice(int slot, unsigned long long frame, std::string& why);
  bool EncodeSlot(int slot, std::vector<uint8_t>& out, std::string& why);
  // The end of the stream.
  bool Finish(std::vector<uint8_t>& out, std::string& why);

  const CudaContextHold& gpu() const;
  size_t frameBytes() const;

  struct State;

 private:
  explicit NvencEncoder(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace avatar
