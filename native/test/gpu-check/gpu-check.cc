// gpu-check: the GPU path checked on a real NVIDIA GPU by one self-contained program (no Node, no npm,
// nothing downloaded): built here by build.sh, carried to a machine with a GPU and run there. It prints
// one JSON object:
//   nvml     what NVML reports per GPU (compare with `nvidia-smi --query-gpu=...` run beside it);
//   nvenc    whether an encode session opens, and why not (an H100 or H200 has none);
//   parity   the CUDA renderer's frames against the CPU kernels', byte for byte, over N frames of a
//            textured photo warped by a moving mesh (with overlapping triangles) and an inner mouth;
//   speed    frames/s of the CUDA renderer (left on the GPU; copied back into page-locked memory) and
//            of the CPU kernels on one core, at the size asked (1920x1080 by default);
//   memory   the GPU's used memory (NVML) before the renderer opens, while it runs, after it closes;
//   encoder  NVENC opened at that size and frames encoded from GPU memory, or why not.
// Usage: gpu-check [--width 1920] [--height 1080] [--frames 300] [--h264 FILE]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_render.h"
#include "mouth.h"
#include "nvenc_encode.h"
#include "probes.h"
#include "warp.h"

using namespace avatar;

namespace {

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

struct Scene {
  int width, height;
  std::vector<uint8_t> photo;
  std::vector<double> rest;
  std::vector<uint32_t> triangles, active;
  std::vector<double> outline;
  MouthParams mouth{};
};

// A photo with texture at every scale (so a misplaced sample shows), a grid mesh over it with a few
// triangles drawn over others (the GPU must leave the later one on top), and a mouth in the lower middle.
Scene MakeScene(int width, int height) {
  Scene s{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * height * 3 / 2), {}, {}, {}, {}, {}};
  uint32_t seed = 12345;
  for (int y = 0; y < height; y++) {
    for (int x = 0; x < width; x++) {
      seed = seed * 1103515245u + 12345u;
      s.photo[static_cast<size_t>(y) * width + x] = static_cast<uint8_t>(40 + ((x * 7 + y * 13 + ((x * y) >> 6)) % 150) + ((seed >> 16) % 16));
    }
  }
  const size_t luma = static_cast<size_t>(width) * height, chroma = luma / 4;
  for (size_t i = 0; i < chroma; i++) {
    s.photo[luma + i] = static_cast<uint8_t>(100 + (i * 3 % 56));
    s.photo[luma + chroma + i] = static_cast<uint8_t>(120 + (i * 5 % 40));
  }
  const int cols = 24, rows = 16;
  for (int r = 0; r <= rows; r++) {
    for (int c = 0; c <= cols; c++) {
      s.rest.push_back(static_cast<double>(c) * (width - 1) / cols);
      s.rest.push_back(static_cast<double>(r) * (height - 1) / rows);
    }
  }
  const auto at = [&](int c, int r) { return static_cast<uint32_t>(r * (cols + 1) + c); };
  for (int r = 0; r < rows; r++) {
    for (int c = 0; c < cols; c++) {
      s.triangles.insert(s.triangles.end(), {at(c, r), at(c + 1, r), at(c + 1, r + 1), at(c, r), at(c + 1, r + 1), at(c, r + 1)});
    }
  }
  // drawn last, over the grid
  s.triangles.insert(s.triangles.end(), {at(4, 4), at(12, 6), at(6, 12), at(10, 3), at(20, 9), at(14, 14)});
  for (size_t t = 0; t < s.triangles.size(); t += 3) s.active.push_back(static_cast<uint32_t>(t));
  const double cx = width / 2.0, cy = height * 0.62, mw = width / 8.0, mh = mw / 2.5;
  for (int k = 0; k < 48; k++) {
    const double a = 2 * M_PI * k / 48;
    s.outline.push_back(cx + mw / 2 * std::cos(a));
    s.outline.push_back(cy + mh / 2 * std::sin(a));
  }
  MouthParams& m = s.mouth;
  m.x0 = std::floor(cx - mw / 2 - 2), m.x1 = std::floor(cx + mw / 2 + 2), m.y0 = std::floor(cy - mh / 2 - 2), m.y1 = std::floor(cy + mh / 2 + 2);
  m.centerX = cx, m.top = cy - mh / 2, m.bottom = cy + mh / 2, m.gapHeight = mh, m.mouthW = mw, m.teethH = mh * 0.3, m.lowerTeethH = mh * 0.2;
  m.archHalf = mw / 2, m.mouthWidth = mw, m.uxx = 1, m.uxy = 0, m.uyx = 0, m.uyy = 1;
  m.teethR = 230, m.teethG = 225, m.teethB = 210, m.cavityR = 70, m.cavityG = 20, m.cavityB = 25, m.tongueR = 180, m.tongueG = 80, m.tongueB = 80;
  m.tongue = 0.6, m.softness = 1, m.grain = 2, m.grainScale = 1;
  return s;
}

// Frame f's mesh: every point moved smoothly, by up to 3% of the frame.
void Move(const Scene& s, int f, std::vector<double>& moved) {
  moved.resize(s.rest.size());
  const double amp = s.width * 0.03;
  for (size_t i = 0; i < s.rest.size(); i += 2) {
    moved[i] = s.rest[i] + amp * std::sin(0.21 * f + 0.37 * static_cast<double>(i));
    moved[i + 1] = s.rest[i + 1] + amp * 0.6 * std::cos(0.17 * f + 0.23 * static_cast<double>(i));
  }
}

void CpuFrame(const Scene& s, const std::vector<double>& moved, bool mouth, std::vector<uint8_t>& out) {
  out = s.photo;
  WarpI420(WarpFrame{s.photo.data(), out.data(), s.width, s.height, moved.data(), s.rest.data(), s.triangles.data(), s.active.data(), s.active.size()});
  if (mouth) MouthI420(MouthFrame{out.data(), s.width, s.height, s.outline.data(), s.outline.size() / 2, s.mouth});
}

double UsedMB(unsigned index) {
  const NvmlReport r = QueryNvml();
  for (const auto& d : r.devices) {
    if (d.index == index && d.error.empty()) return static_cast<double>(d.usedBytes) / (1024.0 * 1024.0);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  int width = 1920, height = 1080, frames = 300;
  std::string h264Path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--width") width = std::atoi(argv[i + 1]);
    else if (flag == "--height") height = std::atoi(argv[i + 1]);
    else if (flag == "--frames") frames = std::atoi(argv[i + 1]);
    else if (flag == "--h264") h264Path = argv[i + 1];
  }
  std::printf("{\n");

  const NvmlReport nvml = QueryNvml();
  std::printf("  \"nvml\": { \"ok\": %s, \"reason\": %s, \"driver\": %s, \"devices\": [", nvml.ok ? "true" : "false", Quote(nvml.reason).c_str(),
              Quote(nvml.driverVersion).c_str());
  for (size_t i = 0; i < nvml.devices.size(); i++) {
    const auto& d = nvml.devices[i];
    std::printf("%s{ \"index\": %u, \"name\": %s, \"uuid\": %s, \"totalMiB\": %.0f, \"usedMiB\": %.0f, \"freeMiB\": %.0f, \"error\": %s }", i ? ", " : "", d.index,
                Quote(d.name).c_str(), Quote(d.uuid).c_str(), d.totalBytes / 1048576.0, d.usedBytes / 1048576.0, d.freeBytes / 1048576.0, Quote(d.error).c_str());
  }
  std::printf("] },\n");

  const NvencReport probe = ProbeNvenc();
  std::printf("  \"nvenc\": { \"available\": %s, \"sessionTried\": %s, \"reason\": %s },\n", probe.available ? "true" : "false", probe.sessionTried ? "true" : "false",
              Quote(probe.reason).c_str());

  const Scene scene = MakeScene(width, height);
  const std::string uuid = nvml.devices.empty() ? "" : nvml.devices[0].uuid;
  const double usedBefore = UsedMB(0);
  std::string why;
  double usedOpen = -1;
  {
    std::unique_ptr<CudaRenderer> renderer =
        CudaRenderer::Open(CudaRendererSetup{scene.photo.data(), width, height, scene.triangles.data(), scene.triangles.size(), scene.rest.data(), scene.rest.size() / 2, uuid}, why);
    if (!renderer) {
      std::printf("  \"renderer\": { \"opened\": false, \"reason\": %s }\n}\n", Quote(why).c_str());
      return 1;
    }
    std::printf("  \"renderer\": { \"opened\": true, \"device\": %s },\n", Quote(renderer->device()).c_str());

    // parity: every frame, with the mouth on every other one
    std::vector<double> moved;
    std::vector<uint8_t> cpu, gpu(scene.photo.size());
    int equal = 0, changed = 0, firstDiff = -1;
    size_t firstByte = 0;
    for (int f = 0; f < frames; f++) {
      Move(scene, f, moved);
      const bool mouth = f % 2 == 0;
      CpuFrame(scene, moved, mouth, cpu);
      if (!renderer->Frame(moved.data(), scene.active.data(), scene.active.size(), mouth ? scene.outline.data() : nullptr, scene.outline.size() / 2, mouth ? &scene.mouth : nullptr,
                           gpu.data(), why)) {
        std::printf("  \"parity\": { \"failed\": %s }\n}\n", Quote(why).c_str());
        return 1;
      }
      // (a frame equal to the photo would prove nothing)
      if (std::memcmp(gpu.data(), scene.photo.data(), gpu.size()) != 0) changed++;
      if (std::memcmp(cpu.data(), gpu.data(), cpu.size()) == 0) {
        equal++;
      } else if (firstDiff < 0) {
        firstDiff = f;
        for (firstByte = 0; firstByte < cpu.size() && cpu[firstByte] == gpu[firstByte]; firstByte++) {
        }
      }
    }
    std::printf("  \"parity\": { \"frames\": %d, \"equal\": %d, \"changedFromPhoto\": %d, \"firstDifferentFrame\": %d, \"firstDifferentByte\": %zu },\n", frames, equal, changed, firstDiff,
                firstByte);
    usedOpen = UsedMB(0);

    // speed: left on the GPU (one copy back at the end waits for the kernels), copied into page-locked memory, the CPU
    std::unique_ptr<PinnedBuffer> pinned = renderer->HostBuffer(why);
    const std::string pinnedWhy = pinned ? "" : why;
    std::vector<std::vector<double>> poses(static_cast<size_t>(frames));
    for (int f = 0; f < frames; f++) Move(scene, f, poses[static_cast<size_t>(f)]);
    auto t0 = std::chrono::steady_clock::now();
    for (int f = 0; f < frames; f++) renderer->Frame(poses[f].data(), scene.active.data(), scene.active.size(), f % 2 ? nullptr : scene.outline.data(), scene.outline.size() / 2, f % 2 ? nullptr : &scene.mouth, nullptr, why);
    renderer->Frame(poses[0].data(), scene.active.data(), scene.active.size(), nullptr, 0, nullptr, gpu.data(), why);
    const double onGpu = (frames + 1) / Seconds(t0);
    double toPinned = -1;
    if (pinned) {
      t0 = std::chrono::steady_clock::now();
      for (int f = 0; f < frames; f++) renderer->Frame(poses[f].data(), scene.active.data(), scene.active.size(), f % 2 ? nullptr : scene.outline.data(), scene.outline.size() / 2, f % 2 ? nullptr : &scene.mouth, pinned->data(), why);
      toPinned = frames / Seconds(t0);
    }
    t0 = std::chrono::steady_clock::now();
    const int cpuFrames = frames < 60 ? frames : 60;
    for (int f = 0; f < cpuFrames; f++) CpuFrame(scene, poses[f], f % 2 == 0, cpu);
    const double onCpu = cpuFrames / Seconds(t0);
    std::printf("  \"speed\": { \"width\": %d, \"height\": %d, \"triangles\": %zu, \"gpuLeftOnDeviceFps\": %.0f, \"gpuToPinnedFps\": %.0f, \"pinned\": %s, \"cpuOneCoreFps\": %.1f },\n", width, height,
                scene.active.size(), onGpu, toPinned, pinned ? "true" : Quote(pinnedWhy).c_str(), onCpu);

    // NVENC at this size, from the renderer's frames in GPU memory
    NvencSetup setup{width, height, 25, 23, 25};
    std::unique_ptr<NvencEncoder> encoder = NvencEncoder::Open(renderer->context(), setup, why);
    if (!encoder) {
      std::printf("  \"encoder\": { \"opened\": false, \"reason\": %s },\n", Quote(why).c_str());
    } else {
      std::vector<uint8_t> stream;
      bool ok = true;
      t0 = std::chrono::steady_clock::now();
      for (int f = 0; f < frames && ok; f++) {
        ok = renderer->Frame(poses[f].data(), scene.active.data(), scene.active.size(), nullptr, 0, nullptr, nullptr, why) && encoder->EncodeDevice(renderer->DeviceFrame(), stream, why);
      }
      ok = ok && encoder->Finish(stream, why);
      const double fps = frames / Seconds(t0);
      if (!h264Path.empty()) {
        if (FILE* file = std::fopen(h264Path.c_str(), "wb")) {
          std::fwrite(stream.data(), 1, stream.size(), file);
          std::fclose(file);
        }
      }
      std::printf("  \"encoder\": { \"opened\": true, \"ok\": %s, \"reason\": %s, \"renderAndEncodeFps\": %.0f, \"bytes\": %zu },\n", ok ? "true" : "false", Quote(ok ? "" : why).c_str(), fps,
                  stream.size());
    }
  }
  // the renderer, its buffers and the encoder are gone: the context is released and its memory with it
  const double usedAfter = UsedMB(0);
  std::printf("  \"memory\": { \"usedMiBBefore\": %.0f, \"usedMiBOpen\": %.0f, \"usedMiBAfter\": %.0f }\n}\n", usedBefore, usedOpen, usedAfter);
  return 0;
}
