// SSDScan plugin arguments without TensorRT: node attributes (parse / serialize) and the checks on
// input shapes and types. The plugin class only adapts TensorRT types to these.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/plugin_fields.h"
#include "common/tensor_shape.h"

namespace mq::ssd {

using plugin::FieldView;
using plugin::ScalarType;
using plugin::TensorShape;

// Input order of the op contract (docs/export.md, README.md here); all seven are always present.
enum SsdInput : int32_t { kX, kDt, kA, kB, kC, kD, kDtBias, kNumSsdInputs };
enum SsdOutput : int32_t { kY, kFinalState, kNumSsdOutputs };

char const* ssd_input_name(int32_t index);

constexpr char kHeadDimField[] = "head_dim";
constexpr char kGroupsField[] = "n_groups";
constexpr char kDtSoftplusField[] = "dt_softplus";
constexpr char kDtMinField[] = "dt_min";
constexpr char kDtMaxField[] = "dt_max";
constexpr int32_t kNumSsdFields = 5;

struct SsdAttributes {
    int32_t head_dim{0};   // required
    int32_t n_groups{0};   // required
    int32_t dt_softplus{1};
    float dt_min{0.0f};
    float dt_max{0.0f};    // set to +inf by the parser's defaults
    bool operator==(SsdAttributes const& o) const {
        return head_dim == o.head_dim && n_groups == o.n_groups && dt_softplus == o.dt_softplus &&
            dt_min == o.dt_min && dt_max == o.dt_max;
    }
};

// Reads parser fields (INT as kINT32, FLOAT as kFLOAT32) or serialized fields. head_dim and
// n_groups are required and positive; dt_softplus 0/1 (default 1); dt_min <= dt_max (defaults 0
// and +inf). Unknown names are errors. Returns "" on success.
std::string parse_ssd_attributes(FieldView const* fields, int32_t count, SsdAttributes* attrs);

// The fields to serialize: views into `attrs` (which must outlive them).
std::array<FieldView, kNumSsdFields> ssd_attribute_fields(SsdAttributes const& attrs);

std::string describe(SsdAttributes const& attrs);  // "head_dim=64;n_groups=8;dt_softplus=1;dt_min=0;dt_max=inf"

// Problem sizes; -1 where no input fixes the extent yet (build time).
struct SsdSizes {
    int64_t batch{-1};
    int64_t seqlen{-1};
    int64_t heads{-1};
    int64_t dstate{-1};   // per group: B's last dimension / n_groups
};

// Ranks; batch and seqlen agree over x, dt, B, C; heads over dt, A, D, dt_bias; x's last dim is
// heads * head_dim; B and C's last dim is n_groups * dstate; heads % n_groups == 0;
// 1 <= dstate <= 256; batch and heads <= 65535. Unknown extents (-1) pass. "" on success.
std::string check_ssd_shapes(TensorShape const* inputs, int32_t nb_inputs, SsdAttributes const& attrs, SsdSizes* sizes);

// x in {float32, float16, bfloat16}; dt, B, C of x's type; A, D, dt_bias float32.
std::string check_ssd_types(ScalarType const* inputs, int32_t nb_inputs);

// For supportsFormatCombination: may position `pos` (inputs, then y, final_state) have `type`,
// given that x has `x_type`?
bool ssd_io_type_supported(int32_t pos, ScalarType type, ScalarType x_type);

}  // namespace mq::ssd
