// Loading an activation element as float32 (read-only path) and storing a float32 result in the
// activation type: what every kernel of the selective and SSD scans reads and writes through.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace mq::scan {

template <typename T>
struct Convert;

template <>
struct Convert<float> {
    __device__ static float load(float const* p) { return __ldg(p); }
    __device__ static void store(float* p, float v) { *p = v; }
};

template <>
struct Convert<__half> {
    __device__ static float load(__half const* p) { return __half2float(__ldg(p)); }
    __device__ static void store(__half* p, float v) { *p = __float2half_rn(v); }
};

template <>
struct Convert<__nv_bfloat16> {
    __device__ static float load(__nv_bfloat16 const* p) { return __bfloat162float(__ldg(p)); }
    __device__ static void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
};

}  // namespace mq::scan
