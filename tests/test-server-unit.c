/*
 * test-server-unit.c — focused checks of passerelled's own mechanisms (area `server_unit`),
 * beside the end-to-end protocol tests of test-server.c: revocation of open connections, the
 * upgrade gate, refused subscriptions that keep the connection, the rate limit, backpressure
 * of pipelined pushes, a client cut while its pushes are pending (zombie connections), a
 * caseworker's transfer, and a stop while a client does not read.
 *
 * Each test runs the real build/bin/passerelled (tests/support/srv.h) with real WebSocket
 * clients (tests/support/wsc.h).  A failure prints the tail of the server's log.
 */
#include "harness.h"

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "psl_access.h"
#include "psl_proto.h"
#include "support/evgen.h"
#include "support/require.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

#define U_MS 10000 /* receive timeout: only reached when something is wrong */

static srv_t *u_srv;

#define UREQ(cond, ...) SRV_REQUIRE(u_srv, cond, __VA_ARGS__)

typedef struct {
  srv_t srv;
  char coord[PSL_TOKEN_LEN + 1];
} ufx_t;

static void ufx_start(ufx_t *f) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  UREQ(srv_init(&f->srv, psl_test_bindir(), dir) == 0, "srv_init: %s", f->srv.err);
  UREQ(srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "coord-unit", "laptop-u", f->coord) == 0,
       "token");
  u_srv = &f->srv;
  UREQ(srv_start(&f->srv, 0) == 0, "srv_start: %s", f->srv.err);
}

static void ufx_stop(ufx_t *f) {
  UREQ(srv_stop(&f->srv, 0) == 0, "stop: %s", f->srv.err);
  UREQ(WIFEXITED(f->srv.status) && WEXITSTATUS(f->srv.status) == 0,
       "the server's exit after SIGTERM: wait status 0x%x", f->srv.status);
}

static wsc_t *u_open(ufx_t *f, const char *token) {
  char err[1024];
  wsc_t *c = NULL;
  UREQ(tcli_open(&c, f->srv.port, token, "dev-u", NULL, err, sizeof err) == 0, "open: %s", err);
  return c;
}

static psl_msg_t u_expect(wsc_t *c, psl_msg_type_t t) {
  char err[1024];
  psl_msg_t m;
  UREQ(tcli_expect(c, t, U_MS, &m, err, sizeof err) == 0, "%s", err);
  return m;
}

static void u_expect_error(wsc_t *c, const char *code, uint64_t id, const char *what) {
  char desc[512];
  psl_msg_t m = u_expect(c, PSL_MSG_ERROR);
  tcli_describe(&m, desc, sizeof desc);
  UREQ(psl_str_eq(m.u.error.code, code), "%s: expected error %s, got %s", what, code, desc);
  UREQ(!id || (m.has_id && m.id == id), "%s: error for id %llu expected: %s", what,
       (unsigned long long)id, desc);
  psl_msg_free(&m);
}

static void u_push(wsc_t *c, uint64_t id, const evgen_t *g, size_t n, tcli_result_t *res) {
  char err[1024];
  psl_event_t evs[64];
  UREQ(n <= 64, "u_push: n");
  for (size_t i = 0; i < n; i++)
    evs[i] = g[i].ev;
  UREQ(tcli_push(c, id, evs, n, res, U_MS, err, sizeof err) == 0, "push %llu: %s",
       (unsigned long long)id, err);
}

static int64_t u_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A participant referred in terr, then `more` interviews: one push; returns the last seq. */
static uint64_t u_participant_sized(wsc_t *c, uint64_t id, const char *terr, size_t more,
                                    size_t size, uint8_t pid[PSL_UUID_BYTES]) {
  static evgen_t g[64];
  tcli_result_t res[64];
  UREQ(more < 64, "more");
  evgen_uuid(pid);
  evgen_referred(&g[0], pid, terr, "Unit Person");
  for (size_t i = 1; i <= more; i++)
    evgen_interview(&g[i], pid, terr, PSL_EXPECT_ANY, size);
  u_push(c, id, g, more + 1, res);
  for (size_t i = 0; i <= more; i++)
    UREQ(res[i].err == 0, "event %zu refused: %s %s", i, psl_err_code(res[i].err), res[i].msg);
  return res[more].seq;
}

static uint64_t u_participant(wsc_t *c, uint64_t id, const char *terr, size_t more,
                              uint8_t pid[PSL_UUID_BYTES]) {
  return u_participant_sized(c, id, terr, more, 0, pid);
}

/* ==== Revocation ends a live subscription within a second. */

TEST(server_unit, revoke_closes_live_sub_within_a_second) {
  ufx_t f;
  char cw[PSL_TOKEN_LEN + 1];
  uint8_t pid[PSL_UUID_BYTES];
  ufx_start(&f);
  UREQ(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "93", "cw-revoked", "phone-r", cw) == 0, "token");
  wsc_t *w = u_open(&f, f.coord);
  u_participant(w, 1, "93", 3, pid);
  wsc_t *c = u_open(&f, cw);
  UREQ(tcli_sub(c, 7, 0, 1, 4, NULL, NULL) == 0, "sub");
  for (;;) { /* catch up, then live */
    psl_msg_t m = u_expect(c, PSL_MSG_NONE);
    int done = m.t == PSL_MSG_CAUGHT_UP;
    if (m.t == PSL_MSG_EVENTS)
      UREQ(tcli_ack(c, 7, m.u.events.last) == 0, "ack");
    psl_msg_free(&m);
    if (done)
      break;
  }
  psl_access_t *a = NULL;
  UREQ(psl_access_open(&a, f.srv.dir) == 0, "access open");
  int64_t t0 = u_now_ms();
  UREQ(psl_access_token_revoke(a, cw) == 0, "revoke");
  psl_access_close(a);
  u_expect_error(c, "unauthorized", 0, "revoked token");
  int64_t dt = u_now_ms() - t0;
  UREQ(wsc_wait_closed(c, U_MS, NULL) == 0, "closed after the revocation");
  UREQ(dt < 1000, "revocation took %lld ms (PROTOCOL-v1: within a second)", (long long)dt);
  fprintf(stderr, "  revocation closed the live subscription in %lld ms\n", (long long)dt);
  wsc_free(c);
  /* the coordinator's connection is untouched */
  tcli_result_t res[1];
  evgen_t g[1];
  evgen_interview(&g[0], pid, "93", PSL_EXPECT_ANY, 0);
  u_push(w, 2, g, 1, res);
  UREQ(res[0].err == 0, "push after another token's revocation");
  wsc_close(w);
  ufx_stop(&f);
}

/* ==== Only /sync with passerelle.v1 upgrades; HTTP goes on beside. */

TEST(server_unit, upgrade_gate) {
  ufx_t f;
  char err[256];
  wsc_t *c = NULL;
  ufx_start(&f);
  wsc_opts_t o = {"/other", NULL, 3000, 0, NULL};
  UREQ(wsc_connect(&c, f.srv.port, &o, err, sizeof err) != 0, "upgrade at /other accepted");
  wsc_opts_t np = {NULL, "", 3000, 0, NULL};
  UREQ(wsc_connect(&c, f.srv.port, &np, err, sizeof err) != 0, "upgrade without subprotocol");
  wsc_opts_t bad = {NULL, "chat", 3000, 0, NULL};
  UREQ(wsc_connect(&c, f.srv.port, &bad, err, sizeof err) != 0, "upgrade with another one");
  UREQ(wsc_connect(&c, f.srv.port, NULL, err, sizeof err) == 0, "upgrade at /sync: %s", err);
  int status = 0;
  char *body = NULL;
  UREQ(srv_http_get(f.srv.port, "/nowhere", 3000, &status, &body, NULL) == 0, "GET");
  UREQ(status == 404, "GET /nowhere: %d", status);
  free(body);
  UREQ(srv_http_get(f.srv.port, "/healthz", 3000, &status, &body, NULL) == 0, "GET");
  UREQ(status == 200 && strcmp(body, "ok\n") == 0, "GET /healthz: %d", status);
  free(body);
  wsc_close(c);
  ufx_stop(&f);
}

/* ==== A refused sub is answered and the connection goes on. */

TEST(server_unit, sub_refusals_keep_the_connection) {
  ufx_t f;
  char cw[PSL_TOKEN_LEN + 1];
  uint8_t pid[PSL_UUID_BYTES];
  ufx_start(&f);
  UREQ(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "93", "cw-93", "phone-93", cw) == 0, "token");
  wsc_t *c = u_open(&f, cw);
  static const char *const t75[] = {"75", NULL};
  UREQ(tcli_sub(c, 10, 0, 0, 4, t75, NULL) == 0, "sub");
  u_expect_error(c, "forbidden", 10, "caseworker of 93 asking for 75");
  UREQ(tcli_sub(c, 12, 1000, 0, 4, NULL, NULL) == 0, "sub");
  u_expect_error(c, "reset", 12, "from beyond the head");
  for (uint64_t id = 20; id < 28; id++) /* eight live subs: the most one connection holds */
    UREQ(tcli_sub(c, id, 0, 1, 4, NULL, NULL) == 0, "sub");
  for (int i = 0; i < 8; i++) {
    psl_msg_t m = u_expect(c, PSL_MSG_CAUGHT_UP);
    psl_msg_free(&m);
  }
  UREQ(tcli_sub(c, 20, 0, 1, 4, NULL, NULL) == 0, "sub");
  u_expect_error(c, "invalid", 20, "a sub id already open");
  UREQ(tcli_sub(c, 28, 0, 1, 4, NULL, NULL) == 0, "sub");
  u_expect_error(c, "too_big", 28, "a ninth subscription");
  /* still open: a push is answered, and each live sub gets the event */
  u_participant(c, 30, "93", 0, pid);
  for (int i = 0; i < 8; i++) {
    psl_msg_t m = u_expect(c, PSL_MSG_EVENTS);
    UREQ(m.u.events.n == 1, "live chunk with %zu events", m.u.events.n);
    psl_msg_free(&m);
  }
  wsc_close(c);
  ufx_stop(&f);
}

/* ==== A flood is answered rate_limited, without closing. */

TEST(server_unit, rate_limited_without_close) {
  ufx_t f;
  uint8_t pid[PSL_UUID_BYTES];
  ufx_start(&f);
  wsc_t *c = u_open(&f, f.coord);
  /* acks of an unknown sub are answered nothing; past the bucket they are refused */
  psl_msg_t ack;
  memset(&ack, 0, sizeof ack);
  ack.t = PSL_MSG_ACK;
  ack.u.ack.sub = 999;
  for (int i = 0; i < 25000; i++)
    UREQ(wsc_send_msg(c, &ack) == 0, "send ack %d: %s", i, wsc_error(c));
  u_expect_error(c, "rate_limited", 0, "25,000 messages at once");
  /* drain the other refusals, then, a second later, the connection works again */
  psl_msg_t m;
  char err[256];
  while (tcli_expect(c, PSL_MSG_ERROR, 300, &m, err, sizeof err) == 0)
    psl_msg_free(&m);
  usleep(1100 * 1000);
  u_participant(c, 5, "93", 0, pid);
  wsc_close(c);
  ufx_stop(&f);
}

/* ==== Pipelined pushes past PSL_CONN_MAX_PENDING_PUSHES: backpressure, every answer. */

TEST(server_unit, pipelined_pushes_all_answered_in_order) {
  ufx_t f;
  enum { N = 300, K = 10 };
  static evgen_t g[N][K];
  uint8_t pid[PSL_UUID_BYTES];
  ufx_start(&f);
  wsc_t *c = u_open(&f, f.coord);
  u_participant(c, 1, "94", 0, pid);
  for (int i = 0; i < N; i++) {
    psl_event_t evs[K];
    psl_msg_t m;
    for (int k = 0; k < K; k++) {
      evgen_interview(&g[i][k], pid, "94", PSL_EXPECT_ANY, 0);
      evs[k] = g[i][k].ev;
    }
    tcli_push_msg(&m, 100 + (uint64_t)i, evs, K);
    UREQ(wsc_send_msg(c, &m) == 0, "send push %d: %s", i, wsc_error(c));
  }
  uint64_t last = 1;
  for (int i = 0; i < N; i++) {
    psl_msg_t m = u_expect(c, PSL_MSG_PUSHED);
    UREQ(m.u.pushed.n == K, "pushed with %zu results", m.u.pushed.n);
    for (int k = 0; k < K; k++) {
      UREQ(m.u.pushed.results[k].err == 0 && m.u.pushed.results[k].seq > last,
           "push %llu result %d: seq %llu after %llu", (unsigned long long)m.id, k,
           (unsigned long long)m.u.pushed.results[k].seq, (unsigned long long)last);
      last = m.u.pushed.results[k].seq;
    }
    psl_msg_free(&m);
  }
  UREQ(last == 1 + N * K, "head %llu", (unsigned long long)last);
  wsc_close(c);
  ufx_stop(&f);
}

/* ==== A client cut while its pushes are pending: stored anyway, nothing else disturbed. */

TEST(server_unit, cut_with_pending_pushes) {
  ufx_t f;
  enum { N = 40, K = 50 };
  static evgen_t g[N][K];
  uint8_t pid[PSL_UUID_BYTES];
  ufx_start(&f);
  wsc_t *w = u_open(&f, f.coord);
  u_participant(w, 1, "75", 0, pid);
  wsc_t *c = u_open(&f, f.coord);
  for (int i = 0; i < N; i++) {
    psl_event_t evs[K];
    psl_msg_t m;
    for (int k = 0; k < K; k++) {
      evgen_interview(&g[i][k], pid, "75", PSL_EXPECT_ANY, 300);
      evs[k] = g[i][k].ev;
    }
    tcli_push_msg(&m, 10 + (uint64_t)i, evs, K);
    UREQ(wsc_send_msg(c, &m) == 0, "send push %d", i);
  }
  wsc_cut(c); /* RST while some pushes wait for their commit */
  /* what was received is stored or not, but whatever is stored is whole and in order, and
   * the other connection works: re-push everything, each is stored once (dup or new) */
  for (int i = 0; i < N; i++) {
    tcli_result_t res[K];
    u_push(w, 100 + (uint64_t)i, g[i], K, res);
    for (int k = 0; k < K; k++)
      UREQ(res[k].err == 0, "re-push %d/%d: %s", i, k, psl_err_code(res[k].err));
  }
  UREQ(tcli_sub(w, 5, 0, 0, 64, NULL, NULL) == 0, "sub");
  uint64_t n = 0, prev = 0;
  for (;;) {
    psl_msg_t m = u_expect(w, PSL_MSG_NONE);
    if (m.t == PSL_MSG_CAUGHT_UP) {
      UREQ(m.u.caught_up.head == 1 + N * K, "head %llu", (unsigned long long)m.u.caught_up.head);
      psl_msg_free(&m);
      break;
    }
    UREQ(m.t == PSL_MSG_EVENTS, "type %d", m.t);
    for (size_t i = 0; i < m.u.events.n; i++) {
      UREQ(m.u.events.events[i].seq == prev + 1, "gap");
      prev = m.u.events.events[i].seq;
      n++;
    }
    UREQ(tcli_ack(w, 5, m.u.events.last) == 0, "ack");
    psl_msg_free(&m);
  }
  UREQ(n == 1 + N * K, "%llu events", (unsigned long long)n);
  wsc_close(w);
  ufx_stop(&f);
}

/* ==== A caseworker transfers a participant of theirs out, and may not write there after. */

TEST(server_unit, caseworker_transfer_out) {
  ufx_t f;
  char cw[PSL_TOKEN_LEN + 1];
  uint8_t pid[PSL_UUID_BYTES];
  ufx_start(&f);
  UREQ(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "93", "cw-93", "phone-93", cw) == 0, "token");
  wsc_t *c = u_open(&f, cw);
  u_participant(c, 1, "93", 1, pid);
  /* participant.transferred {terr: 75}: the event's own terr is the new territory */
  evgen_t g[2];
  tcli_result_t res[2];
  evgen_interview(&g[0], pid, "93", PSL_EXPECT_ANY, 0);
  g[0].ev.type = psl_str("participant.transferred");
  static const uint8_t data[] = {0x81, 0xa4, 't', 'e', 'r', 'r', 0xa2, '7', '5'};
  g[0].ev.data.ptr = data;
  g[0].ev.data.len = sizeof data;
  g[0].ev.pii.len = 0;
  g[0].ev.terr = psl_str("75");
  evgen_interview(&g[1], pid, "75", PSL_EXPECT_ANY, 0);
  u_push(c, 2, g, 2, res);
  UREQ(res[0].err == 0, "transfer out of 93: %s %s", psl_err_code(res[0].err), res[0].msg);
  UREQ(res[1].err == PSL_EFORBIDDEN, "an interview in 75 by a caseworker of 93: %s",
       res[1].err ? psl_err_code(res[1].err) : "stored");
  wsc_close(c);
  ufx_stop(&f);
}

/* ==== SIGTERM while a client reads nothing: the stop still ends, cleanly, in bounded time. */

TEST_T(server_unit, stop_with_a_client_that_does_not_read, 60) {
  ufx_t f;
  uint8_t pid[PSL_UUID_BYTES];
  ufx_start(&f);
  wsc_t *w = u_open(&f, f.coord);
  for (int i = 0; i < 120; i++) /* ~7,200 events of 900 bytes: more than socket buffers hold */
    u_participant_sized(w, 1 + (uint64_t)i, "77", 59, 900, pid);
  wsc_t *c = u_open(&f, f.coord);
  UREQ(tcli_sub(c, 3, 0, 1, 64, NULL, NULL) == 0, "sub"); /* and never read again */
  usleep(300 * 1000);
  int64_t t0 = u_now_ms();
  ufx_stop(&f);
  int64_t dt = u_now_ms() - t0;
  UREQ(dt < 9000, "stop took %lld ms", (long long)dt);
  wsc_free(c);
  wsc_free(w);
}

/* ==== A transfer brings the participant's whole history to the new territory's subs. */

static void u_transfer_event(evgen_t *g, const uint8_t pid[PSL_UUID_BYTES], const char *to) {
  static uint8_t data[16];
  evgen_interview(g, pid, to, PSL_EXPECT_ANY, 0);
  g->ev.type = psl_str("participant.transferred");
  data[0] = 0x81; /* {terr: to} */
  data[1] = 0xa4;
  memcpy(data + 2, "terr", 4);
  data[6] = 0xa2;
  memcpy(data + 7, to, 2);
  g->ev.data.ptr = data;
  g->ev.data.len = 9;
  g->ev.pii.len = 0;
}

/* Collect one sub's events until caught_up (live: then wait for `want` more events). */
static size_t u_collect(wsc_t *c, uint64_t sub, uint64_t *seqs, size_t cap, size_t want_after) {
  size_t n = 0, after = 0;
  int caught = 0;
  while (!caught || after < want_after) {
    psl_msg_t m = u_expect(c, PSL_MSG_NONE);
    if (m.t == PSL_MSG_CAUGHT_UP) {
      caught = 1;
    } else {
      UREQ(m.t == PSL_MSG_EVENTS && m.u.events.sub == sub, "unexpected type %d", m.t);
      for (size_t i = 0; i < m.u.events.n && n < cap; i++) {
        seqs[n++] = m.u.events.events[i].seq;
        after += caught;
      }
      UREQ(tcli_ack(c, sub, m.u.events.last) == 0, "ack");
    }
    psl_msg_free(&m);
  }
  return n;
}

TEST(server_unit, transfer_brings_history_to_new_territory) {
  ufx_t f;
  char cw75[PSL_TOKEN_LEN + 1];
  uint8_t pid[PSL_UUID_BYTES], other[PSL_UUID_BYTES];
  uint64_t seqs[64];
  ufx_start(&f);
  UREQ(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "75", "cw-75", "phone-75", cw75) == 0, "token");
  wsc_t *w = u_open(&f, f.coord);
  u_participant(w, 1, "93", 3, pid);   /* seqs 1..4, in 93 */
  u_participant(w, 2, "75", 1, other); /* seqs 5..6, in 75 */
  wsc_t *live = u_open(&f, cw75);
  UREQ(tcli_sub(live, 9, 0, 1, 4, NULL, NULL) == 0, "sub");
  /* before the transfer: only the 75 participant */
  size_t n = u_collect(live, 9, seqs, 64, 0);
  UREQ(n == 2 && seqs[0] == 5 && seqs[1] == 6, "before the transfer: %zu events", n);
  evgen_t g[1];
  tcli_result_t res[1];
  u_transfer_event(&g[0], pid, "75");
  u_push(w, 3, g, 1, res);
  UREQ(res[0].err == 0 && res[0].seq == 7, "transfer: %s %s", psl_err_code(res[0].err),
       res[0].msg);
  /* live: the history (1..4) then the transfer (7) */
  psl_msg_t m = u_expect(live, PSL_MSG_EVENTS);
  UREQ(m.u.events.n == 5 && m.u.events.last == 7, "live chunk: %zu events, last %llu",
       m.u.events.n, (unsigned long long)m.u.events.last);
  for (size_t i = 0; i < 4; i++)
    UREQ(m.u.events.events[i].seq == i + 1, "history event %zu: seq %llu", i,
         (unsigned long long)m.u.events.events[i].seq);
  UREQ(m.u.events.events[4].seq == 7, "the transfer last");
  psl_msg_free(&m);
  /* catch-up from 0 by another caseworker of 75: the same, in one pass */
  wsc_t *late = u_open(&f, cw75);
  UREQ(tcli_sub(late, 4, 0, 0, 4, NULL, NULL) == 0, "sub");
  n = u_collect(late, 4, seqs, 64, 0);
  UREQ(n == 7, "catch-up after the transfer: %zu events", n);
  UREQ(seqs[0] == 5 && seqs[1] == 6 && seqs[2] == 1 && seqs[5] == 4 && seqs[6] == 7,
       "catch-up order: %llu %llu %llu ... %llu", (unsigned long long)seqs[0],
       (unsigned long long)seqs[1], (unsigned long long)seqs[2], (unsigned long long)seqs[6]);
  wsc_close(late);
  wsc_close(live);
  wsc_close(w);
  ufx_stop(&f);
}
