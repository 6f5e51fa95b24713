/*
 * run.h — run one of build/bin's programs from a test and keep what it printed.
 */
#ifndef PSL_TESTS_RUN_H
#define PSL_TESTS_RUN_H

#include <stddef.h>

typedef struct {
  int status;   /* exit status (0..255), or 128 + the signal that ended it, -1 not run */
  char *out;    /* stdout, NUL-terminated (malloc'd) */
  size_t outlen;
  char *err;    /* stderr, NUL-terminated (malloc'd) */
} run_result_t;

/* Run bindir/prog with argv (NULL-ended, without argv[0]), stdin from /dev/null, waiting at
 * most timeout_s seconds (then SIGKILL).  0, or PSL_E* when it could not be started.  The
 * caller frees with run_free. */
int run_tool(const char *bindir, const char *prog, const char *const *argv, int timeout_s,
             run_result_t *r);
void run_free(run_result_t *r);

#endif /* PSL_TESTS_RUN_H */
