// Minimal assertion helpers for the native tests: every failed check is printed, the exit code says the rest.
#pragma once
#include <cmath>
#include <cstdio>

namespace ne_test {
inline int failures = 0;
constexpr int kSkipped = 77;  // ctest SKIP_RETURN_CODE

inline void check(bool ok, const char* what, const char* file, int line) {
    if (!ok) {
        ++failures;
        std::printf("FAILED %s:%d: %s\n", file, line, what);
    }
}

// |actual - expected| <= tol + |expected| * rel
inline bool close(double actual, double expected, double tol, double rel) {
    return std::fabs(actual - expected) <= tol + std::fabs(expected) * rel;
}

inline int finish(const char* suite) {
    if (failures == 0) std::printf("%s: all checks passed\n", suite);
    else std::printf("%s: %d check(s) failed\n", suite, failures);
    return failures == 0 ? 0 : 1;
}
}  // namespace ne_test

#define CHECK(cond) ::ne_test::check((cond), #cond, __FILE__, __LINE__)
