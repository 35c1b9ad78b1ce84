// C API of the fast Walsh-Hadamard transform: checks, base-order dispatch, launch.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>

#include "fwht_kernel.cuh"
#include "hadamard_size.h"
#include "mq_kernels.h"

namespace mq::hadamard {
namespace {

static_assert(kMaxSize == MQ_HADAMARD_MAX_SIZE, "C API and kernel disagree on the largest size");

constexpr std::size_t kDefaultSharedLimit = 48 * 1024;
constexpr int kResidentBlocksPerSm = 2048 / kFwhtThreads;  // the most blocks of 256 threads an SM holds

// Blocks to launch: enough to fill every SM, each then walks rows (grid-stride), so the base matrix
// is copied to shared memory once per block rather than once per row.
int64_t block_count(int64_t rows) {
    int device = 0;
    int sms = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms < 1) {
        sms = 132;  // an H100/H200's count; only the block count depends on it, never the result
    }
    int64_t const fill = static_cast<int64_t>(sms) * kResidentBlocksPerSm;
    return rows < fill ? rows : fill;
}

template <typename T, int M, bool Quantize>
mq_status launch(void const* x, float const* signs, void const* quant_scale, void* y, int64_t rows, int n, int log2p,
    cudaStream_t stream) {
    auto const kernel = fwht_kernel<T, M, Quantize>;
    std::size_t const smem = static_cast<std::size_t>(n + (M > 1 ? M * M : 0)) * sizeof(float);
    if (smem > kDefaultSharedLimit &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)) != cudaSuccess) {
        return MQ_ERROR_CUDA;
    }
    auto const blocks = static_cast<unsigned>(block_count(rows));
    float const scale = 1.0f / std::sqrt(static_cast<float>(n));
    kernel<<<blocks, kFwhtThreads, smem, stream>>>(static_cast<T const*>(x), signs, y, rows, n, log2p, scale,
        static_cast<T const*>(quant_scale));
    return cudaGetLastError() == cudaSuccess ? MQ_SUCCESS : MQ_ERROR_CUDA;
}

template <typename T, bool Quantize>
mq_status launch_for_base(void const* x, float const* signs, void const* quant_scale, void* y, int64_t rows,
    SizeFactors f, int n, cudaStream_t stream) {
    switch (f.base_order) {
    case 1: return launch<T, 1, Quantize>(x, signs, quant_scale, y, rows, n, f.log2_pow2, stream);
    case 12: return launch<T, 12, Quantize>(x, signs, quant_scale, y, rows, n, f.log2_pow2, stream);
    case 20: return launch<T, 20, Quantize>(x, signs, quant_scale, y, rows, n, f.log2_pow2, stream);
    case 28: return launch<T, 28, Quantize>(x, signs, quant_scale, y, rows, n, f.log2_pow2, stream);
    case 40: return launch<T, 40, Quantize>(x, signs, quant_scale, y, rows, n, f.log2_pow2, stream);
    default: return MQ_ERROR_UNSUPPORTED;
    }
}

// Both entry points: argument checks, then the dtype dispatch.
template <bool Quantize>
mq_status transform(void const* x, float const* signs, void const* quant_scale, void* y, int64_t rows, int32_t n,
    mq_dtype dtype, mq_stream_t stream) {
    if (rows < 0 || n < 1) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    SizeFactors const f = factor_size(n);
    if (f.base_order == 0) {
        return MQ_ERROR_UNSUPPORTED;
    }
    if (rows == 0) {
        return MQ_SUCCESS;
    }
    if (x == nullptr || y == nullptr || (Quantize && (quant_scale == nullptr || y == x))) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    auto const s = reinterpret_cast<cudaStream_t>(stream);
    switch (dtype) {
    case MQ_FLOAT32: return launch_for_base<float, Quantize>(x, signs, quant_scale, y, rows, f, n, s);
    case MQ_FLOAT16: return launch_for_base<__half, Quantize>(x, signs, quant_scale, y, rows, f, n, s);
    case MQ_BFLOAT16: return launch_for_base<__nv_bfloat16, Quantize>(x, signs, quant_scale, y, rows, f, n, s);
    }
    return MQ_ERROR_INVALID_ARGUMENT;
}

}  // namespace
}  // namespace mq::hadamard

extern "C" {

int32_t mq_hadamard_base_order(int32_t n) { return mq::hadamard::factor_size(n).base_order; }

mq_status mq_hadamard_transform(void const* x, float const* signs, void* y, int64_t rows, int32_t n, mq_dtype dtype,
    mq_stream_t stream) {
    return mq::hadamard::transform<false>(x, signs, nullptr, y, rows, n, dtype, stream);
}

mq_status mq_hadamard_quantize(void const* x, float const* signs, void const* scale, int8_t* y, int64_t rows, int32_t n,
    mq_dtype dtype, mq_stream_t stream) {
    return mq::hadamard::transform<true>(x, signs, scale, y, rows, n, dtype, stream);
}

}  // extern "C"
