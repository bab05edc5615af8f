// End-to-end image -> 3D pose: stacked hourglass -> soft-argmax -> MPII-16 to
// H36M map -> lifter, with one backward pass through all of it, so both
// networks can be trained jointly (docs/models.md, "End-to-end chain").
//
// Forward, per sample n:
//  1. heat = last stack's heatmaps [N,16,h,h] (MPII-16 joints, h = input/4);
//  2. c = SoftArgmax(heat) [N,16,2] in heatmap pixels (pixel centres at integers);
//  3. u = (c + 0.5) * s - 0.5 with s = input_size / h: image pixels, pixel
//     centres at integers (heatmap pixel c covers image pixels s*c .. s*c+s-1);
//  4. p = frame_scale[n] * u + frame_offset[n]: the lifter's training frame
//     (identity when no frame is given);
//  5. q = layout_map(MPII16 -> H36M17) applied to p (a fixed linear map; the
//     spine is the mean of pelvis and thorax), keeping the lifter's
//     input_joints() (16: without neck/nose);
//  6. x = (q - norm.input.mean) / norm.input.std, plus 27 attribute values when
//     the lifter uses attributes;
//  7. the lifter's normalised 3D poses, one per block.
// Attributes for the lifter: either the caller's [N,27] (e.g. one-hot ground
// truth; a constant, no gradient) or, when none are given, the per-joint
// softmax of the hourglass attribute logits [N,9,3] — differentiable: the
// lifter's gradient flows back through the softmax into the attribute head.
#pragma once
#include <vector>

#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/lifter.h"

namespace dofpose::nn {

struct PoseChainOutput {
  HourglassOutputs hourglass;  // every stack's heatmaps, attribute/domain logits
  TensorView coords_heatmap;   // [N,16,2] soft-argmax, heatmap pixels, MPII-16 order
  TensorView coords_image;     // [N,16,2] input-image pixels
  TensorView pose2d;           // [N,J_in,2] lifter frame, lifter input_joints() order
  TensorView attributes;       // [N,27] what the lifter was fed; empty when unused
  TensorView lifter_input;     // [N,input_dim] normalised lifter input
  LifterOutput lifter;         // normalised [N,51] pose per lifter block
};

// Gradients of a loss with respect to the chain's outputs. Empty views (or
// empty vectors) count as zero.
struct PoseChainGrads {
  std::vector<TensorView> poses;     // one [N,51] per lifter block (normalised poses)
  // Extra supervision added to what flows back from the lifter:
  std::vector<TensorView> heatmaps;  // per stack [N,16,h,h] (e.g. heatmap MSE), or empty
  TensorView attributes;             // attribute LOGITS [N,9,3] (e.g. cross-entropy)
  TensorView domain;                 // domain logits [N,2]
};

class PoseChain : public Module {
 public:
  static constexpr int kHeatmapJoints = 16;  // MPII-16

  // References both networks (the caller owns them, e.g. loaded from files).
  // Throws when the hourglass does not predict 16 heatmaps or the lifter's
  // input joints are not 16/17.
  PoseChain(HourglassNet& hourglass, Lifter& lifter);

  // image [N,3,S,S]; frame [N,3] = (scale, offset_x, offset_y) from image
  // pixels to the lifter's 2D frame, or empty for the identity; attributes
  // [N,27] constants for an attribute lifter, or empty to use the hourglass
  // attribute head (softmax, differentiable). Views come from `arena`.
  PoseChainOutput forward(Arena& arena, const TensorView& image, Mode mode,
                          const TensorView& frame = {}, const TensorView& attributes = {});
  // One backward through lifter, map, soft-argmax and hourglass. Writes every
  // parameter gradient of both networks; returns d image when input_grad.
  TensorView backward(Arena& arena, const PoseChainGrads& grads, bool input_grad = false);

  // "hourglass.<state_dict name>" and "lifter.<state_dict name>".
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;

  // Step 3's constants: u = c * image_scale() + image_offset().
  float image_scale() const;
  float image_offset() const;

  HourglassNet& hourglass;
  Lifter& lifter;
  SoftArgmax softargmax;  // beta from the hourglass config's softargmax_beta

 private:
  // Last forward's values backward needs.
  int64_t batch_ = 0;
  TensorView frame_, attr_prob_;
  bool attr_from_head_ = false;
  bool forward_done_ = false;
};

}  // namespace dofpose::nn
