/*
 * demo_int.h — what the files of libpsl-demo share: a deterministic random generator,
 * dates, and the builders of each DOMAIN.md event (event.c).  Not an API: psl_demo.h is.
 */
#ifndef PSL_DEMO_INT_H
#define PSL_DEMO_INT_H

#include <stddef.h>
#include <stdint.h>

#include "psl_demo.h"

#define PSL__DEMO_DAY INT64_C(86400000)
#define PSL__DEMO_HOUR INT64_C(3600000)
#define PSL__DEMO_MINUTE INT64_C(60000)

/* splitmix64: a seed gives one stream of numbers, the same on every machine. */
uint64_t psl__demo_rand(uint64_t *state);
/* An integer in [lo, hi]. */
int psl__demo_range(uint64_t *state, int lo, int hi);

/* ms since the epoch of local (Europe/Paris) time y-m-d h:mi. */
int64_t psl__demo_local(int y, int m, int d, int h, int mi);

/* A UUIDv7-shaped id: 48-bit ms time, version 7, variant 10, the rest from state. */
void psl__demo_uuid(uint8_t id[PSL_UUID_BYTES], int64_t ms, uint64_t *state);

/* One stream being written: its id, kind, current territory and version. */
typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  int session;                 /* 0: participant/<id>, 1: session/<id> */
  char terr[PSL_MAX_TERR + 1]; /* the participant's territory now (events carry it) */
  uint64_t ver;                /* events written so far */
} psl__demo_stream_t;

/* ---- Builders.  Each fills *e as the stream's next event at `at` (expect = s->ver, then
 * s->ver + 1), its id from rng.  A builder never fails: the data fit PSL_DEMO_MAX_DATA by
 * construction (the limits of psl_demo.h). */

typedef struct {
  const char *programme, *site, *source, *justice, *gender, *education;
  int birth_year, rsa;
  unsigned name_no; /* pii.name = "Personne <name_no>" */
} psl__demo_referral_t;

void psl__demo_referred(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                        const psl__demo_referral_t *r, uint64_t *rng);
void psl__demo_diagnostic(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                          const char *const *barriers, size_t nbarriers,
                          const char *const *strengths, size_t nstrengths, int care,
                          uint64_t *rng);
void psl__demo_engagement(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                          const char *kind, const char *const *objectives, size_t n,
                          uint64_t *rng);
void psl__demo_interview(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at, int minutes,
                         const char *place, const char *site, const char *const *topics,
                         size_t ntopics, uint64_t *rng);
void psl__demo_missed(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at, uint64_t *rng);
void psl__demo_lifted(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                      const char *barrier, const char *how, uint64_t *rng);
void psl__demo_partner_referred(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                                const uint8_t ref[PSL_UUID_BYTES], const char *partner_kind,
                                const char *kind, const char *partner, uint64_t *rng);
void psl__demo_partner_updated(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                               const uint8_t ref[PSL_UUID_BYTES], const char *status,
                               uint64_t *rng);
void psl__demo_outcome(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                       const char *kind, uint64_t *rng);
/* terr, site, programme: NULL when unchanged (at least one given).  Moves s->terr. */
void psl__demo_transferred(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                           const char *terr, const char *site, const char *programme,
                           uint64_t *rng);
void psl__demo_justice(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                       const char *justice, uint64_t *rng);
void psl__demo_exited(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                      const char *reason, uint64_t *rng);
void psl__demo_merged(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                      const uint8_t into[PSL_UUID_BYTES], uint64_t *rng);
void psl__demo_voided(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                      const uint8_t of[PSL_UUID_BYTES], const char *reason, uint64_t *rng);
/* A session stream's one event (s->ver is 0).  programme may be NULL. */
void psl__demo_session(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                       const char *sequence, const char *site, int minutes,
                       const uint8_t (*attendees)[PSL_UUID_BYTES], size_t n,
                       const char *programme, uint64_t *rng);

#endif /* PSL_DEMO_INT_H */
