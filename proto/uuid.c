/*
 * uuid.c — uuids as 16 bytes, their 36-character text form, UUIDv7, and psl_str_eq.
 *
 * Text form (streams are "participant/<uuid>"): 8-4-4-4-12 lowercase hex digits with
 * hyphens, e.g. 0190f5a2-7c3e-7b1d-9a4f-3c2b1a0f9e8d.  Parsing accepts either case.
 *
 * UUIDv7 (RFC 9562 §5.7), big-endian:
 *   bytes 0-5   unix_ts_ms, 48 bits
 *   byte  6     0111 xxxx   version 7, then 4 random bits
 *   byte  7     random
 *   byte  8     10xx xxxx   variant (RFC 4122), then 6 random bits
 *   bytes 9-15  random
 * Ids made on the same device are ordered by time at millisecond grain; the 74 random bits
 * make collisions between offline devices negligible.
 */
#include <sodium.h>

#include "mpack.h"

/* Offsets of the hyphens in the text form. */
static const int uuid_hyphen[4] = {8, 13, 18, 23};

void psl_uuid_format(const uint8_t id[PSL_UUID_BYTES], char out[PSL_UUID_STR + 1]) {
  static const char hex[] = "0123456789abcdef";
  int o = 0;
  for (int i = 0; i < PSL_UUID_BYTES; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    out[o++] = hex[id[i] >> 4];
    out[o++] = hex[id[i] & 0x0f];
  }
  out[o] = '\0';
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int psl_uuid_parse(const char *s, size_t len, uint8_t id[PSL_UUID_BYTES]) {
  uint8_t tmp[PSL_UUID_BYTES];
  int h = 0, o = 0;
  if (!s || len != PSL_UUID_STR)
    return PSL_EINVALID;
  for (int i = 0; i < PSL_UUID_STR;) {
    if (h < 4 && i == uuid_hyphen[h]) {
      if (s[i] != '-')
        return PSL_EINVALID;
      h++, i++;
      continue;
    }
    int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
    if (hi < 0 || lo < 0)
      return PSL_EINVALID;
    tmp[o++] = (uint8_t)(hi << 4 | lo);
    i += 2;
  }
  memcpy(id, tmp, PSL_UUID_BYTES);
  return 0;
}

void psl_uuid_v7(uint8_t id[PSL_UUID_BYTES], int64_t now_ms) {
  uint64_t ms = (uint64_t)now_ms & ((UINT64_C(1) << 48) - 1);
  psl__sodium_init();
  randombytes_buf(id + 6, PSL_UUID_BYTES - 6);
  for (int i = 0; i < 6; i++)
    id[i] = (uint8_t)(ms >> (8 * (5 - i)));
  id[6] = (uint8_t)(0x70 | (id[6] & 0x0f));
  id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
}

int psl_str_eq(psl_str_t s, const char *cstr) {
  size_t n = cstr ? strlen(cstr) : 0;
  return s.len == n && (n == 0 || memcmp(s.ptr, cstr, n) == 0);
}
