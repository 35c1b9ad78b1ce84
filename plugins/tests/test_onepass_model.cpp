// The one-pass algorithm on the CPU: onepass_kernel.cuh's decomposition replayed thread by thread
// (warp w, lane l: channel l % 4, segment 8 w + l / 4 of each 512-position chunk) with the kernel's
// own functions (onepass_math.cuh: the fast softplus and gate, segment pass 1 / pass 2, the pair
// combine, the cross-warp chain) and plan (scan_plan.h), against the plain sequential scan in double
// precision (scan_problem.h). What only the GPU can check: shared-memory staging, barriers, the
// MUFU's ex2.approx (here exp2f).
#include <cmath>
#include <cstdint>
#include <vector>

#include "onepass_math.cuh"
#include "scan_plan.h"
#include "scan_problem.h"
#include "unit_test.h"

using namespace mq::scan;
using namespace mq::test_scan;

namespace {

constexpr int K = kOpTokensPerThread;
constexpr int CH = kOpChannels;
constexpr int W = kOpWarps;
constexpr int SPW = kOpSegsPerWarp;

struct Counters {
    int chunks = 0;       // chunks walked (over all blocks)
    int idle_warps = 0;   // warp-chunks entirely past the sequence (skipped, identity aggregate)
    int carried = 0;      // chunk boundaries crossed with a carried state
};

// The kernel for one problem, block by block; y and final_state start as NaN (unwritten = wrong).
void onepass(Problem const& p, std::vector<float>& y, std::vector<float>& final_state, Counters* counters) {
    int const L = p.seqlen;
    int const N = p.dstate;
    y.assign(p.x.size(), std::nanf(""));
    final_state.assign(static_cast<size_t>(p.batch) * p.dim * N, std::nanf(""));
    auto token_of = [&](int pos) { return p.reverse ? L - 1 - pos : pos; };
    int const nchunks = static_cast<int>(op_chunks(L));

    for (int b = 0; b < p.batch; ++b) {
        for (int c0 = 0; c0 < p.dim; c0 += CH) {  // one thread block
            std::vector<float> carry[2];
            carry[0].assign(static_cast<size_t>(CH) * N, 0.0f);
            carry[1].assign(static_cast<size_t>(CH) * N, std::nanf(""));
            for (int ci = 0; ci < CH; ++ci) {
                for (int n = 0; n < N && p.with_initial_state && c0 + ci < p.dim; ++n) {
                    carry[0][ci * N + n] = p.h0[state_index(p, b, c0 + ci, n)];
                }
            }
            for (int chunk = 0; chunk < nchunks; ++chunk) {
                int const p0 = chunk * kOpChunk;
                counters->chunks += 1;
                counters->carried += chunk > 0;
                // Thread state, [warp][lane].
                float dt[W][32][K], u[W][32][K], yacc[W][32][K], dtsum[W][32];
                float dec[W][32][K], ub[W][32][K];
                ScanPair pr[W][32];
                bool live[W];
                for (int w = 0; w < W; ++w) {
                    live[w] = p0 + w * SPW * K < L;
                    counters->idle_warps += !live[w];
                    for (int l = 0; l < 32; ++l) {
                        int const ci = l % CH;
                        int const seg = w * SPW + l / CH;
                        int const ch = std::min(c0 + ci, p.dim - 1);
                        bool const ch_ok = c0 + ci < p.dim;
                        dtsum[w][l] = 0.0f;
                        for (int i = 0; i < K; ++i) {
                            int const pos = p0 + seg * K + i;
                            bool const in = pos < L;
                            size_t const at = in && ch_ok ? act_index(p, b, token_of(pos), c0 + ci) : 0;
                            float const xv = in && ch_ok ? p.x[at] : 0.0f;      // tiles are zero-filled
                            float const dv = in && ch_ok ? p.delta[at] : 0.0f;
                            float const d = in ? delta_to_dt_fast(dv, p.bias[ch], p.softplus) : 0.0f;
                            dt[w][l][i] = d;
                            u[w][l][i] = d * xv;
                            dtsum[w][l] += d;
                            yacc[w][l][i] = 0.0f;
                        }
                    }
                }
                for (int n = 0; n < N; ++n) {
                    ScanPair agg[W][CH];
                    for (int w = 0; w < W; ++w) {
                        for (int l = 0; l < 32; ++l) {
                            pr[w][l] = ScanPair{1.0f, 0.0f};
                            if (!live[w]) {
                                continue;
                            }
                            int const ci = l % CH;
                            int const seg = w * SPW + l / CH;
                            int const ch = std::min(c0 + ci, p.dim - 1);
                            float bv[K];
                            for (int i = 0; i < K; ++i) {
                                int const pos = p0 + seg * K + i;
                                bv[i] = pos < L ? p.B[bc_index(p, b, token_of(pos), n)] : 0.0f;
                            }
                            float const a2 = p.A[static_cast<size_t>(ch) * N + n] * kLog2e;
                            pr[w][l] = segment_pass1<K>(dt[w][l], u[w][l], bv, a2, dtsum[w][l], dec[w][l], ub[w][l]);
                        }
                        if (live[w]) {  // the in-warp Kogge-Stone scan: __shfl_up_sync reads the old values
                            for (int level = 0; level < kOpScanLevels; ++level) {
                                int const off = op_scan_offset(level);
                                ScanPair before[32];
                                std::copy(pr[w], pr[w] + 32, before);
                                for (int l = off; l < 32; ++l) {
                                    pr[w][l] = combine(before[l - off], pr[w][l]);
                                }
                            }
                        }
                        for (int ci = 0; ci < CH; ++ci) {
                            agg[w][ci] = pr[w][(SPW - 1) * CH + ci];
                        }
                    }
                    // After the barrier: each thread chains the warps' aggregates from the carry.
                    float next_carry[CH];
                    for (int w = 0; w < W; ++w) {
                        float h_end[32], h_warp[32];
                        for (int l = 0; l < 32; ++l) {
                            int const ci = l % CH;
                            ScanPair chain[W];
                            for (int k = 0; k < W; ++k) {
                                chain[k] = agg[k][ci];
                            }
                            float const h_next = chain_warps<W>(carry[chunk & 1][ci * N + n], chain, w, &h_warp[l]);
                            if (w == W - 1 && l / CH == 0) {
                                next_carry[ci] = h_next;
                            }
                            h_end[l] = std::fma(pr[w][l].a, h_warp[l], pr[w][l].b);
                        }
                        if (!live[w]) {
                            continue;
                        }
                        for (int l = 0; l < 32; ++l) {
                            int const seg = w * SPW + l / CH;
                            float cv[K];
                            for (int i = 0; i < K; ++i) {
                                int const pos = p0 + seg * K + i;
                                cv[i] = pos < L ? p.C[bc_index(p, b, token_of(pos), n)] : 0.0f;
                            }
                            float const h_in = l / CH == 0 ? h_warp[l] : h_end[l - CH];  // __shfl_up_sync by CH
                            segment_pass2<K>(h_in, dec[w][l], ub[w][l], cv, yacc[w][l]);
                        }
                    }
                    for (int ci = 0; ci < CH; ++ci) {
                        carry[(chunk + 1) & 1][ci * N + n] = next_carry[ci];
                    }
                }
                for (int w = 0; w < W; ++w) {  // y = (<h, C> + D x) * gate(z)
                    for (int l = 0; l < 32; ++l) {
                        int const ci = l % CH;
                        int const seg = w * SPW + l / CH;
                        for (int i = 0; i < K; ++i) {
                            int const pos = p0 + seg * K + i;
                            if (pos < L && c0 + ci < p.dim) {
                                size_t const at = act_index(p, b, token_of(pos), c0 + ci);
                                y[at] = finish_output_fast(yacc[w][l][i], p.x[at], p.D[c0 + ci], p.gated, p.z[at],
                                    p.gate_scale[c0 + ci]);
                            }
                        }
                    }
                }
            }
            for (int ci = 0; ci < CH && c0 + ci < p.dim; ++ci) {
                for (int n = 0; n < N; ++n) {
                    final_state[state_index(p, b, c0 + ci, n)] = carry[nchunks & 1][ci * N + n];
                }
            }
        }
    }
}

Counters gTotals;

void check_case(int batch, int seqlen, int dim, int dstate, bool softplus, bool reverse, bool gated, bool h0,
    unsigned seed) {
    Problem p = make_problem(batch, seqlen, dim, dstate, softplus, reverse, gated, h0, seed);
    if (!softplus) {  // dt = delta + bias must stay >= 0 (a decaying state), as the GPU check draws it
        for (float& v : p.bias) v = std::fabs(v);
    }
    std::vector<double> y_ref, s_ref;
    std::vector<float> y, s;
    reference(p, y_ref, s_ref);
    onepass(p, y, s, &gTotals);
    double const ey = normwise_error(y, y_ref);
    double const es = normwise_error(s, s_ref);
    if (!(ey <= 1e-5 && es <= 1e-5)) {
        CHECK(ey <= 1e-5);
        CHECK(es <= 1e-5);
        std::fprintf(stderr, "    case B=%d L=%d D=%d N=%d softplus=%d reverse=%d gate=%d h0=%d: y %.3g state %.3g\n",
            batch, seqlen, dim, dstate, softplus, reverse, gated, h0, ey, es);
    }
}

}  // namespace

TEST(onepass_model_matches_sequential_reference) {
    gTotals = Counters{};
    unsigned seed = 100;
    // 1 and 7: one partial segment; 300: idle warps; 512: exactly one chunk; 513: a carried chunk
    // of one token; 1300: three chunks with a ragged tail. D = 6: a partial channel block.
    for (int seqlen : {1, 7, 300, 512, 513, 1300}) {
        for (int dstate : {1, 5, 16}) {
            for (int flags = 0; flags < 8; ++flags) {
                check_case(1 + flags % 2, seqlen, flags < 4 ? 6 : 4, dstate, true, flags & 1, flags & 2, flags & 4,
                    seed++);
            }
        }
    }
    check_case(1, 1100, 5, 64, false, true, true, true, seed++);  // no softplus, widest state
    check_case(2, 700, 3, 33, true, false, true, true, seed++);   // odd N above 32
    check_case(1, 2048, 4, 32, true, true, false, false, seed++);
    CHECK(gTotals.carried > 50);     // the cases above crossed chunk boundaries with a carried state
    CHECK(gTotals.idle_warps > 50);  // and had warps past the end of the sequence
}

TEST(onepass_model_empty_sequence_returns_initial_state) {
    Problem const p = make_problem(2, 0, 5, 16, true, false, true, true, 7);
    std::vector<float> y, s;
    Counters c;
    onepass(p, y, s, &c);
    CHECK(y.empty());
    CHECK(s == p.h0);
    Problem const q = make_problem(1, 0, 3, 4, true, false, true, false, 8);
    onepass(q, y, s, &c);
    CHECK(s == std::vector<float>(3 * 4, 0.0f));
}

TEST(onepass_fast_softplus_and_gate_accuracy) {
    // PyTorch's softplus in double over [-90, 30] (both branches, the threshold, the flush to 0).
    // The float32 argument -|v| log2(e) costs |v| * 6e-8 relative: below v = -20 (dt < 2e-9, no
    // visible effect on y) the bound is looser.
    double worst = 0.0, worst_tiny = 0.0;
    for (int i = 0; i <= 240000; ++i) {
        float const v = -90.0f + 0.0005f * static_cast<float>(i);
        double const ref = v > 20.0f ? static_cast<double>(v) : std::log1p(std::exp(static_cast<double>(v)));
        double const rel = std::fabs(softplus_fast(v) - ref) / ref;
        (v >= -20.0f ? worst : worst_tiny) = std::max(v >= -20.0f ? worst : worst_tiny, ref > 1e-30 ? rel : 0.0);
    }
    CHECK(worst < 1.5e-6);
    CHECK(worst_tiny < 1e-5);
    CHECK_EQ(softplus_fast(25.0f), 25.0f);
    CHECK(softplus_fast(-200.0f) >= 0.0f);
    double poly = 0.0;  // the polynomial alone: e * q(e) against log1p(e) on [0, 1]
    for (int i = 1; i <= 100000; ++i) {
        double const e = i / 100000.0;
        poly = std::max(poly, std::fabs(e * log1p_over_x_unit(static_cast<float>(e)) - std::log1p(e)) / std::log1p(e));
    }
    CHECK(poly < 2.5e-7);
    double gate_err = 0.0;  // |error| <= 2e-6 |gate| + 1e-9 (same argument rounding)
    for (int i = 0; i <= 20000; ++i) {
        float const z = -40.0f + 0.004f * static_cast<float>(i);
        double const ref = z / (1.0 + std::exp(-1.3 * static_cast<double>(z)));
        gate_err = std::max(gate_err, std::fabs(gate_fast(z, 1.3f) - ref) / (2e-6 * std::fabs(ref) + 1e-9));
    }
    CHECK(gate_err <= 1.0);
    CHECK_EQ(gate_fast(-1000.0f, 1.0f), -0.0f);  // exp overflow: the gate's limit, not NaN
}

TEST(onepass_combine_is_the_affine_composition) {
    // (a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2, checked on numbers, and associativity.
    ScanPair const p1{0.5f, 2.0f}, p2{0.25f, -1.0f}, p3{0.8f, 3.0f};
    ScanPair const c = combine(p1, p2);
    float const h = 1.5f;
    CHECK(std::fabs(c.a * h + c.b - (p2.a * (p1.a * h + p1.b) + p2.b)) < 1e-6f);
    ScanPair const left = combine(combine(p1, p2), p3);
    ScanPair const right = combine(p1, combine(p2, p3));
    CHECK(std::fabs(left.a - right.a) < 1e-7f && std::fabs(left.b - right.b) < 1e-6f);
    CHECK(std::fabs(combine(p2, p1).b - c.b) > 0.1f);  // order matters: the test above can fail
}
