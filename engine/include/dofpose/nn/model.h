// Models for inference: open a weights file, build the network its metadata
// describes (kind "hourglass" | "lifter", config JSON), load its weights, and
// run it through one interface: forward(inputs) -> named outputs.
// run_forward() is the whole `dofpose forward` command (docs/cli.md) as a
// library function, so tests call it in-process.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dofpose/arena.h"
#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/nn/trace.h"

namespace dofpose::nn {

struct NamedView {
  std::string name;
  TensorView value;
};

// What a forward takes, as the user gives it (CPU float32 views):
//  * hourglass: input = image batch [N,3,S,S] (S = config input_size);
//  * lifter:    input = raw 2D joints [N,J,2] or [N,2J] in the units of the
//               model's normalisation statistics (J = num_joints_in, in
//               LifterConfig::input_joints() order); attributes = [N,27]
//               one-hot or class probabilities, only when the config uses them.
struct ModelInputs {
  TensorView input;
  TensorView attributes;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual std::string kind() const = 0;             // "hourglass" | "lifter"
  virtual std::string summary() const = 0;          // one line: kind and main config values
  virtual std::string expected_input() const = 0;   // e.g. "[N,3,256,256]"
  virtual bool uses_attributes() const { return false; }
  // The hourglass's config; nullptr for other models.
  virtual const HourglassConfig* hourglass_config() const { return nullptr; }
  // Throws dofpose::Error naming the expected shape when `in` does not fit the config.
  virtual void check_inputs(const ModelInputs& in) const = 0;
  // Inference (BatchNorm running statistics, no dropout). Returns views into
  // `arena` (valid until its reset) in a fixed order; the names:
  //  hourglass: heatmaps_stack{s} [N,J,S/4,S/4] for every stack s, coords
  //             [N,J,2] (soft-argmax of the last stack, x y in heatmap pixels),
  //             attributes [N,A,C] logits and domain [N,2] logits when the heads exist;
  //  lifter:    pose3d_block{b} [N,17,3] for every block b (1-based) when there
  //             are several, and pose3d [N,17,3] = the final block; millimetres
  //             (the units of the output statistics), pelvis-relative, pelvis 0.
  std::vector<NamedView> forward(Arena& arena, const ModelInputs& in) {
    check_inputs(in);
    return forward_staged(arena, stage_inputs(arena, in));
  }
  // forward() in its two halves, for CUDA graphs (nn::GraphForward):
  //  stage_inputs: the host side, inputs checked by check_inputs() to views on
  //    the arena's device (hourglass: the image; lifter: the normalised network
  //    input, attributes included); may synchronise;
  //  forward_staged: the network on staged inputs; on CUDA only device work
  //    queued on the op stream (no allocation once the arena is sized, no host
  //    synchronisation), so a capture of it replays as the whole forward.
  virtual ModelInputs stage_inputs(Arena& arena, const ModelInputs& in) = 0;
  virtual std::vector<NamedView> forward_staged(Arena& arena, const ModelInputs& staged) = 0;
  virtual Module& module() = 0;
  // How fused inference stores the activations inside the network: F32
  // (default), or F16 / BF16 for the hourglass (HourglassNet::set_activation_dtype);
  // other models refuse 16-bit activations with an error naming themselves.
  virtual void set_activation_dtype(DType t) {
    DOFPOSE_CHECK(t == DType::F32, kind(), " model: ", dtype_name(t),
                  " activations are for the hourglass only");
  }
};
// "f32" | "f16" | "bf16" (the CLI spelling) -> DType; errors name `flag`.
DType parse_activation_dtype(const std::string& name, const char* flag);

// Reads the file's metadata (format_version "1", kind, config), builds the
// network and loads every weight. Errors name the file and what is wrong.
std::unique_ptr<Model> load_model(const std::string& path);
// Wraps networks built in memory (tests, tools). Runs collect("") so every
// layer knows its traced name.
std::unique_ptr<Model> make_model(std::unique_ptr<HourglassNet> net);
std::unique_ptr<Model> make_model(std::unique_ptr<Lifter> net);

// ---------------------------------------------------------------- dofpose forward

struct ForwardOptions {
  std::string model;             // weights file
  std::string input;             // float32 .npy (or `image`, not both)
  // A photo for a hourglass (any format stb_image reads): letterboxed into
  // [1,3,S,S] (dofpose/image.h), RGB in [0,1] minus `input_mean`.
  std::string image;
  // RGB mean subtracted from the photo's pixels; empty = the weights file's
  // tensor norm.input.mean [3] when it has one (pytorch-pose conversions), else none.
  std::vector<float> input_mean;
  std::string keypoints;         // with `image`: `dofpose lift` input JSON (MPII-16 models only)
  std::string overlay;           // with `image`: PNG of the photo with the joints drawn
  std::string attributes;        // optional .npy: [N,9] int labels or [N,9,3] / [N,27] float32 probabilities
  std::string output;            // .npz to write (atomically); empty = do not write
  std::string dump_dir;          // empty = no dump
  bool profile = false;
  int repeat = 10;               // profiled runs, after one warm-up
  int threads = 0;               // CPU threads; 0 = leave the default
  std::string device = "cpu";    // "cpu" | "cuda"
  std::string activations = "f32";  // "f32" | "f16" | "bf16": hourglass activation storage
  // Runs every layer separately (nn::ScopedUnfused): the profile gets one row per
  // BatchNorm / ReLU / Add instead of the fused Conv2d+BN+ReLU rows. F32 only.
  bool unfused = false;
  // The CPU's fused 3x3 convolutions: "winograd" (default, F(4x4, 3x3) where it
  // pays) or "direct" (the implicit GEMM; the unfused network's bits).
  std::string conv = "winograd";
};

struct ProfileRow {
  std::string name, type;
  Shape shape;
  DType dtype = DType::F32;  // the output's; shown when not F32 (16-bit activations)
  double ms = 0;         // mean over the profiled runs
  double share = 0;      // percent of the sum over the leaf layers (0 for composites)
  int64_t flops = 0;     // 2 x multiply-adds (conv/linear), else 0
  double gflops_per_s = 0;
  double peak_percent = 0;  // gflops_per_s as a percentage of ForwardResult::flop_peak_gflops
  bool composite = false;
};

struct ForwardResult {
  std::string model_summary;
  // With an image: its size, the mean subtracted (empty = none) and the last
  // stack's joints in its pixels [J x 2].
  int image_width = 0, image_height = 0;
  std::vector<float> input_mean;
  std::vector<float> image_keypoints;
  Shape input_shape;
  std::vector<std::string> output_names;
  std::vector<Shape> output_shapes;
  std::vector<DumpTracer::Entry> dumped;  // with --dump: every file written, in order
  // With --profile: every traced op in execution order (leaves and composites).
  std::vector<ProfileRow> profile;
  int repeat = 0, threads = 0;
  std::string device;     // where it ran: "cpu" or the CUDA device's name
  // CPU hourglass: how its fused 3x3 convolutions ran ("winograd" / "direct",
  // ops::cpu_conv_algorithm_name); empty elsewhere.
  std::string cpu_conv;
  double layers_ms = 0;  // sum of the leaf layers' mean times
  double wall_ms = 0;    // mean wall time of one whole forward
  // CUDA: the device's FP32 peak (device_peak.h; the forward runs in F32);
  // 0 on the CPU or an architecture not in the table (no %peak column then).
  double flop_peak_gflops = 0;
};

// Loads the model and the inputs (every error names the file and what was
// expected), runs one forward and writes its outputs, then the dump pass and
// the profiled runs when asked.
ForwardResult run_forward(const ForwardOptions& opt);

// The darknet-style table of the leaf layers with a total line.
std::string format_profile(const ForwardResult& r);
// The same data as JSON (leaves and composites, with a "composite" flag).
std::string profile_json(const ForwardResult& r);

// A float32 .npy file as a tensor (errors: unreadable, not float32, non-finite).
Tensor read_npy_f32(const std::string& path, const char* what);
// Lifter attributes from .npy: int labels [N,9] (one-hot encoded) or float32
// probabilities [N,9,3] / [N,27]; returns [N,27].
Tensor read_attributes_npy(const std::string& path);

}  // namespace dofpose::nn
