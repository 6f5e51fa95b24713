/*
 * conn.c — one WebSocket connection: its state machine, the gathering of received messages,
 * the dispatch of requests, and the send queue.
 *
 * State machine (psl__conn_state_t; CLOSING is the error state: once in it nothing more is
 * read, the final frames are flushed and the connection is closed):
 *
 *        lws ESTABLISHED
 *              │ psl__conn_open
 *              ▼
 *          ┌────────┐  hello ok (conn_hello)    ┌────────┐
 *          │ HELLO  │──────────────────────────▶│ READY  │◀─┐ push, sub, ack, unsub,
 *          └────────┘                           └────────┘──┘ refused requests (no close)
 *              │ bad hello, other message,          │ malformed / text / too big frame,
 *              │ malformed frame (psl__conn_fail)   │ token revoked, graceful stop
 *              ▼                                    ▼
 *          ┌──────────────────────────────────────────┐
 *          │ CLOSING: error (or nothing) queued       │──queue flushed──▶ lws_close_reason,
 *          └──────────────────────────────────────────┘   WRITEABLE returns -1
 *   any state ── lws CLOSED (peer left, ping timeout, hello timeout, our -1) ──▶ closed:
 *        no pending push → freed;  pending pushes → ZOMBIE ──last push answered──▶ freed
 *
 *   from     event                                   to        done by
 *   -        upgrade to passerelle.v1 at /sync       HELLO     psl__conn_open
 *   HELLO    valid hello                             READY     conn_hello
 *   HELLO    invalid hello, not a hello, bad frame   CLOSING   psl__conn_fail
 *   HELLO    PSL_HELLO_TIMEOUT_S without hello       closed    lws timeout
 *   READY    well-formed request                     READY     conn_dispatch (+ push.c, sub.c)
 *   READY    refused request (forbidden, rate...)    READY     psl__conn_error
 *   READY    malformed, text or too big frame        CLOSING   psl__conn_fail
 *   READY    token revoked                           CLOSING   psl__conn_recheck_tokens
 *   READY    stop, nothing pending, queue empty      CLOSING   psl__conn_writable
 *   CLOSING  send queue empty                        closed    psl__conn_writable (-1)
 *   any      lws CLOSED                              freed/ZOMBIE  psl__conn_closed
 *   ZOMBIE   last pending push completed             freed     psl__conn_push_finished
 *
 * Flood limits (flood.h): hello counts the connection against its token's limit (refused
 * `rate_limited` and closed past it); every request then draws on the token's buckets, shared
 * by all its connections.  A message that arrives in pieces must keep coming: no byte for
 * PSL_FRAME_STALL_S, or not whole after PSL_FRAME_MAX_S, and the connection is closed (lws
 * timeout PSL_TIMEOUT_FRAME; in HELLO the hello timeout stays in force instead).
 *
 * Receiving: lws hands a message in pieces of at most PSL_RX_BUFFER bytes (and a message may
 * span several WebSocket frames).  A message that arrives whole in one callback is copied once
 * and decoded; otherwise the pieces are gathered in c->rx, grown as needed, never past
 * PSL_MAX_FRAME: the bytes announced but not yet received (lws_remaining_packet_payload) count
 * against the limit too, so a frame header announcing 100 MB is refused at its first piece,
 * without allocating it.
 *
 * Sending: a FIFO of encoded frames; each WRITEABLE callback writes up to PSL_WRITES_PER_WAKE
 * of them while the socket is not choked, lets subscriptions read their next chunk while the
 * queue is short (sub.c), and asks for another callback while anything remains.
 */
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "flood.h"
#include "psl_say.h"

/* lws pending-timeout reasons of ours (lws_set_timeout): they only name the cause in lws's
 * own logs. */
#define PSL_TIMEOUT_HELLO (PENDING_TIMEOUT_USER_REASON_BASE + 1)
#define PSL_TIMEOUT_FRAME (PENDING_TIMEOUT_USER_REASON_BASE + 2)

static void conn_free(psl__conn_t *c);
static void conn_frame_timer(psl__conn_t *c, int arm);

/* ---- Lifecycle. */

/* Did the client's upgrade offer permessage-deflate?  We accept it whenever offered (net.c),
 * so an offer means it is in force.  The upgrade's headers are still attached here. */
static int conn_offers_deflate(struct lws *wsi) {
  char ext[256];
  if (lws_hdr_total_length(wsi, WSI_TOKEN_EXTENSIONS) <= 0)
    return 0;
  if (lws_hdr_copy(wsi, ext, sizeof ext, WSI_TOKEN_EXTENSIONS) < 0)
    return 1; /* too long to read: assume the worst, fragmenting is always correct */
  return strstr(ext, "permessage-deflate") != NULL;
}

psl__conn_t *psl__conn_open(psl__server_t *srv, struct lws *wsi) {
  psl__conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    psl_say(PSL_SAY_ERROR, "conn open failed: out of memory");
    return NULL;
  }
  c->srv = srv;
  c->wsi = wsi;
  c->cid = ++srv->next_conn_id;
  c->state = PSL_CONN_HELLO;
  psl__list_init(&c->wait_link);
  psl__list_push(&srv->conns, &c->link);
  srv->nconns++;
  srv->metrics.connections = srv->nconns;
  srv->metrics.connections_total++;
  c->deflate = conn_offers_deflate(wsi);
  lws_set_timeout(wsi, PSL_TIMEOUT_HELLO, PSL_HELLO_TIMEOUT_S);
  psl_say(PSL_SAY_INFO, "conn=%llu open", (unsigned long long)c->cid);
  return c;
}

static void frame_free(psl__frame_t *f) {
  if (!f)
    return;
  psl_buf_free(&f->buf);
  free(f);
}

static void conn_drop_queue(psl__conn_t *c) {
  psl__frame_t *f = c->sq_first;
  while (f) {
    psl__frame_t *next = f->next;
    frame_free(f);
    f = next;
  }
  c->sq_first = c->sq_last = NULL;
  c->sq_bytes = 0;
  c->sq_off = 0;
}

static void conn_unwait(psl__conn_t *c) {
  if (c->waiting) {
    psl__list_remove(&c->wait_link);
    c->waiting = 0;
  }
}

static void conn_free(psl__conn_t *c) {
  free(c->rx);
  conn_drop_queue(c);
  free(c);
}

void psl__conn_closed(psl__conn_t *c) {
  psl__server_t *srv = c->srv;
  psl_say(PSL_SAY_INFO, "conn=%llu closed pending_pushes=%zu", (unsigned long long)c->cid,
          c->pending_pushes);
  psl__list_remove(&c->link);
  psl__flood_detach(srv->flood, c->tokuse);
  c->tokuse = NULL;
  srv->nconns--;
  srv->metrics.connections = srv->nconns;
  conn_unwait(c);
  psl__sub_free_all(c);
  free(c->rx);
  c->rx = NULL;
  c->rx_len = c->rx_cap = 0;
  conn_drop_queue(c);
  c->wsi = NULL;
  if (c->pending_pushes) {
    /* The events are being stored; their answers will be dropped (a retry gets `dup`). */
    c->state = PSL_CONN_ZOMBIE;
    srv->nzombies++;
    return;
  }
  conn_free(c);
}

void psl__conn_push_finished(psl__conn_t *c, size_t frame_bytes) {
  c->pending_pushes--;
  c->pending_bytes -= frame_bytes;
  if (c->state == PSL_CONN_ZOMBIE) {
    if (c->pending_pushes == 0) {
      c->srv->nzombies--;
      conn_free(c);
    }
    return;
  }
  psl__conn_update_rx(c);
  if (c->srv->stopping)
    psl__conn_want_write(c); /* the stop closes it once its queue is flushed */
}

/* ---- Sending. */

void psl__conn_want_write(psl__conn_t *c) {
  if (c->wsi && c->state != PSL_CONN_ZOMBIE)
    lws_callback_on_writable(c->wsi);
}

void psl__conn_queue(psl__conn_t *c, psl__frame_t *f) {
  if (!c->wsi || c->state == PSL_CONN_CLOSING || c->state == PSL_CONN_ZOMBIE) {
    frame_free(f);
    return;
  }
  f->next = NULL;
  if (c->sq_last)
    c->sq_last->next = f;
  else
    c->sq_first = f;
  c->sq_last = f;
  c->sq_bytes += f->buf.len;
  psl__conn_want_write(c);
}

int psl__conn_send(psl__conn_t *c, const psl_msg_t *msg) {
  if (!c->wsi || c->state == PSL_CONN_CLOSING || c->state == PSL_CONN_ZOMBIE)
    return 0;
  psl__frame_t *f = calloc(1, sizeof *f);
  if (!f)
    return PSL_ENOMEM;
  psl_buf_init(&f->buf, LWS_PRE);
  int rc = psl_msg_encode(&f->buf, msg);
  if (rc) {
    frame_free(f);
    return rc;
  }
  psl__conn_queue(c, f);
  return 0;
}

static void conn_log_error(psl__conn_t *c, int has_id, uint64_t id, int err, const char *msg) {
  /* A client's mistake is worth an info line; our own failure an error line. */
  const char *code = psl_err_code(err);
  psl_say_level_t level = strcmp(code, "internal") == 0 ? PSL_SAY_ERROR : PSL_SAY_INFO;
  if (has_id)
    psl_say(level, "conn=%llu error code=%s id=%llu msg=\"%s\"", (unsigned long long)c->cid,
            code, (unsigned long long)id, msg);
  else
    psl_say(level, "conn=%llu error code=%s msg=\"%s\"", (unsigned long long)c->cid, code, msg);
}

void psl__conn_error(psl__conn_t *c, int has_id, uint64_t id, int err, const char *msg) {
  if (!msg || !*msg)
    msg = psl_strerror(err);
  conn_log_error(c, has_id, id, err, msg);
  psl_metrics_error(&c->srv->metrics, err);
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_ERROR;
  m.has_id = has_id;
  m.id = id;
  m.u.error.code = psl_str(psl_err_code(err));
  m.u.error.msg = psl_str(msg);
  if (psl__conn_send(c, &m) != 0)
    psl_say(PSL_SAY_ERROR, "conn=%llu error frame lost: out of memory",
            (unsigned long long)c->cid);
}

void psl__conn_fail(psl__conn_t *c, int has_id, uint64_t id, int err, const char *msg,
                    int close_status) {
  if (c->state == PSL_CONN_CLOSING || c->state == PSL_CONN_ZOMBIE)
    return;
  /* Frames not yet written are dropped: after a revocation no further event may leave, and
   * after garbage nothing else is owed (answers of stored pushes come back as `dup`). */
  conn_drop_queue(c);
  psl__sub_free_all(c);
  conn_unwait(c);
  psl__conn_error(c, has_id, id, err, msg);
  c->state = PSL_CONN_CLOSING;
  c->close_status = close_status;
  if (c->wsi)
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, PSL_CLOSE_FLUSH_S);
  psl__conn_want_write(c);
}

void psl__conn_close(psl__conn_t *c, int close_status, const char *why) {
  if (c->state == PSL_CONN_CLOSING || c->state == PSL_CONN_ZOMBIE)
    return;
  psl_say(PSL_SAY_INFO, "conn=%llu closing: %s", (unsigned long long)c->cid, why);
  psl__sub_free_all(c);
  conn_unwait(c);
  c->state = PSL_CONN_CLOSING;
  c->close_status = close_status;
  if (c->wsi)
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, PSL_CLOSE_FLUSH_S);
  psl__conn_want_write(c);
}

void psl__conn_update_rx(psl__conn_t *c) {
  if (!c->wsi || (c->state != PSL_CONN_READY && c->state != PSL_CONN_HELLO))
    return;
  int pause = c->pending_pushes >= PSL_CONN_MAX_PENDING_PUSHES ||
              c->pending_bytes >= PSL_CONN_MAX_PENDING_BYTES || c->sq_bytes >= PSL_SENDQ_PAUSE;
  if (pause != c->rx_paused) {
    lws_rx_flow_control(c->wsi, !pause);
    c->rx_paused = pause;
    if (c->rx_gathering)
      conn_frame_timer(c, !pause); /* our pause, not the peer's stall */
  }
}

int psl__conn_writable(psl__conn_t *c) {
  psl__server_t *srv = c->srv;
  struct lws *wsi = c->wsi;
  /* A WebSocket carried in an HTTP/2 stream (wss with ALPN h2) may write once per callback;
   * on its own TCP connection, as many frames as the socket takes now. */
  int max_writes = lws_get_network_wsi(wsi) == wsi ? PSL_WRITES_PER_WAKE : 1;
  for (int i = 0; i < max_writes; i++) {
    if (c->state == PSL_CONN_READY && !srv->stopping && c->sq_bytes < PSL_SENDQ_REFILL)
      psl__sub_fill(c);
    psl__frame_t *f = c->sq_first;
    if (!f)
      break;
    size_t len = f->buf.len, off = c->sq_off, n = len - off;
    int mode = LWS_WRITE_BINARY;
    if (c->deflate) { /* see PSL_PMD_FRAGMENT */
      if (n > PSL_PMD_FRAGMENT)
        n = PSL_PMD_FRAGMENT;
      mode = off ? LWS_WRITE_CONTINUATION : LWS_WRITE_BINARY;
      if (off + n < len)
        mode |= LWS_WRITE_NO_FIN;
    }
    if (lws_write(wsi, psl_buf_data(&f->buf) + off, n, (enum lws_write_protocol)mode) < 0) {
      psl_say(PSL_SAY_DEBUG, "conn=%llu write failed", (unsigned long long)c->cid);
      return -1;
    }
    if (off + n < len) { /* more fragments of this frame */
      c->sq_off = off + n;
      if (lws_send_pipe_choked(wsi))
        break;
      continue;
    }
    c->sq_off = 0;
    c->sq_first = f->next;
    if (!c->sq_first)
      c->sq_last = NULL;
    c->sq_bytes -= len;
    srv->metrics.bytes_sent_total += len;
    frame_free(f);
    if (lws_send_pipe_choked(wsi))
      break;
  }
  if (srv->stopping && c->state == PSL_CONN_READY && !c->pending_pushes && !c->sq_first) {
    c->state = PSL_CONN_CLOSING;
    c->close_status = LWS_CLOSE_STATUS_GOINGAWAY;
  }
  if (c->state == PSL_CONN_CLOSING && !c->sq_first) {
    lws_close_reason(wsi, (enum lws_close_status)c->close_status, NULL, 0);
    return -1;
  }
  if (c->sq_first || (c->state == PSL_CONN_READY && !srv->stopping && psl__sub_ready(c))) {
    lws_callback_on_writable(wsi);
  } else if (c->state == PSL_CONN_READY && !c->waiting && psl__sub_waits_for_commit(c)) {
    psl__list_push(&srv->waiters, &c->wait_link);
    c->waiting = 1;
  }
  psl__conn_update_rx(c);
  return 0;
}

/* ---- Receiving. */

/* The token's buckets: one message (and n events) may pass if both hold enough. */
static int conn_rate_take(psl__conn_t *c, size_t events) {
  return psl__flood_take(c->srv->flood, c->tokuse, events, psl__now_ms(c->srv));
}

static void conn_hello(psl__conn_t *c, const psl_msg_t *msg) {
  psl__server_t *srv = c->srv;
  if (msg->u.hello.v != PSL_PROTO_VERSION) {
    psl__conn_fail(c, msg->has_id, msg->id, PSL_EINVALID, "v: unsupported protocol version",
                   LWS_CLOSE_STATUS_PROTOCOL_ERR);
    return;
  }
  psl_principal_t p;
  memset(&p, 0, sizeof p);
  int rc = psl_access_token_check(srv->access, msg->u.hello.token.ptr, msg->u.hello.token.len,
                                  &p);
  if (rc != 0) {
    psl_say(PSL_SAY_INFO, "conn=%llu hello refused token=%s%s", (unsigned long long)c->cid,
            p.id[0] ? p.id : "unknown", p.revoked ? " (revoked)" : "");
    psl__conn_fail(c, msg->has_id, msg->id, rc == PSL_EUNAUTHORIZED ? rc : PSL_EINTERNAL,
                   rc == PSL_EUNAUTHORIZED ? "unknown or revoked token" : "token check failed",
                   LWS_CLOSE_STATUS_POLICY_VIOLATION);
    return;
  }
  if (msg->u.hello.server.len > 0 && !psl_str_eq(msg->u.hello.server, srv->log_id)) {
    psl__conn_fail(c, msg->has_id, msg->id, PSL_ERESET,
                   "server: this is not the log the client synced with; sync from 0",
                   LWS_CLOSE_STATUS_POLICY_VIOLATION);
    return;
  }
  if ((rc = psl__flood_attach(srv->flood, p.id, psl__now_ms(srv), &c->tokuse)) != 0) {
    psl_say(PSL_SAY_INFO, "conn=%llu hello refused token=%s: connection limit",
            (unsigned long long)c->cid, p.id);
    psl__conn_fail(c, msg->has_id, msg->id, rc,
                   rc == PSL_ERATE_LIMITED ? "too many connections for this token" : NULL,
                   LWS_CLOSE_STATUS_POLICY_VIOLATION);
    return;
  }
  c->principal = p;
  c->state = PSL_CONN_READY;
  lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);

  const char *terr[PSL_MAX_FILTER];
  size_t nterr = psl_access_visible_terr(&c->principal, terr, PSL_MAX_FILTER);
  psl_msg_t w;
  memset(&w, 0, sizeof w);
  w.t = PSL_MSG_WELCOME;
  w.has_id = msg->has_id;
  w.id = msg->id;
  w.u.welcome.v = PSL_PROTO_VERSION;
  w.u.welcome.server = psl_str(srv->log_id);
  /* What was answered, also the last ~10 ms not yet readable: a `sub` delivers those
   * before its `caught_up` (sub.c). */
  w.u.welcome.head = psl_log_answered(srv->log, w.u.welcome.hash);
  w.u.welcome.role = psl_str(psl_role_name(c->principal.role));
  for (size_t i = 0; i < nterr; i++)
    w.u.welcome.terr[i] = psl_str(terr[i]);
  w.u.welcome.nterr = nterr;
  if (psl__conn_send(c, &w) != 0) {
    psl__conn_fail(c, msg->has_id, msg->id, PSL_ENOMEM, NULL,
                   LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
    return;
  }
  psl_say(PSL_SAY_INFO, "conn=%llu hello ok token=%s role=%s", (unsigned long long)c->cid,
          c->principal.id, psl_role_name(c->principal.role));
}

/* One whole message: decode and act.  Takes frame (malloc'ed). */
static void conn_dispatch(psl__conn_t *c, uint8_t *frame, size_t len) {
  psl__server_t *srv = c->srv;
  psl_msg_t msg;
  psl_diag_t diag;
  diag.msg[0] = '\0';
  int rc = psl_msg_decode(frame, len, &msg, &diag);
  if (rc != 0) {
    psl__conn_fail(c, 0, 0, rc, diag.msg[0] ? diag.msg : NULL,
                   rc == PSL_ETOO_BIG ? LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE
                                      : LWS_CLOSE_STATUS_PROTOCOL_ERR);
    free(frame);
    return;
  }
  srv->metrics.messages_received_total++;
  if (c->state == PSL_CONN_HELLO) {
    if (msg.t == PSL_MSG_HELLO)
      conn_hello(c, &msg);
    else
      psl__conn_fail(c, msg.has_id, msg.id, PSL_EINVALID, "t: hello expected first",
                     LWS_CLOSE_STATUS_POLICY_VIOLATION);
    goto done;
  }
  if (msg.t != PSL_MSG_PUSH && msg.t != PSL_MSG_SUB && msg.t != PSL_MSG_ACK &&
      msg.t != PSL_MSG_UNSUB && msg.t != PSL_MSG_HELLO) {
    psl__conn_fail(c, msg.has_id, msg.id, PSL_EINVALID, "t: not a client message",
                   LWS_CLOSE_STATUS_PROTOCOL_ERR);
    goto done;
  }
  if (srv->stopping && (msg.t == PSL_MSG_PUSH || msg.t == PSL_MSG_SUB)) {
    psl__conn_error(c, msg.has_id, msg.id, PSL_ECLOSED, "the server is shutting down");
    goto done;
  }
  if (conn_rate_take(c, msg.t == PSL_MSG_PUSH ? msg.u.push.n : 0) != 0) {
    psl__conn_error(c, msg.has_id, msg.id, PSL_ERATE_LIMITED,
                    "over this token's message or event rate");
    goto done;
  }
  switch (msg.t) {
  case PSL_MSG_PUSH:
    psl__push_handle(c, frame, len, &msg); /* takes frame and msg */
    psl__conn_update_rx(c);
    return;
  case PSL_MSG_SUB:
    psl__sub_handle(c, &msg);
    break;
  case PSL_MSG_ACK:
    psl__sub_ack(c, msg.u.ack.sub, msg.u.ack.upto);
    break;
  case PSL_MSG_UNSUB:
    psl__sub_unsub(c, msg.u.unsub.sub);
    break;
  default: /* PSL_MSG_HELLO */
    psl__conn_error(c, msg.has_id, msg.id, PSL_EINVALID, "t: hello was already accepted");
    break;
  }
done:
  psl_msg_free(&msg);
  free(frame);
  psl__conn_update_rx(c);
}

/* While a message is half received (READY, reading): close the connection if no byte of it
 * comes for PSL_FRAME_STALL_S.  arm 0 lifts that timeout. */
static void conn_frame_timer(psl__conn_t *c, int arm) {
  if (!c->wsi || c->state != PSL_CONN_READY)
    return; /* HELLO keeps its hello timeout; CLOSING its flush timeout */
  if (arm)
    lws_set_timeout(c->wsi, PSL_TIMEOUT_FRAME, PSL_FRAME_STALL_S);
  else
    lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
}

static void conn_rx_reset(psl__conn_t *c) {
  free(c->rx);
  c->rx = NULL;
  c->rx_len = c->rx_cap = 0;
  c->rx_gathering = 0;
}

/* Room for `need` gathered bytes (need <= PSL_MAX_FRAME, checked by the caller). */
static int conn_rx_reserve(psl__conn_t *c, size_t need) {
  if (need <= c->rx_cap)
    return 0;
  size_t cap = c->rx_cap ? c->rx_cap * 2 : PSL_RX_BUFFER * 2;
  if (cap < need)
    cap = need;
  if (cap > PSL_MAX_FRAME)
    cap = PSL_MAX_FRAME;
  uint8_t *p = realloc(c->rx, cap);
  if (!p)
    return PSL_ENOMEM;
  c->rx = p;
  c->rx_cap = cap;
  return 0;
}

int psl__conn_receive(psl__conn_t *c, const void *in, size_t len) {
  c->srv->metrics.bytes_received_total += len;
  if (c->state != PSL_CONN_HELLO && c->state != PSL_CONN_READY)
    return 0; /* closing: what still arrives is dropped */
  struct lws *wsi = c->wsi;
  if (!c->rx_gathering && !lws_frame_is_binary(wsi)) {
    psl__conn_fail(c, 0, 0, PSL_EINVALID, "text frames are not accepted: send binary MessagePack",
                   LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE);
    return 0;
  }
  size_t remaining = lws_remaining_packet_payload(wsi);
  size_t total = c->rx_len + len;
  if (total > PSL_MAX_FRAME || remaining > PSL_MAX_FRAME - total) {
    conn_rx_reset(c);
    psl__conn_fail(c, 0, 0, PSL_ETOO_BIG, "message over PSL_MAX_FRAME (2 MiB)",
                   LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
    return 0;
  }
  int final = lws_is_final_fragment(wsi);
  if (final && !c->rx_gathering) {
    uint8_t *frame = malloc(len ? len : 1);
    if (!frame)
      goto nomem;
    if (len)
      memcpy(frame, in, len);
    conn_dispatch(c, frame, len);
    return 0;
  }
  if (conn_rx_reserve(c, total + remaining) != 0)
    goto nomem;
  if (len)
    memcpy(c->rx + c->rx_len, in, len);
  c->rx_len = total;
  if (!c->rx_gathering)
    c->rx_started_ms = psl__now_ms(c->srv);
  c->rx_gathering = 1;
  if (final) {
    uint8_t *frame = c->rx;
    size_t flen = c->rx_len;
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    c->rx_gathering = 0;
    conn_frame_timer(c, 0);
    conn_dispatch(c, frame, flen);
  } else if (c->state == PSL_CONN_READY &&
             psl__now_ms(c->srv) - c->rx_started_ms > PSL_FRAME_MAX_S * 1000ull) {
    conn_rx_reset(c);
    psl__conn_fail(c, 0, 0, PSL_EINVALID, "message not finished within 300 s",
                   LWS_CLOSE_STATUS_POLICY_VIOLATION);
  } else {
    conn_frame_timer(c, 1);
  }
  return 0;
nomem:
  conn_rx_reset(c);
  psl__conn_fail(c, 0, 0, PSL_ENOMEM, NULL, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
  return 0;
}

/* ---- Server-wide walks. */

void psl__conn_recheck_tokens(psl__server_t *srv) {
  for (psl__link_t *l = srv->conns.next; l != &srv->conns; l = l->next) {
    psl__conn_t *c = psl__container_of(l, psl__conn_t, link);
    if (c->state != PSL_CONN_READY)
      continue;
    psl_principal_t p;
    int rc = psl_access_token_check_id(srv->access, c->principal.id, &p);
    if (rc == 0 && !p.revoked)
      continue;
    if (rc != 0 && rc != PSL_EUNAUTHORIZED) {
      psl_say(PSL_SAY_WARN, "conn=%llu token=%s recheck failed: %s", (unsigned long long)c->cid,
              c->principal.id, psl_strerror(rc));
      continue;
    }
    psl_say(PSL_SAY_INFO, "conn=%llu token=%s revoked: closing", (unsigned long long)c->cid,
            c->principal.id);
    srv->metrics.revoked_closed_total++;
    psl__conn_fail(c, 0, 0, PSL_EUNAUTHORIZED, "token revoked",
                   LWS_CLOSE_STATUS_POLICY_VIOLATION);
  }
}

void psl__conn_stop_all(psl__server_t *srv) {
  for (psl__link_t *l = srv->conns.next; l != &srv->conns; l = l->next) {
    psl__conn_t *c = psl__container_of(l, psl__conn_t, link);
    conn_unwait(c);
    psl__sub_free_all(c);
    if (c->state == PSL_CONN_HELLO)
      psl__conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "server stopping");
    else
      psl__conn_want_write(c); /* READY: closes once pushes are answered and flushed */
  }
}

int psl__conn_all_done(psl__server_t *srv) { return srv->nconns == 0; }

void psl__conn_detach_all(psl__server_t *srv) {
  for (psl__link_t *l = srv->conns.next; l != &srv->conns; l = l->next) {
    psl__conn_t *c = psl__container_of(l, psl__conn_t, link);
    psl_say(PSL_SAY_ERROR, "conn=%llu still open after the lws context was destroyed",
            (unsigned long long)c->cid);
    c->wsi = NULL; /* nothing may reach lws through it any more */
  }
}
