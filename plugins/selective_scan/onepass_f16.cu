// Instantiates the one-pass selective-scan kernel for __half activations (one translation unit per
// dtype, so they compile in parallel).
#include "onepass_kernel.cuh"
#include "selective_scan_launch.h"

namespace mq::scan {

mq_status launch_onepass_f16(mq_selective_scan_args const& args, cudaStream_t stream) {
    return launch_onepass<__half>(args, stream);
}

}  // namespace mq::scan
