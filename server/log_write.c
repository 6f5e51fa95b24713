/*
 * log_write.c — the log's one writer thread and its group commit.
 *
 * Producers (any thread) link requests into a FIFO under q_mu and signal q_cond
 * (psl_log_submit): nothing they do waits for the disk.  The writer takes every pending
 * request, up to max_batch events but never splitting a request, applies them in ONE write
 * transaction and commits it durably (log_apply.c).  Only then does it publish the new head,
 * complete each request (`done`, on this thread) and call on_commit.  So an fsync is shared
 * by everything that arrived while the previous one ran: that is what makes 64 one-event
 * clients cheap.
 *
 * MDB_MAP_FULL anywhere in a batch: abort, double the map (capped by map_size_max) under the
 * exclusive map_lock, and run the batch again from the start.  At the cap, or on a full disk,
 * every request of the batch fails with PSL_EUNAVAILABLE (PSL_EIO when LMDB reports a short
 * write, its way of saying the file system is full) and nothing of it is stored; reads go
 * on, and later batches try again (space may have returned).  The in-memory head moves only
 * after a successful commit.
 */
#include "log_int.h"

#include <stdint.h>
#include <string.h>

/* Double the map, capped by map_size_max.  0, or PSL_EUNAVAILABLE at the cap. */
static int grow_map(psl_log_t *log) {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(log->env, &info);
  mdb_env_stat(log->env, &st);
  size_t cur = info.me_mapsize, next = cur > SIZE_MAX / 2 ? SIZE_MAX : cur * 2;
  if (log->map_size_max) {
    if (cur >= log->map_size_max)
      return PSL_EUNAVAILABLE;
    if (next > log->map_size_max)
      next = log->map_size_max;
  }
  next -= next % st.ms_psize;
  if (next <= cur)
    return PSL_EUNAVAILABLE;
  int rc = psl__log_set_mapsize(log, next);
  return rc ? psl__log_write_err(rc) : 0;
}

static void unstamp(psl_append_req_t *first) {
  for (psl_append_req_t *r = first; r; r = r->next_)
    for (size_t i = 0; i < r->n; i++) {
      r->events[i].seq = r->events[i].ver = 0;
      r->events[i].rec = 0;
      r->events[i].has_hash = 0;
    }
}

/* Apply, commit and complete one batch (a NULL-terminated list). */
static void run_batch(psl_log_t *log, psl_append_req_t *first) {
  uint64_t seq = 0;
  uint8_t hash[PSL_HASH_BYTES];
  int err, mdb_rc = 0;
  for (;;) {
    if (log->writer_failed) {
      err = PSL_EUNAVAILABLE;
      break;
    }
    err = psl__batch_commit(log, log->writer, first, &mdb_rc, &seq, hash);
    if (err == 0)
      break;
    psl__writer_forget(log->writer); /* its cache may hold the aborted versions */
    if (mdb_rc != MDB_MAP_FULL)
      break;
    if ((err = grow_map(log)) != 0)
      break;
  }
  if (mdb_rc == MDB_PANIC)
    log->writer_failed = 1; /* LMDB refuses every later transaction of this env */

  uint64_t head = 0;
  if (err == 0) {
    pthread_mutex_lock(&log->head_mu);
    uint64_t stored = seq - log->head;
    log->head = seq;
    memcpy(log->head_hash, hash, PSL_HASH_BYTES);
    log->stats.commits++;
    log->stats.events += stored;
    pthread_mutex_unlock(&log->head_mu);
    head = stored ? seq : 0;
  } else {
    pthread_mutex_lock(&log->head_mu);
    log->stats.failed_batches++;
    pthread_mutex_unlock(&log->head_mu);
    unstamp(first);
  }

  void (*on_commit)(void *, uint64_t);
  void *arg;
  pthread_mutex_lock(&log->q_mu);
  on_commit = log->on_commit;
  arg = log->on_commit_arg;
  pthread_mutex_unlock(&log->q_mu);

  for (psl_append_req_t *r = first, *next; r; r = next) {
    next = r->next_; /* done may free r */
    r->next_ = NULL;
    r->err = err;
    if (r->done)
      r->done(r);
  }
  if (head && on_commit)
    on_commit(arg, head);
}

static void *writer_main(void *arg) {
  psl_log_t *log = arg;
  for (;;) {
    pthread_mutex_lock(&log->q_mu);
    while (!log->q_first && !log->closing)
      pthread_cond_wait(&log->q_cond, &log->q_mu);
    psl_append_req_t *first = log->q_first, *last = first;
    if (!first) { /* closing and drained */
      pthread_mutex_unlock(&log->q_mu);
      break;
    }
    size_t n = first->n, nreq = 1, bytes = first->bytes_;
    while (last->next_ && n + last->next_->n <= log->max_batch &&
           bytes + last->next_->bytes_ <= PSL__LOG_BATCH_BYTES) {
      last = last->next_;
      n += last->n;
      bytes += last->bytes_;
      nreq++;
    }
    log->q_first = last->next_;
    if (!log->q_first)
      log->q_last = NULL;
    last->next_ = NULL;
    pthread_mutex_unlock(&log->q_mu);
    pthread_mutex_lock(&log->head_mu);
    log->stats.requests += nreq;
    pthread_mutex_unlock(&log->head_mu);
    run_batch(log, first);
  }
  return NULL;
}

int psl__log_writer_start(psl_log_t *log) {
  int err = psl__writer_new(&log->writer);
  if (err)
    return err;
  int e = pthread_create(&log->writer_thread, NULL, writer_main, log);
  if (e) {
    psl__writer_free(log->writer);
    log->writer = NULL;
    return psl_err_from_errno(e);
  }
  pthread_setname_np(log->writer_thread, "psl-log-writer"); /* for top -H, perf, gdb */
  log->writer_started = 1;
  return 0;
}

void psl__log_writer_stop(psl_log_t *log) {
  pthread_mutex_lock(&log->q_mu);
  log->closing = 1;
  pthread_cond_signal(&log->q_cond);
  pthread_mutex_unlock(&log->q_mu);
  if (log->writer_started)
    pthread_join(log->writer_thread, NULL);
  log->writer_started = 0;
  psl__writer_free(log->writer);
  log->writer = NULL;
}

int psl_log_submit(psl_log_t *log, psl_append_req_t *req) {
  req->next_ = NULL;
  req->err = 0;
  req->bytes_ = 0;
  for (size_t i = 0; i < req->n; i++) {
    const psl_event_t *ev = &req->events[i];
    req->bytes_ += ev->data.len + ev->pii.len + ev->stream.len + ev->type.len + ev->by.len +
                   ev->dev.len + PSL__EVENT_OVERHEAD;
  }
  pthread_mutex_lock(&log->q_mu);
  if (log->closing || !log->writer_started) {
    pthread_mutex_unlock(&log->q_mu);
    return PSL_ECLOSED;
  }
  if (log->q_last)
    log->q_last->next_ = req;
  else
    log->q_first = req;
  log->q_last = req;
  pthread_cond_signal(&log->q_cond);
  pthread_mutex_unlock(&log->q_mu);
  return 0;
}

/* psl_log_append: a request on the caller's stack and a flag the writer raises.  (The
 * server does not block: it submits and is called back.  One condition variable per waiter
 * measured a little better with 64 blocking threads on 2 cores than one broadcast to all of
 * them, whose herd then fights over one mutex.) */
typedef struct {
  psl_append_req_t req; /* first: done's pointer is the struct's */
  pthread_mutex_t mu;
  pthread_cond_t cond;
  int finished;
} sync_req_t;

static void sync_done(psl_append_req_t *req) {
  sync_req_t *s = (sync_req_t *)req;
  pthread_mutex_lock(&s->mu);
  s->finished = 1;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->mu);
}

int psl_log_append(psl_log_t *log, psl_event_t *events, size_t n, psl_push_result_t *results) {
  sync_req_t s;
  memset(&s, 0, sizeof s);
  s.req.events = events;
  s.req.n = n;
  s.req.results = results;
  s.req.done = sync_done;
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cond, NULL);
  int err = psl_log_submit(log, &s.req);
  if (err == 0) {
    pthread_mutex_lock(&s.mu);
    while (!s.finished)
      pthread_cond_wait(&s.cond, &s.mu);
    pthread_mutex_unlock(&s.mu);
    err = s.req.err;
  }
  pthread_cond_destroy(&s.cond);
  pthread_mutex_destroy(&s.mu);
  return err;
}
