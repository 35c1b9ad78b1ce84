// The per-token arithmetic of the selective scan, shared by every kernel and by the CPU tests
// (compiled as plain C++ there). Everything is float32, as the op contract requires.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define MQ_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MQ_HOST_DEVICE inline
#endif

// `#pragma unroll` for the device pass only (host compilers warn about it).
#if defined(__CUDA_ARCH__)
#define MQ_UNROLL _Pragma("unroll")
#else
#define MQ_UNROLL
#endif

namespace mq::scan {

constexpr float kLog2e = 1.4426950408889634f;
// PyTorch's softplus (beta = 1, threshold = 20): the identity above the threshold.
constexpr float kSoftplusThreshold = 20.0f;

MQ_HOST_DEVICE float softplus(float v) {
    // Accurate expf/log1pf on purpose: this runs once per (token, channel), not per state.
    return v > kSoftplusThreshold ? v : log1pf(expf(v));
}

MQ_HOST_DEVICE float delta_to_dt(float delta, float bias, bool apply_softplus) {
    float const v = delta + bias;
    return apply_softplus ? softplus(v) : v;
}

// 2^v for the state decay exp(dt * A) = 2^(dt * A * log2(e)). One MUFU op on the GPU; the
// argument is <= 0 and results below 2^-126 flush to zero, which is what the decay means anyway.
MQ_HOST_DEVICE float exp2_fast(float v) {
#if defined(__CUDA_ARCH__)
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
#else
    return exp2f(v);
#endif
}

// The (S-)SiLU gate: z * sigmoid(s * z). expf overflow gives z / inf = 0, the correct limit.
MQ_HOST_DEVICE float gate(float z, float s) {
    return z / (1.0f + expf(-s * z));
}

// One token for NS states: h = exp(dt A) h + (dt x) B; returns <h, C>.
// a2 holds A * log2(e); states past dstate have a2 = B = C = 0 and stay 0.
template <int NS>
MQ_HOST_DEVICE float scan_token(float (&h)[NS], float const (&a2)[NS], float const* b, float const* c,
    float dt, float u) {
    float y = 0.0f;
MQ_UNROLL
    for (int i = 0; i < NS; ++i) {
        float const decay = exp2_fast(dt * a2[i]);
        h[i] = fmaf(h[i], decay, u * b[i]);
        y = fmaf(h[i], c[i], y);
    }
    return y;
}

// Same recurrence without the output (pass 1 of the chunked scan only needs the end state).
template <int NS>
MQ_HOST_DEVICE void scan_token_state(float (&h)[NS], float const (&a2)[NS], float const* b, float dt, float u) {
MQ_UNROLL
    for (int i = 0; i < NS; ++i) {
        h[i] = fmaf(h[i], exp2_fast(dt * a2[i]), u * b[i]);
    }
}

// Output of one token once <h, C> is known: + D x, then the optional gate.
MQ_HOST_DEVICE float finish_output(float hc, float x, float d_skip, bool has_gate, float z, float gate_scale) {
    float const y = fmaf(d_skip, x, hc);
    return has_gate ? y * gate(z, gate_scale) : y;
}

}  // namespace mq::scan
