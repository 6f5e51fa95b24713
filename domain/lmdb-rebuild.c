/*
 * lmdb-rebuild.c — the LMDB store from scratch: fold the log's `events` into a memory store
 * (fold_log), store it (psl_projdb_store), compare it with what is stored (the auditor's
 * verify), and the log hooks that keep the projections at the log's head from its open on.
 *
 * A fold over the whole log keeps each stream's seqs in memory as the scan meets them
 * (seqindex_t), for recomputations: neither the log's `streams` layout nor our proj_stream
 * (which a verify must not trust) is needed, and the same index then writes proj_stream in
 * one bulk pass (each stream's run in one MDB_MULTIPLE put, streams in key order).
 */
#include <stdio.h>
#include <stdlib.h>

#include "psl_domain_int.h"

/* Above this many events to catch up at open, a rebuild in memory then one bulk store beats
 * folding event by event through LMDB (measured: ~10x per event). */
#define CATCHUP_REBUILD_MIN 10000u

/* For folds over the whole log (rebuild, verify): each stream's seqs so far, in memory, as
 * the scan meets them — so that neither the log's `streams` layout nor our own proj_stream
 * (which a verify must not trust) is needed.  8 bytes an event. */
typedef struct {
  uint8_t key[PSL__SKEY_BYTES]; /* kind ‖ id; kind 0: empty slot */
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

static seqslot_t *seqindex_find(seqindex_t *x, const uint8_t key[PSL__SKEY_BYTES]) {
  size_t i = key_hash(key, PSL__SKEY_BYTES) & (x->cap - 1);
  while (x->slot[i].key[0] && memcmp(x->slot[i].key, key, PSL__SKEY_BYTES) != 0)
    i = (i + 1) & (x->cap - 1);
  return &x->slot[i];
}

static int seqindex_add(seqindex_t *x, psl_str_t stream, uint64_t seq) {
  uint8_t key[PSL__SKEY_BYTES];
  if (!psl__db_stream_key(stream, key))
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
    memcpy(sl->key, key, PSL__SKEY_BYTES);
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
  psl__logread_t lr;
  seqindex_t idx;
} foldread_t;

static int seqindex_iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                         void *fnarg) {
  foldread_t *fr = arg;
  uint8_t key[PSL__SKEY_BYTES];
  if (!psl__db_stream_key(stream, key) || !fr->idx.cap)
    return 0;
  seqslot_t *sl = seqindex_find(&fr->idx, key);
  for (uint32_t i = 0; sl->key[0] && i < sl->n; i++) {
    if (before_seq && sl->seq[i] >= before_seq)
      break;
    int rc = psl__db_with_event(&fr->lr, sl->seq[i], fn, fnarg);
    if (rc)
      return rc;
  }
  return 0;
}

static int slot_cmp(const void *a, const void *b) {
  return memcmp(((const seqslot_t *)a)->key, ((const seqslot_t *)b)->key, PSL__SKEY_BYTES);
}

/* proj_stream from a seq index: each stream's run in one put, streams in key order. */
static int index_write(psl_projdb_t *db, MDB_txn *txn, seqindex_t *x) {
  MDB_cursor *c;
  uint8_t *be = NULL;
  size_t cap = 0;
  int rc = psl__db_err(mdb_drop(txn, db->stream, 0));
  if (rc || !x->n)
    return rc;
  /* compact the used slots to the front and sort them (the table is not used afterwards) */
  size_t n = 0;
  for (size_t i = 0; i < x->cap; i++)
    if (x->slot[i].key[0])
      x->slot[n++] = x->slot[i];
  for (size_t i = n; i < x->cap; i++)
    memset(&x->slot[i], 0, sizeof x->slot[i]);
  qsort(x->slot, n, sizeof *x->slot, slot_cmp);
  if ((rc = mdb_cursor_open(txn, db->stream, &c)))
    return psl__db_err(rc);
  for (size_t i = 0; i < n && !rc; i++) {
    seqslot_t *sl = &x->slot[i];
    if (sl->n > cap) {
      uint8_t *p = realloc(be, (size_t)sl->n * 8);
      if (!p) {
        rc = PSL_ENOMEM;
        break;
      }
      be = p;
      cap = sl->n;
    }
    for (uint32_t j = 0; j < sl->n; j++)
      psl__be64(be + 8 * (size_t)j, sl->seq[j]);
    MDB_val k = {PSL__SKEY_BYTES, sl->key}, v[2] = {{8, be}, {sl->n, NULL}};
    rc = psl__db_err(mdb_cursor_put(c, &k, v, MDB_MULTIPLE));
  }
  mdb_cursor_close(c);
  free(be);
  return rc;
}

/* Scan the log's `events` up to upto into a seq index (the caller frees it). */
static int index_scan(psl_projdb_t *db, MDB_txn *txn, uint64_t upto, seqindex_t *x) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, db->log_events, &c);
  if (rc)
    return psl__db_err(rc);
  MDB_val k, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    psl_event_t ev;
    if (k.mv_size != 8) {
      rc = PSL_ECORRUPT;
      break;
    }
    if (psl__get_be64(k.mv_data) > upto)
      break;
    if ((rc = psl__db_decode_record(&v, &ev)) || (rc = seqindex_add(x, ev.stream, ev.seq)))
      break;
  }
  mdb_cursor_close(c);
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : psl__db_err(mrc);
}

/* proj_stream from the log's `events`, seq 1..upto (after a rebuild). */
static int index_rebuild(psl_projdb_t *db, MDB_txn *txn, uint64_t upto) {
  seqindex_t x = {NULL, 0, 0};
  int rc = 0;
  if (db->have_log)
    rc = index_scan(db, txn, upto, &x);
  if (!rc)
    rc = index_write(db, txn, &x);
  seqindex_free(&x);
  return rc;
}

/* ---- Store a rebuild, compare with one. */

/* Years in which some person has facts, as bits (a mark's month index has 16 bits). */
#define YEAR_BITS (0x10000 / 12 + 1)

typedef struct {
  psl_projdb_t *db;
  MDB_txn *txn;
  const psl_proj_t *mem;
  psl_diag_t *diag;
  size_t count;
  size_t years, caseload; /* entries expected in proj_year, proj_terr */
  psl__out_t want;        /* compare: an expected year entry (not db's scratch: a verify
                           * runs on any thread, beside the writer) */
  uint64_t *year_bits;    /* store: the years with facts (YEAR_BITS) */
} walk_t;

/* ---- Year blocks of a rebuild: one year at a time, every entry of the year sorted by
 * (terr, id), then cut into blocks PSL__YBLOCK_FILL full, appended in key order. */

typedef struct {
  uint8_t terr;
  uint8_t id[PSL_UUID_BYTES];
  size_t off, len; /* the entry, in the arena */
} yitem_t;

typedef struct {
  walk_t *w;
  int year;
  yitem_t *items;
  size_t n, cap;
  psl__out_t arena;
} ystore_t;

/* 1 if st has an activity mark in year. */
static int active_in(const psl_participant_t *st, int year) {
  uint32_t lo = psl__month_index(year, 1) << 16, hi = psl__month_index(year + 1, 1) << 16;
  for (size_t i = 0; i < st->nmarks; i++)
    if (st->marks[i] >= lo && st->marks[i] < hi)
      return 1;
  return 0;
}

static int collect_year(void *arg, const void *item) {
  ystore_t *ys = arg;
  const psl_participant_t *st = item;
  psl__year_t y;
  if (!psl__participant_counts(st) || !active_in(st, ys->year))
    return 0;
  int rc = psl__year_make(st, ys->year, &y);
  if (rc)
    return rc;
  size_t off = ys->arena.len;
  rc = psl__yentry_encode(&ys->arena, &y);
  unsigned seen = 0;
  for (size_t j = 0; j <= y.nplaces && !rc; j++) {
    uint8_t t = j == 0 ? 0 : y.places[j - 1].terr;
    if (seen & (1u << (t & 31)))
      continue;
    seen |= 1u << (t & 31);
    if (ys->n == ys->cap) {
      size_t ncap = ys->cap ? ys->cap * 2 : 4096;
      yitem_t *p = realloc(ys->items, ncap * sizeof *p);
      if (!p) {
        rc = PSL_ENOMEM;
        break;
      }
      ys->items = p;
      ys->cap = ncap;
    }
    yitem_t *it = &ys->items[ys->n++];
    it->terr = t;
    memcpy(it->id, st->id, PSL_UUID_BYTES);
    it->off = off;
    it->len = ys->arena.len - off;
  }
  psl__year_free(&y);
  return rc;
}

static int yitem_cmp(const void *a, const void *b) {
  const yitem_t *x = a, *y = b;
  if (x->terr != y->terr)
    return x->terr < y->terr ? -1 : 1;
  return memcmp(x->id, y->id, PSL_UUID_BYTES);
}

/* The collected entries, sorted, as blocks. */
static int write_year(ystore_t *ys) {
  walk_t *w = ys->w;
  psl__yitem_t *block = malloc((ys->n ? ys->n : 1) * sizeof *block);
  int rc = block ? 0 : PSL_ENOMEM;
  qsort(ys->items, ys->n, sizeof *ys->items, yitem_cmp);
  for (size_t i = 0, j; i < ys->n && !rc; i = j) {
    size_t bytes = 0;
    for (j = i; j < ys->n && ys->items[j].terr == ys->items[i].terr &&
                (j == i || bytes + PSL_UUID_BYTES + ys->items[j].len <= PSL__YBLOCK_FILL);
         j++) {
      block[j - i].id = ys->items[j].id;
      block[j - i].entry = ys->arena.p + ys->items[j].off;
      block[j - i].len = ys->items[j].len;
      bytes += PSL_UUID_BYTES + ys->items[j].len;
    }
    uint8_t key[PSL__YKEY_BYTES];
    psl__db_year_key(key, ys->year, ys->items[i].terr, ys->items[i].id);
    if (!(rc = psl__yblock_build(&w->db->ysplit, block, j - i))) {
      MDB_val k = {sizeof key, key}, v = {w->db->ysplit.len, w->db->ysplit.p};
      rc = psl__db_err(mdb_put(w->txn, w->db->year, &k, &v, MDB_APPEND));
    }
  }
  free(block);
  return rc;
}

/* proj_year from mem (emptied before): the years store_part saw, in order. */
static int store_years(walk_t *w) {
  ystore_t ys = {w, 0, NULL, 0, 0, {0}};
  int rc = 0;
  for (int year = 0; year < YEAR_BITS && !rc; year++) {
    if (!(w->year_bits[year / 64] >> (year % 64) & 1))
      continue;
    ys.year = year;
    ys.n = 0;
    ys.arena.len = 0;
    if (!(rc = psl__mem_each(w->mem, PSL__MEM_PARTS, collect_year, &ys)))
      rc = ys.arena.err ? ys.arena.err : write_year(&ys);
  }
  free(ys.items);
  psl__out_free(&ys.arena);
  return rc;
}

static int store_part(void *arg, const void *item) {
  walk_t *w = arg;
  const psl_participant_t *st = item;
  w->db->out.len = 0;
  int rc = psl__participant_encode(&w->db->out, st);
  if (!rc) {
    MDB_val k = {PSL_UUID_BYTES, (void *)st->id}, v = {w->db->out.len, w->db->out.p};
    rc = psl__db_err(mdb_put(w->txn, w->db->part, &k, &v, 0));
  }
  if (!rc && psl__participant_counts(st)) {
    int years[100];
    size_t ny = psl__participant_years(st, years, sizeof years / sizeof years[0]);
    for (size_t i = 0; i < ny; i++)
      w->year_bits[years[i] / 64] |= UINT64_C(1) << (years[i] % 64);
  }
  if (!rc && st->known)
    rc = psl__db_caseload_write(w->db, w->txn, st->terr, st->id, st->status, 1);
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
  return psl__db_err(mdb_put(w->txn, w->db->sess, &k, &v, 0));
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
  return psl__db_err(mdb_put(w->txn, w->db->counters, &k, &v, 0));
}

/* psl_projdb_store, with proj_stream from idx when the caller has it (a fold just made it),
 * else rebuilt from the log. */
static int store_mem(psl_projdb_t *db, MDB_txn *txn, const psl_proj_t *mem, seqindex_t *idx) {
  MDB_dbi all[] = {db->part, db->sess, db->counters, db->year, db->terr};
  walk_t w = {db, txn, mem, NULL, 0, 0, 0, {0}, calloc((YEAR_BITS + 63) / 64, 8)};
  int rc = w.year_bits ? 0 : PSL_ENOMEM;
  for (size_t i = 0; i < sizeof all / sizeof all[0] && !rc; i++)
    rc = psl__db_err(mdb_drop(txn, all[i], 0));
  if (!rc) rc = psl__mem_each(mem, PSL__MEM_PARTS, store_part, &w);
  if (!rc) rc = store_years(&w);
  free(w.year_bits);
  if (!rc) rc = psl__mem_each(mem, PSL__MEM_SESSIONS, store_sess, &w);
  if (!rc) rc = psl__mem_each(mem, PSL__MEM_COUNTERS, store_counter, &w);
  if (!rc) rc = idx ? index_write(db, txn, idx) : index_rebuild(db, txn, psl_proj_seq(mem));
  if (!rc) rc = psl__db_set_seq(db, txn, psl_proj_seq(mem), 1);
  return rc;
}

int psl_projdb_store(psl_projdb_t *db, MDB_txn *txn, const psl_proj_t *mem) {
  return store_mem(db, txn, mem, NULL);
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

/* Entries one year's facts should have: terr 0, and each territory of its places. */
static size_t year_entries(const psl__year_t *y) {
  unsigned seen = 1;
  size_t n = 1;
  for (size_t j = 0; j < y->nplaces; j++) {
    unsigned bit = 1u << (y->places[j].terr & 31);
    n += !(seen & bit);
    seen |= bit;
  }
  return n;
}

/* Entry e of id, in a block of (year, terr): what mem's facts for that year encode to, in a
 * territory of theirs. */
static int cmp_entry(walk_t *w, int year, uint8_t terr, const uint8_t *id,
                     const psl__yentry_t *e) {
  const psl_participant_t *st = psl__mem_participant(w->mem, id);
  psl__year_t y;
  if (!st || !psl__participant_counts(st) || !active_in(st, year))
    return differ(w, "year facts", id);
  int rc = psl__year_make(st, year, &y);
  if (rc)
    return rc;
  int in_terr = terr == 0;
  for (size_t j = 0; j < y.nplaces; j++)
    in_terr |= y.places[j].terr == terr;
  w->want.len = 0;
  rc = psl__yentry_encode(&w->want, &y);
  psl__year_free(&y);
  if (!rc && (!in_terr || e->len != w->want.len || memcmp(e->p, w->want.p, e->len) != 0))
    rc = differ(w, "year facts", id);
  return rc;
}

/* Every stored year entry, against mem: each equal to its expected encoding, each (year,
 * terr)'s ids strictly ascending across its blocks and none below its block's bound (so no
 * person twice); with the count checked against what mem expects, the sets are equal. */
static int cmp_years(walk_t *w, size_t *stored) {
  MDB_cursor *c;
  uint8_t last[PSL__YKEY_BYTES]; /* year ‖ terr ‖ id of the entry before */
  *stored = 0;
  int rc = mdb_cursor_open(w->txn, w->db->year, &c);
  if (rc)
    return psl__db_err(rc);
  memset(last, 0, sizeof last);
  MDB_val k, v;
  int mrc, first = 1;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0 && !rc;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    const uint8_t *kp = k.mv_data;
    psl__yblock_t b;
    if (k.mv_size != PSL__YKEY_BYTES || (rc = psl__yblock_open(v.mv_data, v.mv_size, &b)))
      break;
    /* the bound: <= the block's ids, > those of the block before */
    if (memcmp(b.ids, kp + 3, PSL_UUID_BYTES) < 0 ||
        (!first && memcmp(last, kp, 3) == 0 && memcmp(last + 3, kp + 3, PSL_UUID_BYTES) >= 0)) {
      rc = differ(w, "year block bound", NULL);
      break;
    }
    int year = kp[0] << 8 | kp[1];
    const uint8_t *p = b.entries;
    for (uint32_t i = 0; i < b.n && !rc; i++) {
      const uint8_t *id = b.ids + (size_t)i * PSL_UUID_BYTES;
      psl__yentry_t e;
      if (!first && memcmp(last, kp, 3) == 0 && memcmp(last + 3, id, PSL_UUID_BYTES) >= 0) {
        rc = differ(w, "year entries order", id);
        break;
      }
      first = 0;
      memcpy(last, kp, 3);
      memcpy(last + 3, id, PSL_UUID_BYTES);
      if ((rc = psl__yentry_parse(p, (size_t)(b.end - p), &e)) ||
          (rc = cmp_entry(w, year, kp[2], id, &e)))
        break;
      p += e.len;
      ++*stored;
    }
    if (!rc && p != b.end)
      rc = PSL_ECORRUPT;
  }
  mdb_cursor_close(c);
  return rc ? rc : mrc == 0 || mrc == MDB_NOTFOUND ? 0 : psl__db_err(mrc);
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
    return rc == MDB_NOTFOUND ? differ(w, "participant missing", st->id) : psl__db_err(rc);
  if ((rc = psl__participant_decode(v.mv_data, v.mv_size, &got)))
    return rc;
  int same = psl_participant_equal(&got, st);
  psl_participant_free(&got);
  if (!same)
    return differ(w, "participant", st->id);
  w->count++;
  if ((rc = psl__db_years_of(st, &ys, &n, &cap)))
    return rc;
  for (size_t i = 0; i < n; i++)
    w->years += year_entries(&ys[i]);
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
      rc = psl__db_err(rc);
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
    return rc == MDB_NOTFOUND ? differ(w, "session missing", ss->id) : psl__db_err(rc);
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
    return psl__db_err(rc);
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
  return rc ? rc : mrc == MDB_NOTFOUND ? 0 : psl__db_err(mrc);
}

int psl_projdb_compare(psl_projdb_t *db, MDB_txn *txn, const psl_proj_t *mem,
                       psl_diag_t *diag) {
  walk_t w = {db, txn, mem, diag, 0, 0, 0, {0}, NULL};
  uint64_t seq;
  int rc = psl_projdb_seq(db, txn, &seq);
  if (rc)
    return rc;
  if (seq != psl_proj_seq(mem))
    return differ(&w, "proj_seq", NULL);
  size_t years_expected, caseload_expected, years_stored;
  if ((rc = psl__mem_each(mem, PSL__MEM_PARTS, cmp_part, &w)))
    goto done;
  years_expected = w.years;
  caseload_expected = w.caseload;
  if (w.count != db_entries(txn, db->part)) {
    rc = differ(&w, "participant count", NULL);
    goto done;
  }
  if ((rc = cmp_years(&w, &years_stored)))
    goto done;
  if (years_expected != years_stored) {
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
  psl__out_free(&w.want);
  return rc;
}

/* ---- Folding the log's events in a transaction. */

typedef struct {
  psl_projdb_t *db;
  MDB_txn *txn;
  psl_proj_t *mem;
} foldlog_t;

/* Events decoded before their fold (store-mem.c prefetches the states they touch): a run of
 * this many, all pointing into the read transaction's pages. */
#define FOLD_RUN 256

/* psl_projdb_fold_log; *keep (when not NULL) receives the streams' seqs 1..upto. */
static int fold_log(psl_projdb_t *db, MDB_txn *txn, uint64_t from, uint64_t upto,
                    psl_proj_t *mem, seqindex_t *keep) {
  MDB_cursor *c;
  uint8_t sk[8];
  psl_event_t *run;
  size_t n = 0;
  if (!db->have_log)
    return PSL_EINVALID;
  if (!(run = malloc(FOLD_RUN * sizeof *run)))
    return PSL_ENOMEM;
  int rc = mdb_cursor_open(txn, db->log_events, &c);
  if (rc) {
    free(run);
    return psl__db_err(rc);
  }
  foldread_t fr = {{db, txn}, {NULL, 0, 0}};
  /* the streams' seqs from 1: a recomputation may need events before `from`; an event's
   * seq may be indexed before its fold, the iterator stops below it */
  psl__be64(sk, 1);
  MDB_val k = {8, sk}, v;
  int mrc;
  for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); mrc == 0;
       mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 8) {
      rc = PSL_ECORRUPT;
      break;
    }
    uint64_t seq = psl__get_be64(k.mv_data);
    if (seq > upto)
      break;
    psl_event_t *ev = &run[n];
    if ((rc = psl__db_decode_record(&v, ev)) || (rc = seqindex_add(&fr.idx, ev->stream, seq)))
      break;
    if (seq > from && ++n == FOLD_RUN) {
      if ((rc = psl__mem_apply_run(mem, run, NULL, n, seqindex_iter, &fr)))
        break;
      n = 0;
    }
  }
  mdb_cursor_close(c);
  if (!rc && mrc != 0 && mrc != MDB_NOTFOUND)
    rc = psl__db_err(mrc);
  if (!rc && n)
    rc = psl__mem_apply_run(mem, run, NULL, n, seqindex_iter, &fr);
  free(run);
  if (keep && !rc)
    *keep = fr.idx;
  else
    seqindex_free(&fr.idx);
  if (!rc)
    psl__mem_set_seq(mem, upto > psl_proj_seq(mem) ? upto : psl_proj_seq(mem));
  return rc;
}

int psl_projdb_fold_log(psl_projdb_t *db, MDB_txn *txn, uint64_t from, uint64_t upto,
                        psl_proj_t *mem) {
  return fold_log(db, txn, from, upto, mem, NULL);
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
    return psl__db_err(rc);
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  if (rc == 0 && k.mv_size == 8)
    *head = psl__get_be64(k.mv_data);
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : psl__db_err(rc);
}

/* Bring the projections to the log's head: fold what is missing, or rebuild. */
static int catch_up(psl_projdb_t *db, MDB_txn *txn) {
  uint64_t seq, head;
  MDB_val k, v;
  int rc = psl_projdb_seq(db, txn, &seq);
  if (!rc)
    rc = log_head(db, txn, &head);
  if (rc)
    return rc;
  int fmt_ok = psl__db_format_ok(db, txn);
  if (seq == head && (fmt_ok || head == 0))
    return head == 0 ? psl__db_set_seq(db, txn, 0, 1) : 0;
  if (fmt_ok && seq < head && head - seq < CATCHUP_REBUILD_MIN) {
    psl__logread_t lr = {db, txn};
    MDB_cursor *c;
    uint8_t sk[8];
    if ((rc = mdb_cursor_open(txn, db->log_events, &c)))
      return psl__db_err(rc);
    psl__be64(sk, seq + 1);
    k.mv_size = 8;
    k.mv_data = sk;
    int mrc;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      psl_event_t ev;
      /* the cursor stays valid across the puts of other databases */
      if ((rc = psl__db_decode_record(&v, &ev)) ||
          (rc = psl_projdb_apply(db, txn, &ev, psl__db_index_stream_iter, &lr)))
        break;
    }
    mdb_cursor_close(c);
    return rc ? rc : mrc == MDB_NOTFOUND ? 0 : psl__db_err(mrc);
  }
  psl_proj_t *mem;
  if ((rc = psl_proj_new(&mem)))
    return rc;
  seqindex_t idx = {NULL, 0, 0};
  rc = fold_log(db, txn, 0, head, mem, &idx);
  if (!rc)
    rc = store_mem(db, txn, mem, &idx);
  seqindex_free(&idx);
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
