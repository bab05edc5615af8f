// Fibers and the barrier scheduler of the CUDA host emulator (see emulator.h).
#include "kernels/cuda_emulator/emulator.h"
#include "kernels/cuda_emulator/memory_profile.h"
#include "kernels/cuda_emulator/race_check.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <algorithm>
#include <memory>
#include <new>
#include <stdexcept>
#include <unordered_map>
#include <vector>

thread_local emu::Dim3 threadIdx, blockIdx, blockDim, gridDim;

// AddressSanitizer must be told about stack switches (else exceptions thrown
// on a fiber stack confuse it); a no-op without it.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
// An abandoned fiber's frames never returned: clear their redzones before reuse.
#define EMU_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#define EMU_START_SWITCH(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define EMU_FINISH_SWITCH(save, bottom, size) __sanitizer_finish_switch_fiber(save, bottom, size)
#else
#define EMU_START_SWITCH(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#define EMU_FINISH_SWITCH(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#define EMU_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if !defined(__x86_64__)
#error "the CUDA host emulator's fiber switch is written for x86-64"
#endif

// Saves the callee-saved registers on the current stack, stores its pointer in
// *save, loads `load` and returns into the fiber whose stack that is.
extern "C" void emu_fiber_switch(void** save, void* load);
asm(R"(
.text
.globl emu_fiber_switch
.type emu_fiber_switch,@function
emu_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_fiber_switch,.-emu_fiber_switch
.section .note.GNU-stack,"",@progbits
.text
)");

namespace emu {
namespace {

constexpr size_t kStackBytes = 128 * 1024;  // kernels keep small frames; a guard page below

struct Fiber {
  char* base = nullptr;  // mapping (guard page first)
  void* sp = nullptr;
};

struct Copy {
  void* dst;
  const void* src;
  size_t bytes;
  bool valid;
  const void* site;  // the issuing instruction (race check)
};

// Shared memory: exactly the declared bytes, so AddressSanitizer sees overruns.
struct AlignedDelete {
  size_t align = 16;
  void operator()(char* p) const { ::operator delete(p, std::align_val_t(align)); }
};
std::unique_ptr<char, AlignedDelete> aligned_bytes(size_t bytes, size_t align) {
  align = std::max<size_t>(align, 16);
  char* p = static_cast<char*>(::operator new(bytes ? bytes : 1, std::align_val_t(align)));
  std::memset(p, 0xff, bytes);  // garbage, as fresh shared memory: NaN exposes reads before writes
  return std::unique_ptr<char, AlignedDelete>(p, AlignedDelete{align});
}

struct BlockState {
  Dim3 idx;
  int first = 0, count = 0;  // threads [first, first + count) of the wave
  int cluster_rank = 0;
  std::unordered_map<const void*, std::unique_ptr<char, AlignedDelete>> shared;
  std::unique_ptr<char, AlignedDelete> dynamic;
  std::vector<memory_profile::Range> shared_ranges;  // all of the above, for the memory profile
};

}  // namespace

struct Thread {
  Coords c;
  int block = 0;  // index into the wave's blocks
  int linear = 0;
  Wait wait = Wait::None;
  WarpPart* part = nullptr;
  unsigned warp_mask = 0;
  const char* barrier_file = nullptr;  // the __syncthreads it waits at (race check)
  int barrier_line = 0;
  std::deque<Copy> copies;
  std::vector<size_t> group_sizes;  // committed groups, oldest first
  size_t uncommitted = 0;
  memory_profile::Lane lane;
};

namespace {

struct Wave {
  const LaunchShape* shape = nullptr;
  const std::function<void()>* body = nullptr;
  std::vector<BlockState> blocks;
  std::vector<Thread> threads;
  std::string error;
  bool logging = false;  // memory profile or race check: lanes log their accesses
  unsigned index = 0;    // the wave's first block (race check)
  unsigned syncs = 0;    // grid / cluster syncs passed (race check)
};

thread_local std::vector<Fiber> t_fibers;
thread_local Thread* t_current = nullptr;
thread_local Wave* t_wave = nullptr;
thread_local void* t_scheduler_sp = nullptr;
thread_local const void* t_scheduler_bottom = nullptr;  // the scheduler's stack (for ASan)
thread_local size_t t_scheduler_size = 0;

// A fiber hands control back to the scheduler (and later resumes here).
void switch_to_scheduler(Fiber& f) {
  void* fake = nullptr;
  EMU_START_SWITCH(&fake, t_scheduler_bottom, t_scheduler_size);
  emu_fiber_switch(&f.sp, t_scheduler_sp);
  EMU_FINISH_SWITCH(fake, nullptr, nullptr);
}

[[noreturn]] void fiber_main();

void fiber_reset(Fiber& f) {
  EMU_UNPOISON(f.base + getpagesize(), kStackBytes);
  auto* top = reinterpret_cast<uintptr_t*>(f.base + getpagesize() + kStackBytes);
  *--top = 0;                                         // fiber_main's (never used) return address
  *--top = reinterpret_cast<uintptr_t>(&fiber_main);  // emu_fiber_switch returns here
  for (int i = 0; i < 6; ++i) *--top = 0;             // rbp rbx r12..r15
  f.sp = top;
}

Fiber& fiber(size_t i) {
  while (t_fibers.size() <= i) {
    const size_t page = getpagesize();
    void* m = mmap(nullptr, page + kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("CUDA emulator: cannot map a fiber stack");
    mprotect(m, page, PROT_NONE);  // overflow faults instead of corrupting a neighbour
    Fiber f;
    f.base = static_cast<char*>(m);
    fiber_reset(f);
    t_fibers.push_back(f);
  }
  return t_fibers[i];
}

void complete_copies(Thread& t, size_t n) {
  for (size_t i = 0; i < n && !t.copies.empty(); ++i) {
    const Copy& c = t.copies.front();
    if (c.valid) std::memcpy(c.dst, c.src, c.bytes);
    else std::memset(c.dst, 0, c.bytes);
    t.copies.pop_front();
  }
}

[[noreturn]] void fiber_main() {
  EMU_FINISH_SWITCH(nullptr, &t_scheduler_bottom, &t_scheduler_size);
  for (;;) {
    Thread* t = t_current;
    try {
      (*t_wave->body)();
    } catch (const std::exception& e) {
      if (t_wave->error.empty()) t_wave->error = e.what();
    } catch (...) {
      if (t_wave->error.empty()) t_wave->error = "unknown exception in device code";
    }
    complete_copies(*t, t->copies.size());
    t->wait = Wait::Done;
    switch_to_scheduler(t_fibers[size_t(t - t_wave->threads.data())]);
  }
}

Thread& current() {
  if (!t_current) throw std::logic_error("CUDA emulator: device function called outside a kernel");
  return *t_current;
}

void block_until(Wait w) {
  Thread& t = current();
  t.wait = w;
  switch_to_scheduler(t_fibers[size_t(&t - t_wave->threads.data())]);
}

Order read_order() {
  const char* e = std::getenv("DOFPOSE_EMU_ORDER");
  if (!e || !*e || std::strcmp(e, "forward") == 0) return Order::Forward;
  if (std::strcmp(e, "reverse") == 0) return Order::Reverse;
  if (std::strcmp(e, "shuffle") == 0) return Order::Shuffle;
  throw std::runtime_error(std::string("DOFPOSE_EMU_ORDER=") + e +
                           ": expected forward, reverse or shuffle");
}

std::string where(const Thread& t) {
  const Coords& c = t.c;
  return "block (" + std::to_string(c.block_idx.x) + "," + std::to_string(c.block_idx.y) + "," +
         std::to_string(c.block_idx.z) + ") thread (" + std::to_string(c.thread_idx.x) + "," +
         std::to_string(c.thread_idx.y) + "," + std::to_string(c.thread_idx.z) + ")";
}

const char* wait_name(Wait w) {
  switch (w) {
    case Wait::Block: return "__syncthreads";
    case Wait::Warp: return "a warp collective";
    case Wait::Cluster: return "a cluster sync";
    case Wait::Grid: return "a grid sync";
    default: return "nothing";
  }
}

// At a barrier: the block's logged accesses are checked for races and become
// the memory profile's warp requests; then the logs start afresh.
void flush_block(Wave& w, const BlockState& b) {
  if (!w.logging) return;
  std::vector<memory_profile::Lane*> lanes(size_t(b.count));
  for (int i = 0; i < b.count; ++i) lanes[size_t(i)] = &w.threads[size_t(b.first + i)].lane;
  if (race_check::enabled()) {
    const auto block_linear = unsigned(b.idx.x + w.shape->grid.x * (b.idx.y + w.shape->grid.y * b.idx.z));
    race_check::check_block(w.shape->name, {block_linear, w.index, w.syncs}, lanes.data(), b.count,
                            b.shared_ranges);
  }
  if (memory_profile::enabled()) {
    for (int w0 = 0; w0 < b.count; w0 += 32)
      memory_profile::flush_warp(w.shape->name, lanes.data() + w0, std::min(32, b.count - w0), b.shared_ranges);
  }
  for (int i = 0; i < b.count; ++i) {
    Thread& t = w.threads[size_t(b.first + i)];
    t.lane.log.clear();
    t.lane.warp_epoch = 0;
    // A copy still in flight writes its destination in the next interval too.
    for (const Copy& c : t.copies)
      t.lane.log.push_back({c.site, reinterpret_cast<uintptr_t>(c.dst), uint32_t(c.bytes), true, false, 0});
  }
}

// Releases every barrier whose participants have all arrived; returns whether any did.
bool release(Wave& w) {
  bool any = false;
  // Block barriers.
  for (const BlockState& b : w.blocks) {
    int live = 0, waiting = 0;
    for (int i = b.first; i < b.first + b.count; ++i) {
      if (w.threads[i].wait == Wait::Done) continue;
      ++live;
      waiting += w.threads[i].wait == Wait::Block;
    }
    if (live > 0 && waiting == live) {
      if (live < b.count) {  // undefined in CUDA: some of the block's threads have exited
        for (int i = b.first; i < b.first + b.count; ++i)
          if (w.threads[i].wait == Wait::Block) {
            w.error = "deadlock in kernel " + w.shape->name + ": " + where(w.threads[i]) +
                      " waits at __syncthreads that not all its threads reach (" +
                      std::to_string(b.count - live) + " of the block's threads have exited)";
            return true;
          }
      }
      if (race_check::enabled()) {  // one barrier for all, or a divergent one (synccheck's job)
        std::vector<std::string> sites;
        for (int i = b.first; i < b.first + b.count; ++i)
          if (w.threads[i].wait == Wait::Block)
            sites.push_back(std::string(w.threads[i].barrier_file ? w.threads[i].barrier_file : "?") + ":" +
                            std::to_string(w.threads[i].barrier_line));
        std::sort(sites.begin(), sites.end());
        sites.erase(std::unique(sites.begin(), sites.end()), sites.end());
        if (sites.size() > 1) {
          const auto block_linear = unsigned(b.idx.x + w.shape->grid.x * (b.idx.y + w.shape->grid.y * b.idx.z));
          race_check::check_barrier(w.shape->name, block_linear, sites);
        }
      }
      flush_block(w, b);  // every access before the barrier is complete
      for (int i = b.first; i < b.first + b.count; ++i)
        if (w.threads[i].wait == Wait::Block) w.threads[i].wait = Wait::None;
      any = true;
    }
  }
  // Warp collectives: every lane of the first waiter's mask has arrived (or exited).
  for (const BlockState& b : w.blocks) {
    for (int w0 = 0; w0 < b.count; w0 += 32) {
      Thread* lane[32] = {};
      const int n = std::min(32, b.count - w0);
      for (int l = 0; l < n; ++l) lane[l] = &w.threads[b.first + w0 + l];
      int first = -1;
      for (int l = 0; l < n; ++l)
        if (lane[l]->wait == Wait::Warp) { first = l; break; }
      if (first < 0) continue;
      const unsigned mask = lane[first]->warp_mask;
      bool ready = true;
      for (int l = 0; l < n && ready; ++l) {
        if (!(mask >> l & 1u)) continue;
        if (lane[l]->wait == Wait::Done) {  // undefined in CUDA: the mask names an exited lane
          w.error = "kernel " + w.shape->name + ": " + where(*lane[first]) +
                    " calls a warp collective whose mask names exited lane " + std::to_string(l);
          return true;
        }
        if (lane[l]->wait != Wait::Warp) { ready = false; break; }
        if (lane[l]->warp_mask != mask)
          throw std::runtime_error("CUDA emulator: lanes of one warp disagree on a collective's mask at " +
                                   where(*lane[l]));
      }
      if (!ready) continue;
      WarpPart* parts[32] = {};
      WarpCombine combine = nullptr;
      for (int l = 0; l < n; ++l) {
        if (!(mask >> l & 1u) || lane[l]->wait != Wait::Warp) continue;
        parts[l] = lane[l]->part;
        if (parts[l] && parts[l]->combine) {
          if (combine && combine != parts[l]->combine)
            throw std::runtime_error("CUDA emulator: lanes of one warp reached different warp "
                                     "collectives at " + where(*lane[l]));
          combine = parts[l]->combine;
        }
      }
      if (combine) combine(parts);
      for (int l = 0; l < n; ++l)
        if ((mask >> l & 1u) && lane[l]->wait == Wait::Warp) {
          // __syncwarp orders the lanes' memory accesses; shuffles and mma do not.
          if (!lane[l]->part) ++lane[l]->lane.warp_epoch;
          lane[l]->wait = Wait::None;
          lane[l]->part = nullptr;
        }
      any = true;
    }
  }
  // Cluster and grid barriers: everyone live in the cluster / wave.
  for (Wait kind : {Wait::Cluster, Wait::Grid}) {
    int live = 0, waiting = 0;
    for (const Thread& t : w.threads) {
      if (t.wait == Wait::Done) continue;
      ++live;
      waiting += t.wait == kind;
    }
    if (live > 0 && waiting == live) {
      if (live < int(w.threads.size())) {  // a thread that exited never arrives
        w.error = "deadlock in kernel " + w.shape->name + ": " + wait_name(kind) + " after " +
                  std::to_string(int(w.threads.size()) - live) + " threads have exited";
        return true;
      }
      for (const BlockState& b : w.blocks) flush_block(w, b);
      ++w.syncs;
      for (Thread& t : w.threads)
        if (t.wait == kind) t.wait = Wait::None;
      any = true;
    }
  }
  return any;
}

void run_wave(Wave& w) {
  const Order order = resume_order();
  const int n = int(w.threads.size());
  std::vector<int> perm(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) perm[size_t(i)] = order == Order::Reverse ? n - 1 - i : i;
  uint64_t rng = 0x9e3779b97f4a7c15ull;  // fixed: a failing shuffle reproduces
  for (int i = 0; i < n; ++i) fiber(size_t(i));
  w.logging = memory_profile::enabled() || race_check::enabled();
  if (w.logging)
    for (int i = 0; i < n; ++i) {
      const auto lo = reinterpret_cast<uintptr_t>(t_fibers[size_t(i)].base);
      w.threads[size_t(i)].lane.stack_lo = lo;
      w.threads[size_t(i)].lane.stack_hi = lo + getpagesize() + kStackBytes;
    }
  t_wave = &w;
  for (;;) {
    bool ran = false, done = true;
    if (order == Order::Shuffle)  // a new order every sweep (Fisher-Yates, xorshift)
      for (int i = n - 1; i > 0; --i) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        std::swap(perm[size_t(i)], perm[size_t(rng % uint64_t(i + 1))]);
      }
    for (int k = 0; k < n; ++k) {
      Thread& t = w.threads[size_t(perm[size_t(k)])];
      if (t.wait != Wait::None) continue;
      t_current = &t;
      threadIdx = t.c.thread_idx;
      blockIdx = t.c.block_idx;
      blockDim = t.c.block_dim;
      gridDim = t.c.grid_dim;
      Fiber& f = t_fibers[size_t(&t - w.threads.data())];
      memory_profile::t_lane = w.logging ? &t.lane : nullptr;
      void* fake = nullptr;
      EMU_START_SWITCH(&fake, f.base + getpagesize(), kStackBytes);
      emu_fiber_switch(&t_scheduler_sp, f.sp);
      EMU_FINISH_SWITCH(fake, nullptr, nullptr);
      t_current = nullptr;
      memory_profile::t_lane = nullptr;
      ran = true;
      if (!w.error.empty()) break;
    }
    if (!w.error.empty()) break;
    for (const Thread& t : w.threads) done = done && t.wait == Wait::Done;
    if (done) break;
    bool released = false;
    try {  // a collective's check (or combine) may throw: end the wave like a trap
      released = release(w);
    } catch (const std::exception& e) {
      w.error = e.what();
    }
    if (!w.error.empty()) break;
    if (!released && !ran) {
      const Thread* stuck = nullptr;
      for (const Thread& t : w.threads)
        if (t.wait != Wait::Done) { stuck = &t; break; }
      w.error = "deadlock in kernel " + w.shape->name + ": " + where(*stuck) + " waits at " +
                wait_name(stuck->wait) + " that not all its threads reach";
      break;
    }
  }
  if (!w.error.empty()) {  // abandon the fibers mid-kernel; they start afresh next time
    for (int i = 0; i < n; ++i)
      if (w.threads[i].wait != Wait::Done) fiber_reset(t_fibers[size_t(i)]);
  } else {
    for (const BlockState& b : w.blocks) flush_block(w, b);
  }
  t_wave = nullptr;
}

}  // namespace

Order resume_order() {
  static const Order o = read_order();
  return o;
}

const Coords& coords() { return current().c; }

void sync_block(const char* file, int line) {
  Thread& t = current();
  t.barrier_file = file;
  t.barrier_line = line;
  block_until(Wait::Block);
}
void sync_grid() {
  if (!t_wave->shape->cooperative)
    trap("grid.sync() in kernel " + t_wave->shape->name + ", which was not launched cooperatively");
  block_until(Wait::Grid);
}
void sync_cluster() {
  const Dim3 c = t_wave->shape->cluster;
  if (c.x * c.y * c.z <= 1)
    trap("cluster.sync() in kernel " + t_wave->shape->name + ", which was not launched with clusters");
  block_until(Wait::Cluster);
}
unsigned cluster_block_rank() { return unsigned(t_wave->blocks[size_t(current().block)].cluster_rank); }
unsigned cluster_size() {
  const Dim3 c = t_wave->shape->cluster;
  return c.x * c.y * c.z;
}

void sync_warp(unsigned mask) {
  Thread& t = current();
  t.part = nullptr;
  t.warp_mask = mask;
  block_until(Wait::Warp);
}

void warp_collective(WarpPart& part) {
  Thread& t = current();
  t.part = &part;
  t.warp_mask = part.mask;
  block_until(Wait::Warp);
}

int lane_id() { return current().linear % 32; }

void trap(const std::string& why) { throw std::runtime_error("device code trapped: " + why); }

void* shared_storage(const void* site, size_t bytes, size_t align) {
  Thread& t = current();
  BlockState& b = t_wave->blocks[size_t(t.block)];
  auto it = b.shared.find(site);
  if (it == b.shared.end()) {
    it = b.shared.emplace(site, aligned_bytes(bytes, align)).first;
    const auto lo = reinterpret_cast<uintptr_t>(it->second.get());
    b.shared_ranges.push_back({lo, lo + bytes});
  }
  return it->second.get();
}

void* dynamic_shared() {
  Thread& t = current();
  BlockState& b = t_wave->blocks[size_t(t.block)];
  return b.dynamic.get();
}

void cp_async(void* dst, const void* src, size_t bytes, bool valid) {
  Thread& t = current();
  // Memory profile: the copy's global read and shared write, at the issuing instruction.
  if (valid) memory_profile::record(__builtin_return_address(0), src, bytes, false);
  memory_profile::record(__builtin_return_address(0), dst, bytes, true);
  t.copies.push_back({dst, src, bytes, valid, __builtin_return_address(0)});
  ++t.uncommitted;
}
void cp_async_commit() {
  Thread& t = current();
  t.group_sizes.push_back(t.uncommitted);
  t.uncommitted = 0;
}
void cp_async_wait(int newest_pending) {
  Thread& t = current();
  while (t.group_sizes.size() > size_t(newest_pending)) {
    complete_copies(t, t.group_sizes.front());
    t.group_sizes.erase(t.group_sizes.begin());
  }
}

void run_kernel(const LaunchShape& shape, const std::function<void()>& body) {
  if (t_wave) throw std::logic_error("CUDA emulator: kernel launched from device code");
  const Dim3 g = shape.grid, bd = shape.block, cl = shape.cluster;
  const int per_block = int(bd.x * bd.y * bd.z);
  const int blocks = int(g.x * g.y * g.z);
  const int per_cluster = int(cl.x * cl.y * cl.z);
  // Blocks that must be resident together run as one wave: the whole grid for
  // a cooperative launch, a cluster for a cluster launch, else one block.
  const int wave_blocks = shape.cooperative ? blocks : per_cluster;
  if (memory_profile::enabled()) memory_profile::count_launch(shape.name);
  if (race_check::enabled()) race_check::begin_launch();
  for (int first = 0; first < blocks; first += wave_blocks) {
    Wave w;
    w.index = unsigned(first);
    w.shape = &shape;
    w.body = &body;
    const int nb = std::min(wave_blocks, blocks - first);
    w.blocks.resize(size_t(nb));
    w.threads.resize(size_t(nb) * size_t(per_block));
    for (int bi = 0; bi < nb; ++bi) {
      const int lin = first + bi;
      BlockState& b = w.blocks[size_t(bi)];
      b.idx = {unsigned(lin % int(g.x)), unsigned(lin / int(g.x) % int(g.y)),
               unsigned(lin / int(g.x * g.y))};
      b.first = bi * per_block;
      b.count = per_block;
      b.cluster_rank = lin % per_cluster;
      if (shape.dynamic_smem) {
        b.dynamic = aligned_bytes(shape.dynamic_smem, 128);
        const auto lo = reinterpret_cast<uintptr_t>(b.dynamic.get());
        b.shared_ranges.push_back({lo, lo + shape.dynamic_smem});
      }
      for (int ti = 0; ti < per_block; ++ti) {
        Thread& t = w.threads[size_t(b.first + ti)];
        t.block = bi;
        t.linear = ti;
        t.c.block_idx = b.idx;
        t.c.thread_idx = {unsigned(ti % int(bd.x)), unsigned(ti / int(bd.x) % int(bd.y)),
                          unsigned(ti / int(bd.x * bd.y))};
        t.c.block_dim = bd;
        t.c.grid_dim = g;
      }
    }
    run_wave(w);
    if (!w.error.empty()) throw std::runtime_error(w.error);
  }
}

}  // namespace emu
