/*
 * scale.c — N participants with realistic histories, streamed in time order (psl_demo.h),
 * for load tests (passerelle-demo --scale N) and benchmarks (bench-proj).
 *
 * Each person, at referral, is planned as a list of small steps (kind, time, a few codes):
 *
 *   referral ─ diagnostic (3–15 days) ─ engagement (2–10 days) ─ interviews every 8–20 days
 *   (1 to 3 a month; one in ten missed; minutes 30–60, 45 on average) until the end of the
 *   pathway (2 to 14 months); meanwhile 0–3 partner referrals (accepted, often started or
 *   completed), 0–2 barriers lifted, a release for most of those in detention or
 *   semi-liberty, a transfer to another site for 3 %, a void of a mistaken interview for 1 %;
 *   at the end, for 3 in 4, an exit (its reason as the programmes see them: completed, job,
 *   training, lost contact, reincarceration...) after an outcome when it is a job or a
 *   training.
 *
 * Every site holds a weekly collective session of 4–8 of the people it follows that day.
 * The steps of the people being followed wait in a binary heap ordered by time; referrals are
 * spread evenly over [first_year, first_year + years) with a jitter, so the stream is a
 * realistic interleaving of many people's days.  Memory: the people being followed, ~1 KiB
 * each (a year of 500 referrals keeps a few hundred; 10 million events keep ~20,000).
 *
 * Deterministic: the same options give the same events, ids included.
 */
#include <stdlib.h>
#include <string.h>

#include "demo_int.h"
#include "psl_domain.h"

/* Steps of one person: a 14-month pathway at an interview every 8 days is ~55, plus ~20. */
#define MAX_STEPS 96
#define MAX_REFS 4
#define MAX_BARRIERS 5
/* The pathway, in days. */
#define PATH_MIN_DAYS 60
#define PATH_MAX_DAYS 420

typedef enum {
  S_REFERRED, S_DIAGNOSTIC, S_ENGAGEMENT, S_INTERVIEW, S_MISSED, S_PREF, S_PUPD, S_LIFTED,
  S_OUTCOME, S_TRANSFER, S_RELEASE, S_EXIT, S_VOID, S_END
} step_kind_t;

typedef struct {
  int64_t at;
  uint8_t kind, a, b, c; /* codes, by kind (see emit) */
} step_t;

typedef struct {
  const char *terr, *site, *programme, *justice;
  int inside; /* detention or SAS: interviews in detention until release */
} site_t;

static const site_t sites[] = {
    {"93", "ma-villepinte", "rsa93", "detained", 1},
    {"93", "csl-gagny", "en-route-idf", "semi-liberty", 0},
    {"93", "sas-noisy", "en-route-idf", "sas", 1},
    {"93", "office", "en-route-idf", "open-custody", 0},
    {"75", "qsl-sante", "dynamiques-emploi", "semi-liberty", 0},
    {"75", "chrs-chemin-vert", "dynamiques-emploi", "open-custody", 0},
    {"75", "office", "dynamiques-emploi", "open-custody", 0},
    {"94", "qsl-villejuif", "o2r", "semi-liberty", 0},
    {"94", "spip-creteil", "o2r", "open-custody", 0},
    {"94", "ma-fresnes", "o2r", "detained", 1},
    {"77", "qsl-meaux", "o2r", "semi-liberty", 0},
    {"77", "ma-meaux", "o2r", "detained", 1},
};
#define NSITES (sizeof sites / sizeof sites[0])

static const char *const sources[] = {"spip", "mission-locale", "epi", "chrs", "pjj",
                                      "france-travail", "self", "other"};
static const char *const genders[] = {"m", "m", "m", "m", "m", "f", "m", "x"};
static const char *const educations[] = {"none", "infra3", "infra3", "3", "3", "4", "5+"};
static const char *const barriers[] = {"housing-none", "housing-precarious", "health",
                                       "mental-health", "addiction", "id-papers",
                                       "domiciliation", "social-security", "debts", "digital",
                                       "literacy", "qualification", "mobility", "childcare",
                                       "language", "judicial-constraints"};
#define NBARRIERS (sizeof barriers / sizeof barriers[0])
static const char *const strengths[] = {"work-experience", "adaptability", "team-spirit",
                                        "motivation"};
static const char *const objectives[] = {"remobilisation", "projet-professionnel"};
static const char *const places[] = {"office", "office", "phone", "video", "outreach"};
static const char *const topics[][2] = {{"cv", "job-search"}, {"rights", "id-papers"},
                                        {"housing", "budget"}, {"training", "project"},
                                        {"health", "care"}};
/* 45 on average: (30+35+40+45+45+50+55+60)/8 */
static const int minutes[] = {30, 35, 40, 45, 45, 50, 55, 60};
static const struct {
  const char *partner_kind, *kind, *partner;
} partners[] = {
    {"siae", "pmsmp", "Carton Plein"},       {"training", "training", "Croix-Rouge Competences"},
    {"france-travail", "rights", "France Travail"}, {"csapa", "care", "CSAPA"},
    {"health", "care", "CMP"},               {"housing", "housing", "SIAO"},
    {"other", "other", "Cuisine Mode d'Emploi(s)"}};
static const char *const statuses[] = {"accepted", "refused", "started", "completed",
                                       "cancelled"};
/* Exit reasons with their weights in hundredths (the programmes' experience, roughly). */
static const struct {
  const char *reason;
  int weight;
} exits[] = {{"completed", 30}, {"job", 20},    {"training", 12}, {"lost-contact", 12},
             {"reincarcerated", 8}, {"moved", 8}, {"declined", 6},  {"other", 3},
             {"deceased", 1}};
static const char *const job_outcomes[] = {"cdi", "cdd-6m", "cdd-short", "interim", "cddi",
                                           "business"};

typedef struct person_s {
  psl__demo_stream_t s;
  uint32_t no;
  uint8_t site, gender, education, source, rsa, care, exit_reason; /* exit_reason: index+1 */
  uint16_t birth_year;
  uint8_t barrier[MAX_BARRIERS], nbarrier;
  uint8_t refs[MAX_REFS][PSL_UUID_BYTES];
  uint8_t last_interview[PSL_UUID_BYTES];
  int64_t release_at;
  step_t steps[MAX_STEPS];
  uint16_t nsteps, next;
  uint32_t slot; /* index in its site's list of people followed */
} person_t;

typedef struct {
  person_t **who;
  size_t n, cap;
  int64_t next_session;
} site_state_t;

/* A heap entry keeps the due time beside the person: sifting compares times without
 * touching the people (scattered in memory). */
typedef struct {
  int64_t at;
  person_t *p;
} slot_t;

struct psl_demo_scale_s {
  psl_demo_scale_opts_t o;
  uint64_t rng;
  size_t referred;
  int64_t t0, span, end;
  slot_t *heap;
  size_t nheap, capheap;
  site_state_t site[NSITES];
};

/* ---- The heap of people, by the time of their next step. */

static int64_t due(const person_t *p) { return p->steps[p->next].at; }

static void heap_swap(psl_demo_scale_t *g, size_t i, size_t j) {
  slot_t t = g->heap[i];
  g->heap[i] = g->heap[j];
  g->heap[j] = t;
}

/* The top's person moved to its next step: its new time, sifted down. */
static void heap_down(psl_demo_scale_t *g, size_t i) {
  if (i < g->nheap)
    g->heap[i].at = due(g->heap[i].p);
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < g->nheap && g->heap[l].at < g->heap[m].at)
      m = l;
    if (r < g->nheap && g->heap[r].at < g->heap[m].at)
      m = r;
    if (m == i)
      return;
    heap_swap(g, i, m);
    i = m;
  }
}

static int heap_push(psl_demo_scale_t *g, person_t *p) {
  if (g->nheap == g->capheap) {
    size_t ncap = g->capheap ? g->capheap * 2 : 1024;
    slot_t *h = realloc(g->heap, ncap * sizeof *h);
    if (!h)
      return PSL_ENOMEM;
    g->heap = h;
    g->capheap = ncap;
  }
  size_t i = g->nheap++;
  g->heap[i].at = due(p);
  g->heap[i].p = p;
  while (i > 0 && g->heap[(i - 1) / 2].at > g->heap[i].at) {
    heap_swap(g, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
  return 0;
}

/* ---- The people a site follows (for its sessions' rosters). */

static int site_add(psl_demo_scale_t *g, person_t *p) {
  site_state_t *s = &g->site[p->site];
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 64;
    person_t **w = realloc(s->who, ncap * sizeof *w);
    if (!w)
      return PSL_ENOMEM;
    s->who = w;
    s->cap = ncap;
  }
  p->slot = (uint32_t)s->n;
  s->who[s->n++] = p;
  return 0;
}

static void site_remove(psl_demo_scale_t *g, person_t *p) {
  site_state_t *s = &g->site[p->site];
  if (p->slot >= s->n || s->who[p->slot] != p)
    return;
  s->who[p->slot] = s->who[--s->n];
  s->who[p->slot]->slot = p->slot;
}

/* ---- Planning one person. */

static void add_step(person_t *p, int64_t at, step_kind_t kind, int a, int b, int c) {
  if (p->nsteps >= MAX_STEPS - 1) /* the last slot is kept for S_END */
    return;
  step_t *s = &p->steps[p->nsteps++];
  s->at = at;
  s->kind = (uint8_t)kind;
  s->a = (uint8_t)a;
  s->b = (uint8_t)b;
  s->c = (uint8_t)c;
}

static int step_cmp(const void *x, const void *y) {
  const step_t *a = x, *b = y;
  if (a->at != b->at)
    return a->at < b->at ? -1 : 1;
  return a->kind < b->kind ? -1 : a->kind > b->kind;
}

static int pick_exit(uint64_t *rng) {
  int r = psl__demo_range(rng, 0, 99);
  for (size_t i = 0; i < sizeof exits / sizeof exits[0]; i++) {
    if (r < exits[i].weight)
      return (int)i;
    r -= exits[i].weight;
  }
  return 0;
}

static void plan(psl_demo_scale_t *g, person_t *p, int64_t ref_at) {
  uint64_t *rng = &g->rng;
  const int64_t D = PSL__DEMO_DAY;
  const site_t *site = &sites[p->site];
  int64_t diag = ref_at + psl__demo_range(rng, 3, 15) * D + 2 * PSL__DEMO_HOUR;
  int64_t eng = diag + psl__demo_range(rng, 2, 10) * D;
  int64_t end = ref_at + psl__demo_range(rng, PATH_MIN_DAYS, PATH_MAX_DAYS) * D;
  int exit = psl__demo_range(rng, 0, 3) < 3 ? pick_exit(rng) : -1;
  add_step(p, ref_at, S_REFERRED, 0, 0, 0);
  add_step(p, diag, S_DIAGNOSTIC, 0, 0, 0);
  add_step(p, eng, S_ENGAGEMENT, 0, 0, 0);
  if (strcmp(site->justice, "open-custody") != 0 && psl__demo_range(rng, 0, 9) < 6)
    p->release_at = ref_at + (end - ref_at) * psl__demo_range(rng, 20, 80) / 100;
  if (p->release_at)
    add_step(p, p->release_at, S_RELEASE, 0, 0, 0);
  int void_at = psl__demo_range(rng, 0, 99) == 0 ? psl__demo_range(rng, 1, 4) : -1;
  int n = 0;
  for (int64_t t = eng + psl__demo_range(rng, 5, 14) * D - 3 * PSL__DEMO_HOUR; t < end - D;
       t += psl__demo_range(rng, 8, 20) * D, n++) {
    if (psl__demo_range(rng, 0, 9) == 0) {
      add_step(p, t, S_MISSED, 0, 0, 0);
      continue;
    }
    add_step(p, t, S_INTERVIEW, psl__demo_range(rng, 0, 7), psl__demo_range(rng, 0, 4),
             psl__demo_range(rng, 0, 4));
    if (n == void_at) /* recorded on the wrong person: voided the next day */
      add_step(p, t + D, S_VOID, 0, 0, 0);
  }
  int nref = psl__demo_range(rng, 0, MAX_REFS - 1);
  for (int i = 0; i < nref; i++) {
    int64_t t = diag + psl__demo_range(rng, 7, (int)((end - diag) / D) + 7) * D;
    if (t + 25 * D >= end)
      continue;
    int kind = psl__demo_range(rng, 0, (int)(sizeof partners / sizeof partners[0]) - 1);
    psl__demo_uuid(p->refs[i], t, rng);
    add_step(p, t + PSL__DEMO_HOUR, S_PREF, i, kind, 0);
    add_step(p, t + psl__demo_range(rng, 5, 12) * D, S_PUPD, i, psl__demo_range(rng, 0, 3) ? 0 : 1,
             0);
    if (psl__demo_range(rng, 0, 1))
      add_step(p, t + psl__demo_range(rng, 14, 24) * D, S_PUPD, i, psl__demo_range(rng, 2, 3), 0);
  }
  for (int i = 0, lifts = psl__demo_range(rng, 0, 2); i < lifts && i < p->nbarrier; i++) {
    int64_t t = diag + psl__demo_range(rng, 20, 90) * D;
    if (t < end)
      add_step(p, t, S_LIFTED, p->barrier[i], 0, 0);
  }
  if (psl__demo_range(rng, 0, 32) == 0) { /* moved to another site, maybe another territory */
    int to = psl__demo_range(rng, 0, (int)NSITES - 1);
    if (to != p->site)
      add_step(p, ref_at + (end - ref_at) * psl__demo_range(rng, 30, 70) / 100, S_TRANSFER, to,
               0, 0);
  }
  if (exit >= 0) {
    const char *why = exits[exit].reason;
    if (!strcmp(why, "job"))
      add_step(p, end - 3 * D, S_OUTCOME, 1 + psl__demo_range(rng, 0, 5), 0, 0);
    else if (!strcmp(why, "training"))
      add_step(p, end - 3 * D, S_OUTCOME, 0, 0, 0);
    add_step(p, end, S_EXIT, exit, 0, 0);
  }
  qsort(p->steps, p->nsteps, sizeof *p->steps, step_cmp);
  /* the last step: leave the site's list (not an event) */
  p->steps[p->nsteps].at = p->steps[p->nsteps - 1].at;
  p->steps[p->nsteps].kind = S_END;
  p->nsteps++;
}

static person_t *new_person(psl_demo_scale_t *g, int64_t ref_at) {
  uint64_t *rng = &g->rng;
  person_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->no = (uint32_t)g->referred + 1;
  p->site = (uint8_t)psl__demo_range(rng, 0, (int)NSITES - 1);
  const site_t *site = &sites[p->site];
  psl__demo_uuid(p->s.id, ref_at, rng);
  memcpy(p->s.terr, site->terr, strlen(site->terr) + 1);
  p->gender = (uint8_t)psl__demo_range(rng, 0, 7);
  p->education = (uint8_t)psl__demo_range(rng, 0, 6);
  p->source = (uint8_t)psl__demo_range(rng, 0, 7);
  p->rsa = !strcmp(site->programme, "rsa93") || psl__demo_range(rng, 0, 4) == 0;
  p->care = psl__demo_range(rng, 0, 9) < 6;
  int y, m;
  psl_local_ym(ref_at, &y, &m);
  p->birth_year = (uint16_t)(y - psl__demo_range(rng, 18, 62));
  /* barriers: housing for 3 in 10, then 1 to 3 others, distinct */
  int h = psl__demo_range(rng, 0, 9);
  if (h < 3)
    p->barrier[p->nbarrier++] = (uint8_t)(h == 0 ? 0 : 1);
  for (int i = 0, want = psl__demo_range(rng, 1, 3); i < want; i++) {
    uint8_t b = (uint8_t)psl__demo_range(rng, 2, (int)NBARRIERS - 1);
    int dup = 0;
    for (int j = 0; j < p->nbarrier; j++)
      dup |= p->barrier[j] == b;
    if (!dup)
      p->barrier[p->nbarrier++] = b;
  }
  plan(g, p, ref_at);
  return p;
}

/* ---- Emitting. */

static void emit(psl_demo_scale_t *g, person_t *p, const step_t *st, psl_demo_event_t *e) {
  uint64_t *rng = &g->rng;
  const site_t *site = &sites[p->site];
  switch ((step_kind_t)st->kind) {
  case S_REFERRED: {
    psl__demo_referral_t r = {site->programme, site->site, sources[p->source], site->justice,
                              genders[p->gender], educations[p->education], p->birth_year,
                              p->rsa, p->no};
    psl__demo_referred(e, &p->s, st->at, &r, rng);
    break;
  }
  case S_DIAGNOSTIC: {
    const char *b[MAX_BARRIERS];
    for (int i = 0; i < p->nbarrier; i++)
      b[i] = barriers[p->barrier[i]];
    psl__demo_diagnostic(e, &p->s, st->at, b, p->nbarrier, strengths + (p->no % 3), 2, p->care,
                         rng);
    break;
  }
  case S_ENGAGEMENT:
    psl__demo_engagement(e, &p->s, st->at, p->rsa ? "cer" : "charte", objectives, 2, rng);
    break;
  case S_INTERVIEW: {
    int inside = site->inside && (!p->release_at || st->at < p->release_at);
    psl__demo_interview(e, &p->s, st->at, minutes[st->a], inside ? "detention" : places[st->b],
                        inside ? site->site : NULL, topics[st->c], 2, rng);
    memcpy(p->last_interview, e->id, PSL_UUID_BYTES);
    break;
  }
  case S_MISSED:
    psl__demo_missed(e, &p->s, st->at, rng);
    break;
  case S_PREF:
    psl__demo_partner_referred(e, &p->s, st->at, p->refs[st->a], partners[st->b].partner_kind,
                               partners[st->b].kind, partners[st->b].partner, rng);
    break;
  case S_PUPD:
    psl__demo_partner_updated(e, &p->s, st->at, p->refs[st->a], statuses[st->b], rng);
    break;
  case S_LIFTED:
    psl__demo_lifted(e, &p->s, st->at, barriers[st->a], NULL, rng);
    break;
  case S_OUTCOME:
    psl__demo_outcome(e, &p->s, st->at, st->a ? job_outcomes[st->a - 1] : "training", rng);
    break;
  case S_TRANSFER: {
    const site_t *to = &sites[st->a];
    site_remove(g, p);
    psl__demo_transferred(e, &p->s, st->at, strcmp(to->terr, p->s.terr) ? to->terr : NULL,
                          to->site, strcmp(to->programme, site->programme) ? to->programme : NULL,
                          rng);
    p->site = st->a;
    site_add(g, p); /* an allocation failure only thins later rosters */
    break;
  }
  case S_RELEASE:
    psl__demo_justice(e, &p->s, st->at, "released", rng);
    break;
  case S_EXIT:
    psl__demo_exited(e, &p->s, st->at, exits[st->a].reason, rng);
    break;
  case S_VOID:
    psl__demo_voided(e, &p->s, st->at, p->last_interview, "saisi sur la mauvaise personne", rng);
    break;
  case S_END:
    break;
  }
}

/* A site's weekly session, its roster drawn from the people it follows today. */
static int emit_session(psl_demo_scale_t *g, size_t si, psl_demo_event_t *e) {
  site_state_t *s = &g->site[si];
  uint8_t att[PSL_DEMO_MAX_ATTENDEES][PSL_UUID_BYTES];
  int64_t at = s->next_session;
  s->next_session += 7 * PSL__DEMO_DAY;
  size_t want = (size_t)psl__demo_range(&g->rng, 4, 8), n = 0;
  if (want > s->n)
    want = s->n;
  if (want < 2)
    return PSL_EAGAIN; /* nobody to gather this week */
  size_t start = (size_t)(psl__demo_rand(&g->rng) % s->n);
  for (; n < want; n++) /* consecutive people from a random start: distinct */
    memcpy(att[n], s->who[(start + n) % s->n]->s.id, PSL_UUID_BYTES);
  psl__demo_stream_t ss = {{0}, 1, "", 0};
  memcpy(ss.terr, sites[si].terr, strlen(sites[si].terr) + 1);
  psl__demo_uuid(ss.id, at, &g->rng);
  static const char *const seq[] = {"info", "career-analysis", "shortage-sectors",
                                    "workplace-codes", "interview-practice", "partner-talk",
                                    "cultural-outing", "other"};
  psl__demo_session(e, &ss, at, seq[psl__demo_range(&g->rng, 0, 7)], sites[si].site, 120,
                    (const uint8_t(*)[PSL_UUID_BYTES])att, n, sites[si].programme, &g->rng);
  return 0;
}

int psl_demo_scale_new(psl_demo_scale_t **out, const psl_demo_scale_opts_t *opts) {
  psl_demo_scale_t *g = calloc(1, sizeof *g);
  *out = NULL;
  if (!g)
    return PSL_ENOMEM;
  g->o = *opts;
  if (!g->o.first_year)
    g->o.first_year = 2024;
  if (g->o.years <= 0)
    g->o.years = 1;
  if (g->o.first_year < 2001 || g->o.first_year + g->o.years > 2098) {
    free(g);
    return PSL_EINVALID;
  }
  g->rng = g->o.seed ? g->o.seed : 1;
  g->t0 = psl_local_month_start(g->o.first_year, 1);
  g->span = psl_local_month_start(g->o.first_year + g->o.years, 1) - g->t0;
  g->end = g->t0 + g->span + (int64_t)(PATH_MAX_DAYS + 30) * PSL__DEMO_DAY;
  for (size_t i = 0; i < NSITES; i++) /* Tuesdays-ish, a different hour per site */
    g->site[i].next_session = g->t0 + 7 * PSL__DEMO_DAY + (int64_t)(9 + i % 8) * PSL__DEMO_HOUR;
  *out = g;
  return 0;
}

void psl_demo_scale_free(psl_demo_scale_t *g) {
  if (!g)
    return;
  for (size_t i = 0; i < g->nheap; i++)
    free(g->heap[i].p);
  free(g->heap);
  for (size_t i = 0; i < NSITES; i++)
    free(g->site[i].who);
  free(g);
}

/* When the next referral happens: evenly over the span, each in its own slot, by day. */
static int64_t next_referral_at(psl_demo_scale_t *g) {
  int64_t slot = g->span / (int64_t)g->o.participants;
  int64_t at = g->t0 + slot * (int64_t)g->referred;
  uint64_t mix = g->referred * 0x9E3779B97F4A7C15ull;
  return at + (int64_t)((mix >> 11) % (uint64_t)(slot > 1 ? slot : 1));
}

int psl_demo_scale_next(psl_demo_scale_t *g, psl_demo_event_t *e) {
  for (;;) {
    int64_t t_ref = g->referred < g->o.participants ? next_referral_at(g) : INT64_MAX;
    int64_t t_heap = g->nheap ? g->heap[0].at : INT64_MAX;
    size_t si = 0;
    for (size_t i = 1; i < NSITES; i++)
      if (g->site[i].next_session < g->site[si].next_session)
        si = i;
    int64_t t_sess = g->site[si].next_session;
    if (t_ref == INT64_MAX && t_heap == INT64_MAX)
      return PSL_ENOTFOUND; /* every history told: the sessions stop with the people */
    if (t_sess < t_ref && t_sess < t_heap && t_sess < g->end) {
      if (emit_session(g, si, e) == 0)
        return 0;
      continue;
    }
    if (t_ref <= t_heap) {
      person_t *p = new_person(g, t_ref);
      if (!p || site_add(g, p) != 0) {
        free(p);
        return PSL_ENOMEM;
      }
      if (heap_push(g, p) != 0) {
        site_remove(g, p);
        free(p);
        return PSL_ENOMEM;
      }
      g->referred++;
      continue;
    }
    person_t *p = g->heap[0].p;
    const step_t *st = &p->steps[p->next++];
    if (st->kind == S_END) {
      site_remove(g, p);
      g->heap[0] = g->heap[--g->nheap];
      heap_down(g, 0);
      free(p);
      continue;
    }
    if (st->kind == S_EXIT)
      site_remove(g, p);
    emit(g, p, st, e);
    heap_down(g, 0);
    return 0;
  }
}
