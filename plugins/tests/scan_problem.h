// The test problem of the CPU scan models (test_scan_reference.cpp: the chunked algorithm;
// test_onepass_model.cpp: the one-pass algorithm): random Mamba-like inputs and the op contract
// evaluated sequentially in double precision.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace mq::test_scan {

struct Problem {
    int batch, seqlen, dim, dstate;
    bool softplus, reverse, gated, with_initial_state;
    std::vector<float> x, delta, A, B, C, D, bias, z, gate_scale, h0;
};

inline Problem make_problem(int batch, int seqlen, int dim, int dstate, bool softplus, bool reverse, bool gated,
    bool with_initial_state, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    auto fill = [&](size_t n, auto gen) {
        std::vector<float> v(n);
        for (float& e : v) e = gen();
        return v;
    };
    Problem p{batch, seqlen, dim, dstate, softplus, reverse, gated, with_initial_state, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
    size_t const act = static_cast<size_t>(batch) * seqlen * dim;
    size_t const bc = static_cast<size_t>(batch) * seqlen * dstate;
    p.x = fill(act, [&] { return normal(rng); });
    // dt in roughly [1e-3, 0.1] after softplus, as Mamba initializes it; long memory for small A.
    p.delta = fill(act, [&] { return softplus ? -4.0f + 2.0f * normal(rng) : 0.05f * uniform(rng); });
    p.A = fill(static_cast<size_t>(dim) * dstate, [&] { return -std::exp(2.5f * uniform(rng) - 1.0f); });
    p.B = fill(bc, [&] { return normal(rng); });
    p.C = fill(bc, [&] { return normal(rng); });
    p.D = fill(dim, [&] { return normal(rng); });
    p.bias = fill(dim, [&] { return 0.5f * normal(rng); });
    p.z = fill(act, [&] { return normal(rng); });
    p.gate_scale = fill(dim, [&] { return 0.5f + uniform(rng); });
    p.h0 = fill(static_cast<size_t>(batch) * dim * dstate, [&] { return normal(rng); });
    return p;
}

inline size_t act_index(Problem const& p, int b, int t, int d) { return (static_cast<size_t>(b) * p.seqlen + t) * p.dim + d; }
inline size_t bc_index(Problem const& p, int b, int t, int n) { return (static_cast<size_t>(b) * p.seqlen + t) * p.dstate + n; }
inline size_t state_index(Problem const& p, int b, int d, int n) { return (static_cast<size_t>(b) * p.dim + d) * p.dstate + n; }

// The contract, sequentially, in double.
inline void reference(Problem const& p, std::vector<double>& y, std::vector<double>& final_state) {
    y.assign(p.x.size(), 0.0);
    final_state.assign(static_cast<size_t>(p.batch) * p.dim * p.dstate, 0.0);
    for (int b = 0; b < p.batch; ++b) {
        for (int d = 0; d < p.dim; ++d) {
            std::vector<double> h(p.dstate, 0.0);
            for (int n = 0; n < p.dstate && p.with_initial_state; ++n) h[n] = p.h0[state_index(p, b, d, n)];
            for (int s = 0; s < p.seqlen; ++s) {
                int const t = p.reverse ? p.seqlen - 1 - s : s;
                size_t const i = act_index(p, b, t, d);
                double v = static_cast<double>(p.delta[i]) + p.bias[d];
                double const dt = p.softplus ? (v > 20.0 ? v : std::log1p(std::exp(v))) : v;
                double acc = 0.0;
                for (int n = 0; n < p.dstate; ++n) {
                    h[n] = std::exp(dt * p.A[static_cast<size_t>(d) * p.dstate + n]) * h[n] + dt * p.x[i] * p.B[bc_index(p, b, t, n)];
                    acc += h[n] * p.C[bc_index(p, b, t, n)];
                }
                double out = acc + static_cast<double>(p.D[d]) * p.x[i];
                if (p.gated) {
                    double const zz = p.z[i];
                    out *= zz / (1.0 + std::exp(-static_cast<double>(p.gate_scale[d]) * zz));
                }
                y[i] = out;
            }
            for (int n = 0; n < p.dstate; ++n) final_state[state_index(p, b, d, n)] = h[n];
        }
    }
}

// max |a - ref| / max |ref|
template <typename V>
double normwise_error(V const& a, std::vector<double> const& ref) {
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
        err = std::max(err, std::isnan(static_cast<double>(a[i])) ? INFINITY : std::fabs(a[i] - ref[i]));
        scale = std::max(scale, std::fabs(ref[i]));
    }
    return scale > 0.0 ? err / scale : err;
}

}  // namespace mq::test_scan
