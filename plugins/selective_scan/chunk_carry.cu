// Pass 2 of the chunked scan (see selective_scan_kernels.cuh). Its own translation unit: the kernel
// does not depend on the activation dtype.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "scan_math.cuh"
#include "scan_plan.h"
#include "selective_scan_launch.h"

namespace mq::scan {
namespace {

// One thread per (batch, channel, state): turns chunk summaries into carried-in states, in place.
__global__ void __launch_bounds__(256) chunk_carry_kernel(float const* A, float const* initial_state,
    float* chunk_state, float const* chunk_dtsum, int batch, int dim, int dstate, int padded, int nchunks) {
    int64_t const idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= static_cast<int64_t>(batch) * dim * dstate) {
        return;
    }
    int const n = static_cast<int>(idx % dstate);
    int64_t const bc = idx / dstate;
    int const channel = static_cast<int>(bc % dim);
    int64_t const b = bc / dim;
    float const a2 = A[static_cast<int64_t>(channel) * dstate + n] * kLog2e;
    float h = initial_state != nullptr ? initial_state[idx] : 0.0f;
    int const carried = nchunks - 1;
    int64_t const slot0 = b * carried * dim + channel;  // chunk k's slot: slot0 + k * dim
    constexpr int kBatch = 8;  // loads do not depend on h: issue a batch of them before the chain
    for (int k0 = 0; k0 < carried; k0 += kBatch) {
        float sum_dt[kBatch];
        float local[kBatch];
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
            int64_t const slot = slot0 + static_cast<int64_t>(k0 + j) * dim;
            bool const ok = k0 + j < carried;
            sum_dt[j] = ok ? chunk_dtsum[slot] : 0.0f;
            local[j] = ok ? chunk_state[slot * padded + n] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
            if (k0 + j < carried) {
                h = fmaf(exp2_fast(a2 * sum_dt[j]), h, local[j]);
                chunk_state[(slot0 + static_cast<int64_t>(k0 + j) * dim) * padded + n] = h;
            }
        }
    }
}

}  // namespace

void enqueue_chunk_carry(float const* A, float const* initial_state, float* chunk_state, float const* chunk_dtsum,
    int batch, int dim, int dstate, int padded, int nchunks, cudaStream_t stream) {
    constexpr int kThreads = 256;
    int64_t const lanes = static_cast<int64_t>(batch) * dim * dstate;
    chunk_carry_kernel<<<static_cast<unsigned>(ceil_div(lanes, kThreads)), kThreads, 0, stream>>>(
        A, initial_state, chunk_state, chunk_dtsum, batch, dim, dstate, padded, nchunks);
}

}  // namespace mq::scan
