// SelectiveScan plugin arguments without TensorRT: node attributes (parse / serialize) and the
// checks on input shapes and types. The plugin class only adapts TensorRT types to these.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/plugin_fields.h"
#include "common/tensor_shape.h"

namespace mq::scan {

using plugin::FieldView;
using plugin::ScalarType;
using plugin::TensorShape;

// Input order of the op contract (plugins/selective_scan/README.md); all nine are always present.
enum ScanInput : int32_t { kX, kDelta, kA, kB, kC, kD, kDeltaBias, kZ, kGateScale, kNumScanInputs };
enum ScanOutput : int32_t { kY, kFinalState, kNumScanOutputs };

char const* scan_input_name(int32_t index);

constexpr char kDeltaSoftplusField[] = "delta_softplus";
constexpr char kReverseField[] = "reverse";

struct ScanAttributes {
    int32_t delta_softplus{1};  // Mamba's default
    int32_t reverse{0};
    bool operator==(ScanAttributes const& o) const { return delta_softplus == o.delta_softplus && reverse == o.reverse; }
};

// Reads parser fields (kINT32) or serialized fields; absent fields keep their defaults, unknown
// names and non-0/1 values are errors. Returns "" on success.
std::string parse_scan_attributes(FieldView const* fields, int32_t count, ScanAttributes* attrs);

// The fields to serialize: INT32 views into `attrs` (which must outlive them).
std::array<FieldView, 2> scan_attribute_fields(ScanAttributes const& attrs);

std::string describe(ScanAttributes const& attrs);  // "delta_softplus=1;reverse=0"

// Problem sizes; -1 where no input fixes the extent yet (build time).
struct ScanSizes {
    int64_t batch{-1};
    int64_t seqlen{-1};
    int64_t dim{-1};
    int64_t dstate{-1};
};

// Ranks, consistency of every known extent across the nine inputs, and limits (1 <= N <= 64,
// batch <= 65535). Unknown extents (-1) pass. Returns "" and fills *sizes on success.
std::string check_scan_shapes(TensorShape const* inputs, int32_t nb_inputs, ScanSizes* sizes);

// x in {float32, float16, bfloat16}; delta, B, C, z of x's type; A, D, delta_bias, gate_scale float32.
std::string check_scan_types(ScalarType const* inputs, int32_t nb_inputs);

// For supportsFormatCombination: may position `pos` (inputs, then y, final_state) have `type`,
// given that x has `x_type`?
bool scan_io_type_supported(int32_t pos, ScalarType type, ScalarType x_type);

}  // namespace mq::scan
