/*
 * wsc.c — the test WebSocket client (see wsc.h): framing, handshake, socket I/O.
 *
 * Connection states:
 *
 *     wsc_start ──► HANDSHAKE ──(101 + accept + subprotocol checked, in wsc_next)──► OPEN
 *                       │                                                             │
 *                       └──────(bad answer: PSL_EINVALID)──► FAILED ◄──(bad frame)────┤
 *                                                                                     │
 *                                        CLOSED ◄──(close frame or EOF, in wsc_next)──┘
 *
 * Buffers: rx holds bytes read and not yet consumed (rx_pos..rx_len); it is compacted only at
 * the start of wsc_io, so a message returned by wsc_next (pointing into rx) stays valid until
 * the next I/O.  A fragmented message is gathered into frag.  tx holds frames queued and not
 * yet written (tx_pos..tx_len).
 *
 * Client frames (RFC 6455 §5.2): byte 0 = FIN | opcode; byte 1 = MASK | len7, then a 16-bit
 * (len7 = 126) or 64-bit (len7 = 127) big-endian length, the 4-byte mask key, the payload
 * XORed with the key.  Server frames are the same without mask.
 */
#include "support/wsc.h"
#include "support/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* RFC 6455 §1.3: the GUID appended to the key before hashing. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* An upgrade answer longer than this is not a WebSocket server's (lws sends ~200 bytes). */
#define MAX_HANDSHAKE 8192
/* Bytes read per read(2) at least: a catch-up chunk is ~256 KiB, so reads of 64 KiB keep the
 * syscalls few without making 10,000 idle connections hold much. */
#define READ_CHUNK (64u * 1024u)
/* Bytes an idle connection's rx starts with (the welcome is ~150 bytes). */
#define RX_INITIAL 2048u
/* Grow rx before a read when less than this is free (a read of a few bytes is a waste). */
#define RX_MIN_FREE 1024u
/* Bytes one wsc_io reads at most: four catch-up chunks; the caller polls again for more. */
#define READ_BUDGET (1024u * 1024u)
/* RFC 6455 §5.5: control frames carry at most 125 bytes. */
#define MAX_CONTROL 125u
/* Largest frame header a client writes: 2 + 8 (length) + 4 (mask). */
#define MAX_HEADER 14u

enum { ST_HANDSHAKE, ST_OPEN, ST_CLOSED, ST_FAILED };

struct wsc_s {
  int fd;
  int state;
  int timeout_ms;
  char accept[32];  /* the Sec-WebSocket-Accept we expect */
  char proto[64];   /* the subprotocol we asked for ("" none) */
  uint8_t *rx;
  size_t rx_pos, rx_len, rx_cap;
  int rx_eof;       /* read returned 0 */
  int rx_errno;     /* read failed with this */
  uint8_t *frag;
  size_t frag_len, frag_cap;
  int frag_op;      /* opcode of the message being gathered, 0 when none */
  int frag_ready;   /* the last message returned was frag: reset it at the next call */
  uint8_t *tx;
  size_t tx_pos, tx_len, tx_cap;
  int sent_close;
  int close_code;
  uint64_t mask_rng;
  psl_buf_t enc;
  tls_conn_t *tls; /* wss: every byte goes through it */
  char err[200];
};

/* send(2) / recv(2), through TLS when the connection has it. */
static ssize_t io_send(wsc_t *c, const void *p, size_t n) {
  return c->tls ? tls_conn_send(c->tls, p, n) : send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t io_recv(wsc_t *c, void *p, size_t n) {
  return c->tls ? tls_conn_recv(c->tls, p, n) : recv(c->fd, p, n, 0);
}

static void set_err(wsc_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(wsc_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept; libsodium has none. */

static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
  uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++)
    w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6;
    }
    uint32_t t = rol32(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rol32(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

void wsc_sha1(const void *data, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  const uint8_t *p = data;
  uint8_t last[128];
  size_t full = len / 64 * 64, rest = len - full, n;
  uint64_t bits = (uint64_t)len * 8;

  for (size_t i = 0; i < full; i += 64)
    sha1_block(h, p + i);
  memset(last, 0, sizeof last);
  memcpy(last, p + full, rest);
  last[rest] = 0x80;
  n = rest + 1 + 8 <= 64 ? 64 : 128;
  for (int i = 0; i < 8; i++)
    last[n - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t i = 0; i < n; i += 64)
    sha1_block(h, last + i);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(h[i] >> 8);
    out[4 * i + 3] = (uint8_t)h[i];
  }
}

size_t wsc_base64(const uint8_t *in, size_t len, char *out, size_t outlen) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t need = (len + 2) / 3 * 4, o = 0;
  if (outlen < need + 1)
    return 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len)
      v |= in[i + 2];
    out[o++] = tab[(v >> 18) & 63];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? tab[v & 63] : '=';
  }
  out[o] = '\0';
  return o;
}

/* ---- Buffers. */

static int grow(uint8_t **buf, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : RX_INITIAL;
  while (n < need)
    n *= 2;
  uint8_t *p = realloc(*buf, n);
  if (!p)
    return PSL_ENOMEM;
  *buf = p;
  *cap = n;
  return 0;
}

static uint64_t next_rand(wsc_t *c) {
  uint64_t x = c->mask_rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  c->mask_rng = x;
  return x;
}

static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4]) {
  uint64_t k8;
  uint8_t kb[8];
  size_t i = 0;
  for (int j = 0; j < 8; j++)
    kb[j] = key[j & 3];
  memcpy(&k8, kb, 8);
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= k8;
    memcpy(dst + i, &v, 8);
  }
  for (; i < n; i++)
    dst[i] = src[i] ^ key[i & 3];
}

/* Append a frame header (with a fresh mask key, returned in key) announcing `announced`. */
static int queue_header(wsc_t *c, int fin, int opcode, uint64_t announced, uint8_t key[4]) {
  uint8_t h[MAX_HEADER];
  size_t n = 0;
  uint64_t r = next_rand(c);
  h[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
  if (announced < 126) {
    h[n++] = (uint8_t)(0x80 | announced);
  } else if (announced <= 0xffff) {
    h[n++] = 0x80 | 126;
    h[n++] = (uint8_t)(announced >> 8);
    h[n++] = (uint8_t)announced;
  } else {
    h[n++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      h[n++] = (uint8_t)(announced >> (8 * i));
  }
  memcpy(key, &r, 4);
  memcpy(h + n, key, 4);
  n += 4;
  if (grow(&c->tx, &c->tx_cap, c->tx_len + n))
    return PSL_ENOMEM;
  memcpy(c->tx + c->tx_len, h, n);
  c->tx_len += n;
  return 0;
}

static int queue_payload(wsc_t *c, const void *p, size_t n, const uint8_t key[4]) {
  if (grow(&c->tx, &c->tx_cap, c->tx_len + n))
    return PSL_ENOMEM;
  mask_copy(c->tx + c->tx_len, p, n, key);
  c->tx_len += n;
  return 0;
}

static void tx_compact(wsc_t *c) {
  if (c->tx_pos == c->tx_len) {
    c->tx_pos = c->tx_len = 0;
  } else if (c->tx_pos > c->tx_cap / 2) {
    memmove(c->tx, c->tx + c->tx_pos, c->tx_len - c->tx_pos);
    c->tx_len -= c->tx_pos;
    c->tx_pos = 0;
  }
}

int wsc_queue_frame(wsc_t *c, int opcode, const void *payload, size_t len) {
  uint8_t key[4];
  int r;
  tx_compact(c);
  if ((r = queue_header(c, 1, opcode, len, key)) != 0)
    return r;
  return queue_payload(c, payload, len, key);
}

int wsc_queue_msg(wsc_t *c, const psl_msg_t *msg) {
  int r;
  psl_buf_reset(&c->enc);
  if ((r = psl_msg_encode(&c->enc, msg)) != 0) {
    set_err(c, "psl_msg_encode: %s", psl_err_name(r));
    return r;
  }
  return wsc_queue_frame(c, WSC_OP_BINARY, psl_buf_data(&c->enc), c->enc.len);
}

size_t wsc_pending(const wsc_t *c) { return c->tx_len - c->tx_pos; }
int wsc_fd(const wsc_t *c) { return c->fd; }
int wsc_is_open(const wsc_t *c) { return c->state == ST_OPEN; }
const char *wsc_error(const wsc_t *c) { return c ? c->err : "no connection"; }
int wsc_close_code(const wsc_t *c) { return c->close_code; }

/* ---- Socket I/O. */

int wsc_flush_nb(wsc_t *c) {
  while (c->tx_pos < c->tx_len) {
    ssize_t n = io_send(c, c->tx + c->tx_pos, c->tx_len - c->tx_pos);
    if (n > 0) {
      c->tx_pos += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN))
      return 0;
    set_err(c, "send: %s", n < 0 ? strerror(errno) : "0 bytes");
    return PSL_EIO;
  }
  tx_compact(c);
  return 0;
}

/* Read what the socket has, up to READ_BUDGET per call (the caller polls again for more:
 * one fast server must not make one connection's buffer grow without bound). */
static int read_some(wsc_t *c) {
  size_t budget = READ_BUDGET;
  if (c->rx_pos > 0) {
    memmove(c->rx, c->rx + c->rx_pos, c->rx_len - c->rx_pos);
    c->rx_len -= c->rx_pos;
    c->rx_pos = 0;
  }
  while (budget > 0 && !c->rx_eof && !c->rx_errno) {
    if (c->rx_cap - c->rx_len < RX_MIN_FREE) {
      size_t step = c->rx_cap < RX_INITIAL ? RX_INITIAL
                    : c->rx_cap < READ_CHUNK ? c->rx_cap
                                             : READ_CHUNK;
      if (grow(&c->rx, &c->rx_cap, c->rx_len + step))
        return PSL_ENOMEM;
    }
    size_t room = c->rx_cap - c->rx_len;
    ssize_t n = io_recv(c, c->rx + c->rx_len, room < budget ? room : budget);
    if (n > 0) {
      c->rx_len += (size_t)n;
      budget -= (size_t)n; /* n <= what was asked, which is <= budget */
      if ((size_t)n < room)
        break; /* the socket is drained for now; the next poll says when there is more */
      continue;
    }
    if (n == 0) {
      c->rx_eof = 1;
      break;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)
      c->rx_errno = errno;
    break;
  }
  return 0;
}

int wsc_io(wsc_t *c) {
  int r = read_some(c);
  if (r)
    return r;
  if ((r = wsc_flush_nb(c)) != 0 && !c->rx_errno)
    return r;
  if (c->rx_errno) {
    set_err(c, "recv: %s", strerror(c->rx_errno));
    return PSL_EIO;
  }
  return c->rx_eof ? PSL_ECLOSED : 0;
}

/* ---- Handshake. */

static const char *find_crlfcrlf(const uint8_t *p, size_t n) {
  for (size_t i = 0; i + 4 <= n; i++)
    if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
      return (const char *)p + i;
  return NULL;
}

/* The value of header `name` in the NUL-terminated head, trimmed, into out. */
static int header_value(const char *head, const char *name, char *out, size_t outlen) {
  size_t nl = strlen(name);
  for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
    const char *h = line + 2;
    if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
      const char *v = h + nl + 1, *e = strstr(v, "\r\n");
      while (*v == ' ' || *v == '\t')
        v++;
      if (!e)
        e = v + strlen(v);
      while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
      size_t n = (size_t)(e - v) < outlen - 1 ? (size_t)(e - v) : outlen - 1;
      memcpy(out, v, n);
      out[n] = '\0';
      return 1;
    }
  }
  return 0;
}

static int handshake_step(wsc_t *c) {
  char head[MAX_HANDSHAKE + 1], v[256];
  size_t avail = c->rx_len - c->rx_pos;
  const char *end = find_crlfcrlf(c->rx + c->rx_pos, avail);
  if (!end) {
    if (avail > MAX_HANDSHAKE) {
      set_err(c, "upgrade answer longer than %u bytes", MAX_HANDSHAKE);
      c->state = ST_FAILED;
      return PSL_EINVALID;
    }
    if (c->rx_errno || c->rx_eof) {
      set_err(c, "connection %s during the upgrade (%zu bytes: %.*s)",
              c->rx_errno ? strerror(c->rx_errno) : "closed", avail,
              (int)(avail < 120 ? avail : 120), (const char *)c->rx + c->rx_pos);
      c->state = ST_FAILED;
      return c->rx_errno ? PSL_EIO : PSL_ECLOSED;
    }
    return PSL_EAGAIN;
  }
  size_t hl = (size_t)(end - (const char *)(c->rx + c->rx_pos)) + 2;
  if (hl > MAX_HANDSHAKE) {
    set_err(c, "upgrade answer too long");
    c->state = ST_FAILED;
    return PSL_EINVALID;
  }
  memcpy(head, c->rx + c->rx_pos, hl);
  head[hl] = '\0';
  c->rx_pos += hl + 2;
  c->state = ST_FAILED;
  if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
    char *eol = strstr(head, "\r\n");
    if (eol)
      *eol = '\0';
    set_err(c, "upgrade answered \"%.120s\", not 101", head);
    return PSL_EINVALID;
  }
  if (!header_value(head, "Upgrade", v, sizeof v) || strcasecmp(v, "websocket") != 0) {
    set_err(c, "101 without Upgrade: websocket");
    return PSL_EINVALID;
  }
  if (!header_value(head, "Connection", v, sizeof v) || !strcasestr(v, "upgrade")) {
    set_err(c, "101 without Connection: Upgrade");
    return PSL_EINVALID;
  }
  if (!header_value(head, "Sec-WebSocket-Accept", v, sizeof v) || strcmp(v, c->accept) != 0) {
    set_err(c, "Sec-WebSocket-Accept is \"%.60s\", expected \"%s\"", v, c->accept);
    return PSL_EINVALID;
  }
  if (c->proto[0] && (!header_value(head, "Sec-WebSocket-Protocol", v, sizeof v) ||
                      strcmp(v, c->proto) != 0)) {
    set_err(c, "101 did not select subprotocol %s", c->proto);
    return PSL_EINVALID;
  }
  c->state = ST_OPEN;
  return 0;
}

/* ---- Frames received. */

static int on_close_frame(wsc_t *c, const uint8_t *p, size_t n) {
  c->close_code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
  if (!c->sent_close) {
    uint8_t code[2] = {p && n >= 2 ? p[0] : 0x03, p && n >= 2 ? p[1] : 0xe8};
    c->sent_close = 1;
    wsc_queue_frame(c, WSC_OP_CLOSE, code, 2);
    wsc_flush_nb(c);
  }
  c->state = ST_CLOSED;
  set_err(c, "closed by the server (code %d%s%.*s)", c->close_code, n > 2 ? ": " : "",
          n > 2 ? (int)(n - 2) : 0, n > 2 ? (const char *)p + 2 : "");
  return PSL_ECLOSED;
}

/* Add a fragment to the message being gathered; the last one completes it. */
static int gather(wsc_t *c, int fin, const uint8_t *p, size_t n, wsc_frame_t *f, int *done) {
  if (grow(&c->frag, &c->frag_cap, c->frag_len + n + 1))
    return PSL_ENOMEM;
  memcpy(c->frag + c->frag_len, p, n);
  c->frag_len += n;
  if (fin) {
    f->opcode = c->frag_op;
    f->data = c->frag;
    f->len = c->frag_len;
    c->frag_op = 0;
    c->frag_ready = 1;
    *done = 1;
  }
  return 0;
}

/* Parse one frame at rx_pos.  0: consumed (if it completed a data message, *f is set and
 * *done = 1); PSL_EAGAIN: not all there yet. */
static int parse_frame(wsc_t *c, wsc_frame_t *f, int *done) {
  const uint8_t *p = c->rx + c->rx_pos;
  size_t avail = c->rx_len - c->rx_pos, hl = 2;
  uint64_t len;
  if (avail < 2)
    return PSL_EAGAIN;
  int fin = p[0] & 0x80, op = p[0] & 0x0f;
  if (p[0] & 0x70) {
    set_err(c, "server frame with RSV bits 0x%02x (no extension was negotiated)", p[0] & 0x70);
    return PSL_EINVALID;
  }
  if (p[1] & 0x80) {
    set_err(c, "server frame is masked (RFC 6455 §5.1 forbids it)");
    return PSL_EINVALID;
  }
  len = p[1] & 0x7f;
  if (len == 126) {
    if (avail < 4)
      return PSL_EAGAIN;
    len = (uint64_t)p[2] << 8 | p[3];
    hl = 4;
  } else if (len == 127) {
    if (avail < 10)
      return PSL_EAGAIN;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | p[2 + i];
    hl = 10;
  }
  if (op >= 0x8 && (len > MAX_CONTROL || !fin)) {
    set_err(c, "control frame 0x%x of %llu bytes, fin %d", op, (unsigned long long)len, !!fin);
    return PSL_EINVALID;
  }
  if (len > WSC_MAX_MESSAGE || (op == WSC_OP_CONT && c->frag_len + len > WSC_MAX_MESSAGE)) {
    set_err(c, "server message of %llu bytes over WSC_MAX_MESSAGE", (unsigned long long)len);
    return PSL_ETOO_BIG;
  }
  if (avail < hl + len) {
    if (grow(&c->rx, &c->rx_cap, c->rx_len + (hl + len - avail)))
      return PSL_ENOMEM;
    return PSL_EAGAIN;
  }
  const uint8_t *pl = p + hl;
  c->rx_pos += hl + (size_t)len;
  switch (op) {
  case WSC_OP_PING:
    wsc_queue_frame(c, WSC_OP_PONG, pl, (size_t)len);
    wsc_flush_nb(c);
    return 0;
  case WSC_OP_PONG:
    return 0;
  case WSC_OP_CLOSE:
    return on_close_frame(c, pl, (size_t)len);
  case WSC_OP_TEXT:
  case WSC_OP_BINARY:
    if (c->frag_op) {
      set_err(c, "new data frame while a fragmented message is open");
      return PSL_EINVALID;
    }
    if (fin) {
      f->opcode = op;
      f->data = pl;
      f->len = (size_t)len;
      *done = 1;
      return 0;
    }
    c->frag_op = op;
    c->frag_len = 0;
    return gather(c, fin, pl, (size_t)len, f, done);
  case WSC_OP_CONT:
    if (!c->frag_op) {
      set_err(c, "continuation frame without a message");
      return PSL_EINVALID;
    }
    return gather(c, fin, pl, (size_t)len, f, done);
  default:
    set_err(c, "unknown opcode 0x%x", op);
    return PSL_EINVALID;
  }
}

int wsc_next(wsc_t *c, wsc_frame_t *f) {
  int r;
  if (c->frag_ready) {
    c->frag_ready = 0;
    c->frag_len = 0;
  }
  if (c->state == ST_HANDSHAKE && (r = handshake_step(c)) != 0)
    return r;
  for (;;) {
    int done = 0;
    if (c->state == ST_CLOSED)
      return PSL_ECLOSED;
    if (c->state == ST_FAILED)
      return PSL_EINVALID;
    r = parse_frame(c, f, &done);
    if (r == PSL_EAGAIN) {
      if (c->rx_errno) {
        set_err(c, "recv: %s", strerror(c->rx_errno));
        return PSL_EIO;
      }
      if (c->rx_eof) {
        set_err(c, "connection closed by the server without a close frame");
        c->state = ST_CLOSED;
        return PSL_ECLOSED;
      }
      return PSL_EAGAIN;
    }
    if (r == PSL_ECLOSED)
      return r;
    if (r) {
      c->state = ST_FAILED;
      return r;
    }
    if (done)
      return 0;
  }
}

/* ---- Set-up and tear-down. */

int wsc_start(wsc_t **out, uint16_t port, const wsc_opts_t *opts) {
  const char *path = opts && opts->path ? opts->path : "/sync";
  const char *proto = opts && opts->subprotocol ? opts->subprotocol : PSL_SUBPROTOCOL;
  uint8_t nonce[16], digest[20];
  char key[32], cat[96], req[512], pline[128] = "";
  struct sockaddr_in sa;
  int one = 1, r;
  wsc_t *c = calloc(1, sizeof *c);

  *out = NULL;
  if (!c)
    return PSL_ENOMEM;
  c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
  c->mask_rng = (uint64_t)now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)c ^
                ((uint64_t)getpid() << 32) ^ 1;
  psl_buf_init(&c->enc, 0);
  snprintf(c->proto, sizeof c->proto, "%s", proto);
  for (int i = 0; i < 16; i += 8) {
    uint64_t x = next_rand(c);
    memcpy(nonce + i, &x, 8);
  }
  wsc_base64(nonce, sizeof nonce, key, sizeof key);
  snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
  wsc_sha1(cat, strlen(cat), digest);
  wsc_base64(digest, sizeof digest, c->accept, sizeof c->accept);

  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    r = psl_err_from_errno(errno);
    free(c);
    return r;
  }
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
    r = psl_err_from_errno(errno);
    close(c->fd);
    free(c);
    return r ? r : PSL_EIO;
  }
  if (proto[0])
    snprintf(pline, sizeof pline, "Sec-WebSocket-Protocol: %s\r\n", proto);
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s\r\n",
                   path, port, key, pline);
  if (grow(&c->tx, &c->tx_cap, (size_t)n)) {
    wsc_free(c);
    return PSL_ENOMEM;
  }
  memcpy(c->tx, req, (size_t)n);
  c->tx_len = (size_t)n;
  c->state = ST_HANDSHAKE;
  *out = c;
  return 0;
}

void wsc_free(wsc_t *c) {
  if (!c)
    return;
  tls_conn_free(c->tls);
  if (c->fd >= 0)
    close(c->fd);
  free(c->rx);
  free(c->frag);
  free(c->tx);
  psl_buf_free(&c->enc);
  free(c);
}

/* ---- Blocking layer. */

/* Wait for the socket (POLLIN, plus POLLOUT while something is queued) until deadline. */
static int wait_io(wsc_t *c, int64_t deadline) {
  struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
  if (c->tls && tls_conn_pending(c->tls))
    return 0; /* decrypted already: the socket will not announce it */
  int64_t left = deadline - now_ms();
  if (left <= 0)
    return PSL_EAGAIN;
  if (wsc_pending(c))
    pfd.events |= POLLOUT;
  int n = poll(&pfd, 1, (int)left);
  if (n < 0 && errno != EINTR)
    return PSL_EIO;
  return n > 0 ? 0 : PSL_EAGAIN;
}

static int flush_blocking(wsc_t *c) {
  int64_t deadline = now_ms() + c->timeout_ms;
  for (;;) {
    int r = wsc_flush_nb(c);
    if (r || !wsc_pending(c))
      return r;
    struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      set_err(c, "send: the server took nothing for %d ms", c->timeout_ms);
      return PSL_EAGAIN;
    }
    poll(&pfd, 1, (int)left);
  }
}

/* wss: wait for the TCP connect, then the TLS handshake (the upgrade request waits in tx). */
static int tls_start(wsc_t *c, const wsc_opts_t *opts, int64_t deadline) {
  struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
  int64_t left = deadline - now_ms();
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
    set_err(c, "TCP connect: no answer within %d ms", c->timeout_ms);
    return PSL_EAGAIN;
  }
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
    set_err(c, "TCP connect: %s", strerror(soerr ? soerr : errno));
    return PSL_EIO;
  }
  int r = tls_conn_new(&c->tls, c->fd, opts->tls_ca, c->err, sizeof c->err);
  if (r == 0) {
    left = deadline - now_ms();
    r = tls_conn_handshake(c->tls, left > 0 ? (int)left : 1, c->err, sizeof c->err);
  }
  return r;
}

int wsc_connect(wsc_t **out, uint16_t port, const wsc_opts_t *opts, char *err, size_t errlen) {
  wsc_t *c;
  int r = wsc_start(&c, port, opts);
  *out = NULL;
  if (r) {
    if (err)
      snprintf(err, errlen, "socket/connect: %s", psl_err_name(r));
    return r;
  }
  int64_t deadline = now_ms() + c->timeout_ms;
  if (opts && opts->tls && (r = tls_start(c, opts, deadline)) != 0)
    goto fail;
  for (;;) {
    r = wsc_io(c);
    if (c->state == ST_HANDSHAKE) {
      int h = handshake_step(c);
      if (h == 0)
        break;
      if (h != PSL_EAGAIN) {
        r = h;
        goto fail;
      }
    }
    if (r && r != PSL_ECLOSED)
      goto fail_io;
    if ((r = wait_io(c, deadline)) != 0) {
      set_err(c, "no upgrade answer within %d ms", c->timeout_ms);
      goto fail;
    }
  }
  *out = c;
  return 0;
fail_io:
  if (!c->err[0])
    set_err(c, "connect: %s", psl_err_name(r));
fail:
  if (err)
    snprintf(err, errlen, "%s", c->err);
  wsc_free(c);
  return r;
}

int wsc_send_frame(wsc_t *c, int opcode, const void *payload, size_t len) {
  int r = wsc_queue_frame(c, opcode, payload, len);
  return r ? r : flush_blocking(c);
}

int wsc_send_msg(wsc_t *c, const psl_msg_t *msg) {
  int r = wsc_queue_msg(c, msg);
  return r ? r : flush_blocking(c);
}

int wsc_send_raw(wsc_t *c, const void *p, size_t n) {
  tx_compact(c);
  if (grow(&c->tx, &c->tx_cap, c->tx_len + n))
    return PSL_ENOMEM;
  memcpy(c->tx + c->tx_len, p, n);
  c->tx_len += n;
  return flush_blocking(c);
}

int wsc_send_partial(wsc_t *c, int opcode, uint64_t announced, const void *p, size_t n) {
  uint8_t key[4];
  int r;
  tx_compact(c);
  if ((r = queue_header(c, 1, opcode, announced, key)) != 0)
    return r;
  if ((r = queue_payload(c, p, n < announced ? n : (size_t)announced, key)) != 0)
    return r;
  return flush_blocking(c);
}

int wsc_recv(wsc_t *c, int timeout_ms, wsc_frame_t *f) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int r = wsc_next(c, f);
    if (r != PSL_EAGAIN)
      return r;
    if ((r = wait_io(c, deadline)) != 0)
      return r;
    r = wsc_io(c);
    if (r == PSL_ENOMEM)
      return r;
    /* PSL_ECLOSED / PSL_EIO: what was read before still goes out through wsc_next. */
  }
}

int wsc_recv_msg(wsc_t *c, int timeout_ms, psl_msg_t *msg, psl_diag_t *diag) {
  wsc_frame_t f;
  psl_diag_t d;
  int r = wsc_recv(c, timeout_ms, &f);
  memset(msg, 0, sizeof *msg);
  if (r)
    return r;
  if (f.opcode != WSC_OP_BINARY) {
    set_err(c, "server sent a text frame (%zu bytes)", f.len);
    if (diag)
      snprintf(diag->msg, sizeof diag->msg, "text frame");
    return PSL_EINVALID;
  }
  r = psl_msg_decode(f.data, f.len, msg, diag ? diag : &d);
  if (r)
    set_err(c, "server frame of %zu bytes does not decode: %s", f.len,
            diag ? diag->msg : d.msg);
  return r;
}

int wsc_wait_closed(wsc_t *c, int timeout_ms, int *skipped) {
  int64_t deadline = now_ms() + timeout_ms;
  wsc_frame_t f;
  if (skipped)
    *skipped = 0;
  for (;;) {
    int64_t left = deadline - now_ms();
    int r = wsc_recv(c, left > 0 ? (int)left : 0, &f);
    if (r == 0) {
      if (skipped)
        (*skipped)++;
      continue;
    }
    if (r == PSL_EAGAIN)
      return r;
    return 0; /* closed, reset or a framing error: the connection is over either way */
  }
}

void wsc_close(wsc_t *c) {
  static const uint8_t normal[2] = {0x03, 0xe8}; /* 1000 */
  if (!c)
    return;
  if (c->state == ST_OPEN && !c->sent_close) {
    c->sent_close = 1;
    c->timeout_ms = 1000;
    if (wsc_send_frame(c, WSC_OP_CLOSE, normal, 2) == 0)
      wsc_wait_closed(c, 1000, NULL);
  }
  wsc_free(c);
}

void wsc_cut(wsc_t *c) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  if (!c)
    return;
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  wsc_free(c);
}
