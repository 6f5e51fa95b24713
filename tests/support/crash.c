/*
 * crash.c — the crash harness (see crash.h): load, kill -9, check, retry.
 *
 * The model.  Every event ever sent has an entry (ids hashed into `slots`, entries kept in
 * `ents` in the order they were made): SENT while its push is unanswered, ACKED once a
 * `pushed` said stored (seq, ver) — from then on it is a promise the log must keep.  `by_seq`
 * maps each seq answered to its entry: a second id answered with the same seq is a reused
 * seq.  After a kill, the pushes still unanswered go to `retry`, and the check tells for each
 * of their events whether the log kept it (`found`, with the seq it holds).
 */
#include "support/crash.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "psl_domain.h"
#include "psl_log.h"
#include "support/evgen.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

/* Defaults of crash_opts_t (crash.h says what each is). */
#define DEF_PUSHERS 6
#define DEF_DEPTH 4
#define DEF_MAX_EVENTS 24
/* Largest max_events accepted, and so the most events one push holds (one more: the old
 * event pushed again as a dup). */
#define CAP_MAX_EVENTS (8 * DEF_MAX_EVENTS)
#define CAP_PUSH_EVENTS (CAP_MAX_EVENTS + 1)
/* Pushing connections at most. */
#define CAP_PUSHERS 64
#define DEF_MIN_LOAD_MS 50
#define DEF_MAX_LOAD_MS 600
/* Receive timeout: a live server answers in milliseconds; a dead one closes at once. */
#define T_MS 15000
/* Acked events a pusher keeps copies of, to push them again as dups. */
#define RECENT 16
/* One push in DUP_EVERY carries an event already answered stored. */
#define DUP_EVERY 8
/* Bytes of the log read per transaction while checking. */
#define CHECK_READ_BYTES (4u * 1024u * 1024u)

enum { SENT = 1, ACKED = 2 };

typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  uint64_t seq, ver, fp;
  uint8_t state;
  uint8_t found; /* SENT: the check found it stored at seq */
  uint32_t seen; /* the check number that last saw it in the log */
} ent_t;

typedef struct push_s {
  struct push_s *next;
  uint64_t id; /* request id on its connection */
  evgen_t *ev;
  size_t n;
  int dup_tail; /* the last event is an old, acknowledged one */
} push_t;

struct crash_s {
  crash_opts_t o;
  srv_t srv;
  char token[PSL_TOKEN_LEN + 1];
  uint64_t rng;

  pthread_mutex_t mu; /* the model below, the retry list, stats, failure */
  ent_t *ents;
  size_t nents, capents;
  uint32_t *slots; /* entry index + 1; 0 empty */
  size_t nslots;   /* a power of two, > 2 x nents */
  uint32_t *by_seq; /* seq → entry index + 1 */
  size_t cap_seq;
  push_t *retry;
  char fail[1024]; /* the first broken guarantee */
  atomic_int stop;
  atomic_int killing; /* the SIGKILL is on its way: a connection may fail from now on */

  uint32_t checks;
  crash_stats_t st;
  int running; /* the server runs (restarted after the last kill) */
};

/* ---- Small helpers. */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(crash_t *c) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 7;
  c->rng ^= c->rng << 17;
  return c->rng;
}

static void hex_id(const uint8_t id[PSL_UUID_BYTES], char out[33]) {
  for (int i = 0; i < PSL_UUID_BYTES; i++)
    snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* Record the first failure (under mu). */
static void failf(crash_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(crash_t *c, const char *fmt, ...) {
  va_list ap;
  if (c->fail[0])
    return;
  va_start(ap, fmt);
  vsnprintf(c->fail, sizeof c->fail, fmt, ap);
  va_end(ap);
  atomic_store(&c->stop, 1);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

/* What "the same content" means: everything the client sent but `expect`, and for `pii`
 * only whether there is one: the server stores pii encrypted with the participant's key
 * (crypto-shredding), so its stored bytes are not the pushed ones. */
static uint64_t fingerprint(const psl_event_t *ev) {
  uint64_t h = 0xcbf29ce484222325ull;
  uint8_t at[8];
  for (int i = 0; i < 8; i++)
    at[i] = (uint8_t)((uint64_t)ev->at >> (8 * i));
  h = fnv(fnv(h, ev->stream.ptr, ev->stream.len), "", 1);
  h = fnv(fnv(h, ev->type.ptr, ev->type.len), "", 1);
  h = fnv(h, at, sizeof at);
  h = fnv(fnv(h, ev->terr.ptr, ev->terr.len), "", 1);
  h = fnv(fnv(h, ev->data.ptr, ev->data.len), "", 1);
  return fnv(h, ev->pii.len ? "p" : "-", 1);
}

/* ---- The model (under mu). */

static size_t slot_of(const crash_t *c, const uint8_t id[PSL_UUID_BYTES]) {
  uint64_t a, b;
  memcpy(&a, id, 8);
  memcpy(&b, id + 8, 8);
  return (size_t)((a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull >> 17) &
         (c->nslots - 1);
}

static ent_t *find(crash_t *c, const uint8_t id[PSL_UUID_BYTES]) {
  for (size_t i = slot_of(c, id);; i = (i + 1) & (c->nslots - 1)) {
    uint32_t e = c->slots[i];
    if (!e)
      return NULL;
    if (memcmp(c->ents[e - 1].id, id, PSL_UUID_BYTES) == 0)
      return &c->ents[e - 1];
  }
}

static int grow(crash_t *c) {
  if (c->nents == c->capents) {
    size_t cap = c->capents ? 2 * c->capents : 65536;
    ent_t *e = realloc(c->ents, cap * sizeof *e);
    if (!e)
      return PSL_ENOMEM;
    c->ents = e;
    c->capents = cap;
  }
  if (2 * (c->nents + 1) > c->nslots) {
    size_t n = c->nslots ? 2 * c->nslots : 131072;
    uint32_t *s = calloc(n, sizeof *s);
    if (!s)
      return PSL_ENOMEM;
    free(c->slots);
    c->slots = s;
    c->nslots = n;
    for (size_t k = 0; k < c->nents; k++) {
      size_t i = slot_of(c, c->ents[k].id);
      while (c->slots[i])
        i = (i + 1) & (n - 1);
      c->slots[i] = (uint32_t)(k + 1);
    }
  }
  return 0;
}

/* A new event sent: SENT.  An id met before is a bug of the generator. */
static int add_sent(crash_t *c, const psl_event_t *ev) {
  if (grow(c) != 0) {
    failf(c, "out of memory in the model");
    return -1;
  }
  if (find(c, ev->id)) {
    failf(c, "the generator made an id twice");
    return -1;
  }
  ent_t *e = &c->ents[c->nents];
  memset(e, 0, sizeof *e);
  memcpy(e->id, ev->id, PSL_UUID_BYTES);
  e->fp = fingerprint(ev);
  e->state = SENT;
  size_t i = slot_of(c, ev->id);
  while (c->slots[i])
    i = (i + 1) & (c->nslots - 1);
  c->slots[i] = (uint32_t)++c->nents;
  return 0;
}

/* seq was answered for e: never for another id, never twice as "stored". */
static int set_acked(crash_t *c, ent_t *e, uint64_t seq, uint64_t ver) {
  char hx[33];
  if (seq == 0 || ver == 0) {
    failf(c, "an event answered stored with seq %llu ver %llu", (unsigned long long)seq,
          (unsigned long long)ver);
    return -1;
  }
  if (seq >= c->cap_seq) {
    size_t cap = c->cap_seq ? c->cap_seq : 65536;
    while (cap <= seq)
      cap *= 2;
    uint32_t *b = realloc(c->by_seq, cap * sizeof *b);
    if (!b) {
      failf(c, "out of memory in the model");
      return -1;
    }
    memset(b + c->cap_seq, 0, (cap - c->cap_seq) * sizeof *b);
    c->by_seq = b;
    c->cap_seq = cap;
  }
  uint32_t idx = (uint32_t)(e - c->ents) + 1;
  if (c->by_seq[seq] && c->by_seq[seq] != idx) {
    hex_id(e->id, hx);
    failf(c, "seq %llu answered for event %s, but it was answered before for another event",
          (unsigned long long)seq, hx);
    return -1;
  }
  c->by_seq[seq] = idx;
  e->state = ACKED;
  e->seq = seq;
  e->ver = ver;
  c->st.acked++;
  return 0;
}

/* ---- Answers. */

/* Check the results of push p.  retry: p was in flight at a kill. */
static void check_answer(crash_t *c, const push_t *p, const psl_msg_t *m, int retry) {
  char hx[33];
  pthread_mutex_lock(&c->mu);
  if (m->u.pushed.n != p->n) {
    failf(c, "push of %zu events answered with %zu results", p->n, m->u.pushed.n);
    goto done;
  }
  for (size_t i = 0; i < p->n && !c->fail[0]; i++) {
    const psl_push_result_t *r = &m->u.pushed.results[i];
    ent_t *e = find(c, p->ev[i].ev.id);
    hex_id(p->ev[i].ev.id, hx);
    if (!e) {
      failf(c, "event %s: not in the model", hx);
      break;
    }
    if (r->err) {
      failf(c, "event %s (%s, %zu of a push of %zu%s) refused: %s \"%.*s\"", hx,
            e->state == ACKED ? "acknowledged before" : "new", i + 1, p->n,
            retry ? ", retried after a kill" : "", psl_err_code(r->err), (int)r->msg.len,
            r->msg.ptr ? r->msg.ptr : "");
      break;
    }
    if (e->state == ACKED) { /* an old event pushed again: dup, original seq and ver */
      if (!r->dup || r->seq != e->seq || r->ver != e->ver)
        failf(c, "event %s, answered stored at seq %llu ver %llu, was answered %s seq %llu "
                 "ver %llu when pushed again",
              hx, (unsigned long long)e->seq, (unsigned long long)e->ver,
              r->dup ? "dup" : "stored anew", (unsigned long long)r->seq,
              (unsigned long long)r->ver);
      c->st.dup_checked++;
      continue;
    }
    if (e->found) { /* in flight at a kill, and the log kept it: dup with that seq */
      if (!r->dup || r->seq != e->seq || r->ver != e->ver) {
        failf(c, "event %s, in flight at a kill and found at seq %llu after it, was answered "
                 "%s seq %llu on retry",
              hx, (unsigned long long)e->seq, r->dup ? "dup" : "stored anew",
              (unsigned long long)r->seq);
        break;
      }
      c->st.dup_checked++;
      c->st.inflight_kept++;
      e->found = 0;
      set_acked(c, e, r->seq, r->ver);
      continue;
    }
    if (r->dup) {
      failf(c, "event %s, never stored, was answered dup seq %llu", hx,
            (unsigned long long)r->seq);
      break;
    }
    set_acked(c, e, r->seq, r->ver);
  }
done:
  pthread_mutex_unlock(&c->mu);
}

/* ---- Pushes. */

static const char *const TERRS[] = {"75", "77", "93", "94"};

static void push_free(push_t *p) {
  if (p) {
    free(p->ev);
    free(p);
  }
}

/* A new participant and 0..max_events - 1 interviews of it; maybe an old acked event last. */
static push_t *push_make(crash_t *c, uint64_t r, const evgen_t *recent, size_t nrecent) {
  size_t n = 1 + (size_t)(r % (uint64_t)c->o.max_events);
  int dup = nrecent > 0 && (r >> 20) % DUP_EVERY == 0;
  push_t *p = calloc(1, sizeof *p);
  if (!p || !(p->ev = calloc(n + 1, sizeof *p->ev))) {
    free(p);
    return NULL;
  }
  uint8_t pid[PSL_UUID_BYTES];
  const char *terr = TERRS[(r >> 8) % 4];
  evgen_uuid(pid);
  evgen_referred(&p->ev[0], pid, terr, "Crash Test");
  for (size_t i = 1; i < n; i++)
    evgen_interview(&p->ev[i], pid, terr, (r >> 12) & 1 ? (int64_t)i : PSL_EXPECT_ANY, 0);
  p->n = n;
  if (dup) {
    evgen_copy(&p->ev[n], &recent[(r >> 24) % nrecent]);
    p->n++;
    p->dup_tail = 1;
  }
  return p;
}

static int push_send(wsc_t *w, push_t *p) {
  psl_event_t evs[CAP_PUSH_EVENTS];
  psl_msg_t m;
  if (p->n > sizeof evs / sizeof evs[0])
    return PSL_ETOO_BIG;
  for (size_t i = 0; i < p->n; i++)
    evs[i] = p->ev[i].ev;
  tcli_push_msg(&m, p->id, evs, p->n);
  return wsc_send_msg(w, &m);
}

/* ---- Pushers. */

typedef struct {
  crash_t *c;
  int idx;
  uint64_t rng;
  push_t *inflight; /* oldest first */
  evgen_t recent[RECENT];
  size_t nrecent, recent_at;
} pusher_t;

static void remember(pusher_t *pu, const push_t *p) {
  size_t n = p->n - (p->dup_tail ? 1 : 0);
  for (size_t i = 0; i < n; i++) {
    evgen_copy(&pu->recent[pu->recent_at], &p->ev[i]);
    pu->recent_at = (pu->recent_at + 1) % RECENT;
    if (pu->nrecent < RECENT)
      pu->nrecent++;
  }
}

static void *pusher_main(void *arg) {
  pusher_t *pu = arg;
  crash_t *c = pu->c;
  char err[512], desc[512];
  wsc_t *w = NULL;
  uint64_t next_id = 0;
  size_t ninflight = 0;
  if (tcli_open(&w, c->srv.port, c->token, "crash-tablet", NULL, err, sizeof err) != 0) {
    pthread_mutex_lock(&c->mu);
    if (!atomic_load(&c->killing))
      failf(c, "pusher %d could not connect: %s", pu->idx, err);
    pthread_mutex_unlock(&c->mu);
    return NULL;
  }
  while (!atomic_load(&c->stop)) {
    while (ninflight < (size_t)c->o.depth) {
      pu->rng ^= pu->rng << 13;
      pu->rng ^= pu->rng >> 7;
      pu->rng ^= pu->rng << 17;
      push_t *p = push_make(c, pu->rng, pu->recent, pu->nrecent);
      if (!p)
        goto out;
      p->id = ++next_id;
      pthread_mutex_lock(&c->mu);
      for (size_t i = 0; i < p->n - (p->dup_tail ? 1 : 0); i++)
        add_sent(c, &p->ev[i].ev);
      c->st.pushes++;
      pthread_mutex_unlock(&c->mu);
      /* in flight from the moment the first byte may leave */
      push_t **tail = &pu->inflight;
      while (*tail)
        tail = &(*tail)->next;
      *tail = p;
      ninflight++;
      if (push_send(w, p) != 0)
        goto out;
    }
    psl_msg_t m;
    if (tcli_expect(w, PSL_MSG_NONE, T_MS, &m, err, sizeof err) != 0)
      goto out; /* the kill */
    tcli_describe(&m, desc, sizeof desc);
    push_t **pp = &pu->inflight;
    while (*pp && !(m.t == PSL_MSG_PUSHED && m.has_id && (*pp)->id == m.id))
      pp = &(*pp)->next;
    if (!*pp) {
      pthread_mutex_lock(&c->mu);
      failf(c, "pusher %d: expected the `pushed` of a push in flight, got %s", pu->idx, desc);
      pthread_mutex_unlock(&c->mu);
      psl_msg_free(&m);
      goto out;
    }
    push_t *p = *pp;
    *pp = p->next;
    ninflight--;
    check_answer(c, p, &m, 0);
    psl_msg_free(&m);
    remember(pu, p);
    push_free(p);
  }
out:
  wsc_free(w);
  /* What was not answered goes to the retry list: its fate is the log's to tell. */
  pthread_mutex_lock(&c->mu);
  while (pu->inflight) {
    push_t *p = pu->inflight;
    pu->inflight = p->next;
    p->next = c->retry;
    c->retry = p;
    c->st.inflight += p->n - (p->dup_tail ? 1 : 0);
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* ---- The check, with the server dead. */

typedef struct {
  crash_t *c;
  uint64_t n;
} scan_t;

static int scan_cb(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                   size_t len) {
  (void)hash;
  scan_t *s = arg;
  crash_t *c = s->c;
  psl_event_t ev;
  char hx[33];
  if (psl_event_decode_stored(canon, len, &ev, NULL) != 0 || ev.seq != seq) {
    failf(c, "seq %llu: the stored record does not decode as itself", (unsigned long long)seq);
    return 1;
  }
  ent_t *e = find(c, ev.id);
  hex_id(ev.id, hx);
  if (!e) {
    failf(c, "seq %llu holds event %s, which nobody sent", (unsigned long long)seq, hx);
    return 1;
  }
  if (e->fp != fingerprint(&ev)) {
    failf(c, "seq %llu: event %s is stored with other content than was pushed",
          (unsigned long long)seq, hx);
    return 1;
  }
  if (e->state == ACKED && (e->seq != seq || e->ver != ev.ver)) {
    failf(c, "event %s was answered seq %llu ver %llu, the log holds it at seq %llu ver %llu",
          hx, (unsigned long long)e->seq, (unsigned long long)e->ver, (unsigned long long)seq,
          (unsigned long long)ev.ver);
    return 1;
  }
  if (e->seen == c->checks) {
    failf(c, "event %s is stored twice (seq %llu and before)", hx, (unsigned long long)seq);
    return 1;
  }
  if (e->state == SENT) { /* in flight at the kill, kept: the retry must say dup */
    e->found = 1;
    e->seq = seq;
    e->ver = ev.ver;
  }
  e->seen = c->checks;
  s->n++;
  return 0;
}

typedef struct {
  uint64_t head;
  int absent;
  int rc;
  psl_diag_t diag;
  uint64_t proj_seq;
} proj_t;

static int proj_cb(void *arg, MDB_txn *txn) {
  proj_t *p = arg;
  psl_projdb_t *db = NULL;
  MDB_dbi dbi;
  if (mdb_dbi_open(txn, "proj_meta", 0, &dbi) == MDB_NOTFOUND) {
    p->absent = 1;
    return 0;
  }
  int rc = psl_projdb_open(&db, mdb_txn_env(txn), txn);
  if (rc == 0)
    rc = psl_projdb_seq(db, txn, &p->proj_seq);
  if (rc == 0 && p->proj_seq != p->head)
    rc = PSL_ECORRUPT;
  if (rc == 0)
    rc = psl_projdb_verify(db, txn, &p->diag);
  psl_projdb_free(db);
  p->rc = rc;
  return 0;
}

static int check_log(crash_t *c, char *err, size_t errlen) {
  double t0 = now_s();
  psl_log_t *log = NULL;
  psl_log_opts_t ro;
  memset(&ro, 0, sizeof ro);
  ro.read_only = 1;
  int rc = psl_log_open(&log, c->srv.dir, &ro);
  if (rc) {
    snprintf(err, errlen, "the log does not open after the kill: %s", psl_strerror(rc));
    return rc;
  }
  psl_verify_report_t rep;
  rc = psl_log_verify_report(log, &rep, NULL, NULL);
  if (rc) {
    snprintf(err, errlen, "the chain does not verify after the kill: %s at seq %llu (head %llu)",
             rep.why ? rep.why : psl_strerror(rc), (unsigned long long)rep.bad_seq,
             (unsigned long long)rep.head);
    psl_log_close(log);
    return PSL_ECORRUPT;
  }
  uint64_t head = psl_log_head(log, NULL);
  pthread_mutex_lock(&c->mu);
  c->checks++;
  scan_t s = {c, 0};
  for (uint64_t after = 0; after < head && !c->fail[0];) {
    uint64_t last = after;
    rc = psl_log_read(log, after, NULL, CHECK_READ_BYTES, 0, scan_cb, &s, &last);
    if (rc) {
      failf(c, "reading the log after the kill: %s", psl_strerror(rc));
      break;
    }
    if (last <= after)
      break;
    after = last;
  }
  if (!c->fail[0] && s.n != head)
    failf(c, "the log's head is %llu but %llu events were read", (unsigned long long)head,
          (unsigned long long)s.n);
  /* every acknowledged event was seen */
  uint64_t acked = 0;
  for (size_t i = 0; i < c->nents && !c->fail[0]; i++) {
    ent_t *e = &c->ents[i];
    if (e->state != ACKED)
      continue;
    acked++;
    if (e->seen != c->checks) {
      char hx[33];
      hex_id(e->id, hx);
      c->st.lost++;
      failf(c, "LOST: event %s was answered stored at seq %llu; the log (head %llu) does not "
               "hold it",
            hx, (unsigned long long)e->seq, (unsigned long long)head);
    }
  }
  c->st.head = head;
  int failed = c->fail[0] != 0;
  if (failed)
    snprintf(err, errlen, "%s", c->fail);
  pthread_mutex_unlock(&c->mu);
  if (!failed) {
    proj_t p;
    memset(&p, 0, sizeof p);
    p.head = head;
    rc = psl_log_with_read_txn(log, proj_cb, &p);
    if (rc == 0 && p.rc) {
      snprintf(err, errlen, "projections after the kill: %s (proj_seq %llu, head %llu): %s",
               psl_strerror(p.rc), (unsigned long long)p.proj_seq, (unsigned long long)head,
               p.diag.msg);
      failed = 1;
    } else if (rc) {
      snprintf(err, errlen, "projections after the kill: %s", psl_strerror(rc));
      failed = 1;
    } else if (p.absent) {
      c->st.proj_absent = 1;
    } else {
      c->st.proj_checks++;
    }
  }
  psl_log_close(log);
  c->st.check_s += now_s() - t0;
  return failed ? PSL_ECORRUPT : 0;
}

/* ---- Cycle. */

/* Start the server on the folder: after a kill, this is the recovery (the log applies its
 * journal's answered records past LMDB's head before it serves). */
static int start(crash_t *c, char *err, size_t errlen) {
  int rc = srv_start(&c->srv, 0);
  if (rc) {
    snprintf(err, errlen, "restart: %s", c->srv.err);
    return rc;
  }
  c->running = 1;
  return 0;
}

/* Connect to the running server, check its head against the last check, and push again
 * what was unanswered at the kill. */
static int reconnect_and_retry(crash_t *c, char *err, size_t errlen) {
  tcli_welcome_t wel;
  wsc_t *w = NULL;
  char e2[512];
  int rc;
  if ((rc = tcli_open(&w, c->srv.port, c->token, "crash-tablet", &wel, e2, sizeof e2)) != 0) {
    snprintf(err, errlen, "connect after the restart: %s", e2);
    return rc;
  }
  if (wel.head != c->st.head) {
    snprintf(err, errlen, "welcome says head %llu after the restart, the log held %llu",
             (unsigned long long)wel.head, (unsigned long long)c->st.head);
    wsc_free(w);
    return PSL_ECORRUPT;
  }
  pthread_mutex_lock(&c->mu);
  push_t *list = c->retry;
  c->retry = NULL;
  pthread_mutex_unlock(&c->mu);
  uint64_t id = 0;
  rc = 0;
  while (list && rc == 0) {
    push_t *p = list;
    list = p->next;
    p->id = ++id;
    psl_msg_t m;
    if ((rc = push_send(w, p)) != 0) {
      snprintf(err, errlen, "retry: send: %s", wsc_error(w));
    } else if ((rc = tcli_expect(w, PSL_MSG_PUSHED, T_MS, &m, e2, sizeof e2)) != 0) {
      snprintf(err, errlen, "retry: %s", e2);
    } else {
      c->st.pushes++;
      check_answer(c, p, &m, 1);
      psl_msg_free(&m);
      pthread_mutex_lock(&c->mu);
      if (c->fail[0]) {
        snprintf(err, errlen, "%s", c->fail);
        rc = PSL_ECORRUPT;
      }
      pthread_mutex_unlock(&c->mu);
    }
    push_free(p);
  }
  while (list) {
    push_t *p = list;
    list = p->next;
    push_free(p);
  }
  wsc_close(w);
  return rc;
}

int crash_cycle(crash_t *c, char *err, size_t errlen) {
  pthread_t th[CAP_PUSHERS];
  pusher_t *pu = calloc((size_t)c->o.pushers, sizeof *pu);
  int n = 0, rc;
  if (!pu)
    return PSL_ENOMEM;
  if (!c->running && ((rc = start(c, err, errlen)) != 0 ||
                      (rc = reconnect_and_retry(c, err, errlen)) != 0))
    goto done;
  atomic_store(&c->stop, 0);
  atomic_store(&c->killing, 0);
  for (; n < c->o.pushers; n++) {
    pu[n].c = c;
    pu[n].idx = n;
    pu[n].rng = rnd(c) | 1;
    if (pthread_create(&th[n], NULL, pusher_main, &pu[n]) != 0)
      break;
  }
  uint64_t span = (uint64_t)(c->o.max_load_ms - c->o.min_load_ms) + 1;
  double kill_ms = c->o.min_load_ms + (double)(rnd(c) % span) + (double)(rnd(c) % 1000) / 1000;
  long long kill_ns = (long long)(kill_ms * 1e6);
  struct timespec ts = {(time_t)(kill_ns / 1000000000), (long)(kill_ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  atomic_store(&c->killing, 1);
  srv_kill(&c->srv); /* SIGKILL: mid-commit, mid-fsync, mid-answer, wherever it is */
  c->running = 0;
  atomic_store(&c->stop, 1);
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  if (c->st.cycles == 0 || kill_ms < c->st.kill_ms_min)
    c->st.kill_ms_min = kill_ms;
  if (kill_ms > c->st.kill_ms_max)
    c->st.kill_ms_max = kill_ms;
  c->st.cycles++;
  pthread_mutex_lock(&c->mu);
  if (c->fail[0]) {
    snprintf(err, errlen, "%s", c->fail);
    rc = PSL_ECORRUPT;
  }
  pthread_mutex_unlock(&c->mu);
  if (rc == 0 && n < c->o.pushers) {
    snprintf(err, errlen, "pthread_create failed");
    rc = PSL_EINTERNAL;
  }
  /* Restarted as an administrator would, then checked (read-only, beside the server) before
   * the unanswered pushes go again. */
  if (rc == 0)
    rc = start(c, err, errlen);
  if (rc == 0)
    rc = check_log(c, err, errlen);
  if (rc == 0)
    rc = reconnect_and_retry(c, err, errlen);
done:
  free(pu);
  return rc;
}

int crash_finish(crash_t *c, char *err, size_t errlen) {
  int rc = c->running ? 0 : start(c, err, errlen);
  if (rc)
    return rc;
  c->running = 0;
  if ((rc = srv_stop(&c->srv, 0)) != 0) {
    snprintf(err, errlen, "graceful stop: %s", c->srv.err);
    return rc;
  }
  return check_log(c, err, errlen);
}

/* ---- Life. */

int crash_new(crash_t **out, const crash_opts_t *opts, char *err, size_t errlen) {
  crash_t *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c)
    return PSL_ENOMEM;
  c->o = *opts;
  if (c->o.pushers <= 0)
    c->o.pushers = DEF_PUSHERS;
  if (c->o.pushers > CAP_PUSHERS)
    c->o.pushers = CAP_PUSHERS;
  if (c->o.depth <= 0)
    c->o.depth = DEF_DEPTH;
  if (c->o.max_events <= 0)
    c->o.max_events = DEF_MAX_EVENTS;
  if (c->o.max_events > CAP_MAX_EVENTS)
    c->o.max_events = CAP_MAX_EVENTS;
  if (c->o.min_load_ms <= 0)
    c->o.min_load_ms = DEF_MIN_LOAD_MS;
  if (c->o.max_load_ms < c->o.min_load_ms)
    c->o.max_load_ms = c->o.min_load_ms > DEF_MAX_LOAD_MS ? c->o.min_load_ms : DEF_MAX_LOAD_MS;
  c->rng = c->o.seed ? c->o.seed : (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull | 1;
  c->st.seed = c->rng;
  pthread_mutex_init(&c->mu, NULL);
  int rc = srv_init(&c->srv, c->o.bindir, c->o.dir);
  if (rc == 0)
    rc = srv_token(&c->srv, PSL_ROLE_COORDINATOR, NULL, "crash-coordinator", "crash-tablet",
                   c->token);
  if (rc) {
    snprintf(err, errlen, "set-up: %s", c->srv.err[0] ? c->srv.err : psl_strerror(rc));
    crash_free(c);
    return rc;
  }
  c->st.elapsed_s = now_s(); /* the start, until crash_stats */
  *out = c;
  return 0;
}

void crash_stats(const crash_t *c, crash_stats_t *st) {
  *st = c->st;
  st->elapsed_s = now_s() - c->st.elapsed_s;
}

const char *crash_server_log(const crash_t *c) { return c->srv.log; }

void crash_free(crash_t *c) {
  if (!c)
    return;
  srv_kill(&c->srv);
  while (c->retry) {
    push_t *p = c->retry;
    c->retry = p->next;
    push_free(p);
  }
  free(c->ents);
  free(c->slots);
  free(c->by_seq);
  pthread_mutex_destroy(&c->mu);
  free(c);
}
