/*
 * store-lmdb.c — the projections in LMDB, inside the event log's environment, updated in the
 * log writer's transaction (psl_log_hooks_t) so that they commit atomically with the events
 * they reflect and survive any crash with them.
 *
 * DATABASES (integers big-endian in keys, so that LMDB's order is numeric; values: codec.c)
 *
 *   proj_part      key  participant id (16)
 *                  val  participant state (codec.c)
 *   proj_sess      key  session id (16)
 *                  val  the session's effective session.held records (codec.c)
 *   proj_counters  key  year (2) ‖ month (1) ‖ terr (1) ‖ programme (1, 0: none) ‖ site (0..48)
 *                  val  PSL__C_N × i64: the additive counts of that key; absent when all zero
 *   proj_year      key  year (2) ‖ terr (1) ‖ participant id (16)
 *                  val  the participant's per-year facts (codec.c), stored once under each
 *                       territory where the person had activity that year; a query for one
 *                       territory reads its prefix, a query for all counts a record only
 *                       under its smallest territory (so a transferred person counts once)
 *   proj_terr      key  terr (1) ‖ participant id (16)
 *                  val  status (1): caseloads, by current territory
 *   proj_stream    key  kind (1: 'p' participant, 's' session) ‖ stream id (16) ‖ seq (8)
 *                  val  empty: every event of the domain's streams, for recomputations
 *   proj_meta      "proj_seq" → seq (8): the last event the projections reflect
 *                  "format"   → 1 byte, PROJ_FORMAT: these layouts and codes.c's tables
 *
 * The fold is engine.c's, through the psl__store_t below: part_get decodes a state and notes
 * the index entries (year facts, caseload) it implies; part_put encodes it and rewrites only
 * the index entries that changed.
 *
 * Recomputations read a stream's earlier events through proj_stream and the log's `events`
 * (seq → hash (32) ‖ canonical, written before each hooks.apply).  Why our own stream index
 * and not the log's `streams`: the log writes `streams` at the end of each batch
 * (server/log_index.c), so inside the writer's transaction it lacks the batch's own events,
 * which a void in the same batch must see.  Rebuilds and verifies, which run on committed
 * data, read the log's `streams` instead (stream → seq ‖ ver sorted duplicates): a verify
 * must not trust the projections' own index.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "psl_domain_int.h"

#define PROJ_FORMAT 1
/* Above this many events to catch up at open, a rebuild in memory then one bulk store beats
 * folding event by event through LMDB (measured: ~10x per event). */
#define CATCHUP_REBUILD_MIN 10000u

static const MDB_val META_SEQ = {8, (void *)"proj_seq"};
static const MDB_val META_FORMAT = {6, (void *)"format"};

typedef struct {
  uint16_t year;
  psl__year_t facts;
} oldyear_t;

struct psl_projdb_s {
  MDB_dbi part, sess, counters, year, terr, meta, stream;
  MDB_dbi log_events;
  int have_log;
  /* writer scratch (apply is single-threaded) */
  psl_participant_t cur;
  psl__year_t *old_years;
  size_t nold, cap_old;
  int old_indexed; /* cur had caseload entry (old_terr, old_status) */
  uint8_t old_terr, old_status;
  psl__session_t cur_sess;
  psl__out_t out;
};

static int mdb_err(int rc) { return rc == 0 ? 0 : psl_err_from_mdb(rc); }

static void be16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* ---- Open. */

static int open_log_dbs(psl_projdb_t *db, MDB_txn *txn) {
  if (mdb_dbi_open(txn, "events", 0, &db->log_events) == 0)
    db->have_log = 1;
  return 0;
}

int psl_projdb_open(psl_projdb_t **out, MDB_env *env, MDB_txn *txn) {
  (void)env;
  psl_projdb_t *db = calloc(1, sizeof *db);
  if (!db)
    return PSL_ENOMEM;
  psl_participant_init(&db->cur, NULL);
  struct {
    const char *name;
    MDB_dbi *dbi;
  } dbs[] = {{"proj_part", &db->part},   {"proj_sess", &db->sess}, {"proj_counters", &db->counters},
             {"proj_year", &db->year},   {"proj_terr", &db->terr}, {"proj_meta", &db->meta},
             {"proj_stream", &db->stream}};
  int rc = 0;
  for (size_t i = 0; i < sizeof dbs / sizeof dbs[0] && !rc; i++) {
    rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi);
    if (rc == EACCES) /* a read-only transaction: the databases must exist */
      rc = mdb_dbi_open(txn, dbs[i].name, 0, dbs[i].dbi);
  }
  if (!rc)
    rc = open_log_dbs(db, txn);
  if (rc) {
    free(db);
    return mdb_err(rc);
  }
  *out = db;
  return 0;
}

static void old_years_clear(psl_projdb_t *db) {
  for (size_t i = 0; i < db->nold; i++)
    psl__year_free(&db->old_years[i]);
  db->nold = 0;
}

void psl_projdb_free(psl_projdb_t *db) {
  if (!db)
    return;
  old_years_clear(db);
  free(db->old_years);
  psl_participant_free(&db->cur);
  psl__session_free(&db->cur_sess);
  psl__out_free(&db->out);
  free(db);
}

int psl_projdb_seq(psl_projdb_t *db, MDB_txn *txn, uint64_t *seq) {
  MDB_val k = META_SEQ, v;
  int rc = mdb_get(txn, db->meta, &k, &v);
  *seq = 0;
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc)
    return mdb_err(rc);
  if (v.mv_size != 8)
    return PSL_ECORRUPT;
  *seq = get_be64(v.mv_data);
  return 0;
}

static int set_seq(psl_projdb_t *db, MDB_txn *txn, uint64_t seq) {
  uint8_t b[8];
  uint8_t fmt = PROJ_FORMAT;
  be64(b, seq);
  MDB_val k = META_SEQ, v = {8, b};
  int rc = mdb_put(txn, db->meta, &k, &v, 0);
  if (!rc) {
    k = META_FORMAT;
    v.mv_size = 1;
    v.mv_data = &fmt;
    rc = mdb_put(txn, db->meta, &k, &v, 0);
  }
  return mdb_err(rc);
}

/* ---- Index entries implied by a state. */

/* The year facts of st, one per year of activity (none unless it counts). */
static int years_of(const psl_participant_t *st, psl__year_t **out, size_t *n, size_t *cap) {
  *n = 0;
  if (!psl__participant_counts(st))
    return 0;
  /* every year `at` allows (PSL_AT_MIN to PSL_AT_MAX: 2000 to 2099) */
  int years[100];
  size_t ny = psl__participant_years(st, years, sizeof years / sizeof years[0]);
  for (size_t i = 0; i < ny; i++) {
    if (*n == *cap) {
      size_t ncap = *cap ? *cap * 2 : 4;
      psl__year_t *p = realloc(*out, ncap * sizeof *p);
      if (!p)
        return PSL_ENOMEM;
      *out = p;
      *cap = ncap;
    }
    int rc = psl__year_make(st, years[i], &(*out)[*n]);
    if (rc)
      return rc;
    (*n)++;
  }
  return 0;
}

static size_t year_key(uint8_t key[19], int year, uint8_t terr, const uint8_t id[PSL_UUID_BYTES]) {
  be16(key, (unsigned)year);
  key[2] = terr;
  memcpy(key + 3, id, PSL_UUID_BYTES);
  return 19;
}

/* Put (or delete, put = 0) the entries of one year's facts: one per distinct territory. */
static int year_write(psl_projdb_t *db, MDB_txn *txn, const psl__year_t *y, int put) {
  uint8_t key[19];
  unsigned seen = 0;
  int rc = 0;
  if (put) {
    db->out.len = 0;
    if ((rc = psl__year_encode(&db->out, y)))
      return rc;
  }
  for (size_t i = 0; i < y->nplaces && !rc; i++) {
    uint8_t t = y->places[i].terr;
    if (seen & (1u << t))
      continue;
    seen |= 1u << t;
    MDB_val k = {year_key(key, y->year, t, y->id), key}, v = {db->out.len, db->out.p};
    rc = put ? mdb_put(txn, db->year, &k, &v, 0) : mdb_del(txn, db->year, &k, NULL);
    if (rc == MDB_NOTFOUND)
      rc = 0;
  }
  return mdb_err(rc);
}

static int caseload_write(psl_projdb_t *db, MDB_txn *txn, uint8_t terr,
                          const uint8_t id[PSL_UUID_BYTES], int status, int put) {
  uint8_t key[1 + PSL_UUID_BYTES], s = (uint8_t)status;
  key[0] = terr;
  memcpy(key + 1, id, PSL_UUID_BYTES);
  MDB_val k = {sizeof key, key}, v = {1, &s};
  int rc = put ? mdb_put(txn, db->terr, &k, &v, 0) : mdb_del(txn, db->terr, &k, NULL);
  return rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
}

/* ---- The store the engine folds into. */

typedef struct {
  psl__store_t ops;
  psl_projdb_t *db;
  MDB_txn *txn;
} lstore_t;

static int l_part_get(psl__store_t *s, const uint8_t id[PSL_UUID_BYTES], psl_participant_t **out) {
  lstore_t *ls = (lstore_t *)s;
  psl_projdb_t *db = ls->db;
  MDB_val k = {PSL_UUID_BYTES, (void *)id}, v;
  int rc = mdb_get(ls->txn, db->part, &k, &v);
  memcpy(db->cur.id, id, PSL_UUID_BYTES);
  if (rc == MDB_NOTFOUND) {
    psl_participant_free(&db->cur);
    psl_participant_init(&db->cur, id);
  } else if (rc) {
    return mdb_err(rc);
  } else if ((rc = psl__participant_decode(v.mv_data, v.mv_size, &db->cur))) {
    return rc;
  }
  old_years_clear(db);
  if ((rc = years_of(&db->cur, &db->old_years, &db->nold, &db->cap_old)))
    return rc;
  db->old_indexed = db->cur.known;
  db->old_terr = db->cur.terr;
  db->old_status = (uint8_t)db->cur.status;
  *out = &db->cur;
  return 0;
}

static int l_part_put(psl__store_t *s, psl_participant_t *st) {
  lstore_t *ls = (lstore_t *)s;
  psl_projdb_t *db = ls->db;
  psl__year_t *neu = NULL;
  size_t nn = 0, cap = 0;
  db->out.len = 0;
  int rc = psl__participant_encode(&db->out, st);
  if (!rc) {
    MDB_val k = {PSL_UUID_BYTES, st->id}, v = {db->out.len, db->out.p};
    rc = mdb_err(mdb_put(ls->txn, db->part, &k, &v, 0));
  }
  if (!rc)
    rc = years_of(st, &neu, &nn, &cap);
  /* year facts: rewrite the years whose facts changed */
  for (size_t i = 0; i < db->nold && !rc; i++) {
    size_t j = 0;
    while (j < nn && neu[j].year != db->old_years[i].year)
      j++;
    if (j == nn || !psl__year_equal(&db->old_years[i], &neu[j]))
      rc = year_write(db, ls->txn, &db->old_years[i], 0);
  }
  for (size_t j = 0; j < nn && !rc; j++) {
    size_t i = 0;
    while (i < db->nold && db->old_years[i].year != neu[j].year)
      i++;
    if (i == db->nold || !psl__year_equal(&db->old_years[i], &neu[j]))
      rc = year_write(db, ls->txn, &neu[j], 1);
  }
  for (size_t j = 0; j < nn; j++)
    psl__year_free(&neu[j]);
  free(neu);
  /* caseload */
  if (!rc && (db->old_indexed != st->known || db->old_terr != st->terr ||
              db->old_status != st->status)) {
    if (db->old_indexed)
      rc = caseload_write(db, ls->txn, db->old_terr, st->id, 0, 0);
    if (!rc && st->known)
      rc = caseload_write(db, ls->txn, st->terr, st->id, st->status, 1);
  }
  /* the state now stored is the "old" of a next get without decode: keep them in step */
  if (!rc) {
    old_years_clear(db);
    rc = years_of(st, &db->old_years, &db->nold, &db->cap_old);
    db->old_indexed = st->known;
    db->old_terr = st->terr;
    db->old_status = (uint8_t)st->status;
  }
  return rc;
}

static int l_sess_get(psl__store_t *s, const uint8_t id[PSL_UUID_BYTES], psl__session_t **out) {
  lstore_t *ls = (lstore_t *)s;
  psl_projdb_t *db = ls->db;
  MDB_val k = {PSL_UUID_BYTES, (void *)id}, v;
  int rc = mdb_get(ls->txn, db->sess, &k, &v);
  psl__session_free(&db->cur_sess);
  if (rc == 0)
    rc = psl__session_decode(v.mv_data, v.mv_size, &db->cur_sess);
  else if (rc == MDB_NOTFOUND)
    rc = 0;
  else
    rc = mdb_err(rc);
  memcpy(db->cur_sess.id, id, PSL_UUID_BYTES);
  *out = &db->cur_sess;
  return rc;
}

static int l_sess_put(psl__store_t *s, psl__session_t *ss) {
  lstore_t *ls = (lstore_t *)s;
  psl_projdb_t *db = ls->db;
  db->out.len = 0;
  int rc = psl__session_encode(&db->out, ss);
  if (rc)
    return rc;
  MDB_val k = {PSL_UUID_BYTES, ss->id}, v = {db->out.len, db->out.p};
  return mdb_err(mdb_put(ls->txn, db->sess, &k, &v, 0));
}

static int l_counter_add(psl__store_t *s, const psl__ckey_t *key, const int64_t vec[PSL__C_N]) {
  lstore_t *ls = (lstore_t *)s;
  uint8_t kb[PSL__CKEY_MAX], vb[PSL__C_N * 8];
  int64_t cur[PSL__C_N];
  MDB_val k = {psl__ckey_encode(key, kb), kb}, v;
  int rc = mdb_get(ls->txn, ls->db->counters, &k, &v);
  if (rc == MDB_NOTFOUND)
    memset(cur, 0, sizeof cur);
  else if (rc)
    return mdb_err(rc);
  else if ((rc = psl__vec_decode(v.mv_data, v.mv_size, cur)))
    return rc;
  int zero = 1;
  for (int i = 0; i < PSL__C_N; i++) {
    cur[i] += vec[i];
    zero &= cur[i] == 0;
  }
  if (zero) {
    rc = mdb_del(ls->txn, ls->db->counters, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
  }
  psl__vec_encode(cur, vb);
  v.mv_size = sizeof vb;
  v.mv_data = vb;
  return mdb_err(mdb_put(ls->txn, ls->db->counters, &k, &v, 0));
}

/* ---- Reading a stream's earlier events from the log's databases. */

typedef struct {
  psl_projdb_t *db;
  MDB_txn *txn;
} logread_t;

static int decode_record(const MDB_val *v, psl_event_t *ev) {
  if (v->mv_size <= PSL_HASH_BYTES)
    return PSL_ECORRUPT;
  const uint8_t *rec = v->mv_data;
  if (psl_event_decode_stored(rec + PSL_HASH_BYTES, v->mv_size - PSL_HASH_BYTES, ev, NULL))
    return PSL_ECORRUPT;
  memcpy(ev->hash, rec, PSL_HASH_BYTES);
  ev->has_hash = 1;
  return 0;
}

#define SKEY_BYTES (1 + PSL_UUID_BYTES + 8)
static size_t stream_key(psl_str_t stream, uint64_t seq, uint8_t key[SKEY_BYTES]);

/* Event seq of the log's `events` into fn. */
static int with_event(logread_t *lr, uint64_t seq, psl_event_fn fn, void *fnarg) {
  uint8_t sk[8];
  psl_event_t ev;
  be64(sk, seq);
  MDB_val k = {8, sk}, v;
  int mrc = mdb_get(lr->txn, lr->db->log_events, &k, &v);
  if (mrc)
    return mrc == MDB_NOTFOUND ? PSL_ECORRUPT : mdb_err(mrc);
  int rc = decode_record(&v, &ev);
  return rc ? rc : fn(fnarg, &ev);
}

/* For folds over the whole log (rebuild, verify): each stream's seqs so far, in memory, as
 * the scan meets them — so that neither the log's `streams` layout nor our own proj_stream
 * (which a verify must not trust) is needed.  8 bytes an event. */
typedef struct {
  uint8_t key[1 + PSL_UUID_BYTES]; /* kind ‖ id; kind 0: empty slot */
  uint32_t n, cap;
  uint64_t *seq;
} seqslot_t;

typedef struct {
  seqslot_t *slot;
  size_t cap, n; /* cap a power of two, n <= cap / 2 */
} seqindex_t;

static uint64_t key_hash(const uint8_t *p, size_t n) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * UINT64_C(0x100000001b3);
  return h ^ (h >> 29);
}

static seqslot_t *seqindex_find(seqindex_t *x, const uint8_t key[1 + PSL_UUID_BYTES]) {
  size_t i = key_hash(key, 1 + PSL_UUID_BYTES) & (x->cap - 1);
  while (x->slot[i].key[0] && memcmp(x->slot[i].key, key, 1 + PSL_UUID_BYTES) != 0)
    i = (i + 1) & (x->cap - 1);
  return &x->slot[i];
}

static int seqindex_add(seqindex_t *x, psl_str_t stream, uint64_t seq) {
  uint8_t key[1 + 8 + PSL_UUID_BYTES];
  if (!stream_key(stream, seq, key))
    return 0;
  if (x->n + 1 > x->cap / 2) {
    seqindex_t nx = {calloc(x->cap ? x->cap * 2 : 1024, sizeof(seqslot_t)),
                     x->cap ? x->cap * 2 : 1024, x->n};
    if (!nx.slot)
      return PSL_ENOMEM;
    for (size_t i = 0; i < x->cap; i++)
      if (x->slot[i].key[0])
        *seqindex_find(&nx, x->slot[i].key) = x->slot[i];
    free(x->slot);
    *x = nx;
  }
  seqslot_t *sl = seqindex_find(x, key);
  if (!sl->key[0]) {
    memcpy(sl->key, key, 1 + PSL_UUID_BYTES);
    x->n++;
  }
  if (sl->n == sl->cap) {
    uint32_t ncap = sl->cap ? sl->cap * 2 : 8;
    uint64_t *p = realloc(sl->seq, ncap * sizeof *p);
    if (!p)
      return PSL_ENOMEM;
    sl->seq = p;
    sl->cap = ncap;
  }
  sl->seq[sl->n++] = seq;
  return 0;
}

static void seqindex_free(seqindex_t *x) {
  for (size_t i = 0; i < x->cap; i++)
    free(x->slot[i].seq);
  free(x->slot);
}

typedef struct {
  logread_t lr;
  seqindex_t idx;
} foldread_t;

static int seqindex_iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                         void *fnarg) {
  foldread_t *fr = arg;
  uint8_t key[1 + 8 + PSL_UUID_BYTES];
  if (!stream_key(stream, 0, key) || !fr->idx.cap)
    return 0;
  seqslot_t *sl = seqindex_find(&fr->idx, key);
  for (uint32_t i = 0; sl->key[0] && i < sl->n; i++) {
    if (before_seq && sl->seq[i] >= before_seq)
      break;
    int rc = with_event(&fr->lr, sl->seq[i], fn, fnarg);
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- Our stream index. */

/* The proj_stream key of (stream, seq); 0 if the stream is not the domain's. */
static size_t stream_key(psl_str_t stream, uint64_t seq, uint8_t key[SKEY_BYTES]) {
  int kind = psl__stream_parse(stream.ptr, stream.len, key + 1);
  if (kind == PSL__STREAM_BAD)
    return 0;
  key[0] = kind == PSL__STREAM_PARTICIPANT ? 'p' : 's';
  be64(key + 1 + PSL_UUID_BYTES, seq);
  return SKEY_BYTES;
}

static int index_put(psl_projdb_t *db, MDB_txn *txn, psl_str_t stream, uint64_t seq) {
  uint8_t key[SKEY_BYTES];
  MDB_val k = {stream_key(stream, seq, key), key}, v = {0, NULL};
  if (!k.mv_size)
    return 0;
  return mdb_err(mdb_put(txn, db->stream, &k, &v, 0));
}

static int index_stream_iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                             void *fnarg) {
  logread_t *lr = arg;
  uint8_t start[SKEY_BYTES];
  MDB_cursor *c;
  if (!lr->db->have_log)
    return PSL_EINVALID;
  if (!stream_key(stream, 0, start))
    return 0;
  int rc = mdb_cursor_open(lr->txn, lr->db->stream, &c);
  if (rc)
    return mdb_err(rc);
  MDB_val k = {SKEY_BYTES, start}, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != SKEY_BYTES || memcmp(k.mv_data, start, 1 + PSL_UUID_BYTES) != 0)
      break;
    uint64_t seq = get_be64((const uint8_t *)k.mv_data + 1 + PSL_UUID_BYTES);
    if (before_seq && seq >= before_seq)
      break;
    if ((rc = with_event(lr, seq, fn, fnarg)))
      break;
  }
  mdb_cursor_close(c);
  if (rc)
    return rc;
  return mrc == MDB_NOTFOUND ? 0 : mdb_err(mrc);
}

/* proj_stream from the log's `events`, seq 1..upto (after a rebuild). */
static int index_rebuild(psl_projdb_t *db, MDB_txn *txn, uint64_t upto) {
  MDB_cursor *c;
  int rc = mdb_err(mdb_drop(txn, db->stream, 0));
  if (rc || !db->have_log)
    return rc;
  if ((rc = mdb_cursor_open(txn, db->log_events, &c)))
    return mdb_err(rc);
  MDB_val k, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    psl_event_t ev;
    if (k.mv_size != 8) {
      rc = PSL_ECORRUPT;
      break;
    }
    if (get_be64(k.mv_data) > upto)
      break;
    if ((rc = decode_record(&v, &ev)) || (rc = index_put(db, txn, ev.stream, ev.seq)))
      break;
  }
  mdb_cursor_close(c);
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : mdb_err(mrc);
}

/* ---- Apply. */

int psl_projdb_apply(psl_projdb_t *db, MDB_txn *txn, const psl_event_t *ev,
                     psl_stream_iter_fn iter, void *arg) {
  uint64_t seq;
  int rc = psl_projdb_seq(db, txn, &seq);
  if (rc)
    return rc;
  if (ev->seq != seq + 1)
    return PSL_ECORRUPT;
  logread_t lr = {db, txn};
  lstore_t ls = {{l_part_get, l_part_put, l_sess_get, l_sess_put, l_counter_add,
                  iter ? iter : index_stream_iter, iter ? arg : &lr},
                 db, txn};
  if ((rc = psl__engine_apply(&ls.ops, ev)) || (rc = index_put(db, txn, ev->stream, ev->seq)))
    return rc;
  return set_seq(db, txn, ev->seq);
}

/* ---- Queries. */

int psl_projdb_participant(psl_projdb_t *db, MDB_txn *txn, const uint8_t id[PSL_UUID_BYTES],
                           psl_participant_t *out) {
  MDB_val k = {PSL_UUID_BYTES, (void *)id}, v;
  psl_participant_init(out, id);
  int rc = mdb_get(txn, db->part, &k, &v);
  if (rc == MDB_NOTFOUND)
    return PSL_ENOTFOUND;
  if (rc)
    return mdb_err(rc);
  if ((rc = psl__participant_decode(v.mv_data, v.mv_size, out)))
    return rc;
  if (!out->known) {
    psl_participant_free(out);
    return PSL_ENOTFOUND;
  }
  return 0;
}

/* Every counter key of year (month: only that one), with its vector. */
static int scan_counters(psl_projdb_t *db, MDB_txn *txn, int year, int month,
                         int (*fn)(void *arg, const psl__ckey_t *k, const int64_t *vec),
                         void *arg) {
  MDB_cursor *c;
  uint8_t start[3];
  be16(start, (unsigned)year);
  start[2] = (uint8_t)month;
  int rc = mdb_cursor_open(txn, db->counters, &c);
  if (rc)
    return mdb_err(rc);
  MDB_val k = {3, start}, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    psl__ckey_t key;
    int64_t vec[PSL__C_N];
    if ((rc = psl__ckey_decode(k.mv_data, k.mv_size, &key)) ||
        (rc = psl__vec_decode(v.mv_data, v.mv_size, vec)))
      break;
    if (key.year != year || (month && key.month != month))
      break;
    if ((rc = fn(arg, &key, vec)))
      break;
  }
  mdb_cursor_close(c);
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : mdb_err(mrc);
}

/* Every year-facts record of (year, terr) — terr 0: of the year, each person once. */
static int scan_years(psl_projdb_t *db, MDB_txn *txn, int year, int terr,
                      int (*fn)(void *arg, const psl__year_t *y), void *arg) {
  MDB_cursor *c;
  uint8_t start[3];
  be16(start, (unsigned)year);
  start[2] = (uint8_t)terr;
  int rc = mdb_cursor_open(txn, db->year, &c);
  if (rc)
    return mdb_err(rc);
  MDB_val k = {terr ? 3u : 2u, start}, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    const uint8_t *kp = k.mv_data;
    if (k.mv_size != 19) {
      rc = PSL_ECORRUPT;
      break;
    }
    if (memcmp(kp, start, terr ? 3 : 2) != 0)
      break;
    psl__year_t y;
    y.year = year;
    memcpy(y.id, kp + 3, PSL_UUID_BYTES);
    if ((rc = psl__year_decode(v.mv_data, v.mv_size, &y)))
      break;
    if (!terr && psl__year_first_terr(&y) != kp[2]) {
      psl__year_free(&y); /* counted under its first territory */
      continue;
    }
    rc = fn(arg, &y);
    psl__year_free(&y);
    if (rc)
      break;
  }
  mdb_cursor_close(c);
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : mdb_err(mrc);
}

static int agg_counter(void *arg, const psl__ckey_t *k, const int64_t *vec) {
  psl_counters_t *c = arg;
  if (psl__ckey_matches(&c->q, k))
    psl__agg_vec(c, vec);
  return 0;
}

static int agg_year(void *arg, const psl__year_t *y) {
  psl__agg_year(arg, y);
  return 0;
}

int psl_projdb_counters(psl_projdb_t *db, MDB_txn *txn, const psl_counters_query_t *q,
                        psl_counters_t *out) {
  psl__counters_start(out, q);
  int rc = scan_counters(db, txn, q->year, q->month, agg_counter, out);
  return rc ? rc : scan_years(db, txn, q->year, q->terr, agg_year, out);
}

int psl_projdb_caseload(psl_projdb_t *db, MDB_txn *txn, int terr, psl_caseload_fn fn,
                        void *arg) {
  MDB_cursor *c;
  uint8_t start = (uint8_t)terr;
  int rc = mdb_cursor_open(txn, db->terr, &c);
  if (rc)
    return mdb_err(rc);
  psl_participant_t st;
  psl_participant_init(&st, NULL);
  MDB_val k = {1, &start}, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, terr ? MDB_SET_RANGE : MDB_FIRST); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 1 + PSL_UUID_BYTES) {
      rc = PSL_ECORRUPT;
      break;
    }
    const uint8_t *kp = k.mv_data;
    if (terr && kp[0] != terr)
      break;
    if ((rc = psl_projdb_participant(db, txn, kp + 1, &st)))
      break;
    rc = fn(arg, &st);
    psl_participant_free(&st);
    if (rc)
      break;
  }
  mdb_cursor_close(c);
  psl_participant_free(&st);
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : mdb_err(mrc);
}

typedef struct {
  psl_projdb_t *db;
  MDB_txn *txn;
  int (*fn)(void *fnarg, const psl__yplace_t *pl);
  void *fnarg;
} placescan_t;

static int place_of_counter(void *arg, const psl__ckey_t *k, const int64_t *vec) {
  placescan_t *ps = arg;
  psl__yplace_t pl = {k->terr, k->programme, 0, {0}};
  (void)vec;
  memcpy(pl.site, k->site, sizeof pl.site);
  return ps->fn(ps->fnarg, &pl);
}

static int places_of_year(void *arg, const psl__year_t *y) {
  placescan_t *ps = arg;
  int rc = 0;
  for (size_t i = 0; i < y->nplaces && !rc; i++)
    rc = ps->fn(ps->fnarg, &y->places[i]);
  return rc;
}

static int db_places(void *arg, int year, int (*fn)(void *fnarg, const psl__yplace_t *pl),
                     void *fnarg) {
  placescan_t *ps = arg;
  ps->fn = fn;
  ps->fnarg = fnarg;
  int rc = scan_counters(ps->db, ps->txn, year, 0, place_of_counter, ps);
  return rc ? rc : scan_years(ps->db, ps->txn, year, 0, places_of_year, ps);
}

static int db_query(void *arg, const psl_counters_query_t *q, psl_counters_t *c) {
  placescan_t *ps = arg;
  return psl_projdb_counters(ps->db, ps->txn, q, c);
}

int psl_projdb_report(psl_projdb_t *db, MDB_txn *txn, int year, int terr, psl_report_t *out) {
  placescan_t ps = {db, txn, NULL, NULL};
  return psl__report_build(year, terr, db_query, db_places, &ps, out);
}

/* ---- Store a rebuild, compare with one. */

typedef struct {
  psl_projdb_t *db;
  MDB_txn *txn;
  const psl_proj_t *mem;
  psl_diag_t *diag;
  size_t count;
  size_t years, caseload; /* entries expected in proj_year, proj_terr */
} walk_t;

static int store_part(void *arg, const void *item) {
  walk_t *w = arg;
  const psl_participant_t *st = item;
  psl__year_t *ys = NULL;
  size_t n = 0, cap = 0;
  w->db->out.len = 0;
  int rc = psl__participant_encode(&w->db->out, st);
  if (!rc) {
    MDB_val k = {PSL_UUID_BYTES, (void *)st->id}, v = {w->db->out.len, w->db->out.p};
    rc = mdb_err(mdb_put(w->txn, w->db->part, &k, &v, 0));
  }
  if (!rc)
    rc = years_of(st, &ys, &n, &cap);
  for (size_t i = 0; i < n && !rc; i++)
    rc = year_write(w->db, w->txn, &ys[i], 1);
  for (size_t i = 0; i < n; i++)
    psl__year_free(&ys[i]);
  free(ys);
  if (!rc && st->known)
    rc = caseload_write(w->db, w->txn, st->terr, st->id, st->status, 1);
  return rc;
}

static int store_sess(void *arg, const void *item) {
  walk_t *w = arg;
  const psl__session_t *ss = item;
  w->db->out.len = 0;
  int rc = psl__session_encode(&w->db->out, ss);
  if (rc)
    return rc;
  MDB_val k = {PSL_UUID_BYTES, (void *)ss->id}, v = {w->db->out.len, w->db->out.p};
  return mdb_err(mdb_put(w->txn, w->db->sess, &k, &v, 0));
}

static int store_counter(void *arg, const void *item) {
  walk_t *w = arg;
  const psl__ckey_t *key = item;
  int64_t vec[PSL__C_N];
  uint8_t kb[PSL__CKEY_MAX], vb[PSL__C_N * 8];
  psl__mem_counter(w->mem, key, vec);
  int zero = 1;
  for (int i = 0; i < PSL__C_N; i++)
    zero &= vec[i] == 0;
  if (zero)
    return 0;
  psl__vec_encode(vec, vb);
  MDB_val k = {psl__ckey_encode(key, kb), kb}, v = {sizeof vb, vb};
  return mdb_err(mdb_put(w->txn, w->db->counters, &k, &v, 0));
}

int psl_projdb_store(psl_projdb_t *db, MDB_txn *txn, const psl_proj_t *mem) {
  MDB_dbi all[] = {db->part, db->sess, db->counters, db->year, db->terr};
  walk_t w = {db, txn, mem, NULL, 0, 0, 0};
  int rc = 0;
  for (size_t i = 0; i < sizeof all / sizeof all[0] && !rc; i++)
    rc = mdb_err(mdb_drop(txn, all[i], 0));
  if (!rc) rc = psl__mem_each(mem, PSL__MEM_PARTS, store_part, &w);
  if (!rc) rc = psl__mem_each(mem, PSL__MEM_SESSIONS, store_sess, &w);
  if (!rc) rc = psl__mem_each(mem, PSL__MEM_COUNTERS, store_counter, &w);
  if (!rc) rc = index_rebuild(db, txn, psl_proj_seq(mem));
  if (!rc) rc = set_seq(db, txn, psl_proj_seq(mem));
  return rc;
}

static int differ(walk_t *w, const char *what, const uint8_t *id) {
  if (w->diag) {
    char hex[33] = "";
    for (int i = 0; id && i < PSL_UUID_BYTES; i++)
      snprintf(hex + 2 * i, 3, "%02x", id[i]);
    snprintf(w->diag->msg, sizeof w->diag->msg, "projections differ: %s %s", what, hex);
  }
  return PSL_ECORRUPT;
}

static size_t db_entries(MDB_txn *txn, MDB_dbi dbi) {
  MDB_stat st;
  return mdb_stat(txn, dbi, &st) == 0 ? st.ms_entries : (size_t)-1;
}

static int cmp_part(void *arg, const void *item) {
  walk_t *w = arg;
  const psl_participant_t *st = item;
  psl_participant_t got;
  psl__year_t *ys = NULL;
  size_t n = 0, cap = 0;
  MDB_val k = {PSL_UUID_BYTES, (void *)st->id}, v;
  psl_participant_init(&got, st->id);
  int rc = mdb_get(w->txn, w->db->part, &k, &v);
  if (rc)
    return rc == MDB_NOTFOUND ? differ(w, "participant missing", st->id) : mdb_err(rc);
  if ((rc = psl__participant_decode(v.mv_data, v.mv_size, &got)))
    return rc;
  int same = psl_participant_equal(&got, st);
  psl_participant_free(&got);
  if (!same)
    return differ(w, "participant", st->id);
  w->count++;
  if ((rc = years_of(st, &ys, &n, &cap)))
    return rc;
  for (size_t i = 0; i < n && !rc; i++) {
    unsigned seen = 0;
    for (size_t j = 0; j < ys[i].nplaces && !rc; j++) {
      uint8_t t = ys[i].places[j].terr, key[19];
      if (seen & (1u << t))
        continue;
      seen |= 1u << t;
      MDB_val yk = {year_key(key, ys[i].year, t, st->id), key}, yv;
      psl__year_t y;
      y.year = ys[i].year;
      memcpy(y.id, st->id, PSL_UUID_BYTES);
      if ((rc = mdb_get(w->txn, w->db->year, &yk, &yv))) {
        rc = rc == MDB_NOTFOUND ? differ(w, "year facts missing", st->id) : mdb_err(rc);
        break;
      }
      if ((rc = psl__year_decode(yv.mv_data, yv.mv_size, &y)))
        break;
      if (!psl__year_equal(&y, &ys[i]))
        rc = differ(w, "year facts", st->id);
      psl__year_free(&y);
      w->years++;
    }
  }
  for (size_t i = 0; i < n; i++)
    psl__year_free(&ys[i]);
  free(ys);
  if (!rc && st->known) {
    uint8_t key[1 + PSL_UUID_BYTES];
    key[0] = st->terr;
    memcpy(key + 1, st->id, PSL_UUID_BYTES);
    MDB_val ck = {sizeof key, key}, cv;
    rc = mdb_get(w->txn, w->db->terr, &ck, &cv);
    if (rc == MDB_NOTFOUND || (!rc && (cv.mv_size != 1 || *(uint8_t *)cv.mv_data != st->status)))
      rc = differ(w, "caseload", st->id);
    else
      rc = mdb_err(rc);
    w->caseload++;
  }
  return rc;
}

static int cmp_sess(void *arg, const void *item) {
  walk_t *w = arg;
  const psl__session_t *ss = item;
  psl__session_t got = {0};
  MDB_val k = {PSL_UUID_BYTES, (void *)ss->id}, v;
  int rc = mdb_get(w->txn, w->db->sess, &k, &v);
  if (rc)
    return rc == MDB_NOTFOUND ? differ(w, "session missing", ss->id) : mdb_err(rc);
  if ((rc = psl__session_decode(v.mv_data, v.mv_size, &got)))
    return rc;
  int same = psl__session_equal(&got, ss);
  psl__session_free(&got);
  w->count++;
  return same ? 0 : differ(w, "session", ss->id);
}

static int cmp_counter(void *arg, const psl__ckey_t *k, const int64_t *vec) {
  walk_t *w = arg;
  int64_t want[PSL__C_N];
  psl__mem_counter(w->mem, k, want);
  w->count++;
  return memcmp(want, vec, sizeof want) == 0 ? 0 : differ(w, "counters of a key", NULL);
}

static int count_nonzero(void *arg, const void *item) {
  walk_t *w = arg;
  int64_t vec[PSL__C_N];
  psl__mem_counter(w->mem, item, vec);
  for (int i = 0; i < PSL__C_N; i++)
    if (vec[i]) {
      w->count++;
      break;
    }
  return 0;
}

/* Every counter record, whatever its year. */
static int scan_all_counters(walk_t *w) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(w->txn, w->db->counters, &c);
  if (rc)
    return mdb_err(rc);
  MDB_val k, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    psl__ckey_t key;
    int64_t vec[PSL__C_N];
    if ((rc = psl__ckey_decode(k.mv_data, k.mv_size, &key)) ||
        (rc = psl__vec_decode(v.mv_data, v.mv_size, vec)) || (rc = cmp_counter(w, &key, vec)))
      break;
  }
  mdb_cursor_close(c);
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : mdb_err(mrc);
}

int psl_projdb_compare(psl_projdb_t *db, MDB_txn *txn, const psl_proj_t *mem,
                       psl_diag_t *diag) {
  walk_t w = {db, txn, mem, diag, 0, 0, 0};
  uint64_t seq;
  int rc = psl_projdb_seq(db, txn, &seq);
  if (rc)
    return rc;
  if (seq != psl_proj_seq(mem))
    return differ(&w, "proj_seq", NULL);
  size_t years_expected, caseload_expected;
  if ((rc = psl__mem_each(mem, PSL__MEM_PARTS, cmp_part, &w)))
    goto done;
  years_expected = w.years;
  caseload_expected = w.caseload;
  if (w.count != db_entries(txn, db->part)) {
    rc = differ(&w, "participant count", NULL);
    goto done;
  }
  if (years_expected != db_entries(txn, db->year)) {
    rc = differ(&w, "year facts count", NULL);
    goto done;
  }
  if (caseload_expected != db_entries(txn, db->terr)) {
    rc = differ(&w, "caseload count", NULL);
    goto done;
  }
  w.count = 0;
  if ((rc = psl__mem_each(mem, PSL__MEM_SESSIONS, cmp_sess, &w)))
    goto done;
  if (w.count != db_entries(txn, db->sess)) {
    rc = differ(&w, "session count", NULL);
    goto done;
  }
  w.count = 0;
  if ((rc = scan_all_counters(&w)))
    goto done;
  size_t stored = w.count;
  w.count = 0;
  psl__mem_each(mem, PSL__MEM_COUNTERS, count_nonzero, &w);
  if (w.count != stored)
    rc = differ(&w, "counter key count", NULL);
done:
  return rc;
}

/* ---- Folding the log's events in a transaction. */

typedef struct {
  psl_projdb_t *db;
  MDB_txn *txn;
  psl_proj_t *mem;
} foldlog_t;

int psl_projdb_fold_log(psl_projdb_t *db, MDB_txn *txn, uint64_t from, uint64_t upto,
                        psl_proj_t *mem) {
  MDB_cursor *c;
  uint8_t sk[8];
  if (!db->have_log)
    return PSL_EINVALID;
  int rc = mdb_cursor_open(txn, db->log_events, &c);
  if (rc)
    return mdb_err(rc);
  foldread_t fr = {{db, txn}, {NULL, 0, 0}};
  /* the streams' seqs from 1: a recomputation may need events before `from` */
  be64(sk, 1);
  MDB_val k = {8, sk}, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 8) {
      rc = PSL_ECORRUPT;
      break;
    }
    uint64_t seq = get_be64(k.mv_data);
    if (seq > upto)
      break;
    psl_event_t ev;
    if ((rc = decode_record(&v, &ev)))
      break;
    if (seq > from && (rc = psl_proj_apply(mem, &ev, seqindex_iter, &fr)))
      break;
    if ((rc = seqindex_add(&fr.idx, ev.stream, seq)))
      break;
  }
  mdb_cursor_close(c);
  seqindex_free(&fr.idx);
  if (!rc && mrc != MDB_NOTFOUND)
    rc = mdb_err(mrc);
  if (!rc)
    psl__mem_set_seq(mem, upto > psl_proj_seq(mem) ? upto : psl_proj_seq(mem));
  return rc;
}

int psl_projdb_verify(psl_projdb_t *db, MDB_txn *txn, psl_diag_t *diag) {
  uint64_t seq;
  psl_proj_t *mem;
  int rc = psl_projdb_seq(db, txn, &seq);
  if (rc)
    return rc;
  if ((rc = psl_proj_new(&mem)))
    return rc;
  rc = psl_projdb_fold_log(db, txn, 0, seq, mem);
  if (!rc)
    rc = psl_projdb_compare(db, txn, mem, diag);
  psl_proj_free(mem);
  return rc;
}

/* ---- Hooks. */

static int log_head(psl_projdb_t *db, MDB_txn *txn, uint64_t *head) {
  MDB_cursor *c;
  MDB_val k, v;
  *head = 0;
  if (!db->have_log)
    return 0;
  int rc = mdb_cursor_open(txn, db->log_events, &c);
  if (rc)
    return mdb_err(rc);
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  if (rc == 0 && k.mv_size == 8)
    *head = get_be64(k.mv_data);
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
}

/* Bring the projections to the log's head: fold what is missing, or rebuild. */
static int catch_up(psl_projdb_t *db, MDB_txn *txn) {
  uint64_t seq, head;
  MDB_val k = META_FORMAT, v;
  int rc = psl_projdb_seq(db, txn, &seq);
  if (!rc)
    rc = log_head(db, txn, &head);
  if (rc)
    return rc;
  int fmt_ok = mdb_get(txn, db->meta, &k, &v) == 0 && v.mv_size == 1 &&
               *(uint8_t *)v.mv_data == PROJ_FORMAT;
  if (seq == head && (fmt_ok || head == 0))
    return head == 0 ? set_seq(db, txn, 0) : 0;
  if (fmt_ok && seq < head && head - seq < CATCHUP_REBUILD_MIN) {
    logread_t lr = {db, txn};
    MDB_cursor *c;
    uint8_t sk[8];
    if ((rc = mdb_cursor_open(txn, db->log_events, &c)))
      return mdb_err(rc);
    be64(sk, seq + 1);
    k.mv_size = 8;
    k.mv_data = sk;
    int mrc;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      psl_event_t ev;
      /* the cursor stays valid across the puts of other databases */
      if ((rc = decode_record(&v, &ev)) ||
          (rc = psl_projdb_apply(db, txn, &ev, index_stream_iter, &lr)))
        break;
    }
    mdb_cursor_close(c);
    return rc ? rc : mrc == MDB_NOTFOUND ? 0 : mdb_err(mrc);
  }
  psl_proj_t *mem;
  if ((rc = psl_proj_new(&mem)))
    return rc;
  rc = psl_projdb_fold_log(db, txn, 0, head, mem);
  if (!rc)
    rc = psl_projdb_store(db, txn, mem);
  psl_proj_free(mem);
  return rc;
}

static int hook_open(void *arg, MDB_env *env, MDB_txn *txn) {
  psl_projdb_t **slot = arg;
  psl_projdb_free(*slot);
  *slot = NULL;
  int rc = psl_projdb_open(slot, env, txn);
  return rc ? rc : catch_up(*slot, txn);
}

static int hook_apply(void *arg, MDB_txn *txn, const psl_event_t *ev) {
  psl_projdb_t **slot = arg;
  return *slot ? psl_projdb_apply(*slot, txn, ev, NULL, NULL) : PSL_EINTERNAL;
}

psl_log_hooks_t psl_projection_hooks(psl_projdb_t **slot) {
  psl_log_hooks_t h = {hook_open, hook_apply, slot};
  return h;
}
