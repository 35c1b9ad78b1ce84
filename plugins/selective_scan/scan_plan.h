// How a selective scan is split over the GPU: state layout per thread, chunk length, workspace.
// Plain C++ (no CUDA) so the launcher, the TensorRT plugin and the CPU unit tests share one plan.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

// Plan functions the kernels call too: __host__ __device__ under nvcc, plain constexpr elsewhere.
#if defined(__CUDACC__)
#define MQ_PLAN_FN __host__ __device__ constexpr
#else
#define MQ_PLAN_FN constexpr
#endif

namespace mq::scan {

constexpr int kThreadsPerBlock = 128;
constexpr int kTokenGroup = 8;        // tokens whose x/delta/z one thread prefetches together
constexpr int kMinChunkLen = 64;      // shorter chunks spend more on workspace traffic than they gain
constexpr int64_t kTargetThreads = 65536;  // ~16 warps per SM on a 132-SM H100: enough to keep MUFU busy
constexpr int kMaxDstate = 64;
constexpr int kMaxGridYZ = 65535;     // CUDA limit on gridDim.y / gridDim.z (chunks / batch)

// Which states one thread owns: `states_per_thread` consecutive n, `threads_per_channel` threads
// per channel (their partial y are summed with warp shuffles). padded() = states kept per channel.
struct StateLayout {
    int states_per_thread;
    int threads_per_channel;
    constexpr int padded() const { return states_per_thread * threads_per_channel; }
};

// Prefill: one thread per channel up to N = 16 (no shuffles on the hot path), then split N.
constexpr StateLayout prefill_layout(int dstate) {
    return dstate <= 4 ? StateLayout{4, 1}
        : dstate <= 8  ? StateLayout{8, 1}
        : dstate <= 16 ? StateLayout{16, 1}
        : dstate <= 32 ? StateLayout{16, 2}
                       : StateLayout{16, 4};
}

// Decode (one token): spread each channel's states over 4 threads for more memory parallelism.
constexpr StateLayout decode_layout(int dstate) {
    return dstate <= 16 ? StateLayout{4, 4} : dstate <= 32 ? StateLayout{8, 4} : StateLayout{16, 4};
}

MQ_PLAN_FN int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct ScanPlan {
    StateLayout layout{4, 1};
    int chunk_len{0};  // tokens per chunk (a multiple of kTokenGroup)
    int nchunks{1};    // chunks along the sequence; 1 = no split, no workspace
    // Workspace: chunk_state [batch][nchunks-1][dim][padded] floats, then chunk_dtsum [batch][nchunks-1][dim].
    std::size_t state_elems{0};
    std::size_t dtsum_elems{0};
    std::size_t workspace_bytes() const { return (state_elems + dtsum_elems) * sizeof(float); }
};

inline ScanPlan finish_plan(StateLayout layout, int64_t batch, int64_t seqlen, int64_t dim, int64_t nchunks) {
    ScanPlan plan;
    plan.layout = layout;
    nchunks = std::clamp<int64_t>(nchunks, 1, kMaxGridYZ);
    int64_t len = ceil_div(std::max<int64_t>(seqlen, 1), nchunks);
    len = ceil_div(len, kTokenGroup) * kTokenGroup;
    plan.chunk_len = static_cast<int>(len);
    plan.nchunks = static_cast<int>(std::max<int64_t>(1, ceil_div(seqlen, len)));
    int64_t const carried = batch * (plan.nchunks - 1) * dim;
    plan.state_elems = static_cast<std::size_t>(carried * layout.padded());
    plan.dtsum_elems = static_cast<std::size_t>(carried);
    return plan;
}

// Sequence-parallel plan: enough chunks that batch * dim * chunks threads fill the GPU, none
// shorter than kMinChunkLen. Deterministic in the shape only (not the device), so the plugin's
// workspace request at build time matches what enqueue uses at run time.
inline ScanPlan plan_chunked_scan(int64_t batch, int64_t seqlen, int64_t dim, int64_t dstate) {
    StateLayout const layout = prefill_layout(static_cast<int>(dstate));
    int64_t const lanes = std::max<int64_t>(1, batch * dim * layout.threads_per_channel);
    int64_t const wanted = ceil_div(kTargetThreads, lanes);
    int64_t const most = std::max<int64_t>(1, ceil_div(seqlen, kMinChunkLen));
    return finish_plan(layout, batch, seqlen, dim, std::min(wanted, most));
}

// One chunk: every thread walks its channel's whole sequence (the baseline kernel).
inline ScanPlan plan_sequential_scan(int64_t batch, int64_t seqlen, int64_t dim, int64_t dstate) {
    return finish_plan(prefill_layout(static_cast<int>(dstate)), batch, seqlen, dim, 1);
}

// Upper bound of plan_chunked_scan(...).workspace_bytes() over all shapes up to the given maxima:
// (nchunks - 1) * batch * dim * threads_per_channel < kTargetThreads, and nchunks <= ceil(seqlen / kMinChunkLen).
inline std::size_t chunked_workspace_bound(int64_t max_batch, int64_t max_seqlen, int64_t max_dim, int64_t dstate) {
    if (max_batch <= 0 || max_seqlen <= 0 || max_dim <= 0 || dstate <= 0) {
        return 0;
    }
    StateLayout const layout = prefill_layout(static_cast<int>(dstate));
    int64_t const by_parallelism = kTargetThreads / layout.threads_per_channel;
    int64_t const by_length = max_batch * max_dim * (ceil_div(max_seqlen, kMinChunkLen) - 1);
    int64_t const rows = std::min(by_parallelism, by_length);
    return static_cast<std::size_t>(rows * (layout.padded() + 1)) * sizeof(float);
}


// ---- one-pass scan (onepass_kernel.cuh; design in README.md) ------------------------------------
// A block of kOpWarps warps owns kOpChannels channels of one batch row and walks the sequence in
// chunks of kOpChunk positions. Lane = segment_in_warp * kOpChannels + channel: the kOpChannels
// lanes of one segment read the same B/C words (shared-memory broadcast), and a warp covers
// kOpSegsPerWarp consecutive segments of kOpTokensPerThread positions each.
constexpr int kOpTokensPerThread = 16;                               // K: positions per thread
constexpr int kOpChannels = 4;                                       // channels per block
constexpr int kOpWarps = 4;                                          // warps per block, along the sequence
constexpr int kOpThreads = 32 * kOpWarps;
constexpr int kOpSegsPerWarp = 32 / kOpChannels;                     // 8
constexpr int kOpSegments = kOpWarps * kOpSegsPerWarp;               // 32 per chunk
constexpr int kOpChunk = kOpSegments * kOpTokensPerThread;           // 512 positions per chunk
constexpr int kOpStateGroup = 2;                                     // states of B/C in one float32 group
constexpr int kOpBcSegStride = kOpTokensPerThread + 4;               // floats; (K + 4) / 4 odd: no bank conflicts
// Lane offsets of the in-warp (Kogge-Stone) scan: one, two, four segments back.
constexpr int kOpScanLevels = 3;
MQ_PLAN_FN int op_scan_offset(int level) { return kOpChannels << level; }
static_assert(kOpSegsPerWarp == (1 << kOpScanLevels), "the in-warp scan spans the warp's segments");
static_assert((kOpBcSegStride / 4) % 2 == 1 && kOpTokensPerThread % 4 == 0, "B/C rows: 16-byte reads, conflict-free");
static_assert(kOpChunk == 4 * kOpThreads, "B/C commit: four positions per thread");

// B/C slabs (NOTES_onepass.md section 8). A chunk's B and C reach shared memory by cp.async in
// slabs of 16 bytes of every token's row (8 states at 16 bits, 4 at 32 bits), read once from
// device memory per chunk and block; a group's float32 commit then reads its pair of states from
// the slab. Layout [matrix B, C][pair of states][position + padding], one pair = one copy of 4 or
// 8 bytes: the commit's four consecutive positions are one 16-byte (32-bit: two) shared load, and
// the padding puts the copies' writes (pairs fastest, then positions) in 32 distinct banks.
constexpr int kOpSlabRowBytes = 16;  // bytes of each token's B (and C) row per slab
constexpr int kOpSlabPad = 8;        // pairs of padding after each row of positions
constexpr int kOpSlabRow = kOpChunk + kOpSlabPad;  // pairs between rows
MQ_PLAN_FN int op_slab_pairs(std::size_t act_bytes) { return static_cast<int>(kOpSlabRowBytes / (2 * act_bytes)); }
MQ_PLAN_FN std::size_t op_slab_bytes() { return std::size_t{2} * kOpSlabRow * kOpSlabRowBytes; }
// Index of (matrix, pair, position) in the slab, in pairs.
MQ_PLAN_FN int op_slab_offset(int matrix, int pair, int pos, int pairs) { return (matrix * pairs + pair) * kOpSlabRow + pos; }
// Copy k of a thread (per matrix): pair tid % pairs of position tid / pairs + k * kOpThreads / pairs.
MQ_PLAN_FN int op_slab_copy_pair(int tid, int pairs) { return tid % pairs; }
MQ_PLAN_FN int op_slab_copy_pos(int tid, int k, int pairs) { return tid / pairs + k * (kOpThreads / pairs); }
// 16-bit: one pair per bank word; the 4 pairs of 8 positions a warp copies land 8 banks apart.
static_assert(kOpSlabRow % 32 == 8 && kOpSlabRow % 4 == 0, "slab rows: distinct banks, 16-byte aligned");

// Where the slab copies go in the state-group loop: one step per (chunk, group), and the prologue
// is the step of group -1 of chunk 0. In a step, a thread block (1) waits for its copies before
// the first state's barrier when the next group starts a slab, (2) after that barrier commits the
// next group from the slab, (3) after the group's second barrier (the second state's, or the odd-N
// break's), once that commit was the last read of its slab, copies the slab of the group after it.
// plugins/tests/test_scan_plan.cpp replays every step against a model of the buffer.
struct OpGroupStep {
    bool next_exists;  // a group follows, in this chunk or the next
    int next_chunk;
    int next_group;
    bool wait_slab;    // (1)
    bool issue;        // (3)
    int issue_chunk;
    int issue_slab;
};
MQ_PLAN_FN bool op_slab_starts(int group, int pairs) { return group % pairs == 0; }
MQ_PLAN_FN bool op_slab_ends(int group, int ngroups, int pairs) { return group % pairs == pairs - 1 || group == ngroups - 1; }
MQ_PLAN_FN OpGroupStep op_group_step(int chunk, int group, int nchunks, int ngroups, int pairs) {
    OpGroupStep s{false, 0, 0, false, false, 0, 0};
    bool const same_chunk = group + 1 < ngroups;
    s.next_chunk = same_chunk ? chunk : chunk + 1;
    s.next_group = same_chunk ? group + 1 : 0;
    s.next_exists = s.next_chunk < nchunks;
    s.wait_slab = s.next_exists && op_slab_starts(s.next_group, pairs);
    if (s.next_exists && op_slab_ends(s.next_group, ngroups, pairs)) {
        bool const same = s.next_group + 1 < ngroups;
        s.issue_chunk = same ? s.next_chunk : s.next_chunk + 1;
        s.issue_slab = same ? (s.next_group + 1) / pairs : 0;
        s.issue = s.issue_chunk < nchunks;
    }
    return s;
}

MQ_PLAN_FN int64_t op_chunks(int64_t seqlen) { return ceil_div(seqlen, kOpChunk); }

// Shared memory of the one-pass kernel (bytes): B/C groups (double-buffered, float32), the B/C
// slab (activation dtype) and the x/delta/z tiles (double-buffered, activation dtype, 16 bytes of
// padding per segment) in dynamic shared memory; per-state A, carried states and warp aggregates
// in static shared memory.
MQ_PLAN_FN std::size_t op_bc_bytes() {
    return std::size_t{2} * 2 * kOpStateGroup * kOpSegments * kOpBcSegStride * sizeof(float);
}
MQ_PLAN_FN std::size_t op_row_bytes(std::size_t act_bytes) { return kOpChannels * act_bytes; }
MQ_PLAN_FN std::size_t op_seg_bytes(std::size_t act_bytes) { return kOpTokensPerThread * op_row_bytes(act_bytes) + 16; }
MQ_PLAN_FN std::size_t op_tile_bytes(std::size_t act_bytes) { return kOpSegments * op_seg_bytes(act_bytes); }
MQ_PLAN_FN std::size_t op_dynamic_smem_bytes(std::size_t act_bytes) {
    return op_bc_bytes() + op_slab_bytes() + 2 * 3 * op_tile_bytes(act_bytes);
}

}  // namespace mq::scan
