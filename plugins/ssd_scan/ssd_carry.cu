// Pass 2 of the chunked SSD scan (ssd_scan_kernel.cuh): the states entering each chunk.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "ssd_carry_walk.h"
#include "ssd_plan.h"
#include "ssd_scan_launch.h"

namespace mq::ssd {
namespace {

// One thread per state element [b, h, p, n] (ssd_carry_walk.h): the states entering chunks
// 1 .. nchunks-1, in place, and the last to final_state when given. The tensor-core scan passes its
// chunk count + 1 (mma::carry_count), so every chunk's slot is walked and the last is its final state.
__global__ void ssd_carry_kernel(float const* initial_state, float* chunk_state, float const* chunk_decay, int batch,
    int heads, int head_dim, int dstate, int nchunks, float* final_state) {
    int64_t const total = static_cast<int64_t>(batch) * heads * head_dim * dstate;
    int64_t const i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < total) {
        ssd_carry_walk(i, initial_state, chunk_state, chunk_decay, heads, head_dim, dstate, nchunks, final_state);
    }
}

}  // namespace

void enqueue_ssd_carry(float const* initial_state, float* chunk_state, float const* chunk_decay, int batch, int heads,
    int head_dim, int dstate, int nchunks, cudaStream_t stream, float* final_state) {
    int64_t const elements = static_cast<int64_t>(batch) * heads * head_dim * dstate;
    unsigned const blocks = static_cast<unsigned>(ssd_ceil_div(elements, 256));
    ssd_carry_kernel<<<blocks, 256, 0, stream>>>(initial_state, chunk_state, chunk_decay, batch, heads, head_dim, dstate,
        nchunks, final_state);
}

}  // namespace mq::ssd
