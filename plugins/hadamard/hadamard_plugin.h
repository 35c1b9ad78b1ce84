// TensorRT IPluginV3 wrappers of the fast Walsh-Hadamard kernel, namespace "mq_deploy", version "1":
// - "HadamardTransform": inputs x [..., n] and signs [n] float32; output x diag(signs) H_n, x's type;
// - "HadamardQuantize": the same plus scale (one element, x's type); output the INT8 codes of that
//   transform at scale (QuantizeLinear of the float32 result), which a DequantizeLinear -> MatMul reads.
#pragma once

#include <NvInferRuntime.h>

#include <array>
#include <string>

#include "common/op_plugin.h"
#include "hadamard_args.h"

namespace mq::plugin {

// The ops' contract as OpPlugin reads it: hadamard_args.h's checks; no attributes.
template <bool Quantize>
struct HadamardOp {
    struct Attributes {};
    struct Sizes {
        int64_t n{-1};  // the transform size, -1 while unknown
    };
    static constexpr char const* kName = Quantize ? kHadamardQuantizeName : kHadamardTransformName;
    static constexpr int32_t kNumInputs = hadamard::hadamard_inputs(Quantize);
    static constexpr int32_t kNumOutputs = hadamard::kNumHadamardOutputs;
    static constexpr int32_t kNumFields = 0;

    static std::string check_types(ScalarType const* types, int32_t count) {
        return hadamard::check_hadamard_types(types, count);
    }
    static std::string check_shapes(TensorShape const* shapes, int32_t count, Attributes const&, Sizes* sizes) {
        return hadamard::check_hadamard_shapes(shapes, count, &sizes->n);
    }
    static bool io_type_supported(int32_t pos, ScalarType type, ScalarType x_type) {
        return hadamard::hadamard_io_type_supported(pos, type, x_type, Quantize);
    }
    static void output_types(nvinfer1::DataType const* in, nvinfer1::DataType* out) {
        out[0] = Quantize ? nvinfer1::DataType::kINT8 : in[hadamard::kHadamardX];
    }
    static std::string parse(FieldView const* fields, int32_t count, Attributes*) {
        return hadamard::parse_hadamard_attributes(fields, count, Quantize);
    }
    static std::array<FieldView, 0> fields(Attributes const&) { return {}; }
    static std::string describe(Attributes const&) { return {}; }
};

template <bool Quantize>
class HadamardPlugin final : public OpPlugin<HadamardPlugin<Quantize>, HadamardOp<Quantize>> {
public:
    using Base = OpPlugin<HadamardPlugin<Quantize>, HadamardOp<Quantize>>;
    using Base::Base;

    // OpPlugin's hooks
    std::string output_shapes(
        nvinfer1::DimsExprs const* inputs, nvinfer1::DimsExprs* outputs, nvinfer1::IExprBuilder& exprBuilder) const;
    mq_status launch(typename HadamardOp<Quantize>::Sizes const& sizes, nvinfer1::PluginTensorDesc const* inputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) const;
};

using HadamardTransformPlugin = HadamardPlugin<false>;
using HadamardQuantizePlugin = HadamardPlugin<true>;

template <bool Quantize>
using HadamardCreator = OpCreator<HadamardPlugin<Quantize>>;
using HadamardTransformCreator = HadamardCreator<false>;
using HadamardQuantizeCreator = HadamardCreator<true>;

extern template class HadamardPlugin<false>;
extern template class HadamardPlugin<true>;

}  // namespace mq::plugin
