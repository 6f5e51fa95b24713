/*
 * harness.h — the test runner's API.
 *
 * A test file (tests/test-<area>.c) declares tests with TEST(area, name) { ... }.  They
 * register themselves at start-up; tests/harness.c runs each in its own forked process
 * with a time limit (libuv's runner does the same), so a crash or hang fails that test only
 * and no test depends on another.
 *
 * CHECK* macros never compile away (not assert(3)): on failure they print the file, line and
 * expression and end the test process with status 1.
 *
 *   build/bin/run-tests                 every test
 *   build/bin/run-tests log/            the tests whose "area/name" starts with "log/"
 *   PSL_TEST_TIMEOUT=120 run-tests ...  seconds per test (default 120)
 *
 * The last line printed is "N passed, N failed".
 */
#ifndef PSL_TEST_HARNESS_H
#define PSL_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*psl_test_fn)(void);

void psl_test_register(const char *area, const char *name, psl_test_fn fn, int timeout_s);

#define TEST_T(area, name, timeout_s)                                                  \
  static void test_##area##_##name(void);                                              \
  __attribute__((constructor)) static void test_register_##area##_##name(void) {       \
    psl_test_register(#area, #name, test_##area##_##name, (timeout_s));                \
  }                                                                                    \
  static void test_##area##_##name(void)

#define TEST(area, name) TEST_T(area, name, 0)

void psl_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (!(cond))                                                                       \
      psl_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                           \
  } while (0)

#define CHECK_EQ(a, b)                                                                 \
  do {                                                                                 \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
    if (check_a_ != check_b_)                                                          \
      psl_test_fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %lld != %lld", #a, #b,      \
                    check_a_, check_b_);                                               \
  } while (0)

#define CHECK_OK(expr)                                                                 \
  do {                                                                                 \
    long long check_r_ = (long long)(expr);                                            \
    if (check_r_ != 0)                                                                 \
      psl_test_fail(__FILE__, __LINE__, "CHECK_OK(%s): returned %lld", #expr, check_r_); \
  } while (0)

#define CHECK_MEM(a, b, n)                                                             \
  do {                                                                                 \
    if (memcmp((a), (b), (n)) != 0)                                                    \
      psl_test_fail(__FILE__, __LINE__, "CHECK_MEM(%s, %s, %s): differ", #a, #b, #n);  \
  } while (0)

#define CHECK_STR(a, b)                                                                \
  do {                                                                                 \
    const char *check_a_ = (a), *check_b_ = (b);                                       \
    if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0)                     \
      psl_test_fail(__FILE__, __LINE__, "CHECK_STR(%s, %s): \"%s\" != \"%s\"", #a, #b, \
                    check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");   \
  } while (0)

/* A fresh temporary folder for this test (removed when the test process ends, unless
 * PSL_TEST_KEEP is set).  Returns its path; static storage for the test's life. */
const char *psl_test_tmpdir(void);

/* Fill buf with n bytes of a deterministic pseudo-random stream seeded by seed (xorshift):
 * tests that want randomness print their seed so a failure can be replayed. */
uint64_t psl_test_rand(uint64_t *state);

/* Directory of the built binaries (build/bin), for tests that start passerelled. */
const char *psl_test_bindir(void);

#endif /* PSL_TEST_HARNESS_H */
