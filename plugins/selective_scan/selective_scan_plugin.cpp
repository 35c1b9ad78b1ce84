#include "selective_scan_plugin.h"

#include "mq_kernels.h"

namespace mq::plugin {

// y is x's shape; final_state is [batch, dim, dstate] (x's batch and dim, A's dstate).
std::string SelectiveScanPlugin::output_shapes(
    nvinfer1::DimsExprs const* inputs, nvinfer1::DimsExprs* outputs, nvinfer1::IExprBuilder& /*exprBuilder*/) const {
    nvinfer1::DimsExprs const& x = inputs[scan::kX];
    outputs[scan::kY] = x;
    outputs[scan::kFinalState].nbDims = 3;
    outputs[scan::kFinalState].d[0] = x.d[0];
    outputs[scan::kFinalState].d[1] = x.d[2];
    outputs[scan::kFinalState].d[2] = inputs[scan::kA].d[1];
    return {};
}

size_t SelectiveScanPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept {
    if (inputs == nullptr || nbInputs != scan::kNumScanInputs) {
        return 0;
    }
    // Enough for every shape of the profile (the plan's workspace is not monotonic in the shape).
    nvinfer1::Dims const& x = inputs[scan::kX].max;
    nvinfer1::Dims const& a = inputs[scan::kA].max;
    if (x.nbDims != 3 || a.nbDims != 2) {
        return 0;
    }
    return mq_selective_scan_workspace_bound(
        clamp_to_int32(x.d[0]), clamp_to_int32(x.d[1]), clamp_to_int32(x.d[2]), clamp_to_int32(a.d[1]));
}

mq_status SelectiveScanPlugin::launch(scan::ScanSizes const& sizes, nvinfer1::PluginTensorDesc const* inputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) const {
    mq_selective_scan_args args{};
    args.dtype = to_mq_dtype(inputDesc[scan::kX].type);
    args.batch = static_cast<int32_t>(sizes.batch);
    args.seqlen = static_cast<int32_t>(sizes.seqlen);
    args.dim = static_cast<int32_t>(sizes.dim);
    args.dstate = static_cast<int32_t>(sizes.dstate);
    args.delta_softplus = mAttrs.delta_softplus;
    args.reverse = mAttrs.reverse;
    args.x = inputs[scan::kX];
    args.delta = inputs[scan::kDelta];
    args.A = static_cast<float const*>(inputs[scan::kA]);
    args.B = inputs[scan::kB];
    args.C = inputs[scan::kC];
    args.D = static_cast<float const*>(inputs[scan::kD]);
    args.delta_bias = static_cast<float const*>(inputs[scan::kDeltaBias]);
    args.z = inputs[scan::kZ];
    args.gate_scale = static_cast<float const*>(inputs[scan::kGateScale]);
    args.initial_state = nullptr;
    args.y = outputs[scan::kY];
    args.final_state = static_cast<float*>(outputs[scan::kFinalState]);
    args.workspace = workspace;
    // getWorkspaceSize reserved the bound over the profile, which covers this shape; TensorRT does
    // not tell enqueue the size it allocated, so the C API's size check sees this shape's need.
    args.workspace_bytes = mq_selective_scan_workspace_size(args.batch, args.seqlen, args.dim, args.dstate);
    return mq_selective_scan(&args, reinterpret_cast<mq_stream_t>(stream));
}

}  // namespace mq::plugin
