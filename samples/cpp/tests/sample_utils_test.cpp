// Driver for the TensorRT-free helpers of sample_utils.h. tests/test_sample_cpp.py compiles it with
// g++ and compares its answers with mq_deploy's Python tokenizer and numpy:
//
//   sample_utils_test encode TEXT...              one line per TEXT: the token ids
//   sample_utils_test decode IDS...               one line per IDS ("1,2,3" or ""): hex of the UTF-8 text
//   sample_utils_test half_table OUT              float32 bits of all 65536 half values, little endian
//   sample_utils_test argmax f32|f16|bf16 N FILE  one line per row of N logits in FILE
//   sample_utils_test decode_path PATH...         one line per PATH
//   sample_utils_test state_name NAME...          one line per NAME
//   sample_utils_test npy FILE OUT                the shape of a float32 .npy on one line, its data to OUT
//   sample_utils_test topk K N FILE               one line per row of N float32 logits: index:probability ...
//   sample_utils_test labels FILE                 one line per class name, in brackets
//   sample_utils_test selftest                    edge cases with known answers; prints "ok"
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "sample_utils.h"

namespace {

using mq_sample::LogitType;

int failures = 0;

void expect(bool ok, std::string const& what) {
    if (!ok) {
        std::cerr << "FAILED: " << what << '\n';
        ++failures;
    }
}

std::string hex(std::string const& bytes) {
    static char const digits[] = "0123456789abcdef";
    std::string out;
    for (char c : bytes) {
        auto const b = static_cast<unsigned char>(c);
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

LogitType parse_type(std::string const& name) {
    if (name == "f32") return LogitType::kFloat32;
    if (name == "f16") return LogitType::kFloat16;
    if (name == "bf16") return LogitType::kBFloat16;
    throw std::invalid_argument("unknown logit type " + name);
}

uint16_t bits16(float f, bool bf16) {  // test values only: exact in both formats
    if (bf16) {
        uint32_t b;
        std::memcpy(&b, &f, sizeof b);
        return static_cast<uint16_t>(b >> 16);
    }
    for (uint32_t h = 0; h < 0x10000u; ++h) {  // slow but simple inverse of half_to_float
        float const v = mq_sample::half_to_float(static_cast<uint16_t>(h));
        if (v == f && std::signbit(v) == std::signbit(f)) {
            return static_cast<uint16_t>(h);
        }
    }
    throw std::invalid_argument("not a half value");
}

void selftest() {
    float const inf = std::numeric_limits<float>::infinity();
    float const nan = std::numeric_limits<float>::quiet_NaN();
    {
        std::vector<float> v{1.0f, 3.0f, -2.0f, 3.0f};
        expect(mq_sample::argmax(v.data(), v.size(), LogitType::kFloat32) == 1, "first index on ties");
    }
    {
        std::vector<float> v{nan, -inf, nan, -5.0f, nan};
        expect(mq_sample::argmax(v.data(), v.size(), LogitType::kFloat32) == 3, "NaN skipped");
        std::vector<float> all_nan{nan, nan};
        expect(mq_sample::argmax(all_nan.data(), all_nan.size(), LogitType::kFloat32) == -1, "all NaN -> -1");
        expect(mq_sample::argmax(v.data(), 0, LogitType::kFloat32) == -1, "empty -> -1");
        std::vector<float> only_inf{-inf, -inf};
        expect(mq_sample::argmax(only_inf.data(), 2, LogitType::kFloat32) == 0, "all -inf -> 0");
    }
    for (bool bf16 : {false, true}) {
        LogitType const t = bf16 ? LogitType::kBFloat16 : LogitType::kFloat16;
        std::vector<uint16_t> v{bits16(-1.0f, bf16), bits16(0.5f, bf16), bits16(-0.0f, bf16), bits16(0.5f, bf16),
                                bits16(0.25f, bf16)};
        expect(mq_sample::argmax(v.data(), v.size(), t) == 1, bf16 ? "bf16 argmax" : "f16 argmax");
        v.push_back(bits16(inf, bf16));
        expect(mq_sample::argmax(v.data(), v.size(), t) == 5, bf16 ? "bf16 +inf" : "f16 +inf");
    }
    expect(mq_sample::bf16_to_float(0x3F80) == 1.0f && mq_sample::bf16_to_float(0xC2F7) == -123.5f, "bf16 values");
    expect(mq_sample::half_to_float(0x3C00) == 1.0f && mq_sample::half_to_float(0x0001) == std::ldexp(1.0f, -24),
           "half values");

    expect(mq_sample::byte_decode({104, 105, 300, 104, -1}) == std::string("hi") + mq_sample::kReplacementChar + "h" +
                                                                    mq_sample::kReplacementChar,
           "ids outside 0..255 -> U+FFFD");
    expect((mq_sample::parse_ids("72, 101 ,108") == std::vector<int64_t>{72, 101, 108}), "parse_ids");
    for (char const* bad : {"", "1,,2", "-1", "1.5", "a", "1,", "99999999999999999999"}) {
        bool threw = false;
        try {
            mq_sample::parse_ids(bad);
        } catch (std::invalid_argument const&) {
            threw = true;
        }
        expect(threw, std::string("parse_ids rejects '") + bad + "'");
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: sample_utils_test encode|decode|half_table|argmax|decode_path|state_name|npy|topk|labels|"
                     "selftest ...\n";
        return 2;
    }
    std::string const cmd = argv[1];
    try {
        if (cmd == "encode") {
            for (int i = 2; i < argc; ++i) {
                std::vector<int64_t> const ids = mq_sample::byte_encode(argv[i]);
                for (std::size_t k = 0; k < ids.size(); ++k) {
                    std::cout << (k ? " " : "") << ids[k];
                }
                std::cout << '\n';
            }
        } else if (cmd == "decode") {
            for (int i = 2; i < argc; ++i) {
                std::string const arg = argv[i];
                std::vector<int64_t> const ids = arg.empty() ? std::vector<int64_t>{} : mq_sample::parse_ids(arg);
                std::cout << hex(mq_sample::byte_decode(ids)) << '\n';
            }
        } else if (cmd == "half_table" && argc == 3) {
            std::ofstream out(argv[2], std::ios::binary);
            for (uint32_t h = 0; h < 0x10000u; ++h) {
                float const f = mq_sample::half_to_float(static_cast<uint16_t>(h));
                unsigned char bytes[4];
                std::memcpy(bytes, &f, 4);  // the test machine is little endian (x86-64, aarch64)
                out.write(reinterpret_cast<char const*>(bytes), 4);
            }
            if (!out) {
                throw std::runtime_error("cannot write the half table");
            }
        } else if (cmd == "argmax" && argc == 5) {
            LogitType const type = parse_type(argv[2]);
            std::size_t const n = std::stoul(argv[3]);
            std::ifstream in(argv[4], std::ios::binary);
            std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            std::size_t const row = n * mq_sample::logit_size(type);
            if (row == 0 || data.size() % row != 0) {
                throw std::runtime_error("file size is not a multiple of the row size");
            }
            for (std::size_t r = 0; r < data.size() / row; ++r) {
                std::cout << mq_sample::argmax(data.data() + r * row, n, type) << '\n';
            }
        } else if (cmd == "decode_path") {
            for (int i = 2; i < argc; ++i) {
                std::cout << mq_sample::default_decode_engine_path(argv[i]) << '\n';
            }
        } else if (cmd == "state_name") {
            for (int i = 2; i < argc; ++i) {
                std::cout << mq_sample::state_output_name(argv[i]) << '\n';
            }
        } else if (cmd == "npy" && argc == 4) {
            std::ifstream in(argv[2], std::ios::binary);
            std::vector<char> const bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            mq_sample::NpyFloat32 const array = mq_sample::parse_npy_float32(bytes);
            for (std::size_t i = 0; i < array.shape.size(); ++i) {
                std::cout << (i ? " " : "") << array.shape[i];
            }
            std::cout << '\n';
            std::ofstream out(argv[3], std::ios::binary);
            out.write(reinterpret_cast<char const*>(array.data.data()),
                      static_cast<std::streamsize>(array.data.size() * sizeof(float)));
        } else if (cmd == "topk" && argc == 5) {
            std::size_t const k = std::stoul(argv[2]);
            std::size_t const n = std::stoul(argv[3]);
            std::ifstream in(argv[4], std::ios::binary);
            std::vector<char> const data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            std::vector<float> values(data.size() / sizeof(float));
            std::memcpy(values.data(), data.data(), values.size() * sizeof(float));
            for (std::size_t r = 0; n && r < values.size() / n; ++r) {
                auto const ranked = mq_sample::top_k_softmax(values.data() + r * n, n, k);
                for (std::size_t i = 0; i < ranked.size(); ++i) {
                    char item[64];
                    std::snprintf(item, sizeof item, "%lld:%.17g", static_cast<long long>(ranked[i].index),
                                  ranked[i].probability);
                    std::cout << (i ? " " : "") << item;
                }
                std::cout << '\n';
            }
        } else if (cmd == "labels" && argc == 3) {
            std::ifstream in(argv[2], std::ios::binary);
            std::string const text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            for (std::string const& label : mq_sample::parse_labels(text)) {
                std::cout << '[' << label << "]\n";
            }
        } else if (cmd == "selftest") {
            selftest();
            if (failures) {
                return 1;
            }
            std::cout << "ok\n";
        } else {
            std::cerr << "unknown command or wrong arguments: " << cmd << '\n';
            return 2;
        }
    } catch (std::exception const& e) {
        std::cerr << "error: " << e.what() << '\n';
        return 1;
    }
    return 0;
}
