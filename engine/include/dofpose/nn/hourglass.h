// Stacked hourglass network (Newell et al., ECCV 2016) with the layout and
// state_dict names of the pytorch-pose repository (see
// weights_tools/reference_hourglass.py, the PyTorch twin of this file), plus
// two optional multi-task heads on the last stack: per-joint attribute
// logits and a domain classifier behind a gradient reversal layer.
// Architecture, names, parameter counts and FLOPs: docs/models.md.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dofpose/nn/basic_layers.h"
#include "dofpose/nn/conv_layers.h"
#include "dofpose/weights.h"

namespace dofpose::nn {

struct HourglassConfig {
  int stacks = 2;
  int blocks = 1;            // residual blocks per hourglass position and in res.{s}
  int num_feats = 256;       // channels inside the hourglasses (pytorch-pose: 2 * its num_feats)
  int num_joints = 16;       // heatmaps per stack
  int input_size = 256;      // square input; heatmaps are input_size / 4
  int depth = 4;             // hourglass levels (pytorch-pose: 4)
  int stem_channels = 64;    // conv1 output (pytorch-pose: 64)
  // Widths of layer2/layer3 (same parameter names either way, see docs/models.md):
  //   "newell"       Newell's original (and princeton-vl's): layer2 Bottleneck(2s -> 2s),
  //                  layer3 Bottleneck(2s -> num_feats) with a downsample when 2s != num_feats;
  //   "pytorch-pose" bearpaw/pytorch-pose's released models: layer2 Bottleneck(2s -> 4s)
  //                  with a downsample, layer3 Bottleneck(4s -> num_feats), downsample
  //                  when 4s != num_feats (s = stem_channels).
  std::string stem_layout = "newell";
  bool attribute_head = true;
  int num_attribute_joints = 9;
  int attribute_classes = 3;
  int attribute_channels = 32;
  bool domain_head = true;
  int domain_hidden = 64;
  float grl_lambda = 1.f;
  float softargmax_beta = 1.f;

  int heatmap_size() const { return input_size / 4; }

  // Upper bounds (docs/models.md): far above any published hourglass, low
  // enough that a typo fails at once instead of allocating.
  static constexpr int kMaxStacks = 64, kMaxBlocks = 64, kMaxChannels = 8192;
  static constexpr int kMaxJoints = 1024, kMaxInputSize = 4096;
  // Throws dofpose::Error naming the field when the config cannot be built.
  void validate() const;
  // Missing keys keep their defaults; unknown keys are an error (typos).
  static HourglassConfig from_json_string(const std::string& json);
  std::string to_json_string() const;
};

// Pre-activation bottleneck (pytorch-pose Bottleneck, expansion 2):
// out = conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x))))))))) + skip(x),
// skip = downsample.0 (1x1 conv) when inplanes != 2 * planes, else identity.
class Bottleneck : public Module {
 public:
  Bottleneck(int inplanes, int planes);
  TensorView forward(Arena& arena, const TensorView& x, Mode mode);
  // Inference in three fused convs (see fused_inference() in dofpose/nn/module.h).
  TensorView forward_fused(Arena& arena, const TensorView& x);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  void reset_parameters(std::mt19937_64& rng);
  int64_t flops(int N, int H, int W) const;

  BatchNorm bn1;
  Conv2d conv1;
  BatchNorm bn2;
  Conv2d conv2;
  BatchNorm bn3;
  Conv2d conv3;
  std::unique_ptr<Conv2d> downsample;  // "downsample.0"
  TraceName trace;  // set by collect()

 private:
  ReLU relu1_, relu2_, relu3_;
};

// nn.Sequential of bottlenecks: "{i}.".
class Residuals : public Module {
 public:
  Residuals(int inplanes, int planes, int blocks);
  TensorView forward(Arena& arena, const TensorView& x, Mode mode);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  void reset_parameters(std::mt19937_64& rng);
  int64_t flops(int N, int H, int W) const;

  std::vector<std::unique_ptr<Bottleneck>> blocks;
  TraceName trace;  // set by collect()
};

// One hourglass: "hg.{level}.{branch}." with level 0 the innermost; branches
// 0 up1, 1 low1 (after a max pool), 2 low3, 3 the bottom (level 0 only);
// out = up1(x) + upsample2x(low3(inner(low1(maxpool(x))))).
class HourglassBlock : public Module {
 public:
  HourglassBlock(int blocks, int feats, int depth);
  TensorView forward(Arena& arena, const TensorView& x, Mode mode);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  void reset_parameters(std::mt19937_64& rng);
  int64_t flops(int N, int H, int W) const;
  TraceName trace;  // set by collect()

 private:
  struct Level {
    std::vector<std::unique_ptr<Residuals>> branches;
    MaxPool2x2 pool;
    UpsampleNearest2x upsample;
    TraceName trace;  // "hg.{s}.hg.{level}": names its pool, upsample and add
  };
  std::vector<Level> levels_;
  TensorView forward_level(Arena& arena, int n, const TensorView& x, Mode mode);
  TensorView backward_level(Arena& arena, int n, const TensorView& dy);
};

// nn.Linear: weight [out, in], bias [out]; x [N, in] -> [N, out].
class FullyConnected : public Module {
 public:
  FullyConnected(int in_features, int out_features);
  TensorView forward(Arena& arena, const TensorView& x);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  void reset_parameters(std::mt19937_64& rng);
  int64_t flops(int N) const { return 2LL * N * in_features * out_features; }

  int in_features, out_features;
  Tensor weight, bias, grad_weight, grad_bias;
  TraceName trace;  // set by collect()

 private:
  TensorView x_;
};

// Mean over H and W: [N, C, H, W] -> [N, C].
class GlobalAvgPool {
 public:
  TensorView forward(Arena& arena, const TensorView& x);
  TensorView backward(Arena& arena, const TensorView& dy);

 private:
  TensorView x_, w_;  // w_: [1, H*W] of 1/(H*W), so the op is a linear layer
};

// Heatmaps [N,J,H,W] -> coordinates [N,J,2] (x, y in heatmap pixels) of
// softmax(beta * heat) (ops::softargmax_forward).
class SoftArgmax {
 public:
  explicit SoftArgmax(float beta = 1.f) : beta(beta) {}
  TensorView forward(Arena& arena, const TensorView& heat);
  TensorView backward(Arena& arena, const TensorView& dcoords);
  float beta;

 private:
  TensorView prob_;
};

// cat(features, heatmaps) -> conv 1x1 -> BN -> ReLU -> 2x2 max pools down to
// 8x8 -> flatten -> fc -> [N, attribute joints, classes]. Names attr.conv,
// attr.bn, attr.fc.
class AttributeHead : public Module {
 public:
  AttributeHead(int feats, int joints, int channels, int heatmap_size, int attr_joints,
                int classes);
  TensorView forward(Arena& arena, const TensorView& feats, const TensorView& heat, Mode mode);
  // Returns the gradients of (feats, heat).
  std::pair<TensorView, TensorView> backward(Arena& arena, const TensorView& dlogits);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  void reset_parameters(std::mt19937_64& rng);
  int64_t flops(int N) const;

  int feats, joints, heatmap_size, attr_joints, classes;
  Conv2d conv;
  BatchNorm bn;
  FullyConnected fc;
  TraceName trace;  // set by collect()

 private:
  ReLU relu_;
  std::vector<MaxPool2x2> pools_;
  Shape pooled_shape_;
};

// GRL (identity forward, -lambda x gradient backward) -> global average pool
// -> fc1 -> ReLU -> fc2 -> [N, 2]. Names domain.fc1, domain.fc2.
class DomainHead : public Module {
 public:
  DomainHead(int feats, int hidden, float grl_lambda);
  TensorView forward(Arena& arena, const TensorView& feats);
  TensorView backward(Arena& arena, const TensorView& dlogits);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  void reset_parameters(std::mt19937_64& rng);
  int64_t flops(int N) const { return fc1.flops(N) + fc2.flops(N); }

  float grl_lambda;
  FullyConnected fc1, fc2;
  TraceName trace;  // set by collect()

 private:
  GlobalAvgPool pool_;
  ReLU relu_;
};

struct HourglassOutputs {
  std::vector<TensorView> heatmaps;  // per stack, [N, joints, H/4, W/4]
  TensorView attributes;             // [N, attribute joints, classes]; empty without the head
  TensorView domain;                 // [N, 2]; empty without the head
  TensorView features;               // last stack's features [N, feats, H/4, W/4]
};

// Gradients of a loss with respect to the outputs; any empty view (or an
// empty heatmaps vector) counts as zero.
struct HourglassGrads {
  std::vector<TensorView> heatmaps;
  TensorView attributes;
  TensorView domain;
};

class HourglassNet : public Module {
 public:
  // Parameters initialised like PyTorch's defaults from `seed`.
  explicit HourglassNet(const HourglassConfig& config, uint64_t seed = 0);

  // x [N, 3, input_size, input_size].
  HourglassOutputs forward(Arena& arena, const TensorView& x, Mode mode);
  // Writes every parameter gradient (zero for heads without a gradient);
  // returns dx of the input image when input_grad, else an empty view.
  TensorView backward(Arena& arena, const HourglassGrads& grads, bool input_grad = false);

  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  void reset_parameters(uint64_t seed);
  // Convolution and linear multiply-adds x 2 of one forward of `batch` images.
  int64_t forward_flops(int batch = 1) const;

  // Weights files: every parameter and buffer under its state_dict name,
  // metadata kind "hourglass", format_version "1", config (JSON).
  void save(const std::string& path) const;
  // Copies every parameter and buffer from `file` (shapes checked; a missing
  // tensor is an error naming it).
  void load_state(const WeightsFile& file);
  static std::unique_ptr<HourglassNet> load(const std::string& path);

  const HourglassConfig& config() const { return config_; }

  // 16-bit activations: a fused inference forward (fused_inference(mode))
  // stores every activation from the stem's output to the last stack's
  // features as `t` (F16 or BF16; F32, the default, stores them as float32),
  // half the memory traffic. The image, the heatmaps, the features handed to
  // the heads and the heads' outputs stay F32. Training and unfused forwards
  // ignore it. Accuracy: docs/cuda.md, "16-bit activations".
  void set_activation_dtype(DType t);
  DType activation_dtype() const { return act_dtype_; }

  Conv2d conv1;
  BatchNorm bn1;
  Residuals layer1, layer2, layer3;
  struct Stack {
    std::unique_ptr<HourglassBlock> hg;
    std::unique_ptr<Residuals> res;
    std::unique_ptr<Conv2d> fc_conv;   // fc.{s}.0
    std::unique_ptr<BatchNorm> fc_bn;  // fc.{s}.1
    std::unique_ptr<Conv2d> score;
    std::unique_ptr<Conv2d> fc_;       // all stacks but the last
    std::unique_ptr<Conv2d> score_;
    ReLU fc_relu;
    std::string fc_relu_name;  // "fc.{s}.2", the ReLU's trace name
  };
  std::vector<Stack> stacks;
  std::unique_ptr<AttributeHead> attr;
  std::unique_ptr<DomainHead> domain;
  TraceName trace;  // set by collect(); names the stem's relu/maxpool and the stack merges

 private:
  HourglassConfig config_;
  ReLU relu_;
  MaxPool2x2 maxpool_;
  Shape heat_shape_, feat_shape_;
  bool forward_done_ = false;
  bool fused_forward_ = false;
  DType act_dtype_ = DType::F32;
};

// Sum over stacks of ops::heatmap_mse_forward(heatmaps[s], target,
// joint_weight). With dheatmaps non-null it is filled with the gradients
// (from `arena`) scaled by dloss.
float heatmap_mse_loss(Arena& arena, const std::vector<TensorView>& heatmaps,
                       const TensorView& target, const TensorView& joint_weight,
                       std::vector<TensorView>* dheatmaps, float dloss = 1.f);

}  // namespace dofpose::nn
