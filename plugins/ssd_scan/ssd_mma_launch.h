// Launch entry point of the tensor-core SSD scan (ssd_mma.cu); arguments are already validated by
// ssd_scan_api.cpp (float16 / bfloat16, head_dim <= 64, dstate <= 128, a device of sm_80 or later).
#pragma once

#include <cuda_runtime_api.h>

#include "mq_kernels.h"

namespace mq::ssd::mma {

mq_status launch_ssd_mma(mq_ssd_scan_args const& args, cudaStream_t stream);

}  // namespace mq::ssd::mma
