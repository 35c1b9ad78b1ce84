// The tensor-core SSD scan's passes (ssd_scan/ssd_mma_body.h) run on the CPU: the same code the
// GPU kernels instantiate, with one "thread" and one "warp" that takes every tile and plain-loop
// fragments, against a float64 sequential recurrence written here. What this checks: the chunk and
// tile bookkeeping, the shared-memory layouts and fragment pointers, the causal mask, the decays,
// the padding of P and N, groups, the carry between chunks, the initial and final states; and, with
// the operands rounded to bfloat16's or float16's precision, whether that rounding stays within the
// tolerance the GPU check holds the kernel to. What it cannot: WMMA's fragment loads on the device,
// races, float16's range (the GPU stage `ssd` measures those against float64).
#include <cmath>
#include <cstdint>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <random>
#include <vector>

#include "ssd_carry_walk.h"
#include "ssd_mma_body.h"
#include "unit_test.h"

namespace {

namespace mma = mq::ssd::mma;

// Round-to-nearest-even to a float with `bits` significant bits (bfloat16: 8, float16: 11; the
// exponent range is float32's: float16's overflow and subnormals are not modelled). 24: unchanged.
float round_to_bits(float v, int bits) {
    if (bits >= 24 || !std::isfinite(v)) {
        return v;
    }
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    int const drop = 24 - bits;
    uint32_t const half = (1u << (drop - 1)) - 1u + ((u >> drop) & 1u);
    u = (u + half) & ~((1u << drop) - 1u);
    std::memcpy(&v, &u, sizeof v);
    return v;
}

int g_operand_bits = 24;   // the precision HostCtx rounds operands and outputs to (one test at a time)

// A generation-counting barrier for the threads of one emulated block (C++17 has no std::barrier).
class Barrier {
public:
    explicit Barrier(int count) : count_(count) {}
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        long const generation = generation_;
        if (++waiting_ == count_) {
            waiting_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return generation_ != generation; });
        }
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int const count_;
    int waiting_ = 0;
    long generation_ = 0;
};

// The CPU backend. Threads = Warps = 1: one thread runs every loop and every tile, in program order.
// Threads = 256, Warps = 8: the GPU's block, as 256 OS threads meeting at a real barrier; a warp's
// fragment operation runs once, on its lane 0 (WMMA's are warp-collective), so the 8-warp split of
// the tiles, the strided loops and the barriers are the GPU's.
template <int Threads, int Warps>
struct HostCtx {
    using Op = float;
    static constexpr int kThreads = Threads;
    static constexpr int kWarps = Warps;
    int tid = 0;
    int warp = 0;
    int lane = 0;
    Barrier* barrier = nullptr;

    struct Tile {
        float v[mma::kFrag][mma::kFrag];
    };
    struct Acc : Tile {};
    struct FragARow : Tile {};
    struct FragACol : Tile {};
    struct FragBRow : Tile {};
    struct FragBCol : Tile {};

    void sync() const {
        if (barrier != nullptr) {
            barrier->wait();
        }
    }
    static float load(float const* p) { return *p; }
    static void store_act(float* p, float v) { *p = round_to_bits(v, g_operand_bits); }
    static float to_op(float v) { return round_to_bits(v, g_operand_bits); }
    static float from_op(float v) { return v; }
    static void load8(float* dst, float const* src, float scale, bool scaled) {
        for (int k = 0; k < mma::kVector; ++k) {
            dst[k] = round_to_bits(scaled ? src[k] * scale : src[k], g_operand_bits);
        }
    }
    static void zero8(float* dst) {
        for (int k = 0; k < mma::kVector; ++k) {
            dst[k] = 0.0f;
        }
    }
    void fill(Acc& a, float v) const {
        for (auto& row : a.v) {
            for (float& e : row) {
                e = v;
            }
        }
    }
    // WMMA's meaning of each layout: element (r, c) of the 16x16 operand at p[r * ld + c] (row
    // major) or p[c * ld + r] (column major)
    void load(FragARow& f, float const* p, int ld) const { load_layout(f, p, ld, true); }
    void load(FragACol& f, float const* p, int ld) const { load_layout(f, p, ld, false); }
    void load(FragBRow& f, float const* p, int ld) const { load_layout(f, p, ld, true); }
    void load(FragBCol& f, float const* p, int ld) const { load_layout(f, p, ld, false); }
    void load_layout(Tile& f, float const* p, int ld, bool row_major) const {
        if (lane != 0) {
            return;
        }
        for (int r = 0; r < mma::kFrag; ++r) {
            for (int c = 0; c < mma::kFrag; ++c) {
                f.v[r][c] = row_major ? p[r * ld + c] : p[c * ld + r];
            }
        }
    }
    void mma(Acc& d, Tile const& a, Tile const& b) const {
        if (lane != 0) {
            return;
        }
        for (int i = 0; i < mma::kFrag; ++i) {
            for (int j = 0; j < mma::kFrag; ++j) {
                float s = d.v[i][j];
                for (int k = 0; k < mma::kFrag; ++k) {
                    s += a.v[i][k] * b.v[k][j];
                }
                d.v[i][j] = s;
            }
        }
    }
    void store(float* p, Acc const& a, int ld) const {
        if (lane != 0) {
            return;
        }
        for (int r = 0; r < mma::kFrag; ++r) {
            for (int c = 0; c < mma::kFrag; ++c) {
                p[r * ld + c] = a.v[r][c];
            }
        }
    }
    void load_acc(Acc& a, float const* p, int ld) const { load_layout(a, p, ld, true); }
};

using OneThread = HostCtx<1, 1>;
using GpuBlock = HostCtx<mma::kThreads, mma::kThreads / 32>;

// kThreads worker threads kept for the whole test run (creating 256 threads a block cost seconds):
// run() hands them one block's body and returns when all of them are through it.
template <typename Ctx>
class BlockPool {
public:
    BlockPool() : start_(Ctx::kThreads + 1), done_(Ctx::kThreads + 1), block_(Ctx::kThreads) {
        for (int t = 0; t < Ctx::kThreads; ++t) {
            workers_.emplace_back([this, t] { work(t); });
        }
    }
    ~BlockPool() {
        stop_ = true;
        start_.wait();
        for (std::thread& w : workers_) {
            w.join();
        }
    }
    void run(std::function<void(Ctx&)> const& body) {
        body_ = &body;
        start_.wait();
        done_.wait();
    }

private:
    void work(int t) {
        Ctx ctx;
        ctx.tid = t;
        ctx.warp = t / 32;
        ctx.lane = t % 32;
        ctx.barrier = &block_;
        for (;;) {
            start_.wait();
            if (stop_) {
                return;
            }
            (*body_)(ctx);
            done_.wait();
        }
    }
    Barrier start_;
    Barrier done_;
    Barrier block_;     // the body's __syncthreads
    std::vector<std::thread> workers_;
    std::function<void(Ctx&)> const* body_ = nullptr;
    bool stop_ = false;     // written before start_ releases the workers, read after
};

// One block's body with the given backend: in place, or on the pool's kThreads threads.
template <typename Ctx>
void run_block(std::function<void(Ctx&)> const& body) {
    if constexpr (Ctx::kThreads == 1) {
        Ctx ctx;
        body(ctx);
    } else {
        static BlockPool<Ctx> pool;
        pool.run(body);
    }
}

struct Case {
    int batch, seqlen, heads, head_dim, groups, dstate;
    bool initial_state = false;
    bool skip = true;          // D and dt_bias
    bool softplus = true;
    float dt_min = 0.0f;
    float dt_max = INFINITY;
    bool vector_loads = true;  // 8-value tile loads where the widths allow (the GPU's aligned case)
};

struct Data {
    std::vector<float> x, dt, A, B, C, D, dt_bias, h0;
};

Data make_data(Case const& k, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> uniform;
    auto fill = [&](std::size_t n, float scale, float shift) {
        std::vector<float> v(n);
        for (float& e : v) {
            e = normal(gen) * scale + shift;
        }
        return v;
    };
    Data d;
    int64_t const tokens = static_cast<int64_t>(k.batch) * k.seqlen;
    d.x = fill(tokens * k.heads * k.head_dim, 1.0f, 0.0f);
    if (k.softplus) {
        d.dt = fill(tokens * k.heads, 0.5f, -2.0f);        // around softplus's knee, as ssd_check.py
    } else {
        d.dt.resize(tokens * k.heads);
        for (float& e : d.dt) {
            e = uniform(gen) * 0.2f;
        }
    }
    d.A.resize(k.heads);
    for (float& e : d.A) {
        e = -(uniform(gen) * 15.0f + 1.0f);                  // mamba_ssm's A init range
    }
    d.A[0] = -0.05f;     // a slow head: states carry across every chunk boundary
    d.B = fill(tokens * k.groups * k.dstate, 1.0f / std::sqrt(static_cast<float>(k.dstate)), 0.0f);
    d.C = fill(tokens * k.groups * k.dstate, 1.0f, 0.0f);
    if (k.skip) {
        d.D = fill(k.heads, 1.0f, 0.0f);
        d.dt_bias = fill(k.heads, 0.5f, 0.0f);
    }
    if (k.initial_state) {
        d.h0 = fill(static_cast<int64_t>(k.batch) * k.heads * k.head_dim * k.dstate, 1.0f, 0.0f);
    }
    for (std::vector<float>* act : {&d.x, &d.dt, &d.B, &d.C}) {   // the activation type's values
        for (float& e : *act) {
            e = round_to_bits(e, g_operand_bits);
        }
    }
    return d;
}

// float64 sequential recurrence: dt = clamp(softplus(dt + bias)); h = exp(dt A) h + dt x B^T; y = h C + D x
void reference(Case const& k, Data const& d, std::vector<double>& y, std::vector<double>& state) {
    int const P = k.head_dim;
    int const N = k.dstate;
    y.assign(d.x.size(), 0.0);
    state.assign(static_cast<std::size_t>(k.batch) * k.heads * P * N, 0.0);
    for (int b = 0; b < k.batch; ++b) {
        for (int h = 0; h < k.heads; ++h) {
            int const g = h / (k.heads / k.groups);
            double* hs = state.data() + (static_cast<int64_t>(b) * k.heads + h) * P * N;
            for (int i = 0; i < P * N; ++i) {
                hs[i] = k.initial_state ? d.h0[(static_cast<int64_t>(b) * k.heads + h) * P * N + i] : 0.0;
            }
            for (int t = 0; t < k.seqlen; ++t) {
                int64_t const at = static_cast<int64_t>(b) * k.seqlen + t;
                double v = d.dt[at * k.heads + h] + (k.skip ? d.dt_bias[h] : 0.0);
                if (k.softplus) {
                    v = v > 20.0 ? v : std::log1p(std::exp(v));
                }
                v = std::fmin(std::fmax(v, k.dt_min), k.dt_max);
                double const decay = std::exp(v * d.A[h]);
                for (int p = 0; p < P; ++p) {
                    double const xv = d.x[(at * k.heads + h) * P + p];
                    double acc = 0.0;
                    for (int n = 0; n < N; ++n) {
                        double& e = hs[p * N + n];
                        e = decay * e + v * xv * d.B[(at * k.groups + g) * N + n];
                        acc += e * d.C[(at * k.groups + g) * N + n];
                    }
                    y[(at * k.heads + h) * P + p] = acc + (k.skip ? d.D[h] * xv : 0.0);
                }
            }
        }
    }
}

// The three launches of ssd_mma.cu on the CPU: the state pass, the carry (ssd_carry_walk.h, with
// the chunk count ssd_mma.cu gives it), the output pass.
template <typename Ctx>
void run_model(Case const& k, Data const& d, std::vector<float>& y, std::vector<float>& final_state) {
    mma::Problem<float> p{};
    std::vector<float> ws(mma::workspace_state_elems(k.batch, k.seqlen, k.heads, k.head_dim, k.dstate) +
        mma::workspace_decay_elems(k.batch, k.seqlen, k.heads), NAN);
    y.assign(d.x.size(), NAN);
    final_state.assign(static_cast<std::size_t>(k.batch) * k.heads * k.head_dim * k.dstate, NAN);
    p.x = d.x.data();
    p.dt = d.dt.data();
    p.A = d.A.data();
    p.B = d.B.data();
    p.C = d.C.data();
    p.D = k.skip ? d.D.data() : nullptr;
    p.dt_bias = k.skip ? d.dt_bias.data() : nullptr;
    p.initial_state = k.initial_state ? d.h0.data() : nullptr;
    p.y = y.data();
    p.chunk_state = ws.data();
    p.chunk_decay = ws.data() + mma::workspace_state_elems(k.batch, k.seqlen, k.heads, k.head_dim, k.dstate);
    p.batch = k.batch;
    p.seqlen = k.seqlen;
    p.heads = k.heads;
    p.head_dim = k.head_dim;
    p.groups = k.groups;
    p.dstate = k.dstate;
    p.dt_softplus = k.softplus;
    p.dt_min = k.dt_min;
    p.dt_max = k.dt_max;
    p.vector_loads = k.vector_loads;
    int const pp = mma::pad16(k.head_dim);
    int const np = mma::pad16(k.dstate);
    std::vector<float> smem_state(mma::state_pass_smem(pp, np, sizeof(float)) / sizeof(float), NAN);
    std::vector<float> smem_output(mma::output_pass_smem(pp, np, sizeof(float)) / sizeof(float), NAN);
    for (int b = 0; b < k.batch; ++b) {
        for (int h = 0; h < k.heads; ++h) {
            for (int c = 0; c < p.nchunks(); ++c) {
                run_block<Ctx>([&](Ctx& ctx) {
                    mma::state_pass(ctx, p, b, h, c, reinterpret_cast<unsigned char*>(smem_state.data()));
                });
            }
        }
    }
    int64_t const states = static_cast<int64_t>(k.batch) * k.heads * k.head_dim * k.dstate;
    for (int64_t i = 0; i < states; ++i) {    // ssd_carry_kernel's threads, as ssd_mma.cu launches it
        mq::ssd::ssd_carry_walk(i, p.initial_state, p.chunk_state, p.chunk_decay, k.heads, k.head_dim, k.dstate,
            mma::carry_count(p.nchunks()), final_state.data());
    }
    for (int b = 0; b < k.batch; ++b) {
        for (int h = 0; h < k.heads; ++h) {
            for (int c = 0; c < p.nchunks(); ++c) {
                for (int mt = 0; mt < mma::kTilesPerChunk; ++mt) {
                    run_block<Ctx>([&](Ctx& ctx) {
                        mma::output_pass(ctx, p, b, h, c, mt, reinterpret_cast<unsigned char*>(smem_output.data()));
                    });
                }
            }
        }
    }
}

// max |ours - ref| / max |ref| (the GPU checks' normwise error); NaN (an unwritten output) -> inf
template <typename A, typename B>
double normwise_error(std::vector<A> const& ours, std::vector<B> const& ref) {
    double worst = 0.0;
    double scale = 0.0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        double const diff = std::fabs(static_cast<double>(ours[i]) - static_cast<double>(ref[i]));
        worst = std::isnan(diff) ? INFINITY : std::fmax(worst, diff);
        scale = std::fmax(scale, std::fabs(static_cast<double>(ref[i])));
    }
    return worst / (scale > 0.0 ? scale : 1.0);
}

// The errors of the model against float64 with operands and outputs at `bits` of precision.
template <typename Ctx = OneThread>
std::pair<double, double> errors(Case const& k, unsigned seed, int bits) {
    g_operand_bits = bits;
    Data const d = make_data(k, seed);
    std::vector<double> y_ref;
    std::vector<double> state_ref;
    reference(k, d, y_ref, state_ref);
    std::vector<float> y;
    std::vector<float> state;
    run_model<Ctx>(k, d, y, state);
    g_operand_bits = 24;
    return {normwise_error(y, y_ref), normwise_error(state, state_ref)};
}

template <typename Ctx = OneThread>
void check_case(Case const& k, unsigned seed) {
    auto const [err_y, err_state] = errors<Ctx>(k, seed, 24);
    if (!(err_y < 1e-5) || !(err_state < 1e-5)) {
        std::fprintf(stderr, "  B=%d L=%d H=%d P=%d G=%d N=%d: err y %.3g, err state %.3g\n", k.batch, k.seqlen,
            k.heads, k.head_dim, k.groups, k.dstate, err_y, err_state);
    }
    CHECK(err_y < 1e-5);
    CHECK(err_state < 1e-5);
}

}  // namespace

TEST(ssd_mma_model_matches_the_float64_recurrence_at_mamba2_shapes) {
    // a mamba2-130m head (P 64, N 128) over a partial third chunk; several groups; an initial state
    check_case({1, 600, 2, 64, 1, 128, true}, 1);
    check_case({2, 512, 4, 64, 2, 64}, 2);     // whole chunks only
    Case unaligned{1, 600, 2, 64, 1, 128, true};
    unaligned.vector_loads = false;            // tensors not 16-byte aligned: one value a load
    check_case(unaligned, 1);
}

TEST(ssd_mma_model_pads_head_dim_and_dstate_and_handles_ragged_lengths) {
    check_case({2, 300, 4, 50, 2, 24, true}, 3);    // P, N not multiples of 16; 2 chunks, the second partial
    check_case({1, 1, 3, 8, 3, 5, true}, 4);        // one token
    check_case({3, 65, 2, 16, 1, 16}, 5);           // one full tile and one token of the next
    check_case({1, 257, 1, 33, 1, 128, true}, 6);   // one token into the second chunk
    check_case({2, 0, 3, 16, 1, 16, true}, 9);      // no token: final_state is the initial state
}

TEST(ssd_mma_16_bit_operands_stay_within_the_gpu_checks_tolerance) {
    // ssd_check.py holds the kernel to MMA_ULPS (2) x gpu_check's Y_TOLERANCE (float16 2^-10,
    // bfloat16 2^-7) for y and the state; the rounding of the operands alone, at mamba2 shapes
    // (measured here: about a third of one Y_TOLERANCE for y, a fifth for the state):
    struct Precision {
        int bits;
        double tolerance;
        char const* name;
    };
    for (Precision const& prec : {Precision{11, 2 * std::ldexp(1.0, -10), "float16"},
                                  Precision{8, 2 * std::ldexp(1.0, -7), "bfloat16"}}) {
        for (Case const& k : {Case{1, 600, 2, 64, 1, 128, true}, Case{2, 333, 8, 50, 2, 64, true}}) {
            auto const [err_y, err_state] = errors(k, 11, prec.bits);
            std::printf("  %s operands, L=%d P=%d N=%d: err y %.2e, err state %.2e (tolerance %.1e)\n", prec.name,
                k.seqlen, k.head_dim, k.dstate, err_y, err_state, prec.tolerance);
            CHECK(err_y <= prec.tolerance);
            CHECK(err_state <= prec.tolerance);
            CHECK(err_y > 1e-6);      // the rounding happened
        }
    }
}

TEST(ssd_mma_model_as_a_256_thread_block_with_8_warps) {
    // the GPU's thread and warp split: strided loops over 256 threads, tiles dealt to 8 warps, a real
    // barrier between phases (a missing one shows as a wrong or varying answer here). Few blocks:
    // 256 threads on 2 cores cost ~0.1 ms a barrier.
    check_case<GpuBlock>({1, 300, 1, 64, 1, 128, true}, 1);   // two chunks, the second partial
    Case padded{1, 130, 2, 50, 2, 24, true};                 // padded P and N, scalar x loads
    padded.vector_loads = false;
    check_case<GpuBlock>(padded, 3);
}

TEST(ssd_mma_model_applies_dt_limits_without_softplus_and_without_skip) {
    Case limited{2, 333, 8, 50, 2, 64, true};
    limited.dt_min = 0.01f;
    limited.dt_max = 0.2f;
    check_case(limited, 7);
    Case raw{3, 200, 6, 16, 2, 24};
    raw.skip = false;
    raw.softplus = false;
    raw.dt_min = -INFINITY;
    check_case(raw, 8);
}

TEST(ssd_mma_time_step_prefix_sums_cross_every_run) {
    // the 8 x 32 prefix sum inside chunk_time_steps against a running sum, at every chunk length
    mma::Problem<float> p{};
    int const seqlen = mma::kChunk;
    std::vector<float> dt(seqlen);
    for (int i = 0; i < seqlen; ++i) {
        dt[i] = 0.01f * static_cast<float>(i % 7) + 0.001f;
    }
    float const A = -1.5f;
    p.dt = dt.data();
    p.A = &A;
    p.seqlen = seqlen;
    p.heads = 1;
    p.dt_softplus = false;
    p.dt_min = -INFINITY;
    p.dt_max = INFINITY;
    for (int count : {1, 31, 32, 33, 100, 255, 256}) {
        std::vector<float> dts(mma::kChunk);
        std::vector<float> cum2(mma::kChunk);
        run_block<GpuBlock>([&](GpuBlock& ctx) { mma::chunk_time_steps(ctx, p, 0, 0, 0, count, dts.data(), cum2.data()); });
        double run = 0.0;
        for (int i = 0; i < mma::kChunk; ++i) {
            run += (i < count ? dt[i] : 0.0) * A * mq::scan::kLog2e;
            CHECK(std::fabs(cum2[i] - run) <= 1e-5 * (1.0 + std::fabs(run)));
        }
    }
}
