// The C API of libmq_kernels for the SSD scan: argument checks, plan, dtype dispatch.
#include <cmath>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "mq_kernels.h"
#include "ssd_mma_plan.h"
#include "ssd_plan.h"
#include "ssd_scan_launch.h"

namespace {

using mq::ssd::SsdPlan;

bool is_dtype(mq_dtype d) { return d == MQ_FLOAT32 || d == MQ_FLOAT16 || d == MQ_BFLOAT16; }

// Checks that do not depend on the plan. Sets *nothing_to_do when there is no state to compute.
mq_status check_ssd_args(mq_ssd_scan_args const* a, bool* nothing_to_do) {
    if (a == nullptr || !is_dtype(a->dtype) || (a->dt_softplus != 0 && a->dt_softplus != 1)) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    if (a->batch < 0 || a->seqlen < 0 || a->heads < 0 || a->head_dim < 0 || a->n_groups < 1 || a->dstate < 1) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    if (a->heads % a->n_groups != 0 || std::isnan(a->dt_min) || std::isnan(a->dt_max) || a->dt_min > a->dt_max) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    if (a->dstate > MQ_SSD_SCAN_MAX_DSTATE || a->batch > mq::ssd::kSsdMaxGrid || a->heads > mq::ssd::kSsdMaxGrid) {
        return MQ_ERROR_UNSUPPORTED;
    }
    *nothing_to_do = a->batch == 0 || a->heads == 0 || a->head_dim == 0;
    if (*nothing_to_do) {
        return MQ_SUCCESS;
    }
    if (a->A == nullptr) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    if (a->seqlen > 0 && (a->x == nullptr || a->dt == nullptr || a->B == nullptr || a->C == nullptr || a->y == nullptr)) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    return MQ_SUCCESS;
}

// Whether two buffers of `bytes` each, at a and b (either may be null), share any byte.
bool overlap(void const* a, void const* b, std::uintptr_t bytes) {
    if (a == nullptr || b == nullptr) {
        return false;
    }
    auto const x = reinterpret_cast<std::uintptr_t>(a);
    auto const y = reinterpret_cast<std::uintptr_t>(b);
    return x < y + bytes && y < x + bytes;
}

bool states_overlap(mq_ssd_scan_args const& a) {
    auto const bytes = static_cast<std::uintptr_t>(a.batch) * static_cast<std::uintptr_t>(a.heads) *
        static_cast<std::uintptr_t>(a.head_dim) * static_cast<std::uintptr_t>(a.dstate) * sizeof(float);
    return overlap(a.initial_state, a.final_state, bytes);
}

mq_status run(mq_ssd_scan_args const* args, mq_stream_t stream, bool chunked) {
    bool nothing_to_do = false;
    mq_status const status = check_ssd_args(args, &nothing_to_do);
    if (status != MQ_SUCCESS || nothing_to_do) {
        return status;
    }
    mq_ssd_scan_args const& a = *args;
    SsdPlan const plan = chunked ? mq::ssd::plan_ssd_scan(a.batch, a.seqlen, a.heads, a.head_dim, a.dstate)
                                 : mq::ssd::plan_ssd_scan_sequential(a.batch, a.seqlen, a.heads, a.head_dim, a.dstate);
    if (a.seqlen == 0 && a.final_state == nullptr) {
        return MQ_SUCCESS;
    }
    // The chunked scan's chunks run concurrently (the last may write final_state while the first
    // still reads initial_state): no overlap, whatever this shape's plan. The sequential scan may
    // update in place, each thread reading its own states before writing them, but a partial
    // overlap would let one block overwrite states another has yet to read.
    bool const same_buffer = a.initial_state != nullptr && a.initial_state == a.final_state;
    if (states_overlap(a) && (chunked || !same_buffer)) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    std::size_t const need = plan.workspace_bytes();
    if (need > 0 && (a.workspace == nullptr || a.workspace_bytes < need ||
                        reinterpret_cast<std::uintptr_t>(a.workspace) % 16 != 0)) {
        return MQ_ERROR_WORKSPACE;
    }
    auto const s = reinterpret_cast<cudaStream_t>(stream);
    switch (a.dtype) {
    case MQ_FLOAT32: return mq::ssd::launch_ssd_scan_f32(a, plan, s);
    case MQ_FLOAT16: return mq::ssd::launch_ssd_scan_f16(a, plan, s);
    case MQ_BFLOAT16: return mq::ssd::launch_ssd_scan_bf16(a, plan, s);
    }
    return MQ_ERROR_INVALID_ARGUMENT;
}

std::size_t mma_workspace_bytes(int64_t batch, int64_t seqlen, int64_t heads, int64_t head_dim, int64_t dstate) {
    namespace mma = mq::ssd::mma;
    return static_cast<std::size_t>(mma::workspace_state_elems(batch, seqlen, heads, head_dim, dstate) +
               mma::workspace_decay_elems(batch, seqlen, heads)) * sizeof(float);
}

// The tensor-core path takes 16-bit activations, head_dim <= 64 and dstate <= 128 (what one block's
// shared memory holds), on sm_80 or later (bfloat16 WMMA); anything else is MQ_ERROR_UNSUPPORTED,
// and the caller keeps mq_ssd_scan.
mq_status run_mma(mq_ssd_scan_args const* args, mq_stream_t stream) {
    bool nothing_to_do = false;
    mq_status const status = check_ssd_args(args, &nothing_to_do);
    if (status != MQ_SUCCESS || nothing_to_do) {
        return status;
    }
    mq_ssd_scan_args const& a = *args;
    if ((a.dtype != MQ_FLOAT16 && a.dtype != MQ_BFLOAT16) || !mq::ssd::mma::supports(a.head_dim, a.dstate)) {
        return MQ_ERROR_UNSUPPORTED;
    }
    if (a.seqlen == 0 && a.final_state == nullptr) {
        return MQ_SUCCESS;
    }
    if (states_overlap(a)) {   // chunks run concurrently, as in mq_ssd_scan
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    // a tile's block writes y rows that later tiles' blocks of the same chunk still read as x
    auto const x_bytes = static_cast<std::uintptr_t>(a.batch) * static_cast<std::uintptr_t>(a.seqlen) *
        static_cast<std::uintptr_t>(a.heads) * static_cast<std::uintptr_t>(a.head_dim) * 2u;   // 16-bit
    if (overlap(a.x, a.y, x_bytes)) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    int device = 0;
    int major = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
        cudaGetLastError();   // not the caller's next check's error
        return MQ_ERROR_CUDA;
    }
    if (major < 8) {
        return MQ_ERROR_UNSUPPORTED;
    }
    std::size_t const need = mma_workspace_bytes(a.batch, a.seqlen, a.heads, a.head_dim, a.dstate);
    if (need > 0 && (a.workspace == nullptr || a.workspace_bytes < need ||
                        reinterpret_cast<std::uintptr_t>(a.workspace) % 16 != 0)) {
        return MQ_ERROR_WORKSPACE;
    }
    return mq::ssd::mma::launch_ssd_mma(a, reinterpret_cast<cudaStream_t>(stream));
}

}  // namespace

extern "C" {

size_t mq_ssd_scan_workspace_size(int32_t batch, int32_t seqlen, int32_t heads, int32_t head_dim, int32_t dstate) {
    if (batch <= 0 || seqlen <= 0 || heads <= 0 || head_dim <= 0 || dstate < 1 || dstate > MQ_SSD_SCAN_MAX_DSTATE) {
        return 0;
    }
    return mq::ssd::plan_ssd_scan(batch, seqlen, heads, head_dim, dstate).workspace_bytes();
}

size_t mq_ssd_scan_workspace_bound(int32_t max_batch, int32_t max_seqlen, int32_t heads, int32_t head_dim,
    int32_t dstate) {
    if (dstate < 1 || dstate > MQ_SSD_SCAN_MAX_DSTATE) {
        return 0;
    }
    return mq::ssd::ssd_workspace_bound(max_batch, max_seqlen, heads, head_dim, dstate);
}

mq_status mq_ssd_scan(mq_ssd_scan_args const* args, mq_stream_t stream) { return run(args, stream, true); }

mq_status mq_ssd_scan_sequential(mq_ssd_scan_args const* args, mq_stream_t stream) { return run(args, stream, false); }

size_t mq_ssd_scan_mma_workspace_size(int32_t batch, int32_t seqlen, int32_t heads, int32_t head_dim, int32_t dstate) {
    if (batch <= 0 || seqlen <= 0 || heads <= 0 || !mq::ssd::mma::supports(head_dim, dstate)) {
        return 0;
    }
    return mma_workspace_bytes(batch, seqlen, heads, head_dim, dstate);
}

mq_status mq_ssd_scan_mma(mq_ssd_scan_args const* args, mq_stream_t stream) { return run_mma(args, stream); }

}  // extern "C"
