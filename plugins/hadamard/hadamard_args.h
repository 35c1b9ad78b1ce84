// HadamardTransform / HadamardQuantize plugin arguments without TensorRT. Neither op has attributes.
// HadamardTransform: x [..., n] (float32/float16/bfloat16) and signs [n] float32 -> y, x's shape and type.
// HadamardQuantize: the same plus scale (one element, x's type) -> y int8 codes, x's shape.
#pragma once

#include <cstdint>
#include <string>

#include "common/plugin_fields.h"
#include "common/tensor_shape.h"

namespace mq::hadamard {

using plugin::FieldView;
using plugin::ScalarType;
using plugin::TensorShape;

enum HadamardInput : int32_t { kHadamardX, kHadamardSigns, kHadamardScale };
constexpr int32_t kNumHadamardInputs = 2;          // HadamardTransform: x, signs
constexpr int32_t kNumHadamardQuantizeInputs = 3;  // HadamardQuantize: x, signs, scale
constexpr int32_t kNumHadamardOutputs = 1;

// Inputs of the op: 2 (HadamardTransform) or 3 (HadamardQuantize).
constexpr int32_t hadamard_inputs(bool quantize) { return quantize ? kNumHadamardQuantizeInputs : kNumHadamardInputs; }

// The ops take no attributes: any field is reported as unknown.
std::string parse_hadamard_attributes(FieldView const* fields, int32_t count, bool quantize = false);

// x rank >= 1 with last extent n, signs rank 1 of extent n, n supported (m * 2^k, <= 16384); with
// 3 inputs, scale holds one element (rank 0, or every extent 1). Unknown extents (-1) pass.
// Returns "" and sets *n (maybe -1) on success.
std::string check_hadamard_shapes(TensorShape const* inputs, int32_t nb_inputs, int64_t* n);

// x float32/float16/bfloat16, signs float32; with 3 inputs, scale of x's type.
std::string check_hadamard_types(ScalarType const* inputs, int32_t nb_inputs);

// For supportsFormatCombination: positions x, signs, [scale,] y. y is x's type, or int8 when quantizing.
bool hadamard_io_type_supported(int32_t pos, ScalarType type, ScalarType x_type, bool quantize = false);

// Rows of the transform: product of x's extents but the last.
int64_t hadamard_rows(TensorShape const& x);

}  // namespace mq::hadamard
