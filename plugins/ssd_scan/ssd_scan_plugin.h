// TensorRT IPluginV3 wrapper of the SSD (Mamba-2) scan kernels: op "SSDScan", version "1",
// namespace "mq_deploy" (README.md here). Inputs x, dt, A, B, C, D, dt_bias; outputs y (x's type)
// and final_state [batch, heads, head_dim, d_state] (float32). Fields head_dim, n_groups,
// dt_softplus, dt_min, dt_max.
#pragma once

#include <NvInferRuntime.h>

#include <string>

#include "common/op_plugin.h"
#include "ssd_scan_args.h"

namespace mq::plugin {

// The op's contract as OpPlugin reads it: ssd_scan_args.h's checks and fields.
struct SsdScanOp {
    using Attributes = ssd::SsdAttributes;
    using Sizes = ssd::SsdSizes;
    static constexpr char const* kName = kSsdScanName;
    static constexpr int32_t kNumInputs = ssd::kNumSsdInputs;
    static constexpr int32_t kNumOutputs = ssd::kNumSsdOutputs;
    static constexpr int32_t kNumFields = ssd::kNumSsdFields;

    static std::string check_types(ScalarType const* types, int32_t count) { return ssd::check_ssd_types(types, count); }
    static std::string check_shapes(TensorShape const* shapes, int32_t count, Attributes const& attrs, Sizes* sizes) {
        return ssd::check_ssd_shapes(shapes, count, attrs, sizes);
    }
    static bool io_type_supported(int32_t pos, ScalarType type, ScalarType x_type) {
        return ssd::ssd_io_type_supported(pos, type, x_type);
    }
    static void output_types(nvinfer1::DataType const* in, nvinfer1::DataType* out) {
        out[ssd::kY] = in[ssd::kX];
        out[ssd::kFinalState] = nvinfer1::DataType::kFLOAT;
    }
    static std::string parse(FieldView const* fields, int32_t count, Attributes* attrs) {
        return ssd::parse_ssd_attributes(fields, count, attrs);
    }
    static auto fields(Attributes const& attrs) { return ssd::ssd_attribute_fields(attrs); }
    static std::string describe(Attributes const& attrs) { return ssd::describe(attrs); }
};

class SsdScanPlugin final : public OpPlugin<SsdScanPlugin, SsdScanOp> {
public:
    using OpPlugin::OpPlugin;

    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // OpPlugin's hooks
    std::string output_shapes(
        nvinfer1::DimsExprs const* inputs, nvinfer1::DimsExprs* outputs, nvinfer1::IExprBuilder& exprBuilder) const;
    mq_status launch(ssd::SsdSizes const& sizes, nvinfer1::PluginTensorDesc const* inputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) const;
};

using SsdScanCreator = OpCreator<SsdScanPlugin>;

}  // namespace mq::plugin
