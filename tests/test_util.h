// Helpers shared by the CPU test files: capturing a dofpose::Error message,
// temporary directories, running Python, locating the optional ../shared data,
// and small numeric inputs.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dofpose/tensor.h"

namespace dofpose::nn {
struct HourglassConfig;
class Module;
}

namespace dofpose_test {

// Whether `piece` occurs in `s` (error messages name what they should).
inline bool contains(const std::string& s, const std::string& piece) {
  return s.find(piece) != std::string::npos;
}

// A CPU float32 tensor of uniform values in [lo, hi) from random_floats(seed).
dofpose::Tensor random_tensor(dofpose::Shape s, uint32_t seed, float lo = -1.0f, float hi = 1.0f);
// Same shape, dtype and bytes.
bool same_bits(const dofpose::TensorView& a, const dofpose::TensorView& b);

// A 2-stack hourglass with both heads at 64x64 input and 16 features: every
// layer type, fast enough for bit-for-bit comparisons of whole passes.
dofpose::nn::HourglassConfig compact_hourglass_config();
// The smallest useful hourglass (2 stacks, 8 features, 32x32 input, both
// heads): for tests of files, command lines and errors, not of numerics.
dofpose::nn::HourglassConfig tiny_hourglass_config(int joints = 3);
// Every buffer of m (BatchNorm running statistics) away from (0, 1):
// running_var uniform in [0.5, 2), the others in [-0.3, 0.3); buffer i from
// random_tensor seed seed + 1 + i. Exercises the folded inference BatchNorms.
void randomise_bn_buffers(dofpose::nn::Module& m, uint32_t seed);
// Runs fn with `threads` OpenMP threads (just fn without OpenMP), restoring the setting.
void with_threads(int threads, const std::function<void()>& fn);

// What error_of returns when nothing was thrown (kept distinct from any real message).
inline constexpr const char* kNoError = "(no error)";

// The message of the dofpose::Error that `f` throws, or kNoError when it throws none.
// Other exception types propagate, so an unexpected std::exception still fails the test.
std::string error_of(const std::function<void()>& f);

// A fresh directory /tmp/dofpose-<tag>-XXXXXX (mkdtemp), removed with its contents
// at scope exit. Not copyable: only one owner may delete it.
struct TempDir {
  explicit TempDir(const std::string& tag = "test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return path + "/" + name; }
  // The names of the entries directly inside, sorted.
  std::vector<std::string> listing() const;

  std::string path;
};

// `s` single-quoted for /bin/sh (embedded quotes escaped).
std::string shell_quote(const std::string& s);

// Runs `cmd` with /bin/sh, stderr merged into stdout; `output` receives the text.
// Returns the exit status, or -1 when the shell could not be started or did not exit normally.
int run_command(const std::string& cmd, std::string* output);

// True when the environment variable CI is exactly "true": optional inputs
// (Python with numpy, ../shared data) are then required, and their absence fails.
bool ci_required();

// True when the Python found at configure time (DOFPOSE_PYTHON) can import numpy.
// Otherwise the current test is skipped with a MESSAGE saying `what` and why,
// or FAILs when ci_required().
bool python_with_numpy(const std::string& what);

// Runs the Python script at `script_path` with `args` (each shell-quoted) and returns
// its output; REQUIREs exit status 0, showing the output when it is not.
std::string run_python(const std::string& script_path, const std::vector<std::string>& args);

// Writes `source` to a script in `dir` and runs it as run_python does.
std::string run_python_source(const TempDir& dir, const std::string& source,
                              const std::vector<std::string>& args);

// DOFPOSE_SOURCE_DIR/../shared/<rel>, whether or not it exists.
std::string shared_path(const std::string& rel);

// The path of a file in ../shared, or "" after a MESSAGE naming the missing path
// (the caller then returns: the test is skipped). FAILs instead when ci_required().
std::string require_shared(const std::string& rel);

// A program of this build: <build>/<rel> (the tests run from <build>/tests/).
std::string build_program_path(const std::string& rel = "dofpose");

// The dofpose program, or "" after a MESSAGE saying it is not built (the
// caller then returns: the test is skipped). FAILs instead when ci_required().
std::string require_dofpose_program();

// n floats uniform in [lo, hi) from std::mt19937(seed): the same values on every run.
std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f);

// Row-major rotation by `angle` radians about `axis` (normalised here; Rodrigues' formula).
std::array<double, 9> rotation_matrix(std::array<double, 3> axis, double angle);

}  // namespace dofpose_test
