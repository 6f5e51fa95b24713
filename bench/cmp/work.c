/*
 * work.c — bench-compare's workloads, the same for every store (see cmp.h): they only speak
 * through the driver's append / catchup / live and react to its on_* reports.
 *
 *   ingest    N clients, each on its own participant stream, each with one request of B
 *             events in flight (closed loop); the clock starts once every client has made a
 *             first, unmeasured request (its participant's referral), and stops at the last
 *             answer after `seconds`.  events/s = events acknowledged / that time.
 *   preload   the log filled to a size with the largest requests, a new participant each
 *             (referral, then interviews), 32 clients — or the driver's own faster way
 *             (PostgreSQL: COPY): not a figure, the ground for the others.
 *   catchup   one client reads the last min(log, 1,000,000) events, again and again for a
 *             few seconds; events/s over every round.
 *   rebuild   the projections from the whole log: the driver's own (passerelle: in process)
 *             or, for a store that has none, every event read with catchup and folded
 *             client-side into the same projections (domain/, psl_proj_apply).
 *   fanout    S live subscribers and one pusher; each round pushes one event and waits until
 *             every subscriber has it; per delivery, the time since the push was sent and
 *             since its ack came back.
 *   idle      N connections after their handshake; the server's memory (Pss of its process
 *             tree) before and after, per connection.
 */
#include "cmp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psl_domain.h"

/* How long a run may go past its planned length before it is called stuck: a 1,000-client
 * PostgreSQL round on a busy machine takes seconds; preloading 10^7 events several minutes. */
#define GRACE_S 120.0
#define PRELOAD_MAX_S 3600.0
#define PRELOAD_CLIENTS 32u
/* Let a freshly started or loaded server settle before a memory reading (lazy frees). */
#define SETTLE_US 500000
#define IDLE_HOLD_S 1.0

/* ---- Events. */

size_t cmp_template_target(void) {
  static size_t target;
  if (target)
    return target;
  uint8_t pid[PSL_UUID_BYTES];
  evgen_t *e = malloc(sizeof *e);
  psl_buf_t b;
  size_t t = CMP_EVENT_BYTES;
  if (!e)
    return CMP_EVENT_BYTES;
  evgen_uuid(pid);
  psl_buf_init(&b, 0);
  for (int i = 0; i < 3; i++) { /* the stored form's size as in a loaded log */
    evgen_interview(e, pid, "93", PSL_EXPECT_ANY, t);
    e->ev.seq = 1000000;
    e->ev.ver = 20000;
    e->ev.rec = evgen_now_ms();
    e->ev.by = psl_str("bench");
    e->ev.dev = psl_str("bench-1");
    psl_buf_reset(&b);
    if (psl_event_encode_canonical(&b, &e->ev) || b.len == CMP_EVENT_BYTES)
      break;
    t = t + CMP_EVENT_BYTES - b.len;
  }
  psl_buf_free(&b);
  free(e);
  target = t;
  return target;
}

void cmp_stream_new(cmp_stream_t *st) {
  evgen_uuid(st->pid);
  evgen_referred(&st->ref, st->pid, "93", "Bench Person");
  evgen_interview(&st->tmpl, st->pid, "93", PSL_EXPECT_ANY, cmp_template_target());
  st->started = 0;
}

void cmp_stream_fill(cmp_stream_t *st, psl_event_t *evs, size_t n) {
  int64_t at = evgen_now_ms();
  for (size_t i = 0; i < n; i++) {
    if (!st->started) {
      evs[i] = st->ref.ev; /* its own id, made once */
      st->started = 1;
    } else {
      evs[i] = st->tmpl.ev;
      evgen_uuid(evs[i].id);
    }
    evs[i].at = at;
  }
}

/* Per-client streams and event arrays of a run. */
typedef struct {
  cmp_stream_t *st;
  psl_event_t *evs;
  size_t batch;
} streams_t;

static int streams_init(streams_t *s, size_t n, size_t batch) {
  s->st = calloc(n, sizeof *s->st);
  s->evs = calloc(n * batch, sizeof *s->evs);
  s->batch = batch;
  if (!s->st || !s->evs)
    return PSL_ENOMEM;
  for (size_t i = 0; i < n; i++)
    cmp_stream_new(&s->st[i]);
  return 0;
}

static void streams_free(streams_t *s) {
  free(s->st);
  free(s->evs);
}

/* Queue one request of n events of client c's stream. */
static int send_events(cmp_run_t *r, cmp_cl_t *c, streams_t *s, size_t n) {
  psl_event_t *evs = s->evs + c->index * s->batch;
  cmp_stream_fill(&s->st[c->index], evs, n);
  c->busy = 1;
  c->t_sent = cmp_now();
  int rc = r->sys->drv->append(c, evs, n);
  return rc ? cmp_fail(r, rc, "append: %s", psl_err_name(rc)) : 0;
}

static int finish(cmp_run_t *r, int rc, char *err, size_t errlen) {
  if (rc)
    snprintf(err, errlen, "%s", r->err[0] ? r->err : psl_err_name(rc));
  cmp_run_free(r);
  return rc;
}

/* ---- Ingest. */

typedef struct {
  streams_t s;
  size_t batch, nprimed, busy;
  double seconds, t0, t_end, t_last, cpu0, scpu0;
  uint64_t events, requests, refused, stored;
  cmp_samples_t lat;
} ingest_t;

static void ingest_ready(cmp_run_t *r, cmp_cl_t *c) {
  ingest_t *w = r->w;
  send_events(r, c, &w->s, 1); /* the participant's referral: before the clock */
  w->busy++;
}

static void ingest_appended(cmp_run_t *r, cmp_cl_t *c, size_t stored, size_t refused,
                            uint64_t last) {
  ingest_t *w = r->w;
  double t = cmp_now();
  c->busy = 0;
  w->busy--;
  w->stored += stored;
  if (!c->primed) {
    c->primed = 1;
    if (++w->nprimed < r->n)
      return;
    w->t0 = cmp_now(); /* every client is ready: go */
    w->t_end = w->t0 + w->seconds;
    w->cpu0 = cmp_cpu_self();
    w->scpu0 = cmp_cpu_tree(r->sys->pid);
    for (size_t i = 0; i < r->n; i++) {
      send_events(r, &r->cl[i], &w->s, w->batch);
      w->busy++;
      if (&r->cl[i] != c)
        cmp_kick(&r->cl[i]);
    }
    return;
  }
  w->events += stored;
  w->refused += refused;
  w->requests++;
  w->t_last = t;
  cmp_samples_add(&w->lat, t - c->t_sent);
  if (t < w->t_end) {
    send_events(r, c, &w->s, w->batch);
    w->busy++;
  } else if (w->busy == 0) {
    r->done = 1;
  }
}

int cmp_ingest(cmp_sys_t *s, size_t clients, size_t batch, double seconds, cmp_ingest_t *out,
               char *err, size_t errlen) {
  cmp_run_t r;
  ingest_t w;
  int rc;
  memset(&w, 0, sizeof w);
  memset(out, 0, sizeof *out);
  w.batch = batch;
  w.seconds = seconds;
  if ((rc = cmp_run_init(&r, s, clients)) || (rc = streams_init(&w.s, clients, batch)))
    goto done;
  r.w = &w;
  r.on_ready = ingest_ready;
  r.on_appended = ingest_appended;
  rc = cmp_run_loop(&r, seconds + GRACE_S);
  if (!rc) {
    double el = w.t_last - w.t0;
    out->events = w.events;
    out->requests = w.requests;
    out->refused = w.refused;
    out->stored = w.stored;
    out->events_per_s = el > 0 ? (double)w.events / el : 0;
    out->p50_ms = cmp_samples_pct(&w.lat, 50) * 1e3;
    out->p99_ms = cmp_samples_pct(&w.lat, 99) * 1e3;
    out->client_cpu = el > 0 ? (cmp_cpu_self() - w.cpu0) / el : 0;
    out->server_cpu = el > 0 ? (cmp_cpu_tree(s->pid) - w.scpu0) / el : 0;
  }
done:
  cmp_samples_free(&w.lat);
  streams_free(&w.s);
  return finish(&r, rc, err, errlen);
}

/* ---- Preload. */

typedef struct {
  streams_t s;
  uint64_t to_add, queued, stored, busy;
} preload_t;

static void preload_next(cmp_run_t *r, cmp_cl_t *c) {
  preload_t *w = r->w;
  if (w->queued >= w->to_add) {
    if (w->busy == 0)
      r->done = 1;
    return;
  }
  uint64_t n = w->to_add - w->queued;
  if (n > w->s.batch)
    n = w->s.batch;
  cmp_stream_new(&w->s.st[c->index]); /* a new participant per request */
  w->queued += n;
  w->busy++;
  send_events(r, c, &w->s, (size_t)n);
}

static void preload_appended(cmp_run_t *r, cmp_cl_t *c, size_t stored, size_t refused,
                             uint64_t last) {
  preload_t *w = r->w;
  w->busy--;
  w->stored += stored;
  if (refused)
    cmp_fail(r, PSL_EINVALID, "preload: %zu events refused", refused);
  else
    preload_next(r, c);
}

int cmp_preload(cmp_sys_t *s, uint64_t target, uint64_t *count, char *err, size_t errlen) {
  cmp_run_t r;
  preload_t w;
  uint64_t have;
  int rc = s->drv->count(s, &have);
  if (rc) {
    snprintf(err, errlen, "count: %s", s->err);
    return rc;
  }
  *count = have;
  if (have >= target)
    return 0;
  if (s->drv->preload) {
    if ((rc = s->drv->preload(s, target - have, err, errlen)) == 0 &&
        (rc = s->drv->count(s, count)) != 0)
      snprintf(err, errlen, "count: %s", s->err);
    return rc;
  }
  memset(&w, 0, sizeof w);
  w.to_add = target - have;
  if ((rc = cmp_run_init(&r, s, PRELOAD_CLIENTS)) ||
      (rc = streams_init(&w.s, PRELOAD_CLIENTS, s->drv->max_batch)))
    goto done;
  r.w = &w;
  r.on_ready = preload_next;
  r.on_appended = preload_appended;
  rc = cmp_run_loop(&r, PRELOAD_MAX_S);
  *count = have + w.stored;
done:
  streams_free(&w.s);
  return finish(&r, rc, err, errlen);
}

/* ---- Catch-up and rebuild. */

typedef struct {
  cmp_pos_t from;
  double seconds, t0, t_last;
  uint64_t got, rounds;
  int fold, fold_err;
  psl_proj_t *proj;
} catchup_t;

static void catchup_go(cmp_run_t *r, cmp_cl_t *c) {
  catchup_t *w = r->w;
  int rc = r->sys->drv->catchup(c, &w->from, w->fold);
  if (rc)
    cmp_fail(r, rc, "catchup: %s", psl_err_name(rc));
}

static void catchup_ready(cmp_run_t *r, cmp_cl_t *c) {
  catchup_t *w = r->w;
  w->t0 = cmp_now();
  catchup_go(r, c);
}

static void catchup_events(cmp_run_t *r, cmp_cl_t *c, size_t n, uint64_t last) {
  catchup_t *w = r->w;
  w->got += n;
}

static void catchup_event(cmp_run_t *r, cmp_cl_t *c, const psl_event_t *ev) {
  catchup_t *w = r->w;
  int rc = psl_proj_apply(w->proj, ev, NULL, NULL);
  if (rc && !w->fold_err)
    w->fold_err = rc;
}

static void catchup_done(cmp_run_t *r, cmp_cl_t *c) {
  catchup_t *w = r->w;
  w->t_last = cmp_now();
  w->rounds++;
  if (!w->fold && w->t_last - w->t0 < w->seconds)
    catchup_go(r, c); /* again, so that the figure covers a few seconds */
  else
    r->done = 1;
}

static int read_all(cmp_sys_t *s, catchup_t *w, double max_s, char *err, size_t errlen) {
  cmp_run_t r;
  int rc = cmp_run_init(&r, s, 1);
  if (rc)
    return finish(&r, rc, err, errlen);
  r.w = w;
  r.on_ready = catchup_ready;
  r.on_events = catchup_events;
  r.on_event = catchup_event;
  r.on_caught_up = catchup_done;
  rc = cmp_run_loop(&r, max_s);
  return finish(&r, rc, err, errlen);
}

int cmp_catchup(cmp_sys_t *s, uint64_t back, double seconds, cmp_rate_t *out, char *err,
                size_t errlen) {
  catchup_t w;
  memset(&w, 0, sizeof w);
  memset(out, 0, sizeof *out);
  w.seconds = seconds;
  int rc = s->drv->locate(s, back, &w.from);
  if (rc) {
    snprintf(err, errlen, "locate: %s", s->err);
    return rc;
  }
  if ((rc = read_all(s, &w, seconds + GRACE_S * 5, err, errlen)))
    return rc;
  out->events = w.got;
  out->seconds = w.t_last - w.t0;
  out->events_per_s = out->seconds > 0 ? (double)w.got / out->seconds : 0;
  if (back && w.got % back)
    snprintf(err, errlen, "note: %llu events in %llu rounds of %llu",
             (unsigned long long)w.got, (unsigned long long)w.rounds,
             (unsigned long long)back);
  return 0;
}

int cmp_rebuild(cmp_sys_t *s, cmp_rate_t *out, char *err, size_t errlen) {
  catchup_t w;
  int rc;
  memset(&w, 0, sizeof w);
  memset(out, 0, sizeof *out);
  if (s->drv->rebuild) {
    double t0 = cmp_now();
    rc = s->drv->rebuild(s, &out->events, err, errlen);
    out->seconds = cmp_now() - t0;
  } else {
    snprintf(w.from.rid, sizeof w.from.rid, "0-0");
    w.fold = 1;
    if ((rc = psl_proj_new(&w.proj)) != 0)
      return rc;
    rc = read_all(s, &w, PRELOAD_MAX_S, err, errlen);
    if (!rc && w.fold_err) {
      snprintf(err, errlen, "psl_proj_apply: %s", psl_err_name(w.fold_err));
      rc = w.fold_err;
    }
    psl_proj_free(w.proj);
    out->events = w.got;
    out->seconds = w.t_last - w.t0;
  }
  out->events_per_s = out->seconds > 0 ? (double)out->events / out->seconds : 0;
  return rc;
}

/* ---- Fan-out. */

typedef struct {
  streams_t s;
  cmp_pos_t from;
  size_t subs, subscribed, delivered, rounds_max;
  double seconds;
  uint64_t round; /* 0: the warm-up (the pusher's referral) */
  int pusher_ready, started, acked;
  double t_push, t_ack, deadline;
  double *t_got; /* per subscriber, this round */
  cmp_samples_t push, ack;
} fanout_t;

static void fanout_round(cmp_run_t *r) {
  fanout_t *w = r->w;
  w->acked = 0;
  w->delivered = 0;
  w->t_push = cmp_wall();
  send_events(r, &r->cl[0], &w->s, 1);
  cmp_kick(&r->cl[0]);
}

static void fanout_maybe_start(cmp_run_t *r) {
  fanout_t *w = r->w;
  if (w->started || !w->pusher_ready || w->subscribed < w->subs)
    return;
  w->started = 1;
  w->deadline = cmp_now() + w->seconds;
  fanout_round(r);
}

static void fanout_ready(cmp_run_t *r, cmp_cl_t *c) {
  fanout_t *w = r->w;
  if (c->index == 0) {
    w->pusher_ready = 1;
    fanout_maybe_start(r);
    return;
  }
  int rc = r->sys->drv->live(c, &w->from);
  if (rc)
    cmp_fail(r, rc, "live: %s", psl_err_name(rc));
}

static void fanout_subscribed(cmp_run_t *r, cmp_cl_t *c) {
  fanout_t *w = r->w;
  if (c->ready)
    return;
  c->ready = 1;
  w->subscribed++;
  fanout_maybe_start(r);
}

static void fanout_end_round(cmp_run_t *r) {
  fanout_t *w = r->w;
  if (!w->acked || w->delivered < w->subs)
    return;
  if (w->round > 0)
    for (size_t i = 0; i < w->subs; i++) {
      cmp_samples_add(&w->push, w->t_got[i] - w->t_push);
      cmp_samples_add(&w->ack, w->t_got[i] - w->t_ack);
    }
  w->round++;
  if (w->round > w->rounds_max || cmp_now() > w->deadline)
    r->done = 1;
  else
    fanout_round(r);
}

static void fanout_appended(cmp_run_t *r, cmp_cl_t *c, size_t stored, size_t refused,
                            uint64_t last) {
  fanout_t *w = r->w;
  w->t_ack = isnan(c->rx_at) ? cmp_wall() : c->rx_at;
  w->acked = 1;
  if (stored != 1)
    cmp_fail(r, PSL_EINVALID, "fan-out: the push was not stored");
  else
    fanout_end_round(r);
}

static void fanout_events(cmp_run_t *r, cmp_cl_t *c, size_t n, uint64_t last) {
  fanout_t *w = r->w;
  if (c->index == 0 || n == 0)
    return;
  c->got += n;
  if (c->got == w->round + 1) { /* this round's event reached this subscriber */
    w->t_got[c->index - 1] = isnan(c->rx_at) ? cmp_wall() : c->rx_at;
    w->delivered++;
    fanout_end_round(r);
  } else if (c->got > w->round + 1) {
    cmp_fail(r, PSL_EINVALID, "fan-out: subscriber %zu got %llu events by round %llu",
             c->index, (unsigned long long)c->got, (unsigned long long)w->round);
  }
}

int cmp_fanout(cmp_sys_t *s, size_t subs, size_t rounds, double seconds, cmp_fanout_t *out,
               char *err, size_t errlen) {
  cmp_run_t r;
  fanout_t w;
  int rc;
  memset(&w, 0, sizeof w);
  memset(out, 0, sizeof *out);
  w.subs = subs;
  w.rounds_max = rounds;
  w.seconds = seconds;
  if ((rc = s->drv->locate(s, 0, &w.from))) {
    snprintf(err, errlen, "locate: %s", s->err);
    return rc;
  }
  s->notify = 1;
  if ((rc = cmp_run_init(&r, s, subs + 1)) || (rc = streams_init(&w.s, subs + 1, 1)) ||
      !(w.t_got = calloc(subs, sizeof *w.t_got))) {
    rc = rc ? rc : PSL_ENOMEM;
    goto done;
  }
  r.w = &w;
  r.rx_stamps = 1;
  r.on_ready = fanout_ready;
  r.on_caught_up = fanout_subscribed;
  r.on_appended = fanout_appended;
  r.on_events = fanout_events;
  rc = cmp_run_loop(&r, seconds + 2 * GRACE_S);
  if (!rc) {
    out->rounds = w.round - 1;
    out->samples = w.push.n;
    out->p50_push_ms = cmp_samples_pct(&w.push, 50) * 1e3;
    out->p99_push_ms = cmp_samples_pct(&w.push, 99) * 1e3;
    out->p50_ack_ms = cmp_samples_pct(&w.ack, 50) * 1e3;
    out->p99_ack_ms = cmp_samples_pct(&w.ack, 99) * 1e3;
  }
done:
  s->notify = 0;
  free(w.t_got);
  cmp_samples_free(&w.push);
  cmp_samples_free(&w.ack);
  streams_free(&w.s);
  return finish(&r, rc, err, errlen);
}

/* ---- Idle connections. */

typedef struct {
  double t_all;
} idle_t;

static void idle_ready(cmp_run_t *r, cmp_cl_t *c) {
  idle_t *w = r->w;
  if (r->nready == r->n)
    w->t_all = cmp_now();
}

static void idle_tick(cmp_run_t *r) {
  idle_t *w = r->w;
  if (w->t_all > 0 && cmp_now() - w->t_all > IDLE_HOLD_S)
    r->done = 1; /* held a second, pings answered: the server has settled */
}

int cmp_idle(cmp_sys_t *s, size_t n, cmp_idle_t *out, char *err, size_t errlen) {
  cmp_run_t r;
  idle_t w;
  memset(&w, 0, sizeof w);
  memset(out, 0, sizeof *out);
  usleep(SETTLE_US);
  out->conns = n;
  out->kib_before = cmp_pss_tree_kib(s->pid);
  int rc = cmp_run_init(&r, s, n);
  if (rc)
    return finish(&r, rc, err, errlen);
  r.w = &w;
  r.on_ready = idle_ready;
  r.on_tick = idle_tick;
  rc = cmp_run_loop(&r, GRACE_S);
  if (!rc) {
    out->kib_after = cmp_pss_tree_kib(s->pid);
    out->bytes_per_conn = (double)(out->kib_after - out->kib_before) * 1024.0 / (double)n;
  }
  return finish(&r, rc, err, errlen);
}
