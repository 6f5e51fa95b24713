/*
 * mpack_read.c — the strict MessagePack reader of mpack.h, and the wording of decode errors.
 *
 * Every header is parsed by rd_head(), which checks that the header's own bytes exist; each
 * typed reader then checks that the payload (str, bin, ext, float) fits in what remains
 * before it touches it.  Containers are never materialised: a count is a promise that the
 * caller checks against the bytes left (an element takes at least one byte, a map entry two)
 * before looping over it, so a hostile count costs nothing.
 */
#include "mpack.h"

#include <stdio.h>

enum kind { K_NIL, K_BOOL, K_UINT, K_NEG, K_FLOAT, K_STR, K_BIN, K_EXT, K_ARRAY, K_MAP };

/* A parsed header.  STR/BIN/EXT/FLOAT: u = payload bytes after the header (EXT: with its
 * type byte).  ARRAY/MAP: u = element count.  UINT: u = value.  NEG: i = value (< 0).
 * BOOL: u = 0 or 1. */
typedef struct {
  enum kind kind;
  uint64_t u;
  int64_t i;
} head_t;

static uint64_t be_n(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t k = 0; k < n; k++)
    v = (v << 8) | p[k];
  return v;
}

/* Signed big-endian integer of n bytes (1, 2, 4 or 8), two's complement. */
static int64_t be_signed(const uint8_t *p, size_t n) {
  uint64_t u = be_n(p, n);
  unsigned bits = (unsigned)(n * 8);
  if (bits < 64 && (u >> (bits - 1)))
    u |= ~UINT64_C(0) << bits; /* sign-extend */
  int64_t v;
  memcpy(&v, &u, sizeof v); /* two's complement reinterpretation, no implementation-defined cast */
  return v;
}

/* Header of a fixed-size family: the byte's low bits give the size of the length field. */
static int rd_head(psl__rd_t *r, head_t *h) {
  size_t left = psl__rd_left(r);
  if (left == 0)
    return PSL__RD_SHORT;
  const uint8_t b = r->p[0];
  size_t lenbytes = 0; /* bytes of the length/value field after the type byte */
  int is_signed = 0;
  uint64_t extra = 0; /* added to the length (the ext type byte) */
  h->u = 0;
  h->i = 0;
  if (b <= 0x7f) {
    h->kind = K_UINT;
    h->u = b;
  } else if (b >= 0xe0) {
    h->kind = K_NEG;
    h->i = (int64_t)b - 256;
  } else if (b <= 0x8f) {
    h->kind = K_MAP;
    h->u = b & 0x0f;
  } else if (b <= 0x9f) {
    h->kind = K_ARRAY;
    h->u = b & 0x0f;
  } else if (b <= 0xbf) {
    h->kind = K_STR;
    h->u = b & 0x1f;
  } else {
    switch (b) {
    case 0xc0: h->kind = K_NIL; break;
    case 0xc1: return PSL__RD_BADBYTE;
    case 0xc2: case 0xc3: h->kind = K_BOOL; h->u = b & 1; break;
    case 0xc4: case 0xc5: case 0xc6: h->kind = K_BIN; lenbytes = (size_t)1 << (b - 0xc4); break;
    case 0xc7: case 0xc8: case 0xc9:
      h->kind = K_EXT; lenbytes = (size_t)1 << (b - 0xc7); extra = 1; break;
    case 0xca: h->kind = K_FLOAT; h->u = 4; break;
    case 0xcb: h->kind = K_FLOAT; h->u = 8; break;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
      h->kind = K_UINT; lenbytes = (size_t)1 << (b - 0xcc); break;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
      h->kind = K_NEG; lenbytes = (size_t)1 << (b - 0xd0); is_signed = 1; break;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
      h->kind = K_EXT; h->u = 1 + ((uint64_t)1 << (b - 0xd4)); break;
    case 0xd9: case 0xda: case 0xdb: h->kind = K_STR; lenbytes = (size_t)1 << (b - 0xd9); break;
    case 0xdc: case 0xdd: h->kind = K_ARRAY; lenbytes = (size_t)2 << (b - 0xdc); break;
    default: /* 0xde, 0xdf */ h->kind = K_MAP; lenbytes = (size_t)2 << (b - 0xde); break;
    }
  }
  if (left - 1 < lenbytes)
    return PSL__RD_SHORT;
  if (is_signed) {
    h->i = be_signed(r->p + 1, lenbytes);
    if (h->i >= 0) { /* a signed encoding of a non-negative value */
      h->kind = K_UINT;
      h->u = (uint64_t)h->i;
    }
  } else if (lenbytes) {
    h->u = be_n(r->p + 1, lenbytes) + extra;
  }
  r->p += 1 + lenbytes;
  return 0;
}

/* Consume a payload of h->u bytes, after checking it is there. */
static int rd_payload(psl__rd_t *r, const head_t *h, const uint8_t **out) {
  if (h->u > psl__rd_left(r))
    return PSL__RD_SHORT;
  *out = r->p;
  r->p += h->u;
  return 0;
}

int psl__rd_map(psl__rd_t *r, uint32_t *n) {
  head_t h;
  int rc = rd_head(r, &h);
  if (rc)
    return rc;
  if (h.kind != K_MAP)
    return PSL__RD_TYPE;
  if (h.u > psl__rd_left(r) / 2) /* an entry takes at least 2 bytes */
    return PSL__RD_SHORT;
  *n = (uint32_t)h.u;
  return 0;
}

int psl__rd_array(psl__rd_t *r, uint32_t *n) {
  head_t h;
  int rc = rd_head(r, &h);
  if (rc)
    return rc;
  if (h.kind != K_ARRAY)
    return PSL__RD_TYPE;
  *n = (uint32_t)h.u; /* the caller checks it against its limit, then against the bytes */
  return 0;
}

int psl__rd_str(psl__rd_t *r, psl_str_t *s) {
  head_t h;
  const uint8_t *p;
  int rc = rd_head(r, &h);
  if (rc)
    return rc;
  if (h.kind != K_STR)
    return PSL__RD_TYPE;
  if ((rc = rd_payload(r, &h, &p)))
    return rc;
  if (!psl__utf8_valid(p, (size_t)h.u))
    return PSL__RD_UTF8;
  s->ptr = (const char *)p;
  s->len = (size_t)h.u;
  return 0;
}

int psl__rd_bin(psl__rd_t *r, psl_bytes_t *b) {
  head_t h;
  const uint8_t *p;
  int rc = rd_head(r, &h);
  if (rc)
    return rc;
  if (h.kind != K_BIN)
    return PSL__RD_TYPE;
  if ((rc = rd_payload(r, &h, &p)))
    return rc;
  b->ptr = p;
  b->len = (size_t)h.u;
  return 0;
}

int psl__rd_uint(psl__rd_t *r, uint64_t *v) {
  head_t h;
  int rc = rd_head(r, &h);
  if (rc)
    return rc;
  if (h.kind == K_NEG)
    return PSL__RD_RANGE;
  if (h.kind != K_UINT)
    return PSL__RD_TYPE;
  *v = h.u;
  return 0;
}

int psl__rd_int(psl__rd_t *r, int64_t *v) {
  head_t h;
  int rc = rd_head(r, &h);
  if (rc)
    return rc;
  if (h.kind == K_NEG) {
    *v = h.i;
    return 0;
  }
  if (h.kind != K_UINT)
    return PSL__RD_TYPE;
  if (h.u > (uint64_t)INT64_MAX)
    return PSL__RD_RANGE;
  *v = (int64_t)h.u;
  return 0;
}

int psl__rd_bool(psl__rd_t *r, int *v) {
  head_t h;
  int rc = rd_head(r, &h);
  if (rc)
    return rc;
  if (h.kind != K_BOOL)
    return PSL__RD_TYPE;
  *v = (int)h.u;
  return 0;
}

int psl__rd_is_nil(const psl__rd_t *r) { return r->p < r->end && r->p[0] == 0xc0; }

int psl__rd_is_map(const psl__rd_t *r) {
  if (r->p >= r->end)
    return 0;
  uint8_t b = r->p[0];
  return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

int psl__rd_is_bin(const psl__rd_t *r) {
  return r->p < r->end && r->p[0] >= 0xc4 && r->p[0] <= 0xc6;
}

/* One value; strict applies the rules of `data` and `pii`.  Recursion is bounded by depth
 * (PSL_MAX_DEPTH at most), so the C stack is too. */
static int skip_value(psl__rd_t *r, unsigned depth, int strict) {
  head_t h;
  const uint8_t *p;
  int rc = rd_head(r, &h);
  if (rc)
    return rc;
  switch (h.kind) {
  case K_NIL:
  case K_BOOL:
  case K_UINT:
  case K_NEG:
    return 0;
  case K_EXT:
    if (strict)
      return PSL__RD_EXT;
    return rd_payload(r, &h, &p);
  case K_FLOAT:
  case K_BIN:
    return rd_payload(r, &h, &p);
  case K_STR:
    if ((rc = rd_payload(r, &h, &p)))
      return rc;
    return strict && !psl__utf8_valid(p, (size_t)h.u) ? PSL__RD_UTF8 : 0;
  case K_ARRAY:
    if (depth == 0)
      return PSL__RD_DEEP;
    if (strict && h.u > PSL_MAX_ARRAY)
      return PSL__RD_ITEMS;
    if (h.u > psl__rd_left(r))
      return PSL__RD_SHORT;
    for (uint64_t k = 0; k < h.u; k++)
      if ((rc = skip_value(r, depth - 1, strict)))
        return rc;
    return 0;
  case K_MAP:
    break;
  }
  if (depth == 0)
    return PSL__RD_DEEP;
  if (strict && h.u > PSL_MAX_MAP_KEYS)
    return PSL__RD_KEYS;
  if (h.u > psl__rd_left(r) / 2)
    return PSL__RD_SHORT;
  psl_str_t keys[PSL_MAX_MAP_KEYS]; /* 1 KiB a level, PSL_MAX_DEPTH levels at most */
  for (uint64_t k = 0; k < h.u; k++) {
    if (strict) {
      if ((rc = psl__rd_str(r, &keys[k])))
        return rc == PSL__RD_TYPE ? PSL__RD_KEYTYPE : rc;
      for (uint64_t j = 0; j < k; j++) /* <= 64 keys: quadratic is ~2,000 compares at most */
        if (keys[j].len == keys[k].len && memcmp(keys[j].ptr, keys[k].ptr, keys[k].len) == 0)
          return PSL__RD_DUPKEY;
    } else if ((rc = skip_value(r, depth - 1, 0))) {
      return rc;
    }
    if ((rc = skip_value(r, depth - 1, strict)))
      return rc;
  }
  return 0;
}

int psl__rd_skip(psl__rd_t *r, unsigned depth) { return skip_value(r, depth, 0); }

int psl__rd_skip_strict(psl__rd_t *r, unsigned depth) { return skip_value(r, depth, 1); }

int psl__utf8_valid(const uint8_t *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (len - i - 1 < n)
      return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n + 1;
  }
  return 1;
}

int psl__diag(psl_diag_t *diag, int err, const char *fmt, ...) {
  if (diag) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
    va_end(ap);
  }
  return err;
}

int psl__rd_fail(psl_diag_t *diag, int rc, const char *path, const char *key,
                 const char *expected) {
  char where[128];
  if (key)
    snprintf(where, sizeof where, "%s.%s", path, key);
  else
    snprintf(where, sizeof where, "%s", path);
  switch (rc) {
  case PSL__RD_TYPE:
    return psl__diag(diag, PSL_EINVALID, "%s: expected %s", where, expected);
  case PSL__RD_SHORT:
    return psl__diag(diag, PSL_EINVALID, "%s: truncated", where);
  case PSL__RD_RANGE:
    return psl__diag(diag, PSL_EINVALID, "%s: out of range", where);
  case PSL__RD_UTF8:
    return psl__diag(diag, PSL_EINVALID, "%s: not valid UTF-8", where);
  case PSL__RD_DEEP:
    return psl__diag(diag, PSL_ETOO_BIG, "%s: nested deeper than %u levels", where,
                     PSL_MAX_DEPTH);
  case PSL__RD_KEYS:
    return psl__diag(diag, PSL_ETOO_BIG, "%s: a map has more than %u keys", where,
                     PSL_MAX_MAP_KEYS);
  case PSL__RD_ITEMS:
    return psl__diag(diag, PSL_ETOO_BIG, "%s: an array has more than %u elements", where,
                     PSL_MAX_ARRAY);
  case PSL__RD_KEYTYPE:
    return psl__diag(diag, PSL_EINVALID, "%s: a map key is not a str", where);
  case PSL__RD_DUPKEY:
    return psl__diag(diag, PSL_EINVALID, "%s: duplicate key", where);
  case PSL__RD_EXT:
    return psl__diag(diag, PSL_EINVALID, "%s: ext values are not allowed", where);
  case PSL__RD_BADBYTE:
    return psl__diag(diag, PSL_EINVALID, "%s: not MessagePack (byte 0xc1)", where);
  default:
    return psl__diag(diag, PSL_EINTERNAL, "%s: reader error %d", where, rc);
  }
}

/* ---- Field readers. */

int psl__field_str(psl__rd_t *r, psl_str_t *s, size_t max, unsigned flags, psl_diag_t *diag,
                   const char *path, const char *key) {
  int rc = psl__rd_str(r, s);
  if (rc)
    return psl__rd_fail(diag, rc, path, key, "str");
  if (s->len > max)
    return psl__diag(diag, PSL_ETOO_BIG, "%s.%s: longer than %zu bytes", path, key, max);
  if ((flags & PSL__STR_NONEMPTY) && s->len == 0)
    return psl__diag(diag, PSL_EINVALID, "%s.%s: empty", path, key);
  if ((flags & PSL__STR_NONUL) && s->len && memchr(s->ptr, 0, s->len))
    return psl__diag(diag, PSL_EINVALID, "%s.%s: contains a NUL byte", path, key);
  return 0;
}

int psl__field_uint(psl__rd_t *r, uint64_t *v, psl_diag_t *diag, const char *path,
                    const char *key) {
  int rc = psl__rd_uint(r, v);
  return rc ? psl__rd_fail(diag, rc, path, key, "uint") : 0;
}

int psl__field_int(psl__rd_t *r, int64_t *v, psl_diag_t *diag, const char *path,
                   const char *key) {
  int rc = psl__rd_int(r, v);
  return rc ? psl__rd_fail(diag, rc, path, key, "int") : 0;
}

int psl__field_bool(psl__rd_t *r, int *v, psl_diag_t *diag, const char *path, const char *key) {
  int rc = psl__rd_bool(r, v);
  return rc ? psl__rd_fail(diag, rc, path, key, "bool") : 0;
}

int psl__field_bin_n(psl__rd_t *r, uint8_t *out, size_t n, psl_diag_t *diag, const char *path,
                     const char *key) {
  psl_bytes_t b;
  int rc = psl__rd_bin(r, &b);
  if (rc == PSL__RD_TYPE || (rc == 0 && b.len != n))
    return psl__diag(diag, PSL_EINVALID, "%s.%s: expected bin %zu", path, key, n);
  if (rc)
    return psl__rd_fail(diag, rc, path, key, "bin");
  memcpy(out, b.ptr, n);
  return 0;
}

int psl__field_key(psl__rd_t *r, psl_str_t *key, psl_diag_t *diag, const char *path) {
  int rc = psl__rd_str(r, key);
  if (rc == PSL__RD_TYPE)
    return psl__diag(diag, PSL_EINVALID, "%s: a key is not a str", path);
  return rc ? psl__rd_fail(diag, rc, path, NULL, "str") : 0;
}

int psl__key_index(psl_str_t key, const char *const *names, int n) {
  for (int k = 0; k < n; k++)
    if (strlen(names[k]) == key.len && memcmp(names[k], key.ptr, key.len) == 0)
      return k;
  return -1;
}
