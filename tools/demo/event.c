/*
 * event.c — DOMAIN.md events for the demo data sets: one builder per type, writing `data`
 * (and `pii`) as MessagePack with the keys of DOMAIN.md, plus the small helpers every data
 * set needs (a seeded random generator, local dates, UUIDv7-shaped ids).
 *
 * The MessagePack writer below covers what the builders write: maps, arrays, str, positive
 * int, bool, bin 16 (uuids).  It writes into a fixed buffer; the sizes of psl_demo.h bound
 * every event, and a write past the end is dropped and flagged (never happens: the sizes are
 * checked by the tests, which validate every event with psl_domain_validate).
 */
#include <stdio.h>
#include <string.h>

#include "demo_int.h"
#include "psl_domain.h"

/* ---- Helpers. */

uint64_t psl__demo_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int psl__demo_range(uint64_t *state, int lo, int hi) {
  if (hi <= lo)
    return lo;
  return lo + (int)(psl__demo_rand(state) % (uint64_t)(hi - lo + 1));
}

int64_t psl__demo_local(int y, int m, int d, int h, int mi) {
  /* local midnight of the 1st, then days and hours: a change of summer time within the
   * month moves the hour by one, which the working hours we use absorb */
  return psl_local_month_start(y, m) + (int64_t)(d - 1) * PSL__DEMO_DAY +
         (int64_t)h * PSL__DEMO_HOUR + (int64_t)mi * PSL__DEMO_MINUTE;
}

void psl__demo_uuid(uint8_t id[PSL_UUID_BYTES], int64_t ms, uint64_t *state) {
  uint64_t a = psl__demo_rand(state), b = psl__demo_rand(state);
  for (int i = 0; i < 6; i++)
    id[i] = (uint8_t)((uint64_t)ms >> (8 * (5 - i)));
  memcpy(id + 6, &a, 2);
  memcpy(id + 8, &b, 8);
  id[6] = (uint8_t)(0x70 | (id[6] & 0x0f)); /* version 7 */
  id[8] = (uint8_t)(0x80 | (id[8] & 0x3f)); /* variant 10 */
}

void psl_demo_event_view(const psl_demo_event_t *e, psl_event_t *ev) {
  memset(ev, 0, sizeof *ev);
  memcpy(ev->id, e->id, PSL_UUID_BYTES);
  ev->stream = psl_str(e->stream);
  ev->type = psl_str(e->type);
  ev->terr = psl_str(e->terr);
  ev->at = e->at;
  ev->data.ptr = e->data;
  ev->data.len = e->data_len;
  if (e->pii_len) {
    ev->pii.ptr = e->pii;
    ev->pii.len = e->pii_len;
  }
  ev->expect = e->expect;
}

/* ---- A MessagePack writer over a fixed buffer. */

typedef struct {
  uint8_t *p;
  size_t cap, len;
  int overflow;
} mpw_t;

static void w_raw(mpw_t *w, const void *p, size_t n) {
  if (w->len + n > w->cap) {
    w->overflow = 1;
    return;
  }
  memcpy(w->p + w->len, p, n);
  w->len += n;
}

static void w_byte(mpw_t *w, uint8_t b) { w_raw(w, &b, 1); }

static void w_be(mpw_t *w, uint8_t tag, uint64_t v, int bytes) {
  w_byte(w, tag);
  for (int i = bytes - 1; i >= 0; i--)
    w_byte(w, (uint8_t)(v >> (8 * i)));
}

static void w_map(mpw_t *w, uint32_t n) {
  if (n < 16)
    w_byte(w, (uint8_t)(0x80 | n));
  else
    w_be(w, 0xde, n, 2);
}

static void w_array(mpw_t *w, uint32_t n) {
  if (n < 16)
    w_byte(w, (uint8_t)(0x90 | n));
  else
    w_be(w, 0xdc, n, 2);
}

static void w_str(mpw_t *w, const char *s) {
  size_t n = strlen(s);
  if (n < 32)
    w_byte(w, (uint8_t)(0xa0 | n));
  else if (n < 256)
    w_be(w, 0xd9, n, 1);
  else
    w_be(w, 0xda, n, 2);
  w_raw(w, s, n);
}

static void w_uint(mpw_t *w, uint64_t v) {
  if (v < 128)
    w_byte(w, (uint8_t)v);
  else if (v < 256)
    w_be(w, 0xcc, v, 1);
  else if (v < 65536)
    w_be(w, 0xcd, v, 2);
  else
    w_be(w, 0xce, v, 4);
}

static void w_bool(mpw_t *w, int b) { w_byte(w, b ? 0xc3 : 0xc2); }

static void w_uuid(mpw_t *w, const uint8_t id[PSL_UUID_BYTES]) {
  w_byte(w, 0xc4);
  w_byte(w, PSL_UUID_BYTES);
  w_raw(w, id, PSL_UUID_BYTES);
}

static void w_strs(mpw_t *w, const char *const *s, size_t n) {
  w_array(w, (uint32_t)n);
  for (size_t i = 0; i < n; i++)
    w_str(w, s[i]);
}

/* ---- The common part of every event. */

static void begin(psl_demo_event_t *e, psl__demo_stream_t *s, const char *type, int64_t at,
                  uint64_t *rng, mpw_t *w) {
  static const char part[] = "participant/", sess[] = "session/";
  size_t pl = s->session ? sizeof sess - 1 : sizeof part - 1;
  memset(e, 0, offsetof(psl_demo_event_t, data));
  psl__demo_uuid(e->id, at, rng);
  memcpy(e->stream, s->session ? sess : part, pl); /* "<kind>/<uuid>": a benchmark's millions */
  psl_uuid_format(s->id, e->stream + pl);
  e->type = type;
  memcpy(e->terr, s->terr, sizeof e->terr);
  e->at = at;
  e->expect = (int64_t)s->ver++;
  e->data_len = e->pii_len = 0;
  w->p = e->data;
  w->cap = sizeof e->data;
  w->len = 0;
  w->overflow = 0;
}

static void end(psl_demo_event_t *e, mpw_t *w) {
  e->data_len = w->overflow ? 0 : w->len;
  if (w->overflow)
    fprintf(stderr, "psl_demo: %s data over %u bytes\n", e->type, PSL_DEMO_MAX_DATA);
}

/* ---- Builders (DOMAIN.md's table, in its order). */

void psl__demo_referred(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                        const psl__demo_referral_t *r, uint64_t *rng) {
  mpw_t w;
  char name[32];
  begin(e, s, "participant.referred", at, rng, &w);
  w_map(&w, 8);
  w_str(&w, "programme");
  w_str(&w, r->programme);
  w_str(&w, "site");
  w_str(&w, r->site);
  w_str(&w, "source");
  w_str(&w, r->source);
  w_str(&w, "justice");
  w_str(&w, r->justice);
  w_str(&w, "gender");
  w_str(&w, r->gender);
  w_str(&w, "birth_year");
  w_uint(&w, (uint64_t)r->birth_year);
  w_str(&w, "education");
  w_str(&w, r->education);
  w_str(&w, "rsa");
  w_bool(&w, r->rsa);
  end(e, &w);
  /* pii: a made-up name, never a real person's */
  mpw_t p = {e->pii, sizeof e->pii, 0, 0};
  snprintf(name, sizeof name, "Personne %06u", r->name_no);
  w_map(&p, 1);
  w_str(&p, "name");
  w_str(&p, name);
  e->pii_len = p.overflow ? 0 : p.len;
}

void psl__demo_engagement(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                          const char *kind, const char *const *objectives, size_t n,
                          uint64_t *rng) {
  mpw_t w;
  begin(e, s, "engagement.signed", at, rng, &w);
  w_map(&w, 2);
  w_str(&w, "kind");
  w_str(&w, kind);
  w_str(&w, "objectives");
  w_strs(&w, objectives, n);
  end(e, &w);
}

void psl__demo_diagnostic(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                          const char *const *barriers, size_t nbarriers,
                          const char *const *strengths, size_t nstrengths, int care,
                          uint64_t *rng) {
  mpw_t w;
  begin(e, s, "diagnostic.recorded", at, rng, &w);
  w_map(&w, 3);
  w_str(&w, "barriers");
  w_strs(&w, barriers, nbarriers);
  w_str(&w, "strengths");
  w_strs(&w, strengths, nstrengths);
  w_str(&w, "care_obligation");
  w_bool(&w, care);
  end(e, &w);
}

void psl__demo_lifted(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                      const char *barrier, const char *how, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "barrier.lifted", at, rng, &w);
  w_map(&w, how ? 2 : 1);
  w_str(&w, "barrier");
  w_str(&w, barrier);
  if (how) {
    w_str(&w, "how");
    w_str(&w, how);
  }
  end(e, &w);
}

void psl__demo_interview(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at, int minutes,
                         const char *place, const char *site, const char *const *topics,
                         size_t ntopics, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "interview.held", at, rng, &w);
  w_map(&w, site ? 4 : 3);
  w_str(&w, "minutes");
  w_uint(&w, (uint64_t)minutes);
  w_str(&w, "place");
  w_str(&w, place);
  if (site) {
    w_str(&w, "site");
    w_str(&w, site);
  }
  w_str(&w, "topics");
  w_strs(&w, topics, ntopics);
  end(e, &w);
}

void psl__demo_missed(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "appointment.missed", at, rng, &w);
  w_map(&w, 0);
  end(e, &w);
}

void psl__demo_partner_referred(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                                const uint8_t ref[PSL_UUID_BYTES], const char *partner_kind,
                                const char *kind, const char *partner, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "partner.referred", at, rng, &w);
  w_map(&w, 4);
  w_str(&w, "ref");
  w_uuid(&w, ref);
  w_str(&w, "partner_kind");
  w_str(&w, partner_kind);
  w_str(&w, "kind");
  w_str(&w, kind);
  w_str(&w, "partner");
  w_str(&w, partner);
  end(e, &w);
}

void psl__demo_partner_updated(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                               const uint8_t ref[PSL_UUID_BYTES], const char *status,
                               uint64_t *rng) {
  mpw_t w;
  begin(e, s, "partner.updated", at, rng, &w);
  w_map(&w, 2);
  w_str(&w, "ref");
  w_uuid(&w, ref);
  w_str(&w, "status");
  w_str(&w, status);
  end(e, &w);
}

void psl__demo_outcome(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                       const char *kind, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "outcome.recorded", at, rng, &w);
  w_map(&w, 1);
  w_str(&w, "kind");
  w_str(&w, kind);
  end(e, &w);
}

void psl__demo_transferred(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                           const char *terr, const char *site, const char *programme,
                           uint64_t *rng) {
  mpw_t w;
  if (terr) /* the event's own terr is the new territory (DOMAIN.md) */
    snprintf(s->terr, sizeof s->terr, "%s", terr);
  begin(e, s, "participant.transferred", at, rng, &w);
  w_map(&w, (uint32_t)(!!terr + !!site + !!programme));
  if (terr) {
    w_str(&w, "terr");
    w_str(&w, terr);
  }
  if (site) {
    w_str(&w, "site");
    w_str(&w, site);
  }
  if (programme) {
    w_str(&w, "programme");
    w_str(&w, programme);
  }
  end(e, &w);
}

void psl__demo_justice(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                       const char *justice, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "justice.changed", at, rng, &w);
  w_map(&w, 1);
  w_str(&w, "justice");
  w_str(&w, justice);
  end(e, &w);
}

void psl__demo_exited(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                      const char *reason, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "participant.exited", at, rng, &w);
  w_map(&w, 1);
  w_str(&w, "reason");
  w_str(&w, reason);
  end(e, &w);
}

void psl__demo_merged(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                      const uint8_t into[PSL_UUID_BYTES], uint64_t *rng) {
  mpw_t w;
  begin(e, s, "participant.merged", at, rng, &w);
  w_map(&w, 1);
  w_str(&w, "into");
  w_uuid(&w, into);
  end(e, &w);
}

void psl__demo_voided(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                      const uint8_t of[PSL_UUID_BYTES], const char *reason, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "event.voided", at, rng, &w);
  w_map(&w, 2);
  w_str(&w, "of");
  w_uuid(&w, of);
  w_str(&w, "reason");
  w_str(&w, reason);
  end(e, &w);
}

void psl__demo_session(psl_demo_event_t *e, psl__demo_stream_t *s, int64_t at,
                       const char *sequence, const char *site, int minutes,
                       const uint8_t (*attendees)[PSL_UUID_BYTES], size_t n,
                       const char *programme, uint64_t *rng) {
  mpw_t w;
  begin(e, s, "session.held", at, rng, &w);
  w_map(&w, programme ? 5 : 4);
  w_str(&w, "sequence");
  w_str(&w, sequence);
  w_str(&w, "site");
  w_str(&w, site);
  w_str(&w, "minutes");
  w_uint(&w, (uint64_t)minutes);
  w_str(&w, "attendees");
  w_array(&w, (uint32_t)n);
  for (size_t i = 0; i < n; i++)
    w_uuid(&w, attendees[i]);
  if (programme) {
    w_str(&w, "programme");
    w_str(&w, programme);
  }
  end(e, &w);
}
