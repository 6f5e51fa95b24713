/*
 * access-env.c — the token store's LMDB environment: open and close, transactions, the map
 * size shared by several processes, and the generation.  access.c owns the databases' layout.
 *
 * Map size: starts at ACCESS_MAP_INITIAL; a writer that fills it doubles it (up to
 * ACCESS_MAP_MAX) and runs its transaction again.  A process whose map another process
 * outgrew gets MDB_MAP_RESIZED from mdb_txn_begin and adopts the new size.  Both changes need
 * no transaction open in this process, which map_lock ensures: every transaction holds it for
 * reading, a resize holds it for writing.  (Taking it costs ~20 ns uncontended.)
 */
#include "access_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

/* 64 MiB holds ~200,000 records of ~340 bytes: far more tokens than staff will ever have. */
#define ACCESS_MAP_INITIAL ((size_t)64 << 20)
/* A ceiling on growth, so a runaway writer cannot fill the disk through this store. */
#define ACCESS_MAP_MAX ((size_t)1 << 30)
/* tokens, ids, meta, and room for one more without a format change. */
#define ACCESS_MAX_DBS 4
/* Attempts after MDB_MAP_RESIZED or MDB_MAP_FULL: each resolves one resize, and the map
 * reaches ACCESS_MAP_MAX from ACCESS_MAP_INITIAL in 4 doublings. */
#define ACCESS_RETRIES 8

/* ---- Transactions, and the map size under several processes. */

static int map_adopt(psl_access_t *a) {
  pthread_rwlock_wrlock(&a->map_lock);
  int rc = mdb_env_set_mapsize(a->env, 0);
  pthread_rwlock_unlock(&a->map_lock);
  return psl_err_from_mdb(rc);
}

static int map_grow(psl_access_t *a) {
  MDB_envinfo info;
  int rc;
  pthread_rwlock_wrlock(&a->map_lock);
  rc = mdb_env_info(a->env, &info);
  if (rc == 0 && info.me_mapsize >= ACCESS_MAP_MAX)
    rc = MDB_MAP_FULL;
  else if (rc == 0)
    rc = mdb_env_set_mapsize(a->env, info.me_mapsize * 2 < ACCESS_MAP_MAX ? info.me_mapsize * 2
                                                                          : ACCESS_MAP_MAX);
  pthread_rwlock_unlock(&a->map_lock);
  return psl_err_from_mdb(rc);
}

int psl__access_txn_begin(psl_access_t *a, unsigned flags, MDB_txn **txn) {
  for (int i = 0; i < ACCESS_RETRIES; i++) {
    pthread_rwlock_rdlock(&a->map_lock);
    int rc = mdb_txn_begin(a->env, NULL, flags, txn);
    if (rc == 0)
      return 0;
    pthread_rwlock_unlock(&a->map_lock);
    if (rc != MDB_MAP_RESIZED)
      return psl_err_from_mdb(rc);
    if ((rc = map_adopt(a)) != 0)
      return rc;
  }
  return PSL_EUNAVAILABLE;
}

void psl__access_txn_abort(psl_access_t *a, MDB_txn *txn) {
  mdb_txn_abort(txn);
  pthread_rwlock_unlock(&a->map_lock);
}

int psl__access_put(psl__access_wtxn_t *w, MDB_dbi dbi, MDB_val key, MDB_val val, unsigned flags) {
  int rc = mdb_put(w->txn, dbi, &key, &val, flags);
  if (rc == MDB_MAP_FULL)
    w->map_full = 1;
  return psl_err_from_mdb(rc);
}

int psl__access_write(psl_access_t *a, int (*fn)(psl_access_t *, psl__access_wtxn_t *, void *),
                      void *arg) {
  for (int i = 0; i < ACCESS_RETRIES; i++) {
    psl__access_wtxn_t w = {NULL, 0};
    int rc = psl__access_txn_begin(a, 0, &w.txn);
    if (rc)
      return rc;
    rc = fn(a, &w, arg);
    if (rc == 0) {
      int mrc = mdb_txn_commit(w.txn);
      pthread_rwlock_unlock(&a->map_lock);
      w.map_full |= mrc == MDB_MAP_FULL;
      rc = psl_err_from_mdb(mrc);
    } else {
      psl__access_txn_abort(a, w.txn);
    }
    if (!w.map_full)
      return rc;
    if ((rc = map_grow(a)) != 0)
      return rc;
  }
  return PSL_EUNAVAILABLE;
}

int psl__access_generation_bump(psl_access_t *a, psl__access_wtxn_t *w) {
  MDB_val key = psl__mval(PSL__ACCESS_GEN_KEY, strlen(PSL__ACCESS_GEN_KEY)), val;
  uint8_t buf[8];
  uint64_t gen = 0;
  int rc = mdb_get(w->txn, a->meta, &key, &val);
  if (rc == 0 && val.mv_size != sizeof buf)
    return PSL_ECORRUPT;
  if (rc == 0)
    gen = psl__be64_load(val.mv_data);
  else if (rc != MDB_NOTFOUND)
    return psl_err_from_mdb(rc);
  psl__be64_store(buf, gen + 1);
  return psl__access_put(w, a->meta, key, psl__mval(buf, sizeof buf), 0);
}

/* ---- Open and close. */

/* mkdir -p path, new folders 0700 (tokens' hashes and staff names are nobody else's). */
static int mkdir_p(char *path) {
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    int rc = mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : psl_err_from_errno(errno);
    *p = c;
    if (rc)
      return rc;
    if (c == '\0')
      break;
  }
  struct stat st;
  if (stat(path, &st) != 0)
    return psl_err_from_errno(errno);
  return S_ISDIR(st.st_mode) ? 0 : PSL_EINVALID;
}

static int open_dbs(psl_access_t *a) {
  MDB_txn *txn;
  int rc = psl__access_txn_begin(a, 0, &txn);
  if (rc)
    return rc;
  if ((rc = mdb_dbi_open(txn, "tokens", MDB_CREATE, &a->tokens)) != 0 ||
      (rc = mdb_dbi_open(txn, "ids", MDB_CREATE, &a->ids)) != 0 ||
      (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &a->meta)) != 0) {
    psl__access_txn_abort(a, txn);
    return psl_err_from_mdb(rc);
  }
  rc = mdb_txn_commit(txn);
  pthread_rwlock_unlock(&a->map_lock);
  return psl_err_from_mdb(rc);
}

int psl_access_open(psl_access_t **out, const char *dir) {
  char path[PATH_MAX];
  psl_access_t *a;
  int rc, dead;

  if (!out)
    return PSL_EINVALID;
  *out = NULL;
  if (!dir || !*dir)
    return PSL_EINVALID;
  if ((size_t)snprintf(path, sizeof path, "%s/access", dir) >= sizeof path)
    return PSL_ETOO_BIG;
  if (sodium_init() < 0)
    return PSL_EINTERNAL;
  if ((rc = mkdir_p(path)) != 0)
    return rc;
  if (!(a = calloc(1, sizeof *a)))
    return PSL_ENOMEM;
  if (pthread_rwlock_init(&a->map_lock, NULL) != 0) {
    free(a);
    return PSL_EINTERNAL;
  }
  if ((rc = psl_err_from_mdb(mdb_env_create(&a->env))) != 0)
    goto fail_env_create;
  if ((rc = psl_err_from_mdb(mdb_env_set_maxdbs(a->env, ACCESS_MAX_DBS))) != 0 ||
      (rc = psl_err_from_mdb(mdb_env_set_mapsize(a->env, ACCESS_MAP_INITIAL))) != 0 ||
      (rc = psl_err_from_mdb(mdb_env_open(a->env, path, MDB_NOTLS, 0600))) != 0)
    goto fail_env_open;
  /* Reader slots of processes that died (a killed passerelle-admin) would pin old pages. */
  mdb_reader_check(a->env, &dead);
  if ((rc = open_dbs(a)) != 0)
    goto fail_env_open;
  psl_access_generation(a);
  *out = a;
  return 0;

fail_env_open:
  mdb_env_close(a->env);
fail_env_create:
  pthread_rwlock_destroy(&a->map_lock);
  free(a);
  return rc;
}

void psl_access_close(psl_access_t *a) {
  if (!a)
    return;
  mdb_env_close(a->env);
  pthread_rwlock_destroy(&a->map_lock);
  free(a);
}

uint64_t psl_access_generation(psl_access_t *a) {
  if (!a)
    return 0;
  uint64_t gen = atomic_load(&a->generation);
  MDB_val key = psl__mval(PSL__ACCESS_GEN_KEY, strlen(PSL__ACCESS_GEN_KEY)), val;
  MDB_txn *txn;

  if (psl__access_txn_begin(a, MDB_RDONLY, &txn) != 0)
    return gen;
  int rc = mdb_get(txn, a->meta, &key, &val);
  if (rc == 0 && val.mv_size == 8)
    gen = psl__be64_load(val.mv_data);
  psl__access_txn_abort(a, txn);
  atomic_store(&a->generation, gen);
  return gen;
}
