// weights_tools/convert.py and weights_tools/torch_pickle.py (docs/converters.md):
//  * a pytorch-pose checkpoint (ZIP format, `module.` keys, optimizer state, bearpaw's
//    own stem: stem_layout "pytorch-pose") and a princeton-vl stacked-hourglass checkpoint
//    (legacy format, different names, Newell's stem) are converted without torch; the C++
//    HourglassNet loads the result and its inference heatmaps match the PyTorch outputs
//    stored by tests/make_converter_fixtures.py;
//  * dofpose's own PyTorch twins (--from reference): a reference_hourglass.py state_dict
//    (attribute and domain heads, config inferred) and a reference_lifter.py
//    {state_dict, config} checkpoint (progressive, attributes, norm.* statistics) give the
//    PyTorch outputs: heatmaps / attribute / domain logits, and each block's pose both
//    normalised (Lifter::forward) and in mm (Model::forward de-normalises);
//  * the stem layout is inferred from the tensors; --config contradicting it is an error;
//  * tests/check_torch_pickle.py: tensor rebuilding (views, strides, dtypes, both
//    formats), malicious pickles refused without executing anything, --ignore-key,
//    truncated and corrupt files.
// Python runs with `torch` made unimportable: the converter must need numpy only.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/nn/model.h"
#include "dofpose/weights.h"
#include "tests/fixture_loader.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose::nn::HourglassNet;
using dofpose::nn::HourglassOutputs;
using dofpose::nn::LifterConfig;
using dofpose::nn::Mode;
using dofpose_test::run_command;
using dofpose_test::shell_quote;
using dofpose_test::TempDir;

namespace {

const std::string kSource = DOFPOSE_SOURCE_DIR;
const std::string kFixtures = DOFPOSE_FIXTURES_DIR;

// Runs weights_tools/convert.py with `args` under DOFPOSE_PYTHON with torch blocked;
// returns the exit status, `output` gets stdout+stderr.
int run_convert(const std::vector<std::string>& args, std::string* output) {
  std::string cmd = shell_quote(DOFPOSE_PYTHON) +
                    " -c 'import runpy, sys; sys.modules[\"torch\"] = None; "
                    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name=\"__main__\")' " +
                    shell_quote(kSource + "/weights_tools/convert.py");
  for (const std::string& a : args) cmd += " " + shell_quote(a);
  const int rc = run_command(cmd, output);
  INFO("command: ", cmd);
  return rc;
}

std::vector<float> to_vector(const TensorView& t) {
  return std::vector<float>(t.f32(), t.f32() + t.numel());
}

// `got` against PyTorch's `name` in `io` (same element count, read flat), with the
// tolerance every test here uses: |d| <= 1e-4 max(1, max|ref|) + 1e-3 |ref|.
void check_against_pytorch(const std::string& what, const TensorView& got, const WeightsFile& io,
                           const std::string& name) {
  Tensor ref = io.load_f32(name);
  REQUIRE_MESSAGE(ref.view().numel() == got.numel(), what, ": PyTorch's ", name, " has ",
                  ref.view().numel(), " values, the engine gave ", got.shape.str());
  const std::vector<float> rv = to_vector(ref.view());
  double scale = 1.0;
  for (float v : rv) scale = std::max(scale, double(std::fabs(v)));
  DOFPOSE_CHECK_CLOSE(what, to_vector(got), rv, 1e-4 * scale, 1e-3);
}

// Converts `checkpoint`, loads it into the engine and compares every stack's
// inference heatmaps with PyTorch's (stored next to the input in `io_file`).
void check_conversion(const std::string& source, const std::string& checkpoint,
                      const std::string& io_file, const std::string& expected_norm,
                      const std::string& expected_stem_layout) {
  if (!dofpose_test::python_with_numpy("the checkpoint converter test")) return;
  TempDir dir("convert");
  const std::string out_path = dir.file("net.safetensors");
  std::string out;
  const int rc = run_convert({"--from", source, kFixtures + "/" + checkpoint, out_path, "--config",
                              "{\"input_size\": 16}"},
                             &out);
  INFO("convert.py output:\n", out);
  REQUIRE(rc == 0);

  WeightsFile file(out_path);
  CHECK(file.metadata_or("kind", "") == "hourglass");
  CHECK(file.metadata_or("format_version", "") == "1");
  CHECK(file.metadata_or("input_normalisation", "").find(expected_norm) != std::string::npos);
  auto net = HourglassNet::load(out_path);
  // The converter writes the config exactly as the engine would.
  CHECK(file.metadata_or("config", "") == net->config().to_json_string());
  CHECK(net->config().stacks == 2);
  CHECK(net->config().stem_layout == expected_stem_layout);
  CHECK(net->config().num_joints == 3);
  CHECK(!net->config().attribute_head);
  CHECK(!net->config().domain_head);

  WeightsFile io(kFixtures + "/" + io_file);
  Tensor x = io.load_f32("x");
  Arena arena;
  HourglassOutputs got = net->forward(arena, x, Mode::Infer);
  REQUIRE(got.heatmaps.size() == 2);
  for (size_t s = 0; s < got.heatmaps.size(); ++s) {
    Tensor ref = io.load_f32("heatmaps." + std::to_string(s), got.heatmaps[s].shape);
    const std::vector<float> rv = to_vector(ref);
    double scale = 1.0;
    for (float v : rv) scale = std::max(scale, double(std::fabs(v)));
    DOFPOSE_CHECK_CLOSE(source + " heatmaps stack " + std::to_string(s), to_vector(got.heatmaps[s]),
                        rv, 1e-4 * scale, 1e-3);
  }
}

}  // namespace

TEST_CASE("convert: pytorch-pose checkpoint (own stem, ZIP, module. keys, optimizer) = PyTorch") {
  check_conversion("pytorch-pose", "convert_pytorch_pose.pth", "convert_pytorch_pose_io.safetensors",
                   "mean norm.input.mean", "pytorch-pose");
  // The default MPII mean is stored for the caller to subtract.
  if (!dofpose_test::python_with_numpy("the pytorch-pose mean check")) return;
  TempDir dir("convert-mean");
  std::string out;
  REQUIRE(run_convert({"--from", "pytorch-pose", kFixtures + "/convert_pytorch_pose.pth",
                       dir.file("a.safetensors"), "--config", "{\"input_size\": 16}", "--mean",
                       "0.5,0.25,0.125"},
                      &out) == 0);
  Tensor mean = WeightsFile(dir.file("a.safetensors")).load_f32("norm.input.mean", Shape{3});
  CHECK(mean.view().f32()[0] == 0.5f);
  CHECK(mean.view().f32()[1] == 0.25f);
  CHECK(mean.view().f32()[2] == 0.125f);
}

TEST_CASE("convert: princeton-vl stacked-hourglass checkpoint (legacy format) matches PyTorch") {
  check_conversion("stacked-hourglass", "convert_stacked_hourglass.pt",
                   "convert_stacked_hourglass_io.safetensors", "no mean or std", "newell");
}

TEST_CASE("convert: reference hourglass state_dict (heads, config inferred) matches PyTorch") {
  if (!dofpose_test::python_with_numpy("the reference hourglass converter test")) return;
  TempDir dir("convert-ref-hg");
  const std::string ckpt = kFixtures + "/convert_reference_hourglass.pth";
  const std::string out_path = dir.file("hg.safetensors");
  std::string out;
  // A bare state_dict carries no config: input_size comes from --config, the rest from the
  // tensors, which a contradicting key must not override.
  CHECK(run_convert({"--from", "reference", ckpt, dir.file("bad.safetensors"), "--config",
                     "{\"input_size\": 32, \"stacks\": 2}"},
                    &out) == 2);
  CHECK(out.find("stacks=2 contradicts") != std::string::npos);
  const int rc =
      run_convert({"--from", "reference", ckpt, out_path, "--config", "{\"input_size\": 32}"}, &out);
  INFO("convert.py output:\n", out);
  REQUIRE(rc == 0);
  CHECK(!std::filesystem::exists(dir.file("bad.safetensors")));

  WeightsFile file(out_path);
  CHECK(file.metadata_or("kind", "") == "hourglass");
  CHECK(file.metadata_or("format_version", "") == "1");
  CHECK(file.metadata_or("source", "") == "reference:convert_reference_hourglass.pth");
  auto net = HourglassNet::load(out_path);
  CHECK(file.metadata_or("config", "") == net->config().to_json_string());
  const auto& c = net->config();
  CHECK(c.stacks == 1);
  CHECK(c.depth == 1);
  CHECK(c.num_feats == 4);
  CHECK(c.stem_channels == 2);
  CHECK(c.stem_layout == "newell");
  CHECK(c.input_size == 32);
  CHECK(c.attribute_head);
  CHECK(c.attribute_channels == 1);  // not the default 32: read from attr.conv
  CHECK(c.domain_head);
  CHECK(c.domain_hidden == 5);       // not the default 64: read from domain.fc1

  WeightsFile io(kFixtures + "/convert_reference_hourglass_io.safetensors");
  Tensor x = io.load_f32("x");
  Arena arena;
  HourglassOutputs got = net->forward(arena, x, Mode::Infer);
  REQUIRE(got.heatmaps.size() == 1);
  check_against_pytorch("reference heatmaps", got.heatmaps[0], io, "heatmaps.0");
  REQUIRE(!got.attributes.empty());
  REQUIRE(!got.domain.empty());
  check_against_pytorch("reference attribute logits", got.attributes, io, "attributes");
  check_against_pytorch("reference domain logits", got.domain, io, "domain");
}

TEST_CASE("convert: reference lifter {state_dict, config} matches PyTorch, normalised and in mm") {
  if (!dofpose_test::python_with_numpy("the reference lifter converter test")) return;
  TempDir dir("convert-ref-lifter");
  const std::string out_path = dir.file("lifter.safetensors");
  std::string out;
  const int rc = run_convert(
      {"--from", "reference", kFixtures + "/convert_reference_lifter.pth", out_path}, &out);
  INFO("convert.py output:\n", out);
  REQUIRE(rc == 0);

  WeightsFile file(out_path);
  CHECK(file.metadata_or("kind", "") == "lifter");
  CHECK(file.metadata_or("format_version", "") == "1");
  CHECK(file.metadata_or("input_normalisation", "").find("norm.input") != std::string::npos);
  const LifterConfig c = LifterConfig::from_json_string(file.metadata_or("config", ""));
  CHECK(c.kind == "progressive");
  CHECK(c.use_attributes);
  CHECK(c.num_joints_in == 16);
  CHECK(c.width == 6);
  CHECK(c.dropout == 0.25f);  // and Mode::Infer must not apply it

  WeightsFile io(kFixtures + "/convert_reference_lifter_io.safetensors");
  Tensor pose2d = io.load_f32("pose2d", Shape{3, 32});
  Tensor attributes = io.load_f32("attributes", Shape{3, 27});

  // The network itself: reference_lifter.Lifter.forward takes the normalised input and
  // returns normalised poses, as nn::Lifter::forward does.
  {
    auto lifter = nn::load_lifter(file);
    REQUIRE(lifter->num_blocks() == 2);
    Tensor x = io.load_f32("x", Shape{3, 59});
    Arena arena;
    nn::LifterOutput got = lifter->forward(arena, x, Mode::Infer);
    REQUIRE(got.poses.size() == 2);
    for (size_t b = 0; b < 2; ++b)
      check_against_pytorch("reference lifter normalised pose, block " + std::to_string(b + 1),
                            got.poses[b], io, "pose" + std::to_string(b + 1));
    // The normalisation statistics came through: the engine's own input normalisation of
    // the raw 2D joints gives PyTorch's network input.
    check_against_pytorch("reference lifter prepared input", lifter->prepare_input(arena, pose2d, attributes),
                          io, "x");
  }
  // The model interface: raw 2D joints in, each block's pose de-normalised to mm out.
  {
    auto model = nn::load_model(out_path);
    REQUIRE(model->kind() == "lifter");
    Arena arena;
    std::vector<nn::NamedView> got = model->forward(arena, {pose2d.view(), attributes.view()});
    REQUIRE(got.size() == 3);
    CHECK(got[0].name == "pose3d_block1");
    CHECK(got[1].name == "pose3d_block2");
    CHECK(got[2].name == "pose3d");
    for (size_t b = 0; b < 2; ++b)
      check_against_pytorch("reference lifter pose in mm, block " + std::to_string(b + 1),
                            got[b].value, io, "pose3d" + std::to_string(b + 1));
    check_against_pytorch("reference lifter final pose in mm", got[2].value, io, "pose3d2");
  }
}

TEST_CASE("convert: bad arguments and mismatched sources fail with clear messages") {
  if (!dofpose_test::python_with_numpy("the converter argument test")) return;
  TempDir dir("convert-bad");
  const std::string pp = kFixtures + "/convert_pytorch_pose.pth";
  std::string out;
  // --config contradicting the tensors.
  CHECK(run_convert({"--from", "pytorch-pose", pp, dir.file("a.safetensors"), "--config",
                     "{\"stacks\": 4, \"input_size\": 16}"},
                    &out) == 2);
  CHECK(out.find("stacks=4 contradicts") != std::string::npos);
  // The stem layout is read from layer2's width: the bearpaw fixture is not Newell's.
  CHECK(run_convert({"--from", "pytorch-pose", pp, dir.file("a.safetensors"), "--config",
                     "{\"stem_layout\": \"newell\", \"input_size\": 16}"},
                    &out) == 2);
  CHECK(out.find("stem_layout='newell' contradicts") != std::string::npos);
  // A pytorch-pose checkpoint read as princeton-vl's.
  CHECK(run_convert({"--from", "stacked-hourglass", pp, dir.file("b.safetensors")}, &out) == 2);
  CHECK(out.find("not a princeton-vl") != std::string::npos);
  // The refused argparse.Namespace, then dropped on request.
  const std::string args_ckpt = kFixtures + "/convert_with_args.pth";
  CHECK(run_convert({"--from", "reference", args_ckpt, dir.file("c.safetensors")}, &out) == 2);
  CHECK(out.find("argparse.Namespace") != std::string::npos);
  CHECK(run_convert({"--from", "reference", args_ckpt, dir.file("c.safetensors"), "--ignore-key",
                     "args"},
                    &out) == 2);
  CHECK(out.find("neither a reference hourglass") != std::string::npos);
  // Not a checkpoint at all.
  CHECK(run_convert({"--from", "reference", kFixtures + "/convert_pytorch_pose_io.safetensors",
                     dir.file("d.safetensors")},
                    &out) == 2);
  CHECK(out.find("neither a ZIP") != std::string::npos);
  CHECK(dir.listing().empty());
}

TEST_CASE("convert: torch_pickle rebuilds tensors and refuses code (tests/check_torch_pickle.py)") {
  if (!dofpose_test::python_with_numpy("the torch_pickle checks")) return;
  TempDir dir("torch-pickle");
  const std::string out = dofpose_test::run_python(
      kSource + "/tests/check_torch_pickle.py", {kFixtures, kSource + "/weights_tools", dir.path});
  INFO(out);
  CHECK(out.find("all torch_pickle checks passed") != std::string::npos);
  CHECK(!std::filesystem::exists(dir.file("pwned")));
}
