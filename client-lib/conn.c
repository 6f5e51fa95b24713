/*
 * conn.c — the library's thread: its libuv loop, its libwebsockets client context on that
 * loop (a foreign loop, as the server does), and the one WebSocket connection to the server.
 *
 * lws is not thread-safe: only this thread calls it.  Other threads reach the thread only
 * through uv_async_send (append: "the outbox grew"; stop: "wind down").
 *
 * The connection: a send queue of encoded frames, one lws_write per CLIENT_WRITEABLE (lws
 * keeps what the socket did not take and holds back the next WRITEABLE until it is out; the
 * frame written last stays allocated until then, see out_release_written); received
 * fragments gathered into one message up to PSL__MAX_MESSAGE.  What the messages mean is
 * sync.c's business.
 *
 * permessage-deflate: Debian's lws 4.1.6 is built with extensions (LWS_WITHOUT_EXTENSIONS
 * unset, lws_extension_callback_pm_deflate exported), so the client offers it unless
 * opts.no_deflate; the server accepts when it has it too.  Two lws 4.1 behaviours with it,
 * both handled here: lws deflates from the caller's buffer after lws_write returns (keep it
 * until the next WRITEABLE), and a receiver on a libuv loop may sit on the tail of a
 * fragmented compressed message until more bytes arrive (on_nudge).
 *
 * Teardown (psl__sync_stop): `stopping` under c->mu, async → uv_stop; then, after uv_run
 * returns, loop_teardown: our handles closed, lws_context_destroy (twice on a foreign loop)
 * closes the connection and lws's own handles, and the loop runs until every close callback
 * has run.
 */
#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

#include "sync_int.h"

/* lws allocates its fd table per service thread from this: one connection needs a handful
 * (the socket, lws's event pipe); the default is the process's fd limit, often ~1M entries
 * (megabytes) — too much for a phone. */
#define CONN_FD_LIMIT 16u
/* lws_context_destroy calls on a foreign loop: the second one completes it (lws 4.1); a
 * third is a margin. */
#define CONN_DESTROY_TRIES 3
/* Liveness on a live subscription: ping after 20 s without traffic, give up after 50 s
 * without a valid pong or message (a dead mobile link is found within a minute). */
static const lws_retry_bo_t conn_idle_policy = {
    .secs_since_valid_ping = 20,
    .secs_since_valid_hangup = 50,
};

/* See the top: how often a push still unanswered is followed by a ping.  200 ms: well above
 * a healthy server's answer time on loopback or LAN, small against a person's patience. */
#define CONN_NUDGE_MS 200u

static const struct lws_extension conn_exts[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL}};

/* ---- send queue */

static void out_release_written(psl__sync_t *s);

static void out_free_all(psl__sync_t *s) {
  out_release_written(s);
  while (s->out_head) {
    psl__out_t *o = s->out_head;
    s->out_head = o->next;
    psl_buf_free(&o->b);
    free(o);
  }
  s->out_tail = NULL;
}

int psl__conn_send(psl__sync_t *s, const psl_msg_t *m) {
  if (!s->wsi || s->closing)
    return PSL_ECLOSED;
  psl__out_t *o = calloc(1, sizeof *o);
  if (!o)
    return PSL_ENOMEM;
  psl_buf_init(&o->b, LWS_PRE);
  int rc = psl_msg_encode(&o->b, m);
  if (rc) {
    psl_buf_free(&o->b);
    free(o);
    return rc;
  }
  if (s->out_tail)
    s->out_tail->next = o;
  else
    s->out_head = o;
  s->out_tail = o;
  lws_callback_on_writable(s->wsi);
  return 0;
}

void psl__conn_close(psl__sync_t *s) {
  if (s->wsi && !s->closing) {
    s->closing = 1;
    lws_callback_on_writable(s->wsi);
  }
}

/* The frame lws_write last took stays allocated until the next WRITEABLE: with
 * permessage-deflate, lws keeps deflating from the caller's buffer while it drains its
 * output ("tx draining") and only calls WRITEABLE again once it is done with it. */
static void out_release_written(psl__sync_t *s) {
  if (s->out_written) {
    psl_buf_free(&s->out_written->b);
    free(s->out_written);
    s->out_written = NULL;
  }
}

static int on_writeable(psl__sync_t *s, struct lws *wsi) {
  psl__out_t *o = s->out_head;
  out_release_written(s);
  if (s->closing) {
    lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
    return -1;
  }
  if (s->ping_due) {
    uint8_t ping[LWS_PRE + 1];
    s->ping_due = 0;
    if (o)
      lws_callback_on_writable(wsi);
    return lws_write(wsi, ping + LWS_PRE, 0, LWS_WRITE_PING) < 0 ? -1 : 0;
  }
  if (!o)
    return 0;
  s->out_head = o->next;
  if (!s->out_head)
    s->out_tail = NULL;
  s->out_written = o;
  if (lws_write(wsi, psl_buf_data(&o->b), o->b.len, LWS_WRITE_BINARY) < 0)
    return -1;
  if (s->out_head)
    lws_callback_on_writable(wsi);
  return 0;
}

/* ---- receive */

static int on_receive(psl__sync_t *s, struct lws *wsi, const void *in, size_t len) {
  if (!lws_frame_is_binary(wsi))
    s->rx_text = 1;
  if (s->rx.len + len > PSL__MAX_MESSAGE)
    return -1; /* a server that breaks the frame limit is not one to talk to */
  if (psl_buf_append(&s->rx, in, len))
    return -1;
  if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
    return 0;
  if (s->rx_text) {
    s->last_err = PSL_EINVALID;
    return -1;
  }
  psl__session_message(s, psl_buf_data(&s->rx), s->rx.len);
  psl_buf_reset(&s->rx);
  return s->closing && !s->out_head ? -1 : 0;
}

/* The attempt or the connection ended (error, close, or our own close). */
static void conn_gone(psl__sync_t *s, int err) {
  if (!s->conn_active)
    return;
  uv_timer_stop(&s->nudge);
  s->ping_due = 0;
  s->conn_active = 0;
  s->wsi = NULL;
  s->closing = 0;
  s->rx_text = 0;
  psl_buf_reset(&s->rx);
  out_free_all(s);
  if (!s->stopping)
    psl__session_closed(s, err);
}

/* Debian's lws 4.1.6 on a libuv loop leaves the tail of a compressed, fragmented message
 * undelivered on the receiving side until more bytes arrive on the socket (its "rx draining"
 * is not serviced by the libuv event lib).  passerelled has the same lws, so a push sent
 * compressed may wait there until the next ping, 20 s later (measured: 20 s for a 300-event
 * push, 11 ms without deflate).  While an answer is awaited (a push, a catch-up, a message
 * half received) we send a ping every CONN_NUDGE_MS: the new bytes make the server finish
 * reading the push, and its pong does the same for us.  A ping costs 6 bytes. */
static void on_nudge(uv_timer_t *t) {
  psl__sync_t *s = t->data;
  int waiting = s->push_inflight || (s->subscribed && !s->caught_up) || s->rx.len > 0;
  if (s->wsi && waiting && !s->closing) {
    s->ping_due = 1;
    lws_callback_on_writable(s->wsi);
  }
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len) {
  struct lws_context *ctx = lws_get_context(wsi);
  psl__sync_t *s = ctx ? lws_context_user(ctx) : NULL;
  if (!s)
    return 0;
  switch (reason) {
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    conn_gone(s, PSL_EUNAVAILABLE);
    return 0;
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    s->wsi = wsi;
    psl_buf_reset(&s->rx);
    if (!s->c->no_deflate)
      uv_timer_start(&s->nudge, on_nudge, CONN_NUDGE_MS, CONN_NUDGE_MS);
    psl__session_opened(s);
    return 0;
  case LWS_CALLBACK_CLIENT_RECEIVE:
    return on_receive(s, wsi, in, len);
  case LWS_CALLBACK_CLIENT_WRITEABLE:
    return on_writeable(s, wsi);
  case LWS_CALLBACK_CLIENT_CLOSED:
    conn_gone(s, PSL_EUNAVAILABLE);
    return 0;
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}

void psl__conn_connect(psl__sync_t *s) {
  struct lws_client_connect_info i;
  memset(&i, 0, sizeof i);
  i.context = s->ctx;
  i.address = s->host;
  i.port = s->port;
  i.path = s->path;
  i.host = s->host;
  i.origin = s->host;
  i.protocol = PSL_SUBPROTOCOL;
  i.retry_and_idle_policy = &conn_idle_policy;
  if (s->tls) {
    i.ssl_connection = LCCSCF_USE_SSL;
    if (s->c->tls_insecure)
      i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                          LCCSCF_ALLOW_EXPIRED;
  }
  s->conn_active = 1;
  s->closing = 0;
  if (!lws_client_connect_via_info(&i))
    conn_gone(s, PSL_EUNAVAILABLE); /* no-op if lws already reported the error */
}

/* ---- timer and wake-ups */

static void on_timer(uv_timer_t *t) {
  psl__sync_t *s = t->data;
  if (!s->stopping && !s->conn_active)
    psl__conn_connect(s);
}

void psl__conn_retry_in(psl__sync_t *s, uint64_t ms) {
  uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void on_wake(uv_async_t *a) {
  psl__sync_t *s = a->data;
  int stopping;
  pthread_mutex_lock(&s->c->mu);
  stopping = s->stopping;
  pthread_mutex_unlock(&s->c->mu);
  if (stopping)
    uv_stop(&s->loop);
  else
    psl__session_woken(s);
}

void psl__sync_wake(psl__sync_t *s) {
  if (!s->stopping)
    uv_async_send(&s->wake);
}

/* ---- the thread */

static void close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* Close our handles (nothing of ours runs any more: `stopping` is set or the thread never
 * ran), destroy the lws context (its callbacks see `stopping`), run the loop until every
 * handle is closed, close the loop.  On a foreign loop lws finishes destroying its context
 * only when called again once its handles are closed; info.pcontext clears s->ctx when it
 * is done. */
static void loop_teardown(psl__sync_t *s) {
  uv_close((uv_handle_t *)&s->wake, NULL);
  uv_close((uv_handle_t *)&s->timer, NULL);
  uv_close((uv_handle_t *)&s->nudge, NULL);
  for (int i = 0; s->ctx && i < CONN_DESTROY_TRIES; i++) {
    lws_context_destroy(s->ctx);
    uv_run(&s->loop, UV_RUN_DEFAULT);
  }
  uv_run(&s->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&s->loop) == UV_EBUSY) {
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
  }
}

static void thread_main(void *arg) {
  psl__sync_t *s = arg;
  psl__session_begin(s);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  loop_teardown(s);
  psl__session_end(s);
}

/* "ws://host[:port][/path]" → host, port, path, tls. */
static int parse_url(psl__sync_t *s, const char *url) {
  const char *p;
  if (strncmp(url, "wss://", 6) == 0) {
    s->tls = 1;
    s->port = 443;
    p = url + 6;
  } else if (strncmp(url, "ws://", 5) == 0) {
    s->tls = 0;
    s->port = 80;
    p = url + 5;
  } else {
    return PSL_EINVALID;
  }
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl >= sizeof s->host)
    return PSL_EINVALID;
  memcpy(s->host, p, hl);
  s->host[hl] = '\0';
  p += hl;
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port <= 0 || port > 65535)
      return PSL_EINVALID;
    s->port = (int)port;
    p = end;
  }
  if (*p == '\0')
    p = "/sync";
  if (*p != '/' || strlen(p) >= sizeof s->path)
    return PSL_EINVALID;
  snprintf(s->path, sizeof s->path, "%s", p);
  return 0;
}

static int load_server(psl__sync_t *s) {
  char url[PSL__MAX_URL + 1];
  size_t n = 0, tn = 0;
  MDB_txn *txn;
  int rc = psl__store_rd(&s->c->store, &txn);
  if (rc)
    return rc;
  rc = psl__meta_get(&s->c->store, txn, PSL__META_URL, url, sizeof url - 1, &n);
  if (!rc)
    rc = psl__meta_get(&s->c->store, txn, PSL__META_TOKEN, s->token, sizeof s->token - 1, &tn);
  mdb_txn_abort(txn);
  if (rc == PSL_ENOTFOUND)
    return PSL_EINVALID; /* not logged in */
  if (rc)
    return rc;
  url[n] = '\0';
  s->token[tn] = '\0';
  return parse_url(s, url);
}

static int make_context(psl__sync_t *s) {
  struct lws_context_creation_info info;
  void *loops[1] = {&s->loop};
  static const struct lws_protocols protocols[] = {
      {PSL_SUBPROTOCOL, ws_callback, 0, 0, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};
  memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = protocols;
  info.options = LWS_SERVER_OPTION_LIBUV;
  if (s->tls)
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.foreign_loops = loops;
  info.user = s;
  info.pcontext = &s->ctx;
  info.fd_limit_per_thread = CONN_FD_LIMIT;
  if (!s->c->no_deflate)
    info.extensions = conn_exts;
  s->ctx = lws_create_context(&info);
  return s->ctx ? 0 : PSL_EINTERNAL;
}

static void sync_free(psl__sync_t *s) {
  out_free_all(s);
  psl_buf_free(&s->rx);
  psl_buf_free(&s->scratch);
  free(s->fresh);
  sodium_memzero(s->token, sizeof s->token);
  free(s);
}

int psl__sync_start(psl_client_t *c, int follow) {
  psl__sync_t *s = calloc(1, sizeof *s);
  int rc;
  if (!s)
    return PSL_ENOMEM;
  s->c = c;
  s->follow = follow;
  psl_buf_init(&s->rx, 0);
  psl_buf_init(&s->scratch, 0);
  rc = load_server(s);
  if (rc)
    goto fail_alloc;
  rc = PSL_EINTERNAL;
  if (uv_loop_init(&s->loop))
    goto fail_alloc;
  uv_async_init(&s->loop, &s->wake, on_wake);
  uv_timer_init(&s->loop, &s->timer);
  uv_timer_init(&s->loop, &s->nudge);
  s->wake.data = s;
  s->timer.data = s;
  s->nudge.data = s;
  if (make_context(s))
    goto fail_loop;
  pthread_mutex_lock(&c->mu);
  c->sync = s;
  c->done = 0;
  c->done_err = 0;
  pthread_mutex_unlock(&c->mu);
  if (uv_thread_create(&s->thread, thread_main, s) == 0)
    return 0;
  pthread_mutex_lock(&c->mu);
  c->sync = NULL;
  pthread_mutex_unlock(&c->mu);
fail_loop:
  s->stopping = 1;
  loop_teardown(s);
fail_alloc:
  sync_free(s);
  return rc;
}

void psl__sync_stop(psl_client_t *c) {
  pthread_mutex_lock(&c->mu);
  psl__sync_t *s = c->sync;
  if (s) {
    s->stopping = 1;
    uv_async_send(&s->wake);
  }
  pthread_mutex_unlock(&c->mu);
  if (!s)
    return;
  uv_thread_join(&s->thread);
  pthread_mutex_lock(&c->mu);
  c->sync = NULL;
  pthread_mutex_unlock(&c->mu);
  sync_free(s);
}
