#include "dofpose/nn/serialize.h"

#include <set>

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

}  // namespace dofpose::nn
