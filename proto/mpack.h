/*
 * mpack.h — proto's own strict MessagePack reader and writer (internal to proto/).
 *
 * Why our own reader and not msgpack-c's unpacker: the unpacker allocates an element array
 * from a header's declared count before it knows the elements exist, so 5 hostile bytes
 * (dd ff ff ff ff) ask for gigabytes.  This reader walks (p, end) and checks every length
 * against the bytes that remain before it reads or allocates anything; it never allocates.
 *
 * Reader functions return 0 or a PSL__RD_* code (never a PSL_E*): the decoders turn the
 * code into an error and a diagnostic naming the key (psl__rd_fail), because only they know
 * the key.  On error the cursor position is unspecified: decoders stop at the first error.
 *
 * The writer appends to a psl_buf_t with a sticky error (like a FILE's error flag): encoders
 * write a whole message and check w.err once.  Integers go out in their shortest form,
 * non-negative ones always in the uint family (as msgpack-c's pack_int64 does), strings with
 * the shortest str header.
 */
#ifndef PSL_MPACK_H
#define PSL_MPACK_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "psl_proto.h"

/* ---- Reader. */

typedef struct {
  const uint8_t *p;   /* next byte */
  const uint8_t *end; /* one past the last byte */
} psl__rd_t;

enum {
  PSL__RD_TYPE = 1, /* another MessagePack type than the one asked for */
  PSL__RD_SHORT,    /* a length or count runs past the end of the input */
  PSL__RD_RANGE,    /* an integer that does not fit the C type asked for */
  PSL__RD_UTF8,     /* a str that is not valid UTF-8 */
  PSL__RD_DEEP,     /* containers nested deeper than PSL_MAX_DEPTH */
  PSL__RD_KEYS,     /* a map of `data`/`pii` with more than PSL_MAX_MAP_KEYS keys */
  PSL__RD_ITEMS,    /* an array of `data`/`pii` with more than PSL_MAX_ARRAY elements */
  PSL__RD_KEYTYPE,  /* a map key that is not a str where keys must be str */
  PSL__RD_DUPKEY,   /* the same key twice in one map */
  PSL__RD_EXT,      /* an ext value where ext is not allowed */
  PSL__RD_BADBYTE   /* 0xc1, the one byte MessagePack never uses */
};

static inline void psl__rd_init(psl__rd_t *r, const uint8_t *p, size_t len) {
  r->p = p;
  r->end = p + len;
}

static inline size_t psl__rd_left(const psl__rd_t *r) { return (size_t)(r->end - r->p); }

int psl__rd_map(psl__rd_t *r, uint32_t *n);
int psl__rd_array(psl__rd_t *r, uint32_t *n);
int psl__rd_str(psl__rd_t *r, psl_str_t *s); /* also checks UTF-8 */
int psl__rd_bin(psl__rd_t *r, psl_bytes_t *b);
int psl__rd_uint(psl__rd_t *r, uint64_t *v); /* any int encoding of a value >= 0 */
int psl__rd_int(psl__rd_t *r, int64_t *v);   /* any int encoding that fits int64 */
int psl__rd_bool(psl__rd_t *r, int *v);
int psl__rd_is_nil(const psl__rd_t *r); /* peeks: 1 if the next byte is nil (0xc0) */
int psl__rd_is_map(const psl__rd_t *r); /* peeks */
int psl__rd_is_bin(const psl__rd_t *r); /* peeks */

/* Skip one well-formed value of any type, nested at most `depth` containers deep.  Counts
 * are checked against the bytes left (every element takes at least one byte), so the work
 * is bounded by the input's length. */
int psl__rd_skip(psl__rd_t *r, unsigned depth);

/* Skip one value under the rules of `data` and `pii` (see PROTOCOL.md): at most
 * PSL_MAX_DEPTH deep, maps of at most PSL_MAX_MAP_KEYS distinct str keys, arrays of at
 * most PSL_MAX_ARRAY elements, every str valid UTF-8, no ext types. */
int psl__rd_skip_strict(psl__rd_t *r, unsigned depth);

/* Whether s is valid UTF-8 (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF). */
int psl__utf8_valid(const uint8_t *s, size_t len);

/* ---- Diagnostics (the one place that words decode errors). */

/* Format diag (when not NULL) and return err. */
int psl__diag(psl_diag_t *diag, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turn reader code rc met at "<path>.<key>" (key may be NULL) into a PSL_E* and a message;
 * `expected` names the type asked for, for PSL__RD_TYPE. */
int psl__rd_fail(psl_diag_t *diag, int rc, const char *path, const char *key,
                 const char *expected);

/* ---- Field readers: read the value of key `key` of the map at `path`, or fail with a
 * diagnostic naming it.  Strings are bounded by max (PSL_ETOO_BIG beyond). */

#define PSL__STR_NONEMPTY 1u /* an empty string is invalid */
#define PSL__STR_NONUL 2u    /* a NUL byte is invalid (names used in 0x00-separated keys) */

int psl__field_str(psl__rd_t *r, psl_str_t *s, size_t max, unsigned flags, psl_diag_t *diag,
                   const char *path, const char *key);
int psl__field_uint(psl__rd_t *r, uint64_t *v, psl_diag_t *diag, const char *path,
                    const char *key);
int psl__field_int(psl__rd_t *r, int64_t *v, psl_diag_t *diag, const char *path,
                   const char *key);
int psl__field_bool(psl__rd_t *r, int *v, psl_diag_t *diag, const char *path, const char *key);
/* A bin of exactly n bytes, copied to out. */
int psl__field_bin_n(psl__rd_t *r, uint8_t *out, size_t n, psl_diag_t *diag, const char *path,
                     const char *key);
/* The next map key (a str, else PSL_EINVALID). */
int psl__field_key(psl__rd_t *r, psl_str_t *key, psl_diag_t *diag, const char *path);
/* Index of key in names[0..n), or -1. */
int psl__key_index(psl_str_t key, const char *const *names, int n);

/* ---- Writer. */

typedef struct {
  psl_buf_t *b;
  int err; /* first error (PSL_ENOMEM), sticky */
} psl__wr_t;

void psl__w_raw(psl__wr_t *w, const void *p, size_t n);
void psl__w_map(psl__wr_t *w, uint32_t n);
void psl__w_array(psl__wr_t *w, uint32_t n);
void psl__w_uint(psl__wr_t *w, uint64_t v);
void psl__w_int(psl__wr_t *w, int64_t v);
void psl__w_str(psl__wr_t *w, const char *s, size_t len);
void psl__w_bin(psl__wr_t *w, const void *p, size_t len);
void psl__w_bool(psl__wr_t *w, int v);
static inline void psl__w_cstr(psl__wr_t *w, const char *s) { psl__w_str(w, s, strlen(s)); }
static inline void psl__w_pstr(psl__wr_t *w, psl_str_t s) { psl__w_str(w, s.ptr, s.len); }

/* Big-endian helpers shared by the reader, the writer and the chunk patcher. */
static inline void psl__put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline void psl__put_be64(uint8_t *p, uint64_t v) {
  psl__put_be32(p, (uint32_t)(v >> 32));
  psl__put_be32(p + 4, (uint32_t)v);
}

/* ---- Shared between proto's files. */

/* libsodium's sodium_init(), once per process (pthread_once). */
void psl__sodium_init(void);

/* How an event map is read: a new event (push), a stored event (log: `hash` optional), or a
 * stored event on the wire (`events` chunk: `hash` required). */
typedef enum { PSL__EV_NEW, PSL__EV_STORED, PSL__EV_WIRE } psl__ev_mode_t;

/* Decode one event map at r into ev (zeroed first); path names it in diagnostics. */
int psl__event_decode(psl__rd_t *r, psl_event_t *ev, psl__ev_mode_t mode, const char *path,
                      psl_diag_t *diag);

/* Write ev as a new event (push) / as a stored event in wire form (hash appended). */
void psl__event_write_new(psl__wr_t *w, const psl_event_t *ev);
void psl__event_write_wire(psl__wr_t *w, const psl_event_t *ev);

/* The `t` string of a message type, NULL for none (msg_encode.c holds the table). */
const char *psl__msg_name(psl_msg_type_t t);

#endif /* PSL_MPACK_H */
