// Deterministic vectorisable sums for the CPU reference kernels: element p of
// a run goes to double lane p % kLanes, and the lanes are combined in a fixed
// order. A single serial sum waits for each add (4 cycles on current x86) and
// cannot vectorise without reordering; this order is reordered once, by the
// shape alone, so results never depend on the thread count.
#pragma once

#include <cstdint>

namespace dofpose::cpu {

constexpr int kLanes = 8;

// acc[p % kLanes] += f(p) for p in [0, n).
template <class F>
inline void lane_sums(int64_t n, double (&acc)[kLanes], F f) {
  int64_t p = 0;
  for (; p + kLanes <= n; p += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += f(p + j);
  for (; p < n; ++p) acc[p % kLanes] += f(p);
}

inline double lanes_total(const double (&a)[kLanes]) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

}  // namespace dofpose::cpu
