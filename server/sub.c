/*
 * sub.c — subscriptions: catch-up then live, by one mechanism.
 *
 * A subscription never holds events in memory.  It keeps `sent`, the last seq covered by a
 * chunk already queued, and when its connection is writable, its send queue short and fewer
 * than `window` of its chunks un-acked, it reads the next chunk from the log:
 * psl_log_read(after = sent, filter, PSL_CHUNK_BYTES).  Catch-up and live differ only in where
 * the head is: a commit moves srv->head and wakes the connections whose live subscriptions
 * wait (srv->waiters).  A slow subscriber thus simply reads the log later: it never holds
 * memory for the others and never slows the writer.  Each event goes out once, in seq order,
 * because `sent` only moves forward and chunks go out in the order they were read.
 *
 * Filters: the territories asked for must all be readable by the token (else `forbidden`);
 * a caseworker who asks for none gets theirs; a stream filter is passed as it is and combined
 * with the territory filter (both must select; the log reads the stream index then).  As the
 * last line of defence, every event for a caseworker's subscription is checked against their
 * territories before it goes into a chunk.
 *
 * Transfers: a participant.transferred into a territory the sub selects stops the chunk's
 * read; the participant's earlier events that the sub's territories did not select are added
 * (read through the stream index), then the transfer itself (sub_add_history): "subscribers of
 * the new territory receive that participant's whole history" (PROTOCOL-v1).  These history
 * events have seqs below the chunk's `last`, the one exception to seq order.
 *
 * Personal data: a stored event's `pii` is sealed (server/keys.c).  For a reader who may read
 * it (psl_access_may_read_pii: not an auditor) an event that carries pii is decoded, its pii
 * opened — or {erased: true} once its participant is erased — and the event re-encoded
 * before it goes into the chunk (sub_add_record); every other event, and every event for an
 * auditor, is copied as stored.  The history a transfer brings goes the same way: the new
 * territory's readers may read the participant now.
 *
 * Access log: a coordinator's, auditor's or admin's subscription is logged when it starts
 * (psl_access_log.h): who, the territories and streams it selects, from where.
 *
 * `last` of a chunk is psl_log_read's *last: the last seq the read covered, so a filtered
 * client advances its checkpoint over events it does not see.  During catch-up a read that
 * found nothing to send still goes out as an empty chunk (it advances the client's checkpoint
 * to the head); live, such a read is not sent (it would be one frame per foreign commit).
 *
 * State machine (CATCHING_UP and LIVE are `caught_up` 0 and 1; ENDED frees the struct; the
 * error state is ENDED after an `error` answer):
 *
 *   `sub` ──checks fail (reset, forbidden, invalid, too_big)──▶ error answered, no sub
 *     │ psl__sub_handle
 *     ▼
 *   CATCHING_UP ──psl__sub_fill: chunk read, sent < head──▶ CATCHING_UP
 *     │ sent >= head < fresh (answered, not yet readable): waits for the commit, as LIVE
 *     │ sent >= head >= fresh: `caught_up` queued (psl__sub_fill)
 *     ├── not live ─────────────────────────────────────▶ ENDED
 *     ▼ live
 *   LIVE ──psl__sub_fill: chunk read (window open, sent < head)──▶ LIVE
 *     │ sent >= head: conn joins srv->waiters (psl__conn_writable);
 *     │ a commit wakes it (psl__sub_wake_waiters)
 *   any ──unsub, read error, conn closes/fails, revocation, stop──▶ ENDED
 *
 *   event                       function               effect
 *   sub                         psl__sub_handle        create (sent = from)
 *   writable, queue short       psl__sub_fill          one chunk, maybe caught_up
 *   ack {sub, upto}             psl__sub_ack           frees window slots
 *   unsub {sub}                 psl__sub_unsub         ENDED
 *   commit                      psl__sub_wake_waiters  writable asked for waiters
 *   conn ends                   psl__sub_free_all      ENDED
 */
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "psl_access_log.h"
#include "psl_keys.h"
#include "psl_say.h"

/* The first byte of a canonical event that carries `pii`: a fixmap of 12 entries (11
 * without), proto/PROTOCOL.md §5.1.  Lets the events without pii skip the decode. */
#define SUB_CANON_WITH_PII 0x8c

struct psl__sub_s {
  psl__sub_t *next;
  uint64_t id;
  uint64_t sent;  /* last seq covered by a queued chunk */
  uint64_t acked; /* highest `upto` the client acknowledged */
  uint64_t fresh; /* the log's answered head at `sub`: `caught_up` not before it is read */
  int live;
  int caught_up;  /* `caught_up` queued: LIVE (or about to end) */
  int check_terr; /* caseworker: check every event's territory */
  int reveal;     /* the token reads pii opened (psl_access_may_read_pii) */
  uint32_t window;
  psl_filter_t filter;
  psl_str_t *names; /* filter.terr then filter.streams, pointing into `chars` */
  char *chars;
  /* `last` of the chunks not yet acked, oldest first (a ring of `window` slots). */
  uint32_t nflight, flight_head;
  uint64_t flight[];
};

/* ---- Lifecycle. */

static void sub_free(psl__sub_t *s) {
  if (!s)
    return;
  free(s->names);
  free(s->chars);
  free(s);
}

static void sub_end(psl__conn_t *c, psl__sub_t *s) {
  psl__sub_t **pp = &c->subs;
  while (*pp && *pp != s)
    pp = &(*pp)->next;
  if (*pp)
    *pp = s->next;
  if (c->sub_next == s)
    c->sub_next = s->next;
  c->nsubs--;
  c->srv->metrics.subscribers--;
  psl_say(PSL_SAY_DEBUG, "conn=%llu sub=%llu ended sent=%llu", (unsigned long long)c->cid,
          (unsigned long long)s->id, (unsigned long long)s->sent);
  sub_free(s);
}

void psl__sub_free_all(psl__conn_t *c) {
  while (c->subs)
    sub_end(c, c->subs);
}

static psl__sub_t *sub_find(psl__conn_t *c, uint64_t id) {
  for (psl__sub_t *s = c->subs; s; s = s->next)
    if (s->id == id)
      return s;
  return NULL;
}

/* Copy the filter strings (they point into the request's frame, which is freed after it). */
static int sub_set_filter(psl__sub_t *s, const psl_str_t *terr, size_t nterr,
                          const psl_str_t *streams, size_t nstreams) {
  size_t n = nterr + nstreams, bytes = 0;
  if (n == 0)
    return 0;
  for (size_t i = 0; i < nterr; i++)
    bytes += terr[i].len;
  for (size_t i = 0; i < nstreams; i++)
    bytes += streams[i].len;
  s->names = calloc(n, sizeof *s->names);
  s->chars = malloc(bytes ? bytes : 1);
  if (!s->names || !s->chars)
    return PSL_ENOMEM;
  char *p = s->chars;
  for (size_t i = 0; i < n; i++) {
    psl_str_t src = i < nterr ? terr[i] : streams[i - nterr];
    if (src.len)
      memcpy(p, src.ptr, src.len);
    s->names[i].ptr = p;
    s->names[i].len = src.len;
    p += src.len;
  }
  s->filter.terr = nterr ? s->names : NULL;
  s->filter.nterr = nterr;
  s->filter.streams = nstreams ? s->names + nterr : NULL;
  s->filter.nstreams = nstreams;
  return 0;
}

/* The access log's line of a new subscription: its selection, never more. */
static void sub_log_access(psl__conn_t *c, const psl__sub_t *s) {
  char terr[PSL_MAX_FILTER * (PSL_MAX_TERR + 1) + 2], streams[PSL_ALOG_LINE_MAX / 2];
  size_t t = 0, n = 0;
  if (!c->srv->alog || !psl_alog_wants(&c->principal))
    return;
  terr[0] = streams[0] = '\0';
  for (size_t i = 0; i < s->filter.nterr; i++)
    t += (size_t)snprintf(terr + t, sizeof terr - t, "%s%.*s", i ? "," : "",
                          (int)s->filter.terr[i].len, s->filter.terr[i].ptr);
  for (size_t i = 0; i < s->filter.nstreams && n < sizeof streams - 1; i++)
    n += (size_t)snprintf(streams + n, sizeof streams - n, "%s%.*s", i ? "," : "",
                          (int)s->filter.streams[i].len, s->filter.streams[i].ptr);
  psl_alog_read(c->srv->alog, &c->principal, "sub", "terr=%s streams=%s from=%llu live=%d",
                t ? terr : "*", n ? streams : "*", (unsigned long long)s->sent, s->live);
}

void psl__sub_handle(psl__conn_t *c, const psl_msg_t *msg) {
  psl__server_t *srv = c->srv;
  const psl_principal_t *p = &c->principal;
  if (!msg->has_id) {
    psl__conn_error(c, 0, 0, PSL_EINVALID, "id: a sub needs an id (acks name it)");
    return;
  }
  uint64_t id = msg->id;
  uint64_t window = msg->u.sub.window;
  if (window == 0) {
    psl__conn_error(c, 1, id, PSL_EINVALID, "window: must be at least 1");
    return;
  }
  if (window > PSL_MAX_SUB_WINDOW)
    window = PSL_MAX_SUB_WINDOW; /* fewer chunks in flight than asked is still correct */
  if (sub_find(c, id)) {
    psl__conn_error(c, 1, id, PSL_EINVALID, "id: a subscription with this id is open");
    return;
  }
  if (c->nsubs >= PSL_MAX_SUBS_PER_CONN) {
    psl__conn_error(c, 1, id, PSL_ETOO_BIG, "too many subscriptions on this connection");
    return;
  }
  /* The log's own answered head, not srv->head, which may lag a commit whose wake-up is on
   * its way (and only that wake-up may move srv->head: it also wakes the waiting
   * subscriptions), nor psl_log_head, which lags what `pushed` already answered. */
  uint64_t head = psl_log_answered(srv->log, NULL);
  if (msg->u.sub.from > head) {
    psl__conn_error(c, 1, id, PSL_ERESET, "from: beyond this log's head; sync from 0");
    return;
  }
  for (size_t i = 0; i < msg->u.sub.nterr; i++) {
    if (psl_access_may_read(p, msg->u.sub.terr[i]) != 0) {
      psl__conn_error(c, 1, id, PSL_EFORBIDDEN, "terr: a territory this token may not read");
      return;
    }
  }
  /* A caseworker who names no territory gets theirs. */
  psl_str_t own[PSL_MAX_TOKEN_TERR];
  const psl_str_t *terr = msg->u.sub.terr;
  size_t nterr = msg->u.sub.nterr;
  int check_terr = p->role == PSL_ROLE_CASEWORKER;
  if (check_terr && nterr == 0) {
    for (size_t i = 0; i < p->nterr && i < PSL_MAX_TOKEN_TERR; i++)
      own[i] = psl_str(p->terr[i]);
    terr = own;
    nterr = p->nterr < PSL_MAX_TOKEN_TERR ? p->nterr : PSL_MAX_TOKEN_TERR;
  }
  psl__sub_t *s = calloc(1, sizeof *s + window * sizeof s->flight[0]);
  if (!s || sub_set_filter(s, terr, nterr, msg->u.sub.streams, msg->u.sub.nstreams) != 0) {
    sub_free(s);
    psl__conn_error(c, 1, id, PSL_ENOMEM, NULL);
    return;
  }
  s->id = id;
  s->sent = s->acked = msg->u.sub.from;
  /* Whatever was answered before this `sub` is delivered before its `caught_up`: a client
   * that pushed, got `pushed`, then syncs, finds its own events. */
  s->fresh = head;
  if (head > psl_log_head(srv->log, NULL))
    psl_log_commit_soon(srv->log);
  s->live = msg->u.sub.live;
  s->window = (uint32_t)window;
  s->check_terr = check_terr;
  s->reveal = srv->keys && psl_access_may_read_pii(p) == 0;
  /* Append: older subscriptions keep their turn. */
  psl__sub_t **pp = &c->subs;
  while (*pp)
    pp = &(*pp)->next;
  *pp = s;
  c->nsubs++;
  srv->metrics.subscribers++;
  psl_say(PSL_SAY_INFO, "conn=%llu sub=%llu from=%llu live=%d window=%u terr=%zu streams=%zu",
          (unsigned long long)c->cid, (unsigned long long)id,
          (unsigned long long)msg->u.sub.from, s->live, s->window, nterr,
          msg->u.sub.nstreams);
  sub_log_access(c, s);
  psl__conn_want_write(c);
}

void psl__sub_ack(psl__conn_t *c, uint64_t id, uint64_t upto) {
  psl__sub_t *s = sub_find(c, id);
  if (!s)
    return; /* a sub that ended (e.g. after caught_up): nothing to free */
  if (upto > s->sent)
    upto = s->sent; /* an ack past what was sent must not open the window in advance */
  if (upto > s->acked)
    s->acked = upto;
  int freed = 0;
  while (s->nflight > 0 && s->flight[s->flight_head] <= s->acked) {
    s->flight_head = (s->flight_head + 1) % s->window;
    s->nflight--;
    freed = 1;
  }
  if (freed)
    psl__conn_want_write(c);
}

void psl__sub_unsub(psl__conn_t *c, uint64_t id) {
  psl__sub_t *s = sub_find(c, id);
  if (s)
    sub_end(c, s);
}

/* ---- Reading chunks. */

static int sub_ready_one(const psl__sub_t *s, uint64_t head) {
  if (!s->caught_up && s->sent >= head)
    return head >= s->fresh; /* only `caught_up` to send: needs no window */
  return s->sent < head && s->nflight < s->window;
}

int psl__sub_ready(const psl__conn_t *c) {
  for (const psl__sub_t *s = c->subs; s; s = s->next)
    if (sub_ready_one(s, c->srv->head))
      return 1;
  return 0;
}

int psl__sub_waits_for_commit(const psl__conn_t *c) {
  for (const psl__sub_t *s = c->subs; s; s = s->next) {
    if (s->live && s->caught_up && s->sent >= c->srv->head)
      return 1;
    if (!s->caught_up && s->sent >= c->srv->head && c->srv->head < s->fresh)
      return 1; /* its `caught_up` waits for the commit of what was answered */
  }
  return 0;
}

typedef struct {
  psl__conn_t *c;
  psl__sub_t *s;
  psl_buf_t *out;
  psl_chunk_t ck;
  int err;
  size_t skipped;
  /* A transfer into a territory of this sub, held back until the participant's history is
   * added before it: hash (32) ‖ canonical record, and its seq (0: none). */
  psl_buf_t held;
  uint64_t held_seq;
  /* Scratch for events re-encoded with their pii opened (sub_add_record). */
  psl_buf_t pii, canon;
} sub_chunk_t;

/* Add one stored record to the chunk: copied as stored (no pii, or a reader who gets it
 * sealed), or re-encoded with its pii opened, or {erased: true}. */
static int sub_add_record(sub_chunk_t *k, const uint8_t *canon, size_t len,
                          const uint8_t *hash) {
  if (!k->s->reveal || len == 0 || canon[0] != SUB_CANON_WITH_PII)
    return psl_chunk_add(k->out, &k->ck, canon, len, hash);
  psl_event_t ev;
  psl_pii_view_t view;
  if (psl_event_decode_stored(canon, len, &ev, NULL) != 0)
    return PSL_ECORRUPT;
  if (!psl_pii_is_sealed(ev.pii))
    return psl_chunk_add(k->out, &k->ck, canon, len, hash);
  psl_buf_reset(&k->pii);
  psl_buf_reset(&k->canon);
  int rc = psl_keys_reveal(k->c->srv->keys, &ev, &k->pii, &view);
  if (rc)
    return rc;
  ev.pii.ptr = psl_buf_data(&k->pii);
  ev.pii.len = k->pii.len;
  if ((rc = psl_event_encode_canonical(&k->canon, &ev)) != 0)
    return rc;
  return psl_chunk_add(k->out, &k->ck, psl_buf_data(&k->canon), k->canon.len, hash);
}

static int sub_terr_listed(const psl__sub_t *s, psl_str_t terr) {
  for (size_t i = 0; i < s->filter.nterr; i++)
    if (s->filter.terr[i].len == terr.len && memcmp(s->filter.terr[i].ptr, terr.ptr, terr.len) == 0)
      return 1;
  return 0;
}

static int sub_chunk_add(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                         size_t len) {
  sub_chunk_t *k = arg;
  const psl__sub_t *s = k->s;
  if (s->check_terr || s->filter.nterr > 0) {
    psl_event_t ev;
    if (psl_event_decode_stored(canon, len, &ev, NULL) != 0) {
      k->err = PSL_ECORRUPT;
      return 1;
    }
    if (s->check_terr && psl_access_may_read(&k->c->principal, ev.terr) != 0) {
      k->skipped++;
      return 0;
    }
    if (s->filter.nterr > 0 && psl_str_eq(ev.type, "participant.transferred") &&
        sub_terr_listed(s, ev.terr)) {
      /* Stop here (the read counts it as covered); sub_read_chunk adds the history, then it. */
      int rc = psl_buf_append(&k->held, hash, PSL_HASH_BYTES);
      if (rc == 0)
        rc = psl_buf_append(&k->held, canon, len);
      if (rc != 0)
        k->err = rc;
      k->held_seq = seq;
      return 1;
    }
  }
  int rc = sub_add_record(k, canon, len, hash);
  if (rc != 0) {
    k->err = rc;
    return 1;
  }
  return 0;
}

/* The history of a transferred participant, for a sub of its new territory: the events of
 * its stream before the transfer that the sub's territories did not select (it has the
 * others already, or will have them from its `from`). */
typedef struct {
  sub_chunk_t *k;
  uint64_t before;
} sub_history_t;

static int sub_history_add(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                           size_t len) {
  sub_history_t *h = arg;
  if (seq >= h->before)
    return 1;
  psl_event_t ev;
  if (psl_event_decode_stored(canon, len, &ev, NULL) != 0) {
    h->k->err = PSL_ECORRUPT;
    return 1;
  }
  if (sub_terr_listed(h->k->s, ev.terr))
    return 0;
  int rc = sub_add_record(h->k, canon, len, hash);
  if (rc != 0) {
    h->k->err = rc;
    return 1;
  }
  return 0;
}

/* PROTOCOL-v1: "when a participant is transferred to another territory, subscribers of the
 * new territory receive that participant's whole history".  The history goes in the same
 * chunk, right before the transfer; its seqs are below the chunk's `last`: a client applies
 * them (by id, idempotently) without moving its checkpoint back. */
static int sub_add_history(psl__conn_t *c, sub_chunk_t *k) {
  const uint8_t *rec = psl_buf_data(&k->held);
  const uint8_t *canon = rec + PSL_HASH_BYTES;
  size_t len = k->held.len - PSL_HASH_BYTES;
  psl_event_t ev;
  if (psl_event_decode_stored(canon, len, &ev, NULL) != 0)
    return PSL_ECORRUPT;
  psl_filter_t f;
  memset(&f, 0, sizeof f);
  f.streams = &ev.stream;
  f.nstreams = 1;
  sub_history_t h = {k, k->held_seq};
  for (uint64_t after = 0; after < k->held_seq && !k->err;) {
    uint64_t last = after;
    int rc = psl_log_read(c->srv->log, after, &f, PSL_CHUNK_BYTES, 0, sub_history_add, &h,
                          &last);
    if (rc != 0)
      return rc;
    if (last <= after)
      break;
    after = last;
  }
  if (k->err)
    return k->err;
  return sub_add_record(k, canon, len, rec);
}

static psl__frame_t *sub_frame_new(void) {
  psl__frame_t *f = calloc(1, sizeof *f);
  if (f)
    psl_buf_init(&f->buf, LWS_PRE);
  return f;
}

static void sub_frame_free(psl__frame_t *f) {
  if (f) {
    psl_buf_free(&f->buf);
    free(f);
  }
}

/* Read and queue the next chunk of s.  0, or PSL_E* (the sub is then to be ended). */
static int sub_read_chunk(psl__conn_t *c, psl__sub_t *s) {
  psl__server_t *srv = c->srv;
  psl__frame_t *f = sub_frame_new();
  if (!f)
    return PSL_ENOMEM;
  sub_chunk_t k;
  memset(&k, 0, sizeof k);
  k.c = c;
  k.s = s;
  k.out = &f->buf;
  psl_buf_init(&k.held, 0);
  psl_buf_init(&k.pii, 0);
  psl_buf_init(&k.canon, 0);
  int rc = psl_chunk_begin(&f->buf, s->id, &k.ck);
  uint64_t last = s->sent;
  const psl_filter_t *filter = (s->filter.nterr || s->filter.nstreams) ? &s->filter : NULL;
  if (rc == 0)
    rc = psl_log_read(srv->log, s->sent, filter, PSL_CHUNK_BYTES, PSL_MAX_CHUNK_EVENTS,
                      sub_chunk_add, &k, &last);
  if (rc == 0)
    rc = k.err;
  if (rc == 0 && k.held_seq) {
    rc = sub_add_history(c, &k);
    last = k.held_seq;
  }
  psl_buf_free(&k.held);
  psl_buf_free(&k.pii);
  psl_buf_free(&k.canon);
  if (rc != 0) {
    sub_frame_free(f);
    return rc;
  }
  if (k.skipped)
    psl_say(PSL_SAY_WARN, "conn=%llu sub=%llu held back %zu events of other territories",
            (unsigned long long)c->cid, (unsigned long long)s->id, k.skipped);
  psl_chunk_end(&f->buf, &k.ck, last);
  uint64_t before = s->sent;
  if (last > s->sent)
    s->sent = last;
  if (k.ck.n == 0 && (s->caught_up || s->sent == before)) {
    sub_frame_free(f); /* live and nothing for this filter: not worth a frame */
    return 0;
  }
  s->flight[(s->flight_head + s->nflight) % s->window] = s->sent;
  s->nflight++;
  srv->metrics.chunks_sent_total++;
  srv->metrics.events_sent_total += k.ck.n;
  psl__conn_queue(c, f);
  return 0;
}

static int sub_send_caught_up(psl__conn_t *c, psl__sub_t *s) {
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_CAUGHT_UP;
  m.u.caught_up.sub = s->id;
  m.u.caught_up.head = s->sent;
  s->caught_up = 1;
  return psl__conn_send(c, &m);
}

int psl__sub_fill(psl__conn_t *c) {
  uint64_t head = c->srv->head;
  psl__sub_t *start = c->sub_next ? c->sub_next : c->subs, *s = start;
  if (!s)
    return 0;
  do {
    if (sub_ready_one(s, head))
      break;
    s = s->next ? s->next : c->subs;
  } while (s != start);
  if (!sub_ready_one(s, head))
    return 0;
  c->sub_next = s->next; /* next turn starts after s */
  int rc = 0;
  if (s->sent < head && s->nflight < s->window)
    rc = sub_read_chunk(c, s);
  if (rc == 0 && !s->caught_up && s->sent >= head && head >= s->fresh) {
    rc = sub_send_caught_up(c, s);
    if (rc == 0 && !s->live) {
      sub_end(c, s);
      return 1;
    }
  }
  if (rc != 0) {
    psl_say(PSL_SAY_ERROR, "conn=%llu sub=%llu read failed: %s", (unsigned long long)c->cid,
            (unsigned long long)s->id, psl_strerror(rc));
    psl__conn_error(c, 1, s->id, rc, "the subscription could not read the log");
    sub_end(c, s);
  }
  return 1;
}

void psl__sub_wake_waiters(psl__server_t *srv) {
  while (!psl__list_empty(&srv->waiters)) {
    psl__link_t *l = srv->waiters.next;
    psl__conn_t *c = psl__container_of(l, psl__conn_t, wait_link);
    psl__list_remove(l);
    c->waiting = 0;
    psl__conn_want_write(c);
  }
}
