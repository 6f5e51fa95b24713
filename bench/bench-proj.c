/*
 * bench-proj — figures for the projections (domain/), over a log of generated histories
 * (libpsl-demo's --scale generator: referrals, diagnostics, 1–3 interviews a month,
 * sessions, partner referrals, outcomes, exits, transfers, voids), on a real LMDB under /tmp.
 *
 * Prints, in order:
 *   build          the log, written directly with psl_log_append in batches (not over the
 *                  network: the subject here is the projections), without projections
 *   scan           psl_log_read over the whole log, counting: the ceiling of any rebuild
 *   rebuild (mem)  psl_proj_rebuild_from_log: every event from seq 1 into memory — the
 *                  rebuild rate; target >= 2,000,000 events/s (BRIEF.md §6)
 *   rebuild (srv)  what passerelled does when it starts on this log: psl_log_open with
 *                  psl_projection_hooks folds it and stores the projections in LMDB
 *   counters       GET /api/v1/counters's read: psl_projdb_counters in a short read
 *                  transaction, 2,000 random queries (territory or all, a year the log
 *                  reaches, month, programme, site); p50, p99, max — target p99 under 5 ms;
 *                  then apart, the queries of one territory and those of all
 *   participant    psl_projdb_participant, 2,000 random ids; p50, p99
 *   report         psl_projdb_report of the last whole year the log reaches (every row)
 *   live           more events appended with the projections updated in the writer's
 *                  transaction (the server's path), against the build's rate without
 *
 * The build is the slow part: thousands of random stream-index pages dirtied per durable
 * commit on this log of 400,000 streams make it I/O-bound (~140,000 events/s on this machine
 * when quiet, so ~75 s for the 10,000,000 events; several times slower under load, against
 * ~500,000 for a few streams, bench-log).  PSL_BENCH_BUDGET can stop it earlier, the figures
 * then being taken at the size reached, which the output says; a log kept with PSL_BENCH_LOG
 * is reused by later runs.
 *
 *   bench-proj     PSL_BENCH_EVENTS=N   events to build (default 10,000,000)
 *                  PSL_BENCH_BUDGET=S   seconds the build may take (default 0: no limit)
 *                  PSL_BENCH_LOG=DIR    build into DIR and keep it; when DIR already holds a
 *                                       log, measure it as it is (no build)
 *                  PSL_BENCH_KEEP=1     keep the temporary folder
 *                  PSL_BENCH_QUERIES=1  with a kept log: the queries alone, on its stored
 *                                       projections as they are (the open rebuilds them only
 *                                       if their format changed): no scan, rebuild or live
 */
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "psl_demo.h"
#include "psl_domain.h"
#include "psl_log.h"

#define DEFAULT_EVENTS 10000000u
/* Events per psl_log_append: bench-log's best batch for raw ingest. */
#define BATCH 4096u
/* Events a generated person makes on average (measured: ~24 with the sessions). */
#define EVENTS_PER_PERSON 24u
/* Referrals spread over ten years: a query reads one year of one territory. */
#define FIRST_YEAR 2015
#define YEARS 10
#define QUERIES 2000u
#define LIVE_EVENTS 200000u
#define TARGET_REBUILD 2000000.0
#define TARGET_P99_MS 5.0
/* The map made large at once: growing it from 64 MiB through a 10 GB log costs resizes. */
#define MAP_BYTES (64ull << 30)
/* Seconds the build may take by default (see the top). */
#define DEFAULT_BUDGET_S 0

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void must(int rc, const char *what) {
  if (rc) {
    fprintf(stderr, "bench-proj: %s: %s\n", what, psl_strerror(rc));
    exit(1);
  }
}

static uint64_t xs(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void print_latency(const char *what, double *ms, size_t n, double target) {
  qsort(ms, n, sizeof *ms, cmp_double);
  double p99 = ms[n * 99 / 100];
  printf("%-14s %zu queries: p50 %.3f ms, p99 %.3f ms, max %.3f ms", what, n, ms[n / 2], p99,
         ms[n - 1]);
  if (target > 0)
    printf("  (target p99 < %.0f ms: %s)", target, p99 < target ? "met" : "NOT met");
  putchar('\n');
}

/* ---- Writing the log. */

typedef struct {
  psl_log_t *log;
  psl_demo_scale_t *gen;
  psl_demo_event_t *batch;
  psl_event_t *evs;
  psl_push_result_t *res;
  uint8_t (*ids)[PSL_UUID_BYTES]; /* a sample of participant ids, for the lookups */
  size_t nids;
  uint64_t written;
} writer_t;

/* Keep one referral in 97 as a participant to look up (at most QUERIES). */
static void sample_id(writer_t *w, const psl_demo_event_t *e, uint64_t index) {
  if (e->expect == 0 && w->nids < QUERIES && strncmp(e->stream, "participant/", 12) == 0 &&
      index % 97 == 0)
    psl_uuid_parse(e->stream + 12, PSL_UUID_STR, w->ids[w->nids++]);
}

/* Append up to n more events, for at most budget_s seconds (0: no limit); how many. */
static uint64_t write_events(writer_t *w, uint64_t n, double budget_s) {
  uint64_t done = 0;
  double t0 = now_s();
  while (done < n && (budget_s <= 0 || now_s() - t0 < budget_s)) {
    size_t k = 0;
    while (k < BATCH && done + k < n && psl_demo_scale_next(w->gen, &w->batch[k]) == 0) {
      psl_demo_event_view(&w->batch[k], &w->evs[k]);
      w->evs[k].by = psl_str("bench");
      w->evs[k].dev = psl_str("bench-proj");
      sample_id(w, &w->batch[k], w->written + done + k);
      k++;
    }
    if (k == 0)
      break;
    must(psl_log_append(w->log, w->evs, k, w->res), "append");
    for (size_t i = 0; i < k; i++)
      if (w->res[i].err) {
        fprintf(stderr, "bench-proj: event refused: %s\n", psl_strerror(w->res[i].err));
        exit(1);
      }
    done += k;
  }
  w->written += done;
  return done;
}

/* ---- Queries. */

typedef struct {
  psl_projdb_t *db;
  psl_counters_query_t q;
  psl_counters_t c;
  const uint8_t *id;
  psl_participant_t st;
  psl_report_t r;
  int year;
} read_t;

static int read_counters(void *arg, MDB_txn *txn) {
  read_t *r = arg;
  return psl_projdb_counters(r->db, txn, &r->q, &r->c);
}

static int read_participant(void *arg, MDB_txn *txn) {
  read_t *r = arg;
  return psl_projdb_participant(r->db, txn, r->id, &r->st);
}

static int read_report(void *arg, MDB_txn *txn) {
  read_t *r = arg;
  return psl_projdb_report(r->db, txn, r->year, 0, &r->r);
}

static const char *const sites[] = {"ma-villepinte", "csl-gagny", "sas-noisy", "office",
                                    "qsl-sante", "qsl-villejuif", "ma-fresnes"};

static int head_at(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                   size_t len) {
  psl_event_t ev;
  (void)seq;
  (void)hash;
  if (psl_event_decode_stored(canon, len, &ev, NULL) == 0)
    *(int64_t *)arg = ev.at;
  return 0;
}

/* The years the log reaches: its histories run in time order, so the head's `at` says. */
static int last_year(psl_log_t *log) {
  int64_t at = 0;
  int y = FIRST_YEAR + YEARS - 1, m;
  if (psl_log_get(log, psl_log_head(log, NULL), head_at, &at) == 0 && at > 0) {
    psl_local_ym(at, &y, &m);
    if (y > FIRST_YEAR + YEARS - 1)
      y = FIRST_YEAR + YEARS - 1;
  }
  return y < FIRST_YEAR ? FIRST_YEAR : y;
}

static void bench_queries(psl_log_t *log, psl_projdb_t *db, writer_t *w) {
  int years = last_year(log) - FIRST_YEAR + 1; /* a build cut short reaches fewer years */
  double *ms = malloc(QUERIES * sizeof *ms);
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  read_t r = {.db = db};
  if (!ms)
    exit(1);
  double *one = malloc(QUERIES * sizeof *one), *all = malloc(QUERIES * sizeof *all);
  size_t none = 0, nall = 0;
  if (!one || !all)
    exit(1);
  for (size_t i = 0; i < QUERIES; i++) {
    int terr = (int)(xs(&seed) % 5), year = FIRST_YEAR + (int)(xs(&seed) % (uint64_t)years);
    int month = xs(&seed) % 3 ? 0 : 1 + (int)(xs(&seed) % 12);
    int programme = xs(&seed) % 4 ? 0 : 1 + (int)(xs(&seed) % 4);
    const char *site = xs(&seed) % 5 ? NULL : sites[xs(&seed) % 7];
    must(psl_counters_query_init(&r.q, terr, year, month, programme, site), "query");
    double t0 = now_s();
    must(psl_log_with_read_txn(log, read_counters, &r), "counters");
    ms[i] = (now_s() - t0) * 1000;
    if (terr)
      one[none++] = ms[i];
    else
      all[nall++] = ms[i];
  }
  print_latency("counters", ms, QUERIES, TARGET_P99_MS);
  /* the cost follows the people a query visits: a territory's year, or every territory's */
  if (none)
    print_latency("  one terr", one, none, 0);
  if (nall)
    print_latency("  all terr", all, nall, 0);
  free(one);
  free(all);
  size_t n = 0;
  for (size_t i = 0; i < w->nids; i++, n++) {
    r.id = w->ids[i];
    double t0 = now_s();
    int rc = psl_log_with_read_txn(log, read_participant, &r);
    ms[n] = (now_s() - t0) * 1000;
    if (rc == 0)
      psl_participant_free(&r.st);
    else if (rc != PSL_ENOTFOUND)
      must(rc, "participant");
  }
  if (n)
    print_latency("participant", ms, n, 0);
  r.year = years > 1 ? FIRST_YEAR + years - 2 : FIRST_YEAR; /* the last whole year */
  double t0 = now_s();
  must(psl_log_with_read_txn(log, read_report, &r), "report");
  printf("%-14s year %d, %zu rows: %.1f ms\n", "report", r.year, r.r.nrows,
         (now_s() - t0) * 1000);
  psl_report_free(&r.r);
  free(ms);
}

static int count_record(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                        size_t len) {
  (void)seq;
  (void)hash;
  (void)canon;
  (void)len;
  ++*(uint64_t *)arg;
  return 0;
}

/* Empty proj_meta (psl_domain.h names the databases): with no seq and no format recorded,
 * the next open with psl_projection_hooks rebuilds every projection from seq 1. */
static void forget_projections(const char *dir) {
  char path[4200];
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  snprintf(path, sizeof path, "%s/log", dir);
  if (mdb_env_create(&env))
    return;
  mdb_env_set_maxdbs(env, 64);
  mdb_env_set_mapsize(env, MAP_BYTES);
  if (mdb_env_open(env, path, 0, 0600) == 0 && mdb_txn_begin(env, NULL, 0, &txn) == 0) {
    if (mdb_dbi_open(txn, "proj_meta", 0, &dbi) == 0 && mdb_drop(txn, dbi, 0) == 0)
      mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
  }
  mdb_env_close(env);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int main(void) {
  const char *env = getenv("PSL_BENCH_EVENTS"), *budget_env = getenv("PSL_BENCH_BUDGET");
  const char *logdir = getenv("PSL_BENCH_LOG");
  uint64_t total = env ? strtoull(env, NULL, 10) : DEFAULT_EVENTS;
  double budget = budget_env ? atof(budget_env) : DEFAULT_BUDGET_S;
  char tmp[] = "/tmp/bench-proj-XXXXXX", dir[4096];
  if (total < 10000 || (!logdir && !mkdtemp(tmp))) {
    fprintf(stderr, "bench-proj: PSL_BENCH_EVENTS >= 10000, and a folder under /tmp\n");
    return 1;
  }
  snprintf(dir, sizeof dir, "%s", logdir ? logdir : tmp);
  setvbuf(stdout, NULL, _IOLBF, 0);
  writer_t w = {0};
  psl_demo_scale_opts_t so = {(size_t)(total / EVENTS_PER_PERSON) + 1, 2024, FIRST_YEAR, YEARS};
  w.batch = malloc(BATCH * sizeof *w.batch);
  w.evs = malloc(BATCH * sizeof *w.evs);
  w.res = malloc(BATCH * sizeof *w.res);
  w.ids = malloc(QUERIES * sizeof *w.ids);
  if (!w.batch || !w.evs || !w.res || !w.ids)
    return 1;
  must(psl_demo_scale_new(&w.gen, &so), "generator");

  /* 1. build, without projections (or reuse PSL_BENCH_LOG's) */
  psl_log_opts_t o = {.map_size = MAP_BYTES};
  must(psl_log_open(&w.log, dir, &o), "open");
  uint64_t n = psl_log_head(w.log, NULL);
  double t0 = now_s(), dt, build_rate = 0;
  printf("bench-proj: %s\n", dir);
  if (n == 0) {
    n = write_events(&w, total, budget);
    dt = now_s() - t0;
    build_rate = (double)n / dt;
    printf("%-14s %" PRIu64 " events (%zu people planned, %d-%d) in %.1f s: %.0f events/s\n",
           "build",
           n, so.participants, FIRST_YEAR, FIRST_YEAR + YEARS - 1, dt, build_rate);
    if (n < total)
      printf("%-14s the build stopped at its %.0f s budget: the figures below are at %" PRIu64
             " events, not %" PRIu64 " (PSL_BENCH_BUDGET=0 builds them all)\n",
             "", budget, n, total);
  } else {
    printf("%-14s %" PRIu64 " events already in the log: measured as they are\n", "build", n);
    w.written = n;
    /* the generator, moved past what the log holds, feeds the live run */
    psl_demo_event_t *skip = malloc(sizeof *skip);
    for (uint64_t i = 0; skip && i < n && psl_demo_scale_next(w.gen, skip) == 0; i++)
      sample_id(&w, skip, i);
    free(skip);
  }

  psl_projdb_t *db = NULL;
  o.hooks = psl_projection_hooks(&db);
  if (logdir && w.written == n && getenv("PSL_BENCH_QUERIES")) {
    psl_log_close(w.log);
    t0 = now_s();
    must(psl_log_open(&w.log, dir, &o), "open with projections");
    printf("%-14s opened with its projections in %.2f s\n", "open", now_s() - t0);
    bench_queries(w.log, db, &w);
    goto close;
  }

  /* 2. the ceiling: a scan of the whole log that only counts */
  uint64_t after = 0, last = 0, scanned = 0;
  t0 = now_s();
  while (after < n) {
    must(psl_log_read(w.log, after, NULL, 4u << 20, 0, count_record, &scanned, &last), "scan");
    if (last <= after)
      break;
    after = last;
  }
  dt = now_s() - t0;
  printf("%-14s %" PRIu64 " events read in %.2f s: %.0f events/s (the ceiling of a rebuild)\n",
         "scan", scanned, dt, (double)scanned / dt);

  /* 3. rebuild in memory */
  psl_proj_t *mem;
  t0 = now_s();
  must(psl_proj_rebuild_from_log(w.log, &mem), "rebuild");
  dt = now_s() - t0;
  double rate = (double)n / dt;
  printf("%-14s %" PRIu64 " events in %.2f s: %.0f events/s  (target >= %.0f: %s)\n",
         "rebuild (mem)", n, dt, rate, TARGET_REBUILD, rate >= TARGET_REBUILD ? "met" : "NOT met");
  psl_proj_free(mem);
  psl_log_close(w.log);

  /* 4. the server's start on a log without projections: fold and store them (a reused log's
   * projections are dropped first) */
  forget_projections(dir);
  t0 = now_s();
  must(psl_log_open(&w.log, dir, &o), "open with projections");
  dt = now_s() - t0;
  printf("%-14s %" PRIu64 " events folded and stored in LMDB at open in %.2f s: %.0f events/s\n",
         "rebuild (srv)", n, dt, (double)n / dt);

  /* 5-7. queries on the stored projections */
  bench_queries(w.log, db, &w);

  /* 8. live: the projections in the writer's transaction */
  t0 = now_s();
  uint64_t live = write_events(&w, LIVE_EVENTS, 0);
  dt = now_s() - t0;
  if (live && build_rate > 0)
    printf("%-14s %" PRIu64 " events appended with live projections: %.0f events/s (%.0f "
           "without)\n",
           "live", live, (double)live / dt, build_rate);
  else if (live)
    printf("%-14s %" PRIu64 " events appended with live projections: %.0f events/s\n", "live",
           live, (double)live / dt);
close:
  psl_log_close(w.log);
  psl_projdb_free(db);
  psl_demo_scale_free(w.gen);
  free(w.batch);
  free(w.evs);
  free(w.res);
  free(w.ids);
  if (!logdir && !getenv("PSL_BENCH_KEEP"))
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}
