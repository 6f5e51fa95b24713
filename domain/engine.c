/*
 * engine.c — one event into a store: the fold shared by the memory and the LMDB stores.
 *
 *   participant stream, normal event      O(1): fold, mark, add its counter contribution
 *   participant stream, event.voided      recompute the stream (below)
 *   participant.transferred dated at or   recompute: events already counted under the old
 *     before an event already folded       placement move to the new one
 *   session.held                          record it, add its contribution, +1 to each
 *                                         attendee's sessions_attended
 *   session stream, event.voided          recompute the session's effective records, and
 *                                         correct counters and attendees by the difference
 *
 * Recomputing a stream: the store's iterator supplies every earlier event of the stream; the
 * effective events before and after the new one are found by a backward pass (an event is
 * effective unless a later effective event.voided of the stream names it — a void can void a
 * void); both sets are folded from scratch; the counters receive Σ new contributions −
 * Σ old contributions, key by key; the state's stream part is replaced.  The cost is
 * O(stream length) for these rare events and O(1) for the others.
 */
#include <stdlib.h>

#include "psl_domain_int.h"

/* Read an event into a fact; one that does not parse counts as activity of its stream only
 * (a newer client's type or key).  Returns 0, or 1 when the event is to be ignored (then
 * f->stream_kind is PSL__STREAM_BAD, which psl__engine_apply_fact ignores too). */
int psl__engine_fact(const psl_event_t *ev, psl__fact_t *f) {
  if (psl__fact_parse(ev, f, NULL) == 0)
    return 0;
  if (f->stream_kind == PSL__STREAM_BAD || ev->at < PSL_AT_MIN || ev->at >= PSL_AT_MAX) {
    f->stream_kind = PSL__STREAM_BAD;
    return 1;
  }
  f->type = PSL__F_OTHER;
  f->attendees = NULL;
  f->nattendees = 0;
  return 0;
}

/* ---- The facts of one stream, for a recomputation. */

typedef struct {
  psl__fact_t *f;
  uint8_t *eff_old, *eff_new;
  size_t n, cap;
  psl__session_t held; /* session streams: the held records, in order, attendees copied */
  size_t *held_of;     /* session streams: fact index of each held record */
  int err;
} facts_t;

static void facts_free(facts_t *fs) {
  free(fs->f);
  free(fs->eff_old);
  free(fs->eff_new);
  free(fs->held_of);
  psl__session_free(&fs->held);
}

static int facts_push(facts_t *fs, const psl__fact_t *f) {
  if (fs->n == fs->cap) {
    size_t ncap = fs->cap ? fs->cap * 2 : 64;
    psl__fact_t *p = realloc(fs->f, ncap * sizeof *p);
    size_t *h = realloc(fs->held_of, ncap * sizeof *h);
    if (p)
      fs->f = p;
    if (h)
      fs->held_of = h;
    if (!p || !h)
      return PSL_ENOMEM;
    fs->cap = ncap;
  }
  fs->f[fs->n] = *f;
  if (f->type == PSL__F_SESSION) {
    int rc = psl__session_add(&fs->held, f);
    if (rc)
      return rc;
    fs->held_of[fs->held.n - 1] = fs->n;
  }
  fs->f[fs->n].attendees = NULL; /* the event's bytes do not outlive the callback */
  fs->f[fs->n].nattendees = 0;
  fs->n++;
  return 0;
}

static int collect_one(void *arg, const psl_event_t *ev) {
  facts_t *fs = arg;
  psl__fact_t f;
  if (psl__engine_fact(ev, &f))
    return 0;
  if ((fs->err = facts_push(fs, &f)))
    return 1;
  return 0;
}

/* Effective flags of the first n facts. */
static int resolve_voids(const facts_t *fs, size_t n, uint8_t *eff) {
  uint8_t(*voided)[PSL_UUID_BYTES] = NULL;
  size_t nv = 0;
  if (n && !(voided = malloc(n * sizeof *voided)))
    return PSL_ENOMEM;
  for (size_t i = n; i-- > 0;) {
    const psl__fact_t *f = &fs->f[i];
    int hit = 0;
    for (size_t j = 0; j < nv && !hit; j++)
      hit = memcmp(voided[j], f->id, PSL_UUID_BYTES) == 0;
    eff[i] = !hit;
    if (!hit && f->type == PSL__F_VOIDED)
      memcpy(voided[nv++], f->uuid, PSL_UUID_BYTES);
  }
  free(voided);
  return 0;
}

static int collect_stream(psl__store_t *s, const psl_event_t *ev, const psl__fact_t *cur,
                          facts_t *fs) {
  memset(fs, 0, sizeof *fs);
  if (!s->iter)
    return PSL_EINVALID; /* a recomputation needs the stream's events */
  int rc = s->iter(s->iter_arg, ev->stream, ev->seq, collect_one, fs);
  if (fs->err)
    return fs->err;
  if (rc < 0)
    return rc;
  if ((rc = facts_push(fs, cur)))
    return rc;
  if (!(fs->eff_old = malloc(fs->n)) || !(fs->eff_new = malloc(fs->n)))
    return PSL_ENOMEM;
  if ((rc = resolve_voids(fs, fs->n - 1, fs->eff_old)) || (rc = resolve_voids(fs, fs->n, fs->eff_new)))
    return rc;
  fs->eff_old[fs->n - 1] = 0;
  return 0;
}

/* ---- Counter differences, key by key. */

typedef struct {
  psl__ckey_t key;
  int64_t vec[PSL__C_N];
} delta_t;

typedef struct {
  delta_t *d;
  size_t n, cap;
} deltas_t;

static int delta_add(deltas_t *ds, const psl__ckey_t *k, const int64_t vec[PSL__C_N], int sign) {
  size_t i = 0;
  while (i < ds->n && memcmp(&ds->d[i].key, k, sizeof *k) != 0)
    i++;
  if (i == ds->n) {
    if (ds->n == ds->cap) {
      size_t ncap = ds->cap ? ds->cap * 2 : 16;
      delta_t *p = realloc(ds->d, ncap * sizeof *p);
      if (!p)
        return PSL_ENOMEM;
      ds->d = p;
      ds->cap = ncap;
    }
    memset(&ds->d[i], 0, sizeof ds->d[i]);
    ds->d[i].key = *k;
    ds->n++;
  }
  for (int c = 0; c < PSL__C_N; c++)
    ds->d[i].vec[c] += sign * vec[c];
  return 0;
}

static int deltas_flush(psl__store_t *s, deltas_t *ds) {
  int rc = 0;
  for (size_t i = 0; i < ds->n && !rc; i++) {
    int zero = 1;
    for (int c = 0; c < PSL__C_N && zero; c++)
      zero = ds->d[i].vec[c] == 0;
    if (!zero)
      rc = s->counter_add(s, &ds->d[i].key, ds->d[i].vec);
  }
  free(ds->d);
  return rc;
}

/* ---- Participant streams. */

/* Fold the effective facts into a fresh state, marks after the timeline is complete. */
static int refold(const facts_t *fs, const uint8_t *eff, const uint8_t id[PSL_UUID_BYTES],
                  psl_participant_t *st) {
  int rc = 0;
  psl_participant_init(st, id);
  for (size_t i = 0; i < fs->n && !rc; i++)
    if (eff[i] && fs->f[i].type != PSL__F_VOIDED)
      rc = psl__participant_fold(st, &fs->f[i]);
  for (size_t i = 0; i < fs->n && !rc; i++)
    if (eff[i])
      rc = psl__participant_mark(st, &fs->f[i]);
  return rc;
}

static int contribs(deltas_t *ds, const facts_t *fs, const uint8_t *eff,
                    const psl_participant_t *st, int sign) {
  psl__ckey_t key;
  int64_t vec[PSL__C_N];
  for (size_t i = 0; i < fs->n; i++)
    if (eff[i] && psl__contrib_participant(st, &fs->f[i], &key, vec)) {
      int rc = delta_add(ds, &key, vec, sign);
      if (rc)
        return rc;
    }
  return 0;
}

static int participant_recompute(psl__store_t *s, const psl_event_t *ev, const psl__fact_t *f) {
  facts_t fs;
  deltas_t ds = {0};
  psl_participant_t old, neu, *st;
  psl_participant_init(&old, f->stream_id);
  psl_participant_init(&neu, f->stream_id);
  int rc = collect_stream(s, ev, f, &fs);
  if (!rc)
    rc = refold(&fs, fs.eff_old, f->stream_id, &old);
  if (!rc)
    rc = refold(&fs, fs.eff_new, f->stream_id, &neu);
  if (!rc)
    rc = contribs(&ds, &fs, fs.eff_old, &old, -1);
  if (!rc)
    rc = contribs(&ds, &fs, fs.eff_new, &neu, +1);
  if (!rc)
    rc = deltas_flush(s, &ds);
  else
    free(ds.d);
  if (!rc)
    rc = s->part_get(s, f->stream_id, &st);
  if (!rc) {
    neu.sessions_attended = st->sessions_attended; /* not from this stream */
    psl__participant_move(st, &neu);
    rc = s->part_put(s, st);
  }
  psl_participant_free(&old);
  psl_participant_free(&neu);
  facts_free(&fs);
  return rc;
}

static int participant_apply(psl__store_t *s, const psl_event_t *ev, const psl__fact_t *f) {
  psl_participant_t *st;
  int rc = s->part_get(s, f->stream_id, &st);
  if (rc)
    return rc;
  /* A transfer dated at or before an event already folded moves that event's placement; a
   * referral after other events (only a client folding out of order) gives them one. */
  if (f->type == PSL__F_VOIDED ||
      ((f->type == PSL__F_TRANSFERRED || f->type == PSL__F_REFERRED) && st->max_at &&
       f->when.at <= st->max_at) ||
      (f->type == PSL__F_REFERRED && st->nmarks))
    return participant_recompute(s, ev, f);
  if ((rc = psl__participant_fold(st, f)) || (rc = psl__participant_mark(st, f)))
    return rc;
  psl__ckey_t key;
  int64_t vec[PSL__C_N];
  if (psl__contrib_participant(st, f, &key, vec) && (rc = s->counter_add(s, &key, vec)))
    return rc;
  return s->part_put(s, st);
}

/* ---- Session streams. */

static int attendees_add(psl__store_t *s, const psl__held_t *h, int sign) {
  for (uint32_t i = 0; i < h->n; i++) {
    psl_participant_t *st;
    int rc = s->part_get(s, h->attendees[i], &st);
    if (rc)
      return rc;
    if (sign > 0)
      st->sessions_attended++;
    else if (st->sessions_attended > 0)
      st->sessions_attended--;
    if ((rc = s->part_put(s, st)))
      return rc;
  }
  return 0;
}

static int held_count(psl__store_t *s, const psl__held_t *h, int sign) {
  psl__ckey_t key;
  int64_t vec[PSL__C_N];
  psl__contrib_session(h->when.at, h->terr, h->programme, h->site, h->n, &key, vec);
  for (int c = 0; c < PSL__C_N; c++)
    vec[c] *= sign;
  int rc = s->counter_add(s, &key, vec);
  return rc ? rc : attendees_add(s, h, sign);
}

static int held_find(const psl__session_t *ss, const uint8_t id[PSL_UUID_BYTES]) {
  for (size_t i = 0; i < ss->n; i++)
    if (memcmp(ss->held[i].ev_id, id, PSL_UUID_BYTES) == 0)
      return (int)i;
  return -1;
}

static int session_recompute(psl__store_t *s, const psl_event_t *ev, const psl__fact_t *f,
                             psl__session_t *ss) {
  facts_t fs;
  psl__session_t neu = {0};
  int rc = collect_stream(s, ev, f, &fs);
  /* the new effective records, in stream order, moved out of the collected ones */
  for (size_t i = 0; i < fs.held.n && !rc; i++) {
    if (!fs.eff_new[fs.held_of[i]])
      continue;
    if (neu.n == neu.cap) {
      size_t ncap = neu.cap ? neu.cap * 2 : 4;
      psl__held_t *p = realloc(neu.held, ncap * sizeof *p);
      if (!p) {
        rc = PSL_ENOMEM;
        break;
      }
      neu.held = p;
      neu.cap = ncap;
    }
    neu.held[neu.n++] = fs.held.held[i];
    fs.held.held[i].attendees = NULL;
    fs.held.held[i].n = 0;
  }
  for (size_t i = 0; i < ss->n && !rc; i++)
    if (held_find(&neu, ss->held[i].ev_id) < 0)
      rc = held_count(s, &ss->held[i], -1);
  for (size_t i = 0; i < neu.n && !rc; i++)
    if (held_find(ss, neu.held[i].ev_id) < 0)
      rc = held_count(s, &neu.held[i], +1);
  if (!rc) {
    psl__session_free(ss);
    ss->held = neu.held;
    ss->n = neu.n;
    ss->cap = neu.cap;
    neu.held = NULL;
    neu.n = neu.cap = 0;
  }
  psl__session_free(&neu);
  facts_free(&fs);
  return rc;
}

static int session_apply(psl__store_t *s, const psl_event_t *ev, const psl__fact_t *f) {
  if (f->type != PSL__F_SESSION && f->type != PSL__F_VOIDED)
    return 0; /* x- types: nothing to count */
  psl__session_t *ss;
  int rc = s->sess_get(s, f->stream_id, &ss);
  if (rc)
    return rc;
  if (f->type == PSL__F_VOIDED) {
    rc = session_recompute(s, ev, f, ss);
  } else if (!(rc = psl__session_add(ss, f))) {
    rc = held_count(s, &ss->held[ss->n - 1], +1);
  }
  return rc ? rc : s->sess_put(s, ss);
}

int psl__engine_apply_fact(psl__store_t *s, const psl_event_t *ev, const psl__fact_t *f) {
  if (f->stream_kind == PSL__STREAM_PARTICIPANT)
    return participant_apply(s, ev, f);
  if (f->stream_kind == PSL__STREAM_SESSION)
    return session_apply(s, ev, f);
  return 0; /* a skipped event's marker */
}

int psl__engine_apply(psl__store_t *s, const psl_event_t *ev) {
  psl__fact_t f;
  if (psl__engine_fact(ev, &f))
    return 0;
  return psl__engine_apply_fact(s, ev, &f);
}
