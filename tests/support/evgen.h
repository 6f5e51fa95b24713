/*
 * evgen.h — valid DOMAIN.md events for tests and benchmarks.
 *
 * An evgen_t holds one new event and the bytes it points to (stream name, `data`, `pii`), so
 * it must not be moved once filled (keep them in an array allocated once).  Event ids are
 * UUIDv7 (48-bit ms time, version 7, variant 10, random tail from a per-thread xorshift
 * seeded from getrandom): cheap enough for a benchmark's hundreds of thousands a second.
 */
#ifndef PSL_TESTS_EVGEN_H
#define PSL_TESTS_EVGEN_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

/* `data` and `pii` bytes one generated event holds: an interview padded to a benchmark's
 * 300 bytes needs ~250; 1 KiB leaves room for larger targets. */
#define EVGEN_MAX_DATA 1024u
#define EVGEN_MAX_PII 256u

typedef struct {
  psl_event_t ev;
  char stream[PSL_MAX_STREAM];
  char terr[PSL_MAX_TERR + 1];
  uint8_t data[EVGEN_MAX_DATA];
  uint8_t pii[EVGEN_MAX_PII];
} evgen_t;

void evgen_uuid(uint8_t id[PSL_UUID_BYTES]);
int64_t evgen_now_ms(void); /* wall clock, ms since the epoch */

/* "participant/<uuid>" into out[PSL_MAX_STREAM]. */
void evgen_participant_stream(char *out, const uint8_t pid[PSL_UUID_BYTES]);

/* participant.referred (expect 0) with pii {name}. */
void evgen_referred(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *terr,
                    const char *name);
/* interview.held with `expect`; its topics padded so that the event, encoded as in a push,
 * takes about `target` bytes (0: no padding). */
void evgen_interview(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *terr,
                     int64_t expect, size_t target);
/* Replace the event's pii by {name, phone, notes} (the NULL ones left out). */
void evgen_set_pii(evgen_t *e, const char *name, const char *phone, const char *notes);
/* An event whose data is the empty map (appointment.missed, participant.erased). */
void evgen_bare(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *terr,
                const char *type);
/* participant.transferred to territory `to` (the event's terr and data.terr). */
void evgen_transferred(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *to);
/* session.held on stream session/<sid> with one attendee. */
void evgen_session(evgen_t *e, const uint8_t sid[PSL_UUID_BYTES], const char *terr,
                   const uint8_t attendee[PSL_UUID_BYTES]);

/* The same event again (the same id): for re-sending duplicates. */
void evgen_copy(evgen_t *dst, const evgen_t *src);

/* Bytes ev takes inside a push frame (encoded alone in a one-event push, minus the push's
 * own header).  For reporting event sizes. */
size_t evgen_wire_size(const psl_event_t *ev);

#endif /* PSL_TESTS_EVGEN_H */
