/*
 * access_int.h — what the files of the token store share (access.c, access-env.c).  Not an
 * API: server/psl_access.h is.  server/access.c documents the databases byte by byte.
 */
#ifndef PSL_ACCESS_INT_H
#define PSL_ACCESS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <lmdb.h>

#include "psl_access.h"

/* meta's key of the generation (access.c's layout). */
#define PSL__ACCESS_GEN_KEY "generation"

struct psl_access_s {
  MDB_env *env;
  MDB_dbi tokens, ids, meta;
  pthread_rwlock_t map_lock;   /* read: a transaction is open; write: the map is resized */
  _Atomic uint64_t generation; /* last value read, returned when a read fails */
};

/* A write transaction, and whether it ran out of map (then psl__access_write grows the map
 * and runs it again). */
typedef struct {
  MDB_txn *txn;
  int map_full;
} psl__access_wtxn_t;

/* Begin a transaction (flags: 0 or MDB_RDONLY), adopting a map another process grew.  On
 * success the map lock is held for reading until psl__access_txn_abort (or the commit inside
 * psl__access_write).  Returns 0 or PSL_E*. */
int psl__access_txn_begin(psl_access_t *a, unsigned flags, MDB_txn **txn);
void psl__access_txn_abort(psl_access_t *a, MDB_txn *txn);

/* Run fn in a write transaction and commit it; run again on a bigger map when it ran out.
 * fn returns 0 (commit) or PSL_E* (abort); it may run more than once, so it must redo all
 * it leaves in *arg.  Returns fn's error, the commit's, or 0. */
int psl__access_write(psl_access_t *a, int (*fn)(psl_access_t *, psl__access_wtxn_t *, void *),
                      void *arg);

/* mdb_put that notes MDB_MAP_FULL in w.  Returns 0 or PSL_E*. */
int psl__access_put(psl__access_wtxn_t *w, MDB_dbi dbi, MDB_val key, MDB_val val,
                    unsigned flags);

/* meta "generation" + 1, inside w. */
int psl__access_generation_bump(psl_access_t *a, psl__access_wtxn_t *w);

static inline MDB_val psl__mval(const void *p, size_t n) {
  MDB_val v = {n, (void *)p};
  return v;
}

static inline void psl__be64_store(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static inline uint64_t psl__be64_load(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

#endif /* PSL_ACCESS_INT_H */
