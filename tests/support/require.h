/*
 * require.h — checks against a running server for tests (not benches: it needs the harness).
 * On failure the test ends after printing the last 1,500 bytes of the server's log, so a
 * failed check shows what the server said.
 */
#ifndef PSL_TEST_REQUIRE_H
#define PSL_TEST_REQUIRE_H

#include <stdarg.h>
#include <stdio.h>

#include "harness.h"
#include "support/srv.h"

__attribute__((noreturn, format(printf, 4, 5), unused)) static void
srv_fail(const srv_t *s, const char *file, int line, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (s)
    srv_dump_log(s, 1500);
  psl_test_fail(file, line, "%s", msg);
}

/* Like CHECK, with a printf message, and the log of server s (may be NULL) on failure. */
#define SRV_REQUIRE(s, cond, ...)                                                        \
  do {                                                                                   \
    if (!(cond))                                                                         \
      srv_fail((s), __FILE__, __LINE__, __VA_ARGS__);                                    \
  } while (0)

#endif /* PSL_TEST_REQUIRE_H */
