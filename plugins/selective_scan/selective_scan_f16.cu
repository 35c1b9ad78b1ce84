// Instantiates the selective-scan kernels for __half activations.
#include "selective_scan_launch.cuh"

namespace mq::scan {

mq_status launch_selective_scan_f16(mq_selective_scan_args const& args, ScanPlan const& plan, cudaStream_t stream) {
    return launch_selective_scan<__half>(args, plan, stream);
}

}  // namespace mq::scan
