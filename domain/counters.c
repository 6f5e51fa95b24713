/*
 * counters.c — territory counters: how they are kept exact, and how a query adds them up.
 *
 * Two kinds of figures, two representations:
 *
 *  1. Additive figures (interviews, interview_minutes, missed, sessions, session_attendance,
 *     partner_referrals by kind, outcomes by kind): one vector of PSL__C_N counts per key
 *     (year, month, terr, programme, site) — the placement the event counts under, at the
 *     event's `at`.  Adding is exact and commutative, so any filter is a sum over the keys
 *     that match it: a query reads at most one year of keys (4 territories × 4 programmes ×
 *     the sites × 12 months — a few hundred vectors).  An event adds its contribution; a
 *     recomputation (void, early-dated transfer) subtracts the stream's old contributions and
 *     adds the new ones (engine.c), so voids, transfers and merges stay exact.
 *
 *  2. Per-person figures (referred, followed, active, exited by reason, gender, age,
 *     education, shares, rsa, months followed, ESF+): not additive across months, places or
 *     territories (a person followed in March and in April is one person in the year; one
 *     transferred from 93 to 75 is one person across territories).  They come from a
 *     participant's per-year facts (psl__year_t): the placements under which the person had
 *     activity that year, with a 12-bit mask of months each, plus the few dates and
 *     attributes the figures need.  A query visits the year's facts of the territory once
 *     each and decides per person — exact by construction.  The LMDB store keeps them by
 *     (year, terr) and (year, all) as compact entries packed in blocks (store-lmdb.c,
 *     codec.c), which psl__agg_block reads in place: the dates the figures compare with a
 *     period's end are kept as month codes, exact since a period always ends at a month
 *     start.  The memory store derives them from the states (psl__year_make, then
 *     psl__agg_year): two readings of the same facts, which the projection tests compare.
 *
 * Query cost is thus O(people with activity in that year and territory + counter keys of the
 * year), independent of the log's length.
 */
#include <stdlib.h>

#include "psl_domain_int.h"

#define MS_PER_DAY INT64_C(86400000)
/* Months of a year as bits 0..11. */
#define ALL_MONTHS 0x0fffu

size_t psl__ckey_encode(const psl__ckey_t *k, uint8_t out[PSL__CKEY_MAX]) {
  size_t n = strnlen(k->site, PSL_SITE_MAX);
  out[0] = (uint8_t)(k->year >> 8);
  out[1] = (uint8_t)k->year;
  out[2] = k->month;
  out[3] = k->terr;
  out[4] = k->programme;
  memcpy(out + 5, k->site, n);
  return 5 + n;
}

int psl__ckey_decode(const uint8_t *p, size_t len, psl__ckey_t *k) {
  if (len < 5 || len > PSL__CKEY_MAX)
    return PSL_ECORRUPT;
  memset(k, 0, sizeof *k);
  k->year = (uint16_t)(p[0] << 8 | p[1]);
  k->month = p[2];
  k->terr = p[3];
  k->programme = p[4];
  memcpy(k->site, p + 5, len - 5);
  return 0;
}

static void key_at(int64_t at, uint8_t terr, uint8_t programme, const char *site,
                   psl__ckey_t *key) {
  uint32_t mi = psl__at_month_index(at);
  memset(key, 0, sizeof *key);
  key->year = (uint16_t)(mi / 12);
  key->month = (uint8_t)(mi % 12 + 1);
  key->terr = terr;
  key->programme = programme;
  if (site)
    memcpy(key->site, site, strnlen(site, PSL_SITE_MAX));
}

int psl__contrib_participant(const psl_participant_t *st, const psl__fact_t *f,
                             psl__ckey_t *key, int64_t vec[PSL__C_N]) {
  memset(vec, 0, PSL__C_N * sizeof *vec);
  if (!st->known)
    return 0; /* no placement to count under (its referral was voided) */
  switch (f->type) {
  case PSL__F_INTERVIEW:
    vec[PSL__C_INTERVIEWS] = 1;
    vec[PSL__C_MINUTES] = f->minutes;
    break;
  case PSL__F_MISSED:
    vec[PSL__C_MISSED] = 1;
    break;
  case PSL__F_PARTNER_REFERRED:
    vec[PSL__C_PREF + f->kind - 1] = 1;
    break;
  case PSL__F_OUTCOME:
    vec[PSL__C_OUTCOME + f->kind - 1] = 1;
    break;
  default:
    return 0;
  }
  psl__place_t pl;
  psl__participant_place_at(st, f->when.at, &pl);
  key_at(f->when.at, pl.terr, pl.programme, pl.site, key);
  return 1;
}

void psl__contrib_session(int64_t at, uint8_t terr, uint8_t programme, const char *site,
                          uint32_t nattendees, psl__ckey_t *key, int64_t vec[PSL__C_N]) {
  memset(vec, 0, PSL__C_N * sizeof *vec);
  vec[PSL__C_SESSIONS] = 1;
  vec[PSL__C_ATTENDANCE] = nattendees;
  key_at(at, terr, programme, site, key);
}

/* ---- Per-year facts. */

int psl__participant_counts(const psl_participant_t *st) { return st->known && !st->merged; }

size_t psl__participant_years(const psl_participant_t *st, int *years, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < st->nmarks; i++) {
    int y = (int)((st->marks[i] >> 16) / 12);
    if (n == 0 || years[n - 1] != y) {
      if (n == max)
        break;
      years[n++] = y;
    }
  }
  return n;
}

static int place_cmp(const psl__yplace_t *a, uint8_t terr, uint8_t programme, const char *site) {
  if (a->terr != terr)
    return a->terr < terr ? -1 : 1;
  if (a->programme != programme)
    return a->programme < programme ? -1 : 1;
  return strcmp(a->site, site);
}

/* Index of the place (terr, programme, site) in y, inserting it (sorted) if absent. */
static int place_slot(psl__year_t *y, size_t *cap, const psl__place_t *pl) {
  size_t i = 0;
  while (i < y->nplaces && place_cmp(&y->places[i], pl->terr, pl->programme, pl->site) < 0)
    i++;
  if (i < y->nplaces && place_cmp(&y->places[i], pl->terr, pl->programme, pl->site) == 0)
    return (int)i;
  if (y->nplaces == *cap) {
    size_t ncap = *cap ? *cap * 2 : 2;
    psl__yplace_t *p = realloc(y->places, ncap * sizeof *p);
    if (!p)
      return PSL_ENOMEM;
    y->places = p;
    *cap = ncap;
  }
  memmove(&y->places[i + 1], &y->places[i], (y->nplaces - i) * sizeof *y->places);
  memset(&y->places[i], 0, sizeof *y->places);
  y->places[i].terr = pl->terr;
  y->places[i].programme = pl->programme;
  memcpy(y->places[i].site, pl->site, strnlen(pl->site, PSL_SITE_MAX));
  y->nplaces++;
  return (int)i;
}

static int find_place(const psl__year_t *y, const psl__place_t *pl) {
  for (size_t i = 0; i < y->nplaces; i++)
    if (place_cmp(&y->places[i], pl->terr, pl->programme, pl->site) == 0)
      return (int)i;
  return -1;
}

void psl__year_free(psl__year_t *y) {
  if (!y)
    return;
  free(y->places);
  y->places = NULL;
  y->nplaces = 0;
}

int psl__year_make(const psl_participant_t *st, int year, psl__year_t *y) {
  size_t cap = 0;
  memset(y, 0, sizeof *y);
  memcpy(y->id, st->id, PSL_UUID_BYTES);
  y->year = year;
  y->gender = st->gender;
  y->education = st->education;
  y->rsa = (uint8_t)st->rsa;
  y->birth_year = st->birth_year;
  y->referred_at = st->referred_at;
  y->activated_at = st->activated_at;
  y->exited_at = st->exited_at;
  y->exit_reason = st->exit_reason;
  y->housing_at = st->housing_at;
  y->homeless_at = st->homeless_at;
  y->care_at = st->care_at;
  if (st->exit_reason) {
    y->exit_employment = st->exit_reason == PSL_EXIT_JOB ||
                         (st->employment_at && st->employment_at <= st->exited_at);
    y->exit_training = st->exit_reason == PSL_EXIT_TRAINING ||
                       (st->training_at && st->training_at <= st->exited_at);
  }
  uint32_t lo = psl__month_index(year, 1) << 16, hi = psl__month_index(year + 1, 1) << 16;
  for (size_t i = 0; i < st->nmarks; i++) {
    if (st->marks[i] < lo || st->marks[i] >= hi)
      continue;
    psl__place_t pl;
    psl__participant_place_index(st, st->marks[i] & 0xffff, &pl);
    int slot = place_slot(y, &cap, &pl);
    if (slot < 0) {
      psl__year_free(y);
      return slot;
    }
    y->places[slot].months |= (uint16_t)(1u << ((st->marks[i] >> 16) - (lo >> 16)));
  }
  y->ref_place = y->exit_place = -1;
  int ry, rm;
  psl__place_t pl;
  psl_local_ym(st->referred_at, &ry, &rm);
  if (ry == year) {
    psl__participant_place_at(st, st->referred_at, &pl);
    y->ref_place = find_place(y, &pl);
    y->ref_month = (uint8_t)rm;
  }
  if (st->exit_reason) {
    psl_local_ym(st->exited_at, &ry, &rm);
    if (ry == year) {
      psl__participant_place_at(st, st->exited_at, &pl);
      y->exit_place = find_place(y, &pl);
      y->exit_month = (uint8_t)rm;
    }
  }
  return 0;
}

int psl__year_equal(const psl__year_t *a, const psl__year_t *b) {
  if (memcmp(a->id, b->id, PSL_UUID_BYTES) || a->year != b->year || a->gender != b->gender ||
      a->education != b->education || a->rsa != b->rsa || a->exit_reason != b->exit_reason ||
      a->birth_year != b->birth_year || a->referred_at != b->referred_at ||
      a->activated_at != b->activated_at || a->exited_at != b->exited_at ||
      a->housing_at != b->housing_at || a->homeless_at != b->homeless_at ||
      a->care_at != b->care_at || a->exit_employment != b->exit_employment ||
      a->exit_training != b->exit_training || a->ref_place != b->ref_place ||
      a->exit_place != b->exit_place || a->ref_month != b->ref_month ||
      a->exit_month != b->exit_month || a->nplaces != b->nplaces)
    return 0;
  for (size_t i = 0; i < a->nplaces; i++)
    if (place_cmp(&a->places[i], b->places[i].terr, b->places[i].programme,
                  b->places[i].site) ||
        a->places[i].months != b->places[i].months)
      return 0;
  return 1;
}


/* ---- Queries. */

int psl_counters_query_init(psl_counters_query_t *q, int terr, int year, int month,
                            int programme, const char *site) {
  memset(q, 0, sizeof *q);
  if (terr < 0 || terr > PSL_NTERR || programme < 0 || programme > PSL_NPROGRAMME ||
      month < 0 || month > 12 || year < 2000 || year > 2099)
    return PSL_EINVALID;
  if (site && site[0]) {
    if (!psl_site_valid(site, strlen(site)))
      return PSL_EINVALID;
    memcpy(q->site, site, strlen(site));
  }
  q->terr = terr;
  q->year = year;
  q->month = month;
  q->programme = programme;
  return 0;
}

void psl__counters_start(psl_counters_t *c, const psl_counters_query_t *q) {
  memset(c, 0, sizeof *c);
  c->q = *q;
}

static int place_matches(const psl_counters_query_t *q, const psl__yplace_t *pl) {
  return (!q->terr || pl->terr == q->terr) && (!q->programme || pl->programme == q->programme) &&
         (!q->site[0] || strcmp(pl->site, q->site) == 0);
}

int psl__ckey_matches(const psl_counters_query_t *q, const psl__ckey_t *k) {
  return k->year == q->year && (!q->month || k->month == q->month) &&
         (!q->terr || k->terr == q->terr) && (!q->programme || k->programme == q->programme) &&
         (!q->site[0] || strcmp(k->site, q->site) == 0);
}

void psl__agg_vec(psl_counters_t *c, const int64_t vec[PSL__C_N]) {
  c->interviews += vec[PSL__C_INTERVIEWS];
  c->interview_minutes += vec[PSL__C_MINUTES];
  c->missed += vec[PSL__C_MISSED];
  c->sessions += vec[PSL__C_SESSIONS];
  c->session_attendance += vec[PSL__C_ATTENDANCE];
  for (int k = 1; k <= PSL_NREFKIND; k++)
    c->partner_referrals[k] += vec[PSL__C_PREF + k - 1];
  for (int k = 1; k <= PSL_NOUTCOME; k++) {
    c->outcomes[k] += vec[PSL__C_OUTCOME + k - 1];
    c->outcome_classes[psl_outcome_class(k)] += vec[PSL__C_OUTCOME + k - 1];
  }
}

void psl__agg_begin(psl__agg_t *a, psl_counters_t *c, const psl_counters_query_t *q) {
  psl__counters_start(c, q);
  a->c = c;
  a->mask = q->month ? (uint16_t)(1u << (q->month - 1)) : ALL_MONTHS;
  a->end = psl_local_month_start(q->year, q->month ? q->month + 1 : 13);
  a->stop = q->now_ms && q->now_ms < a->end ? q->now_ms : a->end;
  a->last_code = (uint8_t)(PSL__YE_CODE_BEFORE + (q->month ? q->month : 12));
  a->site_len = (uint8_t)strnlen(q->site, PSL_SITE_MAX);
  a->ngender = (uint8_t)psl_code_count(PSL_CODE_GENDER);
  a->neducation = (uint8_t)psl_code_count(PSL_CODE_EDUCATION);
  a->nexit = (uint8_t)psl_code_count(PSL_CODE_EXIT_REASON);
  for (int e = 0; e <= PSL_CODE_MAX; e++)
    a->isced[e] = (uint8_t)psl_education_isced(e);
}

void psl__agg_year(const psl__agg_t *a, const psl__year_t *y) {
  psl_counters_t *c = a->c;
  const psl_counters_query_t *q = &c->q;
  int64_t end = a->end;
  int followed = 0;
  for (size_t i = 0; i < y->nplaces && !followed; i++)
    followed = place_matches(q, &y->places[i]) && (y->places[i].months & a->mask);
  if (!followed)
    return;
  c->followed++;
  if (y->ref_place >= 0 && (!q->month || y->ref_month == q->month) &&
      place_matches(q, &y->places[y->ref_place]))
    c->referred++;
  if (y->activated_at && y->activated_at < end)
    c->active++;
  if (y->exit_place >= 0 && (!q->month || y->exit_month == q->month) &&
      place_matches(q, &y->places[y->exit_place])) {
    c->exited[y->exit_reason]++;
    c->esf_exit_employment += y->exit_employment;
    c->esf_exit_training += y->exit_training;
  }
  if (y->gender)
    c->gender[y->gender]++;
  if (y->birth_year) {
    int age = q->year - y->birth_year;
    c->age_sum += age;
    c->age_n++;
    c->esf_under18 += age < 18;
    c->esf_18_29 += age >= 18 && age <= 29;
    c->esf_55plus += age >= 55;
  }
  int isced = psl_education_isced(y->education);
  if (isced)
    c->education[isced]++;
  c->housing += y->housing_at && y->housing_at < end;
  c->homeless += y->homeless_at && y->homeless_at < end;
  c->care_obligation += y->care_at && y->care_at < end;
  c->rsa += y->rsa != 0;
  int64_t stop = a->stop;
  if (y->exited_at && y->exited_at < stop)
    stop = y->exited_at;
  c->days_followed_sum += stop > y->referred_at ? (stop - y->referred_at) / MS_PER_DAY : 0;
  c->days_followed_n++;
}

/* ---- The same figures from a year block's entries (codec.c), read in place: a query visits
 * every person of a year, so no decoder, no copy. */

static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

static int64_t le64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
  v = __builtin_bswap64(v);
#endif
  return (int64_t)v;
}

/* One block's sums, kept apart from c so that they live in registers and the loop below can
 * add without branching: index 0 of gender, education and exited collects "none". */
typedef struct {
  int64_t followed, referred, active, housing, homeless, care, rsa;
  int64_t age_sum, age_n, under18, from18to29, over55, days_sum;
  int64_t gender[4], education[4], exited[PSL_NEXIT + 1], exit_employment, exit_training;
} sums_t;

/* 1 if place pl (terr, programme, months, site) is within the query's filters. */
static inline unsigned place_in(const psl__agg_t *a, const uint8_t *pl) {
  const psl_counters_query_t *q = &a->c->q;
  return (!q->terr || pl[0] == q->terr) && (!q->programme || pl[1] == q->programme) &&
         (!a->site_len || (pl[4] == a->site_len && memcmp(pl + 5, q->site, a->site_len) == 0));
}

/* A month code (codec.c) of a date before the period's end: 1 <= code <= last_code. */
static inline int64_t before_end(const psl__agg_t *a, uint8_t code) {
  return (uint8_t)(code - PSL__YE_CODE_BEFORE) < a->last_code;
}

/* Person h (an entry's head) followed in the period: the figures psl__agg_year counts. */
static inline void agg_person(const psl__agg_t *a, sums_t *s, const uint8_t *h, unsigned ref_in,
                              unsigned exit_in) {
  int month = a->c->q.month;
  uint8_t g = h[PSL__YE_GENDER], ed = h[PSL__YE_EDUCATION], x = h[PSL__YE_EXIT_REASON];
  uint8_t fl = h[PSL__YE_FLAGS];
  s->followed++;
  s->referred += ref_in && (!month || h[PSL__YE_REF_MONTH] == month);
  if (exit_in && (!month || h[PSL__YE_EXIT_MONTH] == month)) {
    s->exited[x <= PSL_NEXIT ? x : 0]++;
    s->exit_employment += (fl & PSL__YE_EXIT_EMPLOYMENT) != 0;
    s->exit_training += (fl & PSL__YE_EXIT_TRAINING) != 0;
  }
  s->active += before_end(a, h[PSL__YE_ACTIVATED]);
  s->housing += before_end(a, h[PSL__YE_HOUSING]);
  s->homeless += before_end(a, h[PSL__YE_HOMELESS]);
  s->care += before_end(a, h[PSL__YE_CARE]);
  s->rsa += (fl & PSL__YE_RSA) != 0;
  s->gender[g < 4 ? g : 0]++;
  s->education[a->isced[ed <= PSL_CODE_MAX ? ed : 0] & 3]++;
  int64_t birth_year = (int64_t)le16(h + PSL__YE_BIRTH_YEAR), known = birth_year != 0;
  int64_t age = a->c->q.year - birth_year;
  s->age_sum += known ? age : 0;
  s->age_n += known;
  s->under18 += known & (age < 18);
  s->from18to29 += known & (age >= 18) & (age <= 29);
  s->over55 += known & (age >= 55);
  int64_t referred_at = le64(h + PSL__YE_REFERRED_AT), exited_at = le64(h + PSL__YE_EXITED_AT);
  int64_t stop = exited_at && exited_at < a->stop ? exited_at : a->stop;
  s->days_sum += stop > referred_at ? (stop - referred_at) / MS_PER_DAY : 0;
}

static void add_sums(psl_counters_t *c, const sums_t *s) {
  c->followed += s->followed;
  c->referred += s->referred;
  c->active += s->active;
  for (int x = 1; x <= PSL_NEXIT; x++)
    c->exited[x] += s->exited[x];
  c->esf_exit_employment += s->exit_employment;
  c->esf_exit_training += s->exit_training;
  for (int g = 1; g < 4; g++)
    c->gender[g] += s->gender[g];
  c->age_sum += s->age_sum;
  c->age_n += s->age_n;
  c->esf_under18 += s->under18;
  c->esf_18_29 += s->from18to29;
  c->esf_55plus += s->over55;
  for (int i = 1; i < 4; i++)
    c->education[i] += s->education[i];
  c->housing += s->housing;
  c->homeless += s->homeless;
  c->care_obligation += s->care;
  c->rsa += s->rsa;
  c->days_followed_sum += s->days_sum;
  c->days_followed_n += s->followed;
}

/* The loop reads each entry once, in place: the checks of psl__yentry_parse (codec.c) are
 * made here too, folded into one flag tested per block, since this runs per person. */
int psl__agg_block(const psl__agg_t *a, const uint8_t *p, size_t len) {
  psl__yblock_t b;
  sums_t s;
  int rc = psl__yblock_open(p, len, &b);
  if (rc)
    return rc;
  memset(&s, 0, sizeof s);
  const uint8_t *e = b.entries, *end = b.end;
  unsigned bad = 0;
  for (uint32_t i = 0; i < b.n; i++) {
    if (end - e < PSL__YE_HEAD)
      return PSL_ECORRUPT;
    size_t np = le16(e + PSL__YE_NPLACES);
    size_t rp = le16(e + PSL__YE_REF_PLACE), xp = le16(e + PSL__YE_EXIT_PLACE);
    const uint8_t *pl = e + PSL__YE_HEAD;
    unsigned months = 0, ref_in = 0, exit_in = 0;
    for (size_t j = 0; j < np; j++) {
      if (end - pl < 5 || pl[4] > PSL_SITE_MAX || end - pl < 5 + pl[4])
        return PSL_ECORRUPT;
      if (place_in(a, pl)) {
        months |= le16(pl + 2);
        ref_in |= j == rp;
        exit_in |= j == xp;
      }
      pl += 5 + pl[4];
    }
    bad |= (e[PSL__YE_GENDER] > a->ngender) | (e[PSL__YE_EDUCATION] > a->neducation) |
           (e[PSL__YE_EXIT_REASON] > a->nexit) | (e[PSL__YE_REF_MONTH] > 12) |
           (e[PSL__YE_EXIT_MONTH] > 12) | (e[PSL__YE_ACTIVATED] > PSL__YE_CODE_AFTER) |
           (e[PSL__YE_HOUSING] > PSL__YE_CODE_AFTER) |
           (e[PSL__YE_HOMELESS] > PSL__YE_CODE_AFTER) | (e[PSL__YE_CARE] > PSL__YE_CODE_AFTER) |
           (rp != PSL__YE_NO_PLACE && rp >= np) | (xp != PSL__YE_NO_PLACE && xp >= np);
    if (months & a->mask)
      agg_person(a, &s, e, ref_in, exit_in);
    e = pl;
  }
  if (bad || e != end)
    return PSL_ECORRUPT;
  add_sums(a->c, &s);
  return 0;
}

int psl_counters_equal(const psl_counters_t *a, const psl_counters_t *b) {
  /* the struct is all int64 after the query, which is compared by field */
  const psl_counters_query_t *x = &a->q, *y = &b->q;
  if (x->terr != y->terr || x->year != y->year || x->month != y->month ||
      x->programme != y->programme || strcmp(x->site, y->site) || x->now_ms != y->now_ms)
    return 0;
  return memcmp(&a->referred, &b->referred,
                sizeof *a - offsetof(psl_counters_t, referred)) == 0;
}
