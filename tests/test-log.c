/*
 * test-log.c — the event log (server/log*.c) against a real LMDB in a temporary folder.
 *
 * Reads are checked against a model: an in-memory list of the events appended (what each
 * one is, its seq, its canonical length), from which the expected answer of any read —
 * after, filters, budgets, `last` — is computed independently of the log's indexes.
 * Durable commits cost ~0.2 ms each here, so tests append in batches.
 */
#include "harness.h"
#include "psl_log.h"
#include "support/logev.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- Events for tests: ids from a counter, a handful of streams and territories. */

static const char *const TERRS[] = {"75", "93", "94", "77"};
#define NTERRS 4

static psl_log_t *open_log(const char *dir, const psl_log_opts_t *opts) {
  psl_log_t *log = NULL;
  CHECK_OK(psl_log_open(&log, dir, opts));
  CHECK(log != NULL);
  return log;
}

/* ---- Collecting reads. */

#define MAXREC 8192

typedef struct {
  uint64_t seq[MAXREC];
  size_t len[MAXREC];
  size_t n;
  size_t stop_after; /* 0: never ask to stop */
} got_t;

static int collect(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                   size_t len) {
  got_t *g = arg;
  psl_event_t ev;
  CHECK(g->n < MAXREC);
  CHECK_OK(psl_event_decode_stored(canon, len, &ev, NULL));
  CHECK_EQ(ev.seq, seq);
  g->seq[g->n] = seq;
  g->len[g->n] = len;
  g->n++;
  return g->stop_after && g->n >= g->stop_after;
}

static void append_ok(psl_log_t *log, tev_t *t, size_t n) {
  psl_event_t evs[256];
  psl_push_result_t res[256];
  CHECK(n <= 256);
  for (size_t i = 0; i < n; i++)
    evs[i] = t[i].ev;
  CHECK_OK(psl_log_append(log, evs, n, res));
  for (size_t i = 0; i < n; i++) {
    CHECK_EQ(res[i].err, 0);
    t[i].ev.seq = evs[i].seq;
    t[i].ev.ver = evs[i].ver;
  }
}

/* ---- Tests. */

typedef struct {
  psl_event_t ev;
  uint8_t hash[PSL_HASH_BYTES];
  int called;
} one_t;

static int grab_one(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                    size_t len) {
  one_t *o = arg;
  static uint8_t copy[PSL_MAX_EVENT];
  memcpy(copy, canon, len);
  CHECK_OK(psl_event_decode_stored(copy, len, &o->ev, NULL));
  memcpy(o->hash, hash, PSL_HASH_BYTES);
  o->called++;
  return 0;
}

TEST(log, round_trip) {
  const char *dir = psl_test_tmpdir();
  psl_log_t *log = open_log(dir, NULL);
  tev_t t[10];
  psl_event_t evs[10];
  psl_push_result_t res[10];
  uint8_t zero[PSL_HASH_BYTES] = {0}, h[PSL_HASH_BYTES];

  CHECK_EQ(strlen(psl_log_id(log)), PSL_UUID_STR);
  CHECK_EQ(psl_log_head(log, h), 0);
  CHECK_MEM(h, zero, PSL_HASH_BYTES);
  for (int i = 0; i < 10; i++) {
    tev_fill(&t[i], (uint64_t)i + 1, i % 3, TERRS[i % NTERRS], PSL_EXPECT_ANY);
    evs[i] = t[i].ev;
  }
  CHECK_OK(psl_log_append(log, evs, 10, res));
  uint64_t vers[3] = {0};
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(res[i].err, 0);
    CHECK_EQ(res[i].dup, 0);
    CHECK_EQ(res[i].seq, i + 1);
    CHECK_EQ(res[i].ver, ++vers[i % 3]);
    CHECK_EQ(evs[i].seq, i + 1);
    CHECK(evs[i].rec > 1700000000000);
    CHECK(evs[i].has_hash);
  }
  CHECK_EQ(psl_log_head(log, h), 10);
  CHECK_MEM(h, evs[9].hash, PSL_HASH_BYTES);

  /* Every field comes back, and the chain is BLAKE2b(prev ‖ canonical). */
  uint8_t prev[PSL_HASH_BYTES] = {0};
  for (int i = 0; i < 10; i++) {
    one_t o = {0};
    psl_buf_t b;
    psl_buf_init(&b, 0);
    CHECK_OK(psl_log_get(log, (uint64_t)i + 1, grab_one, &o));
    CHECK_EQ(o.called, 1);
    CHECK_MEM(o.ev.id, t[i].ev.id, PSL_UUID_BYTES);
    CHECK(o.ev.stream.len == t[i].ev.stream.len &&
          memcmp(o.ev.stream.ptr, t[i].stream, o.ev.stream.len) == 0);
    CHECK(psl_str_eq(o.ev.type, "interview.held"));
    CHECK(psl_str_eq(o.ev.terr, TERRS[i % NTERRS]));
    CHECK(psl_str_eq(o.ev.by, "caseworker-1"));
    CHECK(psl_str_eq(o.ev.dev, "tablet-1"));
    CHECK_EQ(o.ev.at, t[i].ev.at);
    CHECK_EQ(o.ev.data.len, t[i].ev.data.len);
    CHECK_MEM(o.ev.data.ptr, t[i].data, t[i].ev.data.len);
    CHECK_EQ(o.ev.seq, i + 1);
    CHECK_EQ(o.ev.ver, res[i].ver);
    CHECK_EQ(o.ev.rec, evs[i].rec);
    CHECK_MEM(o.hash, evs[i].hash, PSL_HASH_BYTES);
    CHECK_OK(psl_event_encode_canonical(&b, &evs[i]));
    psl_chain_hash(prev, psl_buf_data(&b), b.len, h);
    CHECK_MEM(h, o.hash, PSL_HASH_BYTES);
    memcpy(prev, h, PSL_HASH_BYTES);
    psl_buf_free(&b);
  }
  one_t o = {0};
  CHECK_EQ(psl_log_get(log, 0, grab_one, &o), PSL_ENOTFOUND);
  CHECK_EQ(psl_log_get(log, 11, grab_one, &o), PSL_ENOTFOUND);

  got_t *g = calloc(1, sizeof *g);
  uint64_t last = 0;
  CHECK_OK(psl_log_read(log, 0, NULL, 0, 0, collect, g, &last));
  CHECK_EQ(g->n, 10);
  CHECK_EQ(last, 10);
  uint64_t ver;
  CHECK_OK(psl_log_stream_version(log, t[0].stream, strlen(t[0].stream), &ver));
  CHECK_EQ(ver, 4);
  CHECK_OK(psl_log_stream_version(log, "participant/none", 16, &ver));
  CHECK_EQ(ver, 0);
  uint64_t bad = 99;
  CHECK_OK(psl_log_verify(log, &bad, NULL, NULL));
  CHECK_EQ(bad, 0);
  free(g);
  psl_log_close(log);
}

TEST(log, dedup_forever) {
  const char *dir = psl_test_tmpdir();
  psl_log_t *log = open_log(dir, NULL);
  tev_t a, b, c;
  psl_event_t evs[4];
  psl_push_result_t res[4];

  /* In the same request: the second copy is a dup of the first. */
  tev_fill(&a, 100, 1, "93", PSL_EXPECT_ANY);
  tev_fill(&b, 101, 1, "93", PSL_EXPECT_ANY);
  evs[0] = a.ev;
  evs[1] = b.ev;
  evs[2] = a.ev;
  CHECK_OK(psl_log_append(log, evs, 3, res));
  CHECK(res[0].err == 0 && !res[0].dup && res[0].seq == 1 && res[0].ver == 1);
  CHECK(res[1].err == 0 && !res[1].dup && res[1].seq == 2 && res[1].ver == 2);
  CHECK(res[2].err == 0 && res[2].dup && res[2].seq == 1 && res[2].ver == 1);
  CHECK_EQ(evs[2].seq, 0);
  CHECK_EQ(evs[2].has_hash, 0);

  /* In a later batch, and before a conflict: a stored event is answered dup, whatever the
   * retry's expect says. */
  tev_fill(&c, 102, 2, "75", PSL_EXPECT_ANY);
  evs[0] = c.ev;
  evs[1] = b.ev;
  evs[2] = a.ev;
  evs[2].expect = 0; /* the stream exists: would be a conflict */
  CHECK_OK(psl_log_append(log, evs, 3, res));
  CHECK(res[0].err == 0 && !res[0].dup && res[0].seq == 3 && res[0].ver == 1);
  CHECK(res[1].err == 0 && res[1].dup && res[1].seq == 2 && res[1].ver == 2);
  CHECK(res[2].err == 0 && res[2].dup && res[2].seq == 1 && res[2].ver == 1);
  CHECK_EQ(psl_log_head(log, NULL), 3);

  /* A batch of dups only stores nothing. */
  evs[0] = a.ev;
  CHECK_OK(psl_log_append(log, evs, 1, res));
  CHECK(res[0].dup && res[0].seq == 1);
  CHECK_EQ(psl_log_head(log, NULL), 3);

  /* After close and reopen. */
  psl_log_close(log);
  log = open_log(dir, NULL);
  evs[0] = b.ev;
  evs[1] = c.ev;
  evs[2] = a.ev;
  CHECK_OK(psl_log_append(log, evs, 3, res));
  CHECK(res[0].dup && res[0].seq == 2 && res[0].ver == 2);
  CHECK(res[1].dup && res[1].seq == 3 && res[1].ver == 1);
  CHECK(res[2].dup && res[2].seq == 1 && res[2].ver == 1);
  CHECK_EQ(psl_log_head(log, NULL), 3);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  psl_log_close(log);
}

TEST(log, expect_and_refusals) {
  const char *dir = psl_test_tmpdir();
  psl_log_t *log = open_log(dir, NULL);
  tev_t t[9];
  psl_event_t evs[9];
  psl_push_result_t res[9];
  static uint8_t big[PSL_MAX_EVENT + 16];

  tev_fill(&t[0], 1, 7, "94", 0);              /* new stream, expect 0: ver 1 */
  tev_fill(&t[1], 2, 7, "94", 0);              /* exists now: conflict, ver 1 */
  tev_fill(&t[2], 3, 7, "94", 1);              /* expect 1: ver 2 */
  tev_fill(&t[3], 4, 7, "94", 5);              /* expect 5: conflict, ver 2 */
  tev_fill(&t[4], 5, 7, "94", PSL_EXPECT_ANY); /* any: ver 3 */
  tev_fill(&t[5], 6, 8, "94", -2);             /* invalid expect */
  tev_fill(&t[6], 7, 8, "", PSL_EXPECT_ANY);   /* invalid terr */
  tev_fill(&t[7], 8, 8, "94", PSL_EXPECT_ANY); /* too big */
  tev_fill(&t[8], 9, 8, "94", 0);              /* stored after all the refusals */
  for (int i = 0; i < 9; i++)
    evs[i] = t[i].ev;
  big[0] = 0x81;
  big[1] = 0xa1;
  big[2] = 'x';
  big[3] = 0xc6; /* bin32 */
  big[4] = 0;
  big[5] = (uint8_t)((PSL_MAX_EVENT >> 16) & 0xff);
  big[6] = (uint8_t)((PSL_MAX_EVENT >> 8) & 0xff);
  big[7] = (uint8_t)(PSL_MAX_EVENT & 0xff);
  evs[7].data.ptr = big;
  evs[7].data.len = 8 + PSL_MAX_EVENT;
  CHECK_OK(psl_log_append(log, evs, 9, res));
  CHECK(res[0].err == 0 && res[0].seq == 1 && res[0].ver == 1);
  CHECK(res[1].err == PSL_ECONFLICT && res[1].ver == 1);
  CHECK(res[2].err == 0 && res[2].seq == 2 && res[2].ver == 2);
  CHECK(res[3].err == PSL_ECONFLICT && res[3].ver == 2);
  CHECK(res[4].err == 0 && res[4].seq == 3 && res[4].ver == 3);
  CHECK(res[5].err == PSL_EINVALID && res[5].msg.len > 0);
  CHECK(res[6].err == PSL_EINVALID && res[6].msg.len > 0);
  CHECK(res[7].err == PSL_EINVALID && psl_str_eq(res[7].msg, "event too big"));
  CHECK(res[8].err == 0 && res[8].seq == 4 && res[8].ver == 1);
  CHECK_EQ(evs[1].seq, 0);
  CHECK_EQ(evs[7].seq, 0);

  /* A stream name with a 0x00 byte would break the streams index: refused. */
  char nul_stream[] = "participant/a\0b";
  tev_fill(&t[0], 20, 9, "75", PSL_EXPECT_ANY);
  evs[0] = t[0].ev;
  evs[0].stream.ptr = nul_stream;
  evs[0].stream.len = sizeof nul_stream - 1;
  CHECK_OK(psl_log_append(log, evs, 1, res));
  CHECK_EQ(res[0].err, PSL_EINVALID);

  CHECK_EQ(psl_log_head(log, NULL), 4);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  psl_log_close(log);
}

/* ---- The model test. */

#define MODEL_STREAMS 12
#define MODEL_EVENTS 3000

typedef struct {
  uint64_t seq;
  int stream_no;
  int terr;
  size_t len; /* canonical bytes */
} mev_t;

typedef struct {
  mev_t ev[MODEL_EVENTS + 256]; /* by seq, 1-based; the last batch may pass MODEL_EVENTS */
  uint64_t head;
} model_t;

typedef struct {
  int terr_on[NTERRS];
  int nterr;
  int stream_on[MODEL_STREAMS];
  int nstreams;
} mfilter_t;

static int model_selects(const mev_t *e, const mfilter_t *mf) {
  if (mf->nterr && !mf->terr_on[e->terr])
    return 0;
  if (mf->nstreams && !mf->stream_on[e->stream_no])
    return 0;
  return 1;
}

static char model_stream_names[MODEL_STREAMS][64];

static void check_read(psl_log_t *log, const model_t *m, uint64_t after, const mfilter_t *mf,
                       size_t max_bytes, size_t max_events, size_t stop_after, got_t *g) {
  psl_str_t terrs[2 * NTERRS], streams[2 * MODEL_STREAMS];
  psl_filter_t f = {terrs, 0, streams, 0};
  for (int i = 0; i < NTERRS; i++)
    if (mf->terr_on[i]) {
      terrs[f.nterr++] = psl_str(TERRS[i]);
      if (i % 2)
        terrs[f.nterr++] = psl_str(TERRS[i]); /* a repeated name counts once */
    }
  for (int i = 0; i < MODEL_STREAMS; i++)
    if (mf->stream_on[i])
      streams[f.nstreams++] = psl_str(model_stream_names[i]);

  /* Expected: the selected events after `after`, within the budget. */
  uint64_t want[MAXREC];
  size_t nwant = 0, bytes = 0, nsel = 0;
  int stopped = 0;
  for (uint64_t s = after + 1; s <= m->head; s++) {
    const mev_t *e = &m->ev[s];
    if (!model_selects(e, mf))
      continue;
    nsel++;
    if (stopped)
      continue;
    if (nwant > 0 && max_bytes && bytes + e->len > max_bytes) {
      stopped = 1;
      continue;
    }
    want[nwant++] = s;
    bytes += e->len;
    if ((max_events && nwant == max_events) || (stop_after && nwant == stop_after))
      stopped = 1;
  }

  uint64_t last = 12345;
  memset(g, 0, sizeof *g);
  g->stop_after = stop_after;
  CHECK_OK(psl_log_read(log, after, &f, max_bytes, max_events, collect, g, &last));
  CHECK_EQ(g->n, nwant);
  for (size_t i = 0; i < nwant; i++)
    CHECK_EQ(g->seq[i], want[i]);
  uint64_t covered = after > m->head ? after : m->head;
  if (nwant < nsel) /* stopped by the budget: last is the last delivered */
    CHECK_EQ(last, want[nwant - 1]);
  else if (stopped) /* the budget ran out on the last selected: either answer is right */
    CHECK(last == want[nwant - 1] || last == covered);
  else
    CHECK_EQ(last, covered);
}

TEST(log, reads_match_model) {
  const char *dir = psl_test_tmpdir();
  uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32), rs;
  const char *env = getenv("PSL_TEST_SEED");
  if (env)
    seed = strtoull(env, NULL, 0);
  rs = seed;
  printf("  log/reads_match_model seed=%llu (PSL_TEST_SEED to replay)\n",
         (unsigned long long)seed);
  fflush(stdout);
  psl_log_opts_t opts = {.max_batch = 300};
  psl_log_t *log = open_log(dir, &opts);
  model_t *m = calloc(1, sizeof *m);
  got_t *g = calloc(1, sizeof *g);
  tev_t *t = calloc(256, sizeof *t);
  psl_event_t evs[256];
  psl_push_result_t res[256];
  uint64_t vers[MODEL_STREAMS] = {0}, idn = 0;
  for (int i = 0; i < MODEL_STREAMS; i++)
    snprintf(model_stream_names[i], sizeof model_stream_names[i],
             "participant/00000000-0000-7000-8000-%012d", i);

  /* Append in batches of random size, with random expects and some re-sent ids; the model
   * predicts every result (stored, dup, conflict) in order. */
  int sn_of[256], tn_of[256];
  uint64_t *id_seq = calloc(2 * MODEL_EVENTS + 2, sizeof *id_seq);
  uint64_t *id_ver = calloc(2 * MODEL_EVENTS + 2, sizeof *id_ver);
  uint64_t idn_of[256], guess[MODEL_STREAMS];
  while (m->head < MODEL_EVENTS) {
    size_t n = 1 + psl_test_rand(&rs) % 200;
    memcpy(guess, vers, sizeof guess); /* what the batch would make of them if all passed */
    for (size_t i = 0; i < n; i++) {
      int sn = (int)(psl_test_rand(&rs) % MODEL_STREAMS);
      int tn = (int)(psl_test_rand(&rs) % NTERRS);
      uint64_t r = psl_test_rand(&rs) % 10;
      int64_t expect = r < 5   ? PSL_EXPECT_ANY
                       : r < 7 ? (int64_t)guess[sn]      /* right, counting this batch */
                       : r < 8 ? (int64_t)vers[sn]       /* right only if untouched so far */
                               : (int64_t)guess[sn] + 3; /* wrong */
      uint64_t id = r == 9 && idn > 0 ? 1 + psl_test_rand(&rs) % idn : ++idn;
      tev_fill(&t[i], 1000000 + id, sn, TERRS[tn], r == 9 ? PSL_EXPECT_ANY : expect);
      evs[i] = t[i].ev;
      sn_of[i] = sn;
      tn_of[i] = tn;
      idn_of[i] = id;
      guess[sn]++;
    }
    CHECK_OK(psl_log_append(log, evs, n, res));
    for (size_t i = 0; i < n; i++) {
      int sn = sn_of[i];
      int64_t ex = t[i].ev.expect;
      CHECK_EQ(res[i].err == 0 ? 0 : 1, res[i].err == PSL_ECONFLICT ? 1 : 0);
      if (id_seq[idn_of[i]]) { /* stored before: dup, whatever the expect */
        CHECK(res[i].err == 0 && res[i].dup);
        CHECK_EQ(res[i].seq, id_seq[idn_of[i]]);
        CHECK_EQ(res[i].ver, id_ver[idn_of[i]]);
        continue;
      }
      if ((ex == 0 && vers[sn] != 0) || (ex > 0 && (uint64_t)ex != vers[sn])) {
        CHECK_EQ(res[i].err, PSL_ECONFLICT);
        CHECK_EQ(res[i].ver, vers[sn]);
        continue;
      }
      CHECK(res[i].err == 0 && !res[i].dup);
      CHECK_EQ(res[i].seq, m->head + 1);
      CHECK_EQ(res[i].ver, ++vers[sn]);
      id_seq[idn_of[i]] = res[i].seq;
      id_ver[idn_of[i]] = res[i].ver;
      mev_t *e = &m->ev[++m->head];
      e->seq = m->head;
      e->stream_no = sn;
      e->terr = tn_of[i];
    }
  }
  free(id_ver);
  free(id_seq);
  /* Canonical lengths, from one unfiltered read. */
  uint64_t last;
  for (uint64_t after = 0; after < m->head;) {
    CHECK_OK(psl_log_read(log, after, NULL, 0, MAXREC, collect, memset(g, 0, sizeof *g), &last));
    for (size_t i = 0; i < g->n; i++) {
      CHECK_EQ(g->seq[i], after + 1 + i);
      m->ev[g->seq[i]].len = g->len[i];
    }
    after = last;
  }

  for (int round = 0; round < 400; round++) {
    mfilter_t mf;
    memset(&mf, 0, sizeof mf);
    uint64_t shape = psl_test_rand(&rs) % 4; /* none, terr, streams, both */
    if (shape & 1)
      for (int i = 0; i < NTERRS; i++)
        if (psl_test_rand(&rs) % 2)
          mf.terr_on[i] = 1, mf.nterr++;
    if (shape & 2)
      for (int i = 0; i < MODEL_STREAMS; i++)
        if (psl_test_rand(&rs) % 4 == 0)
          mf.stream_on[i] = 1, mf.nstreams++;
    uint64_t after = psl_test_rand(&rs) % (m->head + 20);
    size_t max_bytes = psl_test_rand(&rs) % 3 == 0 ? 0 : 1 + psl_test_rand(&rs) % 20000;
    size_t max_events = psl_test_rand(&rs) % 3 == 0 ? 0 : 1 + psl_test_rand(&rs) % 500;
    size_t stop_after = psl_test_rand(&rs) % 5 == 0 ? 1 + psl_test_rand(&rs) % 50 : 0;
    if (!max_bytes && !max_events && m->head - (after < m->head ? after : m->head) > MAXREC)
      max_events = MAXREC;
    check_read(log, m, after, &mf, max_bytes, max_events, stop_after, g);
  }

  /* Following a filtered read chunk by chunk reaches the head and sees each event once. */
  mfilter_t mf;
  memset(&mf, 0, sizeof mf);
  mf.terr_on[1] = 1, mf.nterr = 1;
  size_t seen = 0, expected = 0;
  for (uint64_t s = 1; s <= m->head; s++)
    expected += m->ev[s].terr == 1;
  psl_str_t terr93 = psl_str("93");
  psl_filter_t f93 = {&terr93, 1, NULL, 0};
  for (uint64_t after = 0; after < m->head;) {
    CHECK_OK(psl_log_read(log, after, &f93, 4096, 0, collect, memset(g, 0, sizeof *g), &last));
    CHECK(last > after);
    for (size_t i = 0; i < g->n; i++) {
      CHECK(g->seq[i] > after && g->seq[i] <= last);
      CHECK_EQ(m->ev[g->seq[i]].terr, 1);
    }
    seen += g->n;
    after = last;
  }
  CHECK_EQ(seen, expected);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  free(t);
  free(g);
  free(m);
  psl_log_close(log);
}

/* More streams than the writer's version cache has slots, several events of one stream in a
 * batch: every expect that counts right must pass, through the batch's own entries, the cache
 * and LMDB alike. */
#define MANY_STREAMS 5000
#define MANY_PER_BATCH 3000

static char many_names[MANY_STREAMS][64];

TEST(log, many_streams_versions) {
  const char *dir = psl_test_tmpdir();
  psl_log_t *log = open_log(dir, NULL);
  uint64_t *ver = calloc(MANY_STREAMS, sizeof *ver), rs = 42, idn = 0;
  psl_event_t *evs = calloc(MANY_PER_BATCH, sizeof *evs);
  psl_push_result_t *res = calloc(MANY_PER_BATCH, sizeof *res);
  int *sn = calloc(MANY_PER_BATCH, sizeof *sn);
  tev_t tmpl;
  for (int i = 0; i < MANY_STREAMS; i++)
    snprintf(many_names[i], sizeof many_names[i], "session/00000000-0000-7000-8000-%012d", i);
  for (int round = 0; round < 4; round++) {
    size_t n = round == 3 ? 50 : MANY_PER_BATCH; /* the last one inline, not pipelined */
    for (size_t i = 0; i < n; i++) {
      sn[i] = (int)(psl_test_rand(&rs) % (round == 3 ? 40 : MANY_STREAMS));
      idn++;
      tev_fill(&tmpl, idn, 0, TERRS[idn % NTERRS], (int64_t)ver[sn[i]]);
      evs[i] = tmpl.ev;
      evs[i].data.ptr = (const uint8_t *)"\x80"; /* {} */
      evs[i].data.len = 1;
      evs[i].stream = psl_str(many_names[sn[i]]);
      ver[sn[i]]++;
    }
    CHECK_OK(psl_log_append(log, evs, n, res));
    for (size_t i = 0; i < n; i++)
      CHECK(res[i].err == 0 && !res[i].dup);
  }
  for (int i = 0; i < MANY_STREAMS; i += 7) {
    uint64_t v;
    CHECK_OK(psl_log_stream_version(log, many_names[i], strlen(many_names[i]), &v));
    CHECK_EQ(v, ver[i]);
  }
  /* One stream read back through its index: its versions' seqs, in order. */
  got_t *g = calloc(1, sizeof *g);
  psl_str_t one = psl_str(many_names[sn[0]]);
  psl_filter_t f = {NULL, 0, &one, 1};
  uint64_t last;
  CHECK_OK(psl_log_read(log, 0, &f, 0, 0, collect, g, &last));
  CHECK_EQ(g->n, ver[sn[0]]);
  CHECK_EQ(last, psl_log_head(log, NULL));
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  free(g);
  free(sn);
  free(res);
  free(evs);
  free(ver);
  psl_log_close(log);
}

TEST(log, reopen_keeps_head) {
  const char *dir = psl_test_tmpdir();
  psl_log_t *log = open_log(dir, NULL);
  tev_t t[50];
  uint8_t h1[PSL_HASH_BYTES], h2[PSL_HASH_BYTES];
  char id[PSL_UUID_STR + 1];
  for (int i = 0; i < 50; i++)
    tev_fill(&t[i], (uint64_t)i + 1, i % 5, TERRS[i % NTERRS], PSL_EXPECT_ANY);
  append_ok(log, t, 50);
  snprintf(id, sizeof id, "%s", psl_log_id(log));
  CHECK_EQ(psl_log_head(log, h1), 50);
  psl_log_close(log);

  log = open_log(dir, NULL);
  CHECK_STR(psl_log_id(log), id);
  CHECK_EQ(psl_log_head(log, h2), 50);
  CHECK_MEM(h1, h2, PSL_HASH_BYTES);
  tev_t more;
  tev_fill(&more, 51, 0, "75", 10); /* stream 0 holds 10 events */
  append_ok(log, &more, 1);
  CHECK_EQ(more.ev.seq, 51);
  CHECK_EQ(more.ev.ver, 11);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  psl_log_close(log);

  /* Read-only: the tools' way in, which never creates a log. */
  psl_log_opts_t ro = {.read_only = 1};
  psl_log_t *rl = NULL;
  char none[512];
  snprintf(none, sizeof none, "%s/none", dir);
  CHECK(psl_log_open(&rl, none, &ro) != 0);
  CHECK(rl == NULL);
  rl = open_log(dir, &ro);
  CHECK_EQ(psl_log_head(rl, NULL), 51);
  CHECK_STR(psl_log_id(rl), id);
  psl_append_req_t req = {0};
  CHECK_EQ(psl_log_submit(rl, &req), PSL_ECLOSED);
  CHECK_OK(psl_log_verify(rl, NULL, NULL, NULL));
  psl_log_close(rl);
}

/* ---- Concurrency. */

#define CONC_THREADS 8
#define CONC_PER_THREAD 300

typedef struct {
  psl_log_t *log;
  int no;
  uint64_t seqs[CONC_PER_THREAD];
} conc_t;

static void *conc_main(void *arg) {
  conc_t *c = arg;
  for (int i = 0; i < CONC_PER_THREAD; i++) {
    tev_t t;
    psl_push_result_t res;
    tev_fill(&t, (uint64_t)c->no * 1000000 + (uint64_t)i + 1, c->no, TERRS[i % NTERRS],
             i); /* expect: the previous version, so order within a thread is checked too */
    CHECK_OK(psl_log_append(c->log, &t.ev, 1, &res));
    CHECK_EQ(res.err, 0);
    CHECK_EQ(res.ver, i + 1);
    c->seqs[i] = res.seq;
  }
  return NULL;
}

typedef struct {
  psl_append_req_t req;
  tev_t t[4];
  psl_event_t evs[4];
  psl_push_result_t res[4];
} async_t;

static pthread_mutex_t async_mu = PTHREAD_MUTEX_INITIALIZER;
static int async_done;
static uint64_t commits, last_head;

static void on_async_done(psl_append_req_t *req) {
  async_t *a = req->data;
  CHECK_EQ(req->err, 0);
  for (int i = 0; i < 4; i++)
    CHECK(a->res[i].err == 0 && a->res[i].seq > 0);
  pthread_mutex_lock(&async_mu);
  async_done++;
  pthread_mutex_unlock(&async_mu);
}

static void on_commit(void *arg, uint64_t head) {
  pthread_mutex_lock(&async_mu);
  CHECK(head > last_head);
  last_head = head;
  commits++;
  pthread_mutex_unlock(&async_mu);
}

TEST(log, concurrent_appends_gap_free) {
  const char *dir = psl_test_tmpdir();
  psl_log_t *log = open_log(dir, NULL);
  psl_log_on_commit(log, on_commit, NULL);
  conc_t *c = calloc(CONC_THREADS, sizeof *c);
  pthread_t th[CONC_THREADS];
  /* Asynchronous requests in flight at the same time as the blocking ones. */
  async_t *as = calloc(100, sizeof *as);
  for (int i = 0; i < CONC_THREADS; i++) {
    c[i].log = log;
    c[i].no = i;
    CHECK_EQ(pthread_create(&th[i], NULL, conc_main, &c[i]), 0);
  }
  for (int i = 0; i < 100; i++) {
    for (int k = 0; k < 4; k++) {
      tev_fill(&as[i].t[k], 50000000 + (uint64_t)i * 4 + (uint64_t)k, 100 + i, "77",
               PSL_EXPECT_ANY);
      as[i].evs[k] = as[i].t[k].ev;
    }
    as[i].req.events = as[i].evs;
    as[i].req.n = 4;
    as[i].req.results = as[i].res;
    as[i].req.done = on_async_done;
    as[i].req.data = &as[i];
    CHECK_OK(psl_log_submit(log, &as[i].req));
  }
  for (int i = 0; i < CONC_THREADS; i++)
    CHECK_EQ(pthread_join(th[i], NULL), 0);
  psl_log_close(log); /* completes every request already submitted */
  CHECK_EQ(async_done, 100);

  const uint64_t total = CONC_THREADS * CONC_PER_THREAD + 400;
  uint8_t *seen = calloc(total + 1, 1);
  for (int i = 0; i < CONC_THREADS; i++)
    for (int k = 0; k < CONC_PER_THREAD; k++) {
      CHECK(c[i].seqs[k] >= 1 && c[i].seqs[k] <= total && !seen[c[i].seqs[k]]);
      seen[c[i].seqs[k]] = 1;
      if (k)
        CHECK(c[i].seqs[k] > c[i].seqs[k - 1]);
    }
  for (int i = 0; i < 100; i++)
    for (int k = 0; k < 4; k++) {
      CHECK(as[i].res[k].seq >= 1 && as[i].res[k].seq <= total && !seen[as[i].res[k].seq]);
      seen[as[i].res[k].seq] = 1;
    }
  CHECK(commits > 0);
  CHECK_EQ(last_head, total);

  log = open_log(dir, NULL);
  CHECK_EQ(psl_log_head(log, NULL), total);
  uint64_t bad = 0;
  CHECK_OK(psl_log_verify(log, &bad, NULL, NULL));
  psl_log_close(log);
  free(seen);
  free(as);
  free(c);
}

TEST(log, closed_log_refuses) {
  const char *dir = psl_test_tmpdir();
  psl_log_t *log = open_log(dir, NULL);
  psl_log_close(log);
  psl_log_close(NULL);
  /* Reopened, a submitted request is completed by close before it returns. */
  log = open_log(dir, NULL);
  async_t *a = calloc(1, sizeof *a);
  for (int k = 0; k < 4; k++) {
    tev_fill(&a->t[k], (uint64_t)k + 1, 1, "75", PSL_EXPECT_ANY);
    a->evs[k] = a->t[k].ev;
  }
  a->req.events = a->evs;
  a->req.n = 4;
  a->req.results = a->res;
  a->req.done = on_async_done;
  a->req.data = a;
  async_done = 0;
  CHECK_OK(psl_log_submit(log, &a->req));
  psl_log_close(log);
  CHECK_EQ(async_done, 1);
  free(a);
}

/* ---- Hooks: atomically with the events. */

typedef struct {
  MDB_dbi dbi;
  int fail_at; /* seq whose apply fails (0: none) */
  uint64_t applied;
} hook_t;

static int hook_open(void *arg, MDB_env *env, MDB_txn *txn) {
  hook_t *h = arg;
  return mdb_dbi_open(txn, "proj", MDB_CREATE, &h->dbi) ? PSL_EINTERNAL : 0;
}

static int hook_apply(void *arg, MDB_txn *txn, const psl_event_t *ev) {
  hook_t *h = arg;
  if (h->fail_at && ev->seq == (uint64_t)h->fail_at)
    return PSL_EINTERNAL;
  CHECK(ev->has_hash && ev->seq > 0 && ev->ver > 0 && ev->rec > 0);
  MDB_val k = {5, (void *)"count"}, v;
  uint64_t n = 0;
  if (mdb_get(txn, h->dbi, &k, &v) == 0)
    memcpy(&n, v.mv_data, sizeof n);
  n++;
  v.mv_size = sizeof n;
  v.mv_data = &n;
  h->applied++;
  return mdb_put(txn, h->dbi, &k, &v, 0) ? PSL_EINTERNAL : 0;
}

static int hook_count(void *arg, MDB_txn *txn) {
  hook_t *h = arg;
  MDB_val k = {5, (void *)"count"}, v;
  uint64_t n = 0;
  if (mdb_get(txn, h->dbi, &k, &v) == 0)
    memcpy(&n, v.mv_data, sizeof n);
  return (int)n;
}

TEST(log, hooks_commit_with_events) {
  const char *dir = psl_test_tmpdir();
  hook_t h = {0};
  psl_log_opts_t opts = {.hooks = {hook_open, hook_apply, &h}};
  psl_log_t *log = open_log(dir, &opts);
  tev_t t[10];
  for (int i = 0; i < 10; i++)
    tev_fill(&t[i], (uint64_t)i + 1, 1, "93", PSL_EXPECT_ANY);
  append_ok(log, t, 5);
  CHECK_EQ(psl_log_with_read_txn(log, hook_count, &h), 5);

  /* A hook failing at seq 8 fails the whole request: nothing of it is stored. */
  h.fail_at = 8;
  psl_event_t evs[5];
  psl_push_result_t res[5];
  for (int i = 0; i < 5; i++)
    evs[i] = t[5 + i].ev;
  CHECK_EQ(psl_log_append(log, evs, 5, res), PSL_EINTERNAL);
  CHECK_EQ(evs[0].seq, 0);
  CHECK_EQ(psl_log_head(log, NULL), 5);
  CHECK_EQ(psl_log_with_read_txn(log, hook_count, &h), 5);
  h.fail_at = 0;
  CHECK_OK(psl_log_append(log, evs, 5, res));
  CHECK_EQ(res[4].seq, 10);
  CHECK_EQ(psl_log_with_read_txn(log, hook_count, &h), 10);

  /* The same in a large batch, whose records are hashed by the chain thread meanwhile. */
  tev_t *big = calloc(200, sizeof *big);
  psl_event_t *bevs = calloc(200, sizeof *bevs);
  psl_push_result_t *bres = calloc(200, sizeof *bres);
  for (int i = 0; i < 200; i++) {
    tev_fill(&big[i], 1000 + (uint64_t)i, i % 9, TERRS[i % NTERRS], PSL_EXPECT_ANY);
    bevs[i] = big[i].ev;
  }
  h.fail_at = 150;
  CHECK_EQ(psl_log_append(log, bevs, 200, bres), PSL_EINTERNAL);
  CHECK_EQ(psl_log_head(log, NULL), 10);
  CHECK_EQ(bevs[100].seq, 0);
  h.fail_at = 0;
  CHECK_OK(psl_log_append(log, bevs, 200, bres));
  CHECK_EQ(bres[199].seq, 210);
  CHECK_EQ(psl_log_with_read_txn(log, hook_count, &h), 210);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  free(bres);
  free(bevs);
  free(big);
  psl_log_close(log);
}

/* ---- Full map, full disk, growth. */

/* Append batches of `per` events until an append fails; returns the events acknowledged. */
static uint64_t fill_until_refused(psl_log_t *log, uint64_t *idn, size_t per, int *err,
                                   uint64_t limit) {
  tev_t *t = calloc(per, sizeof *t);
  psl_event_t *evs = calloc(per, sizeof *evs);
  psl_push_result_t *res = calloc(per, sizeof *res);
  uint64_t acked = 0;
  *err = 0;
  while (acked < limit) {
    uint64_t head0 = psl_log_head(log, NULL);
    for (size_t i = 0; i < per; i++) {
      uint64_t id = ++*idn;
      tev_fill(&t[i], id, (int)(id % 50), TERRS[id % NTERRS], PSL_EXPECT_ANY);
      evs[i] = t[i].ev;
    }
    *err = psl_log_append(log, evs, per, res);
    if (*err) {
      for (size_t i = 0; i < per; i++)
        CHECK_EQ(evs[i].seq, 0);
      break;
    }
    for (size_t i = 0; i < per; i++)
      CHECK_EQ(res[i].seq, head0 + i + 1);
    acked += per;
  }
  free(res);
  free(evs);
  free(t);
  return acked;
}

static uint64_t count_all(psl_log_t *log) {
  got_t *g = calloc(1, sizeof *g);
  uint64_t after = 0, last, n = 0;
  for (;;) {
    memset(g, 0, sizeof *g);
    CHECK_OK(psl_log_read(log, after, NULL, 0, MAXREC, collect, g, &last));
    for (size_t i = 0; i < g->n; i++)
      CHECK_EQ(g->seq[i], after + 1 + i);
    n += g->n;
    if (g->n == 0)
      break;
    after = last;
  }
  free(g);
  return n;
}

TEST(log, map_full_then_larger_max) {
  const char *dir = psl_test_tmpdir();
  psl_log_opts_t opts = {.map_size = 256 * 1024, .map_size_max = 1024 * 1024};
  psl_log_t *log = open_log(dir, &opts);
  uint64_t idn = 0;
  int err;
  uint64_t acked = fill_until_refused(log, &idn, 100, &err, 1000000);
  CHECK_EQ(err, PSL_EUNAVAILABLE);
  CHECK(acked >= 500); /* 1 MiB holds a thousand or so: the map did grow */
  CHECK_EQ(psl_log_head(log, NULL), acked);
  /* Reads go on; the chain is whole; a one-event append may still fit or not, but never
   * leaves a trace when refused. */
  CHECK_EQ(count_all(log), acked);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  psl_log_close(log);

  opts.map_size_max = 8 * 1024 * 1024;
  log = open_log(dir, &opts);
  CHECK_EQ(psl_log_head(log, NULL), acked);
  uint64_t more = fill_until_refused(log, &idn, 100, &err, 2000);
  CHECK_EQ(err, 0);
  CHECK_EQ(more, 2000);
  CHECK_EQ(count_all(log), acked + 2000);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  psl_log_close(log);
}

TEST(log, map_grows_without_max) {
  const char *dir = psl_test_tmpdir();
  psl_log_opts_t opts = {.map_size = 1024 * 1024};
  psl_log_t *log = open_log(dir, &opts);
  uint64_t idn = 0;
  int err;
  CHECK_EQ(fill_until_refused(log, &idn, 250, &err, 50000), 50000);
  CHECK_EQ(err, 0);
  CHECK_EQ(psl_log_head(log, NULL), 50000);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  psl_log_close(log);
}

TEST(log, disk_full_then_recovers) {
  /* A file-size limit makes the disk "full" for this process: LMDB's writes past it fail
   * with EFBIG, as they would with ENOSPC. */
  const char *dir = psl_test_tmpdir();
  char path[512];
  struct stat st;
  psl_log_t *log = open_log(dir, NULL);
  uint64_t idn = 0;
  int err;
  CHECK_EQ(fill_until_refused(log, &idn, 100, &err, 300), 300);
  snprintf(path, sizeof path, "%s/log/data.mdb", dir);
  CHECK_OK(stat(path, &st));
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit old, lim;
  CHECK_OK(getrlimit(RLIMIT_FSIZE, &old));
  lim = old;
  lim.rlim_cur = (rlim_t)st.st_size + 8192;
  CHECK_OK(setrlimit(RLIMIT_FSIZE, &lim));
  uint64_t acked = fill_until_refused(log, &idn, 100, &err, 100000);
  printf("  log/disk_full_then_recovers: refused after %llu more events: %s\n",
         (unsigned long long)acked, psl_err_name(err));
  CHECK(err == PSL_EUNAVAILABLE || err == PSL_EIO);
  uint64_t head = psl_log_head(log, NULL);
  CHECK_EQ(head, 300 + acked);
  CHECK_EQ(count_all(log), head);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));

  CHECK_OK(setrlimit(RLIMIT_FSIZE, &old)); /* space returns */
  CHECK_EQ(fill_until_refused(log, &idn, 100, &err, 500), 500);
  CHECK_EQ(err, 0);
  psl_log_close(log);
  log = open_log(dir, NULL);
  CHECK_EQ(psl_log_head(log, NULL), head + 500);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  psl_log_close(log);
}

/* Another process grows the map under a reader of this one: LMDB answers MDB_MAP_RESIZED
 * at the next transaction, which the log adopts and retries. */
TEST(log, map_grown_by_another_process) {
  const char *dir = psl_test_tmpdir();
  uint64_t idn = 0;
  int err;
  psl_log_t *log = open_log(dir, NULL);
  CHECK_EQ(fill_until_refused(log, &idn, 100, &err, 100), 100);
  psl_log_close(log);

  psl_log_opts_t ro = {.read_only = 1, .map_size = 256 * 1024};
  psl_log_t *rl = open_log(dir, &ro);
  CHECK_EQ(count_all(rl), 100);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) { /* a second process with its own environment */
    psl_log_t *w = NULL;
    int e2;
    if (psl_log_open(&w, dir, NULL) != 0)
      _exit(2);
    uint64_t got = fill_until_refused(w, &idn, 500, &e2, 20000);
    psl_log_close(w);
    _exit(got == 20000 ? 0 : 3);
  }
  int st = 0;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK_EQ(psl_log_head(rl, NULL), 20100);
  CHECK_EQ(count_all(rl), 20100);
  CHECK_OK(psl_log_verify(rl, NULL, NULL, NULL));
  psl_log_close(rl);
}

/* ---- Tamper evidence, against the real store. */

/* Change the `events` value of seq with LMDB directly: flip one byte at offset `at` of the
 * record (hash ‖ canonical), or delete the record when at < 0. */
static void tamper(const char *dir, uint64_t seq, long at) {
  char path[512];
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  uint8_t kb[8];
  snprintf(path, sizeof path, "%s/log", dir);
  CHECK_OK(mdb_env_create(&env));
  CHECK_OK(mdb_env_set_maxdbs(env, 32));
  CHECK_OK(mdb_env_open(env, path, 0, 0600));
  CHECK_OK(mdb_txn_begin(env, NULL, 0, &txn));
  CHECK_OK(mdb_dbi_open(txn, "events", 0, &dbi));
  for (int i = 0; i < 8; i++)
    kb[i] = (uint8_t)(seq >> (8 * (7 - i)));
  MDB_val k = {8, kb}, v;
  CHECK_OK(mdb_get(txn, dbi, &k, &v));
  if (at < 0) {
    CHECK_OK(mdb_del(txn, dbi, &k, NULL));
  } else {
    uint8_t *copy = malloc(v.mv_size);
    CHECK((size_t)at < v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[at] ^= 0x01;
    v.mv_data = copy;
    CHECK_OK(mdb_put(txn, dbi, &k, &v, 0));
    free(copy);
  }
  CHECK_OK(mdb_txn_commit(txn));
  mdb_env_close(env);
}

static void write_events(const char *dir, int n) {
  psl_log_t *log = open_log(dir, NULL);
  tev_t t[100];
  for (int base = 0; base < n; base += 100) {
    int k = n - base < 100 ? n - base : 100;
    for (int i = 0; i < k; i++)
      tev_fill(&t[i], (uint64_t)(base + i) + 1, (base + i) % 7, TERRS[i % NTERRS],
               PSL_EXPECT_ANY);
    append_ok(log, t, (size_t)k);
  }
  psl_log_close(log);
}

TEST(log, verify_detects_tampering) {
  const char *dir = psl_test_tmpdir();
  write_events(dir, 100);
  tamper(dir, 37, PSL_HASH_BYTES + 40); /* a byte inside the canonical event */
  psl_log_t *log = open_log(dir, NULL);
  uint64_t bad = 0;
  psl_verify_report_t rep;
  CHECK_EQ(psl_log_verify(log, &bad, NULL, NULL), PSL_ECORRUPT);
  CHECK_EQ(bad, 37);
  CHECK_EQ(psl_log_verify_report(log, &rep, NULL, NULL), PSL_ECORRUPT);
  CHECK_EQ(rep.bad_seq, 37);
  CHECK_STR(rep.why, "hash mismatch");
  psl_log_close(log);

  /* A record removed from the middle: a gap. */
  const char *dir2 = psl_test_tmpdir(); /* the same folder: start over in a subfolder */
  char sub[512];
  snprintf(sub, sizeof sub, "%s/second", dir2);
  write_events(sub, 100);
  tamper(sub, 60, -1);
  log = open_log(sub, NULL);
  CHECK_EQ(psl_log_verify_report(log, &rep, NULL, NULL), PSL_ECORRUPT);
  CHECK_EQ(rep.bad_seq, 60);
  CHECK_STR(rep.why, "gap in seq");
  psl_log_close(log);
}

/* ---- The tool. */

static int run_tool(const char *args, char *out, size_t cap) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s/passerelle-log' %s 2>&1", psl_test_bindir(), args);
  FILE *p = popen(cmd, "r");
  CHECK(p != NULL);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  CHECK(WIFEXITED(st));
  return WEXITSTATUS(st);
}

TEST(log, tool_verify_head_dump) {
  const char *dir = psl_test_tmpdir();
  static char out[1 << 20];
  char args[1024];
  write_events(dir, 100);

  snprintf(args, sizeof args, "--data '%s' verify", dir);
  CHECK_EQ(run_tool(args, out, sizeof out), 0);
  CHECK(strstr(out, "ok: 100 events, chain valid") != NULL);

  snprintf(args, sizeof args, "--data '%s' head", dir);
  CHECK_EQ(run_tool(args, out, sizeof out), 0);
  CHECK(strstr(out, "100") != NULL);

  snprintf(args, sizeof args, "--data '%s' dump --from 10 --to 19", dir);
  CHECK_EQ(run_tool(args, out, sizeof out), 0);
  int lines = 0;
  for (char *p = out; *p; p++)
    lines += *p == '\n';
  CHECK_EQ(lines, 10);
  CHECK(strncmp(out, "{\"seq\":10,", 10) == 0);
  CHECK(strstr(out, "\"data\":{\"minutes\":45,\"note\":") != NULL);

  tamper(dir, 42, PSL_HASH_BYTES + 10);
  snprintf(args, sizeof args, "--data '%s' verify", dir);
  CHECK_EQ(run_tool(args, out, sizeof out), 1);
  CHECK(strstr(out, "seq 42: hash mismatch") != NULL);

  CHECK_EQ(run_tool("", out, sizeof out), 2);
  CHECK_EQ(run_tool("--data", out, sizeof out), 2);
  snprintf(args, sizeof args, "--data '%s' frobnicate", dir);
  CHECK_EQ(run_tool(args, out, sizeof out), 2);
  snprintf(args, sizeof args, "--data '%s/nothing-here' head", dir);
  CHECK_EQ(run_tool(args, out, sizeof out), 1);
}
