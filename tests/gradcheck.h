// Finite-difference gradient checks for the CPU kernels, without PyTorch.
//
// For an op y = f(x, params) a test picks a random projection v and defines the
// scalar L = sum(v * f(...)), evaluated in float32 like the kernels but summed
// in double. The analytic gradient is the op's backward called with dy = v; the
// numeric one is the central difference (L(x+h) - L(x-h)) / (x+h - x-h) per
// element, where the denominator is the step actually representable in float.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace dofpose::test {

// A small deterministic generator (splitmix64): the same numbers on every platform.
class TestRng {
 public:
  explicit TestRng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0,1)
  float uniform(float lo, float hi) { return lo + float(uniform()) * (hi - lo); }
  float normal() {  // Box-Muller
    const double u1 = std::max(uniform(), 1e-300), u2 = uniform();
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

 private:
  uint64_t state_;
};

inline std::vector<float> random_normal(size_t n, TestRng& rng, float scale = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.normal() * scale;
  return v;
}
inline std::vector<float> random_uniform(size_t n, TestRng& rng, float lo, float hi) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.uniform(lo, hi);
  return v;
}
// Moves values within `margin` of any kink to kink +- 2*margin (same side), so
// a central difference of step < margin never straddles a kink.
inline void keep_away_from(std::vector<float>& v, std::initializer_list<float> kinks,
                           float margin) {
  for (float& x : v)
    for (float k : kinks)
      if (std::fabs(x - k) < margin) x = k + (x >= k ? 2 * margin : -2 * margin);
}

// sum(v * y) in double.
inline double dot(const std::vector<float>& v, const std::vector<float>& y) {
  double s = 0;
  for (size_t i = 0; i < v.size() && i < y.size(); ++i) s += double(v[i]) * double(y[i]);
  return s;
}

struct GradCheckOptions {
  double step = 1e-2;     // central-difference step h
  double atol = 1e-3;     // |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)
  double rtol = 1e-2;
  size_t max_checks = 64; // elements checked; a random subset for bigger tensors
  uint64_t seed = 12345;  // picks the subset
};

struct GradCheckResult {
  bool ok = true;
  size_t checked = 0, failures = 0;
  int64_t worst_index = -1;
  double worst_analytic = 0, worst_numeric = 0, worst_excess = -INFINITY;
  double max_abs_err = 0;  // largest |analytic - numeric| over the checked elements
  std::string message(const std::string& what) const {
    std::ostringstream os;
    os.precision(8);
    os << what << ": " << failures << " of " << checked
       << " checked elements disagree with the finite difference; worst at index "
       << worst_index << ": analytic " << worst_analytic << ", numeric " << worst_numeric
       << "; max |analytic - numeric| " << max_abs_err;
    return os.str();
  }
};

// Checks `analytic` (d loss / d param) against central differences of `loss`,
// which must evaluate L for the CURRENT contents of `param` (the check perturbs
// param in place and restores it).
inline GradCheckResult gradcheck(std::vector<float>& param, const std::vector<float>& analytic,
                                 const std::function<double()>& loss,
                                 const GradCheckOptions& opt = {}) {
  GradCheckResult r;
  if (analytic.size() != param.size()) {
    r.ok = false;
    r.failures = 1;
    r.worst_index = int64_t(analytic.size());
    r.worst_numeric = double(param.size());
    return r;
  }
  std::vector<size_t> idx(param.size());
  std::iota(idx.begin(), idx.end(), size_t(0));
  if (idx.size() > opt.max_checks) {
    TestRng rng(opt.seed);
    for (size_t i = 0; i < opt.max_checks; ++i)  // partial Fisher-Yates
      std::swap(idx[i], idx[i + size_t(rng.next() % (idx.size() - i))]);
    idx.resize(opt.max_checks);
  }
  for (size_t i : idx) {
    const float orig = param[i];
    const float plus = float(double(orig) + opt.step);
    const float minus = float(double(orig) - opt.step);
    param[i] = plus;
    const double lp = loss();
    param[i] = minus;
    const double lm = loss();
    param[i] = orig;
    const double numeric = (lp - lm) / (double(plus) - double(minus));
    const double a = analytic[i];
    const double err = std::fabs(a - numeric);
    const double tol = opt.atol + opt.rtol * std::max(std::fabs(a), std::fabs(numeric));
    const double excess = std::isfinite(err) ? err - tol : INFINITY;
    ++r.checked;
    if (std::isfinite(err)) r.max_abs_err = std::max(r.max_abs_err, err);
    if (!(err <= tol)) ++r.failures;
    if (excess > r.worst_excess) {
      r.worst_excess = excess;
      r.worst_index = int64_t(i);
      r.worst_analytic = a;
      r.worst_numeric = numeric;
    }
  }
  r.ok = r.failures == 0 && r.checked > 0;
  return r;
}

}  // namespace dofpose::test

// CHECK a gradient against finite differences; the message names `what` and
// the worst element on failure.
#define DOFPOSE_GRADCHECK(what, param, analytic, loss, opt)                                 \
  do {                                                                                     \
    const ::dofpose::test::GradCheckResult dofpose_gc_ =                                   \
        ::dofpose::test::gradcheck((param), (analytic), (loss), (opt));                    \
    CHECK_MESSAGE(dofpose_gc_.ok, dofpose_gc_.message(what));                              \
    DOFPOSE_REPORT_GRADCHECK_(what, dofpose_gc_);                                          \
  } while (0)

// Build with -DDOFPOSE_REPORT_ERRORS to print every check's worst element.
#ifdef DOFPOSE_REPORT_ERRORS
#define DOFPOSE_REPORT_GRADCHECK_(what, result) MESSAGE((result).message(what))
#else
#define DOFPOSE_REPORT_GRADCHECK_(what, result) (void)0
#endif
