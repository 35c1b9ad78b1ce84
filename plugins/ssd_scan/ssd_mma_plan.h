// The tensor-core SSD scan's plan (ssd_mma_body.h, ssd_mma.cu): sizes, what it supports, its
// workspace and shared memory. Plain C++, so the C API and the CPU tests read it without the bodies.
#pragma once

#include <cstdint>

#include "scan_math.cuh"

namespace mq::ssd::mma {

constexpr int kChunk = 256;        // tokens per chunk: the unit of the carried state (the workspace's)
constexpr int kTile = 64;          // tokens per matmul tile
constexpr int kTilesPerChunk = kChunk / kTile;
constexpr int kFrag = 16;          // WMMA m = n = k
constexpr int kMaxHeadDim = 64;    // P and N are padded to multiples of 16 in shared memory
constexpr int kMaxDstate = 128;
constexpr int kThreads = 256;      // 8 warps on the GPU

MQ_HOST_DEVICE constexpr int pad16(int v) { return (v + kFrag - 1) / kFrag * kFrag; }
MQ_HOST_DEVICE constexpr int64_t chunks_of(int64_t seqlen) { return (seqlen + kChunk - 1) / kChunk; }

// What the plan needs to know: supported shapes, workspace (float32):
// states [batch][nchunks][heads][P][N], then decays [batch][nchunks][heads] (sum of dt*A per chunk).
inline bool supports(int64_t head_dim, int64_t dstate) {
    return head_dim >= 1 && head_dim <= kMaxHeadDim && dstate >= 1 && dstate <= kMaxDstate;
}
inline int64_t workspace_state_elems(int64_t batch, int64_t seqlen, int64_t heads, int64_t head_dim, int64_t dstate) {
    return batch * chunks_of(seqlen) * heads * head_dim * dstate;
}
inline int64_t workspace_decay_elems(int64_t batch, int64_t seqlen, int64_t heads) {
    return batch * chunks_of(seqlen) * heads;
}

// Row strides of the shared-memory arrays: the padded width plus 8 operands (16 bytes) or 4 floats,
// so consecutive rows of a fragment start 4 banks apart and 8 rows cover all 32 (a stride of 128
// halves or 64 floats starts every row in the same bank); strides stay multiples of 8 operands / 4
// floats and every fragment pointer 32-byte aligned, as WMMA requires.
MQ_HOST_DEVICE constexpr int op_stride(int width) { return width + 8; }
MQ_HOST_DEVICE constexpr int float_stride(int width) { return width + 4; }

// Shared memory of each pass, in bytes, for padded sizes pp, np and an operand type of `op_bytes`
// (the layouts are in the bodies).
constexpr int state_pass_smem(int pp, int np, int op_bytes) {
    return 2 * kChunk * 4 + pp * float_stride(np) * 4 + kTile * (op_stride(pp) + op_stride(np)) * op_bytes;
}
constexpr int output_pass_smem(int pp, int np, int op_bytes) {
    return 2 * kChunk * 4 + kTile * float_stride(kTile) * 4 +
        kTile * (2 * op_stride(np) + op_stride(pp) + op_stride(kTile)) * op_bytes;
}

constexpr int kVector = 8;   // values per 16-byte load of a 16-bit activation

// The chunk count the carry kernel (ssd_carry_walk.h) is given: one more than the chunks, so it walks
// every chunk's slot (slot c becomes the state after chunk c) and the last is the final state.
MQ_HOST_DEVICE constexpr int carry_count(int nchunks) { return nchunks + 1; }

}  // namespace mq::ssd::mma
