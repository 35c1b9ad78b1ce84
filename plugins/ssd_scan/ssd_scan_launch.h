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

// Pass 2 of a chunked scan (ssd_carry.cu): the carried-in states, in place in the workspace; with
// final_state, the state after the last slot is written there too.
void enqueue_ssd_carry(float const* initial_state, float* chunk_state, float const* chunk_decay, int batch, int heads,
    int head_dim, int dstate, int nchunks, cudaStream_t stream, float* final_state = nullptr);

}  // namespace mq::ssd
