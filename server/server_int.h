/*
 * server_int.h — what the files of passerelled share (server.c, net.c, conn.c, push.c, sub.c,
 * http.c).  Not an API: psl_server.h is.
 *
 * Threads.  One loop thread runs libuv and every libwebsockets call (lws is not thread-safe).
 * The log's writer thread only ever touches two things here, both under `done_mu` or atomic:
 * it appends completed pushes to `done_first..done_last` and stores the committed head in
 * `committed_head`, then wakes the loop with uv_async_send(&wake).  The loop drains both in
 * server.c's wake callback.
 *
 *   device ──frame──▶ lws (loop) ──push──▶ psl_log_submit ──▶ writer thread: commit, fsync
 *                                                                   │ done / on_commit
 *   device ◀─pushed── conn send queue ◀── wake (loop) ◀── done list + uv_async_send
 *   device ◀─events── sub reads the log on WRITEABLE ◀── wake: commit woke the waiters
 */
#ifndef PSL_SERVER_INT_H
#define PSL_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "metrics.h"
#include "psl_access.h"
#include "psl_log.h"
#include "psl_proto.h"
#include "psl_server.h"

/* ---- Limits of the whole server (per-connection ones are in conn.h). */

/* Open WebSocket connections.  The target is 10,000 field devices at <= 16 KiB each; twice
 * that leaves room for a morning's reconnect storm while bounding memory (~320 MiB) and file
 * descriptors.  Lowered at start to what RLIMIT_NOFILE allows (minus PSL_FD_RESERVE). */
#define PSL_MAX_CONNECTIONS 20000u
/* Descriptors kept for other uses: LMDB (data + lock files of two environments), the listen
 * socket, lws's wake pipe, stdio, and HTTP requests (/healthz, /metrics) in flight. */
#define PSL_FD_RESERVE 64u
/* lws's handshake timeout (info.timeout_secs): a client that has not finished its HTTP
 * upgrade in 10 s is a dead or hostile one, and holds a header buffer meanwhile. */
#define PSL_HANDSHAKE_TIMEOUT_S 10
/* Idle liveness (lws retry_and_idle_policy): ping a connection silent for 30 s (below the
 * ~60 s that mobile NATs keep an idle mapping), hang up one silent for 75 s (two missed pongs
 * and a margin for a slow phone network). */
#define PSL_IDLE_PING_S 30
#define PSL_IDLE_HANGUP_S 75
/* How often revocations are looked for: PROTOCOL-v1 wants a revoked token's connections
 * closed within a second; polling 4 times a second leaves 750 ms for the close itself. */
#define PSL_ACCESS_POLL_MS 250
/* Graceful stop: how long pending pushes and send queues may take before we close anyway. */
#define PSL_STOP_FLUSH_MS 5000
/* Graceful stop: how often the stop checks whether every connection is done. */
#define PSL_STOP_POLL_MS 20

typedef struct psl__conn_s psl__conn_t;
typedef struct psl__push_s psl__push_t;

/* Intrusive doubly-linked list node (conn lists). */
typedef struct psl__link_s {
  struct psl__link_s *prev, *next;
} psl__link_t;

typedef struct psl__server_s {
  uv_loop_t *loop;
  struct lws_context *lws;
  struct lws_vhost *vhost;
  psl_log_t *log;
  psl_access_t *access;
  struct psl_keys_s *keys;  /* pii keys (psl_keys.h): sealed by the log's writer, opened by subs */
  struct psl_alog_s *alog;  /* DIR/access.log (psl_access_log.h) */
  struct psl__flood_s *flood; /* per-token connection and rate limits (flood.h) */
  const char *log_id;
  /* The projections (domain/psl_domain.h) in the log's environment, kept up to date by the
   * log's hooks inside the writer's transactions; set when the log is open (NULL before). */
  struct psl_projdb_s *projdb;
  /* Start-up (server.c): the log opens on a worker thread, since its projection hook may
   * first fold a long range of events (a log from before projections, or a rebuild).  While
   * `starting`, /healthz and /api answer 503 and upgrades are refused (503): nothing else
   * may touch the log.  start_rc: a start that failed there (psl_server_run returns it). */
  int starting;
  int start_rc;
  int port; /* the port actually listened on */
  int lws_broken; /* lws failed to listen: its context cannot be torn down (net.c) */

  /* Connections: every open one (for revocation and stop), and those whose live
   * subscriptions wait for a commit. */
  psl__link_t conns;   /* psl__conn_t.link */
  psl__link_t waiters; /* psl__conn_t.wait_link */
  psl__link_t http_waiters; /* HTTP API requests waiting for a commit (http.c) */
  size_t nconns;       /* open WebSocket connections (zombies not counted) */
  size_t nzombies;     /* closed connections kept for their pending pushes */
  size_t max_conns;
  uint64_t next_conn_id;

  /* The loop's view of the committed head (updated from committed_head on wake). */
  uint64_t head;

  /* Cross-thread: completions and commits from the writer thread. */
  uv_async_t wake;
  pthread_mutex_t done_mu;
  psl__push_t *done_first, *done_last;
  _Atomic uint64_t committed_head;

  /* Token revocation poll. */
  uv_timer_t access_timer;
  uint64_t access_gen;

  /* Graceful stop. */
  uv_signal_t sigterm, sigint;
  uv_timer_t stop_timer;
  int stopping;     /* a signal came: refuse new work, drain, close */
  uint64_t stop_deadline_ms;
  int handles_open; /* our uv handles still to be closed */

  /* Health: cleared by a push that failed PSL_EUNAVAILABLE, set by the next success. */
  int log_writable;
  char log_unwritable_reason[64];

  psl_metrics_t metrics;
} psl__server_t;

/* ---- list helpers */
static inline void psl__list_init(psl__link_t *head) { head->prev = head->next = head; }
static inline int psl__list_empty(const psl__link_t *head) { return head->next == head; }
static inline void psl__list_push(psl__link_t *head, psl__link_t *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}
static inline void psl__list_remove(psl__link_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}
#define psl__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- net.c: libwebsockets on our loop. */

/* Create the lws context and its vhost on srv->loop, listening on host:port.  0 or PSL_E*. */
int psl__net_start(psl__server_t *srv, const psl_server_opts_t *opts);
/* Destroy the lws context: closes every connection (their CLOSED callbacks run).  The loop
 * must then run until lws's handles are closed. */
void psl__net_stop(psl__server_t *srv);

/* ---- http.c: protocols[0], plain HTTP on the same port. */

/* A GET request as a route handler sees it.  Headers (Authorization: Bearer ...) are read
 * from wsi with lws_hdr_copy() during the call. */
typedef struct {
  psl__server_t *srv;
  struct lws *wsi;
  const char *path;  /* NUL-terminated, no query */
  const char *query; /* "a=1&b=2" (lws has url-decoded each part), "" if none */
} psl__http_req_t;

/* The answer a handler fills: status (200 unless set), content type, body (LWS_PRE headroom,
 * appended to by the handler). */
typedef struct {
  unsigned status;
  const char *ctype;
  psl_buf_t *body;
  /* More response headers, static strings: "name:", "value" pairs then NULL (NULL: none).
   * A "cache-control:" among them replaces the default no-store (the dashboard's files). */
  const char *const *headers;
} psl__http_resp_t;

/* A route handler: 0, or PSL_E* for a failure of ours (answered 500). */
typedef int (*psl__http_handler_t)(const psl__http_req_t *req, psl__http_resp_t *resp);

int psl__http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len);
/* Size of the per-request state lws keeps for protocols[0]. */
size_t psl__http_session_size(void);
/* A commit moved srv->head: answer the API requests that waited for it (http.c). */
void psl__http_wake(psl__server_t *srv);

/* ---- push.c */

/* Writer thread: a push's request completed (psl_append_req_t.done). */
void psl__push_done(psl_append_req_t *req);
/* Loop: answer every completed push. */
void psl__push_drain(psl__server_t *srv);

/* ---- server.c */

/* Milliseconds of the loop's clock. */
uint64_t psl__now_ms(psl__server_t *srv);
/* Nanoseconds of a monotonic clock (latency measures). */
uint64_t psl__now_ns(void);

#endif /* PSL_SERVER_INT_H */
