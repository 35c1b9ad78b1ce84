#include "selective_scan_args.h"

#include <cstring>

#include "scan_plan.h"

namespace mq::scan {
namespace {

enum Extent { kBatch, kSeqlen, kDim, kDstate, kNoExtent };
constexpr char const* kExtentNames[] = {"batch", "seqlen", "dim", "dstate"};

struct InputSpec {
    int32_t rank;
    Extent extents[3];
};

// Which problem extent each dimension of each input is.
constexpr InputSpec kInputSpecs[kNumScanInputs] = {
    {3, {kBatch, kSeqlen, kDim}},     // x
    {3, {kBatch, kSeqlen, kDim}},     // delta
    {2, {kDim, kDstate, kNoExtent}},  // A
    {3, {kBatch, kSeqlen, kDstate}},  // B
    {3, {kBatch, kSeqlen, kDstate}},  // C
    {1, {kDim, kNoExtent, kNoExtent}},  // D
    {1, {kDim, kNoExtent, kNoExtent}},  // delta_bias
    {3, {kBatch, kSeqlen, kDim}},     // z
    {1, {kDim, kNoExtent, kNoExtent}},  // gate_scale
};

bool is_float32_input(int32_t index) {
    return index == kA || index == kD || index == kDeltaBias || index == kGateScale;
}

}  // namespace

char const* scan_input_name(int32_t index) {
    static constexpr char const* kNames[kNumScanInputs] = {"x", "delta", "A", "B", "C", "D", "delta_bias", "z", "gate_scale"};
    return index >= 0 && index < kNumScanInputs ? kNames[index] : "?";
}

std::string parse_scan_attributes(FieldView const* fields, int32_t count, ScanAttributes* attrs) {
    if (count > 0 && fields == nullptr) {
        return "null field array";
    }
    ScanAttributes parsed;
    for (int32_t i = 0; i < count; ++i) {
        FieldView const& f = fields[i];
        if (f.name == nullptr) {
            return "field without a name";
        }
        std::string err;
        if (std::strcmp(f.name, kDeltaSoftplusField) == 0) {
            err = plugin::read_flag(f, &parsed.delta_softplus);
        } else if (std::strcmp(f.name, kReverseField) == 0) {
            err = plugin::read_flag(f, &parsed.reverse);
        } else {
            err = std::string("unknown field '") + f.name + "' (expected " + kDeltaSoftplusField + ", " + kReverseField + ")";
        }
        if (!err.empty()) {
            return err;
        }
    }
    *attrs = parsed;
    return {};
}

std::array<FieldView, 2> scan_attribute_fields(ScanAttributes const& attrs) {
    return {FieldView{kDeltaSoftplusField, &attrs.delta_softplus, plugin::FieldType::kINT32, 1},
        FieldView{kReverseField, &attrs.reverse, plugin::FieldType::kINT32, 1}};
}

std::string describe(ScanAttributes const& attrs) {
    return std::string(kDeltaSoftplusField) + "=" + std::to_string(attrs.delta_softplus) + ";" + kReverseField + "=" +
        std::to_string(attrs.reverse);
}

std::string check_scan_shapes(TensorShape const* inputs, int32_t nb_inputs, ScanSizes* sizes) {
    if (inputs == nullptr || nb_inputs != kNumScanInputs) {
        return "SelectiveScan takes " + std::to_string(kNumScanInputs) +
            " inputs (x, delta, A, B, C, D, delta_bias, z, gate_scale), got " + std::to_string(nb_inputs);
    }
    int64_t value[4] = {-1, -1, -1, -1};
    int32_t source[4] = {-1, -1, -1, -1};  // input that fixed each extent, for messages
    for (int32_t i = 0; i < kNumScanInputs; ++i) {
        InputSpec const& spec = kInputSpecs[i];
        TensorShape const& s = inputs[i];
        if (s.rank != spec.rank) {
            return std::string("input ") + scan_input_name(i) + " must have rank " + std::to_string(spec.rank) +
                ", got shape " + plugin::shape_to_string(s);
        }
        for (int32_t d = 0; d < spec.rank; ++d) {
            int64_t const v = s.dims[d];
            Extent const e = spec.extents[d];
            if (v < -1) {
                return std::string("input ") + scan_input_name(i) + " has invalid shape " + plugin::shape_to_string(s);
            }
            if (v == -1) {
                continue;
            }
            if (value[e] == -1) {
                value[e] = v;
                source[e] = i;
            } else if (value[e] != v) {
                return std::string("input ") + scan_input_name(i) + " dimension " + std::to_string(d) + " is " +
                    std::to_string(v) + " but " + kExtentNames[e] + " is " + std::to_string(value[e]) + " (from " +
                    scan_input_name(source[e]) + ")";
            }
        }
    }
    if (value[kDstate] == 0 || value[kDstate] > kMaxDstate) {
        return "d_state (B/C last dimension, A second) must be in [1, " + std::to_string(kMaxDstate) + "], got " +
            std::to_string(value[kDstate]);
    }
    if (value[kBatch] > kMaxGridYZ) {
        return "batch must be at most " + std::to_string(kMaxGridYZ) + ", got " + std::to_string(value[kBatch]);
    }
    constexpr int64_t kInt32Max = 2147483647;
    if (value[kSeqlen] > kInt32Max || value[kDim] > kInt32Max) {
        return "seqlen and dim must fit in int32";
    }
    *sizes = ScanSizes{value[kBatch], value[kSeqlen], value[kDim], value[kDstate]};
    return {};
}

std::string check_scan_types(ScalarType const* inputs, int32_t nb_inputs) {
    if (inputs == nullptr || nb_inputs != kNumScanInputs) {
        return "SelectiveScan takes " + std::to_string(kNumScanInputs) + " inputs, got " + std::to_string(nb_inputs);
    }
    ScalarType const x_type = inputs[kX];
    if (!plugin::is_activation_type(x_type)) {
        return std::string("x must be float32, float16 or bfloat16, got ") + plugin::scalar_type_name(x_type);
    }
    for (int32_t i = 0; i < kNumScanInputs; ++i) {
        ScalarType const want = is_float32_input(i) ? ScalarType::kFloat32 : x_type;
        if (inputs[i] != want) {
            return std::string("input ") + scan_input_name(i) + " must be " + plugin::scalar_type_name(want) +
                ", got " + plugin::scalar_type_name(inputs[i]);
        }
    }
    return {};
}

bool scan_io_type_supported(int32_t pos, ScalarType type, ScalarType x_type) {
    if (pos == kX) {
        return plugin::is_activation_type(type);
    }
    if (pos < kNumScanInputs) {
        return type == (is_float32_input(pos) ? ScalarType::kFloat32 : x_type);
    }
    if (pos == kNumScanInputs + kY) {
        return type == x_type;
    }
    return pos == kNumScanInputs + kFinalState && type == ScalarType::kFloat32;
}

}  // namespace mq::scan
