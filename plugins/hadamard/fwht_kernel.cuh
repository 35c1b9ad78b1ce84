// Fast Walsh-Hadamard transform with a non-power-of-two base: y = x diag(signs) kron(H_m, S_p) / sqrt(n).
// A thread block walks rows (grid-stride): the row (float32) sits in shared memory, log2(p) butterfly
// stages apply S_p inside every block of p consecutive entries, then each output column c mixes the
// m blocks with the base matrix: y[j p + c] = sum_i H_m[i][j] u[i p + c] (y = x H, so H_m is read by
// column). The base matrix is copied to shared memory once per block: read from __constant__, its
// m * 4 distinct entries per output group (6.4 KB at m = 40, all four bases 11.7 KB) overflow the
// constant cache, the suspected cause of base 40 running 14x slower than base 12 (docs/gpu_report.md).
// Quantize = true is HadamardQuantize: each float32 result goes straight to INT8 at a per-tensor scale
// (QuantizeLinear's rule), so out_proj's input leaves the kernel as codes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "hadamard_bases_generated.h"  // MQ_HADAMARD_BASE_<m>, from hadamard_bases.txt

namespace mq::hadamard {

__constant__ float kBase12[12 * 12] = {MQ_HADAMARD_BASE_12};
__constant__ float kBase20[20 * 20] = {MQ_HADAMARD_BASE_20};
__constant__ float kBase28[28 * 28] = {MQ_HADAMARD_BASE_28};
__constant__ float kBase40[40 * 40] = {MQ_HADAMARD_BASE_40};

// Direct indexing of the __constant__ arrays keeps the reads on the constant cache (broadcast).
template <int M>
__device__ __forceinline__ float base_entry(int index) {
    if constexpr (M == 12) {
        return kBase12[index];
    } else if constexpr (M == 20) {
        return kBase20[index];
    } else if constexpr (M == 28) {
        return kBase28[index];
    } else {
        static_assert(M == 40, "base orders are 1, 12, 20, 28, 40");
        return kBase40[index];
    }
}

template <typename T>
__device__ __forceinline__ float to_float(T v) {
    if constexpr (sizeof(T) == 4) {
        return v;
    } else if constexpr (std::is_same_v<T, __half>) {
        return __half2float(v);
    } else {
        return __bfloat162float(v);
    }
}

template <typename T>
__device__ __forceinline__ T from_float(float v) {
    if constexpr (sizeof(T) == 4) {
        return v;
    } else if constexpr (std::is_same_v<T, __half>) {
        return __float2half_rn(v);
    } else {
        return __float2bfloat16_rn(v);
    }
}

// QuantizeLinear with zero point 0: round half to even of v / scale (IEEE division), saturated.
__device__ __forceinline__ int8_t quantize_int8(float v, float scale) {
    float const q = rintf(__fdiv_rn(v, scale));
    return static_cast<int8_t>(fminf(fmaxf(q, -128.0f), 127.0f));
}

template <typename T, bool Quantize>
__device__ __forceinline__ void store_output(void* y, int64_t index, float v, float quant_scale) {
    if constexpr (Quantize) {
        static_cast<int8_t*>(y)[index] = quantize_int8(v, quant_scale);
    } else {
        static_cast<T*>(y)[index] = from_float<T>(v);
    }
}

constexpr int kFwhtThreads = 256;
constexpr int kOutputsPerItem = 4;  // base-mix outputs one thread computes from one loaded column

// x and y may be the same buffer (Quantize = false): a row is fully read before any of it is written.
// y: T [rows, n], or int8 [rows, n] codes at *quant_scale (one element of T) when Quantize.
template <typename T, int M, bool Quantize = false>
__global__ void __launch_bounds__(kFwhtThreads) fwht_kernel(T const* x, float const* signs, void* y, int64_t rows,
    int n, int log2p, float scale, T const* quant_scale) {
    extern __shared__ float s_mem[];
    float* const s_row = s_mem;       // n floats
    float* const s_base = s_mem + n;  // M * M floats (M > 1): read once the first row's __syncthreads passed
    if constexpr (M > 1) {
        for (int i = threadIdx.x; i < M * M; i += blockDim.x) {
            s_base[i] = base_entry<M>(i);
        }
    }
    int const p = 1 << log2p;
    float const q_scale = Quantize ? to_float(quant_scale[0]) : 1.0f;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        T const* xr = x + row * n;
        int64_t const yr = row * n;  // the output row's first index
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            s_row[i] = to_float(xr[i]) * (signs != nullptr ? signs[i] : 1.0f);
        }
        __syncthreads();
        for (int lh = 0; lh < log2p; ++lh) {
            int const h = 1 << lh;
            for (int j = threadIdx.x; j < n / 2; j += blockDim.x) {
                int const i = ((j >> lh) << (lh + 1)) | (j & (h - 1));
                float const a = s_row[i];
                float const b = s_row[i + h];
                s_row[i] = a + b;
                s_row[i + h] = a - b;
            }
            __syncthreads();
        }
        if constexpr (M == 1) {
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                store_output<T, Quantize>(y, yr + i, s_row[i] * scale, q_scale);
            }
        } else {
            constexpr int kGroups = (M + kOutputsPerItem - 1) / kOutputsPerItem;
            for (int item = threadIdx.x; item < kGroups * p; item += blockDim.x) {
                int const c = item % p;  // fastest: a warp reads consecutive columns, one group of j
                int const j0 = (item / p) * kOutputsPerItem;
                float u[M];
#pragma unroll
                for (int i = 0; i < M; ++i) {
                    u[i] = s_row[i * p + c];
                }
#pragma unroll
                for (int jj = 0; jj < kOutputsPerItem; ++jj) {
                    int const j = j0 + jj;
                    if (j < M) {
                        float acc = 0.0f;
#pragma unroll
                        for (int i = 0; i < M; ++i) {
                            acc = fmaf(s_base[i * M + j], u[i], acc);  // one j per warp: a broadcast
                        }
                        store_output<T, Quantize>(y, yr + j * p + c, acc * scale, q_scale);
                    }
                }
            }
        }
        __syncthreads();  // the next row reuses s_row
    }
}

}  // namespace mq::hadamard
