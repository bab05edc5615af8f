// The CUDA host emulator's memory profile: how well each kernel's warps use
// global and shared memory, counted the way Nsight Compute counts it.
//
// Kernel code compiled with -fsanitize=thread (-DDOFPOSE_EMU_MEMORY_PROFILE=ON;
// always for tests/emulator) calls a hook on every load and store; we supply the
// hooks (memory_profile.cpp) instead of ThreadSanitizer's runtime. Each lane
// logs (site, address, bytes); when its block meets at a barrier (or the wave
// ends), the k-th access of a site by each lane of a warp becomes one warp
// request, as on a GPU whose warps reconverge:
//   global: 32-byte sectors the request touches; ideal = its distinct bytes / 32
//   shared: wavefronts = per phase (all 32 lanes for <= 4-byte accesses, 16 for
//           8-byte, 8 for 16-byte), the most distinct 4-byte words any one of the
//           32 banks must deliver; ideal = the bytes the lanes move / 128 (128
//           bytes a cycle reach the registers, so a broadcast float4 load still
//           takes 4; sm_7x's faster uniform pairs are not modelled)
// cp.async counts as a global load plus a shared store. WMMA load/store_matrix_sync
// are not counted (their fragment layout is unspecified). Enabled by the
// environment (DOFPOSE_EMU_MEMORY=stderr or a file: report at exit) or by
// set_enabled (tests).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace emu::memory_profile {

struct Access {
  const void* site;  // the load/store instruction (a return address into the kernel)
  uintptr_t addr;
  uint32_t bytes;
  bool write;
  bool counted;         // false inside a Pause: seen by the race check, not by the profile
  uint32_t warp_epoch;  // the lane's __syncwarp count since its block's last barrier
};

// One CUDA thread's log since its block last met at a barrier.
struct Lane {
  std::vector<Access> log;
  uintptr_t stack_lo = 0, stack_hi = 0;  // the fiber's stack: locals are registers on a GPU
  int paused = 0;                        // inside an emulated warp-wide op that is not counted
  uint32_t warp_epoch = 0;               // __syncwarp()s since the block's last barrier (race check)
};

// The running fiber's lane (set by the scheduler on every resume; nullptr when
// neither the profile nor the race check (race_check.h) is on).
extern thread_local Lane* t_lane;

bool enabled();
void set_enabled(bool on);
void reset();

inline void record(const void* site, const void* addr, size_t bytes, bool write) {
  Lane* l = t_lane;
  if (!l) return;
  const auto a = reinterpret_cast<uintptr_t>(addr);
  if (a >= l->stack_lo && a < l->stack_hi) return;
  l->log.push_back({site, a, uint32_t(bytes), write, l->paused == 0, l->warp_epoch});
}

// RAII: accesses inside are not counted by the profile (emulated WMMA loads
// and stores); the race check still sees them.
struct Pause {
  Lane* l = t_lane;
  Pause() { if (l) ++l->paused; }
  ~Pause() { if (l) --l->paused; }
};

struct Range {
  uintptr_t lo, hi;
};
// Turns the logs of one warp's lanes (lanes[i] may be nullptr) into requests,
// counted for `kernel`; clears the logs. `shared`: the block's shared memory.
void flush_warp(const std::string& kernel, Lane* const* lanes, int n, const std::vector<Range>& shared);
void count_launch(const std::string& kernel);

enum Stream { GlobalLoad, GlobalStore, SharedLoad, SharedStore, kStreams };
struct Counts {
  uint64_t requests = 0;
  uint64_t actual = 0;  // sectors (global) or wavefronts (shared)
  uint64_t ideal = 0;
  uint64_t bytes = 0;   // distinct bytes the requests asked for
  // Requests of an instruction whose lanes ran it a different number of times
  // between two barriers. Either some lanes left a loop early (the grouping is
  // right) or some skipped the access in a middle iteration (a branch), and
  // then the k-th access of one lane is paired with another iteration's of
  // another lane and the counts overstate: read such lines with care.
  uint64_t uneven = 0;
};
struct KernelCounts {
  uint64_t launches = 0;
  Counts stream[kStreams];
};
// "file:line (from file:line)" of each instruction address (addr2line on the
// object that holds it; the kernels need line tables: -g1).
std::map<const void*, std::string> source_lines(const std::vector<const void*>& sites);

// Writes an at-exit report to `destination` ("stderr" or a file path) and
// says on stderr where `what` went (the race check's report shares it).
void write_report(const std::string& destination, const std::string& text, const char* what);

// This process's counts for one kernel (zeros if it never ran while enabled).
KernelCounts kernel_counts(const std::string& kernel);
// The per-kernel table and the source lines with the most excess traffic.
std::string report(size_t top_sites = 25);

}  // namespace emu::memory_profile
