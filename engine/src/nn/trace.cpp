#include "dofpose/nn/trace.h"

#include <cstdio>
#include <filesystem>
#include <system_error>

#include "dofpose/cuda_backend.h"
#include "dofpose/npz.h"
#include "dofpose/ops.h"
#ifdef DOFPOSE_WITH_CUDA
#include <nvtx3/nvToolsExt.h>  // header-only (NVTX 3): no library to link
#endif

namespace dofpose::nn {

DumpTracer::DumpTracer(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  DOFPOSE_CHECK(!ec && std::filesystem::is_directory(dir), "dump: cannot create directory '",
                dir, "'", ec ? concat(": ", ec.message()) : std::string());
}

void DumpTracer::record(const TraceEvent& e) {
  char index[32];
  std::snprintf(index, sizeof index, "%03zu_", entries_.size());
  const std::string file = dir_ + "/" + index + e.name + ".npy";
  // A host copy in the stored dtype: the view may live on a device or be
  // overwritten by the next op.
  Tensor host = Tensor::empty(e.output.shape, e.output.dtype, Device::CPU);
  copy(e.output, host);
  std::vector<int64_t> shape(e.output.shape.dims, e.output.shape.dims + e.output.ndim());
  NpyDType t = NpyDType::F32;
  switch (e.output.dtype) {
    case DType::F32: t = NpyDType::F32; break;
    case DType::I32: t = NpyDType::I32; break;
    case DType::U8: t = NpyDType::U8; break;
    default: fail("dump: layer '", e.name, "' output ", e.output.str(), " has no .npy dtype");
  }
  write_npy(file, t, shape, host.view().data);
  entries_.push_back({file, e.name, e.type, e.output.shape, e.composite});
}

void ProfileTracer::record(const TraceEvent& e) {
  if (runs_ == 0 && position_ == layers_.size()) {
    Layer l;
    l.name = e.name;
    l.type = e.type;
    l.shape = e.output.shape;
    l.dtype = e.output.dtype;
    l.flops = e.flops;
    l.composite = e.composite;
    layers_.push_back(l);
  }
  DOFPOSE_CHECK(position_ < layers_.size() && layers_[position_].name == e.name, "profile: run ",
                runs_ + 1, " reported layer '", e.name, "' at position ", position_,
                ", the first run had '",
                position_ < layers_.size() ? layers_[position_].name : std::string("(none)"),
                "' (the network must run the same layers every time)");
  layers_[position_].total_ms += e.ms;
  ++position_;
}

void ProfileTracer::end_run() {
  DOFPOSE_CHECK(position_ == layers_.size(), "profile: run ", runs_ + 1, " reported ", position_,
                " layers, the first run ", layers_.size());
  position_ = 0;
  ++runs_;
}

void ProfileTracer::sync() {
  if (device_sync_) cuda::stream_synchronize(ops::cuda_stream());
}

void ProfileTracer::range_push(const std::string& name) {
#ifdef DOFPOSE_WITH_CUDA
  if (device_sync_) nvtxRangePushA(name.c_str());
#else
  (void)name;
#endif
}

void ProfileTracer::range_pop() {
#ifdef DOFPOSE_WITH_CUDA
  if (device_sync_) nvtxRangePop();
#endif
}

}  // namespace dofpose::nn
