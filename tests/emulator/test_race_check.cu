// The emulator's race check (kernels/cuda_emulator/race_check.h): this file is
// compiled with the memory profile's instrumentation; each kernel has a race, or
// is the same kernel with the barrier that removes it.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <doctest/doctest.h>

#include <string>

#include "kernels/cuda_emulator/race_check.h"

namespace {

namespace rc = emu::race_check;

// Each thread writes its slot, then reads its neighbour's (another warp's for
// thread 31 and 63), with or without the barrier between.
__global__ void neighbour_kernel(float* out, bool barrier) {
  __shared__ float s[64];
  s[threadIdx.x] = float(threadIdx.x);
  if (barrier) __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = s[(threadIdx.x + 1) % 64];
}

// Every thread writes the same shared word (or its own).
__global__ void same_word_kernel(float* out, bool same) {
  __shared__ float s[64];
  s[same ? 0 : threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x % (same ? 1 : 64)];
}

// One warp exchanges through shared memory: ordered by __syncwarp, not by a
// shuffle (CUDA's memory model), not at all without either.
__global__ void warp_exchange_kernel(float* out, int how) {
  __shared__ float s[32];
  s[threadIdx.x] = float(threadIdx.x);
  if (how == 1) __syncwarp();
  if (how == 2) (void)__shfl_sync(0xffffffffu, 1.0f, 0);
  out[threadIdx.x] = s[threadIdx.x ^ 1];
}

// Two threads write the two halves of one 4-byte word: different bytes, no race.
__global__ void half_words_kernel(float* out) {
  __shared__ __half h[64];
  h[threadIdx.x] = __float2half(float(threadIdx.x));
  __syncthreads();
  out[threadIdx.x] = __half2float(h[threadIdx.x]);
}

// A copy into shared memory still in flight across a barrier: the wait must
// come before the barrier that publishes it.
__global__ void copy_in_flight_kernel(const float* src, float* out, bool wait_first) {
  __shared__ float s[64];
  emu::cp_async(&s[threadIdx.x], &src[threadIdx.x], 4, true);
  emu::cp_async_commit();
  if (wait_first) emu::cp_async_wait(0);
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
  emu::cp_async_wait(0);
}

// A two-slot ring: slot k % 2 is refilled while the other is read. Without the
// barrier at the end of an iteration, the copy for k + 2 overwrites slot k % 2
// while slower threads still read it.
__global__ void ring_kernel(const float* src, float* out, int steps, bool barrier_before_refill) {
  __shared__ float s[2][64];
  emu::cp_async(&s[0][threadIdx.x], &src[threadIdx.x], 4, true);
  emu::cp_async_commit();
  float acc = 0;
  for (int k = 0; k < steps; ++k) {
    if (k + 1 < steps) emu::cp_async(&s[(k + 1) % 2][threadIdx.x], &src[(k + 1) * 64 + threadIdx.x], 4, true);
    emu::cp_async_commit();
    emu::cp_async_wait(1);
    __syncthreads();
    acc += s[k % 2][(threadIdx.x + 5) % 64];
    if (barrier_before_refill) __syncthreads();
  }
  emu::cp_async_wait(0);
  out[threadIdx.x] = acc;
}

// Global memory among one block's threads: all write out[0], or each its own.
__global__ void global_same_word_kernel(float* out, bool same) { out[same ? 0 : threadIdx.x] = 1.0f; }

// Between blocks: each block writes its own slot, then reads its neighbour
// block's, ordered by a grid sync or not (a cooperative launch either way).
__global__ void neighbour_block_kernel(float* slots, float* out, bool grid_sync) {
  if (threadIdx.x == 0) slots[blockIdx.x] = float(blockIdx.x);
  if (grid_sync) cooperative_groups::this_grid().sync();
  if (threadIdx.x == 0) out[blockIdx.x] = slots[(blockIdx.x + 1) % gridDim.x];
}

// Two blocks write the same output (a split-K without a reduction), or a block
// reads what another block of the same plain launch writes.
__global__ void blocks_same_output_kernel(float* out) { out[threadIdx.x] = float(blockIdx.x); }
__global__ void read_previous_block_kernel(float* data) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  data[i] = i >= int(blockDim.x) ? data[i - int(blockDim.x)] + 1.0f : 0.0f;
}

// Byte outputs (a dropout mask): block b writes bytes [30 b, 30 b + 30), so
// neighbouring blocks share a 4-byte word, or every block the first 30.
__global__ void byte_mask_kernel(unsigned char* mask, bool overlap) {
  mask[(overlap ? 0 : blockIdx.x * 30) + threadIdx.x] = 1;
}

// WMMA's store is a warp-wide write: warp 1 reads warp 0's tile, with or without a barrier.
__global__ void wmma_store_kernel(float* out, bool barrier) {
  using namespace nvcuda;
  __shared__ float tile[16 * 16];
  if (threadIdx.x < 32) {
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
    wmma::fill_fragment(c, 2.0f);
    wmma::store_matrix_sync(tile, c, 16, wmma::mem_row_major);
  }
  if (barrier) __syncthreads();
  if (threadIdx.x >= 32) out[threadIdx.x - 32] = tile[threadIdx.x - 32];
}

// __syncthreads in both arms of a branch on the thread index: two barriers
// on a GPU (undefined), one for the emulator unless checked.
__global__ void divergent_barrier_kernel(float* out, bool diverge) {
  __shared__ float s[64];
  s[threadIdx.x] = 1.0f;
  if (diverge && threadIdx.x < 32) {
    __syncthreads();
    out[threadIdx.x] = s[63 - threadIdx.x];
  } else {
    __syncthreads();
    out[threadIdx.x] = 2.0f * s[63 - threadIdx.x];  // different tails: g++ keeps two calls
  }
}

struct Buffer {
  float* p = nullptr;
  explicit Buffer(size_t n) {
    REQUIRE(cudaMalloc(&p, n * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaMemset(p, 0, n * sizeof(float)) == cudaSuccess);
  }
  ~Buffer() { cudaFree(p); }
};

// Runs f with the race check on, from zero; returns the hazards found in `kernel`.
template <class F>
uint64_t hazards(const char* kernel, F f) {
  rc::reset();
  rc::set_enabled(true);
  f();
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  rc::set_enabled(false);
  return rc::hazards(kernel);
}

}  // namespace

TEST_CASE("race check: a missing __syncthreads between a shared write and another thread's read") {
  Buffer out(3 * 64);
  // 64 threads each read one word another thread wrote: 64 write-read pairs.
  CHECK(hazards("neighbour_kernel", [&] { neighbour_kernel<<<1, 64>>>(out.p, false); }) == 64);
  const std::string text = rc::report();
  CHECK(text.find("neighbour_kernel") != std::string::npos);
  CHECK(text.find("write-read") != std::string::npos);
  CHECK(text.find("test_race_check.cu:") != std::string::npos);  // names the source lines
  CHECK(hazards("neighbour_kernel", [&] { neighbour_kernel<<<1, 64>>>(out.p, true); }) == 0);
  CHECK(rc::report().find("No hazards") != std::string::npos);
  // Several blocks: each is checked on its own (the same count per block).
  CHECK(hazards("neighbour_kernel", [&] { neighbour_kernel<<<3, 64>>>(out.p, false); }) == 3 * 64);
}

TEST_CASE("race check: threads writing one word are a write-write hazard; their own words are not") {
  Buffer out(64);
  CHECK(hazards("same_word_kernel", [&] { same_word_kernel<<<1, 64>>>(out.p, true); }) == 64 * 63 / 2);
  CHECK(rc::report().find("write-write") != std::string::npos);
  CHECK(hazards("same_word_kernel", [&] { same_word_kernel<<<1, 64>>>(out.p, false); }) == 0);
}

TEST_CASE("race check: inside a warp, __syncwarp orders shared memory, a shuffle does not") {
  Buffer out(32);
  CHECK(hazards("warp_exchange_kernel", [&] { warp_exchange_kernel<<<1, 32>>>(out.p, 0); }) == 32);
  CHECK(hazards("warp_exchange_kernel", [&] { warp_exchange_kernel<<<1, 32>>>(out.p, 1); }) == 0);
  CHECK(hazards("warp_exchange_kernel", [&] { warp_exchange_kernel<<<1, 32>>>(out.p, 2); }) == 32);
}

TEST_CASE("race check: two threads writing the two halves of a word do not race") {
  Buffer out(64);
  CHECK(hazards("half_words_kernel", [&] { half_words_kernel<<<1, 64>>>(out.p); }) == 0);
}

TEST_CASE("race check: cp.async copies race until the wait that completes them") {
  Buffer src(64 * 8), out(64);
  CHECK(hazards("copy_in_flight_kernel", [&] { copy_in_flight_kernel<<<1, 64>>>(src.p, out.p, true); }) == 0);
  // The barrier came before the wait: the copy lands while others read it.
  CHECK(hazards("copy_in_flight_kernel", [&] { copy_in_flight_kernel<<<1, 64>>>(src.p, out.p, false); }) == 64);
  CHECK(hazards("ring_kernel", [&] { ring_kernel<<<1, 64>>>(src.p, out.p, 6, true); }) == 0);
  // Without the second barrier the refill of slot (k + 1) % 2 in iteration k + 1
  // meets the reads of the same slot... in iteration k - 1 + 2: 4 refills, 64 reads each.
  CHECK(hazards("ring_kernel", [&] { ring_kernel<<<1, 64>>>(src.p, out.p, 6, false); }) == 4 * 64);
}

TEST_CASE("race check: global memory among one block's threads") {
  Buffer out(64);
  CHECK(hazards("global_same_word_kernel", [&] { global_same_word_kernel<<<1, 64>>>(out.p, true); }) == 64 * 63 / 2);
  CHECK(rc::report().find("| global |") != std::string::npos);
  CHECK(hazards("global_same_word_kernel", [&] { global_same_word_kernel<<<1, 64>>>(out.p, false); }) == 0);
}

TEST_CASE("race check: global memory between blocks of one launch, and grid syncs that order them") {
  Buffer slots(8), out(8 * 64);
  auto cooperative = [&](bool sync) {
    bool grid_sync = sync;
    void* args[] = {&slots.p, &out.p, &grid_sync};
    REQUIRE(cudaLaunchCooperativeKernel(neighbour_block_kernel, dim3(8), dim3(32), args, 0, nullptr) == cudaSuccess);
  };
  CHECK(hazards("neighbour_block_kernel", [&] { cooperative(true); }) == 0);
  // Every block reads the slot of the next, unordered: 8 write-read pairs.
  CHECK(hazards("neighbour_block_kernel", [&] { cooperative(false); }) == 8);
  CHECK(rc::report().find("global, between blocks") != std::string::npos);
  // A plain launch: the emulator runs block 1 after block 0, a GPU need not.
  CHECK(hazards("blocks_same_output_kernel", [&] { blocks_same_output_kernel<<<2, 64>>>(out.p); }) == 64);
  CHECK(hazards("read_previous_block_kernel", [&] { read_previous_block_kernel<<<4, 64>>>(out.p); }) == 3 * 64);
  // Neighbouring bytes of one word from two blocks are not a race; the same byte is.
  auto* bytes = reinterpret_cast<unsigned char*>(out.p);
  CHECK(hazards("byte_mask_kernel", [&] { byte_mask_kernel<<<4, 30>>>(bytes, false); }) == 0);
  CHECK(hazards("byte_mask_kernel", [&] { byte_mask_kernel<<<4, 30>>>(bytes, true); }) == 3 * 30);
  // Separate launches are ordered by the stream.
  CHECK(hazards("blocks_same_output_kernel", [&] {
    blocks_same_output_kernel<<<1, 64>>>(out.p);
    blocks_same_output_kernel<<<1, 64>>>(out.p);
  }) == 0);
}

TEST_CASE("race check: a block's threads meeting at different __syncthreads (synccheck)") {
  Buffer out(64);
  CHECK(hazards("divergent_barrier_kernel", [&] { divergent_barrier_kernel<<<1, 64>>>(out.p, true); }) == 1);
  CHECK(rc::report().find("divergent __syncthreads") != std::string::npos);
  CHECK(hazards("divergent_barrier_kernel", [&] { divergent_barrier_kernel<<<1, 64>>>(out.p, false); }) == 0);
}

TEST_CASE("race check: WMMA's warp-wide store is seen (uncounted by the profile, not by the check)") {
  Buffer out(64);
  CHECK(hazards("wmma_store_kernel", [&] { wmma_store_kernel<<<1, 64>>>(out.p, false); }) == 32);
  CHECK(hazards("wmma_store_kernel", [&] { wmma_store_kernel<<<1, 64>>>(out.p, true); }) == 0);
}
