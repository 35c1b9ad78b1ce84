// One-pass selective scan: one launch, one exp2 per (token, channel, state), every input read once
// from device memory, y written once, no workspace. Design and the reasoning behind the numbers:
// README.md ("One-pass kernel"); the same decomposition runs on the CPU in
// plugins/tests/test_onepass_model.cpp.
//
// Grid (ceil(dim / kOpChannels), batch); block kOpThreads = 4 warps. Thread (warp w, lane l):
// channel ci = l % 4, segment seg = 8 w + l / 4, positions [seg K, seg K + K) of each chunk of
// kOpChunk = 512 positions (K = 16). Per chunk:
//   x / delta / z tiles [512 positions][4 channels] arrive by cp.async (double-buffered: the next
//   chunk's copy runs during this one); each thread turns its 16 positions into dt and u = dt x.
//   B and C arrive by cp.async in slabs of 16 bytes of each token's row, read once per chunk
//   (NOTES_onepass.md section 8), and are committed two states at a time to float32
//   [state][segment][K + 4], double-buffered, the next pair while this one runs.
//   For each state n:
//     pass 1  16 x {decay = exp2(dt a2), ub = u B, b = b decay + ub}: the segment's pair (a, b)
//     scan    in-warp Kogge-Stone over the warp's 8 segments (shuffles by 4, 8, 16 lanes)
//     block   warp aggregates through shared memory, one __syncthreads, chained from the chunk's
//             carried state (double-buffered by chunk parity): the state entering each lane
//     pass 2  16 x {h = h decay + ub, y += h C} from the kept decays: no second exponential
//   Then y = (y + D x) * gate(z) goes to the x tile and leaves in coalesced rows.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "mq_kernels.h"
#include "onepass_math.cuh"
#include "scan_plan.h"

namespace mq::scan {

template <typename T>
struct OnepassArgs {
    T const* x;
    T const* delta;
    float const* A;
    T const* B;
    T const* C;
    float const* D;              // nullable
    float const* delta_bias;     // nullable
    T const* z;                  // nullable: no gate
    float const* gate_scale;     // nullable: 1
    float const* initial_state;  // nullable: 0; may alias final_state
    T* y;
    float* final_state;          // nullable
    int batch;
    int seqlen;
    int dim;
    int dstate;
    bool delta_softplus;
    bool reverse;
    bool vector_rows;  // dim % 4 == 0 and x, delta, z, y aligned to a row of 4 channels: cp.async rows
    bool pair_bc;      // dstate even and B, C aligned to two elements: one copy per (token, state pair)
};

namespace op {

// Activation conversions (shared-memory tiles keep the input dtype).
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Two consecutive states of B or C for one token, as loaded (converted when committed to shared memory).
template <typename T>
struct Pair2;
template <>
struct Pair2<float> {
    using type = float2;
    __device__ static float2 to_float2(float2 v) { return v; }
    __device__ static float2 make(float a, float b) { return make_float2(a, b); }
};
template <>
struct Pair2<__half> {
    using type = __half2;
    __device__ static float2 to_float2(__half2 v) { return __half22float2(v); }
    __device__ static __half2 make(__half a, __half b) { return __halves2half2(a, b); }
};
template <>
struct Pair2<__nv_bfloat16> {
    using type = __nv_bfloat162;
    __device__ static float2 to_float2(__nv_bfloat162 v) { return __bfloat1622float2(v); }
    __device__ static __nv_bfloat162 make(__nv_bfloat16 a, __nv_bfloat16 b) { return __halves2bfloat162(a, b); }
};

template <int kBytes>
struct RowVec;
template <>
struct RowVec<8> {
    using type = uint2;
};
template <>
struct RowVec<16> {
    using type = uint4;
};

// cp.async of one row (8 or 16 bytes) to shared memory; valid = false zero-fills it.
template <int kBytes>
__device__ __forceinline__ void cp_async_row(void* smem_dst, void const* gmem_src, bool valid) {
    unsigned const dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
    int const src_bytes = valid ? kBytes : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(gmem_src), "n"(kBytes),
        "r"(src_bytes)
        : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory"); }

// A value the compiler must keep in a register: loop-invariant per-thread offsets that ptxas
// would otherwise recompute from threadIdx in every state iteration (~60 integer instructions per
// state in the SASS before this; see NOTES_onepass.md).
__device__ __forceinline__ int opaque(int v) {
    asm volatile("" : "+r"(v));
    return v;
}

template <typename T>
constexpr int min_blocks() {
    // 16-bit: 3 blocks (12 warps) per SM, <= 168 registers, ~66.5 KB of shared memory each (4 blocks'
    // 128 registers spilled); float32 tiles are twice as large: 2 blocks (~90.5 KB each).
    return sizeof(T) == 2 ? 3 : 2;
}

}  // namespace op

template <typename T>
__global__ void __launch_bounds__(kOpThreads, op::min_blocks<T>()) onepass_scan_kernel(OnepassArgs<T> const p) {
    constexpr int K = kOpTokensPerThread;
    constexpr int kRow = static_cast<int>(op_row_bytes(sizeof(T)));
    constexpr int kSeg = static_cast<int>(op_seg_bytes(sizeof(T)));
    constexpr int kTile = static_cast<int>(op_tile_bytes(sizeof(T)));
    constexpr int kBcState = kOpSegments * kOpBcSegStride;  // floats per (buffer, matrix, state)
    using P2 = op::Pair2<T>;
    using Raw = typename P2::type;
    using Vec = typename op::RowVec<kRow>::type;

    constexpr int kP = op_slab_pairs(sizeof(T));  // pairs of states per slab
    static_assert(kP * static_cast<int>(sizeof(Raw)) == kOpSlabRowBytes, "a slab row is whole pairs");

    extern __shared__ __align__(16) unsigned char op_smem[];
    float* const s_bc = reinterpret_cast<float*>(op_smem);  // [buffer][matrix B, C][state in group][segment][K + 4]
    Raw* const s_slab = reinterpret_cast<Raw*>(op_smem + op_bc_bytes());  // [matrix][pair][position + pad]
    unsigned char* const s_act = op_smem + op_bc_bytes() + op_slab_bytes();  // [buffer][x, delta, z] tiles
    __shared__ float s_a2[kOpChannels][kMaxDstate];           // A * log2(e)
    __shared__ float s_carry[2][kOpChannels][kMaxDstate];     // state entering the chunk, by chunk parity
    __shared__ float2 s_agg[2][kOpWarps][kOpChannels];        // warp aggregates, by state-iteration parity

    int const tid = static_cast<int>(threadIdx.x);
    int const lane = tid & 31;
    int const warp = tid >> 5;
    int const ci = lane % kOpChannels;
    int const seg_in_warp = lane / kOpChannels;
    int const seg = warp * kOpSegsPerWarp + seg_in_warp;
    int const b = static_cast<int>(blockIdx.y);
    int const c0 = static_cast<int>(blockIdx.x) * kOpChannels;
    int const L = p.seqlen;
    bool const has_gate = p.z != nullptr;
    int const N = p.dstate;
    int const channel = min(c0 + ci, p.dim - 1);  // parameters of a missing channel: any valid one
    int64_t const row0 = static_cast<int64_t>(b) * L;
    // This batch row's tensors; offsets inside a row are 32-bit (the API refuses seqlen * max(dim,
    // dstate) >= 2^31).
    T const* const x_row = p.x + row0 * p.dim;
    T const* const delta_row = p.delta + row0 * p.dim;
    T const* const z_row = has_gate ? p.z + row0 * p.dim : nullptr;
    T* const y_row = p.y + row0 * p.dim;
    T const* const b_row = p.B + row0 * N;
    T const* const c_row = p.C + row0 * N;
    int const nchunks = static_cast<int>(op_chunks(L));
    int const ngroups = (N + kOpStateGroup - 1) / kOpStateGroup;
    auto token_of = [&](int pos) { return p.reverse ? L - 1 - pos : pos; };

    for (int e = tid; e < kOpChannels * N; e += kOpThreads) {
        int const cc = e / N;
        int const n = e % N;
        int const c = c0 + cc;
        s_a2[cc][n] = p.A[static_cast<int64_t>(min(c, p.dim - 1)) * N + n] * kLog2e;
        s_carry[0][cc][n] = (p.initial_state != nullptr && c < p.dim)
            ? p.initial_state[(static_cast<int64_t>(b) * p.dim + c) * N + n]
            : 0.0f;
    }
    float const bias = p.delta_bias != nullptr ? p.delta_bias[channel] : 0.0f;
    float const d_skip = p.D != nullptr ? p.D[channel] : 0.0f;
    float const gate_scale = p.gate_scale != nullptr ? p.gate_scale[channel] : 1.0f;

    // ---- x / delta / z tiles -------------------------------------------------------------------
    auto tile = [&](int buf, int tensor) { return s_act + (buf * 3 + tensor) * kTile; };
    auto row_offset = [](int r) { return (r / K) * kSeg + (r % K) * kRow; };
    auto act_src = [&](int t) { return t == 0 ? x_row : t == 1 ? delta_row : z_row; };  // t: a compile-time constant below
    auto stage_act = [&](int chunk, int buf) {
        int const p0 = chunk * kOpChunk;
        if (p.vector_rows) {
#pragma unroll
            for (int k = 0; k < kOpChunk / kOpThreads; ++k) {
                int const r = tid + k * kOpThreads;
                bool const valid = p0 + r < L;
                int const off = (valid ? token_of(p0 + r) : 0) * p.dim + c0;
#pragma unroll
                for (int t = 0; t < 3; ++t) {
                    if (t < 2 || has_gate) {
                        op::cp_async_row<kRow>(tile(buf, t) + row_offset(r), act_src(t) + off, valid);
                    }
                }
            }
        } else {
            for (int e = tid; e < kOpChunk * kOpChannels; e += kOpThreads) {
                int const r = e / kOpChannels;
                int const cc = e % kOpChannels;
                bool const valid = p0 + r < L && c0 + cc < p.dim;
                int const off = (valid ? token_of(p0 + r) : 0) * p.dim + c0 + cc;
#pragma unroll
                for (int t = 0; t < 3; ++t) {
                    if (t < 2 || has_gate) {
                        T const v = valid ? act_src(t)[off] : op::from_f32<T>(0.0f);
                        *reinterpret_cast<T*>(tile(buf, t) + row_offset(r) + cc * static_cast<int>(sizeof(T))) = v;
                    }
                }
            }
        }
        op::cp_async_commit();
    };

    // ---- B / C: slabs by cp.async, groups of two states committed as float32 ----------------------
    // Slab `slab` of a chunk: states [slab 2 kP, slab 2 kP + 2 kP) of its 512 positions, both
    // matrices. This thread copies pair j = tid % kP of positions tid / kP + k kRStep: a warp reads
    // 32 / kP whole 16-byte pieces of consecutive tokens' rows. The source advances by a fixed
    // step (all 2 kPerMatrix addresses computed up front spilled; predicated ones cost ~16
    // instructions a copy in the SASS, the stepped ones ~3).
    constexpr int kRStep = kOpThreads / kP;            // positions between one thread's copies
    constexpr int kPerMatrix = kOpChunk / kRStep;      // copies per thread, matrix and slab
    static_assert(kPerMatrix * kRStep == kOpChunk, "slab copies split evenly over threads");
    int const slab_j = op_slab_copy_pair(tid, kP);
    int const slab_r = op_slab_copy_pos(tid, 0, kP);
    static_assert(kOpThreads % kP == 0 && kRStep == op_slab_copy_pos(0, 1, kP), "copies of a thread: kRStep apart");
    auto stage_slab = [&](int chunk, int slab) {
        int const p0 = chunk * kOpChunk;
        int const n0 = slab * 2 * kP + 2 * slab_j;
        // Pairs past N are never committed: not copied. Positions past L are (zeros: dt = 0 there,
        // and 0 * garbage could be NaN).
        if (n0 < N) {
            int const step = (p.reverse ? -kRStep : kRStep) * N;  // elements between a thread's copies
            int const first = token_of(min(p0 + slab_r, L - 1)) * N + n0;
            bool const whole = p0 + kOpChunk <= L;
#pragma unroll
            for (int m = 0; m < 2; ++m) {
                T const* src = (m == 0 ? b_row : c_row) + first;
                Raw* const dst = s_slab + op::opaque(op_slab_offset(m, slab_j, slab_r, kP));
                if (p.pair_bc && whole) {  // every full chunk: no predicates, the source advances by step
#pragma unroll 8
                    for (int k = 0; k < kPerMatrix; ++k) {
                        op::cp_async_row<static_cast<int>(sizeof(Raw))>(dst + k * kRStep, src, true);
                        src += step;
                    }
                } else if (p.pair_bc) {
#pragma unroll 1
                    for (int k = 0; k < kPerMatrix; ++k) {
                        bool const valid = p0 + slab_r + k * kRStep < L;
                        op::cp_async_row<static_cast<int>(sizeof(Raw))>(dst + k * kRStep, valid ? src : b_row, valid);
                        src += valid ? step : 0;
                    }
                } else {  // odd N or unaligned B/C: element loads, visible after the next barrier
                    // Four rows' loads in flight before their stores (one at a time cost an L2 round
                    // trip each while the block waited at the next barrier).
                    T const zero = op::from_f32<T>(0.0f);
                    bool const second = n0 + 1 < N;
                    static_assert(kPerMatrix % 4 == 0, "fallback copies go four at a time");
#pragma unroll 1
                    for (int k0 = 0; k0 < kPerMatrix; k0 += 4) {
                        Raw v[4];
#pragma unroll
                        for (int k = 0; k < 4; ++k) {
                            bool const valid = p0 + slab_r + (k0 + k) * kRStep < L;
                            T const* const at = src + (valid ? k * step : 0);
                            v[k] = valid ? P2::make(at[0], second ? at[1] : zero) : P2::make(zero, zero);
                        }
#pragma unroll
                        for (int k = 0; k < 4; ++k) {
                            dst[(k0 + k) * kRStep] = v[k];
                        }
                        src += 4 * step;
                    }
                }
            }
        }
        op::cp_async_commit();
    };
    // Group `group` (states 2 group, 2 group + 1) from the slab into float buffer buf: this thread
    // converts positions 4 tid .. 4 tid + 3 (one segment) of both matrices.
    struct alignas(16) Raw4 {  // one (16-bit) or two (fp32) 16-byte shared loads; the slab is 16-byte aligned
        Raw v[4];
    };
    int const bc_r = 4 * tid;
    float* const bc_dst = s_bc + (bc_r / K) * kOpBcSegStride + bc_r % K;
    float const* const bc_seg = s_bc + op::opaque(seg * kOpBcSegStride);  // this thread's segment, buffer 0, B, state 0
    Raw const* const slab_src = s_slab + op::opaque(bc_r);
    auto commit_group = [&](int group, int buf) {
        int const j = group % kP;
#pragma unroll
        for (int m = 0; m < 2; ++m) {
            Raw4 const q = *reinterpret_cast<Raw4 const*>(slab_src + op_slab_offset(m, j, 0, kP));
            float2 const v0 = P2::to_float2(q.v[0]);
            float2 const v1 = P2::to_float2(q.v[1]);
            float2 const v2 = P2::to_float2(q.v[2]);
            float2 const v3 = P2::to_float2(q.v[3]);
            float* const dst = bc_dst + (buf * 2 + m) * kOpStateGroup * kBcState;
            *reinterpret_cast<float4*>(dst) = make_float4(v0.x, v1.x, v2.x, v3.x);
            *reinterpret_cast<float4*>(dst + kBcState) = make_float4(v0.y, v1.y, v2.y, v3.y);
        }
    };
    // Row of matrix m (0: B, 1: C), state state_in_group, from the group's buffer (bc_group: bc_seg
    // plus the buffer's offset).
    auto load_row = [&](float (&v)[K], float const* bc_group, int m, int state_in_group) {
        float const* const src = bc_group + (m * kOpStateGroup + state_in_group) * kBcState;
#pragma unroll
        for (int j = 0; j < K; j += 4) {
            float4 const q = *reinterpret_cast<float4 const*>(src + j);
            v[j] = q.x;
            v[j + 1] = q.y;
            v[j + 2] = q.z;
            v[j + 3] = q.w;
        }
    };

    // Per-thread shared-memory addresses, fixed for the whole kernel.
    float const* const a2_row = &s_a2[0][0] + op::opaque(ci * kMaxDstate);
    float2* const agg_out = &s_agg[0][0][0] + op::opaque(warp * kOpChannels + ci);
    float2 const* const agg_in = &s_agg[0][0][0] + op::opaque(ci);
    bool const last_seg = op::opaque(seg_in_warp) == kOpSegsPerWarp - 1;  // writes the warp aggregate
    bool const first_seg = op::opaque(seg_in_warp) == 0;
    bool const writes_carry = op::opaque(warp) == kOpWarps - 1 && first_seg;
    int const warp_k = op::opaque(warp);
    constexpr int kAggParity = kOpWarps * kOpChannels;  // float2 elements between the two parities

    // Prologue (the step of group -1): chunk 0's tiles in flight, its first slab copied, group 0
    // committed to buffer 0, and the next slab on its way if group 0 ends its slab.
    if (nchunks > 0) {
        stage_act(0, 0);
        stage_slab(0, 0);
        op::cp_async_wait<0>();
        __syncthreads();
        commit_group(0, 0);
        OpGroupStep const first = op_group_step(0, -1, nchunks, ngroups, kP);
        if (first.issue) {
            __syncthreads();  // every thread's commit has read the slab
            stage_slab(first.issue_chunk, first.issue_slab);
        }
    }

    for (int chunk = 0; chunk < nchunks; ++chunk) {
        int const p0 = chunk * kOpChunk;
        int const buf = chunk & 1;
        __syncthreads();  // T1: the previous chunk's y rows have left buffer buf ^ 1
        if (chunk + 1 < nchunks) {
            stage_act(chunk + 1, buf ^ 1);
            op::cp_async_wait<1>();
        } else {
            op::cp_async_wait<0>();
        }
        __syncthreads();  // T2: this chunk's tiles (and B/C group 0, and the initial carry) are visible

        bool const live = p0 + warp * kOpSegsPerWarp * K < L;  // warp-uniform: a position of this warp is in range
        int const seg_pos = p0 + seg * K;                       // first position of this thread's segment
        unsigned char const* const x_seg = tile(buf, 0) + seg * kSeg + ci * static_cast<int>(sizeof(T));
        unsigned char const* const d_seg = tile(buf, 1) + seg * kSeg + ci * static_cast<int>(sizeof(T));
        float dt[K], u[K], y[K];
        float dtsum = 0.0f;
#pragma unroll
        for (int i = 0; i < K; ++i) {
            float const xv = op::to_f32(*reinterpret_cast<T const*>(x_seg + i * kRow));
            float const dv = op::to_f32(*reinterpret_cast<T const*>(d_seg + i * kRow));
            float const d = seg_pos + i < L ? delta_to_dt_fast(dv, bias, p.delta_softplus) : 0.0f;
            dt[i] = d;
            u[i] = d * xv;
            dtsum += d;
            y[i] = 0.0f;
        }
        float const* const carry_in = &s_carry[0][0][0] + op::opaque(((chunk & 1) * kOpChannels + ci) * kMaxDstate);
        float* const carry_out = &s_carry[0][0][0] + op::opaque((((chunk + 1) & 1) * kOpChannels + ci) * kMaxDstate);

        for (int group = 0; group < ngroups; ++group) {
            int const cur = (chunk * ngroups + group) & 1;  // B/C buffer of this group
            float const* const bc_group = bc_seg + op::opaque(cur * 2 * kOpStateGroup * kBcState);
            OpGroupStep const step = op_group_step(chunk, group, nchunks, ngroups, kP);
#pragma unroll
            for (int sig = 0; sig < kOpStateGroup; ++sig) {
                int const n = group * kOpStateGroup + sig;
                // A one-state group (odd N) has no second state, only its barrier: the group
                // committed after the first state's barrier is read next.
                bool const no_state = sig == 1 && n >= N;
                float dec[K], ub[K];
                ScanPair pr{1.0f, 0.0f};
                if (no_state) {
                    __syncthreads();
                } else {
                    float const a2 = a2_row[n];
                    if (live) {
                        float bv[K];
                        load_row(bv, bc_group, 0, sig);
                        pr = segment_pass1<K>(dt, u, bv, a2, dtsum, dec, ub);
#pragma unroll
                        for (int level = 0; level < kOpScanLevels; ++level) {
                            int const off = op_scan_offset(level);
                            ScanPair const prev{__shfl_up_sync(0xffffffffu, pr.a, off), __shfl_up_sync(0xffffffffu, pr.b, off)};
                            if (lane >= off) {
                                pr = combine(prev, pr);
                            }
                        }
                    }
                    if (last_seg) {
                        agg_out[sig * kAggParity] = make_float2(pr.a, pr.b);
                    }
                    if (sig == 0 && step.wait_slab) {
                        op::cp_async_wait<0>();  // the slab the commit below reads (and any older copy)
                    }
                    __syncthreads();  // per state: the warps' aggregates (and the slab's copies)
                    if (sig == 0 && step.next_exists) {
                        // Buffer cur ^ 1 held the previous group, whose last reads preceded this barrier.
                        commit_group(step.next_group, cur ^ 1);
                    }
                }
                if (sig == 1 && step.issue) {
                    // Every thread is past the commit above, the slab's last read: the next slab's
                    // copies run from here, during this state's pass 2 and the next state's pass 1.
                    stage_slab(step.issue_chunk, step.issue_slab);
                }
                if (no_state) {
                    break;
                }
                ScanPair agg[kOpWarps];
#pragma unroll
                for (int k = 0; k < kOpWarps; ++k) {
                    float2 const g = agg_in[sig * kAggParity + k * kOpChannels];
                    agg[k] = ScanPair{g.x, g.y};
                }
                float h_warp;
                float const h_next = chain_warps<kOpWarps>(carry_in[n], agg, warp_k, &h_warp);
                if (writes_carry) {
                    carry_out[n] = h_next;
                }
                if (live) {
                    // State entering this lane's segment: the end state of the previous segment.
                    float const h_end = fmaf(pr.a, h_warp, pr.b);
                    float const h_prev = __shfl_up_sync(0xffffffffu, h_end, kOpChannels);
                    float cv[K];
                    load_row(cv, bc_group, 1, sig);
                    segment_pass2<K>(first_seg ? h_warp : h_prev, dec, ub, cv, y);
                }
            }
        }

        // y = (<h, C> + D x) * gate(z), into the x tile, then out in rows.
        unsigned char const* const z_seg = tile(buf, 2) + seg * kSeg + ci * static_cast<int>(sizeof(T));
        unsigned char* const y_seg = tile(buf, 0) + seg * kSeg + ci * static_cast<int>(sizeof(T));
#pragma unroll
        for (int i = 0; i < K; ++i) {
            float const zv = has_gate ? op::to_f32(*reinterpret_cast<T const*>(z_seg + i * kRow)) : 0.0f;
            float const xv = op::to_f32(*reinterpret_cast<T const*>(x_seg + i * kRow));
            float const out = finish_output_fast(y[i], xv, d_skip, has_gate, zv, gate_scale);
            *reinterpret_cast<T*>(y_seg + i * kRow) = op::from_f32<T>(out);
        }
        __syncthreads();  // T3: the y tile is complete
        if (p.vector_rows) {
#pragma unroll
            for (int k = 0; k < kOpChunk / kOpThreads; ++k) {
                int const r = tid + k * kOpThreads;
                if (p0 + r < L) {
                    int const off = token_of(p0 + r) * p.dim + c0;
                    *reinterpret_cast<Vec*>(y_row + off) = *reinterpret_cast<Vec const*>(tile(buf, 0) + row_offset(r));
                }
            }
        } else {
            for (int e = tid; e < kOpChunk * kOpChannels; e += kOpThreads) {
                int const r = e / kOpChannels;
                int const cc = e % kOpChannels;
                if (p0 + r < L && c0 + cc < p.dim) {
                    y_row[token_of(p0 + r) * p.dim + c0 + cc] =
                        *reinterpret_cast<T const*>(tile(buf, 0) + row_offset(r) + cc * static_cast<int>(sizeof(T)));
                }
            }
        }
    }

    __syncthreads();  // the last carry (or, for L = 0, the initial state) is in s_carry[nchunks & 1]
    if (p.final_state != nullptr) {
        for (int e = tid; e < kOpChannels * N; e += kOpThreads) {
            int const cc = e / N;
            int const n = e % N;
            if (c0 + cc < p.dim) {
                p.final_state[(static_cast<int64_t>(b) * p.dim + c0 + cc) * N + n] = s_carry[nchunks & 1][cc][n];
            }
        }
    }
}

template <typename T>
OnepassArgs<T> make_onepass_args(mq_selective_scan_args const& a) {
    OnepassArgs<T> t{};
    t.x = static_cast<T const*>(a.x);
    t.delta = static_cast<T const*>(a.delta);
    t.A = a.A;
    t.B = static_cast<T const*>(a.B);
    t.C = static_cast<T const*>(a.C);
    t.D = a.D;
    t.delta_bias = a.delta_bias;
    t.z = static_cast<T const*>(a.z);
    t.gate_scale = a.gate_scale;
    t.initial_state = a.initial_state;
    t.y = static_cast<T*>(a.y);
    t.final_state = a.final_state;
    t.batch = a.batch;
    t.seqlen = a.seqlen;
    t.dim = a.dim;
    t.dstate = a.dstate;
    t.delta_softplus = a.delta_softplus != 0;
    t.reverse = a.reverse != 0;
    auto aligned = [](void const* ptr, std::size_t n) { return reinterpret_cast<std::uintptr_t>(ptr) % n == 0; };
    std::size_t const row = op_row_bytes(sizeof(T));
    t.vector_rows = a.dim % kOpChannels == 0 && aligned(a.x, row) && aligned(a.delta, row) && aligned(a.y, row) &&
        (a.z == nullptr || aligned(a.z, row));
    t.pair_bc = a.dstate % 2 == 0 && aligned(a.B, 2 * sizeof(T)) && aligned(a.C, 2 * sizeof(T));
    return t;
}

template <typename T>
mq_status launch_onepass(mq_selective_scan_args const& args, cudaStream_t stream) {
    OnepassArgs<T> const t = make_onepass_args<T>(args);
    std::size_t const smem = op_dynamic_smem_bytes(sizeof(T));
    // Above 48 KB of dynamic shared memory a kernel must opt in, per device; cheap, so every launch.
    if (cudaFuncSetAttribute(onepass_scan_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
            static_cast<int>(smem)) != cudaSuccess) {
        return MQ_ERROR_CUDA;
    }
    dim3 const grid(static_cast<unsigned>(ceil_div(args.dim, kOpChannels)), static_cast<unsigned>(args.batch));
    onepass_scan_kernel<T><<<grid, kOpThreads, smem, stream>>>(t);
    return cudaGetLastError() == cudaSuccess ? MQ_SUCCESS : MQ_ERROR_CUDA;
}

}  // namespace mq::scan
