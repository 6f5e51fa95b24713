/*
 * bench-log — figures for the event log (server/log*.c), on a real LMDB under /tmp, durable
 * (each answer waits for the fsync of its journal frame, as the server's `pushed` does; the
 * writer commits LMDB every 10 ms; every shape's time includes a last psl_log_flush, so the
 * figures count until every event is readable), with BRIEF §6's event shape: ~300 canonical
 * bytes, one stream per participant (50 participants), territories 75/93/94/77, a `data` map
 * and a small `pii` map.
 *
 * Prints, in order:
 *   batched append      4,096 events per request, one producer: builds a 1,000,000-event log
 *   single appends      1 event per request, one producer, ~2 s
 *   group commit        64 producer threads, 1 event per request each, ~2 s
 *   full scan           psl_log_read without filter, 256 KiB chunks, over the whole log
 *   territory scan      psl_log_read with terr = ["93"] (a quarter of the events)
 *   verify              psl_log_verify over the whole log ("A log of 1,000,000 events
 *                       verifies": the time it takes)
 * Peers measured on this machine (BRIEF §6): Redis 6,800/s single, 79,000/s with 64 clients,
 * 418,000/s pipelined; raw LMDB 880,000/s batched, 23 M/s scan.
 *
 *   bench-log [events]     (default 1,000,000; the folder is removed at the end)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "psl_log.h"

/* The shapes of BRIEF §6 and of this benchmark's brief. */
#define BATCH_EVENTS 4096u
#define DEFAULT_EVENTS 1000000u
#define PARTICIPANTS 50u
#define TARGET_CANONICAL 300u
#define PRODUCERS 64u
#define TIMED_SECONDS 2.0

static const char *const TERRS[] = {"75", "93", "94", "77"};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- A tiny MessagePack writer for the event bodies. */

static void w_raw(psl_buf_t *b, const void *p, size_t n) {
  if (psl_buf_append(b, p, n) != 0) {
    fprintf(stderr, "bench-log: out of memory\n");
    exit(1);
  }
}
static void w_byte(psl_buf_t *b, uint8_t c) { w_raw(b, &c, 1); }
static void w_str(psl_buf_t *b, const char *s, size_t n) {
  if (n < 32) {
    w_byte(b, (uint8_t)(0xa0 | n));
  } else {
    w_byte(b, 0xd9);
    w_byte(b, (uint8_t)n);
  }
  w_raw(b, s, n);
}
static void w_cstr(psl_buf_t *b, const char *s) { w_str(b, s, strlen(s)); }

/* One participant's event template: the bytes its events point to. */
typedef struct {
  char stream[PSL_MAX_STREAM + 1];
  const char *terr;
  psl_buf_t data, pii;
} participant_t;

/* `data` of an interview, its note padded by `pad` bytes; `pii` a short note. */
static void make_bodies(participant_t *p, size_t pad) {
  static const char filler[] = "entretien en detention, point sur le projet professionnel, "
                               "la formation et le logement a la sortie; suite au prochain rdv";
  psl_buf_reset(&p->data);
  psl_buf_reset(&p->pii);
  w_byte(&p->data, 0x84);
  w_cstr(&p->data, "minutes");
  w_byte(&p->data, 45);
  w_cstr(&p->data, "place");
  w_cstr(&p->data, "detention");
  w_cstr(&p->data, "site");
  w_cstr(&p->data, "ma-villepinte");
  w_cstr(&p->data, "topics");
  w_byte(&p->data, 0x94);
  w_cstr(&p->data, "cv");
  w_cstr(&p->data, "housing");
  w_cstr(&p->data, "training");
  w_str(&p->data, filler, pad < sizeof filler - 1 ? pad : sizeof filler - 1);
  w_byte(&p->pii, 0x81);
  w_cstr(&p->pii, "notes");
  w_cstr(&p->pii, "appel famille ok");
}

/* A UUIDv7 from a per-thread xorshift: a device makes its ids offline, so their cost is not
 * the server's (psl_uuid_v7 asks the kernel for randomness, ~1 µs, which would be). */
static void fast_uuid_v7(uint8_t id[PSL_UUID_BYTES]) {
  static _Thread_local uint64_t x;
  if (x == 0)
    x = (uint64_t)now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&x;
  uint64_t ms = (uint64_t)now_ms();
  for (int i = 0; i < 2; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(id + 6 + 8 * i, &x, i ? 2 : 8);
  }
  for (int i = 0; i < 6; i++)
    id[i] = (uint8_t)(ms >> (8 * (5 - i)));
  id[6] = (uint8_t)(0x70 | (id[6] & 0x0f));
  id[8] = (uint8_t)(0x80 | (id[8] & 0x3f));
}

static void event_init(psl_event_t *ev, const participant_t *p) {
  memset(ev, 0, sizeof *ev);
  fast_uuid_v7(ev->id);
  ev->stream = psl_str(p->stream);
  ev->type = psl_str("interview.held");
  ev->at = now_ms();
  ev->terr = psl_str(p->terr);
  ev->data.ptr = psl_buf_data(&p->data);
  ev->data.len = p->data.len;
  ev->pii.ptr = psl_buf_data(&p->pii);
  ev->pii.len = p->pii.len;
  ev->expect = PSL_EXPECT_ANY;
  ev->by = psl_str("caseworker-93-04");
  ev->dev = psl_str("tablet-0193");
}

static participant_t parts[PARTICIPANTS];
static size_t canonical_size;

/* Participants with bodies padded so that an event's canonical form is ~300 bytes. */
static void make_participants(void) {
  for (unsigned i = 0; i < PARTICIPANTS; i++) {
    uint8_t pid[PSL_UUID_BYTES];
    char u[PSL_UUID_STR + 1];
    psl_uuid_v7(pid, now_ms() + i);
    psl_uuid_format(pid, u);
    snprintf(parts[i].stream, sizeof parts[i].stream, "participant/%s", u);
    parts[i].terr = TERRS[i % 4];
    psl_buf_init(&parts[i].data, 0);
    psl_buf_init(&parts[i].pii, 0);
  }
  psl_buf_t b;
  psl_buf_init(&b, 0);
  for (size_t pad = 0; pad < 120; pad++) {
    for (unsigned i = 0; i < PARTICIPANTS; i++)
      make_bodies(&parts[i], pad);
    psl_event_t ev;
    event_init(&ev, &parts[0]);
    ev.seq = 500000; /* a typical stamp: a mid-sized seq and ver, today's rec */
    ev.ver = 20;
    ev.rec = now_ms();
    psl_buf_reset(&b);
    if (psl_event_encode_canonical(&b, &ev) != 0)
      exit(1);
    canonical_size = b.len;
    if (b.len >= TARGET_CANONICAL)
      break;
  }
  psl_buf_free(&b);
}

static void fill_batch(psl_event_t *evs, size_t n, uint64_t *k) {
  for (size_t i = 0; i < n; i++, ++*k)
    event_init(&evs[i], &parts[*k % PARTICIPANTS]);
}

static void must(int err, const char *what) {
  if (err) {
    fprintf(stderr, "bench-log: %s: %s\n", what, psl_strerror(err));
    exit(1);
  }
}

/* ---- The ceiling: raw LMDB on the same disk, in the same run.  One database, 332-byte
 * values (hash + a 300-byte event) put with MDB_APPEND, durable commits: no hash, no
 * encoding, no index. */

static double raw_lmdb(const char *dir, unsigned per_commit, double seconds, uint64_t *commits) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  uint8_t val[TARGET_CANONICAL + PSL_HASH_BYTES] = {0}, key[8];
  uint64_t seq = 0, n = 0;
  if (mdb_env_create(&env) || mdb_env_set_mapsize(env, (size_t)4 << 30) ||
      mdb_env_open(env, dir, 0, 0600) || mdb_txn_begin(env, NULL, 0, &txn) ||
      mdb_dbi_open(txn, NULL, 0, &dbi) || mdb_txn_commit(txn)) {
    fprintf(stderr, "bench-log: raw LMDB setup failed\n");
    exit(1);
  }
  double t0 = now_s(), t;
  do {
    if (mdb_txn_begin(env, NULL, 0, &txn))
      must(PSL_EINTERNAL, "raw LMDB begin");
    for (unsigned i = 0; i < per_commit; i++) {
      seq++;
      for (int b = 0; b < 8; b++)
        key[b] = (uint8_t)(seq >> (56 - 8 * b));
      MDB_val k = {sizeof key, key}, v = {sizeof val, val};
      if (mdb_put(txn, dbi, &k, &v, MDB_APPEND))
        must(PSL_EINTERNAL, "raw LMDB put");
    }
    if (mdb_txn_commit(txn))
      must(PSL_EINTERNAL, "raw LMDB commit");
    n++;
  } while ((t = now_s() - t0) < seconds);
  mdb_env_close(env);
  *commits = n;
  return (double)(n * per_commit) / t;
}

/* ---- Shapes. */

static double bench_batched(psl_log_t *log, uint64_t total) {
  psl_event_t *evs = calloc(BATCH_EVENTS, sizeof *evs);
  psl_push_result_t *res = calloc(BATCH_EVENTS, sizeof *res);
  uint64_t k = 0, done = 0;
  double spent = 0;
  while (done < total) {
    size_t n = total - done < BATCH_EVENTS ? (size_t)(total - done) : BATCH_EVENTS;
    fill_batch(evs, n, &k); /* not timed: the clients' work */
    double t0 = now_s();
    must(psl_log_append_durable(log, evs, n, res), "batched append");
    spent += now_s() - t0;
    done += n;
  }
  double t0 = now_s();
  must(psl_log_flush(log), "flush"); /* counted: until the last event is readable */
  spent += now_s() - t0;
  free(res);
  free(evs);
  return (double)total / spent;
}

static double bench_single(psl_log_t *log, uint64_t *count) {
  psl_event_t ev;
  psl_push_result_t res;
  uint64_t k = 0, n = 0;
  double t0 = now_s(), t;
  do {
    fill_batch(&ev, 1, &k);
    must(psl_log_append_durable(log, &ev, 1, &res), "single append");
    n++;
  } while (now_s() - t0 < TIMED_SECONDS);
  must(psl_log_flush(log), "flush");
  t = now_s() - t0;
  *count = n;
  return (double)n / t;
}

typedef struct {
  psl_log_t *log;
  double until;
  uint64_t n;
  unsigned no;
} producer_t;

static void *producer_main(void *arg) {
  producer_t *p = arg;
  psl_event_t ev;
  psl_push_result_t res;
  uint64_t k = p->no;
  while (now_s() < p->until) {
    fill_batch(&ev, 1, &k);
    must(psl_log_append_durable(p->log, &ev, 1, &res), "group-commit append");
    p->n++;
  }
  return NULL;
}

static double bench_producers(psl_log_t *log, uint64_t *count) {
  producer_t pr[PRODUCERS];
  pthread_t th[PRODUCERS];
  double t0 = now_s();
  for (unsigned i = 0; i < PRODUCERS; i++) {
    pr[i] = (producer_t){log, t0 + TIMED_SECONDS, 0, i};
    if (pthread_create(&th[i], NULL, producer_main, &pr[i]) != 0)
      exit(1);
  }
  uint64_t n = 0;
  for (unsigned i = 0; i < PRODUCERS; i++) {
    pthread_join(th[i], NULL);
    n += pr[i].n;
  }
  must(psl_log_flush(log), "flush");
  *count = n;
  return (double)n / (now_s() - t0);
}

/* The server's shape: one loop thread holds 64 clients' requests in flight with
 * psl_log_submit; `done` (on the writer thread) queues the client back and wakes the loop
 * only when its queue was empty, as uv_async_send coalesces. */
typedef struct client_s {
  psl_append_req_t req;
  psl_event_t ev;
  psl_push_result_t res;
  struct client_s *next_done;
} client_t;

static pthread_mutex_t loop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t loop_cond = PTHREAD_COND_INITIALIZER;
static client_t *loop_done;

static void client_done(psl_append_req_t *req) {
  client_t *c = req->data;
  must(req->err, "client append");
  pthread_mutex_lock(&loop_mu);
  c->next_done = loop_done;
  loop_done = c;
  if (!c->next_done)
    pthread_cond_signal(&loop_cond);
  pthread_mutex_unlock(&loop_mu);
}

static void client_send(psl_log_t *log, client_t *c, uint64_t *k) {
  fill_batch(&c->ev, 1, k);
  c->req.events = &c->ev;
  c->req.n = 1;
  c->req.results = &c->res;
  c->req.done = client_done;
  c->req.data = c;
  must(psl_log_submit(log, &c->req), "submit");
}

static double bench_loop_clients(psl_log_t *log, uint64_t *count) {
  static client_t clients[PRODUCERS];
  uint64_t k = 0, n = 0, inflight = PRODUCERS;
  double t0 = now_s(), until = t0 + TIMED_SECONDS;
  for (unsigned i = 0; i < PRODUCERS; i++)
    client_send(log, &clients[i], &k);
  while (inflight) {
    pthread_mutex_lock(&loop_mu);
    while (!loop_done)
      pthread_cond_wait(&loop_cond, &loop_mu);
    client_t *c = loop_done;
    loop_done = NULL;
    pthread_mutex_unlock(&loop_mu);
    int more = now_s() < until;
    for (client_t *next; c; c = next) {
      next = c->next_done;
      n++;
      if (more)
        client_send(log, c, &k);
      else
        inflight--;
    }
  }
  must(psl_log_flush(log), "flush");
  *count = n;
  return (double)n / (now_s() - t0);
}

typedef struct {
  uint64_t n, bytes;
} scan_t;

static int count_one(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                     size_t len) {
  scan_t *s = arg;
  s->n++;
  s->bytes += len + (hash[0] & 0) + (canon[0] & 0); /* touch the record, as a sender would */
  return 0;
}

/* Read everything the filter selects in PSL_CHUNK_BYTES chunks; events delivered per second. */
static double bench_scan(psl_log_t *log, const psl_filter_t *f, uint64_t *count) {
  scan_t s = {0, 0};
  uint64_t after = 0, last, head = psl_log_head(log, NULL);
  double t0 = now_s();
  while (after < head) {
    must(psl_log_read(log, after, f, PSL_CHUNK_BYTES, 0, count_one, &s, &last), "read");
    after = last;
  }
  *count = s.n;
  return (double)s.n / (now_s() - t0);
}

int main(int argc, char **argv) {
  uint64_t total = argc > 1 ? strtoull(argv[1], NULL, 10) : DEFAULT_EVENTS;
  char dir[] = "/tmp/bench-log-XXXXXX";
  if (total == 0 || !mkdtemp(dir)) {
    fprintf(stderr, "usage: bench-log [events]\n");
    return 2;
  }
  make_participants();
  psl_log_t *log;
  /* PSL_BENCH_VISIBLE_MS: the writer's commit interval (psl_log_opts_t.visible_ms). */
  psl_log_opts_t opts = {0};
  const char *vis = getenv("PSL_BENCH_VISIBLE_MS");
  if (vis)
    opts.visible_ms = (unsigned)strtoul(vis, NULL, 10);
  must(psl_log_open(&log, dir, &opts), "open");
  printf("bench-log: %s, events of %zu canonical bytes, %u participants, 2 cores\n", dir,
         canonical_size, PARTICIPANTS);

  double r = bench_batched(log, total);
  double ours_batched = r;
  printf("batched append (4096/request, durable): %10.0f events/s  (%" PRIu64 " events)\n", r,
         total);
  fflush(stdout);
  uint64_t n;
  r = bench_single(log, &n);
  double ours_single = r;
  printf("single-event durable appends:           %10.0f events/s  (%" PRIu64 " in %.0f s)\n", r,
         n, TIMED_SECONDS);
  fflush(stdout);
  psl_log_stats_t s0, s1;
  psl_log_stats(log, &s0);
  r = bench_producers(log, &n);
  psl_log_stats(log, &s1);
  printf("64 producers x 1 event (group commit):  %10.0f events/s  (%" PRIu64 " in %.0f s, %.1f "
         "events per commit)\n",
         r, n, TIMED_SECONDS,
         (double)(s1.events - s0.events) / (double)(s1.commits - s0.commits));
  fflush(stdout);

  psl_log_stats(log, &s0);
  r = bench_loop_clients(log, &n);
  psl_log_stats(log, &s1);
  printf("64 clients x 1 event, one loop thread:  %10.0f events/s  (%" PRIu64 " in %.0f s, %.1f "
         "events per commit)\n",
         r, n, TIMED_SECONDS,
         (double)(s1.events - s0.events) / (double)(s1.commits - s0.commits));
  fflush(stdout);

  uint64_t head = psl_log_head(log, NULL);
  r = bench_scan(log, NULL, &n);
  printf("full scan (psl_log_read, 256 KiB reads): %9.0f events/s  (%" PRIu64 " events)\n", r, n);
  psl_str_t t93 = psl_str("93");
  psl_filter_t f = {&t93, 1, NULL, 0};
  r = bench_scan(log, &f, &n);
  printf("territory scan (terr 93):               %10.0f events/s  (%" PRIu64 " delivered, %.0f "
         "log events/s covered)\n",
         r, n, r * (double)head / (double)n);
  fflush(stdout);

  uint64_t bad = 0;
  double t0 = now_s();
  int err = psl_log_verify(log, &bad, NULL, NULL);
  double t = now_s() - t0;
  printf("verify: %s, %" PRIu64 " events in %.2f s: %10.0f events/s\n",
         err ? "FAILED" : "chain valid", head, t, (double)head / t);
  psl_log_close(log);
  fflush(stdout);

  /* Last: this disk (a VM's) absorbs a burst of writes and is slower for a while after it,
   * so whatever runs first has the advantage; the log's figures get it. */
  char raw1[sizeof dir + 8], raw2[sizeof dir + 8];
  snprintf(raw1, sizeof raw1, "%s/raw1", dir);
  snprintf(raw2, sizeof raw2, "%s/raw2", dir);
  if (mkdir(raw1, 0700) != 0 || mkdir(raw2, 0700) != 0) {
    perror("bench-log: mkdir");
    return 1;
  }
  uint64_t c;
  double raw_single = raw_lmdb(raw2, 1, 1.0, &c);
  double raw_batched = raw_lmdb(raw1, BATCH_EVENTS, 1.0, &c);
  printf("raw LMDB, same disk, after the rest (one database, 332-byte values, MDB_APPEND):\n"
         "  4096 puts per commit: %10.0f events/s   (the log's batched append: %.0f%% of it)\n"
         "  1 put per commit:     %10.0f commits/s  (the log's single appends: %.0f%% of it)\n",
         raw_batched, 100 * ours_batched / raw_batched, raw_single,
         100 * ours_single / raw_single);

  char cmd[sizeof dir + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "bench-log: could not remove %s\n", dir);
  return err ? 1 : 0;
}
