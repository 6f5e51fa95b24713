/*
 * pgw.h — the PostgreSQL frontend/backend protocol, version 3.0, as much as bench-compare
 * needs to speak to postgres itself instead of linking libpq:
 *
 *   startup    int32 len ‖ int32 196608 ‖ "user" 0 name 0 "database" 0 name 0 ‖ 0
 *   any other  type (1 byte) ‖ int32 len (counting itself, not the type) ‖ body
 *   frontend   Q query · P parse · B bind · E execute · S sync · d copy data · c copy done
 *   backend    R auth · S parameter · K key · Z ready (status) · E error · N notice ·
 *              A notification · T row description · D data row · C command complete ·
 *              1 parse / 2 bind complete · n no data · G copy-in response
 *
 * Authentication is trust only (the benchmark's own cluster on loopback); anything else is
 * refused.  Parameters and results travel in binary (integers big-endian).
 */
#ifndef PSL_BENCH_PGW_H
#define PSL_BENCH_PGW_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

/* Type oids of the parameters we send (pg_type.dat). */
#define PGW_INT8 20u
#define PGW_INT4 23u
#define PGW_TEXT 25u
#define PGW_BYTEA 17u
#define PGW_UUID 2950u

void pgw_startup(psl_buf_t *b, const char *user, const char *db);
void pgw_query(psl_buf_t *b, const char *sql);
void pgw_parse(psl_buf_t *b, const char *name, const char *sql, unsigned nparams,
               const uint32_t *oids);

/* One parameter: len bytes at p, binary (len < 0: NULL). */
typedef struct {
  const void *p;
  int32_t len;
} pgw_param_t;

/* Bind the named statement to the unnamed portal, every parameter and result binary. */
void pgw_bind(psl_buf_t *b, const char *stmt, const pgw_param_t *params, unsigned n);
void pgw_execute(psl_buf_t *b, uint32_t max_rows); /* 0: every row */
void pgw_sync(psl_buf_t *b);
void pgw_copy_data(psl_buf_t *b, const void *p, size_t n);
void pgw_copy_done(psl_buf_t *b);

/* One backend message. */
typedef struct {
  char type;
  const uint8_t *body;
  size_t len;
} pgw_msg_t;

/* Largest backend message accepted: a page of CMP_PAGE_EVENTS rows comes as one message per
 * row; 16 MiB bounds a broken server's. */
#define PGW_MAX_MESSAGE (16u * 1024u * 1024u)

/* 1: a whole message at p (*used bytes); 0: not yet; -1: too big or malformed. */
int pgw_next(const uint8_t *p, size_t n, pgw_msg_t *m, size_t *used);

typedef struct {
  const uint8_t *p;
  int32_t len; /* -1: NULL */
} pgw_col_t;

/* The columns of a DataRow: their count, or -1 (malformed or more than max). */
int pgw_row(const pgw_msg_t *m, pgw_col_t *cols, int max);
/* "SQLSTATE message" of an ErrorResponse (no data values: the server's own message). */
void pgw_error_text(const pgw_msg_t *m, char *out, size_t outlen);
/* The tag of a CommandComplete ("INSERT 0 1"). */
const char *pgw_tag(const pgw_msg_t *m);

static inline uint64_t pgw_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}
static inline uint32_t pgw_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void pgw_put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

#endif /* PSL_BENCH_PGW_H */
