/*
 * resp.h — the Redis serialization protocol (RESP2), as much as bench-compare needs to speak
 * to redis-server itself instead of linking a client library:
 *
 *   command   *<argc>\r\n then per argument $<len>\r\n<bytes>\r\n
 *   replies   +simple\r\n  -error\r\n  :integer\r\n  $<len>\r\n<bytes>\r\n ($-1: nil)
 *             *<n>\r\n followed by n replies (*-1: nil)
 *
 * Replies are found whole before they are read: resp_scan() walks the input as it arrives and
 * resumes where it stopped, so a 400 KB XRANGE page read in pieces is scanned once.
 */
#ifndef PSL_BENCH_RESP_H
#define PSL_BENCH_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

/* Start a command of argc arguments, then add each argument. */
void resp_cmd(psl_buf_t *b, unsigned argc);
void resp_arg(psl_buf_t *b, const void *p, size_t n);
void resp_arg_str(psl_buf_t *b, const char *s);
void resp_arg_i64(psl_buf_t *b, int64_t v);

/* Where the scan of the next reply stands; zero it to start (and after each reply). */
typedef struct {
  size_t pos;   /* bytes scanned */
  int64_t need; /* values still to scan, 0 before the first */
} resp_scan_t;

/* 1: a whole reply of sc->pos bytes is at p; 0: not yet (call again with more bytes, the same
 * start); -1: not RESP. */
int resp_scan(resp_scan_t *sc, const uint8_t *p, size_t n);

/* Reading a whole reply. */
typedef struct {
  const uint8_t *p, *e;
} resp_rd_t;

/* The next value's type character ('+', '-', ':', '$', '*'), 0 at the end. */
int resp_peek(const resp_rd_t *r);
/* An array header: *n elements (-1: nil).  PSL_EINVALID if the next value is not an array. */
int resp_array(resp_rd_t *r, int64_t *n);
/* A bulk or simple string (nil: *s NULL, *n 0).  An error reply gives PSL_EINVALID with the
 * message in *s / *n. */
int resp_string(resp_rd_t *r, const uint8_t **s, size_t *n);
int resp_int(resp_rd_t *r, int64_t *v);
/* Skip one value, however nested. */
int resp_skip(resp_rd_t *r);

#endif /* PSL_BENCH_RESP_H */
