// Golden fixtures written by tests/make_fixtures.py: one safetensors file per op
// family, tensors named "<case>/<tensor>", per-case parameters as a JSON list in
// the metadata key "cases". This helper opens a file with dofpose::WeightsFile
// and hands back the cases with their tensors copied out, plus the
// element-wise comparison every golden test reports with.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dofpose/tensor.h"

namespace dofpose::test {

struct FixtureTensor {
  Shape shape;
  std::vector<float> f32;    // float tensors
  std::vector<int32_t> i32;  // integer tensors (labels)
};

struct FixtureCase {
  std::string file;  // for error messages
  std::string name;
  nlohmann::json params;
  std::map<std::string, FixtureTensor> tensors;

  bool has(const std::string& tensor) const { return tensors.count(tensor) != 0; }
  // Throw dofpose::Error naming the file, case and tensor when it is missing
  // or of the wrong kind.
  const FixtureTensor& tensor(const std::string& tensor) const;
  const std::vector<float>& f32(const std::string& tensor) const;
  const std::vector<int32_t>& i32(const std::string& tensor) const;
  const Shape& shape(const std::string& tensor) const { return this->tensor(tensor).shape; }
  // A parameter from the case's metadata entry; throws naming it when missing.
  int param_int(const std::string& key) const;
  double param_double(const std::string& key) const;
  bool param_bool(const std::string& key) const;
  std::string param_str(const std::string& key) const;
};

// Opens DOFPOSE_FIXTURES_DIR/<file_name>. A missing or malformed file throws:
// the fixtures are committed, so their absence is a failure, never a skip.
std::vector<FixtureCase> load_fixture(const std::string& file_name);

// The outcome of comparing got against ref with |got - ref| <= atol + rtol*|ref|.
struct CloseReport {
  bool ok = true;
  bool size_mismatch = false;
  int64_t worst_index = -1;  // element with the largest excess over its tolerance
  double worst_got = 0, worst_ref = 0, worst_abs_err = 0;
  double max_abs_err = 0;
  int64_t failures = 0;  // elements outside the tolerance (NaN counts)
  std::string message(const std::string& what) const;
};
CloseReport compare_close(const float* got, int64_t n_got, const std::vector<float>& ref,
                          double atol, double rtol);
inline CloseReport compare_close(const std::vector<float>& got, const std::vector<float>& ref,
                                 double atol, double rtol) {
  return compare_close(got.data(), int64_t(got.size()), ref, atol, rtol);
}

}  // namespace dofpose::test

// CHECK that got (std::vector<float>) matches ref within tolerance; on failure
// the message names `what`, the worst element, its index and both values.
#define DOFPOSE_CHECK_CLOSE(what, got, ref, atol, rtol)                                     \
  do {                                                                                     \
    const ::dofpose::test::CloseReport dofpose_report_ =                                   \
        ::dofpose::test::compare_close((got), (ref), (atol), (rtol));                      \
    CHECK_MESSAGE(dofpose_report_.ok, dofpose_report_.message(what));                      \
    DOFPOSE_REPORT_CLOSE_(what, dofpose_report_);                                          \
  } while (0)

// Build with -DDOFPOSE_REPORT_ERRORS to print every comparison's worst error
// (for reviewing tolerances), passing or not.
#ifdef DOFPOSE_REPORT_ERRORS
#define DOFPOSE_REPORT_CLOSE_(what, report) MESSAGE((report).message(what))
#else
#define DOFPOSE_REPORT_CLOSE_(what, report) (void)0
#endif
