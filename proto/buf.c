/*
 * buf.c — psl_buf_t, the growable output buffer every encoder appends to.
 *
 * Layout of the one allocation:   [ headroom ][ data: len bytes ][ free: cap - len ]
 *                                 ^ base      ^ psl_buf_data()
 * The headroom stays free for the transport (libwebsockets writes its frame header in the
 * LWS_PRE bytes before what lws_write() sends), so a frame is never copied to prepend it.
 * Nothing is allocated until the first append.
 */
#include <stdlib.h>

#include "psl_proto.h"

/* First allocation: a small message (ack, caught_up, a pushed of a few results) fits. */
#define BUF_MIN_CAP 256u

void psl_buf_init(psl_buf_t *b, size_t headroom) {
  b->base = NULL;
  b->headroom = headroom;
  b->len = 0;
  b->cap = 0;
}

void psl_buf_free(psl_buf_t *b) {
  if (!b)
    return;
  free(b->base);
  b->base = NULL;
  b->len = 0;
  b->cap = 0;
}

void psl_buf_reset(psl_buf_t *b) { b->len = 0; }

int psl_buf_reserve(psl_buf_t *b, size_t more) {
  if (b->base && b->cap - b->len >= more)
    return 0;
  if (more > SIZE_MAX / 2 - b->len - b->headroom)
    return PSL_ENOMEM;
  size_t need = b->len + more;
  size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
  while (cap < need)
    cap *= 2; /* doubling: appends cost amortised O(1) */
  uint8_t *p = realloc(b->base, b->headroom + cap);
  if (!p)
    return PSL_ENOMEM;
  b->base = p;
  b->cap = cap;
  return 0;
}

int psl_buf_append(psl_buf_t *b, const void *p, size_t n) {
  int rc = psl_buf_reserve(b, n);
  if (rc)
    return rc;
  if (n)
    memcpy(b->base + b->headroom + b->len, p, n);
  b->len += n;
  return 0;
}
