#include "dofpose/nn/serialize.h"

#include <set>

#include <nlohmann/json.hpp>

#include "dofpose/nn/optimizer.h"

namespace dofpose::nn {

void save_module(Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata,
                 const Optimizer* optimizer) {
  std::vector<Param> params;
  std::vector<Buffer> buffers;
  module.collect("", params, buffers);
  WeightsWriter writer;
  for (const Param& p : params) writer.add(p.name, *p.value);
  for (const Buffer& b : buffers) writer.add(b.name, *b.value);
  std::map<std::string, std::string> meta = metadata;
  if (!meta.count("format_version")) meta["format_version"] = kModelFormatVersion;
  if (optimizer) optimizer->save_state(writer, meta);
  for (const auto& [key, value] : meta) writer.set_metadata(key, value);
  writer.write(path);
}

void load_module(Module& module, const WeightsFile& file) {
  std::vector<Param> params;
  std::vector<Buffer> buffers;
  module.collect("", params, buffers);
  std::vector<std::pair<std::string, Tensor*>> targets;
  for (const Param& p : params) targets.emplace_back(p.name, p.value);
  for (const Buffer& b : buffers) targets.emplace_back(b.name, b.value);

  std::set<std::string> expected;
  for (const auto& [name, t] : targets) {
    expected.insert(name);
    DOFPOSE_CHECK(file.has(name), "load_module: ", file.path(), " lacks tensor '", name,
                  "' (expected shape ", t->shape().str(), ")");
    const Shape found = file.entry(name).shape;
    DOFPOSE_CHECK(found == t->shape(), "load_module: ", file.path(), ": tensor '", name,
                  "' has shape ", found.str(), ", expected ", t->shape().str());
  }
  for (const std::string& name : file.names())
    DOFPOSE_CHECK(expected.count(name) || name.rfind("optim.", 0) == 0, "load_module: ",
                  file.path(), " holds tensor '", name,
                  "' that the model does not have (another architecture or config?)");
  // Convert everything first so a bad dtype leaves the module untouched.
  std::vector<Tensor> loaded;
  loaded.reserve(targets.size());
  for (const auto& [name, t] : targets) loaded.push_back(file.load_f32(name, t->shape()));
  for (size_t i = 0; i < targets.size(); ++i) copy(loaded[i], *targets[i].second);
}

void check_model_metadata(const WeightsFile& file, const std::string& kind) {
  const std::string version = file.metadata_or("format_version", "");
  DOFPOSE_CHECK(version == kModelFormatVersion, "model file ", file.path(),
                ": metadata format_version is '", version, "', expected '",
                kModelFormatVersion, "'");
  const std::string found = file.metadata_or("kind", "");
  DOFPOSE_CHECK(found == kind, "model file ", file.path(), ": metadata kind is '", found,
                "', expected '", kind, "'");
}

int config_int(const nlohmann::json& v, const std::string& where, const std::string& key,
               int64_t lo, int64_t hi) {
  DOFPOSE_CHECK(v.is_number_integer(), where, ": '", key, "' must be an integer (wrong type), got ",
                v.dump());
  bool ok;
  if (v.is_number_unsigned()) {  // may exceed int64: compare unconverted
    const uint64_t u = v.get<uint64_t>();
    ok = hi >= 0 && u <= uint64_t(hi) && (lo <= 0 || u >= uint64_t(lo));
  } else {
    const int64_t x = v.get<int64_t>();
    ok = x >= lo && x <= hi;
  }
  DOFPOSE_CHECK(ok, where, ": '", key, "' must be in [", lo, ", ", hi, "], got ", v.dump());
  return int(v.get<int64_t>());
}

void check_config_fits_file(const WeightsFile& file, int64_t min_params, const std::string& what) {
  int64_t held = 0;
  for (const std::string& name : file.names())
    if (name.rfind("optim.", 0) != 0) held += file.entry(name).shape.numel();
  DOFPOSE_CHECK(min_params <= held, "model file ", file.path(), ": its config (", what,
                ") needs at least ", min_params, " parameter values, the file's tensors hold ",
                held, " (config and tensors disagree)");
}

}  // namespace dofpose::nn
