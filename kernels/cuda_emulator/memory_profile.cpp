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
#include <unordered_map>

namespace emu {
bool is_device_range(const void* p, size_t bytes);  // runtime.cpp
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
    const std::string text = report();
    if (destination == "stderr") {
      std::fputs(text.c_str(), stderr);
      return;
    }
    std::ofstream out(destination);
    out << text;
    if (!out) std::fprintf(stderr, "[cuda emulator] cannot write the memory profile to %s\n", destination.c_str());
    else std::fprintf(stderr, "[cuda emulator] memory profile written to %s\n", destination.c_str());
  }
};

State& state() {
  static State s;
  return s;
}

// Distinct bytes covered by the lanes' [addr, addr + bytes) intervals.
uint64_t distinct_bytes(std::vector<std::pair<uintptr_t, uintptr_t>>& iv) {
  std::sort(iv.begin(), iv.end());
  uint64_t total = 0;
  uintptr_t end = 0;
  for (auto [lo, hi] : iv) {
    if (lo < end) lo = end;
    if (hi > lo) total += hi - lo, end = hi;
  }
  return total;
}

struct Request {
  const void* site;
  bool write;
  uint32_t bytes[32];
  uintptr_t addr[32];
  unsigned mask = 0;
};

void count_global(const Request& r, Counts& c) {
  std::vector<uintptr_t> sectors;
  std::vector<std::pair<uintptr_t, uintptr_t>> iv;
  for (int l = 0; l < 32; ++l) {
    if (!(r.mask >> l & 1u)) continue;
    for (uintptr_t s = r.addr[l] >> 5; s <= (r.addr[l] + r.bytes[l] - 1) >> 5; ++s) sectors.push_back(s);
    iv.push_back({r.addr[l], r.addr[l] + r.bytes[l]});
  }
  std::sort(sectors.begin(), sectors.end());
  const uint64_t actual = uint64_t(std::unique(sectors.begin(), sectors.end()) - sectors.begin());
  const uint64_t bytes = distinct_bytes(iv);
  c.requests += 1;
  c.actual += actual;
  c.ideal += std::max<uint64_t>(1, (bytes + 31) / 32);
  c.bytes += bytes;
}

void count_shared(const Request& r, Counts& c) {
  uint32_t widest = 4;
  for (int l = 0; l < 32; ++l)
    if (r.mask >> l & 1u) widest = std::max(widest, r.bytes[l]);
  const int phase_lanes = widest >= 16 ? 8 : widest >= 8 ? 16 : 32;
  uint64_t wavefronts = 0;
  for (int p0 = 0; p0 < 32; p0 += phase_lanes) {
    std::vector<uintptr_t> words;  // distinct 4-byte words this phase touches
    for (int l = p0; l < p0 + phase_lanes; ++l) {
      if (!(r.mask >> l & 1u)) continue;
      for (uintptr_t w = r.addr[l] >> 2; w <= (r.addr[l] + r.bytes[l] - 1) >> 2; ++w) words.push_back(w);
    }
    if (words.empty()) continue;
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    int per_bank[32] = {};
    int most = 0;
    for (uintptr_t w : words) most = std::max(most, ++per_bank[w % 32]);
    wavefronts += uint64_t(most);
  }
  std::vector<std::pair<uintptr_t, uintptr_t>> iv;
  for (int l = 0; l < 32; ++l)
    if (r.mask >> l & 1u) iv.push_back({r.addr[l], r.addr[l] + r.bytes[l]});
  const uint64_t bytes = distinct_bytes(iv);
  c.requests += 1;
  c.actual += wavefronts;
  c.ideal += std::max<uint64_t>(1, (bytes + 127) / 128);
  c.bytes += bytes;
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
  // The k-th access of (site, direction) by each lane is one warp request.
  std::vector<Request> requests;
  std::unordered_map<uint64_t, size_t> index;  // (site, write, k) -> request
  for (int l = 0; l < n; ++l) {
    if (!lanes[l]) continue;
    std::unordered_map<uint64_t, uint32_t> seen;
    for (const Access& a : lanes[l]->log) {
      const uint64_t key = reinterpret_cast<uintptr_t>(a.site) * 2 + a.write;
      const uint64_t k = seen[key]++;
      const uint64_t rk = key * 0x9e3779b97f4a7c15ull ^ k;
      auto [it, fresh] = index.emplace(rk, requests.size());
      if (fresh) requests.push_back({a.site, a.write, {}, {}, 0});
      Request& r = requests[it->second];
      if (r.site != a.site || r.write != a.write || (r.mask >> l & 1u)) {  // hash collision: own request
        requests.push_back({a.site, a.write, {}, {}, 0});
        it->second = requests.size() - 1;
      }
      Request& q = requests[it->second];
      q.mask |= 1u << l;
      q.addr[l] = a.addr;
      q.bytes[l] = a.bytes;
    }
    lanes[l]->log.clear();
  }
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  KernelCounts& kc = s.kernels[kernel];
  for (const Request& r : requests) {
    // Split by space: a generic pointer may point into either.
    Request sh = r, gl = r;
    sh.mask = gl.mask = 0;
    for (int l = 0; l < 32; ++l) {
      if (!(r.mask >> l & 1u)) continue;
      if (in_shared(r.addr[l], shared)) sh.mask |= 1u << l;
      else if (is_device_range(reinterpret_cast<const void*>(r.addr[l]), r.bytes[l])) gl.mask |= 1u << l;
    }
    Site* site = nullptr;
    if (sh.mask || gl.mask) {
      site = &s.sites[r.site];
      if (site->kernel.empty()) site->kernel = kernel;
    }
    if (sh.mask) {
      const Stream st = r.write ? SharedStore : SharedLoad;
      count_shared(sh, kc.stream[st]);
      count_shared(sh, site->stream[st]);
    }
    if (gl.mask) {
      const Stream st = r.write ? GlobalStore : GlobalLoad;
      count_global(gl, kc.stream[st]);
      count_global(gl, site->stream[st]);
    }
  }
}

KernelCounts kernel_counts(const std::string& kernel) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  auto it = s.kernels.find(kernel);
  return it == s.kernels.end() ? KernelCounts{} : it->second;
}

namespace {

// "file:line" of each site, from addr2line on the object that holds it (the
// kernels need line tables: the profile build adds -g1); "object+0xoffset" if
// addr2line is missing.
std::map<const void*, std::string> symbolize(const std::vector<const void*>& sites) {
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
      std::string pick = chain.front();
      for (const std::string& f : chain)
        if (f.find("cuda_emulator/") == std::string::npos && f.find("/usr/") != 0) { pick = f; break; }
      out[list[i].first] = pick;
    }
  }
  return out;
}

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
  struct Row {
    const void* site;
    int stream;
    const Counts* c;
  };
  std::vector<Row> rows;
  for (const auto& [site, st] : s.sites)
    for (int i = 0; i < kStreams; ++i)
      if (st.stream[i].actual > st.stream[i].ideal) rows.push_back({site, i, &st.stream[i]});
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.c->actual - a.c->ideal > b.c->actual - b.c->ideal;
  });
  if (rows.size() > top_sites) rows.resize(top_sites);
  if (rows.empty()) {
    o << "\nNo access with excess sectors or wavefronts.\n";
    return o.str();
  }
  std::vector<const void*> sites;
  for (const Row& r : rows) sites.push_back(r.site);
  const auto where = symbolize(sites);
  o << "\nSource lines with the most excess (actual - ideal, summed over requests):\n\n"
    << "| source | kernel | access | requests | per request | excess |\n|---|---|---|---:|---:|---:|\n";
  for (const Row& r : rows)
    o << "| " << where.at(r.site) << " | `" << s.sites.at(r.site).kernel << "` | " << stream_name(r.stream)
      << " | " << count_text(r.c->requests) << " | " << per_request(*r.c) << " | "
      << count_text(r.c->actual - r.c->ideal) << " |\n";
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
