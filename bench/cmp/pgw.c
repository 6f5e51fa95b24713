/*
 * pgw.c — PostgreSQL protocol 3.0 messages (see pgw.h).
 */
#include "pgw.h"

#include <stdio.h>
#include <string.h>

#define PROTOCOL_3_0 196608u /* 3 << 16 */

static void put(psl_buf_t *b, const void *p, size_t n) {
  (void)psl_buf_append(b, p, n); /* ENOMEM: the message comes out short, the server says so */
}
static void put8(psl_buf_t *b, uint8_t v) { put(b, &v, 1); }
static void put16(psl_buf_t *b, uint16_t v) {
  uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  put(b, x, 2);
}
static void put32(psl_buf_t *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put(b, x, 4);
}
static void putz(psl_buf_t *b, const char *s) { put(b, s, strlen(s) + 1); }

/* Begin a message of this type (0: the startup message, which has none): returns where its
 * length goes, patched by end(). */
static size_t begin(psl_buf_t *b, char type) {
  if (type)
    put8(b, (uint8_t)type);
  size_t at = b->len;
  put32(b, 0);
  return at;
}

static void end(psl_buf_t *b, size_t at) {
  if (at + 4 > b->len)
    return;
  uint32_t len = (uint32_t)(b->len - at);
  uint8_t *p = psl_buf_data(b) + at;
  p[0] = (uint8_t)(len >> 24);
  p[1] = (uint8_t)(len >> 16);
  p[2] = (uint8_t)(len >> 8);
  p[3] = (uint8_t)len;
}

void pgw_startup(psl_buf_t *b, const char *user, const char *db) {
  size_t at = begin(b, 0);
  put32(b, PROTOCOL_3_0);
  putz(b, "user");
  putz(b, user);
  putz(b, "database");
  putz(b, db);
  put8(b, 0);
  end(b, at);
}

void pgw_query(psl_buf_t *b, const char *sql) {
  size_t at = begin(b, 'Q');
  putz(b, sql);
  end(b, at);
}

void pgw_parse(psl_buf_t *b, const char *name, const char *sql, unsigned nparams,
               const uint32_t *oids) {
  size_t at = begin(b, 'P');
  putz(b, name);
  putz(b, sql);
  put16(b, (uint16_t)nparams);
  for (unsigned i = 0; i < nparams; i++)
    put32(b, oids[i]);
  end(b, at);
}

void pgw_bind(psl_buf_t *b, const char *stmt, const pgw_param_t *params, unsigned n) {
  size_t at = begin(b, 'B');
  putz(b, "");   /* the unnamed portal */
  putz(b, stmt);
  put16(b, 1);   /* one format code for every parameter: */
  put16(b, 1);   /* binary */
  put16(b, (uint16_t)n);
  for (unsigned i = 0; i < n; i++) {
    put32(b, (uint32_t)params[i].len);
    if (params[i].len > 0)
      put(b, params[i].p, (size_t)params[i].len);
  }
  put16(b, 1); /* one format code for every result column: */
  put16(b, 1); /* binary */
  end(b, at);
}

void pgw_execute(psl_buf_t *b, uint32_t max_rows) {
  size_t at = begin(b, 'E');
  putz(b, "");
  put32(b, max_rows);
  end(b, at);
}

void pgw_sync(psl_buf_t *b) {
  size_t at = begin(b, 'S');
  end(b, at);
}

void pgw_copy_data(psl_buf_t *b, const void *p, size_t n) {
  size_t at = begin(b, 'd');
  put(b, p, n);
  end(b, at);
}

void pgw_copy_done(psl_buf_t *b) {
  size_t at = begin(b, 'c');
  end(b, at);
}

int pgw_next(const uint8_t *p, size_t n, pgw_msg_t *m, size_t *used) {
  if (n < 5)
    return 0;
  uint32_t len = pgw_be32(p + 1);
  if (len < 4 || len > PGW_MAX_MESSAGE)
    return -1;
  if (n < 1 + (size_t)len)
    return 0;
  m->type = (char)p[0];
  m->body = p + 5;
  m->len = len - 4;
  *used = 1 + (size_t)len;
  return 1;
}

int pgw_row(const pgw_msg_t *m, pgw_col_t *cols, int max) {
  const uint8_t *p = m->body, *e = m->body + m->len;
  if (m->type != 'D' || m->len < 2)
    return -1;
  int n = p[0] << 8 | p[1];
  p += 2;
  if (n > max)
    return -1;
  for (int i = 0; i < n; i++) {
    if (e - p < 4)
      return -1;
    int32_t len = (int32_t)pgw_be32(p);
    p += 4;
    if (len > 0 && e - p < len)
      return -1;
    cols[i].p = p;
    cols[i].len = len;
    if (len > 0)
      p += len;
  }
  return n;
}

void pgw_error_text(const pgw_msg_t *m, char *out, size_t outlen) {
  const char *code = "", *msg = "";
  const uint8_t *p = m->body, *e = m->body + m->len;
  while (p < e && *p) {
    char field = (char)*p++;
    const uint8_t *z = memchr(p, 0, (size_t)(e - p));
    if (!z)
      break;
    if (field == 'C')
      code = (const char *)p;
    else if (field == 'M')
      msg = (const char *)p;
    p = z + 1;
  }
  snprintf(out, outlen, "%s %s", code, msg);
}

const char *pgw_tag(const pgw_msg_t *m) {
  if (m->len == 0 || m->body[m->len - 1] != 0)
    return "";
  return (const char *)m->body;
}
