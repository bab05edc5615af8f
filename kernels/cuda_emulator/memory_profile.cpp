// The emulator's memory profile (see memory_profile.h): the load/store hooks
// that -fsanitize=thread code calls, warp requests, sector and bank counting,
// and the report.
#include "kernels/cuda_emulator/memory_profile.h"

#include <dlfcn.h>
#include <elf.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>
#include <unordered_map>

namespace emu {  // runtime.cpp
// Whether byte p lies in a device allocation, and that allocation's [lo, hi).
bool device_allocation(const void* p, uintptr_t& lo, uintptr_t& hi);
}

namespace emu::memory_profile {

thread_local Lane* t_lane = nullptr;

namespace {

struct Site {
  std::string kernel;
  Counts stream[kStreams];
};

struct State {
  std::mutex mutex;
  bool on = false;
  std::string destination;  // DOFPOSE_EMU_MEMORY: where the report goes at exit
  std::map<std::string, KernelCounts> kernels;
  std::unordered_map<const void*, Site> sites;

  State() {
    const char* e = std::getenv("DOFPOSE_EMU_MEMORY");
    if (e && *e) {
      destination = e;
      on = true;
    }
  }
  ~State() {
    if (destination.empty()) return;
    write_report(destination, report(), "memory profile");
  }
};

State& state() {
  static State s;
  return s;
}

struct Request {
  const void* site;
  bool write;
  bool uneven = false;  // see Counts::uneven
  uint32_t epoch, k;     // flush_warp's pairing
  uint32_t bytes[32];
  uintptr_t addr[32];
  unsigned mask = 0;
};

// Sorted distinct values of a small list, in place; returns how many.
size_t distinct(uintptr_t* v, size_t n) {
  std::sort(v, v + n);
  return size_t(std::unique(v, v + n) - v);
}

// The lanes' accesses as sorted intervals; returns their distinct bytes.
uint64_t lane_bytes(const Request& r) {
  std::pair<uintptr_t, uintptr_t> iv[32];
  size_t n = 0;
  for (int l = 0; l < 32; ++l)
    if (r.mask >> l & 1u) iv[n++] = {r.addr[l], r.addr[l] + r.bytes[l]};
  std::sort(iv, iv + n);
  uint64_t total = 0;
  uintptr_t end = 0;
  for (size_t i = 0; i < n; ++i) {
    auto [lo, hi] = iv[i];
    if (lo < end) lo = end;
    if (hi > lo) total += hi - lo, end = hi;
  }
  return total;
}

// Each lane's [addr, addr + bytes) in units of 2^shift bytes, appended to units.
void lane_units(const Request& r, int l0, int l1, int shift, std::vector<uintptr_t>& units) {
  for (int l = l0; l < l1; ++l) {
    if (!(r.mask >> l & 1u)) continue;
    for (uintptr_t u = r.addr[l] >> shift; u <= (r.addr[l] + r.bytes[l] - 1) >> shift; ++u) units.push_back(u);
  }
}

void count_global(const Request& r, Counts& c, std::vector<uintptr_t>& scratch) {
  scratch.clear();
  lane_units(r, 0, 32, 5, scratch);
  const uint64_t actual = distinct(scratch.data(), scratch.size());
  const uint64_t bytes = lane_bytes(r);
  c.requests += 1;
  c.actual += actual;
  c.ideal += std::max<uint64_t>(1, (bytes + 31) / 32);
  c.bytes += bytes;
  c.uneven += r.uneven;
}

void count_shared(const Request& r, Counts& c, std::vector<uintptr_t>& scratch) {
  uint32_t widest = 4;
  for (int l = 0; l < 32; ++l)
    if (r.mask >> l & 1u) widest = std::max(widest, r.bytes[l]);
  const int phase_lanes = widest >= 16 ? 8 : widest >= 8 ? 16 : 32;
  uint64_t wavefronts = 0;
  for (int p0 = 0; p0 < 32; p0 += phase_lanes) {
    scratch.clear();  // distinct 4-byte words this phase touches
    lane_units(r, p0, p0 + phase_lanes, 2, scratch);
    const size_t n = distinct(scratch.data(), scratch.size());
    int per_bank[32] = {};
    int most = 0;
    for (size_t i = 0; i < n; ++i) most = std::max(most, ++per_bank[scratch[i] % 32]);
    wavefronts += uint64_t(most);
  }
  // Shared memory moves 128 bytes a cycle to or from the warp's registers:
  // broadcast or not, a request needs (active lanes x bytes) / 128 wavefronts.
  uint64_t moved = 0;
  for (int l = 0; l < 32; ++l)
    if (r.mask >> l & 1u) moved += r.bytes[l];
  c.requests += 1;
  c.actual += std::max(wavefronts, (moved + 127) / 128);
  c.ideal += std::max<uint64_t>(1, (moved + 127) / 128);
  c.bytes += lane_bytes(r);
  c.uneven += r.uneven;
}

void add(Counts& to, const Counts& c) {
  to.requests += c.requests;
  to.actual += c.actual;
  to.ideal += c.ideal;
  to.bytes += c.bytes;
  to.uneven += c.uneven;
}

bool in_shared(uintptr_t a, const std::vector<Range>& shared) {
  for (const Range& r : shared)
    if (a >= r.lo && a < r.hi) return true;
  return false;
}

}  // namespace

bool enabled() { return state().on; }
void set_enabled(bool on) { state().on = on; }
void reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.kernels.clear();
  s.sites.clear();
}

void count_launch(const std::string& kernel) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  ++s.kernels[kernel].launches;
}

void flush_warp(const std::string& kernel, Lane* const* lanes, int n, const std::vector<Range>& shared) {
  for (int l = 0; l < n; ++l)  // the race check's extra accesses (WMMA's, copies in flight)
    if (lanes[l])
      lanes[l]->log.erase(std::remove_if(lanes[l]->log.begin(), lanes[l]->log.end(),
                                         [](const Access& a) { return !a.counted; }),
                          lanes[l]->log.end());
  // Pass 1: how often each lane ran each (site, direction). A site every
  // active lane ran equally often is "even": its accesses mark the lanes'
  // common progress (a loop's unconditional loads, its shared stores).
  struct Runs {
    uint32_t first;  // the first lane's count
    int lanes;       // lanes that ran it
    bool uneven;     // another lane's count differs
  };
  std::unordered_map<uint64_t, Runs> runs;
  auto key_of = [](const Access& a) { return reinterpret_cast<uintptr_t>(a.site) * 2 + a.write; };
  int active = 0;
  for (int l = 0; l < n; ++l) {
    if (!lanes[l] || lanes[l]->log.empty()) continue;
    ++active;
    std::unordered_map<uint64_t, uint32_t> seen;
    for (const Access& a : lanes[l]->log) ++seen[key_of(a)];
    for (const auto& [key, count] : seen) {
      auto [it, fresh] = runs.emplace(key, Runs{count, 1, false});
      if (fresh) continue;
      it->second.uneven |= it->second.first != count;
      ++it->second.lanes;
    }
  }
  auto even = [&](uint64_t key) {
    const Runs& r = runs.at(key);
    return !r.uneven && r.lanes == active;
  };
  // Pass 2: a warp request is the k-th access of (site, direction) by each
  // lane since the lane's last access to an even site (its "epoch"), so a lane
  // that branched around a load in one iteration of a loop is paired by
  // iteration, as a GPU's predicated request has it, not shifted by one.
  std::vector<Request> requests;
  std::unordered_map<uint64_t, size_t> index;  // hash of (site, write, epoch, k) -> request
  for (int l = 0; l < n; ++l) {
    if (!lanes[l]) continue;
    std::unordered_map<uint64_t, std::pair<uint32_t, uint32_t>> occ;  // key -> (epoch, k)
    uint32_t epoch = 0;
    for (const Access& a : lanes[l]->log) {
      const uint64_t key = key_of(a);
      auto [o, fresh_key] = occ.emplace(key, std::make_pair(epoch, 0u));
      if (o->second.first != epoch) o->second = {epoch, 0u};
      const uint32_t k = o->second.second++;
      const uint64_t rk = (key * 0x9e3779b97f4a7c15ull ^ epoch) * 0xff51afd7ed558ccdull ^ k;
      auto [it, fresh] = index.emplace(rk, requests.size());
      if (fresh) requests.push_back({a.site, a.write, false, epoch, k, {}, {}, 0});
      Request& r = requests[it->second];
      if (r.site != a.site || r.write != a.write || r.epoch != epoch || r.k != k ||
          (r.mask >> l & 1u)) {  // hash collision: own request
        requests.push_back({a.site, a.write, false, epoch, k, {}, {}, 0});
        it->second = requests.size() - 1;
      }
      Request& q = requests[it->second];
      q.mask |= 1u << l;
      q.addr[l] = a.addr;
      q.bytes[l] = a.bytes;
      if (even(key)) ++epoch;
    }
    lanes[l]->log.clear();
  }
  for (Request& r : requests) r.uneven = runs.at(reinterpret_cast<uintptr_t>(r.site) * 2 + r.write).uneven;
  thread_local std::vector<uintptr_t> scratch;
  uintptr_t alloc_lo = 1, alloc_hi = 0;  // the last device allocation an access fell in
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  KernelCounts& kc = s.kernels[kernel];
  for (const Request& r : requests) {
    // Split by space: a generic pointer may point into either.
    Request sh = r, gl = r;
    sh.mask = gl.mask = 0;
    for (int l = 0; l < 32; ++l) {
      if (!(r.mask >> l & 1u)) continue;
      const uintptr_t a = r.addr[l];
      if (in_shared(a, shared)) {
        sh.mask |= 1u << l;
        continue;
      }
      if (!(a >= alloc_lo && a < alloc_hi) &&
          !device_allocation(reinterpret_cast<const void*>(a), alloc_lo, alloc_hi))
        continue;  // host memory (kernel arguments): not device traffic
      gl.mask |= 1u << l;
    }
    Site* site = nullptr;
    if (sh.mask || gl.mask) {
      site = &s.sites[r.site];
      if (site->kernel.empty()) site->kernel = kernel;
    }
    if (sh.mask) {
      const Stream st = r.write ? SharedStore : SharedLoad;
      Counts one;
      count_shared(sh, one, scratch);
      add(kc.stream[st], one);
      add(site->stream[st], one);
    }
    if (gl.mask) {
      const Stream st = r.write ? GlobalStore : GlobalLoad;
      Counts one;
      count_global(gl, one, scratch);
      add(kc.stream[st], one);
      add(site->stream[st], one);
    }
  }
}

KernelCounts kernel_counts(const std::string& kernel) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  auto it = s.kernels.find(kernel);
  return it == s.kernels.end() ? KernelCounts{} : it->second;
}

void write_report(const std::string& destination, const std::string& text, const char* what) {
  if (destination == "stderr") {
    std::fputs(text.c_str(), stderr);
    return;
  }
  std::ofstream out(destination);
  out << text;
  if (!out) std::fprintf(stderr, "[cuda emulator] cannot write the %s to %s\n", what, destination.c_str());
  else std::fprintf(stderr, "[cuda emulator] %s written to %s\n", what, destination.c_str());
}

// addr2line on the object that holds each site; "object+0xoffset" if addr2line is missing.
std::map<const void*, std::string> source_lines(const std::vector<const void*>& sites) {
  std::map<const void*, std::string> out;
  std::map<std::string, std::vector<std::pair<const void*, uintptr_t>>> by_object;
  for (const void* s : sites) {
    Dl_info info{};
    if (!dladdr(s, &info) || !info.dli_fname) {
      out[s] = "?";
      continue;
    }
    uintptr_t rel = reinterpret_cast<uintptr_t>(s) - 1;  // the call, not the return address
    const auto* ehdr = static_cast<const Elf64_Ehdr*>(info.dli_fbase);
    if (ehdr->e_type == ET_DYN) rel -= reinterpret_cast<uintptr_t>(info.dli_fbase);
    std::string object = info.dli_fname;
    if (object.empty() || object.find('/') == std::string::npos) object = "/proc/self/exe";
    by_object[object].push_back({s, rel});
    char fallback[64];
    std::snprintf(fallback, sizeof fallback, "+0x%zx", size_t(rel));
    out[s] = object.substr(object.rfind('/') + 1) + fallback;
  }
  for (auto& [object, list] : by_object) {
    // -a: each address's block starts with the address; -i: its inline chain,
    // innermost first. The site is the innermost frame outside the emulator's
    // headers (an __ldg or a vector copy is the kernel line that calls it).
    std::string cmd = "addr2line -a -i -e '" + object + "'";
    for (auto& [s, rel] : list) {
      char hex[32];
      std::snprintf(hex, sizeof hex, " 0x%zx", size_t(rel));
      cmd += hex;
    }
    cmd += " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) continue;
    std::vector<std::vector<std::string>> frames;
    char line[4096];
    while (std::fgets(line, sizeof line, p)) {
      std::string f(line);
      while (!f.empty() && (f.back() == '\n' || f.back() == '\r')) f.pop_back();
      if (f.rfind("0x", 0) == 0) {
        frames.emplace_back();
        continue;
      }
      if (frames.empty() || f.rfind("??", 0) == 0) continue;
      const size_t disc = f.find(" (discriminator");
      if (disc != std::string::npos) f.resize(disc);
      for (const char* root : {"kernels/", "tests/", "bench/", "engine/"}) {
        const size_t at = f.rfind(root);
        if (at != std::string::npos) { f = f.substr(at); break; }
      }
      frames.back().push_back(f);
    }
    pclose(p);
    for (size_t i = 0; i < list.size() && i < frames.size(); ++i) {
      const auto& chain = frames[i];
      if (chain.empty()) continue;
      // The innermost frame of ours, and its caller when that is another line
      // (a helper such as cp_async4 or load4 says little on its own).
      size_t at = 0;
      while (at + 1 < chain.size() &&
             (chain[at].find("cuda_emulator/") != std::string::npos || chain[at].rfind("/usr/", 0) == 0))
        ++at;
      std::string pick = chain[at];
      if (at + 1 < chain.size() && chain[at + 1] != pick && chain[at + 1].rfind("/usr/", 0) != 0)
        pick += " (from " + chain[at + 1] + ")";
      out[list[i].first] = pick;
    }
  }
  return out;
}

namespace {

const char* stream_name(int s) {
  static const char* names[] = {"global load", "global store", "shared load", "shared store"};
  return names[s];
}

std::string per_request(const Counts& c) {
  if (!c.requests) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f (%.1f)", double(c.actual) / double(c.requests),
                double(c.ideal) / double(c.requests));
  return buf;
}

std::string uneven_text(const Counts& c) {
  if (!c.uneven) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f%%", 100.0 * double(c.uneven) / double(c.requests));
  return buf;
}

std::string count_text(uint64_t n) {
  char buf[32];
  if (n >= 10000000) std::snprintf(buf, sizeof buf, "%.0fM", double(n) / 1e6);
  else if (n >= 10000) std::snprintf(buf, sizeof buf, "%.0fk", double(n) / 1e3);
  else std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  return buf;
}

}  // namespace

std::string report(size_t top_sites) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::ostringstream o;
  o << "# CUDA host emulator: memory profile (per warp request; \"a (b)\" = actual (ideal) per request)\n"
    << "# global: 32-byte sectors; shared: wavefronts (bank conflicts make actual > ideal)\n\n"
    << "| kernel | launches | global load req | sectors/req | global store req | sectors/req |"
       " shared load req | wavefronts/req | shared store req | wavefronts/req |\n"
    << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& [name, k] : s.kernels) {
    o << "| `" << name << "` | " << k.launches;
    for (const Counts& c : k.stream) o << " | " << count_text(c.requests) << " | " << per_request(c);
    o << " |\n";
  }
  // Sites with excess, merged by (source line, kernel, access): an unrolled
  // loop or an inlined helper is one line with several instructions.
  std::vector<const void*> sites;
  for (const auto& [site, st] : s.sites)
    for (const Counts& c : st.stream)
      if (c.actual > c.ideal) {
        sites.push_back(site);
        break;
      }
  if (sites.empty()) {
    o << "\nNo access with excess sectors or wavefronts.\n";
    return o.str();
  }
  const auto where = source_lines(sites);
  std::map<std::tuple<std::string, std::string, int>, Counts> lines;
  for (const void* site : sites) {
    const Site& st = s.sites.at(site);
    for (int i = 0; i < kStreams; ++i)
      if (st.stream[i].actual > st.stream[i].ideal) add(lines[{where.at(site), st.kernel, i}], st.stream[i]);
  }
  using Line = std::pair<std::tuple<std::string, std::string, int>, Counts>;
  std::vector<Line> rows(lines.begin(), lines.end());
  std::sort(rows.begin(), rows.end(), [](const Line& a, const Line& b) {
    return a.second.actual - a.second.ideal > b.second.actual - b.second.ideal;
  });
  if (rows.size() > top_sites) rows.resize(top_sites);
  o << "\nSource lines with the most excess (actual - ideal, summed over requests):\n\n"
    << "| source | kernel | access | requests | per request | excess | uneven |\n"
    << "|---|---|---|---:|---:|---:|---:|\n";
  for (const auto& [key, c] : rows)
    o << "| " << std::get<0>(key) << " | `" << std::get<1>(key) << "` | " << stream_name(std::get<2>(key))
      << " | " << count_text(c.requests) << " | " << per_request(c) << " | "
      << count_text(c.actual - c.ideal) << " | " << uneven_text(c) << " |\n";
  o << "\n\"uneven\": the share of requests whose lanes ran the instruction a different number of\n"
       "times between two barriers. Lanes leaving a loop early do that and are counted right; lanes\n"
       "skipping the access inside a loop (a branch around it) are paired with other iterations'\n"
       "accesses, so a high share with high counts is more likely the profile's grouping than the\n"
       "kernel's pattern.\n";
  return o.str();
}

}  // namespace emu::memory_profile

// ---- the hooks -fsanitize=thread code calls (GCC's and Clang's ABI), in place of libtsan
namespace mp = emu::memory_profile;
#define EMU_SITE __builtin_return_address(0)
extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
#define EMU_RW(n)                                                                        \
  void __tsan_read##n(void* p) { mp::record(EMU_SITE, p, n, false); }                    \
  void __tsan_write##n(void* p) { mp::record(EMU_SITE, p, n, true); }                    \
  void __tsan_unaligned_read##n(void* p) { mp::record(EMU_SITE, p, n, false); }          \
  void __tsan_unaligned_write##n(void* p) { mp::record(EMU_SITE, p, n, true); }          \
  void __tsan_volatile_read##n(void* p) { mp::record(EMU_SITE, p, n, false); }           \
  void __tsan_volatile_write##n(void* p) { mp::record(EMU_SITE, p, n, true); }
EMU_RW(1)
EMU_RW(2)
EMU_RW(4)
EMU_RW(8)
EMU_RW(16)
#undef EMU_RW
void __tsan_read_range(void* p, unsigned long n) { mp::record(EMU_SITE, p, n, false); }
void __tsan_write_range(void* p, unsigned long n) { mp::record(EMU_SITE, p, n, true); }
void __tsan_vptr_read(void**) {}
void __tsan_vptr_update(void**, void*) {}

// Atomics (host code in instrumented files; kernels use none): done sequentially consistent.
#define EMU_ATOMIC(bits, T)                                                                           \
  T __tsan_atomic##bits##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); } \
  void __tsan_atomic##bits##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_nand(volatile T* a, T v, int) { return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST); } \
  int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {            \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);          \
  }                                                                                                    \
  int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {              \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);           \
  }                                                                                                    \
  T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                  \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                \
    return c;                                                                                          \
  }
EMU_ATOMIC(8, unsigned char)
EMU_ATOMIC(16, unsigned short)
EMU_ATOMIC(32, unsigned int)
EMU_ATOMIC(64, unsigned long long)
#undef EMU_ATOMIC
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
}
