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
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "psl_domain_int.h"
#include "psl_log.h"

/* Bytes of canonical events copied out per read: large enough to amortise a transaction
 * over thousands of 300-byte events, small enough to stay in cache-sized memory. */
#define REBUILD_CHUNK_DEFAULT (4u * 1024u * 1024u)
#define REBUILD_CHUNK_BYTES (psl__test_rebuild_chunk ? psl__test_rebuild_chunk : REBUILD_CHUNK_DEFAULT)

size_t psl__test_rebuild_chunk;

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

/* The lean reader first (mp.c), proto's full decoder for what it cannot read. */
static int read_event(const uint8_t *canon, size_t len, psl_event_t *ev) {
  return psl__event_read_stored(canon, len, ev) && psl_event_decode_stored(canon, len, ev, NULL);
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
      if (read_event(psl_buf_data(&cp.buf) + cp.off[i], cp.len[i], &ev))
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

/* ---- The rebuild: two threads, a reader and a folder.
 *
 * The reader (a thread of its own) reads a chunk of the log with psl_log_read, copies it out,
 * decodes its events and parses them into facts (psl__engine_fact); the folder (the caller's
 * thread) folds the previous chunk meanwhile.  On two cores the rebuild then takes the longer
 * of the two instead of their sum, so the parse, which either can do, goes to whichever is
 * idle: the reader parses until the folder waits for the chunk, then hands it over with
 * the rest of its facts (from nfacts on) for the folder to parse.  Two chunks circulate: the
 * reader fills one while the folder empties the other.  A chunk's events and facts point
 * into its copied bytes, which stay put until the folder hands the chunk back. */

/* Facts parsed between two looks at whether the folder waits: a look is an atomic load,
 * a batch ~10 us of parsing, far below a chunk's few ms. */
#define REBUILD_FACT_BATCH 64u

typedef struct {
  copied_t cp;
  psl_event_t *evs;
  psl__fact_t *facts; /* facts[i]: evs[i]'s (PSL__STREAM_BAD: not folded) */
  size_t n, cap;
  size_t nfacts; /* facts parsed by the reader: the folder parses the others */
  int rc;   /* the read's error: the folder stops there */
  int last; /* nothing after this chunk */
} chunk_t;

typedef struct {
  psl_log_t *log;
  uint64_t head;
  chunk_t chunk[2];
  int full[2]; /* chunk i holds events for the folder */
  int stop;    /* the folder gave up: the reader ends */
  atomic_int waiting; /* the folder waits for a chunk: the reader stops parsing */
  pthread_mutex_t mu;
  pthread_cond_t cond;
} pipe_t;

/* Read and decode the chunk after `after`; *after advances. */
static void read_chunk(pipe_t *pp, chunk_t *ck, uint64_t *after) {
  uint64_t last = 0;
  ck->cp.n = 0;
  ck->cp.buf.len = 0;
  ck->n = 0;
  ck->rc = psl_log_read(pp->log, *after, NULL, REBUILD_CHUNK_BYTES, 0, copy_record, &ck->cp,
                        &last);
  if (!ck->rc)
    ck->rc = ck->cp.err;
  size_t n = 0;
  while (!ck->rc && n < ck->cp.n && ck->cp.seq[n] <= pp->head)
    n++;
  if (!ck->rc && n > ck->cap) {
    psl_event_t *e = realloc(ck->evs, n * sizeof *e);
    psl__fact_t *f = realloc(ck->facts, n * sizeof *f);
    if (e)
      ck->evs = e;
    if (f)
      ck->facts = f;
    if (!e || !f)
      ck->rc = PSL_ENOMEM;
    else
      ck->cap = n;
  }
  for (size_t i = 0; !ck->rc && i < n; i++)
    if (read_event(psl_buf_data(&ck->cp.buf) + ck->cp.off[i], ck->cp.len[i], &ck->evs[i]))
      ck->rc = PSL_ECORRUPT;
  size_t nf = 0;
  for (; !ck->rc && nf < n; nf++) {
    if (nf % REBUILD_FACT_BATCH == 0 && atomic_load_explicit(&pp->waiting, memory_order_relaxed))
      break;
    psl__engine_fact(&ck->evs[nf], &ck->facts[nf]); /* 1 marks the fact: nothing to keep */
  }
  ck->n = ck->rc ? 0 : n;
  ck->nfacts = ck->rc ? 0 : nf;
  ck->last = ck->rc || ck->cp.n == 0 || last <= *after || last >= pp->head;
  *after = last;
}

static void *reader_main(void *arg) {
  pipe_t *pp = arg;
  uint64_t after = 0;
  for (int i = 0;; i ^= 1) {
    pthread_mutex_lock(&pp->mu);
    while (pp->full[i] && !pp->stop)
      pthread_cond_wait(&pp->cond, &pp->mu);
    int stop = pp->stop;
    pthread_mutex_unlock(&pp->mu);
    if (stop)
      break;
    read_chunk(pp, &pp->chunk[i], &after);
    int last = pp->chunk[i].last;
    pthread_mutex_lock(&pp->mu);
    pp->full[i] = 1;
    pthread_cond_broadcast(&pp->cond);
    pthread_mutex_unlock(&pp->mu);
    if (last)
      break;
  }
  return NULL;
}

int psl_proj_rebuild_from_log(psl_log_t *log, psl_proj_t **out) {
  psl_proj_t *mem;
  pipe_t pp;
  pthread_t reader;
  int rc = psl_proj_new(&mem);
  if (rc)
    return rc;
  memset(&pp, 0, sizeof pp);
  atomic_init(&pp.waiting, 0);
  pp.log = log;
  pp.head = psl_log_head(log, NULL);
  for (int i = 0; i < 2; i++)
    psl_buf_init(&pp.chunk[i].cp.buf, 0);
  pthread_mutex_init(&pp.mu, NULL);
  pthread_cond_init(&pp.cond, NULL);
  int started = pp.head && pthread_create(&reader, NULL, reader_main, &pp) == 0;
  if (pp.head && !started)
    rc = PSL_ENOMEM;
  for (int i = 0; started && !rc; i ^= 1) {
    pthread_mutex_lock(&pp.mu);
    while (!pp.full[i]) {
      atomic_store_explicit(&pp.waiting, 1, memory_order_relaxed);
      pthread_cond_wait(&pp.cond, &pp.mu);
    }
    atomic_store_explicit(&pp.waiting, 0, memory_order_relaxed);
    pthread_mutex_unlock(&pp.mu);
    chunk_t *ck = &pp.chunk[i];
    rc = ck->rc;
    for (size_t j = ck->nfacts; !rc && j < ck->n; j++)
      psl__engine_fact(&ck->evs[j], &ck->facts[j]); /* the facts the reader left */
    if (!rc)
      rc = psl__mem_apply_run(mem, ck->evs, ck->facts, ck->n, stream_iter, log);
    int last = ck->last;
    pthread_mutex_lock(&pp.mu);
    pp.full[i] = 0;
    if (rc)
      pp.stop = 1;
    pthread_cond_broadcast(&pp.cond);
    pthread_mutex_unlock(&pp.mu);
    if (last)
      break;
  }
  if (started)
    pthread_join(reader, NULL);
  pthread_mutex_destroy(&pp.mu);
  pthread_cond_destroy(&pp.cond);
  for (int i = 0; i < 2; i++) {
    copied_free(&pp.chunk[i].cp);
    free(pp.chunk[i].evs);
    free(pp.chunk[i].facts);
  }
  if (rc) {
    psl_proj_free(mem);
    return rc;
  }
  psl__mem_set_seq(mem, pp.head);
  *out = mem;
  return 0;
}
