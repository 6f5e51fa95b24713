/*
 * projection.c — the client's participant projections: domain/'s own fold and LMDB store
 * (psl_projdb_*), the code the server runs, never a copy.
 *
 * The one difference from the server: the server's projections fold every seq of the log in
 * order (psl_projdb_apply wants ev->seq == proj_seq + 1), while a client's replica has gaps
 * (a caseworker sees one territory) and may receive old events late (a participant
 * transferred into the territory arrives with its whole history).  So the client folds each
 * event it adds to the replica under a LOCAL seq, proj_seq + 1, in arrival order, and keeps
 * the map back to the server's seq:
 *
 *   sidx     stream ‖ 0x00 ‖ local seq (8 BE) → server seq (8 BE)
 *   created  stream → ""   (streams this device appended to: known before any sync)
 *
 * "Latest wins" fields compare (at, seq); with local seqs, ties on `at` break by arrival
 * order instead of server order — the same for every event of one chunk, which arrive in
 * server order.  Recomputations (event.voided, back-dated transfers) read the stream's
 * earlier events through sidx and the replica (stream_iter).
 *
 * Erasure: when a participant.erased is applied, every replica record of that stream is
 * rewritten with `pii` {erased: true} (psl__domain_erase_pii, through sidx), in the chunk's
 * transaction: the device stops holding the person's name as soon as it learns of the
 * erasure, and shows what the server now sends for those events.
 *
 * Unsent events (outbox) are not folded into the stored projections: psl_client_participant_json
 * folds them on top, in memory, with the same fold (psl_proj_apply).
 */
#include <stdio.h>
#include <stdlib.h>

#include "client_int.h"
#include "psl_domain.h"

#define SIDX_KEY_MAX (PSL_MAX_STREAM + 1 + 8)

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

int psl__domain_open(psl__cstore_t *s, MDB_txn *txn) {
  int rc = mdb_dbi_open(txn, "sidx", MDB_CREATE, &s->sidx);
  if (!rc)
    rc = mdb_dbi_open(txn, "created", MDB_CREATE, &s->created);
  if (rc)
    return psl_err_from_mdb(rc);
  return psl_projdb_open(&s->domain, s->env, txn);
}

void psl__domain_close(psl__cstore_t *s) {
  psl_projdb_free(s->domain);
  s->domain = NULL;
}

/* ---- reading a stream back: sidx + replica */

typedef struct {
  psl__cstore_t *s;
  MDB_txn *txn;
} iter_ctx_t;

static int stream_iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                       void *fnarg) {
  iter_ctx_t *it = arg;
  uint8_t key[SIDX_KEY_MAX];
  MDB_cursor *cur;
  MDB_val k, v;
  if (stream.len > PSL_MAX_STREAM)
    return PSL_EINVALID;
  memcpy(key, stream.ptr, stream.len);
  key[stream.len] = 0;
  size_t plen = stream.len + 1;
  int rc = psl_err_from_mdb(mdb_cursor_open(it->txn, it->s->sidx, &cur));
  if (rc)
    return rc;
  k.mv_size = plen;
  k.mv_data = key;
  for (int op = MDB_SET_RANGE;; op = MDB_NEXT) {
    int m = mdb_cursor_get(cur, &k, &v, op);
    if (m == MDB_NOTFOUND)
      break;
    if (m) {
      rc = psl_err_from_mdb(m);
      break;
    }
    if (k.mv_size != plen + 8 || memcmp(k.mv_data, key, plen) != 0)
      break;
    uint64_t local = get_be64((const uint8_t *)k.mv_data + plen);
    if (local >= before_seq || v.mv_size != 8)
      break;
    uint8_t rkey[8];
    memcpy(rkey, v.mv_data, 8);
    MDB_val rk = {8, rkey}, rv;
    psl_event_t ev;
    m = mdb_get(it->txn, it->s->replica, &rk, &rv);
    if (m || rv.mv_size <= PSL_HASH_BYTES ||
        psl_event_decode_stored((const uint8_t *)rv.mv_data + PSL_HASH_BYTES,
                                rv.mv_size - PSL_HASH_BYTES, &ev, NULL)) {
      rc = PSL_ECORRUPT;
      break;
    }
    ev.seq = local;
    if ((rc = fn(fnarg, &ev)) != 0)
      break;
  }
  mdb_cursor_close(cur);
  return rc;
}

int psl__domain_apply(psl__cstore_t *s, MDB_txn *txn, const psl_event_t *ev) {
  uint8_t key[SIDX_KEY_MAX], val[8];
  uint64_t local = 0;
  iter_ctx_t it = {s, txn};
  psl_event_t copy = *ev;
  int rc = psl_projdb_seq(s->domain, txn, &local);
  if (rc)
    return rc;
  local++;
  if (ev->stream.len > PSL_MAX_STREAM)
    return PSL_EINVALID;
  memcpy(key, ev->stream.ptr, ev->stream.len);
  key[ev->stream.len] = 0;
  put_be64(key + ev->stream.len + 1, local);
  put_be64(val, ev->seq);
  MDB_val k = {ev->stream.len + 9, key}, v = {8, val};
  rc = psl_err_from_mdb(mdb_put(txn, s->sidx, &k, &v, 0));
  if (rc)
    return rc;
  copy.seq = local;
  return psl_projdb_apply(s->domain, txn, &copy, stream_iter, &it);
}

/* The MessagePack map {erased: true}: what the server sends for an erased participant's pii. */
static const uint8_t erased_pii[] = {0x81, 0xa6, 'e', 'r', 'a', 's', 'e', 'd', 0xc3};

int psl__domain_erase_pii(psl__cstore_t *s, MDB_txn *txn, psl_str_t stream, psl_buf_t *scratch,
                          int64_t *delta) {
  uint8_t key[SIDX_KEY_MAX];
  MDB_cursor *cur;
  MDB_val k, v;
  *delta = 0;
  if (stream.len == 0 || stream.len > PSL_MAX_STREAM)
    return PSL_EINVALID;
  memcpy(key, stream.ptr, stream.len);
  key[stream.len] = 0;
  size_t plen = stream.len + 1;
  int rc = psl_err_from_mdb(mdb_cursor_open(txn, s->sidx, &cur));
  if (rc)
    return rc;
  k.mv_size = plen;
  k.mv_data = key;
  for (int op = MDB_SET_RANGE;; op = MDB_NEXT) {
    int m = mdb_cursor_get(cur, &k, &v, op);
    if (m == MDB_NOTFOUND)
      break;
    if (m) {
      rc = psl_err_from_mdb(m);
      break;
    }
    if (k.mv_size != plen + 8 || memcmp(k.mv_data, key, plen) != 0)
      break;
    if (v.mv_size != 8) {
      rc = PSL_ECORRUPT;
      break;
    }
    uint8_t rkey[8];
    memcpy(rkey, v.mv_data, 8);
    MDB_val rk = {8, rkey}, rv;
    psl_event_t ev;
    m = mdb_get(txn, s->replica, &rk, &rv);
    if (m == MDB_NOTFOUND)
      continue;
    if (m || rv.mv_size <= PSL_HASH_BYTES ||
        psl_event_decode_stored((const uint8_t *)rv.mv_data + PSL_HASH_BYTES,
                                rv.mv_size - PSL_HASH_BYTES, &ev, NULL)) {
      rc = PSL_ECORRUPT;
      break;
    }
    if (ev.pii.len == 0 ||
        (ev.pii.len == sizeof erased_pii && memcmp(ev.pii.ptr, erased_pii, ev.pii.len) == 0))
      continue;
    ev.pii.ptr = erased_pii;
    ev.pii.len = sizeof erased_pii;
    psl_buf_reset(scratch); /* the record again: hash ‖ canonical, copied out of the map */
    if ((rc = psl_buf_append(scratch, rv.mv_data, PSL_HASH_BYTES)) != 0 ||
        (rc = psl_event_encode_canonical(scratch, &ev)) != 0)
      break;
    *delta += (int64_t)scratch->len - (int64_t)rv.mv_size;
    MDB_val nv = {scratch->len, psl_buf_data(scratch)};
    if ((rc = psl_err_from_mdb(mdb_put(txn, s->replica, &rk, &nv, 0))) != 0)
      break;
  }
  mdb_cursor_close(cur);
  return rc;
}

int psl__domain_drop(psl__cstore_t *s, MDB_txn *txn) {
  psl_proj_t *empty;
  int rc = psl_err_from_mdb(mdb_drop(txn, s->sidx, 0));
  if (rc)
    return rc;
  rc = psl_proj_new(&empty);
  if (rc)
    return rc;
  rc = psl_projdb_store(s->domain, txn, empty); /* proj_seq back to 0 */
  psl_proj_free(empty);
  return rc;
}

/* 1 if the replica or this device's appends know the stream. */
static int stream_known(psl__cstore_t *s, MDB_txn *txn, psl_str_t stream) {
  uint8_t key[SIDX_KEY_MAX];
  MDB_cursor *cur;
  MDB_val k = {stream.len, (void *)stream.ptr}, v;
  int known = 0;
  if (stream.len == 0 || stream.len > PSL_MAX_STREAM)
    return 0;
  if (mdb_get(txn, s->created, &k, &v) == 0)
    return 1;
  memcpy(key, stream.ptr, stream.len);
  key[stream.len] = 0;
  k.mv_size = stream.len + 1;
  k.mv_data = key;
  if (mdb_cursor_open(txn, s->sidx, &cur) == 0) {
    if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0)
      known = k.mv_size > stream.len + 1 && memcmp(k.mv_data, key, stream.len + 1) == 0;
    mdb_cursor_close(cur);
  }
  return known;
}

int psl__domain_check(psl__cstore_t *s, MDB_txn *txn, const psl_event_t *ev, char *why,
                      size_t whylen) {
  psl_diag_t diag;
  int known = stream_known(s, txn, ev->stream);
  int rc = psl_domain_validate(ev, known ? 1 : 0, &diag);
  if (rc) {
    if (why && whylen)
      snprintf(why, whylen, "%s", diag.msg);
    return rc;
  }
  MDB_val k = {ev->stream.len, (void *)ev->stream.ptr}, v = {0, NULL};
  return psl_err_from_mdb(mdb_put(txn, s->created, &k, &v, 0));
}

/* ---- participant views */

typedef struct {
  psl_proj_t *mem;
  psl_str_t stream;
  uint64_t next_seq; /* local seqs given to the unsent events, after the stored ones */
  size_t pending;
  iter_ctx_t it;
} fold_ctx_t;

static int walk_outbox(psl__cstore_t *s, MDB_txn *txn, int (*one)(void *, const MDB_val *),
                       void *arg) {
  MDB_cursor *cur;
  MDB_val k, v;
  int rc = psl_err_from_mdb(mdb_cursor_open(txn, s->outbox, &cur));
  if (rc)
    return rc;
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
  return rc;
}

static int same_stream(psl_str_t a, psl_str_t b) {
  return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* Recomputation source for the memory fold: the stream from the replica, then its unsent
 * events (numbered after the stored ones, as fold_pending_one numbers them). */
typedef struct {
  psl_str_t stream;
  uint64_t before, seq;
  psl_event_fn fn;
  void *fnarg;
} outbox_iter_t;

static int outbox_iter_one(void *arg, const MDB_val *v) {
  outbox_iter_t *oi = arg;
  psl_event_t ev;
  if (psl__outbox_decode(v->mv_data, v->mv_size, &ev))
    return PSL_ECORRUPT;
  if (!same_stream(ev.stream, oi->stream))
    return 0;
  ev.seq = ++oi->seq;
  if (ev.seq >= oi->before)
    return 1; /* past the event being recomputed: stop the walk */
  return oi->fn(oi->fnarg, &ev);
}

static int mem_iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                    void *fnarg) {
  fold_ctx_t *f = arg;
  outbox_iter_t oi = {stream, before_seq, 0, fn, fnarg};
  int rc = stream_iter(&f->it, stream, before_seq, fn, fnarg);
  if (rc)
    return rc;
  psl_projdb_seq(f->it.s->domain, f->it.txn, &oi.seq);
  rc = walk_outbox(f->it.s, f->it.txn, outbox_iter_one, &oi);
  return rc == 1 ? 0 : rc;
}

static int fold_stored_one(void *arg, const psl_event_t *ev) {
  fold_ctx_t *f = arg;
  return psl_proj_apply(f->mem, ev, mem_iter, f);
}

static int fold_pending_one(void *arg, const MDB_val *v) {
  fold_ctx_t *f = arg;
  psl_event_t ev;
  if (psl__outbox_decode(v->mv_data, v->mv_size, &ev))
    return PSL_ECORRUPT;
  if (!same_stream(ev.stream, f->stream))
    return 0;
  ev.seq = ++f->next_seq;
  f->pending++;
  return f->mem ? psl_proj_apply(f->mem, &ev, mem_iter, f) : 0;
}

/* The participant as stored, with its unsent events folded on top.  *pending how many. */
static int participant_state(psl__cstore_t *s, MDB_txn *txn, const uint8_t id[PSL_UUID_BYTES],
                             psl_participant_t *out, size_t *pending) {
  char name[PSL_MAX_STREAM];
  char u[PSL_UUID_STR + 1];
  psl_participant_t stored;
  fold_ctx_t f;
  int rc, have_stored;
  psl_uuid_format(id, u);
  snprintf(name, sizeof name, "participant/%s", u);
  memset(&f, 0, sizeof f);
  f.stream = psl_str(name);
  f.it.s = s;
  f.it.txn = txn;
  have_stored = psl_projdb_participant(s->domain, txn, id, &stored) == 0;
  rc = walk_outbox(s, txn, fold_pending_one, &f); /* f.mem NULL: only counts */
  *pending = f.pending;
  if (rc || f.pending == 0) {
    if (!rc)
      rc = have_stored ? psl_participant_copy(out, &stored) : PSL_ENOTFOUND;
    goto done_stored;
  }
  /* Unsent events: refold the whole stream (stored, then unsent) in memory. */
  rc = psl_proj_new(&f.mem);
  if (rc)
    goto done_stored;
  f.pending = 0;
  psl_projdb_seq(s->domain, txn, &f.next_seq);
  rc = stream_iter(&f.it, f.stream, UINT64_MAX, fold_stored_one, &f);
  if (!rc)
    rc = walk_outbox(s, txn, fold_pending_one, &f);
  if (!rc)
    rc = psl_proj_participant(f.mem, id, out);
  if (!rc && have_stored) /* attendance comes from session streams, folded in the store */
    out->sessions_attended += stored.sessions_attended;
  psl_proj_free(f.mem);
done_stored:
  if (have_stored)
    psl_participant_free(&stored);
  return rc;
}

static int state_json(const psl_participant_t *st, size_t pending, char **json) {
  psl_buf_t b;
  char head[48];
  int n = snprintf(head, sizeof head, "{\"pending\":%zu,", pending);
  psl_buf_init(&b, 0);
  int rc = psl_participant_json(&b, st, psl__now_ms());
  if (rc || b.len < 2 || psl_buf_data(&b)[0] != '{') {
    psl_buf_free(&b);
    return rc ? rc : PSL_EINTERNAL;
  }
  char *out = malloc((size_t)n + b.len + 1);
  if (!out) {
    psl_buf_free(&b);
    return PSL_ENOMEM;
  }
  memcpy(out, head, (size_t)n);
  memcpy(out + n, psl_buf_data(&b) + 1, b.len - 1);
  out[(size_t)n + b.len - 1] = '\0';
  psl_buf_free(&b);
  *json = out;
  return 0;
}

int psl_client_participant_json(psl_client_t *c, const uint8_t id[PSL_CLIENT_ID_BYTES],
                                char **json) {
  MDB_txn *txn;
  psl_participant_t st;
  size_t pending = 0;
  *json = NULL;
  int rc = psl__store_rd(&c->store, &txn);
  if (rc)
    return rc;
  rc = participant_state(&c->store, txn, id, &st, &pending);
  if (!rc) {
    rc = state_json(&st, pending, json);
    psl_participant_free(&st);
  }
  mdb_txn_abort(txn);
  return rc;
}

/* ---- caseload */

typedef struct {
  psl__cstore_t *s;
  MDB_txn *txn;
  int (*fn)(void *arg, const uint8_t id[PSL_CLIENT_ID_BYTES], const char *json);
  void *arg;
  psl_proj_t *offline; /* participants referred on this device, not yet in the store */
  uint64_t seq;
} caseload_ctx_t;

static int in_caseload(const psl_participant_t *st) {
  return st->status == PSL_STATUS_REFERRED || st->status == PSL_STATUS_ACTIVE;
}

static int caseload_emit(caseload_ctx_t *cc, const psl_participant_t *st) {
  psl_participant_t full;
  size_t pending = 0;
  char *json = NULL;
  int rc = participant_state(cc->s, cc->txn, st->id, &full, &pending);
  if (rc)
    return rc == PSL_ENOTFOUND ? 0 : rc;
  if (in_caseload(&full))
    rc = state_json(&full, pending, &json);
  if (!rc && json)
    rc = cc->fn(cc->arg, full.id, json);
  psl_participant_free(&full);
  free(json);
  return rc;
}

static int caseload_stored(void *arg, const psl_participant_t *st) {
  return caseload_emit(arg, st);
}

static int caseload_offline(void *arg, const psl_participant_t *st) {
  caseload_ctx_t *cc = arg;
  psl_participant_t stored;
  if (psl_projdb_participant(cc->s->domain, cc->txn, st->id, &stored) == 0) {
    psl_participant_free(&stored); /* already listed from the store */
    return 0;
  }
  return caseload_emit(cc, st);
}

static int caseload_fold_one(void *arg, const MDB_val *v) {
  caseload_ctx_t *cc = arg;
  psl_event_t ev;
  if (psl__outbox_decode(v->mv_data, v->mv_size, &ev))
    return PSL_ECORRUPT;
  if (!psl_str_eq(ev.type, "participant.referred"))
    return 0; /* only to find who exists; states come from participant_state */
  ev.seq = ++cc->seq;
  return psl_proj_apply(cc->offline, &ev, NULL, NULL);
}

int psl_client_caseload(psl_client_t *c,
                        int (*fn)(void *arg, const uint8_t id[PSL_CLIENT_ID_BYTES],
                                  const char *json),
                        void *arg) {
  caseload_ctx_t cc;
  memset(&cc, 0, sizeof cc);
  cc.s = &c->store;
  cc.fn = fn;
  cc.arg = arg;
  int rc = psl__store_rd(&c->store, &cc.txn);
  if (rc)
    return rc;
  rc = psl_projdb_caseload(c->store.domain, cc.txn, 0, caseload_stored, &cc);
  if (!rc)
    rc = psl_proj_new(&cc.offline);
  if (!rc)
    rc = walk_outbox(&c->store, cc.txn, caseload_fold_one, &cc);
  if (!rc)
    rc = psl_proj_caseload(cc.offline, 0, caseload_offline, &cc);
  psl_proj_free(cc.offline);
  mdb_txn_abort(cc.txn);
  return rc;
}
