// Human3.6M evaluation loop, the lifter predictor and the reports.
#include "dofpose/eval/h36m_eval.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "dofpose/arena.h"
#include "dofpose/camera.h"
#include "dofpose/error.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/npz.h"
#include "dofpose/skeleton.h"
#include "dofpose/torso_plane.h"
#include "dofpose/weights.h"

namespace dofpose::eval {

// ------------------------------------------------------------------ parsing

InputSource parse_input_source(const std::string& s) {
  if (s == "sh") return InputSource::Detections;
  if (s == "gt") return InputSource::GroundTruth;
  fail("--input: unknown value '", s, "', expected 'sh' (stacked-hourglass detections) or 'gt' ",
       "(projected ground truth)");
}

const char* input_source_name(InputSource s) {
  return s == InputSource::Detections ? "sh" : "gt";
}

std::string AttributeSource::str() const {
  switch (kind) {
    case Kind::None: return "none";
    case Kind::GroundTruth: return "gt";
    case Kind::Noisy: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "noisy:%g", keep_probability);
      return buf;
    }
  }
  return "?";
}

AttributeSource parse_attribute_source(const std::string& s) {
  AttributeSource a;
  if (s == "none") return a;
  if (s == "gt") {
    a.kind = AttributeSource::Kind::GroundTruth;
    return a;
  }
  const std::string prefix = "noisy:";
  if (s == "noisy" || s.compare(0, prefix.size(), prefix) == 0) {
    const std::string value = s.size() > prefix.size() ? s.substr(prefix.size()) : "";
    char* end = nullptr;
    const double p = value.empty() ? NAN : std::strtod(value.c_str(), &end);
    DOFPOSE_CHECK(!value.empty() && end && *end == '\0' && std::isfinite(p) && p >= 0 && p <= 1,
                  "--attributes: bad noisy spec '", s,
                  "': expected noisy:P with P the probability (0..1) that a label is kept, "
                  "e.g. noisy:0.84");
    a.kind = AttributeSource::Kind::Noisy;
    a.keep_probability = p;
    return a;
  }
  fail("--attributes: unknown value '", s, "', expected 'none', 'gt' or 'noisy:P' (0 <= P <= 1)");
}

const std::vector<JointGroupDef>& paper_joint_groups() {
  using namespace h36m;
  static const std::vector<JointGroupDef> groups = {
      {"hip", {kRightHip, kLeftHip}},
      {"spine", {kSpine}},
      {"thorax", {kThorax}},
      {"shoulder", {kLeftShoulder, kRightShoulder}},
      {"head", {kNeckNose, kHead}},
      {"elbow", {kLeftElbow, kRightElbow}},
      {"knee", {kRightKnee, kLeftKnee}},
      {"wrist", {kLeftWrist, kRightWrist}},
      {"ankle", {kRightAnkle, kLeftAnkle}},
  };
  return groups;
}

// ------------------------------------------------------------------ the loop

namespace {

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// splitmix64: a small, fully specified stream, so noisy labels are the same on
// every platform for a given seed (std distributions are implementation-defined).
struct NoiseStream {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
};

struct Sequence {
  std::string subject, action, camera;
  int64_t frames = 0;  // after max_frames
};

bool action_selected(const std::vector<std::string>& wanted, const std::string& action) {
  if (wanted.empty()) return true;
  for (const std::string& w : wanted)
    if (w == action || w == canonical_action(action)) return true;
  return false;
}

std::vector<double> group_errors(const MetricSummary& m) {
  std::vector<double> out;
  for (const JointGroupDef& g : paper_joint_groups()) {
    double s = 0;
    for (int j : g.joints) s += m.joint_mpjpe[size_t(j)];
    out.push_back(s / double(g.joints.size()));
  }
  return out;
}

}  // namespace

H36mEvalResult evaluate_h36m(const H36mEvalOptions& opt, const PosePredictor& predict) {
  DOFPOSE_CHECK(!opt.subjects.empty(), "h36m eval: no subjects given");
  DOFPOSE_CHECK(opt.batch_size >= 1, "h36m eval: batch size must be >= 1, got ", opt.batch_size);
  DOFPOSE_CHECK(opt.max_frames >= 0, "h36m eval: max frames must be >= 0, got ", opt.max_frames);
  DOFPOSE_CHECK(predict, "h36m eval: no predictor");
  // A name given twice would evaluate (and weigh) its frames twice.
  for (const auto& [what, list] : {std::pair<const char*, const std::vector<std::string>*>{
                                       "subjects", &opt.subjects},
                                   {"cameras", &opt.cameras},
                                   {"actions", &opt.actions}}) {
    std::set<std::string> seen;
    for (const std::string& name : *list)
      DOFPOSE_CHECK(seen.insert(name).second, "h36m eval: ", what, " lists '", name,
                    "' twice; give each once");
  }
  const bool with_attributes = opt.attributes.kind != AttributeSource::Kind::None;
  if (with_attributes)
    DOFPOSE_CHECK(opt.attribute_threshold_mm >= 0 && std::isfinite(opt.attribute_threshold_mm),
                  "h36m eval: attribute threshold must be a finite number >= 0 mm, got ",
                  opt.attribute_threshold_mm);

  // Every file is opened and every array checked before the first prediction,
  // so a bad path or a missing camera fails in a second, not after an hour.
  const std::string cameras_path = opt.data_dir + "/cameras.json";
  DOFPOSE_CHECK(file_exists(cameras_path), "h36m eval: cameras file '", cameras_path,
                "' not found (expected in the data directory beside <subject>.npz)");
  const CameraSet cams = CameraSet::load(cameras_path);
  std::map<std::string, NpzFile> files;
  std::vector<Sequence> plan;
  std::set<std::string> camera_set;
  for (const std::string& subject : opt.subjects) {
    DOFPOSE_CHECK(!files.count(subject), "h36m eval: subject '", subject, "' given twice");
    const std::string path = opt.data_dir + "/" + subject + ".npz";
    DOFPOSE_CHECK(file_exists(path), "h36m eval: subject ", subject, ": data file '", path,
                  "' not found");
    const NpzFile& f = files.emplace(subject, NpzFile(path)).first->second;
    const std::vector<std::string> subject_cams = cams.camera_ids(subject);
    std::vector<std::string> use_cams = opt.cameras.empty() ? subject_cams : opt.cameras;
    for (const std::string& c : use_cams) {
      DOFPOSE_CHECK(std::find(subject_cams.begin(), subject_cams.end(), c) != subject_cams.end(),
                    "h36m eval: camera '", c, "' is not in ", cameras_path, " for subject ",
                    subject);
      camera_set.insert(c);
    }
    std::vector<std::string> actions, all_actions;
    const std::string suffix = "/pos3d";
    for (const std::string& name : f.names())
      if (name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        all_actions.push_back(name.substr(0, name.size() - suffix.size()));
    DOFPOSE_CHECK(!all_actions.empty(), "h36m eval: ", path, " has no '<action>/pos3d' arrays");
    std::sort(all_actions.begin(), all_actions.end());
    for (const std::string& want : opt.actions) {
      bool found = false;
      for (const std::string& a : all_actions) found = found || action_selected({want}, a);
      if (!found) {
        std::string known;
        for (const std::string& a : all_actions) known += (known.empty() ? "'" : ", '") + a + "'";
        fail("h36m eval: action '", want, "' is not in ", path, " (it has ", known, ")");
      }
    }
    for (const std::string& a : all_actions)
      if (action_selected(opt.actions, a)) actions.push_back(a);
    for (const std::string& action : actions) {
      const NpyArray& pos = f.array(action + "/pos3d");
      pos.expect_shape({-1, h36m::kNumJoints, 3});
      const int64_t n_all = pos.shape[0];
      const int64_t n = opt.max_frames > 0 ? std::min(n_all, opt.max_frames) : n_all;
      for (const std::string& c : use_cams) {
        if (opt.input == InputSource::Detections)
          f.array(action + "/sh2d/" + c).expect_shape({n_all, 16, 2});
        if (n > 0) plan.push_back({subject, action, c, n});
      }
    }
  }
  int64_t total = 0;
  for (const Sequence& s : plan) total += s.frames;

  MetricsAccumulator acc;
  int64_t done = 0, labels_total = 0, labels_kept = 0;
  NoiseStream noise{opt.seed};
  const LayoutMap& mpii_to_h36m = layout_map(LayoutId::MPII16, LayoutId::H36M17);
  constexpr int J = h36m::kNumJoints;
  std::vector<float> pred;
  std::vector<int32_t> batch_labels;
  std::string last_key;
  std::vector<float> world;
  std::vector<int32_t> true_labels;
  for (const Sequence& s : plan) {
    const NpzFile& f = files.at(s.subject);
    const int64_t n = s.frames;
    const std::string key = s.subject + "/" + s.action;
    if (key != last_key) {  // per action: world poses and their (view-independent) labels
      world = f.array(s.action + "/pos3d").to_f32();
      world.resize(size_t(n * J * 3));
      // The labels are invariant to rotation and translation, so world
      // coordinates give the same labels as any camera's.
      if (with_attributes) true_labels = torso_attribute_labels(world.data(), n, opt.attribute_threshold_mm);
      last_key = key;
    }
    const Camera& cam = cams.get(s.subject, s.camera);
    const std::vector<float> gt = world_to_root_relative_camera(cam, world.data(), n, J, h36m::kPelvis);
    std::vector<float> pose2d;
    if (opt.input == InputSource::Detections) {
      const std::vector<float> sh = f.array(s.action + "/sh2d/" + s.camera).to_f32();
      pose2d = map_poses(mpii_to_h36m, sh.data(), n, 2);
    } else {
      pose2d.resize(size_t(n * J * 2));
      project_world_to_pixels(cam, world.data(), n * J, pose2d.data(), true);
    }
    std::vector<int32_t> labels;
    if (with_attributes) {
      labels = true_labels;
      if (opt.attributes.kind == AttributeSource::Kind::Noisy)
        for (int32_t& l : labels)
          if (noise.uniform() >= opt.attributes.keep_probability)
            l = int32_t((l + 1 + int32_t(noise.next() & 1)) % 3);
      for (size_t k = 0; k < labels.size(); ++k) labels_kept += labels[k] == true_labels[k];
      labels_total += int64_t(labels.size());
    }
    for (int64_t b = 0; b < n; b += opt.batch_size) {
      const int64_t m = std::min(opt.batch_size, n - b);
      PoseBatch batch;
      batch.n = m;
      batch.pose2d = pose2d.data() + b * J * 2;
      batch.gt3d = gt.data() + b * J * 3;
      batch.attributes = with_attributes ? labels.data() + b * kNumAttributeJoints : nullptr;
      batch.subject = s.subject, batch.action = s.action, batch.camera = s.camera;
      pred.assign(size_t(m * J * 3), NAN);
      predict(batch, pred.data());
      for (int64_t i = 0; i < m; ++i) {
        const float* p = pred.data() + i * J * 3;
        for (int k = 0; k < J * 3; ++k)
          DOFPOSE_CHECK(std::isfinite(p[k]), "h36m eval: prediction for ", s.subject, " '",
                        s.action, "' camera ", s.camera, " frame ", b + i, " value ", k,
                        " is not finite (", p[k], ")");
        acc.add_pose(s.action, p, batch.gt3d + i * J * 3);
      }
      done += m;
      if (opt.progress) opt.progress(done, total);
    }
  }

  H36mEvalResult r;
  r.subjects = opt.subjects;
  r.cameras.assign(camera_set.begin(), camera_set.end());
  r.input = input_source_name(opt.input);
  r.attributes = opt.attributes.str();
  r.attribute_threshold_mm = with_attributes ? opt.attribute_threshold_mm : 0;
  r.frames = acc.poses();
  r.sequences = int64_t(plan.size());
  r.per_action = acc.per_action();
  for (const MetricSummary& a : r.per_action) r.actions.push_back(a.action);
  r.mean_over_actions = acc.mean_over_actions();
  r.pooled = acc.pooled();
  r.group_mpjpe_mean_over_actions = group_errors(r.mean_over_actions);
  r.group_mpjpe_pooled = group_errors(r.pooled);
  r.has_input_attributes = with_attributes;
  r.input_attribute_accuracy = labels_total ? double(labels_kept) / double(labels_total) : 0;
  return r;
}

// ------------------------------------------------------------------ the lifter

H36mEvalResult evaluate_h36m_lifter(const std::string& model_path, H36mEvalOptions opt,
                                    const LifterEvalSettings& settings, LifterEvalInfo* info_out) {
  DOFPOSE_CHECK(file_exists(model_path), "h36m eval: model file '", model_path, "' not found");
  const WeightsFile file(model_path);
  std::unique_ptr<nn::Lifter> lifter = nn::load_lifter(file);
  const nn::LifterConfig& config = lifter->config();

  LifterEvalInfo info;
  info.model_path = model_path;
  info.kind = config.kind;
  info.uses_attributes = config.use_attributes;
  info.num_joints_in = config.num_joints_in;
  const std::string stored = file.metadata_or("attribute_threshold_mm", "");
  if (!stored.empty()) {
    char* end = nullptr;
    const double t = std::strtod(stored.c_str(), &end);
    DOFPOSE_CHECK(end && *end == '\0' && std::isfinite(t) && t >= 0, "model file ", model_path,
                  ": metadata attribute_threshold_mm is '", stored, "', expected a number >= 0");
    info.attribute_threshold_mm = t;
    info.threshold_from_model = true;
  }
  if (settings.threshold_override_mm >= 0) {
    info.attribute_threshold_mm = settings.threshold_override_mm;
    info.threshold_from_model = false;
  }
  opt.attribute_threshold_mm = info.attribute_threshold_mm;
  if (settings.attributes_auto)
    opt.attributes.kind = config.use_attributes ? AttributeSource::Kind::GroundTruth
                                                : AttributeSource::Kind::None;
  const bool given = opt.attributes.kind != AttributeSource::Kind::None;
  DOFPOSE_CHECK(given || !config.use_attributes, "h36m eval: model ", model_path,
                " takes torso-plane attributes (use_attributes true): use --attributes gt or "
                "noisy:P, got none");
  DOFPOSE_CHECK(!given || config.use_attributes, "h36m eval: model ", model_path,
                " takes no attributes (use_attributes false): use --attributes none, got ",
                opt.attributes.str());

  const std::vector<int> in_joints = config.input_joints();
  const int jin = int(in_joints.size());
  Arena arena;
  std::vector<float> onehot;
  PosePredictor predict = [&](const PoseBatch& b, float* out) {
    arena.reset();
    TensorView pose = arena.alloc({b.n, int64_t(jin) * 2});
    for (int64_t i = 0; i < b.n; ++i)
      for (int k = 0; k < jin; ++k)
        for (int c = 0; c < 2; ++c)
          pose.f32()[(i * jin + k) * 2 + c] = b.pose2d[(i * h36m::kNumJoints + in_joints[size_t(k)]) * 2 + c];
    TensorView attrs;
    if (config.use_attributes) {
      attrs = arena.alloc({b.n, nn::LifterConfig::kAttributeInputs});
      nn::encode_attribute_labels(b.attributes, b.n, attrs.f32());
    }
    const TensorView x = lifter->prepare_input(arena, pose, attrs);
    nn::ScopedNoGrad no_grad;  // evaluation: fused inference
    const nn::LifterOutput y = lifter->forward(arena, x, nn::Mode::Infer);
    const TensorView mm = lifter->denormalise_output(arena, y.final());
    std::copy(mm.f32(), mm.f32() + b.n * config.output_dim(), out);
  };
  H36mEvalResult r = evaluate_h36m(opt, predict);
  if (info_out) *info_out = info;
  return r;
}

// ------------------------------------------------------------------ reports

namespace {

nlohmann::ordered_json summary_json(const MetricSummary& m) {
  return {{"poses", m.poses}, {"mpjpe", m.mpjpe},   {"p_mpjpe", m.p_mpjpe},
          {"pck3d", m.pck150}, {"auc", m.auc}};
}

nlohmann::ordered_json groups_json(const std::vector<double>& g) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  const auto& defs = paper_joint_groups();
  for (size_t i = 0; i < defs.size() && i < g.size(); ++i) j[defs[i].name] = g[i];
  return j;
}

}  // namespace

std::string eval_result_json(const H36mEvalResult& r, const LifterEvalInfo* info) {
  nlohmann::ordered_json j;
  if (info) {
    j["model"] = {{"path", info->model_path},
                  {"kind", info->kind},
                  {"use_attributes", info->uses_attributes},
                  {"num_joints_in", info->num_joints_in}};
  }
  j["subjects"] = r.subjects;
  j["cameras"] = r.cameras;
  j["input"] = r.input;
  j["attributes"] = r.attributes;
  if (r.has_input_attributes) {
    j["attribute_threshold_mm"] = r.attribute_threshold_mm;
    j["input_attribute_accuracy"] = r.input_attribute_accuracy;
  }
  j["frames"] = r.frames;
  j["sequences"] = r.sequences;
  // Headline numbers: the protocol's mean over actions.
  j["mpjpe"] = r.mean_over_actions.mpjpe;
  j["p_mpjpe"] = r.mean_over_actions.p_mpjpe;
  j["pck3d"] = r.mean_over_actions.pck150;
  j["auc"] = r.mean_over_actions.auc;
  j["all_frames"] = summary_json(r.pooled);
  j["per_action"] = nlohmann::ordered_json::object();
  for (const MetricSummary& a : r.per_action) j["per_action"][a.action] = summary_json(a);
  j["per_joint"] = groups_json(r.group_mpjpe_mean_over_actions);
  j["per_joint_all_frames"] = groups_json(r.group_mpjpe_pooled);
  nlohmann::ordered_json joints = nlohmann::ordered_json::object();
  const Layout& h = layout(LayoutId::H36M17);
  for (int k = 0; k < h36m::kNumJoints; ++k) joints[h.joints[size_t(k)]] = r.mean_over_actions.joint_mpjpe[size_t(k)];
  j["per_joint_h36m17"] = joints;
  return j.dump(2);
}

std::string eval_result_table(const H36mEvalResult& r, const LifterEvalInfo* info) {
  std::string out;
  char line[256];
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
  };
  if (info)
    out += concat("model: ", info->model_path, " (", info->kind, ", ", info->num_joints_in,
                  " input joints", info->uses_attributes ? ", attributes" : "", ")\n");
  out += concat("subjects: ", join(r.subjects), "  cameras: ", join(r.cameras), "  input: ",
                r.input, "  attributes: ", r.attributes);
  if (r.has_input_attributes) {
    std::snprintf(line, sizeof line, " (threshold %g mm, %.1f%% of input labels correct)",
                  r.attribute_threshold_mm, 100.0 * r.input_attribute_accuracy);
    out += line;
  }
  out += concat("\nposes: ", r.frames, " (frames x cameras, ", r.sequences, " sequences)\n\n");
  std::snprintf(line, sizeof line, "%-16s %8s %9s %9s %9s %7s\n", "action", "poses",
                "MPJPE", "P-MPJPE", "PCK@150", "AUC");
  out += line;
  auto row = [&](const std::string& name, const MetricSummary& m) {
    std::snprintf(line, sizeof line, "%-16s %8lld %9.1f %9.1f %8.1f%% %6.1f%%\n", name.c_str(),
                  static_cast<long long>(m.poses), m.mpjpe, m.p_mpjpe, 100 * m.pck150, 100 * m.auc);
    out += line;
  };
  for (const MetricSummary& a : r.per_action) row(a.action, a);
  out += "----------------\n";
  row("Average", r.mean_over_actions);
  row("All frames", r.pooled);
  out += "(Average = mean of the per-action means, the protocol's number; All frames = every pose equal;\n"
         " MPJPE = protocol 1, P-MPJPE = protocol 2 (Procrustes-aligned), mm)\n\n";
  out += "per-joint MPJPE (mm), mean over actions / all frames:\n";
  const auto& defs = paper_joint_groups();
  std::string head, mean_row, pooled_row;
  for (size_t g = 0; g < defs.size(); ++g) {
    std::snprintf(line, sizeof line, "%9s", defs[g].name);
    head += line;
    std::snprintf(line, sizeof line, "%9.1f", r.group_mpjpe_mean_over_actions[g]);
    mean_row += line;
    std::snprintf(line, sizeof line, "%9.1f", r.group_mpjpe_pooled[g]);
    pooled_row += line;
  }
  out += "           " + head + "\n" + "  actions  " + mean_row + "\n" + "  frames   " + pooled_row + "\n";
  return out;
}

}  // namespace dofpose::eval
