#include "dofpose/nn/lifter.h"
#include "dofpose/ops.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "dofpose/cuda_backend.h"
#include "dofpose/nn/optimizer.h"
#include "dofpose/nn/serialize.h"

namespace dofpose::nn {

using json = nlohmann::json;

// ---------------------------------------------------------------- config

void LifterConfig::validate() const {
  const char* op = "LifterConfig";
  DOFPOSE_CHECK(kind == "martinez" || kind == "progressive" || kind == "two_block", op,
                ": kind must be \"martinez\", \"progressive\" or \"two_block\", got \"", kind,
                "\"");
  DOFPOSE_CHECK(num_joints_in == 16 || num_joints_in == 17, op,
                ": num_joints_in must be 16 or 17, got ", num_joints_in);
  DOFPOSE_CHECK(attribute_encoding == "onehot", op,
                ": attribute_encoding must be \"onehot\", got \"", attribute_encoding, "\"");
  DOFPOSE_CHECK(width >= 1 && width <= kMaxWidth, op, ": width must be in [1, ", kMaxWidth,
                "], got ", width);
  DOFPOSE_CHECK(blocks >= 0 && blocks <= kMaxBlocks, op, ": blocks must be in [0, ", kMaxBlocks,
                "], got ", blocks);
  DOFPOSE_CHECK(dropout >= 0.f && dropout < 1.f, op, ": dropout must be in [0, 1), got ",
                dropout);
  DOFPOSE_CHECK(max_norm >= 0.f, op, ": max_norm must be >= 0 (0 = off), got ", max_norm);
  DOFPOSE_CHECK(bn_eps > 0.f && bn_momentum >= 0.f && bn_momentum <= 1.f, op,
                ": bn_eps must be > 0 and bn_momentum in [0, 1]");
  std::vector<int> seen(kOutputJoints, 0);
  for (const auto* g : {&torso, &proximal, &distal})
    for (int j : *g) {
      DOFPOSE_CHECK(j >= 0 && j < kOutputJoints, op, ": joint group entry ", j,
                    " is not an H36M-17 index (0..16)");
      ++seen[j];
    }
  for (int j = 0; j < kOutputJoints; ++j)
    DOFPOSE_CHECK(seen[j] == 1, op, ": the joint groups must partition 0..16; joint ", j,
                  " appears ", seen[j], " times");
  DOFPOSE_CHECK(std::find(torso.begin(), torso.end(), 0) != torso.end(), op,
                ": the pelvis (0) must be in the torso group");
}

std::vector<int> LifterConfig::input_joints() const {
  std::vector<int> j;
  for (int i = 0; i < kOutputJoints; ++i)
    if (num_joints_in == 17 || i != 9) j.push_back(i);  // 16: no neck/nose
  return j;
}

LifterConfig LifterConfig::from_json_string(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("LifterConfig: not valid JSON: ", e.what());
  }
  DOFPOSE_CHECK(j.is_object(), "LifterConfig: expected a JSON object, got ", j.dump());
  LifterConfig c;
  try {
    for (const auto& [key, v] : j.items()) {
      if (key == "kind") c.kind = v.get<std::string>();
      else if (key == "num_joints_in") c.num_joints_in = config_int(v, "LifterConfig", key, 16, 17);
      else if (key == "use_attributes") c.use_attributes = v.get<bool>();
      else if (key == "attribute_encoding") c.attribute_encoding = v.get<std::string>();
      else if (key == "width") c.width = config_int(v, "LifterConfig", key, 1, kMaxWidth);
      else if (key == "blocks") c.blocks = config_int(v, "LifterConfig", key, 0, kMaxBlocks);
      else if (key == "dropout") c.dropout = v.get<float>();
      else if (key == "max_norm") c.max_norm = v.get<float>();
      else if (key == "bn_momentum") c.bn_momentum = v.get<float>();
      else if (key == "bn_eps") c.bn_eps = v.get<float>();
      else if (key == "groups") {
        for (const auto& [g, list] : v.items()) {
          if (g == "torso") c.torso = list.get<std::vector<int>>();
          else if (g == "proximal") c.proximal = list.get<std::vector<int>>();
          else if (g == "distal") c.distal = list.get<std::vector<int>>();
          else fail("LifterConfig: unknown joint group \"", g,
                    "\" (expected torso, proximal, distal)");
        }
      } else {
        fail("LifterConfig: unknown key \"", key, "\"");
      }
    }
  } catch (const json::exception& e) {
    fail("LifterConfig: a field has the wrong type: ", e.what());
  }
  c.validate();
  return c;
}

std::string LifterConfig::to_json_string() const {
  json j = {{"kind", kind},
            {"num_joints_in", num_joints_in},
            {"use_attributes", use_attributes},
            {"attribute_encoding", attribute_encoding},
            {"width", width},
            {"blocks", blocks},
            {"dropout", float_as_shortest_double(dropout)},
            {"max_norm", float_as_shortest_double(max_norm)},
            {"bn_momentum", float_as_shortest_double(bn_momentum)},
            {"bn_eps", float_as_shortest_double(bn_eps)},
            {"groups", {{"torso", torso}, {"proximal", proximal}, {"distal", distal}}}};
  return j.dump();
}

// ---------------------------------------------------------------- blocks

ResidualBlock::ResidualBlock(int w, float p, float momentum, float eps)
    : linear1(w, w), linear2(w, w), bn1(w, eps, momentum), bn2(w, eps, momentum),
      drop1(p), drop2(p) {}

TensorView ResidualBlock::forward(Arena& arena, const TensorView& x, Mode mode) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("ResidualBlock"));
  if (fused_inference(mode)) {  // two GEMMs with BN, ReLU (and the add) in their epilogues
    ops::LinearFusionRef f1;
    f1.bn = bn1.ref();
    f1.relu = true;
    TensorView h = linear1.forward_fused(arena, x, f1, "Linear+BN+ReLU");
    ops::LinearFusionRef f2;
    f2.bn = bn2.ref();
    f2.relu = true;
    f2.residual = x;
    TensorView y = linear2.forward_fused(arena, h, f2, "Linear+BN+ReLU+Add");
    if (span.on()) span.done(trace.get("ResidualBlock"), "ResidualBlock", y, 0, true);
    return y;
  }
  // Dropout is the identity at inference: not traced.
  TensorView h = bn1.forward_relu(arena, linear1.forward(arena, x), mode, relu1, &drop1, trace,
                                  "relu1");
  const bool add_in_store = fused_training(mode);  // the skip added in the activation's store
  h = bn2.forward_relu(arena, linear2.forward(arena, h), mode, relu2, &drop2, trace, "relu2",
                       add_in_store ? x : TensorView());
  TensorView y = h;
  if (!add_in_store) {
    y = arena.alloc(x.shape);
    traced_inplace(trace, "add", "Add", y, [&] { ops::add_forward(x, h, y); });
  }
  if (span.on()) span.done(trace.get("ResidualBlock"), "ResidualBlock", y, 0, true);
  return y;
}

TensorView ResidualBlock::backward(Arena& arena, const TensorView& dy) {
  TensorView dh = linear2.backward(arena, bn2.backward_relu(arena, dy, relu2, &drop2));
  // The identity path's gradient dy added in linear1's dx store.
  return linear1.backward(arena, bn1.backward_relu(arena, dh, relu1, &drop1), dy);
}

void ResidualBlock::collect(const std::string& prefix, std::vector<Param>& params,
                            std::vector<Buffer>& buffers) {
  trace.set(prefix);
  linear1.collect(prefix + "linear1.", params, buffers);
  bn1.collect(prefix + "bn1.", params, buffers);
  linear2.collect(prefix + "linear2.", params, buffers);
  bn2.collect(prefix + "bn2.", params, buffers);
}

Regressor::Regressor(int in, int out, const LifterConfig& c)
    : in_features(in), out_features(out), input_layer(in, c.width),
      input_bn(c.width, c.bn_eps, c.bn_momentum), input_drop(c.dropout),
      output_layer(c.width, out) {
  for (int b = 0; b < c.blocks; ++b)
    blocks.push_back(std::make_unique<ResidualBlock>(c.width, c.dropout, c.bn_momentum, c.bn_eps));
}

TensorView Regressor::forward(Arena& arena, const TensorView& x, Mode mode) {
  DOFPOSE_CHECK(x.ndim() == 2 && x.dim(1) == in_features, "Regressor: input must be [N,",
                in_features, "], got ", x.str());
  TraceSpan span;
  if (span.on()) span.range(trace.get("Regressor"));
  TensorView h;
  if (fused_inference(mode)) {
    ops::LinearFusionRef f;
    f.bn = input_bn.ref();
    f.relu = true;
    h = input_layer.forward_fused(arena, x, f, "Linear+BN+ReLU");
  } else {
    h = input_bn.forward_relu(arena, input_layer.forward(arena, x), mode, input_relu,
                              &input_drop, trace, "input_relu");
  }
  for (auto& b : blocks) h = b->forward(arena, h, mode);
  TensorView y = output_layer.forward(arena, h);
  if (span.on()) span.done(trace.get("Regressor"), "Regressor", y, 0, true);
  return y;
}

TensorView Regressor::backward(Arena& arena, const TensorView& dy) {
  TensorView dh = output_layer.backward(arena, dy);
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) dh = (*it)->backward(arena, dh);
  return input_layer.backward(arena, input_bn.backward_relu(arena, dh, input_relu, &input_drop));
}

void Regressor::collect(const std::string& prefix, std::vector<Param>& params,
                        std::vector<Buffer>& buffers) {
  trace.set(prefix);
  input_layer.collect(prefix + "input_layer.", params, buffers);
  input_bn.collect(prefix + "input_bn.", params, buffers);
  for (size_t b = 0; b < blocks.size(); ++b)
    blocks[b]->collect(prefix + "blocks." + std::to_string(b) + ".", params, buffers);
  output_layer.collect(prefix + "output_layer.", params, buffers);
}

std::vector<Dropout*> Regressor::dropouts() {
  std::vector<Dropout*> d = {&input_drop};
  for (auto& b : blocks) {
    d.push_back(&b->drop1);
    d.push_back(&b->drop2);
  }
  return d;
}

std::vector<Linear*> Regressor::linears() {
  std::vector<Linear*> l = {&input_layer};
  for (auto& b : blocks) {
    l.push_back(&b->linear1);
    l.push_back(&b->linear2);
  }
  l.push_back(&output_layer);
  return l;
}

void Regressor::init_parameters(uint64_t seed) {
  uint64_t k = 0;
  for (Linear* l : linears()) l->init_uniform(mix_seed(seed, k++));
  std::vector<BatchNorm*> bns = {&input_bn};
  for (auto& b : blocks) {
    bns.push_back(&b->bn1);
    bns.push_back(&b->bn2);
  }
  for (BatchNorm* bn : bns) {
    fill(bn->weight, 1.f);
    fill(bn->bias, 0.f);
    fill(bn->running_mean, 0.f);
    fill(bn->running_var, 1.f);
  }
}

// ---------------------------------------------------------------- lifter

namespace {

std::vector<int> without_pelvis(const std::vector<int>& g) {
  std::vector<int> out;
  for (int j : g)
    if (j != 0) out.push_back(j);
  return out;
}

// [N, a] ++ [N, b] ++ ... -> [N, a+b+...] (column block copies, on the tensors' device).
TensorView concat_columns(Arena& arena, const std::vector<TensorView>& parts) {
  const int64_t n = parts[0].dim(0);
  int64_t total = 0;
  for (const TensorView& p : parts) total += p.dim(1);
  TensorView y = arena.alloc({n, total});
  int64_t offset = 0;
  for (const TensorView& p : parts) {
    ops::copy_columns(p, 0, y, offset, p.dim(1));
    offset += p.dim(1);
  }
  return y;
}

// dpart += d_concat[:, offset : offset+w], i.e. the backward of concat for one part.
void accumulate_columns(const TensorView& d_concat, int64_t offset, const TensorView& dpart) {
  ops::copy_columns(d_concat, offset, dpart, 0, dpart.dim(1), /*accumulate=*/true);
}

// Host-readable values of t: t's own memory on the CPU, else a copy kept in `holder`.
const float* host_floats(const TensorView& t, Tensor& holder) {
  if (t.device == Device::CPU) return t.f32();
  holder = Tensor::empty(t.shape);
  copy(t, holder);
  return holder.f32();
}

// An arena tensor whose values `write(float*)` computes on the host: straight
// into the arena on the CPU, through a staging copy on a device.
template <class Write>
TensorView host_written(Arena& arena, Shape s, Write&& write) {
  TensorView t = arena.alloc(s);
  if (t.device == Device::CPU) {
    write(t.f32());
    return t;
  }
  Tensor staging = Tensor::empty(s);
  write(staging.f32());
  copy(staging, t);
  return t;
}

// An arena tensor [n, cols] of host rows (`raw_row(x, r)` writes row r of x)
// standardised over its first mean.numel() columns, (v - mean) / std, the rest
// as written. On the CPU straight into the arena; on a device the raw rows go
// up in one copy and ops::standardize_columns runs there, next to the
// statistics (the same bits: IEEE subtraction and division), so no call
// downloads them.
template <class RawRow>
TensorView standardised(Arena& arena, Shape s, const Tensor& mean, const Tensor& sd,
                        RawRow&& raw_row) {
  const int64_t n = s[0], cols = s[1], count = mean.numel();
  TensorView t = arena.alloc(s);
  if (t.device == Device::CPU) {
    Tensor mean_holder, std_holder;
    const float* m = host_floats(mean, mean_holder);
    const float* d = host_floats(sd, std_holder);
    float* x = t.f32();
    for (int64_t r = 0; r < n; ++r) {
      raw_row(x, r);
      for (int64_t c = 0; c < count; ++c) x[r * cols + c] = (x[r * cols + c] - m[c]) / d[c];
    }
    return t;
  }
  DOFPOSE_CHECK(mean.device() == t.device, "Lifter: the normalisation statistics are on the ",
                device_name(mean.device()), ", the arena on the ", device_name(t.device),
                " (move the model with to_device)");
  Tensor staging = Tensor::empty(s);
  for (int64_t r = 0; r < n; ++r) raw_row(staging.f32(), r);
  TensorView raw = arena.alloc(s);
  // Queued on the stream that standardises and then reads it: no host wait.
  cuda::upload_staged(raw.data, staging.f32(), staging.nbytes(), ops::cuda_stream());
  ops::standardize_columns(raw, mean, sd, t);
  return t;
}

void check_pose_batch(const char* op, const char* name, const TensorView& t, int64_t n,
                      int64_t cols, Device device = Device::CPU) {
  check_f32(op, name, t, device);
  const bool flat = t.ndim() == 2 && t.dim(0) == n && t.dim(1) == cols;
  DOFPOSE_CHECK(flat || (t.ndim() == 3 && t.dim(0) == n && t.dim(1) * t.dim(2) == cols), op,
                ": tensor '", name, "' has shape ", t.shape.str(), ", expected [", n, ",", cols,
                "] (or [N,J,D] with J*D = ", cols, ")");
}

}  // namespace

Lifter::Lifter(const LifterConfig& c)
    : norm_input_mean(Tensor::zeros({c.pose_input_dim()})),
      norm_input_std(Tensor::empty({c.pose_input_dim()})),
      norm_output_mean(Tensor::zeros({c.output_dim()})),
      norm_output_std(Tensor::empty({c.output_dim()})),
      config_(c) {
  config_.validate();
  fill(norm_input_std, 1.f);
  fill(norm_output_std, 1.f);
}

void Lifter::add_regressor(const std::string& name, std::vector<int> joints,
                           std::vector<int> sources, int block) {
  int in = config_.input_dim();
  for (int s : sources) in += slots_[s].net->out_features;
  RegressorSlot slot;
  slot.name = name;
  slot.net = std::make_unique<Regressor>(in, int(joints.size()) * 3, config_);
  slot.joints = std::move(joints);
  slot.sources = std::move(sources);
  slot.block = block;
  num_blocks_ = std::max(num_blocks_, block + 1);
  slots_.push_back(std::move(slot));
}

MartinezLifter::MartinezLifter(const LifterConfig& c) : Lifter(c) {
  std::vector<int> all;
  for (int j = 1; j < LifterConfig::kOutputJoints; ++j) all.push_back(j);
  add_regressor("regressor", all, {}, 0);
  init_parameters(0);
}

ProgressiveLifter::ProgressiveLifter(const LifterConfig& c) : Lifter(c) {
  const auto t = without_pelvis(c.torso), p = without_pelvis(c.proximal),
             d = without_pelvis(c.distal);
  // Block I: each group sees the groups predicted before it.
  add_regressor("block1.torso", t, {}, 0);
  add_regressor("block1.proximal", p, {0}, 0);
  add_regressor("block1.distal", d, {0, 1}, 0);
  // Block II: each group is refined from the other two groups' latest predictions.
  add_regressor("block2.torso", t, {1, 2}, 1);
  add_regressor("block2.proximal", p, {3, 2}, 1);
  add_regressor("block2.distal", d, {3, 4}, 1);
  init_parameters(0);
}

TwoBlockLifter::TwoBlockLifter(const LifterConfig& c) : Lifter(c) {
  const auto t = without_pelvis(c.torso), p = without_pelvis(c.proximal),
             d = without_pelvis(c.distal);
  add_regressor("block1.torso", t, {}, 0);
  add_regressor("block1.proximal", p, {}, 0);
  add_regressor("block1.distal", d, {}, 0);
  add_regressor("block2.torso", t, {}, 1);
  add_regressor("block2.proximal", p, {}, 1);
  add_regressor("block2.distal", d, {}, 1);
  init_parameters(0);
}

std::unique_ptr<Lifter> Lifter::create(const LifterConfig& c, uint64_t init_seed) {
  c.validate();
  std::unique_ptr<Lifter> l;
  if (c.kind == "martinez") l = std::make_unique<MartinezLifter>(c);
  else if (c.kind == "progressive") l = std::make_unique<ProgressiveLifter>(c);
  else l = std::make_unique<TwoBlockLifter>(c);
  l->init_parameters(init_seed);
  l->set_dropout_seed(init_seed);
  return l;
}

void Lifter::init_parameters(uint64_t seed) {
  for (size_t k = 0; k < slots_.size(); ++k) slots_[k].net->init_parameters(mix_seed(seed, k));
}

std::vector<Dropout*> Lifter::dropouts() {
  std::vector<Dropout*> all;
  for (auto& s : slots_)
    for (Dropout* d : s.net->dropouts()) all.push_back(d);
  return all;
}

void Lifter::set_dropout_seed(uint64_t seed) {
  const uint64_t base = mix_seed(seed, 0xD0D0);
  uint64_t k = 0;
  for (Dropout* d : dropouts()) d->set_seed(mix_seed(base, k++));
}

int64_t Lifter::flops_per_pose() const {
  int64_t f = 0;
  for (const auto& s : slots_)
    for (Linear* l : s.net->linears())
      f += 2 * int64_t(l->in_features) * l->out_features + l->out_features;
  return f;
}

void Lifter::collect(const std::string& prefix, std::vector<Param>& params,
                     std::vector<Buffer>& buffers) {
  trace.set(prefix);
  for (auto& s : slots_) s.net->collect(prefix + s.name + ".", params, buffers);
  buffers.push_back({prefix + "norm.input.mean", &norm_input_mean});
  buffers.push_back({prefix + "norm.input.std", &norm_input_std});
  buffers.push_back({prefix + "norm.output.mean", &norm_output_mean});
  buffers.push_back({prefix + "norm.output.std", &norm_output_std});
}

LifterOutput Lifter::forward(Arena& arena, const TensorView& x, Mode mode) {
  check_f32("Lifter::forward", "x", x, arena.device());
  DOFPOSE_CHECK(x.ndim() == 2 && x.dim(1) == config_.input_dim(), "Lifter::forward (",
                config_.kind, "): input must be [N,", config_.input_dim(), "], got ",
                x.shape.str());
  batch_ = x.dim(0);
  fused_forward_ = fused_inference(mode);
  outs_.assign(slots_.size(), TensorView());
  for (size_t k = 0; k < slots_.size(); ++k) {
    const RegressorSlot& s = slots_[k];
    TensorView in = x;
    if (!s.sources.empty()) {
      TraceSpan span;
      std::vector<TensorView> parts = {x};
      for (int src : s.sources) parts.push_back(outs_[src]);
      in = concat_columns(arena, parts);
      if (span.on()) span.done(trace.child(s.name + ".concat"), "Concat", in);
    }
    outs_[k] = s.net->forward(arena, in, mode);
  }
  LifterOutput out;
  for (int b = 0; b < num_blocks_; ++b) {
    TraceSpan span;
    TensorView pose = arena.alloc({batch_, config_.output_dim()});
    fill(pose, 0.f);  // the pelvis stays 0
    for (size_t k = 0; k < slots_.size(); ++k) {
      if (slots_[k].block != b) continue;
      const auto& joints = slots_[k].joints;
      for (size_t j = 0; j < joints.size(); ++j)
        ops::copy_columns(outs_[k], int64_t(j) * 3, pose, int64_t(joints[j]) * 3, 3);
    }
    if (span.on()) span.done(trace.child(concat("pose.block", b + 1)), "Assemble", pose);
    out.poses.push_back(pose);
  }
  return out;
}

TensorView Lifter::backward(Arena& arena, const std::vector<TensorView>& dposes) {
  DOFPOSE_CHECK(!outs_.empty(), "Lifter::backward: call forward first");
  DOFPOSE_CHECK(!fused_forward_, "Lifter::backward: the last forward was a fused inference "
                "forward (inside nn::ScopedNoGrad), which keeps nothing for backward");
  DOFPOSE_CHECK(int(dposes.size()) == num_blocks_, "Lifter::backward (", config_.kind,
                "): expected ", num_blocks_, " pose gradients (one per block), got ",
                dposes.size());
  for (const TensorView& d : dposes)
    if (!d.empty()) {
      check_f32("Lifter::backward", "dpose", d, arena.device());
      check_shape("Lifter::backward", "dpose", d, {batch_, config_.output_dim()});
    }
  // Gradient of each regressor's output: its block's pose gradient gathered
  // for its joints, plus whatever later regressors send back through their inputs.
  std::vector<TensorView> douts(slots_.size());
  for (size_t k = 0; k < slots_.size(); ++k) {
    const RegressorSlot& s = slots_[k];
    const int64_t w = int64_t(s.joints.size()) * 3;
    douts[k] = arena.alloc({batch_, w});
    fill(douts[k], 0.f);
    const TensorView& dp = dposes[s.block];
    if (dp.empty()) continue;
    for (size_t j = 0; j < s.joints.size(); ++j)
      ops::copy_columns(dp, int64_t(s.joints[j]) * 3, douts[k], int64_t(j) * 3, 3);
  }
  TensorView dx = arena.alloc({batch_, config_.input_dim()});
  fill(dx, 0.f);
  for (size_t k = slots_.size(); k-- > 0;) {
    const RegressorSlot& s = slots_[k];
    TensorView din = s.net->backward(arena, douts[k]);
    accumulate_columns(din, 0, dx);
    int64_t offset = config_.input_dim();
    for (int src : s.sources) {
      accumulate_columns(din, offset, douts[src]);  // src < k: not yet back-propagated
      offset += douts[src].dim(1);
    }
  }
  return dx;
}

TensorView Lifter::prepare_input(Arena& arena, const TensorView& pose2d,
                                 const TensorView& attributes) const {
  const char* op = "Lifter::prepare_input";
  DOFPOSE_CHECK(pose2d.ndim() >= 1, op, ": pose2d is empty");
  const int64_t n = pose2d.dim(0);
  const int64_t pin = config_.pose_input_dim();
  check_pose_batch(op, "pose2d", pose2d, n, pin);
  if (config_.use_attributes) {
    DOFPOSE_CHECK(!attributes.empty(), op, ": this lifter uses attributes; pass [N,27]");
    check_f32(op, "attributes", attributes, Device::CPU);
    check_shape(op, "attributes", attributes, {n, LifterConfig::kAttributeInputs});
  } else {
    DOFPOSE_CHECK(attributes.empty(), op,
                  ": this lifter does not use attributes (use_attributes false), got ",
                  attributes.str());
  }
  const int64_t in = config_.input_dim();
  auto raw_row = [&](float* x, int64_t r) {  // the pose and the attributes, unscaled
    for (int64_t c = 0; c < pin; ++c) x[r * in + c] = pose2d.f32()[r * pin + c];
    for (int64_t c = 0; c < config_.attribute_dim(); ++c)
      x[r * in + pin + c] = attributes.f32()[r * LifterConfig::kAttributeInputs + c];
  };
  return standardised(arena, {n, in}, norm_input_mean, norm_input_std, raw_row);
}

TensorView Lifter::normalise_output(Arena& arena, const TensorView& pose3d) const {
  const int64_t n = pose3d.ndim() >= 1 ? pose3d.dim(0) : 0, out = config_.output_dim();
  check_pose_batch("Lifter::normalise_output", "pose3d", pose3d, n, out);
  auto raw_row = [&](float* y, int64_t r) {
    for (int64_t c = 0; c < out; ++c) y[r * out + c] = pose3d.f32()[r * out + c];
  };
  return standardised(arena, {n, out}, norm_output_mean, norm_output_std, raw_row);
}

TensorView Lifter::denormalise_output(Arena& arena, const TensorView& yn) const {
  const int64_t n = yn.ndim() >= 1 ? yn.dim(0) : 0, out = config_.output_dim();
  check_pose_batch("Lifter::denormalise_output", "y", yn, n, out, yn.device);
  if (yn.device != Device::CPU) {  // on the device, queued: no host round trip
    DOFPOSE_CHECK(norm_output_std.device() == yn.device, "Lifter::denormalise_output: y is on ",
                  yn.str(), " but the normalisation statistics are on the ",
                  device_name(norm_output_std.device()));
    TensorView y = arena.alloc({n, out}, DType::F32);
    ops::affine_columns(yn, norm_output_std, norm_output_mean, y);
    TensorView origin = arena.alloc({n, 3}, DType::F32);
    fill(origin, 0.f);
    ops::copy_columns(origin, 0, y, 0, 3);  // the origin
    return y;
  }
  Tensor yn_holder, mean_holder, std_holder;
  const float* src = host_floats(yn, yn_holder);  // yn may live on a device
  const float* mean = host_floats(norm_output_mean, mean_holder);
  const float* sd = host_floats(norm_output_std, std_holder);
  return host_written(arena, {n, out}, [&](float* y) {
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < out; ++c) y[r * out + c] = src[r * out + c] * sd[c] + mean[c];
      for (int c = 0; c < 3; ++c) y[r * out + c] = 0.f;  // the origin
    }
  });
}

void Lifter::fit_normalisation(const float* pose2d, const float* pose3d, int64_t n) {
  DOFPOSE_CHECK(n >= 1, "Lifter::fit_normalisation: needs at least one pose, got ", n);
  auto fit = [n](const float* data, int64_t dims, Tensor& mean, Tensor& sd) {
    for (int64_t c = 0; c < dims; ++c) {
      double s = 0, s2 = 0;
      for (int64_t r = 0; r < n; ++r) s += data[r * dims + c];
      const double mu = s / double(n);
      for (int64_t r = 0; r < n; ++r) {
        const double d = data[r * dims + c] - mu;
        s2 += d * d;
      }
      const double sigma = std::sqrt(s2 / double(n));
      mean.f32()[c] = float(mu);
      sd.f32()[c] = sigma < 1e-4 ? 1.f : float(sigma);
    }
  };
  fit(pose2d, config_.pose_input_dim(), norm_input_mean, norm_input_std);
  fit(pose3d, config_.output_dim(), norm_output_mean, norm_output_std);
  for (int c = 0; c < 3; ++c) {
    norm_output_mean.f32()[c] = 0.f;
    norm_output_std.f32()[c] = 1.f;
  }
}

// ---------------------------------------------------------------- helpers

float lifter_l1_loss(Arena& arena, const LifterOutput& out, const TensorView& target,
                     std::vector<TensorView>& dposes) {
  dposes.clear();
  float total = 0.f;
  for (const TensorView& pose : out.poses) {
    total += ops::l1_forward(pose, target);
    TensorView d = arena.alloc(pose.shape);
    ops::l1_backward(pose, target, d, 1.f);
    dposes.push_back(d);
  }
  return total;
}

void encode_attribute_labels(const int32_t* labels, int64_t n, float* out) {
  for (int64_t r = 0; r < n; ++r)
    for (int a = 0; a < 9; ++a) {
      const int32_t l = labels[r * 9 + a];
      DOFPOSE_CHECK(l >= 0 && l <= 2, "encode_attribute_labels: pose ", r, " attribute ", a,
                    " has label ", l, ", expected 0 (front), 1 (back) or 2 (on-plane)");
      for (int k = 0; k < 3; ++k) out[r * 27 + a * 3 + k] = k == l ? 1.f : 0.f;
    }
}

void save_lifter(Lifter& lifter, const std::string& path, const Optimizer* optimizer) {
  save_module(lifter, path,
              {{"format_version", kModelFormatVersion},
               {"kind", "lifter"},
               {"config", lifter.config().to_json_string()}},
              optimizer);
}

namespace {
LifterConfig config_of(const WeightsFile& file) {
  check_model_metadata(file, "lifter");
  const auto it = file.metadata().find("config");
  DOFPOSE_CHECK(it != file.metadata().end(), "model file ", file.path(),
                ": metadata has no 'config'");
  try {
    return LifterConfig::from_json_string(it->second);
  } catch (const Error& e) {
    fail("model file ", file.path(), ": ", e.what());
  }
}
}  // namespace

namespace {
// A std of 0 or a non-finite statistic makes every output NaN or infinite
// (docs/weights-format.md): refused at load, so every command reports it.
void check_normalisation(const Lifter& l, const WeightsFile& file) {
  const std::pair<const char*, const Tensor*> stats[] = {
      {"norm.input.mean", &l.norm_input_mean}, {"norm.input.std", &l.norm_input_std},
      {"norm.output.mean", &l.norm_output_mean}, {"norm.output.std", &l.norm_output_std}};
  for (const auto& [name, t] : stats) {
    const Tensor host = t->to(Device::CPU);
    const bool is_std = std::string(name).find(".std") != std::string::npos;
    for (int64_t i = 0; i < host.numel(); ++i) {
      const float v = host.f32()[i];
      DOFPOSE_CHECK(std::isfinite(v) && (!is_std || v > 0.f), "model file ", file.path(),
                    ": tensor '", name, "' has ", v, " at index ", i, "; expected ",
                    is_std ? "finite standard deviations > 0" : "finite means",
                    " (broken weights?)");
    }
  }
}
}  // namespace

std::unique_ptr<Lifter> load_lifter(const WeightsFile& file) {
  const LifterConfig c = config_of(file);
  // Each regressor has `blocks` residual blocks of two width x width Linears.
  check_config_fits_file(file, int64_t(c.blocks) * 2 * c.width * c.width,
                         concat("width ", c.width, ", blocks ", c.blocks));
  auto lifter = Lifter::create(c);
  load_module(*lifter, file);
  check_normalisation(*lifter, file);
  return lifter;
}

void load_lifter_weights(Lifter& lifter, const WeightsFile& file) {
  const LifterConfig c = config_of(file);
  DOFPOSE_CHECK(c.kind == lifter.config().kind, "model file ", file.path(), " holds a '",
                c.kind, "' lifter, this lifter is '", lifter.config().kind, "'");
  load_module(lifter, file);
  check_normalisation(lifter, file);
}

}  // namespace dofpose::nn
