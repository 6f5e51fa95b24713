/*
 * test-projection.c — the projections against a naive reference.
 *
 * THE MUST-HOLD (projection/property_*): over 1,000+ random event sequences — participants,
 * sessions, partner referrals, interviews, transfers (some dated before events already
 * recorded), voids (of any event, voids included), merges, erasures, x- types, all dated out
 * of order — the live projections (folded event by event, with the void recompute path),
 * a rebuild from scratch, the LMDB store (in transactions of random sizes) and the REFERENCE
 * below agree on every participant state and on counters for many (terr, year, month,
 * programme, site) queries.  The seed is printed; PSL_TEST_SEED replays one.
 *
 * The reference is deliberately naive and shares no code with the library's fold: for every
 * query it recomputes from the list of events which ones are effective (a backward pass over
 * each stream), sorts each participant's effective events by (at, seq) and reads the answer
 * off them ("latest" = last in that order; placement at t = the referral's, then every
 * transfer dated <= t in that order).
 */
#include <lmdb.h>
#include <msgpack.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"
#include "psl_domain.h"
#include "psl_domain_int.h"
#include "psl_log.h"

/* ---- Test events. */

enum { T_REF, T_ENG, T_DIAG, T_LIFT, T_INT, T_MISS, T_PREF, T_PUPD, T_OUT, T_TRANS, T_JUST,
       T_EXIT, T_MERGE, T_ERASE, T_VOID, T_X, T_SESS, T__N };

static const char *const type_names[T__N] = {
    "participant.referred", "engagement.signed", "diagnostic.recorded", "barrier.lifted",
    "interview.held", "appointment.missed", "partner.referred", "partner.updated",
    "outcome.recorded", "participant.transferred", "justice.changed", "participant.exited",
    "participant.merged", "participant.erased", "event.voided", "x-test.note", "session.held"};

#define NSITES 5
static const char *const sites[NSITES + 1] = {"", "ma-villepinte", "csl-gagny", "sas-noisy",
                                              "qsl-sante", "office"};
#define MAXP 8     /* participants per sequence */
#define MAXS 3     /* sessions per sequence */
#define MAXATT 10  /* attendees per session */
#define NREFS 3    /* partner referral ids per participant */
#define MAXE 200   /* events per sequence */
#define DAY INT64_C(86400000)
#define AT_BASE INT64_C(1672527600000) /* 2023-01-01 00:00 Paris */

typedef struct {
  int type, sess, idx; /* idx: participant or session index */
  uint8_t id[16];
  int64_t at;
  uint64_t seq;
  int terr;
  int programme, site, source, justice, gender, birth_year, education, rsa;
  int kind, partner_kind, status, reason, place, minutes, barrier, care;
  uint32_t barriers;
  int ref, into;
  uint8_t of[16];
  int natt, att[MAXATT]; /* participant index; >= MAXP: someone never referred */
  int tr_terr;           /* transfer: data.terr given */
  char stream[64];
  uint8_t data[512];
  size_t dlen;
} tev_t;

typedef struct {
  uint64_t seed;
  tev_t ev[MAXE];
  int n;
  int np, ns;
} seqgen_t;

static void uuid_of(uint64_t seed, int kind, int i, uint8_t out[16]) {
  uint64_t s = seed * 1000003u + (uint64_t)kind * 7919u + (uint64_t)i + 1;
  for (int b = 0; b < 16; b += 8) {
    uint64_t r = psl_test_rand(&s);
    memcpy(out + b, &r, 8);
  }
}

static void part_uuid(const seqgen_t *g, int p, uint8_t out[16]) { uuid_of(g->seed, 1, p, out); }
static void sess_uuid(const seqgen_t *g, int s, uint8_t out[16]) { uuid_of(g->seed, 2, s, out); }
static void ref_uuid(const seqgen_t *g, int p, int r, uint8_t out[16]) {
  uuid_of(g->seed, 3, p * NREFS + r, out);
}

static void stream_name(const char *prefix, const uint8_t id[16], char *out) {
  static const char hex[] = "0123456789abcdef";
  size_t j = strlen(prefix);
  memcpy(out, prefix, j);
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[j++] = '-';
    out[j++] = hex[id[i] >> 4];
    out[j++] = hex[id[i] & 15];
  }
  out[j] = '\0';
}

/* ---- Encoding with msgpack-c. */

static void pk_str(msgpack_packer *pk, const char *s) {
  msgpack_pack_str(pk, strlen(s));
  msgpack_pack_str_body(pk, s, strlen(s));
}
static void pk_code(msgpack_packer *pk, const char *key, psl_code_table_t t, int c) {
  pk_str(pk, key);
  pk_str(pk, psl_code_name(t, c));
}
static void pk_bin(msgpack_packer *pk, const uint8_t *b) {
  msgpack_pack_bin(pk, 16);
  msgpack_pack_bin_body(pk, b, 16);
}

static void encode(const seqgen_t *g, tev_t *e) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  uint8_t u[16];
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  switch (e->type) {
  case T_REF:
    msgpack_pack_map(&pk, 8);
    pk_code(&pk, "programme", PSL_CODE_PROGRAMME, e->programme);
    pk_str(&pk, "site");
    pk_str(&pk, sites[e->site]);
    pk_code(&pk, "source", PSL_CODE_SOURCE, e->source);
    pk_code(&pk, "justice", PSL_CODE_JUSTICE, e->justice);
    pk_code(&pk, "gender", PSL_CODE_GENDER, e->gender);
    pk_str(&pk, "birth_year");
    msgpack_pack_int(&pk, e->birth_year);
    pk_code(&pk, "education", PSL_CODE_EDUCATION, e->education);
    pk_str(&pk, "rsa");
    e->rsa ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    break;
  case T_ENG:
    msgpack_pack_map(&pk, 2);
    pk_code(&pk, "kind", PSL_CODE_ENGAGEMENT, e->kind);
    pk_str(&pk, "objectives");
    msgpack_pack_array(&pk, 1);
    pk_str(&pk, "CV");
    break;
  case T_DIAG: {
    int nb = 0;
    for (int b = 0; b < 16; b++)
      nb += (e->barriers >> b) & 1;
    msgpack_pack_map(&pk, 3);
    pk_str(&pk, "barriers");
    msgpack_pack_array(&pk, (size_t)nb);
    for (int b = 0; b < 16; b++)
      if ((e->barriers >> b) & 1)
        pk_str(&pk, psl_code_name(PSL_CODE_BARRIER, b + 1));
    pk_str(&pk, "strengths");
    msgpack_pack_array(&pk, 0);
    pk_str(&pk, "care_obligation");
    e->care ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    break;
  }
  case T_LIFT:
    msgpack_pack_map(&pk, 1);
    pk_code(&pk, "barrier", PSL_CODE_BARRIER, e->barrier);
    break;
  case T_INT:
    msgpack_pack_map(&pk, e->site ? 4 : 3);
    pk_str(&pk, "minutes");
    msgpack_pack_int(&pk, e->minutes);
    pk_code(&pk, "place", PSL_CODE_PLACE, e->place);
    pk_str(&pk, "topics");
    msgpack_pack_array(&pk, 0);
    if (e->site) {
      pk_str(&pk, "site");
      pk_str(&pk, sites[e->site]);
    }
    break;
  case T_PREF:
    msgpack_pack_map(&pk, 4);
    pk_str(&pk, "ref");
    ref_uuid(g, e->idx, e->ref, u);
    pk_bin(&pk, u);
    pk_code(&pk, "partner_kind", PSL_CODE_PARTNER_KIND, e->partner_kind);
    pk_code(&pk, "kind", PSL_CODE_REFERRAL_KIND, e->kind);
    pk_str(&pk, "partner");
    pk_str(&pk, "Carton Plein");
    break;
  case T_PUPD:
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "ref");
    ref_uuid(g, e->idx, e->ref, u);
    pk_bin(&pk, u);
    pk_code(&pk, "status", PSL_CODE_REFERRAL_STATUS, e->status);
    break;
  case T_OUT:
    msgpack_pack_map(&pk, 1);
    pk_code(&pk, "kind", PSL_CODE_OUTCOME, e->kind);
    break;
  case T_TRANS:
    msgpack_pack_map(&pk, (size_t)((e->tr_terr != 0) + (e->site != 0) + (e->programme != 0)));
    if (e->tr_terr)
      pk_code(&pk, "terr", PSL_CODE_TERR, e->terr);
    if (e->site) {
      pk_str(&pk, "site");
      pk_str(&pk, sites[e->site]);
    }
    if (e->programme)
      pk_code(&pk, "programme", PSL_CODE_PROGRAMME, e->programme);
    break;
  case T_JUST:
    msgpack_pack_map(&pk, 1);
    pk_code(&pk, "justice", PSL_CODE_JUSTICE, e->justice);
    break;
  case T_EXIT:
    msgpack_pack_map(&pk, 1);
    pk_code(&pk, "reason", PSL_CODE_EXIT_REASON, e->reason);
    break;
  case T_MERGE:
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "into");
    part_uuid(g, e->into, u);
    pk_bin(&pk, u);
    break;
  case T_VOID:
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "of");
    pk_bin(&pk, e->of);
    pk_str(&pk, "reason");
    pk_str(&pk, "entered in error");
    break;
  case T_X:
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "anything");
    msgpack_pack_int(&pk, 1);
    break;
  case T_SESS:
    msgpack_pack_map(&pk, e->programme ? 5 : 4);
    pk_code(&pk, "sequence", PSL_CODE_SEQUENCE, 1 + e->kind % 8);
    pk_str(&pk, "site");
    pk_str(&pk, sites[e->site]);
    pk_str(&pk, "minutes");
    msgpack_pack_int(&pk, 120);
    pk_str(&pk, "attendees");
    msgpack_pack_array(&pk, (size_t)e->natt);
    for (int i = 0; i < e->natt; i++) {
      part_uuid(g, e->att[i], u);
      pk_bin(&pk, u);
    }
    if (e->programme)
      pk_code(&pk, "programme", PSL_CODE_PROGRAMME, e->programme);
    break;
  default: /* appointment.missed, participant.erased */
    msgpack_pack_map(&pk, 0);
    break;
  }
  if (sb.size > sizeof e->data)
    psl_test_fail(__FILE__, __LINE__, "event data too large");
  memcpy(e->data, sb.data, sb.size);
  e->dlen = sb.size;
  msgpack_sbuffer_destroy(&sb);
}

static void to_event(const tev_t *e, psl_event_t *ev) {
  memset(ev, 0, sizeof *ev);
  memcpy(ev->id, e->id, 16);
  ev->stream = psl_str(e->stream);
  ev->type = psl_str(type_names[e->type]);
  ev->at = e->at;
  ev->terr = psl_str(psl_code_name(PSL_CODE_TERR, e->terr));
  ev->data.ptr = e->data;
  ev->data.len = e->dlen;
  if (e->type == T_REF) {
    /* {"name": "Test Person"}: pii travels with the event, never into a projection */
    static const uint8_t pii[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xab, 'T', 'e', 's', 't',
                                  ' ', 'P', 'e', 'r', 's', 'o', 'n'};
    ev->pii.ptr = pii;
    ev->pii.len = sizeof pii;
  }
  ev->expect = PSL_EXPECT_ANY;
  ev->seq = e->seq;
  ev->by = psl_str("test");
  ev->dev = psl_str("test-device");
}

/* ---- The generator. */

static int rnd(uint64_t *s, int n) { return (int)(psl_test_rand(s) % (uint64_t)n); }

static int earlier_in_stream(const seqgen_t *g, int upto, const char *stream, uint64_t *s) {
  int cand[MAXE], n = 0;
  for (int i = 0; i < upto; i++)
    if (strcmp(g->ev[i].stream, stream) == 0)
      cand[n++] = i;
  return n ? cand[rnd(s, n)] : -1;
}

static void gen_participant_event(seqgen_t *g, tev_t *e, int exists, uint64_t *s) {
  static const int weights[T__N] = {0, 5, 6, 4, 20, 5, 5, 5, 4, 5, 3, 4, 1, 1, 9, 2, 0};
  if (!exists) {
    e->type = T_REF;
  } else {
    int total = 0, r;
    for (int t = 0; t < T__N; t++)
      total += weights[t];
    r = rnd(s, total);
    for (e->type = 0; r >= weights[e->type]; e->type++)
      r -= weights[e->type];
  }
  switch (e->type) {
  case T_REF:
    e->programme = 1 + rnd(s, 4);
    e->site = 1 + rnd(s, NSITES);
    e->source = 1 + rnd(s, 8);
    e->justice = 1 + rnd(s, 6);
    e->gender = 1 + rnd(s, 3);
    e->birth_year = 1950 + rnd(s, 60);
    e->education = 1 + rnd(s, 5);
    e->rsa = rnd(s, 2);
    break;
  case T_ENG:
    e->kind = 1 + rnd(s, 3);
    break;
  case T_DIAG:
    for (int b = 0; b < 16; b++)
      if (rnd(s, 100) < (b < 2 ? 30 : 12))
        e->barriers |= 1u << b;
    e->care = rnd(s, 2);
    break;
  case T_LIFT:
    e->barrier = 1 + rnd(s, 16);
    break;
  case T_INT:
    e->minutes = 15 + rnd(s, 90);
    e->place = 1 + rnd(s, 5);
    e->site = rnd(s, 2) ? 1 + rnd(s, NSITES) : 0;
    break;
  case T_PREF:
    e->ref = rnd(s, NREFS);
    e->kind = 1 + rnd(s, 7);
    e->partner_kind = 1 + rnd(s, 7);
    break;
  case T_PUPD:
    e->ref = rnd(s, NREFS);
    e->status = 1 + rnd(s, 5);
    break;
  case T_OUT:
    e->kind = 1 + rnd(s, 8);
    break;
  case T_TRANS:
    e->tr_terr = rnd(s, 2);
    e->site = rnd(s, 2) ? 1 + rnd(s, NSITES) : 0;
    e->programme = rnd(s, 2) ? 1 + rnd(s, 4) : 0;
    if (!e->tr_terr && !e->site && !e->programme)
      e->tr_terr = 1;
    break;
  case T_JUST:
    e->justice = 1 + rnd(s, 6);
    break;
  case T_EXIT:
    e->reason = 1 + rnd(s, 9);
    break;
  case T_MERGE:
    e->into = (e->idx + 1 + rnd(s, g->np - 1 > 0 ? g->np - 1 : 1)) % (g->np > 1 ? g->np : 2);
    if (e->into == e->idx)
      e->into = MAXP; /* someone never referred */
    break;
  default:
    break;
  }
}

static void gen(seqgen_t *g, uint64_t seed) {
  uint64_t s = seed;
  int exists_p[MAXP] = {0}, exists_s[MAXS] = {0};
  memset(g, 0, sizeof *g);
  g->seed = seed;
  g->np = 2 + rnd(&s, MAXP - 1);
  g->ns = rnd(&s, MAXS + 1);
  g->n = 20 + rnd(&s, MAXE - 20);
  for (int i = 0; i < g->n; i++) {
    tev_t *e = &g->ev[i];
    uint8_t u[16];
    e->seq = (uint64_t)i + 1;
    for (int b = 0; b < 16; b += 8) {
      uint64_t r = psl_test_rand(&s);
      memcpy(e->id + b, &r, 8);
    }
    /* dates over three years, often out of order, sometimes equal to an earlier one */
    e->at = AT_BASE + (int64_t)rnd(&s, 3 * 365) * DAY + (int64_t)rnd(&s, (int)(DAY / 1000)) * 1000;
    if (i > 0 && rnd(&s, 6) == 0)
      e->at = g->ev[rnd(&s, i)].at;
    e->terr = 1 + rnd(&s, 4);
    if (g->ns && rnd(&s, 100) < 12) {
      e->sess = 1;
      e->idx = rnd(&s, g->ns);
      sess_uuid(g, e->idx, u);
      stream_name("session/", u, e->stream);
      int v = exists_s[e->idx] ? earlier_in_stream(g, i, e->stream, &s) : -1;
      if (v >= 0 && rnd(&s, 100) < 25) {
        e->type = T_VOID;
        memcpy(e->of, g->ev[v].id, 16);
      } else {
        e->type = T_SESS;
        e->site = 1 + rnd(&s, NSITES);
        e->programme = rnd(&s, 3) ? 1 + rnd(&s, 4) : 0;
        e->kind = rnd(&s, 8);
        int pool[MAXP + 2], np = g->np + 2;
        for (int p = 0; p < np; p++)
          pool[p] = p < g->np ? p : MAXP + p; /* two never referred */
        for (int p = np - 1; p > 0; p--) {
          int j = rnd(&s, p + 1), t = pool[p];
          pool[p] = pool[j];
          pool[j] = t;
        }
        e->natt = rnd(&s, np + 1);
        if (e->natt > MAXATT)
          e->natt = MAXATT;
        memcpy(e->att, pool, sizeof e->att[0] * (size_t)e->natt);
        exists_s[e->idx] = 1;
      }
    } else {
      e->idx = rnd(&s, g->np);
      part_uuid(g, e->idx, u);
      stream_name("participant/", u, e->stream);
      gen_participant_event(g, e, exists_p[e->idx], &s);
      exists_p[e->idx] = 1;
      if (e->type == T_VOID) {
        int v = earlier_in_stream(g, i, e->stream, &s);
        if (v >= 0 && rnd(&s, 10))
          memcpy(e->of, g->ev[v].id, 16);
        else
          memcpy(e->of, e->id, 16), e->of[0] ^= 0xff; /* names nothing in the stream */
      }
    }
    encode(g, e);
  }
}

/* Each generated event must be one the server accepts. */
static void check_valid(const seqgen_t *g) {
  for (int i = 0; i < g->n; i++) {
    psl_event_t ev;
    psl_diag_t d;
    uint64_t ver = 0;
    for (int j = 0; j < i; j++)
      ver += strcmp(g->ev[j].stream, g->ev[i].stream) == 0;
    to_event(&g->ev[i], &ev);
    ev.seq = 0;
    if (psl_domain_validate(&ev, ver, &d))
      psl_test_fail(__FILE__, __LINE__, "seed %llu: generated event %d (%s) invalid: %s",
                    (unsigned long long)g->seed, i, type_names[g->ev[i].type], d.msg);
  }
}

/* ---- The stream iterator the stores recompute from. */

typedef struct {
  const seqgen_t *g;
  int upto; /* events recorded so far */
} evsrc_t;

static int test_iter(void *arg, psl_str_t stream, uint64_t before, psl_event_fn fn, void *fnarg) {
  const evsrc_t *src = arg;
  for (int i = 0; i < src->upto; i++) {
    const tev_t *e = &src->g->ev[i];
    if (strlen(e->stream) != stream.len || memcmp(e->stream, stream.ptr, stream.len) != 0)
      continue;
    if (before && e->seq >= before)
      continue;
    psl_event_t ev;
    to_event(e, &ev);
    int rc = fn(fnarg, &ev);
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- The reference. */

typedef struct {
  int terr, programme, site;
} rplace_t;

typedef struct {
  const seqgen_t *g;
  int k;          /* events 0..k-1 are recorded */
  uint8_t eff[MAXE];
  int list[MAXP][MAXE]; /* per participant: effective non-void events, by (at, seq) */
  int nlist[MAXP];
} world_t;

static int by_when(const seqgen_t *g, int a, int b) {
  const tev_t *x = &g->ev[a], *y = &g->ev[b];
  if (x->at != y->at)
    return x->at < y->at ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void world_build(world_t *w, const seqgen_t *g, int k) {
  memset(w, 0, sizeof *w);
  w->g = g;
  w->k = k;
  /* effective unless a later effective void of the same stream names it */
  for (int i = k - 1; i >= 0; i--) {
    w->eff[i] = 1;
    for (int j = i + 1; j < k; j++)
      if (w->eff[j] && g->ev[j].type == T_VOID && strcmp(g->ev[j].stream, g->ev[i].stream) == 0 &&
          memcmp(g->ev[j].of, g->ev[i].id, 16) == 0)
        w->eff[i] = 0;
  }
  for (int i = 0; i < k; i++) {
    const tev_t *e = &g->ev[i];
    if (e->sess || !w->eff[i] || e->type == T_VOID)
      continue;
    int p = e->idx, n = w->nlist[p]++;
    /* insertion sort by (at, seq) */
    while (n > 0 && by_when(g, w->list[p][n - 1], i) > 0) {
      w->list[p][n] = w->list[p][n - 1];
      n--;
    }
    w->list[p][n] = i;
  }
}

static const tev_t *ref_referral(const world_t *w, int p) {
  for (int i = 0; i < w->nlist[p]; i++)
    if (w->g->ev[w->list[p][i]].type == T_REF)
      return &w->g->ev[w->list[p][i]];
  return NULL;
}

static rplace_t place_at(const world_t *w, int p, int64_t at) {
  const tev_t *r = ref_referral(w, p);
  rplace_t pl = {r->terr, r->programme, r->site};
  for (int i = 0; i < w->nlist[p]; i++) {
    const tev_t *e = &w->g->ev[w->list[p][i]];
    if (e->type != T_TRANS || e->at > at)
      continue;
    pl.terr = e->terr;
    if (e->programme)
      pl.programme = e->programme;
    if (e->site)
      pl.site = e->site;
  }
  return pl;
}

typedef struct {
  int known, status, terr, programme, site, justice, gender, education, source, rsa, birth_year;
  uint32_t open, lifted;
  int care;
  uint32_t interviews, missed, sessions, outcomes[PSL_NOUTCOME + 1];
  uint64_t minutes;
  int64_t last_interview, referred_at, activated_at, exited_at;
  int exit_reason, merged, erased, into;
  struct {
    int referred, kind, partner_kind, status;
  } refs[NREFS];
} rstate_t;

static void ref_state(const world_t *w, int p, rstate_t *r) {
  const seqgen_t *g = w->g;
  int bstate[17] = {0};
  memset(r, 0, sizeof *r);
  r->care = -1;
  for (int i = 0; i < w->nlist[p]; i++) {
    const tev_t *e = &g->ev[w->list[p][i]];
    switch (e->type) {
    case T_REF:
      r->known = 1;
      r->referred_at = e->at;
      r->gender = e->gender;
      r->education = e->education;
      r->source = e->source;
      r->rsa = e->rsa;
      r->birth_year = e->birth_year;
      r->justice = e->justice;
      break;
    case T_JUST:
      r->justice = e->justice;
      break;
    case T_ENG:
      if (!r->activated_at)
        r->activated_at = e->at;
      break;
    case T_INT:
      r->interviews++;
      r->minutes += (uint64_t)e->minutes;
      r->last_interview = e->at;
      if (!r->activated_at)
        r->activated_at = e->at;
      break;
    case T_MISS:
      r->missed++;
      break;
    case T_DIAG:
      for (int b = 1; b <= 16; b++)
        if (e->barriers & (1u << (b - 1)))
          bstate[b] = 1;
      r->care = e->care;
      break;
    case T_LIFT:
      bstate[e->barrier] = 2;
      break;
    case T_PREF:
      r->refs[e->ref].referred = 1;
      r->refs[e->ref].kind = e->kind;
      r->refs[e->ref].partner_kind = e->partner_kind;
      break;
    case T_PUPD:
      r->refs[e->ref].status = e->status;
      break;
    case T_OUT:
      r->outcomes[e->kind]++;
      break;
    case T_EXIT:
      r->exit_reason = e->reason;
      r->exited_at = e->at;
      break;
    case T_MERGE:
      r->merged = 1;
      r->into = e->into;
      break;
    case T_ERASE:
      r->erased = 1;
      break;
    default:
      break;
    }
  }
  for (int b = 1; b <= 16; b++) {
    if (bstate[b] == 1)
      r->open |= 1u << (b - 1);
    if (bstate[b] == 2)
      r->lifted |= 1u << (b - 1);
  }
  for (int i = 0; i < w->k; i++) {
    const tev_t *e = &g->ev[i];
    if (e->type == T_SESS && w->eff[i])
      for (int a = 0; a < e->natt; a++)
        r->sessions += e->att[a] == p;
  }
  if (!r->known)
    return;
  rplace_t cur = place_at(w, p, INT64_MAX);
  r->terr = cur.terr;
  r->programme = cur.programme;
  r->site = cur.site;
  r->status = r->erased        ? PSL_STATUS_ERASED
              : r->merged      ? PSL_STATUS_MERGED
              : r->exit_reason ? PSL_STATUS_EXITED
              : r->activated_at ? PSL_STATUS_ACTIVE
                                : PSL_STATUS_REFERRED;
}

static int place_matches(const psl_counters_query_t *q, int terr, int programme, int site) {
  return (!q->terr || terr == q->terr) && (!q->programme || programme == q->programme) &&
         (!q->site[0] || (site && strcmp(sites[site], q->site) == 0));
}

static int in_period(const psl_counters_query_t *q, int64_t at) {
  int y, m;
  psl_local_ym(at, &y, &m);
  return y == q->year && (!q->month || m == q->month);
}

static void ref_counters(const world_t *w, const psl_counters_query_t *q, psl_counters_t *c) {
  const seqgen_t *g = w->g;
  int64_t end = psl_local_month_start(q->year, q->month ? q->month + 1 : 13);
  memset(c, 0, sizeof *c);
  c->q = *q;
  for (int i = 0; i < w->k; i++) {
    const tev_t *e = &g->ev[i];
    if (e->type == T_SESS && w->eff[i] && in_period(q, e->at) &&
        place_matches(q, e->terr, e->programme, e->site)) {
      c->sessions++;
      c->session_attendance += e->natt;
    }
  }
  for (int p = 0; p < g->np; p++) {
    const tev_t *r = ref_referral(w, p);
    if (!r)
      continue;
    int followed = 0, merged = 0;
    for (int i = 0; i < w->nlist[p]; i++) {
      const tev_t *e = &g->ev[w->list[p][i]];
      merged |= e->type == T_MERGE;
      if (!in_period(q, e->at))
        continue;
      rplace_t pl = place_at(w, p, e->at);
      if (!place_matches(q, pl.terr, pl.programme, pl.site))
        continue;
      if (e->type != T_MERGE && e->type != T_ERASE)
        followed = 1;
      if (e->type == T_INT) {
        c->interviews++;
        c->interview_minutes += e->minutes;
      } else if (e->type == T_MISS) {
        c->missed++;
      } else if (e->type == T_PREF) {
        c->partner_referrals[e->kind]++;
      } else if (e->type == T_OUT) {
        c->outcomes[e->kind]++;
        c->outcome_classes[psl_outcome_class(e->kind)]++;
      }
    }
    if (merged || !followed)
      continue;
    rstate_t st;
    ref_state(w, p, &st);
    c->followed++;
    rplace_t rp = place_at(w, p, r->at);
    if (in_period(q, r->at) && place_matches(q, rp.terr, rp.programme, rp.site))
      c->referred++;
    if (st.activated_at && st.activated_at < end)
      c->active++;
    if (st.exit_reason && in_period(q, st.exited_at)) {
      rplace_t xp = place_at(w, p, st.exited_at);
      if (place_matches(q, xp.terr, xp.programme, xp.site)) {
        int emp = st.exit_reason == PSL_EXIT_JOB, tra = st.exit_reason == PSL_EXIT_TRAINING;
        for (int i = 0; i < w->nlist[p]; i++) {
          const tev_t *e = &g->ev[w->list[p][i]];
          if (e->type != T_OUT || e->at > st.exited_at)
            continue;
          int cl = psl_outcome_class(e->kind);
          emp |= cl == PSL_CLASS_DURABLE || cl == PSL_CLASS_TRANSITIONAL;
          tra |= e->kind == PSL_OUTCOME_TRAINING;
        }
        c->exited[st.exit_reason]++;
        c->esf_exit_employment += emp;
        c->esf_exit_training += tra;
      }
    }
    c->gender[st.gender]++;
    int age = q->year - st.birth_year;
    c->age_sum += age;
    c->age_n++;
    c->esf_under18 += age < 18;
    c->esf_18_29 += age >= 18 && age <= 29;
    c->esf_55plus += age >= 55;
    c->education[st.education <= 2 ? 1 : st.education <= 4 ? 2 : 3]++;
    int housing = 0, homeless = 0, care = 0;
    for (int i = 0; i < w->nlist[p]; i++) {
      const tev_t *e = &g->ev[w->list[p][i]];
      if (e->type != T_DIAG || e->at >= end)
        continue;
      housing |= (e->barriers & 3u) != 0;
      homeless |= (e->barriers & 1u) != 0;
      care |= e->care;
    }
    c->housing += housing;
    c->homeless += homeless;
    c->care_obligation += care;
    c->rsa += st.rsa;
    int64_t stop = end;
    if (q->now_ms && q->now_ms < stop)
      stop = q->now_ms;
    if (st.exit_reason && st.exited_at < stop)
      stop = st.exited_at;
    c->days_followed_sum += stop > r->at ? (stop - r->at) / DAY : 0;
    c->days_followed_n++;
  }
}

/* ---- Comparisons. */

static void fail_state(const seqgen_t *g, int k, int p, const char *what) {
  psl_test_fail(__FILE__, __LINE__, "seed %llu, after %d events, participant %d: %s differs",
                (unsigned long long)g->seed, k, p, what);
}

static void compare_state(const world_t *w, int p, int rc, const psl_participant_t *st) {
  rstate_t r;
  const seqgen_t *g = w->g;
  ref_state(w, p, &r);
  if (!r.known) {
    if (rc != PSL_ENOTFOUND)
      fail_state(g, w->k, p, "known");
    return;
  }
  if (rc)
    fail_state(g, w->k, p, "lookup");
#define SAME(a, b, name)                                                                    \
  do {                                                                                     \
    if ((long long)(a) != (long long)(b)) {                                                \
      fprintf(stderr, "  %s: library %lld, reference %lld\n", name, (long long)(a),        \
              (long long)(b));                                                             \
      fail_state(g, w->k, p, name);                                                        \
    }                                                                                      \
  } while (0)
  SAME(st->status, r.status, "status");
  SAME(st->terr, r.terr, "terr");
  SAME(st->programme, r.programme, "programme");
  if (strcmp(st->site, sites[r.site]) != 0)
    fail_state(g, w->k, p, "site");
  SAME(st->justice, r.justice, "justice");
  SAME(st->gender, r.gender, "gender");
  SAME(st->education, r.education, "education");
  SAME(st->source, r.source, "source");
  SAME(st->rsa, r.rsa, "rsa");
  SAME(st->birth_year, r.birth_year, "birth_year");
  SAME(st->barriers_open, r.open, "barriers_open");
  SAME(st->barriers_lifted, r.lifted, "barriers_lifted");
  SAME(st->care_obligation, r.care, "care_obligation");
  SAME(st->interviews, r.interviews, "interviews");
  SAME(st->interview_minutes, r.minutes, "interview_minutes");
  SAME(st->last_interview, r.last_interview, "last_interview");
  SAME(st->missed, r.missed, "missed");
  SAME(st->sessions_attended, r.sessions, "sessions_attended");
  SAME(st->referred_at, r.referred_at, "referred_at");
  SAME(st->activated_at, r.activated_at, "activated_at");
  SAME(st->exited_at, r.exited_at, "exited_at");
  SAME(st->exit_reason, r.exit_reason, "exit_reason");
  for (int k = 1; k <= PSL_NOUTCOME; k++)
    SAME(st->outcomes[k], r.outcomes[k], "outcomes");
  if (r.merged) {
    uint8_t u[16];
    part_uuid(g, r.into, u);
    if (memcmp(st->into, u, 16) != 0)
      fail_state(g, w->k, p, "into");
  }
  size_t nref = 0;
  for (int i = 0; i < NREFS; i++) {
    if (!r.refs[i].referred && !r.refs[i].status)
      continue;
    uint8_t u[16];
    ref_uuid(g, p, i, u);
    const psl_referral_t *x = NULL;
    for (size_t j = 0; j < st->nreferrals; j++)
      if (memcmp(st->referrals[j].ref, u, 16) == 0)
        x = &st->referrals[j];
    if (!x)
      fail_state(g, w->k, p, "referral missing");
    SAME(x->referred, r.refs[i].referred, "referral.referred");
    if (r.refs[i].referred) {
      SAME(x->kind, r.refs[i].kind, "referral.kind");
      SAME(x->partner_kind, r.refs[i].partner_kind, "referral.partner_kind");
    }
    SAME(x->status, r.refs[i].status, "referral.status");
    nref++;
  }
  SAME(st->nreferrals, nref, "referrals");
#undef SAME
}

static void print_counters(const char *who, const psl_counters_t *c) {
  psl_buf_t b;
  psl_buf_init(&b, 0);
  if (psl_counters_json(&b, c) == 0)
    fprintf(stderr, "  %s: %.*s\n", who, (int)b.len, (const char *)psl_buf_data(&b));
  fprintf(stderr, "  %s: age_sum %lld age_n %lld days %lld/%lld housing %lld homeless %lld care %lld\n",
          who, (long long)c->age_sum, (long long)c->age_n, (long long)c->days_followed_sum,
          (long long)c->days_followed_n, (long long)c->housing, (long long)c->homeless,
          (long long)c->care_obligation);
  psl_buf_free(&b);
}

static void compare_counters(const world_t *w, const psl_counters_t *got,
                             const psl_counters_query_t *q, const char *store) {
  psl_counters_t want;
  ref_counters(w, q, &want);
  if (!psl_counters_equal(got, &want)) {
    print_counters(store, got);
    print_counters("reference", &want);
    psl_test_fail(__FILE__, __LINE__, "seed %llu, after %d events: %s counters differ (terr %d "
                  "year %d month %d programme %d site '%s')",
                  (unsigned long long)w->g->seed, w->k, store, q->terr, q->year, q->month,
                  q->programme, q->site);
  }
}

/* A set of queries: every year, territory, and random months, programmes and sites. */
static int make_queries(psl_counters_query_t *qs, uint64_t *s) {
  int n = 0;
  for (int y = 2023; y <= 2025; y++) {
    CHECK_OK(psl_counters_query_init(&qs[n++], 0, y, 0, 0, NULL));
    for (int t = 1; t <= 4; t++)
      CHECK_OK(psl_counters_query_init(&qs[n++], t, y, 0, 0, NULL));
    CHECK_OK(psl_counters_query_init(&qs[n++], 0, y, 1 + rnd(s, 12), 0, NULL));
    CHECK_OK(psl_counters_query_init(&qs[n++], 1 + rnd(s, 4), y, 1 + rnd(s, 12), 0, NULL));
    CHECK_OK(psl_counters_query_init(&qs[n++], 0, y, 0, 1 + rnd(s, 4), NULL));
    CHECK_OK(psl_counters_query_init(&qs[n++], 0, y, 0, 0, sites[1 + rnd(s, NSITES)]));
    CHECK_OK(psl_counters_query_init(&qs[n++], 1 + rnd(s, 4), y, rnd(s, 13), rnd(s, 5),
                                     rnd(s, 2) ? sites[1 + rnd(s, NSITES)] : NULL));
  }
  qs[n - 1].now_ms = AT_BASE + 2 * 365 * DAY + 100 * DAY; /* a year in progress */
  return n;
}

#define MAXQ 32

typedef struct {
  psl_projdb_t *db;
  MDB_env *env;
} lmdb_t;

static void lmdb_open(lmdb_t *l) {
  MDB_txn *txn;
  char dir[512];
  snprintf(dir, sizeof dir, "%s/proj", psl_test_tmpdir());
  mkdir(dir, 0700);
  CHECK_OK(mdb_env_create(&l->env));
  CHECK_OK(mdb_env_set_maxdbs(l->env, 16));
  CHECK_OK(mdb_env_set_mapsize(l->env, (size_t)1 << 30));
  CHECK_OK(mdb_env_open(l->env, dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS, 0600));
  CHECK_OK(mdb_txn_begin(l->env, NULL, 0, &txn));
  CHECK_OK(psl_projdb_open(&l->db, l->env, txn));
  CHECK_OK(mdb_txn_commit(txn));
}

static void lmdb_close(lmdb_t *l) {
  psl_projdb_free(l->db);
  mdb_env_close(l->env);
}

static void lmdb_clear(lmdb_t *l) {
  psl_proj_t *empty;
  MDB_txn *txn;
  CHECK_OK(psl_proj_new(&empty));
  CHECK_OK(mdb_txn_begin(l->env, NULL, 0, &txn));
  CHECK_OK(psl_projdb_store(l->db, txn, empty));
  CHECK_OK(mdb_txn_commit(txn));
  psl_proj_free(empty);
}

/* Compare a memory store and (when txn) the LMDB store with the reference at event k. */
static void check_all(const seqgen_t *g, int k, psl_proj_t *mem, const char *name, lmdb_t *l,
                      uint64_t *qs_seed) {
  world_t *w = malloc(sizeof *w);
  psl_counters_query_t qs[MAXQ];
  MDB_txn *txn = NULL;
  world_build(w, g, k);
  if (l)
    CHECK_OK(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn));
  for (int p = 0; p < g->np; p++) {
    uint8_t u[16];
    psl_participant_t st;
    part_uuid(g, p, u);
    int rc = psl_proj_participant(mem, u, &st);
    compare_state(w, p, rc, &st);
    if (l) {
      psl_participant_t st2;
      int rc2 = psl_projdb_participant(l->db, txn, u, &st2);
      CHECK_EQ(rc2, rc);
      if (!rc)
        CHECK(psl_participant_equal(&st, &st2));
      psl_participant_free(&st2);
    }
    psl_participant_free(&st);
  }
  int nq = make_queries(qs, qs_seed);
  for (int i = 0; i < nq; i++) {
    psl_counters_t c;
    CHECK_OK(psl_proj_counters(mem, &qs[i], &c));
    compare_counters(w, &c, &qs[i], name);
    if (l) {
      CHECK_OK(psl_projdb_counters(l->db, txn, &qs[i], &c));
      compare_counters(w, &c, &qs[i], "lmdb");
    }
  }
  if (txn)
    mdb_txn_abort(txn);
  free(w);
}

static uint64_t test_seed(void) {
  const char *s = getenv("PSL_TEST_SEED");
  return s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);
}

/* A caseload as (id, status) pairs, in the order given. */
typedef struct {
  struct {
    uint8_t id[16];
    int status;
  } entry[MAXP + 2];
  int n;
} caseload_t;

static int caseload_cb(void *arg, const psl_participant_t *st) {
  caseload_t *c = arg;
  if (c->n == MAXP + 2)
    return PSL_ETOO_BIG;
  memcpy(c->entry[c->n].id, st->id, 16);
  c->entry[c->n].status = st->status;
  c->n++;
  return 0;
}

/* Fold sequence g into mem (live, event by event) and the LMDB store (in transactions of
 * random sizes), checking both against the reference at a few points; then a rebuild. */
static void run_sequence(seqgen_t *g, lmdb_t *l, uint64_t *s) {
  psl_proj_t *live, *rebuilt;
  evsrc_t src = {g, 0};
  MDB_txn *txn = NULL;
  int txn_left = 0;
  check_valid(g);
  CHECK_OK(psl_proj_new(&live));
  if (l)
    lmdb_clear(l);
  int checkpoint = 1 + rnd(s, g->n);
  for (int i = 0; i < g->n; i++) {
    psl_event_t ev;
    to_event(&g->ev[i], &ev);
    src.upto = i;
    CHECK_OK(psl_proj_apply(live, &ev, test_iter, &src));
    if (l) {
      if (!txn) {
        CHECK_OK(mdb_txn_begin(l->env, NULL, 0, &txn));
        txn_left = 1 + rnd(s, 20);
      }
      CHECK_OK(psl_projdb_apply(l->db, txn, &ev, test_iter, &src));
      if (--txn_left == 0 || i == g->n - 1 || i + 1 == checkpoint) {
        CHECK_OK(mdb_txn_commit(txn));
        txn = NULL;
      }
    }
    if (i + 1 == checkpoint)
      check_all(g, i + 1, live, "live", l, s);
  }
  check_all(g, g->n, live, "live", l, s);
  /* a rebuild: the whole list folded into a new store */
  CHECK_OK(psl_proj_new(&rebuilt));
  src.upto = g->n;
  for (int i = 0; i < g->n; i++) {
    psl_event_t ev;
    to_event(&g->ev[i], &ev);
    src.upto = i;
    CHECK_OK(psl_proj_apply(rebuilt, &ev, test_iter, &src));
  }
  check_all(g, g->n, rebuilt, "rebuild", NULL, s);
  if (l) {
    psl_diag_t d;
    CHECK_OK(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn));
    int rc = psl_projdb_compare(l->db, txn, rebuilt, &d);
    if (rc)
      psl_test_fail(__FILE__, __LINE__, "seed %llu: %s", (unsigned long long)g->seed, d.msg);
    /* caseloads and reports read other indexes: the same from both stores */
    for (int t = 0; t <= 4; t++) {
      caseload_t a, b;
      memset(&a, 0, sizeof a);
      memset(&b, 0, sizeof b);
      CHECK_OK(psl_proj_caseload(rebuilt, t, caseload_cb, &a));
      CHECK_OK(psl_projdb_caseload(l->db, txn, t, caseload_cb, &b));
      CHECK_EQ(a.n, b.n);
      CHECK(memcmp(a.entry, b.entry, sizeof a.entry[0] * (size_t)a.n) == 0);
    }
    int year = 2023 + rnd(s, 3), terr = rnd(s, 5);
    psl_report_t ra, rb;
    psl_buf_t ba, bb;
    psl_buf_init(&ba, 0);
    psl_buf_init(&bb, 0);
    CHECK_OK(psl_proj_report(rebuilt, year, terr, &ra));
    CHECK_OK(psl_projdb_report(l->db, txn, year, terr, &rb));
    CHECK_OK(psl_report_json(&ba, &ra));
    CHECK_OK(psl_report_json(&bb, &rb));
    CHECK_EQ(ba.len, bb.len);
    CHECK_MEM(psl_buf_data(&ba), psl_buf_data(&bb), ba.len);
    psl_report_free(&ra);
    psl_report_free(&rb);
    psl_buf_free(&ba);
    psl_buf_free(&bb);
    mdb_txn_abort(txn);
  }
  psl_proj_free(live);
  psl_proj_free(rebuilt);
}

/* What the sequences exercised, printed so that a weak generator shows. */
typedef struct {
  long events, voids_hit, voided_voids, late_transfers, merges, erasures, session_voids,
      referral_voided, followed_queries;
} stats_t;

static void count_stats(const seqgen_t *g, stats_t *st) {
  world_t *w = malloc(sizeof *w);
  world_build(w, g, g->n);
  st->events += g->n;
  for (int i = 0; i < g->n; i++) {
    const tev_t *e = &g->ev[i];
    st->merges += e->type == T_MERGE;
    st->erasures += e->type == T_ERASE;
    if (e->type == T_VOID && e->sess)
      st->session_voids++;
    if (!w->eff[i]) {
      st->voids_hit++;
      st->voided_voids += e->type == T_VOID;
      st->referral_voided += e->type == T_REF;
    }
    if (e->type == T_TRANS)
      for (int j = 0; j < i; j++)
        if (strcmp(g->ev[j].stream, e->stream) == 0 && g->ev[j].at >= e->at) {
          st->late_transfers++;
          break;
        }
  }
  free(w);
}

TEST_T(projection, property_live_rebuild_lmdb_reference, 60) {
  uint64_t base = test_seed();
  stats_t st = {0};
  lmdb_t l;
  seqgen_t *g = malloc(sizeof *g);
  fprintf(stderr, "  seed %llu (PSL_TEST_SEED=%llu replays it)\n", (unsigned long long)base,
          (unsigned long long)base);
  lmdb_open(&l);
  for (int i = 0; i < 1000; i++) {
    uint64_t s = base + (uint64_t)i;
    gen(g, s);
    count_stats(g, &st);
    run_sequence(g, &l, &s);
  }
  fprintf(stderr,
          "  1000 sequences, %ld events: %ld voided (%ld of them voids, %ld referrals), "
          "%ld session voids, %ld transfers dated before recorded events, %ld merges, "
          "%ld erasures\n",
          st.events, st.voids_hit, st.voided_voids, st.referral_voided, st.session_voids,
          st.late_transfers, st.merges, st.erasures);
  lmdb_close(&l);
  free(g);
}

/* ---- The server's way: a real log, its hooks, verify, a rebuild through psl_log_read. */

static psl_log_t *log_open_hooked(const char *dir, psl_projdb_t **slot) {
  psl_log_opts_t o;
  psl_log_t *log;
  memset(&o, 0, sizeof o);
  o.hooks = psl_projection_hooks(slot);
  CHECK_OK(psl_log_open(&log, dir, &o));
  return log;
}

typedef struct {
  psl_projdb_t *db;
  psl_diag_t d;
  const seqgen_t *g;
  uint64_t *s;
} verify_t;

static int verify_in_txn(void *arg, MDB_txn *txn) {
  verify_t *v = arg;
  return psl_projdb_verify(v->db, txn, &v->d);
}

static int check_lmdb_in_txn(void *arg, MDB_txn *txn) {
  verify_t *v = arg;
  world_t *w = malloc(sizeof *w);
  psl_counters_query_t qs[MAXQ];
  world_build(w, v->g, v->g->n);
  int nq = make_queries(qs, v->s);
  for (int i = 0; i < nq; i++) {
    psl_counters_t c;
    CHECK_OK(psl_projdb_counters(v->db, txn, &qs[i], &c));
    compare_counters(w, &c, &qs[i], "log hooks");
  }
  for (int p = 0; p < v->g->np; p++) {
    uint8_t u[16];
    psl_participant_t st;
    part_uuid(v->g, p, u);
    int rc = psl_projdb_participant(v->db, txn, u, &st);
    compare_state(w, p, rc, &st);
    psl_participant_free(&st);
  }
  free(w);
  return 0;
}

static void append_all(psl_log_t *log, seqgen_t *g, int from, int to) {
  psl_event_t *evs = calloc((size_t)(to - from), sizeof *evs);
  psl_push_result_t *res = calloc((size_t)(to - from), sizeof *res);
  for (int i = from; i < to; i++) {
    to_event(&g->ev[i], &evs[i - from]);
    evs[i - from].seq = 0;
  }
  CHECK_OK(psl_log_append(log, evs, (size_t)(to - from), res));
  for (int i = from; i < to; i++) {
    CHECK_EQ(res[i - from].err, 0);
    CHECK_EQ(res[i - from].seq, g->ev[i].seq);
  }
  free(evs);
  free(res);
}

static void hooks_verify_rebuild(uint64_t base, int nlogs) {
  seqgen_t *g = malloc(sizeof *g);
  fprintf(stderr, "  seed %llu\n", (unsigned long long)base);
  for (int i = 0; i < nlogs; i++) {
    char dir[512];
    uint64_t s = base + (uint64_t)i;
    psl_projdb_t *db = NULL;
    snprintf(dir, sizeof dir, "%s/log%d", psl_test_tmpdir(), i);
    mkdir(dir, 0700);
    gen(g, s);
    check_valid(g);
    /* a quarter before the projections exist (their open rebuilds), a quarter through the
     * hooks in one push, a quarter while a tool appends without them (the next open folds
     * what it missed), the rest through the hooks in two pushes */
    int q1 = g->n / 4, q2 = g->n / 2, q3 = 3 * g->n / 4, q4 = q3 + (g->n - q3) / 2;
    psl_log_t *log;
    CHECK_OK(psl_log_open(&log, dir, NULL));
    append_all(log, g, 0, q1);
    psl_log_close(log);
    log = log_open_hooked(dir, &db);
    CHECK(db != NULL);
    append_all(log, g, q1, q2);
    psl_log_close(log);
    psl_projdb_free(db);
    db = NULL;
    CHECK_OK(psl_log_open(&log, dir, NULL));
    append_all(log, g, q2, q3);
    psl_log_close(log);
    log = log_open_hooked(dir, &db);
    append_all(log, g, q3, q4);
    append_all(log, g, q4, g->n);
    verify_t v = {db, {{0}}, g, &s};
    int rc = psl_log_with_read_txn(log, verify_in_txn, &v);
    if (rc)
      psl_test_fail(__FILE__, __LINE__, "seed %llu: verify: %s", (unsigned long long)s, v.d.msg);
    CHECK_OK(psl_log_with_read_txn(log, check_lmdb_in_txn, &v));
    /* a rebuild through the public read API equals the reference too */
    psl_proj_t *mem;
    CHECK_OK(psl_proj_rebuild_from_log(log, &mem));
    CHECK_EQ(psl_proj_seq(mem), (uint64_t)g->n);
    check_all(g, g->n, mem, "rebuild from log", NULL, &s);
    psl_proj_free(mem);
    psl_log_close(log);
    psl_projdb_free(db);
    /* reopen: nothing to catch up, still equal */
    db = NULL;
    log = log_open_hooked(dir, &db);
    v.db = db;
    CHECK_OK(psl_log_with_read_txn(log, verify_in_txn, &v));
    psl_log_close(log);
    psl_projdb_free(db);
  }
  free(g);
}

TEST_T(projection, property_log_hooks_verify_rebuild, 60) {
  hooks_verify_rebuild(test_seed() ^ 0x5eed, 40);
}

/* The same with the sizes real logs reach only when big: year blocks of 200 bytes (a few
 * people each: every insert splits, re-keys or empties one) and rebuild chunks of 4 KiB
 * (a rebuild of these logs takes dozens of chunks, read and parsed ahead by the reader
 * thread, and a stream read for a recomputation several). */
TEST_T(projection, property_small_blocks_many_chunks, 60) {
  psl__test_yblock_max = 200;
  psl__test_rebuild_chunk = 4096;
  hooks_verify_rebuild(test_seed() ^ 0xb10c, 40);
}

/* ---- Targeted cases, built by hand. */

static tev_t *hand_add(seqgen_t *g, int type, int p, int64_t at, int terr) {
  tev_t *e = &g->ev[g->n];
  uint8_t u[16];
  memset(e, 0, sizeof *e);
  e->type = type;
  e->idx = p;
  e->at = at;
  e->terr = terr;
  e->seq = (uint64_t)g->n + 1;
  uuid_of(g->seed, 9, g->n, e->id);
  if (type == T_SESS) {
    e->sess = 1;
    sess_uuid(g, p, u);
    stream_name("session/", u, e->stream);
  } else {
    part_uuid(g, p, u);
    stream_name("participant/", u, e->stream);
  }
  g->n++;
  return e;
}

static tev_t *hand_ref(seqgen_t *g, int p, int64_t at, int terr, int programme, int site) {
  tev_t *e = hand_add(g, T_REF, p, at, terr);
  e->programme = programme;
  e->site = site;
  e->source = 1;
  e->justice = 3;
  e->gender = 2;
  e->birth_year = 1990;
  e->education = 2;
  e->rsa = 1;
  return e;
}

#define JAN(d) (AT_BASE + INT64_C(365) * DAY + (int64_t)((d) - 1) * DAY + 10 * 3600 * 1000) /* 2024 */

static void hand_finish(seqgen_t *g) {
  for (int i = 0; i < g->n; i++)
    encode(g, &g->ev[i]);
  check_valid(g);
}

static psl_proj_t *hand_fold(const seqgen_t *g, int upto) {
  psl_proj_t *p;
  evsrc_t src = {g, 0};
  CHECK_OK(psl_proj_new(&p));
  for (int i = 0; i < upto; i++) {
    psl_event_t ev;
    to_event(&g->ev[i], &ev);
    src.upto = i;
    CHECK_OK(psl_proj_apply(p, &ev, test_iter, &src));
  }
  return p;
}

static psl_counters_t counters(psl_proj_t *p, int terr, int year, int month) {
  psl_counters_query_t q;
  psl_counters_t c;
  CHECK_OK(psl_counters_query_init(&q, terr, year, month, 0, NULL));
  CHECK_OK(psl_proj_counters(p, &q, &c));
  return c;
}

static psl_participant_t state(psl_proj_t *p, const seqgen_t *g, int idx) {
  uint8_t u[16];
  psl_participant_t st;
  part_uuid(g, idx, u);
  CHECK_OK(psl_proj_participant(p, u, &st));
  return st;
}

TEST(projection, voided_interview_no_longer_counted) {
  seqgen_t *g = calloc(1, sizeof *g);
  g->seed = 11;
  g->np = 1;
  hand_ref(g, 0, JAN(2), PSL_TERR_93, 1, 1);
  tev_t *i1 = hand_add(g, T_INT, 0, JAN(10), PSL_TERR_93);
  i1->minutes = 45;
  i1->place = 1;
  tev_t *i2 = hand_add(g, T_INT, 0, JAN(20), PSL_TERR_93);
  i2->minutes = 30;
  i2->place = 2;
  tev_t *v = hand_add(g, T_VOID, 0, JAN(21), PSL_TERR_93);
  memcpy(v->of, i2->id, 16);
  hand_finish(g);
  psl_proj_t *p = hand_fold(g, 3);
  CHECK_EQ(counters(p, PSL_TERR_93, 2024, 1).interviews, 2);
  CHECK_EQ(counters(p, PSL_TERR_93, 2024, 1).interview_minutes, 75);
  psl_proj_free(p);
  p = hand_fold(g, 4);
  psl_counters_t c = counters(p, PSL_TERR_93, 2024, 1);
  CHECK_EQ(c.interviews, 1);
  CHECK_EQ(c.interview_minutes, 45);
  psl_participant_t st = state(p, g, 0);
  CHECK_EQ(st.interviews, 1);
  CHECK_EQ(st.interview_minutes, 45);
  CHECK_EQ(st.last_interview, JAN(10));
  CHECK_EQ(st.status, PSL_STATUS_ACTIVE);
  psl_participant_free(&st);
  psl_proj_free(p);
  /* voiding the void brings it back */
  tev_t *vv = hand_add(g, T_VOID, 0, JAN(22), PSL_TERR_93);
  memcpy(vv->of, v->id, 16);
  hand_finish(g);
  p = hand_fold(g, 5);
  CHECK_EQ(counters(p, PSL_TERR_93, 2024, 1).interviews, 2);
  st = state(p, g, 0);
  CHECK_EQ(st.last_interview, JAN(20));
  psl_participant_free(&st);
  psl_proj_free(p);
  free(g);
}

TEST(projection, transfer_moves_counters_from_its_date) {
  seqgen_t *g = calloc(1, sizeof *g);
  g->seed = 12;
  g->np = 1;
  hand_ref(g, 0, JAN(2), PSL_TERR_93, 1, 1);                    /* January, 93 */
  hand_add(g, T_INT, 0, JAN(40), PSL_TERR_93)->minutes = 45;    /* February */
  hand_add(g, T_INT, 0, JAN(100), PSL_TERR_93)->minutes = 45;   /* April: after the transfer */
  tev_t *t = hand_add(g, T_TRANS, 0, JAN(70), PSL_TERR_75);     /* March, recorded late */
  t->tr_terr = 1;
  t->site = 4;
  hand_add(g, T_INT, 0, JAN(130), PSL_TERR_75)->minutes = 45;   /* May */
  for (int i = 1; i < g->n; i++)
    if (g->ev[i].type == T_INT)
      g->ev[i].place = 2;
  hand_finish(g);
  psl_proj_t *p = hand_fold(g, 3);
  CHECK_EQ(counters(p, PSL_TERR_93, 2024, 0).interviews, 2);
  CHECK_EQ(counters(p, PSL_TERR_75, 2024, 0).interviews, 0);
  psl_proj_free(p);
  p = hand_fold(g, 5);
  /* the April interview moved to 75 when the March transfer arrived */
  CHECK_EQ(counters(p, PSL_TERR_93, 2024, 0).interviews, 1);
  CHECK_EQ(counters(p, PSL_TERR_75, 2024, 0).interviews, 2);
  CHECK_EQ(counters(p, PSL_TERR_75, 2024, 4).interviews, 1);
  /* one person in the year across territories, followed in both */
  CHECK_EQ(counters(p, 0, 2024, 0).followed, 1);
  CHECK_EQ(counters(p, PSL_TERR_93, 2024, 0).followed, 1);
  CHECK_EQ(counters(p, PSL_TERR_75, 2024, 0).followed, 1);
  CHECK_EQ(counters(p, PSL_TERR_93, 2024, 4).followed, 0);
  CHECK_EQ(counters(p, PSL_TERR_75, 2024, 2).followed, 0);
  CHECK_EQ(counters(p, PSL_TERR_93, 2024, 0).referred, 1);
  CHECK_EQ(counters(p, PSL_TERR_75, 2024, 0).referred, 0);
  psl_participant_t st = state(p, g, 0);
  CHECK_EQ(st.terr, PSL_TERR_75);
  CHECK_STR(st.site, "qsl-sante");
  CHECK_EQ(st.programme, 1);
  psl_participant_free(&st);
  psl_proj_free(p);
  free(g);
}

TEST(projection, merged_and_erased) {
  seqgen_t *g = calloc(1, sizeof *g);
  g->seed = 13;
  g->np = 2;
  hand_ref(g, 0, JAN(2), PSL_TERR_94, 4, 5);
  hand_ref(g, 1, JAN(3), PSL_TERR_94, 4, 5);
  tev_t *i = hand_add(g, T_INT, 1, JAN(5), PSL_TERR_94);
  i->minutes = 60;
  i->place = 1;
  hand_add(g, T_MERGE, 1, JAN(6), PSL_TERR_94)->into = 0;
  hand_add(g, T_ERASE, 0, JAN(7), PSL_TERR_94);
  hand_finish(g);
  psl_proj_t *p = hand_fold(g, 3);
  CHECK_EQ(counters(p, PSL_TERR_94, 2024, 0).followed, 2);
  psl_proj_free(p);
  p = hand_fold(g, 5);
  psl_participant_t st = state(p, g, 1);
  CHECK_EQ(st.status, PSL_STATUS_MERGED);
  uint8_t u0[16];
  part_uuid(g, 0, u0);
  CHECK_MEM(st.into, u0, 16);
  psl_participant_free(&st);
  st = state(p, g, 0);
  CHECK_EQ(st.status, PSL_STATUS_ERASED);
  psl_participant_free(&st);
  psl_counters_t c = counters(p, PSL_TERR_94, 2024, 0);
  CHECK_EQ(c.followed, 1);       /* the duplicate is not a second person */
  CHECK_EQ(c.referred, 1);
  CHECK_EQ(c.interviews, 1);     /* its interview happened all the same */
  CHECK_EQ(c.gender[PSL_GENDER_M], 1);
  psl_buf_t b;
  psl_buf_init(&b, 0);
  st = state(p, g, 1);
  CHECK_OK(psl_participant_json(&b, &st, JAN(30)));
  CHECK_OK(psl_buf_append(&b, "", 1));
  CHECK(strstr((char *)psl_buf_data(&b), "\"status\":\"merged\"") != NULL);
  CHECK(strstr((char *)psl_buf_data(&b), "\"into\":\"") != NULL);
  psl_participant_free(&st);
  psl_buf_free(&b);
  psl_proj_free(p);
  free(g);
}

TEST(projection, session_void_and_attendance) {
  seqgen_t *g = calloc(1, sizeof *g);
  g->seed = 14;
  g->np = 2;
  tev_t *s1 = hand_add(g, T_SESS, 0, JAN(4), PSL_TERR_93); /* before anyone is referred */
  s1->site = 3;
  s1->programme = 1;
  s1->natt = 2;
  s1->att[0] = 0;
  s1->att[1] = 1;
  hand_ref(g, 0, JAN(5), PSL_TERR_93, 1, 3);
  tev_t *s2 = hand_add(g, T_SESS, 0, JAN(6), PSL_TERR_93);
  s2->site = 3;
  s2->natt = 1;
  s2->att[0] = 0;
  tev_t *v = hand_add(g, T_VOID, 0, JAN(7), PSL_TERR_93);
  v->sess = 1;
  strcpy(v->stream, s1->stream);
  memcpy(v->of, s1->id, 16);
  hand_finish(g);
  psl_proj_t *p = hand_fold(g, 3);
  psl_participant_t st = state(p, g, 0);
  CHECK_EQ(st.sessions_attended, 2);
  psl_participant_free(&st);
  psl_counters_t c = counters(p, PSL_TERR_93, 2024, 1);
  CHECK_EQ(c.sessions, 2);
  CHECK_EQ(c.session_attendance, 3);
  psl_proj_free(p);
  p = hand_fold(g, 4);
  st = state(p, g, 0);
  CHECK_EQ(st.sessions_attended, 1);
  psl_participant_free(&st);
  c = counters(p, PSL_TERR_93, 2024, 1);
  CHECK_EQ(c.sessions, 1);
  CHECK_EQ(c.session_attendance, 1);
  psl_proj_free(p);
  free(g);
}

/* A strict JSON syntax check (RFC 8259) for the renderers' output. */
static const char *json_value(const char *p);

static const char *json_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
    p++;
  return p;
}

static const char *json_string(const char *p) {
  if (*p++ != '"')
    return NULL;
  while (*p && *p != '"') {
    if ((unsigned char)*p < 0x20)
      return NULL;
    if (*p == '\\') {
      p++;
      if (*p == 'u') {
        for (int i = 1; i <= 4; i++)
          if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
            return NULL;
        p += 4;
      } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
        return NULL;
      }
    }
    p++;
  }
  return *p == '"' ? p + 1 : NULL;
}

static const char *json_number(const char *p) {
  const char *start = p;
  if (*p == '-')
    p++;
  if (*p == '0')
    p++;
  else if (*p >= '1' && *p <= '9')
    while (*p >= '0' && *p <= '9')
      p++;
  else
    return NULL;
  if (*p == '.') {
    p++;
    if (!(*p >= '0' && *p <= '9'))
      return NULL;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  return p > start ? p : NULL;
}

static const char *json_value(const char *p) {
  p = json_ws(p);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = json_ws(p + 1);
    if (*p == close)
      return p + 1;
    for (;;) {
      if (close == '}') {
        if (!(p = json_string(json_ws(p))))
          return NULL;
        p = json_ws(p);
        if (*p++ != ':')
          return NULL;
      }
      if (!(p = json_value(p)))
        return NULL;
      p = json_ws(p);
      if (*p == close)
        return p + 1;
      if (*p++ != ',')
        return NULL;
    }
  }
  if (*p == '"')
    return json_string(p);
  if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
    return p + 4;
  if (!strncmp(p, "false", 5))
    return p + 5;
  return json_number(p);
}

static void check_json(psl_buf_t *b) {
  CHECK_OK(psl_buf_append(b, "", 1));
  const char *s = (const char *)psl_buf_data(b), *end = json_value(s);
  if (!end || *json_ws(end) != '\0')
    psl_test_fail(__FILE__, __LINE__, "not JSON: %s", s);
}

static int count_cb(void *arg, const psl_participant_t *st) {
  (void)st;
  (*(int *)arg)++;
  return 0;
}

TEST(projection, caseload_report_json) {
  seqgen_t *g = calloc(1, sizeof *g);
  g->seed = 15;
  g->np = 3;
  hand_ref(g, 0, JAN(2), PSL_TERR_93, 1, 1);
  hand_ref(g, 1, JAN(3), PSL_TERR_93, 1, 2);
  hand_ref(g, 2, JAN(4), PSL_TERR_75, 2, 4);
  tev_t *d = hand_add(g, T_DIAG, 0, JAN(5), PSL_TERR_93);
  d->barriers = 1; /* housing-none */
  d->care = 1;
  hand_add(g, T_EXIT, 1, JAN(50), PSL_TERR_93)->reason = PSL_EXIT_JOB;
  hand_add(g, T_OUT, 1, JAN(49), PSL_TERR_93)->kind = 1;
  hand_finish(g);
  psl_proj_t *p = hand_fold(g, g->n);
  int n = 0;
  CHECK_OK(psl_proj_caseload(p, PSL_TERR_93, count_cb, &n));
  CHECK_EQ(n, 2);
  n = 0;
  CHECK_OK(psl_proj_caseload(p, 0, count_cb, &n));
  CHECK_EQ(n, 3);
  psl_counters_t c = counters(p, 0, 2024, 0);
  CHECK_EQ(c.followed, 3);
  CHECK_EQ(c.homeless, 1);
  CHECK_EQ(c.care_obligation, 1);
  CHECK_EQ(c.exited[PSL_EXIT_JOB], 1);
  CHECK_EQ(c.esf_exit_employment, 1);
  CHECK_EQ(c.outcome_classes[PSL_CLASS_DURABLE], 1);
  psl_buf_t b;
  psl_buf_init(&b, 0);
  CHECK_OK(psl_counters_json(&b, &c));
  CHECK_OK(psl_buf_append(&b, "", 1));
  const char *js = (const char *)psl_buf_data(&b);
  static const char *const keys[] = {
      "\"referred\":3", "\"followed\":3", "\"active\":", "\"exited\":{\"completed\":0,\"job\":1",
      "\"interviews\":", "\"interview_minutes\":", "\"missed\":", "\"sessions\":",
      "\"session_attendance\":", "\"partner_referrals\":{", "\"outcomes\":{\"cdi\":1",
      "\"gender\":{\"f\":0,\"m\":3,\"x\":0}", "\"mean_age\":34.0", "\"education\":{\"0-2\":3",
      "\"housing_barrier_share\":0.333", "\"homeless_share\":0.333",
      "\"care_obligation_share\":0.333", "\"rsa\":3", "\"mean_months_followed\":",
      "\"terr\":null", "\"year\":2024"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!strstr(js, keys[i]))
      psl_test_fail(__FILE__, __LINE__, "counters JSON lacks %s: %s", keys[i], js);
  check_json(&b);
  for (int i = 0; i < 3; i++) {
    psl_participant_t st = state(p, g, i);
    psl_buf_reset(&b);
    CHECK_OK(psl_participant_json(&b, &st, 0));
    check_json(&b);
    psl_participant_free(&st);
  }
  psl_report_t r;
  CHECK_OK(psl_proj_report(p, 2024, 0, &r));
  psl_buf_reset(&b);
  CHECK_OK(psl_report_json(&b, &r));
  check_json(&b);
  psl_counters_t empty = counters(p, PSL_TERR_77, 2024, 2); /* nobody: nulls */
  psl_buf_reset(&b);
  CHECK_OK(psl_counters_json(&b, &empty));
  check_json(&b);
  CHECK(strstr((char *)psl_buf_data(&b), "\"mean_age\":null") != NULL);
  CHECK(r.nrows >= 5); /* total, 93, 75, two programmes, sites */
  CHECK_STR(r.rows[0].dimension, "total");
  CHECK_EQ(r.rows[0].c.followed, 3);
  psl_buf_reset(&b);
  CHECK_OK(psl_report_json(&b, &r));
  CHECK_OK(psl_report_csv(&b, &r));
  CHECK_OK(psl_report_md(&b, &r));
  CHECK_OK(psl_buf_append(&b, "", 1));
  js = (const char *)psl_buf_data(&b);
  CHECK(strstr(js, "\"esf\":{\"participants\":3") != NULL);
  CHECK(strstr(js, "year,dimension,code,referred") != NULL);
  CHECK(strstr(js, "Indicateurs FSE+") != NULL);
  CHECK(strstr(js, "| Site ma-villepinte |") != NULL);
  psl_report_free(&r);
  psl_buf_free(&b);
  psl_proj_free(p);
  free(g);
}

TEST(projection, compare_detects_tampering) {
  seqgen_t *g = malloc(sizeof *g);
  lmdb_t l;
  uint64_t s = 99;
  gen(g, 4242);
  lmdb_open(&l);
  run_sequence(g, &l, &s);
  psl_proj_t *mem = hand_fold(g, g->n);
  MDB_txn *txn;
  psl_diag_t d;
  /* equal, then one counter record altered */
  CHECK_OK(mdb_txn_begin(l.env, NULL, 0, &txn));
  CHECK_OK(psl_projdb_compare(l.db, txn, mem, &d));
  MDB_dbi dbi;
  MDB_cursor *c;
  MDB_val k, v;
  CHECK_OK(mdb_dbi_open(txn, "proj_counters", 0, &dbi));
  CHECK_OK(mdb_cursor_open(txn, dbi, &c));
  CHECK_OK(mdb_cursor_get(c, &k, &v, MDB_FIRST));
  uint8_t buf[512];
  memcpy(buf, v.mv_data, v.mv_size);
  buf[0] ^= 1;
  v.mv_data = buf;
  CHECK_OK(mdb_cursor_put(c, &k, &v, MDB_CURRENT));
  mdb_cursor_close(c);
  CHECK_EQ(psl_projdb_compare(l.db, txn, mem, &d), PSL_ECORRUPT);
  CHECK(strstr(d.msg, "counters") != NULL);
  mdb_txn_abort(txn);
  /* unknown participants are not found */
  uint8_t nobody[16] = {1, 2, 3};
  psl_participant_t st;
  CHECK_EQ(psl_proj_participant(mem, nobody, &st), PSL_ENOTFOUND);
  psl_participant_free(&st);
  psl_proj_free(mem);
  lmdb_close(&l);
  free(g);
}
