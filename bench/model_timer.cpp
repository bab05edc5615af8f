// dofpose_model_timer: times one model from a weights file, for
// bench/compare_cpu.py (which runs PyTorch on the same weights, interleaved).
// Not part of dofpose_bench (it has its own main); see bench/CMakeLists.txt.
//
//   dofpose_model_timer --model M.safetensors --input X.npy [--attributes A.npy] [--threads 2]
//       [--device cpu|cuda] [--math f32|tf32|fp16|bf16] [--activations f32|f16|bf16] [--graph] [--unfused]
//       [--pipeline] [--tf32-mma] [--stem-kernel] [--mlp-launch L] [--conv winograd|direct]
//       [--train --target T.npy] [--warmup 1] [--output-dir DIR] (--repeat N | --serve)
//
// Inference (default): nn::load_model + Model::forward on X (what `dofpose
// forward` runs; --attributes as there, for lifters with use_attributes). --train with a lifter: X is the normalised network input
// [N, input_dim], T the normalised target [N,51]; one step = forward (train
// mode) + lifter_l1_loss + backward + Adam (PyTorch defaults) + row max-norm
// when the config has one — the trainer's step without data loading. With a
// hourglass: X images, T heatmaps; forward + heatmap MSE + backward + RMSprop.
// --output-dir writes the warm-up pass's outputs as DIR/<name>.npy
// (inference) or the warm-up step's loss as DIR/loss.npy (train), so the
// caller can check both engines computed the same thing.
// --device cuda runs the model on GPU 0 (weights moved there; --math tf32 /
// fp16 / bf16 let convolutions and matrix products use the tensor cores with
// those inputs and FP32 accumulation, tensors stay float32); each timed
// unit ends with a stream synchronisation, so times are complete.
// --graph (CUDA inference) replays the forward from a CUDA graph
// (nn::GraphForward); --unfused turns fusion off (inference: separate BN, ReLU
// and add layers, and no persistent batch-1 lifter kernel; training: separate
// BatchNorm, ReLU and Dropout) to measure what the fusion buys. --pipeline
// (with --math tf32, fp16 or bf16) uses the multi-stage cp.async tile kernels
// (cuda_kernels::set_tile_pipeline; --tf32-mma: TF32 on the mma.sync one), --stem-kernel the stem convolution's
// direct kernel (cuda_kernels::set_stem_path); neither yet verified on a GPU.
// --activations f16|bf16 (hourglass inference) stores the fused network's
// activations in 16 bits (HourglassNet::set_activation_dtype), its convs on
// the 16-bit tensor cores of that type; not yet verified on a GPU.
// --mlp-launch cooperative|cluster|prefetch picks the persistent batch-1
// lifter's launch (cuda_kernels::set_mlp_launch; cluster and prefetch not yet
// verified on a GPU).
// --conv direct|winograd (default winograd) picks the CPU's 3x3 stride-1
// product (ops::set_cpu_conv_algorithm): fused inference and training steps.
// --repeat N prints one JSON object {"ms": [...], ...}; --serve prints
// {"ready": true} after the warm-up, then answers every stdin line "K" with
// one JSON line of K more timed runs (so a driver can alternate engines
// without reloading), until EOF or "quit".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "dofpose/arena.h"
#include "dofpose/build_info.h"
#include "dofpose/context.h"
#include "dofpose/error.h"
#include "dofpose/npz.h"
#include "dofpose/nn/linear.h"
#include "dofpose/nn/graph_forward.h"
#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/model.h"
#include "dofpose/nn/optimizer.h"
#include "dofpose/weights.h"
#ifdef DOFPOSE_WITH_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

namespace {

using namespace dofpose;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model, input, attributes, target, output_dir;
  std::string device = "cpu", math = "f32", mlp_launch = "cooperative", activations = "f32", conv = "winograd";
  bool train = false, serve = false, graph = false, unfused = false, pipeline = false;
  bool stem_kernel = false, tf32_mma = false;
  int threads = 2, warmup = 1, repeat = 10;
};

constexpr const char* kUsage =
    "usage: dofpose_model_timer --model M --input X.npy [--attributes A.npy] [--threads 2] [--warmup 1]\n"
    "       [--device cpu|cuda] [--math f32|tf32|fp16|bf16] [--activations f32|f16|bf16] [--graph] [--unfused] [--pipeline] [--tf32-mma] [--stem-kernel] [--conv winograd|direct]\n"
    "       [--mlp-launch cooperative|cluster|prefetch]\n"
    "       [--train --target T.npy] [--output-dir DIR] (--repeat N | --serve)\n"
    "Times a model's forward (or, --train, a training step); prints JSON. The options\n"
    "are described at the top of bench/model_timer.cpp.\n";

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "dofpose_model_timer: " << why << "\n" << kUsage;
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    auto int_value = [&](long lo, long hi) {
      const std::string v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n < lo || n > hi)
        usage(a + " needs an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
              ", got '" + v + "'");
      return int(n);
    };
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (a == "--model") o.model = value();
    else if (a == "--input") o.input = value();
    else if (a == "--attributes") o.attributes = value();
    else if (a == "--target") o.target = value();
    else if (a == "--output-dir") o.output_dir = value();
    else if (a == "--threads") o.threads = int_value(1, kMaxCpuThreads);  // libgomp crashes on huge counts
    else if (a == "--warmup") o.warmup = int_value(0, 1000000);
    else if (a == "--repeat") o.repeat = int_value(0, 1000000);
    else if (a == "--device") o.device = value();
    else if (a == "--math") o.math = value();
    else if (a == "--activations") o.activations = value();
    else if (a == "--train") o.train = true;
    else if (a == "--graph") o.graph = true;
    else if (a == "--unfused") o.unfused = true;
    else if (a == "--pipeline") o.pipeline = true;
    else if (a == "--tf32-mma") o.pipeline = o.tf32_mma = true;
    else if (a == "--stem-kernel") o.stem_kernel = true;
    else if (a == "--conv") o.conv = value();
    else if (a == "--mlp-launch") o.mlp_launch = value();
    else if (a == "--serve") o.serve = true;
    else usage("unknown option " + a);
  }
  if (o.model.empty() || o.input.empty()) usage("--model and --input are required");
  if (o.train && o.target.empty()) usage("--train needs --target");
  if (o.train && !o.attributes.empty()) usage("--attributes is for inference (not --train)");
  if (o.graph && (o.train || o.device != "cuda")) usage("--graph is for CUDA inference");
  if (o.device != "cpu" && o.device != "cuda") usage("--device must be cpu or cuda, got " + o.device);
  if (o.conv != "winograd" && o.conv != "direct") usage("--conv must be winograd or direct, got " + o.conv);
  if (o.math != "f32" && o.math != "tf32" && o.math != "fp16" && o.math != "bf16")
    usage("--math must be f32, tf32, fp16 or bf16, got " + o.math);
  if (o.mlp_launch != "cooperative" && o.mlp_launch != "cluster" && o.mlp_launch != "prefetch")
    usage("--mlp-launch must be cooperative, cluster or prefetch, got " + o.mlp_launch);
  if (o.warmup < 1) usage("--warmup must be at least 1 (it sizes the arena and writes --output-dir)");
  return o;
}

void write_view(const std::string& path, const TensorView& v) {
  std::vector<int64_t> shape(v.shape.dims, v.shape.dims + v.ndim());
  Tensor host = Tensor::empty(v.shape);
  copy(v, host);
  write_npy(path, NpyDType::F32, shape, host.f32());
}

Device device_of(const Options& o) { return o.device == "cuda" ? Device::CUDA : Device::CPU; }

// --output-dir's record of a training step: DIR/loss.npy.
void write_loss(const Options& o, float loss) {
  if (!o.output_dir.empty()) write_npy(o.output_dir + "/loss.npy", NpyDType::F32, {1}, &loss);
}

// One timed unit of work; returns the loss for training steps (else 0).
class Runner {
 public:
  Runner(const Options& o, Context& ctx) : opt_(o), ctx_(ctx), arena_(device_of(o)) {}
  virtual ~Runner() = default;
  virtual float run(bool save_outputs) = 0;
  virtual std::string describe() const = 0;
  // The arena's high-water mark (activations, gradients; --graph uses its own).
  size_t arena_bytes() const { return arena_.high_water(); }

 protected:
  const Options& opt_;
  Context& ctx_;
  Arena arena_;
};

class InferRunner : public Runner {
 public:
  InferRunner(const Options& o, Context& ctx) : Runner(o, ctx), model_(nn::load_model(o.model)) {
    input_ = nn::read_npy_f32(o.input, "--input");
    if (!o.attributes.empty()) attributes_ = nn::read_attributes_npy(o.attributes);
    model_->check_inputs(inputs());
    model_->set_activation_dtype(nn::parse_activation_dtype(o.activations, "--activations"));
    model_->module().to_device(device_of(o));
    // A hourglass takes its image on the model's device (so the timing has no
    // upload); a lifter's raw 2D input is normalised on the host first anyway.
    if (model_->kind() == "hourglass") input_ = input_.to(device_of(o));
  }
  float run(bool save_outputs) override {
    std::vector<nn::NamedView> outs;
    if (opt_.graph) {
      if (!graph_) graph_ = std::make_unique<nn::GraphForward>(*model_);
      outs = graph_->run(inputs());
      graph_->synchronize();
    } else {
      arena_.reset();
      outs = model_->forward(arena_, inputs());
      ctx_.synchronize();
    }
    if (save_outputs && !opt_.output_dir.empty())
      for (const auto& o : outs) write_view(opt_.output_dir + "/" + o.name + ".npy", o.value);
    return 0.f;
  }
  std::string describe() const override { return model_->summary(); }

 private:
  nn::ModelInputs inputs() const {
    return {input_.view(), attributes_.empty() ? TensorView() : attributes_.view()};
  }
  std::unique_ptr<nn::Model> model_;
  std::unique_ptr<nn::GraphForward> graph_;
  Tensor input_, attributes_;
};

class TrainRunner : public Runner {
 public:
  TrainRunner(const Options& o, Context& ctx) : Runner(o, ctx) {
    WeightsFile file(o.model);
    lifter_ = nn::load_lifter(file);
    lifter_->to_device(device_of(o));
    lifter_->set_dropout_seed(0);
    optimizer_ = std::make_unique<nn::Adam>(lifter_->parameters());
    x_ = nn::read_npy_f32(o.input, "--input");
    y_ = nn::read_npy_f32(o.target, "--target");
    const auto& c = lifter_->config();
    check_shape("model_timer --train", "input", x_, Shape{x_.shape()[0], c.input_dim()});
    check_shape("model_timer --train", "target", y_, Shape{x_.shape()[0], c.output_dim()});
    x_ = x_.to(device_of(o));
    y_ = y_.to(device_of(o));
  }
  float run(bool save_outputs) override {
    arena_.reset();
    nn::LifterOutput out = lifter_->forward(arena_, x_.view(), nn::Mode::Train);
    std::vector<TensorView> dposes;
    const float loss = nn::lifter_l1_loss(arena_, out, y_.view(), dposes);
    lifter_->backward(arena_, dposes);
    optimizer_->step();
    if (lifter_->config().max_norm > 0.f) nn::apply_max_norm(*lifter_, lifter_->config().max_norm);
    ctx_.synchronize();
    if (save_outputs) write_loss(opt_, loss);
    return loss;
  }
  std::string describe() const override {
    return "lifter " + lifter_->config().kind + " train step, Adam";
  }

 private:
  std::unique_ptr<nn::Lifter> lifter_;
  std::unique_ptr<nn::Adam> optimizer_;
  Tensor x_, y_;
};

// One hourglass training step: forward (train mode), the heatmap MSE of every
// stack, backward, RMSprop (the multi-task net's optimiser, PyTorch defaults
// but lr 2.5e-4). --input: images [N,3,S,S]; --target: heatmaps [N,J,S/4,S/4].
class HourglassTrainRunner : public Runner {
 public:
  HourglassTrainRunner(const Options& o, Context& ctx) : Runner(o, ctx) {
    net_ = nn::HourglassNet::load(o.model);
    net_->to_device(device_of(o));
    nn::RMSpropOptions ro;
    ro.lr = 2.5e-4f;
    optimizer_ = std::make_unique<nn::RMSprop>(net_->parameters(), ro);
    x_ = nn::read_npy_f32(o.input, "--input").to(device_of(o));
    y_ = nn::read_npy_f32(o.target, "--target").to(device_of(o));
  }
  float run(bool save_outputs) override {
    arena_.reset();
    nn::HourglassOutputs out = net_->forward(arena_, x_.view(), nn::Mode::Train);
    nn::HourglassGrads grads;
    const float loss = nn::heatmap_mse_loss(arena_, out.heatmaps, y_.view(), {}, &grads.heatmaps);
    net_->backward(arena_, grads);
    optimizer_->step();
    ctx_.synchronize();
    if (save_outputs) write_loss(opt_, loss);
    return loss;
  }
  std::string describe() const override { return "hourglass train step, RMSprop"; }

 private:
  std::unique_ptr<nn::HourglassNet> net_;
  std::unique_ptr<nn::RMSprop> optimizer_;
  Tensor x_, y_;
};

std::string json_string(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) r += c;
  }
  return r + "\"";
}

// Runs `count` timed units and returns one JSON line.
std::string timed(Runner& runner, int count, bool train) {
  std::ostringstream ms, losses;
  ms.precision(6);
  losses.precision(7);
  for (int i = 0; i < count; ++i) {
    const auto t0 = Clock::now();
    const float loss = runner.run(false);
    const double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    ms << (i ? "," : "") << dt;
    losses << (i ? "," : "") << loss;
  }
  std::string line = "{\"ms\":[" + ms.str() + "]";
  if (train) line += ",\"loss\":[" + losses.str() + "]";
  return line + "}";
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  try {
    set_cpu_threads(opt.threads);
    ops::set_cpu_conv_algorithm(opt.conv == "direct" ? ops::CpuConvAlgorithm::Direct
                                                     : ops::CpuConvAlgorithm::Winograd);
#ifdef DOFPOSE_WITH_CUDA
    if (opt.math == "tf32") cuda_kernels::set_math_mode(cuda_kernels::MathMode::TF32);
    if (opt.math == "fp16") cuda_kernels::set_math_mode(cuda_kernels::MathMode::FP16);
    if (opt.math == "bf16") cuda_kernels::set_math_mode(cuda_kernels::MathMode::BF16);
    cuda_kernels::set_tile_pipeline(opt.pipeline);
    cuda_kernels::set_tf32_mma(opt.tf32_mma);
    cuda_kernels::set_stem_path(opt.stem_kernel);
    cuda_kernels::set_mlp_launch(opt.mlp_launch == "cluster"    ? cuda_kernels::MlpLaunch::Cluster
                                 : opt.mlp_launch == "prefetch" ? cuda_kernels::MlpLaunch::Prefetch
                                                                : cuda_kernels::MlpLaunch::Cooperative);
#endif
    std::unique_ptr<nn::ScopedUnfused> unfused;
    if (opt.unfused) unfused = std::make_unique<nn::ScopedUnfused>();
    Context ctx(device_of(opt));
    ctx.make_current();
    std::unique_ptr<Runner> runner;
    if (opt.train && WeightsFile(opt.model).metadata().count("kind") &&
        WeightsFile(opt.model).metadata().at("kind") == "hourglass")
      runner = std::make_unique<HourglassTrainRunner>(opt, ctx);
    else if (opt.train) runner = std::make_unique<TrainRunner>(opt, ctx);
    else runner = std::make_unique<InferRunner>(opt, ctx);
    // Warm-up: sizes the arena (later passes allocate nothing) and warms caches.
    for (int i = 0; i < opt.warmup; ++i) runner->run(i == 0);
    if (opt.serve) {
      std::cout << "{\"ready\":true,\"model\":" << json_string(runner->describe())
                << ",\"threads\":" << cpu_threads() << "}" << std::endl;
      std::string line;
      while (std::getline(std::cin, line) && line != "quit") {
        const int k = std::atoi(line.c_str());
        if (k <= 0) {
          std::cout << "{\"error\":" << json_string("expected a positive count, got '" + line + "'")
                    << "}" << std::endl;
          continue;
        }
        std::cout << timed(*runner, k, opt.train) << std::endl;
      }
    } else {
      std::string line = timed(*runner, opt.repeat, opt.train);
      line.pop_back();  // reopen the object to add context
      std::cout << line << ",\"model\":" << json_string(runner->describe())
                << ",\"threads\":" << cpu_threads()
                << ",\"arena_mib\":" << double(runner->arena_bytes()) / (1 << 20) << "}" << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "dofpose_model_timer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
