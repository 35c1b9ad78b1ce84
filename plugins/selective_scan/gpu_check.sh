#!/usr/bin/env bash
# Builds libmq_kernels for the GPU of this machine, checks every kernel against the torch reference
# of mq_deploy and times them; prints one markdown report and writes it to build/gpu_check/report.md.
# Needs an NVIDIA GPU, nvcc, CMake >= 3.24 and python3 with PyTorch (CUDA); no network.
#
#   plugins/selective_scan/gpu_check.sh [--quick] [--reps N] [--out FILE]
#
# Environment: MQ_BUILD_DIR (default build/gpu_check), MQ_CUDA_ARCH (default native), PYTHON.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
build="${MQ_BUILD_DIR:-${repo}/build/gpu_check}"
arch="${MQ_CUDA_ARCH:-native}"
python="${PYTHON:-python3}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU visible (nvidia-smi)" >&2
    exit 2
fi
nvidia-smi -L

start=$(date +%s)
mkdir -p "${build}"
cmake -S "${repo}" -B "${build}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${arch}" \
    -DMQ_BUILD_BENCH=ON -DMQ_BUILD_PLUGINS=OFF -DMQ_BUILD_TESTS=OFF >"${build}/configure.log" 2>&1 \
    || { cat "${build}/configure.log"; exit 1; }
cmake --build "${build}" -j "$(nproc)" --target mq_kernels mq_kernels_bench
echo "gpu_check: built in $(( $(date +%s) - start )) s"

exec "${python}" "${here}/gpu_check.py" \
    --lib "${build}/plugins/libmq_kernels.so" \
    --bench-lib "${build}/plugins/libmq_kernels_bench.so" \
    --out "${build}/report.md" "$@"
