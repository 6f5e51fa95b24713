/*
 * mpack_write.c — the MessagePack writer of mpack.h: shortest forms, sticky error.
 *
 * Shortest forms matter because the canonical stored event (PROTOCOL.md) is hashed: two
 * encoders of the same event must produce the same bytes, so each value has exactly one
 * encoding here:
 *   uint  0..127 fixint 0xxxxxxx; then cc (8 bit), cd (16), ce (32), cf (64)
 *   int   -32..-1 fixint 111xxxxx; then d0 (8 bit), d1 (16), d2 (32), d3 (64); a value
 *         >= 0 is always written as a uint
 *   str   fixstr 101xxxxx (< 32 bytes); then d9 (8 bit length), da (16), db (32)
 *   bin   c4 (8 bit length), c5 (16), c6 (32)
 *   map   fixmap 1000xxxx (< 16); then de (16 bit count), df (32)
 *   array fixarray 1001xxxx (< 16); then dc (16 bit count), dd (32)
 * All multi-byte numbers are big-endian.
 */
#include "mpack.h"

void psl__w_raw(psl__wr_t *w, const void *p, size_t n) {
  if (w->err)
    return;
  w->err = psl_buf_append(w->b, p, n);
}

/* A type byte followed by an n-byte big-endian field, stored in place: a canonical event is
 * ~25 such heads, and a call to memcpy for each 1 to 9 bytes was a tenth of the log
 * writer's time (measured with perf on bench-log's batched append). */
static void w_head(psl__wr_t *w, uint8_t type, uint64_t v, size_t n) {
  psl_buf_t *b = w->b;
  if (w->err)
    return;
  if (!b->base || b->cap - b->len < 1 + n) {
    if ((w->err = psl_buf_reserve(b, 1 + n)) != 0)
      return;
  }
  uint8_t *h = psl_buf_data(b) + b->len;
  h[0] = type;
  for (size_t k = 0; k < n; k++)
    h[1 + k] = (uint8_t)(v >> (8 * (n - 1 - k)));
  b->len += 1 + n;
}

/* Header of a family with a fix form below fixmax and 8/16/32-bit forms at t8, t8+1, t8+2
 * (t8 == 0: the family has no 8-bit form). */
static void w_sized(psl__wr_t *w, uint8_t fixbase, uint32_t fixmax, uint8_t t8, uint8_t t16,
                    uint64_t n) {
  if (n < fixmax)
    w_head(w, (uint8_t)(fixbase | n), 0, 0);
  else if (t8 && n <= UINT8_MAX)
    w_head(w, t8, n, 1);
  else if (n <= UINT16_MAX)
    w_head(w, t16, n, 2);
  else
    w_head(w, (uint8_t)(t16 + 1), n, 4);
}

void psl__w_map(psl__wr_t *w, uint32_t n) { w_sized(w, 0x80, 16, 0, 0xde, n); }

void psl__w_array(psl__wr_t *w, uint32_t n) { w_sized(w, 0x90, 16, 0, 0xdc, n); }

void psl__w_uint(psl__wr_t *w, uint64_t v) {
  if (v <= 0x7f)
    w_head(w, (uint8_t)v, 0, 0);
  else if (v <= UINT8_MAX)
    w_head(w, 0xcc, v, 1);
  else if (v <= UINT16_MAX)
    w_head(w, 0xcd, v, 2);
  else if (v <= UINT32_MAX)
    w_head(w, 0xce, v, 4);
  else
    w_head(w, 0xcf, v, 8);
}

void psl__w_int(psl__wr_t *w, int64_t v) {
  if (v >= 0) {
    psl__w_uint(w, (uint64_t)v);
    return;
  }
  uint64_t u = (uint64_t)v; /* two's complement; w_head takes the low bytes */
  if (v >= -32)
    w_head(w, (uint8_t)(u & 0xff), 0, 0);
  else if (v >= INT8_MIN)
    w_head(w, 0xd0, u, 1);
  else if (v >= INT16_MIN)
    w_head(w, 0xd1, u, 2);
  else if (v >= INT32_MIN)
    w_head(w, 0xd2, u, 4);
  else
    w_head(w, 0xd3, u, 8);
}

void psl__w_str(psl__wr_t *w, const char *s, size_t len) {
  if (len > UINT32_MAX) {
    w->err = w->err ? w->err : PSL_ETOO_BIG;
    return;
  }
  w_sized(w, 0xa0, 32, 0xd9, 0xda, len);
  if (len)
    psl__w_raw(w, s, len);
}

void psl__w_bin(psl__wr_t *w, const void *p, size_t len) {
  if (len > UINT32_MAX) {
    w->err = w->err ? w->err : PSL_ETOO_BIG;
    return;
  }
  if (len <= UINT8_MAX)
    w_head(w, 0xc4, len, 1);
  else if (len <= UINT16_MAX)
    w_head(w, 0xc5, len, 2);
  else
    w_head(w, 0xc6, len, 4);
  if (len)
    psl__w_raw(w, p, len);
}

void psl__w_bool(psl__wr_t *w, int v) { w_head(w, v ? 0xc3 : 0xc2, 0, 0); }
