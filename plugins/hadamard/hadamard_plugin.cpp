#include "hadamard_plugin.h"

#include <exception>
#include <string>

#include "common/plugin_log.h"
#include "common/plugin_names.h"
#include "hadamard_args.h"
#include "selective_scan/mq_kernels.h"

namespace mq::plugin {
namespace {

using hadamard::hadamard_inputs;
using hadamard::kNumHadamardOutputs;
using nvinfer1::DataType;

template <bool Quantize>
void report(std::string const& message) noexcept {
    log_error(HadamardPlugin<Quantize>::kName, message.c_str());
}

template <bool Quantize>
bool has_expected_arity(int32_t nbInputs, int32_t nbOutputs) {
    if (nbInputs == hadamard_inputs(Quantize) && nbOutputs == kNumHadamardOutputs) {
        return true;
    }
    report<Quantize>("expected " + std::to_string(hadamard_inputs(Quantize)) + " inputs and 1 output, got " +
        std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
    return false;
}

// in: the op's input descriptors (2 or 3 of them, checked by the caller).
template <bool Quantize>
std::string check_inputs(nvinfer1::PluginTensorDesc const* in, int64_t* n) {
    constexpr int32_t count = hadamard_inputs(Quantize);
    ScalarType types[count];
    TensorShape shapes[count];
    for (int32_t i = 0; i < count; ++i) {
        types[i] = to_scalar_type(in[i].type);
        shapes[i] = to_shape(in[i].dims);
    }
    std::string err = hadamard::check_hadamard_types(types, count);
    return err.empty() ? hadamard::check_hadamard_shapes(shapes, count, n) : err;
}

template <bool Quantize>
std::string check_inputs(nvinfer1::DynamicPluginTensorDesc const* in, int64_t* n) {
    nvinfer1::PluginTensorDesc desc[hadamard_inputs(Quantize)];
    for (int32_t i = 0; i < hadamard_inputs(Quantize); ++i) {
        desc[i] = in[i].desc;
    }
    return check_inputs<Quantize>(desc, n);
}

}  // namespace


template <bool Quantize>
int32_t HadamardPlugin<Quantize>::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || !has_expected_arity<Quantize>(nbInputs, nbOutputs)) {
            return -1;
        }
        int64_t n = -1;
        std::string const err = check_inputs<Quantize>(in, &n);
        if (!err.empty()) {
            report<Quantize>(err);
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

template <bool Quantize>
int32_t HadamardPlugin<Quantize>::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs,
    DataType const* inputTypes, int32_t nbInputs) const noexcept {
    try {
        if (outputTypes == nullptr || inputTypes == nullptr || !has_expected_arity<Quantize>(nbInputs, nbOutputs)) {
            return -1;
        }
        ScalarType types[hadamard_inputs(Quantize)];
        for (int32_t i = 0; i < nbInputs; ++i) {
            types[i] = to_scalar_type(inputTypes[i]);
        }
        std::string const err = hadamard::check_hadamard_types(types, nbInputs);
        if (!err.empty()) {
            report<Quantize>(err);
            return -1;
        }
        outputTypes[0] = Quantize ? DataType::kINT8 : inputTypes[hadamard::kHadamardX];
        return 0;
    } catch (...) {
        return -1;
    }
}

template <bool Quantize>
int32_t HadamardPlugin<Quantize>::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept {
    try {
        if (inputs == nullptr || outputs == nullptr || !has_expected_arity<Quantize>(nbInputs, nbOutputs)) {
            return -1;
        }
        TensorShape shapes[hadamard_inputs(Quantize)];
        known_extents(inputs, nbInputs, shapes);
        int64_t n = -1;
        std::string const err = hadamard::check_hadamard_shapes(shapes, nbInputs, &n);
        if (!err.empty()) {
            report<Quantize>(err);
            return -1;
        }
        outputs[0] = inputs[hadamard::kHadamardX];
        return 0;
    } catch (...) {
        return -1;
    }
}

template <bool Quantize>
bool HadamardPlugin<Quantize>::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (inOut == nullptr || nbInputs != hadamard_inputs(Quantize) || nbOutputs != kNumHadamardOutputs || pos < 0 ||
        pos >= nbInputs + nbOutputs) {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR) {
        return false;
    }
    ScalarType const type = to_scalar_type(desc.type);
    ScalarType const x_type = pos == hadamard::kHadamardX ? type : to_scalar_type(inOut[0].desc.type);
    return hadamard::hadamard_io_type_supported(pos, type, x_type, Quantize);
}

template <bool Quantize>
int32_t HadamardPlugin<Quantize>::getNbOutputs() const noexcept {
    return kNumHadamardOutputs;
}

template <bool Quantize>
char const* HadamardPlugin<Quantize>::getTimingCacheID() noexcept {
    return "";  // no attributes
}

template <bool Quantize>
int32_t HadamardPlugin<Quantize>::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || !has_expected_arity<Quantize>(nbInputs, nbOutputs)) {
            return -1;
        }
        int64_t n = -1;
        std::string const err = check_inputs<Quantize>(in, &n);
        if (!err.empty()) {
            report<Quantize>(err);
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

template <bool Quantize>
int32_t HadamardPlugin<Quantize>::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept {
    try {
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
            return -1;
        }
        nvinfer1::PluginTensorDesc const& x = inputDesc[hadamard::kHadamardX];
        int64_t n = -1;
        std::string const err = check_inputs<Quantize>(inputDesc, &n);
        if (!err.empty() || n < 0) {
            report<Quantize>(err.empty() ? std::string("unknown transform size at enqueue") : err);
            return -1;
        }
        int64_t const rows = hadamard::hadamard_rows(to_shape(x.dims));
        auto const* signs = static_cast<float const*>(inputs[hadamard::kHadamardSigns]);
        auto const s = reinterpret_cast<mq_stream_t>(stream);
        mq_status status;
        if constexpr (Quantize) {
            status = mq_hadamard_quantize(inputs[hadamard::kHadamardX], signs, inputs[hadamard::kHadamardScale],
                static_cast<int8_t*>(outputs[0]), rows, static_cast<int32_t>(n), to_mq_dtype(x.type), s);
        } else {
            status = mq_hadamard_transform(inputs[hadamard::kHadamardX], signs, outputs[0], rows,
                static_cast<int32_t>(n), to_mq_dtype(x.type), s);
        }
        if (status != MQ_SUCCESS) {
            report<Quantize>(std::string("enqueue failed: ") + mq_status_string(status));
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

template <bool Quantize>
nvinfer1::PluginFieldCollection const* HadamardPlugin<Quantize>::getFieldsToSerialize() noexcept {
    return &mNoFields;
}

template <bool Quantize>
nvinfer1::IPluginV3* HadamardCreator<Quantize>::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept {
    try {
        std::vector<FieldView> const views = to_field_views(fc);
        std::string const err =
            hadamard::parse_hadamard_attributes(views.data(), static_cast<int32_t>(views.size()), Quantize);
        if (!err.empty()) {
            report<Quantize>(
                std::string("cannot create plugin for node '") + (name != nullptr ? name : "") + "': " + err);
            return nullptr;
        }
        return new HadamardPlugin<Quantize>();
    } catch (std::exception const& e) {
        report<Quantize>(std::string("createPlugin failed: ") + e.what());
    }
    return nullptr;
}

template <bool Quantize>
nvinfer1::PluginFieldCollection const* HadamardCreator<Quantize>::getFieldNames() noexcept {
    return &mFieldCollection;
}

template class HadamardPlugin<false>;
template class HadamardPlugin<true>;
template class HadamardCreator<false>;
template class HadamardCreator<true>;

}  // namespace mq::plugin
