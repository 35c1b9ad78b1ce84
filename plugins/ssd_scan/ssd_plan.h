// How an SSD (Mamba-2) scan is split over the GPU: threads per row of the state, chunks along the
// sequence, workspace. Plain C++ (no CUDA) so the launcher, the TensorRT plugin and the CPU unit
// tests share one plan (as scan_plan.h does for the selective scan).
//
// A block of kSsdThreads threads owns kSsdRowsPerBlock rows p of one head's [P, N] state; the
// kSsdLanesPerRow lanes of a row split its N states (lane l holds n = l, l + 8, ...), so the B/C
// loads of a token are coalesced and <h, C> is a three-step shuffle. Long sequences are cut into
// chunks that run in parallel (the selective scan's three-launch scheme: chunk end states from a
// zero start, a carry across chunks, then every chunk rescans from its carried-in state).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace mq::ssd {

constexpr int kSsdLanesPerRow = 8;
constexpr int kSsdRowsPerBlock = 16;
constexpr int kSsdThreads = kSsdLanesPerRow * kSsdRowsPerBlock;   // 128
constexpr int kSsdMaxDstate = 256;                                // 32 states per lane at most
constexpr int kSsdMinChunkLen = 64;       // shorter chunks move more workspace than they save
constexpr int64_t kSsdTargetThreads = 131072;   // ~8 resident blocks of 128 on each of 132 SMs
constexpr int kSsdMaxGrid = 65535;        // gridDim.y (heads) and gridDim.z (batch x chunks)

constexpr int64_t ssd_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// States each lane keeps: the smallest of 1, 2, 4, 8, 16, 32 with 8 lanes covering dstate.
constexpr int ssd_states_per_lane(int64_t dstate) {
    int s = 1;
    while (s < 32 && s * kSsdLanesPerRow < dstate) {
        s *= 2;
    }
    return s;
}

struct SsdPlan {
    int states_per_lane{1};
    int row_blocks{1};       // ceil(head_dim / kSsdRowsPerBlock)
    int chunk_len{0};        // tokens per chunk
    int nchunks{1};          // 1 = no split, no workspace
    // Workspace: chunk_state [batch][nchunks-1][heads][head_dim][dstate] floats, then
    // chunk_decay [batch][nchunks-1][heads] (the sum of dt * A over each chunk).
    std::size_t state_elems{0};
    std::size_t decay_elems{0};
    std::size_t workspace_bytes() const { return (state_elems + decay_elems) * sizeof(float); }
};

inline SsdPlan finish_ssd_plan(int64_t batch, int64_t seqlen, int64_t heads, int64_t head_dim, int64_t dstate,
    int64_t nchunks) {
    SsdPlan plan;
    plan.states_per_lane = ssd_states_per_lane(dstate);
    plan.row_blocks = static_cast<int>(ssd_ceil_div(std::max<int64_t>(head_dim, 1), kSsdRowsPerBlock));
    int64_t const most_by_grid = std::max<int64_t>(1, kSsdMaxGrid / std::max<int64_t>(batch, 1));
    nchunks = std::clamp<int64_t>(nchunks, 1, most_by_grid);
    int64_t const len = ssd_ceil_div(std::max<int64_t>(seqlen, 1), nchunks);
    plan.chunk_len = static_cast<int>(len);
    plan.nchunks = static_cast<int>(std::max<int64_t>(1, ssd_ceil_div(seqlen, len)));
    int64_t const carried = batch * (plan.nchunks - 1) * heads;
    plan.state_elems = static_cast<std::size_t>(carried * head_dim * dstate);
    plan.decay_elems = static_cast<std::size_t>(carried);
    return plan;
}

// Sequence-parallel plan: enough chunks that the grid holds kSsdTargetThreads threads, none
// shorter than kSsdMinChunkLen. Depends on the shape only (not the device), so the plugin's
// workspace request at build time matches what enqueue uses.
inline SsdPlan plan_ssd_scan(int64_t batch, int64_t seqlen, int64_t heads, int64_t head_dim, int64_t dstate) {
    int64_t const threads = std::max<int64_t>(1, batch * heads * ssd_ceil_div(head_dim, kSsdRowsPerBlock) * kSsdThreads);
    int64_t const wanted = ssd_ceil_div(kSsdTargetThreads, threads);
    int64_t const most = std::max<int64_t>(1, seqlen / kSsdMinChunkLen);
    return finish_ssd_plan(batch, seqlen, heads, head_dim, dstate, std::min(wanted, most));
}

// One chunk: each block walks the whole sequence (the baseline, and decode).
inline SsdPlan plan_ssd_scan_sequential(int64_t batch, int64_t seqlen, int64_t heads, int64_t head_dim,
    int64_t dstate) {
    return finish_ssd_plan(batch, seqlen, heads, head_dim, dstate, 1);
}

// Upper bound of plan_ssd_scan(...).workspace_bytes() over batch <= max_batch, seqlen <= max_seqlen:
// batch * (nchunks - 1) < kSsdTargetThreads / threads-per-batch-row and nchunks <= seqlen / 64.
inline std::size_t ssd_workspace_bound(int64_t max_batch, int64_t max_seqlen, int64_t heads, int64_t head_dim,
    int64_t dstate) {
    if (max_batch <= 0 || max_seqlen <= 0 || heads <= 0 || head_dim <= 0 || dstate <= 0) {
        return 0;
    }
    int64_t const per_row = heads * ssd_ceil_div(head_dim, kSsdRowsPerBlock) * kSsdThreads;
    int64_t const by_parallelism = kSsdTargetThreads / per_row + 1;
    int64_t const by_length = max_batch * std::max<int64_t>(0, max_seqlen / kSsdMinChunkLen - 1);
    int64_t const carried = std::min(by_parallelism, by_length);
    return static_cast<std::size_t>(carried * heads * (head_dim * dstate + 1)) * sizeof(float);
}

}  // namespace mq::ssd
