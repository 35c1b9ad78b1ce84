// Error reporting for the plugins: TensorRT's logger when one is reachable, stderr otherwise.
// Never throws (every TensorRT plugin method is noexcept).
#pragma once

#include <NvInferRuntime.h>

namespace mq::plugin {

void log_error(char const* plugin, char const* message) noexcept;
void log_warning(char const* plugin, char const* message) noexcept;

// Set by setLoggerFinder() in the --dynamicPlugins build; the static build asks libnvinfer.
void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept;

}  // namespace mq::plugin
