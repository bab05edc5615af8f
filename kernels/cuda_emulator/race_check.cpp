// The emulator's race check (see race_check.h): hazards between the threads of a
// block from their logged accesses, checked each time the block meets at a barrier.
#include "kernels/cuda_emulator/race_check.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace emu {  // runtime.cpp
bool device_allocation(const void* p, uintptr_t& lo, uintptr_t& hi);
}

namespace emu::race_check {
namespace {

enum Kind { WriteWrite, WriteRead, DivergentBarrier };

struct Key {
  std::string kernel;
  int space;  // 0 shared, 1 global within a block, 2 global between blocks, 3 none (a barrier)
  Kind kind;
  const void* a;  // the writing instruction (write-write: the lower address)
  const void* b;  // the other one
  bool operator<(const Key& o) const {
    return std::tie(kernel, space, kind, a, b) < std::tie(o.kernel, o.space, o.kind, o.a, o.b);
  }
};

struct Found {
  uint64_t pairs = 0;
  unsigned block = 0, block_b = 0;
  int thread_a = 0, thread_b = 0;
  uint64_t offset = 0;  // bytes into the shared array / the device allocation
};

// Between blocks: the last write and read of each global word (of each byte,
// for accesses narrower than a word) in this launch.
struct Touch {
  const void* site = nullptr;  // nullptr: none yet
  unsigned block = 0, wave = 0, epoch = 0;
  int thread = 0;
};
struct WordHistory {
  Touch write, read;
  bool reads_from_several_blocks = false;
};

struct State {
  std::mutex mutex;
  bool on = false;
  std::string destination;  // DOFPOSE_EMU_RACECHECK: where the report goes at exit
  std::map<Key, Found> found;
  uint64_t total = 0;
  std::unordered_map<uintptr_t, WordHistory> launch_words;  // global words of the running launch
  std::map<std::tuple<std::string, std::string, std::string>, Found> barriers;  // kernel, two lines

  State() {
    const char* e = std::getenv("DOFPOSE_EMU_RACECHECK");
    if (e && *e) {
      destination = e;
      on = true;
    }
  }
  ~State() {
    if (destination.empty()) return;
    memory_profile::write_report(destination, report(), "race check report");
    if (total) {  // fail the run, as compute-sanitizer --error-exitcode does
      std::fprintf(stderr, "[cuda emulator] race check: %llu hazards, exit status 1\n",
                   static_cast<unsigned long long>(total));
      std::fflush(stderr);
      std::fflush(stdout);
      _exit(1);
    }
  }
};

State& state() {
  static State s;
  return s;
}

// One thread's access to one 4-byte word.
struct Rec {
  uintptr_t word;
  const void* site;
  uint64_t offset;  // of the word, in its shared array or device allocation
  int thread;
  uint32_t epoch;   // the thread's __syncwarp count since the barrier
  uint8_t mask;     // the bytes of the word it touched
  bool write, shared;
};

// Both in one warp with a __syncwarp() between them: ordered.
bool ordered(const Rec& x, const Rec& y) { return x.thread / 32 == y.thread / 32 && x.epoch != y.epoch; }

}  // namespace

bool enabled() { return state().on; }
void set_enabled(bool on) { state().on = on; }
void reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.found.clear();
  s.barriers.clear();
  s.total = 0;
}

namespace {

// Where each access falls: a block's shared array, a device allocation, or neither.
struct Classifier {
  const std::vector<memory_profile::Range>& shared;
  uintptr_t alloc_lo = 1, alloc_hi = 0;  // the last device allocation an access fell in
  // 0 shared, 1 global, -1 host memory (kernel arguments); base: the array's first byte.
  int operator()(uintptr_t addr, uintptr_t& base) {
    for (const memory_profile::Range& r : shared)
      if (addr >= r.lo && addr < r.hi) {
        base = r.lo;
        return 0;
      }
    if (!(addr >= alloc_lo && addr < alloc_hi) &&
        !device_allocation(reinterpret_cast<const void*>(addr), alloc_lo, alloc_hi))
      return -1;
    base = alloc_lo;
    return 1;
  }
};

void add_hazard(std::map<Key, Found>& to, Key key, const Found& example) {
  if (key.kind == WriteWrite && key.b < key.a) std::swap(key.a, key.b);
  Found& f = to[key];
  if (!f.pairs) f = example, f.pairs = 0;
  ++f.pairs;
}

// Hazards among the block's threads since its last barrier.
void within_block(const std::string& kernel, unsigned block, memory_profile::Lane* const* lanes, int n,
                  Classifier& classify, std::map<Key, Found>& found) {
  // The words some thread wrote: only those can race.
  thread_local std::vector<uintptr_t> written;
  thread_local std::vector<Rec> recs;
  written.clear();
  recs.clear();
  for (int t = 0; t < n; ++t)
    for (const memory_profile::Access& a : lanes[t]->log)
      if (a.write)
        for (uintptr_t w = a.addr >> 2; w <= (a.addr + a.bytes - 1) >> 2; ++w) written.push_back(w);
  if (written.empty()) return;
  std::sort(written.begin(), written.end());
  written.erase(std::unique(written.begin(), written.end()), written.end());
  for (int t = 0; t < n; ++t) {
    for (const memory_profile::Access& a : lanes[t]->log) {
      const uintptr_t first = a.addr >> 2, last = (a.addr + a.bytes - 1) >> 2;
      auto it = std::lower_bound(written.begin(), written.end(), first);
      if (it == written.end() || *it > last) continue;  // no word of it was written
      uintptr_t base = 0;
      const int space = classify(a.addr, base);
      if (space < 0) continue;
      for (uintptr_t w = first; w <= last; ++w) {
        const uintptr_t lo = std::max(a.addr, w << 2), hi = std::min(a.addr + a.bytes, (w + 1) << 2);
        uint8_t mask = 0;
        for (uintptr_t byte = lo; byte < hi; ++byte) mask |= uint8_t(1u << (byte & 3));
        recs.push_back({w, a.site, (w << 2) - base, t, a.warp_epoch, mask, a.write, space == 0});
      }
    }
  }
  // Per word: one record per (thread, epoch, direction, instruction), bytes merged.
  std::sort(recs.begin(), recs.end(), [](const Rec& x, const Rec& y) {
    return std::tie(x.word, x.thread, x.epoch, x.write, x.site) < std::tie(y.word, y.thread, y.epoch, y.write, y.site);
  });
  size_t m = 0;
  for (size_t i = 0; i < recs.size(); ++i) {
    if (m && recs[m - 1].word == recs[i].word && recs[m - 1].thread == recs[i].thread &&
        recs[m - 1].epoch == recs[i].epoch && recs[m - 1].write == recs[i].write && recs[m - 1].site == recs[i].site) {
      recs[m - 1].mask |= recs[i].mask;
      continue;
    }
    recs[m++] = recs[i];
  }
  recs.resize(m);
  for (size_t g0 = 0; g0 < recs.size();) {
    size_t g1 = g0;
    bool any_write = false, many = false;
    while (g1 < recs.size() && recs[g1].word == recs[g0].word) {
      any_write |= recs[g1].write;
      many |= recs[g1].thread != recs[g0].thread;
      ++g1;
    }
    if (any_write && many) {
      for (size_t i = g0; i < g1; ++i) {
        if (!recs[i].write) continue;
        for (size_t j = g0; j < g1; ++j) {
          const Rec &x = recs[i], &y = recs[j];
          if (x.thread == y.thread || !(x.mask & y.mask) || ordered(x, y)) continue;
          if (y.write && j < i) continue;  // a write pair: counted once
          add_hazard(found, {kernel, x.shared ? 0 : 1, y.write ? WriteWrite : WriteRead, x.site, y.site},
                     {0, block, block, x.thread, y.thread, x.offset});
        }
      }
    }
    g0 = g1;
  }
}

// Hazards between this block's global accesses and other blocks' in the same
// launch (the emulator runs blocks one after another, so their order here is
// not a GPU's). Blocks of one wave (a cluster, a cooperative grid) are ordered
// by the cluster / grid syncs between them (`epoch`).
void between_blocks(const std::string& kernel, const BlockPlace& at, memory_profile::Lane* const* lanes, int n,
                    Classifier& classify, std::unordered_map<uintptr_t, WordHistory>& words,
                    std::map<Key, Found>& found) {
  auto unordered = [&](const Touch& t) {
    return t.site && t.block != at.block && (t.wave != at.wave || t.epoch == at.epoch);
  };
  for (int th = 0; th < n; ++th) {
    for (const memory_profile::Access& a : lanes[th]->log) {
      uintptr_t base = 0;
      if (classify(a.addr, base) != 1) continue;
      const Touch me{a.site, at.block, at.wave, at.epoch, th};
      // 1- and 2-byte accesses (masks, half outputs) by byte, the rest by
      // 4-byte word: blocks writing neighbouring bytes of a word do not race.
      const bool bytewise = a.bytes < 4;
      const uintptr_t first = bytewise ? a.addr : a.addr >> 2;
      const uintptr_t last = bytewise ? a.addr + a.bytes - 1 : (a.addr + a.bytes - 1) >> 2;
      for (uintptr_t w = first; w <= last; ++w) {
        WordHistory& h = words[w << 1 | uintptr_t(bytewise)];
        const uint64_t offset = (bytewise ? w : w << 2) - base;
        auto hazard = [&](Kind kind, const Touch& other, const void* write_site, const void* other_site) {
          add_hazard(found, {kernel, 2, kind, write_site, other_site},
                     {0, at.block, other.block, th, other.thread, offset});
        };
        if (a.write) {
          if (unordered(h.write)) hazard(WriteWrite, h.write, a.site, h.write.site);
          if (unordered(h.read) || (h.reads_from_several_blocks && h.read.site &&
                                    (h.read.wave != at.wave || h.read.epoch == at.epoch)))
            hazard(WriteRead, h.read, a.site, h.read.site);
          h.write = me;
        } else {
          if (unordered(h.write)) hazard(WriteRead, h.write, h.write.site, a.site);
          if (h.read.site && h.read.block != at.block) h.reads_from_several_blocks = true;
          h.read = me;
        }
      }
    }
  }
}

}  // namespace

void begin_launch() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.launch_words.clear();
}

void check_block(const std::string& kernel, const BlockPlace& at, memory_profile::Lane* const* lanes, int n,
                 const std::vector<memory_profile::Range>& shared) {
  Classifier classify{shared};
  std::map<Key, Found> local;
  within_block(kernel, at.block, lanes, n, classify, local);
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  between_blocks(kernel, at, lanes, n, classify, s.launch_words, local);
  for (const auto& [key, f] : local) {
    Found& to = s.found[key];
    if (!to.pairs) to = f, to.pairs = 0;
    to.pairs += f.pairs;
    s.total += f.pairs;
  }
}

void check_barrier(const std::string& kernel, unsigned block_linear, const std::vector<std::string>& sites) {
  if (sites.size() < 2) return;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  Found& f = s.barriers[{kernel, sites[0], sites[1]}];
  if (!f.pairs) f = {0, block_linear, block_linear, 0, 0, 0};
  ++f.pairs;
  ++s.total;
}

uint64_t hazards(const std::string& kernel) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (kernel.empty()) return s.total;
  uint64_t n = 0;
  for (const auto& [key, f] : s.found)
    if (key.kernel.find(kernel) != std::string::npos) n += f.pairs;
  for (const auto& [key, f] : s.barriers)
    if (std::get<0>(key).find(kernel) != std::string::npos) n += f.pairs;
  return n;
}

std::string report() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::ostringstream o;
  o << "# CUDA host emulator: race check (hazards between a block's threads between two barriers, and\n"
    << "# between blocks of one launch in global memory)\n\n";
  if (s.found.empty() && s.barriers.empty()) {
    o << "No hazards.\n";
    return o.str();
  }
  std::vector<const void*> sites;
  for (const auto& [key, f] : s.found) sites.insert(sites.end(), {key.a, key.b});
  const auto where = memory_profile::source_lines(sites);
  // Merged by source line: an unrolled loop or an inlined helper is one line
  // with several instructions.
  using Line = std::tuple<std::string, int, Kind, std::string, std::string>;
  std::map<Line, Found> lines;
  for (const auto& [key, f] : s.found) {
    std::string a = where.at(key.a), b = where.at(key.b);
    if (key.kind == WriteWrite && b < a) std::swap(a, b);
    Found& to = lines[{key.kernel, key.space, key.kind, a, b}];
    if (!to.pairs) to = f, to.pairs = 0;
    to.pairs += f.pairs;
  }
  for (const auto& [key, f] : s.barriers)
    lines[{std::get<0>(key), 3, DivergentBarrier, std::get<1>(key), std::get<2>(key)}] = f;
  std::vector<std::pair<Line, Found>> rows(lines.begin(), lines.end());
  std::stable_sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.second.pairs > y.second.pairs; });
  o << s.total << " hazards (pairs of accesses to one word by two threads, at least one writing, with no\n"
    << "barrier or sync between them; or a block's threads meeting at different __syncthreads) on\n"
    << rows.size() << " pairs of source lines";
  constexpr size_t kRows = 40;
  if (rows.size() > kRows) {
    o << " (the " << kRows << " with the most shown)";
    rows.resize(kRows);
  }
  o << ":\n\n"
    << "| kernel | memory | kind | write (or barrier) at | other access (barrier) at | count | first seen |\n"
    << "|---|---|---|---|---|---:|---|\n";
  for (const auto& [line, f] : rows) {
    static const char* space[] = {"shared", "global", "global, between blocks", "-"};
    static const char* kind[] = {"write-write", "write-read", "divergent __syncthreads"};
    o << "| `" << std::get<0>(line) << "` | " << space[std::get<1>(line)] << " | " << kind[std::get<2>(line)]
      << " | " << std::get<3>(line) << " | " << std::get<4>(line) << " | " << f.pairs << " | ";
    if (std::get<2>(line) == DivergentBarrier) o << "block " << f.block << " |\n";
    else if (std::get<1>(line) == 2) o << "blocks " << f.block << " and " << f.block_b << ", threads ";
    else o << "block " << f.block << ", threads ";
    if (std::get<2>(line) != DivergentBarrier)
      o << f.thread_a << " and " << f.thread_b << ", byte " << f.offset << " |\n";
  }
  return o.str();
}

}  // namespace emu::race_check
