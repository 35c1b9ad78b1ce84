#include "plugin_log.h"

#include <atomic>
#include <cstdio>
#include <string>

namespace mq::plugin {
namespace {

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

nvinfer1::ILogger* find_logger() {
    if (nvinfer1::ILoggerFinder* finder = gLoggerFinder.load()) {
        return finder->findLogger();
    }
#if defined(MQ_PLUGIN_DYNAMIC_ENTRY) || defined(MQ_PLUGIN_NO_NVINFER)
    return nullptr;  // a loadLibrary() plugin (or the harness) must not call into libnvinfer itself
#else
    return ::getLogger();  // libnvinfer's global logger (extern "C", TensorRT >= 10.0)
#endif
}

void log(nvinfer1::ILogger::Severity severity, char const* plugin, char const* message) noexcept {
    try {
        std::string const text = std::string("[mq_deploy ") + plugin + "] " + message;
        if (nvinfer1::ILogger* logger = find_logger()) {
            logger->log(severity, text.c_str());
            return;
        }
        std::fprintf(stderr, "%s\n", text.c_str());
    } catch (...) {
        std::fprintf(stderr, "[mq_deploy %s] %s\n", plugin, message);
    }
}

}  // namespace

void log_error(char const* plugin, char const* message) noexcept {
    log(nvinfer1::ILogger::Severity::kERROR, plugin, message);
}

void log_warning(char const* plugin, char const* message) noexcept {
    log(nvinfer1::ILogger::Severity::kWARNING, plugin, message);
}

void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept { gLoggerFinder.store(finder); }

}  // namespace mq::plugin
