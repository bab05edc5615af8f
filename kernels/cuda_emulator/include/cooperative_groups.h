// CUDA host emulator: the grid and cluster groups' barriers.
#pragma once
#include "kernels/cuda_emulator/emulator.h"

namespace cooperative_groups {
struct grid_group {
  void sync() const { emu::sync_grid(); }
};
struct cluster_group {
  void sync() const { emu::sync_cluster(); }
  unsigned block_rank() const { return emu::cluster_block_rank(); }
  unsigned num_blocks() const { return emu::cluster_size(); }
};
inline grid_group this_grid() { return {}; }
inline cluster_group this_cluster() { return {}; }
}  // namespace cooperative_groups
