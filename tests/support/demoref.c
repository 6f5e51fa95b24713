/*
 * demoref.c — see demoref.h.  Voids re-fold their stream through demoref_iter, which walks
 * the array for that stream's events before the given seq (the log's stream index does the
 * same for the server).
 */
#include "demoref.h"

#include <string.h>

typedef struct {
  const psl_demo_event_t *ev;
  size_t n;
  const char *by, *dev;
} demoref_t;

static void demoref_stamp(const demoref_t *r, size_t i, psl_event_t *e) {
  psl_demo_event_view(&r->ev[i], e);
  e->seq = i + 1;
  e->ver = (uint64_t)r->ev[i].expect + 1;
  e->rec = r->ev[i].at;
  e->by = psl_str(r->by);
  e->dev = psl_str(r->dev);
}

static int demoref_iter(void *arg, psl_str_t stream, uint64_t before, psl_event_fn fn,
                        void *fa) {
  const demoref_t *r = arg;
  for (size_t i = 0; i < r->n && i + 1 < before; i++) {
    const char *s = r->ev[i].stream;
    if (strlen(s) != stream.len || memcmp(s, stream.ptr, stream.len) != 0)
      continue;
    psl_event_t e;
    demoref_stamp(r, i, &e);
    int rc = fn(fa, &e);
    if (rc)
      return rc;
  }
  return 0;
}

int demoref_fold(const psl_demo_event_t *ev, size_t n, const char *by, const char *dev,
                 psl_proj_t **out) {
  demoref_t r = {ev, n, by, dev};
  psl_proj_t *p = NULL;
  int rc = psl_proj_new(&p);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    psl_event_t e;
    demoref_stamp(&r, i, &e);
    rc = psl_proj_apply(p, &e, demoref_iter, &r);
  }
  if (rc) {
    psl_proj_free(p);
    return rc;
  }
  *out = p;
  return 0;
}
