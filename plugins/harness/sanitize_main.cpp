// mq_gpu_sanitize: every kernel entry point and the three plugins (through the harness) on small
// problems, for compute-sanitizer (memcheck: out-of-bounds and misaligned accesses; racecheck:
// shared-memory hazards; initcheck: reads of memory nothing wrote). Numerics are checked
// elsewhere (scripts/gpu_verify); this program only needs every launch to be clean.
//
//   compute-sanitizer --tool memcheck --error-exitcode 1 build/plugins/mq_gpu_sanitize
//
// Also exercises the plugins on garbage inputs (random bytes: NaN, Inf, huge values), which must
// neither crash nor write outside their outputs. Exit status 0 when every call returned success.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "plugin_harness.h"
#include "selective_scan/mq_kernels.h"

namespace {

int gFailures = 0;

void expect(bool ok, char const* what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s\n", what);
        ++gFailures;
    }
}

bool cuda_ok(cudaError_t e, char const* what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(e));
        ++gFailures;
        return false;
    }
    return true;
}

uint64_t gState = 0x9E3779B97F4A7C15ull;
uint32_t next_u32() {
    gState ^= gState << 13;
    gState ^= gState >> 7;
    gState ^= gState << 17;
    return static_cast<uint32_t>(gState >> 32);
}
float uniform(float lo, float hi) { return lo + (hi - lo) * (static_cast<float>(next_u32() >> 8) / 16777216.0F); }

uint16_t to_half_bits(float f) {  // round-to-nearest is irrelevant here: any finite value will do
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint32_t const sign = (u >> 16) & 0x8000u;
    int32_t const exp = static_cast<int32_t>((u >> 23) & 0xFF) - 127 + 15;
    uint32_t const mant = (u >> 13) & 0x3FFu;
    if (exp <= 0) return static_cast<uint16_t>(sign);
    if (exp >= 31) return static_cast<uint16_t>(sign | 0x7BFFu);
    return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | mant);
}
uint16_t to_bf16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return static_cast<uint16_t>(u >> 16);
}

size_t dtype_size(mq_dtype d) { return d == MQ_FLOAT32 ? 4 : 2; }

// A device buffer of `count` elements, filled from the host.
struct Buffer {
    void* ptr{nullptr};
    size_t bytes{0};
    Buffer() = default;
    Buffer(Buffer const&) = delete;
    Buffer& operator=(Buffer const&) = delete;
    ~Buffer() { cudaFree(ptr); }
    void alloc(size_t n) {
        bytes = n;
        cuda_ok(cudaMalloc(&ptr, n > 0 ? n : 16), "cudaMalloc");
    }
    void fill_activations(size_t count, mq_dtype d, float lo, float hi) {
        alloc(count * dtype_size(d));
        std::vector<uint8_t> host(bytes);
        for (size_t i = 0; i < count; ++i) {
            float const v = uniform(lo, hi);
            if (d == MQ_FLOAT32) {
                std::memcpy(&host[i * 4], &v, 4);
            } else {
                uint16_t const h = d == MQ_FLOAT16 ? to_half_bits(v) : to_bf16_bits(v);
                std::memcpy(&host[i * 2], &h, 2);
            }
        }
        cuda_ok(cudaMemcpy(ptr, host.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    }
    void fill_floats(size_t count, float lo, float hi) { fill_activations(count, MQ_FLOAT32, lo, hi); }
    void fill_garbage(size_t n) {
        alloc(n);
        std::vector<uint8_t> host(n);
        for (auto& b : host) b = static_cast<uint8_t>(next_u32());
        cuda_ok(cudaMemcpy(ptr, host.data(), n, cudaMemcpyHostToDevice), "cudaMemcpy");
    }
};

struct ScanCase {
    mq_dtype dtype;
    int batch, seqlen, dim, dstate;
    int reverse;
    bool gate, initial_state;
};

// The kernels through the C API: chunked, sequential, one-pass (also in place) and (for L = 1) the
// in-place decode step.
void run_kernels(ScanCase const& c, cudaStream_t stream) {
    size_t const bld = static_cast<size_t>(c.batch) * c.seqlen * c.dim;
    size_t const bln = static_cast<size_t>(c.batch) * c.seqlen * c.dstate;
    size_t const bdn = static_cast<size_t>(c.batch) * c.dim * c.dstate;
    Buffer x, delta, A, B, C, D, bias, z, s, h0, y, state, ws;
    x.fill_activations(bld, c.dtype, -1, 1);
    delta.fill_activations(bld, c.dtype, -2, 1);
    A.fill_floats(static_cast<size_t>(c.dim) * c.dstate, -8, -0.5F);
    B.fill_activations(bln, c.dtype, -1, 1);
    C.fill_activations(bln, c.dtype, -1, 1);
    D.fill_floats(c.dim, 0.5F, 1.5F);
    bias.fill_floats(c.dim, -4, -1);
    z.fill_activations(bld, c.dtype, -2, 2);
    s.fill_floats(c.dim, 0.5F, 1.5F);
    h0.fill_floats(bdn, -1, 1);
    y.alloc(bld * dtype_size(c.dtype));
    state.alloc(bdn * 4);
    ws.alloc(mq_selective_scan_workspace_size(c.batch, c.seqlen, c.dim, c.dstate));
    mq_selective_scan_args a{};
    a.dtype = c.dtype;
    a.batch = c.batch;
    a.seqlen = c.seqlen;
    a.dim = c.dim;
    a.dstate = c.dstate;
    a.delta_softplus = 1;
    a.reverse = c.reverse;
    a.x = x.ptr;
    a.delta = delta.ptr;
    a.A = static_cast<float const*>(A.ptr);
    a.B = B.ptr;
    a.C = C.ptr;
    a.D = static_cast<float const*>(D.ptr);
    a.delta_bias = static_cast<float const*>(bias.ptr);
    a.z = c.gate ? z.ptr : nullptr;
    a.gate_scale = c.gate ? static_cast<float const*>(s.ptr) : nullptr;
    a.initial_state = c.initial_state ? static_cast<float const*>(h0.ptr) : nullptr;
    a.y = y.ptr;
    a.final_state = static_cast<float*>(state.ptr);
    a.workspace = ws.ptr;
    a.workspace_bytes = ws.bytes;
    expect(mq_selective_scan(&a, stream) == MQ_SUCCESS, "mq_selective_scan");
    expect(mq_selective_scan_sequential(&a, stream) == MQ_SUCCESS, "mq_selective_scan_sequential");
    expect(mq_selective_scan_onepass(&a, stream) == MQ_SUCCESS, "mq_selective_scan_onepass");
    if (c.initial_state) {  // the one-pass scan in place: final_state aliasing initial_state
        cuda_ok(cudaMemcpyAsync(state.ptr, h0.ptr, bdn * 4, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
        mq_selective_scan_args in_place = a;
        in_place.initial_state = static_cast<float const*>(state.ptr);
        expect(mq_selective_scan_onepass(&in_place, stream) == MQ_SUCCESS, "mq_selective_scan_onepass in place");
    }
    if (c.seqlen == 1) {
        a.initial_state = static_cast<float const*>(state.ptr);  // in place, as decode graphs run it
        expect(mq_selective_state_update(&a, stream) == MQ_SUCCESS, "mq_selective_state_update");
    }
    cuda_ok(cudaStreamSynchronize(stream), "scan kernels");
}

void run_hadamard(int n, mq_dtype d, cudaStream_t stream) {
    int64_t const rows = 37;
    Buffer x, signs, y;
    x.fill_activations(static_cast<size_t>(rows) * n, d, -1, 1);
    signs.fill_floats(n, -1, 1);
    y.alloc(static_cast<size_t>(rows) * n * dtype_size(d));
    expect(mq_hadamard_transform(x.ptr, static_cast<float const*>(signs.ptr), y.ptr, rows, n, d, stream) == MQ_SUCCESS,
        "mq_hadamard_transform");
    expect(mq_hadamard_transform(x.ptr, static_cast<float const*>(signs.ptr), x.ptr, rows, n, d, stream) == MQ_SUCCESS,
        "mq_hadamard_transform in place");
    cuda_ok(cudaStreamSynchronize(stream), "hadamard");
}

// The plugins through the harness, on random bytes: must return cleanly and stay in bounds.
void run_plugins_on_garbage(ScanCase const& c, cudaStream_t stream) {
    mqh_scan_problem p{c.dtype, 1, c.reverse, c.batch, c.seqlen, c.dim, c.dstate, c.batch, c.seqlen};
    int64_t const ws_bytes = mqh_scan_build(&p);
    expect(ws_bytes >= 0, mqh_error());
    size_t const act = dtype_size(c.dtype);
    size_t const bld = static_cast<size_t>(c.batch) * c.seqlen * c.dim;
    size_t const bln = static_cast<size_t>(c.batch) * c.seqlen * c.dstate;
    size_t const sizes[9] = {bld * act, bld * act, 4u * c.dim * c.dstate, bln * act, bln * act, 4u * c.dim,
        4u * c.dim, bld * act, 4u * c.dim};
    Buffer in[9], y, state, ws;
    void const* inputs[9];
    for (int i = 0; i < 9; ++i) {
        in[i].fill_garbage(sizes[i]);
        inputs[i] = in[i].ptr;
    }
    y.fill_garbage(bld * act);
    state.fill_garbage(static_cast<size_t>(c.batch) * c.dim * c.dstate * 4);
    ws.fill_garbage(static_cast<size_t>(ws_bytes > 0 ? ws_bytes : 0));
    void* outputs[2] = {y.ptr, state.ptr};
    expect(mqh_scan_run(&p, inputs, outputs, ws.ptr, stream) == 0, mqh_error());
    cuda_ok(cudaStreamSynchronize(stream), "SelectiveScan plugin on garbage");

    int64_t const dims[3] = {2, 5, 1536};
    Buffer hx, hs, hy;
    hx.fill_garbage(2 * 5 * 1536 * act);
    hs.fill_garbage(1536 * 4);
    hy.fill_garbage(2 * 5 * 1536 * act);
    expect(mqh_hadamard_run(c.dtype, 3, dims, hx.ptr, static_cast<float const*>(hs.ptr), hy.ptr, stream) == 0,
        mqh_error());
    cuda_ok(cudaStreamSynchronize(stream), "HadamardTransform plugin on garbage");
}

struct SsdCase {
    mq_dtype dtype;
    int batch, seqlen, heads, head_dim, groups, dstate;
    bool initial_state;
};

// The SSD kernels through the C API: chunked (several chunks when long), sequential, the tensor-core
// scan where it applies, and the sequential scan in place (final_state == initial_state, as a decode
// step runs it).
void run_ssd_kernels(SsdCase const& c, cudaStream_t stream) {
    size_t const blp = static_cast<size_t>(c.batch) * c.seqlen * c.heads * c.head_dim;
    size_t const blh = static_cast<size_t>(c.batch) * c.seqlen * c.heads;
    size_t const bln = static_cast<size_t>(c.batch) * c.seqlen * c.groups * c.dstate;
    size_t const states = static_cast<size_t>(c.batch) * c.heads * c.head_dim * c.dstate;
    Buffer x, dt, A, B, C, D, bias, h0, y, state, ws;
    x.fill_activations(blp, c.dtype, -1, 1);
    dt.fill_activations(blh, c.dtype, -3, 0);
    A.fill_floats(c.heads, -8, -0.5F);
    B.fill_activations(bln, c.dtype, -1, 1);
    C.fill_activations(bln, c.dtype, -1, 1);
    D.fill_floats(c.heads, -1, 1);
    bias.fill_floats(c.heads, -1, 1);
    if (c.initial_state) {
        h0.fill_floats(states, -1, 1);
    }
    y.alloc(blp * dtype_size(c.dtype));
    state.alloc(states * 4);
    size_t const need = mq_ssd_scan_workspace_size(c.batch, c.seqlen, c.heads, c.head_dim, c.dstate);
    ws.alloc(need);
    mq_ssd_scan_args a{};
    a.dtype = c.dtype;
    a.batch = c.batch;
    a.seqlen = c.seqlen;
    a.heads = c.heads;
    a.head_dim = c.head_dim;
    a.n_groups = c.groups;
    a.dstate = c.dstate;
    a.dt_softplus = 1;
    a.dt_min = 0.0F;
    a.dt_max = 1e30F;
    a.x = x.ptr;
    a.dt = dt.ptr;
    a.A = static_cast<float const*>(A.ptr);
    a.B = B.ptr;
    a.C = C.ptr;
    a.D = static_cast<float const*>(D.ptr);
    a.dt_bias = static_cast<float const*>(bias.ptr);
    a.initial_state = c.initial_state ? static_cast<float const*>(h0.ptr) : nullptr;
    a.y = y.ptr;
    a.final_state = static_cast<float*>(state.ptr);
    a.workspace = ws.ptr;
    a.workspace_bytes = need;
    expect(mq_ssd_scan(&a, stream) == MQ_SUCCESS, "mq_ssd_scan");
    expect(mq_ssd_scan_sequential(&a, stream) == MQ_SUCCESS, "mq_ssd_scan_sequential");
    size_t const mma_need = mq_ssd_scan_mma_workspace_size(c.batch, c.seqlen, c.heads, c.head_dim, c.dstate);
    if (mma_need > 0 && c.dtype != MQ_FLOAT32) {   // the tensor-core scan: 16-bit, P <= 64, N <= 128
        Buffer mma_ws;
        mma_ws.alloc(mma_need);
        a.workspace = mma_ws.ptr;
        a.workspace_bytes = mma_need;
        expect(mq_ssd_scan_mma(&a, stream) == MQ_SUCCESS, "mq_ssd_scan_mma");
        cuda_ok(cudaStreamSynchronize(stream), "SSD tensor-core kernels");
        a.workspace = ws.ptr;
        a.workspace_bytes = need;
    }
    if (c.initial_state) {
        cuda_ok(cudaMemcpyAsync(state.ptr, h0.ptr, states * 4, cudaMemcpyDeviceToDevice, stream), "copy state");
        a.initial_state = static_cast<float const*>(state.ptr);
        expect(mq_ssd_scan_sequential(&a, stream) == MQ_SUCCESS, "mq_ssd_scan_sequential in place");
    }
    cuda_ok(cudaStreamSynchronize(stream), "SSD kernels");
}

// The SSDScan plugin through the harness, on random bytes: clean return, in bounds.
void run_ssd_plugin_on_garbage(SsdCase const& c, cudaStream_t stream) {
    mqh_ssd_problem p{c.dtype, c.head_dim, c.groups, 1, c.batch, c.seqlen, c.heads, c.dstate, c.batch, c.seqlen,
        0.0, 1e30};
    int64_t const ws_bytes = mqh_ssd_build(&p);
    expect(ws_bytes >= 0, mqh_error());
    size_t const act = dtype_size(c.dtype);
    size_t const bl = static_cast<size_t>(c.batch) * c.seqlen;
    size_t const sizes[7] = {bl * c.heads * c.head_dim * act, bl * c.heads * act, 4u * c.heads,
        bl * c.groups * c.dstate * act, bl * c.groups * c.dstate * act, 4u * c.heads, 4u * c.heads};
    Buffer in[7], y, state, ws;
    void const* inputs[7];
    for (int i = 0; i < 7; ++i) {
        in[i].fill_garbage(sizes[i]);
        inputs[i] = in[i].ptr;
    }
    y.fill_garbage(sizes[0]);
    state.fill_garbage(static_cast<size_t>(c.batch) * c.heads * c.head_dim * c.dstate * 4);
    ws.fill_garbage(static_cast<size_t>(ws_bytes > 0 ? ws_bytes : 0));
    void* outputs[2] = {y.ptr, state.ptr};
    expect(mqh_ssd_run(&p, inputs, outputs, ws.ptr, stream) == 0, mqh_error());
    cuda_ok(cudaStreamSynchronize(stream), "SSDScan plugin on garbage");
}

}  // namespace

int main() {
    cudaStream_t stream = nullptr;
    if (!cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate")) {
        return 2;
    }
    ScanCase const cases[] = {
        {MQ_FLOAT16, 1, 1024, 256, 16, 0, true, true},    // multi-chunk, carried initial state
        {MQ_BFLOAT16, 2, 700, 130, 16, 1, true, false},   // reverse, D not a multiple of 128, ragged tail
        {MQ_FLOAT32, 1, 513, 96, 64, 0, true, true},      // N = 64: four threads per channel
        {MQ_FLOAT32, 3, 77, 40, 5, 1, false, false},      // N = 5 padded, no gate
        {MQ_FLOAT16, 4, 1, 300, 16, 0, true, true},       // decode
        {MQ_BFLOAT16, 1, 1100, 64, 32, 1, true, true},    // one-pass: three chunks, reverse, idle warps in the last
    };
    for (ScanCase const& c : cases) {
        run_kernels(c, stream);
    }
    for (int n : {12, 20, 28, 40, 64, 1536, 2560, 5120}) {
        run_hadamard(n, MQ_FLOAT16, stream);
    }
    run_hadamard(768, MQ_BFLOAT16, stream);
    run_hadamard(1280, MQ_FLOAT32, stream);
    expect(mqh_self_test() == 0, "harness negative checks");
    run_plugins_on_garbage(cases[0], stream);
    run_plugins_on_garbage(cases[1], stream);
    SsdCase const ssd_cases[] = {
        {MQ_FLOAT16, 1, 1500, 4, 64, 1, 128, true},   // several chunks, carried initial state
        {MQ_BFLOAT16, 2, 70, 6, 50, 3, 5, false},     // rows past head_dim, N = 5 (one state per lane)
        {MQ_FLOAT32, 3, 1, 8, 8, 2, 256, true},       // one token (decode), N = 256
    };
    for (SsdCase const& c : ssd_cases) {
        run_ssd_kernels(c, stream);
    }
    expect(mqh_ssd_self_test() == 0, "harness SSDScan negative checks");
    run_ssd_plugin_on_garbage(ssd_cases[0], stream);
    cudaStreamDestroy(stream);
    std::printf("mq_gpu_sanitize: %s (%d failures)\n", gFailures == 0 ? "ok" : "FAILED", gFailures);
    return gFailures == 0 ? 0 : 1;
}
