// Photos into the hourglass (dofpose/image.h, `dofpose forward --image`):
//  * load_image_rgb + letterbox against hand-computed values on small
//    non-square PNGs (padding zero, exact pixels, bilinear in between, mean);
//  * heatmap coordinates map back to the photo's pixels;
//  * forward --image equals forward --input on the .npy of the same tensor,
//    with the mean from --input-mean or the weights' norm.input.mean;
//  * --keypoints is a `dofpose lift` input (parse_lift_input, run_lift), its
//    joints are the mapped coords; --overlay is a PNG of the photo's size;
//  * errors (library and the dofpose binary: usage exit 1, runtime exit 2).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dofpose/image.h"
#include "dofpose/lift.h"
#include "dofpose/npz.h"
#include "dofpose/nn/model.h"
#include "dofpose/weights.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose::nn;
using dofpose_test::contains;
using dofpose_test::error_of;
using dofpose_test::TempDir;
using dofpose_test::tiny_hourglass_config;

namespace {

// W x H picture with distinct values per pixel and channel.
ImageRGB8 pattern(int w, int h) {
  ImageRGB8 im;
  im.width = w;
  im.height = h;
  im.rgb.resize(size_t(w) * size_t(h) * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        im.rgb[(size_t(y) * size_t(w) + size_t(x)) * 3 + size_t(c)] =
            static_cast<unsigned char>((37 * x + 61 * y + 90 * c + 11) % 256);
  return im;
}

std::string write_png(const TempDir& dir, const std::string& name, const ImageRGB8& im) {
  const std::vector<unsigned char> png = encode_png(im);
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                              std::streamsize(png.size()));
  return path;
}

float pix(const ImageRGB8& im, int x, int y, int c) {
  return float(im.rgb[(size_t(y) * size_t(im.width) + size_t(x)) * 3 + size_t(c)]) / 255.f;
}

float at(const Tensor& t, int c, int y, int x) {
  const int64_t s = t.shape()[3];
  return t.f32()[(int64_t(c) * s + y) * s + x];
}

}  // namespace

TEST_CASE("image: load_image_rgb + letterbox of a wide PNG: padding rows zero, exact and bilinear pixels") {
  TempDir dir("img");
  const ImageRGB8 src = pattern(4, 2);
  const std::string path = write_png(dir, "wide.png", src);
  const ImageRGB8 im = load_image_rgb(path);
  REQUIRE(im.width == 4);
  REQUIRE(im.height == 2);
  CHECK(im.rgb == src.rgb);  // PNG is lossless

  // 4x2 into 8x8: scale 2, content 8x4, offset (0, 2): rows 0-1 and 6-7 padding.
  const Letterboxed lb = letterbox(im, 8);
  REQUIRE(lb.tensor.shape() == Shape{1, 3, 8, 8});
  const LetterboxTransform& t = lb.transform;
  CHECK(t.content_width == 8);
  CHECK(t.content_height == 4);
  CHECK(t.offset_x == 0);
  CHECK(t.offset_y == 2);
  CHECK(t.scale_x == 2.0);
  CHECK(t.scale_y == 2.0);
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 8; ++x)
      for (int y : {0, 1, 6, 7}) {
        CAPTURE(c); CAPTURE(x); CAPTURE(y);
        CHECK(at(lb.tensor, c, y, x) == 0.f);
      }
  for (int c = 0; c < 3; ++c) {
    // Tensor (0,2) samples image (-0.25,-0.25), clamped to pixel (0,0): exact.
    CHECK(at(lb.tensor, c, 2, 0) == doctest::Approx(pix(im, 0, 0, c)).epsilon(1e-6));
    // Tensor (7,5) samples image (3.25, 1.25) -> clamped to (3,1): exact.
    CHECK(at(lb.tensor, c, 5, 7) == doctest::Approx(pix(im, 3, 1, c)).epsilon(1e-6));
    // Tensor (1,2) samples image x = 0.25, y clamped 0: 3/4 of pixel 0, 1/4 of pixel 1.
    CHECK(at(lb.tensor, c, 2, 1) ==
          doctest::Approx(0.75f * pix(im, 0, 0, c) + 0.25f * pix(im, 1, 0, c)).epsilon(1e-5));
    // Tensor (2,3) samples image (0.75, 0.25).
    const float top = 0.25f * pix(im, 0, 0, c) + 0.75f * pix(im, 1, 0, c);
    const float bot = 0.25f * pix(im, 0, 1, c) + 0.75f * pix(im, 1, 1, c);
    CHECK(at(lb.tensor, c, 3, 2) == doctest::Approx(0.75f * top + 0.25f * bot).epsilon(1e-5));
  }

  // With a mean: the image pixels shift, the padding stays 0.
  const Letterboxed lm = letterbox(im, 8, {0.5f, 0.25f, 0.125f});
  const float mean[3] = {0.5f, 0.25f, 0.125f};
  for (int c = 0; c < 3; ++c) {
    CHECK(at(lm.tensor, c, 0, 3) == 0.f);
    CHECK(at(lm.tensor, c, 7, 3) == 0.f);
    CHECK(at(lm.tensor, c, 2, 0) == doctest::Approx(pix(im, 0, 0, c) - mean[c]).epsilon(1e-6));
  }
}

TEST_CASE("image: letterbox of a tall image pads columns, split floor/ceil, coordinates map back") {
  const ImageRGB8 im = pattern(3, 5);
  // 3x5 into 8: content round(3*8/5) = 5 wide, 8 high, offset_x (8-5)/2 = 1: columns 0, 6, 7 padding.
  const Letterboxed lb = letterbox(im, 8);
  const LetterboxTransform& t = lb.transform;
  CHECK(t.content_width == 5);
  CHECK(t.content_height == 8);
  CHECK(t.offset_x == 1);
  CHECK(t.offset_y == 0);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 8; ++y) {
      CHECK(at(lb.tensor, c, y, 0) == 0.f);
      CHECK(at(lb.tensor, c, y, 6) == 0.f);
      CHECK(at(lb.tensor, c, y, 7) == 0.f);
      CHECK(at(lb.tensor, c, y, 1) != 0.f);  // content (pattern values are all > 0)
    }
  // The image's centre is the content's centre, and the transform inverts.
  CHECK(t.to_image_x(1 + 2.0) == doctest::Approx(1.0));   // content column 2 of 0..4 -> x 1 of 0..2
  CHECK(t.to_image_y(3.5) == doctest::Approx(2.0));       // 8 rows -> 5 rows, centre 2

  // Heatmap coords (heatmap 2x2 over the 8x8 tensor, s = 4): heatmap centre
  // (0.5, 0.5) -> tensor (3.5, 3.5) -> image x (3.5 - 1 + 0.5) / (5/3) - 0.5 = 1.3, y 2.
  const float hm[4] = {0.5f, 0.5f, -0.375f, -0.375f};
  const std::vector<float> p = heatmap_coords_to_image(hm, 2, 2, t);
  CHECK(p[0] == doctest::Approx(1.3));
  CHECK(p[1] == doctest::Approx(2.0));
  // Heatmap (-0.375) -> tensor (-0.375 + 0.5) * 4 - 0.5 = 0 -> image y (0 + 0.5) / 1.6 - 0.5.
  CHECK(p[3] == doctest::Approx(0.5 / 1.6 - 0.5));
}

TEST_CASE("image: load_image_rgb names the file when it is missing or not an image") {
  TempDir dir("img-err");
  CHECK(contains(error_of([&] { load_image_rgb(dir.file("none.jpg")); }),
                 "image '" + dir.file("none.jpg") + "': no such file"));
  std::ofstream(dir.file("junk.png")) << "this is not a picture";
  const std::string e = error_of([&] { load_image_rgb(dir.file("junk.png")); });
  CHECK(contains(e, "image '" + dir.file("junk.png") + "': cannot decode it"));
  CHECK(contains(error_of([&] { load_image_rgb(dir.path); }), "is a folder"));
}

TEST_CASE("forward --image equals --input on the same tensor, --keypoints lifts, --overlay is a PNG") {
  TempDir dir("fwd-img");
  auto net = std::make_unique<HourglassNet>(tiny_hourglass_config(16), 21);
  net->save(dir.file("hg.safetensors"));
  const ImageRGB8 photo = pattern(40, 24);
  const std::string photo_path = write_png(dir, "photo.png", photo);

  // The same preprocessed tensor as .npy.
  const Letterboxed lb = letterbox(load_image_rgb(photo_path), 32);
  write_npy(dir.file("x.npy"), NpyDType::F32, {1, 3, 32, 32}, lb.tensor.f32());

  ForwardOptions a;
  a.model = dir.file("hg.safetensors");
  a.input = dir.file("x.npy");
  a.output = dir.file("a.npz");
  run_forward(a);
  ForwardOptions b;
  b.model = a.model;
  b.image = photo_path;
  b.output = dir.file("b.npz");
  b.keypoints = dir.file("kp.json");
  b.overlay = dir.file("overlay.png");
  const ForwardResult rb = run_forward(b);
  CHECK(rb.image_width == 40);
  CHECK(rb.image_height == 24);
  CHECK(rb.input_mean.empty());
  NpzFile na(dir.file("a.npz")), nb(dir.file("b.npz"));
  for (const char* name : {"heatmaps_stack0", "heatmaps_stack1", "coords"}) {
    CAPTURE(name);
    const std::vector<float> va = na.array(name).to_f32(), vb = nb.array(name).to_f32();
    REQUIRE(va.size() == vb.size());
    REQUIRE(!va.empty());
    CHECK(va == vb);
  }

  // --keypoints: a lift input with the coords mapped to the photo's pixels.
  std::ifstream kin(dir.file("kp.json"));
  const std::string text((std::istreambuf_iterator<char>(kin)), std::istreambuf_iterator<char>());
  const LiftInput li = parse_lift_input(text, "kp.json");
  CHECK(li.layout == LayoutId::MPII16);
  CHECK(li.frames == 1);
  CHECK(li.image_width == 40);
  CHECK(li.image_height == 24);
  REQUIRE(li.keypoints.size() == 32);
  const std::vector<float> coords = na.array("coords").to_f32();
  const std::vector<float> mapped = heatmap_coords_to_image(coords.data(), 16, 8, lb.transform);
  for (size_t k = 0; k < 32; ++k) {
    CAPTURE(k);
    CHECK(li.keypoints[k] == doctest::Approx(mapped[k]).epsilon(1e-3));
    CHECK(rb.image_keypoints[k] == mapped[k]);
  }
  // Through `dofpose lift` (library run_lift, the embedded default lifter).
  LiftRunOptions lo;
  lo.input = dir.file("kp.json");
  lo.output = dir.file("pose3d.json");
  run_lift(lo);
  std::ifstream lin(dir.file("pose3d.json"));
  const nlohmann::json lifted = nlohmann::json::parse(lin);
  REQUIRE(lifted.at("frames").size() == 1);
  CHECK(lifted["frames"][0].at("joints").size() == 17);

  // --overlay: a PNG of the photo's size, differing from the photo (joints drawn).
  const ImageRGB8 ov = load_image_rgb(dir.file("overlay.png"));
  CHECK(ov.width == 40);
  CHECK(ov.height == 24);
  CHECK(ov.rgb != photo.rgb);
}

TEST_CASE("forward --image subtracts --input-mean, else the weights' norm.input.mean") {
  TempDir dir("fwd-mean");
  HourglassNet net(tiny_hourglass_config(3), 5);
  net.save(dir.file("hg.safetensors"));
  // The same network with a stored mean, as pytorch-pose conversions write it.
  {
    WeightsFile plain(dir.file("hg.safetensors"));
    WeightsWriter w;
    for (const std::string& name : plain.names()) w.add(name, plain.load_f32(name).view());
    for (const auto& [k, v] : plain.metadata()) w.set_metadata(k, v);
    Tensor mean = Tensor::zeros({3});
    mean.f32()[0] = 0.4404f, mean.f32()[1] = 0.4440f, mean.f32()[2] = 0.4327f;
    w.add("norm.input.mean", mean.view());
    w.write(dir.file("hg_mean.safetensors"));
  }
  const ImageRGB8 photo = pattern(20, 30);
  const std::string photo_path = write_png(dir, "p.png", photo);
  auto coords_of = [&](ForwardOptions o) {
    o.output = dir.file("o.npz");
    run_forward(o);
    return NpzFile(dir.file("o.npz")).array("heatmaps_stack1").to_f32();
  };
  auto npy_of = [&](const std::vector<float>& mean) {
    const Letterboxed lb = letterbox(photo, 32, mean);
    write_npy(dir.file("x.npy"), NpyDType::F32, {1, 3, 32, 32}, lb.tensor.f32());
    ForwardOptions o;
    o.model = dir.file("hg.safetensors");
    o.input = dir.file("x.npy");
    return coords_of(o);
  };
  ForwardOptions o;
  o.model = dir.file("hg.safetensors");
  o.image = photo_path;
  o.input_mean = {0.1f, 0.2f, 0.3f};
  const std::vector<float> with_flag = coords_of(o);
  CHECK(with_flag == npy_of({0.1f, 0.2f, 0.3f}));
  CHECK(with_flag != npy_of({}));
  ForwardOptions s;
  s.model = dir.file("hg_mean.safetensors");
  s.image = photo_path;
  s.output = dir.file("o.npz");
  const ForwardResult r = run_forward(s);
  REQUIRE(r.input_mean.size() == 3);
  CHECK(r.input_mean[0] == 0.4404f);
  CHECK(NpzFile(dir.file("o.npz")).array("heatmaps_stack1").to_f32() == npy_of({0.4404f, 0.4440f, 0.4327f}));
}

TEST_CASE("forward --image: errors name the file, the model kind and the joint count") {
  TempDir dir("fwd-img-err");
  HourglassNet(tiny_hourglass_config(3), 5).save(dir.file("hg3.safetensors"));
  const std::string photo = write_png(dir, "p.png", pattern(10, 6));
  const std::string lifter = std::string(DOFPOSE_FIXTURES_DIR) + "/lifter_martinez_model.safetensors";
  ForwardOptions o;
  o.model = dir.file("hg3.safetensors");
  o.image = dir.file("missing.jpg");
  CHECK(contains(error_of([&] { run_forward(o); }), "missing.jpg': no such file"));
  o.image = photo;
  o.keypoints = dir.file("kp.json");
  CHECK(contains(error_of([&] { run_forward(o); }), "this hourglass predicts 3 joints, expected 16"));
  CHECK_FALSE(std::filesystem::exists(dir.file("kp.json")));
  o.keypoints.clear();
  o.overlay = dir.file("no-such-folder/o.png");
  CHECK(contains(error_of([&] { run_forward(o); }), "the folder of the output"));
  ForwardOptions l;
  l.model = lifter;
  l.image = photo;
  CHECK(contains(error_of([&] { run_forward(l); }), "--image is for hourglass models"));
  ForwardOptions n;
  n.model = dir.file("hg3.safetensors");
  n.input = dir.file("x.npy");
  n.keypoints = dir.file("kp.json");
  CHECK(contains(error_of([&] { run_forward(n); }), "--keypoints and --overlay need --image"));
  n.keypoints.clear();
  n.image = photo;
  CHECK(contains(error_of([&] { run_forward(n); }), "not both"));
}

TEST_CASE("forward --image: joints that are not finite refuse --keypoints and write no output") {
  TempDir dir("fwd-img-nan");
  // A NaN in the last stack's score bias: its heatmaps, and so its joints, are NaN.
  HourglassNet net(tiny_hourglass_config(16), 7);
  bool poisoned = false;
  for (const Param& p : net.parameters())
    if (p.name == "score.1.bias") p.value->f32()[0] = NAN, poisoned = true;
  REQUIRE(poisoned);
  net.save(dir.file("nan.safetensors"));
  ForwardOptions o;
  o.model = dir.file("nan.safetensors");
  o.image = write_png(dir, "p.png", pattern(12, 9));
  o.output = dir.file("out.npz");
  o.keypoints = dir.file("kp.json");
  o.overlay = dir.file("ov.png");
  CHECK(contains(error_of([&] { run_forward(o); }), "mpii16 keypoints: joint 0"));
  CHECK_FALSE(std::filesystem::exists(o.output));
  CHECK_FALSE(std::filesystem::exists(o.keypoints));
  CHECK_FALSE(std::filesystem::exists(o.overlay));
}

TEST_CASE("image: a JPEG decodes to its size and, within JPEG's loss, its colours") {
  TempDir dir("img-jpeg");
  ImageRGB8 flat;  // two flat halves: JPEG keeps them within a few levels
  flat.width = 32;
  flat.height = 16;
  flat.rgb.resize(32 * 16 * 3);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 32; ++x) {
      const unsigned char left[3] = {200, 40, 40}, right[3] = {30, 60, 220};
      std::copy_n(x < 16 ? left : right, 3, &flat.rgb[(size_t(y) * 32 + size_t(x)) * 3]);
    }
  const std::vector<unsigned char> jpg = encode_jpeg(flat, 95);
  REQUIRE(jpg.size() > 2);
  CHECK(jpg[0] == 0xFF);  // SOI marker: really a JPEG, not a PNG
  CHECK(jpg[1] == 0xD8);
  const std::string path = dir.file("photo.jpg");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(jpg.data()),
                                              std::streamsize(jpg.size()));
  const ImageRGB8 im = load_image_rgb(path);
  CHECK(im.width == 32);
  CHECK(im.height == 16);
  for (int c = 0; c < 3; ++c) {
    CAPTURE(c);
    CHECK(std::abs(pix(im, 4, 8, c) - pix(flat, 4, 8, c)) < 8.f / 255.f);
    CHECK(std::abs(pix(im, 27, 8, c) - pix(flat, 27, 8, c)) < 8.f / 255.f);
  }
}

TEST_CASE("forward --image: the dofpose binary chains into dofpose lift, usage errors exit 1, runtime 2") {
  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  TempDir dir("fwd-img-cli");
  HourglassNet(tiny_hourglass_config(16), 9).save(dir.file("hg.safetensors"));
  const std::string photo = write_png(dir, "photo.png", pattern(50, 30));
  const std::string q = dofpose_test::shell_quote(program) + " ";
  std::string out;
  auto rc_of = [&](const std::string& args) {
    const int rc = dofpose_test::run_command(q + args, &out);
    INFO(args << " -> " << rc << ": " << out);
    return rc;
  };
  const std::string hg = " --model " + dir.file("hg.safetensors");
  CHECK(rc_of("forward" + hg + " --image " + photo + " --keypoints " + dir.file("kp.json") +
              " --overlay " + dir.file("ov.png") + " --threads 1") == 0);
  CHECK(contains(out, "image " + photo + ": 50x30"));
  CHECK(contains(out, "wrote " + dir.file("kp.json")));
  CHECK(rc_of("lift " + dir.file("kp.json") + " -o " + dir.file("pose3d.json")) == 0);
  CHECK(std::filesystem::exists(dir.file("pose3d.json")));
  CHECK(load_image_rgb(dir.file("ov.png")).width == 50);

  CHECK(rc_of("forward" + hg + " --input x.npy --keypoints k.json") == 1);
  CHECK(contains(out, "--keypoints needs --image"));
  CHECK(rc_of("forward" + hg + " --input x.npy --overlay o.png") == 1);
  CHECK(contains(out, "--overlay needs --image"));
  CHECK(rc_of("forward" + hg + " --input x.npy --image " + photo) == 1);
  CHECK(contains(out, "--input and --image exclude each other"));
  CHECK(rc_of("forward" + hg + " --image " + photo + " --input-mean 1,2") == 1);
  CHECK(contains(out, "--input-mean needs three numbers R,G,B, got '1,2'"));
  CHECK(rc_of("forward" + hg + " --image " + dir.file("nope.jpg")) == 2);
  CHECK(contains(out, "dofpose forward: error: image '" + dir.file("nope.jpg") + "': no such file"));
  CHECK(rc_of("forward --model " + std::string(DOFPOSE_FIXTURES_DIR) +
              "/lifter_martinez_model.safetensors --image " + photo) == 2);
  CHECK(contains(out, "--image is for hourglass models"));
}

TEST_CASE("image: the MPII-16 overlay draws joints in their side's colour and bones between them") {
  ImageRGB8 black;
  black.width = 120;
  black.height = 100;
  black.rgb.assign(size_t(120) * 100 * 3, 0);
  // A standing figure: x, y per MPII-16 joint (docs/geometry.md order).
  const std::vector<float> kp = {50, 90, 50, 70, 52, 50, 68, 50, 70, 70, 70, 90,  // legs
                                 60, 50, 60, 25, 60, 18, 60, 8,                    // pelvis .. head top
                                 30, 40, 38, 32, 48, 25, 72, 25, 82, 32, 90, 40};  // arms
  const std::vector<unsigned char> png = mpii16_overlay_png(black, kp);
  TempDir dir("overlay");
  const std::string path = dir.file("o.png");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                              std::streamsize(png.size()));
  const ImageRGB8 im = load_image_rgb(path);
  REQUIRE(im.width == 120);
  REQUIRE(im.height == 100);
  auto rgb = [&](int x, int y) {
    const size_t i = (size_t(y) * 120 + size_t(x)) * 3;
    return std::vector<int>{im.rgb[i], im.rgb[i + 1], im.rgb[i + 2]};
  };
  CHECK(rgb(50, 90) == std::vector<int>{230, 40, 40});   // right ankle: red
  CHECK(rgb(70, 90) == std::vector<int>{40, 90, 235});   // left ankle: blue
  CHECK(rgb(60, 50) == std::vector<int>{40, 200, 70});   // pelvis: green
  CHECK(rgb(60, 38) == std::vector<int>{40, 200, 70});   // on the pelvis-thorax bone
  CHECK(rgb(50, 80) == std::vector<int>{230, 40, 40});   // on the right shin
  CHECK(rgb(5, 95) == std::vector<int>{0, 0, 0});        // untouched
  CHECK(rgb(110, 5) == std::vector<int>{0, 0, 0});
  // Wrong joint count: refused.
  CHECK(contains(error_of([&] { mpii16_overlay_png(black, {1, 2, 3, 4}); }), "expected 16"));
}
