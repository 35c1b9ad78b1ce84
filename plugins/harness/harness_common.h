// What the harness's plugin walks share (plugin_harness.cpp: SelectiveScan and HadamardTransform,
// ssd_harness.cpp: SSDScan): step log, failure, plugin ownership, descriptors, capability and name
// checks, and the guard that turns a failed walk into the C API's return code.
#pragma once

#include <NvInferRuntime.h>

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "selective_scan/mq_kernels.h"

namespace mq::harness {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

inline thread_local std::string gLog;
inline thread_local std::string gError;

// A failed step: recorded once, carried out of the walk as an exception (never out of the C API).
struct StepFailed {
    std::string what;
};

inline void step(std::string const& name) { gLog += name + "\n"; }

inline void require(bool ok, std::string const& what) {
    if (!ok) {
        throw StepFailed{what};
    }
}

struct PluginDeleter {
    void operator()(nvinfer1::IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<nvinfer1::IPluginV3, PluginDeleter>;

// No per-context resources are used by our plugins; TensorRT passes a real one.
class NullResourceContext final : public nvinfer1::IPluginResourceContext {
public:
    nvinfer1::IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
};

inline DataType to_trt(int64_t mq_dtype) {
    return mq_dtype == MQ_FLOAT16 ? DataType::kHALF : mq_dtype == MQ_BFLOAT16 ? DataType::kBF16 : DataType::kFLOAT;
}

inline bool is_activation(DataType t) { return t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16; }

inline Dims make_dims(std::vector<int64_t> const& extents) {
    Dims d{};
    d.nbDims = static_cast<int32_t>(extents.size());
    for (size_t i = 0; i < extents.size(); ++i) {
        d.d[i] = extents[i];
    }
    return d;
}

inline PluginTensorDesc make_desc(std::vector<int64_t> const& extents, DataType type) {
    PluginTensorDesc desc{};
    desc.dims = make_dims(extents);
    desc.type = type;
    desc.format = TensorFormat::kLINEAR;
    desc.scale = 1.0F;
    return desc;
}

// Every type and format TensorRT might offer a plugin (those present in all supported headers).
inline constexpr DataType kAllTypes[] = {DataType::kFLOAT, DataType::kHALF, DataType::kINT8, DataType::kINT32,
    DataType::kBOOL, DataType::kUINT8, DataType::kFP8, DataType::kBF16, DataType::kINT64, DataType::kINT4};
inline constexpr TensorFormat kSomeFormats[] = {TensorFormat::kLINEAR, TensorFormat::kCHW2, TensorFormat::kHWC8,
    TensorFormat::kCHW32, TensorFormat::kHWC};

struct Capabilities {
    nvinfer1::IPluginV3OneCore* core;
    nvinfer1::IPluginV3OneBuild* build;
    nvinfer1::IPluginV3OneRuntime* runtime;
};

inline Capabilities capabilities(nvinfer1::IPluginV3* plugin, char const* name) {
    require(plugin != nullptr, "no plugin");
    Capabilities c{
        static_cast<nvinfer1::IPluginV3OneCore*>(plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE)),
        static_cast<nvinfer1::IPluginV3OneBuild*>(plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD)),
        static_cast<nvinfer1::IPluginV3OneRuntime*>(
            plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME))};
    require(c.core != nullptr && c.build != nullptr && c.runtime != nullptr, "a capability interface is null");
    require(std::strcmp(c.core->getPluginName(), name) == 0 && std::strcmp(c.core->getPluginVersion(), "1") == 0 &&
            std::strcmp(c.core->getPluginNamespace(), "mq_deploy") == 0,
        "plugin name/version/namespace differ from the ONNX node's");
    return c;
}

template <typename Creator>
void check_creator_names(Creator& creator, char const* name) {
    require(std::strcmp(creator.getPluginName(), name) == 0 && std::strcmp(creator.getPluginVersion(), "1") == 0 &&
            std::strcmp(creator.getPluginNamespace(), "mq_deploy") == 0,
        "creator name/version/namespace differ from the ONNX node's");
    require(std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0,
        std::string("creator interface kind is ") + creator.getInterfaceInfo().kind);
}

// The fields the ONNX parser builds (onnx-tensorrt loadFields): one per name the creator lists
// that the node carries, INT attributes as kINT32 of length 1.
struct ParserFields {
    std::vector<int32_t> values;
    std::vector<nvinfer1::PluginField> fields;
    nvinfer1::PluginFieldCollection collection{};
};

template <typename Fn>
int32_t guarded(Fn&& fn) {
    gLog.clear();
    gError.clear();
    try {
        fn();
        return 0;
    } catch (StepFailed const& f) {
        gError = f.what;
    } catch (std::exception const& e) {
        gError = std::string("exception: ") + e.what();
    } catch (...) {
        gError = "unknown exception";
    }
    step("FAILED: " + gError);
    return -1;
}

}  // namespace mq::harness
