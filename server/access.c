/*
 * access.c — the token store: an LMDB environment of its own at DIR/access/.
 *
 * Several processes use it at once: the server reads it on every hello and HTTP request and
 * polls its generation; passerelle-admin creates and revokes tokens while the server runs.
 * LMDB serialises the writers of both processes and lets readers run beside them.  Every call
 * is one short transaction (MDB_NOTLS: a transaction may be used on any thread).
 *
 * A token is never stored, only its BLAKE2b-256 hash: someone who copies the folder (a backup,
 * a stolen disk) learns no usable token.  Tokens are 192 random bits, so an unkeyed hash
 * cannot be brute-forced, and looking records up by hash leaks nothing that helps forge one:
 * no constant-time comparison of secrets is needed anywhere in this file.
 *
 * Token text:  "psl_" ‖ base64url without padding of 24 random bytes  (36 characters)
 * Token id:    the first 6 bytes of the hash as 12 lowercase hex characters
 *
 * Databases (keys and values byte by byte):
 *
 *   tokens   key   hash (32 bytes)
 *            value the record, format version 1:
 *              off  size  field
 *              0    1     format version = 1
 *              1    1     role (psl_role_t: 1 caseworker, 2 coordinator, 3 auditor, 4 admin)
 *              2    8     created_ms, int64 big-endian, ms since the Unix epoch (UTC)
 *              10   1     revoked: 0 or 1 (REC_OFF_REVOKED: revoke rewrites this byte only)
 *              11   1     nterr, 0..PSL_MAX_TOKEN_TERR (0 for every role but caseworker)
 *              12   ...   nterr times: len (1 byte, 1..PSL_MAX_TERR) ‖ territory code
 *              ..   1+n   name:   len (1 byte, 1..PSL_MAX_NAME) ‖ UTF-8 bytes
 *              ..   1+n   device: len (1 byte, 1..PSL_MAX_NAME) ‖ UTF-8 bytes
 *            nothing follows; a record that breaks any of this is PSL_ECORRUPT.
 *   ids      key   token id (12 ASCII hex characters)   value hash (32 bytes)
 *   meta     key   "generation"                         value uint64 big-endian, + 1 on every
 *                                                       create and revoke
 *
 * The environment itself (open, transactions, the map size shared by several processes, the
 * generation) is server/access-env.c.
 */
#include "access_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

/* New tokens tried when the id (48 bits) is taken: a second collision in a store of
 * thousands of tokens has odds below 1e-20. */
#define ACCESS_ID_TRIES 4

#define TOKEN_PREFIX "psl_"
#define TOKEN_PREFIX_LEN 4
#define TOKEN_RANDOM_BYTES 24 /* 192 bits: 32 base64url characters */
#define ID_BYTES (PSL_TOKEN_ID_LEN / 2)

#define REC_VERSION 1
#define REC_OFF_REVOKED 10
#define REC_HEAD 12
#define REC_MAX (REC_HEAD + PSL_MAX_TOKEN_TERR * (1 + PSL_MAX_TERR) + 2 * (1 + PSL_MAX_NAME))

/* ---- Bytes. */

static void token_hash(const char *token, size_t len, uint8_t hash[PSL_HASH_BYTES]) {
  crypto_generichash(hash, PSL_HASH_BYTES, (const unsigned char *)token, len, NULL, 0);
}

static void id_from_hash(const uint8_t hash[PSL_HASH_BYTES], char id[PSL_TOKEN_ID_LEN + 1]) {
  sodium_bin2hex(id, PSL_TOKEN_ID_LEN + 1, hash, ID_BYTES);
}

/* 12 hex characters in any case → lowercase id; 0 if s is not one. */
static int id_parse(const char *s, char id[PSL_TOKEN_ID_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  if (strnlen(s, PSL_TOKEN_ID_LEN + 1) != PSL_TOKEN_ID_LEN)
    return 0;
  for (size_t i = 0; i < PSL_TOKEN_ID_LEN; i++) {
    char c = s[i] >= 'A' && s[i] <= 'F' ? (char)(s[i] - 'A' + 'a') : s[i];
    if (!memchr(hex, c, 16))
      return 0;
    id[i] = c;
  }
  id[PSL_TOKEN_ID_LEN] = '\0';
  return 1;
}

static int token_shaped(const char *s, size_t len) {
  return len == PSL_TOKEN_LEN && memcmp(s, TOKEN_PREFIX, TOKEN_PREFIX_LEN) == 0;
}

/* ---- The record (layout at the top of the file). */

static size_t rec_put_str(uint8_t *r, size_t off, const char *s) {
  size_t n = strlen(s);
  r[off] = (uint8_t)n;
  memcpy(r + off + 1, s, n);
  return off + 1 + n;
}

/* p was validated: every length fits its byte. */
static size_t rec_encode(const psl_principal_t *p, uint8_t r[REC_MAX]) {
  size_t off = REC_HEAD;
  r[0] = REC_VERSION;
  r[1] = (uint8_t)p->role;
  psl__be64_store(r + 2, (uint64_t)p->created_ms);
  r[REC_OFF_REVOKED] = p->revoked ? 1 : 0;
  r[11] = (uint8_t)p->nterr;
  for (size_t i = 0; i < p->nterr; i++)
    off = rec_put_str(r, off, p->terr[i]);
  off = rec_put_str(r, off, p->name);
  return rec_put_str(r, off, p->device);
}

/* Copy a length-prefixed string of 1..max bytes at *off into dst[max + 1]. */
static int rec_get_str(const uint8_t *r, size_t len, size_t *off, char *dst, size_t max) {
  if (*off >= len)
    return PSL_ECORRUPT;
  size_t n = r[*off];
  if (n == 0 || n > max || n > len - *off - 1)
    return PSL_ECORRUPT;
  memcpy(dst, r + *off + 1, n);
  dst[n] = '\0';
  *off += 1 + n;
  return 0;
}

static int rec_decode(const MDB_val *key, const MDB_val *val, psl_principal_t *p) {
  const uint8_t *r = val->mv_data;
  size_t len = val->mv_size, off = REC_HEAD;
  memset(p, 0, sizeof *p);
  if (key->mv_size != PSL_HASH_BYTES || len < REC_HEAD || r[0] != REC_VERSION)
    return PSL_ECORRUPT;
  if (r[1] <= PSL_ROLE_NONE || r[1] > PSL_ROLE_ADMIN || r[REC_OFF_REVOKED] > 1 ||
      r[11] > PSL_MAX_TOKEN_TERR)
    return PSL_ECORRUPT;
  p->role = (psl_role_t)r[1];
  p->created_ms = (int64_t)psl__be64_load(r + 2);
  p->revoked = r[REC_OFF_REVOKED];
  p->nterr = r[11];
  for (size_t i = 0; i < p->nterr; i++)
    if (rec_get_str(r, len, &off, p->terr[i], PSL_MAX_TERR))
      return PSL_ECORRUPT;
  if (rec_get_str(r, len, &off, p->name, PSL_MAX_NAME) ||
      rec_get_str(r, len, &off, p->device, PSL_MAX_NAME) || off != len)
    return PSL_ECORRUPT;
  id_from_hash(key->mv_data, p->id);
  return 0;
}

/* ---- Create. */

struct create_args {
  psl_principal_t p; /* filled but for id */
  char token[PSL_TOKEN_LEN + 1];
};

/* A new token and its hash. */
static void token_make(char token[PSL_TOKEN_LEN + 1], uint8_t hash[PSL_HASH_BYTES]) {
  unsigned char raw[TOKEN_RANDOM_BYTES];
  randombytes_buf(raw, sizeof raw);
  memcpy(token, TOKEN_PREFIX, TOKEN_PREFIX_LEN);
  sodium_bin2base64(token + TOKEN_PREFIX_LEN, PSL_TOKEN_LEN - TOKEN_PREFIX_LEN + 1, raw,
                    sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof raw);
  token_hash(token, PSL_TOKEN_LEN, hash);
}

static int create_in_txn(psl_access_t *a, psl__access_wtxn_t *w, void *arg) {
  struct create_args *c = arg;
  uint8_t hash[PSL_HASH_BYTES], rec[REC_MAX];
  for (int i = 0; i < ACCESS_ID_TRIES; i++) {
    MDB_val idk, val;
    token_make(c->token, hash);
    id_from_hash(hash, c->p.id);
    idk = psl__mval(c->p.id, PSL_TOKEN_ID_LEN);
    int rc = mdb_get(w->txn, a->ids, &idk, &val);
    if (rc == 0)
      continue; /* id taken: draw another token */
    if (rc != MDB_NOTFOUND)
      return psl_err_from_mdb(rc);
    size_t len = rec_encode(&c->p, rec);
    MDB_val hk = psl__mval(hash, sizeof hash);
    if ((rc = psl__access_put(w, a->tokens, hk, psl__mval(rec, len), MDB_NOOVERWRITE)) != 0 ||
        (rc = psl__access_put(w, a->ids, idk, hk, MDB_NOOVERWRITE)) != 0)
      return rc;
    return psl__access_generation_bump(a, w);
  }
  return PSL_EINTERNAL;
}

/* Fill c->p's territories from terr: known codes, no repeats; caseworkers only. */
static int create_terr(struct create_args *c, const char *const *terr, size_t nterr) {
  if (c->p.role != PSL_ROLE_CASEWORKER)
    return 0; /* the other roles see every territory */
  if (nterr == 0 || nterr > PSL_MAX_TOKEN_TERR || !terr)
    return PSL_EINVALID;
  for (size_t i = 0; i < nterr; i++) {
    if (!terr[i] || !psl_access_terr_is_known(psl_str(terr[i])))
      return PSL_EINVALID;
    size_t j = 0;
    while (j < c->p.nterr && strcmp(c->p.terr[j], terr[i]) != 0)
      j++;
    if (j == c->p.nterr)
      snprintf(c->p.terr[c->p.nterr++], PSL_MAX_TERR + 1, "%s", terr[i]);
  }
  return 0;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int psl_access_token_create(psl_access_t *a, psl_role_t role, const char *const *terr,
                            size_t nterr, const char *name, const char *device,
                            char token[PSL_TOKEN_LEN + 1], psl_principal_t *out) {
  struct create_args c;
  int rc;

  memset(&c, 0, sizeof c);
  if (!a || !token || role <= PSL_ROLE_NONE || role > PSL_ROLE_ADMIN)
    return PSL_EINVALID;
  if (!psl_access_name_is_valid(name) || !psl_access_name_is_valid(device))
    return PSL_EINVALID;
  c.p.role = role;
  if ((rc = create_terr(&c, terr, nterr)) != 0)
    return rc;
  snprintf(c.p.name, sizeof c.p.name, "%s", name);
  snprintf(c.p.device, sizeof c.p.device, "%s", device);
  c.p.created_ms = now_ms();
  if ((rc = psl__access_write(a, create_in_txn, &c)) == 0) {
    memcpy(token, c.token, sizeof c.token);
    if (out)
      *out = c.p;
  }
  sodium_memzero(c.token, sizeof c.token);
  return rc;
}

/* ---- Check. */

/* Look hash up in txn: 0, PSL_EUNAUTHORIZED (unknown or revoked) or PSL_ECORRUPT. */
static int check_in_txn(psl_access_t *a, MDB_txn *txn, const uint8_t hash[PSL_HASH_BYTES],
                        psl_principal_t *out) {
  MDB_val key = psl__mval(hash, PSL_HASH_BYTES), val;
  int rc = mdb_get(txn, a->tokens, &key, &val);
  if (rc == MDB_NOTFOUND)
    return PSL_EUNAUTHORIZED;
  if (rc)
    return psl_err_from_mdb(rc);
  if ((rc = rec_decode(&key, &val, out)) != 0) {
    memset(out, 0, sizeof *out);
    return rc;
  }
  return out->revoked ? PSL_EUNAUTHORIZED : 0;
}

int psl_access_token_check(psl_access_t *a, const char *token, size_t len, psl_principal_t *out) {
  psl_principal_t scratch;
  uint8_t hash[PSL_HASH_BYTES];
  MDB_txn *txn;
  int rc;

  if (!out)
    out = &scratch;
  memset(out, 0, sizeof *out);
  if (!a || !token || !token_shaped(token, len))
    return PSL_EUNAUTHORIZED;
  token_hash(token, len, hash);
  if ((rc = psl__access_txn_begin(a, MDB_RDONLY, &txn)) != 0)
    return rc;
  rc = check_in_txn(a, txn, hash, out);
  psl__access_txn_abort(a, txn);
  return rc;
}

int psl_access_token_check_id(psl_access_t *a, const char *id, psl_principal_t *out) {
  psl_principal_t scratch;
  char idn[PSL_TOKEN_ID_LEN + 1];
  MDB_val key, val;
  MDB_txn *txn;
  int rc;

  if (!out)
    out = &scratch;
  memset(out, 0, sizeof *out);
  if (!a || !id || !id_parse(id, idn))
    return PSL_EUNAUTHORIZED;
  if ((rc = psl__access_txn_begin(a, MDB_RDONLY, &txn)) != 0)
    return rc;
  key = psl__mval(idn, PSL_TOKEN_ID_LEN);
  int mrc = mdb_get(txn, a->ids, &key, &val);
  if (mrc == MDB_NOTFOUND)
    rc = PSL_EUNAUTHORIZED;
  else if (mrc != 0)
    rc = psl_err_from_mdb(mrc);
  else if (val.mv_size != PSL_HASH_BYTES)
    rc = PSL_ECORRUPT;
  else
    rc = check_in_txn(a, txn, val.mv_data, out);
  psl__access_txn_abort(a, txn);
  return rc;
}

void psl_access_token_id(const char *token, size_t len, char id[PSL_TOKEN_ID_LEN + 1]) {
  uint8_t hash[PSL_HASH_BYTES];
  token_hash(token ? token : "", token ? len : 0, hash);
  id_from_hash(hash, id);
}

/* ---- Revoke. */

struct revoke_args {
  int by_id;
  char id[PSL_TOKEN_ID_LEN + 1];
  uint8_t hash[PSL_HASH_BYTES];
};

static int revoke_in_txn(psl_access_t *a, psl__access_wtxn_t *w, void *arg) {
  struct revoke_args *r = arg;
  psl_principal_t p;
  uint8_t rec[REC_MAX];
  MDB_val key, val;
  int rc;

  if (r->by_id) {
    key = psl__mval(r->id, PSL_TOKEN_ID_LEN);
    if ((rc = mdb_get(w->txn, a->ids, &key, &val)) != 0)
      return psl_err_from_mdb(rc); /* MDB_NOTFOUND → PSL_ENOTFOUND */
    if (val.mv_size != PSL_HASH_BYTES)
      return PSL_ECORRUPT;
    memcpy(r->hash, val.mv_data, PSL_HASH_BYTES);
  }
  key = psl__mval(r->hash, PSL_HASH_BYTES);
  if ((rc = mdb_get(w->txn, a->tokens, &key, &val)) != 0)
    return psl_err_from_mdb(rc);
  if ((rc = rec_decode(&key, &val, &p)) != 0)
    return rc;
  if (p.revoked)
    return 0; /* already: nothing to write, the generation stays */
  memcpy(rec, val.mv_data, val.mv_size); /* val points into the map: copy before the put */
  rec[REC_OFF_REVOKED] = 1;
  if ((rc = psl__access_put(w, a->tokens, key, psl__mval(rec, val.mv_size), 0)) != 0)
    return rc;
  return psl__access_generation_bump(a, w);
}

int psl_access_token_revoke(psl_access_t *a, const char *id_or_token) {
  struct revoke_args r;
  int rc;

  memset(&r, 0, sizeof r);
  if (!a || !id_or_token)
    return PSL_ENOTFOUND;
  size_t len = strnlen(id_or_token, PSL_TOKEN_LEN + 1);
  if (id_parse(id_or_token, r.id))
    r.by_id = 1;
  else if (token_shaped(id_or_token, len))
    token_hash(id_or_token, len, r.hash);
  else
    return PSL_ENOTFOUND;
  rc = psl__access_write(a, revoke_in_txn, &r);
  sodium_memzero(&r, sizeof r);
  return rc;
}

/* ---- List. */

int psl_access_token_list(psl_access_t *a, int (*fn)(void *arg, const psl_principal_t *p),
                          void *arg) {
  MDB_txn *txn;
  MDB_cursor *cur;
  MDB_val key, val;
  psl_principal_t p;
  int rc;

  if (!a || !fn)
    return PSL_EINVALID;
  if ((rc = psl__access_txn_begin(a, MDB_RDONLY, &txn)) != 0)
    return rc;
  int mrc = mdb_cursor_open(txn, a->tokens, &cur);
  if (mrc != 0) {
    psl__access_txn_abort(a, txn);
    return psl_err_from_mdb(mrc);
  }
  /* Keys are hashes, so hash order is id order (the id is the hash's first bytes in hex). */
  mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
  for (; mrc == 0; mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
    if ((rc = rec_decode(&key, &val, &p)) != 0 || fn(arg, &p) != 0)
      break;
  }
  mdb_cursor_close(cur);
  psl__access_txn_abort(a, txn);
  if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
    rc = psl_err_from_mdb(mrc);
  return rc;
}
