// How TensorRT finds the mq_deploy plugin creators.
//
// Default build (libmq_plugins.so): registers itself when loaded, so a plain dlopen is enough
// (Polygraphy --plugins, ctypes.CDLL, trtexec --staticPlugins). TensorRT's REGISTER_TENSORRT_PLUGIN
// registers under the namespace "", which would disagree with our creators' getPluginNamespace()
// ("mq_deploy") - and engine deserialization looks creators up by (name, version, namespace). So a
// registrar of our own passes the same kPluginNamespace to registerCreator, as TensorRT's own
// initLibNvInferPlugins does with setPluginNamespace + registerCreator(creator, ns).
//
// MQ_PLUGIN_DYNAMIC_ENTRY build (libmq_plugins_dynamic.so): no self-registration; exports
// getCreators / setLoggerFinder for IPluginRegistry::loadLibrary and trtexec --dynamicPlugins
// (loadLibrary fails if a creator is already registered, hence two libraries, not one).
#include <NvInferRuntime.h>

#include <cstdint>

#include "hadamard/hadamard_plugin.h"
#include "plugin_log.h"
#include "plugin_names.h"
#include "selective_scan/selective_scan_plugin.h"
#include "ssd_scan/ssd_scan_plugin.h"

// Exported C entry points (the library is otherwise built with hidden visibility).
#define MQ_PLUGIN_EXPORT __attribute__((visibility("default")))

namespace mq::plugin {
namespace {

constexpr int32_t kNumCreators = 4;

nvinfer1::IPluginCreatorInterface* const* all_creators() {
    static SelectiveScanCreator scan_creator;
    static SsdScanCreator ssd_creator;
    static HadamardTransformCreator hadamard_creator;
    static HadamardQuantizeCreator hadamard_quantize_creator;
    static nvinfer1::IPluginCreatorInterface* const creators[kNumCreators] = {&scan_creator, &ssd_creator,
        &hadamard_creator, &hadamard_quantize_creator};
    return creators;
}

#if !defined(MQ_PLUGIN_DYNAMIC_ENTRY)

class StaticRegistrar {
public:
    StaticRegistrar() noexcept {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        if (registry == nullptr) {
            log_error("registration", "getPluginRegistry() returned null; mq_deploy plugins are not registered");
            return;
        }
        for (int32_t i = 0; i < kNumCreators; ++i) {
            mRegistered[i] = registry->registerCreator(*all_creators()[i], kPluginNamespace);
            if (!mRegistered[i]) {
                // Typically the library was loaded twice under different paths; the first copy serves.
                log_warning("registration", "a creator with the same name, version and namespace is already registered");
            }
        }
    }

    // Deregister so the registry keeps no pointer into an unloaded library.
    ~StaticRegistrar() {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        for (int32_t i = 0; registry != nullptr && i < kNumCreators; ++i) {
            if (mRegistered[i]) {
                registry->deregisterCreator(*all_creators()[i]);
            }
        }
    }

private:
    bool mRegistered[kNumCreators]{};
};

StaticRegistrar const gRegistrar;

#endif

}  // namespace
}  // namespace mq::plugin

#if defined(MQ_PLUGIN_DYNAMIC_ENTRY)

extern "C" MQ_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    nbCreators = mq::plugin::kNumCreators;
    return mq::plugin::all_creators();
}

extern "C" MQ_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
    mq::plugin::set_logger_finder(finder);
}

#endif

// Lets tools (mq-deploy doctor) recognize the library without TensorRT calls.
extern "C" MQ_PLUGIN_EXPORT char const* mq_plugins_version() {
#if defined(MQ_PLUGIN_DYNAMIC_ENTRY)
    return "0.1.0 (dynamic: getCreators)";
#else
    return "0.1.0 (static registration, namespace mq_deploy)";
#endif
}
