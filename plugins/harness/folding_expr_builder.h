// A constant-folding nvinfer1::IExprBuilder for driving plugins outside TensorRT (the GPU harness).
//
// TensorRT builds IDimensionExpr trees while it plans a network; a plugin's getOutputShapes only
// composes them. Here every expression is either a known constant or "unknown" (a runtime
// dimension), and operations fold constants and propagate unknowns, which is all a shape function
// can observe through the public API. The classes derive from TensorRT's API wrappers (whose
// headers say not to, because TensorRT itself creates them): acceptable in a test harness, never
// in the plugin library.
#pragma once

#include <NvInferRuntime.h>

#include <algorithm>
#include <cstdint>
#include <deque>

namespace mq::harness {

class FoldedExpr final : public nvinfer1::IDimensionExpr {
public:
    FoldedExpr(bool known, int64_t value) : mValue(known, value) { mImpl = &mValue; }
    ~FoldedExpr() noexcept override = default;

private:
    struct Value final : nvinfer1::apiv::VDimensionExpr {
        Value(bool k, int64_t v) : known(k), value(v) {}
        bool isConstant() const override { return known; }
        int64_t getConstantValue() const override { return known ? value : -1; }
        bool isSizeTensor() const override { return false; }
        bool known;
        int64_t value;
    };
    Value mValue;
};

class FoldingExprBuilder final : public nvinfer1::IExprBuilder {
public:
    FoldingExprBuilder() { mImpl = &mBuilder; }
    ~FoldingExprBuilder() noexcept override = default;

    // A runtime dimension: not a build-time constant.
    nvinfer1::IDimensionExpr const* unknown() { return mBuilder.make(false, -1); }
    // A dimension that is a constant when known >= 0, a runtime dimension otherwise.
    nvinfer1::IDimensionExpr const* dim(int64_t value) { return mBuilder.make(value >= 0, value); }

private:
    struct Builder final : nvinfer1::apiv::VExprBuilder {
        std::deque<FoldedExpr> exprs;  // stable addresses: TensorRT hands out pointers too

        FoldedExpr const* make(bool known, int64_t value) { return &exprs.emplace_back(known, value); }

        nvinfer1::IDimensionExpr const* constant(int64_t value) override { return make(true, value); }

        nvinfer1::IDimensionExpr const* operation(nvinfer1::DimensionOperation op,
            nvinfer1::IDimensionExpr const& first, nvinfer1::IDimensionExpr const& second) override {
            if (!first.isConstant() || !second.isConstant()) {
                return make(false, -1);
            }
            int64_t const a = first.getConstantValue();
            int64_t const b = second.getConstantValue();
            using Op = nvinfer1::DimensionOperation;
            switch (op) {
            case Op::kSUM: return make(true, a + b);
            case Op::kPROD: return make(true, a * b);
            case Op::kMAX: return make(true, std::max(a, b));
            case Op::kMIN: return make(true, std::min(a, b));
            case Op::kSUB: return make(true, a - b);
            case Op::kEQUAL: return make(true, a == b ? 1 : 0);
            case Op::kLESS: return make(true, a < b ? 1 : 0);
            case Op::kFLOOR_DIV:
                return b == 0 ? nullptr : make(true, a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0));
            case Op::kCEIL_DIV:
                return b == 0 ? nullptr : make(true, a / b + ((a % b != 0) && ((a < 0) == (b < 0)) ? 1 : 0));
            }
            return nullptr;
        }

        nvinfer1::IDimensionExpr const* declareSizeTensor(int32_t /*outputIndex*/,
            nvinfer1::IDimensionExpr const& /*opt*/, nvinfer1::IDimensionExpr const& /*upper*/) override {
            return make(false, -1);
        }
    };
    Builder mBuilder;
};

}  // namespace mq::harness
