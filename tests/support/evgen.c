/*
 * evgen.c — valid events of DOMAIN.md for tests and benchmarks (see evgen.h).
 */
#include "support/evgen.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "support/mpw.h"

/* Bytes of a one-event push frame that are not the event: the map header, `t`: "push",
 * `id`: a small uint, `events`: a one-element array header. */
#define PUSH_OVERHEAD 20u

static _Thread_local uint64_t rng;

static uint64_t next_rand(void) {
  if (rng == 0) {
    if (getrandom(&rng, sizeof rng, 0) != (ssize_t)sizeof rng || rng == 0)
      rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull | 1;
  }
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

int64_t evgen_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void evgen_uuid(uint8_t id[PSL_UUID_BYTES]) {
  uint64_t ms = (uint64_t)evgen_now_ms(), a = next_rand(), b = next_rand();
  for (int i = 0; i < 6; i++)
    id[i] = (uint8_t)(ms >> (8 * (5 - i)));
  memcpy(id + 6, &a, 2);
  memcpy(id + 8, &b, 8);
  id[6] = (uint8_t)(0x70 | (id[6] & 0x0f)); /* version 7 */
  id[8] = (uint8_t)(0x80 | (id[8] & 0x3f)); /* variant 10 */
}

void evgen_participant_stream(char *out, const uint8_t pid[PSL_UUID_BYTES]) {
  char u[PSL_UUID_STR + 1];
  psl_uuid_format(pid, u);
  snprintf(out, PSL_MAX_STREAM, "participant/%s", u);
}

/* Fill the common fields; data and pii are written by the caller through a psl_buf_t. */
static void fill(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *terr,
                 const char *type, int64_t expect) {
  memset(&e->ev, 0, sizeof e->ev);
  evgen_uuid(e->ev.id);
  evgen_participant_stream(e->stream, pid);
  snprintf(e->terr, sizeof e->terr, "%s", terr);
  e->ev.stream = psl_str(e->stream);
  e->ev.type = psl_str(type); /* string literal */
  e->ev.terr = psl_str(e->terr);
  e->ev.at = evgen_now_ms();
  e->ev.expect = expect;
}

static void store(uint8_t *dst, size_t cap, psl_bytes_t *field, psl_buf_t *b) {
  size_t n = b->len <= cap ? b->len : 0; /* an over-long value is dropped (never happens) */
  memcpy(dst, psl_buf_data(b), n);
  field->ptr = dst;
  field->len = n;
}

void evgen_referred(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *terr,
                    const char *name) {
  psl_buf_t b;
  mpw_t w;
  fill(e, pid, terr, "participant.referred", 0);
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, 8);
  mpw_str(&w, "programme");
  mpw_str(&w, "rsa93");
  mpw_str(&w, "site");
  mpw_str(&w, "csl-gagny");
  mpw_str(&w, "source");
  mpw_str(&w, "spip");
  mpw_str(&w, "justice");
  mpw_str(&w, "semi-liberty");
  mpw_str(&w, "gender");
  mpw_str(&w, "f");
  mpw_str(&w, "birth_year");
  mpw_uint(&w, 1990);
  mpw_str(&w, "education");
  mpw_str(&w, "3");
  mpw_str(&w, "rsa");
  mpw_bool(&w, 1);
  store(e->data, sizeof e->data, &e->ev.data, &b);
  psl_buf_reset(&b);
  mpw_map(&w, 1);
  mpw_str(&w, "name");
  mpw_str(&w, name);
  store(e->pii, sizeof e->pii, &e->ev.pii, &b);
  psl_buf_free(&b);
}

static const char *const topics[] = {"cv", "job-search", "housing", "training", "health",
                                     "rights", "mobility", "digital", "family", "budget"};
#define NTOPICS (sizeof topics / sizeof topics[0])

static void interview_data(evgen_t *e, size_t ntopics, size_t pad) {
  psl_buf_t b;
  mpw_t w;
  char filler[EVGEN_MAX_DATA];
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, 3);
  mpw_str(&w, "minutes");
  mpw_uint(&w, 45);
  mpw_str(&w, "place");
  mpw_str(&w, "detention");
  mpw_str(&w, "topics");
  mpw_array(&w, (uint32_t)(ntopics + (pad ? 1 : 0)));
  for (size_t i = 0; i < ntopics; i++)
    mpw_str(&w, topics[i % NTOPICS]);
  if (pad) {
    if (pad > sizeof filler)
      pad = sizeof filler;
    for (size_t i = 0; i < pad; i++)
      filler[i] = (char)('a' + i % 26);
    mpw_strn(&w, filler, pad);
  }
  store(e->data, sizeof e->data, &e->ev.data, &b);
  psl_buf_free(&b);
}

void evgen_interview(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *terr,
                     int64_t expect, size_t target) {
  fill(e, pid, terr, "interview.held", expect);
  interview_data(e, 3, 0);
  if (target == 0)
    return;
  size_t have = evgen_wire_size(&e->ev);
  if (have >= target)
    return;
  /* a str of k < 32 bytes costs k + 1; past 31 it costs k + 2 */
  size_t pad = target - have;
  pad = pad > 33 ? pad - 2 : pad > 1 ? pad - 1 : 1;
  interview_data(e, 3, pad);
}

void evgen_copy(evgen_t *dst, const evgen_t *src) {
  memcpy(dst, src, sizeof *dst);
  dst->ev.stream = psl_str(dst->stream);
  dst->ev.terr = psl_str(dst->terr);
  dst->ev.data.ptr = dst->data;
  if (src->ev.pii.len)
    dst->ev.pii.ptr = dst->pii;
}

size_t evgen_wire_size(const psl_event_t *ev) {
  psl_buf_t b;
  psl_msg_t m;
  size_t n;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_PUSH;
  m.has_id = 1;
  m.id = 1;
  m.u.push.events = (psl_event_t *)ev;
  m.u.push.n = 1;
  psl_buf_init(&b, 0);
  n = psl_msg_encode(&b, &m) == 0 && b.len > PUSH_OVERHEAD ? b.len - PUSH_OVERHEAD : 0;
  psl_buf_free(&b);
  return n;
}

void evgen_set_pii(evgen_t *e, const char *name, const char *phone, const char *notes) {
  psl_buf_t b;
  mpw_t w;
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, (uint32_t)(!!name + !!phone + !!notes));
  if (name) {
    mpw_str(&w, "name");
    mpw_str(&w, name);
  }
  if (phone) {
    mpw_str(&w, "phone");
    mpw_str(&w, phone);
  }
  if (notes) {
    mpw_str(&w, "notes");
    mpw_str(&w, notes);
  }
  store(e->pii, sizeof e->pii, &e->ev.pii, &b);
  psl_buf_free(&b);
}

void evgen_bare(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *terr,
                const char *type) {
  static const uint8_t empty_map = 0x80;
  fill(e, pid, terr, type, PSL_EXPECT_ANY);
  e->data[0] = empty_map;
  e->ev.data.ptr = e->data;
  e->ev.data.len = 1;
}

void evgen_transferred(evgen_t *e, const uint8_t pid[PSL_UUID_BYTES], const char *to) {
  psl_buf_t b;
  mpw_t w;
  fill(e, pid, to, "participant.transferred", PSL_EXPECT_ANY);
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, 1);
  mpw_str(&w, "terr");
  mpw_str(&w, to);
  store(e->data, sizeof e->data, &e->ev.data, &b);
  psl_buf_free(&b);
}

void evgen_session(evgen_t *e, const uint8_t sid[PSL_UUID_BYTES], const char *terr,
                   const uint8_t attendee[PSL_UUID_BYTES]) {
  psl_buf_t b;
  mpw_t w;
  char u[PSL_UUID_STR + 1];
  fill(e, sid, terr, "session.held", PSL_EXPECT_ANY);
  psl_uuid_format(sid, u);
  snprintf(e->stream, sizeof e->stream, "session/%s", u);
  e->ev.stream = psl_str(e->stream);
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, 4);
  mpw_str(&w, "sequence");
  mpw_str(&w, "info");
  mpw_str(&w, "site");
  mpw_str(&w, "csl-gagny");
  mpw_str(&w, "minutes");
  mpw_uint(&w, 90);
  mpw_str(&w, "attendees");
  mpw_array(&w, 1);
  mpw_bin(&w, attendee, PSL_UUID_BYTES);
  store(e->data, sizeof e->data, &e->ev.data, &b);
  psl_buf_free(&b);
}
