#include "hadamard_args.h"

#include "hadamard_size.h"

namespace mq::hadamard {

namespace {

char const* op_name(int32_t nb_inputs) {
    return nb_inputs == kNumHadamardQuantizeInputs ? "HadamardQuantize" : "HadamardTransform";
}

std::string arity_error(int32_t nb_inputs) {
    return "HadamardTransform takes 2 inputs (x, signs) and HadamardQuantize 3 (x, signs, scale), got " +
        std::to_string(nb_inputs);
}

bool valid_arity(int32_t nb_inputs) {
    return nb_inputs == kNumHadamardInputs || nb_inputs == kNumHadamardQuantizeInputs;
}

}  // namespace

std::string parse_hadamard_attributes(FieldView const* fields, int32_t count, bool quantize) {
    if (count > 0 && fields != nullptr) {
        return std::string(op_name(hadamard_inputs(quantize))) + " takes no attributes, got field '" +
            (fields[0].name != nullptr ? fields[0].name : "<unnamed>") + "'";
    }
    return {};
}

std::string check_hadamard_shapes(TensorShape const* inputs, int32_t nb_inputs, int64_t* n) {
    if (inputs == nullptr || !valid_arity(nb_inputs)) {
        return arity_error(nb_inputs);
    }
    TensorShape const& x = inputs[kHadamardX];
    TensorShape const& signs = inputs[kHadamardSigns];
    if (x.rank < 1 || x.rank > plugin::kMaxRank) {
        return "x must have rank >= 1, got " + plugin::shape_to_string(x);
    }
    if (signs.rank != 1) {
        return "signs must have rank 1, got " + plugin::shape_to_string(signs);
    }
    if (nb_inputs == kNumHadamardQuantizeInputs) {
        TensorShape const& scale = inputs[kHadamardScale];
        bool one_element = scale.rank >= 0 && scale.rank <= plugin::kMaxRank;
        for (int32_t i = 0; one_element && i < scale.rank; ++i) {
            one_element = scale.dims[i] == 1 || scale.dims[i] < 0;
        }
        if (!one_element) {
            return "scale must hold one element (a per-tensor scale), got " + plugin::shape_to_string(scale);
        }
    }
    int64_t const nx = x.dims[x.rank - 1];
    int64_t const ns = signs.dims[0];
    if (nx >= 0 && ns >= 0 && nx != ns) {
        return "signs has " + std::to_string(ns) + " entries but x's last dimension is " + std::to_string(nx);
    }
    int64_t const size = nx >= 0 ? nx : ns;
    if (size >= 0 && factor_size(size).base_order == 0) {
        return "Hadamard size " + std::to_string(size) + " is not supported: need m * 2^k with m in {1, 12, 20, 28, 40}" +
            " and n <= " + std::to_string(kMaxSize);
    }
    *n = size;
    return {};
}

std::string check_hadamard_types(ScalarType const* inputs, int32_t nb_inputs) {
    if (inputs == nullptr || !valid_arity(nb_inputs)) {
        return arity_error(nb_inputs);
    }
    if (!plugin::is_activation_type(inputs[kHadamardX])) {
        return std::string("x must be float32, float16 or bfloat16, got ") + plugin::scalar_type_name(inputs[kHadamardX]);
    }
    if (inputs[kHadamardSigns] != ScalarType::kFloat32) {
        return std::string("signs must be float32, got ") + plugin::scalar_type_name(inputs[kHadamardSigns]);
    }
    if (nb_inputs == kNumHadamardQuantizeInputs && inputs[kHadamardScale] != inputs[kHadamardX]) {
        return std::string("scale must have x's type (") + plugin::scalar_type_name(inputs[kHadamardX]) + "), got " +
            plugin::scalar_type_name(inputs[kHadamardScale]);
    }
    return {};
}

bool hadamard_io_type_supported(int32_t pos, ScalarType type, ScalarType x_type, bool quantize) {
    int32_t const output = hadamard_inputs(quantize);
    if (pos == kHadamardX) {
        return plugin::is_activation_type(type);
    }
    if (pos == kHadamardSigns) {
        return type == ScalarType::kFloat32;
    }
    if (quantize && pos == kHadamardScale) {
        return type == x_type;
    }
    if (pos == output) {
        return type == (quantize ? ScalarType::kInt8 : x_type);
    }
    return false;
}

int64_t hadamard_rows(TensorShape const& x) {
    int64_t rows = 1;
    for (int32_t i = 0; i + 1 < x.rank; ++i) {
        rows *= x.dims[i];
    }
    return rows;
}

}  // namespace mq::hadamard
