#include "tests/fixture_loader.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "dofpose/error.h"
#include "dofpose/weights.h"

#ifndef DOFPOSE_FIXTURES_DIR
#error "DOFPOSE_FIXTURES_DIR must name the directory of the committed golden fixtures"
#endif

namespace dofpose::test {

const FixtureTensor& FixtureCase::tensor(const std::string& t) const {
  auto it = tensors.find(t);
  if (it == tensors.end())
    fail("fixture ", file, ": case '", name, "' has no tensor '", t, "'");
  return it->second;
}

const std::vector<float>& FixtureCase::f32(const std::string& t) const {
  const FixtureTensor& ft = tensor(t);
  DOFPOSE_CHECK(ft.i32.empty() || ft.shape.numel() == 0, "fixture ", file, ": tensor '", name,
                "/", t, "' is an integer tensor, expected float32");
  return ft.f32;
}

const std::vector<int32_t>& FixtureCase::i32(const std::string& t) const {
  const FixtureTensor& ft = tensor(t);
  DOFPOSE_CHECK(ft.f32.empty() || ft.shape.numel() == 0, "fixture ", file, ": tensor '", name,
                "/", t, "' is a float tensor, expected int32");
  return ft.i32;
}

namespace {
const nlohmann::json& param(const FixtureCase& c, const std::string& key) {
  if (!c.params.contains(key))
    fail("fixture ", c.file, ": case '", c.name, "' has no parameter '", key, "'");
  return c.params.at(key);
}
}  // namespace

int FixtureCase::param_int(const std::string& key) const { return param(*this, key).get<int>(); }
double FixtureCase::param_double(const std::string& key) const {
  return param(*this, key).get<double>();
}
bool FixtureCase::param_bool(const std::string& key) const {
  return param(*this, key).get<bool>();
}
std::string FixtureCase::param_str(const std::string& key) const {
  return param(*this, key).get<std::string>();
}

std::vector<FixtureCase> load_fixture(const std::string& file_name) {
  const std::string path = std::string(DOFPOSE_FIXTURES_DIR) + "/" + file_name;
  WeightsFile file(path);  // throws naming the file when missing or malformed

  const std::string cases_json = file.metadata_or("cases", "");
  DOFPOSE_CHECK(!cases_json.empty(), "fixture ", path,
                ": metadata has no 'cases' entry (regenerate with tests/make_fixtures.py)");
  nlohmann::json cases;
  try {
    cases = nlohmann::json::parse(cases_json);
  } catch (const nlohmann::json::exception& e) {
    fail("fixture ", path, ": metadata 'cases' is not valid JSON: ", e.what());
  }
  DOFPOSE_CHECK(cases.is_array() && !cases.empty(), "fixture ", path,
                ": metadata 'cases' must be a non-empty JSON list");

  std::vector<FixtureCase> out;
  for (const auto& params : cases) {
    DOFPOSE_CHECK(params.is_object() && params.contains("name") && params["name"].is_string(),
                  "fixture ", path, ": every case needs a string 'name', got ", params.dump());
    FixtureCase c;
    c.file = path;
    c.name = params["name"].get<std::string>();
    c.params = params;
    out.push_back(std::move(c));
  }

  // Distribute the tensors to their cases by the "<case>/" prefix.
  for (const std::string& full : file.names()) {
    const size_t slash = full.find('/');
    DOFPOSE_CHECK(slash != std::string::npos, "fixture ", path, ": tensor '", full,
                  "' is not named <case>/<tensor>");
    const std::string case_name = full.substr(0, slash);
    FixtureCase* owner = nullptr;
    for (FixtureCase& c : out)
      if (c.name == case_name) owner = &c;
    DOFPOSE_CHECK(owner != nullptr, "fixture ", path, ": tensor '", full,
                  "' belongs to no case listed in the metadata");
    const WeightsEntry& e = file.entry(full);
    FixtureTensor t;
    t.shape = e.shape;
    if (e.dtype == DType::I32) {
      const TensorView v = file.raw(full);
      t.i32.resize(size_t(v.numel()));
      if (v.numel() > 0) std::memcpy(t.i32.data(), v.data, v.nbytes());
    } else {
      const Tensor v = file.load_f32(full);
      t.f32.assign(v.f32(), v.f32() + v.numel());
    }
    owner->tensors[full.substr(slash + 1)] = std::move(t);
  }
  return out;
}

CloseReport compare_close(const float* got, int64_t n_got, const std::vector<float>& ref,
                          double atol, double rtol) {
  CloseReport r;
  if (n_got != int64_t(ref.size())) {
    r.ok = false;
    r.size_mismatch = true;
    r.worst_index = n_got;
    r.worst_ref = double(ref.size());
    return r;
  }
  double worst_excess = -1;
  for (int64_t i = 0; i < n_got; ++i) {
    const double g = got[i], e = ref[size_t(i)];
    const double err = std::fabs(g - e);
    const double tol = atol + rtol * std::fabs(e);
    // NaN compares false everywhere: count it as an infinite excess.
    const double excess = std::isnan(err) ? INFINITY : err - tol;
    if (!(err <= tol)) ++r.failures;
    if (!std::isnan(err) && err > r.max_abs_err) r.max_abs_err = err;
    if (excess > worst_excess || r.worst_index < 0) {
      worst_excess = excess;
      r.worst_index = i;
      r.worst_got = g;
      r.worst_ref = e;
      r.worst_abs_err = err;
    }
  }
  r.ok = r.failures == 0;
  return r;
}

std::string CloseReport::message(const std::string& what) const {
  std::ostringstream os;
  os.precision(9);
  if (size_mismatch) {
    os << what << ": got " << worst_index << " elements, expected " << worst_ref;
    return os.str();
  }
  os << what << ": " << failures << " element(s) outside tolerance; worst at index "
     << worst_index << ": got " << worst_got << ", expected " << worst_ref << " (|err| "
     << worst_abs_err << "); max |err| " << max_abs_err;
  return os.str();
}

}  // namespace dofpose::test
