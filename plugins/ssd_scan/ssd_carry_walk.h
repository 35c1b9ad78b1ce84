// One state element's walk over the chunks of a chunked SSD scan: what each thread of
// ssd_carry_kernel (ssd_carry.cu) does, and what the CPU model of the tensor-core scan
// (plugins/tests/test_ssd_mma_model.cpp) runs, so both run this code. Plain C++ on the host.
#pragma once

#include <cstdint>

#include "scan_math.cuh"

namespace mq::ssd {

// Element i of [batch, heads, head_dim, dstate]: starting from the initial state (or 0), slot c of
// the chunk states (c < nchunks - 1, laid out [batch][nchunks - 1][heads][head_dim][dstate], the
// chunk's end state from a zero start, chunk_decay its sum of dt * A) becomes the state after chunk
// c, in place; the last also goes to final_state when given.
MQ_HOST_DEVICE void ssd_carry_walk(int64_t i, float const* initial_state, float* chunk_state, float const* chunk_decay,
    int heads, int head_dim, int dstate, int nchunks, float* final_state) {
    int64_t const per_head = static_cast<int64_t>(head_dim) * dstate;
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

}  // namespace mq::ssd
