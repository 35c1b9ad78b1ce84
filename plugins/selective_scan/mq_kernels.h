/*
 * mq_kernels.h: the plain C API of libmq_kernels (selective scan, decode step, SSD scan, fast Hadamard).
 *
 * Rules shared by every entry point:
 * - Pointers are raw device pointers (e.g. torch.Tensor.data_ptr()), contiguous, row-major.
 * - Nothing here allocates device or host memory, and nothing synchronizes: work is enqueued on
 *   `stream` (NULL = the legacy default stream) and the call returns at once.
 * - Every call returns an mq_status (0 = success); mq_status_string() names it. Arguments are
 *   checked before anything is launched; an error launches nothing.
 * - Activations x, delta, B, C, z, y share one dtype (mq_dtype); A, D, delta_bias, gate_scale and
 *   every SSM state are float32. All arithmetic is float32.
 *
 * Usable from C, C++ and ctypes; no CUDA header is needed (the stream is the driver's CUstream_st*,
 * which is what cudaStream_t is).
 */
#ifndef MQ_KERNELS_H
#define MQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define MQ_API
#else
#define MQ_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;
typedef struct CUstream_st* mq_stream_t; /* == cudaStream_t */

typedef enum mq_status {
    MQ_SUCCESS = 0,
    MQ_ERROR_INVALID_ARGUMENT = 1, /* null pointer, negative size, inconsistent arguments */
    MQ_ERROR_UNSUPPORTED = 2,      /* valid request outside what the kernels implement (e.g. N > 64) */
    MQ_ERROR_WORKSPACE = 3,        /* workspace missing, too small or misaligned */
    MQ_ERROR_CUDA = 4              /* a kernel launch failed (cudaGetLastError) */
} mq_status;

typedef enum mq_dtype {
    MQ_FLOAT32 = 0,
    MQ_FLOAT16 = 1,
    MQ_BFLOAT16 = 2
} mq_dtype;

/* Largest d_state (N) the selective-scan kernels accept. */
#define MQ_SELECTIVE_SCAN_MAX_DSTATE 64
/* Largest Hadamard transform size n (one row is kept in shared memory). */
#define MQ_HADAMARD_MAX_SIZE 16384

/*
 * Selective scan over token-major inputs (the SelectiveScan op contract, plugins/selective_scan/README.md):
 *   dt_t = softplus(delta_t + delta_bias)          (or delta_t + delta_bias when delta_softplus == 0)
 *   h_t  = exp(dt_t * A) * h_{t-1} + dt_t * x_t * B_t,   h_{-1} = initial_state (or 0)
 *   y_t  = <h_t, C_t> + D * x_t;   y_t *= z_t * sigmoid(gate_scale * z_t)   (when z != NULL)
 * With reverse != 0 the recurrence runs from the last token to the first. final_state is the state
 * after the last token processed (after token 0 when reverse). Shapes:
 *   x, delta, z, y: [batch, seqlen, dim]   B, C: [batch, seqlen, dstate]   A: [dim, dstate]
 *   D, delta_bias, gate_scale: [dim]       initial_state, final_state: [batch, dim, dstate]
 * Optional (may be NULL): D, delta_bias, z, gate_scale (needs z; NULL means 1), initial_state,
 * final_state. y may not alias any input. final_state may alias initial_state in
 * mq_selective_scan_sequential, mq_selective_scan_onepass and mq_selective_state_update (each
 * thread, or each block for its channels, reads its states before writing them);
 * mq_selective_scan refuses overlapping states with MQ_ERROR_INVALID_ARGUMENT, because its chunks
 * run concurrently and the last one writes final_state while the first may still be reading
 * initial_state.
 * seqlen may be 0 (then final_state = initial_state or zeros). 1 <= dstate <= MQ_SELECTIVE_SCAN_MAX_DSTATE,
 * batch <= 65535.
 */
typedef struct mq_selective_scan_args {
    mq_dtype dtype;
    int32_t batch;
    int32_t seqlen;
    int32_t dim;
    int32_t dstate;
    int32_t delta_softplus; /* 0 or 1 */
    int32_t reverse;        /* 0 or 1 */
    const void* x;
    const void* delta;
    const float* A;
    const void* B;
    const void* C;
    const float* D;
    const float* delta_bias;
    const void* z;
    const float* gate_scale;
    const float* initial_state;
    void* y;
    float* final_state;
    void* workspace;        /* device memory, 16-byte aligned, see mq_selective_scan_workspace_size */
    size_t workspace_bytes; /* bytes available at workspace */
} mq_selective_scan_args;

/* Exact workspace the chunked scan needs for this shape (0 when the sequence is not split). */
MQ_API size_t mq_selective_scan_workspace_size(int32_t batch, int32_t seqlen, int32_t dim, int32_t dstate);

/* An upper bound of mq_selective_scan_workspace_size over every shape with batch <= max_batch,
 * seqlen <= max_seqlen, dim <= max_dim (what a TensorRT plugin reserves for a whole profile). */
MQ_API size_t mq_selective_scan_workspace_bound(int32_t max_batch, int32_t max_seqlen, int32_t max_dim,
    int32_t dstate);

/* Chunked (sequence-parallel) scan: fills the GPU even at batch 1. */
MQ_API mq_status mq_selective_scan(const mq_selective_scan_args* args, mq_stream_t stream);

/* Baseline: one thread per channel walks the whole sequence (the TensorRT-LLM mapping). Same
 * contract; needs no workspace. Kept for benchmarks and as a cross-check. */
MQ_API mq_status mq_selective_scan_sequential(const mq_selective_scan_args* args, mq_stream_t stream);

/* One-pass scan: one launch, one exponential per (token, channel, state), each input read once,
 * sequence-parallel inside a thread block (plugins/selective_scan/README.md, "One-pass kernel").
 * Same contract; needs no workspace (workspace / workspace_bytes are ignored); final_state may
 * alias initial_state. Any dim, dstate <= MQ_SELECTIVE_SCAN_MAX_DSTATE; 16-byte row loads when
 * dim % 4 == 0 and x, delta, z, y are aligned to 4 elements, element loads otherwise.
 * MQ_ERROR_UNSUPPORTED when seqlen * max(dim, dstate) > INT32_MAX (32-bit offsets in a batch row). */
MQ_API mq_status mq_selective_scan_onepass(const mq_selective_scan_args* args, mq_stream_t stream);

/*
 * Decode step (one token, seqlen == 1): state_in -> state_out, which may be the same buffer
 * (in-place update). x, delta, z, y: [batch, dim]; B, C: [batch, dstate]; states [batch, dim, dstate].
 * Uses args fields as for mq_selective_scan with seqlen = 1, initial_state = state in,
 * final_state = state out; args->reverse is ignored and no workspace is needed.
 */
MQ_API mq_status mq_selective_state_update(const mq_selective_scan_args* args, mq_stream_t stream);

/*
 * SSD scan, Mamba-2's (the SSDScan op contract, plugins/ssd_scan/README.md), per head h of H:
 *   dt_t = clamp(softplus(dt_t + dt_bias), dt_min, dt_max)   (no softplus when dt_softplus == 0)
 *   h_t  = exp(dt_t * A) * h_{t-1} + (dt_t * x_t) B_t^T       h_t [P, N], h_{-1} = initial_state (or 0)
 *   y_t  = h_t C_t + D * x_t
 * with A, D, dt_bias one scalar per head and B, C shared by the H / n_groups consecutive heads of a
 * group (head h reads group h / (H / n_groups)). Token-major shapes:
 *   x, y: [batch, seqlen, heads * head_dim]   dt: [batch, seqlen, heads]
 *   B, C: [batch, seqlen, n_groups * dstate]  A, D, dt_bias: [heads]
 *   initial_state, final_state: [batch, heads, head_dim, dstate]
 * Optional (may be NULL): D, dt_bias, initial_state, final_state. x, dt, B, C, y share `dtype`.
 * seqlen may be 0; 1 <= dstate <= MQ_SSD_SCAN_MAX_DSTATE; heads % n_groups == 0; dt_min <= dt_max.
 * The clamp always applies: (0, INFINITY) changes nothing after a softplus; without one, pass
 * (-INFINITY, INFINITY) for no limit. final_state may equal initial_state (the same buffer, in
 * place) in mq_ssd_scan_sequential only; any other overlap of the two is refused.
 */
#define MQ_SSD_SCAN_MAX_DSTATE 256

typedef struct mq_ssd_scan_args {
    mq_dtype dtype;
    int32_t batch;
    int32_t seqlen;
    int32_t heads;
    int32_t head_dim;
    int32_t n_groups;
    int32_t dstate;
    int32_t dt_softplus; /* 0 or 1 */
    float dt_min;
    float dt_max;
    const void* x;
    const void* dt;
    const float* A;
    const void* B;
    const void* C;
    const float* D;
    const float* dt_bias;
    const float* initial_state;
    void* y;
    float* final_state;
    void* workspace;        /* device memory, 16-byte aligned, see mq_ssd_scan_workspace_size */
    size_t workspace_bytes; /* bytes available at workspace */
} mq_ssd_scan_args;

/* Exact workspace mq_ssd_scan needs for this shape (0 when the sequence is not split). */
MQ_API size_t mq_ssd_scan_workspace_size(int32_t batch, int32_t seqlen, int32_t heads, int32_t head_dim,
    int32_t dstate);

/* An upper bound of mq_ssd_scan_workspace_size over batch <= max_batch, seqlen <= max_seqlen. */
MQ_API size_t mq_ssd_scan_workspace_bound(int32_t max_batch, int32_t max_seqlen, int32_t heads, int32_t head_dim,
    int32_t dstate);

/* Chunked (sequence-parallel) SSD scan: chunk end states, a carry across chunks, then each chunk
 * rescans from its carried-in state. Refuses overlapping initial/final states (whatever the shape). */
MQ_API mq_status mq_ssd_scan(const mq_ssd_scan_args* args, mq_stream_t stream);

/* Baseline and decode: one chunk, each block walks the whole sequence; no workspace; final_state
 * may be initial_state (each thread reads its states before writing them); a partial overlap is
 * refused. */
MQ_API mq_status mq_ssd_scan_sequential(const mq_ssd_scan_args* args, mq_stream_t stream);

/* Tensor-core SSD scan (the chunked "state space dual" form: 256-token chunks, 64-token matmul
 * tiles, WMMA with float32 accumulation; plugins/ssd_scan/README.md). float16 / bfloat16 only,
 * head_dim <= 64, dstate <= 128, sm_80 or later: MQ_ERROR_UNSUPPORTED otherwise. The matmul
 * operands (the scaled B, the carried state, the masked C B^T) are rounded to the activation type,
 * as mamba_ssm's chunked kernels do. Refuses overlapping initial/final states and y overlapping x.
 * An empty problem (batch, heads or head_dim 0) succeeds before the support checks, as in
 * mq_ssd_scan. Workspace: mq_ssd_scan_mma_workspace_size (4 bytes per state element per 256
 * tokens, 0 when unsupported). */
MQ_API size_t mq_ssd_scan_mma_workspace_size(int32_t batch, int32_t seqlen, int32_t heads, int32_t head_dim,
    int32_t dstate);
MQ_API mq_status mq_ssd_scan_mma(const mq_ssd_scan_args* args, mq_stream_t stream);

/*
 * Fast Walsh-Hadamard transform of `rows` vectors of length n:
 *   y[r, :] = x[r, :] * diag(signs) * H_n,   H_n = kron(H_m, Sylvester_{n/m}) / sqrt(n)
 * with H_m the base matrix of order m from plugins/hadamard/hadamard_bases.txt and m the largest
 * of {40, 28, 20, 12, 1} for which n/m is a power of two. signs: [n] float32 or NULL (all +1).
 * x and y: [rows, n] of `dtype`; y may equal x (in place). n <= MQ_HADAMARD_MAX_SIZE.
 */
MQ_API mq_status mq_hadamard_transform(const void* x, const float* signs, void* y, int64_t rows, int32_t n,
    mq_dtype dtype, mq_stream_t stream);

/*
 * The same transform with the INT8 quantization of its result in the epilogue (HadamardQuantize):
 *   y[r, j] = saturate_int8(round_half_even(v[r, j] / s)),  v = float32(x[r, :] * diag(signs) * H_n),
 * s = float32(*scale), one element of `dtype` in device memory (the graph's activation scale), i.e.
 * ONNX QuantizeLinear with zero point 0 applied to the float32 transform (no rounding to `dtype`
 * in between). y: [rows, n] int8, never x.
 */
MQ_API mq_status mq_hadamard_quantize(const void* x, const float* signs, const void* scale, int8_t* y, int64_t rows,
    int32_t n, mq_dtype dtype, mq_stream_t stream);

/* Base order m used for size n, or 0 when n is not supported. */
MQ_API int32_t mq_hadamard_base_order(int32_t n);

/* Static, NUL-terminated description of a status code. */
MQ_API const char* mq_status_string(mq_status status);

/* Version of this library, e.g. "0.1.0". */
MQ_API const char* mq_kernels_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MQ_KERNELS_H */
