/*
 * mp.c — a small strict MessagePack reader for the `data` maps the domain reads.
 *
 * Why not proto's: proto/mpack.h is internal to proto/ and was being written at the same
 * time; the domain needs a handful of reads over bytes that may not have been through
 * proto's decoder (a client library folding its own events, tests).  Every length and count
 * is checked against the bytes that remain before anything is read; nothing is allocated.
 */
#include "psl_domain_int.h"

static int need(const psl__mp_t *r, size_t n) {
  return (size_t)(r->end - r->p) >= n ? 0 : PSL__MP_SHORT;
}

static uint64_t be(const uint8_t *p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; i++)
    v = v << 8 | p[i];
  return v;
}

/* Read a header of width n bytes after the tag byte. */
static int hdr(psl__mp_t *r, unsigned n, uint32_t *v) {
  if (need(r, 1 + n))
    return PSL__MP_SHORT;
  *v = (uint32_t)be(r->p + 1, n);
  r->p += 1 + n;
  return 0;
}

int psl__mp_map(psl__mp_t *r, uint32_t *n) {
  if (need(r, 1))
    return PSL__MP_SHORT;
  uint8_t t = *r->p;
  int rc;
  if (t >= 0x80 && t <= 0x8f) {
    *n = t & 0x0f;
    r->p++;
    rc = 0;
  } else if (t == 0xde) {
    rc = hdr(r, 2, n);
  } else if (t == 0xdf) {
    rc = hdr(r, 4, n);
  } else {
    return PSL__MP_TYPE;
  }
  /* every key and value takes at least one byte */
  if (rc == 0 && (uint64_t)*n * 2 > (uint64_t)(r->end - r->p))
    rc = PSL__MP_SHORT;
  return rc;
}

int psl__mp_array(psl__mp_t *r, uint32_t *n) {
  if (need(r, 1))
    return PSL__MP_SHORT;
  uint8_t t = *r->p;
  int rc;
  if (t >= 0x90 && t <= 0x9f) {
    *n = t & 0x0f;
    r->p++;
    rc = 0;
  } else if (t == 0xdc) {
    rc = hdr(r, 2, n);
  } else if (t == 0xdd) {
    rc = hdr(r, 4, n);
  } else {
    return PSL__MP_TYPE;
  }
  if (rc == 0 && (uint64_t)*n > (uint64_t)(r->end - r->p))
    rc = PSL__MP_SHORT;
  return rc;
}

static int body(psl__mp_t *r, uint32_t len, const uint8_t **p) {
  if (need(r, len))
    return PSL__MP_SHORT;
  *p = r->p;
  r->p += len;
  return 0;
}

int psl__mp_str(psl__mp_t *r, const char **s, uint32_t *len) {
  if (need(r, 1))
    return PSL__MP_SHORT;
  uint8_t t = *r->p;
  int rc;
  if (t >= 0xa0 && t <= 0xbf) {
    *len = t & 0x1f;
    r->p++;
    rc = 0;
  } else if (t == 0xd9) {
    rc = hdr(r, 1, len);
  } else if (t == 0xda) {
    rc = hdr(r, 2, len);
  } else if (t == 0xdb) {
    rc = hdr(r, 4, len);
  } else {
    return PSL__MP_TYPE;
  }
  const uint8_t *p = NULL;
  if (rc == 0)
    rc = body(r, *len, &p);
  *s = (const char *)p;
  return rc;
}

int psl__mp_bin(psl__mp_t *r, const uint8_t **b, uint32_t *len) {
  if (need(r, 1))
    return PSL__MP_SHORT;
  uint8_t t = *r->p;
  int rc;
  if (t == 0xc4)
    rc = hdr(r, 1, len);
  else if (t == 0xc5)
    rc = hdr(r, 2, len);
  else if (t == 0xc6)
    rc = hdr(r, 4, len);
  else
    return PSL__MP_TYPE;
  if (rc == 0)
    rc = body(r, *len, b);
  return rc;
}

int psl__mp_int(psl__mp_t *r, int64_t *v) {
  if (need(r, 1))
    return PSL__MP_SHORT;
  uint8_t t = *r->p;
  if (t <= 0x7f) {
    *v = t;
    r->p++;
    return 0;
  }
  if (t >= 0xe0) {
    *v = (int8_t)t;
    r->p++;
    return 0;
  }
  unsigned n;
  int is_signed;
  switch (t) {
  case 0xcc: n = 1; is_signed = 0; break;
  case 0xcd: n = 2; is_signed = 0; break;
  case 0xce: n = 4; is_signed = 0; break;
  case 0xcf: n = 8; is_signed = 0; break;
  case 0xd0: n = 1; is_signed = 1; break;
  case 0xd1: n = 2; is_signed = 1; break;
  case 0xd2: n = 4; is_signed = 1; break;
  case 0xd3: n = 8; is_signed = 1; break;
  default: return PSL__MP_TYPE;
  }
  if (need(r, 1 + n))
    return PSL__MP_SHORT;
  uint64_t u = be(r->p + 1, n);
  if (!is_signed) {
    if (u > (uint64_t)INT64_MAX)
      return PSL__MP_RANGE;
    *v = (int64_t)u;
  } else {
    /* sign-extend from n bytes */
    unsigned shift = 64 - 8 * n;
    *v = shift ? (int64_t)(u << shift) >> shift : (int64_t)u;
  }
  r->p += 1 + n;
  return 0;
}

int psl__mp_bool(psl__mp_t *r, int *v) {
  if (need(r, 1))
    return PSL__MP_SHORT;
  if (*r->p != 0xc2 && *r->p != 0xc3)
    return PSL__MP_TYPE;
  *v = *r->p == 0xc3;
  r->p++;
  return 0;
}

int psl__mp_is_nil(const psl__mp_t *r) { return r->p < r->end && *r->p == 0xc0; }

int psl__mp_is_map(const psl__mp_t *r) {
  if (r->p >= r->end)
    return 0;
  uint8_t t = *r->p;
  return (t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf;
}

int psl__mp_is_bin(const psl__mp_t *r) {
  return r->p < r->end && (*r->p == 0xc4 || *r->p == 0xc5 || *r->p == 0xc6);
}

/* Skip `len` bytes after a header of n bytes. */
static int skip_sized(psl__mp_t *r, unsigned n, unsigned extra) {
  uint32_t len;
  int rc = hdr(r, n, &len);
  if (rc)
    return rc;
  if (need(r, (size_t)len + extra))
    return PSL__MP_SHORT;
  r->p += (size_t)len + extra;
  return 0;
}

static int skip_fixed(psl__mp_t *r, size_t n) {
  if (need(r, 1 + n))
    return PSL__MP_SHORT;
  r->p += 1 + n;
  return 0;
}

static int skip_items(psl__mp_t *r, uint64_t items, unsigned depth) {
  if (depth == 0)
    return PSL__MP_DEEP;
  for (uint64_t i = 0; i < items; i++) {
    int rc = psl__mp_skip(r, depth - 1);
    if (rc)
      return rc;
  }
  return 0;
}

int psl__mp_skip(psl__mp_t *r, unsigned depth) {
  if (need(r, 1))
    return PSL__MP_SHORT;
  uint8_t t = *r->p;
  uint32_t n;
  int rc;
  if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
    return skip_fixed(r, 0);
  if ((t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf) {
    if ((rc = psl__mp_map(r, &n)))
      return rc;
    return skip_items(r, (uint64_t)n * 2, depth);
  }
  if ((t >= 0x90 && t <= 0x9f) || t == 0xdc || t == 0xdd) {
    if ((rc = psl__mp_array(r, &n)))
      return rc;
    return skip_items(r, n, depth);
  }
  if (t >= 0xa0 && t <= 0xbf) {
    if (need(r, 1 + (size_t)(t & 0x1f)))
      return PSL__MP_SHORT;
    r->p += 1 + (t & 0x1f);
    return 0;
  }
  switch (t) {
  case 0xc4: case 0xd9: return skip_sized(r, 1, 0);
  case 0xc5: case 0xda: return skip_sized(r, 2, 0);
  case 0xc6: case 0xdb: return skip_sized(r, 4, 0);
  case 0xc7: return skip_sized(r, 1, 1); /* ext: type byte after the length */
  case 0xc8: return skip_sized(r, 2, 1);
  case 0xc9: return skip_sized(r, 4, 1);
  case 0xca: return skip_fixed(r, 4);
  case 0xcb: return skip_fixed(r, 8);
  case 0xcc: case 0xd0: return skip_fixed(r, 1);
  case 0xcd: case 0xd1: return skip_fixed(r, 2);
  case 0xce: case 0xd2: return skip_fixed(r, 4);
  case 0xcf: case 0xd3: return skip_fixed(r, 8);
  case 0xd4: return skip_fixed(r, 2);
  case 0xd5: return skip_fixed(r, 3);
  case 0xd6: return skip_fixed(r, 5);
  case 0xd7: return skip_fixed(r, 9);
  case 0xd8: return skip_fixed(r, 17);
  default: return PSL__MP_TYPE; /* 0xc1 */
  }
}

/* ---- Stored events, for rebuilds.
 *
 * A rebuild reads millions of records the log wrote itself; proto's psl_event_decode_stored
 * checks every string's UTF-8 and every key's type again, which was ~40% of a rebuild.  This
 * reader fills only what the fold reads (id, stream, type, at, terr, data, seq), skips the
 * rest, and checks what memory safety needs: every length against the bytes left.  A record
 * it cannot read is reported, and the caller falls back to proto's decoder for it. */

static int key_is(const char *k, uint32_t n, const char *name) {
  size_t i = 0;
  for (; i < n; i++)
    if (name[i] != k[i] || name[i] == '\0')
      return 0;
  return name[n] == '\0';
}

int psl__event_read_stored(const uint8_t *buf, size_t len, psl_event_t *ev) {
  psl__mp_t r;
  uint32_t n;
  memset(ev, 0, sizeof *ev);
  ev->expect = PSL_EXPECT_ANY;
  psl__mp_init(&r, buf, len);
  if (psl__mp_map(&r, &n))
    return PSL_ECORRUPT;
  for (uint32_t i = 0; i < n; i++) {
    const char *k, *s;
    const uint8_t *b;
    uint32_t kn, sn;
    int64_t v;
    if (psl__mp_str(&r, &k, &kn))
      return PSL_ECORRUPT;
    int rc = 0;
    if (key_is(k, kn, "id")) {
      rc = psl__mp_bin(&r, &b, &sn) || sn != PSL_UUID_BYTES;
      if (!rc)
        memcpy(ev->id, b, PSL_UUID_BYTES);
    } else if (key_is(k, kn, "stream") || key_is(k, kn, "type") || key_is(k, kn, "terr")) {
      rc = psl__mp_str(&r, &s, &sn);
      psl_str_t str = {s, sn};
      if (k[0] == 's')
        ev->stream = str;
      else if (k[1] == 'y')
        ev->type = str;
      else
        ev->terr = str;
    } else if (key_is(k, kn, "at") || key_is(k, kn, "seq")) {
      rc = psl__mp_int(&r, &v);
      if (k[0] == 'a')
        ev->at = v;
      else
        ev->seq = (uint64_t)v;
    } else if (key_is(k, kn, "data")) {
      const uint8_t *start = r.p;
      rc = psl__mp_skip(&r, PSL_MAX_DEPTH);
      ev->data.ptr = start;
      ev->data.len = (size_t)(r.p - start);
    } else {
      rc = psl__mp_skip(&r, PSL_MAX_DEPTH);
    }
    if (rc)
      return PSL_ECORRUPT;
  }
  return r.p == r.end && ev->stream.ptr && ev->type.ptr && ev->data.ptr ? 0 : PSL_ECORRUPT;
}
