/*
 * log_write.c — the log's one writer thread, its group commit and its open transaction.
 *
 * Producers (any thread) link requests into a FIFO under q_mu and signal q_cond
 * (psl_log_submit): nothing they do waits for the disk.  The writer takes every pending
 * request, up to max_batch events but never splitting a request, and for that batch:
 *
 *   applies it in the OPEN write transaction (log_apply.c), which stays open across batches;
 *   the sealer's prepare (the keys the sealed records rely on are made durable);
 *   writes the batch's records to the journal as one frame and fdatasyncs it (log_journal.c);
 *   publishes each stream it wrote to the overlay (log_overlay.c), then completes each
 *   request (`done`, on this thread): what it answers is durable.
 *
 * The open transaction is committed (LMDB's durable commit: two fsyncs) when it is
 * visible_ms old, when it holds PSL__LOG_OPEN_BYTES, when a request asked to wait until its
 * events are readable (psl_log_append), or at close.  Only then are the events readable
 * (psl_log_read), the head published, on_commit called, the overlay emptied and the journal
 * started again.  So an fsync of a few hundred bytes is shared by everything that arrived
 * while the previous one ran, and LMDB's page writes by everything of visible_ms.  A large
 * batch (PSL__LOG_DIRECT_BYTES) skips the journal: LMDB's commit makes it durable before the
 * answer, as the journal would at twice the bytes written.
 *
 * Failures.  A batch that fails (a full map, a hook's error, a journal that cannot be
 * written) aborts the open transaction, which also held batches already answered: those are
 * in the journal, and the next transaction applies them again first (log_replay.c) — the
 * overlay keeps answering for them meanwhile.  MDB_MAP_FULL: abort, double the map (capped by
 * map_size_max) under the exclusive map_lock, replay, and run the batch again.  At the cap,
 * or on a full disk, every request of the batch fails with PSL_EUNAVAILABLE (PSL_EIO for
 * other write errors) and nothing of it is stored; reads go on, and later batches try again.
 * A failed commit of the open transaction loses nothing answered either: replayed the same
 * way.
 */
#include "log_int.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

/* The writer's open transaction. */
typedef struct {
  MDB_txn *txn;     /* NULL when none is open */
  uint64_t began;   /* monotonic ms at its first batch */
  size_t bytes;     /* event bytes it holds */
  uint64_t head;    /* the head inside it: the last answered event */
  uint8_t hash[PSL_HASH_BYTES];
  int need_replay;  /* a transaction holding answered batches was lost: replay first */
  uint64_t retry_at; /* monotonic ms: next replay attempt while no batch comes */
} open_txn_t;

/* While a lost transaction's answered batches cannot be applied again (a full disk), the
 * writer tries again this often even when no batch comes, so that they become readable as
 * soon as space returns. */
#define REPLAY_RETRY_MS 1000u

static const open_txn_t OT_ZERO;

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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

static void complete(psl_append_req_t *first, int err) {
  for (psl_append_req_t *r = first, *next; r; r = next) {
    next = r->next_; /* done may free r */
    r->next_ = NULL;
    r->err = err;
    if (r->done)
      r->done(r);
  }
}

/* The open transaction is gone (aborted after a failed batch, or its commit failed): what it
 * held that was answered is in the journal, and the next one applies it again first. */
static void lost_open(psl_log_t *log, open_txn_t *ot) {
  ot->txn = NULL;
  ot->need_replay = ot->head != psl_log_head(log, NULL);
  ot->retry_at = mono_ms(); /* at once, even if no batch comes */
}

/* Whether readers should wait for the answered events to become readable: not while the
 * writer cannot commit them (psl_log_answered then gives the readable head). */
static void set_stalled(psl_log_t *log, int stalled) {
  pthread_mutex_lock(&log->head_mu);
  log->stalled = stalled;
  pthread_mutex_unlock(&log->head_mu);
}

static void abort_open(psl_log_t *log, open_txn_t *ot) {
  if (!ot->txn)
    return;
  psl__log_txn_end(log, ot->txn, 0);
  lost_open(log, ot);
}

/* Commit the open transaction: its events become readable, the overlay and the journal start
 * again.  Returns the LMDB code; on failure the transaction is lost (lost_open). */
static int commit_open(psl_log_t *log, open_txn_t *ot) {
  if (!ot->txn)
    return 0;
  int rc = psl__log_txn_end(log, ot->txn, 1);
  if (rc) {
    if (rc == MDB_PANIC)
      log->writer_failed = 1;
    lost_open(log, ot);
    return rc;
  }
  ot->txn = NULL;
  uint64_t head = 0;
  pthread_mutex_lock(&log->head_mu);
  if (ot->head != log->head)
    head = ot->head;
  log->head = ot->head;
  memcpy(log->head_hash, ot->hash, PSL_HASH_BYTES);
  log->stats.lmdb_commits++;
  log->stalled = 0;
  pthread_mutex_unlock(&log->head_mu);
  psl__overlay_clear(log->overlay); /* after the head: LMDB now answers for them */
  psl__journal_reset(log->journal);
  if (head) {
    void (*on_commit)(void *, uint64_t);
    void *arg;
    pthread_mutex_lock(&log->q_mu);
    on_commit = log->on_commit;
    arg = log->on_commit_arg;
    pthread_mutex_unlock(&log->q_mu);
    if (on_commit)
      on_commit(arg, head);
  }
  return 0;
}

/* Open a transaction for the next batch.  After a lost one, its answered batches are applied
 * again and committed first: until LMDB takes them, nothing new is answered (so a full disk
 * refuses appends instead of growing the journal).  0, or a PSL_E* with *mdb_rc
 * (MDB_MAP_FULL: grow and try again). */
static int begin_open(psl_log_t *log, open_txn_t *ot, int *mdb_rc) {
  int rc, err;
  *mdb_rc = 0;
  if (ot->txn)
    return 0;
  for (int round = 0; round < 2; round++) {
    if ((rc = psl__log_txn_begin(log, 0, &ot->txn)) != 0) {
      ot->txn = NULL;
      *mdb_rc = rc;
      return psl__log_write_err(rc);
    }
    ot->began = mono_ms();
    ot->bytes = 0;
    if (!ot->need_replay)
      return 0;
    uint64_t n;
    if ((err = psl__log_replay(log, ot->txn, 0, mdb_rc, &ot->head, ot->hash, &n)) != 0) {
      psl__log_txn_end(log, ot->txn, 0);
      ot->txn = NULL;
      ot->retry_at = mono_ms() + REPLAY_RETRY_MS;
      set_stalled(log, 1);
      return err;
    }
    if ((rc = commit_open(log, ot)) != 0) {
      ot->retry_at = mono_ms() + REPLAY_RETRY_MS;
      set_stalled(log, 1);
      *mdb_rc = rc;
      return psl__log_write_err(rc);
    }
    ot->need_replay = 0;
  }
  return 0;
}

/* After the journal's fsync: each stream the batch stored, as the overlay must now answer. */
static int publish(psl_log_t *log, psl_append_req_t *first) {
  size_t off = 0, len;
  for (psl_append_req_t *r = first; r; r = r->next_)
    for (size_t i = 0; i < r->n; i++) {
      const psl_push_result_t *res = &r->results[i];
      if (res->err || res->dup)
        continue;
      const uint8_t *rec = psl__journal_record(log->journal, &off, &len);
      const psl_event_t *ev = &r->events[i];
      if (!rec)
        return PSL_EINTERNAL;
      int err = psl__overlay_put(log->overlay, ev->stream.ptr, ev->stream.len, ev->ver, ev->seq,
                                 rec, len);
      if (err)
        return err;
    }
  return 0;
}

/* Apply the batch in the open transaction and, unless `direct` (the caller commits LMDB
 * instead), make it durable in the journal.  0, or a PSL_E* after which nothing of the batch
 * is stored (the transaction was aborted). */
static int journal_batch(psl_log_t *log, open_txn_t *ot, psl_append_req_t *first, int direct,
                         uint64_t *seq, uint8_t hash[PSL_HASH_BYTES]) {
  int err, mdb_rc;
  for (;;) {
    if (log->writer_failed)
      return PSL_EUNAVAILABLE;
    if ((err = begin_open(log, ot, &mdb_rc)) == 0) {
      psl__journal_begin(log->journal, !direct);
      err = psl__batch_apply(log, log->writer, ot->txn, first, &mdb_rc, seq, hash);
      if (!err && psl__journal_count(log->journal) && log->sealer.prepare)
        err = log->sealer.prepare(log->sealer.arg);
      if (!err)
        err = psl__journal_sync(log->journal);
      if (err == 0)
        return 0;
      if (log->sealer.aborted)
        log->sealer.aborted(log->sealer.arg);
      psl__writer_forget(log->writer); /* its cache may hold the aborted versions */
      abort_open(log, ot);
    }
    if (mdb_rc == MDB_PANIC)
      log->writer_failed = 1; /* LMDB refuses every later transaction of this env */
    if (mdb_rc != MDB_MAP_FULL)
      return err;
    if ((err = grow_map(log)) != 0)
      return err;
  }
}

/* Apply, journal and answer one batch (a NULL-terminated list). */
static void run_batch(psl_log_t *log, open_txn_t *ot, psl_append_req_t *first) {
  uint64_t seq = 0, prev = ot->head;
  uint8_t hash[PSL_HASH_BYTES];
  int visible = 0, err;
  size_t bytes = 0;
  for (psl_append_req_t *r = first; r; r = r->next_) {
    visible |= r->visible;
    bytes += r->bytes_;
  }
  int direct = bytes >= PSL__LOG_DIRECT_BYTES;
  uint32_t stored = 0;
  for (;;) {
    err = journal_batch(log, ot, first, direct, &seq, hash);
    stored = err ? 0 : psl__journal_count(log->journal);
    if (err)
      break;
    ot->head = seq;
    memcpy(ot->hash, hash, PSL_HASH_BYTES);
    ot->bytes += bytes;
    /* Out of memory for the overlay: answers must not get ahead of what version checks see,
     * so make everything readable now. */
    if (!visible && !direct && publish(log, first) == 0)
      break;
    int rc = commit_open(log, ot);
    if (rc == 0)
      break;
    /* Not answered yet: take the frame back; the answered batches are replayed. */
    if (!direct)
      psl__journal_unsync(log->journal);
    ot->head = prev;
    ot->need_replay = prev != psl_log_head(log, NULL);
    psl__writer_forget(log->writer);
    /* LMDB's commit may itself fill the map (it writes its free-page list): grow, and run
     * the batch again, as for a full map met while applying. */
    if (rc != MDB_MAP_FULL || grow_map(log) != 0) {
      err = psl__log_write_err(rc);
      break;
    }
    if (log->sealer.aborted)
      log->sealer.aborted(log->sealer.arg);
  }
  if (err && stored && log->sealer.aborted)
    log->sealer.aborted(log->sealer.arg);
  else if (!err && stored && log->sealer.committed)
    log->sealer.committed(log->sealer.arg);
  pthread_mutex_lock(&log->head_mu);
  if (err) {
    log->stats.failed_batches++;
  } else if (stored) {
    log->stats.commits++;
    log->stats.events += stored;
    log->answered = seq;
    memcpy(log->answered_hash, hash, PSL_HASH_BYTES);
  }
  pthread_mutex_unlock(&log->head_mu);
  if (err)
    unstamp(first);
  complete(first, err);
  pthread_mutex_lock(&log->q_mu);
  int soon = log->commit_soon;
  log->commit_soon = 0;
  pthread_mutex_unlock(&log->q_mu);
  if (ot->txn && (soon || ot->bytes >= PSL__LOG_OPEN_BYTES ||
                  mono_ms() - ot->began >= log->visible_ms))
    commit_open(log, ot);
}

static void *writer_main(void *arg) {
  psl_log_t *log = arg;
  open_txn_t ot = OT_ZERO;
  ot.head = psl_log_head(log, ot.hash);
  for (;;) {
    pthread_mutex_lock(&log->q_mu);
    while (!log->q_first && !log->closing) {
      if (!ot.txn && !ot.need_replay) {
        log->commit_soon = 0; /* nothing to commit */
        pthread_cond_wait(&log->q_cond, &log->q_mu);
        continue;
      }
      uint64_t due = ot.txn ? ot.began + log->visible_ms : ot.retry_at, now = mono_ms();
      if (now >= due || (ot.txn && log->commit_soon))
        break;
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      uint64_t ns = (uint64_t)ts.tv_nsec + (due - now) * 1000000u;
      ts.tv_sec += (time_t)(ns / 1000000000u);
      ts.tv_nsec = (long)(ns % 1000000000u);
      pthread_cond_timedwait(&log->q_cond, &log->q_mu, &ts);
    }
    psl_append_req_t *first = log->q_first, *last = first;
    if (!first) { /* the open transaction is due or asked for, or closing and drained */
      int closing = log->closing, mdb_rc;
      log->commit_soon = 0;
      pthread_mutex_unlock(&log->q_mu);
      if (!ot.txn && ot.need_replay && begin_open(log, &ot, &mdb_rc) != 0 &&
          mdb_rc == MDB_MAP_FULL && grow_map(log) == 0)
        ot.retry_at = mono_ms(); /* grown: again at once */
      /* A failure is replayed by the next batch, the retry above, or the next open. */
      commit_open(log, &ot);
      if (closing)
        break;
      continue;
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
    run_batch(log, &ot, first);
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

static int append_wait(psl_log_t *log, psl_event_t *events, size_t n,
                       psl_push_result_t *results, int visible) {
  sync_req_t s;
  memset(&s, 0, sizeof s);
  s.req.events = events;
  s.req.n = n;
  s.req.results = results;
  s.req.visible = visible;
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

int psl_log_append(psl_log_t *log, psl_event_t *events, size_t n, psl_push_result_t *results) {
  return append_wait(log, events, n, results, 1);
}

int psl_log_append_durable(psl_log_t *log, psl_event_t *events, size_t n,
                           psl_push_result_t *results) {
  return append_wait(log, events, n, results, 0);
}

int psl_log_flush(psl_log_t *log) { return append_wait(log, NULL, 0, NULL, 1); }
