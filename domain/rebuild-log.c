/*
 * rebuild-log.c — psl_proj_rebuild_from_log: every event of a log, from seq 1, folded into a
 * new memory store through the log's public reading API (psl_log_read).
 *
 * In its own file because it is the domain's only call into the server library: a client
 * that never calls it links libpsl-domain without libpsl-server.
 *
 * psl_log_read's callback runs inside the log's read transaction and must not call into the
 * log, so events are copied out a chunk at a time and folded after the read returns; a
 * recomputation's stream read does the same.
 */
#include <stdlib.h>

#include "psl_domain_int.h"
#include "psl_log.h"

/* Bytes of canonical events copied out per read: large enough to amortise a transaction
 * over thousands of 300-byte events, small enough to stay in cache-sized memory. */
#define REBUILD_CHUNK_BYTES (4u * 1024u * 1024u)

typedef struct {
  psl_buf_t buf;
  size_t *off, *len;
  uint64_t *seq;
  size_t n, cap;
  uint64_t before; /* stream reads: stop at this seq (0: no bound) */
  int err;
} copied_t;

static int copy_record(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                       size_t len) {
  copied_t *cp = arg;
  (void)hash;
  if (cp->before && seq >= cp->before)
    return 1;
  if (cp->n == cp->cap) {
    size_t ncap = cp->cap ? cp->cap * 2 : 1024;
    size_t *o = realloc(cp->off, ncap * sizeof *o);
    if (o)
      cp->off = o;
    size_t *l = realloc(cp->len, ncap * sizeof *l);
    if (l)
      cp->len = l;
    uint64_t *s = realloc(cp->seq, ncap * sizeof *s);
    if (s)
      cp->seq = s;
    if (!o || !l || !s) {
      cp->err = PSL_ENOMEM;
      return 1;
    }
    cp->cap = ncap;
  }
  cp->off[cp->n] = cp->buf.len;
  cp->len[cp->n] = len;
  cp->seq[cp->n] = seq;
  if ((cp->err = psl_buf_append(&cp->buf, canon, len)))
    return 1;
  cp->n++;
  return 0;
}

static void copied_free(copied_t *cp) {
  psl_buf_free(&cp->buf);
  free(cp->off);
  free(cp->len);
  free(cp->seq);
}

static int stream_iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                       void *fnarg) {
  psl_log_t *log = arg;
  psl_filter_t f = {NULL, 0, &stream, 1};
  copied_t cp = {0};
  uint64_t after = 0, last = 0;
  int rc = 0;
  psl_buf_init(&cp.buf, 0);
  cp.before = before_seq;
  for (;;) {
    cp.n = 0;
    cp.buf.len = 0;
    if ((rc = psl_log_read(log, after, &f, REBUILD_CHUNK_BYTES, 0, copy_record, &cp, &last)) ||
        (rc = cp.err))
      break;
    for (size_t i = 0; i < cp.n && !rc; i++) {
      psl_event_t ev;
      if (psl_event_decode_stored(psl_buf_data(&cp.buf) + cp.off[i], cp.len[i], &ev, NULL))
        rc = PSL_ECORRUPT;
      else
        rc = fn(fnarg, &ev);
    }
    /* done: nothing more, or the read stopped at before_seq */
    if (rc || cp.n == 0 || last <= after || (before_seq && cp.seq[cp.n - 1] + 1 >= before_seq))
      break;
    after = cp.seq[cp.n - 1];
  }
  copied_free(&cp);
  return rc;
}

int psl_proj_rebuild_from_log(psl_log_t *log, psl_proj_t **out) {
  psl_proj_t *mem;
  copied_t cp = {0};
  uint64_t head = psl_log_head(log, NULL), after = 0, last = 0;
  psl_event_t *evs = NULL;
  size_t cap_evs = 0;
  int rc = psl_proj_new(&mem);
  if (rc)
    return rc;
  psl_buf_init(&cp.buf, 0);
  while (!rc && after < head) {
    cp.n = 0;
    cp.buf.len = 0;
    if ((rc = psl_log_read(log, after, NULL, REBUILD_CHUNK_BYTES, 0, copy_record, &cp, &last)) ||
        (rc = cp.err))
      break;
    /* decode the chunk, then fold it with prefetching (store-mem.c) */
    size_t n = 0;
    while (n < cp.n && cp.seq[n] <= head)
      n++;
    if (n > cap_evs) {
      psl_event_t *e = realloc(evs, n * sizeof *e);
      if (!e) {
        rc = PSL_ENOMEM;
        break;
      }
      evs = e;
      cap_evs = n;
    }
    for (size_t i = 0; i < n && !rc; i++)
      if (psl_event_decode_stored(psl_buf_data(&cp.buf) + cp.off[i], cp.len[i], &evs[i], NULL))
        rc = PSL_ECORRUPT;
    if (!rc)
      rc = psl__mem_apply_run(mem, evs, n, stream_iter, log);
    if (cp.n == 0 || last <= after)
      break;
    after = last;
  }
  copied_free(&cp);
  free(evs);
  if (rc) {
    psl_proj_free(mem);
    return rc;
  }
  psl__mem_set_seq(mem, head);
  *out = mem;
  return 0;
}
