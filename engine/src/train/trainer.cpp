#include "dofpose/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dofpose/arena.h"
#include "dofpose/metrics.h"
#include "dofpose/nn/optimizer.h"
#include "dofpose/nn/serialize.h"
#include "dofpose/train/dataset.h"

namespace dofpose::train {

using json = nlohmann::json;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- config JSON

namespace {

// Reads one JSON object's fields into a struct, checking types and rejecting
// unknown keys; every message names the full field path.
class FieldReader {
 public:
  FieldReader(const json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {
    DOFPOSE_CHECK(j.is_object(), "train config: ", prefix_.empty() ? "the top level" : prefix_,
                  " must be a JSON object, got ", j.dump());
  }
  std::string field(const std::string& key) const {
    return prefix_.empty() ? key : prefix_ + "." + key;
  }
  const json* find(const std::string& key) {
    known_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  void read(const std::string& key, std::string& dst) {
    if (const json* v = find(key)) {
      check(v->is_string(), key, "a string", *v);
      dst = v->get<std::string>();
    }
  }
  void read(const std::string& key, bool& dst) {
    if (const json* v = find(key)) {
      check(v->is_boolean(), key, "true or false", *v);
      dst = v->get<bool>();
    }
  }
  void read(const std::string& key, float& dst) {
    if (const json* v = find(key)) {
      check(v->is_number(), key, "a number", *v);
      dst = v->get<float>();
    }
  }
  void read(const std::string& key, double& dst) {
    if (const json* v = find(key)) {
      check(v->is_number(), key, "a number", *v);
      dst = v->get<double>();
    }
  }
  void read(const std::string& key, int& dst) {
    if (const json* v = find(key)) {
      check(v->is_number_integer(), key, "an integer", *v);
      const int64_t x = v->get<int64_t>();
      check(x >= INT32_MIN && x <= INT32_MAX, key, "a 32-bit integer", *v);
      dst = int(x);
    }
  }
  void read(const std::string& key, int64_t& dst) {
    if (const json* v = find(key)) {
      check(v->is_number_integer(), key, "an integer", *v);
      dst = v->get<int64_t>();
    }
  }
  void read(const std::string& key, uint64_t& dst) {
    if (const json* v = find(key)) {
      check(v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0), key,
            "a non-negative integer", *v);
      dst = v->get<uint64_t>();
    }
  }
  // Throws for any key no read()/find() asked about.
  void finish() const {
    for (const auto& [key, v] : j_.items()) {
      if (known_.count(key)) continue;
      std::string list;
      for (const auto& k : known_) list += (list.empty() ? "" : ", ") + k;
      fail("train config: unknown key \"", field(key), "\" (known: ", list, ")");
    }
  }

 private:
  const json& j_;
  std::string prefix_;
  std::set<std::string> known_;
  void check(bool ok, const std::string& key, const char* what, const json& v) const {
    DOFPOSE_CHECK(ok, "train config: ", field(key), " must be ", what, ", got ", v.dump());
  }
};

// Float settings as their shortest decimal (0.001, not 0.0010000000474974513).
double json_float(float f) { return float_as_shortest_double(f); }

json schedule_json(const ScheduleConfig& s) {
  return {{"type", s.type},
          {"gamma", json_float(s.gamma)},
          {"step_size", s.step_size},
          {"rate", json_float(s.rate)},
          {"decay_steps", s.decay_steps},
          {"staircase", s.staircase}};
}

}  // namespace

TrainConfig TrainConfig::from_json_string(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("train config: not valid JSON: ", e.what());
  }
  TrainConfig c;
  FieldReader top(j, "");
  if (const json* m = top.find("model")) {
    DOFPOSE_CHECK(m->is_object(), "train config: model must be a JSON object (a LifterConfig), got ",
                  m->dump());
    try {
      c.model = nn::LifterConfig::from_json_string(m->dump());
    } catch (const Error& e) {
      fail("train config: model: ", e.what());
    }
  }
  if (const json* d = top.find("data")) {
    FieldReader r(*d, "data");
    r.read("train", c.data.train);
    r.read("val", c.data.val);
    r.read("input", c.data.input);
    r.read("attributes", c.data.attributes);
    r.read("flip", c.data.flip);
    r.read("flip_center_x", c.data.flip_center_x);
    r.read("max_train_samples", c.data.max_train_samples);
    r.read("max_val_samples", c.data.max_val_samples);
    r.read("subsample", c.data.subsample);
    if (const json* v = r.find("virtual_cameras")) {
      FieldReader vr(*v, "data.virtual_cameras");
      vr.read("probability", c.data.virtual_cameras.probability);
      vr.read("max_yaw_deg", c.data.virtual_cameras.max_yaw_deg);
      vr.finish();
    }
    r.finish();
  }
  if (const json* o = top.find("optimizer")) {
    FieldReader r(*o, "optimizer");
    OptimizerConfig& oc = c.optimizer;
    r.read("type", oc.type);
    r.read("lr", oc.lr);
    r.read("weight_decay", oc.weight_decay);
    r.read("clip_norm", oc.clip_norm);
    r.read("beta1", oc.beta1);
    r.read("beta2", oc.beta2);
    r.read("alpha", oc.alpha);
    r.read("momentum", oc.momentum);
    r.read("eps", oc.eps);
    if (const json* s = r.find("schedule")) {
      FieldReader sr(*s, "optimizer.schedule");
      sr.read("type", oc.schedule.type);
      sr.read("gamma", oc.schedule.gamma);
      sr.read("step_size", oc.schedule.step_size);
      sr.read("rate", oc.schedule.rate);
      sr.read("decay_steps", oc.schedule.decay_steps);
      sr.read("staircase", oc.schedule.staircase);
      sr.finish();
    }
    r.finish();
  }
  top.read("epochs", c.epochs);
  top.read("batch_size", c.batch_size);
  top.read("val_batch_size", c.val_batch_size);
  top.read("seed", c.seed);
  top.read("checkpoint_minutes", c.checkpoint_minutes);
  top.read("out_dir", c.out_dir);
  top.finish();
  c.validate();
  return c;
}

TrainConfig TrainConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  DOFPOSE_CHECK(in.good(), "train config: cannot open ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return from_json_string(ss.str());
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
}

std::string TrainConfig::to_json_string() const {
  const OptimizerConfig& o = optimizer;
  json j = {
      {"model", json::parse(model.to_json_string())},
      {"data",
       {{"train", data.train},
        {"val", data.val},
        {"input", data.input},
        {"attributes", data.attributes},
        {"flip", data.flip},
        {"flip_center_x", json_float(data.flip_center_x)},
        {"max_train_samples", data.max_train_samples},
        {"max_val_samples", data.max_val_samples},
        {"subsample", data.subsample},
        {"virtual_cameras",
         {{"probability", data.virtual_cameras.probability},
          {"max_yaw_deg", data.virtual_cameras.max_yaw_deg}}}}},
      {"optimizer",
       {{"type", o.type},
        {"lr", json_float(o.lr)},
        {"weight_decay", json_float(o.weight_decay)},
        {"clip_norm", json_float(o.clip_norm)},
        {"beta1", json_float(o.beta1)},
        {"beta2", json_float(o.beta2)},
        {"alpha", json_float(o.alpha)},
        {"momentum", json_float(o.momentum)},
        {"eps", json_float(o.eps)},
        {"schedule", schedule_json(o.schedule)}}},
      {"epochs", epochs},
      {"batch_size", batch_size},
      {"val_batch_size", val_batch_size},
      {"seed", seed},
      {"checkpoint_minutes", checkpoint_minutes},
      {"out_dir", out_dir}};
  return j.dump(2);
}

void TrainConfig::validate() const {
  const char* p = "train config: ";
  model.validate();
  DOFPOSE_CHECK(!data.train.empty(), p, "data.train (the training dataset file) is required");
  DOFPOSE_CHECK(data.input == "sh" || data.input == "gt", p,
                "data.input must be \"sh\" (detections) or \"gt\" (projected ground truth), got \"",
                data.input, "\"");
  const AttributeSource a = AttributeSource::parse(data.attributes, "train config: data.attributes");
  DOFPOSE_CHECK(a.used() == model.use_attributes, p, "data.attributes is \"", data.attributes,
                "\" but model.use_attributes is ", model.use_attributes ? "true" : "false",
                " (attribute inputs need both, or neither)");
  DOFPOSE_CHECK(std::isfinite(data.flip_center_x), p, "data.flip_center_x must be finite");
  DOFPOSE_CHECK(data.max_train_samples >= 0, p, "data.max_train_samples must be >= 0 (0 = all), got ",
                data.max_train_samples);
  DOFPOSE_CHECK(data.max_val_samples >= 0, p, "data.max_val_samples must be >= 0 (0 = all), got ",
                data.max_val_samples);
  DOFPOSE_CHECK(data.subsample >= 1, p, "data.subsample must be >= 1, got ", data.subsample);
  const VirtualCameraConfig& vc = data.virtual_cameras;
  DOFPOSE_CHECK(vc.probability >= 0.0 && vc.probability <= 1.0, p,
                "data.virtual_cameras.probability must be in [0, 1] (0 = off), got ", vc.probability);
  DOFPOSE_CHECK(vc.max_yaw_deg >= 0.0 && vc.max_yaw_deg <= 180.0, p,
                "data.virtual_cameras.max_yaw_deg must be in [0, 180], got ", vc.max_yaw_deg);
  DOFPOSE_CHECK(!vc.used() || data.input == "gt", p,
                "data.virtual_cameras needs data.input \"gt\" (detections cannot be re-synthesised "
                "for a virtual camera), got data.input \"", data.input,
                "\"; set data.virtual_cameras.probability to 0 or use input \"gt\"");
  const OptimizerConfig& o = optimizer;
  DOFPOSE_CHECK(o.type == "adam" || o.type == "rmsprop", p,
                "optimizer.type must be \"adam\" or \"rmsprop\", got \"", o.type, "\"");
  DOFPOSE_CHECK(o.lr > 0.f && std::isfinite(o.lr), p, "optimizer.lr must be > 0, got ", o.lr);
  DOFPOSE_CHECK(o.weight_decay >= 0.f, p, "optimizer.weight_decay must be >= 0, got ", o.weight_decay);
  DOFPOSE_CHECK(o.clip_norm >= 0.f, p, "optimizer.clip_norm must be >= 0 (0 = off), got ", o.clip_norm);
  DOFPOSE_CHECK(o.beta1 >= 0.f && o.beta1 < 1.f, p, "optimizer.beta1 must be in [0, 1), got ", o.beta1);
  DOFPOSE_CHECK(o.beta2 >= 0.f && o.beta2 < 1.f, p, "optimizer.beta2 must be in [0, 1), got ", o.beta2);
  DOFPOSE_CHECK(o.alpha >= 0.f && o.alpha < 1.f, p, "optimizer.alpha must be in [0, 1), got ", o.alpha);
  DOFPOSE_CHECK(o.momentum >= 0.f, p, "optimizer.momentum must be >= 0, got ", o.momentum);
  DOFPOSE_CHECK(o.eps > 0.f, p, "optimizer.eps must be > 0, got ", o.eps);
  const ScheduleConfig& s = o.schedule;
  DOFPOSE_CHECK(s.type == "none" || s.type == "step" || s.type == "exponential", p,
                "optimizer.schedule.type must be \"none\", \"step\" or \"exponential\", got \"",
                s.type, "\"");
  DOFPOSE_CHECK(s.gamma > 0.f, p, "optimizer.schedule.gamma must be > 0, got ", s.gamma);
  DOFPOSE_CHECK(s.step_size >= 1, p, "optimizer.schedule.step_size must be >= 1, got ", s.step_size);
  DOFPOSE_CHECK(s.rate > 0.f, p, "optimizer.schedule.rate must be > 0, got ", s.rate);
  DOFPOSE_CHECK(s.decay_steps >= 1, p, "optimizer.schedule.decay_steps must be >= 1, got ",
                s.decay_steps);
  DOFPOSE_CHECK(epochs >= 1, p, "epochs must be >= 1, got ", epochs);
  DOFPOSE_CHECK(batch_size >= 2, p, "batch_size must be >= 2 (batch normalisation), got ", batch_size);
  DOFPOSE_CHECK(val_batch_size >= 1, p, "val_batch_size must be >= 1, got ", val_batch_size);
  DOFPOSE_CHECK(checkpoint_minutes >= 0.0, p, "checkpoint_minutes must be >= 0 (0 = per epoch only), got ",
                checkpoint_minutes);
  DOFPOSE_CHECK(!out_dir.empty(), p, "out_dir must not be empty");
}

float TrainConfig::learning_rate(int64_t step) const {
  const OptimizerConfig& o = optimizer;
  if (o.schedule.type == "step") return nn::StepDecay{o.lr, o.schedule.gamma, o.schedule.step_size}.lr(step);
  if (o.schedule.type == "exponential")
    return nn::ExponentialDecay{o.lr, o.schedule.rate, o.schedule.decay_steps, o.schedule.staircase}
        .lr(step);
  return o.lr;
}

// ---------------------------------------------------------------- signals

namespace {
volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int sig) {
  g_stop = 1;
  std::signal(sig, SIG_DFL);  // a second signal ends the process as usual
}
}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}
bool stop_requested() { return g_stop != 0; }
void clear_stop_request() { g_stop = 0; }

// ---------------------------------------------------------------- training

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Seed streams (mix_seed indices), one per use, so no two draw the same numbers.
constexpr uint64_t kInitStream = 1, kDropoutStream = 2, kPermutationStream = 3, kFlipStream = 4,
                   kTrainNoiseStream = 5, kValNoiseStream = 6, kVirtualCameraStream = 7;

// Fisher-Yates with a counter-based generator: a pure function of (seed, epoch).
std::vector<int64_t> epoch_permutation(uint64_t seed, int epoch, int64_t n) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t(0));
  const uint64_t s = nn::mix_seed(nn::mix_seed(seed, kPermutationStream), uint64_t(epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t r = nn::mix_seed(s, uint64_t(i));
    const int64_t j = int64_t((static_cast<unsigned __int128>(r) * uint64_t(i + 1)) >> 64);
    std::swap(p[size_t(i)], p[size_t(j)]);
  }
  return p;
}

bool flip_sample(const TrainConfig& c, int epoch, int64_t sample) {
  if (!c.data.flip) return false;
  const uint64_t s = nn::mix_seed(nn::mix_seed(c.seed, kFlipStream), uint64_t(epoch));
  return (nn::mix_seed(s, uint64_t(sample)) >> 17) & 1;
}

// The virtual camera turn of training sample `sample` in `epoch`, radians, or
// nothing (the real camera).
bool virtual_camera_yaw(const TrainConfig& c, int epoch, int64_t sample, double& yaw_rad) {
  const VirtualCameraConfig& v = c.data.virtual_cameras;
  if (!v.used()) return false;
  const uint64_t s = nn::mix_seed(nn::mix_seed(c.seed, kVirtualCameraStream), uint64_t(epoch));
  const uint64_t h = nn::mix_seed(s, uint64_t(sample));
  auto unit = [](uint64_t x) { return double(x >> 11) * (1.0 / 9007199254740992.0); };
  if (unit(h) >= v.probability) return false;
  const double pi = 3.14159265358979323846;
  yaw_rad = (2.0 * unit(nn::mix_seed(h, 1)) - 1.0) * v.max_yaw_deg * pi / 180.0;
  return true;
}

DatasetOptions dataset_options(const TrainConfig& c, bool train) {
  DatasetOptions o;
  o.input = c.data.input;
  o.attributes = AttributeSource::parse(c.data.attributes, "data.attributes");
  o.num_joints_in = c.model.num_joints_in;
  o.subsample = c.data.subsample;
  o.max_samples = train ? c.data.max_train_samples : c.data.max_val_samples;
  o.noise_seed = nn::mix_seed(c.seed, train ? kTrainNoiseStream : kValNoiseStream);
  o.flip_center_x = c.data.flip_center_x;
  o.virtual_cameras = train && c.data.virtual_cameras.used();
  return o;
}

// Normalisation statistics of the training set (and of its mirror images when
// flipping), with the rules of Lifter::fit_normalisation, streamed in two
// passes so the full training set needs no copy.
void fit_normalisation(nn::Lifter& lifter, const LifterDataset& data, bool with_flips) {
  const int pin = data.pose_input_dim(), pout = 51;
  std::vector<double> sum_in(size_t(pin), 0.0), sum_out(size_t(pout), 0.0);
  std::vector<double> sq_in(size_t(pin), 0.0), sq_out(size_t(pout), 0.0);
  std::vector<float> x(static_cast<size_t>(pin)), y(static_cast<size_t>(pout));
  const int variants = with_flips ? 2 : 1;
  const double n = double(data.size()) * variants;
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t i = 0; i < data.size(); ++i)
      for (int v = 0; v < variants; ++v) {
        data.get(i, v == 1, x.data(), nullptr, y.data());
        for (int c = 0; c < pin; ++c) {
          if (pass == 0) sum_in[size_t(c)] += x[size_t(c)];
          else {
            const double d = x[size_t(c)] - sum_in[size_t(c)] / n;
            sq_in[size_t(c)] += d * d;
          }
        }
        for (int c = 0; c < pout; ++c) {
          if (pass == 0) sum_out[size_t(c)] += y[size_t(c)];
          else {
            const double d = y[size_t(c)] - sum_out[size_t(c)] / n;
            sq_out[size_t(c)] += d * d;
          }
        }
      }
  auto store = [n](const std::vector<double>& s, const std::vector<double>& sq, Tensor& mean,
                   Tensor& sd) {
    for (size_t c = 0; c < s.size(); ++c) {
      const double sigma = std::sqrt(sq[c] / n);
      mean.f32()[c] = float(s[c] / n);
      sd.f32()[c] = sigma < 1e-4 ? 1.f : float(sigma);
    }
  };
  store(sum_in, sq_in, lifter.norm_input_mean, lifter.norm_input_std);
  store(sum_out, sq_out, lifter.norm_output_mean, lifter.norm_output_std);
  for (int c = 0; c < 3; ++c) {  // the pelvis is the origin
    lifter.norm_output_mean.f32()[c] = 0.f;
    lifter.norm_output_std.f32()[c] = 1.f;
  }
}

std::unique_ptr<nn::Optimizer> make_optimizer(const OptimizerConfig& o, std::vector<nn::Param> params) {
  if (o.type == "adam")
    return std::make_unique<nn::Adam>(std::move(params),
                                      nn::AdamOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay});
  return std::make_unique<nn::RMSprop>(
      std::move(params), nn::RMSpropOptions{o.lr, o.alpha, o.eps, o.weight_decay, o.momentum});
}

// Where a run stands; saved in the checkpoint's "trainer" metadata.
struct RunState {
  int epoch = 0;        // 0-based epoch in progress == epochs completed (validated)
  int64_t batch = 0;    // next batch of that epoch
  int64_t step = 0;     // optimizer steps so far
  double loss_sum = 0;  // this epoch's batch losses so far
  int64_t loss_batches = 0;
  double seconds = 0;   // wall time of the run so far
};

// Fields that may change between an interrupted run and its resumption
// (they do not affect the weights).
json resumable_view(const std::string& config_json) {
  json j = json::parse(config_json);
  for (const char* k : {"epochs", "checkpoint_minutes", "out_dir", "val_batch_size"}) j.erase(k);
  if (j.contains("data")) {
    j["data"].erase("val");
    j["data"].erase("max_val_samples");
  }
  return j;
}

void list_differences(const json& a, const json& b, const std::string& path,
                      std::vector<std::string>& out) {
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (const auto& [k, v] : a.items()) keys.insert(k);
    for (const auto& [k, v] : b.items()) keys.insert(k);
    for (const auto& k : keys) {
      const std::string p = path.empty() ? k : path + "." + k;
      if (!a.contains(k) || !b.contains(k)) out.push_back(p);
      else list_differences(a[k], b[k], p, out);
    }
  } else if (a.is_number_float() && b.is_number_float() &&
             float(a.get<double>()) == float(b.get<double>())) {
    // The same float setting, written before configs stored the shortest
    // decimal (0.0010000000474974513) or after (0.001).
  } else if (a != b) {
    out.push_back(path + " (checkpoint " + a.dump() + ", config " + b.dump() + ")");
  }
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(t / 3600), (long long)(t % 3600 / 60));
  else std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(t / 60), (long long)(t % 60));
  return buf;
}

class Trainer {
 public:
  Trainer(const TrainConfig& c, const TrainOptions& o) : cfg_(c), opt_(o) {}
  TrainResult run();

 private:
  const TrainConfig& cfg_;
  const TrainOptions& opt_;
  std::unique_ptr<LifterDataset> train_, val_;
  std::unique_ptr<nn::Lifter> lifter_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  RunState st_;
  std::string checkpoint_path_, model_path_, log_path_;
  size_t progress_width_ = 0;

  void resume();
  void save_checkpoint();
  std::pair<double, double> validate();
  void append_log(const EpochReport& r);
  void progress(int epoch, int64_t batch, int64_t batches, double loss, double rate, double eta);
  void end_progress_line();
};

void Trainer::save_checkpoint() {
  json t = {{"format", 1},
            {"epoch", st_.epoch},
            {"batch", st_.batch},
            {"step", st_.step},
            {"loss_sum", st_.loss_sum},
            {"loss_batches", st_.loss_batches},
            {"seconds", st_.seconds},
            {"train_config", cfg_.to_json_string()}};
  std::vector<uint64_t> steps;
  for (nn::Dropout* d : lifter_->dropouts()) steps.push_back(d->step());
  t["dropout_steps"] = steps;
  nn::save_module(*lifter_, checkpoint_path_,
                  {{"format_version", nn::kModelFormatVersion},
                   {"kind", "lifter"},
                   {"config", lifter_->config().to_json_string()},
                   {"trainer", t.dump()}},
                  optimizer_.get());
}

void Trainer::resume() {
  DOFPOSE_CHECK(fs::exists(checkpoint_path_), "--resume: no checkpoint at ", checkpoint_path_,
                " (start without --resume)");
  WeightsFile ck(checkpoint_path_);
  nn::check_model_metadata(ck, "lifter");
  const auto it = ck.metadata().find("trainer");
  DOFPOSE_CHECK(it != ck.metadata().end(), "checkpoint ", checkpoint_path_,
                ": metadata has no 'trainer' state (a model file, not a training checkpoint?)");
  json t;
  try {
    t = json::parse(it->second);
    std::vector<std::string> diff;
    list_differences(resumable_view(t.at("train_config").get<std::string>()),
                     resumable_view(cfg_.to_json_string()), "", diff);
    if (!diff.empty()) {
      std::string list;
      for (const auto& d : diff) list += "\n  " + d;
      fail("checkpoint ", checkpoint_path_,
           " was written with a different config; only epochs, checkpoint_minutes, out_dir, "
           "val_batch_size, data.val and data.max_val_samples may change on resume. Differences:",
           list);
    }
    st_.epoch = t.at("epoch").get<int>();
    st_.batch = t.at("batch").get<int64_t>();
    st_.step = t.at("step").get<int64_t>();
    st_.loss_sum = t.at("loss_sum").get<double>();
    st_.loss_batches = t.at("loss_batches").get<int64_t>();
    st_.seconds = t.at("seconds").get<double>();
    const auto steps = t.at("dropout_steps").get<std::vector<uint64_t>>();
    const auto drops = lifter_->dropouts();
    DOFPOSE_CHECK(steps.size() == drops.size(), "checkpoint ", checkpoint_path_, ": ",
                  steps.size(), " dropout counters for ", drops.size(), " dropout layers");
    for (size_t k = 0; k < drops.size(); ++k) drops[k]->set_step(steps[k]);
  } catch (const json::exception& e) {
    fail("checkpoint ", checkpoint_path_, ": bad 'trainer' metadata: ", e.what());
  }
  nn::load_module(*lifter_, ck);
  optimizer_->load_state(ck);
  DOFPOSE_CHECK(optimizer_->step_count() == st_.step, "checkpoint ", checkpoint_path_,
                ": optimizer step ", optimizer_->step_count(), " != trainer step ", st_.step);

  // Already at stop_after_steps: run() returns without training; the log stays as it is.
  if (opt_.stop_after_steps > 0 && st_.step >= opt_.stop_after_steps) return;

  // Keep the log rows of completed epochs only (a crash between a log row and
  // its checkpoint would otherwise duplicate a row).
  std::vector<std::string> keep;
  std::ifstream in(log_path_);
  std::string line;
  while (std::getline(in, line)) {
    if (keep.empty()) {
      keep.push_back(line);  // header
      continue;
    }
    if (std::atoi(line.c_str()) <= st_.epoch) keep.push_back(line);
  }
  std::ofstream out(log_path_, std::ios::trunc);
  if (keep.empty()) keep.push_back("epoch,step,train_loss,val_mpjpe,val_pmpjpe,lr,seconds");
  for (const auto& l : keep) out << l << "\n";
}

std::pair<double, double> Trainer::validate() {
  if (!val_) return {-1.0, -1.0};
  MetricsAccumulator acc;
  Arena arena;
  const int64_t n = val_->size(), pin = val_->pose_input_dim();
  const int64_t bs = cfg_.val_batch_size;
  std::vector<float> x(static_cast<size_t>(bs * pin)), a(static_cast<size_t>(bs * 27)), y(static_cast<size_t>(bs * 51));
  for (int64_t b0 = 0; b0 < n; b0 += bs) {
    const int64_t b = std::min(bs, n - b0);
    for (int64_t r = 0; r < b; ++r)
      val_->get(b0 + r, false, &x[size_t(r * pin)], &a[size_t(r * 27)], &y[size_t(r * 51)]);
    arena.reset();
    TensorView attr = val_->uses_attributes() ? TensorView(a.data(), {b, 27}) : TensorView();
    TensorView in = lifter_->prepare_input(arena, TensorView(x.data(), {b, pin}), attr);
    nn::ScopedNoGrad no_grad;  // evaluation: fused inference
    nn::LifterOutput out = lifter_->forward(arena, in, nn::Mode::Infer);
    TensorView pred = lifter_->denormalise_output(arena, out.final());
    for (int64_t r = 0; r < b; ++r)
      acc.add_pose(val_->action_name(b0 + r), pred.f32() + r * 51, &y[size_t(r * 51)]);
  }
  const MetricSummary m = acc.mean_over_actions();
  return {m.mpjpe, m.p_mpjpe};
}

void Trainer::append_log(const EpochReport& r) {
  std::ofstream out(log_path_, std::ios::app);
  DOFPOSE_CHECK(out.good(), "cannot write ", log_path_);
  char buf[256];
  std::string v1, v2;
  if (r.val_mpjpe >= 0) {
    std::snprintf(buf, sizeof buf, "%.4f", r.val_mpjpe);
    v1 = buf;
    std::snprintf(buf, sizeof buf, "%.4f", r.val_pmpjpe);
    v2 = buf;
  }
  std::snprintf(buf, sizeof buf, "%d,%lld,%.9g,%s,%s,%.9g,%.3f\n", r.epoch, (long long)r.step,
                r.train_loss, v1.c_str(), v2.c_str(), double(r.lr), r.seconds);
  out << buf;
}

void Trainer::progress(int epoch, int64_t batch, int64_t batches, double loss, double rate,
                       double eta) {
  if (!opt_.progress) return;
  const int bar = 20;
  const int filled = batches ? int(bar * batch / batches) : bar;
  std::string b(size_t(filled), '#');
  b += std::string(size_t(bar - filled), '.');
  char buf[256];
  std::snprintf(buf, sizeof buf, "epoch %d/%d [%s] %lld/%lld  loss %.4f  %.0f samples/s  ETA %s",
                epoch + 1, cfg_.epochs, b.c_str(), (long long)batch, (long long)batches, loss,
                rate, format_duration(eta).c_str());
  std::string line = buf;
  const size_t w = line.size();
  if (w < progress_width_) line += std::string(progress_width_ - w, ' ');
  progress_width_ = w;
  std::fprintf(stderr, "\r%s", line.c_str());
  std::fflush(stderr);
}

void Trainer::end_progress_line() {
  if (!opt_.progress || progress_width_ == 0) return;
  std::fprintf(stderr, "\r%s\r", std::string(progress_width_, ' ').c_str());
  progress_width_ = 0;
}

TrainResult Trainer::run() {
  cfg_.validate();
  fs::create_directories(cfg_.out_dir);
  checkpoint_path_ = (fs::path(cfg_.out_dir) / kCheckpointFile).string();
  model_path_ = (fs::path(cfg_.out_dir) / kModelFile).string();
  log_path_ = (fs::path(cfg_.out_dir) / kLogFile).string();
  if (!opt_.resume)
    DOFPOSE_CHECK(!fs::exists(checkpoint_path_), "out_dir ", cfg_.out_dir,
                  " already holds a checkpoint (", kCheckpointFile,
                  "): pass --resume to continue that run, or choose another out_dir");

  try {
    train_ = std::make_unique<LifterDataset>(cfg_.data.train, dataset_options(cfg_, true));
  } catch (const Error& e) {
    fail("data.train: ", e.what());
  }
  if (!cfg_.data.val.empty()) {
    try {
      val_ = std::make_unique<LifterDataset>(cfg_.data.val, dataset_options(cfg_, false));
    } catch (const Error& e) {
      fail("data.val: ", e.what());
    }
  }
  const int64_t n = train_->size();
  const int64_t bs = cfg_.batch_size;
  DOFPOSE_CHECK(n >= 2, "data.train: ", cfg_.data.train, " gives ", n,
                " training samples; need at least 2");
  // The last partial batch is kept unless it holds a single sample (batch norm needs two).
  const int64_t batches = n / bs + (n % bs >= 2 ? 1 : 0);

  lifter_ = nn::Lifter::create(cfg_.model, nn::mix_seed(cfg_.seed, kInitStream));
  lifter_->set_dropout_seed(nn::mix_seed(cfg_.seed, kDropoutStream));
  optimizer_ = make_optimizer(cfg_.optimizer, lifter_->parameters());

  if (opt_.resume) {
    resume();
  } else {
    fit_normalisation(*lifter_, *train_, cfg_.data.flip);
    std::ofstream log(log_path_, std::ios::trunc);
    DOFPOSE_CHECK(log.good(), "cannot write ", log_path_);
    log << "epoch,step,train_loss,val_mpjpe,val_pmpjpe,lr,seconds\n";
    std::ofstream(fs::path(cfg_.out_dir) / "config.json", std::ios::trunc) << cfg_.to_json_string() << "\n";
  }

  TrainResult result;
  result.train_samples = n;
  result.val_samples = val_ ? val_->size() : 0;
  result.checkpoint_path = checkpoint_path_;
  result.log_path = log_path_;
  if (opt_.resume && opt_.stop_after_steps > 0 && st_.step >= opt_.stop_after_steps) {
    // Another step and a rewritten checkpoint would move it past the limit.
    result.already_at_stop = true;
    result.epochs_completed = st_.epoch;
    result.steps = st_.step;
    result.seconds = st_.seconds;
    return result;
  }

  const int pin = train_->pose_input_dim();
  const bool attrs = train_->uses_attributes();
  std::vector<float> x(static_cast<size_t>(bs * pin)), a(static_cast<size_t>(bs * 27)), y(static_cast<size_t>(bs * 51));
  std::vector<nn::Param> params = optimizer_->params();
  Arena arena;
  const auto run_start = Clock::now();
  const double seconds_before = st_.seconds;
  auto last_checkpoint = Clock::now();
  auto last_progress = Clock::now() - std::chrono::seconds(1);
  double train_seconds = 0;  // time in training steps, this process
  int64_t samples_done = 0;  // this process
  const int64_t step_at_start = st_.step;

  while (st_.epoch < cfg_.epochs) {
    const std::vector<int64_t> perm = epoch_permutation(cfg_.seed, st_.epoch, n);
    for (; st_.batch < batches; ++st_.batch) {
      const auto t0 = Clock::now();
      const int64_t b0 = st_.batch * bs, b = std::min(bs, n - b0);
      for (int64_t r = 0; r < b; ++r) {
        const int64_t i = perm[size_t(b0 + r)];
        double yaw = 0;
        if (virtual_camera_yaw(cfg_, st_.epoch, i, yaw))
          train_->get_virtual(i, flip_sample(cfg_, st_.epoch, i), yaw, &x[size_t(r * pin)],
                              attrs ? &a[size_t(r * 27)] : nullptr, &y[size_t(r * 51)]);
        else
          train_->get(i, flip_sample(cfg_, st_.epoch, i), &x[size_t(r * pin)],
                      attrs ? &a[size_t(r * 27)] : nullptr, &y[size_t(r * 51)]);
      }
      arena.reset();
      TensorView attr = attrs ? TensorView(a.data(), {b, 27}) : TensorView();
      TensorView in = lifter_->prepare_input(arena, TensorView(x.data(), {b, pin}), attr);
      TensorView target = lifter_->normalise_output(arena, TensorView(y.data(), {b, 51}));
      nn::LifterOutput out = lifter_->forward(arena, in, nn::Mode::Train);
      std::vector<TensorView> dposes;
      const float loss = nn::lifter_l1_loss(arena, out, target, dposes);
      DOFPOSE_CHECK(std::isfinite(loss), "training diverged: loss is ", loss, " at epoch ",
                    st_.epoch + 1, " batch ", st_.batch + 1, " (lower optimizer.lr?)");
      lifter_->backward(arena, dposes);
      if (cfg_.optimizer.clip_norm > 0.f) nn::clip_grad_norm(params, cfg_.optimizer.clip_norm);
      optimizer_->lr = cfg_.learning_rate(st_.step);
      optimizer_->step();
      if (cfg_.model.max_norm > 0.f) nn::apply_max_norm(*lifter_, cfg_.model.max_norm);
      ++st_.step;
      st_.loss_sum += loss;
      ++st_.loss_batches;
      train_seconds += seconds_since(t0);
      samples_done += b;
      st_.seconds = seconds_before + seconds_since(run_start);

      const bool stop = stop_requested() ||
                        (opt_.stop_after_steps > 0 && st_.step >= opt_.stop_after_steps);
      if (opt_.progress && (seconds_since(last_progress) >= 0.1 || stop || st_.batch + 1 == batches)) {
        last_progress = Clock::now();
        const double rate = train_seconds > 0 ? samples_done / train_seconds : 0;
        const int64_t done_here = st_.step - step_at_start;
        const double per_step = done_here > 0 ? seconds_since(run_start) / double(done_here) : 0;
        const int64_t left = int64_t(cfg_.epochs - st_.epoch) * batches - (st_.batch + 1);
        progress(st_.epoch, st_.batch + 1, batches, st_.loss_sum / double(st_.loss_batches), rate,
                 per_step * double(left));
      }
      if (stop) {
        ++st_.batch;
        save_checkpoint();
        end_progress_line();
        if (opt_.progress)
          std::fprintf(stderr,
                       "interrupted at epoch %d, batch %lld (step %lld): checkpoint saved to %s; "
                       "continue with --resume\n",
                       st_.epoch + 1, (long long)st_.batch, (long long)st_.step,
                       checkpoint_path_.c_str());
        result.interrupted = true;
        result.epochs_completed = st_.epoch;
        result.steps = st_.step;
        result.seconds = st_.seconds;
        result.samples_per_second = train_seconds > 0 ? samples_done / train_seconds : 0;
        return result;
      }
      if (cfg_.checkpoint_minutes > 0 && seconds_since(last_checkpoint) >= cfg_.checkpoint_minutes * 60) {
        ++st_.batch;  // the saved position is the next batch
        save_checkpoint();
        --st_.batch;
        last_checkpoint = Clock::now();
      }
    }

    // End of epoch: validate, log, checkpoint.
    EpochReport rep;
    rep.epoch = st_.epoch + 1;
    rep.step = st_.step;
    rep.train_loss = st_.loss_batches ? st_.loss_sum / double(st_.loss_batches) : 0.0;
    std::tie(rep.val_mpjpe, rep.val_pmpjpe) = validate();
    rep.lr = cfg_.learning_rate(st_.step > 0 ? st_.step - 1 : 0);
    st_.seconds = seconds_before + seconds_since(run_start);
    rep.seconds = st_.seconds;
    append_log(rep);
    end_progress_line();
    if (opt_.progress) {
      if (rep.val_mpjpe >= 0)
        std::fprintf(stderr, "epoch %d/%d  loss %.5f  val MPJPE %.2f mm  P-MPJPE %.2f mm  lr %.3g  %s\n",
                     rep.epoch, cfg_.epochs, rep.train_loss, rep.val_mpjpe, rep.val_pmpjpe,
                     double(rep.lr), format_duration(rep.seconds).c_str());
      else
        std::fprintf(stderr, "epoch %d/%d  loss %.5f  lr %.3g  %s\n", rep.epoch, cfg_.epochs,
                     rep.train_loss, double(rep.lr), format_duration(rep.seconds).c_str());
    }
    result.epochs.push_back(rep);
    ++st_.epoch;
    st_.batch = 0;
    st_.loss_sum = 0;
    st_.loss_batches = 0;
    save_checkpoint();
    last_checkpoint = Clock::now();
    if (opt_.on_epoch) opt_.on_epoch(rep);
  }

  nn::save_lifter(*lifter_, model_path_);
  result.model_path = model_path_;
  result.epochs_completed = st_.epoch;
  result.steps = st_.step;
  result.seconds = st_.seconds;
  result.samples_per_second = train_seconds > 0 ? samples_done / train_seconds : 0;
  return result;
}

}  // namespace

TrainResult train_lifter(const TrainConfig& config, const TrainOptions& options) {
  Trainer t(config, options);
  return t.run();
}

}  // namespace dofpose::train
