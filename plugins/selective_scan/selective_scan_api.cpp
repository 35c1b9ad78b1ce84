// The C API of libmq_kernels for the selective scan: argument checks, plan, dtype dispatch.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "mq_kernels.h"
#include "scan_plan.h"
#include "selective_scan_launch.h"

namespace {

using mq::scan::ScanPlan;

bool is_flag(int32_t v) { return v == 0 || v == 1; }

bool is_dtype(mq_dtype d) { return d == MQ_FLOAT32 || d == MQ_FLOAT16 || d == MQ_BFLOAT16; }

// Checks that do not depend on the algorithm. Sets *nothing_to_do for empty batch or dim.
mq_status check_args(mq_selective_scan_args const* a, bool* nothing_to_do) {
    if (a == nullptr || !is_dtype(a->dtype) || !is_flag(a->delta_softplus) || !is_flag(a->reverse)) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    if (a->batch < 0 || a->seqlen < 0 || a->dim < 0 || a->dstate < 1) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    if (a->dstate > MQ_SELECTIVE_SCAN_MAX_DSTATE || a->batch > mq::scan::kMaxGridYZ) {
        return MQ_ERROR_UNSUPPORTED;
    }
    if (a->gate_scale != nullptr && a->z == nullptr) {
        return MQ_ERROR_INVALID_ARGUMENT;  // a gate scale without a gate is a caller bug
    }
    *nothing_to_do = a->batch == 0 || a->dim == 0;
    if (*nothing_to_do) {
        return MQ_SUCCESS;
    }
    if (a->A == nullptr) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    bool const has_tokens = a->seqlen > 0;
    if (has_tokens && (a->x == nullptr || a->delta == nullptr || a->B == nullptr || a->C == nullptr || a->y == nullptr)) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    return MQ_SUCCESS;
}

mq_status check_workspace(mq_selective_scan_args const& a, ScanPlan const& plan) {
    std::size_t const need = plan.workspace_bytes();
    if (need == 0) {
        return MQ_SUCCESS;
    }
    if (a.workspace == nullptr || a.workspace_bytes < need || reinterpret_cast<std::uintptr_t>(a.workspace) % 16 != 0) {
        return MQ_ERROR_WORKSPACE;
    }
    return MQ_SUCCESS;
}

mq_status dispatch(mq_selective_scan_args const& a, ScanPlan const& plan, mq_stream_t stream) {
    auto const s = reinterpret_cast<cudaStream_t>(stream);
    switch (a.dtype) {
    case MQ_FLOAT32: return mq::scan::launch_selective_scan_f32(a, plan, s);
    case MQ_FLOAT16: return mq::scan::launch_selective_scan_f16(a, plan, s);
    case MQ_BFLOAT16: return mq::scan::launch_selective_scan_bf16(a, plan, s);
    }
    return MQ_ERROR_INVALID_ARGUMENT;
}

// Whether the [batch, dim, dstate] float32 states overlap in memory.
bool states_overlap(mq_selective_scan_args const& a) {
    if (a.initial_state == nullptr || a.final_state == nullptr) {
        return false;
    }
    auto const bytes = static_cast<std::uintptr_t>(a.batch) * static_cast<std::uintptr_t>(a.dim) *
        static_cast<std::uintptr_t>(a.dstate) * sizeof(float);
    auto const in = reinterpret_cast<std::uintptr_t>(a.initial_state);
    auto const out = reinterpret_cast<std::uintptr_t>(a.final_state);
    return in < out + bytes && out < in + bytes;
}

enum class StateAlias { kAllowed, kRefused };

template <typename PlanFn>
mq_status run(mq_selective_scan_args const* args, mq_stream_t stream, StateAlias alias, PlanFn make_plan) {
    bool nothing_to_do = false;
    mq_status status = check_args(args, &nothing_to_do);
    if (status != MQ_SUCCESS || nothing_to_do) {
        return status;
    }
    // The chunked scan's chunks run concurrently: the last one may write final_state before the
    // first has read initial_state. One thread per channel (sequential, decode) reads its own
    // state before writing it, so aliasing is safe there.
    if (alias == StateAlias::kRefused && states_overlap(*args)) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    ScanPlan const plan = make_plan(*args);
    status = check_workspace(*args, plan);
    return status != MQ_SUCCESS ? status : dispatch(*args, plan, stream);
}

}  // namespace

extern "C" {

size_t mq_selective_scan_workspace_size(int32_t batch, int32_t seqlen, int32_t dim, int32_t dstate) {
    if (batch <= 0 || seqlen <= 0 || dim <= 0 || dstate < 1 || dstate > MQ_SELECTIVE_SCAN_MAX_DSTATE) {
        return 0;
    }
    return mq::scan::plan_chunked_scan(batch, seqlen, dim, dstate).workspace_bytes();
}

size_t mq_selective_scan_workspace_bound(int32_t max_batch, int32_t max_seqlen, int32_t max_dim, int32_t dstate) {
    if (dstate < 1 || dstate > MQ_SELECTIVE_SCAN_MAX_DSTATE) {
        return 0;
    }
    return mq::scan::chunked_workspace_bound(max_batch, max_seqlen, max_dim, dstate);
}

mq_status mq_selective_scan(mq_selective_scan_args const* args, mq_stream_t stream) {
    return run(args, stream, StateAlias::kRefused, [](mq_selective_scan_args const& a) {
        return mq::scan::plan_chunked_scan(a.batch, a.seqlen, a.dim, a.dstate);
    });
}

mq_status mq_selective_scan_sequential(mq_selective_scan_args const* args, mq_stream_t stream) {
    return run(args, stream, StateAlias::kAllowed, [](mq_selective_scan_args const& a) {
        return mq::scan::plan_sequential_scan(a.batch, a.seqlen, a.dim, a.dstate);
    });
}

mq_status mq_selective_scan_onepass(mq_selective_scan_args const* args, mq_stream_t stream) {
    bool nothing_to_do = false;
    mq_status const status = check_args(args, &nothing_to_do);
    if (status != MQ_SUCCESS || nothing_to_do) {
        return status;
    }
    // Offsets inside one batch row are 32-bit in the one-pass kernel.
    if (static_cast<int64_t>(args->seqlen) * std::max(args->dim, args->dstate) > INT32_MAX) {
        return MQ_ERROR_UNSUPPORTED;
    }
    // Each block reads its channels' initial state before anything else and writes their final
    // state last, so final_state may alias initial_state. No workspace.
    auto const s = reinterpret_cast<cudaStream_t>(stream);
    switch (args->dtype) {
    case MQ_FLOAT32: return mq::scan::launch_onepass_f32(*args, s);
    case MQ_FLOAT16: return mq::scan::launch_onepass_f16(*args, s);
    case MQ_BFLOAT16: return mq::scan::launch_onepass_bf16(*args, s);
    }
    return MQ_ERROR_INVALID_ARGUMENT;
}

mq_status mq_selective_state_update(mq_selective_scan_args const* args, mq_stream_t stream) {
    if (args == nullptr || args->seqlen != 1) {
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    mq_selective_scan_args a = *args;
    a.reverse = 0;  // one token: direction is meaningless
    return run(&a, stream, StateAlias::kAllowed, [](mq_selective_scan_args const& s) {
        ScanPlan plan = mq::scan::plan_sequential_scan(s.batch, s.seqlen, s.dim, s.dstate);
        plan.layout = mq::scan::decode_layout(s.dstate);
        return plan;
    });
}

const char* mq_status_string(mq_status status) {
    switch (status) {
    case MQ_SUCCESS: return "success";
    case MQ_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case MQ_ERROR_UNSUPPORTED: return "unsupported argument (outside what the kernels implement)";
    case MQ_ERROR_WORKSPACE: return "workspace missing, too small or not 16-byte aligned";
    case MQ_ERROR_CUDA: return "CUDA kernel launch failed";
    }
    return "unknown mq_status";
}

const char* mq_kernels_version(void) { return "0.1.0"; }

}  // extern "C"
