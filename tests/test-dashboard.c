/*
 * test-dashboard.c — the dashboard (server/www/) in a real browser: headless Debian Chromium
 * driven by tests/browser/dashboard.test.mjs (playwright-core), against the real passerelled
 * loaded with the demo data (tools/demo: the 2024 data set, whose report prints back the
 * figures of the organisation's 2024 activity report).
 *
 * This test starts the server, loads the data, makes the tokens, then runs
 *   node tests/browser/dashboard.test.mjs PORT TOKEN OUTDIR CASEWORKER_TOKEN
 * and serves its requests, one line each on the script's stdout, answered on its stdin:
 *   "@ctl push TERR YEAR MONTH"  push a new participant.referred there (mid-month) → "ok"
 *   "@ctl restart"               stop the server and start it again on the same port → "ok"
 * Every other line of the script is its log, copied to stderr.  The test passes when the
 * script exits 0.  Screenshots go to docs/screenshots/ (linked from the README).
 *
 * Chromium, node and tests/browser/node_modules are installed by `make deps`; when one of
 * them is missing the test fails saying so (a browser test that cannot run is not a pass).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "psl_demo.h"
#include "psl_domain.h"
#include "support/evgen.h"
#include "support/mpw.h"
#include "support/srv.h"
#include "support/tcli.h"

/* Debian's chromium package installs here (make deps). */
#define DASH_CHROMIUM "/usr/bin/chromium"
/* Events of one push of the demo data: 500 events of ~400 bytes are ~200 KB, a tenth of
 * PSL_MAX_FRAME, and few round trips for the data set's few thousand events. */
#define DASH_PUSH_BATCH 500u
#define MS_PER_HOUR INT64_C(3600000)
#define MS_PER_DAY (24 * MS_PER_HOUR)
/* Whole-test bound: the script itself gives up after 90 s (its own deadline). */
#define DASH_TIMEOUT_S 150
/* One answer of the server to a push. */
#define DASH_PUSH_TIMEOUT_MS 10000

/* The demo data set (tools/demo: the 2024 activity report's figures), in pushes of
 * DASH_PUSH_BATCH events; every event must be stored. */
static void dash_load(uint16_t port, const char *token) {
  psl_demo_event_t *demo = NULL;
  size_t n = 0;
  char err[256];
  wsc_t *c = NULL;
  tcli_welcome_t wel;
  CHECK_OK(psl_demo_2024(&demo, &n));
  CHECK(n > 0);
  psl_event_t *evs = calloc(DASH_PUSH_BATCH, sizeof *evs);
  tcli_result_t *res = calloc(DASH_PUSH_BATCH, sizeof *res);
  CHECK(evs && res);
  if (tcli_open(&c, port, token, "dashboard-loader", &wel, err, sizeof err))
    psl_test_fail(__FILE__, __LINE__, "hello: %s", err);
  for (size_t at = 0, id = 1; at < n; at += DASH_PUSH_BATCH, id++) {
    size_t k = n - at < DASH_PUSH_BATCH ? n - at : DASH_PUSH_BATCH;
    for (size_t i = 0; i < k; i++)
      psl_demo_event_view(&demo[at + i], &evs[i]);
    if (tcli_push(c, id, evs, k, res, DASH_PUSH_TIMEOUT_MS, err, sizeof err))
      psl_test_fail(__FILE__, __LINE__, "push: %s", err);
    for (size_t i = 0; i < k; i++)
      if (res[i].err)
        psl_test_fail(__FILE__, __LINE__, "demo event %zu (%s) refused: %s %s", at + i,
                      demo[at + i].type, psl_err_code(res[i].err), res[i].msg);
  }
  wsc_close(c);
  free(res);
  free(evs);
  free(demo);
}

/* "@ctl push TERR YEAR MONTH": a new participant referred at noon on the 15th of that month
 * (Paris time), at a site of that territory. */
static void dash_push_one(uint16_t port, const char *token, const char *terr, int year,
                          int month) {
  static const struct {
    const char *terr, *programme, *site;
  } places[] = {{"93", "rsa93", "csl-gagny"},
                {"75", "dynamiques-emploi", "qsl-sante"},
                {"94", "o2r", "spip-creteil"},
                {"77", "o2r", "qsl-meaux"}};
  size_t p = 0;
  for (size_t i = 0; i < sizeof places / sizeof places[0]; i++)
    if (strcmp(places[i].terr, terr) == 0)
      p = i;
  uint8_t pid[PSL_UUID_BYTES];
  char stream[PSL_MAX_STREAM], u[PSL_UUID_STR + 1], err[256];
  psl_buf_t data, pii;
  mpw_t w, pw;
  evgen_uuid(pid);
  psl_uuid_format(pid, u);
  snprintf(stream, sizeof stream, "participant/%s", u);
  psl_buf_init(&data, 0);
  psl_buf_init(&pii, 0);
  mpw_init(&w, &data);
  mpw_map(&w, 8);
  mpw_str(&w, "programme");
  mpw_str(&w, places[p].programme);
  mpw_str(&w, "site");
  mpw_str(&w, places[p].site);
  mpw_str(&w, "source");
  mpw_str(&w, "spip");
  mpw_str(&w, "justice");
  mpw_str(&w, "semi-liberty");
  mpw_str(&w, "gender");
  mpw_str(&w, "f");
  mpw_str(&w, "birth_year");
  mpw_int(&w, year - 30);
  mpw_str(&w, "education");
  mpw_str(&w, "3");
  mpw_str(&w, "rsa");
  mpw_bool(&w, 1);
  mpw_init(&pw, &pii);
  mpw_map(&pw, 1);
  mpw_str(&pw, "name");
  mpw_str(&pw, "Personne du test"); /* pii: never shown by the dashboard */
  CHECK(w.err == 0 && pw.err == 0);

  psl_event_t ev;
  memset(&ev, 0, sizeof ev);
  evgen_uuid(ev.id);
  ev.stream = psl_str(stream);
  ev.type = psl_str("participant.referred");
  ev.terr = psl_str(places[p].terr);
  ev.at = psl_local_month_start(year, month) + 14 * MS_PER_DAY + 12 * MS_PER_HOUR;
  ev.expect = 0;
  ev.data.ptr = psl_buf_data(&data);
  ev.data.len = data.len;
  ev.pii.ptr = psl_buf_data(&pii);
  ev.pii.len = pii.len;

  wsc_t *c = NULL;
  tcli_welcome_t wel;
  tcli_result_t res;
  if (tcli_open(&c, port, token, "dashboard-test", &wel, err, sizeof err))
    psl_test_fail(__FILE__, __LINE__, "hello: %s", err);
  if (tcli_push(c, 1, &ev, 1, &res, DASH_PUSH_TIMEOUT_MS, err, sizeof err))
    psl_test_fail(__FILE__, __LINE__, "push: %s", err);
  if (res.err)
    psl_test_fail(__FILE__, __LINE__, "push refused: %s %s", psl_err_code(res.err), res.msg);
  wsc_close(c);
  psl_buf_free(&data);
  psl_buf_free(&pii);
}

/* root ‖ rel into out[PATH_MAX]; a path too long fails the test. */
static void dash_path(char *out, const char *root, const char *rel) {
  if (snprintf(out, PATH_MAX, "%s/%s", root, rel) >= PATH_MAX)
    psl_test_fail(__FILE__, __LINE__, "path too long: %s/%s", root, rel);
}

/* What the browser test needs; a clear failure when something is missing. */
static void dash_require_tools(const char *root) {
  char path[PATH_MAX];
  if (access(DASH_CHROMIUM, X_OK) != 0)
    psl_test_fail(__FILE__, __LINE__,
                  "dashboard: %s not found: the browser tests need Debian's chromium "
                  "(`make deps` installs it: apt-get install chromium)",
                  DASH_CHROMIUM);
  if (system("command -v node >/dev/null 2>&1") != 0)
    psl_test_fail(__FILE__, __LINE__,
                  "dashboard: node not found: the browser tests need Node.js (`make deps`)");
  dash_path(path, root, "tests/browser/node_modules/playwright-core/package.json");
  if (access(path, R_OK) != 0)
    psl_test_fail(__FILE__, __LINE__,
                  "dashboard: %s missing: run `make deps` (npm ci in tests/browser)", path);
}

/* The repository's root: two levels above the binaries (build/bin). */
static void dash_root(char *out, size_t cap) {
  char tmp[PATH_MAX];
  CHECK(cap >= PATH_MAX); /* realpath's need */
  dash_path(tmp, psl_test_bindir(), "../..");
  if (!realpath(tmp, out))
    psl_test_fail(__FILE__, __LINE__, "realpath %s: %s", tmp, strerror(errno));
}

/* Run `node script args...` from the repository's root (args NULL-ended, at most 6), serving
 * its @ctl requests with srv and token; its exit status. */
static int dash_run_script(const char *root, const char *script, const char *const *args,
                           srv_t *srv, const char *token) {
  char path[PATH_MAX];
  const char *argv[9];
  size_t n = 0;
  int to_node[2], from_node[2];
  dash_path(path, root, script);
  argv[n++] = "node";
  argv[n++] = path;
  for (size_t i = 0; args[i] && n < sizeof argv / sizeof argv[0] - 1; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  CHECK(pipe(to_node) == 0 && pipe(from_node) == 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(to_node[0], STDIN_FILENO);
    dup2(from_node[1], STDOUT_FILENO);
    close(to_node[1]);
    close(from_node[0]);
    if (chdir(root) != 0)
      _exit(126);
    execvp("node", (char *const *)argv);
    fprintf(stderr, "dashboard: exec node: %s\n", strerror(errno));
    _exit(127);
  }
  close(to_node[0]);
  close(from_node[1]);
  signal(SIGPIPE, SIG_IGN); /* the script may end before it reads an answer */
  FILE *in = fdopen(from_node[0], "r"), *out = fdopen(to_node[1], "w");
  CHECK(in && out);
  char line[1024];
  while (fgets(line, sizeof line, in)) {
    char terr[8];
    int year, month;
    if (strncmp(line, "@ctl ", 5) != 0) {
      fputs(line, stderr);
      continue;
    }
    if (sscanf(line, "@ctl push %7s %d %d", terr, &year, &month) == 3) {
      dash_push_one(srv->port, token, terr, year, month);
      fputs("ok\n", out);
    } else if (strncmp(line, "@ctl restart", 12) == 0) {
      int rc = srv_stop(srv, 0);
      if (rc == 0)
        rc = srv_start(srv, 0);
      fprintf(out, rc == 0 ? "ok\n" : "err %s\n", srv->err);
    } else {
      fprintf(out, "err unknown request\n");
    }
    fflush(out);
  }
  fclose(in);
  fclose(out);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
    ;
  if (WIFSIGNALED(st))
    return 128 + WTERMSIG(st);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A server on a fresh data folder with the demo data, and its tokens. */
typedef struct {
  char root[PATH_MAX], dir[PATH_MAX];
  char coord[PSL_TOKEN_LEN + 1], cw[PSL_TOKEN_LEN + 1];
  srv_t srv;
} dash_fixture_t;

static void dash_setup(dash_fixture_t *f) {
  char loader[PSL_TOKEN_LEN + 1];
  dash_root(f->root, sizeof f->root);
  dash_require_tools(f->root);
  dash_path(f->dir, psl_test_tmpdir(), "data");
  if (srv_init(&f->srv, psl_test_bindir(), f->dir) != 0)
    psl_test_fail(__FILE__, __LINE__, "srv_init: %s", f->srv.err);
  CHECK_OK(srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "responsable", "navigateur", f->coord));
  CHECK_OK(srv_token(&f->srv, PSL_ROLE_CASEWORKER, "93", "cm-93", "navigateur", f->cw));
  CHECK_OK(srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "chargement", "test", loader));
  if (srv_start(&f->srv, 0) != 0)
    psl_test_fail(__FILE__, __LINE__, "srv_start: %s", f->srv.err);
  f->srv.fixed_port = f->srv.port; /* restarts keep the page's address */
  dash_load(f->srv.port, loader);
}

static void dash_finish(dash_fixture_t *f, int rc, const char *script) {
  if (rc != 0) {
    srv_dump_log(&f->srv, 2000);
    srv_stop(&f->srv, 0);
    psl_test_fail(__FILE__, __LINE__, "%s exited with status %d", script, rc);
  }
  CHECK_OK(srv_stop(&f->srv, 0));
}

/* The whole dashboard over http:// and ws:// (dashboard.test.mjs says what it checks). */
TEST_T(dashboard, browser, DASH_TIMEOUT_S) {
  static dash_fixture_t f;
  char port[16], outdir[PATH_MAX];
  dash_setup(&f);
  snprintf(port, sizeof port, "%u", f.srv.port);
  dash_path(outdir, f.root, "docs/screenshots");
  const char *args[] = {port, f.coord, outdir, f.cw, NULL};
  int rc = dash_run_script(f.root, "tests/browser/dashboard.test.mjs", args, &f.srv, f.coord);
  dash_finish(&f, rc, "dashboard.test.mjs");
}

/* Over https:// and wss:// (HTTP/2, as browsers speak it over TLS): the page arrives whole,
 * signs in, goes live, shows the API's figures. */
TEST_T(dashboard, tls, DASH_TIMEOUT_S) {
  static dash_fixture_t f;
  char port[16];
  dash_setup(&f);
  CHECK_OK(srv_stop(&f.srv, 0));
  if (srv_use_tls(&f.srv) != 0 || srv_start(&f.srv, 0) != 0)
    psl_test_fail(__FILE__, __LINE__, "TLS start: %s", f.srv.err);
  snprintf(port, sizeof port, "%u", f.srv.port);
  const char *args[] = {port, f.coord, NULL};
  int rc = dash_run_script(f.root, "tests/browser/dashboard-tls.test.mjs", args, &f.srv, f.coord);
  dash_finish(&f, rc, "dashboard-tls.test.mjs");
}
