/*
 * resp.c — RESP2 commands and replies (see resp.h).
 */
#include "resp.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Longest header line we accept ("*<n>\r\n", ":<int>\r\n"): a 64-bit integer and its sign;
 * simple strings and errors ("+OK", "-ERR ...") are read whole whatever their length. */
#define MAX_NUMBER_LINE 24

static void put(psl_buf_t *b, const void *p, size_t n) {
  (void)psl_buf_append(b, p, n); /* ENOMEM: the frame comes out short and the server says so */
}

static void put_header(psl_buf_t *b, char type, uint64_t n) {
  char h[32];
  int k = snprintf(h, sizeof h, "%c%" PRIu64 "\r\n", type, n);
  put(b, h, (size_t)k);
}

void resp_cmd(psl_buf_t *b, unsigned argc) { put_header(b, '*', argc); }

void resp_arg(psl_buf_t *b, const void *p, size_t n) {
  put_header(b, '$', n);
  put(b, p, n);
  put(b, "\r\n", 2);
}

void resp_arg_str(psl_buf_t *b, const char *s) { resp_arg(b, s, strlen(s)); }

void resp_arg_i64(psl_buf_t *b, int64_t v) {
  char s[24];
  int k = snprintf(s, sizeof s, "%" PRId64, v);
  resp_arg(b, s, (size_t)k);
}

/* The line at p (without \r\n): its length in *len, or -1 when no \r\n yet. */
static int line_at(const uint8_t *p, size_t n, size_t *len) {
  const uint8_t *nl = memchr(p, '\n', n);
  if (!nl)
    return -1;
  if (nl == p || nl[-1] != '\r')
    return -2;
  *len = (size_t)(nl - p) - 1;
  return 0;
}

static int parse_i64(const uint8_t *p, size_t n, int64_t *v) {
  int neg = 0;
  uint64_t x = 0;
  if (n == 0 || n > MAX_NUMBER_LINE)
    return -1;
  if (*p == '-') {
    neg = 1;
    p++;
    n--;
  }
  if (n == 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9' || x > (UINT64_MAX - 9) / 10)
      return -1;
    x = x * 10 + (uint64_t)(p[i] - '0');
  }
  if (x > (uint64_t)INT64_MAX)
    return -1;
  *v = neg ? -(int64_t)x : (int64_t)x;
  return 0;
}

int resp_scan(resp_scan_t *sc, const uint8_t *p, size_t n) {
  if (sc->need == 0 && sc->pos == 0)
    sc->need = 1;
  while (sc->need > 0) {
    size_t len;
    int64_t v;
    if (sc->pos >= n)
      return 0;
    int l = line_at(p + sc->pos + 1, n - sc->pos - 1, &len);
    if (l == -1)
      return 0;
    if (l < 0)
      return -1;
    const uint8_t *body = p + sc->pos + 1;
    size_t head = 1 + len + 2;
    switch (p[sc->pos]) {
    case '+': case '-': case ':':
      sc->pos += head;
      sc->need--;
      break;
    case '$':
      if (parse_i64(body, len, &v) || v < -1)
        return -1;
      if (v >= 0) {
        if (n - sc->pos < head + (size_t)v + 2)
          return 0;
        head += (size_t)v + 2;
      }
      sc->pos += head;
      sc->need--;
      break;
    case '*':
      if (parse_i64(body, len, &v) || v < -1)
        return -1;
      sc->pos += head;
      sc->need--;
      if (v > 0)
        sc->need += v;
      break;
    default:
      return -1;
    }
  }
  return 1;
}

/* ---- Reading. */

int resp_peek(const resp_rd_t *r) { return r->p < r->e ? *r->p : 0; }

/* The header line of the next value: its type, its body. */
static int header(resp_rd_t *r, int *type, const uint8_t **body, size_t *len) {
  if (r->p >= r->e)
    return PSL_EINVALID;
  if (line_at(r->p + 1, (size_t)(r->e - r->p - 1), len) != 0)
    return PSL_EINVALID;
  *type = *r->p;
  *body = r->p + 1;
  r->p += 1 + *len + 2;
  return 0;
}

int resp_array(resp_rd_t *r, int64_t *n) {
  int t;
  const uint8_t *b;
  size_t len;
  if (header(r, &t, &b, &len) || t != '*' || parse_i64(b, len, n))
    return PSL_EINVALID;
  return 0;
}

int resp_string(resp_rd_t *r, const uint8_t **s, size_t *n) {
  int t;
  const uint8_t *b;
  size_t len;
  int64_t v;
  if (header(r, &t, &b, &len))
    return PSL_EINVALID;
  if (t == '+' || t == '-') {
    *s = b;
    *n = len;
    return t == '+' ? 0 : PSL_EINVALID;
  }
  if (t != '$' || parse_i64(b, len, &v))
    return PSL_EINVALID;
  if (v < 0) {
    *s = NULL;
    *n = 0;
    return 0;
  }
  if (r->e - r->p < v + 2)
    return PSL_EINVALID;
  *s = r->p;
  *n = (size_t)v;
  r->p += v + 2;
  return 0;
}

int resp_int(resp_rd_t *r, int64_t *v) {
  int t;
  const uint8_t *b;
  size_t len;
  if (header(r, &t, &b, &len) || t != ':' || parse_i64(b, len, v))
    return PSL_EINVALID;
  return 0;
}

int resp_skip(resp_rd_t *r) {
  resp_scan_t sc = {0, 0};
  if (resp_scan(&sc, r->p, (size_t)(r->e - r->p)) != 1)
    return PSL_EINVALID;
  r->p += sc.pos;
  return 0;
}
