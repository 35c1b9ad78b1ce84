// Selective-scan kernels. Three launches make the sequence-parallel scan:
//   1. chunk_scan_kernel<kSummary>: each (batch, chunk, channel) scans its chunk from a zero state
//      and stores the chunk's end state and sum of dt (chunks 0 .. nchunks-2 only).
//   2. chunk_carry_kernel (chunk_carry.cu): walks the chunk summaries in order, per (batch, channel, state):
//      h_in(c+1) = exp(A * sum_dt(c)) * h_in(c) + h_local(c), starting from the initial state.
//   3. chunk_scan_kernel<kOutput>: each chunk rescans from its carried-in state and writes y; the
//      last chunk writes final_state.
// With one chunk (short sequences, large batch*dim, the sequential baseline, decode) only launch 3 runs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "activation_convert.cuh"
#include "scan_math.cuh"
#include "scan_plan.h"

namespace mq::scan {

template <typename T>
struct ScanTensors {
    T const* x;
    T const* delta;
    float const* A;
    T const* B;
    T const* C;
    float const* D;           // nullable
    float const* delta_bias;  // nullable
    T const* z;               // nullable: no gate
    float const* gate_scale;  // nullable: 1
    float const* initial_state;  // nullable: 0; may alias final_state
    T* y;
    float* final_state;       // nullable
    float* chunk_state;       // workspace, [batch][nchunks-1][dim][padded]
    float* chunk_dtsum;       // workspace, [batch][nchunks-1][dim]
    int batch;
    int seqlen;
    int dim;
    int dstate;
    int chunk_len;
    int nchunks;
    bool delta_softplus;
    bool reverse;
};

enum class Pass { kSummary, kOutput };

// Tokens of B (and C) staged in shared memory at a time: 512 floats per matrix whatever N is.
__host__ __device__ constexpr int tile_tokens(int padded) { return 512 / padded > kTokenGroup ? 512 / padded : kTokenGroup; }

template <int NS>
__device__ __forceinline__ void load_vec(float (&dst)[NS], float const* src) {
    static_assert(NS % 4 == 0, "states per thread must be a multiple of 4");
#pragma unroll
    for (int i = 0; i < NS; i += 4) {
        float4 const v = *reinterpret_cast<float4 const*>(src + i);
        dst[i] = v.x;
        dst[i + 1] = v.y;
        dst[i + 2] = v.z;
        dst[i + 3] = v.w;
    }
}

template <int NS>
__device__ __forceinline__ void store_vec(float* dst, float const (&src)[NS]) {
#pragma unroll
    for (int i = 0; i < NS; i += 4) {
        *reinterpret_cast<float4*>(dst + i) = make_float4(src[i], src[i + 1], src[i + 2], src[i + 3]);
    }
}

// Grid: (ceil(dim / channels per block), chunks, batch). Thread: states [n0, n0 + NPT) of one channel.
template <typename T, int NPT, int TPC, Pass kPass>
__global__ void __launch_bounds__(kThreadsPerBlock, 4) chunk_scan_kernel(ScanTensors<T> const t) {
    constexpr bool kOutput = kPass == Pass::kOutput;
    constexpr int kPad = NPT * TPC;
    constexpr int kChannels = kThreadsPerBlock / TPC;
    constexpr int kTile = tile_tokens(kPad);
    constexpr int kMats = kOutput ? 2 : 1;  // B, and C when writing y
    constexpr int kStage = kMats * kTile * kPad / kThreadsPerBlock;
    constexpr int kG = kTokenGroup;
    static_assert(kStage * kThreadsPerBlock == kMats * kTile * kPad, "tile must split evenly over threads");
    static_assert(kTile % kG == 0, "a token group must not straddle tiles");
    static_assert((TPC & (TPC - 1)) == 0 && TPC <= 32, "threads per channel: power of two within a warp");

    __shared__ __align__(16) float s_bc[kMats][kTile][kPad];

    int const batch = blockIdx.z;
    int const chunk = blockIdx.y;
    int const sub = threadIdx.x % TPC;
    int const channel_raw = blockIdx.x * kChannels + threadIdx.x / TPC;
    bool const active = channel_raw < t.dim;  // inactive threads still stage and shuffle
    int const channel = active ? channel_raw : t.dim - 1;
    int const n0 = sub * NPT;
    int const p_begin = chunk * t.chunk_len;
    int const p_end = min(p_begin + t.chunk_len, t.seqlen);
    int64_t const row_base = static_cast<int64_t>(batch) * t.seqlen;
    auto token_of = [&](int p) { return t.reverse ? t.seqlen - 1 - p : p; };

    float a2[NPT];
#pragma unroll
    for (int i = 0; i < NPT; ++i) {
        int const n = n0 + i;
        a2[i] = n < t.dstate ? t.A[static_cast<int64_t>(channel) * t.dstate + n] * kLog2e : 0.0f;
    }
    float const bias = t.delta_bias != nullptr ? t.delta_bias[channel] : 0.0f;
    bool const has_gate = kOutput && t.z != nullptr;
    float d_skip = 0.0f;
    float gate_scale = 1.0f;
    if constexpr (kOutput) {
        d_skip = t.D != nullptr ? t.D[channel] : 0.0f;
        gate_scale = t.gate_scale != nullptr ? t.gate_scale[channel] : 1.0f;
    }

    // State entering this chunk.
    float h[NPT];
    int const carried = t.nchunks - 1;
    if (kOutput && chunk > 0) {
        int64_t const slot = (static_cast<int64_t>(batch) * carried + chunk - 1) * t.dim + channel;
        load_vec(h, t.chunk_state + slot * kPad + n0);
    } else {
#pragma unroll
        for (int i = 0; i < NPT; ++i) {
            int const n = n0 + i;
            h[i] = (kOutput && t.initial_state != nullptr && n < t.dstate)
                ? t.initial_state[(static_cast<int64_t>(batch) * t.dim + channel) * t.dstate + n]
                : 0.0f;
        }
    }

    // B/C tile staging through registers: the next tile's loads are in flight while this one runs.
    float stage[kStage];
    auto fetch_tile = [&](int p0) {
#pragma unroll
        for (int k = 0; k < kStage; ++k) {
            int const e = threadIdx.x + k * kThreadsPerBlock;
            int const mat = e / (kTile * kPad);
            int const r = (e % (kTile * kPad)) / kPad;
            int const n = e % kPad;
            int const p = p0 + r;
            T const* src = mat == 0 ? t.B : t.C;
            stage[k] = (p < p_end && n < t.dstate)
                ? Convert<T>::load(src + (row_base + token_of(p)) * t.dstate + n)
                : 0.0f;
        }
    };
    auto commit_tile = [&]() {
#pragma unroll
        for (int k = 0; k < kStage; ++k) {
            int const e = threadIdx.x + k * kThreadsPerBlock;
            (&s_bc[0][0][0])[e] = stage[k];
        }
    };

    // x / delta / z of the next kG tokens of this channel are prefetched into registers.
    float cx[kG], cd[kG], cz[kG], nx[kG], nd[kG], nz[kG];
    auto fetch_group = [&](int p0, float (&gx)[kG], float (&gd)[kG], float (&gz)[kG]) {
#pragma unroll
        for (int j = 0; j < kG; ++j) {
            int const p = p0 + j;
            bool const ok = p < p_end;
            int64_t const off = (row_base + token_of(ok ? p : p_begin)) * t.dim + channel;
            gx[j] = ok ? Convert<T>::load(t.x + off) : 0.0f;
            gd[j] = ok ? Convert<T>::load(t.delta + off) : 0.0f;
            gz[j] = (ok && has_gate) ? Convert<T>::load(t.z + off) : 0.0f;
        }
    };

    float dtsum = 0.0f;
    if (p_begin < p_end) {
        fetch_tile(p_begin);
        fetch_group(p_begin, cx, cd, cz);
    }
    for (int tile0 = p_begin; tile0 < p_end; tile0 += kTile) {
        __syncthreads();  // the previous tile is no longer read
        commit_tile();
        __syncthreads();
        if (tile0 + kTile < p_end) {
            fetch_tile(tile0 + kTile);
        }
        int const tile_end = min(tile0 + kTile, p_end);
        for (int g0 = tile0; g0 < tile_end; g0 += kG) {
            if (g0 + kG < p_end) {
                fetch_group(g0 + kG, nx, nd, nz);
            }
#pragma unroll
            for (int j = 0; j < kG; ++j) {
                int const p = g0 + j;
                if (p < tile_end) {  // block-uniform: only the sequence's last group is partial
                int const r = p - tile0;
                float const dt = delta_to_dt(cd[j], bias, t.delta_softplus);
                float const u = dt * cx[j];
                float bv[NPT];
                load_vec(bv, &s_bc[0][r][n0]);
                if constexpr (kOutput) {
                    float cv[NPT];
                    load_vec(cv, &s_bc[kMats - 1][r][n0]);
                    float hc = scan_token<NPT>(h, a2, bv, cv, dt, u);
#pragma unroll
                    for (int offset = TPC / 2; offset > 0; offset /= 2) {
                        hc += __shfl_xor_sync(0xffffffffu, hc, offset);
                    }
                    if (active && sub == 0) {
                        float const out = finish_output(hc, cx[j], d_skip, has_gate, cz[j], gate_scale);
                        Convert<T>::store(t.y + (row_base + token_of(p)) * t.dim + channel, out);
                    }
                } else {
                    dtsum += dt;
                    scan_token_state<NPT>(h, a2, bv, dt, u);
                }
                }
            }
#pragma unroll
            for (int j = 0; j < kG; ++j) {
                cx[j] = nx[j];
                cd[j] = nd[j];
                cz[j] = nz[j];
            }
        }
    }

    if (!active) {
        return;
    }
    if constexpr (!kOutput) {
        int64_t const slot = (static_cast<int64_t>(batch) * carried + chunk) * t.dim + channel;
        store_vec(t.chunk_state + slot * kPad + n0, h);
        if (sub == 0) {
            t.chunk_dtsum[slot] = dtsum;
        }
    } else if (chunk == t.nchunks - 1 && t.final_state != nullptr) {
#pragma unroll
        for (int i = 0; i < NPT; ++i) {
            int const n = n0 + i;
            if (n < t.dstate) {
                t.final_state[(static_cast<int64_t>(batch) * t.dim + channel) * t.dstate + n] = h[i];
            }
        }
    }
}

}  // namespace mq::scan
