/*
 * store.c — the client's LMDB store on the device (HOME/store/, file mode 0600).
 *
 * One environment, opened MDB_NOTLS (the app's threads and the sync thread both read), with
 * these databases (integers big-endian, so LMDB's byte order is numeric order):
 *
 *   outbox   order (8)  → one `push` frame holding the single new event, exactly as
 *                         psl_msg_encode writes it.  The record is read back with the same
 *                         strict decoder as anything from the wire, and a batch is re-encoded
 *                         into one push.  `order` comes from meta "order", +1 per append, so
 *                         it never repeats even after the outbox empties.
 *   replica  seq (8)    → hash (32) ‖ canonical stored event (psl_event_encode_canonical of
 *                         what the server sent: the same bytes as its log, pii aside).
 *   refused  order (8)  → the refusal record:
 *                           [0]      format, 1
 *                           [1]      kind: 1 conflict, 2 forbidden, 3 invalid
 *                           [2..9]   the server's version of the stream (conflict), else 0
 *                           [10..17] when it was refused, ms since the epoch (int64)
 *                           [18..19] length m of the reason (<= PSL_MAX_STR)
 *                           [20..]   the reason (m bytes, no personal data), then the
 *                                    outbox value unchanged
 *   meta     key        → value
 *                           "format"        8: 1
 *                           "url"           the server URL (text)
 *                           "token"         the token (text; the files are 0600)
 *                           "checkpoint"    seq (8) ‖ server log id (0 or 36 characters)
 *                           "head"          8: the server's head as last seen
 *                           "synced_at"     8: ms of the last caught_up
 *                           "replica_bytes" 8: sum of the replica's record sizes
 *                           "role"          text, from the last welcome
 *                           "order"         8: the last outbox order given
 *   domain/'s projection databases, written in the same transactions as the replica.
 *
 * The map is sized once at open (a sparse file): replica cap × 2 for B-tree overhead, plus
 * STORE_MAP_RESERVE for the outbox, projections and meta.  Never grown at run time, which
 * would need every transaction of the process closed.
 *
 * Memory: every page LMDB reads through its map stays resident in the process (RSS) until
 * the kernel needs it, so a catch-up of 1,000,000 events would show ~500 MiB of RSS although
 * the client holds a chunk at a time.  Phones count those pages against the app.  The sync
 * thread hands them back (psl__store_release_pages, madvise MADV_DONTNEED on the read-only
 * shared map: the pages stay in the page cache and fault back in when read again).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "client_int.h"

/* Room beyond the replica for outbox, refused, projections and meta: a caseworker's outbox
 * after a month offline is ~1,000 events (~1 MiB); projections of 100,000 participants take
 * ~100 MiB; 256 MiB leaves room for both. */
#define STORE_MAP_RESERVE (256ull * 1024 * 1024)
/* Named databases: ours (4) + domain/'s (a handful) with room. */
#define STORE_MAX_DBS 32
#define STORE_FORMAT 1

/* Refusal record header (see the top). */
#define REFUSED_HEAD 20

int64_t psl__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static int mkdir_p(const char *dir) {
  if (mkdir(dir, 0700) == 0 || errno == EEXIST)
    return 0;
  return psl_err_from_errno(errno) == PSL_ENOTFOUND ? PSL_EIO : psl_err_from_errno(errno);
}

int psl__store_rd(psl__cstore_t *s, MDB_txn **txn) {
  return psl_err_from_mdb(mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn));
}

int psl__store_wr(psl__cstore_t *s, MDB_txn **txn) {
  return psl_err_from_mdb(mdb_txn_begin(s->env, NULL, 0, txn));
}

int psl__store_commit(MDB_txn *txn) { return psl_err_from_mdb(mdb_txn_commit(txn)); }

static void find_map(psl__cstore_t *s, const char *dir);

static int open_dbs(psl__cstore_t *s) {
  MDB_txn *txn;
  uint64_t fmt = 0;
  int rc = psl__store_wr(s, &txn);
  if (rc)
    return rc;
  rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &s->outbox);
  if (!rc)
    rc = mdb_dbi_open(txn, "replica", MDB_CREATE, &s->replica);
  if (!rc)
    rc = mdb_dbi_open(txn, "refused", MDB_CREATE, &s->refused);
  if (!rc)
    rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
  rc = psl_err_from_mdb(rc);
  if (!rc)
    rc = psl__domain_open(s, txn);
  if (rc)
    goto fail_dbi;
  rc = psl__meta_get_u64(s, txn, PSL__META_FORMAT, &fmt);
  if (rc == PSL_ENOTFOUND)
    rc = psl__meta_put_u64(s, txn, PSL__META_FORMAT, STORE_FORMAT);
  else if (!rc && fmt != STORE_FORMAT)
    rc = PSL_ECORRUPT; /* a store written by a newer, incompatible library */
  if (rc)
    goto fail_dbi;
  return psl__store_commit(txn);
fail_dbi:
  mdb_txn_abort(txn);
  return rc;
}

int psl__store_open(psl__cstore_t *s, const char *dir, uint64_t replica_max) {
  int rc;
  memset(s, 0, sizeof *s);
  s->replica_max = replica_max;
  rc = mkdir_p(dir);
  if (rc)
    return rc;
  rc = psl_err_from_mdb(mdb_env_create(&s->env));
  if (rc)
    return rc;
  rc = psl_err_from_mdb(mdb_env_set_maxdbs(s->env, STORE_MAX_DBS));
  if (!rc)
    rc = psl_err_from_mdb(mdb_env_set_mapsize(s->env, (size_t)(replica_max * 2 + STORE_MAP_RESERVE)));
  if (!rc)
    rc = psl_err_from_mdb(mdb_env_open(s->env, dir, MDB_NOTLS, 0600));
  if (rc)
    goto fail_env;
  rc = open_dbs(s);
  if (rc)
    goto fail_env;
  find_map(s, dir);
  return 0;
fail_env:
  mdb_env_close(s->env);
  s->env = NULL;
  psl__domain_close(s);
  return rc;
}

/* Where LMDB mapped data.mdb: mdb_env_info gives the address only for MDB_FIXEDMAP, so read
 * it from /proc/self/maps (Linux and Android).  Not found: releases do nothing. */
static void find_map(psl__cstore_t *s, const char *dir) {
  char want[PATH_MAX + 16], path[PATH_MAX + 16], line[PATH_MAX + 128];
  snprintf(path, sizeof path, "%s/data.mdb", dir);
  if (!realpath(path, want))
    return;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perms[8];
    int off = 0;
    if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &off) < 3 || off == 0)
      continue;
    line[strcspn(line, "\n")] = '\0';
    if (strcmp(line + off, want) == 0 && perms[3] == 's' && hi - lo > s->map_len) {
      s->map_addr = (void *)lo;
      s->map_len = hi - lo;
    }
  }
  fclose(f);
}

void psl__store_release_pages(psl__cstore_t *s) {
  if (s->map_addr)
    madvise(s->map_addr, s->map_len, MADV_DONTNEED);
}

void psl__store_close(psl__cstore_t *s) {
  if (s && s->env) {
    mdb_env_close(s->env);
    s->env = NULL;
  }
  if (s)
    psl__domain_close(s);
}

/* ---- meta */

int psl__meta_get(psl__cstore_t *s, MDB_txn *txn, const char *key, void *buf, size_t cap,
                  size_t *len) {
  MDB_val k = {strlen(key), (void *)key}, v;
  int rc = mdb_get(txn, s->meta, &k, &v);
  if (rc)
    return psl_err_from_mdb(rc);
  if (v.mv_size > cap)
    return PSL_ECORRUPT;
  memcpy(buf, v.mv_data, v.mv_size);
  if (len)
    *len = v.mv_size;
  return 0;
}

int psl__meta_put(psl__cstore_t *s, MDB_txn *txn, const char *key, const void *val, size_t len) {
  MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
  return psl_err_from_mdb(mdb_put(txn, s->meta, &k, &v, 0));
}

int psl__meta_get_u64(psl__cstore_t *s, MDB_txn *txn, const char *key, uint64_t *v) {
  uint8_t b[8];
  size_t n = 0;
  int rc = psl__meta_get(s, txn, key, b, sizeof b, &n);
  if (rc)
    return rc;
  if (n != 8)
    return PSL_ECORRUPT;
  *v = get_be64(b);
  return 0;
}

int psl__meta_put_u64(psl__cstore_t *s, MDB_txn *txn, const char *key, uint64_t v) {
  uint8_t b[8];
  put_be64(b, v);
  return psl__meta_put(s, txn, key, b, sizeof b);
}

int psl__ckpt_get(psl__cstore_t *s, MDB_txn *txn, psl__ckpt_t *ck) {
  uint8_t b[8 + PSL_CLIENT_SERVER_ID];
  size_t n = 0;
  int rc = psl__meta_get(s, txn, PSL__META_CKPT, b, sizeof b, &n);
  memset(ck, 0, sizeof *ck);
  if (rc == PSL_ENOTFOUND)
    return 0; /* a fresh store: seq 0, no server yet */
  if (rc)
    return rc;
  if (n != 8 && n != 8 + PSL_CLIENT_SERVER_ID)
    return PSL_ECORRUPT;
  ck->seq = get_be64(b);
  memcpy(ck->server, b + 8, n - 8);
  ck->server[n - 8] = '\0';
  return 0;
}

int psl__ckpt_put(psl__cstore_t *s, MDB_txn *txn, const psl__ckpt_t *ck) {
  uint8_t b[8 + PSL_CLIENT_SERVER_ID];
  size_t sl = strlen(ck->server);
  if (sl != 0 && sl != PSL_CLIENT_SERVER_ID)
    return PSL_EINVALID;
  put_be64(b, ck->seq);
  memcpy(b + 8, ck->server, sl);
  return psl__meta_put(s, txn, PSL__META_CKPT, b, 8 + sl);
}

/* ---- outbox */

int psl__outbox_put(psl__cstore_t *s, MDB_txn *txn, const psl_event_t *ev, uint64_t *order) {
  psl_msg_t m;
  psl_buf_t b;
  uint64_t last = 0;
  uint8_t key[8];
  int rc = psl__meta_get_u64(s, txn, "order", &last);
  if (rc && rc != PSL_ENOTFOUND)
    return rc;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_PUSH;
  m.has_id = 1;
  m.u.push.events = (psl_event_t *)ev;
  m.u.push.n = 1;
  psl_buf_init(&b, 0);
  rc = psl_msg_encode(&b, &m);
  if (rc)
    goto done;
  put_be64(key, last + 1);
  MDB_val k = {8, key}, v = {b.len, psl_buf_data(&b)};
  rc = psl_err_from_mdb(mdb_put(txn, s->outbox, &k, &v, MDB_APPEND));
  if (!rc)
    rc = psl__meta_put_u64(s, txn, "order", last + 1);
  if (!rc && order)
    *order = last + 1;
done:
  psl_buf_free(&b);
  return rc;
}

int psl__outbox_decode(const void *val, size_t len, psl_event_t *ev) {
  psl_msg_t m;
  int rc = psl_msg_decode(val, len, &m, NULL);
  if (rc)
    return PSL_ECORRUPT;
  if (m.t != PSL_MSG_PUSH || m.u.push.n != 1) {
    psl_msg_free(&m);
    return PSL_ECORRUPT;
  }
  *ev = m.u.push.events[0];
  psl_msg_free(&m);
  return 0;
}

int psl__outbox_batch(psl__cstore_t *s, MDB_txn *txn, psl_event_t *ev, uint64_t *order,
                      size_t max, size_t max_bytes, size_t *n) {
  MDB_cursor *cur;
  MDB_val k, v;
  size_t bytes = 0;
  int rc = psl_err_from_mdb(mdb_cursor_open(txn, s->outbox, &cur));
  *n = 0;
  if (rc)
    return rc;
  for (int op = MDB_FIRST; *n < max; op = MDB_NEXT) {
    rc = mdb_cursor_get(cur, &k, &v, op);
    if (rc == MDB_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc) {
      rc = psl_err_from_mdb(rc);
      break;
    }
    if (*n > 0 && bytes + v.mv_size > max_bytes)
      break;
    if (k.mv_size != 8 || (rc = psl__outbox_decode(v.mv_data, v.mv_size, &ev[*n])))
      break;
    order[*n] = get_be64(k.mv_data);
    bytes += v.mv_size;
    (*n)++;
  }
  mdb_cursor_close(cur);
  return rc;
}

/* ---- refused */

static int refused_kind(int err) {
  return err == PSL_ECONFLICT ? 1 : err == PSL_EFORBIDDEN ? 2 : 3;
}

int psl__refuse(psl__cstore_t *s, MDB_txn *txn, uint64_t order, int err, uint64_t ver,
                psl_str_t msg, int64_t now_ms) {
  uint8_t key[8];
  MDB_val k = {8, key}, ov, rv;
  put_be64(key, order);
  int rc = mdb_get(txn, s->outbox, &k, &ov);
  if (rc)
    return psl_err_from_mdb(rc);
  if (msg.len > PSL_MAX_STR)
    msg.len = PSL_MAX_STR;
  rv.mv_size = REFUSED_HEAD + msg.len + ov.mv_size;
  rc = mdb_put(txn, s->refused, &k, &rv, MDB_RESERVE);
  if (rc)
    return psl_err_from_mdb(rc);
  uint8_t *p = rv.mv_data;
  p[0] = 1;
  p[1] = (uint8_t)refused_kind(err);
  put_be64(p + 2, ver);
  put_be64(p + 10, (uint64_t)now_ms);
  p[18] = (uint8_t)(msg.len >> 8);
  p[19] = (uint8_t)msg.len;
  if (msg.len)
    memcpy(p + REFUSED_HEAD, msg.ptr, msg.len);
  memcpy(p + REFUSED_HEAD + msg.len, ov.mv_data, ov.mv_size);
  return psl_err_from_mdb(mdb_del(txn, s->outbox, &k, NULL));
}

int psl__refused_decode(const void *val, size_t len, psl_event_t *ev, int *err, uint64_t *ver,
                        psl_str_t *msg, int64_t *at) {
  const uint8_t *p = val;
  if (len < REFUSED_HEAD || p[0] != 1)
    return PSL_ECORRUPT;
  size_t m = (size_t)p[18] << 8 | p[19];
  if (REFUSED_HEAD + m > len)
    return PSL_ECORRUPT;
  *err = p[1] == 1 ? PSL_ECONFLICT : p[1] == 2 ? PSL_EFORBIDDEN : PSL_EINVALID;
  *ver = get_be64(p + 2);
  *at = (int64_t)get_be64(p + 10);
  msg->ptr = (const char *)p + REFUSED_HEAD;
  msg->len = m;
  return psl__outbox_decode(p + REFUSED_HEAD + m, len - REFUSED_HEAD - m, ev);
}

/* ---- replica */

int psl__replica_put(psl__cstore_t *s, MDB_txn *txn, const psl_event_t *ev, psl_buf_t *scratch,
                     size_t *bytes) {
  uint8_t key[8];
  int rc;
  psl_buf_reset(scratch);
  rc = psl_buf_append(scratch, ev->hash, PSL_HASH_BYTES);
  if (!rc)
    rc = psl_event_encode_canonical(scratch, ev);
  if (rc)
    return rc;
  put_be64(key, ev->seq);
  MDB_val k = {8, key}, v = {scratch->len, psl_buf_data(scratch)};
  /* Chunks come in seq order: appending is the common case and the cheap one.  An older
   * seq (a transferred participant's history) takes the ordinary path. */
  rc = mdb_put(txn, s->replica, &k, &v, MDB_APPEND | MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST)
    rc = mdb_put(txn, s->replica, &k, &v, MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST)
    return PSL_ECONFLICT;
  if (rc)
    return psl_err_from_mdb(rc);
  *bytes = scratch->len;
  return 0;
}

int psl__store_reset(psl__cstore_t *s, MDB_txn *txn, const char *server) {
  psl__ckpt_t ck;
  int rc = psl_err_from_mdb(mdb_drop(txn, s->replica, 0));
  if (rc)
    return rc;
  rc = psl__domain_drop(s, txn);
  if (rc)
    return rc;
  memset(&ck, 0, sizeof ck);
  snprintf(ck.server, sizeof ck.server, "%s", server ? server : "");
  rc = psl__ckpt_put(s, txn, &ck);
  if (!rc)
    rc = psl__meta_put_u64(s, txn, PSL__META_REPLICA_BYTES, 0);
  return rc;
}

/* ---- views */

static void copy_str(char *dst, size_t cap, psl_str_t s) {
  size_t n = s.len < cap - 1 ? s.len : cap - 1;
  if (n)
    memcpy(dst, s.ptr, n);
  dst[n] = '\0';
}

void psl__event_view(const psl_event_t *ev, psl_client_event_t *out) {
  memset(out, 0, sizeof *out);
  memcpy(out->id, ev->id, PSL_UUID_BYTES);
  copy_str(out->stream, sizeof out->stream, ev->stream);
  copy_str(out->type, sizeof out->type, ev->type);
  copy_str(out->terr, sizeof out->terr, ev->terr);
  out->at = ev->at;
  out->data = ev->data.ptr;
  out->data_len = ev->data.len;
  out->pii = ev->pii.len ? ev->pii.ptr : NULL;
  out->pii_len = ev->pii.len;
  out->expect = ev->expect;
  out->seq = ev->seq;
  out->ver = ev->ver;
  out->rec = ev->rec;
  copy_str(out->by, sizeof out->by, ev->by);
  copy_str(out->dev, sizeof out->dev, ev->dev);
}
