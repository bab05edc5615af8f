#!/usr/bin/env bash
# One lent-GPU session in one call (docs/cuda.md, "Running on a lent GPU"):
# the CUDA suite, sanitizers on subsets, the whole-model comparison with
# PyTorch and the per-kernel benchmarks, each with its own time limit so the
# most important results come first (suite, kernel benchmarks + verdicts,
# sanitizers, profile, training fusion, whole-model comparison); every log
# is written to $OUT as it goes, so a run cut off still returns what it did.
# Uses binaries built on the workstation (the GPU machine has no doctest /
# nlohmann-json / Google Benchmark headers):
#   cmake -S . -B build-cuda -DDOFPOSE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DDOFPOSE_BUILD_BENCH=ON
#   cmake --build build-cuda -j --target dofpose_cuda_tests dofpose_model_timer dofpose_bench dofpose_cli
#   mkdir -p .devlib && cp /lib/x86_64-linux-gnu/libbenchmark.so.1* .devlib/   # (.devlib git-ignored locally)
# then carry build-cuda/tests/dofpose_cuda_tests, build-cuda/bench/dofpose_model_timer,
# build-cuda/bench/dofpose_bench, build-cuda/dofpose and .devlib, and run: bash tests/gpu_session.sh
# Smaller carry (~18 MB instead of ~50): configure build-cuda-so with -DBUILD_SHARED_LIBS=ON too,
# carry build-cuda-so/libdofpose.so with the same four binaries, run BUILD_DIR=build-cuda-so bash ...
# COMPARE_ONLY (compare_gpu.py --only), COMPARE_MATHS (e.g. f32,f32s,tf32,tf32p,tf32m,fp16,fp16p,fp16a,bf16a),
# MEMCHECK_FILTER / MEMCHECK_TIMEOUT (s, default 100; memcheck runs the cases in file order),
# RACECHECK_FILTER,
# MLP_LAUNCHES (e.g. cluster,prefetch: the batch-1 lifters again with those launches),
# BENCH_FILTER, BENCH_TIMEOUT (s, default 90; a cut-off run still gets its verdicts),
# SKIP_BENCH=1 and SKIP_TRAIN_FUSION=1 shape the session.
# Optional cuDNN comparison: also build build-cudnn (the same plus -DDOFPOSE_CUDNN=ON,
# targets dofpose_cuda_tests dofpose_bench) and carry its two binaries; the
# machine's libcudnn (PyTorch's wheel) is found and used for them.
# Logs go to $OUT (or ./gpu-session-logs).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-session-logs}
mkdir -p "$OUT"
B=${BUILD_DIR:-build-cuda}
# $B itself for a -DBUILD_SHARED_LIBS=ON build (libdofpose.so: one copy of the device code).
export LD_LIBRARY_PATH=$PWD/.devlib:$PWD/$B:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
nvidia-smi -L | tee "$OUT/smi.txt"
timeout 150 "$B/tests/dofpose_cuda_tests" 2>&1 | tee "$OUT/tests.log" | tail -8
echo "tests exit ${PIPESTATUS[0]}"
# Kernel benchmarks next: they decide the default-off switches (bench/gpu_verdicts.py).
if [ -z "${SKIP_BENCH:-}" ]; then
  timeout ${BENCH_TIMEOUT:-90} "$B/bench/dofpose_bench" --benchmark_filter="${BENCH_FILTER:-BM_cuda}" --benchmark_min_time=0.02 \
    --benchmark_out="$OUT/bench.json" --benchmark_out_format=json 2>&1 \
    | tee "$OUT/bench.log" | grep -v '^-' | tail -40
  # Default-off switches: candidate vs default path, per shape (bench/gpu_verdicts.py).
  python3 bench/gpu_verdicts.py "$OUT/bench.json" 2>&1 | tee "$OUT/verdicts.txt"
fi
timeout ${MEMCHECK_TIMEOUT:-100} compute-sanitizer --tool memcheck --error-exitcode 1 "$B/tests/dofpose_cuda_tests" \
  -tc="${MEMCHECK_FILTER:-*}" > "$OUT/memcheck.log" 2>&1
echo "memcheck exit $?"; tail -2 "$OUT/memcheck.log"
timeout 60 compute-sanitizer --tool racecheck --error-exitcode 1 "$B/tests/dofpose_cuda_tests" \
  -tc="${RACECHECK_FILTER:-*batchnorm*,*soft-argmax*,*losses*,*RMSprop*,*conv2d*}" > "$OUT/racecheck.log" 2>&1
echo "racecheck exit $?"; tail -2 "$OUT/racecheck.log"
# The per-layer CUDA profile of the default hourglass (random weights, batch 1).
if [ -x "$B/dofpose" ]; then
  python3 weights_tools/make_random_model.py hourglass "$OUT/hg.safetensors" --random-bn > /dev/null &&
  python3 -c "import numpy as np; np.save('$OUT/img.npy', np.random.default_rng(0).standard_normal((1,3,256,256)).astype(np.float32))" &&
  timeout 60 "$B/dofpose" forward --model "$OUT/hg.safetensors" --input "$OUT/img.npy" --device cuda \
    --profile --repeat 5 --profile-json "$OUT/profile_cuda.json" > "$OUT/profile_cuda.txt" 2>&1
  echo "profile exit $?"; tail -4 "$OUT/profile_cuda.txt"
  # The same with 16-bit activation tensors (not yet run on a GPU before this script).
  timeout 60 "$B/dofpose" forward --model "$OUT/hg.safetensors" --input "$OUT/img.npy" --device cuda \
    --activations f16 --profile --repeat 5 > "$OUT/profile_cuda_f16.txt" 2>&1
  echo "profile f16 exit $?"; tail -4 "$OUT/profile_cuda_f16.txt"; rm -f "$OUT/hg.safetensors"
fi
# Fused vs unfused training steps (BatchNorm -> ReLU -> Dropout as one op, the residual
# adds in the forward stores; the backward's skip-gradient adds are fused in both), ours only:
# the progressive lifter at batch 64 and the hourglass at batch 8, median ms of 20 / 5 steps.
if [ -x "$B/bench/dofpose_model_timer" ] && [ -z "${SKIP_TRAIN_FUSION:-}" ]; then
  T=$OUT/train_fusion; mkdir -p "$T"
  python3 weights_tools/make_random_model.py lifter "$T/prog.safetensors" \
    --config '{"kind": "progressive", "use_attributes": false}' > /dev/null &&
  python3 weights_tools/make_random_model.py hourglass "$T/hg.safetensors" --random-bn > /dev/null &&
  python3 -c "
import numpy as np; r = np.random.default_rng(0)
np.save('$T/lx.npy', r.standard_normal((64, 32)).astype(np.float32))
np.save('$T/ly.npy', r.standard_normal((64, 51)).astype(np.float32))
np.save('$T/hx.npy', r.standard_normal((8, 3, 256, 256)).astype(np.float32))
np.save('$T/hy.npy', r.random((8, 16, 64, 64)).astype(np.float32))" &&
  for m in "prog lx ly 20" "hg hx hy 5"; do
    set -- $m
    for u in "" --unfused; do
      r=$(timeout 60 "$B/bench/dofpose_model_timer" --model "$T/$1.safetensors" --input "$T/$2.npy" \
            --target "$T/$3.npy" --train --device cuda --warmup 3 --repeat "$4" $u 2>&1 | tail -1)
      echo "train step $1 ${u:-fused}: $(python3 -c "import json,sys; d=json.loads(sys.argv[1]); import statistics as s; print(f'{s.median(d[\"ms\"]):.3f} ms median, arena {d[\"arena_mib\"]:.1f} MiB')" "$r" 2>/dev/null || echo "$r")"
    done
  done 2>&1 | tee "$OUT/train_fusion.txt"
  rm -rf "$T"
fi
PYTHONUNBUFFERED=1 timeout ${COMPARE_TIMEOUT:-240} python3 bench/compare_gpu.py --build "$B" --quick \
  ${COMPARE_ONLY:+--only "$COMPARE_ONLY"} ${COMPARE_MATHS:+--maths "$COMPARE_MATHS"} --json "$OUT/compare_gpu.json" 2>&1 | tee "$OUT/compare.log" | tail -14
# The lifters at batch 1 end to end with other persistent-kernel launches
# (MLP_LAUNCHES=cluster,prefetch; compare_gpu.py --mlp-launch), after the default's rows above.
for L in $(echo "${MLP_LAUNCHES:-}" | tr ',' ' '); do
  PYTHONUNBUFFERED=1 timeout 90 python3 bench/compare_gpu.py --build "$B" --quick --only martinez_b1,progressive_b1 \
    --mlp-launch "$L" --json "$OUT/compare_gpu_$L.json" 2>&1 | tee "$OUT/compare_$L.log" | tail -4
done
C=${CUDNN_BUILD_DIR:-build-cudnn}
if [ -x "$C/tests/dofpose_cuda_tests" ]; then
  lib=$(find / -name 'libcudnn.so.9' -not -path '/proc/*' 2>/dev/null | head -1)
  echo "libcudnn: ${lib:-not found}"
  if [ -n "$lib" ]; then
    export LD_LIBRARY_PATH=$(dirname "$lib"):$LD_LIBRARY_PATH
    timeout 60 "$C/tests/dofpose_cuda_tests" -tc='*cuDNN*' 2>&1 | tee "$OUT/cudnn_tests.log" | tail -4
    timeout 60 "$C/bench/dofpose_bench" --benchmark_filter='BM_cud.*conv2d_forward' --benchmark_min_time=0.02 2>&1 \
      | tee "$OUT/cudnn_bench.log" | grep -v '^-' | tail -24
  fi
fi
