// The IPluginV3 methods that every mq_deploy op plugin implements the same way, written once:
// arity, the TensorRT-independent type and shape checks of the op's *_args.h at every phase that
// sees the inputs (build queries, configurePlugin, onShapeChange, enqueue), output types, format
// combinations, and the attribute fields (the creator's names, createPlugin, serialization,
// timing-cache ID). A plugin derives `OpPlugin<Itself, Op>` and writes only what is its own:
//
//   std::string output_shapes(DimsExprs const* inputs, DimsExprs* outputs, IExprBuilder&) const;
//   mq_status launch(Op::Sizes const&, PluginTensorDesc const* inputDesc, void const* const* inputs,
//       void* const* outputs, void* workspace, cudaStream_t) const;
//   getWorkspaceSize (an override; none by default).
//
// `Op` names the op's contract (SelectiveScanOp in selective_scan_plugin.h is one):
//   kName, kNumInputs, kNumOutputs, kNumFields; Attributes, Sizes;
//   check_types(ScalarType const*, count), check_shapes(TensorShape const*, count, Attributes, Sizes*),
//   io_type_supported(pos, type, x_type) (x is input 0 of every op), output_types(in, out),
//   parse(FieldView const*, count, Attributes*), fields(Attributes) (kNumFields views), describe(Attributes).
#pragma once

#include <NvInferRuntime.h>

#include <array>
#include <exception>
#include <string>
#include <vector>

#include "common/plugin_base.h"
#include "common/plugin_log.h"
#include "common/trt_adapters.h"
#include "selective_scan/mq_kernels.h"

namespace mq::plugin {

template <typename Derived, typename OpT>
class OpPlugin : public PluginV3Base<Derived> {
public:
    using Op = OpT;
    using Attributes = typename Op::Attributes;
    using Sizes = typename Op::Sizes;
    static constexpr char const* kName = Op::kName;

    explicit OpPlugin(Attributes attrs) : mAttrs(attrs), mDescription(Op::describe(attrs)) {}

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept override {
        return guarded("configurePlugin", [&] {
            Sizes sizes;
            return in != nullptr && has_arity(nbInputs, nbOutputs) && checked(in, dynamic_desc, &sizes) ? 0 : -1;
        });
    }

    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override {
        return guarded("getOutputDataTypes", [&] {
            if (outputTypes == nullptr || inputTypes == nullptr || !has_arity(nbInputs, nbOutputs)) {
                return -1;
            }
            ScalarType types[Op::kNumInputs];
            for (int32_t i = 0; i < Op::kNumInputs; ++i) {
                types[i] = to_scalar_type(inputTypes[i]);
            }
            if (!ok(Op::check_types(types, Op::kNumInputs))) {
                return -1;
            }
            Op::output_types(inputTypes, outputTypes);
            return 0;
        });
    }

    // The checks see the extents that are build-time constants; the plugin builds the expressions.
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override {
        return guarded("getOutputShapes", [&] {
            if (inputs == nullptr || outputs == nullptr || !has_arity(nbInputs, nbOutputs)) {
                return -1;
            }
            TensorShape shapes[Op::kNumInputs];
            known_extents(inputs, Op::kNumInputs, shapes);
            Sizes sizes;
            return ok(Op::check_shapes(shapes, Op::kNumInputs, mAttrs, &sizes)) &&
                    ok(derived().output_shapes(inputs, outputs, exprBuilder))
                ? 0
                : -1;
        });
    }

    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override {
        if (inOut == nullptr || nbInputs != Op::kNumInputs || nbOutputs != Op::kNumOutputs || pos < 0 ||
            pos >= nbInputs + nbOutputs) {
            return false;
        }
        nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != nvinfer1::TensorFormat::kLINEAR) {
            return false;
        }
        ScalarType const type = to_scalar_type(desc.type);
        ScalarType const x_type = pos == 0 ? type : to_scalar_type(inOut[0].desc.type);
        return Op::io_type_supported(pos, type, x_type);
    }

    int32_t getNbOutputs() const noexcept override { return Op::kNumOutputs; }

    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
        nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override {
        return 0;
    }

    // The attributes, "delta_softplus=1;reverse=0": engines built with other attributes never share timings.
    char const* getTimingCacheID() noexcept override { return mDescription.c_str(); }
    char const* getMetadataString() noexcept override { return mDescription.c_str(); }

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept override {
        return guarded("onShapeChange", [&] {
            Sizes sizes;
            return in != nullptr && has_arity(nbInputs, nbOutputs) && checked(in, same_desc, &sizes) ? 0 : -1;
        });
    }

    // Reads only dims and types from the descriptors, never tensor values: safe on the garbage data
    // TensorRT feeds while timing. No allocation but the checks' messages, no synchronization.
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* /*outputDesc*/,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
        return guarded("enqueue", [&] {
            Sizes sizes;
            if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr || !checked(inputDesc, same_desc, &sizes)) {
                return -1;
            }
            mq_status const status = derived().launch(sizes, inputDesc, inputs, outputs, workspace, stream);
            if (status != MQ_SUCCESS) {
                ok(std::string("enqueue failed: ") + mq_status_string(status));
                return -1;
            }
            return 0;
        });
    }

    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override {
        try {
            return mSerialized.set(Op::fields(mAttrs));
        } catch (std::exception const& e) {
            log_error(kName, e.what());
        }
        return nullptr;
    }

    // "" or the problem, reported to TensorRT's logger.
    static bool ok(std::string const& problem) noexcept {
        if (!problem.empty()) {
            log_error(kName, problem.c_str());
        }
        return problem.empty();
    }

protected:
    OpPlugin(OpPlugin const&) = default;
    OpPlugin& operator=(OpPlugin const&) = delete;
    ~OpPlugin() override = default;

    Attributes mAttrs;

private:
    // Each descriptor's PluginTensorDesc, at build time (configurePlugin) and at run time.
    static nvinfer1::PluginTensorDesc const& dynamic_desc(nvinfer1::DynamicPluginTensorDesc const& d) { return d.desc; }
    static nvinfer1::PluginTensorDesc const& same_desc(nvinfer1::PluginTensorDesc const& d) { return d; }

    Derived const& derived() const { return static_cast<Derived const&>(*this); }

    static bool has_arity(int32_t nbInputs, int32_t nbOutputs) {
        return ok(arity_problem(nbInputs, nbOutputs, Op::kNumInputs, Op::kNumOutputs));
    }

    // The inputs' types, then their shapes, as the TensorRT-independent checks see them.
    template <typename Desc, typename GetDesc>
    bool checked(Desc const* in, GetDesc get, Sizes* sizes) const {
        TensorShape shapes[Op::kNumInputs];
        ScalarType types[Op::kNumInputs];
        describe_tensors(in, get, Op::kNumInputs, shapes, types);
        return ok(Op::check_types(types, Op::kNumInputs)) && ok(Op::check_shapes(shapes, Op::kNumInputs, mAttrs, sizes));
    }

    // TensorRT's methods are noexcept: an exception (bad_alloc building a message) is a -1.
    template <typename F>
    static int32_t guarded(char const* method, F&& body) noexcept {
        try {
            return body();
        } catch (std::exception const& e) {
            log_error(kName, method);
            log_error(kName, e.what());
        } catch (...) {
            log_error(kName, method);
        }
        return -1;
    }

    std::string mDescription;  // Op::describe(mAttrs): timing-cache ID and engine metadata
    SerializedFields mSerialized;
};

// The creator of an OpPlugin: the op's field names and types (what the ONNX parser passes), and
// createPlugin from parser fields (kBUILD) or serialized ones (kRUNTIME), which parse the same way.
template <typename Plugin>
class OpCreator final : public PluginCreatorBase<Plugin> {
public:
    using Op = typename Plugin::Op;

    OpCreator() {
        typename Op::Attributes const defaults{};
        auto const views = Op::fields(defaults);
        static_assert(std::tuple_size<decltype(views)>::value == Op::kNumFields, "fields() lists kNumFields views");
        for (size_t i = 0; i < mFieldNames.size(); ++i) {
            mFieldNames[i] = to_plugin_field(FieldView{views[i].name, nullptr, views[i].type, views[i].length});
        }
        mFieldCollection.nbFields = Op::kNumFields;
        mFieldCollection.fields = mFieldNames.data();
    }

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override {
        try {
            std::vector<FieldView> const views = to_field_views(fc);
            typename Op::Attributes attrs{};
            std::string const err = Op::parse(views.data(), static_cast<int32_t>(views.size()), &attrs);
            if (!err.empty()) {
                Plugin::ok(std::string("cannot create plugin for node '") + (name != nullptr ? name : "") + "' (" +
                    (phase == nvinfer1::TensorRTPhase::kBUILD ? "build" : "runtime") + " phase): " + err);
                return nullptr;
            }
            return new Plugin(attrs);
        } catch (std::exception const& e) {
            log_error(Op::kName, "createPlugin failed");
            log_error(Op::kName, e.what());
        }
        return nullptr;
    }

    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldCollection; }

private:
    std::array<nvinfer1::PluginField, Op::kNumFields> mFieldNames{};
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

}  // namespace mq::plugin
