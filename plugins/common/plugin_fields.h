// Plugin attribute fields without TensorRT: a view type that mirrors nvinfer1::PluginField, and
// readers that accept what the ONNX parser (kINT32) and Python users (any integer width) send.
#pragma once

#include <cstdint>
#include <string>

namespace mq::plugin {

// Same numbering as nvinfer1::PluginFieldType (checked by static_asserts in trt_adapters.h).
enum class FieldType : int32_t {
    kFLOAT16 = 0,
    kFLOAT32 = 1,
    kFLOAT64 = 2,
    kINT8 = 3,
    kINT16 = 4,
    kINT32 = 5,
    kCHAR = 6,
    kDIMS = 7,
    kUNKNOWN = 8,
    kBF16 = 9,
    kINT64 = 10,
    kFP8 = 11,
    kINT4 = 12,
    kFP4 = 13,
};

struct FieldView {
    char const* name{nullptr};
    void const* data{nullptr};
    FieldType type{FieldType::kUNKNOWN};
    int32_t length{0};  // elements
};

char const* field_type_name(FieldType type);

// One integer of any width (kINT8/16/32/64). Returns "" on success, else a message.
std::string read_int_scalar(FieldView const& field, int64_t* value);

// An integer that must be 0 or 1.
std::string read_flag(FieldView const& field, int32_t* value);

}  // namespace mq::plugin
