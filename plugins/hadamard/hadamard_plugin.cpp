#include "hadamard_plugin.h"

#include <exception>
#include <string>

#include "common/plugin_log.h"
#include "common/plugin_names.h"
#include "hadamard_args.h"
#include "selective_scan/mq_kernels.h"

namespace mq::plugin {
namespace {

using hadamard::kNumHadamardInputs;
using hadamard::kNumHadamardOutputs;
using nvinfer1::DataType;

void report(std::string const& message) noexcept { log_error(kHadamardTransformName, message.c_str()); }

bool has_expected_arity(int32_t nbInputs, int32_t nbOutputs) {
    if (nbInputs == kNumHadamardInputs && nbOutputs == kNumHadamardOutputs) {
        return true;
    }
    report("expected 2 inputs and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
    return false;
}

std::string check_inputs(nvinfer1::PluginTensorDesc const& x, nvinfer1::PluginTensorDesc const& signs, int64_t* n) {
    ScalarType const types[kNumHadamardInputs] = {to_scalar_type(x.type), to_scalar_type(signs.type)};
    TensorShape const shapes[kNumHadamardInputs] = {to_shape(x.dims), to_shape(signs.dims)};
    std::string err = hadamard::check_hadamard_types(types, kNumHadamardInputs);
    return err.empty() ? hadamard::check_hadamard_shapes(shapes, kNumHadamardInputs, n) : err;
}

}  // namespace


int32_t HadamardTransformPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        int64_t n = -1;
        std::string const err = check_inputs(in[hadamard::kHadamardX].desc, in[hadamard::kHadamardSigns].desc, &n);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

int32_t HadamardTransformPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs,
    DataType const* inputTypes, int32_t nbInputs) const noexcept {
    try {
        if (outputTypes == nullptr || inputTypes == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        ScalarType const types[kNumHadamardInputs] = {to_scalar_type(inputTypes[0]), to_scalar_type(inputTypes[1])};
        std::string const err = hadamard::check_hadamard_types(types, kNumHadamardInputs);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        outputTypes[0] = inputTypes[hadamard::kHadamardX];
        return 0;
    } catch (...) {
        return -1;
    }
}

int32_t HadamardTransformPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept {
    try {
        if (inputs == nullptr || outputs == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        TensorShape shapes[kNumHadamardInputs];
        known_extents(inputs, kNumHadamardInputs, shapes);
        int64_t n = -1;
        std::string const err = hadamard::check_hadamard_shapes(shapes, kNumHadamardInputs, &n);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        outputs[0] = inputs[hadamard::kHadamardX];
        return 0;
    } catch (...) {
        return -1;
    }
}

bool HadamardTransformPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (inOut == nullptr || nbInputs != kNumHadamardInputs || nbOutputs != kNumHadamardOutputs || pos < 0 ||
        pos >= nbInputs + nbOutputs) {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR) {
        return false;
    }
    ScalarType const type = to_scalar_type(desc.type);
    ScalarType const x_type = pos == hadamard::kHadamardX ? type : to_scalar_type(inOut[0].desc.type);
    return hadamard::hadamard_io_type_supported(pos, type, x_type);
}

int32_t HadamardTransformPlugin::getNbOutputs() const noexcept { return kNumHadamardOutputs; }

char const* HadamardTransformPlugin::getTimingCacheID() noexcept { return ""; }  // no attributes

int32_t HadamardTransformPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        int64_t n = -1;
        std::string const err = check_inputs(in[hadamard::kHadamardX], in[hadamard::kHadamardSigns], &n);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

int32_t HadamardTransformPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept {
    try {
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
            return -1;
        }
        nvinfer1::PluginTensorDesc const& x = inputDesc[hadamard::kHadamardX];
        int64_t n = -1;
        std::string const err = check_inputs(x, inputDesc[hadamard::kHadamardSigns], &n);
        if (!err.empty() || n < 0) {
            report(err.empty() ? std::string("unknown transform size at enqueue") : err);
            return -1;
        }
        int64_t const rows = hadamard::hadamard_rows(to_shape(x.dims));
        mq_status const status = mq_hadamard_transform(inputs[hadamard::kHadamardX],
            static_cast<float const*>(inputs[hadamard::kHadamardSigns]), outputs[0], rows, static_cast<int32_t>(n),
            to_mq_dtype(x.type), reinterpret_cast<mq_stream_t>(stream));
        if (status != MQ_SUCCESS) {
            report(std::string("enqueue failed: ") + mq_status_string(status));
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

nvinfer1::PluginFieldCollection const* HadamardTransformPlugin::getFieldsToSerialize() noexcept { return &mNoFields; }

nvinfer1::IPluginV3* HadamardTransformCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept {
    try {
        std::vector<FieldView> const views = to_field_views(fc);
        std::string const err = hadamard::parse_hadamard_attributes(views.data(), static_cast<int32_t>(views.size()));
        if (!err.empty()) {
            report(std::string("cannot create plugin for node '") + (name != nullptr ? name : "") + "': " + err);
            return nullptr;
        }
        return new HadamardTransformPlugin();
    } catch (std::exception const& e) {
        report(std::string("createPlugin failed: ") + e.what());
    }
    return nullptr;
}

nvinfer1::PluginFieldCollection const* HadamardTransformCreator::getFieldNames() noexcept { return &mFieldCollection; }

}  // namespace mq::plugin
