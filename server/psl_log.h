/*
 * psl_log.h — the append-only event log in LMDB, with a group-commit writer thread.
 *
 * One LMDB environment per data folder (DIR/log/).  server/log.c documents its key layouts
 * and record format at the top.  Summary:
 *   events  seq (8 bytes big-endian) → hash (32) ‖ canonical stored event (psl_proto.h)
 *   ids     event id (16)            → seq (8 BE) ‖ ver (8 BE)      kept forever
 *   streams stream ‖ 0x00 ‖ ver (8 BE) → seq (8 BE)
 *   terr    terr → seq (8 BE), MDB_DUPSORT|MDB_DUPFIXED
 *   meta    "log_id" → 36-char uuid; "head" → seq (8 BE) ‖ hash (32); "format" → 1
 *
 * Writes: producers on any thread hand psl_append_req_t to psl_log_submit(), which never
 * blocks on I/O.  One writer thread takes every pending request, applies their events in one
 * write transaction, commits it durably (fsync), and only then completes each request with its
 * `done` callback (called on the writer thread).  Nothing is reported stored before its
 * commit.
 *
 * Reads: short read transactions, one per call, safe from any thread (MDB_NOTLS).  They never
 * wait for the writer.
 *
 * Threads: every function is thread-safe unless it says otherwise.
 */
#ifndef PSL_LOG_H
#define PSL_LOG_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "psl_proto.h"

typedef struct psl_log_s psl_log_t;

/* Work done inside the writer's transaction, so that what it stores (projections, indexes of
 * later issues) is committed atomically with the events and survives any crash with them. */
typedef struct {
  /* Called once at open, inside a write transaction: open the databases the hook keeps in
   * the same environment (mdb_dbi_open with MDB_CREATE).  The env has room for 32 named
   * databases. */
  int (*open)(void *arg, MDB_env *env, MDB_txn *txn);
  /* Called for each event stored (not for dups or refused events), in seq order, inside the
   * write transaction, with seq, ver, rec and hash stamped.  Returns 0 or PSL_E*: an error
   * aborts the whole transaction and fails every request of the batch with it. */
  int (*apply)(void *arg, MDB_txn *txn, const psl_event_t *ev);
  void *arg;
} psl_log_hooks_t;

typedef struct {
  /* Initial LMDB map size in bytes (0: 64 MiB).  The map grows by itself when full. */
  size_t map_size;
  /* Largest map size in bytes (0: no limit but the disk).  Past it appends answer
   * PSL_EUNAVAILABLE while reads go on. */
  size_t map_size_max;
  /* Largest number of events one write transaction takes (0: 8192).  Bounds how long one
   * commit holds the writer, and so the latency of the requests behind it. */
  size_t max_batch;
  /* Optional; copied at open. */
  psl_log_hooks_t hooks;
} psl_log_opts_t;

/* Open (creating if needed) the log in dir/log/ and start its writer thread.
 * opts may be NULL.  Returns 0, PSL_EIO, PSL_ECORRUPT, PSL_ENOMEM, ... */
int psl_log_open(psl_log_t **out, const char *dir, const psl_log_opts_t *opts);

/* Stop the writer after it has committed and completed every request already submitted,
 * then close.  Accepts NULL.  No other call may be running or made afterwards. */
void psl_log_close(psl_log_t *log);

/* The log's id: 36-character uuid made once at creation; static for the log's life. */
const char *psl_log_id(const psl_log_t *log);

/* Last committed seq and its chain hash (hash may be NULL). */
uint64_t psl_log_head(psl_log_t *log, uint8_t hash[PSL_HASH_BYTES]);

/* ---- Appending. */

typedef struct psl_append_req_s psl_append_req_t;

struct psl_append_req_s {
  /* In: the new events, in order.  The caller stamps by and dev; the writer stamps seq, ver,
   * rec and hash into each event.  Owned by the caller until `done`. */
  psl_event_t *events;
  size_t n;
  /* Out: one result per event (caller-owned array of n). */
  psl_push_result_t *results;
  /* Out: 0, or a whole-request failure (PSL_EUNAVAILABLE: map or disk full; PSL_EIO;
   * PSL_ECLOSED: the log is closing) in which case no event of the request was stored. */
  int err;
  /* Called once on the writer thread after the commit (or failure).  May free req. */
  void (*done)(psl_append_req_t *req);
  void *data; /* the caller's */
  psl_append_req_t *next_; /* internal */
};

/* Queue req for the writer.  Never blocks on I/O.  Returns 0, or PSL_ECLOSED when the log
 * is closing (done is then not called). */
int psl_log_submit(psl_log_t *log, psl_append_req_t *req);

/* Blocking convenience for tools, tests and benchmarks: submit and wait for the commit.
 * Returns req.err. */
int psl_log_append(psl_log_t *log, psl_event_t *events, size_t n, psl_push_result_t *results);

/* Called on the writer thread after each successful commit, with the new head.
 * Set before the first submit.  The server uses it to wake its loop (uv_async_send). */
void psl_log_on_commit(psl_log_t *log, void (*fn)(void *arg, uint64_t head), void *arg);

/* ---- Reading.  Records are hash (32) ‖ canonical; the pointer is valid only during fn. */

/* Return nonzero from fn to stop the scan early (the record is counted as delivered). */
typedef int (*psl_record_fn)(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                             size_t len);

typedef struct {
  const psl_str_t *terr; /* NULL/0: every territory */
  size_t nterr;
  const psl_str_t *streams; /* NULL/0: every stream */
  size_t nstreams;
} psl_filter_t;

/* Deliver, in seq order, the events after `after` that the filter selects, until max_bytes of
 * canonical bytes have been delivered (at least one event is), max_events (0: no limit),
 * or the head as of the read.  *last is set to the last seq this read covered: the seq of
 * the last event delivered, or the head at the read when the selection was exhausted (so a
 * filtered reader advances over events it does not see).  Territory filters read the
 * territory index, stream filters the stream index: never the whole log.  f may be NULL. */
int psl_log_read(psl_log_t *log, uint64_t after, const psl_filter_t *f, size_t max_bytes,
                 size_t max_events, psl_record_fn fn, void *arg, uint64_t *last);

/* One event by seq.  PSL_ENOTFOUND if seq is 0 or past the head. */
int psl_log_get(psl_log_t *log, uint64_t seq, psl_record_fn fn, void *arg);

/* Current version of a stream (0 if it does not exist). */
int psl_log_stream_version(psl_log_t *log, const char *stream, size_t len, uint64_t *ver);

/* Run fn inside one short read transaction of the log's environment (for hooks' databases:
 * projections read their own state this way).  Returns fn's result. */
int psl_log_with_read_txn(psl_log_t *log, int (*fn)(void *arg, MDB_txn *txn), void *arg);

/* Walk the whole chain: recompute every hash from seq 1 and compare with the stored one and
 * the head.  Returns 0, or PSL_ECORRUPT with *bad_seq the first seq that does not verify.
 * progress (may be NULL) is called now and then with the seq reached. */
int psl_log_verify(psl_log_t *log, uint64_t *bad_seq,
                   void (*progress)(void *arg, uint64_t seq, uint64_t head), void *arg);

#endif /* PSL_LOG_H */
