// The TensorRT side the two C++ samples share (mq_trt_generate in main.cpp, mq_trt_classify in
// classify.cpp): errors, the logger, data types and shapes, loading libmq_plugins.so before any plan,
// and deserializing a plan with its I/O tensors listed. TensorRT 10.x / 11.x runtime API only.
#pragma once

#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "sample_utils.h"

namespace mq_sample {

using nvinfer1::DataType;

inline constexpr char kPluginEnv[] = "MQ_PLUGIN_PATH";
inline constexpr char kPluginLibrary[] = "libmq_plugins.so";
inline constexpr char kPluginNamespace[] = "mq_deploy";  // plugins/common/plugin_names.h
inline constexpr char kPluginVersion[] = "1";
inline constexpr char kSelectiveScan[] = "SelectiveScan";

[[noreturn]] inline void fail(std::string const& message) {
    throw std::runtime_error(message);
}

// A TensorRT call that reports failure with false/null: fail with our message (TensorRT has
// already logged its own reason through the logger).
inline void check(bool ok, std::string const& what) {
    if (!ok) {
        fail(what + " failed (see the TensorRT messages above)");
    }
}

// Walks the command line: "--flag value" and "--flag=value"; -h / --help prints `usage` and exits.
// handle(flag, next) returns false for a flag it does not know; next() gives the flag's value.
inline void parse_flags(int argc, char** argv, char const* usage,
                        std::function<bool(std::string const&, std::function<std::string()> const&)> const& handle) {
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        std::string value;
        bool has_inline_value = false;
        if (std::size_t const eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            has_inline_value = true;
        }
        std::function<std::string()> const next = [&]() -> std::string {
            if (has_inline_value) {
                return value;
            }
            if (i + 1 >= argc) {
                fail(arg + " needs a value");
            }
            return argv[++i];
        };
        if (arg == "-h" || arg == "--help") {
            std::cout << usage;
            std::exit(0);
        }
        if (!handle(arg, next)) {
            fail("unknown argument '" + arg + "'\n" + usage);
        }
    }
}

// The options both apps take: the plan, the plugin library, warm-up runs, the device, verbosity.
struct EngineOptions {
    std::string engine;
    std::string plugins;
    bool no_plugins = false;
    int warmup = 1;
    int device = 0;
    bool verbose = false;
};

inline int parse_int(std::string const& flag, std::string const& value, int min_value) {
    try {
        std::size_t used = 0;
        int const v = std::stoi(value, &used);
        if (used == value.size() && v >= min_value) {
            return v;
        }
    } catch (std::exception const&) {
    }
    fail(flag + " needs an integer >= " + std::to_string(min_value) + ", got '" + value + "'");
}

// One of EngineOptions' flags into `opt`; false for any other flag.
inline bool parse_engine_flag(std::string const& arg, std::function<std::string()> const& next, EngineOptions& opt) {
    if (arg == "--engine") {
        opt.engine = next();
    } else if (arg == "--plugins") {
        opt.plugins = next();
    } else if (arg == "--no-plugins") {
        opt.no_plugins = true;
    } else if (arg == "--warmup") {
        opt.warmup = parse_int(arg, next(), 0);
    } else if (arg == "--device") {
        opt.device = parse_int(arg, next(), 0);
    } else if (arg == "--verbose") {
        opt.verbose = true;
    } else {
        return false;
    }
    return true;
}


// ---- TensorRT logger ---------------------------------------------------------------------------
class Logger : public nvinfer1::ILogger {
public:
    void set_verbose(bool verbose) noexcept { mMaxSeverity = verbose ? Severity::kINFO : Severity::kWARNING; }

    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        if (severity > mMaxSeverity) {  // lower value = more severe
            return;
        }
        char const* tag = severity == Severity::kINTERNAL_ERROR ? "internal error"
                          : severity == Severity::kERROR        ? "error"
                          : severity == Severity::kWARNING      ? "warning"
                          : severity == Severity::kINFO         ? "info"
                                                                : "verbose";
        std::fprintf(stderr, "[TensorRT %s] %s\n", tag, msg);
    }

private:
    Severity mMaxSeverity = Severity::kWARNING;
};

// ---- data types and shapes ---------------------------------------------------------------------
inline std::string dtype_name(DataType t) {
    switch (t) {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    case DataType::kBF16: return "bfloat16";
    case DataType::kINT8: return "int8";
    case DataType::kINT32: return "int32";
    case DataType::kINT64: return "int64";
    case DataType::kBOOL: return "bool";
    case DataType::kUINT8: return "uint8";
    case DataType::kFP8: return "fp8";
    default: return "DataType(" + std::to_string(static_cast<int>(t)) + ")";
    }
}

inline std::size_t dtype_size(DataType t) {
    switch (t) {
    case DataType::kFLOAT:
    case DataType::kINT32: return 4;
    case DataType::kHALF:
    case DataType::kBF16: return 2;
    case DataType::kINT64: return 8;
    case DataType::kINT8:
    case DataType::kBOOL:
    case DataType::kUINT8:
    case DataType::kFP8: return 1;
    default: fail("I/O tensors of type " + dtype_name(t) + " are not supported by this sample");
    }
}

inline LogitType logit_type(DataType t, std::string const& engine) {
    switch (t) {
    case DataType::kFLOAT: return LogitType::kFloat32;
    case DataType::kHALF: return LogitType::kFloat16;
    case DataType::kBF16: return LogitType::kBFloat16;
    default: fail(engine + ": logits are " + dtype_name(t) + "; expected float32, float16 or bfloat16");
    }
}

inline std::string dims_string(nvinfer1::Dims const& d) {
    std::ostringstream s;
    s << '[';
    for (int32_t i = 0; i < d.nbDims; ++i) {
        s << (i ? ", " : "") << d.d[i];
    }
    s << ']';
    return s.str();
}

inline nvinfer1::Dims make_dims(std::vector<int64_t> const& values) {
    nvinfer1::Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
        d.d[i] = values[i];
    }
    return d;
}

// Number of elements; fails when a dimension is still unknown (-1).
inline std::size_t volume(nvinfer1::Dims const& d, std::string const& what) {
    if (d.nbDims < 0) {
        fail("no shape for " + what + " (is it an I/O tensor of this engine?)");
    }
    std::size_t n = 1;
    for (int32_t i = 0; i < d.nbDims; ++i) {
        if (d.d[i] < 0) {
            fail(what + " has an unresolved shape " + dims_string(d) + " after the input shapes were set");
        }
        n *= static_cast<std::size_t>(d.d[i]);
    }
    return n;
}

// ---- plugin library ----------------------------------------------------------------------------
// Loads libmq_plugins.so with RTLD_NOW | RTLD_GLOBAL; its static initializer registers the
// SelectiveScan and HadamardTransform creators under the namespace "mq_deploy". The handle is never
// closed: the registry and the deserialized plugin objects point into the library.
inline void load_plugin_library(std::string const& plugins, bool no_plugins) {
    if (no_plugins) {
        return;
    }
    std::string path = plugins;
    std::string source = "--plugins";
    if (path.empty()) {
        if (char const* env = std::getenv(kPluginEnv); env != nullptr && *env != '\0') {
            path = env;
            source = kPluginEnv;
        }
    }
    if (path.empty()) {
        fail(std::string("no plugin library: pass --plugins /path/to/") + kPluginLibrary + " or set " + kPluginEnv +
             " (a file or its directory); it is built by the top-level CMakeLists.txt of mq-deploy (target "
             "mq_plugins). Engines exported with --scan onnx need none: pass --no-plugins.");
    }
    if (path.find('/') != std::string::npos) {  // a bare file name is left to the dynamic loader's search
        std::error_code ec;
        if (std::filesystem::is_directory(path, ec)) {
            path = (std::filesystem::path(path) / kPluginLibrary).string();
        }
        if (!std::filesystem::is_regular_file(path, ec)) {
            fail("plugin library not found: " + path + " (from " + source + ")");
        }
    }
    dlerror();
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (handle == nullptr) {
        char const* why = dlerror();
        fail("cannot load the plugin library " + path + " (from " + source + "): " + (why ? why : "unknown error"));
    }
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    if (registry == nullptr || registry->getCreator(kSelectiveScan, kPluginVersion, kPluginNamespace) == nullptr) {
        fail("loaded " + path + " but no " + kSelectiveScan + " creator (version " + kPluginVersion + ", namespace \"" +
             kPluginNamespace + "\") is registered: use libmq_plugins.so, not libmq_plugins_dynamic.so (that one is "
             "for trtexec --dynamicPlugins), built against the TensorRT this program runs with");
    }
    std::fprintf(stderr, "plugins: %s\n", path.c_str());
}

struct TensorInfo {
    std::string name;
    DataType dtype;
    bool is_input;
};

struct LoadedEngine {
    std::string path;
    std::string role;  // "prefill" or "decode", for messages
    // Declaration order = reverse destruction order: the context goes before its engine.
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    std::vector<TensorInfo> tensors;

    TensorInfo const* find(std::string const& name) const {
        for (TensorInfo const& t : tensors) {
            if (t.name == name) {
                return &t;
            }
        }
        return nullptr;
    }
    std::string where() const { return role + " engine " + path; }
};

inline std::vector<char> read_file(std::string const& path, std::string const& what) {
    std::ifstream file(path, std::ios::binary | std::ios::ate);
    if (!file) {
        fail(what + " not found or not readable: " + path);
    }
    std::streamsize const size = file.tellg();
    std::vector<char> data(static_cast<std::size_t>(size > 0 ? size : 0));
    file.seekg(0);
    if (size <= 0 || !file.read(data.data(), size)) {
        fail(what + " is empty or cannot be read: " + path);
    }
    return data;
}

inline LoadedEngine load_engine(nvinfer1::IRuntime& runtime, std::vector<char> const& plan, std::string const& path,
                         std::string const& role, bool verbose) {
    LoadedEngine e;
    e.path = path;
    e.role = role;
    e.engine.reset(runtime.deserializeCudaEngine(plan.data(), plan.size()));
    if (!e.engine) {
        fail("cannot deserialize the " + role + " engine " + path +
             ": a plan only loads in the TensorRT version (and on the GPU type) it was built with, and its "
             "plugins must be registered first (--plugins); see the TensorRT messages above");
    }
    int32_t const n = e.engine->getNbIOTensors();
    for (int32_t i = 0; i < n; ++i) {
        char const* name = e.engine->getIOTensorName(i);
        TensorInfo t{name, e.engine->getTensorDataType(name),
                     e.engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT};
        if (e.engine->getTensorLocation(name) != nvinfer1::TensorLocation::kDEVICE) {
            fail(e.where() + ": I/O tensor " + t.name + " lives on the host; this sample expects device tensors");
        }
        if (verbose) {
            std::fprintf(stderr, "  %s %-6s %-22s %-8s %s\n", role.c_str(), t.is_input ? "input" : "output", name,
                         dtype_name(t.dtype).c_str(), dims_string(e.engine->getTensorShape(name)).c_str());
        }
        e.tensors.push_back(std::move(t));
    }
    e.context.reset(e.engine->createExecutionContext());
    check(e.context != nullptr, "createExecutionContext for " + e.where());
    return e;
}

inline DataType require(LoadedEngine const& e, std::string const& name, bool input) {
    TensorInfo const* t = e.find(name);
    if (t == nullptr || t->is_input != input) {
        fail(e.where() + " has no " + (input ? "input" : "output") + " named '" + name +
             "' (see docs/export.md for the graph I/O; --verbose lists this engine's tensors)");
    }
    return t->dtype;
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace mq_sample
