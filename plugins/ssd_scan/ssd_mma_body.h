// The tensor-core SSD scan (Mamba-2's chunked "state space dual" form, as mamba_ssm's
// mamba_chunk_scan_combined computes it) written once for two backends: the GPU (ssd_mma.cu, WMMA
// 16x16x16 fragments, 8 warps) and a CPU model (plugins/tests/test_ssd_mma_model.cpp: one "warp"
// that runs every tile, plain loops for the fragments), so the CPU tests run this very code. The
// bodies are race-free between barriers (compute-sanitizer's racecheck says so on a GPU), which is
// what makes the one-thread CPU run equal to the block's.
//
// Per head, with cum_t = sum of dt*A from the chunk's start through token t (inclusive):
//   state pass  (block per chunk):  S_c = sum_t exp(cum_end - cum_t) dt_t x_t^T B_t    [P, N]
//   carry       (ssd_carry.cu):     H_in(c+1) = exp(cum_end(c)) H_in(c) + S_c, H_in(0) = initial_state
//   output pass (block per 64-token tile of a chunk):
//     y_t = exp(cum_t) C_t H_in^T + sum_{s <= t in the chunk} (C_t . B_s) exp(cum_t - cum_s) dt_s x_s + D x_t
// The three products (x^T B_w, C H^T, (C B^T masked and scaled) x) are tensor-core matmuls with
// operands in the activation type and float32 accumulation; the scaling, the causal mask and the
// decays are float32. Rounding the operands (the scaled B, the carried state, the masked C B^T) to
// the activation type is what mamba_ssm's kernels do, and why this path has its own tolerance.
#pragma once

#include <cstdint>

#include "scan_math.cuh"
#include "ssd_mma_plan.h"

namespace mq::ssd::mma {

// Arguments of one launch, in the backend's activation type T (float32 in the CPU model).
template <typename T>
struct Problem {
    T const* x;                 // [batch, seqlen, heads * head_dim]
    T const* dt;                // [batch, seqlen, heads]
    float const* A;             // [heads]
    T const* B;                 // [batch, seqlen, groups * dstate]
    T const* C;
    float const* D;             // nullable
    float const* dt_bias;       // nullable
    float const* initial_state; // nullable: 0
    T* y;
    float* chunk_state;         // workspace, see workspace_state_elems
    float* chunk_decay;
    int batch, seqlen, heads, head_dim, groups, dstate;
    bool dt_softplus;
    float dt_min, dt_max;
    bool vector_loads;          // x, B and C are 16-byte aligned: tiles load 8 values at a time
    MQ_HOST_DEVICE int nchunks() const { return static_cast<int>(chunks_of(seqlen)); }
    MQ_HOST_DEVICE int64_t slot(int b, int c, int h) const { return (static_cast<int64_t>(b) * nchunks() + c) * heads + h; }
};

// dt after softplus and clamp, and cum2_t = log2(e) * (sum of dt*A through t), for the chunk's
// tokens [begin, begin + count); tokens past the sequence get dt = 0 (no decay, no input). A
// 256-token prefix sum as 8 serial runs of 32 and one serial pass over the 8 totals.
template <typename Ctx, typename T>
MQ_HOST_DEVICE void chunk_time_steps(Ctx& ctx, Problem<T> const& p, int b, int h, int begin, int count, float* dts,
    float* cum2) {
    float const a2 = p.A[h] * scan::kLog2e;
    float const bias = p.dt_bias != nullptr ? p.dt_bias[h] : 0.0f;
    for (int i = ctx.tid; i < kChunk; i += Ctx::kThreads) {
        int const tok = begin + i;
        float step = 0.0f;
        if (i < count && tok < p.seqlen) {
            float const raw = Ctx::load(p.dt + (static_cast<int64_t>(b) * p.seqlen + tok) * p.heads + h);
            step = fminf(fmaxf(scan::delta_to_dt(raw, bias, p.dt_softplus), p.dt_min), p.dt_max);
        }
        dts[i] = step;
        cum2[i] = step * a2;
    }
    ctx.sync();
    constexpr int kRuns = 8;
    constexpr int kRun = kChunk / kRuns;
    for (int r = ctx.tid; r < kRuns; r += Ctx::kThreads) {
        for (int i = r * kRun + 1; i < (r + 1) * kRun; ++i) {
            cum2[i] += cum2[i - 1];
        }
    }
    ctx.sync();
    if (ctx.tid == 0) {
        for (int r = 1; r < kRuns; ++r) {
            // the run's own last element still holds its local sum: add the previous runs' total
            cum2[(r + 1) * kRun - 1] += cum2[r * kRun - 1];
        }
    }
    ctx.sync();
    for (int i = ctx.tid; i < kChunk; i += Ctx::kThreads) {
        int const r = i / kRun;
        if (r > 0 && i != (r + 1) * kRun - 1) {
            cum2[i] += cum2[r * kRun - 1];
        }
    }
    ctx.sync();
}

// rows [row0, row0 + kTile) of a token-major [batch, seqlen, width] tensor, columns [col0, col0 +
// cols), into dst [kTile][ld] as operands (zeros past the sequence and past cols up to ld), each
// value times scale[r] when scale is given. 8 values a step where the tensor is aligned for it and
// width, col0 and cols are multiples of 8 (every published Mamba-2: P 64, N 128), else one.
template <typename Ctx, typename T>
MQ_HOST_DEVICE void load_tile(Ctx& ctx, T const* src, int64_t width, int b, int seqlen, int row0, int col0, int cols,
    int ld, typename Ctx::Op* dst, float const* scale, bool aligned) {
    if (aligned && width % kVector == 0 && col0 % kVector == 0 && cols % kVector == 0 && ld % kVector == 0) {
        int const steps = ld / kVector;
        for (int i = ctx.tid; i < kTile * steps; i += Ctx::kThreads) {
            int const r = i / steps;
            int const col = (i % steps) * kVector;
            int const tok = row0 + r;
            typename Ctx::Op* out = dst + r * ld + col;
            if (col < cols && tok < seqlen) {
                Ctx::load8(out, src + (static_cast<int64_t>(b) * seqlen + tok) * width + col0 + col,
                    scale != nullptr ? scale[r] : 1.0f, scale != nullptr);
            } else {
                Ctx::zero8(out);
            }
        }
        return;
    }
    for (int i = ctx.tid; i < kTile * ld; i += Ctx::kThreads) {
        int const r = i / ld;
        int const col = i % ld;
        int const tok = row0 + r;
        float v = 0.0f;
        if (col < cols && tok < seqlen) {
            v = Ctx::load(src + (static_cast<int64_t>(b) * seqlen + tok) * width + col0 + col);
            if (scale != nullptr) {
                v *= scale[r];
            }
        }
        dst[i] = Ctx::to_op(v);
    }
}

// acc += A·B for one 16x16 output tile, over k_steps steps of 16 along the inner dimension: the
// operands' fragments (FragA, FragB: their layouts) start at a and b, and move by step_a and step_b
// elements a step.
template <typename FragA, typename FragB, typename Ctx, typename Op>
MQ_HOST_DEVICE void mma_tile(Ctx& ctx, typename Ctx::Acc& acc, Op const* a, int lda, int step_a, Op const* b, int ldb,
    int step_b, int k_steps) {
    for (int kk = 0; kk < k_steps; ++kk) {
        FragA fa;
        FragB fb;
        ctx.load(fa, a + kk * step_a, lda);
        ctx.load(fb, b + kk * step_b, ldb);
        ctx.mma(acc, fa, fb);
    }
}

// Pass 1, one block per (chunk c, head h, batch b): the chunk's end state from a zero start and its
// decay sum, into the workspace slot (b, c, h).
template <typename Ctx, typename T>
MQ_HOST_DEVICE void state_pass(Ctx& ctx, Problem<T> const& p, int b, int h, int c, unsigned char* smem) {
    using Op = typename Ctx::Op;
    int const pp = pad16(p.head_dim);
    int const np = pad16(p.dstate);
    float* dts = reinterpret_cast<float*>(smem);
    float* cum2 = dts + kChunk;
    int const sx = op_stride(pp);
    int const sb = op_stride(np);
    int const ss = float_stride(np);
    float* states = cum2 + kChunk;                               // [pp][ss] float32
    Op* xs = reinterpret_cast<Op*>(states + pp * ss);            // [kTile][sx]
    Op* bs = xs + kTile * sx;                                    // [kTile][sb], B_t * exp(cum_end - cum_t) * dt_t
    int const begin = c * kChunk;
    int const count = p.seqlen - begin < kChunk ? p.seqlen - begin : kChunk;
    chunk_time_steps(ctx, p, b, h, begin, count, dts, cum2);
    float const end2 = cum2[count - 1];
    int const g = h / (p.heads / p.groups);
    int64_t const width = static_cast<int64_t>(p.heads) * p.head_dim;
    int64_t const bc_width = static_cast<int64_t>(p.groups) * p.dstate;

    constexpr int kTilesMax = (kMaxHeadDim / kFrag) * (kMaxDstate / kFrag);
    constexpr int kMine = (kTilesMax + Ctx::kWarps - 1) / Ctx::kWarps;
    int const tiles_p = pp / kFrag;
    int const tiles = tiles_p * (np / kFrag);
    typename Ctx::Acc acc[kMine];
    for (int k = 0; k < kMine; ++k) {
        ctx.fill(acc[k], 0.0f);
    }
    float* weight = states;    // the tile's per-token B scale, in the state buffer until the end
    for (int kt = 0; kt * kTile < count; ++kt) {
        for (int i = ctx.tid; i < kTile; i += Ctx::kThreads) {
            int const t = kt * kTile + i;
            weight[i] = t < count ? scan::exp2_fast(end2 - cum2[t]) * dts[t] : 0.0f;
        }
        ctx.sync();
        load_tile(ctx, p.x, width, b, p.seqlen, begin + kt * kTile, h * p.head_dim, p.head_dim, sx, xs, nullptr,
            p.vector_loads);
        load_tile(ctx, p.B, bc_width, b, p.seqlen, begin + kt * kTile, g * p.dstate, p.dstate, sb, bs, weight,
            p.vector_loads);
        ctx.sync();
        for (int k = 0, tile = ctx.warp; k < kMine && tile < tiles; ++k, tile += Ctx::kWarps) {
            int const ti = tile % tiles_p;       // rows p
            int const tj = tile / tiles_p;       // columns n
            // x^T: (p, t) at xs[t * sx + p]; B_w: (t, n) at bs[t * sb + n]
            mma_tile<typename Ctx::FragACol, typename Ctx::FragBRow>(ctx, acc[k], xs + ti * kFrag, sx, kFrag * sx,
                bs + tj * kFrag, sb, kFrag * sb, kTile / kFrag);
        }
        ctx.sync();
    }
    for (int k = 0, tile = ctx.warp; k < kMine && tile < tiles; ++k, tile += Ctx::kWarps) {
        ctx.store(states + (tile / tiles_p) * kFrag + (tile % tiles_p) * kFrag * ss, acc[k], ss);
    }
    ctx.sync();
    int64_t const slot = p.slot(b, c, h);
    float* out = p.chunk_state + slot * p.head_dim * p.dstate;
    for (int i = ctx.tid; i < p.head_dim * p.dstate; i += Ctx::kThreads) {
        out[i] = states[(i / p.dstate) * ss + i % p.dstate];
    }
    if (ctx.tid == 0) {
        p.chunk_decay[slot] = end2 / scan::kLog2e;
    }
}

// Pass 3, one block per (64-token tile mt, chunk c, head h, batch b): y of the tile's tokens from
// the state entering the chunk (slot c - 1 after the carry, or the initial state) and the chunk's
// tokens up to the tile's end.
template <typename Ctx, typename T>
MQ_HOST_DEVICE void output_pass(Ctx& ctx, Problem<T> const& p, int b, int h, int c, int mt, unsigned char* smem) {
    using Op = typename Ctx::Op;
    int const pp = pad16(p.head_dim);
    int const np = pad16(p.dstate);
    float* dts = reinterpret_cast<float*>(smem);
    float* cum2 = dts + kChunk;
    int const sg = float_stride(kTile);
    int const sc = op_stride(np);                     // C, B and the state
    int const sx = op_stride(pp);
    int const sm = op_stride(kTile);
    float* gs = cum2 + kChunk;                        // [kTile][sg] float32: C H^T, C B^T, then the y tile
    Op* cs = reinterpret_cast<Op*>(gs + kTile * sg);  // [kTile][sc] C of the tile's tokens
    Op* bs = cs + kTile * sc;                         // [kTile][sc] B of a k-tile; first the state [pp][sc]
    Op* xs = bs + kTile * sc;                         // [kTile][sx] x of a k-tile
    Op* ms = xs + kTile * sx;                         // [kTile][sm] masked, scaled C B^T
    int const begin = c * kChunk;
    int const count = p.seqlen - begin < kChunk ? p.seqlen - begin : kChunk;
    int const row0 = mt * kTile;                      // the tile's first token, chunk-local
    if (row0 >= count) {
        return;
    }
    chunk_time_steps(ctx, p, b, h, begin, count, dts, cum2);
    int const g = h / (p.heads / p.groups);
    int64_t const width = static_cast<int64_t>(p.heads) * p.head_dim;
    int64_t const bc_width = static_cast<int64_t>(p.groups) * p.dstate;

    constexpr int kTilesMax = (kTile / kFrag) * (kMaxHeadDim / kFrag);
    constexpr int kMine = (kTilesMax + Ctx::kWarps - 1) / Ctx::kWarps;
    constexpr int kGTiles = (kTile / kFrag) * (kTile / kFrag);
    constexpr int kGMine = (kGTiles + Ctx::kWarps - 1) / Ctx::kWarps;
    int const tiles_p = pp / kFrag;
    int const tiles = (kTile / kFrag) * tiles_p;      // y tile: rows t (4) x columns p
    typename Ctx::Acc acc[kMine];
    for (int k = 0; k < kMine; ++k) {
        ctx.fill(acc[k], 0.0f);
    }
    load_tile(ctx, p.C, bc_width, b, p.seqlen, begin + row0, g * p.dstate, p.dstate, sc, cs, nullptr, p.vector_loads);

    // exp(cum_t) C_t H_in^T, with H_in in the operand type as [pp][sc] (rows past P and N zero)
    float const* state = nullptr;
    if (c > 0) {
        state = p.chunk_state + p.slot(b, c - 1, h) * p.head_dim * p.dstate;
    } else if (p.initial_state != nullptr) {
        state = p.initial_state + (static_cast<int64_t>(b) * p.heads + h) * p.head_dim * p.dstate;
    }
    if (state != nullptr) {
        for (int i = ctx.tid; i < pp * sc; i += Ctx::kThreads) {
            int const r = i / sc;
            int const n = i % sc;
            bs[i] = Ctx::to_op(r < p.head_dim && n < p.dstate ? state[r * p.dstate + n] : 0.0f);
        }
        ctx.sync();
        for (int k = 0, tile = ctx.warp; k < kMine && tile < tiles; ++k, tile += Ctx::kWarps) {
            int const ti = tile / tiles_p;   // rows t
            int const tj = tile % tiles_p;   // columns p
            // C: (t, n) at cs[t * sc + n]; H^T: (n, p) at bs[p * sc + n]
            mma_tile<typename Ctx::FragARow, typename Ctx::FragBCol>(ctx, acc[k], cs + ti * kFrag * sc, sc, kFrag,
                bs + tj * kFrag * sc, sc, kFrag, np / kFrag);
            ctx.store(gs + ti * kFrag * sg + tj * kFrag, acc[k], sg);
        }
        ctx.sync();
        for (int i = ctx.tid; i < kTile * pp; i += Ctx::kThreads) {
            int const r = i / pp;
            float* v = gs + r * sg + i % pp;
            *v *= scan::exp2_fast(cum2[row0 + r]);
        }
        ctx.sync();
        for (int k = 0, tile = ctx.warp; k < kMine && tile < tiles; ++k, tile += Ctx::kWarps) {
            ctx.load_acc(acc[k], gs + (tile / tiles_p) * kFrag * sg + (tile % tiles_p) * kFrag, sg);
        }
        ctx.sync();
    }

    // the chunk's tokens up to the tile: k-tiles 0 .. mt, the last one causal
    for (int kt = 0; kt <= mt; ++kt) {
        load_tile(ctx, p.B, bc_width, b, p.seqlen, begin + kt * kTile, g * p.dstate, p.dstate, sc, bs, nullptr,
            p.vector_loads);
        load_tile(ctx, p.x, width, b, p.seqlen, begin + kt * kTile, h * p.head_dim, p.head_dim, sx, xs, nullptr,
            p.vector_loads);
        ctx.sync();
        for (int k = 0, tile = ctx.warp; k < kGMine && tile < kGTiles; ++k, tile += Ctx::kWarps) {
            int const ti = tile / (kTile / kFrag);   // rows t
            int const tj = tile % (kTile / kFrag);   // columns s
            typename Ctx::Acc gacc;
            ctx.fill(gacc, 0.0f);
            // C: (t, n) at cs[t * sc + n]; B^T: (n, s) at bs[s * sc + n]
            mma_tile<typename Ctx::FragARow, typename Ctx::FragBCol>(ctx, gacc, cs + ti * kFrag * sc, sc, kFrag,
                bs + tj * kFrag * sc, sc, kFrag, np / kFrag);
            ctx.store(gs + ti * kFrag * sg + tj * kFrag, gacc, sg);
        }
        ctx.sync();
        for (int i = ctx.tid; i < kTile * kTile; i += Ctx::kThreads) {
            int const r = i / kTile;
            int const col = i % kTile;
            int const t = row0 + r;                   // chunk-local
            int const s = kt * kTile + col;
            float const m = s <= t ? gs[r * sg + col] * scan::exp2_fast(cum2[t] - cum2[s]) * dts[s] : 0.0f;
            ms[r * sm + col] = Ctx::to_op(m);
        }
        ctx.sync();
        for (int k = 0, tile = ctx.warp; k < kMine && tile < tiles; ++k, tile += Ctx::kWarps) {
            int const ti = tile / tiles_p;
            int const tj = tile % tiles_p;
            // M: (t, s) at ms[t * sm + s]; x: (s, p) at xs[s * sx + p]
            mma_tile<typename Ctx::FragARow, typename Ctx::FragBRow>(ctx, acc[k], ms + ti * kFrag * sm, sm, kFrag,
                xs + tj * kFrag, sx, kFrag * sx, kTile / kFrag);
        }
        ctx.sync();
    }

    // y = the tile + D x (x of the tile's own tokens: the last k-tile's)
    for (int k = 0, tile = ctx.warp; k < kMine && tile < tiles; ++k, tile += Ctx::kWarps) {
        ctx.store(gs + (tile / tiles_p) * kFrag * sg + (tile % tiles_p) * kFrag, acc[k], sg);
    }
    ctx.sync();
    float const skip = p.D != nullptr ? p.D[h] : 0.0f;
    for (int i = ctx.tid; i < kTile * p.head_dim; i += Ctx::kThreads) {
        int const r = i / p.head_dim;
        int const col = i % p.head_dim;
        int const tok = begin + row0 + r;
        if (row0 + r < count) {
            float const xv = Ctx::from_op(xs[r * sx + col]);
            Ctx::store_act(p.y + (static_cast<int64_t>(b) * p.seqlen + tok) * width + h * p.head_dim + col,
                gs[r * sg + col] + skip * xv);
        }
    }
}

}  // namespace mq::ssd::mma
