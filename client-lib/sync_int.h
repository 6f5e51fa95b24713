/*
 * sync_int.h — the sync thread's state, shared by conn.c (thread, loop, libwebsockets) and
 * sync.c (the protocol session).  Everything in psl__sync_t is touched only on the library's
 * thread, except `stopping`, which is written under c->mu.
 */
#ifndef PSL_SYNC_INT_H
#define PSL_SYNC_INT_H

#include <libwebsockets.h>
#include <uv.h>

#include "client_int.h"

/* Full-jitter backoff (sleep = random(0, min(cap, base * 2^attempt))).  500 ms: a server
 * restart or a blip in a corridor is retried at once.  180 s cap: a caseworker walking out
 * of a prison syncs within three minutes of getting a signal, while a phone with no network
 * wakes its radio at most ~20 times an hour, and a fleet of phones reconnecting after a
 * server restart spreads over three minutes instead of arriving together. */
#define PSL__BACKOFF_BASE_MS 500u
#define PSL__BACKOFF_CAP_MS 180000u
/* Chunks in flight on a subscription: 4 × PSL_CHUNK_BYTES = 1 MiB of a catch-up buffered
 * at most, which keeps the pipe full over a slow link and the memory bounded. */
#define PSL__SYNC_WINDOW 4u
/* Largest message accepted from the server: a chunk is PSL_CHUNK_BYTES plus at most one
 * event; PSL_MAX_FRAME is the protocol's bound on any frame. */
#define PSL__MAX_MESSAGE PSL_MAX_FRAME
/* Bytes of events in one push: under PSL_MAX_FRAME with room for the push's own header and
 * per-event re-encoding differences (the outbox stores each event in its own push frame). */
#define PSL__PUSH_MAX_BYTES (PSL_MAX_FRAME - 64u * 1024u)
/* Resets in a row without a caught_up before the client gives up on this attempt and backs
 * off: a server that answers `reset` to a sub from 0 is broken, not replaced. */
#define PSL__MAX_RESETS 3u

typedef struct psl__out_s {
  struct psl__out_s *next;
  psl_buf_t b; /* LWS_PRE headroom */
} psl__out_t;

struct psl__sync_s {
  psl_client_t *c;
  int follow;

  /* Thread and loop (conn.c). */
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t timer;
  uv_timer_t nudge; /* conn.c: pings while a push is unanswered (lws 4.1 deflate stall) */
  int stopping; /* written under c->mu */
  struct lws_context *ctx;

  /* The server, from the store at start. */
  char host[256];
  char path[256];
  int port;
  int tls;
  char token[PSL_MAX_STR + 1];

  /* Connection (conn.c). */
  struct lws *wsi;  /* set once established */
  int conn_active;  /* an attempt or a connection is outstanding */
  int closing;      /* we asked lws to close */
  int ping_due;     /* the next WRITEABLE sends a ping */
  psl_buf_t rx;     /* message being gathered */
  int rx_text;      /* the message had a text frame: a protocol error */
  psl__out_t *out_head, *out_tail;
  psl__out_t *out_written; /* what lws_write last took (see conn.c) */

  /* Session (sync.c). */
  psl__ckpt_t ck;
  int welcomed;
  char server_id[PSL_CLIENT_SERVER_ID + 1];
  uint64_t next_id;
  int push_inflight;
  uint64_t push_id;
  size_t push_n;
  uint64_t push_order[PSL_MAX_PUSH_EVENTS];
  psl_event_t push_ev[PSL_MAX_PUSH_EVENTS];
  int subscribed;
  uint64_t sub_id;
  int caught_up;
  unsigned attempt;
  unsigned resets;
  int reset_reconnect; /* a hello answered `reset`: reconnect at once */
  int replica_full;
  int failed;   /* FAILED: no more retries */
  int finished; /* a one-pass sync finished */
  int last_err;
  psl_buf_t scratch;
  uint64_t since_release; /* replica bytes written since the last page release */
  uint8_t *fresh;   /* per chunk: which events were new to the replica */
  size_t fresh_cap;
};

/* conn.c → sync.c */
void psl__session_begin(psl__sync_t *s);
void psl__session_opened(psl__sync_t *s);
void psl__session_message(psl__sync_t *s, const uint8_t *p, size_t len);
void psl__session_closed(psl__sync_t *s, int err);
void psl__session_woken(psl__sync_t *s);
void psl__session_end(psl__sync_t *s);

/* sync.c → conn.c */
void psl__conn_connect(psl__sync_t *s);
int psl__conn_send(psl__sync_t *s, const psl_msg_t *m);
void psl__conn_close(psl__sync_t *s);
void psl__conn_retry_in(psl__sync_t *s, uint64_t ms);

#endif /* PSL_SYNC_INT_H */
