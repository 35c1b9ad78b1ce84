#include "ssd_scan_plugin.h"

#include "mq_kernels.h"

namespace mq::plugin {

// y is x's shape; final_state is [batch, heads, head_dim, d_state]: x's batch, A's heads, the
// head_dim attribute, and B's width over n_groups.
std::string SsdScanPlugin::output_shapes(
    nvinfer1::DimsExprs const* inputs, nvinfer1::DimsExprs* outputs, nvinfer1::IExprBuilder& exprBuilder) const {
    nvinfer1::DimsExprs const& x = inputs[ssd::kX];
    nvinfer1::IDimensionExpr const* head_dim = exprBuilder.constant(mAttrs.head_dim);
    nvinfer1::IDimensionExpr const* groups = exprBuilder.constant(mAttrs.n_groups);
    nvinfer1::IDimensionExpr const* dstate =
        groups == nullptr
        ? nullptr
        : exprBuilder.operation(nvinfer1::DimensionOperation::kFLOOR_DIV, *inputs[ssd::kB].d[2], *groups);
    if (head_dim == nullptr || dstate == nullptr) {
        return "could not build the final_state shape expressions";
    }
    outputs[ssd::kY] = x;
    outputs[ssd::kFinalState].nbDims = 4;
    outputs[ssd::kFinalState].d[0] = x.d[0];
    outputs[ssd::kFinalState].d[1] = inputs[ssd::kA].d[0];
    outputs[ssd::kFinalState].d[2] = head_dim;
    outputs[ssd::kFinalState].d[3] = dstate;
    return {};
}

size_t SsdScanPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept {
    if (inputs == nullptr || nbInputs != ssd::kNumSsdInputs) {
        return 0;
    }
    // Enough for every shape of the profile; heads and d_state are fixed by the weights.
    nvinfer1::Dims const& x = inputs[ssd::kX].max;
    nvinfer1::Dims const& a = inputs[ssd::kA].max;
    nvinfer1::Dims const& b = inputs[ssd::kB].max;
    if (x.nbDims != 3 || a.nbDims != 1 || b.nbDims != 3 || mAttrs.n_groups < 1) {
        return 0;
    }
    return mq_ssd_scan_workspace_bound(clamp_to_int32(x.d[0]), clamp_to_int32(x.d[1]), clamp_to_int32(a.d[0]),
        mAttrs.head_dim, clamp_to_int32(b.d[2] / mAttrs.n_groups));
}

mq_status SsdScanPlugin::launch(ssd::SsdSizes const& sizes, nvinfer1::PluginTensorDesc const* inputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) const {
    mq_ssd_scan_args args{};
    args.dtype = to_mq_dtype(inputDesc[ssd::kX].type);
    args.batch = static_cast<int32_t>(sizes.batch);
    args.seqlen = static_cast<int32_t>(sizes.seqlen);
    args.heads = static_cast<int32_t>(sizes.heads);
    args.head_dim = mAttrs.head_dim;
    args.n_groups = mAttrs.n_groups;
    args.dstate = static_cast<int32_t>(sizes.dstate);
    args.dt_softplus = mAttrs.dt_softplus;
    args.dt_min = mAttrs.dt_min;
    args.dt_max = mAttrs.dt_max;
    args.x = inputs[ssd::kX];
    args.dt = inputs[ssd::kDt];
    args.A = static_cast<float const*>(inputs[ssd::kA]);
    args.B = inputs[ssd::kB];
    args.C = inputs[ssd::kC];
    args.D = static_cast<float const*>(inputs[ssd::kD]);
    args.dt_bias = static_cast<float const*>(inputs[ssd::kDtBias]);
    args.initial_state = nullptr;
    args.y = outputs[ssd::kY];
    args.final_state = static_cast<float*>(outputs[ssd::kFinalState]);
    args.workspace = workspace;
    // getWorkspaceSize reserved the bound over the profile, which covers this shape (tested for
    // every plan in plugins/tests/test_ssd_scan_args.cpp); TensorRT does not tell enqueue the
    // size it allocated, so the C API's size check sees this shape's need, not the buffer.
    args.workspace_bytes = mq_ssd_scan_workspace_size(args.batch, args.seqlen, args.heads, args.head_dim, args.dstate);
    return mq_ssd_scan(&args, reinterpret_cast<mq_stream_t>(stream));
}

}  // namespace mq::plugin
