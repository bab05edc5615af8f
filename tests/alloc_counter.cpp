#include "tests/alloc_counter.h"

#include <cstdlib>
#include <new>

namespace dofpose_test {
std::atomic<int64_t> g_allocations{0};
}

using dofpose_test::g_allocations;

extern "C" {
void* __real_malloc(std::size_t);
void* __real_calloc(std::size_t, std::size_t);
void* __real_realloc(void*, std::size_t);
void* __real_aligned_alloc(std::size_t, std::size_t);
int __real_posix_memalign(void**, std::size_t, std::size_t);
}

void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = __real_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  ++g_allocations;
  std::size_t al = static_cast<std::size_t>(a);
  if (void* p = __real_aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) { return ::operator new(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

// malloc family, for calls from objects linked into this binary (libdofpose is
// static by default): the link uses -Wl,--wrap=malloc etc.
extern "C" {
void* __wrap_malloc(std::size_t n) { ++g_allocations; return __real_malloc(n); }
void* __wrap_calloc(std::size_t a, std::size_t b) { ++g_allocations; return __real_calloc(a, b); }
void* __wrap_realloc(void* p, std::size_t n) { ++g_allocations; return __real_realloc(p, n); }
void* __wrap_aligned_alloc(std::size_t a, std::size_t n) {
  ++g_allocations;
  return __real_aligned_alloc(a, n);
}
int __wrap_posix_memalign(void** p, std::size_t a, std::size_t n) {
  ++g_allocations;
  return __real_posix_memalign(p, a, n);
}
}
