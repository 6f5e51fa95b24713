/*
 * push.c — the push path: a `push` in, one `pushed` out, only after the durable commit.
 *
 *   loop thread                                  writer thread (psl_log.h)
 *   psl__push_handle:
 *     check each event (shape, authority),
 *     stamp by/dev from the token,
 *     one psl_append_req_t for the allowed ones ──▶ group commit with every other
 *                                                   connection's requests, fsync
 *                                               ◀── psl__push_done: append to srv's done
 *   psl__push_drain (on srv->wake):                 list, uv_async_send (no lws here)
 *     merge results in the push's order,
 *     queue `pushed` (or `error` for a failed commit)
 *
 * Results keep the push's order.  Per event, in this order:
 *   forbidden  psl_access_may_push refuses: answered here, never sent to the log.  For a
 *              caseworker the stream's territory is where the participant is now: the
 *              `terr` of the stream's last stored event (psl_log_stream_last), or of the
 *              event of this push allowed before it — never the pushed event's own `terr`,
 *              which the client chooses;
 *   valid      psl_domain_validate accepts it at the version it will have (the client's
 *              `expect` when given, else the stream's version plus the events of this push
 *              before it): sent to the log, which answers {seq, ver}, dup or conflict;
 *   invalid    sent to the log as a *probe*, with expect = PSL_PUSH_NEVER (a version no
 *              stream reaches), so that it is never stored but the log, the one authority on
 *              ids and versions, says whether it is a retry of a stored event (dup: answered
 *              with the original seq and ver, as PROTOCOL-v1 wants "forever") or, when the
 *              client's `expect` does not hold, a conflict; otherwise it is answered invalid.
 *              (A retried participant.referred finds its stream existing and fails the
 *              first-event rule: only the log can tell it is a dup.)
 * A push whose events are all forbidden is answered at once.
 *
 * A connection that closes while its pushes are pending is kept as a zombie (conn.c) until
 * they complete: its principal (by, dev) is still pointed to by the events being stored.
 *
 * Ownership: a psl__push_t owns the frame bytes (every psl_str_t of the decoded events points
 * into them), the decoded message, and its result arrays, from psl__push_handle to its answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "psl_domain.h"
#include "psl_say.h"

/* Expect of a probe: a version no stream reaches (a push holds at most PSL_MAX_PUSH_EVENTS
 * events, a stream gets one version per event), so the log never stores it. */
#define PSL_PUSH_NEVER INT64_MAX

typedef struct push_slot_s {
  size_t index;   /* the push's event */
  int probe;      /* failed validation: sent with expect = PSL_PUSH_NEVER */
  int64_t expect; /* the client's expect (probes) */
} push_slot_t;

struct psl__push_s {
  psl_append_req_t req; /* req.data points back here */
  psl__conn_t *conn;
  psl__push_t *done_next;
  int has_id;
  uint64_t id;
  uint8_t *frame;
  size_t frame_len;
  psl_msg_t msg;                 /* decoded from frame; owns the events array */
  psl_push_result_t *results;    /* msg.u.push.n, in the push's order */
  psl_event_t *log_events;       /* the events handed to the log (valid ones and probes) */
  psl_push_result_t *log_results;
  struct push_slot_s *slots;     /* what log_events[k] is */
  psl_diag_t *diags;             /* why each invalid event is (results[i].msg points here) */
  size_t n_log;
  uint64_t start_ns;
};

static void push_free(psl__push_t *p) {
  if (!p)
    return;
  psl_msg_free(&p->msg);
  free(p->frame);
  free(p->results);
  free(p->log_events);
  free(p->log_results);
  free(p->slots);
  free(p->diags);
  free(p);
}

/* ---- Checks of one event before it may go to the log. */

/* The version each stream of a push will have reached when its turn comes: the log's version
 * plus the events of this push allowed before it (DOMAIN.md's first-event rules depend on
 * it).  A small open-addressing table: a push has at most PSL_MAX_PUSH_EVENTS streams. */
typedef struct {
  psl_str_t stream; /* ptr NULL: empty slot */
  uint64_t ver;
  /* Caseworkers: the stream's territory (len 0: a new stream), once read. */
  int terr_known;
  size_t terr_len;
  char terr[PSL_MAX_TERR];
} push_ver_t;

typedef struct {
  push_ver_t *slots;
  size_t cap; /* a power of two, >= 2 x the events of the push */
} push_vers_t;

static uint64_t push_hash(psl_str_t s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < s.len; i++)
    h = (h ^ (uint8_t)s.ptr[i]) * 1099511628211ull;
  return h;
}

static int push_vers_init(push_vers_t *v, size_t n) {
  v->cap = 8;
  while (v->cap < 2 * n)
    v->cap *= 2;
  v->slots = calloc(v->cap, sizeof *v->slots);
  return v->slots ? 0 : PSL_ENOMEM;
}

/* The slot of stream, reading its version from the log the first time. */
static push_ver_t *push_vers_get(push_vers_t *v, psl_log_t *log, psl_str_t stream) {
  size_t i = (size_t)push_hash(stream) & (v->cap - 1);
  while (v->slots[i].stream.ptr) {
    push_ver_t *e = &v->slots[i];
    if (e->stream.len == stream.len && memcmp(e->stream.ptr, stream.ptr, stream.len) == 0)
      return e;
    i = (i + 1) & (v->cap - 1);
  }
  uint64_t ver = 0;
  if (psl_log_stream_version(log, stream.ptr, stream.len, &ver) != 0)
    ver = 0; /* a malformed stream name: psl_domain_validate names the problem */
  v->slots[i].stream = stream;
  v->slots[i].ver = ver;
  return &v->slots[i];
}

typedef struct {
  char terr[PSL_MAX_TERR + 1];
  size_t len;
  int err;
} push_stream_terr_t;

static int push_last_terr_cb(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                             size_t len) {
  (void)seq;
  (void)hash;
  push_stream_terr_t *a = arg;
  psl_event_t ev;
  if (psl_event_decode_stored(canon, len, &ev, NULL) != 0 || ev.terr.len > PSL_MAX_TERR) {
    a->err = PSL_ECORRUPT;
    return 1;
  }
  memcpy(a->terr, ev.terr.ptr, ev.terr.len);
  a->len = ev.terr.len;
  return 0;
}

/* The territory a stream is in now: that of its last event (a transfer's own terr is the new
 * one), one read of the stream index.  len 0 for a stream that does not exist. */
static int push_stream_terr(psl_log_t *log, psl_str_t stream, push_stream_terr_t *out) {
  memset(out, 0, sizeof *out);
  int rc = psl_log_stream_last(log, stream.ptr, stream.len, push_last_terr_cb, out);
  return rc ? rc : out->err;
}

/* May this principal push ev, on the stream whose slot is ver?  0, or PSL_EFORBIDDEN with
 * *why. */
static int push_authorize(psl__conn_t *c, const psl_event_t *ev, push_ver_t *ver,
                          const char **why) {
  psl_str_t stream_terr = {NULL, 0};
  if (c->principal.role == PSL_ROLE_CASEWORKER) {
    if (!ver->terr_known) {
      push_stream_terr_t cur;
      if (push_stream_terr(c->srv->log, ev->stream, &cur) != 0) {
        *why = "could not read the stream's territory";
        return PSL_EFORBIDDEN;
      }
      memcpy(ver->terr, cur.terr, cur.len);
      ver->terr_len = cur.len;
      ver->terr_known = 1;
    }
    stream_terr.ptr = ver->terr;
    stream_terr.len = ver->terr_len;
  }
  *why = NULL;
  if (psl_access_may_push(&c->principal, ev, stream_terr, why) != 0) {
    if (!*why)
      *why = "not allowed for this token";
    return PSL_EFORBIDDEN;
  }
  return 0;
}

/* ---- Answering. */

/* The result of log event k, in the push's order.  A probe keeps the log's dup, or its
 * conflict when the client's own expect does not hold; else it is the invalid it was. */
static void push_merge(psl__push_t *p, size_t k) {
  const push_slot_t *slot = &p->slots[k];
  const psl_push_result_t *r = &p->log_results[k];
  psl_push_result_t *out = &p->results[slot->index];
  if (!slot->probe) {
    *out = *r;
    return;
  }
  if (r->err == 0 && r->dup) {
    *out = *r;
    return;
  }
  if (r->err == PSL_ECONFLICT && slot->expect >= 0 && r->ver != (uint64_t)slot->expect) {
    *out = *r;
    return;
  }
  if (r->err == 0)
    psl_say(PSL_SAY_ERROR, "conn=%llu push id=%llu: a probe was stored at seq %llu",
            (unsigned long long)p->conn->cid, (unsigned long long)p->id,
            (unsigned long long)r->seq);
  memset(out, 0, sizeof *out);
  out->err = PSL_EINVALID;
  out->msg = psl_str(p->diags[slot->index].msg);
}

static void push_answer(psl__push_t *p) {
  psl__conn_t *c = p->conn;
  psl__server_t *srv = c->srv;
  size_t n = p->msg.u.push.n;
  srv->metrics.pushes_total++;
  psl_metrics_push_latency(&srv->metrics, (double)(psl__now_ns() - p->start_ns) / 1e9);
  if (p->n_log > 0 && p->req.err != 0) {
    int err = p->req.err;
    if (err == PSL_EUNAVAILABLE || err == PSL_EIO) {
      srv->log_writable = 0;
      snprintf(srv->log_unwritable_reason, sizeof srv->log_unwritable_reason, "%s",
               psl_strerror(err));
    }
    srv->metrics.events_refused_total += n;
    if (c->state != PSL_CONN_ZOMBIE)
      psl__conn_error(c, p->has_id, p->id, err, psl_strerror(err));
    return;
  }
  if (p->n_log > 0)
    srv->log_writable = 1;
  for (size_t k = 0; k < p->n_log; k++)
    push_merge(p, k);
  for (size_t i = 0; i < n; i++) {
    if (p->results[i].err)
      srv->metrics.events_refused_total++;
    else if (p->results[i].dup)
      srv->metrics.events_duplicate_total++;
    else
      srv->metrics.events_appended_total++;
  }
  if (c->state == PSL_CONN_ZOMBIE)
    return; /* stored; the answer has nowhere to go */
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_PUSHED;
  m.has_id = p->has_id;
  m.id = p->id;
  m.u.pushed.results = p->results;
  m.u.pushed.n = n;
  if (psl__conn_send(c, &m) != 0)
    psl__conn_fail(c, p->has_id, p->id, PSL_ENOMEM, NULL, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
  psl_say(PSL_SAY_DEBUG, "conn=%llu pushed id=%llu events=%zu to_log=%zu",
          (unsigned long long)c->cid, (unsigned long long)p->id, n, p->n_log);
}

void psl__push_done(psl_append_req_t *req) {
  psl__push_t *p = req->data;
  psl__server_t *srv = p->conn->srv; /* the conn outlives its pending pushes */
  p->done_next = NULL;
  pthread_mutex_lock(&srv->done_mu);
  if (srv->done_last)
    srv->done_last->done_next = p;
  else
    srv->done_first = p;
  srv->done_last = p;
  pthread_mutex_unlock(&srv->done_mu);
  uv_async_send(&srv->wake);
}

void psl__push_drain(psl__server_t *srv) {
  pthread_mutex_lock(&srv->done_mu);
  psl__push_t *p = srv->done_first;
  srv->done_first = srv->done_last = NULL;
  pthread_mutex_unlock(&srv->done_mu);
  while (p) {
    psl__push_t *next = p->done_next;
    psl__conn_t *c = p->conn;
    size_t bytes = p->frame_len;
    push_answer(p);
    push_free(p);
    psl__conn_push_finished(c, bytes); /* may free a zombie conn: last */
    p = next;
  }
}

void psl__push_handle(psl__conn_t *c, uint8_t *frame, size_t len, psl_msg_t *msg) {
  psl__server_t *srv = c->srv;
  size_t n = msg->u.push.n;
  psl__push_t *p = calloc(1, sizeof *p);
  if (!p) {
    int has_id = msg->has_id;
    uint64_t id = msg->id;
    psl_msg_free(msg);
    free(frame);
    psl__conn_error(c, has_id, id, PSL_ENOMEM, NULL);
    return;
  }
  p->conn = c;
  p->has_id = msg->has_id;
  p->id = msg->id;
  p->frame = frame;
  p->frame_len = len;
  p->msg = *msg; /* takes the events array */
  p->start_ns = psl__now_ns();
  size_t cap = n ? n : 1;
  p->results = calloc(cap, sizeof *p->results);
  p->log_events = calloc(cap, sizeof *p->log_events);
  p->log_results = calloc(cap, sizeof *p->log_results);
  p->slots = calloc(cap, sizeof *p->slots);
  if (!p->results || !p->log_events || !p->log_results || !p->slots) {
    psl__conn_error(c, p->has_id, p->id, PSL_ENOMEM, NULL);
    push_free(p);
    return;
  }
  push_vers_t vers;
  if (push_vers_init(&vers, n) != 0) {
    psl__conn_error(c, p->has_id, p->id, PSL_ENOMEM, NULL);
    push_free(p);
    return;
  }
  psl_str_t by = psl_str(c->principal.name), dev = psl_str(c->principal.device);
  for (size_t i = 0; i < n; i++) {
    psl_event_t *ev = &p->msg.u.push.events[i];
    const char *why = NULL;
    push_ver_t *ver = push_vers_get(&vers, srv->log, ev->stream);
    if (push_authorize(c, ev, ver, &why) != 0) {
      p->results[i].err = PSL_EFORBIDDEN;
      p->results[i].msg = psl_str(why);
      continue;
    }
    /* Validate at the version the event will have: the client's `expect` when given (the
     * log enforces it), else the stream's current one plus this push's events before it. */
    uint64_t at_ver = ev->expect >= 0 ? (uint64_t)ev->expect : ver->ver;
    psl_diag_t d;
    d.msg[0] = '\0';
    push_slot_t *slot = &p->slots[p->n_log];
    slot->index = i;
    slot->expect = ev->expect;
    slot->probe = psl_domain_validate(ev, at_ver, &d) != 0;
    if (slot->probe) {
      if (!p->diags && !(p->diags = calloc(n, sizeof *p->diags))) {
        free(vers.slots);
        psl__conn_error(c, p->has_id, p->id, PSL_ENOMEM, NULL);
        push_free(p);
        return;
      }
      if (!d.msg[0])
        snprintf(d.msg, sizeof d.msg, "%s", psl_strerror(PSL_EINVALID));
      p->diags[i] = d;
    } else {
      ver->ver = at_ver + 1; /* the next event of this stream in the push comes after ev */
      if (ev->terr.len <= PSL_MAX_TERR) { /* and finds the stream where ev leaves it */
        memcpy(ver->terr, ev->terr.ptr, ev->terr.len);
        ver->terr_len = ev->terr.len;
        ver->terr_known = 1;
      }
    }
    /* The server, not the client, says who wrote it and from which device. */
    ev->by = by;
    ev->dev = dev;
    p->log_events[p->n_log] = *ev;
    if (slot->probe)
      p->log_events[p->n_log].expect = PSL_PUSH_NEVER;
    p->n_log++;
  }
  free(vers.slots);
  if (p->n_log == 0) {
    push_answer(p);
    push_free(p);
    return;
  }
  p->req.events = p->log_events;
  p->req.n = p->n_log;
  p->req.results = p->log_results;
  p->req.done = psl__push_done;
  p->req.data = p;
  c->pending_pushes++;
  c->pending_bytes += len;
  int rc = psl_log_submit(srv->log, &p->req);
  if (rc != 0) {
    c->pending_pushes--;
    c->pending_bytes -= len;
    psl__conn_error(c, p->has_id, p->id, rc == PSL_ECLOSED ? PSL_ECLOSED : rc,
                    "the log is not taking writes");
    push_free(p);
  }
}
