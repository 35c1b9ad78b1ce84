// Which Hadamard sizes are supported and how they factor: n = m * 2^k with m the largest base
// order in {40, 28, 20, 12, 1} for which n / m is a power of two (the same rule as
// hadamard_bases.py: base_order_for). Plain C++, shared by the kernel, the plugin and the tests.
#pragma once

#include <cstdint>

namespace mq::hadamard {

constexpr int kBaseOrders[] = {40, 28, 20, 12, 1};  // tried in this order: largest first
constexpr int64_t kMaxSize = 16384;                 // one row lives in shared memory as float32

struct SizeFactors {
    int base_order{0};  // m; 0 = unsupported size
    int log2_pow2{0};   // k
};

constexpr bool is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

constexpr SizeFactors factor_size(int64_t n) {
    if (n < 1 || n > kMaxSize) {
        return {};
    }
    for (int m : kBaseOrders) {
        if (n % m == 0 && is_pow2(n / m)) {
            int k = 0;
            while ((int64_t{1} << k) < n / m) {
                ++k;
            }
            return {m, k};
        }
    }
    return {};
}

static_assert(factor_size(1536).base_order == 12 && factor_size(1536).log2_pow2 == 7);
static_assert(factor_size(2560).base_order == 40 && factor_size(5120).base_order == 40);
static_assert(factor_size(4096).base_order == 1 && factor_size(4096).log2_pow2 == 12);
static_assert(factor_size(3000).base_order == 0 && factor_size(0).base_order == 0);

}  // namespace mq::hadamard
