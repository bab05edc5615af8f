#!/usr/bin/env bash
# The test command: set up, build (CPU-only unless DOFPOSE_CUDA says otherwise), run ctest.
#   bash tools/test.sh                 # CPU-only build in build-cpu/
#   DOFPOSE_CUDA=ON BUILD_DIR=build bash tools/test.sh
#   DOFPOSE_CUDA_EMULATOR=ON BUILD_DIR=build-emu bash tools/test.sh   # CUDA suite on the host emulator
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
bash tools/setup.sh
BUILD_DIR=${BUILD_DIR:-build-cpu}
cmake -S . -B "$BUILD_DIR" -DDOFPOSE_CUDA="${DOFPOSE_CUDA:-OFF}" \
  -DDOFPOSE_CUDA_EMULATOR="${DOFPOSE_CUDA_EMULATOR:-OFF}"
cmake --build "$BUILD_DIR" -j"$(nproc)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)"
