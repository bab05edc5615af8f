#include "dofpose/nn/model.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "dofpose/build_info.h"
#include "dofpose/context.h"
#include "dofpose/cuda_backend.h"
#include "dofpose/image.h"
#include "dofpose/lift.h"
#include "dofpose/weights.h"
#include "dofpose/ops.h"
#include "dofpose/nn/persistent_lifter.h"
#include "dofpose/npz.h"

namespace dofpose::nn {

namespace {

std::vector<int64_t> dims_of(const Shape& s) { return std::vector<int64_t>(s.dims, s.dims + s.ndim); }

// ---------------------------------------------------------------- hourglass

class HourglassModel : public Model {
 public:
  explicit HourglassModel(std::unique_ptr<HourglassNet> net)
      : net_(std::move(net)), softargmax_(net_->config().softargmax_beta) {
    net_->parameters();  // runs collect(""): every layer learns its traced name
  }

  void set_activation_dtype(DType t) override { net_->set_activation_dtype(t); }
  std::string kind() const override { return "hourglass"; }
  const HourglassConfig* hourglass_config() const override { return &net_->config(); }
  std::string summary() const override {
    const HourglassConfig& c = net_->config();
    return concat("hourglass: ", c.stacks, " stacks, ", c.num_feats, " features, depth ", c.depth,
                  ", ", c.num_joints, " joints, input ", c.input_size, "x", c.input_size,
                  c.attribute_head ? ", attribute head" : "", c.domain_head ? ", domain head" : "");
  }
  std::string expected_input() const override {
    const int s = net_->config().input_size;
    return concat("[N,3,", s, ",", s, "]");
  }

  void check_inputs(const ModelInputs& in) const override {
    const TensorView& x = in.input;
    const int64_t s = net_->config().input_size;
    DOFPOSE_CHECK(x.ndim() == 4 && x.dim(0) >= 1 && x.dim(1) == 3 && x.dim(2) == s && x.dim(3) == s,
                  "forward: input has shape ", x.shape.str(), ", this hourglass model expects ",
                  expected_input(), " (an NCHW float32 image batch, input_size ", s, ")");
    DOFPOSE_CHECK(in.attributes.empty(),
                  "forward: --attributes is for lifters; this is a hourglass model");
  }

  ModelInputs stage_inputs(Arena& arena, const ModelInputs& in) override {
    ModelInputs staged = in;
    if (in.input.device != arena.device()) {  // a host image for a model on a device: upload it
      staged.input = arena.alloc(in.input.shape);
      copy(in.input, staged.input);
    }
    return staged;
  }

  std::vector<NamedView> forward_staged(Arena& arena, const ModelInputs& staged) override {
    ScopedNoGrad no_grad;  // inference only: fused layers
    HourglassOutputs o = net_->forward(arena, staged.input, Mode::Infer);
    std::vector<NamedView> out;
    for (size_t s = 0; s < o.heatmaps.size(); ++s)
      out.push_back({concat("heatmaps_stack", s), o.heatmaps[s]});
    TraceSpan span;
    TensorView coords = softargmax_.forward(arena, o.heatmaps.back());
    if (span.on()) span.done("softargmax", "SoftArgmax", coords);
    out.push_back({"coords", coords});
    if (!o.attributes.empty()) out.push_back({"attributes", o.attributes});
    if (!o.domain.empty()) out.push_back({"domain", o.domain});
    return out;
  }

  Module& module() override { return *net_; }

 private:
  std::unique_ptr<HourglassNet> net_;
  SoftArgmax softargmax_;
};

// ---------------------------------------------------------------- lifter

class LifterModel : public Model {
 public:
  explicit LifterModel(std::unique_ptr<Lifter> net) : net_(std::move(net)) {
    // Runs collect(""): traced names. The first parameter's Tensor outlives
    // to_device (its storage moves): the persistent program watches it.
    first_param_ = net_->parameters().front().value;
  }

  std::string kind() const override { return "lifter"; }
  std::string summary() const override {
    const LifterConfig& c = net_->config();
    return concat("lifter: ", c.kind, ", ", c.num_joints_in, " input joints",
                  c.use_attributes ? " + attributes" : "", ", width ", c.width, ", ", c.blocks,
                  " residual blocks per regressor, ", net_->num_blocks(), " block(s)");
  }
  std::string expected_input() const override {
    const int j = net_->config().num_joints_in;
    return concat("[N,", j, ",2] or [N,", 2 * j, "]");
  }
  bool uses_attributes() const override { return net_->config().use_attributes; }

  void check_inputs(const ModelInputs& in) const override {
    const TensorView& x = in.input;
    const int64_t j = net_->config().num_joints_in;
    const bool ok = (x.ndim() == 3 && x.dim(1) == j && x.dim(2) == 2) ||
                    (x.ndim() == 2 && x.dim(1) == 2 * j);
    DOFPOSE_CHECK(ok && x.dim(0) >= 1, "forward: input has shape ", x.shape.str(),
                  ", this lifter expects 2D joints ", expected_input(), " (", j,
                  " H36M joints", j == 16 ? " without the neck/nose, joint 9" : "",
                  ", x y each, in the units of its normalisation statistics)");
    const int64_t n = x.dim(0);
    if (uses_attributes()) {
      DOFPOSE_CHECK(!in.attributes.empty(), "forward: this lifter uses attributes: pass "
                    "--attributes A.npy ([N,9] int labels or [N,9,3] float32 probabilities)");
      check_shape("forward", "attributes", in.attributes, {n, LifterConfig::kAttributeInputs});
    } else {
      DOFPOSE_CHECK(in.attributes.empty(),
                    "forward: this lifter does not use attributes (config use_attributes false); "
                    "drop --attributes");
    }
  }

  ModelInputs stage_inputs(Arena& arena, const ModelInputs& in) override {
    TraceSpan norm_span;
    ModelInputs staged;
    staged.input = net_->prepare_input(arena, in.input, in.attributes);
    if (norm_span.on()) norm_span.done("norm.input", "Normalise", staged.input);
    return staged;
  }

  std::vector<NamedView> forward_staged(Arena& arena, const ModelInputs& staged) override {
    ScopedNoGrad no_grad;  // inference only: fused layers, the persistent batch-1 kernel
    const TensorView& x = staged.input;
    if (x.device == Device::CUDA && x.dim(0) == 1 && fused_inference(Mode::Infer) &&
        PersistentLifter::available())
      return forward_persistent(arena, x);
    LifterOutput o = net_->forward(arena, x, Mode::Infer);
    const int64_t n = x.dim(0);
    std::vector<NamedView> out;
    TensorView final_pose;
    for (size_t b = 0; b < o.poses.size(); ++b) {
      TraceSpan span;
      TensorView pose = net_->denormalise_output(arena, o.poses[b]);
      if (span.on()) span.done(concat("norm.output.block", b + 1), "Denormalise", pose);
      pose = pose.reshape({n, LifterConfig::kOutputJoints, 3});
      if (o.poses.size() > 1) out.push_back({concat("pose3d_block", b + 1), pose});
      final_pose = pose;
    }
    out.push_back({"pose3d", final_pose});
    return out;
  }

  Module& module() override { return *net_; }

 private:
  // Batch 1 on CUDA: the whole network and the denormalisation in one launch.
  std::vector<NamedView> forward_persistent(Arena& arena, const TensorView& x) {
    const void* first_weight = first_param_->view().data;
    if (!persistent_ || persistent_weights_ != first_weight) {  // (re)built after to_device
      persistent_ = std::make_unique<PersistentLifter>(*net_);
      persistent_weights_ = first_weight;
    }
    TraceSpan span;
    std::vector<TensorView> poses;
    for (int b = 0; b < net_->num_blocks(); ++b)
      poses.push_back(arena.alloc({1, LifterConfig::kOutputJoints, 3}));
    persistent_->run(x, poses);
    if (span.on()) span.done("lifter.persistent", "PersistentLifter", poses.back());
    std::vector<NamedView> out;
    if (poses.size() > 1)
      for (size_t b = 0; b < poses.size(); ++b) out.push_back({concat("pose3d_block", b + 1), poses[b]});
    out.push_back({"pose3d", poses.back()});
    return out;
  }

  std::unique_ptr<Lifter> net_;
  std::unique_ptr<PersistentLifter> persistent_;
  const Tensor* first_param_ = nullptr;
  const void* persistent_weights_ = nullptr;
};

std::vector<uint8_t> read_file(const std::string& path, const char* what) {
  std::error_code ec;
  DOFPOSE_CHECK(std::filesystem::exists(path, ec), "forward: ", what, " file '", path,
                "' does not exist");
  DOFPOSE_CHECK(std::filesystem::is_regular_file(path, ec), "forward: ", what, " '", path,
                "' is not a regular file");
  std::ifstream f(path, std::ios::binary);
  DOFPOSE_CHECK(f.good(), "forward: cannot open ", what, " file '", path, "' for reading");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  DOFPOSE_CHECK(!f.bad(), "forward: error reading ", what, " file '", path, "'");
  return bytes;
}

void check_finite(const float* p, int64_t n, const std::string& path, const char* what) {
  for (int64_t i = 0; i < n; ++i)
    DOFPOSE_CHECK(std::isfinite(p[i]), "forward: ", what, " '", path, "' has a non-finite value (",
                  p[i], ") at flat index ", i, "; inputs must be finite");
}

}  // namespace

std::unique_ptr<Model> make_model(std::unique_ptr<HourglassNet> net) {
  return std::make_unique<HourglassModel>(std::move(net));
}

std::unique_ptr<Model> make_model(std::unique_ptr<Lifter> net) {
  return std::make_unique<LifterModel>(std::move(net));
}

std::unique_ptr<Model> load_model(const std::string& path) {
  std::error_code ec;
  DOFPOSE_CHECK(std::filesystem::exists(path, ec), "forward: model file '", path,
                "' does not exist");
  WeightsFile file(path);
  const std::string kind = file.metadata_or("kind", "");
  DOFPOSE_CHECK(!kind.empty(), "model file ", path,
                ": metadata has no 'kind' (expected \"hourglass\" or \"lifter\")");
  if (kind == "hourglass") return make_model(HourglassNet::load(path));
  if (kind == "lifter") return make_model(load_lifter(file));
  fail("model file ", path, ": unknown model kind '", kind,
       "' (dofpose runs \"hourglass\" and \"lifter\" models)");
}

Tensor read_npy_f32(const std::string& path, const char* what) {
  const std::vector<uint8_t> bytes = read_file(path, what);
  NpyArray a = parse_npy(bytes.data(), bytes.size(), path, what);
  DOFPOSE_CHECK(a.dtype == NpyDType::F32, "forward: ", what, " '", path, "' has dtype '",
                npy_descr(a.dtype), "', expected float32 ('<f4'); convert it with "
                "x.astype(np.float32)");
  DOFPOSE_CHECK(!a.shape.empty() && a.shape.size() <= size_t(kMaxDims), "forward: ", what, " '",
                path, "' has shape ", a.shape_str(), ", expected 1 to ", kMaxDims, " dimensions");
  Shape s = Shape::from(a.shape.data(), int(a.shape.size()));
  const std::vector<float> values = a.to_f32();
  check_finite(values.data(), int64_t(values.size()), path, what);
  return Tensor::from_floats(s, values.data());
}

Tensor read_attributes_npy(const std::string& path) {
  const char* what = "attributes";
  const std::vector<uint8_t> bytes = read_file(path, what);
  NpyArray a = parse_npy(bytes.data(), bytes.size(), path, what);
  const int64_t n = a.shape.empty() ? 0 : a.shape[0];
  if (a.dtype == NpyDType::I32 || a.dtype == NpyDType::I64 || a.dtype == NpyDType::U8) {
    DOFPOSE_CHECK(a.shape.size() == 2 && a.shape[1] == 9, "forward: attributes '", path,
                  "' hold integer labels of shape ", a.shape_str(),
                  ", expected (N, 9) (0 front, 1 back, 2 on-plane)");
    const std::vector<int32_t> labels = a.to_i32();
    Tensor t = Tensor::empty({n, LifterConfig::kAttributeInputs});
    try {
      encode_attribute_labels(labels.data(), n, t.f32());
    } catch (const Error& e) {
      fail("forward: attributes '", path, "': ", e.what());
    }
    return t;
  }
  DOFPOSE_CHECK(a.dtype == NpyDType::F32, "forward: attributes '", path, "' have dtype '",
                npy_descr(a.dtype), "', expected int32/int64 labels or float32 probabilities");
  const bool ok = (a.shape.size() == 3 && a.shape[1] == 9 && a.shape[2] == 3) ||
                  (a.shape.size() == 2 && a.shape[1] == LifterConfig::kAttributeInputs);
  DOFPOSE_CHECK(ok, "forward: attribute probabilities '", path, "' have shape ", a.shape_str(),
                ", expected (N, 9, 3) or (N, 27)");
  const std::vector<float> values = a.to_f32();
  check_finite(values.data(), int64_t(values.size()), path, what);
  return Tensor::from_floats({n, LifterConfig::kAttributeInputs}, values.data());
}

// ---------------------------------------------------------------- run_forward

DType parse_activation_dtype(const std::string& name, const char* flag) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  fail(flag, " must be f32, f16 or bf16, got '", name, "'");
}

ForwardResult run_forward(const ForwardOptions& opt) {
  DOFPOSE_CHECK(!opt.model.empty(), "forward: no model given (--model FILE.safetensors)");
  DOFPOSE_CHECK(!opt.input.empty() || !opt.image.empty(),
                "forward: no input given (--input X.npy or --image PHOTO)");
  DOFPOSE_CHECK(opt.input.empty() || opt.image.empty(),
                "forward: give --input X.npy or --image PHOTO, not both");
  DOFPOSE_CHECK(!opt.image.empty() || (opt.keypoints.empty() && opt.overlay.empty()),
                "forward: --keypoints and --overlay need --image (joints in a photo's pixels)");
  DOFPOSE_CHECK(opt.image.empty() || opt.input_mean.empty() || opt.input_mean.size() == 3,
                "forward: --input-mean needs 3 values (R,G,B), got ", opt.input_mean.size());
  DOFPOSE_CHECK(!opt.image.empty() || opt.input_mean.empty(), "forward: --input-mean applies to --image only");
  DOFPOSE_CHECK(opt.repeat >= 1, "forward: --repeat must be >= 1, got ", opt.repeat);
  DOFPOSE_CHECK(opt.threads >= 0 && opt.threads <= kMaxCpuThreads,
                "forward: --threads must be in [1, ", kMaxCpuThreads, "], got ", opt.threads);
  if (!opt.dump_dir.empty()) {
    // An earlier dump's files would stay next to this one's and be paired by
    // compare_dumps.py; deleting them could delete the user's files: refuse.
    namespace fs = std::filesystem;
    std::error_code ec;
    DOFPOSE_CHECK(!fs::exists(opt.dump_dir, ec) || fs::is_directory(opt.dump_dir, ec),
                  "forward: --dump '", opt.dump_dir, "' exists and is not a folder");
    DOFPOSE_CHECK(!fs::is_directory(opt.dump_dir, ec) || fs::is_empty(opt.dump_dir, ec),
                  "forward: --dump folder '", opt.dump_dir, "' is not empty (an earlier dump's "
                  "files would be mixed with this one's); give a new or empty folder");
  }
  for (const std::string* out : {&opt.output, &opt.keypoints, &opt.overlay}) {
    if (out->empty()) continue;
    const std::filesystem::path parent = std::filesystem::path(*out).parent_path();
    std::error_code ec;
    DOFPOSE_CHECK(parent.empty() || std::filesystem::is_directory(parent, ec),
                  "forward: the folder of the output '", *out, "' does not exist");
    DOFPOSE_CHECK(!std::filesystem::is_directory(*out, ec), "forward: the output '", *out,
                  "' is a folder, expected a file name");
  }
  if (opt.threads > 0) set_cpu_threads(opt.threads);
  DOFPOSE_CHECK(opt.device == "cpu" || opt.device == "cuda",
                "forward: --device must be cpu or cuda, got '", opt.device, "'");
  const Device device = opt.device == "cuda" ? Device::CUDA : Device::CPU;
  if (device == Device::CUDA) {
    DOFPOSE_CHECK(cuda::built(), "forward: --device cuda, but this dofpose was built without "
                  "the CUDA backend (configure with -DDOFPOSE_CUDA=ON)");
    DOFPOSE_CHECK(cuda::device_count() > 0, "forward: --device cuda, but no CUDA device was found");
  }
  std::unique_ptr<Context> ctx;  // CUDA: the stream every op is queued on
  if (device == Device::CUDA) {
    ctx = std::make_unique<Context>(Device::CUDA);
    ctx->make_current();
  }
  struct StreamReset {  // ops on this thread go back to the default stream afterwards
    bool on;
    ~StreamReset() {
      if (on) ops::set_cuda_stream(nullptr);
    }
  } stream_reset{device == Device::CUDA};

  const DType activations = parse_activation_dtype(opt.activations, "forward: --activations");
  DOFPOSE_CHECK(activations == DType::F32 || opt.dump_dir.empty(),
                "forward: --dump writes the layers of the unfused float32 network; "
                "--activations ", opt.activations, " applies to fused inference only (drop one)");
  DOFPOSE_CHECK(activations == DType::F32 || !opt.unfused,
                "forward: --unfused runs the separate float32 layers; --activations ",
                opt.activations, " applies to fused inference only (drop one)");
  // Every forward below (outputs, dump, profile) runs the separate layers.
  std::unique_ptr<ScopedUnfused> unfused;
  if (opt.unfused) unfused = std::make_unique<ScopedUnfused>();
  DOFPOSE_CHECK(opt.conv == "winograd" || opt.conv == "direct", "forward: --conv: unknown value '",
                opt.conv, "', expected winograd or direct");
  const ops::ScopedCpuConvAlgorithm conv_algorithm(opt.conv == "direct"
                                                       ? ops::CpuConvAlgorithm::Direct
                                                       : ops::CpuConvAlgorithm::Winograd);
  std::unique_ptr<Model> model = load_model(opt.model);
  model->set_activation_dtype(activations);
  model->module().to_device(device);
  Tensor input;
  ImageRGB8 photo;
  LetterboxTransform box;
  std::vector<float> mean = opt.input_mean;
  if (!opt.image.empty()) {
    const HourglassConfig* hc = model->hourglass_config();
    DOFPOSE_CHECK(hc != nullptr, "forward: --image is for hourglass models; ", opt.model, " is a ",
                  model->kind(), " model (lifters take 2D joints: --input X.npy, or dofpose lift)");
    DOFPOSE_CHECK(opt.keypoints.empty() && opt.overlay.empty() ? true : hc->num_joints == 16,
                  "forward: --keypoints / --overlay write MPII-16 joints; this hourglass predicts ",
                  hc->num_joints, " joints, expected 16");
    if (mean.empty()) {
      WeightsFile wf(opt.model);
      if (wf.has("norm.input.mean")) {
        Tensor m = wf.load_f32("norm.input.mean", Shape{3});
        mean.assign(m.f32(), m.f32() + 3);
      }
    }
    photo = load_image_rgb(opt.image);
    Letterboxed lb = letterbox(photo, hc->input_size, mean);
    input = std::move(lb.tensor);
    box = lb.transform;
  } else {
    input = read_npy_f32(opt.input, "input");
  }
  Tensor attributes;
  if (!opt.attributes.empty()) {
    DOFPOSE_CHECK(model->kind() == "lifter",
                  "forward: --attributes is for lifters; this is a ", model->kind(), " model");
    DOFPOSE_CHECK(model->uses_attributes(), "forward: this lifter does not use attributes "
                  "(config use_attributes false); drop --attributes");
    attributes = read_attributes_npy(opt.attributes);
    // Named here, with the files and the input's shape as given (check_inputs
    // sees the attributes encoded to [N,27]).
    DOFPOSE_CHECK(input.shape().ndim >= 1 && attributes.shape()[0] == input.shape()[0],
                  "forward: the attributes '", opt.attributes, "' hold ", attributes.shape()[0],
                  " pose(s) (first dimension), the input '", opt.input, "' of shape ",
                  input.shape().str(), " holds ", input.shape().ndim >= 1 ? input.shape()[0] : 0,
                  "; give one row of attributes per pose");
  }
  const ModelInputs in{input.view(), attributes.empty() ? TensorView() : attributes.view()};
  model->check_inputs(in);

  ForwardResult r;
  r.model_summary = model->summary();
  r.input_shape = input.shape();
  r.threads = cpu_threads();
  r.device = device == Device::CUDA ? cuda::device_name(0) : "cpu";
  if (device == Device::CUDA) r.flop_peak_gflops = device_peak(cuda::device_traits(0)).fp32_gflops;
  if (device == Device::CPU && model->hourglass_config() && !opt.unfused)
    r.cpu_conv = ops::cpu_conv_algorithm_name(ops::cpu_conv_algorithm());
  Arena arena(device);

  // 1. The outputs (this pass is also the warm-up of the profile: it sizes the arena).
  {
    std::vector<NamedView> outs = model->forward(arena, in);
    NpzWriter w;
    for (const NamedView& o : outs) {
      r.output_names.push_back(o.name);
      r.output_shapes.push_back(o.value.shape);
      Tensor host = Tensor::empty(o.value.shape);
      copy(o.value, host);
      w.add_f32(o.name, dims_of(o.value.shape), host.f32());
    }
    std::string keypoints_json, overlay_png;
    if (!opt.image.empty()) {
      r.image_width = photo.width;
      r.image_height = photo.height;
      r.input_mean = mean;
      const NamedView* coords = nullptr;
      const NamedView* last_heat = nullptr;
      for (const NamedView& o : outs) {
        if (o.name == "coords") coords = &o;
        if (o.name.rfind("heatmaps_stack", 0) == 0) last_heat = &o;
      }
      DOFPOSE_CHECK(coords && last_heat, "forward: the hourglass gave no coords / heatmaps");
      Tensor c = Tensor::empty(coords->value.shape);
      copy(coords->value, c);
      const int joints = int(coords->value.shape[1]);
      r.image_keypoints = heatmap_coords_to_image(c.f32(), joints, int(last_heat->value.shape[3]), box);
      if (!opt.keypoints.empty())  // refuses joints that are not finite
        keypoints_json = mpii16_lift_input_json(r.image_keypoints, photo.width, photo.height);
      if (!opt.overlay.empty()) {
        const std::vector<unsigned char> png = mpii16_overlay_png(photo, r.image_keypoints);
        overlay_png.assign(png.begin(), png.end());
      }
    }
    // Written after every check above: a failure leaves none of the outputs behind.
    if (!opt.output.empty()) w.write(opt.output);
    if (!keypoints_json.empty()) write_file_atomically(opt.keypoints, keypoints_json);
    if (!overlay_png.empty()) write_file_atomically(opt.overlay, overlay_png);
  }

  // 2. Every layer's output.
  if (!opt.dump_dir.empty()) {
    arena.reset();
    DumpTracer dump(opt.dump_dir);
    {
      ScopedTracer on(&dump);
      model->forward(arena, in);
    }
    r.dumped = dump.entries();
  }

  // 3. Per-layer times, averaged over the runs.
  if (opt.profile) {
    ProfileTracer prof(device == Device::CUDA);
    // One untimed pass first: reset() after the sizing pass above merged the
    // arena into a new block, whose pages the first timed run would otherwise
    // fault in (the kernel zeroing ~100 MB for the default hourglass).
    arena.reset();
    model->forward(arena, in);
    double wall = 0;
    for (int k = 0; k < opt.repeat; ++k) {
      arena.reset();
      ScopedTracer on(&prof);
      if (ctx) ctx->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      model->forward(arena, in);
      if (ctx) ctx->synchronize();
      wall += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      prof.end_run();
    }
    r.repeat = opt.repeat;
    r.wall_ms = wall / opt.repeat;
    for (const ProfileTracer::Layer& l : prof.layers()) {
      ProfileRow row;
      row.name = l.name;
      row.type = l.type;
      row.shape = l.shape;
      row.dtype = l.dtype;
      row.ms = l.total_ms / opt.repeat;
      row.flops = l.flops;
      row.composite = l.composite;
      row.gflops_per_s = row.ms > 0 ? double(l.flops) / (row.ms * 1e6) : 0.0;
      if (r.flop_peak_gflops > 0) row.peak_percent = 100.0 * row.gflops_per_s / r.flop_peak_gflops;
      if (!row.composite) r.layers_ms += row.ms;
      r.profile.push_back(row);
    }
    for (ProfileRow& row : r.profile)
      if (!row.composite && r.layers_ms > 0) row.share = 100.0 * row.ms / r.layers_ms;
  }
  return r;
}

std::string format_profile(const ForwardResult& r) {
  std::string out;
  char line[512];
  const std::string conv = r.cpu_conv.empty() ? "" : "; 3x3 convolutions: " + r.cpu_conv;
  std::snprintf(line, sizeof line,
                "%s\ninput %s on %s, %d CPU thread(s)%s; mean of %d run(s) after 2 warm-ups\n\n",
                r.model_summary.c_str(), r.input_shape.str().c_str(),
                r.device.empty() ? "cpu" : r.device.c_str(), r.threads, conv.c_str(), r.repeat);
  out += line;
  // The %peak column only where the device's peak is known (CUDA).
  const bool peak = r.flop_peak_gflops > 0;
  auto peak_cell = [&](int64_t flops, double gflops) {
    char c[32] = "";
    if (peak && flops > 0) std::snprintf(c, sizeof c, " %6.1f%%", 100.0 * gflops / r.flop_peak_gflops);
    else if (peak) std::snprintf(c, sizeof c, " %7s", "-");
    return std::string(c);
  };
  std::snprintf(line, sizeof line, "%5s  %-32s %-22s %-18s %10s %7s %9s%s\n", "#", "layer", "type",
                "output", "ms", "share", "GFLOP/s", peak ? "   %peak" : "");
  out += line;
  int index = 0;
  int64_t total_flops = 0;
  for (const ProfileRow& row : r.profile) {
    if (row.composite) continue;
    char gf[32] = "-";
    if (row.flops > 0) std::snprintf(gf, sizeof gf, "%.1f", row.gflops_per_s);
    const std::string output = row.dtype == DType::F32
                                   ? row.shape.str()
                                   : std::string(dtype_name(row.dtype)) + row.shape.str();
    std::snprintf(line, sizeof line, "%5d  %-32s %-22s %-18s %10.3f %6.1f%% %9s%s\n", index++,
                  row.name.c_str(), row.type.c_str(), output.c_str(), row.ms, row.share,
                  gf, peak_cell(row.flops, row.gflops_per_s).c_str());
    out += line;
    total_flops += row.flops;
  }
  const double gflops = r.layers_ms > 0 ? double(total_flops) / (r.layers_ms * 1e6) : 0.0;
  char gflop_text[48];
  std::snprintf(gflop_text, sizeof gflop_text, "%.2f GFLOP", double(total_flops) * 1e-9);
  std::snprintf(line, sizeof line, "%5s  %-32s %-22s %-18s %10.3f %6.1f%% %9.1f%s\n", "",
                concat("total (", index, " layers)").c_str(), "",
                gflop_text, r.layers_ms,
                r.layers_ms > 0 ? 100.0 : 0.0, gflops, peak_cell(total_flops, gflops).c_str());
  out += line;
  if (peak) {
    std::snprintf(line, sizeof line, "(%%peak: of the device's FP32 peak, %.1f TFLOP/s)\n",
                  r.flop_peak_gflops * 1e-3);
    out += line;
  }
  std::snprintf(line, sizeof line,
                "\nwhole forward: %.3f ms (%.3f ms outside the traced layers, tracing overhead "
                "included)\n",
                r.wall_ms, r.wall_ms - r.layers_ms);
  out += line;
  return out;
}

std::string profile_json(const ForwardResult& r) {
  nlohmann::json layers = nlohmann::json::array();
  for (const ProfileRow& row : r.profile)
    layers.push_back({{"name", row.name},
                      {"type", row.type},
                      {"shape", dims_of(row.shape)},
                      {"dtype", dtype_name(row.dtype)},
                      {"ms", row.ms},
                      {"share_percent", row.share},
                      {"flops", row.flops},
                      {"gflops_per_s", row.gflops_per_s},
                      {"peak_percent", row.peak_percent},
                      {"composite", row.composite}});
  nlohmann::json j = {{"model", r.model_summary},
                      {"input_shape", dims_of(r.input_shape)},
                      {"threads", r.threads},
                      {"cpu_conv", r.cpu_conv},
                      {"repeat", r.repeat},
                      {"layers_ms", r.layers_ms},
                      {"wall_ms", r.wall_ms},
                      {"flop_peak_gflops", r.flop_peak_gflops},
                      {"layers", layers}};
  return j.dump(2);
}

}  // namespace dofpose::nn
