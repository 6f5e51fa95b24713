/*
 * keys.c — the key store of personal data (psl_keys.h): DIR/keys/, an LMDB environment of
 * its own, and the master key that seals it.
 *
 * MASTER KEY
 *
 *   PASSERELLE_MASTER_KEY (environment), 64 hex characters; else DIR/master.key: 64 hex
 *   characters and "\n", mode 0600, owned by the server's user, made with 32 random bytes at
 *   the first start.  A looser mode is refused (the server does not start): whoever reads it
 *   reads every participant's key.  Keeping it elsewhere (the environment, from a secret
 *   manager) keeps a stolen copy of DIR useless.
 *
 * DATABASES (keys and values byte by byte)
 *
 *   keys   key   stream (1..128 bytes, as in the log: "participant/<uuid>")
 *          value state (1 byte) then, for states 1 and 2 when the stream has a key:
 *                  nonce (24) ‖ XChaCha20-Poly1305-IETF(master key, the stream's 32-byte key,
 *                  ad = "psl-key-1" ‖ stream) (48: 32 + the tag)          = 73 bytes in all
 *                state 1 active: the key seals and opens the stream's pii
 *                state 2 erasing: a participant.erased of the stream is being committed (or
 *                  was, and the crash came before the tombstone): pii reads {erased: true}
 *                  and new pii is refused, but the key stays until the erasure is known to
 *                  be in the log (psl_keys_recover) — 73 bytes, or 1 without a key
 *                state 3 erased: the tombstone, 1 byte, no key
 *   meta   "format"  → 0x01
 *          "check"   → nonce (24) ‖ AEAD(master key, 32 zero bytes, ad "psl-master-1") (48):
 *                      a wrong master key is refused at open instead of failing every read
 *          "rebuild" → 0x01 while a rebuild is owed (an erasure's tombstone is written, the
 *                      file still holds the old key in a free page)
 *
 * ERASURE
 *
 *   1. in the log's batch (seal, on the writer thread): the stream's record goes to state 2,
 *      in the batch's keys transaction, committed durably just before the log's (prepare);
 *   2. after the log's commit (committed): state 3 for each such stream and meta "rebuild"
 *      in one transaction, then the rebuild;
 *   3. rebuild: every record is written afresh into DIR/keys/rebuild.mdb (a new environment:
 *      its pages never held the erased key), committed, then renamed over DIR/keys/data.mdb;
 *      the old file, still open, is overwritten with zeros and synced before its last
 *      descriptor closes.  LMDB's own compacting copy is not used: it copies whole leaf pages,
 *      and the free space inside a page can still hold a deleted value.
 *   A crash anywhere leaves data.mdb whole (the old or the new file: rename is atomic); a
 *   stale rebuild.mdb is removed at open, an owed rebuild or a state 2 is finished by
 *   psl_keys_recover.
 *
 * LOCKING
 *
 *   swap_lock (writer-preferring rwlock): every transaction holds it shared; a rebuild, which
 *   closes and reopens the environment, holds it exclusively.  The writer thread's batch
 *   transaction holds it shared from the first seal to prepare or aborted; the rebuild runs
 *   only from committed, after that, on the same thread, so the lock is never taken twice by
 *   one thread.
 */
#include "psl_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "psl_say.h"

/* The map: records are ~200 bytes with LMDB's overhead, so 1 GiB holds ~5 million streams,
 * thousands of times the association's participants; the file grows only with its use. */
#define KEYS_MAP_SIZE ((size_t)1 << 30)
/* keys, meta, and room for one more without a format change. */
#define KEYS_MAX_DBS 4
#define KEYS_FORMAT 1
#define KEY_SEALED (PSL_PII_NONCE + PSL_KEY_BYTES + PSL_PII_TAG) /* 72 */
#define REC_WITH_KEY (1 + KEY_SEALED)                          /* 73 */
#define KEY_AD_LABEL "psl-key-1"
#define CHECK_AD "psl-master-1"
/* Bytes overwritten per write when the old file is shredded. */
#define SHRED_CHUNK (64u * 1024u)
/* A master key file is 64 hex characters and a newline; more is not ours. */
#define MASTER_FILE_MAX 128

struct psl_keys_s {
  char dir[PATH_MAX]; /* DIR/keys */
  MDB_env *env;       /* NULL after a failed swap: every call answers PSL_EIO */
  MDB_dbi db_keys, db_meta;
  pthread_rwlock_t swap_lock;
  uint8_t master[PSL_KEY_BYTES];
  /* Writer thread only (the sealer). */
  MDB_txn *batch;        /* the batch's transaction, from the first seal to prepare/aborted */
  char (*erasing)[PSL_MAX_STREAM + 1]; /* streams this batch marked erasing */
  size_t nerasing, cap_erasing;
  char (*owed)[PSL_MAX_STREAM + 1]; /* committed erasures whose tombstone is still to write */
  size_t nowed, cap_owed;
  int rebuild_owed;
};

/* ---- Small helpers. */

static MDB_val mval(const void *p, size_t n) {
  MDB_val v = {n, (void *)p};
  return v;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return psl_err_from_errno(errno);
  int rc = fsync(fd) == 0 ? 0 : psl_err_from_errno(errno);
  close(fd);
  return rc;
}

/* ---- The master key. */

static int master_parse(const char *s, size_t n, uint8_t master[PSL_KEY_BYTES]) {
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
    n--;
  size_t got = 0;
  const char *end = NULL;
  if (n != 2 * PSL_KEY_BYTES ||
      sodium_hex2bin(master, PSL_KEY_BYTES, s, n, NULL, &got, &end) != 0 ||
      got != PSL_KEY_BYTES || end != s + n)
    return PSL_EINVALID;
  return 0;
}

/* Make DIR/master.key (O_EXCL: a concurrent start loses and reads the winner's). */
static int master_create(const char *dir, const char *path) {
  uint8_t raw[PSL_KEY_BYTES];
  char hex[2 * PSL_KEY_BYTES + 2];
  randombytes_buf(raw, sizeof raw);
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  sodium_memzero(raw, sizeof raw);
  hex[2 * PSL_KEY_BYTES] = '\n';
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    sodium_memzero(hex, sizeof hex);
    return errno == EEXIST ? 0 : psl_err_from_errno(errno);
  }
  ssize_t w = write(fd, hex, 2 * PSL_KEY_BYTES + 1);
  int rc = w == 2 * PSL_KEY_BYTES + 1 && fsync(fd) == 0 ? 0 : PSL_EIO;
  close(fd);
  sodium_memzero(hex, sizeof hex);
  if (rc) {
    unlink(path);
    return rc;
  }
  return fsync_dir(dir);
}

int psl_keys_master_load(const char *dir, uint8_t master[PSL_KEY_BYTES], int *from_env,
                         const char **why) {
  char path[PATH_MAX], buf[MASTER_FILE_MAX + 1];
  const char *env = getenv(PSL_MASTER_KEY_ENV);
  *why = NULL;
  if (from_env)
    *from_env = env && *env;
  if (env && *env) {
    if (master_parse(env, strlen(env), master) != 0) {
      *why = PSL_MASTER_KEY_ENV ": expected 64 hex characters";
      return PSL_EINVALID;
    }
    return 0;
  }
  if ((size_t)snprintf(path, sizeof path, "%s/master.key", dir) >= sizeof path) {
    *why = "data folder path too long";
    return PSL_EINVALID;
  }
  int rc = master_create(dir, path);
  if (rc) {
    *why = "cannot create master.key";
    return rc;
  }
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    *why = "cannot open master.key";
    return psl_err_from_errno(errno);
  }
  struct stat st;
  ssize_t n = -1;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = "master.key: not a regular file";
    rc = PSL_EINVALID;
  } else if (st.st_mode & 077) {
    *why = "master.key: readable or writable by group or others (chmod 600 it)";
    rc = PSL_EINVALID;
  } else if (st.st_uid != geteuid()) {
    *why = "master.key: owned by another user";
    rc = PSL_EINVALID;
  } else if ((n = read(fd, buf, sizeof buf - 1)) < 0 ||
             master_parse(buf, (size_t)n, master) != 0) {
    *why = "master.key: expected 64 hex characters";
    rc = PSL_EINVALID;
  }
  close(fd);
  sodium_memzero(buf, sizeof buf);
  return rc;
}

/* ---- Sealing keys with the master key. */

static void key_ad(psl_str_t stream, uint8_t *ad, size_t *len) {
  memcpy(ad, KEY_AD_LABEL, sizeof KEY_AD_LABEL - 1);
  memcpy(ad + sizeof KEY_AD_LABEL - 1, stream.ptr, stream.len);
  *len = sizeof KEY_AD_LABEL - 1 + stream.len;
}

static void key_seal(const psl_keys_t *k, psl_str_t stream, const uint8_t key[PSL_KEY_BYTES],
                     uint8_t out[KEY_SEALED]) {
  uint8_t ad[sizeof KEY_AD_LABEL + PSL_MAX_STREAM];
  size_t adlen;
  key_ad(stream, ad, &adlen);
  randombytes_buf(out, PSL_PII_NONCE);
  crypto_aead_xchacha20poly1305_ietf_encrypt(out + PSL_PII_NONCE, NULL, key, PSL_KEY_BYTES, ad,
                                             adlen, NULL, out, k->master);
}

static int key_open(const psl_keys_t *k, psl_str_t stream, const uint8_t sealed[KEY_SEALED],
                    uint8_t key[PSL_KEY_BYTES]) {
  uint8_t ad[sizeof KEY_AD_LABEL + PSL_MAX_STREAM];
  size_t adlen;
  key_ad(stream, ad, &adlen);
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL, sealed + PSL_PII_NONCE,
                                                 KEY_SEALED - PSL_PII_NONCE, ad, adlen, sealed,
                                                 k->master) != 0)
    return PSL_ECORRUPT;
  return 0;
}

/* A record's state, and whether it carries a key.  PSL_ECORRUPT for a malformed one. */
static int rec_state(const MDB_val *v, psl_key_state_t *state, int *has_key) {
  const uint8_t *p = v->mv_data;
  if (v->mv_size == 0 || p[0] < PSL_KEY_ACTIVE || p[0] > PSL_KEY_ERASED)
    return PSL_ECORRUPT;
  *state = (psl_key_state_t)p[0];
  *has_key = v->mv_size == REC_WITH_KEY;
  if ((*has_key && *state == PSL_KEY_ERASED) || (!*has_key && v->mv_size != 1) ||
      (!*has_key && *state == PSL_KEY_ACTIVE))
    return PSL_ECORRUPT;
  return 0;
}

/* The record of stream in txn: state (NONE when absent) and the key when it has one. */
static int rec_get(psl_keys_t *k, MDB_txn *txn, psl_str_t stream, psl_key_state_t *state,
                   uint8_t key[PSL_KEY_BYTES], int *has_key) {
  MDB_val kk = mval(stream.ptr, stream.len), v;
  *state = PSL_KEY_NONE;
  *has_key = 0;
  int rc = mdb_get(txn, k->db_keys, &kk, &v);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc)
    return psl_err_from_mdb(rc);
  if ((rc = rec_state(&v, state, has_key)) != 0)
    return rc;
  if (*has_key && key)
    return key_open(k, stream, (const uint8_t *)v.mv_data + 1, key);
  return 0;
}

static int rec_put_state(psl_keys_t *k, MDB_txn *txn, psl_str_t stream, psl_key_state_t st,
                         const uint8_t *sealed) {
  uint8_t rec[REC_WITH_KEY];
  rec[0] = (uint8_t)st;
  if (sealed)
    memcpy(rec + 1, sealed, KEY_SEALED);
  MDB_val kk = mval(stream.ptr, stream.len), v = mval(rec, sealed ? REC_WITH_KEY : 1);
  return psl_err_from_mdb(mdb_put(txn, k->db_keys, &kk, &v, 0));
}

/* Move stream's record to st, keeping its key (erasing) or not (erased). */
static int rec_set_state(psl_keys_t *k, MDB_txn *txn, psl_str_t stream, psl_key_state_t st) {
  MDB_val kk = mval(stream.ptr, stream.len), v;
  uint8_t sealed[KEY_SEALED];
  int rc = mdb_get(txn, k->db_keys, &kk, &v);
  int keep = rc == 0 && v.mv_size == REC_WITH_KEY && st != PSL_KEY_ERASED;
  if (rc && rc != MDB_NOTFOUND)
    return psl_err_from_mdb(rc);
  if (keep)
    memcpy(sealed, (const uint8_t *)v.mv_data + 1, KEY_SEALED); /* v is in the map */
  return rec_put_state(k, txn, stream, st, keep ? sealed : NULL);
}

/* ---- The environment. */

static int txn_begin(psl_keys_t *k, unsigned flags, MDB_txn **txn) {
  pthread_rwlock_rdlock(&k->swap_lock);
  if (!k->env) {
    pthread_rwlock_unlock(&k->swap_lock);
    return PSL_EIO;
  }
  int rc = mdb_txn_begin(k->env, NULL, flags, txn);
  if (rc) {
    pthread_rwlock_unlock(&k->swap_lock);
    return psl_err_from_mdb(rc);
  }
  return 0;
}

static int txn_end(psl_keys_t *k, MDB_txn *txn, int commit) {
  int rc = 0;
  if (commit)
    rc = psl_err_from_mdb(mdb_txn_commit(txn));
  else
    mdb_txn_abort(txn);
  pthread_rwlock_unlock(&k->swap_lock);
  return rc;
}

/* The master check: written at creation, verified at every open. */
static int meta_check(psl_keys_t *k, MDB_txn *txn, const char **why) {
  static const uint8_t zero[PSL_KEY_BYTES];
  uint8_t rec[KEY_SEALED], out[PSL_KEY_BYTES];
  MDB_val kk = mval("check", 5), v;
  int rc = mdb_get(txn, k->db_meta, &kk, &v);
  if (rc == MDB_NOTFOUND) {
    randombytes_buf(rec, PSL_PII_NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt(rec + PSL_PII_NONCE, NULL, zero, sizeof zero,
                                               (const uint8_t *)CHECK_AD, sizeof CHECK_AD - 1,
                                               NULL, rec, k->master);
    uint8_t fmt = KEYS_FORMAT;
    MDB_val fk = mval("format", 6), fv = mval(&fmt, 1), cv = mval(rec, sizeof rec);
    if ((rc = mdb_put(txn, k->db_meta, &fk, &fv, 0)) != 0 ||
        (rc = mdb_put(txn, k->db_meta, &kk, &cv, 0)) != 0)
      return psl_err_from_mdb(rc);
    return 0;
  }
  if (rc)
    return psl_err_from_mdb(rc);
  if (v.mv_size != KEY_SEALED ||
      crypto_aead_xchacha20poly1305_ietf_decrypt(
          out, NULL, NULL, (const uint8_t *)v.mv_data + PSL_PII_NONCE, KEY_SEALED - PSL_PII_NONCE,
          (const uint8_t *)CHECK_AD, sizeof CHECK_AD - 1, v.mv_data, k->master) != 0) {
    *why = "the master key is not the one this key store was made with";
    return PSL_EINVALID;
  }
  MDB_val rk = mval("rebuild", 7);
  k->rebuild_owed = mdb_get(txn, k->db_meta, &rk, &v) == 0;
  return 0;
}

static int env_make(MDB_env **env, const char *path, unsigned flags) {
  int rc;
  if ((rc = mdb_env_create(env)) != 0)
    return psl_err_from_mdb(rc);
  if ((rc = mdb_env_set_maxdbs(*env, KEYS_MAX_DBS)) != 0 ||
      (rc = mdb_env_set_mapsize(*env, KEYS_MAP_SIZE)) != 0 ||
      (rc = mdb_env_open(*env, path, flags | MDB_NOTLS, 0600)) != 0) {
    mdb_env_close(*env);
    *env = NULL;
    return psl_err_from_mdb(rc);
  }
  return 0;
}

/* Open k->env on k->dir with its databases (called with swap_lock held or before sharing). */
static int env_open(psl_keys_t *k, const char **why) {
  MDB_txn *txn;
  int rc = env_make(&k->env, k->dir, 0);
  if (rc)
    return rc;
  if ((rc = mdb_txn_begin(k->env, NULL, 0, &txn)) != 0) {
    rc = psl_err_from_mdb(rc);
    goto fail;
  }
  if ((rc = mdb_dbi_open(txn, "keys", MDB_CREATE, &k->db_keys)) != 0 ||
      (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &k->db_meta)) != 0) {
    mdb_txn_abort(txn);
    rc = psl_err_from_mdb(rc);
    goto fail;
  }
  if ((rc = meta_check(k, txn, why)) != 0) {
    mdb_txn_abort(txn);
    goto fail;
  }
  if ((rc = psl_err_from_mdb(mdb_txn_commit(txn))) == 0)
    return 0;
fail:
  mdb_env_close(k->env);
  k->env = NULL;
  return rc;
}

/* ---- The rebuild: a fresh file holding only the live records (top of file). */

static int rebuild_paths(const psl_keys_t *k, char *tmp, char *tmplock, char *data) {
  if ((size_t)snprintf(tmp, PATH_MAX, "%s/rebuild.mdb", k->dir) >= PATH_MAX ||
      (size_t)snprintf(tmplock, PATH_MAX, "%s/rebuild.mdb-lock", k->dir) >= PATH_MAX ||
      (size_t)snprintf(data, PATH_MAX, "%s/data.mdb", k->dir) >= PATH_MAX)
    return PSL_EINVALID;
  return 0;
}

/* Copy every record of k->env but meta "rebuild" into a new environment at tmp. */
static int rebuild_copy(psl_keys_t *k, const char *tmp) {
  MDB_env *ne = NULL;
  MDB_txn *src = NULL, *dst = NULL;
  MDB_dbi dkeys, dmeta;
  MDB_cursor *cur = NULL;
  MDB_val key, val;
  int rc = env_make(&ne, tmp, MDB_NOSUBDIR);
  if (rc)
    return rc;
  if ((rc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &src)) != 0 ||
      (rc = mdb_txn_begin(ne, NULL, 0, &dst)) != 0 ||
      (rc = mdb_dbi_open(dst, "keys", MDB_CREATE, &dkeys)) != 0 ||
      (rc = mdb_dbi_open(dst, "meta", MDB_CREATE, &dmeta)) != 0)
    goto done;
  for (int db = 0; db < 2 && rc == 0; db++) {
    if ((rc = mdb_cursor_open(src, db ? k->db_meta : k->db_keys, &cur)) != 0)
      break;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
      if (db && key.mv_size == 7 && memcmp(key.mv_data, "rebuild", 7) == 0)
        continue;
      if ((rc = mdb_put(dst, db ? dmeta : dkeys, &key, &val, MDB_APPEND)) != 0)
        break;
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
      rc = 0;
  }
  if (rc == 0) {
    rc = mdb_txn_commit(dst); /* durable: LMDB syncs the new file */
    dst = NULL;
  }
done:
  if (dst)
    mdb_txn_abort(dst);
  if (src)
    mdb_txn_abort(src);
  mdb_env_close(ne);
  return psl_err_from_mdb(rc);
}

/* Overwrite a file's bytes with zeros through fd, and sync. */
static int shred_fd(int fd) {
  static const uint8_t zeros[SHRED_CHUNK];
  struct stat st;
  if (fstat(fd, &st) != 0)
    return psl_err_from_errno(errno);
  for (off_t off = 0; off < st.st_size;) {
    size_t n = (size_t)(st.st_size - off) < sizeof zeros ? (size_t)(st.st_size - off)
                                                          : sizeof zeros;
    ssize_t w = pwrite(fd, zeros, n, off);
    if (w <= 0)
      return w < 0 ? psl_err_from_errno(errno) : PSL_EIO;
    off += w;
  }
  return fdatasync(fd) == 0 ? 0 : psl_err_from_errno(errno);
}

/* The rebuild itself (swap_lock held exclusively, no transaction open). */
static int rebuild_locked(psl_keys_t *k) {
  char tmp[PATH_MAX], tmplock[PATH_MAX], data[PATH_MAX];
  const char *why = NULL;
  int rc = rebuild_paths(k, tmp, tmplock, data);
  if (rc)
    return rc;
  unlink(tmp);
  unlink(tmplock);
  if ((rc = rebuild_copy(k, tmp)) != 0) {
    unlink(tmp);
    unlink(tmplock);
    return rc;
  }
  int old = open(data, O_RDWR | O_CLOEXEC);
  if (old < 0) {
    rc = psl_err_from_errno(errno);
    unlink(tmp);
    unlink(tmplock);
    return rc;
  }
  mdb_env_close(k->env);
  k->env = NULL;
  if (rename(tmp, data) != 0) {
    rc = psl_err_from_errno(errno);
    close(old);
  } else {
    unlink(tmplock);
    rc = fsync_dir(k->dir);
    int src = shred_fd(old); /* the old inode: nothing names it any more */
    close(old);
    if (src)
      psl_say(PSL_SAY_WARN, "keys: could not overwrite the old key file: %s", psl_strerror(src));
  }
  int orc = env_open(k, &why); /* the new file, or the old one if the rename failed */
  if (orc) {
    psl_say(PSL_SAY_ERROR, "keys: cannot reopen the key store after a rebuild: %s",
            why ? why : psl_strerror(orc));
    return orc;
  }
  if (rc == 0)
    k->rebuild_owed = 0;
  return rc;
}

static int rebuild(psl_keys_t *k) {
  pthread_rwlock_wrlock(&k->swap_lock);
  int rc = k->env ? rebuild_locked(k) : PSL_EIO;
  pthread_rwlock_unlock(&k->swap_lock);
  return rc;
}

/* Tombstones for streams[0..n) and the "rebuild" mark, in one transaction; then the rebuild. */
static int erase_now(psl_keys_t *k, char (*streams)[PSL_MAX_STREAM + 1], size_t n) {
  MDB_txn *txn;
  uint8_t one = 1;
  int rc = txn_begin(k, 0, &txn);
  if (rc)
    return rc;
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = rec_set_state(k, txn, psl_str(streams[i]), PSL_KEY_ERASED);
  if (rc == 0) {
    MDB_val rk = mval("rebuild", 7), rv = mval(&one, 1);
    rc = psl_err_from_mdb(mdb_put(txn, k->db_meta, &rk, &rv, 0));
  }
  if ((rc = txn_end(k, txn, rc == 0)) != 0)
    return rc;
  k->rebuild_owed = 1;
  return rebuild(k);
}

int psl_keys_erase(psl_keys_t *k, psl_str_t stream) {
  char s[1][PSL_MAX_STREAM + 1];
  if (!k || stream.len == 0 || stream.len > PSL_MAX_STREAM)
    return PSL_EINVALID;
  memcpy(s[0], stream.ptr, stream.len);
  s[0][stream.len] = '\0';
  return erase_now(k, s, 1);
}

/* ---- Open, close. */

int psl_keys_open(psl_keys_t **out, const char *dir, const uint8_t master[PSL_KEY_BYTES],
                  const char **why) {
  char tmp[PATH_MAX], tmplock[PATH_MAX], data[PATH_MAX];
  psl_keys_t *k;
  int rc;
  *out = NULL;
  *why = NULL;
  if (sodium_init() < 0)
    return PSL_EINTERNAL;
  if (!(k = calloc(1, sizeof *k)))
    return PSL_ENOMEM;
  if ((size_t)snprintf(k->dir, sizeof k->dir, "%s/keys", dir) >= sizeof k->dir ||
      rebuild_paths(k, tmp, tmplock, data) != 0) {
    free(k);
    *why = "data folder path too long";
    return PSL_EINVALID;
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    rc = psl_err_from_errno(errno);
    free(k);
    return rc;
  }
  if (mkdir(k->dir, 0700) != 0 && errno != EEXIST) {
    rc = psl_err_from_errno(errno);
    free(k);
    return rc;
  }
  unlink(tmp); /* a rebuild a crash interrupted before its rename: data.mdb is whole */
  unlink(tmplock);
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&k->swap_lock, &ra);
  pthread_rwlockattr_destroy(&ra);
  memcpy(k->master, master, PSL_KEY_BYTES);
  if ((rc = env_open(k, why)) != 0) {
    psl_keys_close(k);
    return rc;
  }
  *out = k;
  return 0;
}

void psl_keys_close(psl_keys_t *k) {
  if (!k)
    return;
  if (k->batch)
    mdb_txn_abort(k->batch);
  if (k->env)
    mdb_env_close(k->env);
  pthread_rwlock_destroy(&k->swap_lock);
  sodium_memzero(k->master, sizeof k->master);
  free(k->erasing);
  free(k->owed);
  free(k);
}

/* ---- Reading. */

int psl_keys_state(psl_keys_t *k, psl_str_t stream, psl_key_state_t *state,
                   uint8_t key[PSL_KEY_BYTES]) {
  MDB_txn *txn;
  uint8_t tmp[PSL_KEY_BYTES];
  int has_key;
  int rc = txn_begin(k, MDB_RDONLY, &txn);
  if (rc)
    return rc;
  rc = rec_get(k, txn, stream, state, key ? key : tmp, &has_key);
  txn_end(k, txn, 0);
  sodium_memzero(tmp, sizeof tmp);
  if (rc == 0 && key && !has_key)
    memset(key, 0, PSL_KEY_BYTES);
  return rc;
}

int psl_keys_reveal(psl_keys_t *k, const psl_event_t *ev, psl_buf_t *out,
                    psl_pii_view_t *view) {
  uint8_t key[PSL_KEY_BYTES];
  psl_key_state_t st;
  MDB_txn *txn;
  int has_key, rc;
  *view = PSL_PII_PLAIN;
  if (ev->pii.len == 0)
    return 0;
  if (!psl_pii_is_sealed(ev->pii))
    return psl_buf_append(out, ev->pii.ptr, ev->pii.len);
  if ((rc = txn_begin(k, MDB_RDONLY, &txn)) != 0)
    return rc;
  rc = rec_get(k, txn, ev->stream, &st, key, &has_key);
  txn_end(k, txn, 0);
  if (rc == 0 && (st == PSL_KEY_ERASED || st == PSL_KEY_ERASING)) {
    *view = PSL_PII_ERASED;
    rc = psl_buf_append(out, psl_pii_erased, sizeof psl_pii_erased);
  } else if (rc == 0 && has_key && psl_pii_open(out, key, ev->id, ev->stream, ev->pii) == 0) {
    *view = PSL_PII_OPENED;
  } else if (rc == 0 || rc == PSL_ECORRUPT) {
    char id[PSL_UUID_STR + 1];
    psl_uuid_format(ev->id, id);
    psl_say(PSL_SAY_ERROR, "keys: the pii of event %s cannot be opened (%s)", id,
            st == PSL_KEY_NONE ? "no key" : "does not authenticate");
    *view = PSL_PII_SEALED;
    rc = psl_buf_append(out, ev->pii.ptr, ev->pii.len);
  }
  sodium_memzero(key, sizeof key);
  return rc;
}

/* ---- The sealer (writer thread). */

static int list_add(char (**list)[PSL_MAX_STREAM + 1], size_t *n, size_t *cap, psl_str_t s) {
  for (size_t i = 0; i < *n; i++)
    if (strlen((*list)[i]) == s.len && memcmp((*list)[i], s.ptr, s.len) == 0)
      return 0;
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 8;
    void *p = realloc(*list, nc * sizeof **list);
    if (!p)
      return PSL_ENOMEM;
    *list = p;
    *cap = nc;
  }
  memcpy((*list)[*n], s.ptr, s.len);
  (*list)[*n][s.len] = '\0';
  (*n)++;
  return 0;
}

static int batch_txn(psl_keys_t *k) {
  return k->batch ? 0 : txn_begin(k, 0, &k->batch);
}

/* participant.erased: mark the stream erasing in the batch. */
static int seal_erasure(psl_keys_t *k, const psl_event_t *ev, const char **why) {
  psl_key_state_t st;
  int has_key, rc;
  if (ev->pii.len > 0) {
    *why = "pii: not allowed in participant.erased";
    return PSL_EINVALID;
  }
  if ((rc = batch_txn(k)) != 0 || (rc = rec_get(k, k->batch, ev->stream, &st, NULL, &has_key)))
    return rc;
  if (st == PSL_KEY_ERASED)
    return 0; /* erased already (a second erasure, or a retry) */
  if (st != PSL_KEY_ERASING && (rc = rec_set_state(k, k->batch, ev->stream, PSL_KEY_ERASING)))
    return rc;
  return list_add(&k->erasing, &k->nerasing, &k->cap_erasing, ev->stream);
}

static int keys_seal(void *arg, const psl_event_t *ev, psl_buf_t *out, const char **why) {
  psl_keys_t *k = arg;
  uint8_t key[PSL_KEY_BYTES], sealed[KEY_SEALED];
  psl_key_state_t st;
  int has_key, rc;
  if (psl_str_eq(ev->type, "participant.erased"))
    return seal_erasure(k, ev, why);
  if (ev->pii.len == 0 || psl_pii_is_sealed(ev->pii))
    return 0;
  if ((rc = batch_txn(k)) != 0 || (rc = rec_get(k, k->batch, ev->stream, &st, key, &has_key)))
    return rc == PSL_ECORRUPT ? PSL_EINTERNAL : rc;
  if (st == PSL_KEY_ERASED || st == PSL_KEY_ERASING) {
    *why = "pii: this participant was erased";
    return PSL_EFORBIDDEN;
  }
  if (!has_key) { /* the stream's first pii: its key */
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
    key_seal(k, ev->stream, key, sealed);
    if ((rc = rec_put_state(k, k->batch, ev->stream, PSL_KEY_ACTIVE, sealed)) != 0) {
      sodium_memzero(key, sizeof key);
      return rc;
    }
  }
  rc = psl_pii_seal(out, key, ev->id, ev->stream, ev->pii);
  sodium_memzero(key, sizeof key);
  if (rc == PSL_ETOO_BIG) {
    *why = "event too big";
    return PSL_EINVALID;
  }
  return rc;
}

static int keys_prepare(void *arg) {
  psl_keys_t *k = arg;
  if (!k->batch)
    return 0;
  MDB_txn *txn = k->batch;
  k->batch = NULL;
  int rc = txn_end(k, txn, 1); /* durable before the log's commit */
  if (rc)
    psl_say(PSL_SAY_ERROR, "keys: commit failed: %s", psl_strerror(rc));
  return rc;
}

static void keys_aborted(void *arg) {
  psl_keys_t *k = arg;
  if (k->batch) {
    txn_end(k, k->batch, 0);
    k->batch = NULL;
  }
  k->nerasing = 0;
}

static void keys_committed(void *arg) {
  psl_keys_t *k = arg;
  for (size_t i = 0; i < k->nerasing; i++)
    if (list_add(&k->owed, &k->nowed, &k->cap_owed, psl_str(k->erasing[i])) != 0)
      psl_say(PSL_SAY_ERROR, "keys: out of memory: an erasure waits for the next start");
  k->nerasing = 0;
  if (k->nowed == 0 && !k->rebuild_owed)
    return;
  int rc = k->nowed ? erase_now(k, k->owed, k->nowed) : rebuild(k);
  if (rc) {
    /* Readers already see {erased: true} (state erasing); retried after the next commit,
     * and at the next start (psl_keys_recover). */
    psl_say(PSL_SAY_ERROR, "keys: erasure of %zu stream(s) not finished: %s", k->nowed,
            psl_strerror(rc));
    return;
  }
  psl_say(PSL_SAY_INFO, "keys: erased %zu stream key(s); key store rebuilt", k->nowed);
  k->nowed = 0;
}

psl_log_sealer_t psl_keys_sealer(psl_keys_t *k) {
  psl_log_sealer_t s = {keys_seal, keys_prepare, keys_committed, keys_aborted, k};
  return s;
}

/* ---- Recovery at start. */

typedef struct {
  int found;
} recover_scan_t;

static int recover_event(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                         size_t len) {
  (void)seq;
  (void)hash;
  recover_scan_t *r = arg;
  psl_event_t ev;
  if (psl_event_decode_stored(canon, len, &ev, NULL) == 0 &&
      psl_str_eq(ev.type, "participant.erased")) {
    r->found = 1;
    return 1;
  }
  return 0;
}

/* Is a participant.erased of stream in the log? */
static int recover_erased_in_log(psl_log_t *log, psl_str_t stream, int *found) {
  psl_filter_t f = {NULL, 0, &stream, 1};
  recover_scan_t r = {0};
  uint64_t head = psl_log_head(log, NULL), after = 0;
  while (after < head && !r.found) {
    uint64_t last = after;
    int rc = psl_log_read(log, after, &f, (size_t)1 << 20, 0, recover_event, &r, &last);
    if (rc)
      return rc;
    if (last <= after)
      break;
    after = last;
  }
  *found = r.found;
  return 0;
}

int psl_keys_recover(psl_keys_t *k, psl_log_t *log) {
  MDB_txn *txn;
  MDB_cursor *cur;
  MDB_val key, val;
  char (*erasing)[PSL_MAX_STREAM + 1] = NULL;
  size_t n = 0, cap = 0, erased = 0;
  int rc = txn_begin(k, MDB_RDONLY, &txn);
  if (rc)
    return rc;
  if ((rc = psl_err_from_mdb(mdb_cursor_open(txn, k->db_keys, &cur))) == 0) {
    int mrc;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
      const uint8_t *p = val.mv_data;
      if (val.mv_size > 0 && p[0] == PSL_KEY_ERASING && key.mv_size <= PSL_MAX_STREAM) {
        psl_str_t s = {key.mv_data, key.mv_size};
        rc = list_add(&erasing, &n, &cap, s);
      }
    }
    mdb_cursor_close(cur);
  }
  txn_end(k, txn, 0);
  for (size_t i = 0; i < n && rc == 0; i++) {
    int found = 0;
    if ((rc = recover_erased_in_log(log, psl_str(erasing[i]), &found)) != 0)
      break;
    if (found) {
      memmove(erasing[erased++], erasing[i], sizeof erasing[i]);
      continue;
    }
    /* The erasure never reached the log: the key is the participant's again. */
    if ((rc = txn_begin(k, 0, &txn)) == 0) {
      MDB_val kk = mval(erasing[i], strlen(erasing[i])), v;
      int has = mdb_get(txn, k->db_keys, &kk, &v) == 0 && v.mv_size == REC_WITH_KEY;
      rc = has ? rec_set_state(k, txn, psl_str(erasing[i]), PSL_KEY_ACTIVE)
               : psl_err_from_mdb(mdb_del(txn, k->db_keys, &kk, NULL));
      rc = txn_end(k, txn, rc == 0) ? PSL_EIO : rc;
    }
  }
  if (rc == 0 && erased)
    rc = erase_now(k, erasing, erased);
  else if (rc == 0 && k->rebuild_owed)
    rc = rebuild(k);
  if (rc == 0 && (erased || n))
    psl_say(PSL_SAY_INFO, "keys: recovered %zu interrupted erasure(s), %zu undone", erased,
            n - erased);
  free(erasing);
  return rc;
}
