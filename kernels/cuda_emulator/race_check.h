// The CUDA host emulator's race check: compute-sanitizer's racecheck, on the CPU.
//
// The emulator runs a block's threads one after another between barriers, so a
// kernel that forgot a __syncthreads usually still computes the right numbers
// here, and only a GPU would show the race. This check finds such hazards from
// the accesses themselves, whatever the order the threads happened to run in.
// It uses the memory profile's instrumented build (-DDOFPOSE_EMU_MEMORY_PROFILE=ON,
// every load and store logged per thread, memory_profile.h). When a block meets
// at a barrier (or its threads end), every 4-byte word that two different
// threads touched since the last barrier, at least one of them writing, with
// overlapping bytes, is a hazard, unless both threads are in one warp and a
// __syncwarp() lies between the two accesses. Checked: shared memory and the
// device allocations (global memory) among one block's threads; and global
// memory between blocks of one launch: a word one block writes and another
// block reads or writes, unless a grid or cluster sync orders them (each
// word's last write and last read are kept for the launch). A cp.async copy
// writes its destination from the instruction that issues it until the wait
// that completes it, so a copy in flight across a barrier is a write in each
// interval it spans. Shuffles and other warp collectives do not order memory
// (CUDA's memory model: only __syncwarp does). Limits: atomics are not
// modelled (the kernels use none); between blocks, a word keeps only its last
// write and last read (plus whether other blocks read it too), and accesses
// narrower than 4 bytes are tracked per byte, wider ones per word, the two
// kinds not compared with each other.
//
// Also checked, as compute-sanitizer's synccheck does: a block's threads that
// meet at __syncthreads calls on different source lines (a barrier inside
// divergent code: undefined in CUDA, the emulator would release them together).
//
// Turn it on with DOFPOSE_EMU_RACECHECK=stderr or =<file>: the report is
// written at exit, and a process that found hazards exits with status 1 (like
// `compute-sanitizer --tool racecheck --error-exitcode 1`). Tests use set_enabled.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda_emulator/memory_profile.h"

namespace emu::race_check {

bool enabled();
void set_enabled(bool on);
void reset();

// A launch starts: forget the previous launch's global accesses.
void begin_launch();

struct BlockPlace {
  unsigned block;  // linear block index in the grid
  unsigned wave;   // blocks resident together (a cluster, a cooperative grid) share it
  unsigned epoch;  // grid / cluster syncs the wave has passed
};
// Checks one block's accesses since its last barrier (lanes[t] is thread t of
// the block; n threads) among themselves, and its global accesses against
// other blocks' in this launch. Does not clear the logs.
void check_block(const std::string& kernel, const BlockPlace& at, memory_profile::Lane* const* lanes, int n,
                 const std::vector<memory_profile::Range>& shared);

// A block's threads met at __syncthreads calls on different source lines
// (`sites`, "file:line", at least two): a hazard (synccheck's "divergent barrier").
void check_barrier(const std::string& kernel, unsigned block_linear, const std::vector<std::string>& sites);

// Hazards found so far: pairs of accesses (one per pair of threads and word),
// and how many of them were in kernels whose name contains `kernel` ("" = all).
uint64_t hazards(const std::string& kernel = "");
// One line per (kernel, memory, the two instructions): count and a first example.
std::string report();

}  // namespace emu::race_check
