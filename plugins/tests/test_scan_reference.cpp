// The chunked algorithm on the CPU: the three passes of the CUDA kernels (chunk summaries, carry,
// output), written with the same per-token math (scan_math.cuh) and the same plan, against a plain
// sequential double-precision scan. Checks the decomposition: carries, reverse, initial state,
// gate, N that is not a multiple of 4, empty and one-token sequences.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "scan_math.cuh"
#include "scan_problem.h"
#include "scan_plan.h"
#include "unit_test.h"

using namespace mq::scan;
using namespace mq::test_scan;

namespace {

constexpr int kPad = kMaxDstate;  // the emulation keeps every channel's states padded to 64

// The three passes as the kernels run them, float32, one "thread" = one (batch, chunk, channel).
void chunked(Problem const& p, ScanPlan const& plan, std::vector<float>& y, std::vector<float>& final_state) {
    y.assign(p.x.size(), std::nanf(""));
    final_state.assign(static_cast<size_t>(p.batch) * p.dim * p.dstate, std::nanf(""));
    int const carried = plan.nchunks - 1;
    std::vector<float> chunk_state(static_cast<size_t>(p.batch) * carried * p.dim * kPad, std::nanf(""));
    std::vector<float> chunk_dtsum(static_cast<size_t>(p.batch) * carried * p.dim, std::nanf(""));
    auto slot = [&](int b, int c, int d) { return (static_cast<size_t>(b) * carried + c) * p.dim + d; };
    auto a2_of = [&](int d, float (&a2)[kPad]) {
        for (int n = 0; n < kPad; ++n) a2[n] = n < p.dstate ? p.A[static_cast<size_t>(d) * p.dstate + n] * kLog2e : 0.0f;
    };
    auto bc_row = [&](std::vector<float> const& m, int b, int t, float (&row)[kPad]) {
        for (int n = 0; n < kPad; ++n) row[n] = n < p.dstate ? m[bc_index(p, b, t, n)] : 0.0f;
    };
    auto token = [&](int pos) { return p.reverse ? p.seqlen - 1 - pos : pos; };

    for (int b = 0; b < p.batch; ++b) {  // pass 1: chunk summaries from a zero state
        for (int c = 0; c < carried; ++c) {
            for (int d = 0; d < p.dim; ++d) {
                float a2[kPad], h[kPad] = {}, brow[kPad];
                a2_of(d, a2);
                float dtsum = 0.0f;
                for (int pos = c * plan.chunk_len; pos < std::min((c + 1) * plan.chunk_len, p.seqlen); ++pos) {
                    int const t = token(pos);
                    size_t const i = act_index(p, b, t, d);
                    float const dt = delta_to_dt(p.delta[i], p.bias[d], p.softplus);
                    bc_row(p.B, b, t, brow);
                    scan_token_state<kPad>(h, a2, brow, dt, dt * p.x[i]);
                    dtsum += dt;
                }
                for (int n = 0; n < kPad; ++n) chunk_state[slot(b, c, d) * kPad + n] = h[n];
                chunk_dtsum[slot(b, c, d)] = dtsum;
            }
        }
    }
    for (int b = 0; b < p.batch; ++b) {  // pass 2: carry
        for (int d = 0; d < p.dim; ++d) {
            for (int n = 0; n < p.dstate; ++n) {
                float const a2 = p.A[static_cast<size_t>(d) * p.dstate + n] * kLog2e;
                float h = p.with_initial_state ? p.h0[state_index(p, b, d, n)] : 0.0f;
                for (int c = 0; c < carried; ++c) {
                    h = std::fma(exp2_fast(a2 * chunk_dtsum[slot(b, c, d)]), h, chunk_state[slot(b, c, d) * kPad + n]);
                    chunk_state[slot(b, c, d) * kPad + n] = h;
                }
            }
        }
    }
    for (int b = 0; b < p.batch; ++b) {  // pass 3: output
        for (int c = 0; c < plan.nchunks; ++c) {
            for (int d = 0; d < p.dim; ++d) {
                float a2[kPad], h[kPad] = {}, brow[kPad], crow[kPad];
                a2_of(d, a2);
                for (int n = 0; n < p.dstate; ++n) {
                    h[n] = c > 0 ? chunk_state[slot(b, c - 1, d) * kPad + n]
                                 : (p.with_initial_state ? p.h0[state_index(p, b, d, n)] : 0.0f);
                }
                for (int pos = c * plan.chunk_len; pos < std::min((c + 1) * plan.chunk_len, p.seqlen); ++pos) {
                    int const t = token(pos);
                    size_t const i = act_index(p, b, t, d);
                    float const dt = delta_to_dt(p.delta[i], p.bias[d], p.softplus);
                    bc_row(p.B, b, t, brow);
                    bc_row(p.C, b, t, crow);
                    float const hc = scan_token<kPad>(h, a2, brow, crow, dt, dt * p.x[i]);
                    y[i] = finish_output(hc, p.x[i], p.D[d], p.gated, p.z[i], p.gate_scale[d]);
                }
                if (c == plan.nchunks - 1) {
                    for (int n = 0; n < p.dstate; ++n) final_state[state_index(p, b, d, n)] = h[n];
                }
            }
        }
    }
}

void check_case(int batch, int seqlen, int dim, int dstate, bool softplus, bool reverse, bool gated, bool h0, unsigned seed) {
    Problem const p = make_problem(batch, seqlen, dim, dstate, softplus, reverse, gated, h0, seed);
    ScanPlan const plan = plan_chunked_scan(batch, seqlen, dim, dstate);
    std::vector<double> y_ref, s_ref;
    std::vector<float> y, s;
    reference(p, y_ref, s_ref);
    chunked(p, plan, y, s);
    double const ey = normwise_error(y, y_ref);
    double const es = normwise_error(s, s_ref);
    if (!(ey <= 1e-5 && es <= 1e-5)) {
        CHECK(ey <= 1e-5);
        CHECK(es <= 1e-5);
        std::fprintf(stderr, "    case B=%d L=%d D=%d N=%d softplus=%d reverse=%d gate=%d h0=%d nchunks=%d: y %.3g state %.3g\n",
            batch, seqlen, dim, dstate, softplus, reverse, gated, h0, plan.nchunks, ey, es);
    }
}

}  // namespace

TEST(chunked_scan_matches_sequential_reference) {
    unsigned seed = 1;
    // dim 3 makes batch*dim tiny, so the plan splits long sequences into many chunks.
    for (int seqlen : {1, 7, 64, 65, 300, 1111}) {
        for (int dstate : {1, 5, 16}) {
            for (int flags = 0; flags < 8; ++flags) {
                check_case(2, seqlen, 3, dstate, true, flags & 1, flags & 2, flags & 4, seed++);
            }
        }
    }
    check_case(1, 500, 2, 64, false, true, true, true, seed++);  // no softplus, widest state
    check_case(1, 1000, 2, 33, true, false, true, false, seed++);
    CHECK(plan_chunked_scan(2, 1111, 3, 16).nchunks > 10);  // the cases above really were chunked
}

TEST(empty_sequence_returns_initial_state) {
    Problem const p = make_problem(1, 0, 4, 16, true, false, true, true, 7);
    std::vector<float> y, s;
    chunked(p, plan_chunked_scan(1, 0, 4, 16), y, s);
    CHECK(y.empty());
    CHECK(s == p.h0);
}

TEST(softplus_matches_pytorch_threshold) {
    CHECK_EQ(softplus(25.0f), 25.0f);
    CHECK(std::fabs(softplus(0.0f) - std::log(2.0f)) < 1e-7f);
    CHECK(std::fabs(softplus(20.0f) - 20.0f) < 1e-6f);  // continuous at the threshold
    CHECK(softplus(-30.0f) > 0.0f);
    CHECK_EQ(delta_to_dt(1.0f, 0.5f, false), 1.5f);
}
