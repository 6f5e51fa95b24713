/*
 * seed2024.c — the 2024 data set: 104 people followed in 2024 whose events make the yearly
 * report print the figures of the organisation's 2024 activity report
 * (the shared seed/rapport-activite-2024.md, BRIEF.md §3).  docs/DEMO.md explains how
 * each figure follows from the rows below.
 *
 * The people are planned row by row (one table per group of the report's sites); their
 * events are then derived by one routine (person_events) — referral, diagnostic, engagement,
 * 1 to 3 interviews a month of ~45 minutes, partner referrals and their updates, barriers
 * lifted, release, transfer, outcome, exit — and the collective sessions by another
 * (sessions), their rosters drawn from the people present on the day.
 *
 * The figures are checked here before anything is written (seed_check): ages, shares,
 * sites, RSA exits, Gagny's months followed, sessions in detention.  A table that no longer
 * meets them is a bug, reported on stderr and answered PSL_EINTERNAL.
 *
 *   group       terr site              programme          people  of which
 *   villepinte  93   ma-villepinte     rsa93              15      3 referred in Nov-Dec 2023
 *   gagny       93   csl-gagny         rsa93/en-route-idf 15      6 rsa93; 9.0 months followed
 *   noisy       93   sas-noisy         rsa93/en-route-idf 23      6 rsa93; 2 cohorts from Sep
 *   office93    93   office            en-route-idf        7      4 move to Paris (transfer)
 *   sante       75   qsl-sante         dynamiques-emploi  24      ~7-month pathways
 *   chrs        75   chrs-chemin-vert  dynamiques-emploi   6      January to March
 *   office75    75   office            dynamiques-emploi  14      + 1 duplicate, merged
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_int.h"
#include "psl_domain.h"

/* The year the data set reproduces, and the seed of its ids. */
#define SEED_YEAR 2024
#define SEED_RNG UINT64_C(20240101)
/* The report's figures (the checks below). */
#define SEED_PEOPLE 104
#define SEED_AGE_SUM_93 2010  /* 60 people followed in 93 × 33.5 */
#define SEED_AGE_SUM_75 1704  /* 48 people followed in 75 (44 + 4 moved from 93) × 35.5 */
#define SEED_AGE_SUM 3536     /* 104 × 34 */
#define SEED_HOUSING 31       /* 31 / 104 = 29.8 % → "30 %" */
#define SEED_CARE 62          /* 62 / 104 = 59.6 % → "60 %" */
#define SEED_GAGNY_DAYS 4109  /* 15 people × 9.0 months × 30.436875 days */
#define SEED_DETENTION_MEAN 6 /* attendees per session in detention */
/* Events of one person: ~40 at most (a year of interviews, referrals, updates). */
#define PERSON_MAX_EVENTS 96
#define MAX_PEOPLE 112

enum { G_VILLEPINTE, G_GAGNY, G_NOISY, G_OFFICE93, G_SANTE, G_CHRS, G_OFFICE75, G__N };

typedef struct {
  const char *name, *terr, *site, *programme, *justice, *source, *source2;
} group_t;

static const group_t groups[G__N] = {
    {"villepinte", "93", "ma-villepinte", "rsa93", "detained", "spip", "spip"},
    {"gagny", "93", "csl-gagny", "en-route-idf", "semi-liberty", "spip", "spip"},
    {"noisy", "93", "sas-noisy", "en-route-idf", "sas", "spip", "spip"},
    {"office93", "93", "office", "en-route-idf", "open-custody", "france-travail", "spip"},
    {"sante", "75", "qsl-sante", "dynamiques-emploi", "semi-liberty", "spip", "spip"},
    {"chrs", "75", "chrs-chemin-vert", "dynamiques-emploi", "open-custody", "chrs", "chrs"},
    {"office75", "75", "office", "dynamiques-emploi", "open-custody", "epi", "mission-locale"},
};

/* One person: dates "YYYY-MM-DD"; NULL when it does not happen. */
typedef struct {
  int age;              /* in 2024 */
  const char *ref;      /* participant.referred */
  const char *release;  /* justice.changed → released */
  const char *exit;     /* participant.exited */
  const char *reason;   /* its reason */
  const char *outcome;  /* outcome.recorded three days before the exit */
  char housing;         /* 'h' housing-none, 'p' housing-precarious, 0 neither */
  int care;             /* care obligation in the diagnostic */
  int rsa;              /* programme rsa93 and rsa: true */
  const char *transfer; /* participant.transferred to Paris (office) */
  char gender;          /* 'm' unless said */
} plan_t;

#define P(age, ref, rel, ex, why, out, h, care, rsa) {age, ref, rel, ex, why, out, h, care, rsa, NULL, 0}

static const plan_t villepinte[] = {
    P(27, "2023-11-06", "2024-03-14", "2024-06-20", "job", "cdi", 'h', 1, 1),
    P(34, "2023-11-20", "2024-04-11", "2024-09-12", "job", "cddi", 0, 1, 1),
    P(41, "2023-12-11", "2024-05-07", "2024-10-03", "training", "training", 0, 1, 1),
    P(30, "2024-03-05", "2024-07-23", "2024-11-19", "job", "interim", 'h', 0, 1),
    P(48, "2024-03-19", "2024-08-06", "2024-12-03", "training", "training", 0, 1, 1),
    P(36, "2024-04-09", "2024-09-17", "2024-11-05", "reincarcerated", NULL, 'p', 0, 1),
    P(32, "2024-04-23", "2024-10-15", "2024-12-10", "moved", NULL, 0, 1, 1),
    P(55, "2024-05-14", "2024-12-17", NULL, NULL, NULL, 0, 1, 1),
    P(39, "2024-06-04", NULL, NULL, NULL, NULL, 'h', 0, 1),
    P(25, "2024-06-18", NULL, NULL, NULL, NULL, 0, 1, 1),
    P(44, "2024-07-09", NULL, NULL, NULL, NULL, 0, 1, 1),
    P(33, "2024-09-10", NULL, NULL, NULL, NULL, 'p', 0, 1),
    P(38, "2024-09-24", NULL, NULL, NULL, NULL, 0, 1, 1),
    P(29, "2024-10-08", NULL, NULL, NULL, NULL, 0, 0, 1),
    P(37, "2024-10-22", NULL, NULL, NULL, NULL, 0, 0, 1),
};

/* Two half-day permanences a month from March.  The last row's referral is moved by
 * seed_gagny_adjust so that the months followed add up to SEED_GAGNY_DAYS exactly. */
static const plan_t gagny[] = {
    P(30, "2024-03-05", NULL, "2024-11-18", "job", "cdd-6m", 0, 1, 1),
    P(37, "2024-03-05", "2024-06-10", NULL, NULL, NULL, 0, 1, 1),
    P(44, "2024-03-05", NULL, NULL, NULL, NULL, 'h', 0, 0),
    P(33, "2024-03-05", "2024-07-01", NULL, NULL, NULL, 0, 1, 0),
    P(27, "2024-03-19", NULL, "2024-12-09", "job", "interim", 'p', 1, 1),
    P(41, "2024-03-19", "2024-08-05", NULL, NULL, NULL, 0, 1, 1),
    P(49, "2024-03-19", "2024-09-02", NULL, NULL, NULL, 0, 1, 0),
    P(35, "2024-03-19", NULL, NULL, NULL, NULL, 'h', 0, 0),
    P(31, "2024-04-02", NULL, "2024-12-02", "training", "training", 0, 1, 1),
    P(39, "2024-04-02", "2024-10-07", NULL, NULL, NULL, 0, 0, 1),
    {25, "2024-04-02", "2024-10-21", NULL, NULL, NULL, 0, 1, 0, NULL, 'f'},
    P(46, "2024-04-02", NULL, NULL, NULL, NULL, 'p', 0, 0),
    P(34, "2024-04-16", NULL, "2024-12-13", "lost-contact", NULL, 0, 1, 0),
    P(29, "2024-04-16", "2024-11-18", NULL, NULL, NULL, 0, 1, 0),
    P(38, "2024-04-16", NULL, NULL, NULL, NULL, 0, 0, 0),
};

/* From September: two cohorts of a 6-session programme; 2/3 go on outside after release. */
static const plan_t noisy[] = {
    P(22, "2024-09-03", "2024-11-04", NULL, NULL, NULL, 0, 1, 1),
    P(25, "2024-09-03", "2024-11-12", NULL, NULL, NULL, 'h', 0, 0),
    P(20, "2024-09-03", "2024-11-18", NULL, NULL, NULL, 0, 1, 0),
    P(28, "2024-09-03", "2024-11-25", NULL, NULL, NULL, 0, 1, 0),
    P(31, "2024-09-10", NULL, NULL, NULL, NULL, 'p', 0, 1),
    P(23, "2024-09-10", "2024-12-02", NULL, NULL, NULL, 0, 1, 0),
    P(26, "2024-09-10", "2024-12-02", NULL, NULL, NULL, 0, 1, 0),
    P(34, "2024-09-10", "2024-12-09", NULL, NULL, NULL, 0, 0, 0),
    P(21, "2024-09-17", NULL, NULL, NULL, NULL, 0, 1, 1),
    P(29, "2024-09-17", "2024-12-09", NULL, NULL, NULL, 'h', 0, 0),
    P(24, "2024-09-17", "2024-12-16", NULL, NULL, NULL, 0, 1, 0),
    P(27, "2024-09-17", "2024-12-16", NULL, NULL, NULL, 0, 1, 0),
    P(37, "2024-10-15", "2024-12-09", NULL, NULL, NULL, 'p', 0, 1),
    P(22, "2024-10-15", "2024-12-16", NULL, NULL, NULL, 0, 0, 0),
    P(30, "2024-10-15", "2024-12-16", NULL, NULL, NULL, 0, 1, 0),
    P(25, "2024-10-15", NULL, NULL, NULL, NULL, 'h', 0, 0),
    P(32, "2024-10-29", "2024-12-20", NULL, NULL, NULL, 0, 1, 1),
    P(23, "2024-10-29", "2024-12-20", NULL, NULL, NULL, 0, 0, 0),
    P(39, "2024-10-29", NULL, NULL, NULL, NULL, 0, 1, 0),
    P(26, "2024-10-29", NULL, NULL, NULL, NULL, 'p', 0, 0),
    P(28, "2024-11-05", NULL, NULL, NULL, NULL, 0, 1, 1),
    P(24, "2024-11-05", NULL, "2024-12-03", "declined", NULL, 0, 0, 0),
    P(27, "2024-11-05", NULL, NULL, NULL, NULL, 0, 1, 0),
};

/* Referred by France Travail or the SPIP in open custody; the first four move to Paris. */
static const plan_t office93[] = {
    {41, "2024-03-12", NULL, NULL, NULL, NULL, 'h', 0, 0, "2024-06-17", 0},
    {44, "2024-03-26", NULL, NULL, NULL, NULL, 0, 1, 0, "2024-07-15", 0},
    {45, "2024-04-09", NULL, NULL, NULL, NULL, 0, 1, 0, "2024-08-19", 0},
    {48, "2024-04-23", NULL, NULL, NULL, NULL, 0, 0, 0, "2024-09-16", 0},
    P(42, "2024-05-14", NULL, "2024-12-10", "completed", NULL, 0, 1, 0),
    P(38, "2024-06-11", NULL, NULL, NULL, NULL, 'p', 0, 0),
    {43, "2024-07-09", NULL, NULL, NULL, NULL, 0, 1, 0, NULL, 'f'},
};

/* Two permanences a month at the QSL from March, then pathways of ~7 months at the office. */
static const plan_t sante[] = {
    P(31, "2024-03-07", "2024-07-08", "2024-10-08", "completed", NULL, 0, 1, 0),
    P(38, "2024-03-07", "2024-07-15", "2024-10-15", "job", "cdi", 0, 1, 0),
    P(27, "2024-03-21", "2024-07-22", "2024-10-22", "training", "training", 0, 1, 0),
    P(44, "2024-03-21", "2024-08-05", "2024-10-29", "completed", NULL, 'h', 0, 0),
    P(35, "2024-04-04", "2024-08-12", "2024-11-05", "job", "cdd-6m", 0, 1, 0),
    {29, "2024-04-04", "2024-08-26", "2024-11-12", "completed", NULL, 0, 1, 0, NULL, 'f'},
    P(41, "2024-04-18", "2024-09-02", "2024-11-19", "training", "training", 0, 0, 0),
    P(33, "2024-04-18", "2024-09-09", "2024-11-26", "completed", NULL, 'p', 1, 0),
    P(26, "2024-05-02", "2024-09-16", "2024-12-03", "job", "interim", 0, 0, 0),
    P(47, "2024-05-02", "2024-09-23", "2024-12-10", "completed", NULL, 0, 1, 0),
    P(36, "2024-05-16", "2024-10-07", NULL, NULL, NULL, 0, 1, 0),
    P(30, "2024-05-16", "2024-10-14", NULL, NULL, NULL, 0, 0, 0),
    P(39, "2024-06-06", "2024-11-04", NULL, NULL, NULL, 0, 1, 0),
    P(28, "2024-06-06", "2024-11-12", NULL, NULL, NULL, 0, 1, 0),
    P(34, "2024-06-20", NULL, "2024-09-24", "reincarcerated", NULL, 'h', 0, 0),
    P(42, "2024-06-20", NULL, NULL, NULL, NULL, 0, 1, 0),
    P(25, "2024-07-04", NULL, NULL, NULL, NULL, 0, 0, 0),
    {37, "2024-07-04", NULL, NULL, NULL, NULL, 0, 1, 0, NULL, 'f'},
    P(32, "2024-09-05", NULL, NULL, NULL, NULL, 'p', 0, 0),
    P(45, "2024-09-05", NULL, NULL, NULL, NULL, 0, 1, 0),
    P(29, "2024-09-19", NULL, NULL, NULL, NULL, 0, 1, 0),
    P(40, "2024-09-19", NULL, NULL, NULL, NULL, 0, 0, 0),
    P(33, "2024-10-03", NULL, NULL, NULL, NULL, 'p', 0, 0),
    P(36, "2024-10-03", NULL, NULL, NULL, NULL, 0, 1, 0),
};

/* A permanence at the CHRS, January to March: 4 sessions for the same 6 residents. */
static const plan_t chrs[] = {
    P(48, "2024-01-09", NULL, "2024-03-26", "completed", NULL, 'p', 1, 0),
    {39, "2024-01-09", NULL, "2024-03-26", "job", "cddi", 'p', 0, 0, NULL, 'f'},
    P(52, "2024-01-09", NULL, "2024-03-26", "completed", NULL, 'p', 1, 0),
    {44, "2024-01-16", NULL, "2024-03-28", "training", "training", 'p', 0, 0, NULL, 'f'},
    P(36, "2024-01-16", NULL, "2024-03-28", "completed", NULL, 'p', 1, 0),
    P(41, "2024-01-16", NULL, "2024-03-28", "completed", NULL, 'p', 0, 0),
};

/* Referred by the Espaces parisiens d'insertion and the Mission locale.  Row 4 has an
 * interview recorded on them by mistake, then voided; row 6 is recorded twice by two
 * caseworkers offline, and the duplicate merged into it. */
#define OFFICE75_VOIDED 4
#define OFFICE75_DUPLICATED 6
static const plan_t office75[] = {
    P(23, "2024-04-10", NULL, "2024-10-14", "job", "cdd-short", 0, 1, 0),
    P(29, "2024-04-24", NULL, "2024-08-19", "lost-contact", NULL, 0, 1, 0),
    {35, "2024-05-15", NULL, "2024-12-09", "completed", NULL, 'p', 0, 0, NULL, 'f'},
    P(27, "2024-05-29", NULL, NULL, NULL, NULL, 0, 1, 0),
    P(31, "2024-06-12", NULL, NULL, NULL, NULL, 0, 0, 0),
    P(26, "2024-06-26", NULL, NULL, NULL, NULL, 0, 1, 0),
    P(38, "2024-07-10", NULL, NULL, NULL, NULL, 'h', 0, 0),
    P(24, "2024-09-11", NULL, NULL, NULL, NULL, 0, 1, 0),
    {30, "2024-09-25", NULL, NULL, NULL, NULL, 0, 0, 0, NULL, 'f'},
    P(34, "2024-10-09", NULL, NULL, NULL, NULL, 0, 1, 0),
    P(22, "2024-10-23", NULL, NULL, NULL, NULL, 'p', 0, 0),
    {57, "2024-11-06", NULL, NULL, NULL, NULL, 0, 1, 0, NULL, 'f'},
    P(28, "2024-11-20", NULL, NULL, NULL, NULL, 0, 1, 0),
    {25, "2024-12-04", NULL, NULL, NULL, NULL, 0, 0, 0, NULL, 'x'},
};

static const struct {
  const plan_t *rows;
  size_t n;
} tables[G__N] = {
    {villepinte, sizeof villepinte / sizeof villepinte[0]},
    {gagny, sizeof gagny / sizeof gagny[0]},
    {noisy, sizeof noisy / sizeof noisy[0]},
    {office93, sizeof office93 / sizeof office93[0]},
    {sante, sizeof sante / sizeof sante[0]},
    {chrs, sizeof chrs / sizeof chrs[0]},
    {office75, sizeof office75 / sizeof office75[0]},
};

/* ---- A person, once planned. */

typedef struct {
  int group, row, k; /* k: 0..103 over every group, in table order */
  const plan_t *plan;
  psl__demo_stream_t s;
  int64_t ref_at, release_at, exit_at, transfer_at; /* 0: none */
} person_t;

static int64_t date_at(const char *ymd, int h, int mi) {
  int y, m, d;
  if (!ymd || sscanf(ymd, "%d-%d-%d", &y, &m, &d) != 3)
    return 0;
  return psl__demo_local(y, m, d, h, mi);
}

static const char *const education_cycle[] = {"infra3", "none", "3",      "infra3", "4",
                                              "infra3", "3",    "none",   "infra3", "5+"};
static const char *const barrier_cycle[] = {"id-papers",       "domiciliation", "digital",
                                            "mental-health",   "addiction",     "debts",
                                            "social-security", "mobility",      "literacy",
                                            "health"};
static const char *const strength_sets[][2] = {{"work-experience", "adaptability"},
                                               {"team-spirit", "motivation"},
                                               {"experience-abroad", "punctuality"},
                                               {"sport", "work-experience"}};
static const char *const topic_sets[][2] = {{"cv", "job-search"},   {"rights", "id-papers"},
                                            {"housing", "budget"},  {"training", "project"},
                                            {"health", "care"},     {"job-search", "interview"}};
static const char *const objectives[] = {"remobilisation", "projet-professionnel",
                                         "acces-aux-droits"};
/* Days between two appointments: 1 to 3 interviews a month, about 2 (BRIEF.md §3). */
static const int interview_steps[] = {14, 12, 16, 18, 11, 15};
/* Minutes of the interviews, in turn: 45 on average (BRIEF.md §3). */
static const int interview_minutes[] = {45, 40, 50};

typedef struct {
  psl_demo_event_t *ev;
  size_t n, cap;
  uint64_t rng;
} build_t;

static psl_demo_event_t *next_slot(build_t *b) {
  if (b->n == b->cap) {
    size_t ncap = b->cap ? b->cap * 2 : 4096;
    psl_demo_event_t *p = realloc(b->ev, ncap * sizeof *p);
    if (!p)
      return NULL;
    b->ev = p;
    b->cap = ncap;
  }
  return &b->ev[b->n++];
}

/* Events are built in one stream's order of time; this keeps the order of build for equal
 * times, so the versions (expect) follow. */
static int by_at(const void *a, const void *b) {
  const psl_demo_event_t *x = a, *y = b;
  if (x->at != y->at)
    return x->at < y->at ? -1 : 1;
  return memcmp(x->id, y->id, PSL_UUID_BYTES) < 0 ? -1 : 1;
}

/* ---- One person's events.  Their order within the stream is the order of `at` (interviews
 * are dated apart from the other events of a day), then expect is set by that order. */

typedef struct {
  build_t *b;
  person_t *p;
  size_t first;
} pev_t;

#define EV(call)                                                                          \
  do {                                                                                    \
    psl_demo_event_t *e_ = next_slot(pe->b);                                              \
    if (!e_)                                                                              \
      return PSL_ENOMEM;                                                                  \
    call;                                                                                 \
  } while (0)

static int person_events(build_t *b, person_t *p, uint8_t voided_of[PSL_UUID_BYTES]) {
  pev_t pv = {b, p, b->n}, *pe = &pv;
  const plan_t *pl = p->plan;
  const group_t *g = &groups[p->group];
  uint64_t *rng = &b->rng;
  int64_t end = psl_local_month_start(SEED_YEAR + 1, 1) - PSL__DEMO_HOUR; /* Dec 31, 23:00 */
  int64_t stop = p->exit_at ? p->exit_at : end;
  int detained = strcmp(g->justice, "detained") == 0 || strcmp(g->justice, "sas") == 0 ||
                 strcmp(g->justice, "semi-liberty") == 0;

  psl__demo_referral_t r = {
      .programme = pl->rsa ? "rsa93" : g->programme,
      .site = g->site,
      .source = p->k % 2 ? g->source2 : g->source,
      .justice = p->group == G_OFFICE93 && p->row % 2 ? "electronic-monitoring" : g->justice,
      .gender = pl->gender == 'f' ? "f" : pl->gender == 'x' ? "x" : "m",
      .education = education_cycle[p->k % 10],
      .birth_year = SEED_YEAR - pl->age,
      .rsa = pl->rsa,
      .name_no = (unsigned)p->k + 1,
  };
  EV(psl__demo_referred(e_, &p->s, p->ref_at, &r, rng));

  /* diagnostic a week later (two at the detention sites: the next permanence) */
  int64_t diag_at = p->ref_at + (detained ? 14 : 7) * PSL__DEMO_DAY + 4 * PSL__DEMO_HOUR;
  const char *bar[5];
  size_t nb = 0;
  bar[nb++] = "qualification";
  bar[nb++] = barrier_cycle[p->k % 10];
  bar[nb++] = barrier_cycle[(p->k * 3 + 1) % 10]; /* never the same: 2k = 9 (mod 10) has no k */
  if (pl->housing)
    bar[nb++] = pl->housing == 'h' ? "housing-none" : "housing-precarious";
  if (strcmp(g->justice, "detained") == 0)
    bar[nb++] = "judicial-constraints";
  EV(psl__demo_diagnostic(e_, &p->s, diag_at, bar, nb, strength_sets[p->k % 4], 2, pl->care,
                          rng));
  EV(psl__demo_engagement(e_, &p->s, diag_at + 7 * PSL__DEMO_DAY + PSL__DEMO_HOUR,
                          pl->rsa ? "cer" : "charte", objectives, 2 + p->k % 2, rng));

  /* partner referrals that follow from the diagnostic */
  uint8_t ref[PSL_UUID_BYTES];
  int64_t t = diag_at + 10 * PSL__DEMO_DAY + 2 * PSL__DEMO_HOUR;
  if (pl->care && t + 21 * PSL__DEMO_DAY < stop) {
    psl__demo_uuid(ref, t, rng);
    EV(psl__demo_partner_referred(e_, &p->s, t, ref, "csapa", "care", "CSAPA", rng));
    EV(psl__demo_partner_updated(e_, &p->s, t + 7 * PSL__DEMO_DAY, ref, "accepted", rng));
    EV(psl__demo_partner_updated(e_, &p->s, t + 21 * PSL__DEMO_DAY, ref, "started", rng));
  }
  t = diag_at + 12 * PSL__DEMO_DAY + 2 * PSL__DEMO_HOUR;
  if (pl->housing && t + 20 * PSL__DEMO_DAY < stop) {
    psl__demo_uuid(ref, t, rng);
    EV(psl__demo_partner_referred(e_, &p->s, t, ref, "housing", "housing", "SIAO", rng));
    EV(psl__demo_partner_updated(e_, &p->s, t + 20 * PSL__DEMO_DAY, ref, "accepted", rng));
  }
  for (size_t i = 1; i < nb; i++) { /* papers and domiciliation are the quick wins */
    int days = strcmp(bar[i], "domiciliation") == 0 ? 30 : strcmp(bar[i], "id-papers") == 0 ? 45 : 0;
    if (days && diag_at + days * PSL__DEMO_DAY < stop)
      EV(psl__demo_lifted(e_, &p->s, diag_at + days * PSL__DEMO_DAY, bar[i],
                          days == 30 ? "domiciliation CCAS" : "CNI refaite", rng));
  }

  if (p->release_at) {
    EV(psl__demo_justice(e_, &p->s, p->release_at, "released", rng));
    t = p->release_at + 10 * PSL__DEMO_DAY + 5 * PSL__DEMO_HOUR;
    if (t + 5 * PSL__DEMO_DAY < stop) {
      psl__demo_uuid(ref, t, rng);
      EV(psl__demo_partner_referred(e_, &p->s, t, ref, "france-travail", "rights",
                                    "France Travail", rng));
      EV(psl__demo_partner_updated(e_, &p->s, t + 5 * PSL__DEMO_DAY, ref, "accepted", rng));
    }
  }
  if (p->transfer_at) /* moved to Paris: the Paris office goes on with the pathway */
    EV(psl__demo_transferred(e_, &p->s, p->transfer_at, "75", "office", NULL, rng));

  /* interviews: 1 to 3 a month until the exit or the end of the year */
  int64_t at = diag_at + 14 * PSL__DEMO_DAY - 3 * PSL__DEMO_HOUR;
  int i = 0, out = 0;
  for (; at < stop - PSL__DEMO_HOUR; i++) {
    int inside = detained && (!p->release_at || at < p->release_at);
    int cur_detention = inside && p->group != G_SANTE && p->group != G_GAGNY;
    const char *place = p->group == G_CHRS ? "outreach" : cur_detention ? "detention"
                        : i % 6 == 5 ? "phone" : "office";
    if (!inside && ++out % 7 == 0) {
      EV(psl__demo_missed(e_, &p->s, at, rng)); /* one appointment in seven, once outside */
    } else {
      EV(psl__demo_interview(e_, &p->s, at, interview_minutes[i % 3], place,
                             cur_detention || p->group == G_CHRS ? g->site : NULL,
                             topic_sets[(p->k + i) % 6], 2, rng));
      if (p->group == G_OFFICE75 && p->row == OFFICE75_VOIDED && i == 2) {
        /* recorded on this person by mistake (it was someone else's): voided next day */
        memcpy(voided_of, pe->b->ev[pe->b->n - 1].id, PSL_UUID_BYTES);
        EV(psl__demo_voided(e_, &p->s, at + PSL__DEMO_DAY, voided_of,
                            "saisi sur la mauvaise personne", rng));
      }
    }
    at += interview_steps[(p->k + i) % 6] * PSL__DEMO_DAY;
  }

  /* the way out: a placement, an outcome, the exit */
  if (p->exit_at && pl->reason) {
    if (!strcmp(pl->reason, "job") && p->exit_at - 60 * PSL__DEMO_DAY > diag_at) {
      psl__demo_uuid(ref, p->exit_at - 60 * PSL__DEMO_DAY, rng);
      EV(psl__demo_partner_referred(e_, &p->s, p->exit_at - 60 * PSL__DEMO_DAY, ref, "siae",
                                    "pmsmp", "Carton Plein", rng));
      EV(psl__demo_partner_updated(e_, &p->s, p->exit_at - 30 * PSL__DEMO_DAY, ref,
                                   "completed", rng));
    }
    if (!strcmp(pl->reason, "training") && p->exit_at - 40 * PSL__DEMO_DAY > diag_at) {
      psl__demo_uuid(ref, p->exit_at - 40 * PSL__DEMO_DAY, rng);
      EV(psl__demo_partner_referred(e_, &p->s, p->exit_at - 40 * PSL__DEMO_DAY, ref,
                                    "training", "training", "Croix-Rouge Competences", rng));
      EV(psl__demo_partner_updated(e_, &p->s, p->exit_at - 20 * PSL__DEMO_DAY, ref,
                                   "accepted", rng));
    }
    if (pl->outcome)
      EV(psl__demo_outcome(e_, &p->s, p->exit_at - 3 * PSL__DEMO_DAY, pl->outcome, rng));
    EV(psl__demo_exited(e_, &p->s, p->exit_at, pl->reason, rng));
  }

  /* the stream's order: by time, then versions in that order */
  qsort(b->ev + pv.first, b->n - pv.first, sizeof *b->ev, by_at);
  for (size_t j = pv.first; j < b->n; j++) {
    psl_demo_event_t *e = &b->ev[j];
    e->expect = (int64_t)(j - pv.first);
    /* events carry the territory the person is in when they happen */
    snprintf(e->terr, sizeof e->terr, "%s",
             p->transfer_at && e->at >= p->transfer_at ? "75" : g->terr);
  }
  p->s.ver = b->n - pv.first;
  return 0;
}

/* The duplicate of office75's row OFFICE75_DUPLICATED: a second referral of the same
 * person by another caseworker, merged into the first two days later. */
static int duplicate_events(build_t *b, const person_t *orig) {
  psl__demo_stream_t s = {{0}, 0, "75", 0};
  const plan_t *pl = orig->plan;
  int64_t at = orig->ref_at + 7 * PSL__DEMO_DAY + 2 * PSL__DEMO_HOUR;
  psl__demo_uuid(s.id, at, &b->rng);
  psl__demo_referral_t r = {"dynamiques-emploi", "office", "mission-locale", "open-custody",
                            "m", education_cycle[orig->k % 10], SEED_YEAR - pl->age, 0,
                            (unsigned)orig->k + 1};
  psl_demo_event_t *e = next_slot(b);
  if (!e)
    return PSL_ENOMEM;
  psl__demo_referred(e, &s, at, &r, &b->rng);
  if (!(e = next_slot(b)))
    return PSL_ENOMEM;
  psl__demo_merged(e, &s, at + 2 * PSL__DEMO_DAY, orig->s.id, &b->rng);
  return 0;
}

/* ---- Collective sessions. */

typedef struct {
  const char *date; /* YYYY-MM-DD, at 14:00 */
  const char *sequence;
  int group;        /* whose people attend (G_OFFICE75: the Paris office's people) */
  int detention;    /* counted in the "sessions in detention" figure */
} session_plan_t;

static const session_plan_t session_plans[] = {
    /* CHRS Chemin Vert: 4 sessions on job-search techniques, January to March */
    {"2024-01-23", "info", G_CHRS, 0},
    {"2024-02-06", "career-analysis", G_CHRS, 0},
    {"2024-02-20", "interview-practice", G_CHRS, 0},
    {"2024-03-05", "workplace-codes", G_CHRS, 0},
    /* Villepinte: the collective sequence of each of the two visits a month, and one more
     * 4-session cycle in the autumn */
    {"2024-06-11", "info", G_VILLEPINTE, 1},
    {"2024-06-25", "career-analysis", G_VILLEPINTE, 1},
    {"2024-07-09", "shortage-sectors", G_VILLEPINTE, 1},
    {"2024-07-23", "workplace-codes", G_VILLEPINTE, 1},
    {"2024-08-06", "interview-practice", G_VILLEPINTE, 1},
    {"2024-08-20", "partner-talk", G_VILLEPINTE, 1},
    {"2024-09-03", "info", G_VILLEPINTE, 1},
    {"2024-09-17", "career-analysis", G_VILLEPINTE, 1},
    {"2024-10-01", "shortage-sectors", G_VILLEPINTE, 1},
    {"2024-10-08", "info", G_VILLEPINTE, 1},
    {"2024-10-15", "workplace-codes", G_VILLEPINTE, 1},
    {"2024-10-22", "career-analysis", G_VILLEPINTE, 1},
    {"2024-10-29", "interview-practice", G_VILLEPINTE, 1},
    {"2024-11-05", "workplace-codes", G_VILLEPINTE, 1},
    {"2024-11-12", "partner-talk", G_VILLEPINTE, 1},
    {"2024-11-19", "interview-practice", G_VILLEPINTE, 1},
    {"2024-11-26", "info", G_VILLEPINTE, 1},
    {"2024-12-10", "career-analysis", G_VILLEPINTE, 1},
    /* SAS Noisy-le-Grand: two cohorts of the 6-session programme, and the two training
     * bodies' talks (November, December) */
    {"2024-09-19", "info", G_NOISY, 1},
    {"2024-09-26", "career-analysis", G_NOISY, 1},
    {"2024-10-03", "shortage-sectors", G_NOISY, 1},
    {"2024-10-10", "workplace-codes", G_NOISY, 1},
    {"2024-10-17", "interview-practice", G_NOISY, 1},
    {"2024-10-24", "partner-talk", G_NOISY, 1},
    {"2024-11-07", "info", G_NOISY, 1},
    {"2024-11-14", "career-analysis", G_NOISY, 1},
    {"2024-11-21", "shortage-sectors", G_NOISY, 1},
    {"2024-11-22", "partner-talk", G_NOISY, 1},
    {"2024-11-28", "workplace-codes", G_NOISY, 1},
    {"2024-12-05", "interview-practice", G_NOISY, 1},
    {"2024-12-12", "partner-talk", G_NOISY, 1},
    {"2024-12-13", "partner-talk", G_NOISY, 1},
    /* Paris, outside: the 6-session course twice, France Travail's talk, the outings */
    {"2024-05-14", "info", G_OFFICE75, 0},
    {"2024-05-21", "career-analysis", G_OFFICE75, 0},
    {"2024-05-28", "shortage-sectors", G_OFFICE75, 0},
    {"2024-06-04", "workplace-codes", G_OFFICE75, 0},
    {"2024-06-11", "interview-practice", G_OFFICE75, 0},
    {"2024-06-18", "other", G_OFFICE75, 0},
    {"2024-06-25", "partner-talk", G_OFFICE75, 0},
    {"2024-10-08", "info", G_OFFICE75, 0},
    {"2024-10-15", "career-analysis", G_OFFICE75, 0},
    {"2024-10-22", "shortage-sectors", G_OFFICE75, 0},
    {"2024-10-29", "workplace-codes", G_OFFICE75, 0},
    {"2024-11-05", "interview-practice", G_OFFICE75, 0},
    {"2024-11-12", "other", G_OFFICE75, 0},
    {"2024-12-17", "cultural-outing", G_OFFICE75, 0},
    {"2024-12-19", "cultural-outing", G_OFFICE75, 0},
    {"2024-12-27", "cultural-outing", G_OFFICE75, 0},
};
#define NSESSIONS (sizeof session_plans / sizeof session_plans[0])
/* Attendees of the sessions outside (the Paris course: "une vingtaine" over two runs). */
#define PARIS_ATTENDEES 10

/* Is p at the session of group g at `at`? */
static int present(const person_t *p, int g, int64_t at) {
  if (p->ref_at > at || (p->exit_at && p->exit_at <= at))
    return 0;
  if (g == G_OFFICE75) /* the Paris people outside: the office's, the QSL's, the moved */
    return p->group == G_OFFICE75 || p->group == G_SANTE ||
           (p->transfer_at && p->transfer_at <= at);
  return p->group == g && (g == G_CHRS || !p->release_at || p->release_at > at);
}

static int sessions(build_t *b, person_t *people, size_t npeople, int *det_sessions,
                    int *det_attendance) {
  uint8_t att[PSL_DEMO_MAX_ATTENDEES][PSL_UUID_BYTES];
  *det_sessions = *det_attendance = 0;
  for (size_t i = 0; i < NSESSIONS; i++) {
    const session_plan_t *sp = &session_plans[i];
    const group_t *g = &groups[sp->group];
    int64_t at = date_at(sp->date, 14, 0);
    size_t avail[MAX_PEOPLE], na = 0;
    for (size_t j = 0; j < npeople; j++)
      if (present(&people[j], sp->group, at))
        avail[na++] = j;
    /* in detention: as many as keep the running mean at SEED_DETENTION_MEAN (4 to 8) */
    size_t want = sp->group == G_CHRS ? 6 : PARIS_ATTENDEES;
    if (sp->detention) {
      int w = SEED_DETENTION_MEAN * (*det_sessions + 1) - *det_attendance;
      want = (size_t)(w < 4 ? 4 : w > 8 ? 8 : w);
    }
    if (want > na)
      want = na;
    for (size_t k = 0; k < want; k++) /* a roster that turns over from session to session */
      memcpy(att[k], people[avail[(k + i * 3) % na]].s.id, PSL_UUID_BYTES);
    if (sp->detention) {
      (*det_sessions)++;
      *det_attendance += (int)want;
    }
    psl__demo_stream_t s = {{0}, 1, "", 0};
    snprintf(s.terr, sizeof s.terr, "%s", g->terr);
    psl__demo_uuid(s.id, at, &b->rng);
    psl_demo_event_t *e = next_slot(b);
    if (!e)
      return PSL_ENOMEM;
    psl__demo_session(e, &s, at, sp->sequence,
                      sp->group == G_OFFICE75 ? "office" : g->site, sp->detention ? 120 : 150,
                      (const uint8_t(*)[PSL_UUID_BYTES])att, want,
                      sp->group == G_VILLEPINTE ? "rsa93"
                      : sp->group == G_OFFICE75 ? "dynamiques-emploi" : NULL,
                      &b->rng);
  }
  return 0;
}

/* ---- Planning and checking. */

static int plan_people(person_t *people, size_t *n, uint64_t *rng) {
  size_t k = 0;
  for (int g = 0; g < G__N; g++)
    for (size_t r = 0; r < tables[g].n; r++, k++) {
      if (k == MAX_PEOPLE)
        return PSL_EINTERNAL;
      person_t *p = &people[k];
      const plan_t *pl = &tables[g].rows[r];
      memset(p, 0, sizeof *p);
      p->group = g;
      p->row = (int)r;
      p->k = (int)k;
      p->plan = pl;
      p->ref_at = date_at(pl->ref, 9 + (int)(r % 4), 30);
      p->release_at = date_at(pl->release, 11, 0);
      p->exit_at = date_at(pl->exit, 17, 0);
      p->transfer_at = date_at(pl->transfer, 12, 0);
      psl__demo_uuid(p->s.id, p->ref_at, rng);
      snprintf(p->s.terr, sizeof p->s.terr, "%s", groups[g].terr);
    }
  *n = k;
  return 0;
}

/* Days followed as the counters count them (domain/counters.c): referral to exit, or to
 * the end of the year, in whole days. */
static int64_t days_followed(const person_t *p) {
  int64_t stop = p->exit_at ? p->exit_at : psl_local_month_start(SEED_YEAR + 1, 1);
  return (stop - p->ref_at) / PSL__DEMO_DAY;
}

/* Move the last Gagny row's referral so that Gagny's days followed sum to SEED_GAGNY_DAYS. */
static int seed_gagny_adjust(person_t *people, size_t n) {
  int64_t sum = 0;
  person_t *last = NULL;
  for (size_t i = 0; i < n; i++)
    if (people[i].group == G_GAGNY) {
      sum += days_followed(&people[i]);
      last = &people[i];
    }
  int64_t delta = SEED_GAGNY_DAYS - sum;
  if (!last || last->exit_at || delta < -14 || delta > 14) {
    fprintf(stderr, "psl_demo: Gagny's rows give %lld days, %lld from %d\n", (long long)sum,
            (long long)delta, SEED_GAGNY_DAYS);
    return PSL_EINTERNAL;
  }
  last->ref_at -= delta * PSL__DEMO_DAY;
  return 0;
}

static int seed_fail(const char *what, long long got, long long want) {
  fprintf(stderr, "psl_demo: the 2024 rows give %s = %lld, the report says %lld\n", what, got,
          want);
  return PSL_EINTERNAL;
}

static int seed_check(const person_t *people, size_t n, int det_sessions, int det_attendance) {
  long long age = 0, age93 = 0, age75 = 0, housing = 0, care = 0, rsa = 0, rsa_out = 0;
  long long gagny_days = 0;
  for (size_t i = 0; i < n; i++) {
    const person_t *p = &people[i];
    const plan_t *pl = p->plan;
    int in93 = !strcmp(groups[p->group].terr, "93"), in75 = !in93 || p->transfer_at;
    age += pl->age;
    age93 += in93 ? pl->age : 0;
    age75 += in75 ? pl->age : 0;
    housing += pl->housing != 0;
    care += pl->care;
    rsa += pl->rsa;
    rsa_out += pl->rsa && pl->reason && (!strcmp(pl->reason, "job") || !strcmp(pl->reason, "training"));
    if (p->group == G_GAGNY)
      gagny_days += days_followed(p);
  }
  if (n != SEED_PEOPLE)
    return seed_fail("people", (long long)n, SEED_PEOPLE);
  if (age != SEED_AGE_SUM)
    return seed_fail("the sum of ages", age, SEED_AGE_SUM);
  if (age93 != SEED_AGE_SUM_93)
    return seed_fail("the sum of ages in 93", age93, SEED_AGE_SUM_93);
  if (age75 != SEED_AGE_SUM_75)
    return seed_fail("the sum of ages in 75", age75, SEED_AGE_SUM_75);
  if (housing != SEED_HOUSING)
    return seed_fail("housing", housing, SEED_HOUSING);
  if (care != SEED_CARE)
    return seed_fail("care obligations", care, SEED_CARE);
  if (rsa != 27 || rsa_out != 8)
    return seed_fail("RSA 93 people (exits x 1000)", rsa * 1000 + rsa_out, 27008);
  if (gagny_days != SEED_GAGNY_DAYS)
    return seed_fail("Gagny's days followed", gagny_days, SEED_GAGNY_DAYS);
  if (det_sessions < 30 || det_attendance != SEED_DETENTION_MEAN * det_sessions)
    return seed_fail("attendance in detention", det_attendance,
                     (long long)SEED_DETENTION_MEAN * det_sessions);
  return 0;
}

void psl_demo_2024_first_id(uint8_t id[PSL_UUID_BYTES]) {
  uint64_t rng = SEED_RNG;
  psl__demo_uuid(id, date_at(villepinte[0].ref, 9, 30), &rng);
}

int psl_demo_2024(psl_demo_event_t **out, size_t *nout) {
  person_t people[MAX_PEOPLE];
  size_t n = 0;
  build_t b = {NULL, 0, 0, SEED_RNG};
  int det_sessions = 0, det_attendance = 0;
  uint8_t voided[PSL_UUID_BYTES];
  *out = NULL;
  *nout = 0;
  int rc = plan_people(people, &n, &b.rng);
  if (!rc)
    rc = seed_gagny_adjust(people, n);
  for (size_t i = 0; !rc && i < n; i++)
    rc = person_events(&b, &people[i], voided);
  for (size_t i = 0; !rc && i < n; i++)
    if (people[i].group == G_OFFICE75 && people[i].row == OFFICE75_DUPLICATED)
      rc = duplicate_events(&b, &people[i]);
  if (!rc)
    rc = sessions(&b, people, n, &det_sessions, &det_attendance);
  if (!rc)
    rc = seed_check(people, n, det_sessions, det_attendance);
  if (rc) {
    free(b.ev);
    return rc;
  }
  /* one order for the whole set: by time (each stream's events keep their order) */
  qsort(b.ev, b.n, sizeof *b.ev, by_at);
  *out = b.ev;
  *nout = b.n;
  return 0;
}
