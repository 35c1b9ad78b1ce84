#include "hadamard_plugin.h"

#include "selective_scan/mq_kernels.h"

namespace mq::plugin {

template <bool Quantize>
std::string HadamardPlugin<Quantize>::output_shapes(
    nvinfer1::DimsExprs const* inputs, nvinfer1::DimsExprs* outputs, nvinfer1::IExprBuilder& /*exprBuilder*/) const {
    outputs[0] = inputs[hadamard::kHadamardX];
    return {};
}

template <bool Quantize>
mq_status HadamardPlugin<Quantize>::launch(typename HadamardOp<Quantize>::Sizes const& sizes,
    nvinfer1::PluginTensorDesc const* inputDesc, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) const {
    if (sizes.n < 0) {  // not reached: the checks need rank >= 1, and enqueue knows every extent
        return MQ_ERROR_INVALID_ARGUMENT;
    }
    nvinfer1::PluginTensorDesc const& x = inputDesc[hadamard::kHadamardX];
    int64_t const rows = hadamard::hadamard_rows(to_shape(x.dims));
    auto const* signs = static_cast<float const*>(inputs[hadamard::kHadamardSigns]);
    auto const s = reinterpret_cast<mq_stream_t>(stream);
    if constexpr (Quantize) {
        return mq_hadamard_quantize(inputs[hadamard::kHadamardX], signs, inputs[hadamard::kHadamardScale],
            static_cast<int8_t*>(outputs[0]), rows, static_cast<int32_t>(sizes.n), to_mq_dtype(x.type), s);
    } else {
        return mq_hadamard_transform(inputs[hadamard::kHadamardX], signs, outputs[0], rows,
            static_cast<int32_t>(sizes.n), to_mq_dtype(x.type), s);
    }
}

template class HadamardPlugin<false>;
template class HadamardPlugin<true>;

}  // namespace mq::plugin
