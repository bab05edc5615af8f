// dofpose forward: run a model on an .npy input, write its outputs as .npz,
// optionally dump every layer's output and profile every layer. The work is
// nn::run_forward (dofpose/nn/model.h); this file only parses the options.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <filesystem>
#include <string>

#include "dofpose/build_info.h"
#include "dofpose/error.h"
#include "dofpose/lift.h"
#include "dofpose/nn/model.h"
#include "tools/cli/commands.h"

namespace dofpose_cli {
namespace {

constexpr const char* kUsage =
    "usage: dofpose forward --model M.safetensors --input X.npy [--output OUT.npz]\n"
    "       dofpose forward --model HG.safetensors --image PHOTO [--keypoints KP.json]\n"
    "                       [--overlay OUT.png] [--input-mean R,G,B] [--output OUT.npz]\n"
    "                       [--attributes A.npy] [--dump DIR] [--profile] [--repeat N]\n"
    "                       [--profile-json FILE] [--threads N] [--device cpu|cuda]\n"
    "                       [--activations f32|f16|bf16] [--unfused]\n"
    "                       [--conv winograd|direct]\n"
    "\n"
    "Runs a hourglass or lifter model (weights file with metadata kind/config) in\n"
    "inference mode on a float32 .npy input (or, for a hourglass, a photo) and writes\n"
    "every output as an array of an .npz archive (written atomically).\n"
    "\n"
    "  --model FILE        weights file (dofpose/safetensors) of kind hourglass or lifter\n"
    "  --input X.npy       float32; hourglass: [N,3,S,S] images (S = config input_size);\n"
    "                      lifter: raw 2D joints [N,J,2] or [N,2J] (J = num_joints_in),\n"
    "                      normalised with the model's stored statistics\n"
    "  --image PHOTO       hourglass only, instead of --input: a JPEG/PNG/BMP/... photo,\n"
    "                      letterboxed into S x S (aspect kept, bilinear, centred, padding\n"
    "                      0), RGB in [0,1] minus the mean (below)\n"
    "  --input-mean R,G,B  with --image: the RGB mean to subtract (default: the weights'\n"
    "                      norm.input.mean when present, as pytorch-pose conversions have)\n"
    "  --keypoints KP.json with --image, 16-joint models: the last stack's joints in the\n"
    "                      photo's pixels as a `dofpose lift` input (layout mpii16)\n"
    "  --overlay OUT.png   with --image: the photo with the joints and skeleton drawn\n"
    "  --attributes A.npy  lifters with use_attributes: [N,9] int labels (0 front, 1 back,\n"
    "                      2 on-plane) or [N,9,3] float32 probabilities\n"
    "  --output OUT.npz    hourglass: heatmaps_stack<s>, coords, attributes, domain;\n"
    "                      lifter: pose3d_block<b> (several blocks), pose3d [N,17,3] in mm\n"
    "  --dump DIR          every layer's output as DIR/<index>_<layer name>.npy\n"
    "  --profile           per-layer time table (mean of --repeat runs after 2 warm-ups)\n"
    "  --repeat N          profiled runs (default 10)\n"
    "  --profile-json FILE the profile as JSON (implies --profile)\n"
    "  --threads N         CPU threads (default: all cores)\n"
    "  --device cpu|cuda   where the model runs (default cpu); on cuda --profile waits\n"
    "                      for the GPU around every layer and marks each as an NVTX\n"
    "                      range (names show in Nsight Systems / Compute)\n"
    "  --activations T     hourglass: store the activations between the stem and the\n"
    "                      heads as f32 (default), f16 or bf16 (half the memory\n"
    "                      traffic; heatmaps and outputs stay float32). Not with --dump\n"
    "                      or --unfused\n"
    "  --unfused           run every layer separately (no fused Conv2d+BN+ReLU): --profile\n"
    "                      then has one row per BatchNorm, ReLU, Add, ... (float32 only)\n"
    "  --conv ALGO         CPU, fused inference: 3x3 convolutions by winograd (default;\n"
    "                      F(4x4,3x3) where a layer has >= 64 output tiles of 4x4, about\n"
    "                      1e-6 relative rounding more) or direct (the implicit GEMM; the\n"
    "                      bits of --unfused). The profile's GFLOP/s count direct FLOPs\n"
    "\n"
    "Details and examples: docs/cli.md\n";

// A file the command will write: its folder must exist and be writable and
// the path must not be a folder, checked before the (maybe long) run.
void check_writable(const char* flag, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
  DOFPOSE_CHECK(fs::is_directory(dir, ec), flag, ": the folder of '", path, "' does not exist");
  DOFPOSE_CHECK(::access(dir.c_str(), W_OK) == 0, flag, ": the folder of '", path,
                "' is not writable");
  DOFPOSE_CHECK(!fs::is_directory(path, ec), flag, ": '", path, "' is a folder, expected a file name");
}

// "R,G,B": three finite numbers.
std::vector<float> parse_mean(const std::string& v) {
  std::vector<float> m;
  size_t start = 0;
  while (start <= v.size()) {
    const size_t comma = std::min(v.find(',', start), v.size());
    const std::string part = v.substr(start, comma - start);
    char* end = nullptr;
    const double x = part.empty() ? 0 : std::strtod(part.c_str(), &end);
    if (part.empty() || end != part.c_str() + part.size() || !std::isfinite(x))
      throw UsageError("--input-mean needs three numbers R,G,B, got '" + v + "'");
    m.push_back(float(x));
    start = comma + 1;
  }
  if (m.size() != 3) throw UsageError("--input-mean needs three numbers R,G,B, got '" + v + "'");
  return m;
}

}  // namespace

int cmd_forward(int argc, char** argv) {
  dofpose::nn::ForwardOptions opt;
  std::string json_path;
  if (wants_help(argc, argv)) {
    std::printf("%s", kUsage);
    return 0;
  }
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--profile") {
      opt.profile = true;
      continue;
    }
    if (a == "--unfused") {
      opt.unfused = true;
      continue;
    }
    static const char* const with_value[] = {"--model", "--input", "--output", "--attributes",
                                              "--dump", "--repeat", "--profile-json", "--threads",
                                              "--device", "--activations", "--image",
                                              "--keypoints", "--overlay", "--input-mean", "--conv"};
    bool known = false;
    for (const char* f : with_value) known = known || a == f;
    if (!known) throw UsageError("unknown option '" + a + "'");
    if (i + 1 >= argc) throw UsageError(a + " needs a value");
    const char* v = argv[++i];
    if (a == "--model") opt.model = v;
    else if (a == "--input") opt.input = v;
    else if (a == "--output") opt.output = v;
    else if (a == "--image") opt.image = v;
    else if (a == "--keypoints") opt.keypoints = v;
    else if (a == "--overlay") opt.overlay = v;
    else if (a == "--input-mean") opt.input_mean = parse_mean(v);
    else if (a == "--conv") {
      opt.conv = v;
      if (opt.conv != "winograd" && opt.conv != "direct")
        throw UsageError("--conv: unknown value '" + opt.conv + "', expected winograd or direct");
    }
    else if (a == "--attributes") opt.attributes = v;
    else if (a == "--dump") opt.dump_dir = v;
    else if (a == "--repeat") opt.repeat = int(parse_int_arg(a, v, 1, 1000000));
    else if (a == "--threads") opt.threads = int(parse_int_arg(a, v, 1, dofpose::kMaxCpuThreads));
    else if (a == "--device") {
      opt.device = v;
      if (opt.device != "cpu" && opt.device != "cuda")
        throw UsageError("--device: unknown value '" + opt.device + "', expected cpu or cuda");
    } else if (a == "--activations") {
      opt.activations = v;
      parse_value_arg(a, [&] { return dofpose::nn::parse_activation_dtype(v, "--activations"); });
    }
    else if (a == "--profile-json") {
      json_path = v;
      opt.profile = true;
    }
  }
  if (opt.model.empty()) throw UsageError("--model is required");
  if (opt.input.empty() && opt.image.empty()) throw UsageError("--input X.npy or --image PHOTO is required");
  if (!opt.input.empty() && !opt.image.empty())
    throw UsageError("--input and --image exclude each other (give one)");
  if (opt.image.empty() && !opt.keypoints.empty()) throw UsageError("--keypoints needs --image");
  if (opt.image.empty() && !opt.overlay.empty()) throw UsageError("--overlay needs --image");
  if (opt.image.empty() && !opt.input_mean.empty()) throw UsageError("--input-mean needs --image");
  dofpose::nn::ForwardResult r;
  try {
    if (!json_path.empty()) check_writable("--profile-json", json_path);
    r = dofpose::nn::run_forward(opt);
  } catch (const dofpose::Error& e) {
    // The library's messages start with "forward: "; main() would repeat the command name.
    std::string msg = e.what();
    if (msg.rfind("forward: ", 0) == 0) msg = msg.substr(9);
    std::fprintf(stderr, "dofpose forward: error: %s\n", msg.c_str());
    return 2;
  }
  if (opt.output.empty() && opt.dump_dir.empty() && !opt.profile && opt.keypoints.empty() &&
      opt.overlay.empty())
    std::printf("note: no --output, --dump or --profile: the model ran, nothing was saved\n");
  std::printf("%s\ninput %s\n", r.model_summary.c_str(), r.input_shape.str().c_str());
  for (size_t k = 0; k < r.output_names.size(); ++k)
    std::printf("  output %-16s %s\n", r.output_names[k].c_str(), r.output_shapes[k].str().c_str());
  if (!opt.image.empty()) {
    std::printf("image %s: %dx%d", opt.image.c_str(), r.image_width, r.image_height);
    if (r.input_mean.size() == 3)
      std::printf(", mean %.4g,%.4g,%.4g subtracted", r.input_mean[0], r.input_mean[1], r.input_mean[2]);
    std::printf("\n");
  }
  if (!opt.output.empty()) std::printf("wrote %s\n", opt.output.c_str());
  if (!opt.keypoints.empty()) std::printf("wrote %s\n", opt.keypoints.c_str());
  if (!opt.overlay.empty()) std::printf("wrote %s\n", opt.overlay.c_str());
  if (!opt.dump_dir.empty())
    std::printf("dumped %zu layer outputs to %s/\n", r.dumped.size(), opt.dump_dir.c_str());
  if (opt.profile) std::printf("\n%s", dofpose::nn::format_profile(r).c_str());
  if (!json_path.empty()) {
    dofpose::write_file_atomically(json_path, dofpose::nn::profile_json(r) + "\n");
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}

DOFPOSE_COMMAND(forward,
                "forward --model M --input X.npy | --image PHOTO",
                "run a model on an .npy input or a photo; --keypoints for lift, --dump, --profile",
                cmd_forward);

}  // namespace dofpose_cli
