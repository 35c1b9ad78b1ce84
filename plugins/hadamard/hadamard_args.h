// HadamardTransform plugin arguments without TensorRT: the op has no attributes; inputs are
// x [..., n] (float32/float16/bfloat16) and signs [n] float32; the output has x's shape and type.
#pragma once

#include <cstdint>
#include <string>

#include "common/plugin_fields.h"
#include "common/tensor_shape.h"

namespace mq::hadamard {

using plugin::FieldView;
using plugin::ScalarType;
using plugin::TensorShape;

enum HadamardInput : int32_t { kHadamardX, kHadamardSigns, kNumHadamardInputs };
constexpr int32_t kNumHadamardOutputs = 1;

// The op takes no attributes: any field is reported as unknown.
std::string parse_hadamard_attributes(FieldView const* fields, int32_t count);

// x rank >= 1 with last extent n, signs rank 1 of extent n, n supported (m * 2^k, <= 16384).
// Unknown extents (-1) pass. Returns "" and sets *n (maybe -1) on success.
std::string check_hadamard_shapes(TensorShape const* inputs, int32_t nb_inputs, int64_t* n);

std::string check_hadamard_types(ScalarType const* inputs, int32_t nb_inputs);

// For supportsFormatCombination: positions x, signs, y.
bool hadamard_io_type_supported(int32_t pos, ScalarType type, ScalarType x_type);

// Rows of the transform: product of x's extents but the last.
int64_t hadamard_rows(TensorShape const& x);

}  // namespace mq::hadamard
