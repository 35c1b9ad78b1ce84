// mq_trt_generate: greedy text generation with the TensorRT engines of an mq-deploy export.
//
//   prefill engine (model.plan, from model.onnx):        input_ids [1, T] -> logits [1, T, V],
//                                                        conv_state_out.<i>, ssm_state_out.<i>
//   decode engine  (model.decode.plan, from model.decode.onnx): input_ids [1, 1], conv_state.<i>,
//                                                        ssm_state.<i> -> logits [1, 1, V], *_out.<i>
//
// The prompt is tokenized with the byte-level tokenizer (UTF-8 bytes = token ids), the prefill engine
// runs on the whole prompt, the argmax of the last position's logits is the first new token, and
// each decode step feeds the previous token and the previous step's states. The states ping-pong
// between two device buffers per tensor, so nothing is copied between steps. The selective scan of
// the engines runs in libmq_plugins.so, which registers its creators when it is loaded: it must be
// dlopen'ed before the engines are deserialized.
//
// TensorRT 10.x / 11.x API only: IRuntime, ICudaEngine, IExecutionContext, named I/O tensors, enqueueV3.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_utils.h"
#include "sample_utils.h"
#include "trt_common.h"

namespace {

using mq_sample::check;
using mq_sample::CudaStream;
using mq_sample::DataType;
using mq_sample::DeviceBuffer;
using mq_sample::dims_string;
using mq_sample::dtype_name;
using mq_sample::dtype_size;
using mq_sample::fail;
using mq_sample::LoadedEngine;
using mq_sample::logit_type;
using mq_sample::LogitType;
using mq_sample::make_dims;
using mq_sample::parse_int;
using mq_sample::PinnedBuffer;
using mq_sample::require;
using mq_sample::seconds_since;
using mq_sample::TensorInfo;
using mq_sample::volume;

constexpr char kInputIds[] = "input_ids";
constexpr char kLogits[] = "logits";

// ---- options -----------------------------------------------------------------------------------
struct Options : mq_sample::EngineOptions {
    std::string decode_engine;
    bool decode_engine_given = false;
    std::string prompt;
    bool have_prompt = false;
    std::string ids;
    int max_new_tokens = 32;
    bool print_ids = false;
};

constexpr char kUsage[] =
    "usage: mq_trt_generate --engine model.plan --prompt TEXT [options]\n"
    "\n"
    "  --engine PATH          prefill engine (built from model.onnx)\n"
    "  --decode-engine PATH   decode engine (built from model.decode.onnx); default: the .decode.plan\n"
    "                         beside --engine (out/model.plan -> out/model.decode.plan)\n"
    "  --plugins PATH         libmq_plugins.so (or its directory); default: $MQ_PLUGIN_PATH\n"
    "  --no-plugins           load no plugin library (engines exported with --scan onnx)\n"
    "  --prompt TEXT          prompt, tokenized as UTF-8 bytes (the byte-level tokenizer)\n"
    "  --ids 1,2,3            prompt as token ids instead of --prompt\n"
    "  --max-new-tokens N     tokens to generate (default 32): the first from the prefill logits,\n"
    "                         the other N-1 from decode steps\n"
    "  --warmup N             untimed prefill + decode runs before the timed one (default 1)\n"
    "  --device N             CUDA device (default 0)\n"
    "  --print-ids            also print the generated token ids\n"
    "  --verbose              TensorRT info messages and every engine I/O tensor\n";

Options parse_options(int argc, char** argv) {
    Options opt;
    mq_sample::parse_flags(argc, argv, kUsage, [&](std::string const& arg, std::function<std::string()> const& next) {
        if (mq_sample::parse_engine_flag(arg, next, opt)) {
            return true;
        }
        if (arg == "--decode-engine") {
            opt.decode_engine = next();
            opt.decode_engine_given = true;
            return true;
        }
        if (arg == "--prompt") {
            opt.prompt = next();
            opt.have_prompt = true;
            return true;
        }
        if (arg == "--ids") {
            opt.ids = next();
            return true;
        }
        if (arg == "--max-new-tokens") {
            opt.max_new_tokens = parse_int(arg, next(), 0);
            return true;
        }
        if (arg == "--print-ids") {
            opt.print_ids = true;
            return true;
        }
        return false;
    });
    if (opt.engine.empty()) {
        fail(std::string("--engine is required\n") + kUsage);
    }
    if (opt.have_prompt == !opt.ids.empty()) {
        fail(std::string("give exactly one of --prompt and --ids\n") + kUsage);
    }
    if (opt.decode_engine.empty()) {
        opt.decode_engine = mq_sample::default_decode_engine_path(opt.engine);
    }
    return opt;
}

// ---- engines -----------------------------------------------------------------------------------
// One recurrent state: the decode input and the output (of prefill and decode) that feeds it.
struct StateTensor {
    std::string input;   // conv_state.<i> / ssm_state.<i>
    std::string output;  // conv_state_out.<i> / ssm_state_out.<i>
    DataType dtype;
};

struct IoPlan {
    DataType prefill_ids = DataType::kINT64;
    DataType decode_ids = DataType::kINT64;
    DataType prefill_logits = DataType::kFLOAT;
    DataType decode_logits = DataType::kFLOAT;
    std::vector<StateTensor> states;
};

DataType require_ids(LoadedEngine const& e) {
    DataType const t = require(e, kInputIds, true);
    if (t != DataType::kINT64 && t != DataType::kINT32) {
        fail(e.where() + ": input_ids is " + dtype_name(t) + "; expected int64 (or int32)");
    }
    return t;
}

// The I/O contract of docs/export.md, read from the engines themselves.
IoPlan check_engines(LoadedEngine const& prefill, LoadedEngine const& decode) {
    IoPlan io;
    io.prefill_ids = require_ids(prefill);
    io.decode_ids = require_ids(decode);
    io.prefill_logits = require(prefill, kLogits, false);
    io.decode_logits = require(decode, kLogits, false);
    logit_type(io.prefill_logits, prefill.where());
    logit_type(io.decode_logits, decode.where());

    for (TensorInfo const& t : decode.tensors) {
        if (!t.is_input || t.name == kInputIds) {
            continue;
        }
        StateTensor s{t.name, mq_sample::state_output_name(t.name), t.dtype};
        for (LoadedEngine const* e : {&prefill, &decode}) {
            if (require(*e, s.output, false) != s.dtype) {
                fail(e->where() + ": " + s.output + " is " + dtype_name(e->find(s.output)->dtype) +
                     " but the decode input " + s.input + " is " + dtype_name(s.dtype) +
                     " (engines from different exports?)");
            }
        }
        io.states.push_back(std::move(s));
    }
    if (io.states.empty()) {
        fail(decode.where() + " has no state inputs (conv_state.<i>, ssm_state.<i>): is it the decode engine?");
    }
    for (LoadedEngine const* e : {&prefill, &decode}) {
        for (TensorInfo const& t : e->tensors) {
            bool known = t.name == kInputIds || t.name == kLogits;
            for (StateTensor const& s : io.states) {
                known = known || t.name == s.output || (e == &decode && t.name == s.input);
            }
            if (!known) {
                char const* hint = e == &prefill && t.is_input
                                       ? " (the prefill engine takes input_ids only: is it the decode engine?)"
                                       : " (engines from different exports?)";
                fail(e->where() + ": unexpected " + (t.is_input ? "input " : "output ") + t.name + hint);
            }
        }
    }
    return io;
}

// ---- generation --------------------------------------------------------------------------------
// Owns the I/O buffers of both engines for one prompt length (batch 1) and runs them on one stream.
class Generator {
public:
    Generator(LoadedEngine& prefill, LoadedEngine& decode, IoPlan io, int64_t prompt_length, cudaStream_t stream)
        : mPrefill(prefill), mDecode(decode), mIo(std::move(io)), mStream(stream), mPromptLength(prompt_length) {
        check_profile(prompt_length);
        nvinfer1::IExecutionContext& pc = *mPrefill.context;
        nvinfer1::IExecutionContext& dc = *mDecode.context;

        // Prefill: input_ids [1, T]; the output shapes follow from it.
        check(pc.setInputShape(kInputIds, make_dims({1, prompt_length})),
              "setInputShape(input_ids, [1, " + std::to_string(prompt_length) + "]) on the " + mPrefill.where());
        std::size_t const ids_size = dtype_size(mIo.prefill_ids);
        mPrefillIds = DeviceBuffer(static_cast<std::size_t>(prompt_length) * ids_size);
        mPrefillIdsHost = PinnedBuffer(mPrefillIds.bytes());
        nvinfer1::Dims const logits_dims = pc.getTensorShape(kLogits);
        std::size_t const logits_count = volume(logits_dims, "prefill logits");
        mVocab = logits_dims.nbDims > 0 ? logits_dims.d[logits_dims.nbDims - 1] : 0;
        if (logits_dims.nbDims != 3 || logits_dims.d[1] != prompt_length || mVocab <= 0) {
            fail(mPrefill.where() + ": logits have shape " + dims_string(logits_dims) + " for input_ids [1, " +
                 std::to_string(prompt_length) + "]; expected [1, " + std::to_string(prompt_length) + ", vocab]");
        }
        mPrefillLogits = DeviceBuffer(logits_count * dtype_size(mIo.prefill_logits));
        check(pc.setTensorAddress(kInputIds, mPrefillIds.get()), "setTensorAddress(input_ids) on the prefill engine");
        check(pc.setTensorAddress(kLogits, mPrefillLogits.get()), "setTensorAddress(logits) on the prefill engine");

        // States: two buffers each; prefill writes buffer 0, decode step k reads one and writes the other.
        for (StateTensor const& s : mIo.states) {
            nvinfer1::Dims const dims = pc.getTensorShape(s.output.c_str());
            std::size_t const bytes = volume(dims, "prefill " + s.output) * dtype_size(s.dtype);
            std::array<DeviceBuffer, 2>& pair = mStates[s.input];
            pair[0] = DeviceBuffer(bytes);
            pair[1] = DeviceBuffer(bytes);
            check(pc.setTensorAddress(s.output.c_str(), pair[0].get()),
                  "setTensorAddress(" + s.output + ") on the prefill engine");
            check(dc.setInputShape(s.input.c_str(), dims),
                  "setInputShape(" + s.input + ", " + dims_string(dims) + ") on the " + mDecode.where());
        }

        // Decode: input_ids [1, 1], logits [1, 1, vocab].
        check(dc.setInputShape(kInputIds, make_dims({1, 1})),
              "setInputShape(input_ids, [1, 1]) on the " + mDecode.where());
        nvinfer1::Dims const step_dims = dc.getTensorShape(kLogits);
        if (step_dims.nbDims != 3 || step_dims.d[1] != 1 || step_dims.d[2] != mVocab) {
            fail(mDecode.where() + ": logits have shape " + dims_string(step_dims) + "; expected [1, 1, " +
                 std::to_string(mVocab) + "] like the prefill engine's vocabulary");
        }
        for (StateTensor const& s : mIo.states) {
            nvinfer1::Dims const dims = dc.getTensorShape(s.output.c_str());
            if (volume(dims, "decode " + s.output) * dtype_size(s.dtype) != mStates[s.input][0].bytes()) {
                fail(mDecode.where() + ": " + s.output + " has shape " + dims_string(dims) +
                     ", which differs from the prefill engine's (engines from different exports?)");
            }
        }
        mStepIds = DeviceBuffer(dtype_size(mIo.decode_ids));
        mStepIdsHost = PinnedBuffer(mStepIds.bytes());
        mStepLogits = DeviceBuffer(volume(step_dims, "decode logits") * dtype_size(mIo.decode_logits));
        check(dc.setTensorAddress(kInputIds, mStepIds.get()), "setTensorAddress(input_ids) on the decode engine");
        check(dc.setTensorAddress(kLogits, mStepLogits.get()), "setTensorAddress(logits) on the decode engine");
        check(pc.allInputDimensionsSpecified(), "allInputDimensionsSpecified on the prefill engine");
        check(dc.allInputDimensionsSpecified(), "allInputDimensionsSpecified on the decode engine");

        mLogitsHost = PinnedBuffer(static_cast<std::size_t>(mVocab) *
                                   std::max(dtype_size(mIo.prefill_logits), dtype_size(mIo.decode_logits)));
    }

    int64_t vocab() const { return mVocab; }

    // Runs the prompt; returns the argmax of the last position. The states end in buffer 0.
    int64_t prefill(std::vector<int64_t> const& ids) {
        write_ids(mPrefillIdsHost.get(), ids, mIo.prefill_ids);
        MQ_CUDA_CHECK(cudaMemcpyAsync(mPrefillIds.get(), mPrefillIdsHost.get(), mPrefillIds.bytes(),
                                      cudaMemcpyHostToDevice, mStream));
        check(mPrefill.context->enqueueV3(mStream), "enqueueV3 on the " + mPrefill.where());
        // Only the last position's row of the [1, T, vocab] logits is needed.
        std::size_t const row = static_cast<std::size_t>(mVocab) * dtype_size(mIo.prefill_logits);
        auto const* last = static_cast<unsigned char const*>(mPrefillLogits.get()) +
                           static_cast<std::size_t>(mPromptLength - 1) * row;
        MQ_CUDA_CHECK(cudaMemcpyAsync(mLogitsHost.get(), last, row, cudaMemcpyDeviceToHost, mStream));
        MQ_CUDA_CHECK(cudaStreamSynchronize(mStream));
        mCurrent = 0;
        return pick(mIo.prefill_logits, "prefill");
    }

    // One decode step: feeds `token` and the current states, returns the argmax; the new states
    // land in the other buffer of each pair, which becomes the current one (no copies).
    int64_t step(int64_t token) {
        nvinfer1::IExecutionContext& dc = *mDecode.context;
        for (StateTensor const& s : mIo.states) {
            std::array<DeviceBuffer, 2>& pair = mStates[s.input];
            check(dc.setTensorAddress(s.input.c_str(), pair[mCurrent].get()), "setTensorAddress(" + s.input + ")");
            check(dc.setTensorAddress(s.output.c_str(), pair[1 - mCurrent].get()),
                  "setTensorAddress(" + s.output + ")");
        }
        write_ids(mStepIdsHost.get(), {token}, mIo.decode_ids);
        MQ_CUDA_CHECK(cudaMemcpyAsync(mStepIds.get(), mStepIdsHost.get(), mStepIds.bytes(), cudaMemcpyHostToDevice,
                                      mStream));
        check(dc.enqueueV3(mStream), "enqueueV3 on the " + mDecode.where());
        MQ_CUDA_CHECK(cudaMemcpyAsync(mLogitsHost.get(), mStepLogits.get(), mStepLogits.bytes(), cudaMemcpyDeviceToHost,
                                      mStream));
        MQ_CUDA_CHECK(cudaStreamSynchronize(mStream));
        mCurrent = 1 - mCurrent;
        return pick(mIo.decode_logits, "decode");
    }

private:
    void check_profile(int64_t length) const {
        nvinfer1::ICudaEngine const& e = *mPrefill.engine;
        nvinfer1::Dims const lo = e.getProfileShape(kInputIds, 0, nvinfer1::OptProfileSelector::kMIN);
        nvinfer1::Dims const hi = e.getProfileShape(kInputIds, 0, nvinfer1::OptProfileSelector::kMAX);
        if (lo.nbDims == 2 && hi.nbDims == 2 && (length < lo.d[1] || length > hi.d[1])) {
            fail("the prompt has " + std::to_string(length) + " tokens but the " + mPrefill.where() +
                 " accepts input_ids from " + dims_string(lo) + " to " + dims_string(hi) +
                 ": shorten the prompt or rebuild the engine with a longer sequence profile");
        }
    }

    static void write_ids(void* host, std::vector<int64_t> const& ids, DataType type) {
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (type == DataType::kINT64) {
                static_cast<int64_t*>(host)[i] = ids[i];
            } else {
                if (ids[i] < INT32_MIN || ids[i] > INT32_MAX) {
                    fail("token id " + std::to_string(ids[i]) + " does not fit the engine's int32 input_ids");
                }
                static_cast<int32_t*>(host)[i] = static_cast<int32_t>(ids[i]);
            }
        }
    }

    int64_t pick(DataType type, char const* stage) const {
        int64_t const token = mq_sample::argmax(mLogitsHost.get(), static_cast<std::size_t>(mVocab),
                                                logit_type(type, stage));
        if (token < 0) {
            fail(std::string("the ") + stage + " logits are all NaN");
        }
        return token;
    }

    LoadedEngine& mPrefill;
    LoadedEngine& mDecode;
    IoPlan mIo;
    cudaStream_t mStream;
    int64_t mPromptLength;
    int64_t mVocab = 0;
    DeviceBuffer mPrefillIds, mPrefillLogits, mStepIds, mStepLogits;
    PinnedBuffer mPrefillIdsHost, mStepIdsHost, mLogitsHost;
    std::map<std::string, std::array<DeviceBuffer, 2>> mStates;  // decode input name -> ping-pong pair
    std::size_t mCurrent = 0;                                      // which buffer of each pair holds the state
};

std::string rate_line(char const* stage, std::size_t tokens, double seconds) {
    char line[160];
    std::snprintf(line, sizeof line, "%s: %zu tokens in %.3f ms (%.1f tokens/s, %.3f ms/token)", stage, tokens,
                  seconds * 1e3, seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0,
                  tokens ? seconds * 1e3 / static_cast<double>(tokens) : 0.0);
    return line;
}

int run(Options const& opt) {
    static mq_sample::Logger logger;  // outlives the runtime and the engines
    logger.set_verbose(opt.verbose);

    std::vector<int64_t> const prompt =
        opt.have_prompt ? mq_sample::byte_encode(opt.prompt) : mq_sample::parse_ids(opt.ids);
    if (prompt.empty()) {
        fail("the prompt is empty: the prefill engine needs at least one token");
    }

    std::vector<char> const prefill_plan = mq_sample::read_file(opt.engine, "prefill engine");
    std::vector<char> const decode_plan = mq_sample::read_file(
        opt.decode_engine, opt.decode_engine_given ? "decode engine" : "decode engine (default beside --engine; "
                                                                       "pass --decode-engine)");
    // before deserializing: the engines look their plugin creators up
    mq_sample::load_plugin_library(opt.plugins, opt.no_plugins);
    MQ_CUDA_CHECK(cudaSetDevice(opt.device));

    // Declaration order matters: the runtime must outlive the engines it deserialized.
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    check(runtime != nullptr, "createInferRuntime");
    LoadedEngine prefill = mq_sample::load_engine(*runtime, prefill_plan, opt.engine, "prefill", opt.verbose);
    LoadedEngine decode = mq_sample::load_engine(*runtime, decode_plan, opt.decode_engine, "decode", opt.verbose);
    IoPlan io = check_engines(prefill, decode);
    std::fprintf(stderr, "engines: %s (input_ids %s, logits %s), %s (%zu state tensors, logits %s)\n",
                 opt.engine.c_str(), dtype_name(io.prefill_ids).c_str(), dtype_name(io.prefill_logits).c_str(),
                 opt.decode_engine.c_str(), io.states.size(), dtype_name(io.decode_logits).c_str());

    CudaStream stream;
    Generator gen(prefill, decode, std::move(io), static_cast<int64_t>(prompt.size()), stream.get());
    if (gen.vocab() != 256 && opt.have_prompt) {
        std::fprintf(stderr, "warning: the vocabulary has %lld entries, not the byte tokenizer's 256: --prompt is "
                             "tokenized as bytes all the same (pass --ids for the model's own tokenizer)\n",
                     static_cast<long long>(gen.vocab()));
    }

    for (int64_t id : prompt) {
        if (id >= gen.vocab()) {
            fail("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(gen.vocab()));
        }
    }

    for (int i = 0; i < opt.warmup; ++i) {  // first runs include lazy initialization: keep them out of the timing
        int64_t const t = gen.prefill(prompt);
        if (opt.max_new_tokens > 1) {
            gen.step(t);
        }
    }

    std::vector<int64_t> generated;
    auto start = std::chrono::steady_clock::now();
    if (opt.max_new_tokens > 0) {
        generated.push_back(gen.prefill(prompt));
    } else {
        gen.prefill(prompt);
    }
    double const prefill_seconds = seconds_since(start);

    start = std::chrono::steady_clock::now();
    while (generated.size() < static_cast<std::size_t>(opt.max_new_tokens)) {
        generated.push_back(gen.step(generated.back()));
    }
    double const decode_seconds = seconds_since(start);

    std::vector<int64_t> all = prompt;
    all.insert(all.end(), generated.begin(), generated.end());
    std::cout << mq_sample::byte_decode(all) << "\n\n";
    if (opt.print_ids) {
        std::cout << "generated ids:";
        for (int64_t id : generated) {
            std::cout << ' ' << id;
        }
        std::cout << '\n';
    }
    std::cout << rate_line("prefill", prompt.size(), prefill_seconds) << '\n';
    std::size_t const steps = generated.empty() ? 0 : generated.size() - 1;
    std::cout << rate_line("decode", steps, decode_seconds) << '\n';
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse_options(argc, argv));
    } catch (std::exception const& e) {
        std::cerr << "error: " << e.what() << '\n';
        return 1;
    }
}
