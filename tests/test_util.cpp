#include "tests/test_util.h"

#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/module.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "dofpose/error.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fs = std::filesystem;

namespace dofpose_test {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const dofpose::Error& e) {
    return e.what();
  }
  return kNoError;
}

TempDir::TempDir(const std::string& tag) {
  std::string tmpl = "/tmp/dofpose-" + tag + "-XXXXXX";
  const char* p = ::mkdtemp(tmpl.data());
  REQUIRE_MESSAGE(p != nullptr, "mkdtemp(", tmpl, ") failed: ", std::strerror(errno));
  path = p;
}

TempDir::~TempDir() {
  std::error_code ec;  // best effort: a destructor must not throw
  fs::remove_all(path, ec);
}

std::vector<std::string> TempDir::listing() const {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int run_command(const std::string& cmd, std::string* output) {
  output->clear();
  FILE* pipe = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output->append(buf, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool ci_required() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

bool python_with_numpy(const std::string& what) {
  const std::string python = DOFPOSE_PYTHON;
  std::string probe;
  if (!python.empty() && run_command(shell_quote(python) + " -c 'import numpy'", &probe) == 0) return true;
  while (!probe.empty() && (probe.back() == '\n' || probe.back() == '\r')) probe.pop_back();
  const std::string why = python.empty() ? std::string("no Python interpreter was found at configure time")
                                         : shell_quote(python) + " cannot import numpy: " + probe;
  if (ci_required()) FAIL(what, " needs Python with numpy (CI=true): ", why);
  MESSAGE("skipping ", what, ": ", why);
  return false;
}

std::string run_python(const std::string& script_path, const std::vector<std::string>& args) {
  std::string cmd = shell_quote(DOFPOSE_PYTHON) + " " + shell_quote(script_path);
  for (const std::string& a : args) cmd += " " + shell_quote(a);
  std::string out;
  const int rc = run_command(cmd, &out);
  INFO("command: ", cmd, "\noutput:\n", out);
  REQUIRE(rc == 0);
  return out;
}

std::string run_python_source(const TempDir& dir, const std::string& source,
                              const std::vector<std::string>& args) {
  const std::string path = dir.file("script.py");
  std::ofstream(path) << source;
  return run_python(path, args);
}

std::string shared_path(const std::string& rel) { return std::string(DOFPOSE_SOURCE_DIR) + "/../shared/" + rel; }

std::string require_shared(const std::string& rel) {
  const std::string p = shared_path(rel);
  if (fs::exists(p)) return p;
  if (ci_required()) FAIL("missing shared data file ", p, " (CI=true: shared/ must be present)");
  MESSAGE("skipping: missing shared data file ", p);
  return "";
}

std::string build_program_path(const std::string& rel) {
  return (fs::read_symlink("/proc/self/exe").parent_path().parent_path() / rel).string();
}

std::string require_dofpose_program() {
  const std::string program = build_program_path();
  if (fs::exists(program)) return program;
  if (ci_required()) FAIL("the dofpose program is missing: " << program);
  MESSAGE("skipped: build the dofpose_cli target for this test (" << program << ")");
  return "";
}

std::vector<float> random_floats(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::array<double, 9> rotation_matrix(std::array<double, 3> axis, double angle) {
  const double n = std::sqrt(axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]);
  for (double& a : axis) a /= n;
  const double c = std::cos(angle), s = std::sin(angle), t = 1 - c;
  const double x = axis[0], y = axis[1], z = axis[2];
  return {t * x * x + c,     t * x * y - s * z, t * x * z + s * y, t * x * y + s * z, t * y * y + c,
          t * y * z - s * x, t * x * z - s * y, t * y * z + s * x, t * z * z + c};
}

dofpose::Tensor random_tensor(dofpose::Shape s, uint32_t seed, float lo, float hi) {
  const std::vector<float> v = random_floats(size_t(s.numel()), seed, lo, hi);
  return dofpose::Tensor::from_floats(s, v.data());
}

bool same_bits(const dofpose::TensorView& a, const dofpose::TensorView& b) {
  return a.shape == b.shape && a.dtype == b.dtype && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

dofpose::nn::HourglassConfig tiny_hourglass_config(int joints) {
  dofpose::nn::HourglassConfig c;
  c.stacks = 2;
  c.num_feats = 8;
  c.num_joints = joints;
  c.input_size = 32;
  c.depth = 2;
  c.stem_channels = 4;
  c.attribute_channels = 4;
  c.domain_hidden = 4;
  return c;
}

dofpose::nn::HourglassConfig compact_hourglass_config() {
  dofpose::nn::HourglassConfig c;
  c.stacks = 2;
  c.num_feats = 16;
  c.num_joints = 4;
  c.input_size = 64;
  c.depth = 2;
  c.stem_channels = 8;
  c.attribute_channels = 4;
  c.domain_hidden = 4;
  return c;
}

void randomise_bn_buffers(dofpose::nn::Module& m, uint32_t seed) {
  for (const dofpose::nn::Buffer& b : m.buffers()) {
    const bool var = b.name.find("running_var") != std::string::npos;
    copy(random_tensor(b.value->shape(), ++seed, var ? 0.5f : -0.3f, var ? 2.f : 0.3f), *b.value);
  }
}

void with_threads(int threads, const std::function<void()>& fn) {
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  fn();
  omp_set_num_threads(saved);
#else
  (void)threads;
  fn();
#endif
}

}  // namespace dofpose_test
