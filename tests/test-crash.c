/*
 * test-crash.c — kill -9 under load, the short version (area `crash`): a few cycles of
 * tests/support/crash.h's harness in `make test`.  `make crash-test` runs 100 or more
 * (bench/crash-test.c) and prints the figures of docs/RELIABILITY.md.
 *
 * The harness fails the test on the first broken guarantee: an acknowledged event missing
 * or changed after a kill, a seq answered twice, a chain that does not verify, projections
 * that differ from a rebuild, a retry stored twice.  The seed is printed, so that a failure
 * can be replayed with PSL_CRASH_SEED.
 */
#include "harness.h"

#include <limits.h>

#include "support/crash.h"

/* Cycles in `make test`: enough to kill the server in several states (mid-commit, between
 * commit and answer, with retries pending) within a few seconds. */
#define SHORT_CYCLES 5

TEST_T(crash, kill9_under_load_loses_nothing, 120) {
  crash_opts_t o;
  crash_t *c = NULL;
  crash_stats_t st;
  char dir[PATH_MAX], err[2048];
  memset(&o, 0, sizeof o);
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  o.bindir = psl_test_bindir();
  o.dir = dir;
  o.min_load_ms = 30;
  o.max_load_ms = 300;
  const char *seed = getenv("PSL_CRASH_SEED");
  if (seed)
    o.seed = strtoull(seed, NULL, 0);
  CHECK_OK(crash_new(&c, &o, err, sizeof err));
  crash_stats(c, &st);
  printf("  crash: seed 0x%llx\n", (unsigned long long)st.seed);
  for (int i = 0; i < SHORT_CYCLES; i++) {
    int rc = crash_cycle(c, err, sizeof err);
    if (rc)
      psl_test_fail(__FILE__, __LINE__, "cycle %d: %s (server log: %s)", i + 1, err,
                    crash_server_log(c));
  }
  int rc = crash_finish(c, err, sizeof err);
  if (rc)
    psl_test_fail(__FILE__, __LINE__, "after the last cycle: %s", err);
  crash_stats(c, &st);
  printf("  crash: %d cycles, %llu events acknowledged, %llu in flight at the kills (%llu kept "
         "and answered dup), %llu dups checked, lost 0, projections compared %llu times%s\n",
         st.cycles, (unsigned long long)st.acked, (unsigned long long)st.inflight,
         (unsigned long long)st.inflight_kept, (unsigned long long)st.dup_checked,
         (unsigned long long)st.proj_checks, st.proj_absent ? " (absent in some)" : "");
  CHECK_EQ(st.lost, 0);
  CHECK(st.acked > 0);
  CHECK(st.proj_checks > 0 || st.proj_absent);
  crash_free(c);
}
