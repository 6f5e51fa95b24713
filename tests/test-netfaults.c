/*
 * test-netfaults.c — a phone that drops: connections cut mid-frame, mid-catch-up, with pushes
 * pending, and between the commit and its `pushed` (the ack lost), against the real
 * passerelled (area `netfaults`).
 *
 * What must hold, each case checking the whole log through a subscription from 0
 * (rel_check_log: seqs gap-free, no id twice, every acknowledged event at its seq):
 *   - a frame cut short stores nothing: pushed again whole, its events are stored anew;
 *   - a push whose answer was lost is answered `dup` with the original seq and ver when
 *     retried, on any connection, as often as it is retried; a retry mixing old and new
 *     events gets dup for the old, stored for the new;
 *   - pushes pending when their connection is cut are each stored whole or not at all, and
 *     their retry says which, without storing anything twice;
 *   - a catch-up cut at any point resumes from the client's checkpoint with nothing missing
 *     and nothing twice, also while others push;
 *   - the server lets go of every cut connection (passerelle_connections comes back) and
 *     goes on serving everyone else.
 * Cuts are abrupt (wsc_cut: RST, no close frame), as when a phone's radio drops.
 */
#include "harness.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "support/rel.h"

/* Events loaded before the catch-up cuts: several chunks of PSL_CHUNK_BYTES. */
#define CATCHUP_EVENTS 20000
/* Cuts of one catch-up, each after a different number of chunks. */
#define CATCHUP_CUTS 5

/* ---- Helpers. */

/* The value of a gauge or counter of /metrics (-1 if absent). */
static long metric(rel_fx_t *f, const char *name) {
  int status = 0;
  char *body = NULL, pat[128];
  REL_REQUIRE(f, srv_http_get(f->srv.port, "/metrics", REL_T_MS, &status, &body, NULL) == 0 &&
                     status == 200,
              "GET /metrics");
  snprintf(pat, sizeof pat, "\n%s ", name);
  const char *p = strstr(body, pat);
  long v = p ? strtol(p + strlen(pat), NULL, 10) : -1;
  free(body);
  return v;
}

/* Wait (at most REL_T_MS) until the server counts `want` open connections. */
static void wait_connections(rel_fx_t *f, long want) {
  long v = -1;
  for (int i = 0; i < REL_T_MS / 10; i++) {
    if ((v = metric(f, "passerelle_connections")) == want)
      return;
    usleep(10000);
  }
  rel_fail(f, __FILE__, __LINE__, "the server still counts %ld connections, expected %ld", v,
           want);
}

/* A masked WebSocket frame header and payload, fin as given (RFC 6455 §5.2), into out. */
static size_t raw_frame(uint8_t *out, int fin, int opcode, const uint8_t *p, size_t n) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t o = 0;
  out[o++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
  if (n < 126) {
    out[o++] = (uint8_t)(0x80 | n);
  } else if (n < 65536) {
    out[o++] = 0x80 | 126;
    out[o++] = (uint8_t)(n >> 8);
    out[o++] = (uint8_t)n;
  } else {
    out[o++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      out[o++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  memcpy(out + o, key, 4);
  o += 4;
  for (size_t i = 0; i < n; i++)
    out[o + i] = p[i] ^ key[i & 3];
  return o + n;
}

static void encode_push(psl_buf_t *b, uint64_t id, const evgen_t *g, size_t n) {
  psl_event_t *evs = calloc(n, sizeof *evs);
  psl_msg_t m;
  CHECK(evs != NULL);
  for (size_t i = 0; i < n; i++)
    evs[i] = g[i].ev;
  tcli_push_msg(&m, id, evs, n);
  psl_buf_init(b, 0);
  CHECK_OK(psl_msg_encode(b, &m));
  free(evs);
}

/* The same events pushed again on c: every one stored anew. */
static void push_stored(rel_fx_t *f, wsc_t *c, uint64_t id, const evgen_t *g, size_t n,
                        rel_model_t *m, const char *what) {
  tcli_result_t *res = calloc(n, sizeof *res);
  char code[32];
  CHECK(res != NULL);
  REL_REQUIRE(f, rel_push(f, c, id, g, n, res, code) == 0, "%s: `%s`", what, code);
  rel_require_stored(f, g, n, res, m);
  free(res);
}

/* ==== cut mid-frame ====================================================================== */

typedef enum { CUT_PAYLOAD, CUT_HEADER, CUT_FRAGMENT, CUT_BIG } cut_kind_t;

static void cut_frame(rel_fx_t *f, cut_kind_t kind, rel_model_t *m, uint64_t *push_id) {
  size_t n = kind == CUT_BIG ? PSL_MAX_PUSH_EVENTS : 30;
  evgen_t *g = calloc(n, sizeof *g);
  psl_buf_t b;
  CHECK(g != NULL);
  rel_gen(g, n, kind == CUT_BIG ? 1000 : 0);
  encode_push(&b, ++*push_id, g, n);
  long before = metric(f, "passerelle_connections");
  wsc_t *c = rel_open(f);
  uint8_t *raw = malloc(b.len + 16);
  CHECK(raw != NULL);
  switch (kind) {
  case CUT_PAYLOAD: /* the header announces it all, half comes */
    REL_REQUIRE(f, wsc_send_partial(c, WSC_OP_BINARY, b.len, psl_buf_data(&b), b.len / 2) == 0,
                "send: %s", wsc_error(c));
    break;
  case CUT_HEADER: { /* two bytes of a 16-bit length header */
    size_t k = raw_frame(raw, 1, WSC_OP_BINARY, psl_buf_data(&b), b.len);
    (void)k;
    REL_REQUIRE(f, wsc_send_raw(c, raw, 3) == 0, "send: %s", wsc_error(c));
    break;
  }
  case CUT_FRAGMENT: { /* a whole first fragment; the continuation never comes */
    size_t k = raw_frame(raw, 0, WSC_OP_BINARY, psl_buf_data(&b), b.len - 7);
    REL_REQUIRE(f, wsc_send_raw(c, raw, k) == 0, "send: %s", wsc_error(c));
    break;
  }
  case CUT_BIG: /* ~1 MiB, 90% of it sent */
    REL_REQUIRE(f, wsc_send_partial(c, WSC_OP_BINARY, b.len, psl_buf_data(&b),
                                    b.len / 10 * 9) == 0,
                "send: %s", wsc_error(c));
    break;
  }
  usleep(50000); /* let the server take what came */
  wsc_cut(c);
  free(raw);
  psl_buf_free(&b);
  wait_connections(f, before);
  /* nothing of it was stored: pushed whole, every event is new */
  c = rel_open(f);
  push_stored(f, c, ++*push_id, g, n, m, "the cut push, pushed again whole");
  wsc_close(c);
  free(g);
}

TEST_T(netfaults, cut_mid_frame_stores_nothing, 120) {
  rel_fx_t f;
  rel_model_t m;
  uint64_t push_id = 0;
  memset(&m, 0, sizeof m);
  rel_fx_init(&f);
  rel_fx_start(&f);
  /* a bystander keeps pushing on its own connection through all the cuts */
  wsc_t *by = rel_open(&f);
  evgen_t g[5];
  for (int k = CUT_PAYLOAD; k <= CUT_BIG; k++) {
    cut_frame(&f, (cut_kind_t)k, &m, &push_id);
    rel_gen(g, 5, 0);
    push_stored(&f, by, ++push_id, g, 5, &m, "the bystander");
  }
  wsc_close(by);
  REL_REQUIRE(&f, rel_check_log(&f, &m) == m.n, "the log holds more than was acknowledged");
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  rel_model_free(&m);
}

/* ==== the ack lost: cut between the commit and `pushed` ================================== */

/* Wait on a live subscription until seq `upto` is delivered; the seqs of ids into seqs. */
static void await_committed(rel_fx_t *f, wsc_t *sub, const evgen_t *g, size_t n,
                            uint64_t *seqs, uint64_t *vers) {
  size_t found = 0;
  char err[1024];
  while (found < n) {
    psl_msg_t msg;
    REL_REQUIRE(f, tcli_expect(sub, PSL_MSG_NONE, REL_T_MS, &msg, err, sizeof err) == 0,
                "live sub: %s (found %zu of %zu)", err, found, n);
    if (msg.t == PSL_MSG_EVENTS) {
      for (size_t i = 0; i < msg.u.events.n; i++)
        for (size_t k = 0; k < n; k++)
          if (memcmp(msg.u.events.events[i].id, g[k].ev.id, PSL_UUID_BYTES) == 0) {
            REL_REQUIRE(f, seqs[k] == 0, "an event delivered twice");
            seqs[k] = msg.u.events.events[i].seq;
            vers[k] = msg.u.events.events[i].ver;
            found++;
          }
      REL_REQUIRE(f, tcli_ack(sub, 1, msg.u.events.last) == 0, "ack");
    }
    psl_msg_free(&msg);
  }
}

TEST_T(netfaults, ack_lost_retry_is_dup_forever, 120) {
  rel_fx_t f;
  rel_model_t m;
  uint64_t push_id = 100;
  char code[32];
  memset(&m, 0, sizeof m);
  rel_fx_init(&f);
  rel_fx_start(&f);
  wsc_t *sub = rel_open(&f);
  REL_REQUIRE(&f, tcli_sub(sub, 1, 0, 1, 8, NULL, NULL) == 0, "sub");
  psl_msg_t cu;
  char err[1024];
  REL_REQUIRE(&f, tcli_expect(sub, PSL_MSG_CAUGHT_UP, REL_T_MS, &cu, err, sizeof err) == 0, "%s",
              err);
  psl_msg_free(&cu);

  enum { N = 40 };
  evgen_t g[N], more[N + 10];
  uint64_t seqs[N] = {0}, vers[N] = {0};
  tcli_result_t res[N + 10];
  rel_gen(g, N, 0);
  wsc_t *c = rel_open(&f);
  rel_send(c, ++push_id, g, N);
  await_committed(&f, sub, g, N, seqs, vers); /* durable: the commit happened */
  wsc_cut(c);                                 /* and the `pushed` is lost with the radio */
  wait_connections(&f, 1);
  for (size_t i = 0; i < N; i++)
    rel_model_add(&m, g[i].ev.id, seqs[i], vers[i]);

  /* the phone retries, on new connections, again and again: dup, original seq and ver */
  for (int attempt = 0; attempt < 3; attempt++) {
    c = rel_open(&f);
    REL_REQUIRE(&f, rel_push(&f, c, ++push_id, g, N, res, code) == 0, "retry: `%s`", code);
    for (size_t i = 0; i < N; i++)
      REL_REQUIRE(&f, res[i].err == 0 && res[i].dup && res[i].seq == seqs[i] &&
                          res[i].ver == vers[i],
                  "retry %d, event %zu: expected dup seq %llu ver %llu, got {err %s dup %d seq "
                  "%llu ver %llu}",
                  attempt, i, (unsigned long long)seqs[i], (unsigned long long)vers[i],
                  res[i].err ? psl_err_code(res[i].err) : "-", res[i].dup,
                  (unsigned long long)res[i].seq, (unsigned long long)res[i].ver);
    wsc_close(c);
  }
  /* a retry that mixes the lost push's events with new ones (an outbox that kept growing) */
  for (size_t i = 0; i < N; i++)
    evgen_copy(&more[i], &g[i]);
  rel_gen(more + N, 10, 0);
  c = rel_open(&f);
  REL_REQUIRE(&f, rel_push(&f, c, ++push_id, more, N + 10, res, code) == 0, "mixed: `%s`", code);
  for (size_t i = 0; i < N; i++)
    REL_REQUIRE(&f, res[i].dup && res[i].seq == seqs[i], "mixed retry, old event %zu", i);
  rel_require_stored(&f, more + N, 10, res + N, &m);
  wsc_close(c);
  wsc_close(sub);
  REL_REQUIRE(&f, rel_check_log(&f, &m) == m.n, "the log holds events stored twice or unknown");

  /* and after a restart: still dup, still the same seqs (not a window: forever) */
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  rel_fx_start(&f);
  c = rel_open(&f);
  REL_REQUIRE(&f, rel_push(&f, c, ++push_id, g, N, res, code) == 0, "after restart: `%s`", code);
  for (size_t i = 0; i < N; i++)
    REL_REQUIRE(&f, res[i].dup && res[i].seq == seqs[i] && res[i].ver == vers[i],
                "after the restart, event %zu is not dup at its seq", i);
  wsc_close(c);
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  rel_model_free(&m);
}

/* ==== pushes pending when the connection is cut ========================================== */

TEST_T(netfaults, cut_with_pushes_pending_each_whole_or_nothing, 120) {
  enum { PUSHES = 12, EVENTS = 150 };
  rel_fx_t f;
  rel_model_t m;
  char code[32];
  memset(&m, 0, sizeof m);
  rel_fx_init(&f);
  rel_fx_start(&f);
  evgen_t *g = calloc((size_t)PUSHES * EVENTS, sizeof *g);
  tcli_result_t *res = calloc(EVENTS, sizeof *res);
  CHECK(g && res);
  size_t kept = 0, lost = 0;
  for (int round = 0; round < 4; round++) {
    wsc_t *c = rel_open(&f);
    for (int p = 0; p < PUSHES; p++) {
      rel_gen(&g[(size_t)p * EVENTS], EVENTS, 300);
      rel_send(c, (uint64_t)p + 1, &g[(size_t)p * EVENTS], EVENTS);
    }
    /* cut at once, or after a moment: some pushes committed, some not, some in between */
    if (round)
      usleep((useconds_t)(round * 3000));
    wsc_cut(c);
    wait_connections(&f, 0);
    c = rel_open(&f);
    for (int p = 0; p < PUSHES; p++) {
      const evgen_t *pg = &g[(size_t)p * EVENTS];
      REL_REQUIRE(&f, rel_push(&f, c, 1000 + (uint64_t)p, pg, EVENTS, res, code) == 0,
                  "retry of push %d: `%s`", p, code);
      int dup = res[0].dup;
      for (size_t i = 0; i < EVENTS; i++) {
        REL_REQUIRE(&f, res[i].err == 0 && res[i].dup == dup,
                    "push %d was stored in part: event 0 %s, event %zu %s", p,
                    dup ? "dup" : "new", i, res[i].dup ? "dup" : res[i].err ? "refused" : "new");
        rel_model_add(&m, pg[i].ev.id, res[i].seq, res[i].ver);
      }
      if (dup)
        kept++;
      else
        lost++;
    }
    wsc_close(c);
  }
  printf("  netfaults: of %d pushes cut while pending, %zu had been stored, %zu not\n",
         4 * PUSHES, kept, lost);
  REL_REQUIRE(&f, rel_check_log(&f, &m) == m.n, "the log holds events stored twice or unknown");
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  free(g);
  free(res);
  rel_model_free(&m);
}

/* ==== cut mid-catch-up, again and again, while others push =============================== */

typedef struct {
  rel_fx_t *f;
  atomic_int stop;
  rel_model_t m;
  uint64_t pushes;
} pusher_t;

static void *pusher_main(void *arg) {
  pusher_t *p = arg;
  wsc_t *c = rel_open(p->f);
  evgen_t g[20];
  tcli_result_t res[20];
  char code[32];
  uint64_t id = 0;
  while (!atomic_load(&p->stop)) {
    rel_gen(g, 20, 0);
    REL_REQUIRE(p->f, rel_push(p->f, c, ++id, g, 20, res, code) == 0, "pusher: `%s`", code);
    rel_require_stored(p->f, g, 20, res, &p->m);
    p->pushes++;
  }
  wsc_close(c);
  return NULL;
}

typedef struct {
  uint8_t *got; /* by seq: delivered and applied */
  size_t cap;
  uint64_t ckpt; /* the client's checkpoint: the last `last` applied */
} replica_t;

/* The next message of sub 1: a chunk is recorded, and applied and acked when `apply` (else it
 * is lost with the connection).  Returns 1 for caught_up (its head in *head), 0 for a chunk. */
static int take(rel_fx_t *f, wsc_t *c, replica_t *r, int apply, uint64_t *head) {
  char err[1024], desc[512];
  psl_msg_t msg;
  REL_REQUIRE(f, tcli_expect(c, PSL_MSG_NONE, REL_T_MS, &msg, err, sizeof err) == 0, "%s", err);
  tcli_describe(&msg, desc, sizeof desc);
  if (msg.t == PSL_MSG_CAUGHT_UP) {
    *head = msg.u.caught_up.head;
    psl_msg_free(&msg);
    return 1;
  }
  REL_REQUIRE(f, msg.t == PSL_MSG_EVENTS && msg.u.events.sub == 1,
              "expected a chunk of sub 1, got %s", desc);
  for (size_t i = 0; i < msg.u.events.n; i++) {
    uint64_t s = msg.u.events.events[i].seq;
    REL_REQUIRE(f, s > r->ckpt, "seq %llu at or before the checkpoint %llu",
                (unsigned long long)s, (unsigned long long)r->ckpt);
    if (s >= r->cap) {
      size_t nc = r->cap ? r->cap : 65536;
      while (nc <= s)
        nc *= 2;
      r->got = realloc(r->got, nc);
      REL_REQUIRE(f, r->got, "realloc");
      memset(r->got + r->cap, 0, nc - r->cap);
      r->cap = nc;
    }
    REL_REQUIRE(f, !r->got[s], "seq %llu delivered twice", (unsigned long long)s);
    if (apply)
      r->got[s] = 1;
  }
  if (apply) {
    r->ckpt = msg.u.events.last;
    REL_REQUIRE(f, tcli_ack(c, 1, r->ckpt) == 0, "ack");
  }
  psl_msg_free(&msg);
  return 0;
}

TEST_T(netfaults, cut_mid_catch_up_resumes_exactly, 120) {
  rel_fx_t f;
  rel_model_t m;
  uint64_t push_id = 0, head = 0;
  replica_t r;
  memset(&m, 0, sizeof m);
  memset(&r, 0, sizeof r);
  rel_fx_init(&f);
  rel_fx_start(&f);
  { /* a log of many chunks */
    wsc_t *c = rel_open(&f);
    evgen_t *g = calloc(PSL_MAX_PUSH_EVENTS, sizeof *g);
    CHECK(g != NULL);
    for (size_t done = 0; done < CATCHUP_EVENTS; done += PSL_MAX_PUSH_EVENTS) {
      rel_gen(g, PSL_MAX_PUSH_EVENTS, 200);
      push_stored(&f, c, ++push_id, g, PSL_MAX_PUSH_EVENTS, &m, "load");
    }
    free(g);
    wsc_close(c);
  }
  pusher_t pu;
  memset(&pu, 0, sizeof pu);
  pu.f = &f;
  pthread_t th;
  CHECK_OK(pthread_create(&th, NULL, pusher_main, &pu));
  for (int cut = 0; cut < CATCHUP_CUTS; cut++) {
    wsc_t *c = rel_open(&f);
    REL_REQUIRE(&f, tcli_sub(c, 1, r.ckpt, 1, 2, NULL, NULL) == 0, "sub from %llu",
                (unsigned long long)r.ckpt);
    for (int k = 0; k < cut; k++) /* cut 0: right after `sub`, before any chunk */
      REL_REQUIRE(&f, take(&f, c, &r, 1, &head) == 0, "caught up too early");
    if (cut % 2) /* one more chunk arrives, but the radio drops before it is applied */
      REL_REQUIRE(&f, take(&f, c, &r, 0, &head) == 0, "caught up too early");
    wsc_cut(c); /* the server may be writing the next chunk into the socket */
  }
  atomic_store(&pu.stop, 1);
  pthread_join(th, NULL);
  /* the last resume runs to caught_up: everything up to the head, exactly once */
  wsc_t *c = rel_open(&f);
  REL_REQUIRE(&f, tcli_sub(c, 1, r.ckpt, 0, 2, NULL, NULL) == 0, "sub");
  while (!take(&f, c, &r, 1, &head))
    ;
  wsc_close(c);
  for (uint64_t s = 1; s <= head; s++)
    REL_REQUIRE(&f, s < r.cap && r.got[s], "seq %llu never delivered across the resumes",
                (unsigned long long)s);
  for (size_t i = 0; i < pu.m.n; i++)
    rel_model_add(&m, pu.m.v[i].id, pu.m.v[i].seq, pu.m.v[i].ver);
  printf("  netfaults: %d cuts, %llu events caught up, %llu pushes meanwhile\n", CATCHUP_CUTS,
         (unsigned long long)head, (unsigned long long)pu.pushes);
  REL_REQUIRE(&f, rel_check_log(&f, &m) == m.n, "the log holds events stored twice or unknown");
  wait_connections(&f, 0);
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  free(r.got);
  rel_model_free(&m);
  rel_model_free(&pu.m);
}
