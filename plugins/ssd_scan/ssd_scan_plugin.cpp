#include "ssd_scan_plugin.h"

#include <algorithm>
#include <climits>
#include <exception>
#include <new>

#include "common/plugin_log.h"
#include "common/plugin_names.h"
#include "mq_kernels.h"

namespace mq::plugin {
namespace {

using nvinfer1::DataType;
using ssd::kNumSsdInputs;
using ssd::kNumSsdOutputs;

constexpr char const* kName = kSsdScanName;

void report(std::string const& message) noexcept { log_error(kName, message.c_str()); }

bool has_expected_arity(int32_t nbInputs, int32_t nbOutputs) {
    std::string const problem = arity_problem(nbInputs, nbOutputs, kNumSsdInputs, kNumSsdOutputs);
    if (!problem.empty()) {
        report(problem);
    }
    return problem.empty();
}

// Shapes and types of the inputs as the TensorRT-independent checks see them.
template <typename Desc, typename GetDesc>
std::string check_inputs(Desc const* in, GetDesc get, ssd::SsdAttributes const& attrs, ssd::SsdSizes* sizes) {
    TensorShape shapes[kNumSsdInputs];
    ScalarType types[kNumSsdInputs];
    describe_tensors(in, get, kNumSsdInputs, shapes, types);
    std::string err = ssd::check_ssd_types(types, kNumSsdInputs);
    return err.empty() ? ssd::check_ssd_shapes(shapes, kNumSsdInputs, attrs, sizes) : err;
}

}  // namespace

SsdScanPlugin::SsdScanPlugin(ssd::SsdAttributes attrs) : mAttrs(attrs), mDescription(ssd::describe(attrs)) {}

int32_t SsdScanPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        ssd::SsdSizes sizes;
        std::string const err = check_inputs(
            in, [](nvinfer1::DynamicPluginTensorDesc const& d) -> auto const& { return d.desc; }, mAttrs, &sizes);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

int32_t SsdScanPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
    int32_t nbInputs) const noexcept {
    try {
        if (outputTypes == nullptr || inputTypes == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        ScalarType types[kNumSsdInputs];
        for (int32_t i = 0; i < kNumSsdInputs; ++i) {
            types[i] = to_scalar_type(inputTypes[i]);
        }
        std::string const err = ssd::check_ssd_types(types, kNumSsdInputs);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        outputTypes[ssd::kY] = inputTypes[ssd::kX];
        outputTypes[ssd::kFinalState] = DataType::kFLOAT;
        return 0;
    } catch (...) {
        return -1;
    }
}

int32_t SsdScanPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept {
    try {
        if (inputs == nullptr || outputs == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        TensorShape shapes[kNumSsdInputs];
        known_extents(inputs, kNumSsdInputs, shapes);
        ssd::SsdSizes sizes;
        std::string const err = ssd::check_ssd_shapes(shapes, kNumSsdInputs, mAttrs, &sizes);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        nvinfer1::DimsExprs const& x = inputs[ssd::kX];
        nvinfer1::IDimensionExpr const* head_dim = exprBuilder.constant(mAttrs.head_dim);
        nvinfer1::IDimensionExpr const* groups = exprBuilder.constant(mAttrs.n_groups);
        nvinfer1::IDimensionExpr const* dstate =
            exprBuilder.operation(nvinfer1::DimensionOperation::kFLOOR_DIV, *inputs[ssd::kB].d[2], *groups);
        if (head_dim == nullptr || groups == nullptr || dstate == nullptr) {
            report("could not build the final_state shape expressions");
            return -1;
        }
        outputs[ssd::kY] = x;
        outputs[ssd::kFinalState].nbDims = 4;
        outputs[ssd::kFinalState].d[0] = x.d[0];                   // batch
        outputs[ssd::kFinalState].d[1] = inputs[ssd::kA].d[0];     // heads
        outputs[ssd::kFinalState].d[2] = head_dim;
        outputs[ssd::kFinalState].d[3] = dstate;
        return 0;
    } catch (...) {
        return -1;
    }
}

bool SsdScanPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (inOut == nullptr || nbInputs != kNumSsdInputs || nbOutputs != kNumSsdOutputs || pos < 0 ||
        pos >= nbInputs + nbOutputs) {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR) {
        return false;
    }
    ScalarType const type = to_scalar_type(desc.type);
    ScalarType const x_type = pos == ssd::kX ? type : to_scalar_type(inOut[ssd::kX].desc.type);
    return ssd::ssd_io_type_supported(pos, type, x_type);
}

int32_t SsdScanPlugin::getNbOutputs() const noexcept { return kNumSsdOutputs; }

size_t SsdScanPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept {
    if (inputs == nullptr || nbInputs != kNumSsdInputs) {
        return 0;
    }
    // Enough for every shape of the profile; heads and d_state are fixed by the weights.
    nvinfer1::Dims const& x = inputs[ssd::kX].max;
    nvinfer1::Dims const& a = inputs[ssd::kA].max;
    nvinfer1::Dims const& b = inputs[ssd::kB].max;
    if (x.nbDims != 3 || a.nbDims != 1 || b.nbDims != 3 || mAttrs.n_groups < 1) {
        return 0;
    }
    return mq_ssd_scan_workspace_bound(clamp_to_int32(x.d[0]), clamp_to_int32(x.d[1]), clamp_to_int32(a.d[0]),
        mAttrs.head_dim, clamp_to_int32(b.d[2] / mAttrs.n_groups));
}

char const* SsdScanPlugin::getTimingCacheID() noexcept { return mDescription.c_str(); }
char const* SsdScanPlugin::getMetadataString() noexcept { return mDescription.c_str(); }

int32_t SsdScanPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        ssd::SsdSizes sizes;
        std::string const err =
            check_inputs(in, [](nvinfer1::PluginTensorDesc const& d) -> auto const& { return d; }, mAttrs, &sizes);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

// Reads only dims and types from the descriptors, never tensor values: safe on the garbage data
// TensorRT feeds while timing. No allocation, no synchronization.
int32_t SsdScanPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* workspace, cudaStream_t stream) noexcept {
    try {
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
            return -1;
        }
        ssd::SsdSizes sizes;
        std::string const err = check_inputs(
            inputDesc, [](nvinfer1::PluginTensorDesc const& d) -> auto const& { return d; }, mAttrs, &sizes);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        mq_ssd_scan_args args{};
        args.dtype = to_mq_dtype(inputDesc[ssd::kX].type);
        args.batch = static_cast<int32_t>(sizes.batch);
        args.seqlen = static_cast<int32_t>(sizes.seqlen);
        args.heads = static_cast<int32_t>(sizes.heads);
        args.head_dim = mAttrs.head_dim;
        args.n_groups = mAttrs.n_groups;
        args.dstate = static_cast<int32_t>(sizes.dstate);
        args.dt_softplus = mAttrs.dt_softplus;
        args.dt_min = mAttrs.dt_min;
        args.dt_max = mAttrs.dt_max;
        args.x = inputs[ssd::kX];
        args.dt = inputs[ssd::kDt];
        args.A = static_cast<float const*>(inputs[ssd::kA]);
        args.B = inputs[ssd::kB];
        args.C = inputs[ssd::kC];
        args.D = static_cast<float const*>(inputs[ssd::kD]);
        args.dt_bias = static_cast<float const*>(inputs[ssd::kDtBias]);
        args.initial_state = nullptr;
        args.y = outputs[ssd::kY];
        args.final_state = static_cast<float*>(outputs[ssd::kFinalState]);
        args.workspace = workspace;
        // getWorkspaceSize reserved the bound over the profile, which covers this shape (tested for
        // every plan in plugins/tests/test_ssd_scan_args.cpp); TensorRT does not tell enqueue the
        // size it allocated, so the C API's size check sees this shape's need, not the buffer.
        args.workspace_bytes =
            mq_ssd_scan_workspace_size(args.batch, args.seqlen, args.heads, args.head_dim, args.dstate);
        mq_status const status = mq_ssd_scan(&args, reinterpret_cast<mq_stream_t>(stream));
        if (status != MQ_SUCCESS) {
            report(std::string("enqueue failed: ") + mq_status_string(status));
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

nvinfer1::PluginFieldCollection const* SsdScanPlugin::getFieldsToSerialize() noexcept {
    try {
        return mSerialized.set(ssd::ssd_attribute_fields(mAttrs));
    } catch (std::exception const& e) {
        report(std::string("getFieldsToSerialize failed: ") + e.what());
    }
    return nullptr;
}

SsdScanCreator::SsdScanCreator()
    : mFieldNames{nvinfer1::PluginField{ssd::kHeadDimField, nullptr, nvinfer1::PluginFieldType::kINT32, 1},
        nvinfer1::PluginField{ssd::kGroupsField, nullptr, nvinfer1::PluginFieldType::kINT32, 1},
        nvinfer1::PluginField{ssd::kDtSoftplusField, nullptr, nvinfer1::PluginFieldType::kINT32, 1},
        nvinfer1::PluginField{ssd::kDtMinField, nullptr, nvinfer1::PluginFieldType::kFLOAT32, 1},
        nvinfer1::PluginField{ssd::kDtMaxField, nullptr, nvinfer1::PluginFieldType::kFLOAT32, 1}} {
    mFieldCollection.nbFields = ssd::kNumSsdFields;
    mFieldCollection.fields = mFieldNames;
}

// Phase kBUILD: fields from the ONNX parser (INT as kINT32, FLOAT as kFLOAT32; only the names
// getFieldNames lists are passed) or from user code. Phase kRUNTIME: what getFieldsToSerialize
// returned. Both parse the same way.
nvinfer1::IPluginV3* SsdScanCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept {
    try {
        std::vector<FieldView> const views = to_field_views(fc);
        ssd::SsdAttributes attrs;
        std::string const err = ssd::parse_ssd_attributes(views.data(), static_cast<int32_t>(views.size()), &attrs);
        if (!err.empty()) {
            report(std::string("cannot create plugin for node '") + (name != nullptr ? name : "") + "' (" +
                (phase == nvinfer1::TensorRTPhase::kBUILD ? "build" : "runtime") + " phase): " + err);
            return nullptr;
        }
        return new SsdScanPlugin(attrs);
    } catch (std::exception const& e) {
        report(std::string("createPlugin failed: ") + e.what());
    }
    return nullptr;
}

nvinfer1::PluginFieldCollection const* SsdScanCreator::getFieldNames() noexcept { return &mFieldCollection; }

}  // namespace mq::plugin
