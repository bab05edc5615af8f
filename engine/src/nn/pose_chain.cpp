#include "dofpose/nn/pose_chain.h"

#include <cmath>

#include "dofpose/error.h"
#include "dofpose/skeleton.h"

namespace dofpose::nn {

namespace {

const LayoutMap& mpii_to_h36m() { return layout_map(LayoutId::MPII16, LayoutId::H36M17); }

bool attribute_head_fits(const HourglassNet& hg) {
  const HourglassConfig& c = hg.config();
  return hg.attr && c.num_attribute_joints == kNumAttributeJoints && c.attribute_classes == 3;
}

}  // namespace

PoseChain::PoseChain(HourglassNet& hourglass_, Lifter& lifter_)
    : hourglass(hourglass_), lifter(lifter_), softargmax(hourglass_.config().softargmax_beta) {
  const HourglassConfig& hc = hourglass.config();
  DOFPOSE_CHECK(hc.num_joints == kHeatmapJoints, "PoseChain: the hourglass must predict the ",
                kHeatmapJoints, " MPII-16 heatmaps, its config has num_joints ", hc.num_joints);
  const int jin = lifter.config().num_joints_in;
  DOFPOSE_CHECK(jin == 16 || jin == 17, "PoseChain: the lifter must take 16 or 17 H36M joints, ",
                "its config has num_joints_in ", jin);
}

float PoseChain::image_scale() const {
  const HourglassConfig& c = hourglass.config();
  return float(c.input_size) / float(c.heatmap_size());
}

// Heatmap pixel c covers image pixels s*c .. s*c + s-1, whose centre is s*c + (s-1)/2.
float PoseChain::image_offset() const { return 0.5f * image_scale() - 0.5f; }

PoseChainOutput PoseChain::forward(Arena& arena, const TensorView& image, Mode mode,
                                   const TensorView& frame, const TensorView& attributes) {
  const char* op = "PoseChain::forward";
  const LifterConfig& lc = lifter.config();
  DOFPOSE_CHECK(image.ndim() == 4, op, ": image ", image.str(), " must be [N,3,S,S]");
  const int64_t n = image.dim(0);
  if (!frame.empty()) {
    check_f32(op, "frame", frame, Device::CPU);
    check_shape(op, "frame (scale, offset_x, offset_y per image)", frame, {n, 3});
  }
  if (!lc.use_attributes) {
    DOFPOSE_CHECK(attributes.empty(), op,
                  ": attributes given, but the lifter does not use them (use_attributes false)");
  } else if (!attributes.empty()) {
    check_f32(op, "attributes", attributes, Device::CPU);
    check_shape(op, "attributes", attributes, {n, LifterConfig::kAttributeInputs});
  } else {
    DOFPOSE_CHECK(attribute_head_fits(hourglass), op,
                  ": the lifter uses attributes and none were given, so they come from the "
                  "hourglass attribute head, which must exist with ",
                  kNumAttributeJoints, " joints x 3 classes (attribute_head ",
                  hourglass.config().attribute_head ? "true" : "false", ", ",
                  hourglass.config().num_attribute_joints, " x ",
                  hourglass.config().attribute_classes, ")");
  }

  PoseChainOutput out;
  out.hourglass = hourglass.forward(arena, image, mode);
  batch_ = n;
  frame_ = frame;

  // Soft-argmax of the last stack, then heatmap -> image pixels -> lifter frame.
  out.coords_heatmap = softargmax.forward(arena, out.hourglass.heatmaps.back());
  out.coords_image = arena.alloc({n, kHeatmapJoints, 2});
  const float s = image_scale(), o = image_offset();
  std::vector<float> frame_px(size_t(kHeatmapJoints) * 2);
  const std::vector<int> in_joints = lc.input_joints();
  const int jin = int(in_joints.size());
  out.pose2d = arena.alloc({n, jin, 2});
  const LayoutMap& map = mpii_to_h36m();
  std::vector<float> h36m(size_t(h36m::kNumJoints) * 2);
  for (int64_t r = 0; r < n; ++r) {
    const float fs = frame.empty() ? 1.f : frame.f32()[r * 3];
    const float fx = frame.empty() ? 0.f : frame.f32()[r * 3 + 1];
    const float fy = frame.empty() ? 0.f : frame.f32()[r * 3 + 2];
    for (int j = 0; j < kHeatmapJoints; ++j)
      for (int c = 0; c < 2; ++c) {
        const int64_t i = (r * kHeatmapJoints + j) * 2 + c;
        const float u = out.coords_heatmap.f32()[i] * s + o;
        out.coords_image.f32()[i] = u;
        frame_px[size_t(j) * 2 + c] = fs * u + (c == 0 ? fx : fy);
      }
    map_joints(map, frame_px.data(), 2, h36m.data());
    for (int k = 0; k < jin; ++k)
      for (int c = 0; c < 2; ++c)
        out.pose2d.f32()[(r * jin + k) * 2 + c] = h36m[size_t(in_joints[size_t(k)]) * 2 + c];
  }

  // Attributes: the caller's constants, or the head's per-joint class probabilities.
  attr_from_head_ = lc.use_attributes && attributes.empty();
  attr_prob_ = TensorView();
  if (attr_from_head_) {
    const int64_t rows = n * kNumAttributeJoints;
    attr_prob_ = arena.alloc({n, LifterConfig::kAttributeInputs});
    const float* z = out.hourglass.attributes.f32();
    float* p = attr_prob_.f32();
    for (int64_t r = 0; r < rows; ++r) {
      const float m = std::fmax(z[3 * r], std::fmax(z[3 * r + 1], z[3 * r + 2]));
      double sum = 0;
      for (int c = 0; c < 3; ++c) sum += (p[3 * r + c] = std::exp(z[3 * r + c] - m));
      for (int c = 0; c < 3; ++c) p[3 * r + c] = float(p[3 * r + c] / sum);
    }
    out.attributes = attr_prob_;
  } else if (lc.use_attributes) {
    out.attributes = attributes;
  }

  out.lifter_input = lifter.prepare_input(arena, out.pose2d, out.attributes);
  out.lifter = lifter.forward(arena, out.lifter_input, mode);
  forward_done_ = true;
  return out;
}

TensorView PoseChain::backward(Arena& arena, const PoseChainGrads& grads, bool input_grad) {
  const char* op = "PoseChain::backward";
  DOFPOSE_CHECK(forward_done_, op, ": call forward first");
  const LifterConfig& lc = lifter.config();
  const int64_t n = batch_;
  const std::vector<int> in_joints = lc.input_joints();
  const int jin = int(in_joints.size());
  const int64_t in_dim = lc.input_dim(), pin = lc.pose_input_dim();

  // Lifter (checks the pose gradients), then its input normalisation.
  std::vector<TensorView> dposes = grads.poses;
  if (dposes.empty()) dposes.assign(size_t(lifter.num_blocks()), TensorView());
  const TensorView dx = lifter.backward(arena, dposes);

  // Attribute logits: the softmax Jacobian p * (g - sum(p * g)) per joint, plus
  // any direct logits gradient. Constant attributes get no gradient.
  TensorView dattr = grads.attributes;
  if (attr_from_head_) {
    dattr = arena.alloc({n, kNumAttributeJoints, 3});
    const float* p = attr_prob_.f32();
    float* d = dattr.f32();
    if (!grads.attributes.empty())
      check_shape(op, "attribute logits gradient", grads.attributes, dattr.shape);
    for (int64_t r = 0; r < n; ++r)
      for (int a = 0; a < kNumAttributeJoints; ++a) {
        const float* g = dx.f32() + r * in_dim + pin + 3 * a;
        const int64_t k = (r * kNumAttributeJoints + a) * 3;
        double pg = 0;
        for (int c = 0; c < 3; ++c) pg += double(p[k + c]) * g[c];
        for (int c = 0; c < 3; ++c) {
          d[k + c] = float(p[k + c] * (g[c] - pg));
          if (!grads.attributes.empty()) d[k + c] += grads.attributes.f32()[k + c];
        }
      }
  }

  // Transposes of the forward's linear steps: normalisation, joint selection,
  // layout map, frame affine, heatmap -> image scale.
  const LayoutMap& map = mpii_to_h36m();
  const float* sd = lifter.norm_input_std.f32();
  const float s = image_scale();
  TensorView dcoords = arena.alloc({n, kHeatmapJoints, 2});
  fill(dcoords, 0.f);
  std::vector<double> dh36m(size_t(h36m::kNumJoints) * 2);
  for (int64_t r = 0; r < n; ++r) {
    std::fill(dh36m.begin(), dh36m.end(), 0.0);
    for (int k = 0; k < jin; ++k)
      for (int c = 0; c < 2; ++c)
        dh36m[size_t(in_joints[size_t(k)]) * 2 + c] = dx.f32()[r * in_dim + 2 * k + c] / sd[2 * k + c];
    const float fs = frame_.empty() ? 1.f : frame_.f32()[r * 3];
    float* dc = dcoords.f32() + r * kHeatmapJoints * 2;
    for (int t = 0; t < h36m::kNumJoints; ++t)
      for (const auto& [src, w] : map.joints[size_t(t)].terms)
        for (int c = 0; c < 2; ++c) dc[src * 2 + c] += float(w * dh36m[size_t(t) * 2 + c] * fs * s);
  }
  const TensorView dheat = softargmax.backward(arena, dcoords);

  // The soft-argmax gradient joins the last stack's heatmap gradient.
  const size_t stacks = hourglass.stacks.size();
  DOFPOSE_CHECK(grads.heatmaps.empty() || grads.heatmaps.size() == stacks, op, ": got ",
                grads.heatmaps.size(), " heatmap gradients, expected 0 or one per stack (",
                stacks, ")");
  HourglassGrads hg;
  hg.heatmaps = grads.heatmaps;
  hg.heatmaps.resize(stacks);
  TensorView& last = hg.heatmaps.back();
  if (last.empty()) {
    last = dheat;
  } else {
    check_shape(op, "last stack heatmap gradient", last, dheat.shape);
    TensorView sum = arena.alloc(dheat.shape);
    for (int64_t i = 0; i < sum.numel(); ++i) sum.f32()[i] = last.f32()[i] + dheat.f32()[i];
    last = sum;
  }
  DOFPOSE_CHECK(grads.attributes.empty() || hourglass.attr, op,
                ": an attribute logits gradient was given, but the hourglass has no attribute head");
  DOFPOSE_CHECK(grads.domain.empty() || hourglass.domain, op,
                ": a domain logits gradient was given, but the hourglass has no domain head");
  hg.attributes = dattr;
  hg.domain = grads.domain;
  return hourglass.backward(arena, hg, input_grad);
}

void PoseChain::collect(const std::string& prefix, std::vector<Param>& params,
                        std::vector<Buffer>& buffers) {
  hourglass.collect(prefix + "hourglass.", params, buffers);
  lifter.collect(prefix + "lifter.", params, buffers);
}

}  // namespace dofpose::nn
