/*
 * log_index.c — the `streams` and `terr` entries of one batch, gathered and written at its
 * end, each key's duplicates in one MDB_MULTIPLE | MDB_APPENDDUP put.
 *
 * Why: a DUPSORT put searches the key, opens the key's sub-database, appends and rewrites the
 * key's node: ~0.3 µs each, two per event, the largest cost of the writer once measured.  A
 * batch of 4,096 events touches 4 territories and a few dozen participants; with MULTIPLE,
 * LMDB searches each key once and appends the rest of its run in place.
 *
 * While the batch runs the gathered entries are also the truth about the streams it touched:
 * `streams` in the transaction does not hold them yet, so a stream's version is looked up
 * here first (psl__bindex_stream_ver), then in the writer's cache, then in LMDB.
 *
 * Layout, rebuilt per batch and reused (no allocation once warm):
 *   keys    one per distinct (database, name): the name, its run length, the stream's
 *           latest version in the batch; found through an open-addressing table of indexes
 *   items   (key index, seq) in arrival order; flush counts them per key, scatters them
 *           into contiguous runs (a counting sort: stable, so seq order holds in each run),
 *           and writes each run.
 */
#include "log_int.h"

#include <stdlib.h>
#include <string.h>

/* Initial capacity (keys, items): grows by doubling; a batch of 8,192 events reaches ~8,192
 * items and a few hundred keys, ~300 KiB. */
#define BINDEX_INITIAL 256u

enum { KIND_STREAM = 0, KIND_TERR = 1 };

typedef struct {
  uint64_t h;
  uint64_t ver; /* streams: the latest version this batch gave the stream */
  uint32_t count, start;
  uint8_t kind, len;
  char name[PSL_MAX_STREAM];
} bkey_t;

typedef struct {
  uint32_t key;
  uint8_t dup[PSL__SEQ_BYTES]; /* the seq */
} bitem_t;

struct psl__bindex_s {
  bkey_t *keys;
  uint32_t nkeys, capkeys;
  uint32_t *table; /* key index + 1; 0 = empty; size tabsize (a power of 2) */
  uint32_t tabsize;
  bitem_t *items, *sorted;
  size_t nitems, capitems;
};

int psl__bindex_new(psl__bindex_t **out) {
  psl__bindex_t *x = calloc(1, sizeof *x);
  *out = NULL;
  if (!x)
    return PSL_ENOMEM;
  x->capkeys = BINDEX_INITIAL;
  x->tabsize = 2 * BINDEX_INITIAL;
  x->capitems = BINDEX_INITIAL;
  x->keys = malloc(x->capkeys * sizeof *x->keys);
  x->table = calloc(x->tabsize, sizeof *x->table);
  x->items = malloc(x->capitems * sizeof *x->items);
  x->sorted = malloc(x->capitems * sizeof *x->sorted);
  if (!x->keys || !x->table || !x->items || !x->sorted) {
    psl__bindex_free(x);
    return PSL_ENOMEM;
  }
  *out = x;
  return 0;
}

void psl__bindex_free(psl__bindex_t *x) {
  if (!x)
    return;
  free(x->keys);
  free(x->table);
  free(x->items);
  free(x->sorted);
  free(x);
}

void psl__bindex_reset(psl__bindex_t *x) {
  if (x->nkeys)
    memset(x->table, 0, x->tabsize * sizeof *x->table);
  x->nkeys = 0;
  x->nitems = 0;
}

/* The table slot of (kind, name), or of where it would go. */
static uint32_t *probe(psl__bindex_t *x, int kind, const char *name, size_t len, uint64_t h) {
  uint32_t mask = x->tabsize - 1, i = (uint32_t)(h ^ (uint64_t)kind) & mask;
  for (;; i = (i + 1) & mask) {
    uint32_t *t = &x->table[i];
    if (*t == 0)
      return t;
    const bkey_t *k = &x->keys[*t - 1];
    if (k->h == h && k->kind == kind && k->len == len && memcmp(k->name, name, len) == 0)
      return t;
  }
}

/* Double the key space and rehash, so the table stays at most half full. */
static int grow_keys(psl__bindex_t *x) {
  uint32_t cap = x->capkeys * 2, tab = x->tabsize * 2;
  bkey_t *keys = realloc(x->keys, cap * sizeof *keys);
  if (!keys)
    return PSL_ENOMEM;
  x->keys = keys;
  uint32_t *table = calloc(tab, sizeof *table);
  if (!table)
    return PSL_ENOMEM;
  free(x->table);
  x->table = table;
  x->tabsize = tab;
  x->capkeys = cap;
  for (uint32_t i = 0; i < x->nkeys; i++) {
    bkey_t *k = &x->keys[i];
    *probe(x, k->kind, k->name, k->len, k->h) = i + 1;
  }
  return 0;
}

static int grow_items(psl__bindex_t *x) {
  size_t cap = x->capitems * 2;
  bitem_t *items = realloc(x->items, cap * sizeof *items);
  if (!items)
    return PSL_ENOMEM;
  x->items = items;
  bitem_t *sorted = realloc(x->sorted, cap * sizeof *sorted);
  if (!sorted)
    return PSL_ENOMEM;
  x->sorted = sorted;
  x->capitems = cap;
  return 0;
}

int psl__bindex_stream_ver(psl__bindex_t *x, const char *name, size_t len, uint64_t h,
                           uint64_t *ver) {
  uint32_t *t = probe(x, KIND_STREAM, name, len, h);
  if (*t == 0)
    return 0;
  *ver = x->keys[*t - 1].ver;
  return 1;
}

/* Append an item under (kind, name), creating the key. */
static int add(psl__bindex_t *x, int kind, const char *name, size_t len, uint64_t h,
               const uint8_t *dup, uint64_t ver) {
  int err;
  if (x->nitems == x->capitems && (err = grow_items(x)) != 0)
    return err;
  uint32_t *t = probe(x, kind, name, len, h);
  if (*t == 0) {
    if (x->nkeys == x->capkeys) {
      if ((err = grow_keys(x)) != 0)
        return err;
      t = probe(x, kind, name, len, h);
    }
    bkey_t *k = &x->keys[x->nkeys];
    k->h = h;
    k->kind = (uint8_t)kind;
    k->len = (uint8_t)len;
    memcpy(k->name, name, len);
    k->count = 0;
    *t = ++x->nkeys;
  }
  bkey_t *k = &x->keys[*t - 1];
  k->count++;
  k->ver = ver;
  bitem_t *it = &x->items[x->nitems++];
  it->key = *t - 1;
  memcpy(it->dup, dup, PSL__SEQ_BYTES);
  return 0;
}

int psl__bindex_add(psl__bindex_t *x, const psl_event_t *ev, uint64_t stream_h) {
  uint8_t dup[PSL__SEQ_BYTES];
  psl__be64_put(dup, ev->seq);
  int err = add(x, KIND_STREAM, ev->stream.ptr, ev->stream.len, stream_h, dup, ev->ver);
  if (err)
    return err;
  uint64_t th = 0;
  for (size_t i = 0; i < ev->terr.len; i++) /* a territory is a few bytes: any mix will do */
    th = th * 131 + (uint8_t)ev->terr.ptr[i];
  return add(x, KIND_TERR, ev->terr.ptr, ev->terr.len, th, dup, 0);
}

int psl__bindex_flush(psl__bindex_t *x, MDB_cursor *streams, MDB_cursor *terr) {
  uint32_t at = 0;
  for (uint32_t i = 0; i < x->nkeys; i++) {
    x->keys[i].start = at;
    at += x->keys[i].count;
  }
  for (size_t i = 0; i < x->nitems; i++) {
    bkey_t *k = &x->keys[x->items[i].key];
    x->sorted[k->start++] = x->items[i];
  }
  /* Each run is now contiguous but interleaved with its key indexes: pack the duplicates of
   * one run into a plain array for MDB_MULTIPLE, in place over the run's items. */
  int rc = 0;
  uint32_t run = 0;
  for (uint32_t i = 0; i < x->nkeys && rc == 0; i++) {
    bkey_t *k = &x->keys[i];
    uint8_t *packed = (uint8_t *)&x->sorted[run]; /* writes stay behind the reads */
    for (uint32_t j = 0; j < k->count; j++)
      memmove(packed + j * PSL__SEQ_BYTES, x->sorted[run + j].dup, PSL__SEQ_BYTES);
    MDB_val key = {k->len, k->name};
    MDB_val data[2] = {{PSL__SEQ_BYTES, packed}, {k->count, NULL}};
    rc = mdb_cursor_put(k->kind == KIND_STREAM ? streams : terr, &key, data,
                        MDB_MULTIPLE | MDB_APPENDDUP); /* mdb_put refuses MULTIPLE */
    if (rc == 0 && data[1].mv_size != k->count)
      rc = MDB_CORRUPTED;
    run += k->count;
  }
  if (rc == MDB_KEYEXIST) /* a seq already indexed: the file is not what this batch read */
    rc = MDB_CORRUPTED;
  return rc;
}
