#include "ssd_scan_args.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>

#include "ssd_plan.h"

namespace mq::ssd {
namespace {

bool is_float32_input(int32_t index) { return index == kA || index == kD || index == kDtBias; }

std::string read_float_scalar(FieldView const& field, float* value) {
    std::string const name = field.name != nullptr ? field.name : "<unnamed>";
    if (field.data == nullptr || field.length != 1) {
        return "field '" + name + "' must hold exactly one value (length " + std::to_string(field.length) + ")";
    }
    if (field.type == plugin::FieldType::kFLOAT32) {
        std::memcpy(value, field.data, sizeof(float));
        return {};
    }
    if (field.type == plugin::FieldType::kFLOAT64) {
        double v = 0.0;
        std::memcpy(&v, field.data, sizeof(double));
        *value = static_cast<float>(v);
        return {};
    }
    return "field '" + name + "' must be a float (FLOAT32 from an ONNX FLOAT attribute), got " +
        plugin::field_type_name(field.type);
}

std::string read_positive(FieldView const& field, int32_t* value) {
    int64_t v = 0;
    std::string err = plugin::read_int_scalar(field, &v);
    if (!err.empty()) {
        return err;
    }
    if (v < 1 || v > std::numeric_limits<int32_t>::max()) {
        return std::string("field '") + field.name + "' must be a positive int32, got " + std::to_string(v);
    }
    *value = static_cast<int32_t>(v);
    return {};
}

std::string float_text(float v) {
    if (std::isinf(v)) {
        return v > 0 ? "inf" : "-inf";
    }
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "%.9g", static_cast<double>(v));
    return buffer;
}

}  // namespace

char const* ssd_input_name(int32_t index) {
    static constexpr char const* kNames[kNumSsdInputs] = {"x", "dt", "A", "B", "C", "D", "dt_bias"};
    return index >= 0 && index < kNumSsdInputs ? kNames[index] : "?";
}

std::string parse_ssd_attributes(FieldView const* fields, int32_t count, SsdAttributes* attrs) {
    if (count > 0 && fields == nullptr) {
        return "null field array";
    }
    SsdAttributes parsed;
    parsed.dt_max = std::numeric_limits<float>::infinity();
    for (int32_t i = 0; i < count; ++i) {
        FieldView const& f = fields[i];
        if (f.name == nullptr) {
            return "field without a name";
        }
        std::string err;
        if (std::strcmp(f.name, kHeadDimField) == 0) {
            err = read_positive(f, &parsed.head_dim);
        } else if (std::strcmp(f.name, kGroupsField) == 0) {
            err = read_positive(f, &parsed.n_groups);
        } else if (std::strcmp(f.name, kDtSoftplusField) == 0) {
            err = plugin::read_flag(f, &parsed.dt_softplus);
        } else if (std::strcmp(f.name, kDtMinField) == 0) {
            err = read_float_scalar(f, &parsed.dt_min);
        } else if (std::strcmp(f.name, kDtMaxField) == 0) {
            err = read_float_scalar(f, &parsed.dt_max);
        } else {
            err = std::string("unknown field '") + f.name + "' (expected head_dim, n_groups, dt_softplus, dt_min, dt_max)";
        }
        if (!err.empty()) {
            return err;
        }
    }
    if (parsed.head_dim == 0 || parsed.n_groups == 0) {
        return "fields head_dim and n_groups are required (the SSDScan node's attributes)";
    }
    if (std::isnan(parsed.dt_min) || std::isnan(parsed.dt_max) || parsed.dt_min > parsed.dt_max) {
        return "dt_min must be <= dt_max, got " + float_text(parsed.dt_min) + " and " + float_text(parsed.dt_max);
    }
    *attrs = parsed;
    return {};
}

std::array<FieldView, kNumSsdFields> ssd_attribute_fields(SsdAttributes const& attrs) {
    return {FieldView{kHeadDimField, &attrs.head_dim, plugin::FieldType::kINT32, 1},
        FieldView{kGroupsField, &attrs.n_groups, plugin::FieldType::kINT32, 1},
        FieldView{kDtSoftplusField, &attrs.dt_softplus, plugin::FieldType::kINT32, 1},
        FieldView{kDtMinField, &attrs.dt_min, plugin::FieldType::kFLOAT32, 1},
        FieldView{kDtMaxField, &attrs.dt_max, plugin::FieldType::kFLOAT32, 1}};
}

std::string describe(SsdAttributes const& attrs) {
    return std::string(kHeadDimField) + "=" + std::to_string(attrs.head_dim) + ";" + kGroupsField + "=" +
        std::to_string(attrs.n_groups) + ";" + kDtSoftplusField + "=" + std::to_string(attrs.dt_softplus) + ";" +
        kDtMinField + "=" + float_text(attrs.dt_min) + ";" + kDtMaxField + "=" + float_text(attrs.dt_max);
}

std::string check_ssd_shapes(TensorShape const* inputs, int32_t nb_inputs, SsdAttributes const& attrs, SsdSizes* sizes) {
    if (inputs == nullptr || nb_inputs != kNumSsdInputs) {
        return "SSDScan takes " + std::to_string(kNumSsdInputs) + " inputs (x, dt, A, B, C, D, dt_bias), got " +
            std::to_string(nb_inputs);
    }
    constexpr int32_t kRanks[kNumSsdInputs] = {3, 3, 1, 3, 3, 1, 1};
    for (int32_t i = 0; i < kNumSsdInputs; ++i) {
        if (inputs[i].rank != kRanks[i]) {
            return std::string("input ") + ssd_input_name(i) + " must have rank " + std::to_string(kRanks[i]) +
                ", got shape " + plugin::shape_to_string(inputs[i]);
        }
        for (int32_t d = 0; d < inputs[i].rank; ++d) {
            if (inputs[i].dims[d] < -1) {
                return std::string("input ") + ssd_input_name(i) + " has invalid shape " +
                    plugin::shape_to_string(inputs[i]);
            }
        }
    }
    // (input, dimension) pairs that must agree, per extent
    struct Use {
        int32_t input;
        int32_t dim;
    };
    auto agree = [&](char const* extent, std::initializer_list<Use> uses, int64_t* value) -> std::string {
        int32_t source = -1;
        for (Use const& u : uses) {
            int64_t const v = inputs[u.input].dims[u.dim];
            if (v == -1) {
                continue;
            }
            if (*value == -1) {
                *value = v;
                source = u.input;
            } else if (*value != v) {
                return std::string("input ") + ssd_input_name(u.input) + " dimension " + std::to_string(u.dim) +
                    " is " + std::to_string(v) + " but " + extent + " is " + std::to_string(*value) + " (from " +
                    ssd_input_name(source) + ")";
            }
        }
        return {};
    };
    SsdSizes s;
    int64_t bc_width = -1;
    std::string err = agree("batch", {{kX, 0}, {kDt, 0}, {kB, 0}, {kC, 0}}, &s.batch);
    if (err.empty()) err = agree("seqlen", {{kX, 1}, {kDt, 1}, {kB, 1}, {kC, 1}}, &s.seqlen);
    if (err.empty()) err = agree("heads", {{kDt, 2}, {kA, 0}, {kD, 0}, {kDtBias, 0}}, &s.heads);
    if (err.empty()) err = agree("n_groups * d_state", {{kB, 2}, {kC, 2}}, &bc_width);
    if (!err.empty()) {
        return err;
    }
    int64_t const width = inputs[kX].dims[2];
    if (s.heads != -1 && width != -1 && width != s.heads * attrs.head_dim) {
        return "x's last dimension " + std::to_string(width) + " is not heads * head_dim = " + std::to_string(s.heads) +
            " * " + std::to_string(attrs.head_dim);
    }
    if (s.heads == -1 && width != -1) {
        if (width % attrs.head_dim != 0) {
            return "x's last dimension " + std::to_string(width) + " is not a multiple of head_dim " +
                std::to_string(attrs.head_dim);
        }
        s.heads = width / attrs.head_dim;
    }
    if (s.heads != -1 && s.heads % attrs.n_groups != 0) {
        return std::to_string(s.heads) + " heads cannot be split among n_groups = " + std::to_string(attrs.n_groups);
    }
    if (bc_width != -1) {
        if (bc_width % attrs.n_groups != 0) {
            return "B/C last dimension " + std::to_string(bc_width) + " is not a multiple of n_groups " +
                std::to_string(attrs.n_groups);
        }
        s.dstate = bc_width / attrs.n_groups;
        if (s.dstate < 1 || s.dstate > kSsdMaxDstate) {
            return "d_state (B/C last dimension / n_groups) must be in [1, " + std::to_string(kSsdMaxDstate) +
                "], got " + std::to_string(s.dstate);
        }
    }
    if (s.batch > kSsdMaxGrid || s.heads > kSsdMaxGrid) {
        return "batch and heads must be at most " + std::to_string(kSsdMaxGrid);
    }
    constexpr int64_t kInt32Max = 2147483647;
    if (s.seqlen > kInt32Max || width > kInt32Max) {
        return "seqlen and heads * head_dim must fit in int32";
    }
    *sizes = s;
    return {};
}

std::string check_ssd_types(ScalarType const* inputs, int32_t nb_inputs) {
    if (inputs == nullptr || nb_inputs != kNumSsdInputs) {
        return "SSDScan takes " + std::to_string(kNumSsdInputs) + " inputs, got " + std::to_string(nb_inputs);
    }
    ScalarType const x_type = inputs[kX];
    if (!plugin::is_activation_type(x_type)) {
        return std::string("x must be float32, float16 or bfloat16, got ") + plugin::scalar_type_name(x_type);
    }
    for (int32_t i = 0; i < kNumSsdInputs; ++i) {
        ScalarType const want = is_float32_input(i) ? ScalarType::kFloat32 : x_type;
        if (inputs[i] != want) {
            return std::string("input ") + ssd_input_name(i) + " must be " + plugin::scalar_type_name(want) + ", got " +
                plugin::scalar_type_name(inputs[i]);
        }
    }
    return {};
}

bool ssd_io_type_supported(int32_t pos, ScalarType type, ScalarType x_type) {
    if (pos == kX) {
        return plugin::is_activation_type(type);
    }
    if (pos < kNumSsdInputs) {
        return type == (is_float32_input(pos) ? ScalarType::kFloat32 : x_type);
    }
    if (pos == kNumSsdInputs + kY) {
        return type == x_type;
    }
    return pos == kNumSsdInputs + kFinalState && type == ScalarType::kFloat32;
}

}  // namespace mq::ssd
