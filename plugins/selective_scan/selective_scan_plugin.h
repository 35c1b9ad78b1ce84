// TensorRT IPluginV3 wrapper of the selective-scan kernels: op "SelectiveScan", version "1",
// namespace "mq_deploy" (plugins/selective_scan/README.md). Inputs x, delta, A, B, C, D, delta_bias, z, gate_scale;
// outputs y (x's type) and final_state (float32). Fields delta_softplus, reverse.
#pragma once

#include <NvInferRuntime.h>

#include <string>

#include "common/op_plugin.h"
#include "selective_scan_args.h"

namespace mq::plugin {

// The op's contract as OpPlugin reads it: selective_scan_args.h's checks and fields.
struct SelectiveScanOp {
    using Attributes = scan::ScanAttributes;
    using Sizes = scan::ScanSizes;
    static constexpr char const* kName = kSelectiveScanName;
    static constexpr int32_t kNumInputs = scan::kNumScanInputs;
    static constexpr int32_t kNumOutputs = scan::kNumScanOutputs;
    static constexpr int32_t kNumFields = 2;

    static std::string check_types(ScalarType const* types, int32_t count) {
        return scan::check_scan_types(types, count);
    }
    static std::string check_shapes(TensorShape const* shapes, int32_t count, Attributes const&, Sizes* sizes) {
        return scan::check_scan_shapes(shapes, count, sizes);
    }
    static bool io_type_supported(int32_t pos, ScalarType type, ScalarType x_type) {
        return scan::scan_io_type_supported(pos, type, x_type);
    }
    static void output_types(nvinfer1::DataType const* in, nvinfer1::DataType* out) {
        out[scan::kY] = in[scan::kX];
        out[scan::kFinalState] = nvinfer1::DataType::kFLOAT;
    }
    static std::string parse(FieldView const* fields, int32_t count, Attributes* attrs) {
        return scan::parse_scan_attributes(fields, count, attrs);
    }
    static auto fields(Attributes const& attrs) { return scan::scan_attribute_fields(attrs); }
    static std::string describe(Attributes const& attrs) { return scan::describe(attrs); }
};

class SelectiveScanPlugin final : public OpPlugin<SelectiveScanPlugin, SelectiveScanOp> {
public:
    using OpPlugin::OpPlugin;

    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // OpPlugin's hooks
    std::string output_shapes(
        nvinfer1::DimsExprs const* inputs, nvinfer1::DimsExprs* outputs, nvinfer1::IExprBuilder& exprBuilder) const;
    mq_status launch(scan::ScanSizes const& sizes, nvinfer1::PluginTensorDesc const* inputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) const;
};

using SelectiveScanCreator = OpCreator<SelectiveScanPlugin>;

}  // namespace mq::plugin
