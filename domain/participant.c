/*
 * participant.c — the participant projection as a pure fold: (state, fact) → state.
 *
 * Every field is a function of the SET of effective events, not of their order: counts add,
 * "first" fields take a minimum of at, "latest" fields keep the (at, seq) of the event that set
 * them and yield to a greater one.  So folding the effective events in any order gives one
 * state, the incremental path (one event at a time) and a refold after a void agree, and a
 * client folding events as they come equals the server.
 *
 * The placement timeline: the referral's (terr, programme, site), then the transfers sorted
 * by (at, seq); placement index 0 is the referral, i + 1 the transfer i.  Activity marks are
 * (month index << 16 | placement index) of each activity event, sorted and unique: they give
 * the per-year facts of counters.c ("followed in a month under a placement").  A mark needs
 * the final timeline: psl__participant_mark runs after the fold of the event (and, in a
 * refold, after every event is folded).
 */
#include <stdlib.h>

#include "psl_domain_int.h"

void psl_participant_init(psl_participant_t *st, const uint8_t id[PSL_UUID_BYTES]) {
  memset(st, 0, sizeof *st);
  if (id)
    memcpy(st->id, id, PSL_UUID_BYTES);
  st->care_obligation = -1;
}

void psl_participant_free(psl_participant_t *st) {
  if (!st)
    return;
  free(st->referrals);
  free(st->transfers);
  free(st->marks);
  st->referrals = NULL;
  st->transfers = NULL;
  st->marks = NULL;
  st->nreferrals = st->ntransfers = st->nmarks = 0;
  st->cap_referrals = st->cap_transfers = st->cap_marks = 0;
}

static void *dup_array(const void *src, size_t n, size_t size, int *err) {
  if (n == 0)
    return NULL;
  void *p = malloc(n * size);
  if (!p) {
    *err = PSL_ENOMEM;
    return NULL;
  }
  memcpy(p, src, n * size);
  return p;
}

int psl_participant_copy(psl_participant_t *dst, const psl_participant_t *src) {
  int err = 0;
  *dst = *src;
  dst->referrals = dup_array(src->referrals, src->nreferrals, sizeof *src->referrals, &err);
  dst->transfers = dup_array(src->transfers, src->ntransfers, sizeof *src->transfers, &err);
  dst->marks = dup_array(src->marks, src->nmarks, sizeof *src->marks, &err);
  dst->cap_referrals = src->nreferrals;
  dst->cap_transfers = src->ntransfers;
  dst->cap_marks = src->nmarks;
  if (err)
    psl_participant_free(dst);
  return err;
}

void psl__participant_move(psl_participant_t *dst, psl_participant_t *src) {
  psl_participant_free(dst);
  *dst = *src;
  src->referrals = NULL;
  src->transfers = NULL;
  src->marks = NULL;
  src->nreferrals = src->ntransfers = src->nmarks = 0;
  src->cap_referrals = src->cap_transfers = src->cap_marks = 0;
}

void psl__participant_reset_stream(psl_participant_t *st) {
  uint8_t id[PSL_UUID_BYTES];
  uint32_t sessions = st->sessions_attended;
  memcpy(id, st->id, sizeof id);
  /* keep the allocations for the refold */
  psl_referral_t *r = st->referrals;
  psl_transfer_t *t = st->transfers;
  uint32_t *m = st->marks;
  size_t cr = st->cap_referrals, ct = st->cap_transfers, cm = st->cap_marks;
  psl_participant_init(st, id);
  st->sessions_attended = sessions;
  st->referrals = r;
  st->transfers = t;
  st->marks = m;
  st->cap_referrals = cr;
  st->cap_transfers = ct;
  st->cap_marks = cm;
}

/* Grow *arr (of *cap elements of size) to hold n + 1. */
static int grow(void **arr, size_t *cap, size_t n, size_t size) {
  if (n < *cap)
    return 0;
  /* 16: a year of monthly activity marks without a reallocation */
  size_t ncap = *cap ? *cap * 2 : 16;
  void *p = realloc(*arr, ncap * size);
  if (!p)
    return PSL_ENOMEM;
  *arr = p;
  *cap = ncap;
  return 0;
}

static int later_or_same(psl_when_t w, psl_when_t than) { return psl__when_cmp(w, than) >= 0; }

static void min_at(int64_t *field, int64_t at) {
  if (*field == 0 || at < *field)
    *field = at;
}

static psl_referral_t *referral_slot(psl_participant_t *st, const uint8_t ref[PSL_UUID_BYTES],
                                     int *err) {
  /* Kept sorted by ref so that equal states compare equal whatever the order. */
  size_t lo = 0, hi = st->nreferrals;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = memcmp(st->referrals[mid].ref, ref, PSL_UUID_BYTES);
    if (c == 0)
      return &st->referrals[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if ((*err = grow((void **)&st->referrals, &st->cap_referrals, st->nreferrals,
                   sizeof *st->referrals)))
    return NULL;
  memmove(&st->referrals[lo + 1], &st->referrals[lo],
          (st->nreferrals - lo) * sizeof *st->referrals);
  st->nreferrals++;
  psl_referral_t *r = &st->referrals[lo];
  memset(r, 0, sizeof *r);
  memcpy(r->ref, ref, PSL_UUID_BYTES);
  return r;
}

static int add_transfer(psl_participant_t *st, const psl__fact_t *f) {
  if (grow((void **)&st->transfers, &st->cap_transfers, st->ntransfers, sizeof *st->transfers))
    return PSL_ENOMEM;
  size_t i = st->ntransfers;
  while (i > 0 && psl__when_cmp(st->transfers[i - 1].when, f->when) > 0) {
    st->transfers[i] = st->transfers[i - 1];
    i--;
  }
  psl_transfer_t *t = &st->transfers[i];
  memset(t, 0, sizeof *t);
  t->when = f->when;
  t->terr = f->terr; /* the event's own terr is the new one */
  t->programme = f->programme;
  memcpy(t->site, f->site, sizeof t->site);
  st->ntransfers++;
  return 0;
}

static void resolve_place(psl_participant_t *st);
static void resolve_barriers(psl_participant_t *st);
static void resolve_status(psl_participant_t *st);

int psl__participant_fold(psl_participant_t *st, const psl__fact_t *f) {
  int err = 0;
  psl_referral_t *r;
  if (f->when.at > st->max_at)
    st->max_at = f->when.at;
  switch (f->type) {
  case PSL__F_REFERRED:
    if (!st->known || later_or_same(f->when, st->ref_when)) {
      st->known = 1;
      st->ref_when = f->when;
      st->referred_at = f->when.at;
      st->ref_terr = f->terr;
      st->ref_programme = f->programme;
      memcpy(st->ref_site, f->site, sizeof st->ref_site);
      st->source = f->source;
      st->gender = f->gender;
      st->birth_year = f->birth_year;
      st->education = f->education;
      st->rsa = f->rsa;
    }
    /* the referral sets the first justice situation, like a justice.changed */
    if (!st->justice || later_or_same(f->when, st->justice_when)) {
      st->justice = f->justice;
      st->justice_when = f->when;
    }
    break;
  case PSL__F_ENGAGEMENT:
    min_at(&st->activated_at, f->when.at);
    break;
  case PSL__F_DIAGNOSTIC:
    for (int b = 1; b <= PSL_NBARRIER; b++)
      if ((f->barriers & (1u << (b - 1))) &&
          (!st->barrier_state[b] || later_or_same(f->when, st->barrier_when[b]))) {
        st->barrier_state[b] = 1;
        st->barrier_when[b] = f->when;
      }
    if (f->barriers & ((1u << (PSL_BARRIER_HOUSING_NONE - 1)) |
                       (1u << (PSL_BARRIER_HOUSING_PRECARIOUS - 1))))
      min_at(&st->housing_at, f->when.at);
    if (f->barriers & (1u << (PSL_BARRIER_HOUSING_NONE - 1)))
      min_at(&st->homeless_at, f->when.at);
    if (f->care_obligation)
      min_at(&st->care_at, f->when.at);
    if (st->care_obligation < 0 || later_or_same(f->when, st->care_when)) {
      st->care_obligation = f->care_obligation;
      st->care_when = f->when;
    }
    break;
  case PSL__F_BARRIER_LIFTED:
    if (!st->barrier_state[f->barrier] || later_or_same(f->when, st->barrier_when[f->barrier])) {
      st->barrier_state[f->barrier] = 2;
      st->barrier_when[f->barrier] = f->when;
    }
    break;
  case PSL__F_INTERVIEW:
    st->interviews++;
    st->interview_minutes += (uint64_t)f->minutes;
    if (f->when.at > st->last_interview)
      st->last_interview = f->when.at;
    min_at(&st->activated_at, f->when.at);
    break;
  case PSL__F_MISSED:
    st->missed++;
    break;
  case PSL__F_PARTNER_REFERRED:
    if (!(r = referral_slot(st, f->uuid, &err)))
      return err;
    if (!r->referred || later_or_same(f->when, r->referred_when)) {
      r->referred = 1;
      r->kind = f->kind;
      r->partner_kind = f->partner_kind;
      r->referred_when = f->when;
    }
    break;
  case PSL__F_PARTNER_UPDATED:
    if (!(r = referral_slot(st, f->uuid, &err)))
      return err;
    if (!r->status || later_or_same(f->when, r->updated_when)) {
      r->status = f->status;
      r->updated_when = f->when;
    }
    break;
  case PSL__F_OUTCOME:
    st->outcomes[f->kind]++;
    if (psl_outcome_class(f->kind) == PSL_CLASS_DURABLE ||
        psl_outcome_class(f->kind) == PSL_CLASS_TRANSITIONAL)
      min_at(&st->employment_at, f->when.at);
    if (f->kind == PSL_OUTCOME_TRAINING)
      min_at(&st->training_at, f->when.at);
    break;
  case PSL__F_TRANSFERRED:
    if ((err = add_transfer(st, f)))
      return err;
    break;
  case PSL__F_JUSTICE:
    if (!st->justice || later_or_same(f->when, st->justice_when)) {
      st->justice = f->justice;
      st->justice_when = f->when;
    }
    break;
  case PSL__F_EXITED:
    if (!st->exit_reason || later_or_same(f->when, st->exit_when)) {
      st->exit_reason = f->reason;
      st->exit_when = f->when;
      st->exited_at = f->when.at;
    }
    break;
  case PSL__F_MERGED:
    if (!st->merged || later_or_same(f->when, st->merged_when)) {
      st->merged = 1;
      st->merged_when = f->when;
      memcpy(st->into, f->uuid, PSL_UUID_BYTES);
    }
    break;
  case PSL__F_ERASED:
    st->erased = 1;
    break;
  default:
    break;
  }
  /* the view fields this fact may have changed (psl__participant_resolve does them all) */
  if (f->type == PSL__F_REFERRED || f->type == PSL__F_TRANSFERRED)
    resolve_place(st);
  else if (f->type == PSL__F_DIAGNOSTIC || f->type == PSL__F_BARRIER_LIFTED)
    resolve_barriers(st);
  resolve_status(st);
  return 0;
}

int psl__fact_is_activity(const psl__fact_t *f) {
  return f->type != PSL__F_VOIDED && f->type != PSL__F_MERGED && f->type != PSL__F_ERASED &&
         f->type != PSL__F_SESSION;
}

void psl__participant_place_index(const psl_participant_t *st, unsigned idx, psl__place_t *pl) {
  pl->terr = st->ref_terr;
  pl->programme = st->ref_programme;
  pl->site = st->ref_site;
  for (unsigned i = 0; i < idx && i < st->ntransfers; i++) {
    const psl_transfer_t *t = &st->transfers[i];
    pl->terr = t->terr;
    if (t->programme)
      pl->programme = t->programme;
    if (t->site[0])
      pl->site = t->site;
  }
}

unsigned psl__participant_place_at(const psl_participant_t *st, int64_t at, psl__place_t *pl) {
  unsigned idx = 0;
  while (idx < st->ntransfers && st->transfers[idx].when.at <= at)
    idx++;
  psl__participant_place_index(st, idx, pl);
  return idx;
}

int psl__participant_mark(psl_participant_t *st, const psl__fact_t *f) {
  if (!psl__fact_is_activity(f))
    return 0;
  psl__place_t pl;
  unsigned idx = psl__participant_place_at(st, f->when.at, &pl);
  if (idx > 0xffff)
    idx = 0xffff; /* 65,535 transfers of one person: past any real case, shared mark */
  uint32_t mark = psl__at_month_index(f->when.at) << 16 | idx;
  /* events mostly come in date order: the last mark is the likeliest hit */
  if (st->nmarks && st->marks[st->nmarks - 1] == mark)
    return 0;
  size_t lo = st->nmarks && st->marks[st->nmarks - 1] < mark ? st->nmarks : 0, hi = st->nmarks;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (st->marks[mid] == mark)
      return 0;
    if (st->marks[mid] < mark)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (grow((void **)&st->marks, &st->cap_marks, st->nmarks, sizeof *st->marks))
    return PSL_ENOMEM;
  memmove(&st->marks[lo + 1], &st->marks[lo], (st->nmarks - lo) * sizeof *st->marks);
  st->marks[lo] = mark;
  st->nmarks++;
  return 0;
}

static void resolve_place(psl_participant_t *st) {
  psl__place_t pl;
  psl__participant_place_index(st, (unsigned)st->ntransfers, &pl);
  st->terr = pl.terr;
  st->programme = pl.programme;
  if (pl.site != st->site)
    memmove(st->site, pl.site, sizeof st->site);
}

static void resolve_barriers(psl_participant_t *st) {
  st->barriers_open = st->barriers_lifted = 0;
  for (int b = 1; b <= PSL_NBARRIER; b++) {
    if (st->barrier_state[b] == 1)
      st->barriers_open |= 1u << (b - 1);
    else if (st->barrier_state[b] == 2)
      st->barriers_lifted |= 1u << (b - 1);
  }
}

static void resolve_status(psl_participant_t *st) {
  if (!st->known)
    st->status = 0;
  else if (st->erased)
    st->status = PSL_STATUS_ERASED;
  else if (st->merged)
    st->status = PSL_STATUS_MERGED;
  else if (st->exit_reason)
    st->status = PSL_STATUS_EXITED;
  else if (st->activated_at)
    st->status = PSL_STATUS_ACTIVE;
  else
    st->status = PSL_STATUS_REFERRED;
}

void psl__participant_resolve(psl_participant_t *st) {
  resolve_place(st);
  resolve_barriers(st);
  resolve_status(st);
}

int psl_participant_age(const psl_participant_t *st, int year) {
  return st->birth_year ? year - st->birth_year : -1;
}

#define MS_PER_DAY INT64_C(86400000)

int64_t psl_participant_days_followed(const psl_participant_t *st, int64_t now_ms) {
  if (!st->known)
    return 0;
  int64_t end = st->exited_at ? st->exited_at : now_ms;
  return end > st->referred_at ? (end - st->referred_at) / MS_PER_DAY : 0;
}

static int when_eq(psl_when_t a, psl_when_t b) { return a.at == b.at && a.seq == b.seq; }

int psl_participant_equal(const psl_participant_t *a, const psl_participant_t *b) {
  /* field by field: the struct has padding and capacities that may differ */
#define EQ(f) (a->f == b->f)
  if (memcmp(a->id, b->id, PSL_UUID_BYTES) || !EQ(known) || !EQ(status) || !EQ(terr) ||
      !EQ(programme) || strcmp(a->site, b->site) || !EQ(justice) || !EQ(gender) ||
      !EQ(education) || !EQ(source) || !EQ(rsa) || !EQ(birth_year) || !EQ(barriers_open) ||
      !EQ(barriers_lifted) || !EQ(care_obligation) || !EQ(interviews) ||
      !EQ(interview_minutes) || !EQ(last_interview) || !EQ(missed) ||
      !EQ(sessions_attended) || memcmp(a->outcomes, b->outcomes, sizeof a->outcomes) ||
      !EQ(referred_at) || !EQ(activated_at) || !EQ(exited_at) || !EQ(exit_reason) ||
      memcmp(a->into, b->into, PSL_UUID_BYTES) || !EQ(nreferrals) || !EQ(ref_terr) ||
      !EQ(ref_programme) || strcmp(a->ref_site, b->ref_site) || !when_eq(a->ref_when, b->ref_when) ||
      !when_eq(a->justice_when, b->justice_when) || !when_eq(a->care_when, b->care_when) ||
      !when_eq(a->exit_when, b->exit_when) || !when_eq(a->merged_when, b->merged_when) ||
      memcmp(a->barrier_state, b->barrier_state, sizeof a->barrier_state) ||
      !EQ(housing_at) || !EQ(homeless_at) || !EQ(care_at) || !EQ(employment_at) ||
      !EQ(training_at) || !EQ(merged) || !EQ(erased) || !EQ(max_at) || !EQ(ntransfers) ||
      !EQ(nmarks))
    return 0;
#undef EQ
  for (int i = 1; i <= PSL_NBARRIER; i++)
    if (!when_eq(a->barrier_when[i], b->barrier_when[i]))
      return 0;
  for (size_t i = 0; i < a->nreferrals; i++) {
    const psl_referral_t *x = &a->referrals[i], *y = &b->referrals[i];
    if (memcmp(x->ref, y->ref, PSL_UUID_BYTES) || x->referred != y->referred ||
        x->kind != y->kind || x->partner_kind != y->partner_kind || x->status != y->status ||
        !when_eq(x->referred_when, y->referred_when) || !when_eq(x->updated_when, y->updated_when))
      return 0;
  }
  for (size_t i = 0; i < a->ntransfers; i++) {
    const psl_transfer_t *x = &a->transfers[i], *y = &b->transfers[i];
    if (!when_eq(x->when, y->when) || x->terr != y->terr || x->programme != y->programme ||
        strcmp(x->site, y->site))
      return 0;
  }
  return a->nmarks == 0 || memcmp(a->marks, b->marks, a->nmarks * sizeof *a->marks) == 0;
}
