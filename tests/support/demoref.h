/*
 * demoref.h — the in-process reference for tests that push a demo data set (tools/demo/):
 * the same events folded into an in-memory projection, as the log would store them
 * (seq = position + 1, ver = expect + 1, rec = at, by and dev as given).
 */
#ifndef PSL_TEST_DEMOREF_H
#define PSL_TEST_DEMOREF_H

#include <stddef.h>

#include "psl_demo.h"
#include "psl_domain.h"

/* Fold ev[0..n) into a new projection (*out, the caller frees it with psl_proj_free).
 * by and dev are stamped on every event.  0 or PSL_E*. */
int demoref_fold(const psl_demo_event_t *ev, size_t n, const char *by, const char *dev,
                 psl_proj_t **out);

#endif /* PSL_TEST_DEMOREF_H */
