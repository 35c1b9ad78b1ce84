// TensorRT IPluginV3 wrapper of the SSD (Mamba-2) scan kernels: op "SSDScan", version "1",
// namespace "mq_deploy" (README.md here). Inputs x, dt, A, B, C, D, dt_bias; outputs y (x's type)
// and final_state [batch, heads, head_dim, d_state] (float32). Fields head_dim, n_groups,
// dt_softplus, dt_min, dt_max.
#pragma once

#include <NvInferRuntime.h>

#include <string>

#include "common/plugin_base.h"
#include "common/trt_adapters.h"
#include "ssd_scan_args.h"

namespace mq::plugin {

class SsdScanPlugin final : public PluginV3Base<SsdScanPlugin> {
public:
    static constexpr char const* kName = kSsdScanName;

    explicit SsdScanPlugin(ssd::SsdAttributes attrs);
    SsdScanPlugin(SsdScanPlugin const&) = default;
    SsdScanPlugin& operator=(SsdScanPlugin const&) = delete;
    ~SsdScanPlugin() override = default;

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
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    ssd::SsdAttributes mAttrs;
    std::string mDescription;  // describe(mAttrs): timing-cache ID and engine metadata
    SerializedFields mSerialized;
};

class SsdScanCreator final : public PluginCreatorBase<SsdScanPlugin> {
public:
    SsdScanCreator();

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;

private:
    nvinfer1::PluginField mFieldNames[ssd::kNumSsdFields];
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

}  // namespace mq::plugin
