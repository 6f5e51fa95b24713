/*
 * client.c — psl_client_t: open and close, login, append, status and the local reads.
 *
 * Everything here runs on the caller's thread and touches only the store (short LMDB
 * transactions, MDB_NOTLS); the network belongs to the sync thread (conn.c, sync.c), which
 * append only wakes.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <sodium.h>

#include "client_int.h"

/* The token as stored: PROTOCOL-v1 bounds any string by PSL_MAX_STR. */
#define CLIENT_MAX_TOKEN PSL_MAX_STR
#define CLIENT_DEFAULT_DEVICE "passerelle-client"

static const char *const state_names[] = {"idle",    "connecting", "pushing", "catching-up",
                                          "live",    "waiting",    "done",    "failed"};

const char *psl_client_state_name(psl_client_state_t s) {
  if ((unsigned)s >= sizeof state_names / sizeof state_names[0])
    return "unknown";
  return state_names[s];
}

static char *dup_or(const char *s, const char *dflt) {
  const char *v = s ? s : dflt;
  return v ? strdup(v) : NULL;
}

int psl_client_open(psl_client_t **out, const psl_client_opts_t *opts) {
  char dir[PATH_MAX];
  int rc;
  *out = NULL;
  if (!opts || !opts->home || !opts->home[0])
    return PSL_EINVALID;
  if (snprintf(dir, sizeof dir, "%s/store", opts->home) >= (int)sizeof dir)
    return PSL_EINVALID;
  if (sodium_init() < 0) /* randomness for ids and backoff; idempotent, thread-safe */
    return PSL_EINTERNAL;
  if (mkdir(opts->home, 0700) != 0 && errno != EEXIST)
    return PSL_EIO;
  psl_client_t *c = calloc(1, sizeof *c);
  if (!c)
    return PSL_ENOMEM;
  c->home = strdup(opts->home);
  c->device = dup_or(opts->device, CLIENT_DEFAULT_DEVICE);
  c->agent = dup_or(opts->agent, NULL);
  if (!c->home || !c->device || (opts->agent && !c->agent)) {
    rc = PSL_ENOMEM;
    goto fail_alloc;
  }
  c->tls_insecure = opts->tls_insecure;
  c->no_deflate = opts->no_deflate;
  c->cb = opts->cb;
  rc = psl__store_open(&c->store, dir,
                       opts->replica_max_bytes ? opts->replica_max_bytes
                                               : PSL_CLIENT_REPLICA_MAX_DEFAULT);
  if (rc)
    goto fail_alloc;
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  *out = c;
  return 0;
fail_alloc:
  free(c->home);
  free(c->device);
  free(c->agent);
  free(c);
  return rc;
}

void psl_client_close(psl_client_t *c) {
  if (!c)
    return;
  psl_client_stop(c);
  psl__store_close(&c->store);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c->home);
  free(c->device);
  free(c->agent);
  free(c);
}

static int url_is_valid(const char *url) {
  const char *host;
  if (strncmp(url, "ws://", 5) == 0)
    host = url + 5;
  else if (strncmp(url, "wss://", 6) == 0)
    host = url + 6;
  else
    return 0;
  return host[0] && host[0] != '/' && host[0] != ':' && strlen(url) <= PSL__MAX_URL;
}

int psl_client_login(psl_client_t *c, const char *url, const char *token) {
  MDB_txn *txn;
  if (!url || !token || !url_is_valid(url) || !token[0] || strlen(token) > CLIENT_MAX_TOKEN)
    return PSL_EINVALID;
  int rc = psl__store_wr(&c->store, &txn);
  if (rc)
    return rc;
  rc = psl__meta_put(&c->store, txn, PSL__META_URL, url, strlen(url));
  if (!rc)
    rc = psl__meta_put(&c->store, txn, PSL__META_TOKEN, token, strlen(token));
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  return psl__store_commit(txn);
}

/* ---- append */

static int new_event(const psl_client_new_event_t *in, psl_event_t *ev, int64_t now) {
  memset(ev, 0, sizeof *ev);
  if (!in->stream || !in->type || !in->terr || !in->data || !in->data_len)
    return PSL_EINVALID;
  ev->stream = psl_str(in->stream);
  ev->type = psl_str(in->type);
  ev->terr = psl_str(in->terr);
  ev->at = in->at ? in->at : now;
  ev->data.ptr = in->data;
  ev->data.len = in->data_len;
  if (in->pii && in->pii_len) {
    ev->pii.ptr = in->pii;
    ev->pii.len = in->pii_len;
  }
  ev->expect = in->expect;
  if (ev->expect < PSL_EXPECT_ANY)
    return PSL_EINVALID;
  psl_uuid_v7(ev->id, now);
  return 0;
}

/* Encode the event as the outbox will keep it and decode it back with the wire's strict
 * decoder: what would not decode on the server is refused here, before it is stored. */
static int check_wire(const psl_event_t *ev, char *why, size_t whylen) {
  psl_msg_t m, back;
  psl_buf_t b;
  psl_diag_t diag;
  int rc;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_PUSH;
  m.has_id = 1;
  m.u.push.events = (psl_event_t *)ev;
  m.u.push.n = 1;
  psl_buf_init(&b, 0);
  rc = psl_msg_encode(&b, &m);
  if (!rc && b.len > PSL_MAX_EVENT)
    rc = PSL_ETOO_BIG;
  if (!rc) {
    rc = psl_msg_decode(psl_buf_data(&b), b.len, &back, &diag);
    if (rc && why)
      snprintf(why, whylen, "%s", diag.msg);
    if (!rc)
      psl_msg_free(&back);
  }
  psl_buf_free(&b);
  return rc;
}

int psl_client_append(psl_client_t *c, const psl_client_new_event_t *in,
                      uint8_t id_out[PSL_CLIENT_ID_BYTES], char *why, size_t whylen) {
  psl_event_t ev;
  MDB_txn *txn;
  int rc;
  if (why && whylen)
    why[0] = '\0';
  if (!c || !in)
    return PSL_EINVALID;
  rc = new_event(in, &ev, psl__now_ms());
  if (!rc)
    rc = check_wire(&ev, why, whylen);
  if (rc)
    return rc;
  rc = psl__store_wr(&c->store, &txn);
  if (rc)
    return rc;
  rc = psl__domain_check(&c->store, txn, &ev, why, whylen);
  if (!rc)
    rc = psl__outbox_put(&c->store, txn, &ev, NULL);
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  rc = psl__store_commit(txn);
  if (rc)
    return rc;
  if (id_out)
    memcpy(id_out, ev.id, PSL_UUID_BYTES);
  pthread_mutex_lock(&c->mu);
  if (c->sync)
    psl__sync_wake(c->sync);
  pthread_mutex_unlock(&c->mu);
  return 0;
}

/* ---- status */

static uint64_t db_entries(MDB_txn *txn, MDB_dbi dbi) {
  MDB_stat st;
  return mdb_stat(txn, dbi, &st) == 0 ? st.ms_entries : 0;
}

int psl_client_status(psl_client_t *c, psl_client_status_t *st) {
  MDB_txn *txn;
  psl__ckpt_t ck;
  size_t n = 0;
  uint64_t head = 0, synced = 0;
  memset(st, 0, sizeof *st);
  int rc = psl__store_rd(&c->store, &txn);
  if (rc)
    return rc;
  st->outbox = db_entries(txn, c->store.outbox);
  st->refused = db_entries(txn, c->store.refused);
  st->replica_events = db_entries(txn, c->store.replica);
  rc = psl__ckpt_get(&c->store, txn, &ck);
  if (!rc) {
    st->checkpoint = ck.seq;
    memcpy(st->server_id, ck.server, sizeof st->server_id);
  }
  psl__meta_get_u64(&c->store, txn, PSL__META_REPLICA_BYTES, &st->replica_bytes);
  psl__meta_get_u64(&c->store, txn, PSL__META_HEAD, &head);
  psl__meta_get_u64(&c->store, txn, PSL__META_SYNCED, &synced);
  if (psl__meta_get(&c->store, txn, PSL__META_URL, st->url, sizeof st->url - 1, &n) == 0)
    st->url[n] = '\0';
  if (psl__meta_get(&c->store, txn, PSL__META_ROLE, st->role, sizeof st->role - 1, &n) == 0)
    st->role[n] = '\0';
  mdb_txn_abort(txn);
  st->server_head = head;
  st->last_sync_ms = (int64_t)synced;
  pthread_mutex_lock(&c->mu);
  st->state = c->state;
  st->err = c->err;
  if (c->server_head > st->server_head)
    st->server_head = c->server_head;
  pthread_mutex_unlock(&c->mu);
  return rc;
}

/* ---- reads */

typedef int (*event_fn)(void *arg, const psl_client_event_t *ev);

int psl_client_replica_read(psl_client_t *c, uint64_t after, event_fn fn, void *arg) {
  MDB_txn *txn;
  MDB_cursor *cur;
  MDB_val k, v;
  uint8_t key[8];
  int rc = psl__store_rd(&c->store, &txn), op = MDB_SET_RANGE;
  if (rc)
    return rc;
  rc = psl_err_from_mdb(mdb_cursor_open(txn, c->store.replica, &cur));
  if (rc)
    goto done_txn;
  for (int i = 7; i >= 0; i--, after >>= 8)
    key[i] = (uint8_t)after;
  k.mv_size = 8;
  k.mv_data = key;
  for (;; op = MDB_NEXT) {
    psl_event_t ev;
    psl_client_event_t view;
    int m = mdb_cursor_get(cur, &k, &v, op);
    if (m == MDB_NOTFOUND)
      break;
    if (m) {
      rc = psl_err_from_mdb(m);
      break;
    }
    if (op == MDB_SET_RANGE && memcmp(k.mv_data, key, 8) == 0)
      continue; /* `after` itself is not after */
    if (v.mv_size <= PSL_HASH_BYTES ||
        psl_event_decode_stored((const uint8_t *)v.mv_data + PSL_HASH_BYTES,
                                v.mv_size - PSL_HASH_BYTES, &ev, NULL)) {
      rc = PSL_ECORRUPT;
      break;
    }
    psl__event_view(&ev, &view);
    if ((rc = fn(arg, &view)) != 0)
      break;
  }
  mdb_cursor_close(cur);
done_txn:
  mdb_txn_abort(txn);
  return rc;
}

/* Walk a database keyed by order; each value decoded by the caller's `one`. */
static int walk_orders(psl_client_t *c, MDB_dbi dbi,
                       int (*one)(void *arg, const MDB_val *v), void *arg) {
  MDB_txn *txn;
  MDB_cursor *cur;
  MDB_val k, v;
  int rc = psl__store_rd(&c->store, &txn);
  if (rc)
    return rc;
  rc = psl_err_from_mdb(mdb_cursor_open(txn, dbi, &cur));
  if (rc)
    goto done_txn;
  for (int op = MDB_FIRST;; op = MDB_NEXT) {
    int m = mdb_cursor_get(cur, &k, &v, op);
    if (m == MDB_NOTFOUND)
      break;
    if (m) {
      rc = psl_err_from_mdb(m);
      break;
    }
    if ((rc = one(arg, &v)) != 0)
      break;
  }
  mdb_cursor_close(cur);
done_txn:
  mdb_txn_abort(txn);
  return rc;
}

struct walk_ctx {
  event_fn efn;
  int (*rfn)(void *arg, const psl_client_refusal_t *r);
  void *arg;
};

static int outbox_one(void *arg, const MDB_val *v) {
  struct walk_ctx *w = arg;
  psl_event_t ev;
  psl_client_event_t view;
  if (psl__outbox_decode(v->mv_data, v->mv_size, &ev))
    return PSL_ECORRUPT;
  psl__event_view(&ev, &view);
  return w->efn(w->arg, &view);
}

int psl_client_outbox_read(psl_client_t *c, event_fn fn, void *arg) {
  struct walk_ctx w = {fn, NULL, arg};
  return walk_orders(c, c->store.outbox, outbox_one, &w);
}

static int refused_one(void *arg, const MDB_val *v) {
  struct walk_ctx *w = arg;
  psl_event_t ev;
  psl_client_event_t view;
  psl_client_refusal_t r;
  psl_str_t msg;
  char text[PSL_MAX_STR + 1];
  memset(&r, 0, sizeof r);
  if (psl__refused_decode(v->mv_data, v->mv_size, &ev, &r.err, &r.server_ver, &msg,
                          &r.refused_at))
    return PSL_ECORRUPT;
  memcpy(text, msg.ptr, msg.len);
  text[msg.len] = '\0';
  psl__event_view(&ev, &view);
  r.event = &view;
  r.msg = text;
  return w->rfn(w->arg, &r);
}

int psl_client_refused_read(psl_client_t *c,
                            int (*fn)(void *arg, const psl_client_refusal_t *r), void *arg) {
  struct walk_ctx w = {NULL, fn, arg};
  return walk_orders(c, c->store.refused, refused_one, &w);
}
