// SelectiveScan plugin arguments: attribute parsing (parser and serialized forms), the
// serialization round trip, shape and type validation, and the format-combination table.
#include <cstdint>
#include <string>

#include "selective_scan_args.h"
#include "unit_test.h"

using namespace mq::scan;
using mq::plugin::FieldType;

namespace {

TensorShape shape(std::initializer_list<int64_t> dims) {
    TensorShape s;
    for (int64_t d : dims) {
        s.dims[s.rank++] = d;
    }
    return s;
}

// A valid problem: batch 2, seqlen 7, dim 1000, dstate 16.
struct Inputs {
    TensorShape s[kNumScanInputs];
    Inputs(int64_t b = 2, int64_t l = 7, int64_t d = 1000, int64_t n = 16) {
        s[kX] = s[kDelta] = s[kZ] = shape({b, l, d});
        s[kA] = shape({d, n});
        s[kB] = s[kC] = shape({b, l, n});
        s[kD] = s[kDeltaBias] = s[kGateScale] = shape({d});
    }
};

}  // namespace

TEST(scan_attributes_default_when_absent) {
    ScanAttributes attrs;
    attrs.reverse = 1;  // overwritten by the parse
    CHECK_OK(parse_scan_attributes(nullptr, 0, &attrs));
    CHECK_EQ(attrs.delta_softplus, 1);
    CHECK_EQ(attrs.reverse, 0);
}

TEST(scan_attributes_from_onnx_parser_int32) {
    int32_t const softplus = 0;
    int32_t const reverse = 1;
    FieldView const fields[] = {{"reverse", &reverse, FieldType::kINT32, 1}, {"delta_softplus", &softplus, FieldType::kINT32, 1}};
    ScanAttributes attrs;
    CHECK_OK(parse_scan_attributes(fields, 2, &attrs));
    CHECK_EQ(attrs.delta_softplus, 0);
    CHECK_EQ(attrs.reverse, 1);
}

TEST(scan_attributes_accept_other_integer_widths) {
    int64_t const reverse64 = 1;
    int8_t const softplus8 = 0;
    FieldView const fields[] = {{"reverse", &reverse64, FieldType::kINT64, 1}, {"delta_softplus", &softplus8, FieldType::kINT8, 1}};
    ScanAttributes attrs;
    CHECK_OK(parse_scan_attributes(fields, 2, &attrs));
    CHECK_EQ(attrs.reverse, 1);
    CHECK_EQ(attrs.delta_softplus, 0);
}

TEST(scan_attributes_reject_bad_fields) {
    ScanAttributes attrs;
    int32_t const two = 2;
    float const one_f = 1.0f;
    int32_t const pair[2] = {0, 1};
    FieldView const bad_value[] = {{"reverse", &two, FieldType::kINT32, 1}};
    CHECK_ERROR(parse_scan_attributes(bad_value, 1, &attrs), "must be 0 or 1");
    FieldView const bad_type[] = {{"reverse", &one_f, FieldType::kFLOAT32, 1}};
    CHECK_ERROR(parse_scan_attributes(bad_type, 1, &attrs), "must be an integer");
    FieldView const bad_length[] = {{"delta_softplus", pair, FieldType::kINT32, 2}};
    CHECK_ERROR(parse_scan_attributes(bad_length, 1, &attrs), "exactly one value");
    FieldView const unknown[] = {{"d_state", &two, FieldType::kINT32, 1}};
    CHECK_ERROR(parse_scan_attributes(unknown, 1, &attrs), "unknown field 'd_state'");
    FieldView const null_data[] = {{"reverse", nullptr, FieldType::kINT32, 1}};
    CHECK_ERROR(parse_scan_attributes(null_data, 1, &attrs), "exactly one value");
    CHECK_EQ(attrs.delta_softplus, 1);  // failed parses leave the output untouched
}

TEST(scan_attributes_serialization_round_trip) {
    for (int32_t softplus = 0; softplus <= 1; ++softplus) {
        for (int32_t reverse = 0; reverse <= 1; ++reverse) {
            ScanAttributes const original{softplus, reverse};
            auto const fields = scan_attribute_fields(original);
            for (FieldView const& f : fields) {
                CHECK(f.type == FieldType::kINT32);  // what the ONNX parser also sends
                CHECK_EQ(f.length, 1);
            }
            ScanAttributes restored{1 - softplus, 1 - reverse};
            CHECK_OK(parse_scan_attributes(fields.data(), static_cast<int32_t>(fields.size()), &restored));
            CHECK(restored == original);
        }
    }
    CHECK_EQ(describe(ScanAttributes{0, 1}), std::string("delta_softplus=0;reverse=1"));
}

TEST(scan_shapes_valid_problem) {
    Inputs in;
    ScanSizes sizes;
    CHECK_OK(check_scan_shapes(in.s, kNumScanInputs, &sizes));
    CHECK_EQ(sizes.batch, 2);
    CHECK_EQ(sizes.seqlen, 7);
    CHECK_EQ(sizes.dim, 1000);
    CHECK_EQ(sizes.dstate, 16);
}

TEST(scan_shapes_build_time_wildcards) {
    Inputs in(-1, -1, 1536, 16);
    in.s[kB].dims[0] = 4;  // one input may fix an extent the others leave open
    ScanSizes sizes;
    CHECK_OK(check_scan_shapes(in.s, kNumScanInputs, &sizes));
    CHECK_EQ(sizes.batch, 4);
    CHECK_EQ(sizes.seqlen, -1);
    CHECK_EQ(sizes.dim, 1536);
}

TEST(scan_shapes_report_inconsistency) {
    ScanSizes sizes;
    {
        Inputs in;
        in.s[kC].dims[2] = 32;
        CHECK_ERROR(check_scan_shapes(in.s, kNumScanInputs, &sizes), "input C dimension 2 is 32 but dstate is 16 (from A)");
    }
    {
        Inputs in;
        in.s[kGateScale] = shape({999});
        CHECK_ERROR(check_scan_shapes(in.s, kNumScanInputs, &sizes), "gate_scale dimension 0 is 999 but dim is 1000");
    }
    {
        Inputs in;
        in.s[kZ].dims[1] = 8;
        CHECK_ERROR(check_scan_shapes(in.s, kNumScanInputs, &sizes), "input z dimension 1 is 8 but seqlen is 7");
    }
    {
        Inputs in;
        in.s[kDelta].dims[0] = 3;
        CHECK_ERROR(check_scan_shapes(in.s, kNumScanInputs, &sizes), "but batch is 2");
    }
    {
        Inputs in;
        in.s[kA] = shape({1000, 16, 1});
        CHECK_ERROR(check_scan_shapes(in.s, kNumScanInputs, &sizes), "input A must have rank 2");
    }
    {
        Inputs in;
        CHECK_ERROR(check_scan_shapes(in.s, 8, &sizes), "takes 9 inputs");
    }
}

TEST(scan_shapes_limits) {
    ScanSizes sizes;
    CHECK_OK(check_scan_shapes(Inputs(1, 1, 1, 1).s, kNumScanInputs, &sizes));
    CHECK_OK(check_scan_shapes(Inputs(1, 0, 1, 64).s, kNumScanInputs, &sizes));  // empty sequence is fine
    CHECK_ERROR(check_scan_shapes(Inputs(1, 7, 8, 65).s, kNumScanInputs, &sizes), "must be in [1, 64]");
    CHECK_ERROR(check_scan_shapes(Inputs(1, 7, 8, 0).s, kNumScanInputs, &sizes), "must be in [1, 64]");
    CHECK_ERROR(check_scan_shapes(Inputs(70000, 7, 8, 16).s, kNumScanInputs, &sizes), "batch must be at most 65535");
    CHECK_ERROR(check_scan_shapes(Inputs(1, -2, 8, 16).s, kNumScanInputs, &sizes), "invalid shape");
}

TEST(scan_types) {
    ScalarType const f16 = ScalarType::kFloat16;
    ScalarType const f32 = ScalarType::kFloat32;
    ScalarType types[kNumScanInputs] = {f16, f16, f32, f16, f16, f32, f32, f16, f32};
    CHECK_OK(check_scan_types(types, kNumScanInputs));
    types[kB] = ScalarType::kBFloat16;
    CHECK_ERROR(check_scan_types(types, kNumScanInputs), "input B must be float16, got bfloat16");
    types[kB] = f16;
    types[kA] = f16;
    CHECK_ERROR(check_scan_types(types, kNumScanInputs), "input A must be float32");
    ScalarType const other[kNumScanInputs] = {ScalarType::kOther, f32, f32, f32, f32, f32, f32, f32, f32};
    CHECK_ERROR(check_scan_types(other, kNumScanInputs), "x must be float32, float16 or bfloat16");
}

TEST(scan_format_combinations) {
    for (ScalarType x : {ScalarType::kFloat32, ScalarType::kFloat16, ScalarType::kBFloat16}) {
        CHECK(scan_io_type_supported(kX, x, x));
        for (int32_t pos : {kDelta, kB, kC, kZ}) {
            CHECK(scan_io_type_supported(pos, x, x));
        }
        for (int32_t pos : {kA, kD, kDeltaBias, kGateScale}) {
            CHECK(scan_io_type_supported(pos, ScalarType::kFloat32, x));
        }
        CHECK(scan_io_type_supported(kNumScanInputs + kY, x, x));
        CHECK(scan_io_type_supported(kNumScanInputs + kFinalState, ScalarType::kFloat32, x));
    }
    CHECK(!scan_io_type_supported(kX, ScalarType::kOther, ScalarType::kOther));
    CHECK(!scan_io_type_supported(kDelta, ScalarType::kFloat32, ScalarType::kFloat16));
    CHECK(!scan_io_type_supported(kA, ScalarType::kFloat16, ScalarType::kFloat16));
    CHECK(!scan_io_type_supported(kNumScanInputs + kY, ScalarType::kFloat32, ScalarType::kBFloat16));
    CHECK(!scan_io_type_supported(kNumScanInputs + kFinalState, ScalarType::kFloat16, ScalarType::kFloat16));
    CHECK(!scan_io_type_supported(kNumScanInputs + kNumScanOutputs, ScalarType::kFloat32, ScalarType::kFloat32));
}
