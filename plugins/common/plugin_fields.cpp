#include "plugin_fields.h"

#include <cstring>

namespace mq::plugin {

char const* field_type_name(FieldType type) {
    switch (type) {
    case FieldType::kFLOAT16: return "FLOAT16";
    case FieldType::kFLOAT32: return "FLOAT32";
    case FieldType::kFLOAT64: return "FLOAT64";
    case FieldType::kINT8: return "INT8";
    case FieldType::kINT16: return "INT16";
    case FieldType::kINT32: return "INT32";
    case FieldType::kCHAR: return "CHAR";
    case FieldType::kDIMS: return "DIMS";
    case FieldType::kUNKNOWN: return "UNKNOWN";
    case FieldType::kBF16: return "BF16";
    case FieldType::kINT64: return "INT64";
    case FieldType::kFP8: return "FP8";
    case FieldType::kINT4: return "INT4";
    case FieldType::kFP4: return "FP4";
    }
    return "invalid";
}

namespace {

template <typename I>
int64_t load_as_int64(void const* data) {
    I v;
    std::memcpy(&v, data, sizeof(I));  // field data need not be aligned
    return static_cast<int64_t>(v);
}

}  // namespace

std::string read_int_scalar(FieldView const& field, int64_t* value) {
    std::string const name = field.name != nullptr ? field.name : "<unnamed>";
    if (field.data == nullptr || field.length != 1) {
        return "field '" + name + "' must hold exactly one value (length " + std::to_string(field.length) + ")";
    }
    switch (field.type) {
    case FieldType::kINT8: *value = load_as_int64<int8_t>(field.data); return {};
    case FieldType::kINT16: *value = load_as_int64<int16_t>(field.data); return {};
    case FieldType::kINT32: *value = load_as_int64<int32_t>(field.data); return {};
    case FieldType::kINT64: *value = load_as_int64<int64_t>(field.data); return {};
    default: break;
    }
    return "field '" + name + "' must be an integer (INT32 from an ONNX INT attribute), got " +
        field_type_name(field.type);
}

std::string read_flag(FieldView const& field, int32_t* value) {
    int64_t v = 0;
    std::string err = read_int_scalar(field, &v);
    if (!err.empty()) {
        return err;
    }
    if (v != 0 && v != 1) {
        return std::string("field '") + field.name + "' must be 0 or 1, got " + std::to_string(v);
    }
    *value = static_cast<int32_t>(v);
    return {};
}

}  // namespace mq::plugin
