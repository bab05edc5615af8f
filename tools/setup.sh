#!/usr/bin/env bash
# Installs what dofpose needs from Debian's packages, skipping what is there.
# Idempotent: safe to run again. Used by newcomers and by .ci/run.
set -euo pipefail

PACKAGES=(
  build-essential cmake            # compiler and build
  nlohmann-json3-dev libstb-dev    # JSON headers, image loading
  doctest-dev libbenchmark-dev     # tests, benchmarks
  python3 python3-numpy python3-h5py  # weights tools and cross-language tests
)
# PyTorch (CPU, Debian's) is only needed to regenerate golden fixtures and for
# the PyTorch comparisons in bench/: `DOFPOSE_WITH_TORCH=1 tools/setup.sh`.
if [[ "${DOFPOSE_WITH_TORCH:-0}" == "1" ]]; then PACKAGES+=(python3-torch); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: CUDA toolkit found ($(PATH=$PATH:/usr/local/cuda/bin nvcc --version | tail -1))"
else
  echo "setup: no CUDA toolkit: CPU-only build"
fi
