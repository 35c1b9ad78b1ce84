// What every mq_deploy IPluginV3 and its creator share: the capability plumbing, clone, the
// name/version/namespace getters (plugins/selective_scan/README.md) and attachToContext. Each plugin derives
// `PluginV3Base<Itself>` and defines `static constexpr char const* kName`; it keeps only the
// methods that differ (shapes, types, enqueue, fields).
#pragma once

#include <NvInferRuntime.h>

#include <exception>
#include <string>

#include "common/plugin_log.h"
#include "common/plugin_names.h"

namespace mq::plugin {

template <typename Derived>
class PluginV3Base : public nvinfer1::IPluginV3,
                     public nvinfer1::IPluginV3OneCore,
                     public nvinfer1::IPluginV3OneBuild,
                     public nvinfer1::IPluginV3OneRuntime {
public:
    // One object serves all three capabilities (TensorRT's own V3 plugins do the same).
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override {
        switch (type) {
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    nvinfer1::IPluginV3* clone() noexcept override {
        try {
            return new Derived(static_cast<Derived const&>(*this));
        } catch (std::exception const& e) {
            log_error(Derived::kName, (std::string("clone failed: ") + e.what()).c_str());
        }
        return nullptr;
    }

    char const* getPluginName() const noexcept override { return Derived::kName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

    // No per-context resources: a copy per execution context.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept override {
        return clone();
    }
};

template <typename Plugin>
class PluginCreatorBase : public nvinfer1::IPluginCreatorV3One {
public:
    char const* getPluginName() const noexcept override { return Plugin::kName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
};

}  // namespace mq::plugin
