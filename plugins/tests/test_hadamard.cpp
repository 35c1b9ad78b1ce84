// Hadamard: the embedded base matrices (generated from hadamard_bases.txt) are orthogonal, the
// size rule, and the HadamardTransform / HadamardQuantize plugin argument checks.
#include <cstdint>
#include <vector>

#include "hadamard_args.h"
#include "hadamard_bases_generated.h"
#include "hadamard_size.h"
#include "unit_test.h"

using namespace mq::hadamard;

namespace {

bool is_hadamard(int m, std::vector<int> const& h) {
    if (static_cast<int>(h.size()) != m * m) {
        return false;
    }
    for (int i = 0; i < m; ++i) {
        for (int j = 0; j < m; ++j) {
            int dot = 0;
            for (int k = 0; k < m; ++k) {
                dot += h[i * m + k] * h[j * m + k];
            }
            if (dot != (i == j ? m : 0)) {
                return false;
            }
        }
    }
    return true;
}

TensorShape shape(std::initializer_list<int64_t> dims) {
    TensorShape s;
    for (int64_t d : dims) {
        s.dims[s.rank++] = d;
    }
    return s;
}

}  // namespace

TEST(hadamard_embedded_bases_are_orthogonal) {
    CHECK(is_hadamard(1, {MQ_HADAMARD_BASE_1}));
    CHECK(is_hadamard(12, {MQ_HADAMARD_BASE_12}));
    CHECK(is_hadamard(20, {MQ_HADAMARD_BASE_20}));
    CHECK(is_hadamard(28, {MQ_HADAMARD_BASE_28}));
    CHECK(is_hadamard(40, {MQ_HADAMARD_BASE_40}));
    std::vector<int> const orders = {MQ_HADAMARD_BASE_ORDERS};
    CHECK(orders == std::vector<int>({1, 12, 20, 28, 40}));
}

TEST(hadamard_size_rule) {
    CHECK_EQ(factor_size(1).base_order, 1);
    CHECK_EQ(factor_size(768).base_order, 12);   // Vim-S d_inner
    CHECK_EQ(factor_size(1536).base_order, 12);  // mamba-130m d_inner
    CHECK_EQ(factor_size(2560).base_order, 40);  // 40 * 64, before 20 * 128
    CHECK_EQ(factor_size(2560).log2_pow2, 6);
    CHECK_EQ(factor_size(28 * 32).base_order, 28);
    CHECK_EQ(factor_size(20).base_order, 20);
    CHECK_EQ(factor_size(8192).base_order, 1);
    CHECK_EQ(factor_size(16384).base_order, 1);
    CHECK_EQ(factor_size(32768).base_order, 0);  // over kMaxSize
    CHECK_EQ(factor_size(36).base_order, 0);
    CHECK_EQ(factor_size(0).base_order, 0);
    for (int64_t n = 1; n <= kMaxSize; ++n) {  // every accepted n factors exactly
        SizeFactors const f = factor_size(n);
        if (f.base_order != 0) {
            CHECK_EQ(static_cast<int64_t>(f.base_order) << f.log2_pow2, n);
        }
    }
}

TEST(hadamard_shapes_and_types) {
    int64_t n = 0;
    TensorShape ok[] = {shape({2, 7, 1536}), shape({1536})};
    CHECK_OK(check_hadamard_shapes(ok, 2, &n));
    CHECK_EQ(n, 1536);
    CHECK_EQ(hadamard_rows(ok[0]), 14);
    TensorShape wildcard[] = {shape({-1, -1, 2560}), shape({-1})};
    CHECK_OK(check_hadamard_shapes(wildcard, 2, &n));
    CHECK_EQ(n, 2560);
    TensorShape mismatch[] = {shape({4, 1536}), shape({768})};
    CHECK_ERROR(check_hadamard_shapes(mismatch, 2, &n), "signs has 768 entries but x's last dimension is 1536");
    TensorShape unsupported[] = {shape({4, 1000}), shape({1000})};
    CHECK_ERROR(check_hadamard_shapes(unsupported, 2, &n), "Hadamard size 1000 is not supported");
    TensorShape bad_signs[] = {shape({4, 12}), shape({1, 12})};
    CHECK_ERROR(check_hadamard_shapes(bad_signs, 2, &n), "signs must have rank 1");

    ScalarType const types[] = {ScalarType::kBFloat16, ScalarType::kFloat32};
    CHECK_OK(check_hadamard_types(types, 2));
    ScalarType const bad[] = {ScalarType::kFloat16, ScalarType::kFloat16};
    CHECK_ERROR(check_hadamard_types(bad, 2), "signs must be float32");
    CHECK(hadamard_io_type_supported(kNumHadamardInputs, ScalarType::kFloat16, ScalarType::kFloat16));
    CHECK(!hadamard_io_type_supported(kNumHadamardInputs, ScalarType::kFloat32, ScalarType::kFloat16));

    int32_t const one = 1;
    mq::plugin::FieldView const field{"n", &one, mq::plugin::FieldType::kINT32, 1};
    CHECK_OK(parse_hadamard_attributes(nullptr, 0));
    CHECK_ERROR(parse_hadamard_attributes(&field, 1), "takes no attributes");
    CHECK_ERROR(check_hadamard_shapes(ok, 1, &n), "HadamardTransform takes 2 inputs");
}

TEST(hadamard_quantize_shapes_and_types) {
    int64_t n = 0;
    TensorShape ok[] = {shape({2, 7, 1536}), shape({1536}), shape({})};
    CHECK_OK(check_hadamard_shapes(ok, 3, &n));
    CHECK_EQ(n, 1536);
    TensorShape one[] = {shape({2, 7, 1536}), shape({1536}), shape({1, 1})};
    CHECK_OK(check_hadamard_shapes(one, 3, &n));
    TensorShape per_channel[] = {shape({2, 7, 1536}), shape({1536}), shape({1536})};
    CHECK_ERROR(check_hadamard_shapes(per_channel, 3, &n), "scale must hold one element");
    TensorShape unsupported[] = {shape({4, 1000}), shape({1000}), shape({})};
    CHECK_ERROR(check_hadamard_shapes(unsupported, 3, &n), "Hadamard size 1000 is not supported");

    ScalarType const types[] = {ScalarType::kFloat16, ScalarType::kFloat32, ScalarType::kFloat16};
    CHECK_OK(check_hadamard_types(types, 3));
    ScalarType const fp32_scale[] = {ScalarType::kFloat16, ScalarType::kFloat32, ScalarType::kFloat32};
    CHECK_ERROR(check_hadamard_types(fp32_scale, 3), "scale must have x's type (float16), got float32");
    // positions x, signs, scale, y: y is int8 codes, never x's type
    CHECK(hadamard_io_type_supported(kHadamardScale, ScalarType::kFloat16, ScalarType::kFloat16, true));
    CHECK(!hadamard_io_type_supported(kHadamardScale, ScalarType::kFloat32, ScalarType::kFloat16, true));
    CHECK(hadamard_io_type_supported(3, ScalarType::kInt8, ScalarType::kFloat16, true));
    CHECK(!hadamard_io_type_supported(3, ScalarType::kFloat16, ScalarType::kFloat16, true));
    CHECK(!hadamard_io_type_supported(4, ScalarType::kInt8, ScalarType::kFloat16, true));
    CHECK(!hadamard_io_type_supported(kNumHadamardInputs, ScalarType::kInt8, ScalarType::kFloat16, false));

    int32_t const value = 1;
    mq::plugin::FieldView const field{"n", &value, mq::plugin::FieldType::kINT32, 1};
    CHECK_ERROR(parse_hadamard_attributes(&field, 1, true), "HadamardQuantize takes no attributes");
}
