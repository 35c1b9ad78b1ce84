// Typed launch entry points behind the SSD C API (one translation unit per dtype, compiled in
// parallel). Arguments are already validated by ssd_scan_api.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include "mq_kernels.h"
#include "ssd_plan.h"

namespace mq::ssd {

mq_status launch_ssd_scan_f32(mq_ssd_scan_args const& args, SsdPlan const& plan, cudaStream_t stream);
mq_status launch_ssd_scan_f16(mq_ssd_scan_args const& args, SsdPlan const& plan, cudaStream_t stream);
mq_status launch_ssd_scan_bf16(mq_ssd_scan_args const& args, SsdPlan const& plan, cudaStream_t stream);

// The fields every SSD kernel's argument struct (SsdTensors, mma::Problem) takes from the C API's.
template <typename T, typename Dst>
void copy_ssd_operands(mq_ssd_scan_args const& a, Dst& d) {
    d.x = static_cast<T const*>(a.x);
    d.dt = static_cast<T const*>(a.dt);
    d.A = a.A;
    d.B = static_cast<T const*>(a.B);
    d.C = static_cast<T const*>(a.C);
    d.D = a.D;
    d.dt_bias = a.dt_bias;
    d.initial_state = a.initial_state;
    d.y = static_cast<T*>(a.y);
    d.batch = a.batch;
    d.seqlen = a.seqlen;
    d.heads = a.heads;
    d.head_dim = a.head_dim;
    d.groups = a.n_groups;
    d.dstate = a.dstate;
    d.dt_softplus = a.dt_softplus != 0;
    d.dt_min = a.dt_min;
    d.dt_max = a.dt_max;
}

// The tensor-core scan (ssd_mma.cu): float16 / bfloat16, head_dim <= 64, dstate <= 128, checked by
// ssd_scan_api.cpp; answers MQ_ERROR_UNSUPPORTED where the build or the device lacks compute_80.
namespace mma {
mq_status launch_ssd_mma(mq_ssd_scan_args const& args, cudaStream_t stream);
}  // namespace mma

// Pass 2 of a chunked scan (ssd_carry.cu): the carried-in states, in place in the workspace; with
// final_state, the state after the last slot is written there too.
void enqueue_ssd_carry(float const* initial_state, float* chunk_state, float const* chunk_decay, int batch, int heads,
    int head_dim, int dstate, int nchunks, cudaStream_t stream, float* final_state = nullptr);

}  // namespace mq::ssd
