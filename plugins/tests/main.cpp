// Runs every TEST in this executable; exit code 1 if any failed. `--list` prints the names.
#include <cstring>

#include "unit_test.h"

int main(int argc, char** argv) {
    using namespace mq::test;
    if (argc > 1 && std::strcmp(argv[1], "--list") == 0) {
        for (TestCase const& t : registry()) {
            std::printf("%s\n", t.name);
        }
        return 0;
    }
    int passed = 0;
    int failed = 0;
    for (TestCase const& t : registry()) {
        failures_in_current_test() = 0;
        t.body();
        bool const ok = failures_in_current_test() == 0;
        std::printf("[%s] %s\n", ok ? "PASS" : "FAIL", t.name);
        (ok ? passed : failed) += 1;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
