/*
 * log_int.h — what the files of the event log share (log.c, log_write.c, log_read.c,
 * log_verify.c).  Not an API: server/psl_log.h is.  server/log.c documents the on-disk format.
 */
#ifndef PSL_LOG_INT_H
#define PSL_LOG_INT_H

#include <pthread.h>
#include <stdint.h>

#include <lmdb.h>

#include "psl_log.h"

/* Default initial map: 64 MiB holds ~150,000 events of 300 bytes with their indexes; the map
 * then doubles as needed, so a small start costs a few remaps, never data. */
#define PSL__LOG_MAP_DEFAULT ((size_t)64 << 20)
/* Default largest write transaction, in events: 8192 is two requests of the batched shape
 * (4,096 events), and a commit of it takes ~15 ms here, which bounds the wait behind it. */
#define PSL__LOG_BATCH_DEFAULT 8192u
/* Event bytes (data, pii and the rest) one write transaction takes, across requests: LMDB
 * refuses a transaction that dirties more than 128 Ki pages (512 MiB); with the indexes a
 * batch dirties ~1.5 times its event bytes, so 64 MiB stays far below, and still holds
 * ~200,000 events of 300 bytes. */
#define PSL__LOG_BATCH_BYTES ((size_t)64 << 20)
/* What an event adds to its data and pii in the canonical form, at most: the keys, the
 * strings' headers, the integers, the id. */
#define PSL__EVENT_OVERHEAD 128u
/* Concurrent read transactions: LMDB's default is 126; the server's subscribers, projections
 * and HTTP handlers each hold one only for a short read, but hundreds of catch-ups may run at
 * once on a busy morning.  Each slot costs 64 bytes of the lock file. */
#define PSL__LOG_MAX_READERS 512u
/* Named databases: the log's 5 plus room for the projections' own (psl_log_hooks_t). */
#define PSL__LOG_MAX_DBS 32u
/* Event bytes the writer's open transaction gathers before it is committed whatever its age:
 * half of PSL__LOG_BATCH_BYTES's reasoning (LMDB's 128 Ki dirty pages), so that one more
 * batch of the largest size still fits. */
#define PSL__LOG_OPEN_BYTES ((size_t)32 << 20)
/* A batch of at least this many event bytes is made durable by committing LMDB, not through
 * the journal: its commit's cost is shared by enough events, and the journal would only
 * write every byte twice (measured: 4,096-event batches, ~1.4 MB, lost a third of their
 * rate through the journal).  256 KiB is ~750 events of 300 bytes. */
#define PSL__LOG_DIRECT_BYTES ((size_t)256 << 10)

/* Key and value widths of the on-disk format (log.c). */
#define PSL__SEQ_BYTES 8
#define PSL__REC_HASH PSL_HASH_BYTES /* an events value starts with the chain hash */



typedef struct psl__journal_s psl__journal_t;
typedef struct psl__overlay_s psl__overlay_t;

struct psl_log_s {
  MDB_env *env;
  MDB_dbi db_events, db_ids, db_streams, db_terr, db_meta;
  int read_only;
  char id[PSL_UUID_STR + 1];
  size_t map_size_max; /* 0: no limit */
  size_t max_batch;
  psl_log_hooks_t hooks;
  psl_log_sealer_t sealer;

  /* Held shared by every transaction of this process (read or write: psl__log_txn_begin),
   * exclusively only to change the map size, which LMDB allows only while no transaction of
   * the process is open.  Writer-preferring, so that a stream of readers cannot starve a
   * resize. */
  pthread_rwlock_t map_lock;

  /* Committed head, published by the writer after each successful commit, and counters. */
  pthread_mutex_t head_mu;
  uint64_t head;
  uint8_t head_hash[PSL_HASH_BYTES];
  char path[4096]; /* DIR/log */
  uint64_t answered; /* last seq answered (durable in the journal or LMDB) */
  uint8_t answered_hash[PSL_HASH_BYTES];
  int stalled;       /* answered events the writer cannot make readable yet (disk full) */
  psl_log_stats_t stats;

  /* Submission queue (writer.c): FIFO of requests linked by next_. */
  pthread_mutex_t q_mu;
  pthread_cond_t q_cond;
  psl_append_req_t *q_first, *q_last;
  int closing;
  int commit_soon; /* psl_log_commit_soon: commit the open transaction at once */
  int writer_started;
  pthread_t writer_thread;
  void (*on_commit)(void *arg, uint64_t head);
  void *on_commit_arg;
  int writer_failed; /* sticky: the env reported MDB_PANIC; every batch fails */
  struct psl__writer_s *writer; /* the writer thread's own state (log_apply.c) */
  unsigned visible_ms;          /* psl_log_opts_t.visible_ms, or the default */

  /* Writable logs only (NULL read-only): the journal (log_journal.c) and the streams it
   * answers for until the open transaction commits (log_overlay.c). */
  psl__journal_t *journal;
  psl__overlay_t *overlay;
};

/* ---- log.c */

static inline void psl__be64_put(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static inline uint64_t psl__be64_get(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

/* Begin a transaction (flags: 0 or MDB_RDONLY) holding map_lock shared; handles
 * MDB_MAP_RESIZED (another process grew the map) by adopting the new size and retrying.
 * Returns an LMDB code; on success the caller ends with psl__log_txn_end. */
int psl__log_txn_begin(psl_log_t *log, unsigned flags, MDB_txn **txn);
/* Commit (commit != 0) or abort txn, then release map_lock.  Returns the commit's LMDB code. */
int psl__log_txn_end(psl_log_t *log, MDB_txn *txn, int commit);

/* Set the map to `size` bytes (0: adopt the size another process set) while no transaction
 * of this process is open.  Returns an LMDB code. */
int psl__log_set_mapsize(psl_log_t *log, size_t size);

/* The meta "head" value in txn: seq and hash (zeros for an empty log).  LMDB code. */
int psl__log_meta_head(psl_log_t *log, MDB_txn *txn, uint64_t *seq, uint8_t hash[PSL_HASH_BYTES]);

/* Translate an LMDB or errno code met while writing: a full disk or file-size limit is
 * PSL_EUNAVAILABLE (the client may retry later), as is a full map. */
int psl__log_write_err(int rc);

/* Current version of a stream (0: none) with a cursor on `streams`.  LMDB code. */
int psl__stream_version(MDB_cursor *c, const char *stream, size_t len, uint64_t *ver);

/* ---- log_journal.c: one frame per answered batch, fsync'd before the answer. */

/* read_only: for tools (PSL_ENOTFOUND when there is no journal), never written. */
int psl__journal_open(psl__journal_t **out, const char *logdir, int read_only);
void psl__journal_close(psl__journal_t *j); /* accepts NULL */
/* fn for each record of the journal's round, in seq order; record = hash ‖ canonical. */
typedef int (*psl__journal_fn)(void *arg, uint64_t seq, const uint8_t *rec, size_t len);
/* written != 0: only the frames this process wrote in the current round (the writer, after
 * it lost its open transaction); 0: whatever the file holds (at open), after which the next
 * frame starts a new round at offset 0.  Returns 0, fn's error, PSL_ENOMEM. */
int psl__journal_scan(psl__journal_t *j, int written, psl__journal_fn fn, void *arg);
/* Gather a frame: begin, add each stored record in seq order, sync (write it and fdatasync;
 * nothing to do when empty).  sync's error: PSL_EUNAVAILABLE (disk full), PSL_EIO, ...
 * gather = 0: only count the records (a batch that LMDB's commit makes durable instead). */
void psl__journal_begin(psl__journal_t *j, int gather);
int psl__journal_add(psl__journal_t *j, uint64_t seq, const uint8_t *rec, size_t len);
int psl__journal_sync(psl__journal_t *j);
/* Take back the frame the last sync wrote (its batch could not be answered after all). */
void psl__journal_unsync(psl__journal_t *j);
uint32_t psl__journal_count(const psl__journal_t *j);
/* The gathered records in order: *off starts at 0; NULL after the last. */
const uint8_t *psl__journal_record(const psl__journal_t *j, size_t *off, size_t *len);
/* Everything written is now in LMDB, durably: the next frame starts a new round at 0. */
void psl__journal_reset(psl__journal_t *j);

/* ---- log_overlay.c: answered streams not yet readable from LMDB. */

int psl__overlay_new(psl__overlay_t **out);
void psl__overlay_free(psl__overlay_t *o); /* accepts NULL */
/* Writer only.  0 or PSL_ENOMEM. */
int psl__overlay_put(psl__overlay_t *o, const char *name, size_t len, uint64_t ver, uint64_t seq,
                     const uint8_t *rec, size_t rec_len);
void psl__overlay_clear(psl__overlay_t *o);
/* 1 with *ver (may be NULL) and fn called on its last record (fn may be NULL, called under
 * the overlay's lock) when the overlay holds the stream, else 0. */
int psl__overlay_get(psl__overlay_t *o, const char *name, size_t len, uint64_t *ver,
                     psl_record_fn fn, void *arg);

/* ---- log_replay.c: the journal's records past the head, applied again in txn. */

/* at_open: scan the whole file (psl__journal_scan written = 0), else the frames written this
 * round.  0 with *head, hash the new head and *replayed the count; or PSL_ECORRUPT, or an
 * error with *mdb_rc the LMDB code (MDB_MAP_FULL: grow the map and run it again). */
int psl__log_replay(psl_log_t *log, MDB_txn *txn, int at_open, int *mdb_rc, uint64_t *head,
                    uint8_t hash[PSL_HASH_BYTES], uint64_t *replayed);

/* ---- log_write.c: the writer thread and its queue. */

int psl__log_writer_start(psl_log_t *log);
void psl__log_writer_stop(psl_log_t *log);

/* ---- log_apply.c: one batch's transaction. */

typedef struct psl__writer_s psl__writer_t;
int psl__writer_new(psl__writer_t **out);
void psl__writer_free(psl__writer_t *w); /* accepts NULL */
/* Forget the cached stream versions (after a failed batch: they may never have been
 * committed). */
void psl__writer_forget(psl__writer_t *w);
/* Apply the batch's events in the write transaction txn (not committed here), adding each
 * stored record to the journal's frame (psl__journal_begin was called).  0 with *head and
 * hash the new head, or a PSL_E* with *mdb_rc the LMDB code that failed it (MDB_MAP_FULL:
 * grow the map and try again): then txn must be aborted.  Results and event stamps are
 * written as it goes: on failure the caller must treat them as void. */
int psl__batch_apply(psl_log_t *log, psl__writer_t *w, MDB_txn *txn, psl_append_req_t *first,
                     int *mdb_rc, uint64_t *head, uint8_t hash[PSL_HASH_BYTES]);
/* FNV-1a of a stream name: the writer's cache, the batch index, the overlay. */
uint64_t psl__stream_hash(const char *p, size_t n);

/* ---- log_index.c: a batch's `streams` and `terr` entries, written at its end. */

typedef struct psl__bindex_s psl__bindex_t;
int psl__bindex_new(psl__bindex_t **out);
void psl__bindex_free(psl__bindex_t *x); /* accepts NULL */
void psl__bindex_reset(psl__bindex_t *x);
/* 1 and *ver when this batch stored an event of the stream (h: its name's hash), else 0. */
int psl__bindex_stream_ver(psl__bindex_t *x, const char *name, size_t len, uint64_t h,
                           uint64_t *ver);
/* Gather a stored event's entries.  0 or PSL_ENOMEM. */
int psl__bindex_add(psl__bindex_t *x, const psl_event_t *ev, uint64_t stream_h);
/* Write the gathered entries into `streams` and `terr`.  An LMDB code. */
int psl__bindex_flush(psl__bindex_t *x, MDB_cursor *streams, MDB_cursor *terr);

/* ---- log_chain.c: the chain hasher thread, for large batches.
 * The writer: psl__chain_begin(prev) for a batch; per event, psl__chain_slot() gives the
 * buffer to fill with 32 free bytes ‖ canonical (only when !psl__chain_full), then
 * psl__chain_publish(tag); psl__chain_next() returns finished records in order (wait: block
 * until the next is hashed; NULL when none is in flight, or none finished and !wait), each
 * valid until the next psl__chain_slot; psl__chain_drain() waits for the hasher to be idle
 * and discards what was not taken. */

typedef struct psl__chain_s psl__chain_t;
int psl__chain_start(psl__chain_t **out);
void psl__chain_stop(psl__chain_t *c); /* accepts NULL */
void psl__chain_begin(psl__chain_t *c, const uint8_t prev[PSL_HASH_BYTES]);
int psl__chain_full(const psl__chain_t *c);
psl_buf_t *psl__chain_slot(psl__chain_t *c);
void psl__chain_publish(psl__chain_t *c, void *tag);
psl_buf_t *psl__chain_next(psl__chain_t *c, int wait, void **tag);
void psl__chain_drain(psl__chain_t *c);

#endif /* PSL_LOG_INT_H */
