// libmq_plugin_harness: see plugin_harness.h. Each entry point walks a plugin through the calls
// TensorRT makes, in TensorRT's order, and checks every answer against the op contract
// (plugins/selective_scan/README.md) computed here independently of the plugin's own argument checks.
#include "plugin_harness.h"

#include <NvInferRuntime.h>

#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "folding_expr_builder.h"
#include "harness_common.h"
#include "hadamard/hadamard_plugin.h"
#include "selective_scan/mq_kernels.h"
#include "selective_scan/selective_scan_plugin.h"

namespace mq::harness {
namespace {

// ---- SelectiveScan --------------------------------------------------------------------------------

constexpr int32_t kScanInputs = 9;
constexpr int32_t kScanOutputs = 2;
enum { kX, kDelta, kA, kB, kC, kD, kDeltaBias, kZ, kGateScale, kY, kState };

bool is_activation_position(int32_t pos) {
    return pos == kX || pos == kDelta || pos == kB || pos == kC || pos == kZ || pos == kY;
}

// Expected supportsFormatCombination answer, from the contract alone.
bool scan_combination_allowed(int32_t pos, DataType type, TensorFormat format, DataType x_type) {
    if (format != TensorFormat::kLINEAR) {
        return false;
    }
    if (pos == kX) {
        return is_activation(type);
    }
    return is_activation_position(pos) ? type == x_type : type == DataType::kFLOAT;
}

struct ScanShapes {
    std::vector<int64_t> extents[kScanInputs + kScanOutputs];
};

ScanShapes scan_shapes(int64_t b, int64_t l, int64_t d, int64_t n) {
    ScanShapes s;
    s.extents[kX] = s.extents[kDelta] = s.extents[kZ] = s.extents[kY] = {b, l, d};
    s.extents[kB] = s.extents[kC] = {b, l, n};
    s.extents[kA] = {d, n};
    s.extents[kD] = s.extents[kDeltaBias] = s.extents[kGateScale] = {d};
    s.extents[kState] = {b, d, n};
    return s;
}

DataType scan_type(int32_t pos, DataType x_type) {
    return is_activation_position(pos) ? x_type : DataType::kFLOAT;
}

ParserFields scan_parser_fields(mq::plugin::SelectiveScanCreator& creator, mqh_scan_problem const& p) {
    nvinfer1::PluginFieldCollection const* names = creator.getFieldNames();
    require(names != nullptr && names->nbFields == 2 && names->fields != nullptr, "getFieldNames: expected 2 fields");
    ParserFields pf;
    pf.values.reserve(2);
    for (int32_t i = 0; i < names->nbFields; ++i) {
        std::string const name = names->fields[i].name != nullptr ? names->fields[i].name : "";
        require(name == "delta_softplus" || name == "reverse", "getFieldNames lists unknown field '" + name + "'");
        pf.values.push_back(static_cast<int32_t>(name == "reverse" ? p.reverse : p.delta_softplus));
        pf.fields.push_back(nvinfer1::PluginField{names->fields[i].name, &pf.values.back(),
            nvinfer1::PluginFieldType::kINT32, 1});
    }
    pf.collection.nbFields = static_cast<int32_t>(pf.fields.size());
    pf.collection.fields = pf.fields.data();
    return pf;
}

void check_scan_output_types(nvinfer1::IPluginV3OneBuild& build, DataType x_type) {
    DataType in[kScanInputs];
    for (int32_t i = 0; i < kScanInputs; ++i) {
        in[i] = scan_type(i, x_type);
    }
    DataType out[kScanOutputs] = {DataType::kINT8, DataType::kINT8};
    require(build.getOutputDataTypes(out, kScanOutputs, in, kScanInputs) == 0, "getOutputDataTypes failed");
    require(out[0] == x_type && out[1] == DataType::kFLOAT, "getOutputDataTypes: y must be x's type, state float32");
}

// Output shapes with batch and seqlen dynamic (as exported) and with every extent constant.
void check_scan_output_shapes(nvinfer1::IPluginV3OneBuild& build, mqh_scan_problem const& p) {
    for (bool dynamic : {true, false}) {
        FoldingExprBuilder eb;
        int64_t const b = dynamic ? -1 : p.batch;
        int64_t const l = dynamic ? -1 : p.seqlen;
        ScanShapes const s = scan_shapes(b, l, p.dim, p.dstate);
        DimsExprs in[kScanInputs];
        for (int32_t i = 0; i < kScanInputs; ++i) {
            in[i].nbDims = static_cast<int32_t>(s.extents[i].size());
            for (int32_t k = 0; k < in[i].nbDims; ++k) {
                in[i].d[k] = eb.dim(s.extents[i][k]);
            }
        }
        DimsExprs out[kScanOutputs]{};
        require(build.getOutputShapes(in, kScanInputs, nullptr, 0, out, kScanOutputs, eb) == 0, "getOutputShapes failed");
        for (int32_t o = 0; o < kScanOutputs; ++o) {
            std::vector<int64_t> const& want = s.extents[kY + o];
            require(out[o].nbDims == static_cast<int32_t>(want.size()), "getOutputShapes: wrong output rank");
            for (int32_t k = 0; k < out[o].nbDims; ++k) {
                DimsExprs const& e = out[o];
                bool const known = e.d[k] != nullptr && e.d[k]->isConstant();
                require(known == (want[k] >= 0) && (!known || e.d[k]->getConstantValue() == want[k]),
                    "getOutputShapes: output " + std::to_string(o) + " extent " + std::to_string(k) + " is wrong");
            }
        }
    }
}

void check_scan_formats(nvinfer1::IPluginV3OneBuild& build) {
    int mismatches = 0;
    std::string first;
    for (DataType x_type : kAllTypes) {
        ScanShapes const s = scan_shapes(-1, -1, 8, 16);
        DynamicPluginTensorDesc io[kScanInputs + kScanOutputs]{};
        for (int32_t i = 0; i < kScanInputs + kScanOutputs; ++i) {
            io[i].desc = make_desc(s.extents[i], scan_type(i, x_type));
        }
        io[kX].desc.type = x_type;
        for (int32_t pos = 0; pos < kScanInputs + kScanOutputs; ++pos) {
            if (pos > kX && !is_activation(x_type)) {
                break;  // TensorRT never asks about later positions once x is rejected
            }
            for (DataType type : kAllTypes) {
                for (TensorFormat format : kSomeFormats) {
                    DynamicPluginTensorDesc trial[kScanInputs + kScanOutputs];
                    std::memcpy(trial, io, sizeof(io));
                    trial[pos].desc.type = type;
                    trial[pos].desc.format = format;
                    bool const got = build.supportsFormatCombination(pos, trial, kScanInputs, kScanOutputs);
                    bool const want = scan_combination_allowed(pos, type, format, pos == kX ? type : x_type);
                    if (got != want) {
                        ++mismatches;
                        if (first.empty()) {
                            first = "pos " + std::to_string(pos) + " type " + std::to_string(static_cast<int>(type)) +
                                " format " + std::to_string(static_cast<int>(format)) + " x type " +
                                std::to_string(static_cast<int>(x_type));
                        }
                    }
                }
            }
        }
    }
    require(mismatches == 0, "supportsFormatCombination disagrees with the contract " + std::to_string(mismatches) +
        " times, first at " + first);
}

// What configurePlugin and getWorkspaceSize see: runtime extents -1, the profile in min/opt/max.
void scan_dynamic_descs(mqh_scan_problem const& p, DynamicPluginTensorDesc* io) {
    DataType const x_type = to_trt(p.dtype);
    ScanShapes const dyn = scan_shapes(-1, -1, p.dim, p.dstate);
    ScanShapes const lo = scan_shapes(1, 1, p.dim, p.dstate);
    ScanShapes const opt = scan_shapes(p.batch, p.seqlen, p.dim, p.dstate);
    ScanShapes const hi = scan_shapes(p.max_batch, p.max_seqlen, p.dim, p.dstate);
    for (int32_t i = 0; i < kScanInputs + kScanOutputs; ++i) {
        io[i].desc = make_desc(dyn.extents[i], scan_type(i, x_type));
        io[i].min = make_dims(lo.extents[i]);
        io[i].opt = make_dims(opt.extents[i]);
        io[i].max = make_dims(hi.extents[i]);
    }
}

struct ScanPlugins {
    mq::plugin::SelectiveScanCreator creator;
    PluginPtr build;
    int64_t workspace{-1};
};

// Creation and every build-phase query. Returns the build-phase plugin and its workspace request.
void scan_build_phase(mqh_scan_problem const& p, ScanPlugins* out) {
    require(p.dtype == MQ_FLOAT32 || p.dtype == MQ_FLOAT16 || p.dtype == MQ_BFLOAT16, "bad dtype");
    require(p.batch >= 1 && p.seqlen >= 1 && p.dim >= 1 && p.dstate >= 1 && p.max_batch >= p.batch &&
            p.max_seqlen >= p.seqlen, "bad problem sizes");
    check_creator_names(out->creator, "SelectiveScan");
    step("creator: name, version, namespace, interface kind");
    ParserFields const pf = scan_parser_fields(out->creator, p);
    step("creator: getFieldNames lists delta_softplus, reverse");
    out->build.reset(out->creator.createPlugin("harness_scan", &pf.collection, nvinfer1::TensorRTPhase::kBUILD));
    require(out->build != nullptr, "createPlugin(kBUILD) returned null for parser-typed fields");
    Capabilities const caps = capabilities(out->build.get(), "SelectiveScan");
    step("createPlugin(kBUILD) from kINT32 fields; capabilities; names");
    require(caps.build->getNbOutputs() == kScanOutputs, "getNbOutputs != 2");
    check_scan_output_types(*caps.build, to_trt(p.dtype));
    step("getOutputDataTypes");
    check_scan_output_shapes(*caps.build, p);
    step("getOutputShapes (dynamic and constant extents)");
    check_scan_formats(*caps.build);
    step("supportsFormatCombination over every type and format");
    DynamicPluginTensorDesc io[kScanInputs + kScanOutputs];
    scan_dynamic_descs(p, io);
    require(caps.build->configurePlugin(io, kScanInputs, io + kScanInputs, kScanOutputs) == 0, "configurePlugin failed");
    step("configurePlugin");
    size_t const ws = caps.build->getWorkspaceSize(io, kScanInputs, io + kScanInputs, kScanOutputs);
    size_t const need_run = mq_selective_scan_workspace_size(static_cast<int32_t>(p.batch),
        static_cast<int32_t>(p.seqlen), static_cast<int32_t>(p.dim), static_cast<int32_t>(p.dstate));
    size_t const need_max = mq_selective_scan_workspace_size(static_cast<int32_t>(p.max_batch),
        static_cast<int32_t>(p.max_seqlen), static_cast<int32_t>(p.dim), static_cast<int32_t>(p.dstate));
    require(ws >= need_run && ws >= need_max, "getWorkspaceSize below what enqueue needs");
    step("getWorkspaceSize at the profile max (" + std::to_string(ws) + " bytes)");
    require(caps.build->getTimingCacheID() != nullptr && caps.build->getMetadataString() != nullptr,
        "timing-cache ID or metadata is null");
    out->workspace = static_cast<int64_t>(ws);
}

void scan_run(mqh_scan_problem const& p, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) {
    ScanPlugins plugins;
    scan_build_phase(p, &plugins);
    Capabilities const build = capabilities(plugins.build.get(), "SelectiveScan");
    // Engine serialization and deserialization: the fields TensorRT stores, read back at runtime.
    nvinfer1::PluginFieldCollection const* stored = build.runtime->getFieldsToSerialize();
    require(stored != nullptr, "getFieldsToSerialize returned null");
    PluginPtr runtime{plugins.creator.createPlugin("harness_scan", stored, nvinfer1::TensorRTPhase::kRUNTIME)};
    require(runtime != nullptr, "createPlugin(kRUNTIME) refused the serialized fields");
    Capabilities const rt = capabilities(runtime.get(), "SelectiveScan");
    require(std::string(rt.build->getTimingCacheID()) == build.build->getTimingCacheID(),
        "attributes changed through serialization");
    step("getFieldsToSerialize -> createPlugin(kRUNTIME) round trip");
    PluginPtr cloned{runtime->clone()};
    runtime.reset();  // the clone must not depend on the original
    require(cloned != nullptr, "clone returned null");
    NullResourceContext context;
    PluginPtr attached{capabilities(cloned.get(), "SelectiveScan").runtime->attachToContext(&context)};
    cloned.reset();
    require(attached != nullptr, "attachToContext returned null");
    Capabilities const exec = capabilities(attached.get(), "SelectiveScan");
    step("clone, attachToContext (originals released)");
    ScanShapes const s = scan_shapes(p.batch, p.seqlen, p.dim, p.dstate);
    DataType const x_type = to_trt(p.dtype);
    PluginTensorDesc in[kScanInputs];
    PluginTensorDesc out[kScanOutputs];
    for (int32_t i = 0; i < kScanInputs; ++i) {
        in[i] = make_desc(s.extents[i], scan_type(i, x_type));
    }
    for (int32_t o = 0; o < kScanOutputs; ++o) {
        out[o] = make_desc(s.extents[kY + o], scan_type(kY + o, x_type));
    }
    require(exec.runtime->onShapeChange(in, kScanInputs, out, kScanOutputs) == 0, "onShapeChange failed");
    step("onShapeChange");
    require(exec.runtime->enqueue(in, out, inputs, outputs, workspace, stream) == 0, "enqueue returned an error");
    step("enqueue");
}

// ---- HadamardTransform / HadamardQuantize -----------------------------------------------------------

// Quantize: HadamardQuantize, a third input `scale` (one element of x's type) and INT8 codes out.
template <bool Quantize>
void hadamard_run(int64_t dtype, std::vector<int64_t> const& x_extents, void const* x, float const* signs,
    void const* scale, void* y, cudaStream_t stream) {
    constexpr int32_t kIn = Quantize ? 3 : 2;
    char const* const op = Quantize ? "HadamardQuantize" : "HadamardTransform";
    mq::plugin::HadamardCreator<Quantize> creator;
    check_creator_names(creator, op);
    nvinfer1::PluginFieldCollection const* names = creator.getFieldNames();
    require(names != nullptr && names->nbFields == 0, std::string(op) + " lists fields; the op has none");
    nvinfer1::PluginFieldCollection const none{0, nullptr};  // what loadFields yields for no fields
    PluginPtr build{creator.createPlugin("harness_hadamard", &none, nvinfer1::TensorRTPhase::kBUILD)};
    Capabilities const caps = capabilities(build.get(), op);
    step("creator; createPlugin(kBUILD) with no fields");
    DataType const x_type = to_trt(dtype);
    DataType const y_type = Quantize ? DataType::kINT8 : x_type;
    int64_t const n = x_extents.back();
    DataType in_types[3] = {x_type, DataType::kFLOAT, x_type};
    DataType out_type = Quantize ? DataType::kFLOAT : DataType::kINT8;  // anything but the answer
    require(caps.build->getNbOutputs() == 1, "getNbOutputs != 1");
    require(caps.build->getOutputDataTypes(&out_type, 1, in_types, kIn) == 0 && out_type == y_type,
        Quantize ? "getOutputDataTypes: y must be int8" : "getOutputDataTypes: y must be x's type");
    for (bool dynamic : {true, false}) {
        FoldingExprBuilder eb;
        DimsExprs in[3]{};
        in[0].nbDims = static_cast<int32_t>(x_extents.size());
        for (int32_t k = 0; k < in[0].nbDims; ++k) {
            bool const last = k + 1 == in[0].nbDims;
            in[0].d[k] = (dynamic && !last) ? eb.unknown() : eb.dim(x_extents[k]);
        }
        in[1].nbDims = 1;
        in[1].d[0] = eb.dim(n);
        in[2].nbDims = 0;  // the scale: a scalar
        DimsExprs out{};
        require(caps.build->getOutputShapes(in, kIn, nullptr, 0, &out, 1, eb) == 0, "getOutputShapes failed");
        require(out.nbDims == in[0].nbDims, "getOutputShapes: wrong rank");
        for (int32_t k = 0; k < out.nbDims; ++k) {
            require(out.d[k] == in[0].d[k], "getOutputShapes: y must have x's shape");
        }
    }
    step("getOutputDataTypes, getOutputShapes");
    int mismatches = 0;
    for (DataType xt : kAllTypes) {
        for (int32_t pos = 0; pos <= kIn; ++pos) {
            if (pos > 0 && !is_activation(xt)) {
                break;
            }
            for (DataType type : kAllTypes) {
                for (TensorFormat format : kSomeFormats) {
                    DynamicPluginTensorDesc io[4]{};
                    io[0].desc = make_desc(x_extents, xt);
                    io[1].desc = make_desc({n}, DataType::kFLOAT);
                    io[2].desc = make_desc({}, xt);
                    io[kIn].desc = make_desc(x_extents, Quantize ? DataType::kINT8 : xt);
                    io[pos].desc.type = type;
                    io[pos].desc.format = format;
                    DataType const x_now = pos == 0 ? type : xt;
                    bool const want = format == TensorFormat::kLINEAR &&
                        (pos == 0   ? is_activation(type)
                            : pos == 1 ? type == DataType::kFLOAT
                            : pos == kIn ? type == (Quantize ? DataType::kINT8 : x_now)
                                         : type == x_now);  // the scale
                    mismatches += caps.build->supportsFormatCombination(pos, io, kIn, 1) != want;
                }
            }
        }
    }
    require(mismatches == 0, "supportsFormatCombination disagrees with the contract " + std::to_string(mismatches) +
        " times");
    step("supportsFormatCombination over every type and format");
    DynamicPluginTensorDesc io[4]{};
    std::vector<int64_t> dyn_x(x_extents.size(), -1);
    dyn_x.back() = n;
    io[0].desc = make_desc(dyn_x, x_type);
    io[0].min = io[0].opt = io[0].max = make_dims(x_extents);
    io[1].desc = make_desc({n}, DataType::kFLOAT);
    io[1].min = io[1].opt = io[1].max = make_dims({n});
    io[2].desc = make_desc({}, x_type);
    io[2].min = io[2].opt = io[2].max = make_dims({});
    io[kIn] = io[0];
    io[kIn].desc.type = y_type;
    require(caps.build->configurePlugin(io, kIn, io + kIn, 1) == 0, "configurePlugin failed");
    require(caps.build->getWorkspaceSize(io, kIn, io + kIn, 1) == 0, "the transform needs no workspace");
    step("configurePlugin, getWorkspaceSize");
    PluginPtr runtime{creator.createPlugin("harness_hadamard", caps.runtime->getFieldsToSerialize(),
        nvinfer1::TensorRTPhase::kRUNTIME)};
    require(runtime != nullptr, "createPlugin(kRUNTIME) refused the serialized fields");
    PluginPtr cloned{runtime->clone()};
    runtime.reset();
    NullResourceContext context;
    require(cloned != nullptr, "clone returned null");
    PluginPtr attached{capabilities(cloned.get(), op).runtime->attachToContext(&context)};
    cloned.reset();
    Capabilities const exec = capabilities(attached.get(), op);
    step("serialize round trip, clone, attachToContext");
    PluginTensorDesc const in[3] = {make_desc(x_extents, x_type), make_desc({n}, DataType::kFLOAT),
        make_desc({}, x_type)};
    PluginTensorDesc const out = make_desc(x_extents, y_type);
    require(exec.runtime->onShapeChange(in, kIn, &out, 1) == 0, "onShapeChange failed");
    void const* inputs[3] = {x, signs, scale};
    void* outputs[1] = {y};
    require(exec.runtime->enqueue(in, &out, inputs, outputs, nullptr, stream) == 0, "enqueue returned an error");
    step("onShapeChange, enqueue");
}

// x [unknown rows, n_x] and signs [n_signs]: the first two inputs of a Hadamard op's getOutputShapes.
void set_hadamard_dims(DimsExprs* in, FoldingExprBuilder& eb, int64_t n_x, int64_t n_signs) {
    in[0].nbDims = 2;
    in[0].d[0] = eb.unknown();
    in[0].d[1] = eb.dim(n_x);
    in[1].nbDims = 1;
    in[1].d[0] = eb.dim(n_signs);
}

// ---- negative checks --------------------------------------------------------------------------------

int self_test() {
    int failed = 0;
    auto expect = [&](bool as_expected, char const* what) {
        step(std::string(as_expected ? "ok: " : "WRONG: ") + what);
        failed += as_expected ? 0 : 1;
    };
    mq::plugin::SelectiveScanCreator creator;
    auto make = [&](std::vector<nvinfer1::PluginField> fields) {
        nvinfer1::PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
        return PluginPtr{creator.createPlugin("neg", &fc, nvinfer1::TensorRTPhase::kBUILD)};
    };
    int32_t const two = 2;
    int32_t const one = 1;
    float const fone = 1.0F;
    expect(make({{"reverse", &two, nvinfer1::PluginFieldType::kINT32, 1}}) == nullptr, "reverse = 2 refused");
    expect(make({{"bogus", &one, nvinfer1::PluginFieldType::kINT32, 1}}) == nullptr, "unknown field name refused");
    expect(make({{"reverse", &fone, nvinfer1::PluginFieldType::kFLOAT32, 1}}) == nullptr, "FLOAT32 attribute refused");
    expect(make({{"reverse", &one, nvinfer1::PluginFieldType::kINT32, 2}}) == nullptr, "attribute of length 2 refused");
    PluginPtr plugin = make({});
    expect(plugin != nullptr, "no fields: defaults accepted");
    if (plugin == nullptr) {
        return failed;
    }
    Capabilities const caps = capabilities(plugin.get(), "SelectiveScan");
    DataType in[kScanInputs];
    for (int32_t i = 0; i < kScanInputs; ++i) {
        in[i] = scan_type(i, DataType::kHALF);
    }
    DataType out[kScanOutputs];
    in[kDelta] = DataType::kFLOAT;
    expect(caps.build->getOutputDataTypes(out, kScanOutputs, in, kScanInputs) != 0, "delta of another type than x refused");
    in[kDelta] = DataType::kHALF;
    in[kA] = DataType::kHALF;
    expect(caps.build->getOutputDataTypes(out, kScanOutputs, in, kScanInputs) != 0, "A not float32 refused");
    in[kA] = DataType::kFLOAT;
    expect(caps.build->getOutputDataTypes(out, kScanOutputs, in, kScanInputs - 1) != 0, "8 input types refused");
    auto shapes_refused = [&](ScanShapes const& s, int32_t nb_inputs) {
        FoldingExprBuilder eb;
        DimsExprs exprs[kScanInputs];
        for (int32_t i = 0; i < kScanInputs; ++i) {
            exprs[i].nbDims = static_cast<int32_t>(s.extents[i].size());
            for (int32_t k = 0; k < exprs[i].nbDims; ++k) {
                exprs[i].d[k] = eb.dim(s.extents[i][k]);
            }
        }
        DimsExprs outs[kScanOutputs]{};
        return caps.build->getOutputShapes(exprs, nb_inputs, nullptr, 0, outs, kScanOutputs, eb) != 0;
    };
    ScanShapes bad = scan_shapes(-1, -1, 64, 16);
    bad.extents[kA] = {65, 16};
    expect(shapes_refused(bad, kScanInputs), "A [65, N] with x [.., .., 64] refused");
    bad = scan_shapes(-1, -1, 64, 16);
    bad.extents[kC] = {-1, -1, 8};
    expect(shapes_refused(bad, kScanInputs), "C with another N than A refused");
    expect(shapes_refused(scan_shapes(-1, -1, 64, 65), kScanInputs), "N = 65 (over the kernel limit) refused");
    bad = scan_shapes(-1, -1, 64, 16);
    bad.extents[kX] = {-1, 64};
    expect(shapes_refused(bad, kScanInputs), "x of rank 2 refused");
    expect(shapes_refused(scan_shapes(-1, -1, 64, 16), kScanInputs - 1), "8 input shapes refused");
    expect(!shapes_refused(scan_shapes(-1, -1, 64, 16), kScanInputs), "consistent shapes accepted");
    // enqueue with an unsupported size launches nothing and reports an error.
    ScanShapes const big = scan_shapes(1, 4, 8, 65);
    PluginTensorDesc descs[kScanInputs + kScanOutputs];
    for (int32_t i = 0; i < kScanInputs + kScanOutputs; ++i) {
        descs[i] = make_desc(big.extents[i], scan_type(i, DataType::kFLOAT));
    }
    void const* no_inputs[kScanInputs] = {};
    void* no_outputs[kScanOutputs] = {};
    expect(caps.runtime->enqueue(descs, descs + kScanInputs, no_inputs, no_outputs, nullptr, nullptr) != 0,
        "enqueue with N = 65 refused before any launch");

    mq::plugin::HadamardTransformCreator hc;
    int32_t const v = 1;
    nvinfer1::PluginField const field{"order", &v, nvinfer1::PluginFieldType::kINT32, 1};
    nvinfer1::PluginFieldCollection const with_field{1, &field};
    expect(PluginPtr{hc.createPlugin("neg", &with_field, nvinfer1::TensorRTPhase::kBUILD)} == nullptr,
        "HadamardTransform with a field refused");
    PluginPtr hp{hc.createPlugin("neg", nullptr, nvinfer1::TensorRTPhase::kBUILD)};
    expect(hp != nullptr, "HadamardTransform from a null field collection accepted");
    if (hp != nullptr) {
        Capabilities const h = capabilities(hp.get(), "HadamardTransform");
        FoldingExprBuilder eb;
        DimsExprs hin[2]{};
        set_hadamard_dims(hin, eb, 1000, 1000);
        DimsExprs hout{};
        expect(h.build->getOutputShapes(hin, 2, nullptr, 0, &hout, 1, eb) != 0, "Hadamard n = 1000 (no base order) refused");
        hin[0].d[1] = eb.dim(1536);
        expect(h.build->getOutputShapes(hin, 2, nullptr, 0, &hout, 1, eb) != 0, "Hadamard signs of another length refused");
    }
    mq::plugin::HadamardQuantizeCreator qc;
    PluginPtr qp{qc.createPlugin("neg", nullptr, nvinfer1::TensorRTPhase::kBUILD)};
    expect(qp != nullptr, "HadamardQuantize from a null field collection accepted");
    if (qp != nullptr) {
        Capabilities const q = capabilities(qp.get(), "HadamardQuantize");
        FoldingExprBuilder eb;
        DimsExprs qin[3]{};
        set_hadamard_dims(qin, eb, 1536, 1536);
        qin[2].nbDims = 1;
        qin[2].d[0] = eb.dim(1536);  // a per-channel scale
        DimsExprs qout{};
        expect(q.build->getOutputShapes(qin, 3, nullptr, 0, &qout, 1, eb) != 0,
            "HadamardQuantize per-channel scale refused");
        expect(q.build->getOutputShapes(qin, 2, nullptr, 0, &qout, 1, eb) != 0,
            "HadamardQuantize without a scale refused");
        DataType const fp32_scale[3] = {DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT};
        DataType out_type = DataType::kINT8;
        expect(q.build->getOutputDataTypes(&out_type, 1, fp32_scale, 3) != 0,
            "HadamardQuantize float32 scale with float16 x refused");
    }
    return failed;
}

}  // namespace
}  // namespace mq::harness

extern "C" {

int64_t mqh_scan_build(mqh_scan_problem const* problem) {
    int64_t workspace = -1;
    int32_t const status = mq::harness::guarded([&] {
        mq::harness::require(problem != nullptr, "null problem");
        mq::harness::ScanPlugins plugins;
        mq::harness::scan_build_phase(*problem, &plugins);
        workspace = plugins.workspace;
    });
    return status == 0 ? workspace : -1;
}

int32_t mqh_scan_run(mqh_scan_problem const* problem, void const* const* inputs, void* const* outputs, void* workspace,
    void* stream) {
    return mq::harness::guarded([&] {
        mq::harness::require(problem != nullptr && inputs != nullptr && outputs != nullptr, "null argument");
        mq::harness::scan_run(*problem, inputs, outputs, workspace, static_cast<cudaStream_t>(stream));
    });
}

int32_t mqh_hadamard_run(int64_t dtype, int32_t rank, int64_t const* dims, void const* x, float const* signs, void* y,
    void* stream) {
    return mq::harness::guarded([&] {
        mq::harness::require(rank >= 1 && rank <= 8 && dims != nullptr, "bad rank");
        std::vector<int64_t> const extents(dims, dims + rank);
        mq::harness::hadamard_run<false>(dtype, extents, x, signs, nullptr, y, static_cast<cudaStream_t>(stream));
    });
}

int32_t mqh_hadamard_quantize_run(int64_t dtype, int32_t rank, int64_t const* dims, void const* x, float const* signs,
    void const* scale, void* y, void* stream) {
    return mq::harness::guarded([&] {
        mq::harness::require(rank >= 1 && rank <= 8 && dims != nullptr, "bad rank");
        std::vector<int64_t> const extents(dims, dims + rank);
        mq::harness::hadamard_run<true>(dtype, extents, x, signs, scale, y, static_cast<cudaStream_t>(stream));
    });
}

int32_t mqh_self_test(void) {
    int failed = 0;
    int32_t const status = mq::harness::guarded([&] { failed = mq::harness::self_test(); });
    return status == 0 ? failed : -1;
}

char const* mqh_log(void) { return mq::harness::gLog.c_str(); }
char const* mqh_error(void) { return mq::harness::gError.c_str(); }

}  // extern "C"
