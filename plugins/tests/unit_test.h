// A minimal test harness (no external dependency): TEST(name) registers a function, CHECK and
// CHECK_EQ record failures, main() runs everything and prints "N passed, N failed".
#pragma once

#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace mq::test {

struct TestCase {
    char const* name;
    std::function<void()> body;
};

inline std::vector<TestCase>& registry() {
    static std::vector<TestCase> tests;
    return tests;
}

inline int& failures_in_current_test() {
    static int failures = 0;
    return failures;
}

struct Registrar {
    Registrar(char const* name, std::function<void()> body) { registry().push_back({name, std::move(body)}); }
};

inline void fail(char const* file, int line, std::string const& what) {
    ++failures_in_current_test();
    std::fprintf(stderr, "  %s:%d: %s\n", file, line, what.c_str());
}

template <typename A, typename B>
std::string describe_mismatch(char const* a_expr, char const* b_expr, A const& a, B const& b) {
    std::ostringstream os;
    os << a_expr << " == " << b_expr << " failed: " << a << " vs " << b;
    return os.str();
}

}  // namespace mq::test

#define MQ_TEST_CONCAT2(a, b) a##b
#define MQ_TEST_CONCAT(a, b) MQ_TEST_CONCAT2(a, b)
#define TEST(name)                                                                      \
    static void name();                                                                 \
    static ::mq::test::Registrar MQ_TEST_CONCAT(registrar_, name)(#name, &name);        \
    static void name()

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) ::mq::test::fail(__FILE__, __LINE__, "CHECK(" #cond ") failed");   \
    } while (0)

#define CHECK_EQ(a, b)                                                                                   \
    do {                                                                                                 \
        auto const& mq_a = (a);                                                                          \
        auto const& mq_b = (b);                                                                          \
        if (!(mq_a == mq_b)) ::mq::test::fail(__FILE__, __LINE__, ::mq::test::describe_mismatch(#a, #b, mq_a, mq_b)); \
    } while (0)

// The message of a check function: "" means it passed.
#define CHECK_OK(expr)                                                                        \
    do {                                                                                      \
        std::string const mq_err = (expr);                                                    \
        if (!mq_err.empty()) ::mq::test::fail(__FILE__, __LINE__, #expr " failed: " + mq_err); \
    } while (0)

#define CHECK_ERROR(expr, fragment)                                                                       \
    do {                                                                                                  \
        std::string const mq_err = (expr);                                                                \
        if (mq_err.find(fragment) == std::string::npos)                                                   \
            ::mq::test::fail(__FILE__, __LINE__, #expr " should fail with '" fragment "', got '" + mq_err + "'"); \
    } while (0)
