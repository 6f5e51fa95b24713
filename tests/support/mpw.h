/*
 * mpw.h — a tiny MessagePack writer for tests: to craft frames by hand, including the wrong
 * ones (a key of the wrong type, an array header that announces a million elements, keys a
 * client must not send such as `by`), which psl_msg_encode would never produce.
 *
 * Every function appends to a psl_buf_t and ignores allocation failure (psl_buf_append's
 * PSL_ENOMEM) except through mpw_err, which a test checks once at the end.
 */
#ifndef PSL_TESTS_MPW_H
#define PSL_TESTS_MPW_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

typedef struct {
  psl_buf_t *b;
  int err;
} mpw_t;

void mpw_init(mpw_t *w, psl_buf_t *b);
void mpw_map(mpw_t *w, uint32_t n);
void mpw_array(mpw_t *w, uint32_t n);
void mpw_array32(mpw_t *w, uint32_t n); /* always the 5-byte form (dd + count) */
void mpw_str(mpw_t *w, const char *s);
void mpw_strn(mpw_t *w, const char *s, size_t n);
void mpw_bin(mpw_t *w, const void *p, size_t n);
void mpw_uint(mpw_t *w, uint64_t v);
void mpw_int(mpw_t *w, int64_t v);
void mpw_bool(mpw_t *w, int v);
void mpw_nil(mpw_t *w);
void mpw_raw(mpw_t *w, const void *p, size_t n); /* bytes as they are (a pre-encoded value) */

#endif /* PSL_TESTS_MPW_H */
