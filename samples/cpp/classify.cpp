// mq_trt_classify: image classification with the TensorRT engine of an mq-deploy Vision Mamba export.
//
//   engine (model.plan, from model.onnx):  images [B, 3, H, W] float32 -> logits [B, classes]
//
// Input: a .npy of preprocessed images, float32 [n, 3, H, W]. samples/python/classify.py
// --save-inputs writes one with the preprocessing the export's manifest.json records (resize, centre
// crop, mean and std: docs/export.md); an application does the same steps with its own image decoder
// (OpenCV, stb_image, nvJPEG) and hands the buffer to classify() below. The images go through the
// engine in batches within its profile (a short last batch padded with zero images up to the
// profile's smallest); the scan runs in libmq_plugins.so, loaded before the engine is deserialized.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "cuda_utils.h"
#include "sample_utils.h"
#include "trt_common.h"

namespace {

using mq_sample::check;
using mq_sample::DataType;
using mq_sample::DeviceBuffer;
using mq_sample::dims_string;
using mq_sample::dtype_name;
using mq_sample::fail;
using mq_sample::LoadedEngine;
using mq_sample::LogitType;
using mq_sample::make_dims;
using mq_sample::parse_int;
using mq_sample::PinnedBuffer;

constexpr char kImages[] = "images";
constexpr char kLogits[] = "logits";

struct Options : mq_sample::EngineOptions {
    std::string input;
    std::string labels;
    int top = 5;
    int batch = 0;  // 0: the engine profile's largest batch
};

constexpr char kUsage[] =
    "usage: mq_trt_classify --engine model.plan --input images.npy [options]\n"
    "\n"
    "  --engine PATH     the Vision Mamba engine (built from model.onnx by mq-deploy build)\n"
    "  --input PATH      preprocessed images, float32 [n, 3, H, W] .npy (samples/python/classify.py\n"
    "                    --save-inputs writes one from image files, with the manifest's preprocessing)\n"
    "  --plugins PATH    libmq_plugins.so (or its directory); default: $MQ_PLUGIN_PATH\n"
    "  --no-plugins      load no plugin library (an export with --scan onnx)\n"
    "  --labels PATH     class names, one per line (default: class indices)\n"
    "  --top K           classes printed per image (default 5)\n"
    "  --batch N         images per run (default: the engine profile's largest batch)\n"
    "  --warmup N        untimed runs before the timed pass (default 1)\n"
    "  --device N        CUDA device (default 0)\n"
    "  --verbose         TensorRT info messages and the engine's I/O tensors\n";

Options parse_options(int argc, char** argv) {
    Options opt;
    mq_sample::parse_flags(argc, argv, kUsage, [&](std::string const& arg, std::function<std::string()> const& next) {
        if (mq_sample::parse_engine_flag(arg, next, opt)) {
            return true;
        }
        if (arg == "--input") {
            opt.input = next();
            return true;
        }
        if (arg == "--labels") {
            opt.labels = next();
            return true;
        }
        if (arg == "--top") {
            opt.top = parse_int(arg, next(), 1);
            return true;
        }
        if (arg == "--batch") {
            opt.batch = parse_int(arg, next(), 1);
            return true;
        }
        return false;
    });
    if (opt.engine.empty() || opt.input.empty()) {
        fail(std::string("--engine and --input are required\n") + kUsage);
    }
    return opt;
}

// The images' [n, C, H, W] against the engine's images input [-1, C, H, W].
void check_images(mq_sample::NpyFloat32 const& images, LoadedEngine const& e, std::string const& input) {
    nvinfer1::Dims const want = e.engine->getTensorShape(kImages);
    bool ok = images.shape.size() == 4 && want.nbDims == 4 && !images.data.empty();
    for (int i = 1; ok && i < 4; ++i) {
        ok = want.d[i] < 0 || want.d[i] == images.shape[i];
    }
    if (!ok) {
        std::string got = "[";
        for (std::size_t i = 0; i < images.shape.size(); ++i) {
            got += (i ? ", " : "") + std::to_string(images.shape[i]);
        }
        fail(input + " holds images of shape " + got + "], the " + e.where() + " takes " + dims_string(want) +
             " (batch first): preprocess them to the model's size (samples/python/classify.py --save-inputs)");
    }
}

// Runs the engine on `images` in batches of `batch`; returns logits [n, classes] as float.
class Classifier {
public:
    // batch: images per run; min_batch: the engine profile's smallest batch (a shorter last batch is
    // padded with zero images up to it, and their rows are dropped).
    Classifier(LoadedEngine& e, int64_t batch, int64_t min_batch, std::vector<int64_t> image_shape, cudaStream_t stream)
        : mEngine(e), mBatch(batch), mMinBatch(min_batch), mShape(std::move(image_shape)), mStream(stream) {
        mImageFloats = static_cast<std::size_t>(mShape[1] * mShape[2] * mShape[3]);
        mLogitType = mq_sample::logit_type(e.engine->getTensorDataType(kLogits), e.where());
        nvinfer1::IExecutionContext& c = *e.context;
        check(c.setInputShape(kImages, make_dims({mBatch, mShape[1], mShape[2], mShape[3]})),
              "setInputShape(images) on the " + e.where());
        nvinfer1::Dims const logits = c.getTensorShape(kLogits);
        if (logits.nbDims != 2 || logits.d[0] != mBatch || logits.d[1] <= 0) {
            fail(e.where() + ": logits have shape " + dims_string(logits) + " for " + std::to_string(mBatch) +
                 " images; expected [batch, classes]");
        }
        mClasses = logits.d[1];
        mImages = DeviceBuffer(static_cast<std::size_t>(mBatch) * mImageFloats * sizeof(float));
        mLogits = DeviceBuffer(mq_sample::volume(logits, "logits") * mq_sample::logit_size(mLogitType));
        mLogitsHost = PinnedBuffer(mLogits.bytes());
        check(c.setTensorAddress(kImages, mImages.get()), "setTensorAddress(images)");
        check(c.setTensorAddress(kLogits, mLogits.get()), "setTensorAddress(logits)");
    }

    int64_t classes() const { return mClasses; }

    std::vector<float> classify(std::vector<float> const& images, int64_t n) {
        std::vector<float> out(static_cast<std::size_t>(n * mClasses));
        nvinfer1::IExecutionContext& c = *mEngine.context;
        for (int64_t first = 0; first < n; first += mBatch) {
            int64_t const count = std::min(mBatch, n - first);
            int64_t const run = std::max(count, mMinBatch);  // what the engine sees
            check(c.setInputShape(kImages, make_dims({run, mShape[1], mShape[2], mShape[3]})),
                  "setInputShape(images, batch " + std::to_string(run) + ") on the " + mEngine.where());
            std::size_t const image_bytes = mImageFloats * sizeof(float);
            MQ_CUDA_CHECK(cudaMemcpyAsync(mImages.get(), images.data() + first * mImageFloats,
                                          static_cast<std::size_t>(count) * image_bytes, cudaMemcpyHostToDevice,
                                          mStream));
            if (run > count) {  // zero images as padding; their logits are not read
                MQ_CUDA_CHECK(cudaMemsetAsync(static_cast<unsigned char*>(mImages.get()) + count * image_bytes, 0,
                                              static_cast<std::size_t>(run - count) * image_bytes, mStream));
            }
            check(c.enqueueV3(mStream), "enqueueV3 on the " + mEngine.where());
            std::size_t const row = static_cast<std::size_t>(mClasses) * mq_sample::logit_size(mLogitType);
            MQ_CUDA_CHECK(cudaMemcpyAsync(mLogitsHost.get(), mLogits.get(), static_cast<std::size_t>(count) * row,
                                          cudaMemcpyDeviceToHost, mStream));
            MQ_CUDA_CHECK(cudaStreamSynchronize(mStream));
            for (std::size_t i = 0; i < static_cast<std::size_t>(count * mClasses); ++i) {
                out[static_cast<std::size_t>(first * mClasses) + i] = mq_sample::logit_at(mLogitsHost.get(), i, mLogitType);
            }
        }
        return out;
    }

private:
    LoadedEngine& mEngine;
    int64_t mBatch;
    int64_t mMinBatch;
    std::vector<int64_t> mShape;
    cudaStream_t mStream;
    std::size_t mImageFloats = 0;
    int64_t mClasses = 0;
    LogitType mLogitType = LogitType::kFloat32;
    DeviceBuffer mImages, mLogits;
    PinnedBuffer mLogitsHost;
};

int run(Options const& opt) {
    static mq_sample::Logger logger;  // outlives the runtime and the engine
    logger.set_verbose(opt.verbose);

    // Bad input first, before a plugin library or an engine is loaded.
    mq_sample::NpyFloat32 images;
    std::vector<char> const npy = mq_sample::read_file(opt.input, "--input");
    try {
        images = mq_sample::parse_npy_float32(npy);
    } catch (std::exception const& e) {  // invalid_argument with the reason; anything else is a bad header
        fail(opt.input + ": " + e.what());
    }
    std::vector<std::string> labels;
    if (!opt.labels.empty()) {
        std::vector<char> const text = mq_sample::read_file(opt.labels, "--labels");
        labels = mq_sample::parse_labels(std::string(text.begin(), text.end()));
    }
    std::vector<char> const plan = mq_sample::read_file(opt.engine, "engine");
    mq_sample::load_plugin_library(opt.plugins, opt.no_plugins);  // before deserializing
    MQ_CUDA_CHECK(cudaSetDevice(opt.device));

    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    check(runtime != nullptr, "createInferRuntime");
    LoadedEngine engine = mq_sample::load_engine(*runtime, plan, opt.engine, "classifier", opt.verbose);
    if (engine.find("input_ids") != nullptr) {
        fail(engine.where() + " is a language model's engine (input_ids): run mq_trt_generate on it");
    }
    DataType const in_type = mq_sample::require(engine, kImages, true);
    if (in_type != DataType::kFLOAT) {
        fail(engine.where() + ": images are " + dtype_name(in_type) + "; the export contract is float32");
    }
    mq_sample::require(engine, kLogits, false);
    if (engine.tensors.size() != 2) {
        fail(engine.where() + " has " + std::to_string(engine.tensors.size()) +
             " I/O tensors; a Vision Mamba export has two, images and logits (--verbose lists them)");
    }
    check_images(images, engine, opt.input);

    nvinfer1::Dims const lo = engine.engine->getProfileShape(kImages, 0, nvinfer1::OptProfileSelector::kMIN);
    nvinfer1::Dims const hi = engine.engine->getProfileShape(kImages, 0, nvinfer1::OptProfileSelector::kMAX);
    int64_t const n = images.shape[0];
    // --batch within the profile: at most its largest batch, at least its smallest
    int64_t const batch = std::max<int64_t>(lo.d[0], std::min<int64_t>(opt.batch ? opt.batch : hi.d[0], hi.d[0]));
    if (opt.batch && batch != opt.batch) {
        std::fprintf(stderr, "note: --batch %d is outside the engine profile's %lld..%lld images: using %lld\n",
                     opt.batch, static_cast<long long>(lo.d[0]), static_cast<long long>(hi.d[0]),
                     static_cast<long long>(batch));
    }

    mq_sample::CudaStream stream;
    Classifier classifier(engine, batch, lo.d[0], images.shape, stream.get());
    if (!labels.empty() && static_cast<int64_t>(labels.size()) != classifier.classes()) {
        fail(opt.labels + " has " + std::to_string(labels.size()) + " names for " +
             std::to_string(classifier.classes()) + " classes");
    }
    for (int i = 0; i < opt.warmup; ++i) {  // first runs include lazy initialization: keep them out of the timing
        classifier.classify(images.data, std::min(batch, n));
    }
    auto const start = std::chrono::steady_clock::now();
    std::vector<float> const logits = classifier.classify(images.data, n);
    double const seconds = mq_sample::seconds_since(start);

    auto const classes = static_cast<std::size_t>(classifier.classes());
    for (int64_t i = 0; i < n; ++i) {
        std::cout << "image " << i << ':';
        auto const ranked = mq_sample::top_k_softmax(logits.data() + static_cast<std::size_t>(i) * classes, classes,
                                                     static_cast<std::size_t>(opt.top));
        for (std::size_t r = 0; r < ranked.size(); ++r) {
            std::string const name = labels.empty() ? std::to_string(ranked[r].index)
                                                    : labels[static_cast<std::size_t>(ranked[r].index)];
            char probability[32];
            std::snprintf(probability, sizeof probability, "%.3f", ranked[r].probability);
            std::cout << (r ? ", " : " ") << name << ' ' << probability;
        }
        std::cout << '\n';
    }
    std::fprintf(stderr, "%lld images in batches of %lld: %.3f ms (%.1f images/s)\n", static_cast<long long>(n),
                 static_cast<long long>(batch), seconds * 1e3, seconds > 0 ? static_cast<double>(n) / seconds : 0.0);
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
