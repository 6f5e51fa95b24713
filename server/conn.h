/*
 * conn.h — one WebSocket connection of passerelled and its subscriptions (conn.c, sub.c,
 * push.c).  conn.c draws the connection's state machine, sub.c the subscription's.
 *
 * Memory: an idle authenticated connection holds this struct (~600 bytes) and what lws keeps
 * per connection (its wsi, the uv poll handle and the PSL_RX_BUFFER receive buffer): ~6 KiB
 * in all, measured by bench-server at 10,000 connections (target 16 KiB).  The
 * gather buffer and the send queue are allocated only while in use and freed when empty.
 */
#ifndef PSL_CONN_H
#define PSL_CONN_H

#include <stdint.h>

#include "psl_access.h"
#include "psl_proto.h"
#include "server_int.h"

/* ---- Per-connection limits, each bounding what one peer can make us hold or do. */

/* lws's receive buffer per connection (protocol rx_buffer_size).  4 KiB holds a hello, a sub,
 * an ack or a small push in one piece and keeps an idle connection within the 16 KiB target;
 * larger frames arrive in 4 KiB pieces that conn.c gathers (up to PSL_MAX_FRAME). */
#define PSL_RX_BUFFER 4096u
/* Largest single send() lws makes (protocol tx_packet_size): a whole catch-up chunk, so that
 * lws never cuts it into rx_buffer_size pieces and copies the rest. */
#define PSL_TX_PACKET (PSL_CHUNK_BYTES + PSL_MAX_EVENT + 4096u)
/* Time to say hello after the upgrade: a connection that never authenticates holds a slot. */
#define PSL_HELLO_TIMEOUT_S 10
/* Time a closing connection has to take its final frames (error, close) before it is cut. */
#define PSL_CLOSE_FLUSH_S 5
/* A subscription reads its next chunk only while less than this waits in the send queue:
 * the kernel always has a chunk to send, and we never hold more than ~2 chunks. */
#define PSL_SENDQ_REFILL PSL_CHUNK_BYTES
/* Stop reading a peer's requests while more than this waits to be sent to it (a client that
 * pushes without reading its answers), resume below it. */
#define PSL_SENDQ_PAUSE (4u * PSL_CHUNK_BYTES)
/* Pushes of one connection waiting for their commit, and the frame bytes they hold.  The
 * pipelined benchmark keeps 16 in flight; past these limits the connection is not read
 * until commits catch up (backpressure, not an error). */
#define PSL_CONN_MAX_PENDING_PUSHES 64u
#define PSL_CONN_MAX_PENDING_BYTES (4u * PSL_MAX_FRAME)
/* With permessage-deflate, a message is written as WebSocket fragments of at most this many
 * bytes.  Why: lws 4.1's deflate extension compresses into a 1 KiB buffer (PMD_TX_BUF_PWR2 =
 * 10); when a write's output does not fit, it keeps reading the caller's buffer on later
 * writes ("tx draining"), which on a server it only finishes inside the *next* user lws_write
 * — so a frame freed after lws_write is read after free, and a new frame written meanwhile is
 * mixed into the old one.  1,000 bytes deflate to at most 1,000 + 10 bytes (stored blocks and
 * the sync flush), which always fits: no draining ever starts. */
#define PSL_PMD_FRAGMENT 1000u
/* Frames written in one WRITEABLE callback before yielding to the other connections. */
#define PSL_WRITES_PER_WAKE 16
/* Rate and connection limits are per token, across its connections: flood.h. */
/* A message started (its first piece received) must make progress: a peer that sends no
 * byte of it for PSL_FRAME_STALL_S is closed (a mobile link silent that long is gone; the
 * client reconnects and re-pushes, answered dup), and one that has not finished it after
 * PSL_FRAME_MAX_S is closed too (a full PSL_MAX_FRAME at 56 kbit/s takes 300 s): a slow
 * sender cannot hold a gathering buffer of up to PSL_MAX_FRAME for ever.  While we stop
 * reading (backpressure) the stall clock does not run. */
#define PSL_FRAME_STALL_S 10
#define PSL_FRAME_MAX_S 300
/* Subscriptions open on one connection: a client needs one; a few allow separate filters. */
#define PSL_MAX_SUBS_PER_CONN 8u
/* Largest `window` (chunks in flight) a sub may ask for: 64 x PSL_CHUNK_BYTES = 16 MiB that
 * the client must be ready to buffer; larger windows buy nothing on any real network. */
#define PSL_MAX_SUB_WINDOW 64u

typedef enum {
  PSL_CONN_HELLO = 0, /* upgraded; only `hello` is accepted */
  PSL_CONN_READY,     /* authenticated: push, sub, ack, unsub */
  PSL_CONN_CLOSING,   /* final frames queued; nothing more is read; closes once flushed */
  PSL_CONN_ZOMBIE     /* lws closed it; kept until its pending pushes complete */
} psl__conn_state_t;

typedef struct psl__frame_s {
  struct psl__frame_s *next;
  psl_buf_t buf; /* LWS_PRE headroom, one encoded message */
} psl__frame_t;

typedef struct psl__sub_s psl__sub_t;

struct psl__conn_s {
  psl__server_t *srv;
  struct lws *wsi; /* NULL once lws closed it */
  uint64_t cid;    /* connection number, for log lines */
  psl__conn_state_t state;
  int close_status;    /* CLOSING: the WebSocket close code to send */
  psl__link_t link;      /* srv->conns, while open */
  psl__link_t wait_link; /* srv->waiters, while a live sub waits for a commit */
  int waiting;

  psl_principal_t principal; /* READY: who this is (no token text is kept) */

  /* Receiving: a message split over several callbacks is gathered here. */
  uint8_t *rx;
  size_t rx_len, rx_cap;
  int rx_gathering; /* a message started and is not complete */
  int rx_paused;    /* lws_rx_flow_control(0) in force */

  /* Sending: FIFO of encoded frames. */
  psl__frame_t *sq_first, *sq_last;
  size_t sq_bytes;
  size_t sq_off;  /* bytes of sq_first already written (deflate: fragment by fragment) */
  int deflate;    /* the client negotiated permessage-deflate */

  /* Subscriptions (sub.c). */
  psl__sub_t *subs;
  size_t nsubs;
  psl__sub_t *sub_next; /* round-robin cursor */

  /* Pushes submitted and not yet answered; the conn outlives lws while nonzero. */
  size_t pending_pushes;
  size_t pending_bytes;

  /* READY: this connection's share of its token's flood limits (flood.h). */
  struct psl__tokuse_s *tokuse;
  uint64_t rx_started_ms; /* when the message being gathered began (PSL_FRAME_MAX_S) */
};

/* ---- conn.c */

/* lws upgraded wsi: a new connection in state HELLO.  NULL on allocation failure. */
psl__conn_t *psl__conn_open(psl__server_t *srv, struct lws *wsi);
/* Bytes of a message (maybe part of one) arrived.  Returns -1 if lws must close now. */
int psl__conn_receive(psl__conn_t *c, const void *in, size_t len);
/* The socket can take more: write queued frames, let subscriptions read.  -1 to close. */
int psl__conn_writable(psl__conn_t *c);
/* lws closed the connection: free it, or keep it as a zombie while pushes are pending. */
void psl__conn_closed(psl__conn_t *c);
/* A pending push was answered (or dropped): may free a zombie, may resume reading. */
void psl__conn_push_finished(psl__conn_t *c, size_t frame_bytes);

/* Encode msg and queue it; asks for a writable callback.  0 or PSL_ENOMEM. */
int psl__conn_send(psl__conn_t *c, const psl_msg_t *msg);
/* Queue an already encoded frame (takes it). */
void psl__conn_queue(psl__conn_t *c, psl__frame_t *f);
/* Answer `error` (code from psl_err_code(err)) for the request `id` (has_id 0: none), and log
 * it.  The connection stays open. */
void psl__conn_error(psl__conn_t *c, int has_id, uint64_t id, int err, const char *msg);
/* Answer `error` then close the connection with close_status once it is written. */
void psl__conn_fail(psl__conn_t *c, int has_id, uint64_t id, int err, const char *msg,
                    int close_status);
/* Close without an error frame (graceful stop, 1001). */
void psl__conn_close(psl__conn_t *c, int close_status, const char *why);
/* Ask lws for a WRITEABLE callback (no-op once closed). */
void psl__conn_want_write(psl__conn_t *c);
/* Start or stop reading according to pending pushes and the send queue. */
void psl__conn_update_rx(psl__conn_t *c);

/* Server-wide walks (server.c). */
void psl__conn_recheck_tokens(psl__server_t *srv); /* token store changed: close revoked */
void psl__conn_stop_all(psl__server_t *srv);       /* graceful stop: close idle conns */
int psl__conn_all_done(psl__server_t *srv);        /* stop: nothing pending, nothing queued */
void psl__conn_detach_all(psl__server_t *srv);     /* after lws is gone: forget its wsi */

/* ---- push.c */

/* Handle a decoded push.  Takes frame (malloc'ed, len bytes) and msg (decoded from frame). */
void psl__push_handle(psl__conn_t *c, uint8_t *frame, size_t len, psl_msg_t *msg);

/* ---- sub.c */

void psl__sub_handle(psl__conn_t *c, const psl_msg_t *msg); /* `sub` */
void psl__sub_ack(psl__conn_t *c, uint64_t sub, uint64_t upto);
void psl__sub_unsub(psl__conn_t *c, uint64_t sub);
/* Called on WRITEABLE while the send queue is short: read at most one chunk for the next
 * ready subscription and queue it (plus caught_up when reached).  Returns 1 if it queued
 * something. */
int psl__sub_fill(psl__conn_t *c);
/* 1 if some subscription of c could queue something now. */
int psl__sub_ready(const psl__conn_t *c);
/* 1 if some live subscription of c waits for a commit past srv->head. */
int psl__sub_waits_for_commit(const psl__conn_t *c);
/* End every subscription of c (close or stop). */
void psl__sub_free_all(psl__conn_t *c);
/* A commit moved srv->head: wake the connections whose live subscriptions wait. */
void psl__sub_wake_waiters(psl__server_t *srv);

#endif /* PSL_CONN_H */
