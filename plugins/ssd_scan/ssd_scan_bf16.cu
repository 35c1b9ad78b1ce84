// Instantiates the SSD scan kernels for __nv_bfloat16 activations.
#include "ssd_scan_kernel.cuh"
#include "ssd_scan_launch.h"

namespace mq::ssd {

mq_status launch_ssd_scan_bf16(mq_ssd_scan_args const& args, SsdPlan const& plan, cudaStream_t stream) {
    return launch_ssd_scan<__nv_bfloat16>(args, plan, stream);
}

}  // namespace mq::ssd
