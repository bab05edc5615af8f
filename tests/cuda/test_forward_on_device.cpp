// `dofpose forward --device cuda` end to end (nn::run_forward, the code behind
// the CLI): a photo (--image, --keypoints, --overlay) and an .npy input through
// the hourglass on the device give the CPU's outputs, and --profile times the
// device's layers. The op and model parity cases cover the kernels; this case
// covers the path a user takes (host input copied in, outputs copied out).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "dofpose/image.h"
#include "dofpose/lift.h"
#include "dofpose/npz.h"
#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/model.h"
#include "dofpose/ops.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose_test::TempDir;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// |a - b| <= tol * max(1, max|a|), element by element; reports the worst.
void expect_near(const std::string& what, const std::vector<float>& a, const std::vector<float>& b,
                 double tol) {
  INFO(what);
  REQUIRE(a.size() == b.size());
  REQUIRE(!a.empty());
  double scale = 1, worst = 0;
  for (float v : a) scale = std::max(scale, double(std::fabs(v)));
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(std::isfinite(b[i]));
    worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])));
  }
  CHECK(worst <= tol * scale);
}

}  // namespace

TEST_CASE("forward --device cuda: --image, --keypoints, --overlay and --input give the CPU's outputs") {
  TempDir dir("cuda-fwd");
  nn::HourglassConfig c = dofpose_test::compact_hourglass_config();  // 64x64 input
  c.num_joints = 16;  // MPII-16: --keypoints / --overlay need it
  nn::HourglassNet(c, 31).save(dir.file("hg.safetensors"));

  // A non-square photo: the letterbox pads rows.
  ImageRGB8 photo;
  photo.width = 90;
  photo.height = 50;
  photo.rgb.resize(size_t(photo.width) * size_t(photo.height) * 3);
  for (size_t i = 0; i < photo.rgb.size(); ++i) photo.rgb[i] = static_cast<unsigned char>((i * 53 + i / 7) % 256);
  const std::vector<unsigned char> png = encode_png(photo);
  std::ofstream(dir.file("photo.png"), std::ios::binary)
      .write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));

  nn::ForwardResult r[2];
  for (int d = 0; d < 2; ++d) {
    const std::string dev = d == 0 ? "cpu" : "cuda";
    nn::ForwardOptions o;
    o.model = dir.file("hg.safetensors");
    o.image = dir.file("photo.png");
    o.input_mean = {0.4f, 0.45f, 0.5f};
    o.device = dev;
    o.output = dir.file(dev + ".npz");
    o.keypoints = dir.file(dev + "-kp.json");
    o.overlay = dir.file(dev + "-overlay.png");
    r[d] = nn::run_forward(o);
  }
  ops::set_cuda_stream(nullptr);
  CHECK(r[0].device == "cpu");
  CHECK(r[1].device != "cpu");
  CHECK(r[1].image_width == 90);
  CHECK(r[1].image_height == 50);

  NpzFile cpu(dir.file("cpu.npz")), gpu(dir.file("cuda.npz"));
  for (const char* name : {"heatmaps_stack0", "heatmaps_stack1", "coords"})
    expect_near(name, cpu.array(name).to_f32(), gpu.array(name).to_f32(), 1e-4);
  // Joints in the photo's pixels (coords x 90/64 here): within a hundredth of a pixel.
  expect_near("image keypoints", r[0].image_keypoints, r[1].image_keypoints, 1e-4);
  REQUIRE(r[1].image_keypoints.size() == 32);
  float sum = 0;
  for (float v : r[1].image_keypoints) sum += std::fabs(v);
  CHECK(sum > 0);  // written, not left zero

  // --keypoints: a lift input with the device's joints.
  const LiftInput li = parse_lift_input(read_text(dir.file("cuda-kp.json")), "cuda-kp.json");
  CHECK(li.layout == LayoutId::MPII16);
  CHECK(li.image_width == 90);
  REQUIRE(li.keypoints.size() == 32);
  for (size_t k = 0; k < 32; ++k) CHECK(li.keypoints[k] == doctest::Approx(r[1].image_keypoints[k]).epsilon(1e-3));
  // --overlay: the photo's size, joints drawn on it.
  const ImageRGB8 ov = load_image_rgb(dir.file("cuda-overlay.png"));
  CHECK(ov.width == 90);
  CHECK(ov.height == 50);
  CHECK(ov.rgb != photo.rgb);

  // --input: the letterboxed tensor as .npy, on the device, with a profile.
  const Letterboxed lb = letterbox(load_image_rgb(dir.file("photo.png")), 64, {0.4f, 0.45f, 0.5f});
  write_npy(dir.file("x.npy"), NpyDType::F32, {1, 3, 64, 64}, lb.tensor.f32());
  nn::ForwardOptions o;
  o.model = dir.file("hg.safetensors");
  o.input = dir.file("x.npy");
  o.device = "cuda";
  o.output = dir.file("input.npz");
  o.profile = true;
  o.repeat = 2;
  const nn::ForwardResult ri = nn::run_forward(o);
  ops::set_cuda_stream(nullptr);
  NpzFile in(dir.file("input.npz"));
  for (const char* name : {"heatmaps_stack0", "heatmaps_stack1", "coords"}) {
    CAPTURE(name);
    // The same device, the same tensor: the same bits as the --image run.
    CHECK(in.array(name).to_f32() == gpu.array(name).to_f32());
  }
  REQUIRE(!ri.profile.empty());
  double ms = 0;
  for (const nn::ProfileRow& row : ri.profile) ms += row.composite ? 0 : row.ms;
  CHECK(ms > 0);
  CHECK(ri.wall_ms > 0);
}
