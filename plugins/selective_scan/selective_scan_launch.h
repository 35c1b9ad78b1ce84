// Typed launch entry points behind the C API (one translation unit per dtype, so they compile in
// parallel). Arguments are already validated by selective_scan_api.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include "mq_kernels.h"
#include "scan_plan.h"

namespace mq::scan {

// Enqueues the kernels of `plan` (one chunk: a single launch; several: summary, carry, output).
mq_status launch_selective_scan_f32(mq_selective_scan_args const& args, ScanPlan const& plan, cudaStream_t stream);
mq_status launch_selective_scan_f16(mq_selective_scan_args const& args, ScanPlan const& plan, cudaStream_t stream);
mq_status launch_selective_scan_bf16(mq_selective_scan_args const& args, ScanPlan const& plan, cudaStream_t stream);

// The one-pass scan (onepass_kernel.cuh): a single launch, no workspace.
mq_status launch_onepass_f32(mq_selective_scan_args const& args, cudaStream_t stream);
mq_status launch_onepass_f16(mq_selective_scan_args const& args, cudaStream_t stream);
mq_status launch_onepass_bf16(mq_selective_scan_args const& args, cudaStream_t stream);

// Pass 2 of a chunked scan (chunk_carry.cu): carried-in states, in place in the workspace.
void enqueue_chunk_carry(float const* A, float const* initial_state, float* chunk_state, float const* chunk_dtsum,
    int batch, int dim, int dstate, int padded, int nchunks, cudaStream_t stream);

}  // namespace mq::scan
