/*
 * lmdb-query.c — queries of the LMDB store (layouts in store-lmdb.c): a participant's state,
 * counters (the year's counter keys plus its per-year facts of the territory, or of terr 0
 * for all: counters.c explains why that is exact), caseloads, the yearly report.  Each runs
 * in the caller's transaction, on any thread; nothing here writes.
 *
 * A counters query reads the year's facts as proj_year keeps them, in blocks of people
 * (codec.c), and aggregates each block straight from LMDB's pages (psl__agg_block): one
 * cursor step per block, no decoder, no copy.  On bench-proj's 10M-event log that is ~7,000
 * blocks for ~60,000 people a year, ~1.1 ms for all territories.
 */
#include <stdlib.h>

#include "psl_domain_int.h"

/* ---- Queries. */

int psl_projdb_participant(psl_projdb_t *db, MDB_txn *txn, const uint8_t id[PSL_UUID_BYTES],
                           psl_participant_t *out) {
  MDB_val k = {PSL_UUID_BYTES, (void *)id}, v;
  psl_participant_init(out, id);
  int rc = mdb_get(txn, db->part, &k, &v);
  if (rc == MDB_NOTFOUND)
    return PSL_ENOTFOUND;
  if (rc)
    return psl__db_err(rc);
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
  psl__be16(start, (unsigned)year);
  start[2] = (uint8_t)month;
  int rc = mdb_cursor_open(txn, db->counters, &c);
  if (rc)
    return psl__db_err(rc);
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
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : psl__db_err(mrc);
}

/* Every year block of (year, terr) — terr 0: of the year, each person once — into fn, as
 * stored (the bytes stay valid for the transaction). */
static int scan_years(psl_projdb_t *db, MDB_txn *txn, int year, int terr,
                      int (*fn)(void *arg, const uint8_t *block, size_t len), void *arg) {
  MDB_cursor *c;
  uint8_t start[3];
  psl__be16(start, (unsigned)year);
  start[2] = (uint8_t)terr;
  int rc = mdb_cursor_open(txn, db->year, &c);
  if (rc)
    return psl__db_err(rc);
  MDB_val k = {3, start}, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != PSL__YKEY_BYTES) {
      rc = PSL_ECORRUPT;
      break;
    }
    if (memcmp(k.mv_data, start, 3) != 0)
      break;
    if ((rc = fn(arg, v.mv_data, v.mv_size)))
      break;
  }
  mdb_cursor_close(c);
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : psl__db_err(mrc);
}

static int agg_counter(void *arg, const psl__ckey_t *k, const int64_t *vec) {
  psl__agg_t *a = arg;
  if (psl__ckey_matches(&a->c->q, k))
    psl__agg_vec(a->c, vec);
  return 0;
}

static int agg_block(void *arg, const uint8_t *block, size_t len) {
  return psl__agg_block(arg, block, len);
}

int psl_projdb_counters(psl_projdb_t *db, MDB_txn *txn, const psl_counters_query_t *q,
                        psl_counters_t *out) {
  psl__agg_t agg;
  psl__agg_begin(&agg, out, q);
  int rc = scan_counters(db, txn, q->year, q->month, agg_counter, &agg);
  return rc ? rc : scan_years(db, txn, q->year, q->terr, agg_block, &agg);
}

int psl_projdb_caseload(psl_projdb_t *db, MDB_txn *txn, int terr, psl_caseload_fn fn,
                        void *arg) {
  MDB_cursor *c;
  uint8_t start = (uint8_t)terr;
  int rc = mdb_cursor_open(txn, db->terr, &c);
  if (rc)
    return psl__db_err(rc);
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
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : psl__db_err(mrc);
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

static int places_of_block(void *arg, const uint8_t *block, size_t len) {
  placescan_t *ps = arg;
  psl__yblock_t b;
  int rc = psl__yblock_open(block, len, &b);
  if (rc)
    return rc;
  const uint8_t *p = b.entries;
  for (uint32_t i = 0; i < b.n && !rc; i++) {
    psl__yentry_t e;
    if ((rc = psl__yentry_parse(p, (size_t)(b.end - p), &e)))
      break;
    const uint8_t *pp = e.places;
    for (size_t j = 0; j < e.nplaces && !rc; j++) {
      psl__yplace_t pl;
      pp = psl__yplace_read(pp, &pl);
      rc = ps->fn(ps->fnarg, &pl);
    }
    p += e.len;
  }
  return rc;
}

static int db_places(void *arg, int year, int (*fn)(void *fnarg, const psl__yplace_t *pl),
                     void *fnarg) {
  placescan_t *ps = arg;
  ps->fn = fn;
  ps->fnarg = fnarg;
  int rc = scan_counters(ps->db, ps->txn, year, 0, place_of_counter, ps);
  return rc ? rc : scan_years(ps->db, ps->txn, year, 0, places_of_block, ps);
}

static int db_query(void *arg, const psl_counters_query_t *q, psl_counters_t *c) {
  placescan_t *ps = arg;
  return psl_projdb_counters(ps->db, ps->txn, q, c);
}

int psl_projdb_report(psl_projdb_t *db, MDB_txn *txn, int year, int terr, psl_report_t *out) {
  placescan_t ps = {db, txn, NULL, NULL};
  return psl__report_build(year, terr, db_query, db_places, &ps, out);
}

