/*
 * bench-compare — passerelle side by side with what a team would pick instead: Redis 7
 * Streams (appendfsync always) and an events table in PostgreSQL 15 (synchronous_commit on),
 * each started here from Debian's packages on a temporary folder, on loopback, and stopped
 * afterwards; the same 300-byte events, the same concurrency, every event acknowledged only
 * once durable.  bench/cmp/cmp.h describes the parts; docs/BENCHMARKS.md the method and the
 * figures.
 *
 * For each log size (10^4, 10^5, 10^6, 10^7 events, up to --max-log), and each store in turn,
 * a fresh instance is preloaded to that size, then measured `runs` times:
 *   catch-up of the last min(log, 10^6) events by one client; projection rebuild from the
 *   whole log; ingest with 1, 64 and 1,000 clients x 1 event per round trip and 64 clients x
 *   100 events per request.
 * At the summary's log size (10^6, or the largest below it) also: fan-out latency to 1,000
 * live subscribers; memory per idle connection (on a restarted instance).
 * Each figure is the median of the runs.  The raw values go to --results as they come; the
 * tables to stdout and, with --doc, into docs/BENCHMARKS.md between its markers.
 *
 *   bench-compare                    quick: 1 run, logs of 10^4 and 10^5 (make bench)
 *   bench-compare --runs 3 --max-log 10000000 --doc docs/BENCHMARKS.md   (make bench-report)
 *   bench-compare --from-results F --doc D    tables from an earlier raw file
 * Options: --systems passerelle,redis,postgres --runs N --seconds S --max-log N --levels
 * a,b,... --only ingest,catchup,rebuild,fanout,idle (or one shape: ingest_64x1, ...)
 * --fanout-rounds N --idle N --results F.
 * Environment: BENCH_RUNS, BENCH_SECONDS, BENCH_MAX_LOG as the options; TMPDIR.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cmp/cmp.h"
#include "cmp/report.h"
#include "support/srv.h"

static const uint64_t LEVELS[] = {10000, 100000, 1000000, 10000000};
#define NLEVELS_DEFAULT (sizeof LEVELS / sizeof LEVELS[0])
#define HEADLINE_LEVEL 1000000u /* the summary table's log: the catch-up of 10^6 events */
/* Up to this log size each ingest shape runs on a fresh instance preloaded to the size (a few
 * seconds each at 10^6), so that the events earlier shapes added (up to ~10^6) do not make a
 * small log a large one.  Above, the shapes follow one another on one instance: at 10^7 they
 * add ~1.5 * 10^6 events, and preloading again would take minutes per shape. */
#define FRESH_MAX_LEVEL 1000000u
#define QUICK_MAX_LOG 100000u

static const struct {
  const char *key;
  size_t clients, batch;
} SHAPES[] = {{"ingest_1x1", 1, 1},
              {"ingest_64x1", 64, 1},
              {"ingest_1000x1", 1000, 1},
              {"ingest_64x100", 64, 100}};
#define NSHAPES (sizeof SHAPES / sizeof SHAPES[0])

typedef struct {
  const cmp_driver_t *drv[3];
  size_t ndrv;
  int runs;
  double seconds;
  uint64_t max_log;
  uint64_t levels[CMP_MAX_LEVELS];
  size_t nlevels;
  uint64_t headline;
  size_t fanout_rounds, idle_conns;
  char only[128];
  const char *doc, *results, *from_results;
} opts_t;

/* The temporary folder of every instance (short: the instances' paths are built on it). */
static char base[PATH_MAX / 4];
static cmp_sys_t *current;   /* the instance running now (for the signal handler) */

/* ---- Clean-up, also on Ctrl-C: the servers die (PDEATHSIG) and the folder goes. */

static void on_signal(int sig) {
  if (current && current->pid > 0) {
    kill(-current->pid, SIGKILL);
    kill(current->pid, SIGKILL);
  }
  if (base[0])
    execl("/bin/rm", "rm", "-rf", "--", base, (char *)NULL);
  _exit(128 + sig);
}

static void remove_base(void) {
  if (base[0] && !getenv("PSL_BENCH_KEEP"))
    cmp_rm_rf(base);
}

/* --only: comma-separated names; "ingest" selects every ingest shape, "ingest_64x1" one. */
static int wanted(const opts_t *o, const char *what) {
  const char *t = o->only;
  if (!*t)
    return 1;
  while (*t) {
    size_t n = strcspn(t, ","), w = strlen(what);
    /* equal, or one is the other's section: "ingest" and "ingest_64x1" */
    if (n > 0 && strncmp(t, what, n < w ? n : w) == 0 &&
        (n == w || (n < w ? what[n] : t[w]) == '_'))
      return 1;
    t += n + (t[n] == ',');
  }
  return 0;
}

/* ---- One store at one log size. */

static void say_fail(cmp_results_t *res, const cmp_sys_t *s, uint64_t level, const char *what,
                     const char *err) {
  printf("    %s: FAILED: %s\n", what, err);
  cmp_res_note(res, "%s, log %llu: %s failed: %s", s->drv->label, (unsigned long long)level,
               what, err);
}

static void measure_reads(cmp_results_t *res, const opts_t *o, cmp_sys_t *s, uint64_t level,
                          uint64_t count, int run) {
  char err[256] = "";
  cmp_rate_t rate;
  uint64_t back = count < CMP_CATCHUP_EVENTS ? count : CMP_CATCHUP_EVENTS;
  if (wanted(o, "catchup") && back > 0) {
    if (cmp_catchup(s, back, o->seconds, &rate, err, sizeof err)) {
      say_fail(res, s, level, "catch-up", err);
    } else {
      cmp_res_add(res, s->drv->name, "catchup", level, run, rate.events_per_s);
      printf("    catch-up of %llu events: %.0f events/s (%llu events in %.2f s)%s%s\n",
             (unsigned long long)back, rate.events_per_s, (unsigned long long)rate.events,
             rate.seconds, err[0] ? "; " : "", err);
    }
  }
  err[0] = '\0';
  if (wanted(o, "rebuild")) {
    if (cmp_rebuild(s, &rate, err, sizeof err)) {
      say_fail(res, s, level, "rebuild", err);
    } else {
      cmp_res_add(res, s->drv->name, "rebuild", level, run, rate.events_per_s);
      printf("    rebuild: %.0f events/s (%llu events in %.2f s)\n", rate.events_per_s,
             (unsigned long long)rate.events, rate.seconds);
    }
  }
}

/* One ingest shape, once: 0 and *stored (every event acknowledged), or -1 (recorded). */
static int measure_shape(cmp_results_t *res, const opts_t *o, cmp_sys_t *s, uint64_t level,
                         int run, size_t i, uint64_t *stored) {
  char err[256] = "", key[40];
  cmp_ingest_t in;
  *stored = 0;
  if (cmp_ingest(s, SHAPES[i].clients, SHAPES[i].batch, o->seconds, &in, err, sizeof err)) {
    say_fail(res, s, level, SHAPES[i].key, err);
    return -1;
  }
  *stored = in.stored;
  cmp_res_add(res, s->drv->name, SHAPES[i].key, level, run, in.events_per_s);
  snprintf(key, sizeof key, "%s.p50", SHAPES[i].key);
  cmp_res_add(res, s->drv->name, key, level, run, in.p50_ms);
  snprintf(key, sizeof key, "%s.p99", SHAPES[i].key);
  cmp_res_add(res, s->drv->name, key, level, run, in.p99_ms);
  printf("    %zu x %zu: %.0f events/s (%llu requests, p50 %.2f ms, p99 %.2f ms; cpu: "
         "server %.0f%%, load generator %.0f%%)\n",
         SHAPES[i].clients, SHAPES[i].batch, in.events_per_s, (unsigned long long)in.requests,
         in.p50_ms, in.p99_ms, 100 * in.server_cpu, 100 * in.client_cpu);
  if (in.refused)
    cmp_res_note(res, "%s, log %llu, %s: %llu events refused", s->drv->label,
                 (unsigned long long)level, SHAPES[i].key, (unsigned long long)in.refused);
  return 0;
}

static void measure_fanout(cmp_results_t *res, const opts_t *o, cmp_sys_t *s, uint64_t level,
                           int run) {
  char err[256] = "";
  cmp_fanout_t f;
  if (cmp_fanout(s, CMP_FANOUT_SUBS, o->fanout_rounds, o->seconds * 10, &f, err, sizeof err)) {
    say_fail(res, s, level, "fan-out", err);
    return;
  }
  cmp_res_add(res, s->drv->name, "fanout_p50", level, run, f.p50_push_ms);
  cmp_res_add(res, s->drv->name, "fanout_p99", level, run, f.p99_push_ms);
  cmp_res_add(res, s->drv->name, "fanout_ack_p50", level, run, f.p50_ack_ms);
  cmp_res_add(res, s->drv->name, "fanout_ack_p99", level, run, f.p99_ack_ms);
  printf("    fan-out to %u: from the push p50 %.2f ms p99 %.2f ms; from its ack p50 %.2f ms "
         "p99 %.2f ms (%llu rounds)\n",
         CMP_FANOUT_SUBS, f.p50_push_ms, f.p99_push_ms, f.p50_ack_ms, f.p99_ack_ms,
         (unsigned long long)f.rounds);
}

static void measure_idle(cmp_results_t *res, const opts_t *o, cmp_sys_t *s, uint64_t level,
                         int run) {
  char err[256] = "";
  cmp_idle_t id;
  size_t n = s->drv == &cmp_drv_pg && o->idle_conns > CMP_PG_IDLE_CONNS ? CMP_PG_IDLE_CONNS
                                                                        : o->idle_conns;
  if (s->drv->restart(s)) { /* a fresh process: what earlier shapes freed does not hide any */
    say_fail(res, s, level, "restart", s->err);
    return;
  }
  if (cmp_idle(s, n, &id, err, sizeof err)) {
    say_fail(res, s, level, "idle connections", err);
    return;
  }
  cmp_res_add(res, s->drv->name, "idle_bytes", level, run, id.bytes_per_conn);
  cmp_res_add(res, s->drv->name, "idle_conns", level, run, (double)n);
  printf("    %zu idle connections: %.0f bytes each (server Pss %ld -> %ld KiB)\n", n,
         id.bytes_per_conn, id.kib_before, id.kib_after);
}

/* A fresh instance preloaded to `level`: the running one, if any, emptied in place (the
 * driver's reset) or stopped and removed.  0, or -1 after recording why. */
static int fresh(cmp_results_t *res, cmp_sys_t *s, uint64_t level, uint64_t *count, int quiet) {
  char err[256] = "";
  double t0 = cmp_now();
  s->err[0] = '\0';
  if (s->d && s->drv->reset) {
    if (s->drv->reset(s)) {
      say_fail(res, s, level, "reset", s->err);
      return -1;
    }
  } else {
    if (s->d || s->pid) {
      s->drv->stop(s);
      free(s->d);
      s->d = NULL;
      cmp_rm_rf(s->dir);
    }
    if (mkdir(s->dir, 0755) < 0) {
      cmp_res_note(res, "%s: mkdir %s: %s", s->drv->label, s->dir, strerror(errno));
      return -1;
    }
    if (s->drv->start(s)) {
      say_fail(res, s, level, "start", s->err);
      return -1;
    }
  }
  if (cmp_preload(s, level, count, err, sizeof err)) {
    say_fail(res, s, level, "preload", err);
    return -1;
  }
  if (!quiet)
    printf("    preloaded %llu events in %.1f s\n", (unsigned long long)*count, cmp_now() - t0);
  return 0;
}

static void measure(cmp_results_t *res, const opts_t *o, const cmp_driver_t *drv,
                    uint64_t level) {
  cmp_sys_t s;
  uint64_t count = 0, stored, after = 0, fresh_ones = 0;
  int used = 0, lost = 0;
  memset(&s, 0, sizeof s);
  s.drv = drv;
  if (srv_self_dir(s.bindir, sizeof s.bindir))
    snprintf(s.bindir, sizeof s.bindir, "build/bin");
  snprintf(s.dir, sizeof s.dir, "%s/%s-%llu", base, drv->name, (unsigned long long)level);
  printf("== %s, log of %llu events\n", drv->label, (unsigned long long)level);
  current = &s;
  if (fresh(res, &s, level, &count, 0))
    goto stop;
  for (int run = 1; run <= o->runs; run++)
    measure_reads(res, o, &s, level, count, run);
  for (int run = 1; run <= o->runs; run++)
    for (size_t i = 0; i < NSHAPES; i++) {
      if (!wanted(o, SHAPES[i].key))
        continue;
      /* Each shape on a log of `level` events: a fresh one while preloading is cheap. */
      if (used && level <= FRESH_MAX_LEVEL) {
        if (fresh(res, &s, level, &count, 1))
          goto stop;
        fresh_ones++;
      }
      used = 1;
      if (measure_shape(res, o, &s, level, run, i, &stored))
        continue;
      /* Every acknowledged event must be in the log: count them. */
      if (drv->count(&s, &after) || after != count + stored) {
        lost = 1;
        cmp_res_note(res, "%s, log %llu, %s: %llu events in the log, %llu expected",
                     drv->label, (unsigned long long)level, SHAPES[i].key,
                     (unsigned long long)after, (unsigned long long)(count + stored));
      }
      count = after;
    }
  if (used && !lost)
    printf("    every acknowledged event is in the log (%llu fresh instance%s preloaded for "
           "the ingest shapes; the last log holds %llu events)\n",
           (unsigned long long)fresh_ones, fresh_ones == 1 ? "" : "s",
           (unsigned long long)count);
  if (level == o->headline) {
    for (int run = 1; run <= o->runs && wanted(o, "fanout"); run++)
      measure_fanout(res, o, &s, level, run);
    for (int run = 1; run <= o->runs && wanted(o, "idle"); run++)
      measure_idle(res, o, &s, level, run);
  }
stop:
  drv->stop(&s);
  free(s.d);
  current = NULL;
  if (!getenv("PSL_BENCH_KEEP"))
    cmp_rm_rf(s.dir);
}

/* ---- What the document says about the machine. */

static void proc_value(const char *path, const char *key, char *out, size_t outlen) {
  FILE *f = fopen(path, "r");
  char line[512];
  out[0] = '\0';
  if (!f)
    return;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, strlen(key)) == 0) {
      char *v = strchr(line, ':');
      if (v) {
        v++;
        while (*v == ' ' || *v == '\t')
          v++;
        snprintf(out, outlen, "%s", v);
        out[strcspn(out, "\n")] = '\0';
      }
      break;
    }
  fclose(f);
}

/* The device and file system the folder lives on (the longest mount point above it). */
static void mount_of(const char *dir, char *out, size_t outlen) {
  FILE *f = fopen("/proc/mounts", "r");
  char dev[256], mnt[256], fs[64];
  size_t best = 0;
  snprintf(out, outlen, "an unknown file system");
  if (!f)
    return;
  while (fscanf(f, "%255s %255s %63s %*[^\n]", dev, mnt, fs) == 3) {
    size_t n = strlen(mnt);
    if (strncmp(dir, mnt, n) == 0 && (dir[n] == '/' || dir[n] == '\0' || n == 1) && n >= best) {
      best = n;
      snprintf(out, outlen, "%.100s (%.40s)", dev, fs);
    }
  }
  fclose(f);
}

/* The 1, 5 and 15-minute load averages: how quiet the machine was. */
static void load_average(char *out, size_t outlen) {
  double a = 0, b = 0, c = 0;
  FILE *f = fopen("/proc/loadavg", "r");
  if (!f || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
    snprintf(out, outlen, "unknown");
  else
    snprintf(out, outlen, "%.2f, %.2f, %.2f (1, 5, 15 min)", a, b, c);
  if (f)
    fclose(f);
}

static void describe_machine(cmp_results_t *res) {
  char cpu[160], mem[64], redis[160], pg[160], commit[64], when[64], pgbin[PATH_MAX + 16],
      load[64], disk[160];
  struct utsname u;
  time_t now = time(NULL);
  proc_value("/proc/cpuinfo", "model name", cpu, sizeof cpu);
  proc_value("/proc/meminfo", "MemTotal", mem, sizeof mem);
  uname(&u);
  const char *rv[] = {"/usr/bin/redis-server", "--version", NULL};
  cmp_first_line(rv, redis, sizeof redis);
  snprintf(pgbin, sizeof pgbin, "/usr/lib/postgresql/15/bin/postgres");
  const char *pv[] = {pgbin, "--version", NULL};
  cmp_first_line(pv, pg, sizeof pg);
  const char *gv[] = {"/usr/bin/git", "describe", "--always", "--dirty", NULL};
  cmp_first_line(gv, commit, sizeof commit);
  load_average(load, sizeof load);
  mount_of(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", disk, sizeof disk);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
  snprintf(res->machine, sizeof res->machine,
           "- Run: %s, passerelle at commit %s\n"
           "- CPU: %.100s, %ld cores online; memory %s; Linux %.60s\n"
           "- Peers: %.100s; %.100s\n"
           "- Data under %.200s, on %s (every store on the same disk)\n"
           "- Load average when the run started: %s\n",
           when, commit[0] ? commit : "(not a git tree)", cpu, sysconf(_SC_NPROCESSORS_ONLN),
           mem, u.release, redis[0] ? redis : "redis-server not found", pg[0] ? pg : "postgres "
                                                                               "not found",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", disk, load);
}

/* ---- Options. */

static int parse_list_u64(const char *s, uint64_t *out, size_t max) {
  size_t n = 0;
  while (*s && n < max) {
    char *end;
    out[n++] = strtoull(s, &end, 10);
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',')
      return -1;
  }
  return (int)n;
}

static void usage(void) {
  fprintf(stderr, "usage: bench-compare [--systems passerelle,redis,postgres] [--runs N] "
                  "[--seconds S] [--max-log N]\n"
                  "         [--levels a,b,...] [--only ingest,catchup,rebuild,fanout,idle] "
                  "[--fanout-rounds N] [--idle N]\n"
                  "         [--results FILE] [--doc FILE] [--from-results FILE]\n");
  exit(2);
}

static void parse_opts(opts_t *o, int argc, char **argv) {
  const char *systems = "passerelle,redis,postgres", *levels = NULL;
  memset(o, 0, sizeof *o);
  o->runs = getenv("BENCH_RUNS") ? atoi(getenv("BENCH_RUNS")) : 1;
  o->seconds = getenv("BENCH_SECONDS") ? atof(getenv("BENCH_SECONDS")) : 1.0;
  o->max_log = getenv("BENCH_MAX_LOG") ? strtoull(getenv("BENCH_MAX_LOG"), NULL, 10)
                                       : QUICK_MAX_LOG;
  o->fanout_rounds = 50;
  o->idle_conns = CMP_IDLE_CONNS;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v)
      usage();
    i++;
    if (strcmp(a, "--systems") == 0) systems = v;
    else if (strcmp(a, "--runs") == 0) o->runs = atoi(v);
    else if (strcmp(a, "--seconds") == 0) o->seconds = atof(v);
    else if (strcmp(a, "--max-log") == 0) o->max_log = strtoull(v, NULL, 10);
    else if (strcmp(a, "--levels") == 0) levels = v;
    else if (strcmp(a, "--only") == 0) snprintf(o->only, sizeof o->only, "%s", v);
    else if (strcmp(a, "--fanout-rounds") == 0) o->fanout_rounds = (size_t)atoi(v);
    else if (strcmp(a, "--idle") == 0) o->idle_conns = (size_t)atoi(v);
    else if (strcmp(a, "--results") == 0) o->results = v;
    else if (strcmp(a, "--doc") == 0) o->doc = v;
    else if (strcmp(a, "--from-results") == 0) o->from_results = v;
    else usage();
  }
  if (o->runs < 1 || o->runs > CMP_MAX_RUNS || o->seconds <= 0 || o->max_log < 1)
    usage();
  static const cmp_driver_t *const all[] = {&cmp_drv_psl, &cmp_drv_redis, &cmp_drv_pg};
  for (size_t i = 0; i < 3; i++)
    if (strstr(systems, all[i]->name))
      o->drv[o->ndrv++] = all[i];
  if (levels) {
    int n = parse_list_u64(levels, o->levels, CMP_MAX_LEVELS);
    if (n <= 0)
      usage();
    o->nlevels = (size_t)n;
  } else {
    for (size_t i = 0; i < NLEVELS_DEFAULT; i++)
      if (LEVELS[i] <= o->max_log)
        o->levels[o->nlevels++] = LEVELS[i];
    if (o->nlevels == 0)
      o->levels[o->nlevels++] = o->max_log;
  }
  o->headline = o->levels[0];
  for (size_t i = 0; i < o->nlevels; i++)
    if (o->levels[i] <= HEADLINE_LEVEL)
      o->headline = o->levels[i];
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  opts_t o;
  cmp_results_t res;
  char err[256];
  parse_opts(&o, argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  cmp_res_init(&res);
  res.runs = o.runs;
  res.seconds = o.seconds;
  res.headline = o.headline;
  for (size_t i = 0; i < o.ndrv; i++)
    res.systems[res.nsystems++] = o.drv[i]->name;
  memcpy(res.levels, o.levels, sizeof o.levels);
  res.nlevels = o.nlevels;
  size_t cl = 0;
  for (int i = 0; i < argc && cl + 2 < sizeof res.command; i++)
    cl += (size_t)snprintf(res.command + cl, sizeof res.command - cl, "%s%s", i ? " " : "",
                           i ? argv[i] : "bench-compare");
  if (o.from_results) {
    if (cmp_res_load(&res, o.from_results)) {
      fprintf(stderr, "bench-compare: cannot read %s\n", o.from_results);
      return 1;
    }
  } else {
    describe_machine(&res);
    if (o.results && !(res.raw = fopen(o.results, "w")))
      fprintf(stderr, "bench-compare: cannot write %s\n", o.results);
    cmp_res_header(&res);
    snprintf(base, sizeof base, "%s/psl-cmp-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                       : "/tmp");
    if (!mkdtemp(base) || chmod(base, 0755) < 0) {
      fprintf(stderr, "bench-compare: mkdtemp: %s\n", strerror(errno));
      return 1;
    }
    atexit(remove_base);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("bench-compare: %d run(s) of %.0f s per figure, logs up to %llu events, in %s\n",
           o.runs, o.seconds, (unsigned long long)o.levels[o.nlevels - 1], base);
    double t0 = cmp_now();
    for (size_t l = 0; l < o.nlevels; l++)
      for (size_t i = 0; i < o.ndrv; i++)
        measure(&res, &o, o.drv[i], o.levels[l]);
    printf("bench-compare: measured in %.0f s\n", cmp_now() - t0);
    char load[64];
    load_average(load, sizeof load);
    cmp_res_note(&res, "Measured in %.0f s; load average at the end: %s.", cmp_now() - t0, load);
  }
  cmp_res_print(&res, stdout);
  int rc = 0;
  if (o.doc && (rc = cmp_doc_write(&res, o.doc, err, sizeof err)) != 0)
    fprintf(stderr, "bench-compare: %s\n", err);
  else if (o.doc)
    printf("\nbench-compare: tables rewritten in %s\n", o.doc);
  cmp_res_free(&res);
  return rc ? 1 : 0;
}
