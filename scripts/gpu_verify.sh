#!/usr/bin/env bash
# The GPU verification: run it first whenever a GPU is available. Builds the kernels, the plugin
# harness and the sanitizer driver for this GPU, checks everything that needs a GPU but not
# TensorRT, times the kernels, and writes docs/gpu_report.md after every stage (a run cut short
# still leaves a report). The stages before ssd and profile took 199 s on an H200 (docs/gpu_report.md,
# 2026-11-27); allow 4-6 minutes for all of them. The short call for the scan kernels:
# `scripts/gpu_verify.sh --stages build,kernels,timing,profile --quick --copy-to "$OUT"`.
# The first call of a session with a GPU while the SSD (Mamba-2) kernels have never run on one:
# `scripts/gpu_verify.sh --quick --stages build,kernels,ssd,timing,profile,plugins,sanitizer --copy-to "$OUT"`
# (the Mamba-1 one-pass change and the SSD scalar and tensor-core kernels first, then the plugins).
#
#   scripts/gpu_verify.sh [--quick] [--trt-root DIR] [--report FILE] [--copy-to DIR] [--stages a,b,...]
#
# TensorRT headers (not the library) are needed for the plugin harness: --trt-root DIR or
# MQ_TRT_INCLUDE_ROOT=DIR with DIR/include/NvInfer.h (default .trt_headers/11.1, an ignored folder:
# `git --git-dir=<NVIDIA/TensorRT clone> archive HEAD include | tar -x -C .trt_headers/11.1`).
# Needs an NVIDIA GPU, nvcc, CMake >= 3.24 and python3 with PyTorch (CUDA); no network.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_verify: no NVIDIA GPU visible (nvidia-smi)" >&2
    exit 2
fi
nvidia-smi -L
export PYTHONUNBUFFERED=1
exec "${python}" "${here}/gpu_verify/run.py" "$@"
