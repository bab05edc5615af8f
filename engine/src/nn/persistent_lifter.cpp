#include "dofpose/nn/persistent_lifter.h"

#include <algorithm>

#include "dofpose/cuda_backend.h"
#include "dofpose/ops.h"
#ifdef DOFPOSE_WITH_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

namespace dofpose::nn {

// Host-only scheduling, in every build (tested on the CPU): a regressor's
// first step waits for the outputs of its sources, every later step for the
// step before it.
std::vector<int> PersistentLifter::step_phases(const Lifter& lifter) {
  const auto& slots = lifter.regressors();
  std::vector<int> phases, out_phase(slots.size(), -1);
  for (size_t k = 0; k < slots.size(); ++k) {
    int phase = 0;  // the input vector is ready before phase 0
    for (int src : slots[k].sources) phase = std::max(phase, out_phase[size_t(src)] + 1);
    const int steps = 2 + 2 * int(slots[k].net->blocks.size());  // input, 2 per block, output
    for (int i = 0; i < steps; ++i) phases.push_back(phase + i);
    out_phase[k] = phase + steps - 1;
  }
  return phases;
}

#ifdef DOFPOSE_WITH_CUDA

namespace ck = cuda_kernels;

namespace {

BatchNormPtrs bn_of(const BatchNorm& bn) {
  BatchNormPtrs p;
  p.gamma = bn.weight.f32();
  p.beta = bn.bias.f32();
  p.mean = bn.running_mean.f32();
  p.var = bn.running_var.f32();
  p.eps = bn.p.eps;
  return p;
}

}  // namespace

struct PersistentLifter::Impl {
  Tensor ws, steps_dev, phase_dev, copies_dev, maps_dev;
  ck::MlpProgram prog;
  int n_steps = 0, blocks = 0, input_dim = 0;
};

PersistentLifter::PersistentLifter(Lifter& lifter) : impl_(std::make_unique<Impl>()) {
  DOFPOSE_CHECK(lifter.device() == Device::CUDA,
                "PersistentLifter: the lifter's parameters must be on CUDA");
  DOFPOSE_CHECK(ck::mlp_program_supported(),
                "PersistentLifter: this CUDA device does not support cooperative launches");
  const auto& slots = lifter.regressors();
  const int D = int(lifter.config().input_dim());
  DOFPOSE_CHECK(lifter.num_blocks() <= ck::kMlpMaxOutputs, "PersistentLifter: at most ",
                ck::kMlpMaxOutputs, " blocks");
  Impl& m = *impl_;
  m.input_dim = D;
  m.blocks = lifter.num_blocks();

  // Workspace layout and the joint maps (host side first).
  int ws_size = 0;
  auto take = [&](int n) {
    const int off = ws_size;
    ws_size += (n + 3) / 4 * 4;  // 16-byte aligned vectors for the float4 loads
    return off;
  };
  std::vector<int> concat_off(slots.size(), -1), out_dim(slots.size());
  std::vector<int> copies;
  for (size_t k = 0; k < slots.size(); ++k) {
    out_dim[k] = int(slots[k].joints.size()) * 3;
    if (!slots[k].sources.empty()) {
      int n = D;
      for (int src : slots[k].sources) n += int(slots[size_t(src)].joints.size()) * 3;
      concat_off[k] = take(n);
      copies.push_back(concat_off[k]);
    }
  }
  std::vector<int> maps;  // per slot: out_dim element indices into the pose
  std::vector<int> map_off(slots.size());
  for (size_t k = 0; k < slots.size(); ++k) {
    map_off[k] = int(maps.size());
    for (int j : slots[k].joints)
      for (int c = 0; c < 3; ++c) maps.push_back(j * 3 + c);
  }
  m.maps_dev = Tensor::empty({std::max<int64_t>(1, int64_t(maps.size()))}, DType::I32, Device::CUDA);
  cuda::memcpy_h2d(m.maps_dev.view().data, maps.data(), maps.size() * sizeof(int));
  const int* maps_ptr = m.maps_dev.view().i32();

  // Steps in program order, each with its phase (step_phases()).
  struct Pending {
    ck::MlpStep step;
    int level;
  };
  std::vector<Pending> pending;
  const std::vector<int> levels = step_phases(lifter);
  auto push = [&](const ck::MlpStep& step) {
    pending.push_back({step, levels[pending.size()]});
  };
  std::vector<std::vector<std::pair<int, int>>> concat_dest(slots.size());  // (consumer, offset)
  for (size_t k = 0; k < slots.size(); ++k) {
    int off = D;
    for (int src : slots[k].sources) {
      concat_dest[size_t(src)].push_back({int(k), concat_off[k] + off});
      off += int(slots[size_t(src)].joints.size()) * 3;
    }
  }
  for (size_t k = 0; k < slots.size(); ++k) {
    Regressor& r = *slots[k].net;
    auto linear_step = [&](Linear& l, int in_off, int in_dim, const BatchNorm* bn, bool relu,
                           int res_off) {
      ck::MlpStep s;
      s.w = l.weight.f32();
      s.b = l.bias.empty() ? nullptr : l.bias.f32();
      if (bn) s.bn = bn_of(*bn);
      s.relu = relu ? 1 : 0;
      s.in_off = in_off;
      s.in_dim = in_dim;
      s.out_dim = l.out_features;
      s.res_off = res_off;
      DOFPOSE_CHECK(l.in_features == in_dim, "PersistentLifter: ", slots[k].name,
                    " layer expects ", l.in_features, " inputs, the program gives ", in_dim);
      return s;
    };
    const int width = r.input_layer.out_features;
    int h = take(width);
    ck::MlpStep s = linear_step(r.input_layer, concat_off[k] < 0 ? -1 : concat_off[k],
                                r.input_layer.in_features, &r.input_bn, true, -1);
    s.ndest = 1;
    s.dest[0].offset = h;
    push(s);
    for (auto& blk : r.blocks) {
      const int t = take(width), h2 = take(width);
      s = linear_step(blk->linear1, h, width, &blk->bn1, true, -1);
      s.ndest = 1;
      s.dest[0].offset = t;
      push(s);
      s = linear_step(blk->linear2, t, width, &blk->bn2, true, h);
      s.ndest = 1;
      s.dest[0].offset = h2;
      push(s);
      h = h2;
    }
    s = linear_step(r.output_layer, h, width, nullptr, false, -1);
    ck::MlpDest pose;
    pose.buffer = 1 + slots[k].block;
    pose.map = maps_ptr + map_off[k];
    pose.mul = lifter.norm_output_std.f32();  // denormalised: v * std + mean
    pose.add = lifter.norm_output_mean.f32();
    s.dest[s.ndest++] = pose;
    for (const auto& cd : concat_dest[k]) {
      DOFPOSE_CHECK(s.ndest < 4, "PersistentLifter: ", slots[k].name, " feeds too many regressors");
      ck::MlpDest d;
      d.offset = cd.second;
      s.dest[s.ndest++] = d;
    }
    push(s);
  }
  DOFPOSE_CHECK(pending.size() == levels.size(), "PersistentLifter: ", pending.size(),
                " steps built, ", levels.size(), " scheduled");

  // Phases: steps sorted by level (stable: slot order inside a phase).
  std::stable_sort(pending.begin(), pending.end(),
                   [](const Pending& a, const Pending& b) { return a.level < b.level; });
  std::vector<ck::MlpStep> steps;
  std::vector<int> phase_begin;
  for (size_t i = 0; i < pending.size(); ++i) {
    if (i == 0 || pending[i].level != pending[i - 1].level) phase_begin.push_back(int(i));
    steps.push_back(pending[i].step);
  }
  phase_begin.push_back(int(steps.size()));
  m.n_steps = int(steps.size());
  for (size_t ph = 0; ph + 1 < phase_begin.size(); ++ph) {
    int rows = 0;
    for (int i = phase_begin[ph]; i < phase_begin[ph + 1]; ++i) rows += steps[size_t(i)].out_dim;
    m.prog.max_phase_rows = std::max(m.prog.max_phase_rows, rows);
  }

  m.ws = Tensor::zeros({std::max(ws_size, 4)}, DType::F32, Device::CUDA);
  m.steps_dev = Tensor::empty({int64_t(steps.size() * sizeof(ck::MlpStep))}, DType::U8, Device::CUDA);
  cuda::memcpy_h2d(m.steps_dev.view().data, steps.data(), steps.size() * sizeof(ck::MlpStep));
  m.phase_dev = Tensor::empty({int64_t(phase_begin.size())}, DType::I32, Device::CUDA);
  cuda::memcpy_h2d(m.phase_dev.view().data, phase_begin.data(), phase_begin.size() * sizeof(int));
  m.copies_dev = Tensor::empty({std::max<int64_t>(1, int64_t(copies.size()))}, DType::I32, Device::CUDA);
  if (!copies.empty())
    cuda::memcpy_h2d(m.copies_dev.view().data, copies.data(), copies.size() * sizeof(int));

  m.prog.steps = static_cast<const ck::MlpStep*>(m.steps_dev.view().data);
  m.prog.phase_begin = m.phase_dev.view().i32();
  m.prog.phases = int(phase_begin.size()) - 1;
  m.prog.ws = m.ws.f32();
  m.prog.input_dim = D;
  m.prog.input_copies = m.copies_dev.view().i32();
  m.prog.n_input_copies = int(copies.size());
  m.prog.output_dim = lifter.config().output_dim();
  m.prog.zero_prefix = 3;  // the pelvis
}

PersistentLifter::~PersistentLifter() = default;

void PersistentLifter::run(const TensorView& x, const std::vector<TensorView>& poses) {
  const char* op = "PersistentLifter::run";
  check_f32(op, "x", x, Device::CUDA);
  check_shape(op, "x", x, {1, impl_->input_dim});
  DOFPOSE_CHECK(int(poses.size()) == impl_->blocks, op, ": expected ", impl_->blocks,
                " pose outputs (one per block), got ", poses.size());
  ck::MlpProgram p = impl_->prog;
  p.input = x.f32();
  for (size_t b = 0; b < poses.size(); ++b) {
    check_f32(op, "pose", poses[b], Device::CUDA);
    DOFPOSE_CHECK(poses[b].numel() == p.output_dim, op, ": pose ", b, " has ", poses[b].numel(),
                  " elements, expected ", p.output_dim);
    p.outputs[b] = poses[b].f32();
  }
  ck::mlp_program_run(p, ops::cuda_stream());
}

int PersistentLifter::phases() const { return impl_->prog.phases; }
int PersistentLifter::steps() const { return impl_->n_steps; }
bool PersistentLifter::available() {
  static const bool device = cuda::device_count() > 0;  // asked once: it is on every batch-1 forward
  return device && ck::mlp_program_supported();
}

#else  // no CUDA backend in this build

struct PersistentLifter::Impl {};
PersistentLifter::PersistentLifter(Lifter&) {
  fail("PersistentLifter: this dofpose was built without the CUDA backend");
}
PersistentLifter::~PersistentLifter() = default;
void PersistentLifter::run(const TensorView&, const std::vector<TensorView>&) {}
int PersistentLifter::phases() const { return 0; }
int PersistentLifter::steps() const { return 0; }
bool PersistentLifter::available() { return false; }

#endif

}  // namespace dofpose::nn
