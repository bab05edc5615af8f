#!/usr/bin/env bash
# Memory profile of the CUDA kernels, without a GPU: both models run their CUDA
# path on the host emulator built with -DDOFPOSE_EMU_MEMORY_PROFILE=ON, and each
# run writes a report (per kernel: global sectors and shared-memory wavefronts
# per warp request against the ideal; the source lines with the most excess).
# What it measures and what it cannot: docs/cuda.md, "Memory profile".
#
#   bash bench/emu_memory_profile.sh [OUT_DIR]          # all runs (~30 min on 2 cores)
#   ONLY=lifter bash bench/emu_memory_profile.sh        # the runs whose name contains "lifter"
#   RACECHECK=1 bash bench/emu_memory_profile.sh        # also the race check of each run (OUT/NAME.race.md;
#                                                       # docs/cuda.md, "Race check on the emulator")
#   BUILD_DIR=build-emu-prof PYTHON=/usr/bin/python3    # defaults (the Python needs numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/dofpose-emu-memory}
BUILD_DIR=${BUILD_DIR:-build-emu-prof}
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}  # numpy needed
mkdir -p "$OUT"

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DDOFPOSE_CUDA_EMULATOR=ON \
  -DDOFPOSE_EMU_MEMORY_PROFILE=ON -DDOFPOSE_BUILD_BENCH=ON > "$OUT/cmake.log"
cmake --build "$BUILD_DIR" -j"$(nproc)" --target dofpose_model_timer > "$OUT/build.log"
TIMER=$BUILD_DIR/bench/dofpose_model_timer

# Random weights and inputs (the counts depend on shapes, not values).
M=$(mktemp -d)
trap 'rm -rf "$M"' EXIT
"$PYTHON" weights_tools/make_random_model.py hourglass "$M/hg.safetensors" --random-bn > /dev/null
"$PYTHON" weights_tools/make_random_model.py lifter "$M/prog.safetensors" \
  --config '{"kind": "progressive", "use_attributes": false}' > /dev/null
"$PYTHON" - "$M" <<'EOF'
import sys, numpy as np
d, r = sys.argv[1], np.random.default_rng(0)
np.save(f"{d}/img.npy", r.standard_normal((1, 3, 256, 256)).astype(np.float32))
np.save(f"{d}/heat.npy", r.random((1, 16, 64, 64)).astype(np.float32))
np.save(f"{d}/x1.npy", r.standard_normal((1, 32)).astype(np.float32))
np.save(f"{d}/x64.npy", r.standard_normal((64, 32)).astype(np.float32))
np.save(f"{d}/y64.npy", r.standard_normal((64, 51)).astype(np.float32))
EOF

# name | model | input | options
RUNS="lifter_b1|prog|x1|
lifter_b1_cluster|prog|x1|--mlp-launch cluster
lifter_b1_prefetch|prog|x1|--mlp-launch prefetch
lifter_b64_train_step|prog|x64|--train --target $M/y64.npy
hourglass_b1_f32|hg|img|
hourglass_b1_f32_stem_kernel|hg|img|--stem-kernel
hourglass_b1_tf32_wmma|hg|img|--math tf32
hourglass_b1_tf32_wmma_multistage|hg|img|--math tf32 --pipeline
hourglass_b1_tf32_mma_multistage|hg|img|--math tf32 --pipeline --tf32-mma
hourglass_b1_fp16_mma_multistage|hg|img|--math fp16 --pipeline
hourglass_b1_fp16_wmma|hg|img|--math fp16
hourglass_b1_fp16_wmma_f16_activations|hg|img|--math fp16 --activations f16
hourglass_b1_train_step|hg|img|--train --target $M/heat.npy"

while IFS='|' read -r name model input opts; do
  [[ -n "${ONLY:-}" && "$name" != *"$ONLY"* ]] && continue
  start=$(date +%s)
  race=
  [[ -n "${RACECHECK:-}" ]] && race="$OUT/$name.race.md"
  # shellcheck disable=SC2086  # opts is a word list
  if DOFPOSE_EMU_MEMORY="$OUT/$name.md" DOFPOSE_EMU_RACECHECK="$race" "$TIMER" --model "$M/$model.safetensors" \
      --input "$M/$input.npy" --device cuda --warmup 1 --repeat 0 $opts > "$OUT/$name.log" 2>&1; then
    echo "$name: $OUT/$name.md${race:+, no hazards} ($(( $(date +%s) - start )) s)"
  elif [[ -n "$race" ]] && grep -q ' hazards (' "$race" 2>/dev/null; then
    echo "$name: HAZARDS, see $race"
  else
    echo "$name: FAILED, see $OUT/$name.log"
  fi
done <<< "$RUNS"
