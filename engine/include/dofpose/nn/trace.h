// Layer tracing: an optional observer that layers notify after each forward
// op with (name, type, output, elapsed time, FLOPs). `dofpose forward --dump`
// uses it to write every intermediate tensor, `--profile` to time every layer.
//
// The tracer is a per-thread pointer (nullptr = off). With no tracer a layer
// pays one thread-local load and a branch: names are only built, and clocks
// only read, while a tracer is installed.
//
// Names are the hierarchical names of the parameters (the PyTorch
// named_modules() names): a layer learns its name when collect() runs with a
// prefix ("layer1.0.conv1"); ops that are not modules (ReLU, pooling,
// residual adds) are named by the module that runs them ("layer1.0.relu",
// "hg.0.hg.3.pool", "layer1.0.add"). A layer whose collect() never ran
// reports its type as its name.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dofpose/tensor.h"

namespace dofpose::nn {

struct TraceEvent {
  const std::string& name;  // "layer1.0.conv1"
  const char* type;         // "Conv2d", "BatchNorm", "ReLU", "Bottleneck", ...
  const TensorView& output; // valid during the call only (later ops may write in place)
  double ms;                // wall time of the op (composites: including their children)
  int64_t flops;            // 2 x multiply-adds of conv/linear layers, else 0
  bool composite;           // true when the event contains other events (a block, a head)
};

class Tracer {
 public:
  virtual ~Tracer() = default;
  virtual void record(const TraceEvent& e) = 0;
  // True when the tracer needs every PyTorch layer as its own event (dumps
  // compared against PyTorch): inference then runs the unfused layers.
  virtual bool needs_every_layer() const { return false; }
  // Called at the start and the end of every span: a device tracer waits for
  // the queued GPU work there, so a span's wall time is its kernels' time.
  virtual void sync() {}
  // A named range around a span (NVTX for Nsight Systems / Compute).
  virtual void range_push(const std::string& /*name*/) {}
  virtual void range_pop() {}
};

namespace detail {
inline thread_local Tracer* g_tracer = nullptr;
}  // namespace detail

// The tracer of the calling thread, nullptr when tracing is off.
inline Tracer* active_tracer() { return detail::g_tracer; }

// Installs `t` on the calling thread for the scope's lifetime (nesting restores the previous one).
class ScopedTracer {
 public:
  explicit ScopedTracer(Tracer* t) : previous_(detail::g_tracer) { detail::g_tracer = t; }
  ~ScopedTracer() { detail::g_tracer = previous_; }
  ScopedTracer(const ScopedTracer&) = delete;
  ScopedTracer& operator=(const ScopedTracer&) = delete;

 private:
  Tracer* previous_;
};

// A layer's own hierarchical name, set from the collect() prefix.
class TraceName {
 public:
  // `prefix` as collect() receives it ("layer1.0." or "").
  void set(const std::string& prefix) {
    name_ = prefix.empty() || prefix.back() != '.' ? prefix : prefix.substr(0, prefix.size() - 1);
  }
  // The layer's name, or `fallback` (its type) when collect() never ran / the root.
  std::string get(const char* fallback) const { return name_.empty() ? fallback : name_; }
  // The name of an op run by this layer: "layer1.0" + "relu" -> "layer1.0.relu".
  std::string child(const std::string& op) const { return name_.empty() ? op : name_ + "." + op; }

 private:
  std::string name_;
};

// Times one op when a tracer is on: construct before the op, call done() after.
class TraceSpan {
 public:
  TraceSpan() : tracer_(active_tracer()) {
    if (tracer_) {
      tracer_->sync();
      start_ = std::chrono::steady_clock::now();
    }
  }
  // Without done() (an exception): close the range.
  ~TraceSpan() {
    if (ranged_) tracer_->range_pop();
  }
  TraceSpan(const TraceSpan&) = delete;
  TraceSpan& operator=(const TraceSpan&) = delete;
  bool on() const { return tracer_ != nullptr; }
  // Names the span up front (an NVTX range while it runs); call when on().
  void range(const std::string& name) {
    if (!tracer_ || ranged_) return;
    tracer_->range_push(name);
    ranged_ = true;
  }
  void done(const std::string& name, const char* type, const TensorView& output,
            int64_t flops = 0, bool composite = false) {
    if (!tracer_) return;
    tracer_->sync();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
            .count();
    if (ranged_) {
      tracer_->range_pop();
      ranged_ = false;
    }
    tracer_->record(TraceEvent{name, type, output, ms, flops, composite});
  }

 private:
  Tracer* tracer_;
  bool ranged_ = false;
  std::chrono::steady_clock::time_point start_;
};

// Runs `op` (a callable returning a TensorView) and reports it as the leaf
// event owner.child(child_name) of type `type`.
template <typename Op>
TensorView traced_op(const TraceName& owner, const char* child_name, const char* type, Op&& op) {
  TraceSpan span;
  if (span.on()) span.range(owner.child(child_name));
  TensorView y = std::forward<Op>(op)();
  if (span.on()) span.done(owner.child(child_name), type, y);
  return y;
}

// Runs `op` (returning void) that writes into `output` in place, e.g. a residual add.
template <typename Op>
void traced_inplace(const TraceName& owner, const char* child_name, const char* type,
                    const TensorView& output, Op&& op) {
  TraceSpan span;
  if (span.on()) span.range(owner.child(child_name));
  std::forward<Op>(op)();
  if (span.on()) span.done(owner.child(child_name), type, output);
}

// ---------------------------------------------------------------- tracers

// Writes every event's output as DIR/<index>_<name>.npy (index in execution
// order, zero-padded to 3 digits), copying it at once: later ops may
// overwrite the memory in place (residual adds).
class DumpTracer : public Tracer {
 public:
  // Creates `dir` (and its parents) when missing.
  explicit DumpTracer(const std::string& dir);
  void record(const TraceEvent& e) override;
  bool needs_every_layer() const override { return true; }

  struct Entry {
    std::string file;  // path written
    std::string name, type;
    Shape shape;
    bool composite;
  };
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::string dir_;
  std::vector<Entry> entries_;
};

// Sums each event's time over repeated forwards of the same input; every run
// must produce the same sequence of events as the first.
class ProfileTracer : public Tracer {
 public:
  // device_sync: wait for the CUDA op stream at every span boundary (profiling
  // a model on CUDA), and mark every named span as an NVTX range.
  explicit ProfileTracer(bool device_sync = false) : device_sync_(device_sync) {}
  void record(const TraceEvent& e) override;
  void sync() override;
  void range_push(const std::string& name) override;
  void range_pop() override;
  // Closes a run: checks it had as many events as the first one.
  void end_run();

  struct Layer {
    std::string name, type;
    Shape shape;
    DType dtype = DType::F32;  // the output's (F16 / BF16: 16-bit activations)
    double total_ms = 0;  // summed over runs
    int64_t flops = 0;
    bool composite = false;
  };
  const std::vector<Layer>& layers() const { return layers_; }
  int runs() const { return runs_; }

 private:
  std::vector<Layer> layers_;
  size_t position_ = 0;  // event index within the current run
  int runs_ = 0;
  bool device_sync_ = false;
};

}  // namespace dofpose::nn
