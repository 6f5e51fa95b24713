/*
 * bench-client — figures for the field client library (client-lib/) against the real server.
 *
 *   1. Catch-up rate: a fresh client store syncs a log of 100,000 events (BRIEF §6's shape:
 *      ~300-byte interview.held events, a participant.referred every 50), in process through
 *      psl_client_sync: replica, participant projections and checkpoint written chunk by chunk
 *      in durable transactions.  Once with permessage-deflate offered, once without.
 *   2. Peak memory: `passerelle sync` (the CLI, a process of its own) catches up 1,000,000
 *      events into a fresh store; its peak RSS (getrusage of the child) and, sampled from
 *      /proc every 20 ms, its peak anonymous memory (heap, stacks: what the client allocates)
 *      apart from file-backed pages (LMDB's map, which the kernel reclaims at will).  Target:
 *      under 32 MiB.
 *
 * The server's log is loaded directly (psl_log_append in batches), not through pushes: the
 * subject here is the client.  Figures only, never assertions.
 *
 *   bench-client            (env PSL_BENCH_KEEP=1 keeps the temporary folder;
 *                            PSL_BENCH_EVENTS=N changes the 1,000,000 of the memory run)
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "passerelle.h"
#include "psl_access.h"
#include "psl_log.h"
#include "psl_proto.h"
#include "support/evgen.h"
#include "support/srv.h"

#define CATCHUP_EVENTS 100000u
#define MEMORY_EVENTS 1000000u
#define EVENTS_PER_PARTICIPANT 50u
#define EVENT_BYTES 300u       /* BRIEF §6 */
#define LOAD_BATCH 4096u       /* bench-log's best batch for raw ingest */
#define TARGET_PEAK_MIB 32.0
#define SAMPLE_US 20000u

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void must(int rc, const char *what) {
  if (rc) {
    fprintf(stderr, "bench-client: %s: %s\n", what, psl_strerror(rc));
    exit(1);
  }
}

/* Append n more events to the log in dir (server stopped). */
static void load_log(const char *dir, uint64_t n) {
  static evgen_t ev[LOAD_BATCH];
  static psl_event_t batch[LOAD_BATCH];
  static psl_push_result_t res[LOAD_BATCH];
  static uint8_t pid[PSL_UUID_BYTES];
  psl_log_t *log;
  must(psl_log_open(&log, dir, NULL), "open the log");
  uint64_t done = psl_log_head(log, NULL);
  uint64_t end = done + n;
  while (done < end) {
    size_t k = end - done < LOAD_BATCH ? (size_t)(end - done) : LOAD_BATCH;
    for (size_t i = 0; i < k; i++) {
      if ((done + i) % EVENTS_PER_PARTICIPANT == 0) {
        evgen_uuid(pid);
        evgen_referred(&ev[i], pid, "93", "Bench Person");
      } else {
        evgen_interview(&ev[i], pid, "93", PSL_EXPECT_ANY, EVENT_BYTES);
      }
      batch[i] = ev[i].ev;
      batch[i].by = psl_str("bench");
      batch[i].dev = psl_str("bench-device");
    }
    must(psl_log_append(log, batch, k, res), "append");
    done += k;
  }
  psl_log_close(log);
}

static psl_client_t *open_client(const char *home, int deflate, const char *url,
                                 const char *tok) {
  psl_client_t *c;
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.home = home;
  o.no_deflate = !deflate;
  must(psl_client_open(&c, &o), "open the client");
  must(psl_client_login(c, url, tok), "login");
  return c;
}

static void catch_up_rate(const char *tmp, const char *url, const char *tok, int deflate) {
  char home[PATH_MAX + 16];
  psl_client_status_t st;
  snprintf(home, sizeof home, "%s/rate-%d", tmp, deflate);
  psl_client_t *c = open_client(home, deflate, url, tok);
  double t0 = now_s();
  must(psl_client_sync(c, 0), "sync");
  double dt = now_s() - t0;
  must(psl_client_status(c, &st), "status");
  psl_client_close(c);
  printf("catch-up into a fresh store, deflate %-3s  %8.0f events/s  (%llu events, %.2f s, "
         "%.1f MB replica)\n",
         deflate ? "on" : "off", (double)st.replica_events / dt,
         (unsigned long long)st.replica_events, dt, (double)st.replica_bytes / 1e6);
}

static long status_kib(pid_t pid, const char *field) {
  char path[64], line[256];
  long v = -1;
  size_t fl = strlen(field);
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, fl) == 0 && line[fl] == ':')
      v = strtol(line + fl + 1, NULL, 10);
  fclose(f);
  return v;
}

static void peak_memory(const char *tmp, const char *bindir, const char *url, const char *tok,
                        uint64_t events) {
  char home[PATH_MAX + 8], bin[PATH_MAX + 16];
  snprintf(home, sizeof home, "%s/mem", tmp);
  snprintf(bin, sizeof bin, "%s/passerelle", bindir);
  psl_client_close(open_client(home, 1, url, tok)); /* the login, saved in the store */
  double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(1);
  }
  if (pid == 0) {
    if (!freopen("/dev/null", "w", stdout))
      _exit(127);
    execl(bin, bin, "--no-deflate", "--home", home, "sync", (char *)NULL);
    _exit(127);
  }
  long anon = 0, file = 0;
  int status = 0;
  struct rusage ru;
  for (;;) {
    pid_t r = wait4(pid, &status, WNOHANG, &ru);
    if (r == pid)
      break;
    long a = status_kib(pid, "RssAnon"), f = status_kib(pid, "RssFile");
    if (a > anon)
      anon = a;
    if (f > file)
      file = f;
    usleep(SAMPLE_US);
  }
  double dt = now_s() - t0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench-client: passerelle sync failed (status %d)\n", status);
    exit(1);
  }
  double maxrss = (double)ru.ru_maxrss / 1024.0;
  printf("passerelle sync of %llu events: %.1f s (%.0f events/s)\n", (unsigned long long)events,
         dt, (double)events / dt);
  printf("  peak RSS (ru_maxrss)           %6.1f MiB   target < %.0f MiB: %s\n", maxrss,
         TARGET_PEAK_MIB, maxrss < TARGET_PEAK_MIB ? "met" : "NOT met");
  printf("  peak anonymous memory          %6.1f MiB   (heap, stacks: what the client holds)\n",
         (double)anon / 1024.0);
  printf("  peak file-backed resident      %6.1f MiB   (LMDB map pages; reclaimable)\n",
         (double)file / 1024.0);
}

int main(void) {
  char tmp[PATH_MAX], dir[PATH_MAX + 8], bindir[PATH_MAX], url[64];
  char tok[PSL_TOKEN_LEN + 1];
  srv_t srv;
  const char *env = getenv("PSL_BENCH_EVENTS");
  uint64_t mem_events = env && atoll(env) > 0 ? (uint64_t)atoll(env) : MEMORY_EVENTS;
  lws_set_log_level(LLL_ERR, NULL);
  snprintf(tmp, sizeof tmp, "%s/psl-bench-client-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(tmp) || srv_self_dir(bindir, sizeof bindir)) {
    perror("bench-client: setup");
    return 1;
  }
  snprintf(dir, sizeof dir, "%s/srv", tmp);
  must(srv_init(&srv, bindir, dir), "srv_init");
  must(srv_token(&srv, PSL_ROLE_CASEWORKER, "93", "bench", "bench-phone", tok), "token");

  double t0 = now_s();
  load_log(dir, CATCHUP_EVENTS);
  printf("loaded %u events into the server's log in %.1f s\n", CATCHUP_EVENTS, now_s() - t0);
  must(srv_start(&srv, 120000), "start the server");
  snprintf(url, sizeof url, "ws://127.0.0.1:%u", srv.port);
  catch_up_rate(tmp, url, tok, 0);
  catch_up_rate(tmp, url, tok, 1);
  srv_stop(&srv, 0);

  t0 = now_s();
  if (mem_events > CATCHUP_EVENTS)
    load_log(dir, mem_events - CATCHUP_EVENTS);
  printf("loaded up to %llu events in %.1f s\n", (unsigned long long)mem_events, now_s() - t0);
  must(srv_start(&srv, 300000), "restart the server");
  snprintf(url, sizeof url, "ws://127.0.0.1:%u", srv.port);
  peak_memory(tmp, bindir, url, tok, mem_events);
  srv_stop(&srv, 0);

  if (!getenv("PSL_BENCH_KEEP")) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
      fprintf(stderr, "bench-client: could not remove %s\n", tmp);
  }
  return 0;
}
