/*
 * event.c — one event as a MessagePack map: decoding (new, stored, wire), the canonical
 * stored form, and the wire form made from it.
 *
 * The canonical stored form (what the log keeps and the hash chain covers) is one map
 * written with mpack_write.c's shortest forms, keys in this fixed order:
 *
 *   8b|8c                      fixmap of 11 entries, 12 when `pii` is present
 *   a2 "id"     c4 10 <16>     bin 16
 *   a6 "stream" <str>
 *   a4 "type"   <str>
 *   a2 "at"     <int>
 *   a4 "terr"   <str>
 *   a4 "data"   <map>          the bytes received, copied as they are
 *  [a3 "pii"    <map|bin>]     the bytes as stored (a bin once encrypted), copied
 *   a3 "seq"    <uint>
 *   a3 "ver"    <uint>
 *   a3 "rec"    <int>
 *   a2 "by"     <str>
 *   a3 "dev"    <str>
 *
 * `expect` is a condition of the push, never stored.  The wire form of a stored event is the
 * same map with one entry more, `hash` (a4 "hash" c4 20 <32>), appended: the fixmap byte
 * goes from 0x80|n to 0x80|(n+1) and the body is copied, so catch-up never re-encodes.
 */
#include "mpack.h"

enum {
  K_ID, K_STREAM, K_TYPE, K_AT, K_TERR, K_DATA, K_PII, K_EXPECT,
  K_SEQ, K_VER, K_REC, K_BY, K_DEV, K_HASH, K_COUNT
};

static const char *const ev_keys[K_COUNT] = {"id",   "stream", "type", "at",  "terr",
                                             "data", "pii",    "expect", "seq", "ver",
                                             "rec",  "by",     "dev",  "hash"};

#define BIT(k) (1u << (k))
#define NEW_REQUIRED (BIT(K_ID) | BIT(K_STREAM) | BIT(K_TYPE) | BIT(K_AT) | BIT(K_TERR) | BIT(K_DATA))
#define STORED_REQUIRED (NEW_REQUIRED | BIT(K_SEQ) | BIT(K_VER) | BIT(K_REC) | BIT(K_BY) | BIT(K_DEV))
#define NEW_KNOWN (NEW_REQUIRED | BIT(K_PII) | BIT(K_EXPECT))
#define STORED_KNOWN (STORED_REQUIRED | BIT(K_PII) | BIT(K_HASH))

/* The `hash` entry of the wire form: a4 "hash" c4 20, then the 32 bytes. */
static const uint8_t hash_entry_head[7] = {0xa4, 'h', 'a', 's', 'h', 0xc4, PSL_HASH_BYTES};
#define HASH_ENTRY_BYTES (sizeof hash_entry_head + PSL_HASH_BYTES)

/* `data`: one map under the rules of data/pii; its bytes are recorded as they are. */
static int read_data(psl__rd_t *r, psl_bytes_t *out, psl_diag_t *diag, const char *path) {
  const uint8_t *start = r->p;
  if (!psl__rd_is_map(r))
    return psl__diag(diag, PSL_EINVALID, "%s.data: expected map", path);
  int rc = psl__rd_skip_strict(r, PSL_MAX_DEPTH);
  if (rc)
    return psl__rd_fail(diag, rc, path, "data", "map");
  out->ptr = start;
  out->len = (size_t)(r->p - start);
  return 0;
}

/* `pii`: a map (clear), a bin (encrypted, stored events only), or nil meaning absent. */
static int read_pii(psl__rd_t *r, psl_bytes_t *out, psl__ev_mode_t mode, psl_diag_t *diag,
                    const char *path) {
  const uint8_t *start = r->p;
  int rc;
  if (psl__rd_is_nil(r)) {
    r->p++;
    out->ptr = NULL;
    out->len = 0;
    return 0;
  }
  if (psl__rd_is_map(r)) {
    rc = psl__rd_skip_strict(r, PSL_MAX_DEPTH);
  } else if (mode != PSL__EV_NEW && psl__rd_is_bin(r)) {
    psl_bytes_t b;
    rc = psl__rd_bin(r, &b);
  } else {
    return psl__diag(diag, PSL_EINVALID, "%s.pii: expected %s", path,
                     mode == PSL__EV_NEW ? "map" : "map or bin");
  }
  if (rc)
    return psl__rd_fail(diag, rc, path, "pii", "map");
  out->ptr = start;
  out->len = (size_t)(r->p - start);
  return 0;
}

static int read_field(psl__rd_t *r, psl_event_t *ev, int k, psl__ev_mode_t mode,
                      psl_diag_t *diag, const char *path) {
  const char *key = ev_keys[k];
  const unsigned ident = PSL__STR_NONEMPTY | PSL__STR_NONUL;
  int rc;
  switch (k) {
  case K_ID: return psl__field_bin_n(r, ev->id, PSL_UUID_BYTES, diag, path, key);
  case K_STREAM: return psl__field_str(r, &ev->stream, PSL_MAX_STREAM, ident, diag, path, key);
  case K_TYPE: return psl__field_str(r, &ev->type, PSL_MAX_TYPE, ident, diag, path, key);
  case K_AT: return psl__field_int(r, &ev->at, diag, path, key);
  case K_TERR: return psl__field_str(r, &ev->terr, PSL_MAX_TERR, ident, diag, path, key);
  case K_DATA: return read_data(r, &ev->data, diag, path);
  case K_PII: return read_pii(r, &ev->pii, mode, diag, path);
  case K_EXPECT:
    if ((rc = psl__field_int(r, &ev->expect, diag, path, key)))
      return rc;
    if (ev->expect < PSL_EXPECT_ANY)
      return psl__diag(diag, PSL_EINVALID, "%s.expect: out of range", path);
    return 0;
  case K_SEQ: return psl__field_uint(r, &ev->seq, diag, path, key);
  case K_VER: return psl__field_uint(r, &ev->ver, diag, path, key);
  case K_REC: return psl__field_int(r, &ev->rec, diag, path, key);
  case K_BY: return psl__field_str(r, &ev->by, PSL_MAX_STR, 0, diag, path, key);
  case K_DEV: return psl__field_str(r, &ev->dev, PSL_MAX_STR, 0, diag, path, key);
  default: /* K_HASH */
    ev->has_hash = 1;
    return psl__field_bin_n(r, ev->hash, PSL_HASH_BYTES, diag, path, key);
  }
}

int psl__event_decode(psl__rd_t *r, psl_event_t *ev, psl__ev_mode_t mode, const char *path,
                      psl_diag_t *diag) {
  const unsigned known = mode == PSL__EV_NEW ? NEW_KNOWN : STORED_KNOWN;
  unsigned required = mode == PSL__EV_NEW ? NEW_REQUIRED : STORED_REQUIRED;
  unsigned seen = 0;
  uint32_t n;
  int rc;
  if (mode == PSL__EV_WIRE)
    required |= BIT(K_HASH);
  memset(ev, 0, sizeof *ev);
  ev->expect = PSL_EXPECT_ANY;
  if ((rc = psl__rd_map(r, &n)))
    return psl__rd_fail(diag, rc, path, NULL, "map");
  for (uint32_t i = 0; i < n; i++) {
    psl_str_t key;
    if ((rc = psl__field_key(r, &key, diag, path)))
      return rc;
    int k = psl__key_index(key, ev_keys, K_COUNT);
    if (k < 0 || !(known & BIT(k))) { /* unknown here: forward compatibility */
      if ((rc = psl__rd_skip(r, PSL_MAX_DEPTH)))
        return psl__rd_fail(diag, rc, path, NULL, "value");
      continue;
    }
    if (seen & BIT(k))
      return psl__diag(diag, PSL_EINVALID, "%s.%s: duplicate key", path, ev_keys[k]);
    seen |= BIT(k);
    if ((rc = read_field(r, ev, k, mode, diag, path)))
      return rc;
  }
  for (int k = 0; k < K_COUNT; k++)
    if ((required & BIT(k)) && !(seen & BIT(k)))
      return psl__diag(diag, PSL_EINVALID, "%s.%s: missing", path, ev_keys[k]);
  return 0;
}

int psl_event_decode_stored(const uint8_t *buf, size_t len, psl_event_t *ev, psl_diag_t *diag) {
  psl__rd_t r;
  if (diag)
    diag->msg[0] = '\0';
  if (len > PSL_MAX_EVENT + HASH_ENTRY_BYTES)
    return psl__diag(diag, PSL_ETOO_BIG, "event: longer than %u bytes", PSL_MAX_EVENT);
  psl__rd_init(&r, buf, len);
  int rc = psl__event_decode(&r, ev, PSL__EV_STORED, "event", diag);
  if (rc == 0 && psl__rd_left(&r) != 0)
    rc = psl__diag(diag, PSL_EINVALID, "event: trailing bytes after the map");
  if (rc)
    memset(ev, 0, sizeof *ev);
  return rc;
}

/* ---- Encoding. */

/* The keys as MessagePack fixstr (0xa0 | length, then the characters), so that each is one
 * copy: the log's writer encodes 11 or 12 of them per event stored, and strlen plus two
 * appends per key were a tenth of the encoding (perf, bench-log).  proto/PROTOCOL.md's
 * vectors check these bytes. */
static const struct {
  uint8_t len;
  char b[8];
} ev_keys_mp[K_COUNT] = {
    {3, "\xa2id"},  {7, "\xa6stream"}, {5, "\xa4type"}, {3, "\xa2" "at"},  {5, "\xa4terr"},
    {5, "\xa4" "data"}, {4, "\xa3pii"},    {7, "\xa6" "expect"}, {4, "\xa3seq"}, {4, "\xa3ver"},
    {4, "\xa3rec"}, {3, "\xa2" "by"},     {4, "\xa3" "dev"},  {5, "\xa4hash"}};

static void w_key(psl__wr_t *w, int k) { psl__w_raw(w, ev_keys_mp[k].b, ev_keys_mp[k].len); }

/* The entries every form shares: id stream type at terr data [pii]. */
static void write_head(psl__wr_t *w, const psl_event_t *ev) {
  w_key(w, K_ID);
  psl__w_bin(w, ev->id, PSL_UUID_BYTES);
  w_key(w, K_STREAM);
  psl__w_pstr(w, ev->stream);
  w_key(w, K_TYPE);
  psl__w_pstr(w, ev->type);
  w_key(w, K_AT);
  psl__w_int(w, ev->at);
  w_key(w, K_TERR);
  psl__w_pstr(w, ev->terr);
  w_key(w, K_DATA);
  psl__w_raw(w, ev->data.ptr, ev->data.len);
  if (ev->pii.len) {
    w_key(w, K_PII);
    psl__w_raw(w, ev->pii.ptr, ev->pii.len);
  }
}

/* Stored form; with_hash appends `hash` (the wire form). */
static void write_stored(psl__wr_t *w, const psl_event_t *ev, int with_hash) {
  psl__w_map(w, (uint32_t)(11 + (ev->pii.len != 0) + (with_hash != 0)));
  write_head(w, ev);
  w_key(w, K_SEQ);
  psl__w_uint(w, ev->seq);
  w_key(w, K_VER);
  psl__w_uint(w, ev->ver);
  w_key(w, K_REC);
  psl__w_int(w, ev->rec);
  w_key(w, K_BY);
  psl__w_pstr(w, ev->by);
  w_key(w, K_DEV);
  psl__w_pstr(w, ev->dev);
  if (with_hash) {
    psl__w_raw(w, hash_entry_head, sizeof hash_entry_head);
    psl__w_raw(w, ev->hash, PSL_HASH_BYTES);
  }
}

void psl__event_write_new(psl__wr_t *w, const psl_event_t *ev) {
  int has_expect = ev->expect != PSL_EXPECT_ANY; /* absent means any: the default */
  psl__w_map(w, (uint32_t)(6 + (ev->pii.len != 0) + has_expect));
  write_head(w, ev);
  if (has_expect) {
    w_key(w, K_EXPECT);
    psl__w_int(w, ev->expect);
  }
}

void psl__event_write_wire(psl__wr_t *w, const psl_event_t *ev) { write_stored(w, ev, 1); }

/* What an encoder can check without re-validating `data`: the limits of the strings and that
 * data and pii at least start as the values they must be. */
static int check_encodable(const psl_event_t *ev) {
  if (ev->stream.len == 0 || ev->stream.len > PSL_MAX_STREAM || ev->type.len == 0 ||
      ev->type.len > PSL_MAX_TYPE || ev->terr.len == 0 || ev->terr.len > PSL_MAX_TERR ||
      ev->by.len > PSL_MAX_STR || ev->dev.len > PSL_MAX_STR)
    return PSL_EINVALID;
  if (ev->data.len == 0 || !ev->data.ptr)
    return PSL_EINVALID;
  psl__rd_t r;
  psl__rd_init(&r, ev->data.ptr, ev->data.len);
  if (!psl__rd_is_map(&r))
    return PSL_EINVALID;
  if (ev->pii.len) {
    psl__rd_init(&r, ev->pii.ptr, ev->pii.len);
    if (!psl__rd_is_map(&r) && !psl__rd_is_bin(&r))
      return PSL_EINVALID;
  }
  return 0;
}

int psl_event_encode_canonical(psl_buf_t *out, const psl_event_t *ev) {
  size_t start = out->len;
  psl__wr_t w = {out, check_encodable(ev)};
  write_stored(&w, ev, 0);
  if (!w.err && out->len - start > PSL_MAX_EVENT)
    w.err = PSL_ETOO_BIG;
  if (w.err)
    out->len = start; /* never leave half an event behind */
  return w.err;
}

int psl_event_wire_from_canonical(psl_buf_t *out, const uint8_t *canon, size_t len,
                                  const uint8_t hash[PSL_HASH_BYTES]) {
  /* A canonical event is a fixmap of 11 or 12 entries; 15 would leave no room for hash. */
  if (len < 1 || (canon[0] & 0xf0) != 0x80 || (canon[0] & 0x0f) == 0x0f)
    return PSL_EINVALID;
  int rc = psl_buf_reserve(out, len + HASH_ENTRY_BYTES);
  if (rc)
    return rc;
  uint8_t *p = psl_buf_data(out) + out->len;
  p[0] = (uint8_t)(canon[0] + 1);
  memcpy(p + 1, canon + 1, len - 1);
  memcpy(p + len, hash_entry_head, sizeof hash_entry_head);
  memcpy(p + len + sizeof hash_entry_head, hash, PSL_HASH_BYTES);
  out->len += len + HASH_ENTRY_BYTES;
  return 0;
}
