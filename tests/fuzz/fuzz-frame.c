/*
 * fuzz-frame.c — the frame decoder (psl_msg_decode) and the stored-event codec on hostile
 * bytes: what every peer's frame goes through first, on the server and on the client.
 *
 * Properties checked beyond memory safety:
 *   - a decode that fails leaves *msg zeroed (nothing to free) and says why (diag);
 *   - what decodes re-encodes, and decode∘encode is stable: encode(decode(encode(m))) gives
 *     the same bytes as encode(m);
 *   - a stored event that decodes has a canonical form that decodes again to the same
 *     canonical bytes, and its wire form (psl_event_wire_from_canonical) and an `events`
 *     chunk holding it (psl_chunk_*) decode too, with the hash carried through.
 */
#include "fuzz.h"

#include <string.h>

#include "psl_proto.h"

static void check_zeroed(const psl_msg_t *m) {
  static const psl_msg_t zero;
  FUZZ_CHECK(memcmp(m, &zero, sizeof zero) == 0);
}

static void frame_round_trip(const uint8_t *data, size_t size) {
  psl_msg_t m, m2;
  psl_diag_t diag;
  psl_buf_t e1, e2;
  int rc = psl_msg_decode(data, size, &m, &diag);
  if (rc) {
    FUZZ_CHECK(rc == PSL_EINVALID || rc == PSL_ETOO_BIG || rc == PSL_ENOMEM);
    FUZZ_CHECK(diag.msg[0] != '\0' || rc == PSL_ENOMEM);
    check_zeroed(&m);
    return;
  }
  psl_buf_init(&e1, 0);
  psl_buf_init(&e2, 0);
  rc = psl_msg_encode(&e1, &m);
  FUZZ_CHECK(rc == 0);
  rc = psl_msg_decode(psl_buf_data(&e1), e1.len, &m2, &diag);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(m2.t == m.t && m2.has_id == m.has_id && m2.id == m.id);
  FUZZ_CHECK(psl_msg_encode(&e2, &m2) == 0);
  FUZZ_CHECK(e1.len == e2.len && memcmp(psl_buf_data(&e1), psl_buf_data(&e2), e1.len) == 0);
  psl_msg_free(&m2);
  psl_msg_free(&m);
  psl_buf_free(&e1);
  psl_buf_free(&e2);
}

static void stored_round_trip(const uint8_t *data, size_t size) {
  psl_event_t ev, ev2;
  psl_diag_t diag;
  psl_buf_t c1, c2, wire, chunk;
  psl_msg_t m;
  if (psl_event_decode_stored(data, size, &ev, &diag) != 0)
    return;
  psl_buf_init(&c1, 0);
  psl_buf_init(&c2, 0);
  psl_buf_init(&wire, 0);
  psl_buf_init(&chunk, 0);
  int rc = psl_event_encode_canonical(&c1, &ev);
  if (rc) { /* a stored event the decoder accepts but the canonical form cannot hold */
    FUZZ_CHECK(rc == PSL_EINVALID || rc == PSL_ETOO_BIG);
    FUZZ_CHECK(c1.len == 0);
    goto done;
  }
  FUZZ_CHECK(psl_event_decode_stored(psl_buf_data(&c1), c1.len, &ev2, &diag) == 0);
  FUZZ_CHECK(!ev2.has_hash);
  FUZZ_CHECK(psl_event_encode_canonical(&c2, &ev2) == 0);
  FUZZ_CHECK(c1.len == c2.len && memcmp(psl_buf_data(&c1), psl_buf_data(&c2), c1.len) == 0);

  FUZZ_CHECK(psl_event_wire_from_canonical(&wire, psl_buf_data(&c1), c1.len, ev.hash) == 0);
  FUZZ_CHECK(psl_event_decode_stored(psl_buf_data(&wire), wire.len, &ev2, &diag) == 0);
  FUZZ_CHECK(ev2.has_hash && memcmp(ev2.hash, ev.hash, PSL_HASH_BYTES) == 0);
  FUZZ_CHECK(ev2.seq == ev.seq && memcmp(ev2.id, ev.id, PSL_UUID_BYTES) == 0);

  psl_chunk_t ck;
  FUZZ_CHECK(psl_chunk_begin(&chunk, 7, &ck) == 0);
  FUZZ_CHECK(psl_chunk_add(&chunk, &ck, psl_buf_data(&c1), c1.len, ev.hash) == 0);
  psl_chunk_end(&chunk, &ck, ev.seq);
  rc = psl_msg_decode(psl_buf_data(&chunk), chunk.len, &m, &diag);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(m.t == PSL_MSG_EVENTS && m.u.events.n == 1 && m.u.events.last == ev.seq);
  FUZZ_CHECK(memcmp(m.u.events.events[0].hash, ev.hash, PSL_HASH_BYTES) == 0);
  psl_msg_free(&m);
done:
  psl_buf_free(&c1);
  psl_buf_free(&c2);
  psl_buf_free(&wire);
  psl_buf_free(&chunk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  frame_round_trip(data, size);
  stored_round_trip(data, size);
  return 0;
}
