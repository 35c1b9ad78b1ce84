// Instantiates the SSD scan kernels for __half activations.
#include "ssd_scan_kernel.cuh"
#include "ssd_scan_launch.h"

namespace mq::ssd {

mq_status launch_ssd_scan_f16(mq_ssd_scan_args const& args, SsdPlan const& plan, cudaStream_t stream) {
    return launch_ssd_scan<__half>(args, plan, stream);
}

}  // namespace mq::ssd
