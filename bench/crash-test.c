/*
 * crash-test.c — the long crash run (`make crash-test`): the real passerelled under
 * concurrent push load, killed with SIGKILL at random moments, restarted and checked, for
 * 100 cycles or more (tests/support/crash.h says what each cycle does and checks).
 *
 *   crash-test [--cycles N] [--seed S] [--pushers P] [--depth D] [--max-load-ms MS]
 *              [--figures FILE]
 *
 * Prints one line per cycle and the figures at the end; --figures also writes them as
 * `key value` lines (make reliability-report puts them into docs/RELIABILITY.md).  Exit
 * status 0 only when every cycle held every guarantee.  A failed run keeps its data folder
 * and names it, with the seed to replay it.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "support/crash.h"
#include "support/srv.h"

/* PROTOCOL-v1's acceptance: at least 100 kill -9 cycles under load. */
#define DEFAULT_CYCLES 100

static void usage(void) {
  fprintf(stderr, "usage: crash-test [--cycles N] [--seed S] [--pushers P] [--depth D]\n"
                  "                  [--max-load-ms MS] [--figures FILE]\n");
}

static void write_figures(const char *path, const crash_stats_t *st, const char *when) {
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    return;
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  fprintf(f, "crash.date %s\n", when);
  fprintf(f, "crash.cpus %ld\n", ncpu);
  fprintf(f, "crash.cycles %d\n", st->cycles);
  fprintf(f, "crash.seed 0x%llx\n", (unsigned long long)st->seed);
  fprintf(f, "crash.pushes %llu\n", (unsigned long long)st->pushes);
  fprintf(f, "crash.acked %llu\n", (unsigned long long)st->acked);
  fprintf(f, "crash.inflight %llu\n", (unsigned long long)st->inflight);
  fprintf(f, "crash.inflight_kept %llu\n", (unsigned long long)st->inflight_kept);
  fprintf(f, "crash.dup_checked %llu\n", (unsigned long long)st->dup_checked);
  fprintf(f, "crash.head %llu\n", (unsigned long long)st->head);
  fprintf(f, "crash.lost %llu\n", (unsigned long long)st->lost);
  fprintf(f, "crash.proj_checks %llu\n", (unsigned long long)st->proj_checks);
  fprintf(f, "crash.kill_ms %.0f-%.0f\n", st->kill_ms_min, st->kill_ms_max);
  fprintf(f, "crash.elapsed_s %.0f\n", st->elapsed_s);
  fclose(f);
}

int main(int argc, char **argv) {
  crash_opts_t o;
  int cycles = DEFAULT_CYCLES;
  const char *figures = NULL;
  char bindir[PATH_MAX], dir[PATH_MAX], err[2048];
  memset(&o, 0, sizeof o);
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    const char *a = argv[i], *v = argv[++i];
    if (strcmp(a, "--cycles") == 0)
      cycles = atoi(v);
    else if (strcmp(a, "--seed") == 0)
      o.seed = strtoull(v, NULL, 0);
    else if (strcmp(a, "--pushers") == 0)
      o.pushers = atoi(v);
    else if (strcmp(a, "--depth") == 0)
      o.depth = atoi(v);
    else if (strcmp(a, "--max-load-ms") == 0)
      o.max_load_ms = atoi(v);
    else if (strcmp(a, "--figures") == 0)
      figures = v;
    else {
      usage();
      return 2;
    }
  }
  if (cycles < 1 || srv_self_dir(bindir, sizeof bindir) != 0) {
    usage();
    return 2;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/psl-crash-XXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char data[PATH_MAX + 8];
  snprintf(data, sizeof data, "%s/data", dir);
  o.bindir = bindir;
  o.dir = data;

  crash_t *c = NULL;
  crash_stats_t st;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (crash_new(&c, &o, err, sizeof err) != 0) {
    fprintf(stderr, "crash-test: %s\n", err);
    return 1;
  }
  crash_stats(c, &st);
  printf("crash-test: %d cycles of kill -9 under load, seed 0x%llx, data in %s\n", cycles,
         (unsigned long long)st.seed, data);
  int rc = 0;
  for (int i = 1; i <= cycles && rc == 0; i++) {
    rc = crash_cycle(c, err, sizeof err);
    crash_stats(c, &st);
    if (rc == 0)
      printf("cycle %3d: head %8llu  acknowledged %8llu  in flight at the kill %6llu (kept "
             "%5llu)  lost %llu  %.0f s\n",
             i, (unsigned long long)st.head, (unsigned long long)st.acked,
             (unsigned long long)st.inflight, (unsigned long long)st.inflight_kept,
             (unsigned long long)st.lost, st.elapsed_s);
  }
  if (rc == 0)
    rc = crash_finish(c, err, sizeof err);
  crash_stats(c, &st);
  if (rc) {
    fprintf(stderr, "crash-test: FAILED after %d cycles: %s\n  seed 0x%llx, data kept in %s, "
                    "server log %s\n",
            st.cycles, err, (unsigned long long)st.seed, data, crash_server_log(c));
    crash_free(c);
    return 1;
  }
  char when[32];
  time_t now = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%d", gmtime(&now));
  printf("\ncrash-test figures (%s):\n", when);
  printf("  kill -9 cycles                        %d\n", st.cycles);
  printf("  pushes sent (load and retries)        %llu\n", (unsigned long long)st.pushes);
  printf("  events acknowledged                   %llu\n", (unsigned long long)st.acked);
  printf("  events in flight at the kills         %llu\n", (unsigned long long)st.inflight);
  printf("    of which the log had kept (dup)     %llu\n", (unsigned long long)st.inflight_kept);
  printf("  dup answers checked (seq, ver)        %llu\n", (unsigned long long)st.dup_checked);
  printf("  log head at the end                   %llu\n", (unsigned long long)st.head);
  printf("  acknowledged events lost or changed   %llu\n", (unsigned long long)st.lost);
  printf("  projections equal to a rebuild        %llu of %d checks%s\n",
         (unsigned long long)st.proj_checks, st.cycles + 1,
         st.proj_absent ? " (no projections in the log)" : "");
  printf("  kill moments after the load started   %.0f-%.0f ms\n", st.kill_ms_min,
         st.kill_ms_max);
  printf("  time checking / total                 %.0f / %.0f s\n", st.check_s, st.elapsed_s);
  if (figures)
    write_figures(figures, &st, when);
  crash_free(c);
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "crash-test: could not remove %s\n", dir);
  return 0;
}
