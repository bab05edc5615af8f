#!/usr/bin/env bash
# The GPU suite: builds the CUDA-enabled configuration, runs the CUDA backend
# tests (op-by-op parity with the CPU, model parity, determinism), then the
# same under compute-sanitizer (memcheck, racecheck), and prints a one-line
# summary per run. Needs a CUDA device.
#
# Environment:
#   BUILD_DIR=build-cuda        where to build (or find) dofpose_cuda_tests
#   DOFPOSE_GPU_NO_BUILD=1      use the binary already in BUILD_DIR (e.g. built elsewhere)
#   SANITIZER_FILTER=PATTERN    doctest -tc filter for the sanitizer runs (default: all)
#   SANITIZER_TIMEOUT=SECONDS   per sanitizer run (default 900)
#   LOG_DIR=DIR                 also copy the logs there
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
BUILD_DIR=${BUILD_DIR:-build-cuda}
if [ "${DOFPOSE_GPU_NO_BUILD:-0}" != 1 ]; then
  cmake -S . -B "$BUILD_DIR" -DDOFPOSE_CUDA=ON >/dev/null || exit 1
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target dofpose_cuda_tests || exit 1
fi
BIN="$BUILD_DIR/tests/dofpose_cuda_tests"
[ -x "$BIN" ] || { echo "gpu.sh: no $BIN" >&2; exit 1; }
FILTER=()
[ -n "${SANITIZER_FILTER:-}" ] && FILTER=(-tc="$SANITIZER_FILTER")
TMO=${SANITIZER_TIMEOUT:-900}

declare -a SUMMARY
run() {
  local name=$1; shift
  local start=$SECONDS
  "$@" >"$BUILD_DIR/gpu-$name.log" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  case $rc in
    0) SUMMARY+=("$name: passed (${took} s)") ;;
    77) SUMMARY+=("$name: SKIPPED (no CUDA device)") ;;
    124) SUMMARY+=("$name: TIMED OUT after ${took} s (see $BUILD_DIR/gpu-$name.log)") ;;
    *) SUMMARY+=("$name: FAILED (exit $rc, see $BUILD_DIR/gpu-$name.log)") ;;
  esac
  [ -n "${LOG_DIR:-}" ] && cp "$BUILD_DIR/gpu-$name.log" "$LOG_DIR/"
  tail -4 "$BUILD_DIR/gpu-$name.log"
}
run tests "$BIN"
if command -v compute-sanitizer >/dev/null 2>&1; then
  run memcheck timeout "$TMO" compute-sanitizer --tool memcheck --error-exitcode 1 "$BIN" "${FILTER[@]}"
  run racecheck timeout "$TMO" compute-sanitizer --tool racecheck --error-exitcode 1 "$BIN" "${FILTER[@]}"
else
  SUMMARY+=("sanitizer: compute-sanitizer not found")
fi
echo "=== GPU suite summary"
printf '  %s\n' "${SUMMARY[@]}"
for s in "${SUMMARY[@]}"; do [[ $s == *FAILED* || $s == *TIMED* ]] && exit 1; done
exit 0
