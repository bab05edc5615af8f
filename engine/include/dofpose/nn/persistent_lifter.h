// The batch-1 lifter as one kernel launch (kernels/cuda/lifter_persistent.cu):
// the network is compiled once into a program of fused linear steps (linear +
// bias + BatchNorm + ReLU + residual, outputs written straight into the concat
// buffers of later regressors and, denormalised, into the pose), grouped in
// phases by dependency depth (independent regressors, as in two_block, share
// phases; the progressive net is one chain). The program points at the module's parameter
// tensors: weight values may change, but rebuild after to_device().
#pragma once
#include <memory>
#include <vector>

#include "dofpose/nn/lifter.h"

namespace dofpose::nn {

class PersistentLifter {
 public:
  // The lifter must be on CUDA. Throws when the build or device cannot run it.
  explicit PersistentLifter(Lifter& lifter);
  ~PersistentLifter();
  PersistentLifter(const PersistentLifter&) = delete;
  PersistentLifter& operator=(const PersistentLifter&) = delete;

  // x: the normalised network input [1, input_dim] on CUDA (prepare_input);
  // poses: one [1, 51] CUDA view per block, written denormalised (millimetres,
  // pelvis 0), i.e. what LifterModel outputs. Queued on the op stream.
  void run(const TensorView& x, const std::vector<TensorView>& poses);

  int phases() const;
  int steps() const;
  // The phase of every step in program order (per regressor: its input layer,
  // two per residual block, its output layer); host-only, any build.
  static std::vector<int> step_phases(const Lifter& lifter);
  // True where this build and device support it (cooperative launch).
  static bool available();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dofpose::nn
