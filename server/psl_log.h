/*
 * psl_log.h — the append-only event log in LMDB, with a group-commit writer thread.
 *
 * One LMDB environment per data folder (DIR/log/).  server/log.c documents its key layouts
 * and record format at the top.  Summary:
 *   events  seq (8 bytes big-endian) → hash (32) ‖ canonical stored event (psl_proto.h)
 *   ids     event id (16)            → seq (8 BE) ‖ ver (8 BE)      kept forever
 *   streams stream → seq (8 BE), MDB_DUPSORT|MDB_DUPFIXED; the n-th seq is version n
 *   terr    terr → seq (8 BE), MDB_DUPSORT|MDB_DUPFIXED
 *   meta    "log_id" → 36-char uuid; "head" → seq (8 BE) ‖ hash (32); "format" → 1
 *
 * Writes: producers on any thread hand psl_append_req_t to psl_log_submit(), which never
 * blocks on I/O.  One writer thread takes every pending request, applies their events in its
 * open write transaction, writes their records to the journal (DIR/log/journal) and
 * fdatasyncs it, and only then completes each request with its `done` callback (called on the
 * writer thread): nothing is reported stored before it is durable.  The open transaction is
 * committed (LMDB's own durable commit) every visible_ms or so; from then on the events are
 * readable.  Between the two, a crash loses nothing: psl_log_open applies the journal again.
 * A second thread hashes the chain of large batches alongside the writer.
 *
 * Reads: short read transactions, one per call, safe from any thread (MDB_NOTLS).  They never
 * wait for the writer.  They see what the writer last committed: an answered event becomes
 * readable within visible_ms (psl_log_append and psl_log_flush wait for it).  Only
 * psl_log_stream_version and psl_log_stream_last also see what is answered and not yet
 * committed, so that a check made just after an answer sees it.
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
   * aborts the whole transaction and fails every request of the batch with it.  In a large
   * batch it may run after later events of the batch were indexed: it must read and write
   * only its own databases, through txn, and never call into the log.  A transaction that
   * was aborted (the map was full and grew) is run again: the same events are applied again
   * in the new one, so keep state in the databases, not in memory. */
  int (*apply)(void *arg, MDB_txn *txn, const psl_event_t *ev);
  void *arg;
} psl_log_hooks_t;

/* What the writer stores in place of an event's `pii` (the server encrypts it: server/keys.c).
 * Called on the writer thread, around the batch's write transaction; every member may be
 * NULL.  The apply hook above still sees `pii` as submitted; only the stored (canonical)
 * bytes, and so the chain, carry the sealed form.
 *
 *   for each attempt at a batch:  seal (each event to be stored, in seq order)
 *                                 then prepare, just before the log's commit
 *                                 then committed (the log committed) or aborted (it did not:
 *                                 a refused prepare, a failed commit, a full map that grows
 *                                 and runs the batch again — which seals again from scratch) */
typedef struct {
  /* ev is stamped (seq, ver, rec).  Return 0 with *out holding the bytes to store as `pii`
   * (one MessagePack value; out was reset before the call and is the writer's, reused for the
   * next event), or 0 with out left empty to store ev->pii as it is; PSL_EFORBIDDEN or
   * PSL_EINVALID to refuse this one event (*why: a static reason without personal data, sent
   * to the client); any other PSL_E* fails the whole batch. */
  int (*seal)(void *arg, const psl_event_t *ev, psl_buf_t *out, const char **why);
  /* Make durable what the seals rely on (the keys they made) before the log commits: an
   * error fails the batch (aborted is then called). */
  int (*prepare)(void *arg);
  /* After the log's durable commit, before the batch's requests are completed. */
  void (*committed)(void *arg);
  /* The attempt was rolled back: forget what its seals did. */
  void (*aborted)(void *arg);
  void *arg;
} psl_log_sealer_t;

typedef struct {
  /* Initial LMDB map size in bytes (0: 64 MiB).  The map grows by itself when full. */
  size_t map_size;
  /* Largest map size in bytes (0: no limit but the disk).  Past it appends answer
   * PSL_EUNAVAILABLE while reads go on. */
  size_t map_size_max;
  /* Largest number of events one write transaction takes (0: 8192).  Bounds how long one
   * commit holds the writer, and so the latency of the requests behind it.  A batch is also
   * kept under 64 MiB of event bytes (LMDB bounds the pages one transaction may dirty).  A
   * single request is never split, whatever its size. */
  size_t max_batch;
  /* Optional; copied at open. */
  psl_log_hooks_t hooks;
  /* Optional (all NULL: pii stored as submitted); copied at open. */
  psl_log_sealer_t sealer;
  /* Nonzero: open an existing log for reading only (tools, while the server may run): no
   * creation (PSL_ENOTFOUND when there is no log), no writer thread, hooks unused;
   * psl_log_submit answers PSL_ECLOSED.  psl_log_head then reads the head from the file.
   * It reads what LMDB holds: events answered by a server that then crashed are in the
   * journal until a writable open applies them. */
  int read_only;
  /* Longest time, in ms, between an answer and the commit that makes its events readable
   * (0: PSL_LOG_VISIBLE_MS).  Tests set it high to leave answered events in the journal. */
  unsigned visible_ms;
} psl_log_opts_t;

/* Open (creating if needed) the log in dir/log/ and start its writer thread.
 * opts may be NULL.  Returns 0, PSL_EIO, PSL_ECORRUPT, PSL_ENOMEM, PSL_ENOTFOUND (read_only,
 * no log), or the error of hooks.open, ... */
int psl_log_open(psl_log_t **out, const char *dir, const psl_log_opts_t *opts);

/* Stop the writer after it has committed and completed every request already submitted,
 * then close.  Accepts NULL.  No other call may be running or made afterwards. */
void psl_log_close(psl_log_t *log);

/* The log's id: 36-character uuid made once at creation; static for the log's life. */
const char *psl_log_id(const psl_log_t *log);

/* Last committed seq (readable) and its chain hash (hash may be NULL). */
uint64_t psl_log_head(psl_log_t *log, uint8_t hash[PSL_HASH_BYTES]);

/* Last seq answered (durable, maybe not yet readable), and its chain hash (hash may be
 * NULL): >= psl_log_head.  The server's `welcome` says this head.  A reader that must
 * see everything answered before it began (a subscription's `caught_up`, the HTTP API) waits
 * until psl_log_head reaches it, after psl_log_commit_soon.  While the writer cannot commit
 * (a full or failing disk), it is psl_log_head: the events answered last before the fault
 * stay durable in the journal and become readable once it can, and readers do not wait. */
uint64_t psl_log_answered(psl_log_t *log, uint8_t hash[PSL_HASH_BYTES]);

/* For tools on a read-only log: the events of the journal past the head — answered by a
 * server, not yet in LMDB: a running server commits them within visible_ms, a stopped one
 * (a crash) applies them when it next opens the log.  *n their count, *last the last seq.
 * 0, or PSL_EIO, PSL_ENOMEM, ... */
int psl_log_journal_pending(psl_log_t *log, uint64_t *n, uint64_t *last);

/* Ask the writer to commit its open transaction now rather than at visible_ms, without
 * waiting; on_commit tells when it did. */
void psl_log_commit_soon(psl_log_t *log);

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
  /* In: nonzero to be completed only once the events are readable (psl_log_read sees them),
   * which commits the writer's open transaction at once: tools and tests.  0 (the server):
   * completed as soon as they are durable. */
  int visible;
  psl_append_req_t *next_; /* internal */
  size_t bytes_;           /* internal: the events' size, to bound a batch */
};

/* Queue req for the writer.  Never blocks on I/O.  Returns 0, or PSL_ECLOSED when the log
 * is closing or read-only (done is then not called).
 * Per event the results are: stored {seq, ver}; dup {seq, ver, dup = 1} (the id is stored,
 * the original seq and ver, checked before anything else about the event); PSL_ECONFLICT
 * with ver = the stream's current version; PSL_EINVALID with msg (static text): a stream
 * empty, longer than PSL_MAX_STREAM or holding a 0x00 byte, a terr empty or longer than
 * PSL_MAX_TERR, expect < -1, or "event too big" (canonical form > PSL_MAX_EVENT).
 * A stored event is stamped (seq, ver, rec, hash, has_hash = 1); any other is left with
 * seq = ver = rec = 0 and has_hash = 0.
 * The log checks only what its indexes and limits need: events must be what psl_msg_decode
 * makes of a push (UTF-8 strings, `data` under its rules), stamped by the caller, or the
 * stored record would not decode back (psl_log_verify reports "undecodable record"). */
int psl_log_submit(psl_log_t *log, psl_append_req_t *req);

/* Blocking convenience for tools, tests and benchmarks: submit and wait until the events are
 * readable (req.visible = 1).  Returns req.err. */
int psl_log_append(psl_log_t *log, psl_event_t *events, size_t n, psl_push_result_t *results);
/* The same, returning once the events are durable, as the server answers `pushed`
 * (req.visible = 0): they become readable within visible_ms. */
int psl_log_append_durable(psl_log_t *log, psl_event_t *events, size_t n,
                           psl_push_result_t *results);
/* Wait until every event answered so far is readable.  0 or PSL_ECLOSED. */
int psl_log_flush(psl_log_t *log);

/* Default of psl_log_opts_t.visible_ms: the delay before an answered event is readable
 * (subscriptions, the HTTP API), against the share of LMDB's commit in each answer (~1 ms of
 * fsyncs and page writes every 10 ms). */
#define PSL_LOG_VISIBLE_MS 10u

/* Called on the writer thread after each successful commit that made events readable (a
 * batch of dups only does not call it), with the new head, after the requests waiting for it
 * were completed.  Set before the first submit.  The server uses it to wake its loop
 * (uv_async_send). */
void psl_log_on_commit(psl_log_t *log, void (*fn)(void *arg, uint64_t head), void *arg);

/* Counters since open (for /metrics and benchmarks; no personal data). */
typedef struct {
  uint64_t requests;       /* requests taken by the writer */
  uint64_t commits;        /* durable groups: journal frames fsync'd (batches that stored) */
  uint64_t lmdb_commits;   /* commits of the open transaction: events made readable */
  uint64_t events;         /* events stored (not dups or refusals) */
  uint64_t failed_batches; /* batches that failed (every request of it failed) */
  uint64_t replayed;       /* events applied again from the journal at open (a crash) */
} psl_log_stats_t;
void psl_log_stats(psl_log_t *log, psl_log_stats_t *st);

/* ---- Reading.  Records are hash (32) ‖ canonical; the pointer is valid only during fn.
 * fn runs inside the read transaction: it must not call into the log (or open another
 * transaction of its environment) and should be quick. */

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
 * territory index, stream filters the stream index: never the whole log.  f may be NULL.
 * Details:
 *   - max_bytes: an event is delivered only if the canonical bytes delivered so far plus its
 *     own stay <= max_bytes, except the first event, always delivered; 0: no byte limit
 *     (then bound the read with max_events: one read is one transaction).
 *   - a name repeated in a filter counts once; more than PSL_MAX_FILTER names: PSL_EINVALID.
 *   - both territories and streams: an event must match both.
 *   - `after` beyond the head: nothing delivered, *last = after.
 * Returns 0 (also when fn stopped the read), or PSL_ECORRUPT, PSL_EINVALID, ... */
int psl_log_read(psl_log_t *log, uint64_t after, const psl_filter_t *f, size_t max_bytes,
                 size_t max_events, psl_record_fn fn, void *arg, uint64_t *last);

/* One event by seq.  PSL_ENOTFOUND if seq is 0 or past the head. */
int psl_log_get(psl_log_t *log, uint64_t seq, psl_record_fn fn, void *arg);

/* Current version of a stream (0 if it does not exist). */
int psl_log_stream_version(psl_log_t *log, const char *stream, size_t len, uint64_t *ver);

/* The last stored event of a stream: fn is called once with it (one read transaction; the
 * stream index's last duplicate), or not at all when the stream does not exist.  Returns 0,
 * or PSL_ECORRUPT, ...  (The server asks it a stream's current territory.) */
int psl_log_stream_last(psl_log_t *log, const char *stream, size_t len, psl_record_fn fn,
                        void *arg);

/* Run fn inside one short read transaction of the log's environment (for hooks' databases:
 * projections read their own state this way).  Returns fn's result. */
int psl_log_with_read_txn(psl_log_t *log, int (*fn)(void *arg, MDB_txn *txn), void *arg);

/* Walk the whole chain: recompute every hash from seq 1 and compare with the stored one and
 * the head.  Returns 0, or PSL_ECORRUPT with *bad_seq the first seq that does not verify.
 * progress (may be NULL) is called now and then with the seq reached.
 * Checks, for every seq 1..head (the head as of the start: events appended during the walk
 * are not checked): the key is the next seq (gap-free), the stored hash equals the
 * recomputed chain, the record decodes (psl_event_decode_stored) and carries its own seq;
 * then that the head's hash in `meta` is the chain's, and that no event lies past the head.
 * Reads in bounded transactions (100,000 events each), so it never holds back page reuse. */
int psl_log_verify(psl_log_t *log, uint64_t *bad_seq,
                   void (*progress)(void *arg, uint64_t seq, uint64_t head), void *arg);

/* psl_log_verify with the reason (for tools). */
typedef struct {
  uint64_t head;    /* the head the walk verified up to */
  uint64_t bad_seq; /* 0 when valid */
  const char *why;  /* NULL when valid, else static text: "hash mismatch", "gap in seq",
                       "undecodable record", "seq mismatch", "head hash mismatch",
                       "event past the head" */
} psl_verify_report_t;
int psl_log_verify_report(psl_log_t *log, psl_verify_report_t *rep,
                          void (*progress)(void *arg, uint64_t seq, uint64_t head), void *arg);

#endif /* PSL_LOG_H */
