/*
 * test-server.c — end-to-end tests of passerelled against PROTOCOL-v1 (area `server`).
 *
 * Every test starts the real build/bin/passerelled on a loopback port with its own temporary
 * data folder (tests/support/srv.h) and talks to it with real WebSocket clients written for
 * tests (tests/support/wsc.h), which can also misbehave on purpose.  The reference for what
 * the server must hold is a simple model kept by the test: the pushers' acknowledged
 * (event id → seq, ver), against which every subscriber's stream of events is compared.
 *
 * A failure names the frames involved (tcli_describe: types, ids, seqs, codes — never data
 * or pii) and prints the tail of the server's log.
 */
#include "harness.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "psl_access.h"
#include "psl_proto.h"
#include "support/evgen.h"
#include "support/mpw.h"
#include "support/require.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

/* Receive timeout: a healthy server answers in milliseconds; ASan builds and a loaded CI
 * machine get a generous bound, which only matters when something is wrong. */
#define T_MS 10000
/* How long "nothing more arrives" is watched for (window and non-live checks). */
#define QUIET_MS 400
/* The largest push the tests send (PROTOCOL-v1's limit, PSL_MAX_PUSH_EVENTS). */
#define BIG_PUSH 1000

/* ---- Failing with the server's log. */

static srv_t *cur_srv; /* the test's server, for the log tail on failure */

#define REQUIRE(cond, ...) SRV_REQUIRE(cur_srv, cond, __VA_ARGS__)

/* ---- Fixture: a server on a fresh data folder and a coordinator token. */

typedef struct {
  srv_t srv;
  char coord[PSL_TOKEN_LEN + 1]; /* coordinator "coord-test" on "laptop-1" */
} fx_t;

/* More passerelled arguments for the next fx_start (NULL-ended). */
static const char *fx_args[4];

static void fx_start(fx_t *f) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  REQUIRE(srv_init(&f->srv, psl_test_bindir(), dir) == 0, "srv_init: %s", f->srv.err);
  for (size_t i = 0; i < sizeof fx_args / sizeof fx_args[0] && fx_args[i]; i++)
    f->srv.extra_args[i] = fx_args[i];
  REQUIRE(srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "coord-test", "laptop-1", f->coord) ==
              0,
          "token create failed");
  cur_srv = &f->srv;
  REQUIRE(srv_start(&f->srv, 0) == 0, "srv_start: %s", f->srv.err);
}

static void fx_stop(fx_t *f) {
  int r = srv_stop(&f->srv, 0);
  REQUIRE(r == 0, "stop: %s", f->srv.err);
}

static wsc_t *open_as(fx_t *f, const char *token, const char *device, tcli_welcome_t *w) {
  char err[1024];
  wsc_t *c = NULL;
  int r = tcli_open(&c, f->srv.port, token, device, w, err, sizeof err);
  REQUIRE(r == 0, "connect+hello: %s", err);
  return c;
}

static wsc_t *open_coord(fx_t *f) { return open_as(f, f->coord, "laptop-1", NULL); }

static psl_msg_t expect_msg(wsc_t *c, psl_msg_type_t t, int timeout_ms) {
  char err[1024];
  psl_msg_t m;
  int r = tcli_expect(c, t, timeout_ms, &m, err, sizeof err);
  REQUIRE(r == 0, "%s", err);
  return m;
}

/* The next message must be `error` with one of the codes; returns after checking. */
static void expect_error(wsc_t *c, const char *code1, const char *code2, const char *what) {
  char desc[512];
  psl_msg_t m = expect_msg(c, PSL_MSG_ERROR, T_MS);
  tcli_describe(&m, desc, sizeof desc);
  REQUIRE(psl_str_eq(m.u.error.code, code1) || (code2 && psl_str_eq(m.u.error.code, code2)),
          "%s: expected error %s%s%s, got %s", what, code1, code2 ? " or " : "",
          code2 ? code2 : "", desc);
  REQUIRE(m.u.error.msg.len > 0, "%s: error without msg: %s", what, desc);
  psl_msg_free(&m);
}

static void expect_closed(wsc_t *c, const char *what) {
  int skipped = 0;
  int r = wsc_wait_closed(c, T_MS, &skipped);
  REQUIRE(r == 0, "%s: the server did not close the connection within %d ms", what, T_MS);
  REQUIRE(skipped == 0, "%s: %d more message(s) came after the error before the close", what,
          skipped);
}

/* Nothing must arrive for ms. */
static void expect_quiet(wsc_t *c, int ms, const char *what) {
  psl_msg_t m;
  char err[1024], desc[512];
  int r = tcli_expect(c, PSL_MSG_NONE, ms, &m, err, sizeof err);
  if (r == 0) {
    tcli_describe(&m, desc, sizeof desc);
    psl_msg_free(&m);
    srv_fail(cur_srv, __FILE__, __LINE__, "%s: expected nothing for %d ms, got %s", what, ms, desc);
  }
  REQUIRE(r == PSL_EAGAIN, "%s: %s", what, err);
}

/* ---- Events and pushes. */

static void evs_of(const evgen_t *g, size_t n, psl_event_t *out) {
  for (size_t i = 0; i < n; i++)
    out[i] = g[i].ev;
}

static void push(wsc_t *c, uint64_t id, const evgen_t *g, size_t n, tcli_result_t *res) {
  char err[1024];
  psl_event_t *evs = calloc(n, sizeof *evs);
  REQUIRE(evs, "calloc");
  evs_of(g, n, evs);
  int r = tcli_push(c, id, evs, n, res, T_MS, err, sizeof err);
  free(evs);
  REQUIRE(r == 0, "push id=%llu: %s", (unsigned long long)id, err);
}

static void require_stored(const tcli_result_t *r, uint64_t seq, uint64_t ver, const char *what) {
  REQUIRE(r->err == 0 && !r->dup && r->seq == seq && r->ver == ver,
          "%s: expected {seq %llu ver %llu}, got {err %s dup %d seq %llu ver %llu msg \"%s\"}",
          what, (unsigned long long)seq, (unsigned long long)ver,
          r->err ? psl_err_code(r->err) : "-", r->dup, (unsigned long long)r->seq,
          (unsigned long long)r->ver, r->msg);
}

static void require_dup(const tcli_result_t *r, uint64_t seq, uint64_t ver, const char *what) {
  REQUIRE(r->err == 0 && r->dup && r->seq == seq && r->ver == ver,
          "%s: expected {seq %llu ver %llu dup}, got {err %s dup %d seq %llu ver %llu}", what,
          (unsigned long long)seq, (unsigned long long)ver, r->err ? psl_err_code(r->err) : "-",
          r->dup, (unsigned long long)r->seq, (unsigned long long)r->ver);
}

static void require_conflict(const tcli_result_t *r, uint64_t ver, const char *what) {
  REQUIRE(r->err == PSL_ECONFLICT && r->ver == ver,
          "%s: expected {err conflict ver %llu}, got {err %s dup %d seq %llu ver %llu msg "
          "\"%s\"}",
          what, (unsigned long long)ver, r->err ? psl_err_code(r->err) : "-", r->dup,
          (unsigned long long)r->seq, (unsigned long long)r->ver, r->msg);
}

/* Push a participant (referred) and then n - 1 interviews on it, in pushes of BIG_PUSH
 * events of about `size` bytes.  Returns the seq of the last event. */
static uint64_t load(wsc_t *c, const char *terr, size_t n, size_t size, uint64_t *push_id) {
  uint8_t pid[PSL_UUID_BYTES];
  evgen_t *g = calloc(BIG_PUSH, sizeof *g);
  tcli_result_t *res = calloc(BIG_PUSH, sizeof *res);
  uint64_t last = 0;
  REQUIRE(g && res, "calloc");
  evgen_uuid(pid);
  for (size_t done = 0; done < n;) {
    size_t k = n - done < BIG_PUSH ? n - done : BIG_PUSH;
    for (size_t i = 0; i < k; i++) {
      if (done + i == 0)
        evgen_referred(&g[i], pid, terr, "Load Test");
      else
        evgen_interview(&g[i], pid, terr, PSL_EXPECT_ANY, size);
    }
    push(c, ++*push_id, g, k, res);
    for (size_t i = 0; i < k; i++) {
      REQUIRE(res[i].err == 0 && !res[i].dup, "load: event %zu refused: %s %s", done + i,
              psl_err_code(res[i].err), res[i].msg);
      REQUIRE(res[i].seq > last, "load: seq %llu after %llu", (unsigned long long)res[i].seq,
              (unsigned long long)last);
      last = res[i].seq;
    }
    done += k;
  }
  free(g);
  free(res);
  return last;
}

/* ---- Collecting what a subscription delivers. */

typedef struct {
  uint64_t seq, ver, stream_h;
  uint8_t id[PSL_UUID_BYTES];
  uint8_t hash[PSL_HASH_BYTES];
  char terr[PSL_MAX_TERR + 1];
} got_t;

typedef struct {
  got_t *v;
  size_t n, cap;
  uint64_t sub;        /* the sub id expected in every chunk */
  uint64_t last;       /* the latest `last` */
  uint64_t head;       /* caught_up's head */
  int caught_up;
  size_t chunks, max_frame_events;
  int verify_chain;    /* unfiltered from 0: recompute the chain as events come */
  uint8_t chain[PSL_HASH_BYTES];
} coll_t;

static uint64_t fnv(psl_str_t s) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < s.len; i++)
    h = (h ^ (uint8_t)s.ptr[i]) * 1099511628211ull;
  return h;
}

static void coll_init(coll_t *k, uint64_t sub, int verify_chain) {
  memset(k, 0, sizeof *k);
  k->sub = sub;
  k->verify_chain = verify_chain;
}

/* Add an `events` chunk, checking order, `last` and (when asked) the hash chain. */
static void coll_chunk(coll_t *k, const psl_msg_t *m) {
  char desc[512];
  psl_buf_t canon;
  tcli_describe(m, desc, sizeof desc);
  REQUIRE(m->u.events.sub == k->sub, "chunk of sub %llu on sub %llu: %s",
          (unsigned long long)m->u.events.sub, (unsigned long long)k->sub, desc);
  REQUIRE(m->u.events.last >= k->last, "chunk's last went back from %llu: %s",
          (unsigned long long)k->last, desc);
  psl_buf_init(&canon, 0);
  for (size_t i = 0; i < m->u.events.n; i++) {
    const psl_event_t *ev = &m->u.events.events[i];
    uint64_t prev = k->n ? k->v[k->n - 1].seq : 0;
    REQUIRE(ev->seq > prev, "event seq %llu after %llu (duplicate or out of order): %s",
            (unsigned long long)ev->seq, (unsigned long long)prev, desc);
    REQUIRE(ev->seq > k->last, "event seq %llu not after the previous chunk's last %llu: %s",
            (unsigned long long)ev->seq, (unsigned long long)k->last, desc);
    REQUIRE(ev->seq <= m->u.events.last, "event seq %llu beyond the chunk's last: %s",
            (unsigned long long)ev->seq, desc);
    REQUIRE(ev->has_hash, "stored event seq %llu without hash", (unsigned long long)ev->seq);
    if (k->verify_chain) {
      uint8_t h[PSL_HASH_BYTES];
      REQUIRE(ev->seq == prev + 1, "gap: seq %llu after %llu in an unfiltered sub: %s",
              (unsigned long long)ev->seq, (unsigned long long)prev, desc);
      /* pii comes opened (a map) to a reader allowed to read it: the chain covers it sealed,
       * as stored (PROTOCOL.md §6), so only the server's hash can be taken for that event;
       * an auditor receives it sealed and recomputes every hash (test-privacy.c). */
      int opened = ev->pii.len > 0 && ev->pii.ptr[0] != 0xc4 && ev->pii.ptr[0] != 0xc5 &&
                   ev->pii.ptr[0] != 0xc6;
      if (opened) {
        memcpy(k->chain, ev->hash, PSL_HASH_BYTES);
        goto collected;
      }
      psl_buf_reset(&canon);
      REQUIRE(psl_event_encode_canonical(&canon, ev) == 0, "canonical form of seq %llu",
              (unsigned long long)ev->seq);
      psl_chain_hash(k->chain, psl_buf_data(&canon), canon.len, h);
      REQUIRE(memcmp(h, ev->hash, PSL_HASH_BYTES) == 0,
              "hash of seq %llu does not chain from the previous event's",
              (unsigned long long)ev->seq);
      memcpy(k->chain, h, PSL_HASH_BYTES);
    }
  collected:
    if (k->n == k->cap) {
      k->cap = k->cap ? k->cap * 2 : 1024;
      k->v = realloc(k->v, k->cap * sizeof *k->v);
      REQUIRE(k->v, "realloc");
    }
    got_t *g = &k->v[k->n++];
    g->seq = ev->seq;
    g->ver = ev->ver;
    g->stream_h = fnv(ev->stream);
    memcpy(g->id, ev->id, PSL_UUID_BYTES);
    memcpy(g->hash, ev->hash, PSL_HASH_BYTES);
    size_t tl = ev->terr.len < PSL_MAX_TERR ? ev->terr.len : PSL_MAX_TERR;
    memcpy(g->terr, ev->terr.ptr, tl);
    g->terr[tl] = '\0';
  }
  psl_buf_free(&canon);
  if (m->u.events.n > k->max_frame_events)
    k->max_frame_events = m->u.events.n;
  k->last = m->u.events.last;
  k->chunks++;
}

/* Read a non-live sub to its caught_up, acking every chunk. */
static void coll_until_caught_up(wsc_t *c, coll_t *k) {
  char desc[512];
  for (;;) {
    psl_msg_t m = expect_msg(c, PSL_MSG_NONE, T_MS);
    if (m.t == PSL_MSG_EVENTS) {
      coll_chunk(k, &m);
      psl_msg_free(&m);
      REQUIRE(tcli_ack(c, k->sub, k->last) == 0, "ack: %s", wsc_error(c));
      continue;
    }
    tcli_describe(&m, desc, sizeof desc);
    REQUIRE(m.t == PSL_MSG_CAUGHT_UP, "during catch-up: unexpected %s", desc);
    REQUIRE(m.u.caught_up.sub == k->sub, "caught_up of another sub: %s", desc);
    k->head = m.u.caught_up.head;
    k->caught_up = 1;
    psl_msg_free(&m);
    return;
  }
}

static void coll_free(coll_t *k) { free(k->v); }

/* Subscribe (non-live) and collect everything up to caught_up. */
/* chain: the sub delivers every event from seq 1 (unfiltered, a token that sees all). */
static void sub_all(wsc_t *c, uint64_t sub, uint64_t from, uint64_t window,
                    const char *const *terr, const char *const *streams, int chain,
                    coll_t *k) {
  coll_init(k, sub, chain);
  REQUIRE(tcli_sub(c, sub, from, 0, window, terr, streams) == 0, "send sub: %s", wsc_error(c));
  coll_until_caught_up(c, k);
}

/* ==== the test client itself ============================================================ */

/* The handshake's hash (FIPS 180-4 vectors) and RFC 6455 §1.3's worked example, so that a
 * failing upgrade is the server's and not the test client's. */
TEST(server, support_sha1_and_accept_key) {
  static const struct {
    const char *in, *hex;
  } v[] = {
      {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
      {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
  };
  uint8_t d[20];
  char hex[41], b64[32];
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    wsc_sha1(v[i].in, strlen(v[i].in), d);
    for (int j = 0; j < 20; j++)
      snprintf(hex + 2 * j, 3, "%02x", d[j]);
    CHECK_STR(hex, v[i].hex);
  }
  const char *cat = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  wsc_sha1(cat, strlen(cat), d);
  CHECK(wsc_base64(d, 20, b64, sizeof b64) == 28);
  CHECK_STR(b64, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* ==== hello / welcome ==================================================================== */

static int has_terr(const tcli_welcome_t *w, const char *t) {
  for (size_t i = 0; i < w->nterr; i++)
    if (strcmp(w->terr[i], t) == 0)
      return 1;
  return 0;
}

TEST(server, hello_welcome_fields) {
  fx_t f;
  tcli_welcome_t w, w2, wc;
  uint8_t zero[PSL_HASH_BYTES] = {0}, idb[PSL_UUID_BYTES];
  char cw[PSL_TOKEN_LEN + 1];
  uint64_t push_id = 0;
  fx_start(&f);

  wsc_t *c = open_as(&f, f.coord, "laptop-1", &w);
  REQUIRE(w.v == 1, "welcome v=%llu", (unsigned long long)w.v);
  REQUIRE(strlen(w.server) == PSL_UUID_STR && psl_uuid_parse(w.server, PSL_UUID_STR, idb) == 0,
          "welcome server \"%s\" is not a 36-character uuid", w.server);
  REQUIRE(w.head == 0, "fresh log: head %llu", (unsigned long long)w.head);
  REQUIRE(memcmp(w.hash, zero, PSL_HASH_BYTES) == 0, "fresh log: hash(0) must be 32 zero bytes");
  REQUIRE(strcmp(w.role, "coordinator") == 0, "role \"%s\"", w.role);
  REQUIRE(has_terr(&w, "75") && has_terr(&w, "77") && has_terr(&w, "93") && has_terr(&w, "94"),
          "a coordinator sees every territory; welcome terr has %zu", w.nterr);

  /* After 3 events: head 3 and the hash of event 3 (as a sub delivers it). */
  uint64_t last = load(c, "93", 3, 0, &push_id);
  REQUIRE(last == 3, "3 events on a fresh log end at seq %llu", (unsigned long long)last);
  coll_t k;
  sub_all(c, 1, 0, 4, NULL, NULL, 1, &k);
  REQUIRE(k.n == 3 && k.head == 3, "sub: %zu events, head %llu", k.n, (unsigned long long)k.head);
  wsc_close(c);

  /* The same id as `server`: no reset. */
  c = NULL;
  char err[1024];
  REQUIRE(wsc_connect(&c, f.srv.port, NULL, err, sizeof err) == 0, "%s", err);
  REQUIRE(tcli_hello(c, f.coord, "laptop-1", w.server, &w2, err, sizeof err) == 0,
          "hello with the log's own id as server: %s", err);
  REQUIRE(strcmp(w2.server, w.server) == 0, "server id changed: %s then %s", w.server, w2.server);
  REQUIRE(w2.head == 3, "head %llu after 3 events", (unsigned long long)w2.head);
  REQUIRE(memcmp(w2.hash, k.v[2].hash, PSL_HASH_BYTES) == 0,
          "welcome hash is not the hash of event 3");
  wsc_close(c);

  /* A caseworker sees its territory only. */
  REQUIRE(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "93", "cw-test", "phone-1", cw) == 0, "token");
  c = open_as(&f, cw, "phone-1", &wc);
  REQUIRE(strcmp(wc.role, "caseworker") == 0, "role \"%s\"", wc.role);
  REQUIRE(wc.nterr == 1 && strcmp(wc.terr[0], "93") == 0,
          "caseworker of 93: welcome terr has %zu entries (first \"%s\")", wc.nterr,
          wc.nterr ? wc.terr[0] : "");
  wsc_close(c);
  coll_free(&k);
  fx_stop(&f);
}

static void hello_fails(fx_t *f, const char *token, const char *server, const char *code,
                        int must_close, const char *what) {
  char err[1024];
  psl_msg_t m;
  wsc_t *c = NULL;
  REQUIRE(wsc_connect(&c, f->srv.port, NULL, err, sizeof err) == 0, "%s", err);
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_HELLO;
  m.u.hello.v = 1;
  m.u.hello.token = psl_str(token);
  m.u.hello.device = psl_str("laptop-1");
  m.u.hello.server = psl_str(server);
  REQUIRE(wsc_send_msg(c, &m) == 0, "send hello: %s", wsc_error(c));
  expect_error(c, code, NULL, what);
  if (must_close)
    expect_closed(c, what);
  wsc_free(c);
}

TEST(server, hello_bad_token_unauthorized) {
  fx_t f;
  fx_start(&f);
  /* well-formed but unknown, malformed, empty */
  hello_fails(&f, "psl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, "unauthorized", 1, "unknown token");
  hello_fails(&f, "not-a-token", NULL, "unauthorized", 1, "malformed token");
  hello_fails(&f, "", NULL, "unauthorized", 1, "empty token");
  /* a revoked token */
  {
    char tok[PSL_TOKEN_LEN + 1];
    psl_access_t *a = NULL;
    REQUIRE(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "75", "gone", "old-phone", tok) == 0, "tok");
    REQUIRE(psl_access_open(&a, f.srv.dir) == 0, "access open");
    REQUIRE(psl_access_token_revoke(a, tok) == 0, "revoke");
    psl_access_close(a);
    hello_fails(&f, tok, NULL, "unauthorized", 1, "revoked token");
  }
  /* the server still serves good clients */
  wsc_close(open_coord(&f));
  fx_stop(&f);
}

TEST(server, hello_other_server_id_reset) {
  fx_t f;
  fx_start(&f);
  hello_fails(&f, f.coord, "00000000-0000-7000-8000-000000000000", "reset", 0,
              "hello claiming another log's id");
  wsc_close(open_coord(&f));
  fx_stop(&f);
}

/* ==== push ============================================================================== */

TEST(server, push_pushed_seq_ver) {
  fx_t f;
  evgen_t g[3];
  tcli_result_t res[3];
  uint8_t p1[PSL_UUID_BYTES], p2[PSL_UUID_BYTES];
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  evgen_uuid(p1);
  evgen_uuid(p2);
  evgen_referred(&g[0], p1, "93", "Test One");
  evgen_interview(&g[1], p1, "93", PSL_EXPECT_ANY, 0);
  evgen_referred(&g[2], p2, "75", "Test Two");
  push(c, 41, g, 3, res);
  require_stored(&res[0], 1, 1, "first event of p1");
  require_stored(&res[1], 2, 2, "second event of p1");
  require_stored(&res[2], 3, 1, "first event of p2");
  /* a second push continues the sequence */
  evgen_interview(&g[0], p2, "75", 1, 0);
  push(c, 42, g, 1, res);
  require_stored(&res[0], 4, 2, "interview on p2 expecting version 1");
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, push_dup_answers_original_forever) {
  fx_t f;
  evgen_t g[3];
  tcli_result_t res[3];
  uint8_t p[PSL_UUID_BYTES];
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  evgen_uuid(p);
  evgen_referred(&g[0], p, "94", "Dup Test");
  evgen_copy(&g[1], &g[0]); /* the same id twice in one push */
  push(c, 1, g, 2, res);
  require_stored(&res[0], 1, 1, "first occurrence");
  require_dup(&res[1], 1, 1, "same id again in the same push");

  /* a later push: a new event, then the old one again (expect 0 would now conflict: the dup
   * must win, it is the same event) */
  evgen_interview(&g[2], p, "94", PSL_EXPECT_ANY, 0);
  evgen_t again;
  evgen_copy(&again, &g[0]);
  evgen_t both[2];
  evgen_copy(&both[0], &g[2]);
  evgen_copy(&both[1], &again);
  push(c, 2, both, 2, res);
  require_stored(&res[0], 2, 2, "new interview");
  require_dup(&res[1], 1, 1, "referred re-sent in a later push");
  wsc_close(c);

  /* after a reconnect */
  c = open_coord(&f);
  push(c, 1, both, 2, res);
  require_dup(&res[0], 2, 2, "interview re-sent after a reconnect");
  require_dup(&res[1], 1, 1, "referred re-sent after a reconnect");
  wsc_close(c);

  /* after a restart of the server: forever, not for a window */
  fx_stop(&f);
  REQUIRE(srv_start(&f.srv, 0) == 0, "restart: %s", f.srv.err);
  c = open_coord(&f);
  push(c, 9, both, 2, res);
  require_dup(&res[0], 2, 2, "interview re-sent after a restart");
  require_dup(&res[1], 1, 1, "referred re-sent after a restart");
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, push_expect_conflicts) {
  fx_t f;
  evgen_t g[6];
  tcli_result_t res[6];
  uint8_t p[PSL_UUID_BYTES], q[PSL_UUID_BYTES];
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  evgen_uuid(p);
  evgen_uuid(q);
  evgen_referred(&g[0], p, "93", "Expect Test");
  push(c, 1, g, 1, res);
  require_stored(&res[0], 1, 1, "referred with expect 0 on a new stream");

  evgen_interview(&g[0], p, "93", 0, 0);         /* expect 0 on an existing stream */
  evgen_interview(&g[1], p, "93", 5, 0);         /* wrong version */
  evgen_interview(&g[2], p, "93", 1, 0);         /* right version */
  evgen_interview(&g[3], p, "93", 1, 0);         /* now wrong: the stream is at 2 */
  evgen_interview(&g[4], p, "93", 2, 0);         /* right again */
  evgen_referred(&g[5], q, "93", "Nobody Yet");  /* expect 3 on a stream that does not exist */
  g[5].ev.expect = 3;
  push(c, 2, g, 6, res);
  require_conflict(&res[0], 1, "interview with expect 0 on a stream at 1");
  require_conflict(&res[1], 1, "expect 5 on a stream at 1");
  require_stored(&res[2], 2, 2, "expect 1 on a stream at 1");
  require_conflict(&res[3], 2, "expect 1 on a stream at 2");
  require_stored(&res[4], 3, 3, "expect 2 on a stream at 2");
  require_conflict(&res[5], 0, "referred with expect 3 on a stream that does not exist");

  /* a refused event is not stored: pushed again with the right expect it is new */
  g[1].ev.expect = 3;
  push(c, 3, &g[1], 1, res);
  require_stored(&res[0], 4, 4, "the conflicting event, re-pushed with the right expect");
  wsc_close(c);
  fx_stop(&f);
}

/* DOMAIN.md: participant.referred is pushed with expect 0.  Two devices referring the same
 * participant id is the optimistic-concurrency case PROTOCOL-v1 answers with a conflict (and
 * the stream's version), which a client handles by rebasing; `invalid` would tell it the
 * event can never be stored. */
TEST(server, push_expect0_referred_on_existing_stream_conflict) {
  fx_t f;
  evgen_t g[2];
  tcli_result_t res[2];
  uint8_t p[PSL_UUID_BYTES];
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  evgen_uuid(p);
  evgen_referred(&g[0], p, "93", "Referred Once");
  evgen_referred(&g[1], p, "93", "Referred Twice"); /* another id, the same stream */
  push(c, 1, g, 1, res);
  require_stored(&res[0], 1, 1, "first referral");
  push(c, 2, &g[1], 1, res);
  require_conflict(&res[0], 1, "a second participant.referred (expect 0) on the stream");
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, push_refusal_is_per_event) {
  fx_t f;
  evgen_t g[5];
  tcli_result_t res[5];
  char cw[PSL_TOKEN_LEN + 1];
  uint8_t p[PSL_UUID_BYTES], q[PSL_UUID_BYTES];
  fx_start(&f);
  REQUIRE(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "93", "cw93", "phone-93", cw) == 0, "token");
  wsc_t *c = open_as(&f, cw, "phone-93", NULL);
  evgen_uuid(p);
  evgen_uuid(q);
  evgen_referred(&g[0], p, "93", "Mixed One");         /* ok */
  evgen_referred(&g[1], q, "75", "Mixed Two");         /* forbidden: not this caseworker's */
  evgen_interview(&g[2], p, "93", 7, 0);               /* conflict */
  evgen_interview(&g[3], p, "93", PSL_EXPECT_ANY, 0);  /* ok */
  evgen_interview(&g[4], p, "93", 2, 0);               /* ok: the stream is at 2 */
  push(c, 5, g, 5, res);
  require_stored(&res[0], 1, 1, "event before the refused ones");
  REQUIRE(res[1].err == PSL_EFORBIDDEN && res[1].msg[0],
          "a caseworker of 93 pushing into 75: expected {err forbidden, msg}, got err %s "
          "seq %llu msg \"%s\"",
          res[1].err ? psl_err_code(res[1].err) : "-", (unsigned long long)res[1].seq,
          res[1].msg);
  require_conflict(&res[2], 1, "expect 7 on a stream at 1");
  require_stored(&res[3], 2, 2, "event after the refused ones");
  require_stored(&res[4], 3, 3, "expect 2 after the refused ones");
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, push_invalid_event_is_per_event) {
  fx_t f;
  evgen_t g[3];
  tcli_result_t res[3];
  uint8_t p[PSL_UUID_BYTES];
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  evgen_uuid(p);
  evgen_referred(&g[0], p, "93", "Valid One");
  evgen_interview(&g[1], p, "93", PSL_EXPECT_ANY, 0);
  g[1].ev.type = psl_str("no.such.type"); /* DOMAIN.md has no such type */
  evgen_interview(&g[2], p, "93", PSL_EXPECT_ANY, 0);
  push(c, 1, g, 3, res);
  require_stored(&res[0], 1, 1, "valid event before an invalid one");
  REQUIRE(res[1].err == PSL_EINVALID && res[1].msg[0],
          "unknown event type: expected {err invalid, msg}, got err %s seq %llu",
          res[1].err ? psl_err_code(res[1].err) : "-", (unsigned long long)res[1].seq);
  require_stored(&res[2], 2, 2, "valid event after an invalid one");
  wsc_close(c);
  fx_stop(&f);
}

/* A push frame written by hand with the stored-only keys a client must not set. */
static void forged_push(psl_buf_t *b, const evgen_t *e) {
  static const uint8_t fake_hash[PSL_HASH_BYTES] = {1, 2, 3};
  mpw_t w;
  mpw_init(&w, b);
  mpw_map(&w, 3);
  mpw_str(&w, "t");
  mpw_str(&w, "push");
  mpw_str(&w, "id");
  mpw_uint(&w, 77);
  mpw_str(&w, "events");
  mpw_array(&w, 1);
  mpw_map(&w, 13);
  mpw_str(&w, "id");
  mpw_bin(&w, e->ev.id, PSL_UUID_BYTES);
  mpw_str(&w, "stream");
  mpw_strn(&w, e->ev.stream.ptr, e->ev.stream.len);
  mpw_str(&w, "type");
  mpw_strn(&w, e->ev.type.ptr, e->ev.type.len);
  mpw_str(&w, "at");
  mpw_int(&w, e->ev.at);
  mpw_str(&w, "terr");
  mpw_strn(&w, e->ev.terr.ptr, e->ev.terr.len);
  mpw_str(&w, "data");
  mpw_raw(&w, e->ev.data.ptr, e->ev.data.len);
  mpw_str(&w, "pii");
  mpw_raw(&w, e->ev.pii.ptr, e->ev.pii.len);
  mpw_str(&w, "by");
  mpw_str(&w, "mallory");
  mpw_str(&w, "dev");
  mpw_str(&w, "forged-device");
  mpw_str(&w, "seq");
  mpw_uint(&w, 999999);
  mpw_str(&w, "ver");
  mpw_uint(&w, 4242);
  mpw_str(&w, "rec");
  mpw_int(&w, 1);
  mpw_str(&w, "hash");
  mpw_bin(&w, fake_hash, PSL_HASH_BYTES);
  REQUIRE(w.err == 0, "mpw");
}

TEST(server, push_by_dev_stamped_by_server) {
  fx_t f;
  evgen_t e;
  psl_buf_t b;
  uint8_t p[PSL_UUID_BYTES];
  char cw[PSL_TOKEN_LEN + 1], desc[512];
  fx_start(&f);
  REQUIRE(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "93", "alice", "tablet-7", cw) == 0, "token");
  wsc_t *c = open_as(&f, cw, "tablet-7", NULL);
  evgen_uuid(p);
  evgen_referred(&e, p, "93", "Forge Test");
  psl_buf_init(&b, 0);
  forged_push(&b, &e);
  REQUIRE(wsc_send_binary(c, psl_buf_data(&b), b.len) == 0, "send: %s", wsc_error(c));
  psl_buf_free(&b);
  psl_msg_t m = expect_msg(c, PSL_MSG_PUSHED, T_MS);
  tcli_describe(&m, desc, sizeof desc);
  REQUIRE(m.id == 77 && m.u.pushed.n == 1 && m.u.pushed.results[0].err == 0 &&
              m.u.pushed.results[0].seq == 1 && m.u.pushed.results[0].ver == 1,
          "forged push: %s", desc);
  psl_msg_free(&m);

  REQUIRE(tcli_sub(c, 3, 0, 0, 4, NULL, NULL) == 0, "sub");
  m = expect_msg(c, PSL_MSG_EVENTS, T_MS);
  tcli_describe(&m, desc, sizeof desc);
  REQUIRE(m.u.events.n == 1, "events: %s", desc);
  const psl_event_t *ev = &m.u.events.events[0];
  REQUIRE(psl_str_eq(ev->by, "alice"), "by is \"%.*s\", not the token's name \"alice\"",
          (int)ev->by.len, ev->by.ptr);
  REQUIRE(psl_str_eq(ev->dev, "tablet-7"), "dev is \"%.*s\", not the token's device",
          (int)ev->dev.len, ev->dev.ptr);
  REQUIRE(ev->seq == 1 && ev->ver == 1, "seq %llu ver %llu: forged values kept",
          (unsigned long long)ev->seq, (unsigned long long)ev->ver);
  REQUIRE(ev->rec > 1000000000000ll, "rec %lld: not the server's clock", (long long)ev->rec);
  psl_msg_free(&m);
  /* The hash is recomputed from the stored form, which an auditor receives (its pii sealed:
   * the caseworker got it opened, which the chain does not cover). */
  char aud[PSL_TOKEN_LEN + 1];
  REQUIRE(srv_token(&f.srv, PSL_ROLE_AUDITOR, NULL, "audit", "audit-1", aud) == 0, "token");
  wsc_t *a = open_as(&f, aud, "audit-1", NULL);
  REQUIRE(tcli_sub(a, 3, 0, 0, 4, NULL, NULL) == 0, "sub");
  m = expect_msg(a, PSL_MSG_EVENTS, T_MS);
  REQUIRE(m.u.events.n == 1, "auditor's events");
  ev = &m.u.events.events[0];
  REQUIRE(psl_str_eq(ev->by, "alice") && psl_str_eq(ev->dev, "tablet-7"), "auditor's by/dev");
  uint8_t h[PSL_HASH_BYTES], zero[PSL_HASH_BYTES] = {0};
  psl_buf_init(&b, 0);
  REQUIRE(psl_event_encode_canonical(&b, ev) == 0, "canonical");
  psl_chain_hash(zero, psl_buf_data(&b), b.len, h);
  psl_buf_free(&b);
  REQUIRE(memcmp(h, ev->hash, PSL_HASH_BYTES) == 0, "hash is not hash(0) ‖ canonical");
  psl_msg_free(&m);
  wsc_close(a);
  wsc_close(c);
  fx_stop(&f);
}

/* ==== sub =============================================================================== */

/* Events in the multi-chunk tests, of ~300 bytes: ~1 MB, four or more chunks of
 * PSL_CHUNK_BYTES. */
#define MANY 3000

TEST(server, sub_catch_up_in_order_then_caught_up) {
  fx_t f;
  coll_t k;
  tcli_welcome_t w;
  uint64_t push_id = 0;
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  uint64_t head = load(c, "93", MANY, 300, &push_id);
  REQUIRE(head == MANY, "head %llu", (unsigned long long)head);

  wsc_t *s = open_as(&f, f.coord, "laptop-2", &w);
  REQUIRE(w.head == MANY, "welcome head %llu", (unsigned long long)w.head);
  sub_all(s, 7, 0, 4, NULL, NULL, 1, &k);
  REQUIRE(k.n == MANY, "delivered %zu of %d events", k.n, MANY);
  REQUIRE(k.v[0].seq == 1 && k.v[MANY - 1].seq == MANY, "seqs %llu..%llu",
          (unsigned long long)k.v[0].seq, (unsigned long long)k.v[MANY - 1].seq);
  REQUIRE(k.last == MANY && k.head == MANY, "last %llu, caught_up head %llu",
          (unsigned long long)k.last, (unsigned long long)k.head);
  REQUIRE(k.chunks >= 2, "%d events of ~300 bytes came in %zu chunk(s): chunks are not bounded "
          "in bytes", MANY, k.chunks);
  REQUIRE(memcmp(w.hash, k.v[MANY - 1].hash, PSL_HASH_BYTES) == 0,
          "welcome hash differs from the hash of the head event");

  /* not live: a new event is not delivered */
  evgen_t e;
  tcli_result_t r;
  uint8_t p[PSL_UUID_BYTES];
  evgen_uuid(p);
  evgen_referred(&e, p, "93", "After Catch-up");
  push(c, ++push_id, &e, 1, &r);
  require_stored(&r, MANY + 1, 1, "event after the catch-up");
  expect_quiet(s, QUIET_MS, "a non-live sub after caught_up");

  /* resuming from the middle delivers exactly the rest */
  coll_t k2;
  sub_all(s, 8, 1234, 4, NULL, NULL, 0, &k2);
  REQUIRE(k2.n == MANY + 1 - 1234 && k2.v[0].seq == 1235 && k2.head == MANY + 1,
          "sub from 1234: %zu events from seq %llu, head %llu", k2.n,
          (unsigned long long)(k2.n ? k2.v[0].seq : 0), (unsigned long long)k2.head);
  coll_free(&k);
  coll_free(&k2);
  wsc_close(s);
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, sub_window_respected) {
  fx_t f;
  coll_t k;
  char desc[512];
  uint64_t push_id = 0;
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  load(c, "93", MANY, 300, &push_id);
  wsc_close(c);

  /* window 1: one chunk, then nothing until it is acked */
  wsc_t *s = open_coord(&f);
  coll_init(&k, 5, 1);
  REQUIRE(tcli_sub(s, 5, 0, 0, 1, NULL, NULL) == 0, "sub");
  for (;;) {
    psl_msg_t m = expect_msg(s, PSL_MSG_NONE, T_MS);
    if (m.t == PSL_MSG_CAUGHT_UP) {
      k.head = m.u.caught_up.head;
      psl_msg_free(&m);
      break;
    }
    tcli_describe(&m, desc, sizeof desc);
    REQUIRE(m.t == PSL_MSG_EVENTS, "window 1: unexpected %s", desc);
    coll_chunk(&k, &m);
    psl_msg_free(&m);
    if (k.last < MANY)
      expect_quiet(s, QUIET_MS, "window 1, chunk not acked yet");
    REQUIRE(tcli_ack(s, 5, k.last) == 0, "ack");
  }
  REQUIRE(k.n == MANY && k.head == MANY, "window 1: %zu events, head %llu", k.n,
          (unsigned long long)k.head);
  REQUIRE(k.chunks >= 3, "only %zu chunks: the window test needs 3 or more", k.chunks);
  coll_free(&k);

  /* window 2: two chunks, then one more per ack */
  coll_init(&k, 6, 1);
  REQUIRE(tcli_sub(s, 6, 0, 0, 2, NULL, NULL) == 0, "sub");
  psl_msg_t m1 = expect_msg(s, PSL_MSG_EVENTS, T_MS);
  coll_chunk(&k, &m1);
  uint64_t first_last = k.last;
  psl_msg_free(&m1);
  psl_msg_t m2 = expect_msg(s, PSL_MSG_EVENTS, T_MS);
  coll_chunk(&k, &m2);
  psl_msg_free(&m2);
  expect_quiet(s, QUIET_MS, "window 2 with 2 chunks unacked");
  REQUIRE(tcli_ack(s, 6, first_last) == 0, "ack");
  psl_msg_t m3 = expect_msg(s, PSL_MSG_EVENTS, T_MS);
  coll_chunk(&k, &m3);
  psl_msg_free(&m3);
  if (k.last < MANY)
    expect_quiet(s, QUIET_MS, "window 2 after acking the first chunk only");
  REQUIRE(tcli_ack(s, 6, k.last) == 0, "ack");
  coll_until_caught_up(s, &k);
  REQUIRE(k.n == MANY, "window 2: %zu events", k.n);
  coll_free(&k);
  wsc_close(s);
  fx_stop(&f);
}

/* Two participants, one in 93 and one in 75, 10 events each, interleaved; 75 last. */
static void two_territories(wsc_t *c, char streams[2][PSL_MAX_STREAM]) {
  evgen_t g[20];
  tcli_result_t res[20];
  uint8_t a[PSL_UUID_BYTES], b[PSL_UUID_BYTES];
  evgen_uuid(a);
  evgen_uuid(b);
  for (int i = 0; i < 20; i += 2) {
    if (i == 0) {
      evgen_referred(&g[0], a, "93", "Terr Nine");
      evgen_referred(&g[1], b, "75", "Terr Seven");
    } else {
      evgen_interview(&g[i], a, "93", PSL_EXPECT_ANY, 0);
      evgen_interview(&g[i + 1], b, "75", PSL_EXPECT_ANY, 0);
    }
  }
  push(c, 1, g, 20, res);
  for (int i = 0; i < 20; i++)
    require_stored(&res[i], (uint64_t)i + 1, (uint64_t)i / 2 + 1, "two territories");
  snprintf(streams[0], PSL_MAX_STREAM, "%s", g[0].stream);
  snprintf(streams[1], PSL_MAX_STREAM, "%s", g[1].stream);
}

static void require_only(const coll_t *k, const char *terr, size_t n, uint64_t head,
                         const char *what) {
  REQUIRE(k->n == n, "%s: %zu events, expected %zu", what, k->n, n);
  for (size_t i = 0; i < k->n; i++)
    REQUIRE(strcmp(k->v[i].terr, terr) == 0, "%s: event seq %llu of territory %s", what,
            (unsigned long long)k->v[i].seq, k->v[i].terr);
  REQUIRE(k->last == head, "%s: the last chunk's last is %llu, not the head %llu", what,
          (unsigned long long)k->last, (unsigned long long)head);
  REQUIRE(k->head == head, "%s: caught_up head %llu, not %llu", what,
          (unsigned long long)k->head, (unsigned long long)head);
}

TEST(server, sub_terr_filter) {
  fx_t f;
  coll_t k;
  char streams[2][PSL_MAX_STREAM], cw[PSL_TOKEN_LEN + 1];
  static const char *const t93[] = {"93", NULL};
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  two_territories(c, streams);

  sub_all(c, 2, 0, 4, t93, NULL, 0, &k);
  require_only(&k, "93", 10, 20, "coordinator, terr [93]");
  for (size_t i = 0; i < k.n; i++)
    REQUIRE(k.v[i].seq == 2 * i + 1, "terr [93]: event %zu has seq %llu", i,
            (unsigned long long)k.v[i].seq);
  coll_free(&k);
  wsc_close(c);

  /* a caseworker of 93 without a filter sees only 93, and still reaches the head */
  REQUIRE(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "93", "cw93", "phone-93", cw) == 0, "token");
  c = open_as(&f, cw, "phone-93", NULL);
  sub_all(c, 3, 0, 4, NULL, NULL, 0, &k);
  require_only(&k, "93", 10, 20, "caseworker of 93, no filter");
  coll_free(&k);
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, sub_streams_filter) {
  fx_t f;
  coll_t k;
  char streams[2][PSL_MAX_STREAM];
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  two_territories(c, streams);
  const char *const only[] = {streams[0], NULL};
  sub_all(c, 4, 0, 4, NULL, only, 0, &k);
  require_only(&k, "93", 10, 20, "streams [the 93 participant]");
  for (size_t i = 0; i < k.n; i++)
    REQUIRE(k.v[i].ver == i + 1, "stream filter: event %zu has ver %llu", i,
            (unsigned long long)k.v[i].ver);
  coll_free(&k);
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, sub_from_beyond_head_reset) {
  fx_t f;
  uint64_t push_id = 0;
  char desc[512];
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  load(c, "94", 5, 0, &push_id);
  REQUIRE(tcli_sub(c, 12, 10, 1, 4, NULL, NULL) == 0, "sub");
  psl_msg_t m = expect_msg(c, PSL_MSG_ERROR, T_MS);
  tcli_describe(&m, desc, sizeof desc);
  REQUIRE(psl_str_eq(m.u.error.code, "reset"), "sub from 10 with head 5: %s", desc);
  REQUIRE(m.has_id && m.id == 12, "the error does not carry the sub's id 12: %s", desc);
  psl_msg_free(&m);
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, sub_live_delivers_commits) {
  fx_t f;
  coll_t k;
  uint64_t push_id = 0;
  fx_start(&f);
  wsc_t *c = open_coord(&f), *s = open_coord(&f);
  load(c, "75", 10, 0, &push_id);
  coll_init(&k, 1, 1);
  REQUIRE(tcli_sub(s, 1, 0, 1, 4, NULL, NULL) == 0, "sub");
  coll_until_caught_up(s, &k);
  REQUIRE(k.n == 10 && k.head == 10, "live sub catch-up: %zu events, head %llu", k.n,
          (unsigned long long)k.head);
  for (int round = 0; round < 3; round++) {
    load(c, "75", 5, 0, &push_id);
    while (k.last < 10 + 5 * (uint64_t)(round + 1)) {
      psl_msg_t m = expect_msg(s, PSL_MSG_EVENTS, T_MS);
      coll_chunk(&k, &m);
      psl_msg_free(&m);
      REQUIRE(tcli_ack(s, 1, k.last) == 0, "ack");
    }
  }
  REQUIRE(k.n == 25, "live: %zu events", k.n);
  expect_quiet(s, QUIET_MS, "live sub with nothing new");
  coll_free(&k);
  wsc_close(s);
  wsc_close(c);
  fx_stop(&f);
}

TEST(server, unsub_stops_delivery) {
  fx_t f;
  coll_t k;
  uint64_t push_id = 0;
  fx_start(&f);
  wsc_t *c = open_coord(&f), *s = open_coord(&f);
  load(c, "94", 3, 0, &push_id);
  coll_init(&k, 9, 1);
  REQUIRE(tcli_sub(s, 9, 0, 1, 4, NULL, NULL) == 0, "sub");
  coll_until_caught_up(s, &k);
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_UNSUB;
  m.u.unsub.sub = 9;
  REQUIRE(wsc_send_msg(s, &m) == 0, "unsub");
  /* a round trip on the same connection, so that the unsub was read before the push */
  coll_t k2;
  sub_all(s, 10, 3, 4, NULL, NULL, 0, &k2);
  coll_free(&k2);
  load(c, "94", 3, 0, &push_id);
  expect_quiet(s, QUIET_MS, "after unsub");
  /* the connection still works */
  sub_all(s, 11, 3, 4, NULL, NULL, 0, &k2);
  REQUIRE(k2.n == 3 && k2.head == 6, "sub after unsub: %zu events, head %llu", k2.n,
          (unsigned long long)k2.head);
  coll_free(&k);
  coll_free(&k2);
  wsc_close(s);
  wsc_close(c);
  fx_stop(&f);
}

/* ==== the must-hold: concurrent pushers and live subscribers ============================ */

#define MH_PUSHERS 50
#define MH_SUBS 10
#define MH_EVENTS 1000 /* new events per pusher */
#define MH_BATCH 50    /* events per push, re-sent duplicates and conflicts included */
#define MH_OWN 4       /* participants each pusher owns (it alone knows their versions) */
#define MH_RING 64     /* stored events a pusher remembers, to re-send them */
#define MH_RECONNECT_PUSH 5 /* every tenth pusher reconnects after this many pushes */

typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  uint64_t seq, ver, stream_h;
} acked_t;

enum { K_OWN, K_SHARED, K_CONFLICT, K_DUP_SAME, K_DUP_OLD };

typedef struct {
  int kind;
  uint64_t ver; /* K_OWN: its version; K_CONFLICT: the stream's current version */
  int ref;      /* K_DUP_SAME: slot of the original; K_DUP_OLD: ring index */
} slot_t;

typedef struct {
  int idx;
  uint16_t port;
  const char *token;
  const uint8_t *shared; /* the participant every pusher writes to */
  acked_t *acked;
  size_t nacked;
  size_t dups, conflicts;
} pusher_t;

typedef struct {
  uint16_t port;
  const char *token;
  int idx;
  coll_t k;
} subr_t;

static _Atomic uint64_t mh_target; /* the final head, once every pusher is done */

static void mh_record(pusher_t *p, const evgen_t *e, const tcli_result_t *r) {
  acked_t *a = &p->acked[p->nacked++];
  memcpy(a->id, e->ev.id, PSL_UUID_BYTES);
  a->seq = r->seq;
  a->ver = r->ver;
  a->stream_h = fnv(e->ev.stream);
}

/* Check one push's results against what each slot must get; remember what was stored. */
static void mh_check(pusher_t *p, evgen_t *batch, const slot_t *slot, size_t n,
                     const tcli_result_t *res, evgen_t *ring, tcli_result_t *ring_res,
                     size_t *ring_n) {
  char what[128];
  for (size_t i = 0; i < n; i++) {
    snprintf(what, sizeof what, "pusher %d, slot %zu (kind %d)", p->idx, i, slot[i].kind);
    switch (slot[i].kind) {
    case K_OWN:
    case K_SHARED:
      REQUIRE(res[i].err == 0 && !res[i].dup, "%s: new event refused or dup: err %s dup %d",
              what, res[i].err ? psl_err_code(res[i].err) : "-", res[i].dup);
      if (slot[i].kind == K_OWN)
        REQUIRE(res[i].ver == slot[i].ver, "%s: ver %llu, expected %llu", what,
                (unsigned long long)res[i].ver, (unsigned long long)slot[i].ver);
      else
        REQUIRE(res[i].ver >= 2, "%s: shared stream ver %llu", what,
                (unsigned long long)res[i].ver);
      mh_record(p, &batch[i], &res[i]);
      evgen_copy(&ring[*ring_n % MH_RING], &batch[i]);
      ring_res[*ring_n % MH_RING] = res[i];
      (*ring_n)++;
      break;
    case K_CONFLICT:
      require_conflict(&res[i], slot[i].ver, what);
      p->conflicts++;
      break;
    case K_DUP_SAME:
      require_dup(&res[i], res[slot[i].ref].seq, res[slot[i].ref].ver, what);
      p->dups++;
      break;
    default: /* K_DUP_OLD */
      require_dup(&res[i], ring_res[slot[i].ref].seq, ring_res[slot[i].ref].ver, what);
      p->dups++;
      break;
    }
  }
}

static void *mh_pusher(void *arg) {
  pusher_t *p = arg;
  uint8_t own[MH_OWN][PSL_UUID_BYTES];
  uint64_t own_ver[MH_OWN] = {0};
  evgen_t *batch = calloc(MH_BATCH, sizeof *batch), *ring = calloc(MH_RING, sizeof *ring);
  tcli_result_t res[MH_BATCH], ring_res[MH_RING];
  slot_t slot[MH_BATCH];
  size_t produced = 0, ring_n = 0;
  uint64_t rnd = 0x51ed + (uint64_t)p->idx * 7919;
  char err[1024], name[32];
  wsc_t *c = NULL;
  REQUIRE(batch && ring, "calloc");
  REQUIRE(tcli_open(&c, p->port, p->token, "laptop-1", NULL, err, sizeof err) == 0,
          "pusher %d: %s", p->idx, err);
  for (int k = 0; k < MH_OWN; k++)
    evgen_uuid(own[k]);
  for (uint64_t push_no = 1; produced < MH_EVENTS; push_no++) {
    size_t n = 0;
    /* re-sent events of earlier pushes */
    for (int d = 0; d < 2 && ring_n > 0; d++) {
      int ri = (int)(psl_test_rand(&rnd) % (ring_n < MH_RING ? ring_n : MH_RING));
      evgen_copy(&batch[n], &ring[ri]);
      slot[n++] = (slot_t){K_DUP_OLD, 0, ri};
    }
    size_t first_new = n;
    while (n < MH_BATCH - 1 && produced < MH_EVENTS) {
      int k = (int)(psl_test_rand(&rnd) % MH_OWN);
      if (own_ver[k] == 0) {
        snprintf(name, sizeof name, "Pusher %d-%d", p->idx, k);
        evgen_referred(&batch[n], own[k], "93", name);
        slot[n++] = (slot_t){K_OWN, own_ver[k] = 1, 0};
        produced++;
      } else if (n == first_new + 10 && own_ver[k] >= 2) {
        evgen_interview(&batch[n], own[k], "93", 1, 0); /* stale version: a conflict */
        slot[n++] = (slot_t){K_CONFLICT, own_ver[k], 0};
      } else if (n % 12 == 5) {
        evgen_interview(&batch[n], p->shared, "93", PSL_EXPECT_ANY, 0);
        slot[n++] = (slot_t){K_SHARED, 0, 0};
        produced++;
      } else {
        int exact = n % 7 == 3;
        evgen_interview(&batch[n], own[k], "93", exact ? (int64_t)own_ver[k] : PSL_EXPECT_ANY,
                        0);
        slot[n++] = (slot_t){K_OWN, ++own_ver[k], 0};
        produced++;
      }
    }
    if (n > first_new) { /* the same id twice in this push */
      size_t orig = first_new + psl_test_rand(&rnd) % (n - first_new);
      /* Not a stream's first event: that case (a referred twice in one push) is checked
       * alone by push_dup_answers_original_forever, so that one failure does not hide
       * everything this test checks. */
      if ((slot[orig].kind == K_OWN && slot[orig].ver > 1) || slot[orig].kind == K_SHARED) {
        evgen_copy(&batch[n], &batch[orig]);
        slot[n++] = (slot_t){K_DUP_SAME, 0, (int)orig};
      }
    }
    push(c, push_no, batch, n, res);
    mh_check(p, batch, slot, n, res, ring, ring_res, &ring_n);
    if (p->idx % 10 == 0 && push_no == MH_RECONNECT_PUSH) {
      wsc_close(c);
      REQUIRE(tcli_open(&c, p->port, p->token, "laptop-1", NULL, err, sizeof err) == 0,
              "pusher %d reconnect: %s", p->idx, err);
    }
  }
  wsc_close(c);
  free(batch);
  free(ring);
  return NULL;
}

static void *mh_subscriber(void *arg) {
  subr_t *s = arg;
  char err[1024], desc[512];
  wsc_t *c = NULL;
  REQUIRE(tcli_open(&c, s->port, s->token, "laptop-1", NULL, err, sizeof err) == 0,
          "subscriber %d: %s", s->idx, err);
  coll_init(&s->k, 100 + (uint64_t)s->idx, s->idx == 0);
  REQUIRE(tcli_sub(c, s->k.sub, 0, 1, 4, NULL, NULL) == 0, "sub");
  for (int quiet = 0;;) {
    uint64_t target = atomic_load(&mh_target);
    psl_msg_t m;
    if (target && s->k.last >= target)
      break;
    int r = tcli_expect(c, PSL_MSG_NONE, 1000, &m, err, sizeof err);
    if (r == PSL_EAGAIN) {
      REQUIRE(++quiet < 60, "subscriber %d: nothing for 60 s at last %llu (target %llu)",
              s->idx, (unsigned long long)s->k.last, (unsigned long long)target);
      continue;
    }
    REQUIRE(r == 0, "subscriber %d: %s", s->idx, err);
    quiet = 0;
    tcli_describe(&m, desc, sizeof desc);
    if (m.t == PSL_MSG_EVENTS) {
      coll_chunk(&s->k, &m);
      REQUIRE(tcli_ack(c, s->k.sub, s->k.last) == 0, "ack: %s", wsc_error(c));
    } else {
      REQUIRE(m.t == PSL_MSG_CAUGHT_UP && !s->k.caught_up,
              "subscriber %d: unexpected %s (caught_up seen: %d)", s->idx, desc,
              s->k.caught_up);
      s->k.caught_up = 1;
    }
    psl_msg_free(&m);
  }
  wsc_close(c);
  return NULL;
}

TEST_T(server, must_hold_concurrent_push_and_live_subs, 180) {
  fx_t f;
  pthread_t pt[MH_PUSHERS], st[MH_SUBS];
  pusher_t *ps = calloc(MH_PUSHERS, sizeof *ps);
  subr_t *ss = calloc(MH_SUBS, sizeof *ss);
  uint8_t shared[PSL_UUID_BYTES];
  evgen_t e;
  tcli_result_t r;
  REQUIRE(ps && ss, "calloc");
  /* Sixty connections share the fixture's one token: past the per-token limit (flood.h),
   * which test-flood.c checks; here they stand for sixty devices. */
  fx_args[0] = "--token-max-conns";
  fx_args[1] = "0";
  fx_start(&f);

  /* the shared participant: seq 1 */
  wsc_t *c = open_coord(&f);
  evgen_uuid(shared);
  evgen_referred(&e, shared, "93", "Shared Person");
  push(c, 1, &e, 1, &r);
  require_stored(&r, 1, 1, "shared participant");
  wsc_close(c);
  acked_t setup = {.seq = 1, .ver = 1, .stream_h = fnv(e.ev.stream)};
  memcpy(setup.id, e.ev.id, PSL_UUID_BYTES);

  for (int i = 0; i < MH_SUBS; i++) {
    ss[i] = (subr_t){.port = f.srv.port, .token = f.coord, .idx = i};
    REQUIRE(pthread_create(&st[i], NULL, mh_subscriber, &ss[i]) == 0, "pthread_create");
  }
  for (int i = 0; i < MH_PUSHERS; i++) {
    ps[i] = (pusher_t){.idx = i, .port = f.srv.port, .token = f.coord, .shared = shared};
    ps[i].acked = calloc(MH_EVENTS, sizeof *ps[i].acked);
    REQUIRE(ps[i].acked, "calloc");
    REQUIRE(pthread_create(&pt[i], NULL, mh_pusher, &ps[i]) == 0, "pthread_create");
  }
  for (int i = 0; i < MH_PUSHERS; i++)
    pthread_join(pt[i], NULL);

  /* the model: every acknowledged id at its seq, gap-free, versions contiguous per stream */
  size_t total = 1, dups = 0, conflicts = 0;
  for (int i = 0; i < MH_PUSHERS; i++) {
    REQUIRE(ps[i].nacked == MH_EVENTS, "pusher %d stored %zu", i, ps[i].nacked);
    total += ps[i].nacked;
    dups += ps[i].dups;
    conflicts += ps[i].conflicts;
  }
  acked_t **by_seq = calloc(total + 1, sizeof *by_seq);
  REQUIRE(by_seq, "calloc");
  by_seq[1] = &setup;
  for (int i = 0; i < MH_PUSHERS; i++)
    for (size_t j = 0; j < ps[i].nacked; j++) {
      acked_t *a = &ps[i].acked[j];
      REQUIRE(a->seq >= 1 && a->seq <= total, "pusher %d got seq %llu of %zu stored events", i,
              (unsigned long long)a->seq, total);
      REQUIRE(!by_seq[a->seq], "seq %llu answered to two different event ids",
              (unsigned long long)a->seq);
      by_seq[a->seq] = a;
    }
  for (size_t s = 1; s <= total; s++)
    REQUIRE(by_seq[s], "no acknowledged event has seq %zu: a gap", s);
  {
    enum { NSLOTS = 1024 }; /* > MH_PUSHERS * MH_OWN + 1 streams */
    uint64_t keys[NSLOTS] = {0}, vers[NSLOTS] = {0};
    for (size_t s = 1; s <= total; s++) {
      size_t h = by_seq[s]->stream_h % NSLOTS;
      while (keys[h] && keys[h] != by_seq[s]->stream_h)
        h = (h + 1) % NSLOTS;
      keys[h] = by_seq[s]->stream_h;
      REQUIRE(by_seq[s]->ver == vers[h] + 1, "seq %zu has ver %llu after ver %llu of its stream",
              s, (unsigned long long)by_seq[s]->ver, (unsigned long long)vers[h]);
      vers[h] = by_seq[s]->ver;
    }
  }
  REQUIRE(dups > 0 && conflicts > 0, "the run sent %zu dups and %zu conflicts", dups, conflicts);
  printf("  must-hold: %zu events stored by %d pushers (%zu dups and %zu conflicts answered), "
         "%d live subscribers\n", total, MH_PUSHERS, dups, conflicts, MH_SUBS);

  atomic_store(&mh_target, (uint64_t)total);
  for (int i = 0; i < MH_SUBS; i++)
    pthread_join(st[i], NULL);
  for (int i = 0; i < MH_SUBS; i++) {
    coll_t *k = &ss[i].k;
    REQUIRE(k->n == total, "subscriber %d received %zu events, %zu are stored", i, k->n, total);
    for (size_t j = 0; j < k->n; j++) {
      const acked_t *a = by_seq[j + 1];
      REQUIRE(k->v[j].seq == j + 1, "subscriber %d: event %zu has seq %llu", i, j,
              (unsigned long long)k->v[j].seq);
      REQUIRE(memcmp(k->v[j].id, a->id, PSL_UUID_BYTES) == 0 && k->v[j].ver == a->ver,
              "subscriber %d: seq %zu is not the event acknowledged with that seq", i, j + 1);
    }
    coll_free(k);
  }
  for (int i = 0; i < MH_PUSHERS; i++)
    free(ps[i].acked);
  free(by_seq);
  free(ps);
  free(ss);
  fx_stop(&f);
}

/* ==== a subscriber cut off in the middle of a catch-up resumes ========================== */

#define CUT_EVENTS 30000
#define CUT_AFTER_CHUNKS 5

TEST_T(server, sub_cut_mid_catch_up_resumes, 120) {
  fx_t f;
  coll_t ka, kb;
  uint64_t push_id = 0;
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  uint64_t head = load(c, "77", CUT_EVENTS, 0, &push_id);
  wsc_close(c);

  /* A: window 1, ack as it goes, cut off after CUT_AFTER_CHUNKS with one more chunk arriving */
  c = open_coord(&f);
  coll_init(&ka, 1, 1);
  REQUIRE(tcli_sub(c, 1, 0, 0, 1, NULL, NULL) == 0, "sub");
  for (int i = 0; i < CUT_AFTER_CHUNKS; i++) {
    psl_msg_t m = expect_msg(c, PSL_MSG_EVENTS, T_MS);
    coll_chunk(&ka, &m);
    psl_msg_free(&m);
    REQUIRE(tcli_ack(c, 1, ka.last) == 0, "ack");
  }
  REQUIRE(ka.last < head, "the whole log fit in %d chunks: no catch-up to cut",
          CUT_AFTER_CHUNKS);
  wsc_frame_t fr;
  REQUIRE(wsc_recv(c, T_MS, &fr) == 0, "the chunk after the last ack did not come");
  wsc_cut(c); /* that chunk is lost with the connection: the checkpoint is ka.last */

  /* A resumes with a new connection from its checkpoint */
  c = open_coord(&f);
  ka.sub = 2;
  REQUIRE(tcli_sub(c, 2, ka.last, 0, 1, NULL, NULL) == 0, "sub");
  coll_until_caught_up(c, &ka);
  wsc_close(c);

  /* B never dropped */
  c = open_coord(&f);
  sub_all(c, 1, 0, 1, NULL, NULL, 1, &kb);
  wsc_close(c);
  REQUIRE(ka.n == head && kb.n == head, "resumed: %zu, never dropped: %zu, head %llu", ka.n,
          kb.n, (unsigned long long)head);
  for (size_t i = 0; i < kb.n; i++)
    REQUIRE(ka.v[i].seq == kb.v[i].seq && memcmp(ka.v[i].id, kb.v[i].id, PSL_UUID_BYTES) == 0 &&
                memcmp(ka.v[i].hash, kb.v[i].hash, PSL_HASH_BYTES) == 0,
            "event %zu differs between the resumed and the steady subscriber", i);
  coll_free(&ka);
  coll_free(&kb);
  fx_stop(&f);
}

/* ==== malformed input: an error, a closed connection, and nobody else affected ========== */

typedef void (*bad_fn)(wsc_t *c);

/* Announced size of the huge frame: 100 MB, fifty times PSL_MAX_FRAME. */
#define HUGE_FRAME (100u * 1000u * 1000u)
/* How much a server may grow while refusing it: far less than what was announced. */
#define HUGE_RSS_SLACK_KIB (32 * 1024)

static void malformed_case(bad_fn send_bad, int hello_first, const char *code1,
                           const char *code2, const char *what) {
  fx_t f;
  evgen_t e;
  tcli_result_t r;
  uint8_t p[PSL_UUID_BYTES];
  char err[1024];
  wsc_t *bad = NULL;
  fx_start(&f);
  wsc_t *good = open_coord(&f);
  evgen_uuid(p);
  evgen_referred(&e, p, "75", "Bystander");
  push(good, 1, &e, 1, &r);
  require_stored(&r, 1, 1, "bystander before");

  if (hello_first)
    bad = open_coord(&f);
  else
    REQUIRE(wsc_connect(&bad, f.srv.port, NULL, err, sizeof err) == 0, "%s", err);
  long rss0 = srv_rss_kib(f.srv.pid);
  send_bad(bad);
  expect_error(bad, code1, code2, what);
  expect_closed(bad, what);
  long rss1 = srv_rss_kib(f.srv.pid);
  REQUIRE(rss1 - rss0 < HUGE_RSS_SLACK_KIB, "%s: the server grew by %ld KiB", what,
          rss1 - rss0);
  wsc_free(bad);

  /* the other client carries on, and new ones are served */
  evgen_interview(&e, p, "75", 1, 0);
  push(good, 2, &e, 1, &r);
  require_stored(&r, 2, 2, "bystander after");
  wsc_close(good);
  wsc_close(open_coord(&f));
  REQUIRE(srv_running(&f.srv), "the server died");
  fx_stop(&f);
}

static void send_bin(wsc_t *c, psl_buf_t *b) {
  REQUIRE(wsc_send_binary(c, psl_buf_data(b), b->len) == 0, "send: %s", wsc_error(c));
  psl_buf_free(b);
}

static void bad_not_msgpack(wsc_t *c) {
  static const uint8_t junk[] = {0xc1, 0xff, 0x00, 0x13, 0x37};
  REQUIRE(wsc_send_binary(c, junk, sizeof junk) == 0, "send: %s", wsc_error(c));
}

static void bad_key_type(wsc_t *c) {
  psl_buf_t b;
  mpw_t w;
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, 4);
  mpw_str(&w, "t");
  mpw_str(&w, "push");
  mpw_str(&w, "id");
  mpw_uint(&w, 1);
  mpw_uint(&w, 7); /* a key that is not a string */
  mpw_str(&w, "x");
  mpw_str(&w, "events");
  mpw_array(&w, 0);
  send_bin(c, &b);
}

static void bad_value_type(wsc_t *c) {
  psl_buf_t b;
  mpw_t w;
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, 3);
  mpw_str(&w, "t");
  mpw_str(&w, "push");
  mpw_str(&w, "id");
  mpw_str(&w, "one"); /* id must be a uint */
  mpw_str(&w, "events");
  mpw_array(&w, 0);
  send_bin(c, &b);
}

static void bad_text_frame(wsc_t *c) {
  static const char json[] = "{\"t\":\"push\",\"id\":1,\"events\":[]}";
  REQUIRE(wsc_send_text(c, json, sizeof json - 1) == 0, "send: %s", wsc_error(c));
}

static void bad_huge_frame(wsc_t *c) {
  uint8_t some[4096];
  memset(some, 0x90, sizeof some);
  REQUIRE(wsc_send_partial(c, WSC_OP_BINARY, HUGE_FRAME, some, sizeof some) == 0, "send: %s",
          wsc_error(c));
}

static void bad_million_events(wsc_t *c) {
  psl_buf_t b;
  mpw_t w;
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, 3);
  mpw_str(&w, "t");
  mpw_str(&w, "push");
  mpw_str(&w, "id");
  mpw_uint(&w, 1);
  mpw_str(&w, "events");
  mpw_array32(&w, 1000000);
  for (int i = 0; i < 16; i++)
    mpw_nil(&w);
  send_bin(c, &b);
}

static void bad_not_a_map(wsc_t *c) {
  psl_buf_t b;
  mpw_t w;
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_array(&w, 3);
  mpw_str(&w, "t");
  mpw_str(&w, "push");
  mpw_uint(&w, 1);
  send_bin(c, &b);
}

static void bad_trailing_bytes(wsc_t *c) {
  psl_buf_t b;
  mpw_t w;
  psl_buf_init(&b, 0);
  mpw_init(&w, &b);
  mpw_map(&w, 3);
  mpw_str(&w, "t");
  mpw_str(&w, "push");
  mpw_str(&w, "id");
  mpw_uint(&w, 1);
  mpw_str(&w, "events");
  mpw_array(&w, 0);
  mpw_map(&w, 0); /* a second map in the same frame */
  send_bin(c, &b);
}

static void bad_before_hello(wsc_t *c) {
  evgen_t e;
  psl_msg_t m;
  uint8_t p[PSL_UUID_BYTES];
  evgen_uuid(p);
  evgen_referred(&e, p, "75", "Too Early");
  tcli_push_msg(&m, 1, &e.ev, 1);
  REQUIRE(wsc_send_msg(c, &m) == 0, "send: %s", wsc_error(c));
}

TEST(server, malformed_not_msgpack) {
  malformed_case(bad_not_msgpack, 1, "invalid", NULL, "bytes that are not MessagePack");
}
TEST(server, malformed_key_type) {
  malformed_case(bad_key_type, 1, "invalid", NULL, "a map with an integer key");
}
TEST(server, malformed_value_type) {
  malformed_case(bad_value_type, 1, "invalid", NULL, "push with a string id");
}
TEST(server, malformed_text_frame) {
  malformed_case(bad_text_frame, 1, "invalid", NULL, "a text frame");
}
TEST(server, malformed_huge_frame) {
  malformed_case(bad_huge_frame, 1, "too_big", NULL, "a frame announcing 100 MB");
}
TEST(server, malformed_million_events) {
  malformed_case(bad_million_events, 1, "too_big", "invalid",
                 "a push announcing 1,000,000 events");
}
TEST(server, malformed_not_a_map) {
  malformed_case(bad_not_a_map, 1, "invalid", NULL, "a frame that is an array");
}
TEST(server, malformed_trailing_bytes) {
  malformed_case(bad_trailing_bytes, 1, "invalid", NULL, "two maps in one frame");
}
TEST(server, malformed_message_before_hello) {
  malformed_case(bad_before_hello, 0, "invalid", "unauthorized", "a push before hello");
}

/* ==== HTTP ============================================================================== */

TEST(server, http_healthz) {
  fx_t f;
  int status;
  char *body;
  fx_start(&f);
  REQUIRE(srv_http_get(f.srv.port, "/healthz", T_MS, &status, &body, NULL) == 0, "GET /healthz");
  REQUIRE(status == 200 && strncmp(body, "ok", 2) == 0, "/healthz: %d \"%.40s\"", status, body);
  free(body);
  fx_stop(&f);
}

/* A name no other text contains, so that finding it anywhere is a leak. */
#define DISTINCT_NAME "Zephyrine Quatrebarbes-Lunel"
#define DISTINCT_PART "Quatrebarbes"

TEST(server, metrics_without_personal_data) {
  fx_t f;
  int status;
  char *body, *log;
  evgen_t e[2];
  tcli_result_t r[2];
  uint8_t p[PSL_UUID_BYTES];
  fx_start(&f);
  wsc_t *c = open_coord(&f);
  evgen_uuid(p);
  evgen_referred(&e[0], p, "93", DISTINCT_NAME);
  evgen_uuid(p);
  evgen_referred(&e[1], p, "93", DISTINCT_NAME); /* a conflict: refused events are logged too */
  e[1].ev.expect = 4;
  push(c, 1, e, 2, r);
  require_stored(&r[0], 1, 1, "event with a distinctive name");
  require_conflict(&r[1], 0, "a referral expecting version 4 of a new stream");
  bad_not_msgpack(c); /* an error path, which servers like to log */
  expect_error(c, "invalid", NULL, "junk");
  wsc_free(c);

  REQUIRE(srv_http_get(f.srv.port, "/metrics", T_MS, &status, &body, NULL) == 0, "GET /metrics");
  REQUIRE(status == 200, "/metrics: %d", status);
  REQUIRE(strstr(body, "passerelle_"), "/metrics has no passerelle_ metric: %.200s", body);
  char *head = strstr(body, "\npasserelle_head");
  REQUIRE(head, "/metrics has no passerelle_head* metric (PROTOCOL-v1: head seq)");
  char *val = strchr(head + 1, ' ');
  REQUIRE(val && strtoull(val, NULL, 10) == 1, "head metric line: %.60s", head + 1);
  REQUIRE(!strstr(body, DISTINCT_PART), "/metrics contains the participant's name");
  REQUIRE(!strstr(body, f.coord), "/metrics contains a token");
  free(body);
  fx_stop(&f);
  log = srv_read_file(f.srv.log, NULL);
  REQUIRE(log, "no server log at %s", f.srv.log);
  REQUIRE(!strstr(log, DISTINCT_PART), "the server's log contains the participant's name");
  REQUIRE(!strstr(log, f.coord), "the server's log contains a token");
  free(log);
}

/* ==== graceful stop ===================================================================== */

#define GS_PUSHERS 8
#define GS_BATCH 20
#define GS_DEPTH 3 /* pushes each pusher keeps in flight */
#define GS_MIN_ANSWERED 2000 /* events answered before the signal: the load is running */

typedef struct {
  uint16_t port;
  const char *token;
  int idx;
  acked_t *acked;
  size_t n, cap;
  char end[256]; /* how the pusher's connection ended */
} gs_t;

static _Atomic size_t gs_total;

static void gs_record(gs_t *g, const evgen_t *batch, const psl_msg_t *m) {
  for (size_t i = 0; i < m->u.pushed.n && i < GS_BATCH; i++) {
    if (m->u.pushed.results[i].err != 0)
      continue;
    if (g->n == g->cap) {
      g->cap = g->cap ? 2 * g->cap : 1024;
      g->acked = realloc(g->acked, g->cap * sizeof *g->acked);
      REQUIRE(g->acked, "realloc");
    }
    acked_t *a = &g->acked[g->n++];
    memcpy(a->id, batch[i].ev.id, PSL_UUID_BYTES);
    a->seq = m->u.pushed.results[i].seq;
  }
  atomic_fetch_add(&gs_total, m->u.pushed.n);
}

/* Push GS_DEPTH pushes ahead of the answers, so that the stop always finds pushes waiting
 * for their commit; record every event answered stored, until the connection ends. */
static void *gs_pusher(void *arg) {
  gs_t *g = arg;
  uint8_t p[PSL_UUID_BYTES];
  evgen_t *batch = calloc((size_t)GS_DEPTH * GS_BATCH, sizeof *batch);
  psl_event_t evs[GS_BATCH];
  char err[1024], desc[512];
  uint64_t sent = 0, answered = 0;
  wsc_t *c = NULL;
  REQUIRE(batch, "calloc");
  REQUIRE(tcli_open(&c, g->port, g->token, "laptop-1", NULL, err, sizeof err) == 0,
          "pusher %d: %s", g->idx, err);
  evgen_uuid(p);
  for (;;) {
    while (sent - answered < GS_DEPTH) {
      evgen_t *b = &batch[(sent % GS_DEPTH) * GS_BATCH];
      psl_msg_t m;
      for (int i = 0; i < GS_BATCH; i++) {
        if (sent == 0 && i == 0)
          evgen_referred(&b[0], p, "94", "Stop Test");
        else
          evgen_interview(&b[i], p, "94", PSL_EXPECT_ANY, 0);
        evs[i] = b[i].ev;
      }
      tcli_push_msg(&m, ++sent, evs, GS_BATCH);
      if (wsc_send_msg(c, &m) != 0) {
        snprintf(g->end, sizeof g->end, "send: %.200s", wsc_error(c));
        goto done;
      }
    }
    psl_msg_t m;
    if (tcli_expect(c, PSL_MSG_NONE, T_MS, &m, err, sizeof err) != 0) {
      snprintf(g->end, sizeof g->end, "%.250s", err);
      goto done;
    }
    tcli_describe(&m, desc, sizeof desc);
    if (m.t != PSL_MSG_PUSHED) { /* e.g. an `error` saying the server is stopping */
      snprintf(g->end, sizeof g->end, "%.250s", desc);
      psl_msg_free(&m);
      goto done;
    }
    REQUIRE(m.has_id && m.id == answered + 1 && m.u.pushed.n == GS_BATCH,
            "pusher %d: expected the pushed of push %llu, got %s", g->idx,
            (unsigned long long)answered + 1, desc);
    gs_record(g, &batch[(answered % GS_DEPTH) * GS_BATCH], &m);
    answered++;
    psl_msg_free(&m);
  }
done:
  wsc_free(c);
  free(batch);
  return NULL;
}

/* Stop the server with sig while GS_PUSHERS pushers keep GS_DEPTH pushes in flight; restart
 * it on the same folder: every event answered stored must be there, at the seq answered. */
static void stop_under_load(int sig) {
  fx_t f;
  gs_t g[GS_PUSHERS];
  pthread_t th[GS_PUSHERS];
  coll_t k;
  fx_start(&f);
  atomic_store(&gs_total, 0);
  for (int i = 0; i < GS_PUSHERS; i++) {
    g[i] = (gs_t){.port = f.srv.port, .token = f.coord, .idx = i};
    REQUIRE(pthread_create(&th[i], NULL, gs_pusher, &g[i]) == 0, "pthread_create");
  }
  for (int i = 0; i < 500 && atomic_load(&gs_total) < GS_MIN_ANSWERED; i++)
    usleep(10000);
  REQUIRE(atomic_load(&gs_total) >= GS_MIN_ANSWERED,
          "pushers got only %zu events answered in 5 s", atomic_load(&gs_total));

  REQUIRE(kill(f.srv.pid, sig) == 0, "kill");
  for (int i = 0; i < 1000 && srv_running(&f.srv); i++)
    usleep(10000);
  REQUIRE(!srv_running(&f.srv), "the server did not exit within 10 s of signal %d", sig);
  if (sig == SIGTERM)
    REQUIRE(WIFEXITED(f.srv.status) && WEXITSTATUS(f.srv.status) == 0,
            "the server's exit after SIGTERM: wait status 0x%x (exit %d, signal %d)",
            f.srv.status, WIFEXITED(f.srv.status) ? WEXITSTATUS(f.srv.status) : -1,
            WIFSIGNALED(f.srv.status) ? WTERMSIG(f.srv.status) : 0);
  for (int i = 0; i < GS_PUSHERS; i++)
    pthread_join(th[i], NULL);

  REQUIRE(srv_start(&f.srv, 0) == 0, "restart: %s", f.srv.err);
  wsc_t *c = open_coord(&f);
  sub_all(c, 1, 0, 8, NULL, NULL, 1, &k);
  wsc_close(c);
  size_t answered = 0;
  for (int i = 0; i < GS_PUSHERS; i++)
    for (size_t j = 0; j < g[i].n; j++) {
      const acked_t *a = &g[i].acked[j];
      answered++;
      REQUIRE(a->seq >= 1 && a->seq <= k.n, "pusher %d: answered seq %llu, the log after the "
              "restart ends at %zu (its connection ended with: %s)", i,
              (unsigned long long)a->seq, k.n, g[i].end);
      REQUIRE(memcmp(k.v[a->seq - 1].id, a->id, PSL_UUID_BYTES) == 0,
              "pusher %d: seq %llu after the restart is not the event answered with it", i,
              (unsigned long long)a->seq);
    }
  REQUIRE(answered > 0, "nothing answered");
  for (int i = 0; i < GS_PUSHERS; i++)
    free(g[i].acked);
  coll_free(&k);
  fx_stop(&f);
}

TEST_T(server, graceful_stop_keeps_every_answered_push, 90) { stop_under_load(SIGTERM); }

/* BRIEF §4: acknowledged only once durable, never lost through kill -9. */
TEST_T(server, kill9_keeps_every_answered_push, 90) { stop_under_load(SIGKILL); }
