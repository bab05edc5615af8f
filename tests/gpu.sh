#!/usr/bin/env bash
# The GPU suite: builds the CUDA-enabled configuration, runs the CUDA backend
# tests, then the same under compute-sanitizer (memcheck, racecheck), and
# prints a one-line summary per run. Needs a CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
BUILD_DIR=${BUILD_DIR:-build-cuda}
cmake -S . -B "$BUILD_DIR" -DDOFPOSE_CUDA=ON -DDOFPOSE_BUILD_BENCH=OFF >/dev/null || exit 1
cmake --build "$BUILD_DIR" -j"$(nproc)" --target dofpose_cuda_tests || exit 1
BIN="$BUILD_DIR/tests/dofpose_cuda_tests"

declare -a SUMMARY
run() {
  local name=$1; shift
  "$@" >"$BUILD_DIR/gpu-$name.log" 2>&1
  local rc=$?
  case $rc in
    0) SUMMARY+=("$name: passed") ;;
    77) SUMMARY+=("$name: SKIPPED (no CUDA device)") ;;
    *) SUMMARY+=("$name: FAILED (exit $rc, see $BUILD_DIR/gpu-$name.log)") ;;
  esac
  tail -3 "$BUILD_DIR/gpu-$name.log"
}
run tests "$BIN"
if command -v compute-sanitizer >/dev/null 2>&1; then
  run memcheck compute-sanitizer --tool memcheck --error-exitcode 1 "$BIN"
  run racecheck compute-sanitizer --tool racecheck --error-exitcode 1 "$BIN"
else
  SUMMARY+=("sanitizer: compute-sanitizer not found")
fi
echo "=== GPU suite summary"
printf '  %s\n' "${SUMMARY[@]}"
for s in "${SUMMARY[@]}"; do [[ $s == *FAILED* ]] && exit 1; done
exit 0
