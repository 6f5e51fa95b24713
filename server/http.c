/*
 * http.c — plain HTTP on the WebSocket port (lws protocols[0]): GET routes, the upgrade gate
 * and the connection cap.
 *
 * Routes (http_routes below; the /api/v1 endpoints of a later issue are added as rows):
 *   GET /healthz   200 "ok\n" while the log takes writes; 503 and the reason otherwise
 *   GET /metrics   Prometheus text (metrics.c)
 *   GET /api/v1/counters, /api/v1/participants/<uuid>, /api/v1/report   the API (api.c)
 *   GET /, /app.js, /app.css, /favicon.svg   the dashboard (www.c, files of server/www/)
 *   anything else  404; a method other than GET on a known path 405
 *
 * Upgrade gate (LWS_CALLBACK_HTTP_CONFIRM_UPGRADE): only GET /sync offering the subprotocol
 * passerelle.v1 may become a WebSocket; others get 404 (path) or 400 (subprotocol), and every
 * upgrade while stopping or at PSL_MAX_CONNECTIONS gets 503.
 *
 * Connection cap (LWS_CALLBACK_FILTER_NETWORK_CONNECTION): a TCP connection is dropped at once
 * while stopping, or when the WebSocket connections exceed the cap by PSL_HTTP_SLACK (kept so
 * that /healthz and /metrics still answer when the WebSocket cap is reached).
 *
 * A response is sent in two steps, as lws wants: headers from the HTTP callback, the body
 * from the next HTTP_WRITEABLEs (PSL_HTTP_WRITE_CHUNK at a time, as HTTP/2 needs), then the
 * transaction is completed (keep-alive).
 *
 * Fresh reads: an API answer reflects every event answered (`pushed`) before the request.
 * The log makes answered events readable up to PSL_LOG_VISIBLE_MS later (server/log_write.c),
 * so a request that finds answered events not yet readable asks the log to commit now and
 * waits in srv->http_waiters; the commit's wake-up (psl__http_wake) runs it.
 */
#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "api.h"
#include "psl_say.h"
#include "www.h"

/* Sockets accepted above the WebSocket cap, for HTTP probes (/healthz, /metrics). */
#define PSL_HTTP_SLACK 32u
/* Longest path and query we route: our routes are short; longer ones are 404 anyway. */
#define PSL_HTTP_MAX_PATH 256
#define PSL_HTTP_MAX_QUERY 1024
/* Room for a response's headers: lws's common ones (~150 bytes) plus ours; the dashboard's
 * Content-Security-Policy and cache headers (www.c) take ~350 of them. */
#define PSL_HTTP_MAX_HEADERS 1024
/* Body bytes written per HTTP_WRITEABLE, and never more than the peer's HTTP/2 flow-control
 * window allows.  Over TLS browsers speak HTTP/2, and lws 4.1 sends only the first ~4 KiB of
 * a larger final write on an h2 stream (measured: a 7.6 KB page arrived cut at 4,107 bytes);
 * in pieces of 4 KiB (lws's own service buffer size) every body arrives whole, h1 or h2. */
#define PSL_HTTP_WRITE_CHUNK 4096u

typedef struct {
  psl_buf_t body; /* response body waiting for HTTP_WRITEABLE */
  size_t sent;    /* bytes of body already written */
  int flushing;   /* the whole body is written; lws still holds part of it */
  /* A fresh read waiting for the commit of seq wait_seq (srv->http_waiters). */
  psl__link_t wait_link;
  int waiting;
  size_t route;
  uint64_t wait_seq;
  struct lws *wsi;
  char path[PSL_HTTP_MAX_PATH], query[PSL_HTTP_MAX_QUERY];
} http_session_t;

size_t psl__http_session_size(void) { return sizeof(http_session_t); }

/* ---- Routes. */

static int http_printf(psl_buf_t *b, const char *s) { return psl_buf_append(b, s, strlen(s)); }

static int http_healthz(const psl__http_req_t *req, psl__http_resp_t *resp) {
  psl__server_t *srv = req->srv;
  resp->ctype = "text/plain; charset=utf-8";
  if (srv->stopping) {
    resp->status = 503;
    return http_printf(resp->body, "stopping\n");
  }
  if (srv->starting) { /* server.c: the log opens, its projections catch up */
    resp->status = 503;
    return http_printf(resp->body, "starting: opening the log\n");
  }
  if (!srv->log_writable) {
    resp->status = 503;
    int rc = http_printf(resp->body, "log not writable: ");
    if (rc == 0)
      rc = http_printf(resp->body, srv->log_unwritable_reason);
    return rc ? rc : http_printf(resp->body, "\n");
  }
  return http_printf(resp->body, "ok\n");
}

static int http_metrics(const psl__http_req_t *req, psl__http_resp_t *resp) {
  psl__server_t *srv = req->srv;
  srv->metrics.connections = srv->nconns;
  srv->metrics.head_seq = !srv->starting && srv->log ? psl_log_answered(srv->log, NULL) : srv->head;
  srv->metrics.readable_seq = srv->head;
  srv->metrics.log_writable = srv->log_writable;
  resp->ctype = "text/plain; version=0.0.4; charset=utf-8";
  return psl_metrics_render(&srv->metrics, resp->body);
}

static const struct {
  const char *path;
  psl__http_handler_t fn;
  int fresh; /* reflects every event answered before the request (see the top) */
} http_routes[] = {
    {"/healthz", http_healthz, 0},
    {"/metrics", http_metrics, 0},
    /* The HTTP API (api.c): JSON answers, bearer tokens.  A path ending in '*' matches
     * every path that starts with what precedes the '*'. */
    {"/api/v1/counters", psl__api_counters, 1},
    {"/api/v1/participants/*", psl__api_participant, 1},
    {"/api/v1/report", psl__api_report, 1},
    /* The dashboard (www.c: files of server/www/ embedded at build time). */
    {"/", psl__www_handler, 0},
    {"/app.js", psl__www_handler, 0},
    {"/app.css", psl__www_handler, 0},
    {"/favicon.svg", psl__www_handler, 0},
};

/* ---- Plumbing. */

static psl__server_t *http_server(struct lws *wsi) {
  return lws_context_user(lws_get_context(wsi));
}

/* The query string: lws keeps each `a=b` part as a fragment of WSI_TOKEN_HTTP_URI_ARGS. */
static void http_query(struct lws *wsi, char *out, size_t cap) {
  size_t len = 0;
  out[0] = '\0';
  for (int i = 0;; i++) {
    char part[PSL_HTTP_MAX_QUERY];
    int n = lws_hdr_copy_fragment(wsi, part, sizeof part, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (n <= 0)
      break;
    if (len + (size_t)n + 2 > cap)
      break; /* too long: routes see a cut query and reject what they cannot parse */
    if (len)
      out[len++] = '&';
    memcpy(out + len, part, (size_t)n);
    len += (size_t)n;
    out[len] = '\0';
  }
}

/* 1 if the NULL-ended "name:", "value" list sets name. */
static int http_has_header(const char *const *headers, const char *name) {
  for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
    if (strcmp(headers[i], name) == 0)
      return 1;
  return 0;
}

/* Headers now, body on the next HTTP_WRITEABLE; headers: more "name:", "value" pairs then
 * NULL, or NULL.  Returns nonzero to close. */
static int http_respond(struct lws *wsi, http_session_t *s, unsigned status, const char *ctype,
                        const char *const *headers) {
  uint8_t hdr[LWS_PRE + PSL_HTTP_MAX_HEADERS];
  uint8_t *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
  if (s->body.len == 0 && psl_buf_append(&s->body, "\n", 1) != 0)
    return -1;
  if (lws_add_http_common_headers(wsi, status, ctype, s->body.len, &p, end))
    return -1;
  if (!http_has_header(headers, "cache-control:") &&
      lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                  (const unsigned char *)"no-store", 8, &p, end))
    return -1;
  for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)headers[i],
                                    (const unsigned char *)headers[i + 1],
                                    (int)strlen(headers[i + 1]), &p, end))
      return -1;
  if (lws_finalize_write_http_header(wsi, start, &p, end))
    return -1;
  lws_callback_on_writable(wsi);
  return 0;
}

/* HTTP_WRITEABLE: the next piece of the body (PSL_HTTP_WRITE_CHUNK at most, within the
 * peer's HTTP/2 window); the last one completes the transaction.  lws may write its frame
 * header into the LWS_PRE bytes before the piece: those are the buffer's headroom or body
 * bytes already sent.  Returns nonzero to close. */
static int http_write_body(struct lws *wsi, http_session_t *s) {
  if (s->flushing) { /* lws calls WRITEABLE once what it held is sent */
    s->flushing = 0;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }
  if (!s->body.base)
    return 0;
  size_t left = s->body.len - s->sent;
  size_t n = left < PSL_HTTP_WRITE_CHUNK ? left : PSL_HTTP_WRITE_CHUNK;
  lws_fileofs_t allowed = lws_get_peer_write_allowance(wsi);
  if (allowed >= 0 && (uint64_t)allowed < n)
    n = (size_t)allowed;
  if (n == 0 && left > 0) { /* the peer's window is shut: lws calls again when it opens */
    lws_callback_on_writable(wsi);
    return 0;
  }
  int final = n == left;
  int w = lws_write(wsi, psl_buf_data(&s->body) + s->sent, n,
                    final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
  if (w < 0)
    return -1;
  s->sent += n;
  http_server(wsi)->metrics.bytes_sent_total += n;
  if (!final) {
    lws_callback_on_writable(wsi);
    return 0;
  }
  psl_buf_free(&s->body);
  s->sent = 0;
  if (lws_partial_buffered(wsi)) { /* lws holds part of the last piece: complete once sent */
    s->flushing = 1;
    lws_callback_on_writable(wsi);
    return 0;
  }
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* 1 if path is route's, or starts with route's text before a final '*'. */
static int http_route_matches(const char *route, const char *path) {
  size_t n = strlen(route);
  if (n > 0 && route[n - 1] == '*')
    return strncmp(path, route, n - 1) == 0;
  return strcmp(path, route) == 0;
}

/* Run route i for the request in s (path, query) and send its answer. */
static int http_run(struct lws *wsi, http_session_t *s, size_t i) {
  psl__http_req_t req = {http_server(wsi), wsi, s->path, s->query};
  psl__http_resp_t resp = {200, "text/plain; charset=utf-8", &s->body, NULL};
  int rc = http_routes[i].fn(&req, &resp);
  if (rc != 0) {
    psl_say(PSL_SAY_ERROR, "http %s failed: %s", http_routes[i].path, psl_strerror(rc));
    psl_buf_reset(&s->body);
    http_printf(&s->body, "internal error\n");
    return http_respond(wsi, s, 500, "text/plain; charset=utf-8", NULL);
  }
  return http_respond(wsi, s, resp.status, resp.ctype, resp.headers);
}

static void http_unwait(http_session_t *s) {
  if (!s->waiting)
    return;
  psl__list_remove(&s->wait_link);
  s->waiting = 0;
}

void psl__http_wake(psl__server_t *srv) {
  psl__link_t *l = srv->http_waiters.next;
  while (l != &srv->http_waiters) {
    http_session_t *s = psl__container_of(l, http_session_t, wait_link);
    l = l->next;
    if (s->wait_seq > srv->head)
      continue;
    http_unwait(s);
    if (http_run(s->wsi, s, s->route) != 0)
      lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
  }
}

static int http_serve(struct lws *wsi, http_session_t *s, const char *uri) {
  psl__server_t *srv = http_server(wsi);
  http_unwait(s);
  psl_buf_free(&s->body);
  psl_buf_init(&s->body, LWS_PRE);
  s->sent = 0;
  s->flushing = 0;
  snprintf(s->path, sizeof s->path, "%s", uri ? uri : "");
  http_query(wsi, s->query, sizeof s->query);
  int is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
  for (size_t i = 0; i < sizeof http_routes / sizeof http_routes[0]; i++) {
    if (!http_route_matches(http_routes[i].path, s->path))
      continue;
    if (!is_get) {
      http_printf(&s->body, "method not allowed\n");
      return http_respond(wsi, s, 405, "text/plain; charset=utf-8", NULL);
    }
    uint64_t answered = http_routes[i].fresh && !srv->starting && srv->log
                            ? psl_log_answered(srv->log, NULL)
                            : 0;
    if (answered > srv->head) { /* wait for the commit that makes them readable */
      s->wsi = wsi;
      s->route = i;
      s->wait_seq = answered;
      s->waiting = 1;
      psl__list_push(&srv->http_waiters, &s->wait_link);
      psl_log_commit_soon(srv->log);
      return 0;
    }
    return http_run(wsi, s, i);
  }
  http_printf(&s->body, "not found\n");
  return http_respond(wsi, s, 404, "text/plain; charset=utf-8", NULL);
}

/* 1 if the comma-separated header value lists token (case-sensitive, as subprotocols are). */
static int http_lists(const char *value, const char *token) {
  size_t tl = strlen(token);
  const char *p = value;
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t')
      p++;
    const char *e = p;
    while (*e && *e != ',' && *e != ' ' && *e != '\t')
      e++;
    if ((size_t)(e - p) == tl && memcmp(p, token, tl) == 0)
      return 1;
    p = e;
  }
  return 0;
}

/* Only /sync with passerelle.v1 may upgrade.  0 lets it, 1 when refused with a status. */
static int http_confirm_upgrade(struct lws *wsi) {
  psl__server_t *srv = http_server(wsi);
  char uri[PSL_HTTP_MAX_PATH], proto[PSL_HTTP_MAX_PATH];
  unsigned status = 0;
  const char *why = NULL;
  if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/sync") != 0) {
    status = 404;
    why = "not /sync";
  } else if (lws_hdr_copy(wsi, proto, sizeof proto, WSI_TOKEN_PROTOCOL) <= 0 ||
             !http_lists(proto, PSL_SUBPROTOCOL)) {
    status = 400;
    why = "subprotocol passerelle.v1 not offered";
  } else if (srv->stopping || srv->starting || srv->nconns >= srv->max_conns) {
    status = 503;
    why = srv->stopping ? "stopping" : srv->starting ? "starting" : "connection limit";
    srv->metrics.connections_refused_total++;
  }
  if (!status)
    return 0;
  psl_say(PSL_SAY_INFO, "upgrade refused status=%u: %s", status, why);
  lws_return_http_status(wsi, status, NULL);
  return 1;
}

int psl__http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len) {
  http_session_t *s = user;
  switch (reason) {
  case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
    psl__server_t *srv = http_server(wsi);
    if (srv->stopping || srv->nconns >= srv->max_conns + PSL_HTTP_SLACK) {
      srv->metrics.connections_refused_total++;
      psl_say(PSL_SAY_DEBUG, "connection refused: %s",
              srv->stopping ? "stopping" : "connection limit");
      return 1;
    }
    return 0;
  }
  case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    return http_confirm_upgrade(wsi);
  case LWS_CALLBACK_HTTP:
    return s ? http_serve(wsi, s, in) : -1;
  case LWS_CALLBACK_HTTP_WRITEABLE:
    return s ? http_write_body(wsi, s) : 0;
  case LWS_CALLBACK_CLOSED_HTTP:
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    if (s) {
      http_unwait(s);
      psl_buf_free(&s->body);
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}
