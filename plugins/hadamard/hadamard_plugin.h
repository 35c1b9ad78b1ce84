// TensorRT IPluginV3 wrappers of the fast Walsh-Hadamard kernel, namespace "mq_deploy", version "1":
// - "HadamardTransform": inputs x [..., n] and signs [n] float32; output x diag(signs) H_n, x's type;
// - "HadamardQuantize": the same plus scale (one element, x's type); output the INT8 codes of that
//   transform at scale (QuantizeLinear of the float32 result), which a DequantizeLinear -> MatMul reads.
#pragma once

#include <NvInferRuntime.h>

#include "common/plugin_base.h"
#include "common/trt_adapters.h"

namespace mq::plugin {

template <bool Quantize>
class HadamardPlugin final : public PluginV3Base<HadamardPlugin<Quantize>> {
public:
    static constexpr char const* kName = Quantize ? kHadamardQuantizeName : kHadamardTransformName;

    HadamardPlugin() = default;
    HadamardPlugin(HadamardPlugin const&) = default;
    HadamardPlugin& operator=(HadamardPlugin const&) = delete;
    ~HadamardPlugin() override = default;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    char const* getTimingCacheID() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    nvinfer1::PluginFieldCollection mNoFields{};  // the ops have no attributes
};

using HadamardTransformPlugin = HadamardPlugin<false>;
using HadamardQuantizePlugin = HadamardPlugin<true>;

template <bool Quantize>
class HadamardCreator final : public PluginCreatorBase<HadamardPlugin<Quantize>> {
public:
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;

private:
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

using HadamardTransformCreator = HadamardCreator<false>;
using HadamardQuantizeCreator = HadamardCreator<true>;

extern template class HadamardPlugin<false>;
extern template class HadamardPlugin<true>;
extern template class HadamardCreator<false>;
extern template class HadamardCreator<true>;

}  // namespace mq::plugin
