// The arithmetic of the one-pass selective scan (onepass_kernel.cuh), shared with its CPU model
// (plugins/tests/test_onepass_model.cpp), which replays the same decomposition with these very
// functions. Plain C++ on the host, float32 everywhere, as the op contract requires.
//
// Vocabulary: a *segment* is the kOpTokensPerThread consecutive scan positions one thread owns; a
// *pair* (a, b) is the affine map h -> a*h + b that a stretch of tokens applies to one state. Pairs
// compose left to right: combine(earlier, later) = (a1*a2, a2*b1 + b2).
#pragma once

#include "scan_math.cuh"

namespace mq::scan {

struct ScanPair {
    float a;  // product of the decays over the stretch
    float b;  // state at the end of the stretch when it starts from 0
};

// The associative operator of the scan: `earlier` applied first, then `later`.
MQ_HOST_DEVICE ScanPair combine(ScanPair earlier, ScanPair later) {
    return {earlier.a * later.a, fmaf(later.a, earlier.b, later.b)};
}

// log1p(e) / e on [0, 1]: Chebyshev interpolant of degree 8 in monomial form (float32 Horner),
// relative error of e * q(e) against log1p(e) below 2.5e-7 on [0, 1] (test_onepass_model.cpp checks
// it on a dense grid).
MQ_HOST_DEVICE float log1p_over_x_unit(float e) {
    float q = 0.00525346f;
    q = fmaf(q, e, -0.02958851f);
    q = fmaf(q, e, 0.07836167f);
    q = fmaf(q, e, -0.1367477f);
    q = fmaf(q, e, 0.1911143f);
    q = fmaf(q, e, -0.2484437f);
    q = fmaf(q, e, 0.3331927f);
    q = fmaf(q, e, -0.49999502f);
    return fmaf(q, e, 1.0f);
}

// PyTorch's softplus (threshold 20) with one MUFU op: max(v, 0) + log1p(exp(-|v|)), the log1p by
// the polynomial above. About 14 instructions against ~40 for log1pf(expf(v)); it runs once per
// (token, channel), i.e. 1/N of the per-element work.
MQ_HOST_DEVICE float softplus_fast(float v) {
    float const e = exp2_fast(-fabsf(v) * kLog2e);  // (0, 1]; flushes to 0 below 2^-126
    float const sp = fmaxf(v, 0.0f) + e * log1p_over_x_unit(e);
    return v > kSoftplusThreshold ? v : sp;
}

MQ_HOST_DEVICE float delta_to_dt_fast(float delta, float bias, bool apply_softplus) {
    float const v = delta + bias;
    return apply_softplus ? softplus_fast(v) : v;
}

// z * sigmoid(s z) with one exp2 and one reciprocal (MUFU) on the GPU. exp overflow gives
// 1 / inf = 0 and the gate 0, the correct limit.
MQ_HOST_DEVICE float gate_fast(float z, float s) {
    float const e = exp2_fast(-s * z * kLog2e);
#if defined(__CUDA_ARCH__)
    return __fdividef(z, 1.0f + e);
#else
    return z / (1.0f + e);
#endif
}

MQ_HOST_DEVICE float finish_output_fast(float hc, float x, float d_skip, bool has_gate, float z, float gate_scale) {
    float const y = fmaf(d_skip, x, hc);
    return has_gate ? y * gate_fast(z, gate_scale) : y;
}

// Pass 1 of one segment for one state: the decays exp2(dt_i a2) (the only exponentials per
// element) and inputs u_i B_i, kept for pass 2, and the segment's pair. The pair's `a` is one more
// exp2 of the segment's summed dt (one per segment and state, not per token).
template <int K>
MQ_HOST_DEVICE ScanPair segment_pass1(float const (&dt)[K], float const (&u)[K], float const (&bv)[K], float a2,
    float dtsum, float (&dec)[K], float (&ub)[K]) {
    float b = 0.0f;
MQ_UNROLL
    for (int i = 0; i < K; ++i) {
        dec[i] = exp2_fast(dt[i] * a2);
        ub[i] = u[i] * bv[i];
        b = i == 0 ? ub[0] : fmaf(b, dec[i], ub[i]);
    }
    return {exp2_fast(a2 * dtsum), b};
}

// Pass 2 of one segment for one state, from the state entering it: the recurrence again (from the
// kept decays, no exponential), accumulating <h, C> per token. Returns the state after the segment.
template <int K>
MQ_HOST_DEVICE float segment_pass2(float h, float const (&dec)[K], float const (&ub)[K], float const (&cv)[K],
    float (&y)[K]) {
MQ_UNROLL
    for (int i = 0; i < K; ++i) {
        h = fmaf(h, dec[i], ub[i]);
        y[i] = fmaf(h, cv[i], y[i]);
    }
    return h;
}

// Across the warps of a block (each covers consecutive segments): walks the warps' aggregate pairs
// in order from the block's carried state. Sets *entering to the state entering warp `warp` and
// returns the state after the last warp (the next chunk's carry).
template <int W>
MQ_HOST_DEVICE float chain_warps(float carry, ScanPair const (&agg)[W], int warp, float* entering) {
    float h = carry;
    float in = carry;
MQ_UNROLL
    for (int k = 0; k < W; ++k) {
        in = k == warp ? h : in;
        h = fmaf(agg[k].a, h, agg[k].b);
    }
    *entering = in;
    return h;
}

}  // namespace mq::scan
