// libmq_plugin_harness, SSDScan part (plugin_harness.h): the Mamba-2 scan plugin walked through
// the calls TensorRT makes, every answer checked against the op contract (plugins/ssd_scan/README.md)
// computed here, independently of the plugin's own argument checks.
#include <NvInferRuntime.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "folding_expr_builder.h"
#include "harness_common.h"
#include "plugin_harness.h"
#include "selective_scan/mq_kernels.h"
#include "ssd_scan/ssd_scan_plugin.h"

namespace mq::harness {
namespace {

constexpr char kSsd[] = "SSDScan";
constexpr int32_t kSsdInputs = 7;
constexpr int32_t kSsdOutputs = 2;
enum { kX, kDt, kA, kB, kC, kD, kDtBias, kY, kState };

bool is_ssd_activation(int32_t pos) { return pos == kX || pos == kDt || pos == kB || pos == kC || pos == kY; }

DataType ssd_type(int32_t pos, DataType x_type) { return is_ssd_activation(pos) ? x_type : DataType::kFLOAT; }

struct SsdShapes {
    std::vector<int64_t> extents[kSsdInputs + kSsdOutputs];
};

// -1 batch / seqlen: runtime dimensions.
SsdShapes ssd_shapes(mqh_ssd_problem const& p, int64_t b, int64_t l) {
    SsdShapes s;
    s.extents[kX] = s.extents[kY] = {b, l, p.heads * p.head_dim};
    s.extents[kDt] = {b, l, p.heads};
    s.extents[kA] = s.extents[kD] = s.extents[kDtBias] = {p.heads};
    s.extents[kB] = s.extents[kC] = {b, l, p.n_groups * p.dstate};
    s.extents[kState] = {b, p.heads, p.head_dim, p.dstate};
    return s;
}

// The fields onnx-tensorrt's loadFields builds: one per name the creator lists, INT attributes as
// kINT32 and FLOAT attributes as kFLOAT32, length 1.
struct SsdParserFields {
    int32_t ints[3];
    float floats[2];
    std::vector<nvinfer1::PluginField> fields;
    nvinfer1::PluginFieldCollection collection{};
};

void ssd_parser_fields(mq::plugin::SsdScanCreator& creator, mqh_ssd_problem const& p, SsdParserFields* pf) {
    nvinfer1::PluginFieldCollection const* names = creator.getFieldNames();
    require(names != nullptr && names->nbFields == 5 && names->fields != nullptr, "getFieldNames: expected 5 fields");
    pf->ints[0] = static_cast<int32_t>(p.head_dim);
    pf->ints[1] = static_cast<int32_t>(p.n_groups);
    pf->ints[2] = static_cast<int32_t>(p.dt_softplus);
    pf->floats[0] = static_cast<float>(p.dt_min);
    pf->floats[1] = static_cast<float>(p.dt_max);
    char const* const int_names[3] = {"head_dim", "n_groups", "dt_softplus"};
    char const* const float_names[2] = {"dt_min", "dt_max"};
    for (int32_t i = 0; i < names->nbFields; ++i) {
        std::string const name = names->fields[i].name != nullptr ? names->fields[i].name : "";
        bool found = false;
        for (int32_t k = 0; k < 3 && !found; ++k) {
            if (name == int_names[k]) {
                require(names->fields[i].type == nvinfer1::PluginFieldType::kINT32, name + " is not listed as kINT32");
                pf->fields.push_back({names->fields[i].name, &pf->ints[k], nvinfer1::PluginFieldType::kINT32, 1});
                found = true;
            }
        }
        for (int32_t k = 0; k < 2 && !found; ++k) {
            if (name == float_names[k]) {
                require(names->fields[i].type == nvinfer1::PluginFieldType::kFLOAT32, name + " is not listed as kFLOAT32");
                pf->fields.push_back({names->fields[i].name, &pf->floats[k], nvinfer1::PluginFieldType::kFLOAT32, 1});
                found = true;
            }
        }
        require(found, "getFieldNames lists unknown field '" + name + "'");
    }
    pf->collection.nbFields = static_cast<int32_t>(pf->fields.size());
    pf->collection.fields = pf->fields.data();
}

void check_ssd_output_shapes(nvinfer1::IPluginV3OneBuild& build, mqh_ssd_problem const& p) {
    for (bool dynamic : {true, false}) {
        FoldingExprBuilder eb;
        SsdShapes const s = ssd_shapes(p, dynamic ? -1 : p.batch, dynamic ? -1 : p.seqlen);
        DimsExprs in[kSsdInputs];
        for (int32_t i = 0; i < kSsdInputs; ++i) {
            in[i].nbDims = static_cast<int32_t>(s.extents[i].size());
            for (int32_t k = 0; k < in[i].nbDims; ++k) {
                in[i].d[k] = eb.dim(s.extents[i][k]);
            }
        }
        DimsExprs out[kSsdOutputs]{};
        require(build.getOutputShapes(in, kSsdInputs, nullptr, 0, out, kSsdOutputs, eb) == 0, "getOutputShapes failed");
        for (int32_t o = 0; o < kSsdOutputs; ++o) {
            std::vector<int64_t> const& want = s.extents[kY + o];
            require(out[o].nbDims == static_cast<int32_t>(want.size()), "getOutputShapes: wrong output rank");
            for (int32_t k = 0; k < out[o].nbDims; ++k) {
                bool const known = out[o].d[k] != nullptr && out[o].d[k]->isConstant();
                require(known == (want[k] >= 0) && (!known || out[o].d[k]->getConstantValue() == want[k]),
                    "getOutputShapes: output " + std::to_string(o) + " extent " + std::to_string(k) + " is wrong");
            }
        }
    }
}

void check_ssd_formats(nvinfer1::IPluginV3OneBuild& build, mqh_ssd_problem const& p) {
    int mismatches = 0;
    for (DataType x_type : kAllTypes) {
        SsdShapes const s = ssd_shapes(p, -1, -1);
        DynamicPluginTensorDesc io[kSsdInputs + kSsdOutputs]{};
        for (int32_t i = 0; i < kSsdInputs + kSsdOutputs; ++i) {
            io[i].desc = make_desc(s.extents[i], ssd_type(i, x_type));
        }
        for (int32_t pos = 0; pos < kSsdInputs + kSsdOutputs; ++pos) {
            if (pos > kX && !is_activation(x_type)) {
                break;  // TensorRT never asks about later positions once x is rejected
            }
            for (DataType type : kAllTypes) {
                for (TensorFormat format : kSomeFormats) {
                    DynamicPluginTensorDesc trial[kSsdInputs + kSsdOutputs];
                    std::memcpy(trial, io, sizeof(io));
                    trial[pos].desc.type = type;
                    trial[pos].desc.format = format;
                    DataType const x_now = pos == kX ? type : x_type;
                    bool const want = format == TensorFormat::kLINEAR &&
                        (pos == kX ? is_activation(type) : type == ssd_type(pos, x_now));
                    mismatches += build.supportsFormatCombination(pos, trial, kSsdInputs, kSsdOutputs) != want;
                }
            }
        }
    }
    require(mismatches == 0, "supportsFormatCombination disagrees with the contract " + std::to_string(mismatches) +
        " times");
}

struct SsdPlugins {
    mq::plugin::SsdScanCreator creator;
    PluginPtr build;
    int64_t workspace{-1};
};

void ssd_build_phase(mqh_ssd_problem const& p, SsdPlugins* out) {
    require(p.dtype == MQ_FLOAT32 || p.dtype == MQ_FLOAT16 || p.dtype == MQ_BFLOAT16, "bad dtype");
    require(p.batch >= 1 && p.seqlen >= 1 && p.heads >= 1 && p.head_dim >= 1 && p.n_groups >= 1 && p.dstate >= 1 &&
            p.max_batch >= p.batch && p.max_seqlen >= p.seqlen, "bad problem sizes");
    check_creator_names(out->creator, kSsd);
    step("creator: name, version, namespace, interface kind");
    SsdParserFields pf;
    ssd_parser_fields(out->creator, p, &pf);
    step("creator: getFieldNames lists head_dim, n_groups, dt_softplus (kINT32), dt_min, dt_max (kFLOAT32)");
    out->build.reset(out->creator.createPlugin("harness_ssd", &pf.collection, nvinfer1::TensorRTPhase::kBUILD));
    require(out->build != nullptr, "createPlugin(kBUILD) returned null for parser-typed fields");
    Capabilities const caps = capabilities(out->build.get(), kSsd);
    step("createPlugin(kBUILD); capabilities; names");
    require(caps.build->getNbOutputs() == kSsdOutputs, "getNbOutputs != 2");
    DataType const x_type = to_trt(p.dtype);
    DataType in_types[kSsdInputs];
    for (int32_t i = 0; i < kSsdInputs; ++i) {
        in_types[i] = ssd_type(i, x_type);
    }
    DataType out_types[kSsdOutputs] = {DataType::kINT8, DataType::kINT8};
    require(caps.build->getOutputDataTypes(out_types, kSsdOutputs, in_types, kSsdInputs) == 0 &&
            out_types[0] == x_type && out_types[1] == DataType::kFLOAT,
        "getOutputDataTypes: y must be x's type, state float32");
    step("getOutputDataTypes");
    check_ssd_output_shapes(*caps.build, p);
    step("getOutputShapes (dynamic and constant extents; state [b, heads, head_dim, N])");
    check_ssd_formats(*caps.build, p);
    step("supportsFormatCombination over every type and format");
    DynamicPluginTensorDesc io[kSsdInputs + kSsdOutputs];
    SsdShapes const dyn = ssd_shapes(p, -1, -1), lo = ssd_shapes(p, 1, 1), opt = ssd_shapes(p, p.batch, p.seqlen),
                    hi = ssd_shapes(p, p.max_batch, p.max_seqlen);
    for (int32_t i = 0; i < kSsdInputs + kSsdOutputs; ++i) {
        io[i].desc = make_desc(dyn.extents[i], ssd_type(i, x_type));
        io[i].min = make_dims(lo.extents[i]);
        io[i].opt = make_dims(opt.extents[i]);
        io[i].max = make_dims(hi.extents[i]);
    }
    require(caps.build->configurePlugin(io, kSsdInputs, io + kSsdInputs, kSsdOutputs) == 0, "configurePlugin failed");
    size_t const ws = caps.build->getWorkspaceSize(io, kSsdInputs, io + kSsdInputs, kSsdOutputs);
    auto need = [&](int64_t b, int64_t l) {
        return mq_ssd_scan_workspace_size(static_cast<int32_t>(b), static_cast<int32_t>(l),
            static_cast<int32_t>(p.heads), static_cast<int32_t>(p.head_dim), static_cast<int32_t>(p.dstate));
    };
    require(ws >= need(p.batch, p.seqlen) && ws >= need(p.max_batch, p.max_seqlen) && ws >= need(1, p.max_seqlen),
        "getWorkspaceSize below what enqueue needs");
    step("configurePlugin; getWorkspaceSize at the profile max (" + std::to_string(ws) + " bytes)");
    require(caps.build->getTimingCacheID() != nullptr && caps.build->getMetadataString() != nullptr,
        "timing-cache ID or metadata is null");
    out->workspace = static_cast<int64_t>(ws);
}

void ssd_run(mqh_ssd_problem const& p, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) {
    SsdPlugins plugins;
    ssd_build_phase(p, &plugins);
    Capabilities const build = capabilities(plugins.build.get(), kSsd);
    nvinfer1::PluginFieldCollection const* stored = build.runtime->getFieldsToSerialize();
    require(stored != nullptr, "getFieldsToSerialize returned null");
    PluginPtr runtime{plugins.creator.createPlugin("harness_ssd", stored, nvinfer1::TensorRTPhase::kRUNTIME)};
    require(runtime != nullptr, "createPlugin(kRUNTIME) refused the serialized fields");
    require(std::string(capabilities(runtime.get(), kSsd).build->getTimingCacheID()) == build.build->getTimingCacheID(),
        "attributes changed through serialization");
    step("getFieldsToSerialize -> createPlugin(kRUNTIME) round trip");
    PluginPtr cloned{runtime->clone()};
    runtime.reset();
    require(cloned != nullptr, "clone returned null");
    NullResourceContext context;
    PluginPtr attached{capabilities(cloned.get(), kSsd).runtime->attachToContext(&context)};
    cloned.reset();
    require(attached != nullptr, "attachToContext returned null");
    Capabilities const exec = capabilities(attached.get(), kSsd);
    step("clone, attachToContext (originals released)");
    SsdShapes const s = ssd_shapes(p, p.batch, p.seqlen);
    DataType const x_type = to_trt(p.dtype);
    PluginTensorDesc in[kSsdInputs];
    PluginTensorDesc out[kSsdOutputs];
    for (int32_t i = 0; i < kSsdInputs; ++i) {
        in[i] = make_desc(s.extents[i], ssd_type(i, x_type));
    }
    for (int32_t o = 0; o < kSsdOutputs; ++o) {
        out[o] = make_desc(s.extents[kY + o], ssd_type(kY + o, x_type));
    }
    require(exec.runtime->onShapeChange(in, kSsdInputs, out, kSsdOutputs) == 0, "onShapeChange failed");
    require(exec.runtime->enqueue(in, out, inputs, outputs, workspace, stream) == 0, "enqueue returned an error");
    step("onShapeChange, enqueue");
}

int ssd_self_test() {
    int failed = 0;
    auto expect = [&](bool as_expected, char const* what) {
        step(std::string(as_expected ? "ok: " : "WRONG: ") + what);
        failed += as_expected ? 0 : 1;
    };
    mq::plugin::SsdScanCreator creator;
    int32_t const sixty_four = 64, one = 1, zero = 0;
    float const hi = 0.1F, lo = 0.5F;
    using F = nvinfer1::PluginField;
    auto const k32 = nvinfer1::PluginFieldType::kINT32;
    auto const f32 = nvinfer1::PluginFieldType::kFLOAT32;
    auto make = [&](std::vector<F> fields) {
        nvinfer1::PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
        return PluginPtr{creator.createPlugin("neg", &fc, nvinfer1::TensorRTPhase::kBUILD)};
    };
    expect(make({{"n_groups", &one, k32, 1}}) == nullptr, "no head_dim refused");
    expect(make({{"head_dim", &sixty_four, k32, 1}, {"n_groups", &zero, k32, 1}}) == nullptr, "n_groups = 0 refused");
    expect(make({{"head_dim", &sixty_four, k32, 1}, {"n_groups", &one, k32, 1}, {"dt_min", &lo, f32, 1},
               {"dt_max", &hi, f32, 1}}) == nullptr, "dt_min > dt_max refused");
    expect(make({{"head_dim", &sixty_four, k32, 1}, {"n_groups", &one, k32, 1}, {"dt_min", &one, k32, 1}}) == nullptr,
        "an INT dt_min refused");
    PluginPtr plugin = make({{"head_dim", &sixty_four, k32, 1}, {"n_groups", &one, k32, 1}});
    expect(plugin != nullptr, "head_dim and n_groups alone accepted (defaults for the rest)");
    if (plugin == nullptr) {
        return failed;
    }
    Capabilities const caps = capabilities(plugin.get(), kSsd);
    mqh_ssd_problem p{};
    p.head_dim = 64;
    p.n_groups = 1;
    p.heads = 4;
    p.dstate = 128;
    auto shapes_refused = [&](SsdShapes const& s) {
        FoldingExprBuilder eb;
        DimsExprs exprs[kSsdInputs];
        for (int32_t i = 0; i < kSsdInputs; ++i) {
            exprs[i].nbDims = static_cast<int32_t>(s.extents[i].size());
            for (int32_t k = 0; k < exprs[i].nbDims; ++k) {
                exprs[i].d[k] = eb.dim(s.extents[i][k]);
            }
        }
        DimsExprs outs[kSsdOutputs]{};
        return caps.build->getOutputShapes(exprs, kSsdInputs, nullptr, 0, outs, kSsdOutputs, eb) != 0;
    };
    expect(!shapes_refused(ssd_shapes(p, -1, -1)), "consistent shapes accepted");
    SsdShapes bad = ssd_shapes(p, -1, -1);
    bad.extents[kX] = {-1, -1, 4 * 64 + 1};
    expect(shapes_refused(bad), "x width other than heads * head_dim refused");
    bad = ssd_shapes(p, -1, -1);
    bad.extents[kD] = {5};
    expect(shapes_refused(bad), "D of another head count refused");
    mqh_ssd_problem big = p;
    big.dstate = 300;
    expect(shapes_refused(ssd_shapes(big, -1, -1)), "N = 300 (over the kernel limit) refused");
    DataType types[kSsdInputs];
    for (int32_t i = 0; i < kSsdInputs; ++i) {
        types[i] = ssd_type(i, DataType::kHALF);
    }
    types[kDt] = DataType::kFLOAT;
    DataType outs[kSsdOutputs];
    expect(caps.build->getOutputDataTypes(outs, kSsdOutputs, types, kSsdInputs) != 0, "dt of another type than x refused");
    SsdShapes const run = ssd_shapes(big, 1, 4);
    PluginTensorDesc descs[kSsdInputs + kSsdOutputs];
    for (int32_t i = 0; i < kSsdInputs + kSsdOutputs; ++i) {
        descs[i] = make_desc(run.extents[i], ssd_type(i, DataType::kFLOAT));
    }
    void const* no_inputs[kSsdInputs] = {};
    void* no_outputs[kSsdOutputs] = {};
    expect(caps.runtime->enqueue(descs, descs + kSsdInputs, no_inputs, no_outputs, nullptr, nullptr) != 0,
        "enqueue with N = 300 refused before any launch");
    return failed;
}

}  // namespace
}  // namespace mq::harness

extern "C" {

int64_t mqh_ssd_build(mqh_ssd_problem const* problem) {
    int64_t workspace = -1;
    int32_t const status = mq::harness::guarded([&] {
        mq::harness::require(problem != nullptr, "null problem");
        mq::harness::SsdPlugins plugins;
        mq::harness::ssd_build_phase(*problem, &plugins);
        workspace = plugins.workspace;
    });
    return status == 0 ? workspace : -1;
}

int32_t mqh_ssd_run(mqh_ssd_problem const* problem, void const* const* inputs, void* const* outputs, void* workspace,
    void* stream) {
    return mq::harness::guarded([&] {
        mq::harness::require(problem != nullptr && inputs != nullptr && outputs != nullptr, "null argument");
        mq::harness::ssd_run(*problem, inputs, outputs, workspace, static_cast<cudaStream_t>(stream));
    });
}

int32_t mqh_ssd_self_test(void) {
    int failed = 0;
    int32_t const status = mq::harness::guarded([&] { failed = mq::harness::ssd_self_test(); });
    return status == 0 ? failed : -1;
}

}  // extern "C"
