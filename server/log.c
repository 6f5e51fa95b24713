/*
 * log.c — the event log's environment: open, close, identity, head, and the transaction
 * discipline every other log file follows.  The format below is the log's.  Its files:
 *
 *   log.c         this: the environment, the format, the transaction helpers
 *   log_write.c   the writer thread: submission queue, group commit, the open transaction,
 *                 map growth
 *   log_apply.c   one batch in the open write transaction: what each event writes, in order
 *   log_journal.c the journal: one fsync'd frame per answered batch (its format is there)
 *   log_replay.c  the journal's records past LMDB's head, applied again (at open, after a
 *                 lost transaction)
 *   log_overlay.c the streams answered but not yet readable, for version checks
 *   log_index.c   a batch's `streams` and `terr` entries, written in runs at its end
 *   log_chain.c   the chain hasher thread that hashes a large batch alongside the writer
 *   log_read.c    ranges with territory and stream filters, one event, a stream's version
 *   log_verify.c  the walk of the whole chain
 *
 * ENVIRONMENT
 *
 *   DIR/log/journal: the journal (log_journal.c).  An answer waits for its fsync, not for
 *   LMDB's: the writer commits its open transaction every PSL_LOG_VISIBLE_MS or so, and
 *   psl_log_open applies the journal's records past LMDB's head before anything else.
 *
 *   DIR/log/data.mdb, DIR/log/lock.mdb: one LMDB environment, opened MDB_NOTLS (a read
 *   transaction may begin on one thread and end on another, and the server reads from many),
 *   at most 32 named databases (the log's five, the rest for hooks), 512 reader slots.
 *   Durable: default flags, so every commit is fsync'd before it returns (the journal's records
 *   are dropped only after that).  Not MDB_NOSYNC or
 *   MDB_NOMETASYNC (an acknowledged commit must survive a power cut), and not MDB_WRITEMAP:
 *   measured here its commits were ~2.5 times slower (it msyncs the whole map), and with it
 *   a full disk turns into SIGBUS on a write through the map instead of an error.
 *
 * DATABASES (all integers big-endian, so LMDB's memcmp order is numeric order)
 *
 *   events   key   seq                                  8 bytes
 *            value hash(seq) ‖ canonical stored event   32 bytes ‖ 1..PSL_MAX_EVENT bytes
 *            Keys are exactly 1..head, gap-free; written with MDB_APPEND.  The canonical bytes
 *            are psl_event_encode_canonical's MessagePack map (proto/PROTOCOL.md): id stream
 *            type at terr data [pii] seq ver rec by dev.  They never change once written.
 *
 *   ids      key   event id                             16 bytes
 *            value seq ‖ ver                             8 ‖ 8 bytes
 *            One entry per stored event, kept forever: the same id pushed again, at any time,
 *            is answered `dup` with these.
 *
 *   streams  key   stream                               1..128 bytes
 *            value seq                                  8 bytes, MDB_DUPSORT | MDB_DUPFIXED
 *            Every seq of the stream, as sorted duplicates appended in order (MDB_APPENDDUP).
 *            A stream's versions are 1, 2, 3... in seq order, so the n-th duplicate is
 *            version n: the current version is the count (MDB_SET, mdb_cursor_count, O(1)),
 *            and MDB_GET_BOTH_RANGE on (after + 1) finds the first event after a checkpoint.
 *            (Measured against the layouts first drawn for it, key stream ‖ 0x00 ‖ ver → seq
 *            with or without a stream → ver database: those insert inside shared leaves,
 *            which split half-full, ~80 bytes an event; this appends 8 bytes at the end of
 *            the stream's own duplicates, a stream of up to ~250 events stays inside its
 *            key's node, and a batch writes each stream's run with one MDB_MULTIPLE put.)
 *
 *   terr     key   territory                            1..8 bytes
 *            value seq                                  8 bytes, MDB_DUPSORT | MDB_DUPFIXED
 *            Every seq of the territory, as sorted duplicates appended in order
 *            (MDB_APPENDDUP): a territory filter reads this, never the whole log.
 *
 *   meta     "log_id" → 36 lowercase characters: a UUIDv7, made once at creation
 *            "head"   → seq ‖ hash(seq)               8 ‖ 32 bytes; absent for an empty log
 *            "format" → one byte, 0x01: this layout
 *
 * HASH CHAIN
 *
 *   hash(0) = 32 zero bytes;  hash(n) = BLAKE2b-256(hash(n-1) ‖ canonical bytes of event n)
 *   (psl_chain_hash).  The canonical bytes are the stored form, with `pii` as stored, so that
 *   crypto-shredding a participant's key never breaks the chain.  meta "head" holds the last
 *   link, written in the same transaction as the events it covers.
 *
 * CONCURRENCY
 *
 *   One writer thread (log_write.c) does every write transaction; any thread may read.  LMDB
 *   can only change the map size while no transaction of the process is open, so every
 *   transaction holds map_lock shared (psl__log_txn_begin / _end) and a resize holds it
 *   exclusively for the mdb_env_set_mapsize call alone.  Transactions are short by rule: a
 *   long read transaction would stop LMDB from reusing pages and the file would grow.
 *
 *   A read callback runs under map_lock: it must not call back into the log (the writer may be
 *   queued for the exclusive lock, and a second shared lock would then wait behind it).
 */
#include "log_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Mode of DIR/log/ and its files: the log holds personal data (pii), so owner-only. */
#define LOG_DIR_MODE 0700
#define LOG_FILE_MODE 0600
/* meta "format" value of the layout above. */
#define LOG_FORMAT 1
/* The log's folder inside the data folder. */
#define LOG_SUBDIR "/log"
/* Longest path handled: Linux's PATH_MAX. */
#define LOG_PATH_MAX 4096

static const MDB_val META_LOG_ID = {6, (void *)"log_id"};
static const MDB_val META_HEAD = {4, (void *)"head"};
static const MDB_val META_FORMAT = {6, (void *)"format"};

int psl__log_write_err(int rc) {
  switch (rc) {
  case ENOSPC:
  case EDQUOT:
  case EFBIG: /* a file-size limit is a full disk to us */
  case MDB_MAP_FULL:
    return PSL_EUNAVAILABLE;
  default:
    return psl_err_from_mdb(rc);
  }
}

int psl__log_set_mapsize(psl_log_t *log, size_t size) {
  pthread_rwlock_wrlock(&log->map_lock);
  int rc = mdb_env_set_mapsize(log->env, size);
  pthread_rwlock_unlock(&log->map_lock);
  return rc;
}

int psl__log_txn_begin(psl_log_t *log, unsigned flags, MDB_txn **txn) {
  for (;;) {
    pthread_rwlock_rdlock(&log->map_lock);
    int rc = mdb_txn_begin(log->env, NULL, flags, txn);
    if (rc == 0)
      return 0;
    pthread_rwlock_unlock(&log->map_lock);
    if (rc != MDB_MAP_RESIZED)
      return rc;
    /* Another process grew the map: adopt its size, then try again. */
    rc = psl__log_set_mapsize(log, 0);
    if (rc != 0)
      return rc;
  }
}

int psl__log_txn_end(psl_log_t *log, MDB_txn *txn, int commit) {
  int rc = 0;
  if (commit)
    rc = mdb_txn_commit(txn);
  else
    mdb_txn_abort(txn);
  pthread_rwlock_unlock(&log->map_lock);
  return rc;
}

int psl__log_meta_head(psl_log_t *log, MDB_txn *txn, uint64_t *seq,
                       uint8_t hash[PSL_HASH_BYTES]) {
  MDB_val k = META_HEAD, v;
  int rc = mdb_get(txn, log->db_meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    *seq = 0;
    if (hash)
      memset(hash, 0, PSL_HASH_BYTES);
    return 0;
  }
  if (rc != 0)
    return rc;
  if (v.mv_size != PSL__SEQ_BYTES + PSL_HASH_BYTES)
    return MDB_CORRUPTED;
  *seq = psl__be64_get(v.mv_data);
  if (hash)
    memcpy(hash, (const uint8_t *)v.mv_data + PSL__SEQ_BYTES, PSL_HASH_BYTES);
  return 0;
}

int psl__stream_version(MDB_cursor *c, const char *stream, size_t len, uint64_t *ver) {
  *ver = 0;
  if (len == 0 || len > PSL_MAX_STREAM)
    return 0; /* never stored (log_apply.c refuses such names) */
  MDB_val k = {len, (void *)stream}, v;
  size_t n = 0;
  int rc = mdb_cursor_get(c, &k, &v, MDB_SET);
  if (rc == 0)
    rc = mdb_cursor_count(c, &n); /* O(1): the sub-database's entry count */
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc == 0)
    *ver = n;
  return rc;
}

/* mkdir -p for DIR and DIR/log. */
static int make_dirs(const char *path) {
  char tmp[LOG_PATH_MAX];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof tmp)
    return PSL_EINVALID;
  memcpy(tmp, path, len + 1);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(tmp, LOG_DIR_MODE) != 0 && errno != EEXIST)
      return psl_err_from_errno(errno);
    *p = '/';
  }
  if (mkdir(tmp, LOG_DIR_MODE) != 0 && errno != EEXIST)
    return psl_err_from_errno(errno);
  return 0;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Open (or create) the five databases and the meta entries; read the head.  In a write
 * transaction for a new or writable log, in a read one for a read-only log. */
static int open_dbs(psl_log_t *log, MDB_txn *txn) {
  unsigned create = log->read_only ? 0 : MDB_CREATE;
  int rc;
  if ((rc = mdb_dbi_open(txn, "events", create, &log->db_events)) != 0 ||
      (rc = mdb_dbi_open(txn, "ids", create, &log->db_ids)) != 0 ||
      (rc = mdb_dbi_open(txn, "streams", create | MDB_DUPSORT | MDB_DUPFIXED,
                         &log->db_streams)) != 0 ||
      (rc = mdb_dbi_open(txn, "terr", create | MDB_DUPSORT | MDB_DUPFIXED, &log->db_terr)) != 0 ||
      (rc = mdb_dbi_open(txn, "meta", create, &log->db_meta)) != 0)
    return rc;

  MDB_val k = META_FORMAT, v;
  rc = mdb_get(txn, log->db_meta, &k, &v);
  if (rc == MDB_NOTFOUND && !log->read_only) {
    uint8_t fmt = LOG_FORMAT;
    uint8_t id[PSL_UUID_BYTES];
    char ids[PSL_UUID_STR + 1];
    psl_uuid_v7(id, now_ms());
    psl_uuid_format(id, ids);
    MDB_val fv = {1, &fmt}, iv = {PSL_UUID_STR, ids};
    k = META_FORMAT;
    if ((rc = mdb_put(txn, log->db_meta, &k, &fv, 0)) != 0)
      return rc;
    k = META_LOG_ID;
    if ((rc = mdb_put(txn, log->db_meta, &k, &iv, 0)) != 0)
      return rc;
  } else if (rc != 0) {
    return rc;
  } else if (v.mv_size != 1 || *(const uint8_t *)v.mv_data != LOG_FORMAT) {
    return MDB_INCOMPATIBLE;
  }

  k = META_LOG_ID;
  if ((rc = mdb_get(txn, log->db_meta, &k, &v)) != 0)
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  if (v.mv_size != PSL_UUID_STR)
    return MDB_CORRUPTED;
  memcpy(log->id, v.mv_data, PSL_UUID_STR);
  log->id[PSL_UUID_STR] = '\0';

  if ((rc = psl__log_meta_head(log, txn, &log->head, log->head_hash)) != 0)
    return rc;
  /* The head must name the last event: both are written in one transaction. */
  MDB_cursor *c;
  if ((rc = mdb_cursor_open(txn, log->db_events, &c)) != 0)
    return rc;
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  mdb_cursor_close(c);
  uint64_t last = 0;
  if (rc == 0) {
    if (k.mv_size != PSL__SEQ_BYTES)
      return MDB_CORRUPTED;
    last = psl__be64_get(k.mv_data);
  } else if (rc != MDB_NOTFOUND) {
    return rc;
  }
  if (last != log->head)
    return MDB_CORRUPTED;

  if (!log->read_only && log->hooks.open) {
    int err = log->hooks.open(log->hooks.arg, log->env, txn);
    if (err)
      return err > PSL__ERR_BASE && err < PSL__ERR_END ? err : PSL_EINTERNAL;
  }
  return 0;
}

/* Apply the journal's records past the head (what a crash left answered but not committed),
 * in the open's transaction.  0, MDB_MAP_FULL (grow and run the open again), or a PSL_E*. */
static int replay_journal(psl_log_t *log, MDB_txn *txn) {
  int mdb_rc;
  uint64_t n;
  int err = psl__log_replay(log, txn, 1, &mdb_rc, &log->head, log->head_hash, &n);
  if (err)
    return mdb_rc == MDB_MAP_FULL ? MDB_MAP_FULL : err;
  log->stats.replayed = n;
  return 0;
}

/* Map an error of open_dbs: our own format checks become PSL_ECORRUPT; a hook's PSL_E*
 * stays as it is. */
static int open_err(int rc) {
  if (rc > PSL__ERR_BASE && rc < PSL__ERR_END)
    return rc;
  if (rc == MDB_INCOMPATIBLE || rc == MDB_CORRUPTED)
    return PSL_ECORRUPT;
  if (rc == MDB_NOTFOUND) /* read-only open of a log that was never created */
    return PSL_ENOTFOUND;
  return psl_err_from_mdb(rc);
}

/* Double the map for a retried open, capped by map_size_max: 0, or PSL_EUNAVAILABLE at the
 * cap or when the map cannot grow. */
static int open_grow_map(psl_log_t *log) {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(log->env, &info);
  mdb_env_stat(log->env, &st);
  size_t cur = info.me_mapsize, next = cur > SIZE_MAX / 2 ? SIZE_MAX : cur * 2;
  if (log->map_size_max && next > log->map_size_max)
    next = log->map_size_max;
  next -= next % st.ms_psize;
  if (next <= cur)
    return PSL_EUNAVAILABLE;
  return psl__log_set_mapsize(log, next) ? PSL_EUNAVAILABLE : 0;
}

static int env_open(psl_log_t *log, const char *dir, const psl_log_opts_t *opts) {
  char path[LOG_PATH_MAX];
  size_t map = opts && opts->map_size ? opts->map_size : PSL__LOG_MAP_DEFAULT;
  if (log->map_size_max && map > log->map_size_max)
    map = log->map_size_max;
  if ((size_t)snprintf(path, sizeof path, "%s%s", dir, LOG_SUBDIR) >= sizeof path)
    return PSL_EINVALID;
  if (log->read_only) {
    struct stat st;
    if (stat(path, &st) != 0)
      return psl_err_from_errno(errno);
  } else {
    int err = make_dirs(path);
    if (err)
      return err;
  }
  int rc;
  if ((rc = mdb_env_create(&log->env)) != 0)
    return psl_err_from_mdb(rc);
  unsigned flags = MDB_NOTLS | (log->read_only ? MDB_RDONLY : 0);
  if ((rc = mdb_env_set_maxdbs(log->env, PSL__LOG_MAX_DBS)) != 0 ||
      (rc = mdb_env_set_maxreaders(log->env, PSL__LOG_MAX_READERS)) != 0 ||
      (rc = mdb_env_set_mapsize(log->env, map)) != 0 ||
      (rc = mdb_env_open(log->env, path, flags, LOG_FILE_MODE)) != 0)
    return psl_err_from_mdb(rc);
  snprintf(log->path, sizeof log->path, "%s", path);
  if (!log->read_only && (rc = psl__journal_open(&log->journal, path, 0)) != 0)
    return rc;

  MDB_txn *txn;
  for (;;) {
    if ((rc = psl__log_txn_begin(log, log->read_only ? MDB_RDONLY : 0, &txn)) != 0)
      return psl__log_write_err(rc);
    rc = open_dbs(log, txn);
    if (rc == 0 && !log->read_only)
      rc = replay_journal(log, txn);
    if (log->read_only || (rc != MDB_MAP_FULL && rc != PSL_EUNAVAILABLE))
      break;
    /* The open's own transaction filled the map: a hook's catch-up (the projections rebuilt
     * from seq 1 after a format change) may write as much again as the file holds.  Grow the
     * map as the writer does (log_write.c) and run the open again. */
    psl__log_txn_end(log, txn, 0);
    if ((rc = open_grow_map(log)) != 0)
      return rc;
  }
  if (rc == 0 && log->read_only) {
    /* Keep the handles: LMDB keeps a read transaction's dbi handles after a commit. */
    rc = psl__log_txn_end(log, txn, 1);
  } else if (rc == 0) {
    rc = psl__log_txn_end(log, txn, 1);
    if (rc != 0)
      return psl__log_write_err(rc);
  } else {
    psl__log_txn_end(log, txn, 0);
  }
  return rc ? open_err(rc) : 0;
}

int psl_log_open(psl_log_t **out, const char *dir, const psl_log_opts_t *opts) {
  *out = NULL;
  psl_log_t *log = calloc(1, sizeof *log);
  if (!log)
    return PSL_ENOMEM;
  int err;
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&log->map_lock, &ra);
  pthread_rwlockattr_destroy(&ra);
  pthread_mutex_init(&log->head_mu, NULL);
  pthread_mutex_init(&log->q_mu, NULL);
  /* The writer waits on it with a deadline (its open transaction's age): monotonic. */
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&log->q_cond, &ca);
  pthread_condattr_destroy(&ca);

  if (opts) {
    log->map_size_max = opts->map_size_max;
    log->max_batch = opts->max_batch;
    log->hooks = opts->hooks;
    log->sealer = opts->sealer;
    log->read_only = opts->read_only;
    log->visible_ms = opts->visible_ms;
  }
  if (log->max_batch == 0)
    log->max_batch = PSL__LOG_BATCH_DEFAULT;
  if (log->visible_ms == 0)
    log->visible_ms = PSL_LOG_VISIBLE_MS;

  if (!log->read_only && (err = psl__overlay_new(&log->overlay)) != 0)
    goto fail_env;
  if ((err = env_open(log, dir, opts)) != 0)
    goto fail_env;
  if (!log->read_only && (err = psl__log_writer_start(log)) != 0)
    goto fail_env;
  *out = log;
  return 0;

fail_env:
  if (log->env)
    mdb_env_close(log->env);
  psl__journal_close(log->journal);
  psl__overlay_free(log->overlay);
  pthread_cond_destroy(&log->q_cond);
  pthread_mutex_destroy(&log->q_mu);
  pthread_mutex_destroy(&log->head_mu);
  pthread_rwlock_destroy(&log->map_lock);
  free(log);
  return err;
}

void psl_log_close(psl_log_t *log) {
  if (!log)
    return;
  psl__log_writer_stop(log);
  mdb_env_close(log->env);
  psl__journal_close(log->journal);
  psl__overlay_free(log->overlay);
  pthread_cond_destroy(&log->q_cond);
  pthread_mutex_destroy(&log->q_mu);
  pthread_mutex_destroy(&log->head_mu);
  pthread_rwlock_destroy(&log->map_lock);
  free(log);
}

const char *psl_log_id(const psl_log_t *log) { return log->id; }

uint64_t psl_log_head(psl_log_t *log, uint8_t hash[PSL_HASH_BYTES]) {
  if (log->read_only) { /* another process may be appending: the file knows */
    MDB_txn *txn;
    if (psl__log_txn_begin(log, MDB_RDONLY, &txn) == 0) {
      pthread_mutex_lock(&log->head_mu);
      psl__log_meta_head(log, txn, &log->head, log->head_hash);
      pthread_mutex_unlock(&log->head_mu);
      psl__log_txn_end(log, txn, 0);
    }
  }
  pthread_mutex_lock(&log->head_mu);
  uint64_t head = log->head;
  if (hash)
    memcpy(hash, log->head_hash, PSL_HASH_BYTES);
  pthread_mutex_unlock(&log->head_mu);
  return head;
}

uint64_t psl_log_answered(psl_log_t *log, uint8_t hash[PSL_HASH_BYTES]) {
  if (log->read_only)
    return psl_log_head(log, hash);
  pthread_mutex_lock(&log->head_mu);
  int ahead = log->answered > log->head && !log->stalled;
  uint64_t a = ahead ? log->answered : log->head;
  if (hash)
    memcpy(hash, ahead ? log->answered_hash : log->head_hash, PSL_HASH_BYTES);
  pthread_mutex_unlock(&log->head_mu);
  return a;
}

typedef struct {
  uint64_t head, n, last;
} pending_t;

static int count_pending(void *arg, uint64_t seq, const uint8_t *rec, size_t len) {
  pending_t *p = arg;
  (void)rec;
  (void)len;
  if (seq > p->head) {
    p->n++;
    p->last = seq;
  }
  return 0;
}

int psl_log_journal_pending(psl_log_t *log, uint64_t *n, uint64_t *last) {
  pending_t p = {psl_log_head(log, NULL), 0, 0};
  psl__journal_t *j = NULL;
  *n = *last = 0;
  int err = psl__journal_open(&j, log->path, 1);
  if (err == PSL_ENOTFOUND)
    return 0; /* a log from before the journal, or never written */
  if (err)
    return err;
  err = psl__journal_scan(j, 0, count_pending, &p);
  psl__journal_close(j);
  if (!err) {
    *n = p.n;
    *last = p.last;
  }
  return err;
}

void psl_log_commit_soon(psl_log_t *log) {
  pthread_mutex_lock(&log->q_mu);
  log->commit_soon = 1;
  pthread_cond_signal(&log->q_cond);
  pthread_mutex_unlock(&log->q_mu);
}

void psl_log_stats(psl_log_t *log, psl_log_stats_t *st) {
  pthread_mutex_lock(&log->head_mu);
  *st = log->stats;
  pthread_mutex_unlock(&log->head_mu);
}

void psl_log_on_commit(psl_log_t *log, void (*fn)(void *arg, uint64_t head), void *arg) {
  pthread_mutex_lock(&log->q_mu);
  log->on_commit = fn;
  log->on_commit_arg = arg;
  pthread_mutex_unlock(&log->q_mu);
}

int psl_log_with_read_txn(psl_log_t *log, int (*fn)(void *arg, MDB_txn *txn), void *arg) {
  MDB_txn *txn;
  int rc = psl__log_txn_begin(log, MDB_RDONLY, &txn);
  if (rc != 0)
    return psl_err_from_mdb(rc);
  int r = fn(arg, txn);
  psl__log_txn_end(log, txn, 0);
  return r;
}
