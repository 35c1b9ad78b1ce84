// SSD (Mamba-2) scan kernels (plan in ssd_plan.h). Three launches make the sequence-parallel scan:
//   1. ssd_chunk_kernel<kSummary>: each (chunk, head, row block) scans its chunk from a zero state
//      and stores the chunk's end state and its sum of dt * A (chunks 0 .. nchunks-2 only);
//   2. ssd_carry_kernel (ssd_carry.cu): per state element, walks the chunks in order:
//      h_in(c+1) = exp(sum dt*A over c) * h_in(c) + h_local(c), from the initial state;
//   3. ssd_chunk_kernel<kOutput>: each chunk rescans from its carried-in state and writes y; the
//      last chunk writes final_state.
// With one chunk (short sequences, large batch * heads, the sequential baseline, decode) only
// launch 3 runs. A head's decay exp(dt*A) is one scalar, shared by its whole [P, N] state.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "activation_convert.cuh"
#include "mq_kernels.h"
#include "scan_math.cuh"
#include "ssd_plan.h"
#include "ssd_scan_launch.h"

namespace mq::ssd {

template <typename T>
struct SsdTensors {
    T const* x;
    T const* dt;
    float const* A;
    T const* B;
    T const* C;
    float const* D;              // nullable
    float const* dt_bias;        // nullable
    float const* initial_state;  // nullable: 0
    T* y;
    float* final_state;          // nullable
    float* chunk_state;          // workspace [batch][nchunks-1][heads][head_dim][dstate]
    float* chunk_decay;          // workspace [batch][nchunks-1][heads]
    int batch;
    int seqlen;
    int heads;
    int head_dim;
    int groups;
    int dstate;
    int chunk_len;
    int nchunks;
    bool dt_softplus;
    float dt_min;
    float dt_max;
};

enum class Pass { kSummary, kOutput };

// The contract's time step: clamp(softplus(dt + bias), dt_min, dt_max).
__device__ __forceinline__ float time_step(float raw, float bias, bool softplus, float lo, float hi) {
    float const v = scan::delta_to_dt(raw, bias, softplus);
    return fminf(fmaxf(v, lo), hi);
}

// grid (row blocks, heads, batch * chunks in this pass); block kSsdThreads.
template <typename T, int NS, Pass kPass>
__global__ void __launch_bounds__(kSsdThreads) ssd_chunk_kernel(SsdTensors<T> t) {
    int const lane = static_cast<int>(threadIdx.x) % kSsdLanesPerRow;
    int const p = static_cast<int>(blockIdx.x) * kSsdRowsPerBlock + static_cast<int>(threadIdx.x) / kSsdLanesPerRow;
    int const h = static_cast<int>(blockIdx.y);
    int const chunks_here = kPass == Pass::kSummary ? t.nchunks - 1 : t.nchunks;
    int const b = static_cast<int>(blockIdx.z) / chunks_here;
    int const c = static_cast<int>(blockIdx.z) % chunks_here;
    bool const row = p < t.head_dim;   // rows past head_dim still take part in the shuffles
    int const g = h / (t.heads / t.groups);
    float const a = t.A[h];
    float const bias = t.dt_bias != nullptr ? t.dt_bias[h] : 0.0f;
    float const skip = t.D != nullptr ? t.D[h] : 0.0f;
    int64_t const state_row = ((static_cast<int64_t>(b) * t.heads + h) * t.head_dim + p) * t.dstate;
    int64_t const carried_row =
        (((static_cast<int64_t>(b) * (t.nchunks - 1) + (kPass == Pass::kSummary ? c : c - 1)) * t.heads + h) *
            t.head_dim + p) * t.dstate;

    float state[NS];
    float const* start = nullptr;
    if (kPass == Pass::kOutput) {
        start = c == 0 ? (t.initial_state != nullptr ? t.initial_state + state_row : nullptr)
                       : t.chunk_state + carried_row;
    }
MQ_UNROLL
    for (int k = 0; k < NS; ++k) {
        int const n = lane + k * kSsdLanesPerRow;
        state[k] = (start != nullptr && row && n < t.dstate) ? start[n] : 0.0f;
    }

    int const begin = c * t.chunk_len;
    int const end = min(begin + t.chunk_len, t.seqlen);
    int64_t const width = static_cast<int64_t>(t.heads) * t.head_dim;
    int64_t const bc_width = static_cast<int64_t>(t.groups) * t.dstate;
    float decay_sum = 0.0f;
    for (int tok = begin; tok < end; ++tok) {
        int64_t const at = static_cast<int64_t>(b) * t.seqlen + tok;
        float const step = time_step(scan::Convert<T>::load(t.dt + at * t.heads + h), bias, t.dt_softplus, t.dt_min, t.dt_max);
        float const log_decay = step * a;
        decay_sum += log_decay;
        float const decay = scan::exp2_fast(log_decay * scan::kLog2e);
        float const xv = row ? scan::Convert<T>::load(t.x + at * width + static_cast<int64_t>(h) * t.head_dim + p) : 0.0f;
        float const u = step * xv;
        T const* bt = t.B + at * bc_width + static_cast<int64_t>(g) * t.dstate;
        T const* ct = t.C + at * bc_width + static_cast<int64_t>(g) * t.dstate;
        float hc = 0.0f;
MQ_UNROLL
        for (int k = 0; k < NS; ++k) {
            int const n = lane + k * kSsdLanesPerRow;
            if (n < t.dstate) {
                state[k] = fmaf(state[k], decay, u * scan::Convert<T>::load(bt + n));
                if (kPass == Pass::kOutput) {
                    hc = fmaf(state[k], scan::Convert<T>::load(ct + n), hc);
                }
            }
        }
        if (kPass == Pass::kOutput) {
            // the row's 8 lanes are consecutive in the warp: xor 4, 2, 1 stays inside the row
            hc += __shfl_xor_sync(0xffffffffu, hc, 4);
            hc += __shfl_xor_sync(0xffffffffu, hc, 2);
            hc += __shfl_xor_sync(0xffffffffu, hc, 1);
            if (row && lane == 0) {
                scan::Convert<T>::store(t.y + at * width + static_cast<int64_t>(h) * t.head_dim + p, fmaf(skip, xv, hc));
            }
        }
    }

    float* out = nullptr;
    if (kPass == Pass::kSummary) {
        out = t.chunk_state + carried_row;
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            t.chunk_decay[(static_cast<int64_t>(b) * (t.nchunks - 1) + c) * t.heads + h] = decay_sum;
        }
    } else if (c == t.nchunks - 1 && t.final_state != nullptr) {
        out = t.final_state + state_row;
    }
    if (out != nullptr && row) {
MQ_UNROLL
        for (int k = 0; k < NS; ++k) {
            int const n = lane + k * kSsdLanesPerRow;
            if (n < t.dstate) {
                out[n] = state[k];
            }
        }
    }
}

template <typename T>
SsdTensors<T> make_ssd_tensors(mq_ssd_scan_args const& a, SsdPlan const& plan) {
    SsdTensors<T> t{};
    copy_ssd_operands<T>(a, t);
    t.final_state = a.final_state;
    t.chunk_state = plan.state_elems > 0 ? static_cast<float*>(a.workspace) : nullptr;
    t.chunk_decay = plan.state_elems > 0 ? t.chunk_state + plan.state_elems : nullptr;
    t.chunk_len = plan.chunk_len;
    t.nchunks = plan.nchunks;
    return t;
}

template <typename T, int NS>
void enqueue_ssd(SsdTensors<T> const& t, SsdPlan const& plan, cudaStream_t stream) {
    unsigned const rows = static_cast<unsigned>(plan.row_blocks);
    unsigned const heads = static_cast<unsigned>(t.heads);
    if (t.nchunks > 1) {
        dim3 const summary(rows, heads, static_cast<unsigned>(t.batch * (t.nchunks - 1)));
        ssd_chunk_kernel<T, NS, Pass::kSummary><<<summary, kSsdThreads, 0, stream>>>(t);
        enqueue_ssd_carry(t.initial_state, t.chunk_state, t.chunk_decay, t.batch, t.heads, t.head_dim, t.dstate,
            t.nchunks, stream);
    }
    dim3 const output(rows, heads, static_cast<unsigned>(t.batch * t.nchunks));
    ssd_chunk_kernel<T, NS, Pass::kOutput><<<output, kSsdThreads, 0, stream>>>(t);
}

template <typename T>
mq_status launch_ssd_scan(mq_ssd_scan_args const& args, SsdPlan const& plan, cudaStream_t stream) {
    SsdTensors<T> const t = make_ssd_tensors<T>(args, plan);
    switch (plan.states_per_lane) {
    case 1: enqueue_ssd<T, 1>(t, plan, stream); break;
    case 2: enqueue_ssd<T, 2>(t, plan, stream); break;
    case 4: enqueue_ssd<T, 4>(t, plan, stream); break;
    case 8: enqueue_ssd<T, 8>(t, plan, stream); break;
    case 16: enqueue_ssd<T, 16>(t, plan, stream); break;
    case 32: enqueue_ssd<T, 32>(t, plan, stream); break;
    default: return MQ_ERROR_UNSUPPORTED;
    }
    return cudaGetLastError() == cudaSuccess ? MQ_SUCCESS : MQ_ERROR_CUDA;
}

}  // namespace mq::ssd
