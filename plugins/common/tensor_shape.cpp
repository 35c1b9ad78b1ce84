#include "tensor_shape.h"

namespace mq::plugin {

char const* scalar_type_name(ScalarType type) {
    switch (type) {
    case ScalarType::kFloat32: return "float32";
    case ScalarType::kFloat16: return "float16";
    case ScalarType::kBFloat16: return "bfloat16";
    case ScalarType::kInt8: return "int8";
    case ScalarType::kOther: return "unsupported type";
    }
    return "invalid";
}

bool is_activation_type(ScalarType type) {
    return type == ScalarType::kFloat32 || type == ScalarType::kFloat16 || type == ScalarType::kBFloat16;
}

std::string shape_to_string(TensorShape const& shape) {
    std::string s = "[";
    for (int32_t i = 0; i < shape.rank && i < kMaxRank; ++i) {
        s += (i > 0 ? "," : "") + std::to_string(shape.dims[i]);
    }
    return s + "]";
}

}  // namespace mq::plugin
