/*
 * chunk.c — an `events` frame built in place from stored records, for catch-up.
 *
 * The server does not know how many records fit in a chunk (PSL_CHUNK_BYTES) until it has
 * read them, nor the `last` seq the chunk covers (filtering may skip records), so both are
 * written with fixed-width headers and patched at the end:
 *
 *   84                     fixmap of 4
 *   a1 "t"    a6 "events"
 *   a3 "sub"  <uint>       shortest form
 *   a4 "last" cf <8>       uint64, patched by psl_chunk_end
 *   a6 "events" dd <4>     array32, count patched by psl_chunk_end
 *   <wire event>...        psl_event_wire_from_canonical of each record
 *
 * Fixed-width headers are valid MessagePack (a reader takes any width), so the frame is
 * decodable like any other; only the canonical form of an event demands shortest forms.
 */
#include "mpack.h"

int psl_chunk_begin(psl_buf_t *out, uint64_t sub, psl_chunk_t *ck) {
  static const uint8_t last_head[9] = {0xcf};
  static const uint8_t count_head[5] = {0xdd};
  size_t start = out->len;
  psl__wr_t w = {out, 0};
  psl__w_map(&w, 4);
  psl__w_cstr(&w, "t");
  psl__w_cstr(&w, "events");
  psl__w_cstr(&w, "sub");
  psl__w_uint(&w, sub);
  psl__w_cstr(&w, "last");
  ck->last_at = out->len + 1;
  psl__w_raw(&w, last_head, sizeof last_head);
  psl__w_cstr(&w, "events");
  ck->count_at = out->len + 1;
  psl__w_raw(&w, count_head, sizeof count_head);
  ck->n = 0;
  if (w.err)
    out->len = start;
  return w.err;
}

int psl_chunk_add(psl_buf_t *out, psl_chunk_t *ck, const uint8_t *canon, size_t len,
                  const uint8_t hash[PSL_HASH_BYTES]) {
  if (ck->n >= PSL_MAX_CHUNK_EVENTS)
    return PSL_ETOO_BIG;
  int rc = psl_event_wire_from_canonical(out, canon, len, hash);
  if (rc == 0)
    ck->n++;
  return rc;
}

void psl_chunk_end(psl_buf_t *out, psl_chunk_t *ck, uint64_t last) {
  uint8_t *d = psl_buf_data(out);
  psl__put_be64(d + ck->last_at, last);
  psl__put_be32(d + ck->count_at, ck->n);
}
