/*
 * test-client.c — the field client library and CLI (area `client`).
 *
 * Unit tests of the store (outbox, replica, refused, reset) on a real LMDB in a temporary
 * folder; then the must-holds of the client against the real server (tests/support/srv.h):
 * offline appends then one sync; SIGKILL of `passerelle sync` at random points; two offline
 * writers on one participant; a server replaced by a new log; live follow and reconnection.
 * The reference is the server's own log, read with psl_log_read once the server is stopped.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "client_int.h"
#include "passerelle.h"
#include "psl_log.h"
#include "psl_proto.h"
#include "support/mpw.h"
#include "support/srv.h"

/* A sync on loopback takes milliseconds; ASan and a loaded CI machine get a wide bound. */
#define SYNC_MS 60000

/* ---- events */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void stream_of(char *out, const uint8_t pid[16]) {
  char u[PSL_UUID_STR + 1];
  psl_uuid_format(pid, u);
  snprintf(out, PSL_MAX_STREAM, "participant/%s", u);
}

static int append_referral(psl_client_t *c, const char *terr, uint8_t pid[16],
                           uint8_t evid[16]) {
  psl_buf_t d, p;
  mpw_t w;
  char stream[PSL_MAX_STREAM];
  psl_buf_init(&d, 0);
  psl_buf_init(&p, 0);
  mpw_init(&w, &d);
  mpw_map(&w, 8);
  mpw_str(&w, "programme"), mpw_str(&w, "rsa93");
  mpw_str(&w, "site"), mpw_str(&w, "ma-villepinte");
  mpw_str(&w, "source"), mpw_str(&w, "spip");
  mpw_str(&w, "justice"), mpw_str(&w, "detained");
  mpw_str(&w, "gender"), mpw_str(&w, "m");
  mpw_str(&w, "birth_year"), mpw_int(&w, 1990);
  mpw_str(&w, "education"), mpw_str(&w, "3");
  mpw_str(&w, "rsa"), mpw_bool(&w, 1);
  mpw_init(&w, &p);
  mpw_map(&w, 1);
  mpw_str(&w, "name"), mpw_str(&w, "Test Person");
  psl_uuid_v7(pid, now_ms());
  stream_of(stream, pid);
  psl_client_new_event_t ev = {stream, "participant.referred", terr, 0, psl_buf_data(&d), d.len,
                               psl_buf_data(&p), p.len, 0};
  char why[160];
  int rc = psl_client_append(c, &ev, evid, why, sizeof why);
  if (rc)
    fprintf(stderr, "  append referral: %s %s\n", psl_err_name(rc), why);
  psl_buf_free(&d);
  psl_buf_free(&p);
  return rc;
}

static int append_interview_x(psl_client_t *c, const uint8_t pid[16], const char *terr,
                              int64_t expect, uint8_t evid[16]) {
  psl_buf_t d;
  mpw_t w;
  char stream[PSL_MAX_STREAM];
  psl_buf_init(&d, 0);
  mpw_init(&w, &d);
  mpw_map(&w, 3);
  mpw_str(&w, "minutes"), mpw_int(&w, 45);
  mpw_str(&w, "place"), mpw_str(&w, "detention");
  mpw_str(&w, "topics"), mpw_array(&w, 2), mpw_str(&w, "cv"), mpw_str(&w, "housing");
  stream_of(stream, pid);
  psl_client_new_event_t ev = {stream, "interview.held", terr, 0, psl_buf_data(&d), d.len,
                               NULL, 0, expect};
  char why[160];
  int rc = psl_client_append(c, &ev, evid, why, sizeof why);
  if (rc)
    fprintf(stderr, "  append interview: %s %s\n", psl_err_name(rc), why);
  psl_buf_free(&d);
  return rc;
}

static int append_interview(psl_client_t *c, const uint8_t pid[16], const char *terr,
                            uint8_t evid[16]) {
  return append_interview_x(c, pid, terr, PSL_EXPECT_ANY, evid);
}

/* ---- clients */

static psl_client_t *client_open_opts(const char *name, psl_client_opts_t *o) {
  char home[PATH_MAX];
  psl_client_t *c = NULL;
  snprintf(home, sizeof home, "%s/%s", psl_test_tmpdir(), name);
  o->home = home;
  lws_set_log_level(LLL_ERR, NULL); /* the app's choice; this test process is the app */
  CHECK_OK(psl_client_open(&c, o));
  return c;
}

/* The tests of sync semantics run without permessage-deflate (see client/deflate_catch_up,
 * which runs with it). */
static psl_client_t *client_open(const char *name) {
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.no_deflate = 1;
  return client_open_opts(name, &o);
}

static uint64_t outbox_count(psl_client_t *c) {
  psl_client_status_t st;
  CHECK_OK(psl_client_status(c, &st));
  return st.outbox;
}

/* ---- the server */

typedef struct {
  srv_t srv;
  char url[64];
  char tok[PSL_TOKEN_LEN + 1];
} env_t;

static void env_init(env_t *e, const char *name) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/%s", psl_test_tmpdir(), name);
  CHECK_OK(srv_init(&e->srv, psl_test_bindir(), dir));
  CHECK_OK(srv_token(&e->srv, PSL_ROLE_CASEWORKER, "93", "alice", "phone-a", e->tok));
}

static void env_start(env_t *e) {
  int rc = srv_start(&e->srv, 0);
  if (rc)
    fprintf(stderr, "  srv_start: %s\n", e->srv.err);
  CHECK_OK(rc);
  snprintf(e->url, sizeof e->url, "ws://127.0.0.1:%u", e->srv.port);
}

static void login(psl_client_t *c, env_t *e, const char *tok) {
  CHECK_OK(psl_client_login(c, e->url, tok ? tok : e->tok));
}

/* ---- the server's log, the reference */

typedef struct {
  uint64_t seq;
  uint8_t id[16];
} rec_t;

typedef struct {
  rec_t *r;
  size_t n, cap;
} recs_t;

static void recs_add(recs_t *v, uint64_t seq, const uint8_t id[16]) {
  if (v->n == v->cap) {
    v->cap = v->cap ? v->cap * 2 : 1024;
    v->r = realloc(v->r, v->cap * sizeof *v->r);
    CHECK(v->r);
  }
  v->r[v->n].seq = seq;
  memcpy(v->r[v->n].id, id, 16);
  v->n++;
}

static int log_rec(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                   size_t len) {
  psl_event_t ev;
  CHECK_OK(psl_event_decode_stored(canon, len, &ev, NULL));
  recs_add(arg, seq, ev.id);
  return 0;
}

/* Every event of the (stopped) server's log in territory terr (NULL: all). */
static recs_t read_log(env_t *e, const char *terr) {
  psl_log_t *log;
  recs_t v = {0};
  psl_str_t t = psl_str(terr);
  psl_filter_t f = {terr ? &t : NULL, terr ? 1 : 0, NULL, 0};
  CHECK(!srv_running(&e->srv));
  CHECK_OK(psl_log_open(&log, e->srv.dir, NULL));
  uint64_t head = psl_log_head(log, NULL), after = 0, last = 0;
  while (after < head) {
    CHECK_OK(psl_log_read(log, after, &f, 1u << 20, 0, log_rec, &v, &last));
    CHECK(last > after);
    after = last;
  }
  psl_log_close(log);
  return v;
}

static int replica_rec(void *arg, const psl_client_event_t *ev) {
  recs_add(arg, ev->seq, ev->id);
  return 0;
}

static recs_t read_replica(psl_client_t *c) {
  recs_t v = {0};
  CHECK_OK(psl_client_replica_read(c, 0, replica_rec, &v));
  return v;
}

static void check_same(const recs_t *a, const recs_t *b) {
  CHECK_EQ(a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    CHECK_EQ(a->r[i].seq, b->r[i].seq);
    CHECK_MEM(a->r[i].id, b->r[i].id, 16);
  }
}

static int cmp_id(const void *x, const void *y) { return memcmp(x, y, 16); }

/* Each of ids[0..n) appears exactly once in the log, and nothing else is there. */
static void check_exactly_once(const recs_t *log, uint8_t (*ids)[16], size_t n) {
  uint8_t(*sorted)[16] = malloc(log->n * 16 + 1);
  CHECK(sorted);
  for (size_t i = 0; i < log->n; i++)
    memcpy(sorted[i], log->r[i].id, 16);
  qsort(sorted, log->n, 16, cmp_id);
  for (size_t i = 1; i < log->n; i++)
    CHECK(memcmp(sorted[i - 1], sorted[i], 16) != 0); /* no event stored twice */
  for (size_t i = 0; i < n; i++)
    CHECK(bsearch(ids[i], sorted, log->n, 16, cmp_id) != NULL); /* nothing lost */
  CHECK_EQ(log->n, n);
  free(sorted);
}

/* ================================================================ unit: the store */

TEST(client, outbox_survives_reopen_in_order) {
  uint8_t pid[16], ids[5][16];
  psl_client_t *c = client_open("a");
  CHECK_OK(append_referral(c, "93", pid, ids[0]));
  for (int i = 1; i < 5; i++)
    CHECK_OK(append_interview(c, pid, "93", ids[i]));
  psl_client_close(c);
  c = client_open("a");
  CHECK_EQ(outbox_count(c), 5);
  recs_t v = {0};
  CHECK_OK(psl_client_outbox_read(c, replica_rec, &v));
  CHECK_EQ(v.n, 5);
  for (int i = 0; i < 5; i++)
    CHECK_MEM(v.r[i].id, ids[i], 16);
  /* Ids are UUIDv7: version 7, variant 10. */
  CHECK_EQ(ids[0][6] >> 4, 7);
  CHECK_EQ(ids[0][8] >> 6, 2);
  free(v.r);
  psl_client_close(c);
}

TEST(client, append_refuses_invalid_events) {
  uint8_t pid[16], id[16];
  char why[160];
  psl_client_t *c = client_open("a");
  /* An interview for a participant nobody knows: the stream's first event must be a referral. */
  psl_uuid_v7(pid, now_ms());
  CHECK_EQ(append_interview(c, pid, "93", id), PSL_EINVALID);
  /* Not a map as data. */
  static const uint8_t notmap[] = {0x01};
  psl_client_new_event_t ev = {"participant/0190f5a2-7c3e-7b1d-9a4f-3c2b1a0f9e8d",
                               "participant.referred", "93", 0, notmap, 1, NULL, 0, 0};
  CHECK_EQ(psl_client_append(c, &ev, id, why, sizeof why), PSL_EINVALID);
  CHECK(why[0] != '\0');
  /* A referral without its name. */
  psl_buf_t d;
  mpw_t w;
  psl_buf_init(&d, 0);
  mpw_init(&w, &d);
  mpw_map(&w, 1), mpw_str(&w, "programme"), mpw_str(&w, "rsa93");
  ev.data = psl_buf_data(&d);
  ev.data_len = d.len;
  CHECK_EQ(psl_client_append(c, &ev, id, why, sizeof why), PSL_EINVALID);
  CHECK(strstr(why, "Test") == NULL); /* names keys, never values */
  CHECK_EQ(outbox_count(c), 0);
  psl_buf_free(&d);
  psl_client_close(c);
}

TEST(client, login_checks_url) {
  psl_client_t *c = client_open("a");
  CHECK_EQ(psl_client_login(c, "http://x", "t"), PSL_EINVALID);
  CHECK_EQ(psl_client_login(c, "ws://", "t"), PSL_EINVALID);
  CHECK_EQ(psl_client_login(c, "ws://h:1", ""), PSL_EINVALID);
  CHECK_OK(psl_client_login(c, "wss://example.org:8443/sync", "psl_x"));
  psl_client_status_t st;
  CHECK_OK(psl_client_status(c, &st));
  CHECK_STR(st.url, "wss://example.org:8443/sync");
  /* The store is private to the device's user. */
  char path[PATH_MAX];
  struct stat sb;
  snprintf(path, sizeof path, "%s/a/store/data.mdb", psl_test_tmpdir());
  CHECK_OK(stat(path, &sb));
  CHECK_EQ(sb.st_mode & 0077, 0);
  psl_client_close(c);
  /* Not logged in: sync says so. */
  c = client_open("b");
  CHECK_EQ(psl_client_sync(c, 1000), PSL_EINVALID);
  psl_client_close(c);
}

/* A stored event as a chunk would bring it. */
static void stored_event(psl_event_t *ev, uint64_t seq, const char *stream, psl_buf_t *d) {
  mpw_t w;
  psl_buf_init(d, 0);
  mpw_init(&w, d);
  mpw_map(&w, 0);
  memset(ev, 0, sizeof *ev);
  psl_uuid_v7(ev->id, now_ms());
  ev->stream = psl_str(stream);
  ev->type = psl_str("appointment.missed");
  ev->at = now_ms();
  ev->terr = psl_str("93");
  ev->data.ptr = psl_buf_data(d);
  ev->data.len = d->len;
  ev->seq = seq;
  ev->ver = 1;
  ev->rec = now_ms();
  ev->by = psl_str("alice");
  ev->dev = psl_str("phone");
}

TEST(client, replica_put_dedups_and_reset_keeps_outbox) {
  uint8_t pid[16], id[16];
  psl_client_t *c = client_open("a");
  psl__cstore_t *s = &c->store;
  psl_buf_t scratch, d;
  psl_event_t ev;
  MDB_txn *txn;
  size_t bytes = 0;
  CHECK_OK(append_referral(c, "93", pid, id));
  psl_buf_init(&scratch, 0);
  stored_event(&ev, 7, "participant/0190f5a2-7c3e-7b1d-9a4f-3c2b1a0f9e8d", &d);
  CHECK_OK(psl__store_wr(s, &txn));
  CHECK_OK(psl__replica_put(s, txn, &ev, &scratch, &bytes));
  CHECK(bytes > PSL_HASH_BYTES);
  CHECK_EQ(psl__replica_put(s, txn, &ev, &scratch, &bytes), PSL_ECONFLICT);
  ev.seq = 3; /* an older seq (a transferred participant's history) goes in too */
  CHECK_OK(psl__replica_put(s, txn, &ev, &scratch, &bytes));
  psl__ckpt_t ck = {"0190f5a2-7c3e-7b1d-9a4f-3c2b1a0f9e8d", 7};
  CHECK_OK(psl__ckpt_put(s, txn, &ck));
  CHECK_OK(psl__store_commit(txn));
  recs_t v = read_replica(c);
  CHECK_EQ(v.n, 2);
  CHECK_EQ(v.r[0].seq, 3);
  CHECK_EQ(v.r[1].seq, 7);
  free(v.r);
  /* Reset: replica gone, checkpoint (new id, 0), outbox kept. */
  CHECK_OK(psl__store_wr(s, &txn));
  CHECK_OK(psl__store_reset(s, txn, "0190f5a2-0000-7000-8000-000000000000"));
  CHECK_OK(psl__store_commit(txn));
  psl_client_status_t st;
  CHECK_OK(psl_client_status(c, &st));
  CHECK_EQ(st.replica_events, 0);
  CHECK_EQ(st.checkpoint, 0);
  CHECK_EQ(st.outbox, 1);
  CHECK_STR(st.server_id, "0190f5a2-0000-7000-8000-000000000000");
  psl_buf_free(&scratch);
  psl_buf_free(&d);
  psl_client_close(c);
}

static int count_refusal(void *arg, const psl_client_refusal_t *r) {
  CHECK_EQ(r->err, PSL_ECONFLICT);
  CHECK_EQ(r->server_ver, 4);
  CHECK_STR(r->msg, "stream moved");
  CHECK_STR(r->event->type, "participant.referred");
  (*(int *)arg)++;
  return 0;
}

TEST(client, refused_keeps_event_and_reason) {
  uint8_t pid[16], id[16];
  psl_client_t *c = client_open("a");
  MDB_txn *txn;
  int n = 0;
  CHECK_OK(append_referral(c, "93", pid, id));
  CHECK_OK(psl__store_wr(&c->store, &txn));
  CHECK_OK(psl__refuse(&c->store, txn, 1, PSL_ECONFLICT, 4, psl_str("stream moved"), now_ms()));
  CHECK_OK(psl__store_commit(txn));
  CHECK_EQ(outbox_count(c), 0);
  CHECK_OK(psl_client_refused_read(c, count_refusal, &n));
  CHECK_EQ(n, 1);
  psl_client_close(c);
}

TEST(client, unreachable_server_keeps_outbox) {
  uint8_t pid[16], id[16];
  psl_client_t *c = client_open("a");
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%u", srv_free_port());
  CHECK_OK(psl_client_login(c, url, "psl_nothing"));
  CHECK_OK(append_referral(c, "93", pid, id));
  CHECK_EQ(psl_client_sync(c, SYNC_MS), PSL_EUNAVAILABLE);
  CHECK_EQ(outbox_count(c), 1);
  psl_client_close(c);
}

/* ================================================================ against the server */

#define N_EVENTS 1000
#define N_PARTICIPANTS 50

/* 50 referrals then interviews round-robin: n events in all; ids recorded. */
static void append_many(psl_client_t *c, size_t n, uint8_t (*ids)[16], uint8_t (*pids)[16],
                        size_t np) {
  for (size_t i = 0; i < n; i++) {
    if (i < np)
      CHECK_OK(append_referral(c, "93", pids[i], ids[i]));
    else
      CHECK_OK(append_interview(c, pids[i % np], "93", ids[i]));
  }
}

TEST_T(client, offline_1000_then_sync_exactly_once, 180) {
  env_t e;
  static uint8_t ids[N_EVENTS][16], pids[N_PARTICIPANTS][16];
  psl_client_t *c = client_open("dev");
  env_init(&e, "srv");
  /* Server down: everything is recorded, nothing leaves. */
  snprintf(e.url, sizeof e.url, "ws://127.0.0.1:%u", srv_free_port());
  login(c, &e, NULL);
  append_many(c, N_EVENTS, ids, pids, N_PARTICIPANTS);
  CHECK_EQ(psl_client_sync(c, SYNC_MS), PSL_EUNAVAILABLE);
  CHECK_EQ(outbox_count(c), N_EVENTS);
  /* Server up. */
  env_start(&e);
  login(c, &e, NULL);
  CHECK_OK(psl_client_sync(c, SYNC_MS));
  psl_client_status_t st;
  CHECK_OK(psl_client_status(c, &st));
  CHECK_EQ(st.outbox, 0);
  CHECK_EQ(st.refused, 0);
  CHECK_EQ(st.replica_events, N_EVENTS);
  CHECK_EQ(st.checkpoint, N_EVENTS);
  CHECK(st.last_sync_ms > 0);
  CHECK_STR(st.role, "caseworker");
  /* A second sync is a no-op. */
  CHECK_OK(psl_client_sync(c, SYNC_MS));
  CHECK_EQ(outbox_count(c), 0);
  /* The participant projections are there, from the same fold as the server's. */
  char *json = NULL;
  CHECK_OK(psl_client_participant_json(c, pids[0], &json));
  CHECK(strstr(json, "\"pending\":0") != NULL);
  CHECK(strstr(json, "\"interviews\":19") != NULL); /* (1000 - 50) / 50 */
  free(json);
  recs_t rep = read_replica(c);
  psl_client_close(c);
  CHECK_OK(srv_stop(&e.srv, 0));
  recs_t log = read_log(&e, "93");
  check_exactly_once(&log, ids, N_EVENTS);
  check_same(&log, &rep);
  free(log.r);
  free(rep.r);
}

/* Run `passerelle --home home sync` as a child; returns its pid. */
static pid_t spawn_sync(const char *home, int quiet) {
  char bin[PATH_MAX];
  snprintf(bin, sizeof bin, "%s/passerelle", psl_test_bindir());
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 1);
    if (quiet)
      dup2(fd, 2);
    execl(bin, bin, "--no-deflate", "--home", home, "sync", "--timeout", "60", (char *)NULL);
    _exit(127);
  }
  return pid;
}

#define KILL_ROUNDS 20
#define KILL_EXTRA 150 /* events appended before each round: every sync pushes and catches up */

static void sync_to_completion(const char *home) {
  pid_t pid = spawn_sync(home, 0);
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Kill `passerelle sync` at a random instant, then sync to completion, 20 times; after each
 * round the server's log (read through a second client's replica: a subscriber) holds every
 * event recorded so far exactly once, and the killed client's outbox is empty. */
TEST_T(client, sigkill_during_sync_loses_nothing_stores_once, 240) {
  env_t e;
  enum { TOTAL = N_EVENTS + KILL_ROUNDS * KILL_EXTRA };
  static uint8_t ids[TOTAL][16], pids[N_PARTICIPANTS][16];
  char home[PATH_MAX];
  uint64_t seed = (uint64_t)now_ms() ^ (uint64_t)getpid();
  const char *env_seed = getenv("PSL_TEST_SEED");
  if (env_seed)
    seed = strtoull(env_seed, NULL, 10);
  fprintf(stderr, "  seed %llu (PSL_TEST_SEED to replay)\n", (unsigned long long)seed);
  snprintf(home, sizeof home, "%s/dev", psl_test_tmpdir());
  env_init(&e, "srv");
  env_start(&e);
  psl_client_t *c = client_open("dev"), *checker = client_open("checker");
  login(c, &e, NULL);
  login(checker, &e, NULL);
  append_many(c, N_EVENTS, ids, pids, N_PARTICIPANTS);
  psl_client_close(c);
  size_t n = N_EVENTS;
  int killed_mid = 0;
  /* Kill within the first span_us of each sync: a sync takes ~5-40 ms here (exec, hello,
   * push, catch-up).  When a child was already done at its kill, the span shrinks, so that
   * the kills land inside syncs on fast and slow machines alike. */
  unsigned span_us = 40000;
  for (int round = 0; round < KILL_ROUNDS; round++) {
    if (round > 0) {
      c = client_open("dev");
      for (int k = 0; k < KILL_EXTRA; k++, n++)
        CHECK_OK(append_interview(c, pids[n % N_PARTICIPANTS], "93", ids[n]));
      psl_client_close(c);
    }
    unsigned delay_us = (unsigned)(psl_test_rand(&seed) % span_us);
    pid_t pid = spawn_sync(home, 1);
    usleep(delay_us);
    kill(pid, SIGKILL);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    killed_mid += WIFSIGNALED(status);
    if (!WIFSIGNALED(status) && span_us > 4000)
      span_us = span_us * 3 / 4;
    /* Restart and sync: nothing lost, nothing twice. */
    sync_to_completion(home);
    CHECK_OK(psl_client_sync(checker, SYNC_MS));
    recs_t seen = read_replica(checker);
    check_exactly_once(&seen, ids, n);
    free(seen.r);
    c = client_open("dev");
    CHECK_EQ(outbox_count(c), 0);
    psl_client_close(c);
  }
  fprintf(stderr, "  %d of %d syncs killed mid-way\n", killed_mid, KILL_ROUNDS);
  CHECK(killed_mid >= KILL_ROUNDS / 4);
  c = client_open("dev");
  psl_client_status_t st;
  CHECK_OK(psl_client_status(c, &st));
  CHECK_EQ(st.refused, 0);
  recs_t rep = read_replica(c);
  psl_client_close(c);
  psl_client_close(checker);
  CHECK_OK(srv_stop(&e.srv, 0));
  recs_t log = read_log(&e, "93");
  CHECK_EQ(n, TOTAL - KILL_EXTRA);
  check_exactly_once(&log, ids, n);
  check_same(&log, &rep);
  free(log.r);
  free(rep.r);
}

/* The participant JSON without what depends on the reading instant. */
static char *state_of(psl_client_t *c, const uint8_t pid[16]) {
  char *json = NULL;
  CHECK_OK(psl_client_participant_json(c, pid, &json));
  return json;
}

TEST_T(client, two_offline_writers_same_participant, 120) {
  env_t e;
  char tok_b[PSL_TOKEN_LEN + 1];
  uint8_t pid[16], ref_id[16], ia[16], ib[16];
  env_init(&e, "srv");
  CHECK_OK(srv_token(&e.srv, PSL_ROLE_CASEWORKER, "93", "bob", "phone-b", tok_b));
  env_start(&e);
  psl_client_t *a = client_open("a"), *b = client_open("b");
  login(a, &e, NULL);
  login(b, &e, tok_b);
  CHECK_OK(append_referral(a, "93", pid, ref_id));
  CHECK_OK(psl_client_sync(a, SYNC_MS));
  CHECK_OK(psl_client_sync(b, SYNC_MS));
  /* Both offline: each records an interview of the same participant. */
  CHECK_OK(srv_stop(&e.srv, 0));
  CHECK_OK(append_interview(a, pid, "93", ia));
  CHECK_OK(append_interview(b, pid, "93", ib));
  char *pa = state_of(a, pid);
  CHECK(strstr(pa, "\"pending\":1") != NULL);
  free(pa);
  env_start(&e);
  login(a, &e, NULL);
  login(b, &e, tok_b);
  CHECK_OK(psl_client_sync(a, SYNC_MS));
  CHECK_OK(psl_client_sync(b, SYNC_MS));
  CHECK_OK(psl_client_sync(a, SYNC_MS));
  CHECK_EQ(outbox_count(a), 0);
  CHECK_EQ(outbox_count(b), 0);
  char *sa = state_of(a, pid), *sb = state_of(b, pid);
  CHECK(strstr(sa, "\"interviews\":2") != NULL);
  CHECK_STR(sa, sb);
  free(sa);
  free(sb);
  recs_t ra = read_replica(a), rb = read_replica(b);
  check_same(&ra, &rb);
  psl_client_close(a);
  psl_client_close(b);
  CHECK_OK(srv_stop(&e.srv, 0));
  recs_t log = read_log(&e, "93");
  uint8_t all[3][16];
  memcpy(all[0], ref_id, 16);
  memcpy(all[1], ia, 16);
  memcpy(all[2], ib, 16);
  check_exactly_once(&log, all, 3);
  check_same(&log, &ra);
  free(ra.r);
  free(rb.r);
  free(log.r);
}

TEST_T(client, replaced_server_resets_and_keeps_unsent, 120) {
  env_t e1, e2;
  uint8_t pid[16], ids[20][16], p2[16], n2[4][16];
  env_init(&e1, "srv1");
  env_start(&e1);
  psl_client_t *c = client_open("dev");
  login(c, &e1, NULL);
  for (int i = 0; i < 20; i++)
    CHECK_OK(i == 0 ? append_referral(c, "93", pid, ids[0]) : append_interview(c, pid, "93", ids[i]));
  CHECK_OK(psl_client_sync(c, SYNC_MS));
  psl_client_status_t st;
  CHECK_OK(psl_client_status(c, &st));
  CHECK_EQ(st.replica_events, 20);
  char old_id[64];
  snprintf(old_id, sizeof old_id, "%s", st.server_id);
  /* Offline: new work for a new participant. */
  CHECK_OK(srv_stop(&e1.srv, 0));
  CHECK_OK(append_referral(c, "93", p2, n2[0]));
  for (int i = 1; i < 4; i++)
    CHECK_OK(append_interview(c, p2, "93", n2[i]));
  /* The server comes back as a new log (restored elsewhere, say). */
  env_init(&e2, "srv2");
  env_start(&e2);
  login(c, &e2, NULL);
  CHECK_OK(psl_client_sync(c, SYNC_MS));
  CHECK_OK(psl_client_status(c, &st));
  CHECK(strcmp(st.server_id, old_id) != 0);
  CHECK_EQ(st.outbox, 0);
  CHECK_EQ(st.refused, 0);
  CHECK_EQ(st.replica_events, 4); /* the old log's events are gone, the unsent ones arrived */
  CHECK_EQ(st.checkpoint, 4);
  char *json = NULL;
  CHECK_EQ(psl_client_participant_json(c, pid, &json), PSL_ENOTFOUND);
  CHECK_OK(psl_client_participant_json(c, p2, &json));
  CHECK(strstr(json, "\"interviews\":3") != NULL);
  free(json);
  recs_t rep = read_replica(c);
  psl_client_close(c);
  CHECK_OK(srv_stop(&e2.srv, 0));
  recs_t log = read_log(&e2, "93");
  check_exactly_once(&log, n2, 4);
  check_same(&log, &rep);
  free(log.r);
  free(rep.r);
}

/* ---- live follow and refusals */

typedef struct {
  pthread_mutex_t mu;
  int events, refused, live;
  uint64_t refused_ver;
} watch_t;

static void w_event(void *arg, const psl_client_event_t *ev) {
  watch_t *w = arg;
  pthread_mutex_lock(&w->mu);
  w->events++;
  pthread_mutex_unlock(&w->mu);
}

static void w_refused(void *arg, const psl_client_refusal_t *r) {
  watch_t *w = arg;
  pthread_mutex_lock(&w->mu);
  w->refused++;
  w->refused_ver = r->server_ver;
  pthread_mutex_unlock(&w->mu);
}

static void w_state(void *arg, psl_client_state_t st, int err) {
  watch_t *w = arg;
  pthread_mutex_lock(&w->mu);
  if (st == PSL_CLIENT_LIVE)
    w->live++;
  pthread_mutex_unlock(&w->mu);
}

static int w_get(watch_t *w, int which) {
  pthread_mutex_lock(&w->mu);
  int v = which == 0 ? w->events : which == 1 ? w->refused : w->live;
  pthread_mutex_unlock(&w->mu);
  return v;
}

static void wait_for(watch_t *w, int which, int want) {
  for (int i = 0; i < 1500 && w_get(w, which) < want; i++)
    usleep(10000);
  CHECK(w_get(w, which) >= want);
}

TEST_T(client, follow_live_and_conflict_callback, 120) {
  env_t e;
  char tok_b[PSL_TOKEN_LEN + 1];
  uint8_t pid[16], id[16];
  watch_t w = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0};
  env_init(&e, "srv");
  CHECK_OK(srv_token(&e.srv, PSL_ROLE_CASEWORKER, "93", "bob", "phone-b", tok_b));
  env_start(&e);
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.no_deflate = 1;
  o.cb = (psl_client_callbacks_t){w_event, w_refused, w_state, &w};
  psl_client_t *a = client_open_opts("a", &o), *b = client_open("b");
  login(a, &e, NULL);
  login(b, &e, tok_b);
  CHECK_OK(psl_client_start(a, 1));
  CHECK_EQ(psl_client_start(a, 1), PSL_EAGAIN);
  wait_for(&w, 2, 1);
  /* Another device's events arrive live. */
  CHECK_OK(append_referral(b, "93", pid, id));
  CHECK_OK(append_interview(b, pid, "93", id));
  CHECK_OK(psl_client_sync(b, SYNC_MS));
  wait_for(&w, 0, 2);
  /* Our own append is pushed while live, and comes back as a stored event. */
  CHECK_OK(append_interview(a, pid, "93", id));
  wait_for(&w, 0, 3);
  /* A stale `expect` is a conflict: refused, kept, reported with the server's version. */
  CHECK_OK(append_interview_x(a, pid, "93", 1, id));
  wait_for(&w, 1, 1);
  CHECK_EQ(w.refused_ver, 3);
  CHECK_OK(psl_client_stop(a));
  psl_client_status_t st;
  CHECK_OK(psl_client_status(a, &st));
  CHECK_EQ(st.outbox, 0);
  CHECK_EQ(st.refused, 1);
  CHECK_EQ(st.replica_events, 3);
  psl_client_close(a);
  psl_client_close(b);
}

static int port_accepts(uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  if (fd >= 0)
    close(fd);
  return ok;
}

/* Start passerelled on a fixed port (srv_start picks a new one each time), with TLS when
 * cert is not NULL. */
static pid_t start_on_port_tls(env_t *e, uint16_t port, const char *cert, const char *key) {
  char bin[PATH_MAX], listen[32];
  snprintf(bin, sizeof bin, "%s/passerelled", psl_test_bindir());
  snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 1);
    dup2(fd, 2);
    if (cert)
      execl(bin, bin, "--data", e->srv.dir, "--listen", listen, "--tls-cert", cert, "--tls-key",
            key, (char *)NULL);
    else
      execl(bin, bin, "--data", e->srv.dir, "--listen", listen, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 500; i++) {
    int status = 0;
    char *body = NULL;
    if (cert) { /* no plain HTTP to ask /healthz: wait for the port to accept */
      if (port_accepts(port))
        return pid;
    } else if (srv_http_get(port, "/healthz", 200, &status, &body, NULL) == 0 &&
               status == 200) {
      free(body);
      return pid;
    }
    free(body);
    usleep(20000);
  }
  CHECK(!"server did not start");
  return pid;
}

static pid_t start_on_port(env_t *e, uint16_t port) {
  return start_on_port_tls(e, port, NULL, NULL);
}

TEST_T(client, follow_reconnects_with_backoff, 120) {
  env_t e;
  uint8_t pid[16], id[16];
  watch_t w = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0};
  uint16_t port = srv_free_port();
  env_init(&e, "srv");
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.no_deflate = 1;
  o.cb = (psl_client_callbacks_t){w_event, w_refused, w_state, &w};
  psl_client_t *a = client_open_opts("a", &o);
  snprintf(e.url, sizeof e.url, "ws://127.0.0.1:%u", port);
  login(a, &e, NULL);
  CHECK_OK(append_referral(a, "93", pid, id));
  /* Started while the server is down: it waits and retries. */
  CHECK_OK(psl_client_start(a, 1));
  usleep(300000);
  psl_client_status_t st;
  CHECK_OK(psl_client_status(a, &st));
  CHECK(st.state == PSL_CLIENT_WAITING || st.state == PSL_CLIENT_CONNECTING);
  pid_t srv = start_on_port(&e, port);
  wait_for(&w, 2, 1); /* early attempts back off by at most 0.5, 1, 2, 4 s */
  wait_for(&w, 0, 1);
  CHECK_EQ(outbox_count(a), 0);
  /* The server goes away and comes back: the client follows again. */
  kill(srv, SIGKILL);
  waitpid(srv, NULL, 0);
  CHECK_OK(append_interview(a, pid, "93", id));
  srv = start_on_port(&e, port);
  wait_for(&w, 2, 2);
  wait_for(&w, 0, 2);
  CHECK_OK(psl_client_stop(a));
  CHECK_EQ(outbox_count(a), 0);
  psl_client_close(a);
  kill(srv, SIGTERM);
  waitpid(srv, NULL, 0);
}

TEST_T(client, two_clients_in_one_process, 120) {
  env_t e;
  uint8_t pid[16], id[16];
  env_init(&e, "srv");
  env_start(&e);
  psl_client_t *a = client_open("a"), *b = client_open("b");
  login(a, &e, NULL);
  login(b, &e, NULL);
  CHECK_OK(append_referral(a, "93", pid, id));
  for (int i = 0; i < 300; i++)
    CHECK_OK(append_interview(a, pid, "93", id));
  CHECK_OK(psl_client_start(a, 0));
  CHECK_OK(psl_client_start(b, 0));
  for (int i = 0; i < 3000 && outbox_count(a) > 0; i++)
    usleep(10000);
  psl_client_stop(a);
  psl_client_stop(b);
  CHECK_OK(psl_client_sync(b, SYNC_MS));
  CHECK_OK(psl_client_sync(a, SYNC_MS));
  recs_t ra = read_replica(a), rb = read_replica(b);
  CHECK_EQ(ra.n, 301);
  check_same(&ra, &rb);
  free(ra.r);
  free(rb.r);
  psl_client_close(a);
  psl_client_close(b);
}

/* A large catch-up with permessage-deflate offered (the server accepts it). */
TEST_T(client, deflate_catch_up, 120) {
  env_t e;
  uint8_t pid[16], id[16];
  env_init(&e, "srv");
  env_start(&e);
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  psl_client_t *a = client_open("a"), *b = client_open_opts("b", &o);
  login(a, &e, NULL);
  login(b, &e, NULL);
  for (int i = 0; i < 2000; i++)
    CHECK_OK(i % 40 == 0 ? append_referral(a, "93", pid, id) : append_interview(a, pid, "93", id));
  CHECK_OK(psl_client_sync(a, SYNC_MS));
  CHECK_OK(psl_client_sync(b, SYNC_MS)); /* ~600 KiB of chunks, compressed */
  recs_t ra = read_replica(a), rb = read_replica(b);
  CHECK_EQ(rb.n, 2000);
  check_same(&ra, &rb);
  /* And an upload with it: a push of 1000 events. */
  for (int i = 0; i < 1000; i++)
    CHECK_OK(append_interview(b, pid, "93", id));
  CHECK_OK(psl_client_sync(b, SYNC_MS));
  CHECK_EQ(outbox_count(b), 0);
  free(ra.r);
  free(rb.r);
  psl_client_close(a);
  psl_client_close(b);
}

/* wss://: a server with a self-signed certificate is refused unless the client is told to
 * accept it (tls_insecure, for tests and labs). */
TEST_T(client, wss_self_signed, 120) {
  env_t e;
  char cert[PATH_MAX], key[PATH_MAX], cmd[3 * PATH_MAX];
  uint8_t pid[16], id[16];
  uint16_t port = srv_free_port();
  snprintf(cert, sizeof cert, "%s/cert.pem", psl_test_tmpdir());
  snprintf(key, sizeof key, "%s/key.pem", psl_test_tmpdir());
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 2 "
           "-subj /CN=localhost >/dev/null 2>&1",
           key, cert);
  CHECK_OK(system(cmd));
  env_init(&e, "srv");
  pid_t srv = start_on_port_tls(&e, port, cert, key);
  snprintf(e.url, sizeof e.url, "wss://127.0.0.1:%u", port);
  psl_client_t *strict = client_open("strict");
  login(strict, &e, NULL);
  CHECK_OK(append_referral(strict, "93", pid, id));
  CHECK_EQ(psl_client_sync(strict, SYNC_MS), PSL_EUNAVAILABLE);
  CHECK_EQ(outbox_count(strict), 1);
  psl_client_close(strict);
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.no_deflate = 1;
  o.tls_insecure = 1;
  psl_client_t *lab = client_open_opts("lab", &o);
  login(lab, &e, NULL);
  CHECK_OK(append_referral(lab, "93", pid, id));
  CHECK_OK(psl_client_sync(lab, SYNC_MS));
  CHECK_EQ(outbox_count(lab), 0);
  psl_client_status_t st;
  CHECK_OK(psl_client_status(lab, &st));
  CHECK_EQ(st.replica_events, 1);
  psl_client_close(lab);
  kill(srv, SIGTERM);
  waitpid(srv, NULL, 0);
}

/* The device's cap on the replica: catching up stops there, recording and pushing do not. */
TEST_T(client, replica_cap_stops_catch_up_not_pushes, 120) {
  env_t e;
  uint8_t pid[16], id[16];
  env_init(&e, "srv");
  env_start(&e);
  psl_client_t *a = client_open("a");
  login(a, &e, NULL);
  for (int i = 0; i < 1500; i++)
    CHECK_OK(i % 50 == 0 ? append_referral(a, "93", pid, id) : append_interview(a, pid, "93", id));
  CHECK_OK(psl_client_sync(a, SYNC_MS));
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.no_deflate = 1;
  o.replica_max_bytes = 64 * 1024; /* ~250 events of this shape */
  psl_client_t *small = client_open_opts("small", &o);
  login(small, &e, NULL);
  CHECK_OK(append_referral(small, "93", pid, id));
  CHECK_EQ(psl_client_sync(small, SYNC_MS), PSL_ETOO_BIG);
  psl_client_status_t st;
  CHECK_OK(psl_client_status(small, &st));
  CHECK_EQ(st.outbox, 0); /* pushed before catching up */
  CHECK(st.replica_bytes <= o.replica_max_bytes);
  CHECK(st.checkpoint < 1501);
  CHECK_EQ(st.err, PSL_ETOO_BIG);
  psl_client_close(small);
  psl_client_close(a);
}
