// Conversions between TensorRT types and the TensorRT-independent ones in this folder.
#pragma once

#include <NvInferRuntime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "plugin_fields.h"
#include "selective_scan/mq_kernels.h"
#include "tensor_shape.h"

namespace mq::plugin {

// FieldType mirrors PluginFieldType value for value, so a FieldView and a PluginField convert by cast.
#define MQ_SAME_FIELD_TYPE(name) \
    static_assert(static_cast<int32_t>(FieldType::name) == static_cast<int32_t>(nvinfer1::PluginFieldType::name), \
        "FieldType::" #name " differs from nvinfer1::PluginFieldType")
MQ_SAME_FIELD_TYPE(kFLOAT16);
MQ_SAME_FIELD_TYPE(kFLOAT32);
MQ_SAME_FIELD_TYPE(kFLOAT64);
MQ_SAME_FIELD_TYPE(kINT8);
MQ_SAME_FIELD_TYPE(kINT16);
MQ_SAME_FIELD_TYPE(kINT32);
MQ_SAME_FIELD_TYPE(kCHAR);
MQ_SAME_FIELD_TYPE(kDIMS);
MQ_SAME_FIELD_TYPE(kUNKNOWN);
MQ_SAME_FIELD_TYPE(kBF16);
MQ_SAME_FIELD_TYPE(kINT64);
#undef MQ_SAME_FIELD_TYPE
static_assert(kMaxRank == nvinfer1::Dims::MAX_DIMS, "TensorShape must hold any nvinfer1::Dims");

inline ScalarType to_scalar_type(nvinfer1::DataType type) {
    switch (type) {
    case nvinfer1::DataType::kFLOAT: return ScalarType::kFloat32;
    case nvinfer1::DataType::kHALF: return ScalarType::kFloat16;
    case nvinfer1::DataType::kBF16: return ScalarType::kBFloat16;
    case nvinfer1::DataType::kINT8: return ScalarType::kInt8;
    default: return ScalarType::kOther;
    }
}

inline mq_dtype to_mq_dtype(nvinfer1::DataType type) {
    return type == nvinfer1::DataType::kHALF ? MQ_FLOAT16 : type == nvinfer1::DataType::kBF16 ? MQ_BFLOAT16 : MQ_FLOAT32;
}

inline TensorShape to_shape(nvinfer1::Dims const& dims) {
    TensorShape shape;
    shape.rank = dims.nbDims < 0 ? 0 : (dims.nbDims > kMaxRank ? kMaxRank : dims.nbDims);
    for (int32_t i = 0; i < shape.rank; ++i) {
        shape.dims[i] = dims.d[i];
    }
    if (dims.nbDims < 0 || dims.nbDims > kMaxRank) {
        shape.rank = -1;  // fails every rank check
    }
    return shape;
}

// A profile extent as the kernels' int32 sizes (workspace bounds): negative as 0, huge as INT32_MAX.
inline int32_t clamp_to_int32(int64_t v) { return static_cast<int32_t>(std::clamp<int64_t>(v, 0, INT32_MAX)); }

// Shapes and element types of `count` tensors as the TensorRT-independent checks take them; `get`
// maps each descriptor (PluginTensorDesc or DynamicPluginTensorDesc) to its PluginTensorDesc.
template <typename Desc, typename GetDesc>
void describe_tensors(Desc const* descs, GetDesc get, int32_t count, TensorShape* shapes, ScalarType* types) {
    for (int32_t i = 0; i < count; ++i) {
        nvinfer1::PluginTensorDesc const& d = get(descs[i]);
        shapes[i] = to_shape(d.dims);
        types[i] = to_scalar_type(d.type);
    }
}

// getOutputShapes' view of its inputs: ranks always, extents where they are build-time constants
// (-1 where they are runtime dimensions).
inline void known_extents(nvinfer1::DimsExprs const* inputs, int32_t count, TensorShape* shapes) {
    for (int32_t i = 0; i < count; ++i) {
        nvinfer1::DimsExprs const& e = inputs[i];
        shapes[i].rank = (e.nbDims >= 0 && e.nbDims <= kMaxRank) ? e.nbDims : -1;
        for (int32_t d = 0; d < shapes[i].rank; ++d) {
            shapes[i].dims[d] = (e.d[d] != nullptr && e.d[d]->isConstant()) ? e.d[d]->getConstantValue() : -1;
        }
    }
}

// "expected N inputs and M outputs, got ..." or "" when the counts are the op's.
inline std::string arity_problem(int32_t nbInputs, int32_t nbOutputs, int32_t wantInputs, int32_t wantOutputs) {
    if (nbInputs == wantInputs && nbOutputs == wantOutputs) {
        return {};
    }
    return "expected " + std::to_string(wantInputs) + " inputs and " + std::to_string(wantOutputs) +
        (wantOutputs == 1 ? " output, got " : " outputs, got ") +
        std::to_string(nbInputs) + " and " + std::to_string(nbOutputs);
}

inline FieldView to_field_view(nvinfer1::PluginField const& f) {
    return FieldView{f.name, f.data, static_cast<FieldType>(f.type), f.length};
}

inline nvinfer1::PluginField to_plugin_field(FieldView const& f) {
    return nvinfer1::PluginField{f.name, f.data, static_cast<nvinfer1::PluginFieldType>(f.type), f.length};
}

inline std::vector<FieldView> to_field_views(nvinfer1::PluginFieldCollection const* fc) {
    std::vector<FieldView> views;
    if (fc != nullptr && fc->fields != nullptr) {
        views.reserve(static_cast<size_t>(fc->nbFields > 0 ? fc->nbFields : 0));
        for (int32_t i = 0; i < fc->nbFields; ++i) {
            views.push_back(to_field_view(fc->fields[i]));
        }
    }
    return views;
}

// Storage behind getFieldsToSerialize(): TensorRT keeps the returned pointers until the next call.
// Copying yields an empty store, so a clone never points into another plugin's members.
class SerializedFields {
public:
    SerializedFields() = default;
    SerializedFields(SerializedFields const&) {}
    SerializedFields& operator=(SerializedFields const&) { return *this; }

    template <typename Views>
    nvinfer1::PluginFieldCollection const* set(Views const& views) {
        mFields.clear();
        for (FieldView const& v : views) {
            mFields.push_back(to_plugin_field(v));
        }
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
        return &mCollection;
    }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

}  // namespace mq::plugin
