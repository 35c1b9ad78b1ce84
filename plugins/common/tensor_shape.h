// Tensor shapes and element types without TensorRT, so argument checks are unit-testable on a CPU.
#pragma once

#include <cstdint>
#include <string>

namespace mq::plugin {

enum class ScalarType : int32_t { kFloat32, kFloat16, kBFloat16, kInt8, kOther };

constexpr int kMaxRank = 8;  // nvinfer1::Dims::MAX_DIMS

// Mirrors nvinfer1::Dims. An extent of -1 is unknown (a runtime dimension seen at build time).
struct TensorShape {
    int32_t rank{0};
    int64_t dims[kMaxRank]{};
};

char const* scalar_type_name(ScalarType type);
bool is_activation_type(ScalarType type);  // float32, float16 or bfloat16
std::string shape_to_string(TensorShape const& shape);  // e.g. "[1,-1,1536]"

}  // namespace mq::plugin
