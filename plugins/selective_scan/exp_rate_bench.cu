// Microbenchmark for gpu_check.py (target mq_kernels_bench, -DMQ_BUILD_BENCH=ON): the GPU's rate of
// the exponential the scan uses (ex2.approx, one MUFU op, plus the multiply that feeds it), which
// with the bytes moved bounds how fast any selective scan can run. Not part of libmq_kernels.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "mq_kernels.h"
#include "scan_math.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kChains = 8;  // independent dependency chains per thread hide the MUFU latency

__global__ void __launch_bounds__(kThreads) exp2_rate_kernel(float* sink, int iters) {
    float v[kChains];
#pragma unroll
    for (int c = 0; c < kChains; ++c) {
        v[c] = 0.01f * static_cast<float>(threadIdx.x + c);
    }
    for (int i = 0; i < iters; ++i) {
#pragma unroll
        for (int c = 0; c < kChains; ++c) {
            v[c] = mq::scan::exp2_fast(v[c] * -0.5f);  // stays in (0, 1]: no inf, no denormals
        }
    }
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kChains; ++c) {
        sum += v[c];
    }
    if (sum == -1.0f) {  // never true; keeps the work alive
        sink[blockIdx.x] = sum;
    }
}

}  // namespace

extern "C" {

// Exponentials one mq_bench_exp2 launch evaluates.
MQ_API int64_t mq_bench_exp2_count(int32_t blocks, int32_t iters) {
    return static_cast<int64_t>(blocks) * kThreads * kChains * iters;
}

MQ_API mq_status mq_bench_exp2(float* sink, int32_t blocks, int32_t iters, mq_stream_t stream) {
    if (sink == nullptr || blocks < 1 || iters < 1) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    exp2_rate_kernel<<<blocks, kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(sink, iters);
    return cudaGetLastError() == cudaSuccess ? MQ_SUCCESS : MQ_ERROR_CUDA;
}

}  // extern "C"
