#include "dofpose/nn/hourglass.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "dofpose/nn/serialize.h"

namespace dofpose::nn {

namespace {

// a + b as a new arena tensor; an empty operand counts as zero (the other one
// is returned as is, never written to: it may be the caller's).
TensorView sum_grads(Arena& arena, const TensorView& a, const TensorView& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  TensorView y = arena.alloc(a.shape);
  ops::add_forward(a, b, y);
  return y;
}

TensorView zeros(Arena& arena, const Shape& s) {
  TensorView t = arena.alloc(s);
  fill(t, 0.f);
  return t;
}

// Flat view of `count` floats at element `offset` of a contiguous view.
TensorView flat_at(const TensorView& t, int64_t offset, int64_t count) {
  return TensorView(static_cast<float*>(t.data) + offset, Shape{count}, DType::F32, t.device);
}

// [N,Ca,H,W] and [N,Cb,H,W] -> [N,Ca+Cb,H,W].
TensorView concat_channels(Arena& arena, const TensorView& a, const TensorView& b) {
  DOFPOSE_CHECK(a.ndim() == 4 && b.ndim() == 4 && a.dim(0) == b.dim(0) && a.dim(2) == b.dim(2) &&
                    a.dim(3) == b.dim(3),
                "concat_channels: ", a.str(), " and ", b.str(), " differ in N, H or W");
  const int64_t n = a.dim(0), sa = a.numel() / n, sb = b.numel() / n;
  TensorView y = arena.alloc({n, a.dim(1) + b.dim(1), a.dim(2), a.dim(3)});
  for (int64_t i = 0; i < n; ++i) {
    copy(flat_at(a, i * sa, sa), flat_at(y, i * (sa + sb), sa));
    copy(flat_at(b, i * sb, sb), flat_at(y, i * (sa + sb) + sa, sb));
  }
  return y;
}

// The inverse split for the gradient: dy [N,Ca+Cb,H,W] -> ([N,Ca,..], [N,Cb,..]).
std::pair<TensorView, TensorView> split_channels(Arena& arena, const TensorView& dy, int64_t ca) {
  const int64_t n = dy.dim(0), hw = dy.dim(2) * dy.dim(3), cb = dy.dim(1) - ca;
  TensorView da = arena.alloc({n, ca, dy.dim(2), dy.dim(3)});
  TensorView db = arena.alloc({n, cb, dy.dim(2), dy.dim(3)});
  for (int64_t i = 0; i < n; ++i) {
    copy(flat_at(dy, i * (ca + cb) * hw, ca * hw), flat_at(da, i * ca * hw, ca * hw));
    copy(flat_at(dy, (i * (ca + cb) + ca) * hw, cb * hw), flat_at(db, i * cb * hw, cb * hw));
  }
  return {da, db};
}

void zero_grads(Module& m) {
  for (const Param& p : m.parameters()) fill(*p.grad, 0.f);
}

// Channels between layer2 and layer3 (HourglassConfig::stem_layout): pytorch-pose makes
// layer2 after its `self.inplanes` has grown to 2 * stem, so layer2 widens to 4 * stem.
int stem_mid_channels(const HourglassConfig& c) {
  return c.stem_layout == "pytorch-pose" ? 4 * c.stem_channels : 2 * c.stem_channels;
}

}  // namespace

// ---------------------------------------------------------------- config

void HourglassConfig::validate() const {
  auto need = [](bool ok, const char* field, const std::string& why) {
    DOFPOSE_CHECK(ok, "hourglass config: '", field, "' ", why);
  };
  auto in = [](int v, int lo, int hi) { return v >= lo && v <= hi; };
  auto range = [](int lo, int hi, int v) { return concat("must be in [", lo, ", ", hi, "], got ", v); };
  need(in(stacks, 1, kMaxStacks), "stacks", range(1, kMaxStacks, stacks));
  need(in(blocks, 1, kMaxBlocks), "blocks", range(1, kMaxBlocks, blocks));
  need(in(num_feats, 2, kMaxChannels) && num_feats % 2 == 0, "num_feats",
       concat("must be even and in [2, ", kMaxChannels,
              "] (bottleneck planes are num_feats / 2), got ", num_feats));
  need(in(num_joints, 1, kMaxJoints), "num_joints", range(1, kMaxJoints, num_joints));
  need(depth >= 1 && depth <= 8, "depth", concat("must be in [1, 8], got ", depth));
  need(in(stem_channels, 1, kMaxChannels), "stem_channels", range(1, kMaxChannels, stem_channels));
  need(input_size <= kMaxInputSize, "input_size", range(1, kMaxInputSize, input_size));
  need(stem_layout == "newell" || stem_layout == "pytorch-pose", "stem_layout",
       concat("must be \"newell\" or \"pytorch-pose\", got \"", stem_layout, "\""));
  const int64_t multiple = 4LL << depth;  // stride-4 stem, then depth halvings
  need(input_size >= multiple && input_size % multiple == 0, "input_size",
       concat("must be a positive multiple of 4 * 2^depth = ", multiple, ", got ", input_size));
  if (attribute_head) {
    int h = heatmap_size();
    while (h > 8 && h % 2 == 0) h /= 2;
    need(h == 8, "input_size",
         concat("must give heatmaps of 8 * 2^k pixels for the attribute head (it pools to 8x8), "
                "got heatmaps of ",
                heatmap_size()));
    need(in(num_attribute_joints, 1, kMaxJoints), "num_attribute_joints",
         range(1, kMaxJoints, num_attribute_joints));
    need(in(attribute_classes, 2, kMaxJoints), "attribute_classes",
         range(2, kMaxJoints, attribute_classes));
    need(in(attribute_channels, 1, kMaxChannels), "attribute_channels",
         range(1, kMaxChannels, attribute_channels));
  }
  if (domain_head) {
    need(in(domain_hidden, 1, kMaxChannels), "domain_hidden", range(1, kMaxChannels, domain_hidden));
    need(std::isfinite(grl_lambda), "grl_lambda", "must be finite");
  }
  need(std::isfinite(softargmax_beta) && softargmax_beta > 0, "softargmax_beta",
       "must be finite and > 0");
}

HourglassConfig HourglassConfig::from_json_string(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail("hourglass config: not valid JSON: ", e.what());
  }
  DOFPOSE_CHECK(j.is_object(), "hourglass config: expected a JSON object, got ", j.dump());
  HourglassConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& v = it.value();
    auto as_int = [&](int& dst, int lo, int hi) { dst = config_int(v, "hourglass config", key, lo, hi); };
    auto as_bool = [&](bool& dst) {
      DOFPOSE_CHECK(v.is_boolean(), "hourglass config: '", key, "' must be true or false, got ",
                    v.dump());
      dst = v.get<bool>();
    };
    auto as_string = [&](std::string& dst) {
      DOFPOSE_CHECK(v.is_string(), "hourglass config: '", key, "' must be a string, got ",
                    v.dump());
      dst = v.get<std::string>();
    };
    auto as_float = [&](float& dst) {
      DOFPOSE_CHECK(v.is_number(), "hourglass config: '", key, "' must be a number, got ",
                    v.dump());
      dst = v.get<float>();
    };
    // The same bounds as validate(), checked on the 64-bit value as written.
    if (key == "stacks") as_int(c.stacks, 1, kMaxStacks);
    else if (key == "blocks") as_int(c.blocks, 1, kMaxBlocks);
    else if (key == "num_feats") as_int(c.num_feats, 2, kMaxChannels);
    else if (key == "num_joints") as_int(c.num_joints, 1, kMaxJoints);
    else if (key == "input_size") as_int(c.input_size, 1, kMaxInputSize);
    else if (key == "depth") as_int(c.depth, 1, 8);
    else if (key == "stem_channels") as_int(c.stem_channels, 1, kMaxChannels);
    else if (key == "stem_layout") as_string(c.stem_layout);
    else if (key == "attribute_head") as_bool(c.attribute_head);
    else if (key == "num_attribute_joints") as_int(c.num_attribute_joints, 1, kMaxJoints);
    else if (key == "attribute_classes") as_int(c.attribute_classes, 2, kMaxJoints);
    else if (key == "attribute_channels") as_int(c.attribute_channels, 1, kMaxChannels);
    else if (key == "domain_head") as_bool(c.domain_head);
    else if (key == "domain_hidden") as_int(c.domain_hidden, 1, kMaxChannels);
    else if (key == "grl_lambda") as_float(c.grl_lambda);
    else if (key == "softargmax_beta") as_float(c.softargmax_beta);
    else fail("hourglass config: unknown key '", key, "'");
  }
  c.validate();
  return c;
}

std::string HourglassConfig::to_json_string() const {
  nlohmann::json j;
  j["stacks"] = stacks;
  j["blocks"] = blocks;
  j["num_feats"] = num_feats;
  j["num_joints"] = num_joints;
  j["input_size"] = input_size;
  j["depth"] = depth;
  j["stem_channels"] = stem_channels;
  j["stem_layout"] = stem_layout;
  j["attribute_head"] = attribute_head;
  j["num_attribute_joints"] = num_attribute_joints;
  j["attribute_classes"] = attribute_classes;
  j["attribute_channels"] = attribute_channels;
  j["domain_head"] = domain_head;
  j["domain_hidden"] = domain_hidden;
  j["grl_lambda"] = float_as_shortest_double(grl_lambda);
  j["softargmax_beta"] = float_as_shortest_double(softargmax_beta);
  return j.dump();
}

// ---------------------------------------------------------------- bottleneck

Bottleneck::Bottleneck(int inplanes, int planes)
    : bn1(inplanes),
      conv1(inplanes, planes, 1),
      bn2(planes),
      conv2(planes, planes, 3, 1, 1),
      bn3(planes),
      conv3(planes, 2 * planes, 1) {
  if (inplanes != 2 * planes) downsample = std::make_unique<Conv2d>(inplanes, 2 * planes, 1);
}

TensorView Bottleneck::forward(Arena& arena, const TensorView& x, Mode mode) {
  if (fused_inference(mode)) return forward_fused(arena, x);
  TraceSpan span;
  if (span.on()) span.range(trace.get("Bottleneck"));
  // PyTorch's Bottleneck applies one nn.ReLU module ("relu") three times.
  TensorView h =
      conv1.forward(arena, bn1.forward_relu(arena, x, mode, relu1_, nullptr, trace, "relu"));
  // Training's fast product (Winograd where it pays on the CPU) with the
  // other fused training ops; the layer-by-layer reference keeps the direct one.
  h = bn2.forward_relu(arena, h, mode, relu2_, nullptr, trace, "relu");
  h = fused_training(mode) ? conv2.forward_fast(arena, h) : conv2.forward(arena, h);
  h = bn3.forward_relu(arena, h, mode, relu3_, nullptr, trace, "relu");
  const bool add_in_conv3 = fused_training(mode);  // the skip added in conv3's epilogue
  if (!add_in_conv3) h = conv3.forward(arena, h);
  TensorView skip = x;
  if (downsample) {
    TraceSpan ds;
    skip = downsample->forward(arena, x);
    if (ds.on()) ds.done(trace.child("downsample"), "Sequential", skip, 0, true);
  }
  if (add_in_conv3)
    h = conv3.forward_add(arena, h, skip);
  else
    traced_inplace(trace, "add", "Add", h, [&] { ops::accumulate(skip, h); });
  if (span.on()) span.done(trace.get("Bottleneck"), "Bottleneck", h, 0, true);
  return h;
}

// Three launches instead of ten: conv1 loads relu(bn1(x)) and stores
// relu(bn2(.)), conv2 stores relu(bn3(.)), conv3 adds the skip in its epilogue.
TensorView Bottleneck::forward_fused(Arena& arena, const TensorView& x) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("Bottleneck"));
  TensorView skip = x;
  if (downsample) {
    TraceSpan ds;
    skip = downsample->forward(arena, x);
    if (ds.on()) ds.done(trace.child("downsample"), "Sequential", skip, 0, true);
  }
  ops::ConvFusionRef f1;
  f1.in_bn = bn1.ref();
  f1.out_bn = bn2.ref();
  f1.out_relu = true;
  TensorView h = conv1.forward_fused(arena, x, f1, "BN+ReLU+Conv2d+BN+ReLU");
  ops::ConvFusionRef f2;
  f2.out_bn = bn3.ref();
  f2.out_relu = true;
  h = conv2.forward_fused(arena, h, f2, "Conv2d+BN+ReLU");
  ops::ConvFusionRef f3;
  f3.residual = skip;
  h = conv3.forward_fused(arena, h, f3, "Conv2d+Add");
  if (span.on()) span.done(trace.get("Bottleneck"), "Bottleneck", h, 0, true);
  return h;
}

TensorView Bottleneck::backward(Arena& arena, const TensorView& dy) {
  TensorView d = bn3.backward_relu(arena, conv3.backward(arena, dy), relu3_, nullptr);
  d = bn2.backward_relu(arena, conv2.backward(arena, d), relu2_, nullptr);
  d = conv1.backward(arena, d);
  // x fans out to the main path and the skip: its gradient is the sum, the
  // skip's part added in bn1's store.
  const TensorView skip = downsample ? downsample->backward(arena, dy) : dy;
  return bn1.backward_relu(arena, d, relu1_, nullptr, skip);
}

void Bottleneck::collect(const std::string& prefix, std::vector<Param>& params,
                         std::vector<Buffer>& buffers) {
  trace.set(prefix);
  bn1.collect(prefix + "bn1.", params, buffers);
  conv1.collect(prefix + "conv1.", params, buffers);
  bn2.collect(prefix + "bn2.", params, buffers);
  conv2.collect(prefix + "conv2.", params, buffers);
  bn3.collect(prefix + "bn3.", params, buffers);
  conv3.collect(prefix + "conv3.", params, buffers);
  if (downsample) downsample->collect(prefix + "downsample.0.", params, buffers);
}

void Bottleneck::reset_parameters(std::mt19937_64& rng) {
  conv1.reset_parameters(rng);
  conv2.reset_parameters(rng);
  conv3.reset_parameters(rng);
  if (downsample) downsample->reset_parameters(rng);
}

int64_t Bottleneck::flops(int N, int H, int W) const {
  return conv1.flops(N, H, W) + conv2.flops(N, H, W) + conv3.flops(N, H, W) +
         (downsample ? downsample->flops(N, H, W) : 0);
}

Residuals::Residuals(int inplanes, int planes, int count) {
  blocks.push_back(std::make_unique<Bottleneck>(inplanes, planes));
  for (int i = 1; i < count; ++i) blocks.push_back(std::make_unique<Bottleneck>(2 * planes, planes));
}

TensorView Residuals::forward(Arena& arena, const TensorView& x, Mode mode) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("Residuals"));
  TensorView h = x;
  for (auto& b : blocks) h = b->forward(arena, h, mode);
  if (span.on()) span.done(trace.get("Residuals"), "Residuals", h, 0, true);
  return h;
}

TensorView Residuals::backward(Arena& arena, const TensorView& dy) {
  TensorView d = dy;
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) d = (*it)->backward(arena, d);
  return d;
}

void Residuals::collect(const std::string& prefix, std::vector<Param>& params,
                        std::vector<Buffer>& buffers) {
  trace.set(prefix);
  for (size_t i = 0; i < blocks.size(); ++i)
    blocks[i]->collect(prefix + std::to_string(i) + ".", params, buffers);
}

void Residuals::reset_parameters(std::mt19937_64& rng) {
  for (auto& b : blocks) b->reset_parameters(rng);
}

int64_t Residuals::flops(int N, int H, int W) const {
  int64_t f = 0;
  for (const auto& b : blocks) f += b->flops(N, H, W);
  return f;
}

// ---------------------------------------------------------------- hourglass

HourglassBlock::HourglassBlock(int blocks, int feats, int depth) {
  levels_.resize(size_t(depth));
  for (int level = 0; level < depth; ++level) {
    const int branches = level == 0 ? 4 : 3;
    for (int b = 0; b < branches; ++b)
      levels_[size_t(level)].branches.push_back(
          std::make_unique<Residuals>(feats, feats / 2, blocks));
  }
}

TensorView HourglassBlock::forward_level(Arena& arena, int n, const TensorView& x, Mode mode) {
  Level& L = levels_[size_t(n - 1)];
  TensorView up1 = L.branches[0]->forward(arena, x, mode);
  TensorView pooled =
      traced_op(L.trace, "pool", "MaxPool2x2", [&] { return L.pool.forward(arena, x); });
  TensorView low1 = L.branches[1]->forward(arena, pooled, mode);
  TensorView low2 = n > 1 ? forward_level(arena, n - 1, low1, mode)
                          : L.branches[3]->forward(arena, low1, mode);
  TensorView low3 = L.branches[2]->forward(arena, low2, mode);
  // The merge, up1 + upsample(low3), in one pass (same bits as upsample then add).
  return traced_op(L.trace, "merge", "UpsampleAdd",
                   [&] { return L.upsample.forward_add(arena, low3, up1); });
}

TensorView HourglassBlock::backward_level(Arena& arena, int n, const TensorView& dy) {
  Level& L = levels_[size_t(n - 1)];
  TensorView d = L.branches[2]->backward(arena, L.upsample.backward(arena, dy));
  d = n > 1 ? backward_level(arena, n - 1, d) : L.branches[3]->backward(arena, d);
  const TensorView dlow = L.branches[1]->backward(arena, d);
  // x feeds up1 and the pool: up1's gradient added in the pool's dx store.
  return L.pool.backward(arena, dlow, L.branches[0]->backward(arena, dy));
}

TensorView HourglassBlock::forward(Arena& arena, const TensorView& x, Mode mode) {
  const int64_t multiple = int64_t(1) << levels_.size();
  DOFPOSE_CHECK(x.ndim() == 4 && x.dim(2) % multiple == 0 && x.dim(3) % multiple == 0,
                "HourglassBlock: input ", x.str(), " must be [N,C,H,W] with H and W multiples of ",
                multiple, " (depth ", levels_.size(), ")");
  TraceSpan span;
  if (span.on()) span.range(trace.get("Hourglass"));
  TensorView y = forward_level(arena, int(levels_.size()), x, mode);
  if (span.on()) span.done(trace.get("Hourglass"), "Hourglass", y, 0, true);
  return y;
}

TensorView HourglassBlock::backward(Arena& arena, const TensorView& dy) {
  return backward_level(arena, int(levels_.size()), dy);
}

void HourglassBlock::collect(const std::string& prefix, std::vector<Param>& params,
                             std::vector<Buffer>& buffers) {
  trace.set(prefix);
  for (size_t level = 0; level < levels_.size(); ++level)
    levels_[level].trace.set(prefix + "hg." + std::to_string(level) + ".");
  for (size_t level = 0; level < levels_.size(); ++level)
    for (size_t b = 0; b < levels_[level].branches.size(); ++b)
      levels_[level].branches[b]->collect(
          prefix + "hg." + std::to_string(level) + "." + std::to_string(b) + ".", params,
          buffers);
}

void HourglassBlock::reset_parameters(std::mt19937_64& rng) {
  for (Level& L : levels_)
    for (auto& b : L.branches) b->reset_parameters(rng);
}

int64_t HourglassBlock::flops(int N, int H, int W) const {
  int64_t f = 0;
  for (int n = int(levels_.size()); n >= 1; --n) {
    const Level& L = levels_[size_t(n - 1)];
    f += L.branches[0]->flops(N, H, W);
    H /= 2;
    W /= 2;
    f += L.branches[1]->flops(N, H, W) + L.branches[2]->flops(N, H, W);
    if (n == 1) f += L.branches[3]->flops(N, H, W);
  }
  return f;
}

// ---------------------------------------------------------------- small layers

FullyConnected::FullyConnected(int in, int out)
    : in_features(in),
      out_features(out),
      weight(Tensor::zeros({out, in})),
      bias(Tensor::zeros({out})),
      grad_weight(Tensor::zeros({out, in})),
      grad_bias(Tensor::zeros({out})) {}

TensorView FullyConnected::forward(Arena& arena, const TensorView& x) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("Linear"));
  x_ = x;
  TensorView y = arena.alloc({x.dim(0), out_features});
  ops::linear_forward(x, weight, bias, y);
  if (span.on()) span.done(trace.get("Linear"), "Linear", y, flops(int(x.dim(0))));
  return y;
}

TensorView FullyConnected::backward(Arena& arena, const TensorView& dy) {
  DOFPOSE_CHECK(!x_.empty(), "FullyConnected::backward called without a forward");
  TensorView dx = arena.alloc(x_.shape);
  ops::linear_backward(x_, weight, dy, dx, grad_weight, grad_bias);
  return dx;
}

void FullyConnected::collect(const std::string& prefix, std::vector<Param>& params,
                             std::vector<Buffer>&) {
  trace.set(prefix);
  params.push_back({prefix + "weight", &weight, &grad_weight});
  params.push_back({prefix + "bias", &bias, &grad_bias});
}

void FullyConnected::reset_parameters(std::mt19937_64& rng) {
  const float bound = 1.f / std::sqrt(float(in_features));
  uniform_fill(weight, bound, rng);
  uniform_fill(bias, bound, rng);
}

TensorView GlobalAvgPool::forward(Arena& arena, const TensorView& x) {
  DOFPOSE_CHECK(x.ndim() == 4, "GlobalAvgPool: input ", x.str(), " must be [N,C,H,W]");
  x_ = x;
  const int64_t hw = x.dim(2) * x.dim(3), rows = x.dim(0) * x.dim(1);
  w_ = arena.alloc({1, hw}, DType::F32);
  fill(w_, 1.f / float(hw));  // on the arena's device: no host round trip
  TensorView y = arena.alloc({rows, 1});
  ops::linear_forward(x.reshape({rows, hw}), w_, TensorView(), y);
  return y.reshape({x.dim(0), x.dim(1)});
}

TensorView GlobalAvgPool::backward(Arena& arena, const TensorView& dy) {
  DOFPOSE_CHECK(!x_.empty(), "GlobalAvgPool::backward called without a forward");
  const int64_t hw = x_.dim(2) * x_.dim(3), rows = x_.dim(0) * x_.dim(1);
  check_shape("GlobalAvgPool::backward", "dy", dy, {x_.dim(0), x_.dim(1)});
  TensorView dx = arena.alloc({rows, hw});
  ops::linear_backward(x_.reshape({rows, hw}), w_, dy.reshape({rows, 1}), dx, TensorView(),
                       TensorView());
  return dx.reshape(x_.shape);
}

TensorView SoftArgmax::forward(Arena& arena, const TensorView& heat) {
  DOFPOSE_CHECK(heat.ndim() == 4, "SoftArgmax: heatmaps ", heat.str(), " must be [N,J,H,W]");
  prob_ = arena.alloc(heat.shape);
  TensorView coords = arena.alloc({heat.dim(0), heat.dim(1), 2});
  ops::softargmax_forward(heat, prob_, coords, beta);
  return coords;
}

TensorView SoftArgmax::backward(Arena& arena, const TensorView& dcoords) {
  DOFPOSE_CHECK(!prob_.empty(), "SoftArgmax::backward called without a forward");
  TensorView dheat = arena.alloc(prob_.shape);
  ops::softargmax_backward(prob_, dcoords, dheat, beta);
  return dheat;
}

// ---------------------------------------------------------------- heads

AttributeHead::AttributeHead(int feats_, int joints_, int channels, int heatmap_size_,
                             int attr_joints_, int classes_)
    : feats(feats_),
      joints(joints_),
      heatmap_size(heatmap_size_),
      attr_joints(attr_joints_),
      classes(classes_),
      conv(feats_ + joints_, channels, 1),
      bn(channels),
      fc(channels * 8 * 8, attr_joints_ * classes_) {
  for (int h = heatmap_size_; h > 8; h /= 2) pools_.emplace_back();
}

TensorView AttributeHead::forward(Arena& arena, const TensorView& f, const TensorView& heat,
                                  Mode mode) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("AttributeHead"));
  TensorView h = conv.forward(
      arena, traced_op(trace, "concat", "Concat", [&] { return concat_channels(arena, f, heat); }));
  h = bn.forward(arena, h, mode);
  h = traced_op(trace, "relu", "ReLU", [&] { return relu_.forward(arena, h); });
  for (MaxPool2x2& p : pools_)
    h = traced_op(trace, "pool", "MaxPool2x2", [&] { return p.forward(arena, h); });
  DOFPOSE_CHECK(h.dim(2) == 8 && h.dim(3) == 8, "AttributeHead: features of ", f.str(),
                " pool to ", h.str(), ", expected 8x8 (heatmap size ", heatmap_size, ")");
  pooled_shape_ = h.shape;
  TensorView logits = fc.forward(arena, h.reshape({h.dim(0), h.numel() / h.dim(0)}));
  logits = logits.reshape({h.dim(0), attr_joints, classes});
  if (span.on()) span.done(trace.get("AttributeHead"), "AttributeHead", logits, 0, true);
  return logits;
}

std::pair<TensorView, TensorView> AttributeHead::backward(Arena& arena,
                                                          const TensorView& dlogits) {
  const Shape expected{pooled_shape_[0], attr_joints, classes};
  check_shape("AttributeHead::backward", "dlogits", dlogits, expected);
  TensorView d = fc.backward(arena, dlogits.reshape({expected[0], attr_joints * classes}));
  d = d.reshape(pooled_shape_);
  for (auto it = pools_.rbegin(); it != pools_.rend(); ++it) d = it->backward(arena, d);
  d = conv.backward(arena, bn.backward(arena, relu_.backward(arena, d)));
  return split_channels(arena, d, feats);
}

void AttributeHead::collect(const std::string& prefix, std::vector<Param>& params,
                            std::vector<Buffer>& buffers) {
  trace.set(prefix);
  conv.collect(prefix + "conv.", params, buffers);
  bn.collect(prefix + "bn.", params, buffers);
  fc.collect(prefix + "fc.", params, buffers);
}

void AttributeHead::reset_parameters(std::mt19937_64& rng) {
  conv.reset_parameters(rng);
  fc.reset_parameters(rng);
}

int64_t AttributeHead::flops(int N) const {
  return conv.flops(N, heatmap_size, heatmap_size) + fc.flops(N);
}

DomainHead::DomainHead(int feats, int hidden, float lambda)
    : grl_lambda(lambda), fc1(feats, hidden), fc2(hidden, 2) {}

TensorView DomainHead::forward(Arena& arena, const TensorView& f) {
  // The gradient reversal is the identity going forward: pool f directly.
  TraceSpan span;
  if (span.on()) span.range(trace.get("DomainHead"));
  TensorView h = fc1.forward(
      arena, traced_op(trace, "pool", "GlobalAvgPool", [&] { return pool_.forward(arena, f); }));
  h = traced_op(trace, "relu", "ReLU", [&] { return relu_.forward(arena, h); });
  TensorView logits = fc2.forward(arena, h);
  if (span.on()) span.done(trace.get("DomainHead"), "DomainHead", logits, 0, true);
  return logits;
}

TensorView DomainHead::backward(Arena& arena, const TensorView& dlogits) {
  TensorView d = fc1.backward(arena, relu_.backward(arena, fc2.backward(arena, dlogits)));
  d = pool_.backward(arena, d);
  TensorView dx = arena.alloc(d.shape);
  ops::grad_reverse_backward(d, dx, grl_lambda);
  return dx;
}

void DomainHead::collect(const std::string& prefix, std::vector<Param>& params,
                         std::vector<Buffer>& buffers) {
  trace.set(prefix);
  fc1.collect(prefix + "fc1.", params, buffers);
  fc2.collect(prefix + "fc2.", params, buffers);
}

void DomainHead::reset_parameters(std::mt19937_64& rng) {
  fc1.reset_parameters(rng);
  fc2.reset_parameters(rng);
}

// ---------------------------------------------------------------- network

HourglassNet::HourglassNet(const HourglassConfig& config, uint64_t seed)
    : conv1((config.validate(), 3), config.stem_channels, 7, 2, 3),
      bn1(config.stem_channels),
      layer1(config.stem_channels, config.stem_channels, 1),
      layer2(2 * config.stem_channels, stem_mid_channels(config) / 2, 1),
      layer3(stem_mid_channels(config), config.num_feats / 2, 1),
      config_(config) {
  const HourglassConfig& c = config_;
  for (int s = 0; s < c.stacks; ++s) {
    Stack st;
    st.hg = std::make_unique<HourglassBlock>(c.blocks, c.num_feats, c.depth);
    st.res = std::make_unique<Residuals>(c.num_feats, c.num_feats / 2, c.blocks);
    st.fc_conv = std::make_unique<Conv2d>(c.num_feats, c.num_feats, 1);
    st.fc_bn = std::make_unique<BatchNorm>(c.num_feats);
    st.fc_relu_name = concat("fc.", s, ".2");
    st.score = std::make_unique<Conv2d>(c.num_feats, c.num_joints, 1);
    if (s + 1 < c.stacks) {
      st.fc_ = std::make_unique<Conv2d>(c.num_feats, c.num_feats, 1);
      st.score_ = std::make_unique<Conv2d>(c.num_joints, c.num_feats, 1);
    }
    stacks.push_back(std::move(st));
  }
  if (c.attribute_head)
    attr = std::make_unique<AttributeHead>(c.num_feats, c.num_joints, c.attribute_channels,
                                           c.heatmap_size(), c.num_attribute_joints,
                                           c.attribute_classes);
  if (c.domain_head) domain = std::make_unique<DomainHead>(c.num_feats, c.domain_hidden, c.grl_lambda);
  reset_parameters(seed);
}

void HourglassNet::set_activation_dtype(DType t) {
  DOFPOSE_CHECK(t == DType::F32 || t == DType::F16 || t == DType::BF16,
                "HourglassNet::set_activation_dtype: ", dtype_name(t), " is not F32, F16 or BF16");
  act_dtype_ = t;
}

void HourglassNet::reset_parameters(uint64_t seed) {
  std::mt19937_64 rng(seed);
  conv1.reset_parameters(rng);
  layer1.reset_parameters(rng);
  layer2.reset_parameters(rng);
  layer3.reset_parameters(rng);
  for (Stack& st : stacks) {
    st.hg->reset_parameters(rng);
    st.res->reset_parameters(rng);
    st.fc_conv->reset_parameters(rng);
    st.score->reset_parameters(rng);
    if (st.fc_) st.fc_->reset_parameters(rng);
    if (st.score_) st.score_->reset_parameters(rng);
  }
  if (attr) attr->reset_parameters(rng);
  if (domain) domain->reset_parameters(rng);
}

HourglassOutputs HourglassNet::forward(Arena& arena, const TensorView& x, Mode mode) {
  const int64_t size = config_.input_size;
  DOFPOSE_CHECK(x.ndim() == 4 && x.dim(1) == 3 && x.dim(2) == size && x.dim(3) == size,
                "HourglassNet: input ", x.str(), " must be [N,3,", size, ",", size,
                "] (config input_size)");
  const bool fused = fused_inference(mode);
  fused_forward_ = fused;
  const DType act = fused ? act_dtype_ : DType::F32;  // the activations' storage
  TensorView h;
  if (fused) {
    ops::ConvFusionRef f;
    f.out_bn = bn1.ref();
    f.out_relu = true;
    h = conv1.forward_fused(arena, x, f, "Conv2d+BN+ReLU", act);
  } else {
    h = bn1.forward_relu(arena, conv1.forward(arena, x), mode, relu_, nullptr, trace, "relu");
  }
  h = layer1.forward(arena, h, mode);
  h = traced_op(trace, "maxpool", "MaxPool2x2", [&] { return maxpool_.forward(arena, h); });
  h = layer3.forward(arena, layer2.forward(arena, h, mode), mode);

  HourglassOutputs out;
  for (size_t s = 0; s < stacks.size(); ++s) {
    Stack& st = stacks[s];
    TensorView y = st.res->forward(arena, st.hg->forward(arena, h, mode), mode);
    TraceSpan fc_span;  // PyTorch's fc.{s} = Sequential(conv, bn, relu)
    if (fused) {
      ops::ConvFusionRef f;
      f.out_bn = st.fc_bn->ref();
      f.out_relu = true;
      y = st.fc_conv->forward_fused(arena, y, f, "Conv2d+BN+ReLU");
    } else {
      y = st.fc_bn->forward_relu(arena, st.fc_conv->forward(arena, y), mode, st.fc_relu, nullptr,
                                 trace, st.fc_relu_name.c_str());
    }
    if (fc_span.on()) fc_span.done(trace.child(concat("fc.", s)), "Sequential", y, 0, true);
    // The heatmaps in F32 (soft-argmax, the losses and the heads read them).
    TensorView score = act == DType::F32
                           ? st.score->forward(arena, y)
                           : st.score->forward_fused(arena, y, {}, "Conv2d", DType::F32);
    out.heatmaps.push_back(score);
    out.features = y;
    if (st.fc_ && fused) {  // x + fc_(y) + score_(score): the adds in the epilogues
      ops::ConvFusionRef f1;
      f1.residual = h;
      TensorView partial = st.fc_->forward_fused(arena, y, f1, "Conv2d+Add");
      ops::ConvFusionRef f2;
      f2.residual = partial;
      h = st.score_->forward_fused(arena, score, f2, "Conv2d+Add", act);
    } else if (st.fc_ && fused_training(mode)) {  // the same adds in training
      h = st.score_->forward_add(arena, score, st.fc_->forward_add(arena, y, h));
    } else if (st.fc_) {  // x = x + fc_(y) + score_(score)
      TensorView from_features = st.fc_->forward(arena, y);
      TensorView from_score = st.score_->forward(arena, score);
      TensorView next = arena.alloc(h.shape);
      TraceSpan merge_span;  // not a PyTorch module: named after the stack
      ops::add_forward(h, from_features, next);
      ops::accumulate(from_score, next);
      if (merge_span.on()) merge_span.done(trace.child(concat("merge.", s)), "Add", next);
      h = next;
    }
  }
  if (out.features.dtype != DType::F32) {  // the heads take float32
    TensorView f = arena.alloc(out.features.shape);
    traced_op(trace, "features", "Cast", [&] {
      ops::cast(out.features, f);
      return f;
    });
    out.features = f;
  }
  heat_shape_ = out.heatmaps.back().shape;
  feat_shape_ = out.features.shape;
  if (attr) out.attributes = attr->forward(arena, out.features, out.heatmaps.back(), mode);
  if (domain) out.domain = domain->forward(arena, out.features);
  forward_done_ = true;
  return out;
}

TensorView HourglassNet::backward(Arena& arena, const HourglassGrads& grads, bool input_grad) {
  DOFPOSE_CHECK(forward_done_, "HourglassNet::backward called without a forward");
  DOFPOSE_CHECK(!fused_forward_, "HourglassNet::backward: the last forward was a fused "
                "inference forward, which keeps nothing for backward; run it under "
                "nn::ScopedUnfused (or in Mode::Train)");
  const size_t n_stacks = stacks.size();
  DOFPOSE_CHECK(grads.heatmaps.empty() || grads.heatmaps.size() == n_stacks,
                "HourglassNet::backward: got ", grads.heatmaps.size(),
                " heatmap gradients, expected 0 or one per stack (", n_stacks, ")");
  for (size_t s = 0; s < grads.heatmaps.size(); ++s)
    if (!grads.heatmaps[s].empty())
      check_shape("HourglassNet::backward", concat("heatmap gradient ", s).c_str(),
                  grads.heatmaps[s], heat_shape_);

  // Heads on the last stack: gradients of its features and heatmaps.
  TensorView dfeat, dheat_last;
  if (attr) {
    if (grads.attributes.empty()) {
      zero_grads(*attr);
    } else {
      auto [df, dh] = attr->backward(arena, grads.attributes);
      dfeat = df;
      dheat_last = dh;
    }
  }
  if (domain) {
    if (grads.domain.empty())
      zero_grads(*domain);
    else
      dfeat = sum_grads(arena, dfeat, domain->backward(arena, grads.domain));
  }

  TensorView dnext;  // gradient of the input of stack s + 1
  for (size_t s = n_stacks; s-- > 0;) {
    Stack& st = stacks[s];
    TensorView dscore = grads.heatmaps.empty() ? TensorView() : grads.heatmaps[s];
    if (s + 1 == n_stacks) {
      dscore = sum_grads(arena, dscore, dheat_last);
    } else {
      dfeat = st.fc_->backward(arena, dnext);
      dscore = sum_grads(arena, dscore, st.score_->backward(arena, dnext));
    }
    if (dscore.empty()) dscore = zeros(arena, heat_shape_);
    dfeat = sum_grads(arena, dfeat, st.score->backward(arena, dscore));
    TensorView d = st.fc_conv->backward(
        arena, st.fc_bn->backward_relu(arena, dfeat, st.fc_relu, nullptr));
    d = st.hg->backward(arena, st.res->backward(arena, d));
    dnext = sum_grads(arena, d, dnext);  // the input also skips to the next stack
  }

  TensorView d = layer1.backward(
      arena, maxpool_.backward(arena, layer2.backward(arena, layer3.backward(arena, dnext))));
  d = bn1.backward_relu(arena, d, relu_, nullptr);
  return conv1.backward(arena, d, input_grad);
}

void HourglassNet::collect(const std::string& prefix, std::vector<Param>& params,
                           std::vector<Buffer>& buffers) {
  // PyTorch registration order: conv1, bn1, layer1-3, then each ModuleList
  // (hg, res, fc, score, fc_, score_) over all stacks, then the heads.
  trace.set(prefix);
  conv1.collect(prefix + "conv1.", params, buffers);
  bn1.collect(prefix + "bn1.", params, buffers);
  layer1.collect(prefix + "layer1.", params, buffers);
  layer2.collect(prefix + "layer2.", params, buffers);
  layer3.collect(prefix + "layer3.", params, buffers);
  const auto idx = [&](const char* list, size_t s) {
    return prefix + list + "." + std::to_string(s) + ".";
  };
  for (size_t s = 0; s < stacks.size(); ++s) stacks[s].hg->collect(idx("hg", s), params, buffers);
  for (size_t s = 0; s < stacks.size(); ++s) stacks[s].res->collect(idx("res", s), params, buffers);
  for (size_t s = 0; s < stacks.size(); ++s) {
    stacks[s].fc_conv->collect(idx("fc", s) + "0.", params, buffers);
    stacks[s].fc_bn->collect(idx("fc", s) + "1.", params, buffers);
  }
  for (size_t s = 0; s < stacks.size(); ++s)
    stacks[s].score->collect(idx("score", s), params, buffers);
  for (size_t s = 0; s + 1 < stacks.size(); ++s)
    stacks[s].fc_->collect(idx("fc_", s), params, buffers);
  for (size_t s = 0; s + 1 < stacks.size(); ++s)
    stacks[s].score_->collect(idx("score_", s), params, buffers);
  if (attr) attr->collect(prefix + "attr.", params, buffers);
  if (domain) domain->collect(prefix + "domain.", params, buffers);
}

int64_t HourglassNet::forward_flops(int batch) const {
  const int N = batch, size = config_.input_size, half = size / 2, hm = size / 4;
  int64_t f = conv1.flops(N, size, size) + layer1.flops(N, half, half) +
              layer2.flops(N, hm, hm) + layer3.flops(N, hm, hm);
  for (const Stack& st : stacks) {
    f += st.hg->flops(N, hm, hm) + st.res->flops(N, hm, hm) + st.fc_conv->flops(N, hm, hm) +
         st.score->flops(N, hm, hm);
    if (st.fc_) f += st.fc_->flops(N, hm, hm) + st.score_->flops(N, hm, hm);
  }
  if (attr) f += attr->flops(N);
  if (domain) f += domain->flops(N);
  return f;
}

void HourglassNet::save(const std::string& path) const {
  auto& self = const_cast<HourglassNet&>(*this);  // collect() hands out mutable pointers
  std::vector<Param> params;
  std::vector<Buffer> buffers;
  self.collect("", params, buffers);
  WeightsWriter w;
  for (const Param& p : params) w.add(p.name, *p.value);
  for (const Buffer& b : buffers) w.add(b.name, *b.value);
  w.set_metadata("kind", "hourglass");
  w.set_metadata("format_version", "1");
  w.set_metadata("config", config_.to_json_string());
  w.write(path);
}

void HourglassNet::load_state(const WeightsFile& file) {
  std::vector<Param> params;
  std::vector<Buffer> buffers;
  collect("", params, buffers);
  for (const Param& p : params) file.load_into(p.name, *p.value);
  for (const Buffer& b : buffers) file.load_into(b.name, *b.value);
}

std::unique_ptr<HourglassNet> HourglassNet::load(const std::string& path) {
  WeightsFile file(path);
  const std::string kind = file.metadata_or("kind", "");
  DOFPOSE_CHECK(kind == "hourglass", "HourglassNet::load: ", path, " has kind '", kind,
                "', expected 'hourglass'");
  const std::string version = file.metadata_or("format_version", "");
  DOFPOSE_CHECK(version == "1", "HourglassNet::load: ", path, " has format_version '", version,
                "', expected '1'");
  const std::string config = file.metadata_or("config", "");
  DOFPOSE_CHECK(!config.empty(), "HourglassNet::load: ", path, " has no 'config' metadata");
  HourglassConfig c;
  try {
    c = HourglassConfig::from_json_string(config);
  } catch (const Error& e) {
    fail("model file ", path, ": ", e.what());
  }
  // The net has at least stacks x blocks bottlenecks of >= num_feats^2
  // weights: a config the tensors cannot back is refused before building.
  check_config_fits_file(file, int64_t(c.stacks) * c.blocks * c.num_feats * c.num_feats,
                         concat("stacks ", c.stacks, ", blocks ", c.blocks, ", num_feats ",
                                c.num_feats));
  auto net = std::make_unique<HourglassNet>(c);
  net->load_state(file);
  return net;
}

float heatmap_mse_loss(Arena& arena, const std::vector<TensorView>& heatmaps,
                       const TensorView& target, const TensorView& joint_weight,
                       std::vector<TensorView>* dheatmaps, float dloss) {
  float loss = 0.f;
  if (dheatmaps) dheatmaps->clear();
  for (const TensorView& h : heatmaps) {
    loss += ops::heatmap_mse_forward(h, target, joint_weight);
    if (dheatmaps) {
      TensorView d = arena.alloc(h.shape);
      ops::heatmap_mse_backward(h, target, joint_weight, d, dloss);
      dheatmaps->push_back(d);
    }
  }
  return loss;
}

}  // namespace dofpose::nn
