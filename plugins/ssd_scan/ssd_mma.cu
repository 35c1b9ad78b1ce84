// The tensor-core SSD scan on the GPU: ssd_mma_body.h's passes with WMMA fragments (16x16x16,
// float32 accumulation) over 8 warps, and the selective scan's carry kernel between them. Three
// launches: the chunk states, the carry (ssd_carry.cu), the output tiles.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <mma.h>

#include <atomic>
#include <cstdint>

#include "activation_convert.cuh"
#include "mq_kernels.h"
#include "ssd_mma_body.h"
#include "ssd_scan_launch.h"

namespace mq::ssd::mma {
namespace {

namespace wmma = nvcuda::wmma;

template <typename T>
struct DeviceCtx {
    using Op = T;
    static constexpr int kThreads = mma::kThreads;
    static constexpr int kWarps = kThreads / 32;
    using Acc = wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float>;
    using FragARow = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::row_major>;
    using FragACol = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::col_major>;
    using FragBRow = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::row_major>;
    using FragBCol = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::col_major>;

    int tid;
    int warp;

    __device__ void sync() const { __syncthreads(); }
    __device__ static float load(T const* p) { return scan::Convert<T>::load(p); }
    __device__ static void store_act(T* p, float v) { scan::Convert<T>::store(p, v); }
    __device__ static T to_op(float v);
    __device__ static float from_op(T v);
    // 8 activations (16 bytes) into 8 operands, times `scale` when scaled (rounded back to T)
    __device__ static void load8(T* dst, T const* src, float scale, bool scaled) {
        uint4 raw = __ldg(reinterpret_cast<uint4 const*>(src));
        if (scaled) {
            T* v = reinterpret_cast<T*>(&raw);
            for (int k = 0; k < kVector; ++k) {
                v[k] = to_op(from_op(v[k]) * scale);
            }
        }
        *reinterpret_cast<uint4*>(dst) = raw;
    }
    __device__ static void zero8(T* dst) { *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u); }
    __device__ static void fill(Acc& a, float v) { wmma::fill_fragment(a, v); }
    template <typename Frag>
    __device__ static void load(Frag& f, T const* p, int ld) { wmma::load_matrix_sync(f, p, ld); }
    template <typename FA, typename FB>
    __device__ static void mma(Acc& d, FA const& a, FB const& b) { wmma::mma_sync(d, a, b, d); }
    __device__ static void store(float* p, Acc const& a, int ld) { wmma::store_matrix_sync(p, a, ld, wmma::mem_row_major); }
    __device__ static void load_acc(Acc& a, float const* p, int ld) { wmma::load_matrix_sync(a, p, ld, wmma::mem_row_major); }
};

template <>
__device__ __half DeviceCtx<__half>::to_op(float v) { return __float2half_rn(v); }
template <>
__device__ float DeviceCtx<__half>::from_op(__half v) { return __half2float(v); }
template <>
__device__ __nv_bfloat16 DeviceCtx<__nv_bfloat16>::to_op(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ float DeviceCtx<__nv_bfloat16>::from_op(__nv_bfloat16 v) { return __bfloat162float(v); }

// grid (chunks, heads, batch)
template <typename T>
__global__ void __launch_bounds__(kThreads) ssd_mma_state_kernel(Problem<T> p) {
    extern __shared__ __align__(128) unsigned char smem[];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    DeviceCtx<T> ctx{static_cast<int>(threadIdx.x), static_cast<int>(threadIdx.x) / 32};
    state_pass(ctx, p, static_cast<int>(blockIdx.z), static_cast<int>(blockIdx.y), static_cast<int>(blockIdx.x), smem);
#else
    __trap();   // prepare_device refuses builds below compute_80 (no bfloat16 WMMA), the API devices below it
#endif
}

// grid (chunks * tiles per chunk, heads, batch)
template <typename T>
__global__ void __launch_bounds__(kThreads) ssd_mma_output_kernel(Problem<T> p) {
    extern __shared__ __align__(128) unsigned char smem[];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    DeviceCtx<T> ctx{static_cast<int>(threadIdx.x), static_cast<int>(threadIdx.x) / 32};
    int const c = static_cast<int>(blockIdx.x) / kTilesPerChunk;
    int const mt = static_cast<int>(blockIdx.x) % kTilesPerChunk;
    output_pass(ctx, p, static_cast<int>(blockIdx.z), static_cast<int>(blockIdx.y), c, mt, smem);
#else
    __trap();
#endif
}

template <typename T>
mq_status launch(mq_ssd_scan_args const& a, cudaStream_t stream) {
    Problem<T> p{};
    copy_ssd_operands<T>(a, p);
    auto const aligned = [](void const* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; };
    p.vector_loads = aligned(a.x) && aligned(a.B) && aligned(a.C);
    p.chunk_state = static_cast<float*>(a.workspace);
    p.chunk_decay = p.chunk_state + workspace_state_elems(a.batch, a.seqlen, a.heads, a.head_dim, a.dstate);

    int const pp = pad16(a.head_dim);
    int const np = pad16(a.dstate);
    int const state_smem = state_pass_smem(pp, np, sizeof(T));
    int const output_smem = output_pass_smem(pp, np, sizeof(T));
    unsigned const chunks = static_cast<unsigned>(p.nchunks());
    dim3 const state_grid(chunks, static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
    if (chunks > 0) {
        ssd_mma_state_kernel<T><<<state_grid, kThreads, state_smem, stream>>>(p);
    }
    // slot c becomes the state after chunk c (entering c + 1); the last one is final_state (with no
    // token, the initial state or zeros)
    enqueue_ssd_carry(a.initial_state, p.chunk_state, p.chunk_decay, a.batch, a.heads, a.head_dim, a.dstate,
        carry_count(p.nchunks()), stream, a.final_state);
    dim3 const output_grid(chunks * kTilesPerChunk, static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
    if (chunks > 0) {
        ssd_mma_output_kernel<T><<<output_grid, kThreads, output_smem, stream>>>(p);
    }
    return cudaGetLastError() == cudaSuccess ? MQ_SUCCESS : MQ_ERROR_CUDA;
}

// Once per (device, activation type), cached for later launches: whether the kernels this device runs
// were compiled for compute_80 or later (a build for older targets alone JITs them from PTX where
// __CUDA_ARCH__ < 800, the trap; ptxVersion, not binaryVersion, which is the device's own for a
// JIT-compiled function), and the opt-in to more than 48 KiB of shared memory. The opt-in is the
// largest supported shape's, so launches of different shapes from several threads never shrink it
// under each other. 0: not yet known, 1: ready, 2: unsupported, 3: a CUDA error.
constexpr int kMaxDevices = 64;

template <typename T>
mq_status prepare_device() {
    static std::atomic<int> state[kMaxDevices];
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) {
        cudaGetLastError();   // not the caller's next check's error
        return MQ_ERROR_CUDA;
    }
    int known = state[device].load(std::memory_order_acquire);
    if (known == 0) {
        cudaFuncAttributes fa{};
        if (cudaFuncGetAttributes(&fa, ssd_mma_output_kernel<T>) != cudaSuccess) {
            known = 3;
        } else if (fa.ptxVersion < 80) {
            known = 2;
        } else {
            int const most_state = state_pass_smem(kMaxHeadDim, kMaxDstate, sizeof(T));
            int const most_output = output_pass_smem(kMaxHeadDim, kMaxDstate, sizeof(T));
            bool const opted_in =
                cudaFuncSetAttribute(ssd_mma_state_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                    most_state) == cudaSuccess &&
                cudaFuncSetAttribute(ssd_mma_output_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                    most_output) == cudaSuccess;
            known = opted_in ? 1 : 3;
        }
        if (known == 3) {
            cudaGetLastError();
            return MQ_ERROR_CUDA;     // not cached: a later call may succeed
        }
        state[device].store(known, std::memory_order_release);
    }
    return known == 1 ? MQ_SUCCESS : MQ_ERROR_UNSUPPORTED;
}

}  // namespace

mq_status launch_ssd_mma(mq_ssd_scan_args const& args, cudaStream_t stream) {
    switch (args.dtype) {
    case MQ_FLOAT16: {
        mq_status const ready = prepare_device<__half>();
        return ready == MQ_SUCCESS ? launch<__half>(args, stream) : ready;
    }
    case MQ_BFLOAT16: {
        mq_status const ready = prepare_device<__nv_bfloat16>();
        return ready == MQ_SUCCESS ? launch<__nv_bfloat16>(args, stream) : ready;
    }
    default: return MQ_ERROR_UNSUPPORTED;
    }
}

}  // namespace mq::ssd::mma
