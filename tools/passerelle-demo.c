/*
 * passerelle-demo — write a demo data set into a running passerelled through the real sync
 * protocol, as a field client would, then print the yearly report the server computes.
 *
 *   passerelle-demo --token T [--url ws://HOST:PORT] [options]
 *     (default)        the 2024 data set (libpsl-demo, docs/DEMO.md): 104 people whose
 *                      report prints back the figures of the 2024 activity report; then
 *                      GET /api/v1/report?year=2024&format=md, and the seed's figures
 *                      compared one by one with what the report says (exit 1 if one
 *                      differs)
 *     --scale N        N participants with generated histories instead (load tests)
 *       --seed S       their random seed (default 1)
 *       --first-year Y --years K   referrals spread over [Y, Y + K) (default 2024, 1)
 *     --home DIR       the client's folder (default: a temporary one in /dev/shm, removed at
 *                      the end)
 *     --no-report      write only
 *     --timeout S      for each sync pass (default 300)
 *   passerelle-demo --probe S [--url ws://HOST:PORT]
 *                      wait up to S seconds for GET /healthz to answer 200 (0: ask once);
 *                      exit 0 when it does, 3 otherwise (make demo: is a server running?)
 *   The token may also come from $PSL_TOKEN.  A coordinator's token writes everywhere.
 *
 * How it writes: libpasserelle (client-lib/include/passerelle.h), the library field apps
 * use: each event is appended to the client's durable outbox, and psl_client_sync pushes
 * the outbox and catches up, every PSL_DEMO_SYNC_EVERY events.  Every event carries
 * `expect` (its stream's version before it), so that running the demo twice stores the data
 * once: the second time the server answers each event `conflict`, counted as "already
 * there".  The client stamps its own event ids; the one reference to an event id in the
 * data (event.voided's `of`) is rewritten to the id the client gave.
 *
 * The report is read over HTTP from the same host and port (ws:// only: the small HTTP
 * client here does not speak TLS; with wss:// use passerelle-audit report on the server).
 *
 * Exit status: 0 done (and, for the 2024 set, every figure as the seed); 1 a figure differs
 * or the server refused events; 2 usage; 3 the server could not be reached.
 * Personal data: the data sets hold made-up names only ("Personne 000001").
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "passerelle.h"
#include "psl_demo.h"
#include "psl_proto.h"

/* Appends between two sync passes: bounds the outbox (and a pass's work) at a --scale that
 * writes millions of events, while keeping passes few (each one connects, pushes in
 * batches, catches up). */
#define PSL_DEMO_SYNC_EVERY 50000u
/* Event ids remembered to rewrite event.voided's `of`: a void follows its event within a
 * person's few next events, far fewer than this. */
#define ID_MAP_SIZE 8192u
#define DEFAULT_TIMEOUT_S 300
#define HTTP_TIMEOUT_MS 60000

typedef struct {
  const char *url, *token, *home;
  char host[256];
  uint16_t port;
  int secure;
  size_t scale;
  uint64_t seed;
  int first_year, years;
  int report;
  int timeout_s;
  int probe_s; /* -1: not a probe */
} opts_t;

static void usage(void) {
  fprintf(stderr,
          "usage: passerelle-demo --token T [--url ws://HOST:PORT] [--home DIR] [--no-report]\n"
          "                       [--timeout S] [--scale N [--seed S] [--first-year Y]"
          " [--years K]]\n"
          "       passerelle-demo --probe S [--url ws://HOST:PORT]\n");
  exit(2);
}

static long parse_num(const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max)
    usage();
  return v;
}

/* ws://host:port[/sync] → host, port. */
static int parse_url(opts_t *o) {
  const char *p = o->url;
  if (strncmp(p, "ws://", 5) == 0)
    p += 5;
  else if (strncmp(p, "wss://", 6) == 0)
    p += 6, o->secure = 1;
  else
    return -1;
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl >= sizeof o->host)
    return -1;
  memcpy(o->host, p, hl);
  o->host[hl] = '\0';
  o->port = o->secure ? 443 : 80;
  if (p[hl] == ':') {
    char *end;
    long port = strtol(p + hl + 1, &end, 10);
    if (port <= 0 || port > 65535 || (*end && *end != '/'))
      return -1;
    o->port = (uint16_t)port;
  }
  return 0;
}

/* ---- Writing. */

typedef struct {
  uint8_t gen[PSL_UUID_BYTES], client[PSL_UUID_BYTES];
} id_pair_t;

typedef struct {
  psl_client_t *c;
  const opts_t *o;
  id_pair_t ids[ID_MAP_SIZE]; /* a ring: the last ids appended */
  size_t nids;
  uint64_t appended, since_sync;
  double sync_s; /* time spent in sync passes */
  int tty;
} writer_t;

/* event.voided names the voided event by id; the client gave that event an id of its own. */
static void rewrite_void(writer_t *w, psl_demo_event_t *e) {
  size_t have = w->nids < ID_MAP_SIZE ? w->nids : ID_MAP_SIZE;
  for (size_t i = 0; i < have; i++) {
    uint8_t pat[2 + PSL_UUID_BYTES] = {0xc4, PSL_UUID_BYTES};
    memcpy(pat + 2, w->ids[i].gen, PSL_UUID_BYTES);
    uint8_t *at = memmem(e->data, e->data_len, pat, sizeof pat);
    if (at) {
      memcpy(at + 2, w->ids[i].client, PSL_UUID_BYTES);
      return;
    }
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sync_pass(writer_t *w) {
  double t0 = now_s();
  int rc = psl_client_sync(w->c, w->o->timeout_s * 1000);
  w->sync_s += now_s() - t0;
  if (rc)
    fprintf(stderr, "%spasserelle-demo: sync: %s\n", w->tty ? "\n" : "", psl_strerror(rc));
  w->since_sync = 0;
  return rc;
}

static int write_one(writer_t *w, psl_demo_event_t *e) {
  char why[160];
  psl_client_new_event_t ne = {e->stream, e->type, e->terr, e->at, e->data, e->data_len,
                               e->pii_len ? e->pii : NULL, e->pii_len, e->expect};
  id_pair_t *slot = &w->ids[w->nids % ID_MAP_SIZE];
  if (strcmp(e->type, "event.voided") == 0)
    rewrite_void(w, e);
  int rc = psl_client_append(w->c, &ne, slot->client, why, sizeof why);
  if (rc) {
    fprintf(stderr, "passerelle-demo: %s of %s not appended: %s (%s)\n", e->type, e->stream,
            psl_strerror(rc), why);
    return rc;
  }
  memcpy(slot->gen, e->id, PSL_UUID_BYTES);
  w->nids++;
  w->appended++;
  if (w->tty && w->appended % 1000 == 0)
    fprintf(stderr, "\rpasserelle-demo: %" PRIu64 " events written", w->appended);
  if (++w->since_sync >= PSL_DEMO_SYNC_EVERY)
    return sync_pass(w);
  return 0;
}

typedef struct {
  uint64_t conflict, other;
  char first[160];
} refused_t;

static int count_refused(void *arg, const psl_client_refusal_t *r) {
  refused_t *rf = arg;
  if (r->err == PSL_ECONFLICT) {
    rf->conflict++;
  } else {
    if (!rf->other)
      snprintf(rf->first, sizeof rf->first, "%s %s: %s", r->event->type,
               psl_err_code(r->err), r->msg);
    rf->other++;
  }
  return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* The client's folder when none is given: in /dev/shm when there is one.  Why: each append
 * is a durable commit of the client's outbox (~2 ms on a disk that the server fsyncs too,
 * ~20 us in memory), and this outbox is thrown away at the end; `expect` makes a rerun after
 * a crash safe anyway. */
static char *temp_home(char *buf, size_t len) {
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
  snprintf(buf, len, "%s/passerelle-demo-XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(buf);
}

static int write_data(const opts_t *o, uint64_t *stored) {
  char tmp[512];
  const char *home = o->home;
  if (!home && !(home = temp_home(tmp, sizeof tmp))) {
    fprintf(stderr, "passerelle-demo: mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  psl_client_opts_t copts;
  memset(&copts, 0, sizeof copts);
  copts.home = home;
  copts.device = "passerelle-demo";
  copts.agent = "passerelle-demo/1";
  writer_t *w = calloc(1, sizeof *w);
  int rc = w ? psl_client_open(&w->c, &copts) : PSL_ENOMEM;
  if (!rc)
    rc = psl_client_login(w->c, o->url, o->token);
  if (rc) {
    fprintf(stderr, "passerelle-demo: client: %s\n", psl_strerror(rc));
    goto done;
  }
  w->o = o;
  w->tty = isatty(STDERR_FILENO);
  double t0 = now_s();

  if (o->scale) {
    psl_demo_scale_opts_t so = {o->scale, o->seed, o->first_year, o->years};
    psl_demo_scale_t *g;
    psl_demo_event_t *e = malloc(sizeof *e);
    if (!e || (rc = psl_demo_scale_new(&g, &so)) != 0) {
      free(e);
      rc = rc ? rc : PSL_ENOMEM;
      goto done;
    }
    while (!rc && psl_demo_scale_next(g, e) == 0)
      rc = write_one(w, e);
    psl_demo_scale_free(g);
    free(e);
  } else {
    psl_demo_event_t *evs;
    size_t n;
    if ((rc = psl_demo_2024(&evs, &n)) != 0)
      goto done;
    for (size_t i = 0; !rc && i < n; i++)
      rc = write_one(w, &evs[i]);
    free(evs);
  }
  if (!rc)
    rc = sync_pass(w);
  if (w->tty)
    fputs("\r\033[K", stderr);
  if (!rc) {
    refused_t rf = {0, 0, ""};
    psl_client_refused_read(w->c, count_refused, &rf);
    *stored = w->appended - rf.conflict - rf.other;
    double secs = now_s() - t0;
    printf("passerelle-demo: %" PRIu64 " events written to %s: %" PRIu64 " stored, %" PRIu64
           " already there%s\n",
           w->appended, o->url, *stored, rf.conflict,
           rf.conflict == w->appended ? " (the data set was written before)" : "");
    fflush(stdout);
    fprintf(stderr,
            "passerelle-demo: %.1f s (%.0f events/s): %.1f s appending to the client's outbox, "
            "%.1f s syncing\n",
            secs, secs > 0 ? (double)w->appended / secs : 0.0, secs - w->sync_s, w->sync_s);
    if (rf.other) {
      fprintf(stderr, "passerelle-demo: %" PRIu64 " events refused; the first: %s\n", rf.other,
              rf.first);
      rc = PSL_EINVALID;
    }
  }
done:
  if (w)
    psl_client_close(w->c);
  free(w);
  if (!o->home)
    nftw(home, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc == PSL_EUNAVAILABLE ? 3 : rc ? 1 : 0;
}

/* ---- Is a server there? */

static int probe(const opts_t *o) {
  struct timespec nap = {0, 100 * 1000 * 1000};
  for (int tries = 0;; tries++) {
    int status = 0;
    char *body = NULL;
    if (psl_demo_http_get(o->host, o->port, "/healthz", NULL, 2000, &status, &body, NULL, NULL,
                          0) == 0 &&
        status == 200) {
      free(body);
      return 0;
    }
    free(body);
    if (tries >= o->probe_s * 10)
      return 3;
    nanosleep(&nap, NULL);
  }
}

/* ---- The report. */

static int fetch(const opts_t *o, const char *path, char **body) {
  int status;
  int rc = psl_demo_http_get(o->host, o->port, path, o->token, HTTP_TIMEOUT_MS, &status, body,
                             NULL, NULL, 0);
  if (rc) {
    fprintf(stderr, "passerelle-demo: GET %s: %s\n", path, psl_strerror(rc));
    return 3;
  }
  if (status != 200) {
    fprintf(stderr, "passerelle-demo: GET %s: HTTP %d %s\n", path, status, *body);
    free(*body);
    *body = NULL;
    return 1;
  }
  return 0;
}

static int print_report(const opts_t *o) {
  char path[128], *md = NULL, *json = NULL;
  int year = o->scale ? o->first_year + o->years - 1 : 2024;
  snprintf(path, sizeof path, "/api/v1/report?year=%d&format=md", year);
  int rc = fetch(o, path, &md);
  if (rc)
    return rc;
  printf("\n%s\n", md);
  free(md);
  if (o->scale)
    return 0;
  snprintf(path, sizeof path, "/api/v1/report?year=%d&format=json", year);
  if ((rc = fetch(o, path, &json)) != 0)
    return rc;
  psl_demo_figure_t figs[PSL_DEMO_NFIGURES];
  int ok = psl_demo_check(json, strlen(json), figs);
  free(json);
  if (ok < 0) {
    fprintf(stderr, "passerelle-demo: the report's JSON does not read as a report\n");
    return 1;
  }
  printf("## Les chiffres du rapport d'activité 2024, relus dans le rapport\n\n"
         "| figure | rapport d'activité 2024 | rapport passerelle | |\n|---|---:|---:|---|\n");
  for (int i = 0; i < PSL_DEMO_NFIGURES; i++)
    printf("| %s | %s | %s | %s |\n", figs[i].what, figs[i].seed, figs[i].got,
           figs[i].ok ? "ok" : "DIFFERENT");
  printf("\n%d of %d figures as in the activity report.\n", ok, PSL_DEMO_NFIGURES);
  if (ok != PSL_DEMO_NFIGURES)
    fprintf(stderr, "passerelle-demo: the log holds more than the demo data set, or the data "
                    "set does not meet the report's figures\n");
  return ok == PSL_DEMO_NFIGURES ? 0 : 1;
}

int main(int argc, char **argv) {
  opts_t o = {.url = "ws://127.0.0.1:8420", .token = getenv("PSL_TOKEN"), .seed = 1,
              .first_year = 2024, .years = 1, .report = 1, .timeout_s = DEFAULT_TIMEOUT_S,
              .probe_s = -1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--no-report")) {
      o.report = 0;
      continue;
    }
    if (!v)
      usage();
    i++;
    if (!strcmp(a, "--url"))
      o.url = v;
    else if (!strcmp(a, "--token"))
      o.token = v;
    else if (!strcmp(a, "--home"))
      o.home = v;
    else if (!strcmp(a, "--scale"))
      o.scale = (size_t)parse_num(v, 1, 100000000);
    else if (!strcmp(a, "--seed"))
      o.seed = (uint64_t)parse_num(v, 1, 0x7fffffffL);
    else if (!strcmp(a, "--first-year"))
      o.first_year = (int)parse_num(v, 2000, 2098);
    else if (!strcmp(a, "--years"))
      o.years = (int)parse_num(v, 1, 50);
    else if (!strcmp(a, "--timeout"))
      o.timeout_s = (int)parse_num(v, 1, 86400);
    else if (!strcmp(a, "--probe"))
      o.probe_s = (int)parse_num(v, 0, 3600);
    else
      usage();
  }
  if (parse_url(&o) != 0)
    usage();
  if (o.probe_s >= 0)
    return o.secure ? 2 : probe(&o);
  if (!o.token || !*o.token || o.first_year + o.years > 2100)
    usage();
  lws_set_log_level(LLL_ERR, NULL); /* the client library's lws: errors only */
  uint64_t stored = 0;
  int rc = write_data(&o, &stored);
  if (rc)
    return rc;
  if (!o.report)
    return 0;
  if (o.secure) {
    fprintf(stderr, "passerelle-demo: wss://: read the report with passerelle-audit report\n");
    return 0;
  }
  return print_report(&o);
}
