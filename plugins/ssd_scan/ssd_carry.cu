// Pass 2 of the chunked SSD scan (ssd_scan_kernel.cuh): the states entering each chunk.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "ssd_plan.h"
#include "ssd_scan_launch.h"

namespace mq::ssd {
namespace {

// One thread per state element [b, h, p, n]: the states entering chunks 1 .. nchunks-1, in place
// (slot c becomes the state after chunk c, over nchunks - 1 slots); the last of them also to
// final_state when given. The tensor-core scan passes its chunk count + 1, so every chunk's slot is
// walked and the last one is its final state.
__global__ void ssd_carry_kernel(float const* initial_state, float* chunk_state, float const* chunk_decay, int batch,
    int heads, int head_dim, int dstate, int nchunks, float* final_state) {
    int64_t const per_head = static_cast<int64_t>(head_dim) * dstate;
    int64_t const total = static_cast<int64_t>(batch) * heads * per_head;
    int64_t const i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= total) {
        return;
    }
    int64_t const b = i / (heads * per_head);
    int64_t const h = (i / per_head) % heads;
    int64_t const within = i % per_head;
    float state = initial_state != nullptr ? initial_state[i] : 0.0f;
    for (int c = 0; c < nchunks - 1; ++c) {
        int64_t const slot = (b * (nchunks - 1) + c) * heads + h;
        float* local = chunk_state + slot * per_head + within;
        state = fmaf(expf(chunk_decay[slot]), state, *local);
        *local = state;
    }
    if (final_state != nullptr) {
        final_state[i] = state;
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
