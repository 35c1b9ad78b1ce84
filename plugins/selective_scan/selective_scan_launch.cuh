// Launch sequence for one dtype: picks the kernel instantiation for the plan's state layout and
// enqueues the one or three kernels. Never allocates, never synchronizes.
#pragma once

#include <cuda_runtime_api.h>

#include "selective_scan_kernels.cuh"
#include "selective_scan_launch.h"

namespace mq::scan {

template <typename T>
ScanTensors<T> make_tensors(mq_selective_scan_args const& a, ScanPlan const& plan) {
    ScanTensors<T> t{};
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
    t.chunk_state = plan.state_elems > 0 ? static_cast<float*>(a.workspace) : nullptr;
    t.chunk_dtsum = plan.state_elems > 0 ? t.chunk_state + plan.state_elems : nullptr;
    t.batch = a.batch;
    t.seqlen = a.seqlen;
    t.dim = a.dim;
    t.dstate = a.dstate;
    t.chunk_len = plan.chunk_len;
    t.nchunks = plan.nchunks;
    t.delta_softplus = a.delta_softplus != 0;
    t.reverse = a.reverse != 0;
    return t;
}

// kMayChunk = false for the decode layouts, which always run as one chunk (fewer instantiations).
template <typename T, int NPT, int TPC, bool kMayChunk = true>
void enqueue_scan(ScanTensors<T> const& t, cudaStream_t stream) {
    constexpr int kChannels = kThreadsPerBlock / TPC;
    unsigned const dim_blocks = static_cast<unsigned>(ceil_div(t.dim, kChannels));
    if constexpr (kMayChunk) {
        if (t.nchunks > 1) {
            dim3 const summary_grid(dim_blocks, static_cast<unsigned>(t.nchunks - 1), static_cast<unsigned>(t.batch));
            chunk_scan_kernel<T, NPT, TPC, Pass::kSummary><<<summary_grid, kThreadsPerBlock, 0, stream>>>(t);
            enqueue_chunk_carry(t.A, t.initial_state, t.chunk_state, t.chunk_dtsum, t.batch, t.dim, t.dstate, NPT * TPC,
                t.nchunks, stream);
        }
    }
    dim3 const output_grid(dim_blocks, static_cast<unsigned>(t.nchunks), static_cast<unsigned>(t.batch));
    chunk_scan_kernel<T, NPT, TPC, Pass::kOutput><<<output_grid, kThreadsPerBlock, 0, stream>>>(t);
}

template <typename T>
mq_status launch_selective_scan(mq_selective_scan_args const& args, ScanPlan const& plan, cudaStream_t stream) {
    ScanTensors<T> const t = make_tensors<T>(args, plan);
    int const npt = plan.layout.states_per_thread;
    int const tpc = plan.layout.threads_per_channel;
    if (npt == 4 && tpc == 1) {
        enqueue_scan<T, 4, 1>(t, stream);
    } else if (npt == 8 && tpc == 1) {
        enqueue_scan<T, 8, 1>(t, stream);
    } else if (npt == 16 && tpc == 1) {
        enqueue_scan<T, 16, 1>(t, stream);
    } else if (npt == 16 && tpc == 2) {
        enqueue_scan<T, 16, 2>(t, stream);
    } else if (npt == 16 && tpc == 4) {
        enqueue_scan<T, 16, 4>(t, stream);
    } else if (npt == 4 && tpc == 4 && plan.nchunks == 1) {  // decode layouts: never chunked
        enqueue_scan<T, 4, 4, false>(t, stream);
    } else if (npt == 8 && tpc == 4 && plan.nchunks == 1) {
        enqueue_scan<T, 8, 4, false>(t, stream);
    } else {
        return MQ_ERROR_UNSUPPORTED;
    }
    return cudaGetLastError() == cudaSuccess ? MQ_SUCCESS : MQ_ERROR_CUDA;
}

}  // namespace mq::scan
