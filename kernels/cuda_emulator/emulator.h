// The CUDA host emulator's core: runs a kernel's threads as fibers on the CPU.
//
// Every CUDA thread is a fiber with its own stack; a fiber runs until it
// reaches a barrier (__syncthreads, a warp collective, a grid or cluster
// sync) and the scheduler resumes the others until everyone concerned has
// arrived. Warp collectives (shuffles, mma) are computed by the scheduler from
// all lanes' inputs at once. What this checks: a kernel's index arithmetic,
// edges, reductions and barrier structure, against the CPU reference, on a
// machine without a GPU. What it cannot: timing, the memory model beyond
// barriers, hardware rounding of approximate intrinsics. See docs/cuda.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Where a fiber is blocked.
enum class Wait { None, Block, Warp, Cluster, Grid, Done };

// One lane's part in a warp collective; the scheduler calls combine once,
// with all participating lanes' parts (nullptr for absent lanes).
struct WarpPart;
using WarpCombine = void (*)(WarpPart* const* lanes);
struct WarpPart {
  WarpCombine combine = nullptr;
  unsigned mask = 0xffffffffu;
  const void* in = nullptr;  // the op's input (lane-owned storage)
  void* out = nullptr;       // where the op's result for this lane goes
  int src = 0;               // shuffle: the lane to read; other ops: free use
  int width = 32;
};

struct Thread;  // a CUDA thread's state (emulator.cpp)

// The current thread's coordinates (valid inside a kernel only).
struct Coords {
  Dim3 thread_idx, block_idx, block_dim, grid_dim;
};
const Coords& coords();

// Barriers, called from device code.
// file:line of the __syncthreads call (the race check compares them; a return
// address would not do: g++ duplicates calls and turns some into tail calls).
void sync_block(const char* file, int line);
void sync_warp(unsigned mask);
void warp_collective(WarpPart& part);
void sync_grid();
void sync_cluster();
unsigned cluster_block_rank();
unsigned cluster_size();
[[noreturn]] void trap(const std::string& why);
int lane_id();

// Per-block storage for a __shared__ declaration (key: a per-site static),
// and the launch's dynamic shared memory.
void* shared_storage(const void* site, size_t bytes, size_t align);
void* dynamic_shared();

// cp.async: queued per thread, completed by wait (all but the newest n groups).
void cp_async(void* dst, const void* src, size_t bytes, bool valid);
void cp_async_commit();
void cp_async_wait(int newest_pending);

struct LaunchShape {
  Dim3 grid, block, cluster;
  size_t dynamic_smem = 0;
  bool cooperative = false;
  std::string name;
};
// Runs the kernel body for every thread of the grid (throws on deadlock or a trap).
void run_kernel(const LaunchShape& shape, const std::function<void()>& body);

// Options, read once from the environment:
//   DOFPOSE_EMU_ORDER=forward|reverse|shuffle  the order fibers resume in
//   after each barrier (thread order, its reverse, or a fresh fixed-seed
//   permutation per sweep): a result that depends on it reveals a missing barrier.
enum class Order { Forward, Reverse, Shuffle };
Order resume_order();

}  // namespace emu

// The running CUDA thread's coordinates, set by the scheduler on every resume.
extern thread_local emu::Dim3 threadIdx, blockIdx, blockDim, gridDim;
