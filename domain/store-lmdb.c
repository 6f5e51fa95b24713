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
 *   proj_year      key  year (2) ‖ terr (1) ‖ lower bound (16: a participant id)
 *                  val  a year block (codec.c): the per-year facts of a run of people, one
 *                       entry each, ids ascending.  A person's entry is stored under each
 *                       territory where they had activity that year, and once more under
 *                       terr 0: a query for one territory reads its prefix, a query for all
 *                       reads terr 0's (so a transferred person counts once).  Within a
 *                       (year, terr), each block's key is <= its ids, which are < the next
 *                       block's key: a person's block is the last whose key is <= the id.
 *                       A block is rewritten whole when one of its entries changes, split
 *                       in two past PSL__YBLOCK_MAX bytes, deleted when empty; a rebuild
 *                       writes them PSL__YBLOCK_FILL full.  Where blocks split thus depends
 *                       on history: compare reads their entries, not their bounds
 *   proj_terr      key  terr (1) ‖ participant id (16)
 *                  val  status (1): caseloads, by current territory
 *   proj_stream    key  kind (1: 'p' participant, 's' session) ‖ stream id (16)
 *                  val  seq (8), MDB_DUPSORT | MDB_DUPFIXED: every event of the stream, as
 *                       sorted duplicates appended in order (MDB_APPENDDUP; a rebuild writes
 *                       each stream's run in one MDB_MULTIPLE put)
 *   proj_meta      "proj_seq" → seq (8): the last event the projections reflect
 *                  "format"   → 1 byte, PSL__PROJ_FORMAT: these layouts, codec.c's records and
 *                               codes.c's tables; another value (or a database whose flags
 *                               differ) makes the open drop them all and the hooks rebuild
 *
 * Files: this one opens the databases and folds events into them (the psl__store_t below);
 * lmdb-query.c answers queries; lmdb-rebuild.c stores and compares rebuilds, verifies, and
 * holds the log hooks.
 *
 * The fold is engine.c's, through the psl__store_t below: part_get decodes a state and
 * snapshots what its index entries (year facts, caseload) depend on; part_put encodes it and,
 * only when that changed, rewrites the index entries that differ.  Per event: one state get
 * and put, one counter get and put (additive events), one proj_stream append, proj_seq.
 *
 * Recomputations read a stream's earlier events through proj_stream and the log's `events`
 * (seq → hash (32) ‖ canonical, written before each hooks.apply).  Why our own stream index
 * and not the log's `streams`: the log writes `streams` at the end of each batch
 * (server/log_index.c), so inside the writer's transaction it lacks the batch's own events,
 * which a void in the same batch must see.  Rebuilds and verifies keep each stream's seqs
 * in memory as they scan `events` (lmdb-rebuild.c): a verify must not trust the projections'
 * own index.  Nothing else of the log's layout is read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "psl_domain_int.h"

size_t psl__test_yblock_max;

static const MDB_val META_SEQ = {8, (void *)"proj_seq"};
static const MDB_val META_FORMAT = {6, (void *)"format"};

int psl__db_err(int rc) { return rc == 0 ? 0 : psl_err_from_mdb(rc); }

/* ---- Open. */

static int open_log_dbs(psl_projdb_t *db, MDB_txn *txn) {
  if (mdb_dbi_open(txn, "events", 0, &db->log_events) == 0)
    db->have_log = 1;
  return 0;
}

static const char *const proj_names[] = {"proj_part", "proj_sess", "proj_counters", "proj_year",
                                         "proj_terr", "proj_meta", "proj_stream"};

/* Databases of another format (a layout or a flag changed): delete them all, so that they
 * are created anew and the open's catch-up rebuilds them.  A read-only txn leaves them. */
static int drop_other_format(MDB_txn *txn) {
  MDB_dbi meta, dbi;
  MDB_val k = META_FORMAT, v;
  if (mdb_dbi_open(txn, "proj_meta", 0, &meta) != 0)
    return 0; /* none yet */
  int rc = mdb_get(txn, meta, &k, &v);
  if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size == 1 && *(uint8_t *)v.mv_data == PSL__PROJ_FORMAT))
    return 0;
  if (rc)
    return psl__db_err(rc);
  for (size_t i = 0; i < sizeof proj_names / sizeof proj_names[0]; i++) {
    if (mdb_dbi_open(txn, proj_names[i], 0, &dbi) != 0)
      continue;
    rc = mdb_drop(txn, dbi, 1);
    if (rc == EACCES)
      return 0; /* read-only: the caller sees the old format and must not use it */
    if (rc)
      return psl__db_err(rc);
  }
  return 0;
}

int psl_projdb_open(psl_projdb_t **out, MDB_env *env, MDB_txn *txn) {
  (void)env;
  psl_projdb_t *db = calloc(1, sizeof *db);
  if (!db)
    return PSL_ENOMEM;
  psl_participant_init(&db->cur, NULL);
  psl_participant_init(&db->old, NULL);
  MDB_dbi *dbis[] = {&db->part, &db->sess, &db->counters, &db->year,
                     &db->terr, &db->meta, &db->stream};
  int rc = drop_other_format(txn);
  for (size_t i = 0; i < sizeof dbis / sizeof dbis[0] && !rc; i++) {
    unsigned flags = dbis[i] == &db->stream ? MDB_DUPSORT | MDB_DUPFIXED : 0;
    int mrc = mdb_dbi_open(txn, proj_names[i], flags | MDB_CREATE, dbis[i]);
    if (mrc == EACCES) /* a read-only transaction: the databases must exist */
      mrc = mdb_dbi_open(txn, proj_names[i], flags, dbis[i]);
    unsigned have = 0;
    if (mrc == 0 && flags && mdb_dbi_flags(txn, *dbis[i], &have) == 0 &&
        (have & flags) != flags) {
      /* made by an older layout under the same format byte: remake it empty (the
       * catch-up then rebuilds, proj_seq being reset with it) */
      if ((mrc = mdb_drop(txn, *dbis[i], 1)) == 0 &&
          (mrc = mdb_dbi_open(txn, proj_names[i], flags | MDB_CREATE, dbis[i])) == 0) {
        MDB_val k = META_SEQ;
        if ((mrc = mdb_del(txn, db->meta, &k, NULL)) == MDB_NOTFOUND)
          mrc = 0;
      }
    }
    rc = psl__db_err(mrc);
  }
  if (!rc)
    rc = open_log_dbs(db, txn);
  if (rc) {
    free(db);
    return rc;
  }
  *out = db;
  return 0;
}

void psl_projdb_free(psl_projdb_t *db) {
  if (!db)
    return;
  free(db->old.marks);
  free(db->old.transfers);
  psl_participant_free(&db->cur);
  psl__session_free(&db->cur_sess);
  psl__out_free(&db->out);
  psl__out_free(&db->yentry);
  psl__out_free(&db->yblock);
  psl__out_free(&db->ysplit);
  free(db);
}

int psl_projdb_seq(psl_projdb_t *db, MDB_txn *txn, uint64_t *seq) {
  MDB_val k = META_SEQ, v;
  int rc = mdb_get(txn, db->meta, &k, &v);
  *seq = 0;
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc)
    return psl__db_err(rc);
  if (v.mv_size != 8)
    return PSL_ECORRUPT;
  *seq = psl__get_be64(v.mv_data);
  return 0;
}

/* proj_seq, and with it (format = 1) the format byte: a store writes it, an apply does not
 * need to (the databases it folds into already have that format). */
int psl__db_set_seq(psl_projdb_t *db, MDB_txn *txn, uint64_t seq, int format) {
  uint8_t b[8];
  uint8_t fmt = PSL__PROJ_FORMAT;
  psl__be64(b, seq);
  MDB_val k = META_SEQ, v = {8, b};
  int rc = mdb_put(txn, db->meta, &k, &v, 0);
  if (!rc && format) {
    k = META_FORMAT;
    v.mv_size = 1;
    v.mv_data = &fmt;
    rc = mdb_put(txn, db->meta, &k, &v, 0);
  }
  return psl__db_err(rc);
}

int psl__db_format_ok(psl_projdb_t *db, MDB_txn *txn) {
  MDB_val k = META_FORMAT, v;
  return mdb_get(txn, db->meta, &k, &v) == 0 && v.mv_size == 1 &&
         *(uint8_t *)v.mv_data == PSL__PROJ_FORMAT;
}

/* ---- Index entries implied by a state. */

/* The year facts of st, one per year of activity (none unless it counts). */
int psl__db_years_of(const psl_participant_t *st, psl__year_t **out, size_t *n, size_t *cap) {
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

void psl__db_year_key(uint8_t key[PSL__YKEY_BYTES], int year, uint8_t terr,
                      const uint8_t id[PSL_UUID_BYTES]) {
  psl__be16(key, (unsigned)year);
  key[2] = terr;
  memcpy(key + 3, id, PSL_UUID_BYTES);
}

/* Territories of a year's entries as bits: terr 0 and those of its places. */
static unsigned year_terrs(const psl__year_t *y) {
  unsigned t = 1;
  for (size_t i = 0; y && i < y->nplaces; i++)
    t |= 1u << (y->places[i].terr & 31);
  return y ? t : 0;
}

/* The block of (year, terr) where id belongs, the cursor on it: the last whose key is <= id,
 * else the first of (year, terr) (*rekey = 1: id goes below its bound).  *have = 0 when
 * (year, terr) has no block. */
static int block_find(MDB_cursor *c, const uint8_t want[PSL__YKEY_BYTES], MDB_val *k, MDB_val *v,
                      int *have, int *rekey) {
  *have = *rekey = 0;
  k->mv_size = PSL__YKEY_BYTES;
  k->mv_data = (void *)want;
  int mrc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
  if (mrc && mrc != MDB_NOTFOUND)
    return psl__db_err(mrc);
  int at = mrc == 0 && k->mv_size == PSL__YKEY_BYTES && memcmp(k->mv_data, want, 3) == 0;
  if (at && memcmp(k->mv_data, want, PSL__YKEY_BYTES) == 0) {
    *have = 1;
    return 0;
  }
  MDB_val pk, pv;
  int prc = mdb_cursor_get(c, &pk, &pv, mrc == 0 ? MDB_PREV : MDB_LAST);
  if (prc && prc != MDB_NOTFOUND)
    return psl__db_err(prc);
  if (prc == 0 && pk.mv_size == PSL__YKEY_BYTES && memcmp(pk.mv_data, want, 3) == 0) {
    *k = pk;
    *v = pv;
    *have = 1;
  } else if (at) { /* k, v: still the block SET_RANGE found (nothing was written since) */
    *have = *rekey = 1;
  }
  return 0;
}

/* Put block o under key (year, terr, the id at bound), first deleting old (a key, or NULL). */
static int block_put(psl_projdb_t *db, MDB_txn *txn, const uint8_t *old, const uint8_t *key3,
                     const uint8_t *bound, const psl__out_t *o) {
  uint8_t key[PSL__YKEY_BYTES];
  memcpy(key, key3, 3);
  memcpy(key + 3, bound, PSL_UUID_BYTES);
  MDB_val k = {sizeof key, key}, v = {o->len, o->p};
  if (old && memcmp(old, key, sizeof key) != 0) {
    MDB_val ok = {sizeof key, (void *)old};
    int rc = mdb_del(txn, db->year, &ok, NULL);
    if (rc)
      return psl__db_err(rc);
  }
  return psl__db_err(mdb_put(txn, db->year, &k, &v, 0));
}

/* Set (entry not NULL) or remove id's entry in its block of (year, terr). */
static int block_set(psl_projdb_t *db, MDB_txn *txn, int year, unsigned terr,
                     const uint8_t id[PSL_UUID_BYTES], const psl__out_t *entry) {
  uint8_t want[PSL__YKEY_BYTES], old[PSL__YKEY_BYTES];
  MDB_cursor *c;
  MDB_val k, v;
  psl__yblock_t b;
  int have, rekey;
  psl__db_year_key(want, year, (uint8_t)terr, id);
  int rc = psl__db_err(mdb_cursor_open(txn, db->year, &c));
  if (rc)
    return rc;
  rc = block_find(c, want, &k, &v, &have, &rekey);
  if (!rc && have) {
    memcpy(old, k.mv_data, sizeof old);
    rc = psl__yblock_open(v.mv_data, v.mv_size, &b);
  }
  uint32_t at;
  if (!rc && !entry && have && !psl__yblock_find(&b, id, &at))
    have = 0; /* nothing to remove */
  if (!rc && (have || entry))
    rc = psl__yblock_splice(&db->yblock, have ? &b : NULL, id, entry ? entry->p : NULL,
                            entry ? entry->len : 0);
  mdb_cursor_close(c);
  if (rc || (!have && !entry))
    return rc;
  /* the block as it is to be: db->yblock (nothing of LMDB's pages is read from here on) */
  if (db->yblock.len == 0)
    return psl__db_err(mdb_del(txn, db->year, &(MDB_val){sizeof old, old}, NULL));
  if ((rc = psl__yblock_open(db->yblock.p, db->yblock.len, &b)))
    return rc;
  /* the bound stays, unless id is the block's first (a new block, or one it goes below) */
  const uint8_t *bound = have && !rekey ? old + 3 : b.ids;
  if (db->yblock.len <= PSL__YBLOCK_MAX || b.n < 2)
    return block_put(db, txn, have ? old : NULL, want, bound, &db->yblock);
  /* split in two halves by bytes: the left keeps the bound, the right starts at its first id */
  uint32_t half;
  if ((rc = psl__yblock_middle(&b, &half)) ||
      (rc = psl__yblock_slice(&db->ysplit, &b, 0, half)) ||
      (rc = block_put(db, txn, have ? old : NULL, want, bound, &db->ysplit)) ||
      (rc = psl__yblock_slice(&db->ysplit, &b, half, b.n)))
    return rc;
  return block_put(db, txn, NULL, want, b.ids + (size_t)half * PSL_UUID_BYTES, &db->ysplit);
}

int psl__db_year_write(psl_projdb_t *db, MDB_txn *txn, const psl__year_t *old,
                       const psl__year_t *y) {
  unsigned put = year_terrs(y), del = year_terrs(old) & ~put;
  const psl__year_t *any = y ? y : old;
  int rc = 0;
  if (y) {
    db->yentry.len = 0;
    if ((rc = psl__yentry_encode(&db->yentry, y)))
      return rc;
  }
  for (unsigned t = 0; t < 32 && !rc; t++)
    if ((put | del) & (1u << t))
      rc = block_set(db, txn, any->year, t, any->id, put & (1u << t) ? &db->yentry : NULL);
  return rc;
}

int psl__db_caseload_write(psl_projdb_t *db, MDB_txn *txn, uint8_t terr,
                          const uint8_t id[PSL_UUID_BYTES], int status, int put) {
  uint8_t key[1 + PSL_UUID_BYTES], s = (uint8_t)status;
  key[0] = terr;
  memcpy(key + 1, id, PSL_UUID_BYTES);
  MDB_val k = {sizeof key, key}, v = {1, &s};
  int rc = put ? mdb_put(txn, db->terr, &k, &v, 0) : mdb_del(txn, db->terr, &k, NULL);
  return rc == MDB_NOTFOUND ? 0 : psl__db_err(rc);
}

/* ---- What a state's index entries depend on (year facts: counters.c's psl__year_make;
 * caseload: known, terr, status). */

static int index_inputs_equal(const psl_participant_t *a, const psl_participant_t *b) {
  return a->known == b->known && a->merged == b->merged && a->status == b->status &&
         a->terr == b->terr && a->gender == b->gender && a->education == b->education &&
         a->rsa == b->rsa && a->birth_year == b->birth_year && a->exit_reason == b->exit_reason &&
         a->referred_at == b->referred_at && a->activated_at == b->activated_at &&
         a->exited_at == b->exited_at && a->housing_at == b->housing_at &&
         a->homeless_at == b->homeless_at && a->care_at == b->care_at &&
         a->employment_at == b->employment_at && a->training_at == b->training_at &&
         a->ref_terr == b->ref_terr && a->ref_programme == b->ref_programme &&
         strcmp(a->ref_site, b->ref_site) == 0 && a->nmarks == b->nmarks &&
         a->ntransfers == b->ntransfers &&
         (!a->nmarks || memcmp(a->marks, b->marks, a->nmarks * sizeof *a->marks) == 0) &&
         (!a->ntransfers ||
          memcmp(a->transfers, b->transfers, a->ntransfers * sizeof *a->transfers) == 0);
}

/* db->old = st's index inputs (arrays copied into db's scratch). */
static int snapshot(psl_projdb_t *db, const psl_participant_t *st) {
  uint32_t *marks = db->old.marks;
  psl_transfer_t *transfers = db->old.transfers;
  if (st->nmarks > db->cap_old_marks) {
    uint32_t *m = realloc(marks, st->nmarks * sizeof *m);
    if (!m)
      return PSL_ENOMEM;
    db->old.marks = marks = m;
    db->cap_old_marks = st->nmarks;
  }
  if (st->ntransfers > db->cap_old_transfers) {
    psl_transfer_t *t = realloc(transfers, st->ntransfers * sizeof *t);
    if (!t)
      return PSL_ENOMEM;
    db->old.transfers = transfers = t;
    db->cap_old_transfers = st->ntransfers;
  }
  db->old = *st;
  db->old.marks = marks;
  db->old.transfers = transfers;
  db->old.referrals = NULL;
  db->old.nreferrals = 0;
  if (st->nmarks)
    memcpy(marks, st->marks, st->nmarks * sizeof *marks);
  if (st->ntransfers)
    memcpy(transfers, st->transfers, st->ntransfers * sizeof *transfers);
  return 0;
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
    return psl__db_err(rc);
  } else if ((rc = psl__participant_decode(v.mv_data, v.mv_size, &db->cur))) {
    return rc;
  }
  if ((rc = snapshot(db, &db->cur)))
    return rc;
  *out = &db->cur;
  return 0;
}

static int l_part_put(psl__store_t *s, psl_participant_t *st) {
  lstore_t *ls = (lstore_t *)s;
  psl_projdb_t *db = ls->db;
  psl__year_t *olds = NULL, *neu = NULL;
  size_t no = 0, nn = 0, capo = 0, capn = 0;
  db->out.len = 0;
  int rc = psl__participant_encode(&db->out, st);
  if (!rc) {
    MDB_val k = {PSL_UUID_BYTES, st->id}, v = {db->out.len, db->out.p};
    rc = psl__db_err(mdb_put(ls->txn, db->part, &k, &v, 0));
  }
  if (rc || index_inputs_equal(&db->old, st))
    return rc;
  /* year facts: rewrite the years whose facts changed */
  if (!(rc = psl__db_years_of(&db->old, &olds, &no, &capo)))
    rc = psl__db_years_of(st, &neu, &nn, &capn);
  for (size_t i = 0; i < no && !rc; i++) {
    size_t j = 0;
    while (j < nn && neu[j].year != olds[i].year)
      j++;
    if (j == nn)
      rc = psl__db_year_write(db, ls->txn, &olds[i], NULL);
  }
  for (size_t j = 0; j < nn && !rc; j++) {
    size_t i = 0;
    while (i < no && olds[i].year != neu[j].year)
      i++;
    if (i == no || !psl__year_equal(&olds[i], &neu[j]))
      rc = psl__db_year_write(db, ls->txn, i == no ? NULL : &olds[i], &neu[j]);
  }
  for (size_t i = 0; i < no; i++)
    psl__year_free(&olds[i]);
  for (size_t j = 0; j < nn; j++)
    psl__year_free(&neu[j]);
  free(olds);
  free(neu);
  /* caseload */
  if (!rc && (db->old.known != st->known || db->old.terr != st->terr ||
              db->old.status != st->status)) {
    if (db->old.known)
      rc = psl__db_caseload_write(db, ls->txn, db->old.terr, st->id, 0, 0);
    if (!rc && st->known)
      rc = psl__db_caseload_write(db, ls->txn, st->terr, st->id, st->status, 1);
  }
  /* what is stored now is the "old" of the next change */
  return rc ? rc : snapshot(db, st);
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
    rc = psl__db_err(rc);
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
  return psl__db_err(mdb_put(ls->txn, db->sess, &k, &v, 0));
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
    return psl__db_err(rc);
  else if ((rc = psl__vec_decode(v.mv_data, v.mv_size, cur)))
    return rc;
  int zero = 1;
  for (int i = 0; i < PSL__C_N; i++) {
    cur[i] += vec[i];
    zero &= cur[i] == 0;
  }
  if (zero) {
    rc = mdb_del(ls->txn, ls->db->counters, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : psl__db_err(rc);
  }
  psl__vec_encode(cur, vb);
  v.mv_size = sizeof vb;
  v.mv_data = vb;
  return psl__db_err(mdb_put(ls->txn, ls->db->counters, &k, &v, 0));
}

/* ---- Reading a stream's earlier events from the log's databases. */

int psl__db_decode_record(const MDB_val *v, psl_event_t *ev) {
  if (v->mv_size <= PSL_HASH_BYTES)
    return PSL_ECORRUPT;
  const uint8_t *rec = v->mv_data;
  if (psl__event_read_stored(rec + PSL_HASH_BYTES, v->mv_size - PSL_HASH_BYTES, ev) &&
      psl_event_decode_stored(rec + PSL_HASH_BYTES, v->mv_size - PSL_HASH_BYTES, ev, NULL))
    return PSL_ECORRUPT;
  memcpy(ev->hash, rec, PSL_HASH_BYTES);
  ev->has_hash = 1;
  return 0;
}

/* Event seq of the log's `events` into fn. */
int psl__db_with_event(psl__logread_t *lr, uint64_t seq, psl_event_fn fn, void *fnarg) {
  uint8_t sk[8];
  psl_event_t ev;
  psl__be64(sk, seq);
  MDB_val k = {8, sk}, v;
  int mrc = mdb_get(lr->txn, lr->db->log_events, &k, &v);
  if (mrc)
    return mrc == MDB_NOTFOUND ? PSL_ECORRUPT : psl__db_err(mrc);
  int rc = psl__db_decode_record(&v, &ev);
  return rc ? rc : fn(fnarg, &ev);
}

/* ---- Our stream index. */

/* The proj_stream key of a stream; 0 if the stream is not the domain's. */
size_t psl__db_stream_key(psl_str_t stream, uint8_t key[PSL__SKEY_BYTES]) {
  int kind = psl__stream_parse(stream.ptr, stream.len, key + 1);
  if (kind == PSL__STREAM_BAD)
    return 0;
  key[0] = kind == PSL__STREAM_PARTICIPANT ? 'p' : 's';
  return PSL__SKEY_BYTES;
}

static int index_put(psl_projdb_t *db, MDB_txn *txn, psl_str_t stream, uint64_t seq) {
  uint8_t key[PSL__SKEY_BYTES], sv[8];
  MDB_val k = {psl__db_stream_key(stream, key), key}, v = {8, sv};
  if (!k.mv_size)
    return 0;
  psl__be64(sv, seq);
  /* seqs grow along a stream: append at the end of its duplicates */
  int rc = mdb_put(txn, db->stream, &k, &v, MDB_APPENDDUP);
  if (rc == MDB_KEYEXIST) { /* not past the last: insert in place (or already there) */
    rc = mdb_put(txn, db->stream, &k, &v, MDB_NODUPDATA);
    if (rc == MDB_KEYEXIST)
      rc = 0;
  }
  return psl__db_err(rc);
}

int psl__db_index_stream_iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                             void *fnarg) {
  psl__logread_t *lr = arg;
  uint8_t key[PSL__SKEY_BYTES];
  MDB_cursor *c;
  if (!lr->db->have_log)
    return PSL_EINVALID;
  if (!psl__db_stream_key(stream, key))
    return 0;
  int rc = mdb_cursor_open(lr->txn, lr->db->stream, &c);
  if (rc)
    return psl__db_err(rc);
  MDB_val k = {PSL__SKEY_BYTES, key}, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
    if (v.mv_size != 8) {
      rc = PSL_ECORRUPT;
      break;
    }
    uint64_t seq = psl__get_be64(v.mv_data);
    if (before_seq && seq >= before_seq)
      break;
    if ((rc = psl__db_with_event(lr, seq, fn, fnarg)))
      break;
  }
  mdb_cursor_close(c);
  if (rc)
    return rc;
  return mrc == MDB_NOTFOUND ? 0 : psl__db_err(mrc);
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
  psl__logread_t lr = {db, txn};
  lstore_t ls = {{l_part_get, l_part_put, l_sess_get, l_sess_put, l_counter_add,
                  iter ? iter : psl__db_index_stream_iter, iter ? arg : &lr},
                 db, txn};
  if ((rc = psl__engine_apply(&ls.ops, ev)) || (rc = index_put(db, txn, ev->stream, ev->seq)))
    return rc;
  return psl__db_set_seq(db, txn, ev->seq, ev->seq == 1);
}

