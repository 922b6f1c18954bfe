#!/bin/sh
# Regenerates requirements.lock from pyproject.toml: one universal lock (every platform and
# Python the project supports, with environment markers) from the public package index, keeping
# the pins already there unless pyproject.toml needs others (`--upgrade` to take newer ones).
#
#   sh scripts/lock.sh [uv pip compile options...]
#
# torch is pinned by its public version (torch==X, never a local label such as +cpu): pip takes
# PyPI's build, or PyTorch's CPU-only build where PIP_EXTRA_INDEX_URL names
# https://download.pytorch.org/whl/cpu (the images do). The CUDA packages PyPI's Linux build pulls
# in are left out of the lock: that build pins each of them exactly itself, and the CPU-only
# build needs none of them.
set -eu
cd "$(dirname "$0")/.."
UV="${UV:-uv}"
command -v "$UV" >/dev/null 2>&1 || { echo "lock: needs uv (pip install uv)" >&2; exit 2; }
CUDA_PACKAGES="cuda-bindings cuda-pathfinder cuda-toolkit triton nvidia-cublas nvidia-cuda-cupti
    nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
    nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-nccl-cu13 nvidia-nvjitlink
    nvidia-nvshmem-cu13 nvidia-nvtx"
NO_EMIT=""
for package in $CUDA_PACKAGES; do NO_EMIT="$NO_EMIT --no-emit-package $package"; done
# shellcheck disable=SC2086
"$UV" pip compile --quiet --universal --python-version 3.11 --extra dev $NO_EMIT "$@" \
    --output-file requirements.lock pyproject.toml
