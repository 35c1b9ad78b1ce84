// Instantiates the selective-scan kernels for __nv_bfloat16 activations.
#include "selective_scan_launch.cuh"

namespace mq::scan {

mq_status launch_selective_scan_bf16(mq_selective_scan_args const& args, ScanPlan const& plan, cudaStream_t stream) {
    return launch_selective_scan<__nv_bfloat16>(args, plan, stream);
}

}  // namespace mq::scan
