// Counts heap allocations made by this process through operator new and
// (for code linked statically into the test binary) malloc & co, so a test
// can prove that a steady-state forward pass allocates nothing.
#pragma once
#include <atomic>
#include <cstdint>

namespace dofpose_test {
extern std::atomic<int64_t> g_allocations;
inline int64_t allocations() { return g_allocations.load(); }
}  // namespace dofpose_test
