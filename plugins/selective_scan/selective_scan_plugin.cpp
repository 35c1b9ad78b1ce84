#include "selective_scan_plugin.h"

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
using scan::kNumScanInputs;
using scan::kNumScanOutputs;

constexpr char const* kName = kSelectiveScanName;

void report(std::string const& message) noexcept { log_error(kName, message.c_str()); }

bool has_expected_arity(int32_t nbInputs, int32_t nbOutputs) {
    std::string const problem = arity_problem(nbInputs, nbOutputs, kNumScanInputs, kNumScanOutputs);
    if (!problem.empty()) {
        report(problem);
    }
    return problem.empty();
}

// Shapes and types of the inputs as the TensorRT-independent checks see them.
template <typename Desc, typename GetDesc>
std::string check_inputs(Desc const* in, GetDesc get, scan::ScanSizes* sizes) {
    TensorShape shapes[kNumScanInputs];
    ScalarType types[kNumScanInputs];
    describe_tensors(in, get, kNumScanInputs, shapes, types);
    std::string err = scan::check_scan_types(types, kNumScanInputs);
    return err.empty() ? scan::check_scan_shapes(shapes, kNumScanInputs, sizes) : err;
}

}  // namespace

SelectiveScanPlugin::SelectiveScanPlugin(scan::ScanAttributes attrs)
    : mAttrs(attrs), mDescription(scan::describe(attrs)) {}


int32_t SelectiveScanPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        scan::ScanSizes sizes;
        std::string const err =
            check_inputs(in, [](nvinfer1::DynamicPluginTensorDesc const& d) -> auto const& { return d.desc; }, &sizes);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

int32_t SelectiveScanPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
    int32_t nbInputs) const noexcept {
    try {
        if (outputTypes == nullptr || inputTypes == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        ScalarType types[kNumScanInputs];
        for (int32_t i = 0; i < kNumScanInputs; ++i) {
            types[i] = to_scalar_type(inputTypes[i]);
        }
        std::string const err = scan::check_scan_types(types, kNumScanInputs);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        outputTypes[scan::kY] = inputTypes[scan::kX];
        outputTypes[scan::kFinalState] = DataType::kFLOAT;
        return 0;
    } catch (...) {
        return -1;
    }
}

int32_t SelectiveScanPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept {
    try {
        if (inputs == nullptr || outputs == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        TensorShape shapes[kNumScanInputs];
        known_extents(inputs, kNumScanInputs, shapes);
        scan::ScanSizes sizes;
        std::string const err = scan::check_scan_shapes(shapes, kNumScanInputs, &sizes);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        nvinfer1::DimsExprs const& x = inputs[scan::kX];
        outputs[scan::kY] = x;
        outputs[scan::kFinalState].nbDims = 3;
        outputs[scan::kFinalState].d[0] = x.d[0];                  // batch
        outputs[scan::kFinalState].d[1] = x.d[2];                  // dim
        outputs[scan::kFinalState].d[2] = inputs[scan::kA].d[1];   // dstate
        return 0;
    } catch (...) {
        return -1;
    }
}

bool SelectiveScanPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
    int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (inOut == nullptr || nbInputs != kNumScanInputs || nbOutputs != kNumScanOutputs || pos < 0 ||
        pos >= nbInputs + nbOutputs) {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR) {
        return false;
    }
    ScalarType const type = to_scalar_type(desc.type);
    ScalarType const x_type = pos == scan::kX ? type : to_scalar_type(inOut[scan::kX].desc.type);
    return scan::scan_io_type_supported(pos, type, x_type);
}

int32_t SelectiveScanPlugin::getNbOutputs() const noexcept { return kNumScanOutputs; }

size_t SelectiveScanPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept {
    if (inputs == nullptr || nbInputs != kNumScanInputs) {
        return 0;
    }
    // Enough for every shape of the profile (the plan's workspace is not monotonic in the shape).
    nvinfer1::Dims const& x = inputs[scan::kX].max;
    nvinfer1::Dims const& a = inputs[scan::kA].max;
    if (x.nbDims != 3 || a.nbDims != 2) {
        return 0;
    }
    return mq_selective_scan_workspace_bound(
        clamp_to_int32(x.d[0]), clamp_to_int32(x.d[1]), clamp_to_int32(x.d[2]), clamp_to_int32(a.d[1]));
}

char const* SelectiveScanPlugin::getTimingCacheID() noexcept { return mDescription.c_str(); }
char const* SelectiveScanPlugin::getMetadataString() noexcept { return mDescription.c_str(); }

int32_t SelectiveScanPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    try {
        if (in == nullptr || !has_expected_arity(nbInputs, nbOutputs)) {
            return -1;
        }
        scan::ScanSizes sizes;
        std::string const err =
            check_inputs(in, [](nvinfer1::PluginTensorDesc const& d) -> auto const& { return d; }, &sizes);
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
int32_t SelectiveScanPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs,
    void* workspace, cudaStream_t stream) noexcept {
    try {
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
            return -1;
        }
        scan::ScanSizes sizes;
        std::string const err =
            check_inputs(inputDesc, [](nvinfer1::PluginTensorDesc const& d) -> auto const& { return d; }, &sizes);
        if (!err.empty()) {
            report(err);
            return -1;
        }
        mq_selective_scan_args args{};
        args.dtype = to_mq_dtype(inputDesc[scan::kX].type);
        args.batch = static_cast<int32_t>(sizes.batch);
        args.seqlen = static_cast<int32_t>(sizes.seqlen);
        args.dim = static_cast<int32_t>(sizes.dim);
        args.dstate = static_cast<int32_t>(sizes.dstate);
        args.delta_softplus = mAttrs.delta_softplus;
        args.reverse = mAttrs.reverse;
        args.x = inputs[scan::kX];
        args.delta = inputs[scan::kDelta];
        args.A = static_cast<float const*>(inputs[scan::kA]);
        args.B = inputs[scan::kB];
        args.C = inputs[scan::kC];
        args.D = static_cast<float const*>(inputs[scan::kD]);
        args.delta_bias = static_cast<float const*>(inputs[scan::kDeltaBias]);
        args.z = inputs[scan::kZ];
        args.gate_scale = static_cast<float const*>(inputs[scan::kGateScale]);
        args.initial_state = nullptr;
        args.y = outputs[scan::kY];
        args.final_state = static_cast<float*>(outputs[scan::kFinalState]);
        args.workspace = workspace;
        // getWorkspaceSize reserved the bound over the profile, which covers this shape.
        args.workspace_bytes = mq_selective_scan_workspace_size(args.batch, args.seqlen, args.dim, args.dstate);
        mq_status const status = mq_selective_scan(&args, reinterpret_cast<mq_stream_t>(stream));
        if (status != MQ_SUCCESS) {
            report(std::string("enqueue failed: ") + mq_status_string(status));
            return -1;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}

nvinfer1::PluginFieldCollection const* SelectiveScanPlugin::getFieldsToSerialize() noexcept {
    try {
        return mSerialized.set(scan::scan_attribute_fields(mAttrs));
    } catch (std::exception const& e) {
        report(std::string("getFieldsToSerialize failed: ") + e.what());
    }
    return nullptr;
}

SelectiveScanCreator::SelectiveScanCreator()
    : mFieldNames{nvinfer1::PluginField{scan::kDeltaSoftplusField, nullptr, nvinfer1::PluginFieldType::kINT32, 1},
        nvinfer1::PluginField{scan::kReverseField, nullptr, nvinfer1::PluginFieldType::kINT32, 1}} {
    mFieldCollection.nbFields = 2;
    mFieldCollection.fields = mFieldNames;
}

// Phase kBUILD: fields from the ONNX parser (INT attributes as kINT32) or from user code.
// Phase kRUNTIME: exactly what getFieldsToSerialize returned. Both parse the same way.
nvinfer1::IPluginV3* SelectiveScanCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept {
    try {
        std::vector<FieldView> const views = to_field_views(fc);
        scan::ScanAttributes attrs;
        std::string const err = scan::parse_scan_attributes(views.data(), static_cast<int32_t>(views.size()), &attrs);
        if (!err.empty()) {
            report(std::string("cannot create plugin for node '") + (name != nullptr ? name : "") + "' (" +
                (phase == nvinfer1::TensorRTPhase::kBUILD ? "build" : "runtime") + " phase): " + err);
            return nullptr;
        }
        return new SelectiveScanPlugin(attrs);
    } catch (std::exception const& e) {
        report(std::string("createPlugin failed: ") + e.what());
    }
    return nullptr;
}

nvinfer1::PluginFieldCollection const* SelectiveScanCreator::getFieldNames() noexcept { return &mFieldCollection; }

}  // namespace mq::plugin
