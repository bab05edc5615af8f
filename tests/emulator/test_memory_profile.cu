// The emulator's memory profile (kernels/cuda_emulator/memory_profile.h): this
// file is compiled with the profile's instrumentation, and each kernel's access
// pattern has a known count on a GPU: sectors per global request, wavefronts
// per shared request (bank conflicts).
#include <cuda_runtime.h>
#include <mma.h>

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kernels/cuda_emulator/memory_profile.h"

namespace {

namespace mp = emu::memory_profile;

// Global: lane i reads in[i * stride] (stride 0: all the same word), writes out[i].
__global__ void global_stride_kernel(const float* in, float* out, int stride) {
  const float v = in[threadIdx.x * stride];
  float local[4];  // on the fiber's stack: registers on a GPU, not counted
  for (int k = 0; k < 4; ++k) local[k] = v * float(k);
  out[threadIdx.x] = local[threadIdx.x % 4];
}

// Global float4: lane i reads 16 bytes at in4[i] (512 contiguous bytes).
__global__ void global_float4_kernel(const float4* in4, float* out) {
  const float4 v = in4[threadIdx.x];
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

// Shared: every lane stores s[i] (conflict-free), then reads s[(i * stride) % 1024].
__global__ void shared_stride_kernel(float* out, int stride) {
  __shared__ float s[1024];
  for (int k = threadIdx.x; k < 1024; k += 32) s[k] = float(k);
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x * stride) % 1024];
}

// A 32x32 tile transposed through shared memory, unpadded (column reads hit one bank) or padded.
template <int Pitch>
__global__ void transpose_kernel(const float* in, float* out) {
  __shared__ float tile[32 * Pitch];
  for (int r = 0; r < 32; ++r) tile[r * Pitch + threadIdx.x] = in[r * 32 + threadIdx.x];
  __syncthreads();
  for (int r = 0; r < 32; ++r) out[r * 32 + threadIdx.x] = tile[threadIdx.x * Pitch + r];
}

// Shared float4 reads: contiguous (conflict-free, 4 wavefronts) or with a
// 32-float stride (every quarter-warp's 8 lanes in the same 4 banks).
__global__ void shared_float4_kernel(float* out, int stride4) {
  __shared__ float4 s[256];
  for (int k = threadIdx.x; k < 256; k += 32) s[k] = make_float4(1, 2, 3, float(k));
  __syncthreads();
  const float4 v = s[(threadIdx.x * stride4) % 256];
  out[threadIdx.x] = v.w;
}

__global__ void cp_async_profile_kernel(const float* src, float* out) {
  __shared__ float s[32];
  emu::cp_async(&s[threadIdx.x], &src[threadIdx.x], 4, true);
  emu::cp_async_commit();
  emu::cp_async_wait(0);
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
}

__global__ void wmma_load_kernel(const float* a, float* out) {
  using namespace nvcuda;
  __shared__ float s[16 * 8];
  for (int k = threadIdx.x; k < 128; k += 32) s[k] = a[k];
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, s, 8);
  out[threadIdx.x] = fa.x[0];
}

// A branch around a load inside a loop: even lanes load in every iteration,
// odd lanes only in the last. On a GPU that is 3 requests of 16 lanes and one
// of 32; the profile pairs each lane's k-th load, so lane 1's only load (the
// last iteration) joins lane 0's first: the counts are off, and flagged.
__global__ void branch_in_loop_kernel(const float* in, float* out) {
  float acc = 0.f;
  for (int it = 0; it < 4; ++it)
    if (threadIdx.x % 2 == 0 || it == 3) acc += in[it * 32 + threadIdx.x];
  out[threadIdx.x] = acc;
}

// The same branch with an unconditional load beside it: every lane runs that
// one each iteration, so the profile pairs the branch's loads by iteration.
__global__ void branch_beside_even_kernel(const float* in, const float* other, float* out) {
  float acc = 0.f;
  for (int it = 0; it < 4; ++it) {
    acc += other[it * 32 + threadIdx.x];
    if (threadIdx.x % 2 == 0 || it == 3) acc += in[it * 32 + threadIdx.x];
  }
  out[threadIdx.x] = acc;
}

// A select inside a loop, as in the BatchNorm backward with its ReLU/dropout
// mask: every lane loads dy, mask and x every iteration, and only the value
// depends on the mask. A GPU predicates this; the profile build must not let
// the host compiler duplicate the loop's tail into each branch (or sink the
// load into one), or the loads would be grouped unevenly.
__global__ void select_in_loop_kernel(const float* dy, const unsigned char* mask, const float* x,
                                      float* y, float* out) {
  float a = 0.f, b = 0.f;
  for (int it = 0; it < 8; ++it) {
    const int i = it * 32 + threadIdx.x;
    const float g0 = dy[i];
    const float g = mask[i] ? g0 * 2.f : 0.f;
    y[i] = mask[i] ? g0 : 0.f;  // a selected store: one instruction, not one per arm
    a += g;
    b += g * x[i];
  }
  out[threadIdx.x] = a + b;
}

struct Buffer {
  float* p = nullptr;
  explicit Buffer(size_t n) {
    REQUIRE(cudaMalloc(&p, n * sizeof(float)) == cudaSuccess);
    std::vector<float> h(n, 1.0f);
    REQUIRE(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  ~Buffer() { cudaFree(p); }
};

// Runs f with the profile on, from zero; returns the named kernel's counts.
template <class F>
mp::KernelCounts profile(const char* kernel, F f) {
  mp::reset();
  mp::set_enabled(true);
  f();
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  mp::set_enabled(false);
  return mp::kernel_counts(kernel);
}

struct Expect {
  uint64_t requests, actual, ideal;
};
void check(const mp::Counts& c, Expect e) {
  CHECK(c.requests == e.requests);
  CHECK(c.actual == e.actual);
  CHECK(c.ideal == e.ideal);
}

}  // namespace

TEST_CASE("memory profile: global sectors per warp request (coalesced, strided, broadcast, float4)") {
  Buffer in(32 * 32 * 4), out(64);
  {
    INFO("coalesced: 32 lanes x 4 bytes = 4 sectors");
    auto k = profile("global_stride_kernel", [&] { global_stride_kernel<<<1, 32>>>(in.p, out.p, 1); });
    CHECK(k.launches == 1);
    check(k.stream[mp::GlobalLoad], {1, 4, 4});
    check(k.stream[mp::GlobalStore], {1, 4, 4});
    CHECK(k.stream[mp::SharedLoad].requests == 0);  // the local array is not memory traffic
  }
  {
    INFO("stride 8 floats: every lane its own sector, 32 where 4 would do");
    auto k = profile("global_stride_kernel", [&] { global_stride_kernel<<<1, 32>>>(in.p, out.p, 8); });
    check(k.stream[mp::GlobalLoad], {1, 32, 4});
  }
  {
    INFO("broadcast: one word for the whole warp, one sector");
    auto k = profile("global_stride_kernel", [&] { global_stride_kernel<<<1, 32>>>(in.p, out.p, 0); });
    check(k.stream[mp::GlobalLoad], {1, 1, 1});
  }
  {
    INFO("two warps: two requests per access");
    auto k = profile("global_stride_kernel", [&] { global_stride_kernel<<<1, 64>>>(in.p, out.p, 1); });
    check(k.stream[mp::GlobalStore], {2, 8, 8});
  }
  {
    INFO("float4: 512 contiguous bytes, 16 sectors");
    auto k = profile("global_float4_kernel", [&] {
      global_float4_kernel<<<1, 32>>>(reinterpret_cast<const float4*>(in.p), out.p);
    });
    check(k.stream[mp::GlobalLoad], {1, 16, 16});
  }
  {
    INFO("an even pattern has no uneven requests");
    auto k = profile("global_stride_kernel", [&] { global_stride_kernel<<<1, 64>>>(in.p, out.p, 1); });
    CHECK(k.stream[mp::GlobalLoad].uneven == 0);
    CHECK(k.stream[mp::GlobalStore].uneven == 0);
  }
}

TEST_CASE("memory profile: a select inside a loop stays even (no tail duplication)") {
  Buffer dy(256), x(256), y(256), out(32);
  unsigned char* mask = nullptr;
  REQUIRE(cudaMalloc(reinterpret_cast<void**>(&mask), 256) == cudaSuccess);
  std::vector<unsigned char> h(256);
  for (size_t i = 0; i < h.size(); ++i) h[i] = (i * 7919u >> 3) % 2;  // half the lanes masked
  REQUIRE(cudaMemcpy(mask, h.data(), h.size(), cudaMemcpyHostToDevice) == cudaSuccess);
  auto k = profile("select_in_loop_kernel", [&] { select_in_loop_kernel<<<1, 32>>>(dy.p, mask, x.p, y.p, out.p); });
  cudaFree(mask);
  // 8 iterations x (dy, mask, x): 24 requests, dy and x 4 sectors, mask 1.
  CHECK(k.stream[mp::GlobalLoad].requests == 24);
  CHECK(k.stream[mp::GlobalLoad].uneven == 0);
  CHECK(k.stream[mp::GlobalLoad].actual == 8 * (4 + 1 + 4));
  // 8 selected stores of 32 lanes, then out: 9 requests of 4 sectors.
  CHECK(k.stream[mp::GlobalStore].requests == 9);
  CHECK(k.stream[mp::GlobalStore].actual == 9 * 4);
}

TEST_CASE("memory profile: lanes that skip an access inside a loop are flagged uneven") {
  Buffer in(4 * 32), out(32);
  auto k = profile("branch_in_loop_kernel", [&] { branch_in_loop_kernel<<<1, 32>>>(in.p, out.p); });
  // Even lanes made 4 loads, odd lanes one: 4 requests (k = 0..3), all from an
  // instruction whose lanes disagree on how often they ran it; the first pairs
  // iterations 0 and 3 (8 sectors for 128 bytes), which is why it is flagged.
  CHECK(k.stream[mp::GlobalLoad].requests == 4);
  CHECK(k.stream[mp::GlobalLoad].uneven == 4);
  CHECK(k.stream[mp::GlobalStore].requests == 1);
  CHECK(k.stream[mp::GlobalStore].uneven == 0);
  const std::string text = mp::report();
  CHECK(text.find("| uneven |") != std::string::npos);
  CHECK(text.find("| 100% |") != std::string::npos);  // the load's line, all of it uneven
}

TEST_CASE("memory profile: a branch beside an unconditional access is paired by iteration") {
  Buffer in(4 * 32), other(4 * 32), out(32);
  auto k = profile("branch_beside_even_kernel",
                   [&] { branch_beside_even_kernel<<<1, 32>>>(in.p, other.p, out.p); });
  // As a GPU counts it: `other` 4 coalesced requests (4 sectors each); `in`
  // 3 requests of the 16 even lanes (every other float of 128 bytes: 4
  // sectors for 64 bytes, ideal 2) and one of all 32 lanes (4, ideal 4).
  const mp::Counts& c = k.stream[mp::GlobalLoad];
  CHECK(c.requests == 8);
  CHECK(c.actual == 4 * 4 + 3 * 4 + 4);
  CHECK(c.ideal == 4 * 4 + 3 * 2 + 4);
  CHECK(c.uneven == 4);  // the branch's loads: lanes ran them 4 and 1 times
}

TEST_CASE("memory profile: shared-memory wavefronts count bank conflicts") {
  Buffer out(32 * 32), in(32 * 32);
  const struct {
    int stride;
    uint64_t wavefronts;
  } cases[] = {{1, 1}, {2, 2}, {4, 4}, {32, 32}, {33, 1}, {0, 1}};  // 0: broadcast
  for (const auto& c : cases) {
    CAPTURE(c.stride);
    auto k = profile("shared_stride_kernel", [&] { shared_stride_kernel<<<1, 32>>>(out.p, c.stride); });
    check(k.stream[mp::SharedStore], {32, 32, 32});  // the fill: conflict-free
    check(k.stream[mp::SharedLoad], {1, c.wavefronts, 1});
  }
  {
    INFO("transpose through an unpadded 32x32 tile: each column read is a 32-way conflict");
    auto k = profile("transpose_kernel<32>", [&] { transpose_kernel<32><<<1, 32>>>(in.p, out.p); });
    check(k.stream[mp::SharedStore], {32, 32, 32});
    check(k.stream[mp::SharedLoad], {32, 32 * 32, 32});
    check(k.stream[mp::GlobalLoad], {32, 32 * 4, 32 * 4});
  }
  {
    INFO("the same tile padded to 33 floats a row: conflict-free");
    auto k = profile("transpose_kernel<33>", [&] { transpose_kernel<33><<<1, 32>>>(in.p, out.p); });
    check(k.stream[mp::SharedLoad], {32, 32, 32});
  }
  {
    INFO("float4: 4 wavefronts (quarter-warp phases) when contiguous; 8-way within a phase at 32 floats");
    auto k = profile("shared_float4_kernel", [&] { shared_float4_kernel<<<1, 32>>>(out.p, 1); });
    check(k.stream[mp::SharedLoad], {1, 4, 4});
    k = profile("shared_float4_kernel", [&] { shared_float4_kernel<<<1, 32>>>(out.p, 8); });
    check(k.stream[mp::SharedLoad], {1, 32, 4});
    INFO("a broadcast float4 still returns 512 bytes to the registers: 4 wavefronts, no excess");
    k = profile("shared_float4_kernel", [&] { shared_float4_kernel<<<1, 32>>>(out.p, 0); });
    check(k.stream[mp::SharedLoad], {1, 4, 4});
  }
}

TEST_CASE("memory profile: cp.async is a global load and a shared store; WMMA loads are not counted") {
  Buffer in(128), out(32);
  auto k = profile("cp_async_profile_kernel", [&] { cp_async_profile_kernel<<<1, 32>>>(in.p, out.p); });
  check(k.stream[mp::GlobalLoad], {1, 4, 4});
  check(k.stream[mp::SharedStore], {1, 1, 1});
  check(k.stream[mp::SharedLoad], {1, 1, 1});
  k = profile("wmma_load_kernel", [&] { wmma_load_kernel<<<1, 32>>>(in.p, out.p); });
  check(k.stream[mp::SharedStore], {4, 4, 4});
  CHECK(k.stream[mp::SharedLoad].requests == 0);
}

TEST_CASE("memory profile: the report lists kernels and names the source line of the worst access") {
  Buffer out(32);
  profile("shared_stride_kernel", [&] { shared_stride_kernel<<<1, 32>>>(out.p, 32); });
  const std::string text = mp::report();
  CHECK(text.find("| `shared_stride_kernel` | 1 |") != std::string::npos);
  CHECK(text.find("shared load") != std::string::npos);
  // With addr2line (binutils) the site is a source line; without, object+offset.
  CHECK((text.find("| tests/emulator/test_memory_profile.cu:38 |") != std::string::npos ||
         text.find("+0x") != std::string::npos));
  MESSAGE(text);
  CHECK(mp::kernel_counts("never_launched").launches == 0);
}
