/*
 * mpw.c — the tests' hand MessagePack writer (see mpw.h).  Shortest forms, big-endian, as
 * the MessagePack spec lays them out: fix* for small values, then 8/16/32/64-bit forms.
 */
#include "support/mpw.h"

#include <string.h>

void mpw_init(mpw_t *w, psl_buf_t *b) {
  w->b = b;
  w->err = 0;
}

void mpw_raw(mpw_t *w, const void *p, size_t n) {
  int r = psl_buf_append(w->b, p, n);
  if (r && !w->err)
    w->err = r;
}

static void put_be(mpw_t *w, uint8_t tag, uint64_t v, int bytes) {
  uint8_t b[9];
  b[0] = tag;
  for (int i = 0; i < bytes; i++)
    b[1 + i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
  mpw_raw(w, b, 1 + (size_t)bytes);
}

static void put_1(mpw_t *w, uint8_t tag) { mpw_raw(w, &tag, 1); }

void mpw_map(mpw_t *w, uint32_t n) {
  if (n < 16)
    put_1(w, (uint8_t)(0x80 | n));
  else if (n <= 0xffff)
    put_be(w, 0xde, n, 2);
  else
    put_be(w, 0xdf, n, 4);
}

void mpw_array(mpw_t *w, uint32_t n) {
  if (n < 16)
    put_1(w, (uint8_t)(0x90 | n));
  else if (n <= 0xffff)
    put_be(w, 0xdc, n, 2);
  else
    put_be(w, 0xdd, n, 4);
}

void mpw_array32(mpw_t *w, uint32_t n) { put_be(w, 0xdd, n, 4); }

void mpw_strn(mpw_t *w, const char *s, size_t n) {
  if (n < 32)
    put_1(w, (uint8_t)(0xa0 | n));
  else if (n <= 0xff)
    put_be(w, 0xd9, n, 1);
  else if (n <= 0xffff)
    put_be(w, 0xda, n, 2);
  else
    put_be(w, 0xdb, n, 4);
  mpw_raw(w, s, n);
}

void mpw_str(mpw_t *w, const char *s) { mpw_strn(w, s, strlen(s)); }

void mpw_bin(mpw_t *w, const void *p, size_t n) {
  if (n <= 0xff)
    put_be(w, 0xc4, n, 1);
  else if (n <= 0xffff)
    put_be(w, 0xc5, n, 2);
  else
    put_be(w, 0xc6, n, 4);
  mpw_raw(w, p, n);
}

void mpw_uint(mpw_t *w, uint64_t v) {
  if (v < 128)
    put_1(w, (uint8_t)v);
  else if (v <= 0xff)
    put_be(w, 0xcc, v, 1);
  else if (v <= 0xffff)
    put_be(w, 0xcd, v, 2);
  else if (v <= 0xffffffffu)
    put_be(w, 0xce, v, 4);
  else
    put_be(w, 0xcf, v, 8);
}

void mpw_int(mpw_t *w, int64_t v) {
  if (v >= 0)
    mpw_uint(w, (uint64_t)v);
  else if (v >= -32)
    put_1(w, (uint8_t)(int8_t)v);
  else if (v >= INT8_MIN)
    put_be(w, 0xd0, (uint64_t)v & 0xff, 1);
  else if (v >= INT16_MIN)
    put_be(w, 0xd1, (uint64_t)v & 0xffff, 2);
  else if (v >= INT32_MIN)
    put_be(w, 0xd2, (uint64_t)v & 0xffffffffu, 4);
  else
    put_be(w, 0xd3, (uint64_t)v, 8);
}

void mpw_bool(mpw_t *w, int v) { put_1(w, v ? 0xc3 : 0xc2); }
void mpw_nil(mpw_t *w) { put_1(w, 0xc0); }
