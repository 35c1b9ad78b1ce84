// SSDScan plugin arguments and plan: attribute parsing (parser and serialized forms), the
// serialization round trip, shape and type validation, the format table, and the chunk plan's
// coverage and workspace bound.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "ssd_plan.h"
#include "ssd_scan_args.h"
#include "unit_test.h"

using namespace mq::ssd;
using mq::plugin::FieldType;

namespace {

TensorShape shape(std::initializer_list<int64_t> dims) {
    TensorShape s;
    for (int64_t d : dims) {
        s.dims[s.rank++] = d;
    }
    return s;
}

// A valid problem: batch 2, seqlen 7, 6 heads of 8, 3 groups, d_state 16.
struct Inputs {
    TensorShape s[kNumSsdInputs];
    Inputs(int64_t b = 2, int64_t l = 7, int64_t h = 6, int64_t p = 8, int64_t g = 3, int64_t n = 16) {
        s[kX] = shape({b, l, h * p});
        s[kDt] = shape({b, l, h});
        s[kA] = s[kD] = s[kDtBias] = shape({h});
        s[kB] = s[kC] = shape({b, l, g * n});
    }
};

SsdAttributes attributes(int32_t head_dim = 8, int32_t groups = 3) {
    SsdAttributes a;
    a.head_dim = head_dim;
    a.n_groups = groups;
    a.dt_max = std::numeric_limits<float>::infinity();
    return a;
}

}  // namespace

TEST(ssd_attributes_from_onnx_parser_fields) {
    int32_t const head_dim = 64, groups = 8, softplus = 0;
    float const lo = 0.001f, hi = 0.1f;
    FieldView const fields[] = {{"dt_max", &hi, FieldType::kFLOAT32, 1}, {"head_dim", &head_dim, FieldType::kINT32, 1},
        {"n_groups", &groups, FieldType::kINT32, 1}, {"dt_softplus", &softplus, FieldType::kINT32, 1},
        {"dt_min", &lo, FieldType::kFLOAT32, 1}};
    SsdAttributes attrs;
    CHECK_OK(parse_ssd_attributes(fields, 5, &attrs));
    CHECK_EQ(attrs.head_dim, 64);
    CHECK_EQ(attrs.n_groups, 8);
    CHECK_EQ(attrs.dt_softplus, 0);
    CHECK_EQ(attrs.dt_min, 0.001f);
    CHECK_EQ(attrs.dt_max, 0.1f);
}

TEST(ssd_attributes_defaults_and_required_fields) {
    int32_t const head_dim = 64, groups = 1;
    FieldView const fields[] = {{"head_dim", &head_dim, FieldType::kINT32, 1}, {"n_groups", &groups, FieldType::kINT32, 1}};
    SsdAttributes attrs;
    CHECK_OK(parse_ssd_attributes(fields, 2, &attrs));
    CHECK_EQ(attrs.dt_softplus, 1);
    CHECK_EQ(attrs.dt_min, 0.0f);
    CHECK(std::isinf(attrs.dt_max) && attrs.dt_max > 0);
    CHECK_ERROR(parse_ssd_attributes(fields, 1, &attrs), "head_dim and n_groups are required");
}

TEST(ssd_attributes_refuse_bad_values) {
    int32_t const zero = 0, head_dim = 64, groups = 2;
    float const lo = 0.5f, hi = 0.1f;
    int64_t const big = int64_t{1} << 40;
    SsdAttributes attrs;
    FieldView const zero_dim[] = {{"head_dim", &zero, FieldType::kINT32, 1}, {"n_groups", &groups, FieldType::kINT32, 1}};
    CHECK_ERROR(parse_ssd_attributes(zero_dim, 2, &attrs), "positive int32");
    FieldView const huge[] = {{"head_dim", &big, FieldType::kINT64, 1}, {"n_groups", &groups, FieldType::kINT32, 1}};
    CHECK_ERROR(parse_ssd_attributes(huge, 2, &attrs), "positive int32");
    FieldView const swapped[] = {{"head_dim", &head_dim, FieldType::kINT32, 1},
        {"n_groups", &groups, FieldType::kINT32, 1}, {"dt_min", &lo, FieldType::kFLOAT32, 1},
        {"dt_max", &hi, FieldType::kFLOAT32, 1}};
    CHECK_ERROR(parse_ssd_attributes(swapped, 4, &attrs), "dt_min must be <= dt_max");
    FieldView const int_limit[] = {{"head_dim", &head_dim, FieldType::kINT32, 1},
        {"n_groups", &groups, FieldType::kINT32, 1}, {"dt_min", &groups, FieldType::kINT32, 1}};
    CHECK_ERROR(parse_ssd_attributes(int_limit, 3, &attrs), "must be a float");
    FieldView const unknown[] = {{"reverse", &zero, FieldType::kINT32, 1}};
    CHECK_ERROR(parse_ssd_attributes(unknown, 1, &attrs), "unknown field 'reverse'");
}

TEST(ssd_attributes_serialization_round_trip) {
    SsdAttributes original = attributes(64, 8);
    original.dt_softplus = 0;
    original.dt_min = 0.02f;
    auto const fields = ssd_attribute_fields(original);
    SsdAttributes parsed;
    CHECK_OK(parse_ssd_attributes(fields.data(), static_cast<int32_t>(fields.size()), &parsed));
    CHECK(parsed == original);
    CHECK_EQ(describe(original), std::string("head_dim=64;n_groups=8;dt_softplus=0;dt_min=0.0199999996;dt_max=inf"));
}

TEST(ssd_shapes_give_the_problem_sizes) {
    Inputs in;
    SsdSizes sizes;
    CHECK_OK(check_ssd_shapes(in.s, kNumSsdInputs, attributes(), &sizes));
    CHECK_EQ(sizes.batch, 2);
    CHECK_EQ(sizes.seqlen, 7);
    CHECK_EQ(sizes.heads, 6);
    CHECK_EQ(sizes.dstate, 16);
    // build time: batch and seqlen unknown everywhere
    Inputs dynamic(-1, -1);
    CHECK_OK(check_ssd_shapes(dynamic.s, kNumSsdInputs, attributes(), &sizes));
    CHECK_EQ(sizes.batch, -1);
    CHECK_EQ(sizes.heads, 6);
}

TEST(ssd_shapes_refuse_inconsistent_inputs) {
    SsdSizes sizes;
    Inputs wrong_width;
    wrong_width.s[kX] = shape({2, 7, 50});
    CHECK_ERROR(check_ssd_shapes(wrong_width.s, kNumSsdInputs, attributes(), &sizes), "heads * head_dim");
    Inputs wrong_heads;
    wrong_heads.s[kD] = shape({5});
    CHECK_ERROR(check_ssd_shapes(wrong_heads.s, kNumSsdInputs, attributes(), &sizes), "input D dimension 0 is 5");
    Inputs wrong_seqlen;
    wrong_seqlen.s[kC] = shape({2, 8, 48});
    CHECK_ERROR(check_ssd_shapes(wrong_seqlen.s, kNumSsdInputs, attributes(), &sizes), "seqlen");
    Inputs groups;
    CHECK_ERROR(check_ssd_shapes(groups.s, kNumSsdInputs, attributes(8, 4), &sizes), "cannot be split");
    Inputs big_state(1, 7, 6, 8, 3, 300);
    CHECK_ERROR(check_ssd_shapes(big_state.s, kNumSsdInputs, attributes(), &sizes), "d_state");
    Inputs rank;
    rank.s[kA] = shape({6, 1});
    CHECK_ERROR(check_ssd_shapes(rank.s, kNumSsdInputs, attributes(), &sizes), "input A must have rank 1");
    CHECK_ERROR(check_ssd_shapes(rank.s, 6, attributes(), &sizes), "takes 7 inputs");
}

TEST(ssd_types_and_format_table) {
    using mq::plugin::ScalarType;
    ScalarType types[kNumSsdInputs] = {ScalarType::kFloat16, ScalarType::kFloat16, ScalarType::kFloat32,
        ScalarType::kFloat16, ScalarType::kFloat16, ScalarType::kFloat32, ScalarType::kFloat32};
    CHECK_OK(check_ssd_types(types, kNumSsdInputs));
    types[kDt] = ScalarType::kFloat32;
    CHECK_ERROR(check_ssd_types(types, kNumSsdInputs), "input dt must be float16");
    types[kDt] = ScalarType::kFloat16;
    types[kA] = ScalarType::kFloat16;
    CHECK_ERROR(check_ssd_types(types, kNumSsdInputs), "input A must be float32");
    CHECK(ssd_io_type_supported(kX, ScalarType::kBFloat16, ScalarType::kBFloat16));
    CHECK(!ssd_io_type_supported(kB, ScalarType::kFloat32, ScalarType::kFloat16));
    CHECK(ssd_io_type_supported(kNumSsdInputs + kY, ScalarType::kFloat16, ScalarType::kFloat16));
    CHECK(ssd_io_type_supported(kNumSsdInputs + kFinalState, ScalarType::kFloat32, ScalarType::kFloat16));
    CHECK(!ssd_io_type_supported(kNumSsdInputs + kFinalState, ScalarType::kFloat16, ScalarType::kFloat16));
}

TEST(ssd_plan_covers_the_sequence_and_stays_under_its_bound) {
    CHECK_EQ(ssd_states_per_lane(16), 2);
    CHECK_EQ(ssd_states_per_lane(64), 8);
    CHECK_EQ(ssd_states_per_lane(128), 16);
    CHECK_EQ(ssd_states_per_lane(129), 32);
    CHECK_EQ(ssd_states_per_lane(1), 1);
    // mamba2-130m at batch 1, 2048 tokens: too few blocks without chunks, so the sequence is split
    SsdPlan const small = plan_ssd_scan(1, 2048, 24, 64, 128);
    CHECK(small.nchunks > 1 && small.chunk_len >= kSsdMinChunkLen);
    CHECK(static_cast<int64_t>(small.nchunks) * small.chunk_len >= 2048);
    CHECK(static_cast<int64_t>(small.nchunks - 1) * small.chunk_len < 2048);
    CHECK_EQ(plan_ssd_scan_sequential(1, 2048, 24, 64, 128).workspace_bytes(), std::size_t{0});
    // a large batch fills the GPU without chunks
    CHECK_EQ(plan_ssd_scan(64, 2048, 80, 64, 128).nchunks, 1);
    int64_t const heads[] = {1, 6, 24, 48, 80};
    int64_t const dims[] = {8, 50, 64};
    for (int64_t h : heads) {
        for (int64_t p : dims) {
            std::size_t const bound = ssd_workspace_bound(8, 8192, h, p, 128);
            for (int64_t b = 1; b <= 8; ++b) {
                for (int64_t l : {1, 63, 64, 65, 127, 128, 129, 333, 1000, 2047, 4096, 8191, 8192}) {
                    SsdPlan const plan = plan_ssd_scan(b, l, h, p, 128);
                    CHECK(plan.workspace_bytes() <= bound);
                    CHECK(static_cast<int64_t>(plan.nchunks) * plan.chunk_len >= l);
                    CHECK(plan.nchunks == 1 || static_cast<int64_t>(plan.nchunks - 1) * plan.chunk_len < l);
                    CHECK(plan.nchunks == 1 || plan.chunk_len >= kSsdMinChunkLen);
                    CHECK(b * plan.nchunks <= kSsdMaxGrid);
                }
            }
        }
    }
}
