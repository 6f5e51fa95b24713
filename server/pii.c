/*
 * pii.c — the sealed form of an event's `pii` (psl_keys.h), without the key store.
 *
 * Stored `pii` is one MessagePack bin:
 *
 *   c4 n8 | c5 n16          bin header (n = 1 + 24 + len + 16; PSL_MAX_EVENT bounds it)
 *   01                      format
 *   <24 bytes>              nonce, random (XChaCha20's 192-bit nonce: random nonces never
 *                           repeat in practice, so no counter has to survive a crash)
 *   <len bytes>             XChaCha20-Poly1305-IETF ciphertext of the pii map's bytes
 *   <16 bytes>              its tag
 *
 *   associated data = "psl-pii-1" ‖ event id (16 bytes) ‖ stream (its bytes)
 *
 * The associated data ties the ciphertext to its event: copied into another event or stream
 * (by someone who can write the log's file), it fails to authenticate instead of showing one
 * participant's data under another's name.
 */
#include "psl_keys.h"

#include <string.h>

#include <sodium.h>

#define PII_AD_LABEL "psl-pii-1"
#define PII_AD_LABEL_LEN (sizeof PII_AD_LABEL - 1)
/* Associated data: label, event id, and a stream of at most PSL_MAX_STREAM bytes. */
#define PII_AD_MAX (PII_AD_LABEL_LEN + PSL_UUID_BYTES + PSL_MAX_STREAM)

const uint8_t psl_pii_erased[9] = {0x81, 0xa6, 'e', 'r', 'a', 's', 'e', 'd', 0xc3};

_Static_assert(PSL_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");
_Static_assert(PSL_PII_NONCE == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(PSL_PII_TAG == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");

static int pii_ad(uint8_t ad[PII_AD_MAX], const uint8_t id[PSL_UUID_BYTES], psl_str_t stream,
                  size_t *len) {
  if (stream.len == 0 || stream.len > PSL_MAX_STREAM)
    return PSL_EINVALID;
  memcpy(ad, PII_AD_LABEL, PII_AD_LABEL_LEN);
  memcpy(ad + PII_AD_LABEL_LEN, id, PSL_UUID_BYTES);
  memcpy(ad + PII_AD_LABEL_LEN + PSL_UUID_BYTES, stream.ptr, stream.len);
  *len = PII_AD_LABEL_LEN + PSL_UUID_BYTES + stream.len;
  return 0;
}

/* The payload of a bin value: 0 and *p, *n; PSL_EINVALID when v is not exactly one bin. */
static int bin_payload(psl_bytes_t v, const uint8_t **p, size_t *n) {
  if (v.len < 2 || !v.ptr)
    return PSL_EINVALID;
  size_t hl, len;
  switch (v.ptr[0]) {
  case 0xc4:
    hl = 2, len = v.ptr[1];
    break;
  case 0xc5:
    if (v.len < 3)
      return PSL_EINVALID;
    hl = 3, len = (size_t)v.ptr[1] << 8 | v.ptr[2];
    break;
  case 0xc6:
    if (v.len < 5)
      return PSL_EINVALID;
    hl = 5, len = (size_t)v.ptr[1] << 24 | (size_t)v.ptr[2] << 16 | (size_t)v.ptr[3] << 8 |
                  v.ptr[4];
    break;
  default:
    return PSL_EINVALID;
  }
  if (v.len != hl + len)
    return PSL_EINVALID;
  *p = v.ptr + hl;
  *n = len;
  return 0;
}

int psl_pii_is_sealed(psl_bytes_t pii) {
  return pii.len > 0 && pii.ptr && (pii.ptr[0] == 0xc4 || pii.ptr[0] == 0xc5 || pii.ptr[0] == 0xc6);
}

int psl_pii_seal(psl_buf_t *out, const uint8_t key[PSL_KEY_BYTES], const uint8_t id[PSL_UUID_BYTES],
                 psl_str_t stream, psl_bytes_t plain) {
  uint8_t ad[PII_AD_MAX], hdr[3];
  size_t adlen, hl;
  if (pii_ad(ad, id, stream, &adlen) != 0 || !plain.ptr || plain.len == 0)
    return PSL_EINVALID;
  if (plain.len > PSL_MAX_EVENT)
    return PSL_ETOO_BIG;
  size_t n = PSL_PII_OVERHEAD + plain.len; /* < 65,536: PSL_MAX_EVENT is 64 KiB */
  if (n <= 0xff) {
    hdr[0] = 0xc4, hdr[1] = (uint8_t)n, hl = 2;
  } else if (n <= 0xffff) {
    hdr[0] = 0xc5, hdr[1] = (uint8_t)(n >> 8), hdr[2] = (uint8_t)n, hl = 3;
  } else {
    return PSL_ETOO_BIG;
  }
  size_t start = out->len;
  int rc = psl_buf_reserve(out, hl + n);
  if (rc)
    return rc;
  uint8_t *p = psl_buf_data(out) + start;
  memcpy(p, hdr, hl);
  p += hl;
  p[0] = PSL_PII_FORMAT;
  randombytes_buf(p + 1, PSL_PII_NONCE);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(p + 1 + PSL_PII_NONCE, &clen, plain.ptr, plain.len,
                                             ad, adlen, NULL, p + 1, key);
  out->len = start + hl + n;
  return 0;
}

int psl_pii_open(psl_buf_t *out, const uint8_t key[PSL_KEY_BYTES], const uint8_t id[PSL_UUID_BYTES],
                 psl_str_t stream, psl_bytes_t stored) {
  uint8_t ad[PII_AD_MAX];
  const uint8_t *p;
  size_t n, adlen;
  if (bin_payload(stored, &p, &n) != 0 || n <= PSL_PII_OVERHEAD || p[0] != PSL_PII_FORMAT ||
      pii_ad(ad, id, stream, &adlen) != 0)
    return PSL_EINVALID;
  size_t plen = n - PSL_PII_OVERHEAD, start = out->len;
  int rc = psl_buf_reserve(out, plen);
  if (rc)
    return rc;
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(psl_buf_data(out) + start, &mlen, NULL,
                                                 p + 1 + PSL_PII_NONCE, n - 1 - PSL_PII_NONCE,
                                                 ad, adlen, p + 1, key) != 0) {
    sodium_memzero(psl_buf_data(out) + start, plen);
    return PSL_ECORRUPT;
  }
  out->len = start + (size_t)mlen;
  return 0;
}
