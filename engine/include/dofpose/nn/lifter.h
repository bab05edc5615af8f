// 2D -> 3D pose lifters (docs/models.md, "Lifters"):
//  * martinez    — one residual-MLP regressor X -> all joints (Martinez et al. 2017);
//  * progressive — the paper: two blocks of three regressors (torso, proximal,
//                  distal), each also fed the groups predicted before it;
//  * two_block   — ablation: the same six regressors, each fed only X.
// Inputs and outputs are normalised (zero mean, unit std per coordinate, with
// the statistics stored in the model as buffers norm.{input,output}.{mean,std}).
// Output: all 17 H36M joints x 3, pelvis-relative, joint-major ([N,51]); the
// pelvis is never predicted — its three values are the constant 0.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dofpose/nn/basic_layers.h"
#include "dofpose/nn/linear.h"
#include "dofpose/nn/module.h"
#include "dofpose/weights.h"

namespace dofpose::nn {

class Optimizer;

struct LifterConfig {
  std::string kind = "progressive";  // "martinez" | "progressive" | "two_block"
  // 2D input joints: 17 = all H36M-17 joints; 16 = H36M-17 without neck/nose
  // (joint 9), the 16 joints Martinez et al. feed from detections.
  int num_joints_in = 16;
  // Appends the 9 torso-plane attributes, one-hot over (front, back, on-plane)
  // in kAttributeJoints order: 27 inputs ("onehot"; soft class probabilities
  // in the same layout also fit).
  bool use_attributes = false;
  std::string attribute_encoding = "onehot";
  int width = 1024;
  int blocks = 2;          // residual blocks per regressor
  float dropout = 0.5f;
  float max_norm = 1.f;    // row max-norm on Linear weights after each step; 0 = off
  float bn_momentum = 0.1f, bn_eps = 1e-5f;
  // Joint groups (H36M-17 indices); they must partition 0..16. The pelvis (0)
  // belongs to the torso but is not predicted (it is the origin).
  std::vector<int> torso = {0, 1, 4, 7, 8, 9, 11, 14};
  std::vector<int> proximal = {10, 12, 15, 2, 5};
  std::vector<int> distal = {13, 16, 3, 6};

  static constexpr int kOutputJoints = 17;
  static constexpr int kAttributeInputs = 27;
  // Upper bounds of width and blocks (docs/models.md): far above any trained
  // lifter, low enough that a typo fails at once instead of allocating.
  static constexpr int kMaxWidth = 16384;
  static constexpr int kMaxBlocks = 64;

  void validate() const;  // throws naming the field
  std::vector<int> input_joints() const;  // H36M indices of the 2D inputs, in order
  int pose_input_dim() const { return 2 * num_joints_in; }
  int attribute_dim() const { return use_attributes ? kAttributeInputs : 0; }
  int input_dim() const { return pose_input_dim() + attribute_dim(); }
  int output_dim() const { return 3 * kOutputJoints; }

  static LifterConfig from_json_string(const std::string& json);  // unknown keys are errors
  std::string to_json_string() const;
};

// Linear -> BatchNorm1d -> ReLU -> Dropout, twice, plus the identity.
class ResidualBlock : public Module {
 public:
  ResidualBlock(int width, float dropout, float bn_momentum, float bn_eps);
  TensorView forward(Arena& arena, const TensorView& x, Mode mode);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;

  Linear linear1, linear2;
  BatchNorm bn1, bn2;
  ReLU relu1, relu2;
  Dropout drop1, drop2;
  TraceName trace;  // set by collect()
};

// Linear(in, width) -> BN -> ReLU -> Dropout, `blocks` residual blocks, Linear(width, out).
class Regressor : public Module {
 public:
  Regressor(int in, int out, const LifterConfig& c);
  TensorView forward(Arena& arena, const TensorView& x, Mode mode);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  void init_parameters(uint64_t seed);
  std::vector<Dropout*> dropouts();
  std::vector<Linear*> linears();

  int in_features, out_features;
  Linear input_layer;
  BatchNorm input_bn;
  ReLU input_relu;
  Dropout input_drop;
  std::vector<std::unique_ptr<ResidualBlock>> blocks;
  Linear output_layer;
  TraceName trace;  // set by collect()
};

struct LifterOutput {
  std::vector<TensorView> poses;  // one [N,51] normalised pose per block
  const TensorView& final() const { return poses.back(); }
};

// The common machinery; the three kinds differ only in their wiring (which
// regressors exist, which group each predicts, which earlier predictions it sees).
class Lifter : public Module {
 public:
  static std::unique_ptr<Lifter> create(const LifterConfig& config, uint64_t init_seed = 0);

  const LifterConfig& config() const { return config_; }
  int num_blocks() const { return num_blocks_; }

  // x: [N, input_dim] normalised (see prepare_input). Returns views into `arena`.
  LifterOutput forward(Arena& arena, const TensorView& x, Mode mode);
  // dposes: one [N,51] gradient per block (an empty view counts as zero).
  // Writes every parameter gradient and returns dL/dx.
  TensorView backward(Arena& arena, const std::vector<TensorView>& dposes);

  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  // PyTorch-default init of every Linear (BN: weight 1, bias 0), deterministic in seed.
  void init_parameters(uint64_t seed);
  // Gives every dropout layer its own stream derived from `seed`, counters at 0.
  void set_dropout_seed(uint64_t seed);
  std::vector<Dropout*> dropouts();
  // 2 * multiply-adds of the Linear layers (+ bias adds) for one pose at inference.
  int64_t flops_per_pose() const;

  // ---- normalisation (buffers norm.input.* [2*num_joints_in], norm.output.* [51])
  Tensor norm_input_mean, norm_input_std, norm_output_mean, norm_output_std;
  // pose2d [N, J_in, 2] or [N, 2*J_in] in input_joints() order, pixels;
  // attributes [N,27] (required iff use_attributes, else pass {}).
  // Returns the normalised network input [N, input_dim].
  TensorView prepare_input(Arena& arena, const TensorView& pose2d,
                           const TensorView& attributes) const;
  // pose3d [N,17,3] or [N,51] (pelvis-relative) -> normalised [N,51].
  TensorView normalise_output(Arena& arena, const TensorView& pose3d) const;
  // normalised [N,51] -> pelvis-relative [N,51]; the pelvis comes out as 0.
  TensorView denormalise_output(Arena& arena, const TensorView& y) const;
  // Sets the statistics from n training poses (population std as Martinez et
  // al.; std < 1e-4 becomes 1, the pelvis gets mean 0, std 1).
  void fit_normalisation(const float* pose2d, const float* pose3d, int64_t n);

  struct RegressorSlot {
    std::string name;               // "regressor", "block1.torso", ...
    std::vector<int> joints;        // predicted H36M joints (no pelvis), output order
    std::vector<int> sources;       // earlier regressors whose outputs follow X in the input
    int block = 0;                  // which block's pose it fills
    std::unique_ptr<Regressor> net;
  };
  const std::vector<RegressorSlot>& regressors() const { return slots_; }
  TraceName trace;  // set by collect(); names the input concats and pose assembly

 protected:
  explicit Lifter(const LifterConfig& config);
  void add_regressor(const std::string& name, std::vector<int> joints, std::vector<int> sources,
                     int block);

 private:
  LifterConfig config_;
  int num_blocks_ = 0;
  std::vector<RegressorSlot> slots_;
  std::vector<TensorView> outs_;  // per regressor, from the last forward
  int64_t batch_ = 0;
  bool fused_forward_ = false;
};

class MartinezLifter : public Lifter {
 public:
  explicit MartinezLifter(const LifterConfig& c);
};
class ProgressiveLifter : public Lifter {
 public:
  explicit ProgressiveLifter(const LifterConfig& c);
};
class TwoBlockLifter : public Lifter {
 public:
  explicit TwoBlockLifter(const LifterConfig& c);
};

// Sum over blocks of the mean absolute error (ops::l1) against the normalised
// target [N,51]; fills dposes (one gradient per block, from `arena`).
float lifter_l1_loss(Arena& arena, const LifterOutput& out, const TensorView& target,
                     std::vector<TensorView>& dposes);

// One-hot attribute encoding: labels [n,9] (0 front, 1 back, 2 on-plane) -> out [n,27].
void encode_attribute_labels(const int32_t* labels, int64_t n, float* out);

// Checkpoints: metadata format_version "1", kind "lifter", config (JSON), and
// the optimizer state when one is given.
void save_lifter(Lifter& lifter, const std::string& path, const Optimizer* optimizer = nullptr);
// Builds the lifter the file's config describes and loads its weights. The
// normalisation statistics must be finite with every std > 0 (the error
// names the file and the tensor).
std::unique_ptr<Lifter> load_lifter(const WeightsFile& file);
// Loads into an existing lifter; the file's kind and config kind must match.
void load_lifter_weights(Lifter& lifter, const WeightsFile& file);

}  // namespace dofpose::nn
