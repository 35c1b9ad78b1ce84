// Plain C++17 helpers of the TensorRT generation sample: no TensorRT and no CUDA header, so they
// compile and are tested anywhere (tests/sample_utils_test.cpp, run by tests/test_sample_cpp.py).
//
//   byte_encode / byte_decode   the byte-level tokenizer of mq_deploy/models/tokenizer.py (ByteTokenizer)
//   half_to_float, bf16_to_float, argmax   greedy sampling over FP32 / FP16 / BF16 logits
//   state_output_name           "conv_state.3" -> "conv_state_out.3" (decode input <- prefill output)
//   default_decode_engine_path  "out/model.plan" -> "out/model.decode.plan"
//   parse_npy_float32           a .npy of float32 (numpy.save): the classifier sample's input images
//   top_k_softmax               the k most likely classes of one row of logits, with probabilities
//   parse_labels                class names, one per line
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mq_sample {

// ---- byte-level tokenizer ----------------------------------------------------------------------
// Token ids are the UTF-8 bytes of the text (vocabulary 256), exactly like Python's
// list(text.encode("utf-8")). A std::string already holds UTF-8 bytes; the cast through
// unsigned char keeps bytes >= 0x80 positive (plain char is signed on x86).
inline std::vector<int64_t> byte_encode(std::string_view text) {
    std::vector<int64_t> ids;
    ids.reserve(text.size());
    for (char c : text) {
        ids.push_back(static_cast<int64_t>(static_cast<unsigned char>(c)));
    }
    return ids;
}

inline constexpr char kReplacementChar[] = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

// UTF-8 with invalid sequences replaced like CPython's bytes.decode("utf-8", errors="replace"):
// one U+FFFD per maximal subpart of an ill-formed sequence (Unicode 3.9, "substitution of
// maximal subparts"); a sequence cut off at the end is one U+FFFD.
inline void append_utf8_replacing(std::string& out, unsigned char const* s, std::size_t n) {
    std::size_t i = 0;
    while (i < n) {
        unsigned char const lead = s[i];
        if (lead < 0x80) {
            out.push_back(static_cast<char>(lead));
            ++i;
            continue;
        }
        int need = 0;                           // continuation bytes after the lead byte
        unsigned char lo = 0x80, hi = 0xBF;     // allowed range of the first continuation byte
        if (lead >= 0xC2 && lead <= 0xDF) {
            need = 1;
        } else if (lead == 0xE0) {
            need = 2;
            lo = 0xA0;  // no overlong 3-byte forms
        } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
            need = 2;
        } else if (lead == 0xED) {
            need = 2;
            hi = 0x9F;  // no UTF-16 surrogates
        } else if (lead == 0xF0) {
            need = 3;
            lo = 0x90;  // no overlong 4-byte forms
        } else if (lead >= 0xF1 && lead <= 0xF3) {
            need = 3;
        } else if (lead == 0xF4) {
            need = 3;
            hi = 0x8F;  // nothing above U+10FFFF
        } else {                                // 0x80..0xC1, 0xF5..0xFF: never valid
            out += kReplacementChar;
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        int got = 0;
        while (got < need && j < n) {
            unsigned char const c = s[j];
            if (c < (got == 0 ? lo : 0x80) || c > (got == 0 ? hi : 0xBF)) {
                break;
            }
            ++j;
            ++got;
        }
        if (got == need) {
            out.append(reinterpret_cast<char const*>(s + i), j - i);
        } else {
            out += kReplacementChar;            // the lead byte and the valid continuations so far
        }
        i = j;                                  // resume at the offending byte
    }
}

// Ids -> text, like ByteTokenizer.decode. An id outside 0..255 (a model that is not a byte model)
// becomes one U+FFFD here; Python raises ValueError instead.
inline std::string byte_decode(std::vector<int64_t> const& ids) {
    std::string out;
    std::vector<unsigned char> run;
    auto flush = [&] {
        append_utf8_replacing(out, run.data(), run.size());
        run.clear();
    };
    for (int64_t id : ids) {
        if (id < 0 || id > 255) {
            flush();
            out += kReplacementChar;
        } else {
            run.push_back(static_cast<unsigned char>(id));
        }
    }
    flush();
    return out;
}

// "72,101,108" -> {72, 101, 108}; whitespace around the numbers is allowed.
inline std::vector<int64_t> parse_ids(std::string const& text) {
    std::vector<int64_t> ids;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t const comma = std::min(text.find(',', pos), text.size());
        std::string item = text.substr(pos, comma - pos);
        std::size_t const first = item.find_first_not_of(" \t");
        std::size_t const last = item.find_last_not_of(" \t");
        item = first == std::string::npos ? std::string() : item.substr(first, last - first + 1);
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 18) {
            throw std::invalid_argument("token ids must be comma-separated non-negative integers, got '" + text + "'");
        }
        ids.push_back(std::stoll(item));
        pos = comma + 1;
    }
    return ids;
}

// ---- logits ------------------------------------------------------------------------------------
enum class LogitType { kFloat32, kFloat16, kBFloat16 };

inline std::size_t logit_size(LogitType type) {
    return type == LogitType::kFloat32 ? 4 : 2;
}

inline float float_from_bits(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// IEEE binary16 -> binary32, exact for every value (subnormals, infinities, NaN payloads kept).
inline float half_to_float(uint16_t h) {
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t const exponent = (h >> 10) & 0x1Fu;
    uint32_t const mantissa = h & 0x3FFu;
    if (exponent == 0x1F) {
        return float_from_bits(sign | 0x7F800000u | (mantissa << 13));
    }
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24 is exact in binary32
        float const magnitude = std::ldexp(static_cast<float>(mantissa), -24);
        return sign ? -magnitude : magnitude;
    }
    return float_from_bits(sign | ((exponent + 112u) << 23) | (mantissa << 13));  // 112 = 127 - 15
}

inline float bf16_to_float(uint16_t b) {
    return float_from_bits(static_cast<uint32_t>(b) << 16);
}

inline float logit_at(void const* data, std::size_t i, LogitType type) {
    if (type == LogitType::kFloat32) {
        float f;
        std::memcpy(&f, static_cast<unsigned char const*>(data) + 4 * i, sizeof f);
        return f;
    }
    uint16_t bits;
    std::memcpy(&bits, static_cast<unsigned char const*>(data) + 2 * i, sizeof bits);
    return type == LogitType::kFloat16 ? half_to_float(bits) : bf16_to_float(bits);
}

// Index of the largest of n logits; the first one on ties (like numpy.argmax). NaN is skipped;
// -1 when n == 0 or every value is NaN.
inline int64_t argmax(void const* data, std::size_t n, LogitType type) {
    int64_t best = -1;
    float best_value = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
        float const v = logit_at(data, i, type);
        if (std::isnan(v)) {
            continue;
        }
        if (best < 0 || v > best_value) {
            best = static_cast<int64_t>(i);
            best_value = v;
        }
    }
    return best;
}

// ---- engine I/O names and files ----------------------------------------------------------------
// The decode graph's state input "conv_state.3" is fed by the output "conv_state_out.3" (of the
// prefill graph, or of the previous decode step): "_out" goes before the layer index.
inline std::string state_output_name(std::string const& input_name) {
    std::size_t const dot = input_name.rfind('.');
    if (dot == std::string::npos) {
        return input_name + "_out";
    }
    return input_name.substr(0, dot) + "_out" + input_name.substr(dot);
}

// "out/model.plan" -> "out/model.decode.plan" (as mq_deploy.export.manifest.decode_path does for
// model.onnx -> model.decode.onnx); a name without a suffix gets ".decode.plan".
inline std::string default_decode_engine_path(std::string const& engine_path) {
    std::filesystem::path path(engine_path);
    std::string const suffix = path.extension().empty() ? std::string(".plan") : path.extension().string();
    path.replace_filename(path.stem().string() + ".decode" + suffix);
    return path.string();
}

// ---- image classification --------------------------------------------------------------------------
// A .npy file (numpy.save) of little-endian float32 in C order: format versions 1.0 to 3.0, the
// header's dict read for 'descr': '<f4', 'fortran_order': False and 'shape'. Anything else is one
// std::invalid_argument that says what the file holds instead.
struct NpyFloat32 {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

inline NpyFloat32 parse_npy_float32(std::vector<char> const& bytes) {
    static constexpr char kMagic[] = "\x93NUMPY";
    if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0) {
        throw std::invalid_argument("not a .npy file (no \\x93NUMPY magic): write it with numpy.save");
    }
    auto const major = static_cast<unsigned char>(bytes[6]);
    std::size_t header_len = 0, offset = 0;
    if (major == 1) {
        header_len = static_cast<unsigned char>(bytes[8]) | static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8;
        offset = 10;
    } else if ((major == 2 || major == 3) && bytes.size() >= 12) {
        for (int i = 3; i >= 0; --i) {
            header_len = header_len << 8 | static_cast<unsigned char>(bytes[8 + i]);
        }
        offset = 12;
    } else {
        throw std::invalid_argument(".npy format version " + std::to_string(major) + " is not supported (1 to 3)");
    }
    if (offset + header_len > bytes.size()) {
        throw std::invalid_argument(".npy header is cut off");
    }
    std::string const header(bytes.data() + offset, header_len);
    auto value_of = [&](std::string const& key) -> std::string {
        std::size_t const at = header.find("'" + key + "'");
        std::size_t const colon = at == std::string::npos ? at : header.find(':', at);
        if (colon == std::string::npos) {
            throw std::invalid_argument(".npy header has no '" + key + "': " + header);
        }
        std::size_t const start = header.find_first_not_of(' ', colon + 1);
        if (start == std::string::npos) {
            throw std::invalid_argument(".npy header has no value for '" + key + "': " + header);
        }
        std::size_t const close = header[start] == '(' ? header.find(')', start) : header.find_first_of(",}", start);
        if (close == std::string::npos) {
            throw std::invalid_argument(".npy header is malformed: " + header);
        }
        return header.substr(start, close - start + (header[start] == '(' ? 1 : 0));
    };
    std::string const descr = value_of("descr");
    if (descr != "'<f4'") {
        throw std::invalid_argument("the array is " + descr + ", not little-endian float32 ('<f4'): save it with "
                                    "numpy.save(path, images.astype(numpy.float32))");
    }
    if (value_of("fortran_order") != "False") {
        throw std::invalid_argument("the array is in Fortran order: save numpy.ascontiguousarray(images)");
    }
    std::string dims = value_of("shape");
    if (dims.size() < 2 || dims.front() != '(' || dims.back() != ')') {
        throw std::invalid_argument(".npy shape " + dims + " is not a tuple");
    }
    NpyFloat32 out;
    std::size_t count = 1;
    std::vector<std::string> items;
    std::istringstream list(dims.substr(1, dims.size() - 2));
    for (std::string item; std::getline(list, item, ',');) {
        items.push_back(item);
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
        std::string const& item = items[i];
        std::size_t const first = item.find_first_not_of(' ');
        if (first == std::string::npos) {
            if (i + 1 == items.size() && i > 0) {
                continue;                                // the trailing comma of a 1-tuple: "(5,)"
            }
            throw std::invalid_argument(".npy shape " + dims + " is not a tuple of non-negative integers");
        }
        std::string const text = item.substr(first, item.find_last_not_of(' ') - first + 1);
        if (text.empty() || text.size() > 15 || text.find_first_not_of("0123456789") != std::string::npos) {
            throw std::invalid_argument(".npy shape " + dims + " is not a tuple of non-negative integers");
        }
        auto const d = static_cast<std::size_t>(std::stoll(text));  // at most 15 digits: no overflow here
        if (d != 0 && count > std::numeric_limits<std::size_t>::max() / sizeof(float) / d) {
            throw std::invalid_argument(".npy shape " + dims + " is too large");
        }
        out.shape.push_back(static_cast<int64_t>(d));
        count *= d;
    }
    std::size_t const data_bytes = bytes.size() - offset - header_len;
    if (data_bytes != count * sizeof(float)) {
        throw std::invalid_argument(".npy of shape " + dims + " needs " + std::to_string(count * sizeof(float)) +
                                    " bytes of data, the file has " + std::to_string(data_bytes) + " (truncated?)");
    }
    out.data.resize(count);
    if (count) {
        std::memcpy(out.data.data(), bytes.data() + offset + header_len, data_bytes);  // little-endian host
    }
    return out;
}

struct RankedClass {
    int64_t index;
    double probability;  // softmax over the whole row
};

// The k classes with the largest logits, most likely first; ties go to the lower index (a stable
// descending sort, as numpy.argsort(-x, kind="stable")); NaN logits rank last with probability NaN.
inline std::vector<RankedClass> top_k_softmax(float const* logits, std::size_t n, std::size_t k) {
    std::vector<int64_t> order(n);
    for (std::size_t i = 0; i < n; ++i) {
        order[i] = static_cast<int64_t>(i);
    }
    auto key = [&](int64_t i) {
        return std::isnan(logits[i]) ? -std::numeric_limits<double>::infinity() : static_cast<double>(logits[i]);
    };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        bool const nan_a = std::isnan(logits[a]), nan_b = std::isnan(logits[b]);
        return nan_a != nan_b ? nan_b : key(a) > key(b);
    });
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
        top = std::max(top, key(static_cast<int64_t>(i)));
    }
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        sum += std::isnan(logits[i]) ? 0.0 : std::exp(key(static_cast<int64_t>(i)) - top);
    }
    std::vector<RankedClass> out;
    for (std::size_t r = 0; r < std::min(k, n); ++r) {
        int64_t const i = order[r];
        out.push_back({i, std::isnan(logits[i]) ? std::nan("") : std::exp(key(i) - top) / sum});
    }
    return out;
}

// Class names, one per line (a trailing newline and '\r' line ends allowed; an empty line is a name).
inline std::vector<std::string> parse_labels(std::string const& text) {
    std::vector<std::string> labels;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty() && line.back() == '\r') {
            line.pop_back();
        }
        labels.push_back(line);
    }
    return labels;
}

}  // namespace mq_sample
