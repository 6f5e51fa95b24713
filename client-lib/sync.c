/*
 * sync.c — the client's sync session (PROTOCOL-v1), a state machine on the library's thread.
 *
 *                 start
 *                   │
 *                   ▼        connect error / close
 *   ┌──────────► CONNECTING ─────────────────────────┐
 *   │               │ established: hello             │
 *   │               ▼ welcome                        ▼
 *   │            PUSHING ── outbox empty: sub ──► CATCHING_UP ── caught_up ──► LIVE (follow)
 *   │               ▲  (pushes go on in every         │                      DONE (one pass)
 *   │               │   welcomed state as the         │
 *   │               │   outbox grows)                 │
 *   │  timer     WAITING ◄── close / error ───────────┘ (follow: backoff; one pass: FAILED)
 *   └──────────────┘
 *   error `reset`: drop replica + projections, keep outbox; sub again from 0 (or reconnect
 *                  at once when it answered the hello).
 *   error `unauthorized`, replica cap, store failure: FAILED (no retry).
 *
 * | transition                        | function        |
 * |-----------------------------------|-----------------|
 * | → CONNECTING                      | session_connect |
 * | CONNECTING → PUSHING (welcome)    | on_welcome      |
 * | PUSHING → CATCHING_UP (sub sent)  | pump            |
 * | CATCHING_UP → LIVE / DONE         | on_caught_up    |
 * | any → WAITING / FAILED            | psl__session_closed, fail, finish |
 *
 * Durability rules: an event leaves the outbox only in the write transaction that records
 * the server's answer (stored/dup: deleted; refused: moved to `refused`).  A chunk is
 * applied in one write transaction with the checkpoint, and acked only after its commit.  A
 * kill at any instant leaves either the state before or after one of these transactions.
 */
#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

#include "sync_int.h"

static void set_state(psl__sync_t *s, psl_client_state_t st, int err) {
  psl__client_set_state(s->c, st, err);
}

static int err_from_code(psl_str_t code) {
  static const struct {
    const char *code;
    int err;
  } map[] = {{"invalid", PSL_EINVALID},           {"unauthorized", PSL_EUNAUTHORIZED},
             {"forbidden", PSL_EFORBIDDEN},       {"conflict", PSL_ECONFLICT},
             {"too_big", PSL_ETOO_BIG},           {"rate_limited", PSL_ERATE_LIMITED},
             {"reset", PSL_ERESET},               {"unavailable", PSL_EUNAVAILABLE},
             {"internal", PSL_EINTERNAL}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (psl_str_eq(code, map[i].code))
      return map[i].err;
  return PSL_EINTERNAL;
}

/* A one-pass sync is over: tell psl_client_sync, close politely. */
static void finish(psl__sync_t *s, int err) {
  psl_client_t *c = s->c;
  if (s->finished)
    return;
  s->finished = 1;
  set_state(s, err ? PSL_CLIENT_FAILED : PSL_CLIENT_DONE, err);
  pthread_mutex_lock(&c->mu);
  c->done = 1;
  c->done_err = err;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  psl__conn_close(s);
}

/* Stop retrying (follow mode) or end the pass with err. */
static void fail(psl__sync_t *s, int err) {
  if (!s->follow) {
    finish(s, err);
    return;
  }
  s->failed = 1;
  set_state(s, PSL_CLIENT_FAILED, err);
  psl__conn_close(s);
}

/* A transient failure: drop this connection; psl__session_closed decides what next. */
static void drop(psl__sync_t *s, int err) {
  s->last_err = err;
  psl__conn_close(s);
}

static int outbox_empty(psl__sync_t *s) {
  MDB_txn *txn;
  MDB_stat st;
  if (psl__store_rd(&s->c->store, &txn))
    return 0;
  int rc = mdb_stat(txn, s->c->store.outbox, &st);
  mdb_txn_abort(txn);
  return rc == 0 && st.ms_entries == 0;
}

static void maybe_done(psl__sync_t *s) {
  if (!s->follow && s->caught_up && !s->push_inflight && outbox_empty(s))
    finish(s, 0);
}

/* ---- push */

static int send_push(psl__sync_t *s) {
  MDB_txn *txn;
  psl_msg_t m;
  size_t n = 0;
  int rc = psl__store_rd(&s->c->store, &txn);
  if (rc)
    return rc;
  rc = psl__outbox_batch(&s->c->store, txn, s->push_ev, s->push_order, PSL_MAX_PUSH_EVENTS,
                         PSL__PUSH_MAX_BYTES, &n);
  if (!rc && n > 0) {
    memset(&m, 0, sizeof m);
    m.t = PSL_MSG_PUSH;
    m.has_id = 1;
    m.id = ++s->next_id;
    m.u.push.events = s->push_ev;
    m.u.push.n = n;
    rc = psl__conn_send(s, &m); /* encodes now, while the txn's pages are valid */
    if (!rc) {
      s->push_inflight = 1;
      s->push_id = m.id;
      s->push_n = n;
    }
  }
  mdb_txn_abort(txn);
  return rc;
}

static int send_sub(psl__sync_t *s) {
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_SUB;
  m.has_id = 1;
  m.id = ++s->next_id;
  m.u.sub.from = s->ck.seq;
  m.u.sub.live = s->follow;
  m.u.sub.window = PSL__SYNC_WINDOW;
  int rc = psl__conn_send(s, &m);
  if (!rc) {
    s->subscribed = 1;
    s->caught_up = 0;
    s->sub_id = m.id;
    set_state(s, PSL_CLIENT_CATCHING_UP, 0);
  }
  return rc;
}

/* Do what can be done now: push the next batch, or subscribe once the outbox is drained. */
static void pump(psl__sync_t *s) {
  int rc = 0;
  if (!s->welcomed || s->closing || s->finished || s->failed)
    return;
  if (!s->push_inflight)
    rc = send_push(s);
  if (!rc && !s->push_inflight && !s->subscribed && !s->replica_full)
    rc = send_sub(s);
  if (rc == PSL_ECLOSED)
    return;
  if (rc)
    fail(s, rc);
  else
    maybe_done(s);
}

static void notify_refused(psl__sync_t *s, const uint64_t *orders, size_t n) {
  MDB_txn *txn;
  if (!s->c->cb.on_refused || n == 0 || psl__store_rd(&s->c->store, &txn))
    return;
  for (size_t i = 0; i < n; i++) {
    uint8_t key[8];
    MDB_val k = {8, key}, v;
    psl_event_t ev;
    psl_client_event_t view;
    psl_client_refusal_t r;
    psl_str_t msg;
    char text[PSL_MAX_STR + 1];
    for (int b = 7; b >= 0; b--)
      key[b] = (uint8_t)(orders[i] >> (8 * (7 - b)));
    memset(&r, 0, sizeof r);
    if (mdb_get(txn, s->c->store.refused, &k, &v) ||
        psl__refused_decode(v.mv_data, v.mv_size, &ev, &r.err, &r.server_ver, &msg,
                            &r.refused_at))
      continue;
    memcpy(text, msg.ptr, msg.len);
    text[msg.len] = '\0';
    psl__event_view(&ev, &view);
    r.event = &view;
    r.msg = text;
    s->c->cb.on_refused(s->c->cb.arg, &r);
  }
  mdb_txn_abort(txn);
}

static void on_pushed(psl__sync_t *s, const psl_msg_t *m) {
  MDB_txn *txn;
  uint64_t refused[PSL_MAX_PUSH_EVENTS];
  size_t nref = 0;
  int rc;
  if (!s->push_inflight || !m->has_id || m->id != s->push_id || m->u.pushed.n != s->push_n) {
    drop(s, PSL_EINVALID);
    return;
  }
  rc = psl__store_wr(&s->c->store, &txn);
  if (rc) {
    fail(s, rc);
    return;
  }
  for (size_t i = 0; i < s->push_n && !rc; i++) {
    const psl_push_result_t *r = &m->u.pushed.results[i];
    uint8_t key[8];
    MDB_val k = {8, key};
    for (int b = 7; b >= 0; b--)
      key[b] = (uint8_t)(s->push_order[i] >> (8 * (7 - b)));
    if (r->err == 0) {
      int d = mdb_del(txn, s->c->store.outbox, &k, NULL);
      rc = d == MDB_NOTFOUND ? 0 : psl_err_from_mdb(d);
    } else {
      int err = r->err == PSL_ECONFLICT || r->err == PSL_EFORBIDDEN ? r->err : PSL_EINVALID;
      rc = psl__refuse(&s->c->store, txn, s->push_order[i], err, r->ver, r->msg,
                       psl__now_ms());
      if (rc == PSL_ENOTFOUND)
        rc = 0;
      else if (!rc)
        refused[nref++] = s->push_order[i];
    }
  }
  rc = rc ? rc : psl__store_commit(txn);
  if (rc) {
    mdb_txn_abort(txn);
    fail(s, rc);
    return;
  }
  s->push_inflight = 0;
  notify_refused(s, refused, nref);
  pump(s);
}

/* ---- catch-up */

static void publish_head(psl__sync_t *s, uint64_t head) {
  pthread_mutex_lock(&s->c->mu);
  if (head > s->c->server_head)
    s->c->server_head = head;
  pthread_mutex_unlock(&s->c->mu);
}

static void send_ack(psl__sync_t *s, uint64_t upto) {
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_ACK;
  m.u.ack.sub = s->sub_id;
  m.u.ack.upto = upto;
  psl__conn_send(s, &m);
}

static void replica_full(psl__sync_t *s) {
  psl_msg_t m;
  s->replica_full = 1;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_UNSUB;
  m.u.unsub.sub = s->sub_id;
  psl__conn_send(s, &m);
  if (!s->follow)
    finish(s, PSL_ETOO_BIG);
  else /* the connection stays: pushes go on; pump never subscribes again */
    set_state(s, PSL_CLIENT_FAILED, PSL_ETOO_BIG);
}

/* Apply one chunk in one write transaction: replica, projections, checkpoint. */
static int apply_chunk(psl__sync_t *s, const psl_event_t *ev, size_t n, uint64_t last) {
  psl__cstore_t *st = &s->c->store;
  MDB_txn *txn;
  uint64_t bytes = 0;
  psl__ckpt_t ck = s->ck;
  uint64_t written = 0;
  int rc;
  if (n > s->fresh_cap) {
    uint8_t *f = realloc(s->fresh, n);
    if (!f)
      return PSL_ENOMEM;
    s->fresh = f;
    s->fresh_cap = n;
  }
  rc = psl__store_wr(st, &txn);
  if (rc)
    return rc;
  rc = psl__meta_get_u64(st, txn, PSL__META_REPLICA_BYTES, &bytes);
  if (rc == PSL_ENOTFOUND)
    rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    size_t len = 0;
    s->fresh[i] = 0;
    if (ev[i].seq == 0 || ev[i].seq > last) {
      rc = PSL_EINVALID;
      break;
    }
    rc = psl__replica_put(st, txn, &ev[i], &s->scratch, &len);
    if (rc == PSL_ECONFLICT) { /* already in the replica: never fold it twice */
      rc = 0;
      continue;
    }
    if (!rc)
      rc = psl__domain_apply(st, txn, &ev[i]);
    if (!rc && psl_str_eq(ev[i].type, "participant.erased")) {
      int64_t delta = 0; /* the person's pii leaves the device with this chunk */
      rc = psl__domain_erase_pii(st, txn, ev[i].stream, &s->scratch, &delta);
      bytes = (uint64_t)((int64_t)bytes + delta);
    }
    s->fresh[i] = 1;
    bytes += len;
    written += len;
  }
  if (!rc && bytes > st->replica_max)
    rc = PSL_ETOO_BIG;
  if (!rc && last > ck.seq)
    ck.seq = last;
  if (!rc)
    rc = psl__ckpt_put(st, txn, &ck);
  if (!rc)
    rc = psl__meta_put_u64(st, txn, PSL__META_REPLICA_BYTES, bytes);
  if (rc) {
    mdb_txn_abort(txn);
    return rc == PSL_EUNAVAILABLE ? PSL_ETOO_BIG : rc; /* map full: the device's cap */
  }
  rc = psl__store_commit(txn);
  if (rc)
    return rc == PSL_EUNAVAILABLE ? PSL_ETOO_BIG : rc;
  s->ck = ck;
  s->since_release += written;
  if (s->since_release >= PSL__RELEASE_BYTES) {
    psl__store_release_pages(st);
    s->since_release = 0;
  }
  return 0;
}

static void on_events(psl__sync_t *s, const psl_msg_t *m) {
  const psl_event_t *ev = m->u.events.events;
  size_t n = m->u.events.n;
  if (!s->subscribed || m->u.events.sub != s->sub_id || s->replica_full)
    return; /* a chunk of a subscription we left (reset, cap): ignore */
  int rc = apply_chunk(s, ev, n, m->u.events.last);
  if (rc == PSL_ETOO_BIG) {
    replica_full(s);
    return;
  }
  if (rc == PSL_EINVALID) {
    drop(s, rc);
    return;
  }
  if (rc) {
    fail(s, rc);
    return;
  }
  publish_head(s, m->u.events.last);
  if (s->c->cb.on_event) {
    for (size_t i = 0; i < n; i++) {
      psl_client_event_t view;
      if (!s->fresh[i])
        continue;
      psl__event_view(&ev[i], &view);
      s->c->cb.on_event(s->c->cb.arg, &view);
    }
  }
  send_ack(s, m->u.events.last);
}

static void on_caught_up(psl__sync_t *s, const psl_msg_t *m) {
  MDB_txn *txn;
  if (!s->subscribed || m->u.caught_up.sub != s->sub_id)
    return;
  s->caught_up = 1;
  s->resets = 0;
  publish_head(s, m->u.caught_up.head);
  if (!psl__store_wr(&s->c->store, &txn)) {
    if (psl__meta_put_u64(&s->c->store, txn, PSL__META_SYNCED, (uint64_t)psl__now_ms()) ||
        psl__meta_put_u64(&s->c->store, txn, PSL__META_HEAD, m->u.caught_up.head) ||
        psl__store_commit(txn))
      mdb_txn_abort(txn);
  }
  if (s->follow)
    set_state(s, PSL_CLIENT_LIVE, 0);
  maybe_done(s);
}

/* ---- hello, welcome, reset */

/* Drop the replica and projections, keep the outbox; the checkpoint becomes (server, 0). */
static int do_reset(psl__sync_t *s, const char *server) {
  MDB_txn *txn;
  int rc = psl__store_wr(&s->c->store, &txn);
  if (rc)
    return rc;
  rc = psl__store_reset(&s->c->store, txn, server);
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  rc = psl__store_commit(txn);
  if (rc)
    return rc;
  memset(&s->ck, 0, sizeof s->ck);
  snprintf(s->ck.server, sizeof s->ck.server, "%s", server);
  return 0;
}

static void on_reset(psl__sync_t *s) {
  if (++s->resets > PSL__MAX_RESETS) {
    drop(s, PSL_ERESET);
    return;
  }
  int rc = do_reset(s, s->welcomed ? s->server_id : "");
  if (rc) {
    fail(s, rc);
    return;
  }
  if (!s->welcomed) { /* the hello was refused and the server closes: come back at once */
    s->reset_reconnect = 1;
    psl__conn_close(s);
    return;
  }
  s->subscribed = 0;
  s->caught_up = 0;
  pump(s);
}

static void on_welcome(psl__sync_t *s, const psl_msg_t *m) {
  MDB_txn *txn;
  psl_str_t id = m->u.welcome.server, role = m->u.welcome.role;
  int rc;
  if (s->welcomed || id.len != PSL_CLIENT_SERVER_ID) {
    drop(s, PSL_EINVALID);
    return;
  }
  s->welcomed = 1;
  s->attempt = 0;
  memcpy(s->server_id, id.ptr, id.len);
  s->server_id[id.len] = '\0';
  publish_head(s, m->u.welcome.head);
  if (s->ck.server[0] && (strcmp(s->ck.server, s->server_id) != 0 ||
                          m->u.welcome.head < s->ck.seq)) {
    /* Another log than the checkpoint's (the server did not say `reset`: an older one, or
     * hello without our id): the same remedy. */
    rc = do_reset(s, s->server_id);
  } else {
    rc = psl__store_wr(&s->c->store, &txn);
    if (!rc) {
      snprintf(s->ck.server, sizeof s->ck.server, "%s", s->server_id);
      if (role.len >= sizeof s->c->role)
        role.len = sizeof s->c->role - 1;
      if ((rc = psl__ckpt_put(&s->c->store, txn, &s->ck)) ||
          (rc = psl__meta_put(&s->c->store, txn, PSL__META_ROLE, role.ptr, role.len)) ||
          (rc = psl__meta_put_u64(&s->c->store, txn, PSL__META_HEAD, m->u.welcome.head)) ||
          (rc = psl__store_commit(txn)))
        mdb_txn_abort(txn);
    }
  }
  if (rc) {
    fail(s, rc);
    return;
  }
  set_state(s, PSL_CLIENT_PUSHING, 0);
  pump(s);
}

static void on_error(psl__sync_t *s, const psl_msg_t *m) {
  int err = err_from_code(m->u.error.code);
  if (err == PSL_ERESET)
    on_reset(s);
  else if (err == PSL_EUNAUTHORIZED)
    fail(s, err);
  else
    drop(s, err); /* rate_limited, unavailable, a refused push or sub...: back off, retry */
}

/* ---- entry points from conn.c */

void psl__session_begin(psl__sync_t *s) {
  MDB_txn *txn;
  int rc = psl__store_rd(&s->c->store, &txn);
  if (!rc) {
    rc = psl__ckpt_get(&s->c->store, txn, &s->ck);
    mdb_txn_abort(txn);
  }
  if (rc) {
    fail(s, rc);
    return;
  }
  set_state(s, PSL_CLIENT_CONNECTING, 0);
  psl__conn_connect(s);
}

void psl__session_opened(psl__sync_t *s) {
  psl_msg_t m;
  s->welcomed = 0;
  s->push_inflight = 0;
  s->subscribed = 0;
  s->caught_up = 0;
  s->last_err = 0;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_HELLO;
  m.u.hello.v = PSL_PROTO_VERSION;
  m.u.hello.token = psl_str(s->token);
  m.u.hello.device = psl_str(s->c->device);
  if (s->c->agent)
    m.u.hello.agent = psl_str(s->c->agent);
  if (s->ck.server[0])
    m.u.hello.server = psl_str(s->ck.server);
  if (psl__conn_send(s, &m))
    drop(s, PSL_ENOMEM);
}

void psl__session_message(psl__sync_t *s, const uint8_t *p, size_t len) {
  psl_msg_t m;
  if (psl_msg_decode(p, len, &m, NULL)) {
    drop(s, PSL_EINVALID);
    return;
  }
  if (!s->welcomed && m.t != PSL_MSG_WELCOME && m.t != PSL_MSG_ERROR) {
    drop(s, PSL_EINVALID);
  } else {
    switch (m.t) {
    case PSL_MSG_WELCOME: on_welcome(s, &m); break;
    case PSL_MSG_PUSHED: on_pushed(s, &m); break;
    case PSL_MSG_EVENTS: on_events(s, &m); break;
    case PSL_MSG_CAUGHT_UP: on_caught_up(s, &m); break;
    case PSL_MSG_ERROR: on_error(s, &m); break;
    default: drop(s, PSL_EINVALID); break;
    }
  }
  psl_msg_free(&m);
}

void psl__session_closed(psl__sync_t *s, int err) {
  int why = s->last_err ? s->last_err : err;
  s->welcomed = 0;
  s->push_inflight = 0;
  s->subscribed = 0;
  s->caught_up = 0;
  s->last_err = 0;
  if (s->finished || s->failed)
    return;
  if (s->reset_reconnect) {
    s->reset_reconnect = 0;
    set_state(s, PSL_CLIENT_CONNECTING, 0);
    psl__conn_retry_in(s, 0);
    return;
  }
  if (!s->follow) {
    finish(s, why == PSL_ECLOSED ? PSL_EUNAVAILABLE : why);
    return;
  }
  unsigned shift = s->attempt < 20 ? s->attempt : 20;
  uint64_t cap = (uint64_t)PSL__BACKOFF_BASE_MS << shift;
  if (cap > PSL__BACKOFF_CAP_MS)
    cap = PSL__BACKOFF_CAP_MS;
  s->attempt++;
  set_state(s, PSL_CLIENT_WAITING, why);
  psl__conn_retry_in(s, randombytes_uniform((uint32_t)cap + 1));
}

void psl__session_woken(psl__sync_t *s) { pump(s); }

void psl__session_end(psl__sync_t *s) { set_state(s, PSL_CLIENT_IDLE, 0); }

/* ---- public: start, stop, one pass */

void psl__client_set_state(psl_client_t *c, psl_client_state_t st, int err) {
  pthread_mutex_lock(&c->mu);
  int same = c->state == st && c->err == err;
  c->state = st;
  if (st != PSL_CLIENT_IDLE)
    c->err = err;
  pthread_mutex_unlock(&c->mu);
  if (!same && c->cb.on_state)
    c->cb.on_state(c->cb.arg, st, err);
}

int psl_client_start(psl_client_t *c, int follow) {
  pthread_mutex_lock(&c->mu);
  int running = c->sync != NULL;
  pthread_mutex_unlock(&c->mu);
  if (running)
    return PSL_EAGAIN;
  return psl__sync_start(c, follow);
}

int psl_client_stop(psl_client_t *c) {
  psl__sync_stop(c);
  return 0;
}

int psl_client_sync(psl_client_t *c, int timeout_ms) {
  struct timespec until;
  int rc = psl_client_start(c, 0);
  if (rc)
    return rc;
  clock_gettime(CLOCK_REALTIME, &until);
  if (timeout_ms > 0) {
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&c->mu);
  while (!c->done && rc == 0) {
    if (timeout_ms > 0)
      rc = pthread_cond_timedwait(&c->cv, &c->mu, &until) ? PSL_EAGAIN : 0;
    else
      pthread_cond_wait(&c->cv, &c->mu);
  }
  if (c->done)
    rc = c->done_err;
  pthread_mutex_unlock(&c->mu);
  psl_client_stop(c);
  return rc;
}
