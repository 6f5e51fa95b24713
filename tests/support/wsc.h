/*
 * wsc.h — a small, real RFC 6455 WebSocket client for tests and benchmarks.
 *
 * Why our own and not libwebsockets: tests must also misbehave on purpose (a text frame, a
 * header that announces 100 MB, bytes that are not a frame, a socket cut without a close),
 * which a conforming library refuses to do.  It speaks to 127.0.0.1 only, over plain TCP or,
 * in blocking use, over TLS (wss://, OpenSSL through tests/support/tls.h).
 *
 * One connection = one wsc_t over a non-blocking socket, used in either of two ways:
 *
 *   Blocking (tests): wsc_connect() does the TCP connect and the HTTP upgrade (path /sync,
 *   Sec-WebSocket-Protocol: passerelle.v1, checks 101, Sec-WebSocket-Accept = base64(SHA-1(key
 *   ‖ GUID)) and the subprotocol); wsc_send_*() write a whole frame (poll-bounded);
 *   wsc_recv*() wait (poll) up to a timeout for the next whole message.
 *
 *   Non-blocking (benchmarks, many connections in one epoll loop): wsc_start() begins the
 *   connect and queues the upgrade request; the caller registers wsc_fd() with epoll
 *   (EPOLLIN|EPOLLOUT|EPOLLET) and on every wakeup calls wsc_io() (reads what is there,
 *   writes what is queued) then wsc_next() until PSL_EAGAIN.  wsc_queue_*() only append to
 *   the send queue; wsc_flush_nb() writes what the socket takes now.
 *
 * Receiving: continuation frames are gathered into one message; a ping is answered with a
 * pong; a close frame is answered and reported as PSL_ECLOSED (wsc_close_code() tells its
 * code).  A received message (wsc_frame_t, or the psl_msg_t of wsc_recv_msg) points into the
 * connection's buffers and stays valid until the next receive or I/O call on that wsc_t.
 *
 * Return codes are PSL_E* (proto/psl_error.h): PSL_EAGAIN a timeout or "nothing yet",
 * PSL_ECLOSED the peer closed (close frame or EOF), PSL_EIO a socket error or reset,
 * PSL_EINVALID a handshake or framing the server got wrong, PSL_ETOO_BIG a message over
 * WSC_MAX_MESSAGE.  wsc_error() says more, for test failure messages.
 */
#ifndef PSL_TESTS_WSC_H
#define PSL_TESTS_WSC_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

/* Largest message the client accepts: a server chunk is PSL_CHUNK_BYTES plus at most one
 * event of PSL_MAX_EVENT with its wire overhead; 16 MiB leaves room for a server that
 * chunks differently without letting a broken one make us allocate without bound. */
#define WSC_MAX_MESSAGE (16u * 1024u * 1024u)

/* RFC 6455 opcodes. */
enum {
  WSC_OP_CONT = 0x0,
  WSC_OP_TEXT = 0x1,
  WSC_OP_BINARY = 0x2,
  WSC_OP_CLOSE = 0x8,
  WSC_OP_PING = 0x9,
  WSC_OP_PONG = 0xA
};

typedef struct wsc_s wsc_t;

/* One received data message (text or binary), reassembled. */
typedef struct {
  int opcode; /* WSC_OP_TEXT or WSC_OP_BINARY */
  const uint8_t *data;
  size_t len;
} wsc_frame_t;

typedef struct {
  const char *path;        /* NULL: "/sync" */
  const char *subprotocol; /* NULL: "passerelle.v1"; "" sends none */
  int timeout_ms;          /* blocking connect + handshake; 0: 5000 */
  int tls;                 /* wss://: TLS over the TCP connection (wsc_connect only) */
  const char *tls_ca;      /* with tls: the PEM to trust (the server's certificate); NULL
                            * verifies nothing */
} wsc_opts_t;

/* ---- Blocking use. */

/* Connect to 127.0.0.1:port (with opts->tls, then the TLS handshake) and upgrade.  opts may
 * be NULL.  0 and *out, or PSL_E*; on
 * failure *out is NULL and, when err is not NULL, a reason is written to err[errlen]. */
int wsc_connect(wsc_t **out, uint16_t port, const wsc_opts_t *opts, char *err, size_t errlen);

/* Send one whole frame, fin set, masked.  Blocks (poll) until the socket took it all. */
int wsc_send_frame(wsc_t *c, int opcode, const void *payload, size_t len);
static inline int wsc_send_binary(wsc_t *c, const void *p, size_t n) {
  return wsc_send_frame(c, WSC_OP_BINARY, p, n);
}
static inline int wsc_send_text(wsc_t *c, const void *p, size_t n) {
  return wsc_send_frame(c, WSC_OP_TEXT, p, n);
}
/* Encode msg (psl_msg_encode) and send it as one binary frame. */
int wsc_send_msg(wsc_t *c, const psl_msg_t *msg);
/* Send bytes as they are, outside any framing (to break the framing on purpose). */
int wsc_send_raw(wsc_t *c, const void *p, size_t n);
/* Send a masked frame header with fin and opcode announcing `announced` payload bytes, then
 * only the first n of them (n <= announced): a peer that waits for the rest waits forever. */
int wsc_send_partial(wsc_t *c, int opcode, uint64_t announced, const void *p, size_t n);

/* Wait up to timeout_ms for the next data message.  PSL_EAGAIN on timeout. */
int wsc_recv(wsc_t *c, int timeout_ms, wsc_frame_t *f);
/* The same, decoded with psl_msg_decode (the caller calls psl_msg_free).  A text frame or a
 * message that does not decode is PSL_EINVALID (diag, when not NULL, says why). */
int wsc_recv_msg(wsc_t *c, int timeout_ms, psl_msg_t *msg, psl_diag_t *diag);
/* Wait up to timeout_ms for the peer to close (close frame or EOF; data messages that come
 * first are discarded and counted in *skipped when not NULL).  0 when closed, PSL_EAGAIN on
 * timeout. */
int wsc_wait_closed(wsc_t *c, int timeout_ms, int *skipped);

/* Close politely: send a close frame (1000), wait briefly for the peer's, free.  NULL ok. */
void wsc_close(wsc_t *c);
/* Cut abruptly: no close frame, SO_LINGER 0 so the peer gets a RST; free.  NULL ok. */
void wsc_cut(wsc_t *c);

/* ---- Non-blocking use. */

/* Start a connection: non-blocking connect, upgrade request queued.  0 and *out, or PSL_E*. */
int wsc_start(wsc_t **out, uint16_t port, const wsc_opts_t *opts);
int wsc_fd(const wsc_t *c);
/* 1 once the upgrade has been answered and checked. */
int wsc_is_open(const wsc_t *c);
/* Read everything the socket has (into the receive buffer) and write what is queued.  0, or
 * PSL_ECLOSED / PSL_EIO.  Data already read stays available to wsc_next after an error. */
int wsc_io(wsc_t *c);
/* Next complete data message from what was read: 0 and *f, PSL_EAGAIN if none is complete
 * yet, PSL_ECLOSED after a close frame, PSL_EINVALID / PSL_ETOO_BIG on a bad frame or
 * handshake.  Pongs to pings are queued (and flushed). */
int wsc_next(wsc_t *c, wsc_frame_t *f);
/* Queue frames without writing. */
int wsc_queue_frame(wsc_t *c, int opcode, const void *payload, size_t len);
int wsc_queue_msg(wsc_t *c, const psl_msg_t *msg);
/* Write what the socket takes now: 0 (maybe some still queued), PSL_EIO. */
int wsc_flush_nb(wsc_t *c);
/* Bytes still queued to send. */
size_t wsc_pending(const wsc_t *c);

/* ---- Both. */

/* Why the last call failed (static buffer in the wsc_t; "" if it did not). */
const char *wsc_error(const wsc_t *c);
/* The close code the peer sent (0: none yet or none given). */
int wsc_close_code(const wsc_t *c);
/* Free without any I/O (closes the socket). */
void wsc_free(wsc_t *c);

/* Helpers other support files use. */
void wsc_sha1(const void *data, size_t len, uint8_t out[20]);
size_t wsc_base64(const uint8_t *in, size_t len, char *out, size_t outlen);

#endif /* PSL_TESTS_WSC_H */
