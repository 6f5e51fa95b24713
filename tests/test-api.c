/*
 * test-api.c — the HTTP API over the real server (area `api`): /api/v1/counters,
 * /api/v1/participants/<uuid> and /api/v1/report answer exactly what the in-process
 * projection of the same events gives (the reference: psl_proj_* folding the events the
 * test pushed, in the order the server stored them), in JSON, CSV and Markdown; the caller's
 * mistakes are answered 400, 401, 403 or 404 with a JSON error; projections missing from a
 * log written before them are caught up when the server starts.
 *
 * The events are the 2024 demo data set (libpsl-demo): 104 people, transfers, a void, a
 * merged duplicate, sessions — the cases where a projection can go wrong.
 */
#include "harness.h"

#include <limits.h>
#include <time.h>

#include "psl_access.h"
#include "psl_demo.h"
#include "psl_domain.h"
#include "psl_log.h"
#include "support/demoref.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

#define T_MS 10000
/* Events per push: well under PSL_MAX_PUSH_EVENTS and the frame limit. */
#define PUSH_EVENTS 400

typedef struct {
  srv_t srv;
  char coord[PSL_TOKEN_LEN + 1], audit[PSL_TOKEN_LEN + 1], cw93[PSL_TOKEN_LEN + 1],
      cw75[PSL_TOKEN_LEN + 1];
  psl_demo_event_t *ev;
  size_t n;
  psl_proj_t *ref; /* the reference projection */
} fx_t;

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- The reference: the events folded in process, seq = position + 1. */

static void fx_reference(fx_t *f) {
  CHECK_OK(demoref_fold(f->ev, f->n, "coord-test", "laptop-1", &f->ref));
}

static void fx_init(fx_t *f) {
  char dir[PATH_MAX];
  memset(f, 0, sizeof *f);
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  CHECK_OK(srv_init(&f->srv, psl_test_bindir(), dir));
  CHECK_OK(srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "coord-test", "laptop-1", f->coord));
  CHECK_OK(srv_token(&f->srv, PSL_ROLE_AUDITOR, NULL, "audit-test", "laptop-2", f->audit));
  CHECK_OK(srv_token(&f->srv, PSL_ROLE_CASEWORKER, "93", "cw-93", "phone-1", f->cw93));
  CHECK_OK(srv_token(&f->srv, PSL_ROLE_CASEWORKER, "75", "cw-75", "phone-2", f->cw75));
  CHECK_OK(psl_demo_2024(&f->ev, &f->n));
  fx_reference(f);
}

static void fx_start(fx_t *f) {
  if (srv_start(&f->srv, 0) != 0)
    psl_test_fail(__FILE__, __LINE__, "server: %s", f->srv.err);
}

static void fx_free(fx_t *f) {
  srv_stop(&f->srv, 0);
  psl_proj_free(f->ref);
  free(f->ev);
}

/* Push every event, in order, over one connection: each must be stored at seq i + 1. */
static void fx_push_all(fx_t *f) {
  wsc_t *c = NULL;
  char err[512];
  tcli_welcome_t w;
  psl_event_t evs[PUSH_EVENTS];
  tcli_result_t res[PUSH_EVENTS];
  if (tcli_open(&c, f->srv.port, f->coord, "laptop-1", &w, err, sizeof err) != 0)
    psl_test_fail(__FILE__, __LINE__, "hello: %s", err);
  for (size_t i = 0, id = 1; i < f->n; i += PUSH_EVENTS, id++) {
    size_t k = f->n - i < PUSH_EVENTS ? f->n - i : PUSH_EVENTS;
    for (size_t j = 0; j < k; j++)
      psl_demo_event_view(&f->ev[i + j], &evs[j]);
    if (tcli_push(c, id, evs, k, res, T_MS, err, sizeof err) != 0)
      psl_test_fail(__FILE__, __LINE__, "push: %s", err);
    for (size_t j = 0; j < k; j++)
      if (res[j].err || res[j].seq != i + j + 1)
        psl_test_fail(__FILE__, __LINE__, "event %zu (%s): err %d seq %llu: %s", i + j,
                      f->ev[i + j].type, res[j].err, (unsigned long long)res[j].seq, res[j].msg);
  }
  wsc_close(c);
}

/* ---- HTTP. */

typedef struct {
  int status;
  char *body;
  char ctype[128];
} resp_t;

static void get(const fx_t *f, const char *path, const char *token, resp_t *r) {
  memset(r, 0, sizeof *r);
  int rc = psl_demo_http_get("127.0.0.1", f->srv.port, path, token, T_MS, &r->status, &r->body,
                             NULL, r->ctype, sizeof r->ctype);
  if (rc)
    psl_test_fail(__FILE__, __LINE__, "GET %s: %s", path, psl_strerror(rc));
}

static void expect_body(const char *path, const resp_t *r, const psl_buf_t *want) {
  if (r->status != 200 || strlen(r->body) != want->len ||
      memcmp(r->body, psl_buf_data(want), want->len) != 0) {
    fprintf(stderr, "GET %s: %d\n--- got\n%s\n--- want\n%.*s\n", path, r->status, r->body,
            (int)want->len, (const char *)psl_buf_data(want));
    psl_test_fail(__FILE__, __LINE__, "GET %s differs from the in-process projection", path);
  }
}

/* The counters of the query string against the reference's. */
static void check_counters(const fx_t *f, const char *query, int terr, int year, int month,
                           int programme, const char *site) {
  char path[256];
  psl_counters_query_t q;
  psl_counters_t c;
  psl_buf_t want;
  resp_t r;
  snprintf(path, sizeof path, "/api/v1/counters?%s", query);
  CHECK_OK(psl_counters_query_init(&q, terr, year, month, programme, site));
  CHECK_OK(psl_proj_counters(f->ref, &q, &c));
  psl_buf_init(&want, 0);
  CHECK_OK(psl_counters_json(&want, &c));
  CHECK_OK(psl_buf_append(&want, "\n", 1));
  get(f, path, f->coord, &r);
  CHECK_STR(r.ctype, "application/json; charset=utf-8");
  expect_body(path, &r, &want);
  free(r.body);
  psl_buf_free(&want);
}

/* A participant's state against the reference's, computed before and after the request
 * (age and months followed are those of now: a day boundary may pass in between). */
static void check_participant(const fx_t *f, const uint8_t id[PSL_UUID_BYTES], const char *tok) {
  char path[128], u[PSL_UUID_STR + 1];
  psl_participant_t st;
  psl_buf_t before, after;
  resp_t r;
  psl_uuid_format(id, u);
  snprintf(path, sizeof path, "/api/v1/participants/%s", u);
  CHECK_OK(psl_proj_participant(f->ref, id, &st));
  psl_buf_init(&before, 0);
  psl_buf_init(&after, 0);
  CHECK_OK(psl_participant_json(&before, &st, wall_ms()));
  CHECK_OK(psl_buf_append(&before, "\n", 1));
  get(f, path, tok, &r);
  CHECK_OK(psl_participant_json(&after, &st, wall_ms()));
  CHECK_OK(psl_buf_append(&after, "\n", 1));
  CHECK_STR(r.ctype, "application/json; charset=utf-8");
  if (strlen(r.body) == before.len && memcmp(r.body, psl_buf_data(&before), before.len) == 0)
    ; /* equal */
  else
    expect_body(path, &r, &after);
  free(r.body);
  psl_buf_free(&before);
  psl_buf_free(&after);
  psl_participant_free(&st);
}

static void check_report(const fx_t *f, int year, const char *terr_q, int terr,
                         const char *token) {
  static const struct {
    const char *format, *ctype;
    int (*render)(psl_buf_t *, const psl_report_t *);
    int newline;
  } formats[] = {{"json", "application/json; charset=utf-8", psl_report_json, 1},
                 {"csv", "text/csv; charset=utf-8; header=present", psl_report_csv, 0},
                 {"md", "text/markdown; charset=utf-8", psl_report_md, 0}};
  psl_report_t rep;
  CHECK_OK(psl_proj_report(f->ref, year, terr, &rep));
  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
    char path[256];
    psl_buf_t want;
    resp_t r;
    snprintf(path, sizeof path, "/api/v1/report?year=%d%s%s&format=%s", year,
             terr_q ? "&terr=" : "", terr_q ? terr_q : "", formats[i].format);
    psl_buf_init(&want, 0);
    CHECK_OK(formats[i].render(&want, &rep));
    if (formats[i].newline)
      CHECK_OK(psl_buf_append(&want, "\n", 1));
    get(f, path, token, &r);
    CHECK_STR(r.ctype, formats[i].ctype);
    expect_body(path, &r, &want);
    free(r.body);
    psl_buf_free(&want);
  }
  psl_report_free(&rep);
}

/* Every read the API offers, against the reference. */
static void check_everything(fx_t *f) {
  check_counters(f, "year=2024", 0, 2024, 0, 0, NULL);
  check_counters(f, "year=2024&terr=93", PSL_TERR_93, 2024, 0, 0, NULL);
  check_counters(f, "terr=75&year=2024&month=6", PSL_TERR_75, 2024, 6, 0, NULL);
  check_counters(f, "year=2024&programme=rsa93", 0, 2024, 0, 1, NULL);
  check_counters(f, "year=2024&site=csl-gagny", 0, 2024, 0, 0, "csl-gagny");
  check_counters(f, "year=2023&terr=93", PSL_TERR_93, 2023, 0, 0, NULL);
  check_counters(f, "year=2024&terr=all&month=12&programme=dynamiques-emploi&site=office", 0,
                 2024, 12, 2, "office");
  /* participants: every referral's, as the coordinator; the first few as their caseworker */
  size_t seen = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (strcmp(f->ev[i].type, "participant.referred") != 0)
      continue;
    uint8_t id[PSL_UUID_BYTES];
    CHECK_OK(psl_uuid_parse(f->ev[i].stream + 12, PSL_UUID_STR, id));
    check_participant(f, id, f->coord);
    if (seen++ < 3 && !strcmp(f->ev[i].terr, "93"))
      check_participant(f, id, f->cw93);
  }
  CHECK(seen > 104); /* with the merged duplicate */
  check_report(f, 2024, NULL, 0, f->coord);
  check_report(f, 2024, "93", PSL_TERR_93, f->audit);
  check_report(f, 2023, "all", 0, f->audit);
}

TEST_T(api, answers_equal_the_in_process_projection, 120) {
  fx_t f;
  fx_init(&f);
  fx_start(&f);
  fx_push_all(&f);
  check_everything(&f);
  fx_free(&f);
}

/* A log written before projections existed (no hooks): the server folds it when it starts,
 * then keeps the projections live. */
TEST_T(api, projections_caught_up_at_start, 120) {
  fx_t f;
  fx_init(&f);
  psl_log_t *log;
  psl_event_t *evs = calloc(f.n, sizeof *evs);
  psl_push_result_t *res = calloc(f.n, sizeof *res);
  CHECK(evs && res);
  CHECK_OK(psl_log_open(&log, f.srv.dir, NULL));
  size_t half = f.n / 2;
  for (size_t i = 0; i < half; i++) {
    psl_demo_event_view(&f.ev[i], &evs[i]);
    evs[i].by = psl_str("coord-test");
    evs[i].dev = psl_str("laptop-1");
  }
  CHECK_OK(psl_log_append(log, evs, half, res));
  for (size_t i = 0; i < half; i++)
    CHECK_EQ(res[i].seq, i + 1);
  psl_log_close(log);
  fx_start(&f);
  /* the rest live, through the protocol */
  wsc_t *c = NULL;
  char err[512];
  tcli_welcome_t w;
  tcli_result_t tr[PUSH_EVENTS];
  if (tcli_open(&c, f.srv.port, f.coord, "laptop-1", &w, err, sizeof err) != 0)
    psl_test_fail(__FILE__, __LINE__, "hello: %s", err);
  CHECK_EQ(w.head, half);
  for (size_t i = half, id = 1; i < f.n; i += PUSH_EVENTS, id++) {
    size_t k = f.n - i < PUSH_EVENTS ? f.n - i : PUSH_EVENTS;
    for (size_t j = 0; j < k; j++)
      psl_demo_event_view(&f.ev[i + j], &evs[j]);
    if (tcli_push(c, id, evs, k, tr, T_MS, err, sizeof err) != 0)
      psl_test_fail(__FILE__, __LINE__, "push: %s", err);
    for (size_t j = 0; j < k; j++)
      CHECK_EQ(tr[j].seq, i + j + 1);
  }
  wsc_close(c);
  check_everything(&f);
  /* and again after a restart (projections at the head: nothing to fold) */
  CHECK_OK(srv_stop(&f.srv, 0));
  fx_start(&f);
  check_report(&f, 2024, NULL, 0, f.coord);
  free(evs);
  free(res);
  fx_free(&f);
}

/* ---- The caller's mistakes. */

static void expect_error(const fx_t *f, const char *path, const char *token, int status,
                         const char *code) {
  resp_t r;
  char want[64];
  get(f, path, token, &r);
  snprintf(want, sizeof want, "{\"error\":\"%s\",\"msg\":\"", code);
  if (r.status != status || strncmp(r.body, want, strlen(want)) != 0 ||
      strcmp(r.ctype, "application/json; charset=utf-8") != 0)
    psl_test_fail(__FILE__, __LINE__, "GET %s: %d %s %s, want %d %s", path, r.status, r.ctype,
                  r.body, status, code);
  free(r.body);
}

TEST_T(api, errors_400_401_403_404, 60) {
  fx_t f;
  fx_init(&f);
  fx_start(&f);
  fx_push_all(&f);
  char p93[128] = "", p75[128] = "", u[PSL_UUID_STR + 1];
  for (size_t i = 0; i < f.n && (!p93[0] || !p75[0]); i++) {
    if (strcmp(f.ev[i].type, "participant.referred") != 0)
      continue;
    snprintf(!strcmp(f.ev[i].terr, "93") ? p93 : p75, sizeof p93, "/api/v1/participants/%s",
             f.ev[i].stream + 12);
  }
  /* 401: no token, another scheme, an unknown token */
  expect_error(&f, "/api/v1/counters?year=2024", NULL, 401, "unauthorized");
  expect_error(&f, "/api/v1/report?year=2024", "psl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401,
               "unauthorized");
  expect_error(&f, p93, "not a token", 401, "unauthorized");
  /* 400: parameters */
  expect_error(&f, "/api/v1/counters", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/counters?year=1999", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/counters?year=20x4", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/counters?year=2024&month=13", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/counters?year=2024&terr=99", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/counters?year=2024&programme=rsa", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/counters?year=2024&site=Bad%20Site", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/counters?yaer=2024", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/counters?year=2024&year=2025", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/report?year=2024&format=pdf", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/participants/not-a-uuid", f.coord, 400, "invalid");
  expect_error(&f, "/api/v1/participants/", f.coord, 400, "invalid");
  /* 403: authority */
  expect_error(&f, "/api/v1/counters?year=2024&terr=75", f.cw93, 403, "forbidden");
  expect_error(&f, "/api/v1/counters?year=2024", f.cw93, 403, "forbidden");
  expect_error(&f, "/api/v1/report?year=2024&terr=93", f.cw93, 403, "forbidden");
  expect_error(&f, p75, f.cw93, 403, "forbidden");
  expect_error(&f, p93, f.cw75, 403, "forbidden");
  /* 404: nobody by that id (and it is not a disguised 403 for a caseworker) */
  uint8_t id[PSL_UUID_BYTES];
  char path[128];
  memset(id, 0x5a, sizeof id);
  psl_uuid_format(id, u);
  snprintf(path, sizeof path, "/api/v1/participants/%s", u);
  expect_error(&f, path, f.coord, 404, "not_found");
  expect_error(&f, path, f.cw93, 404, "not_found");
  /* allowed: a caseworker's own territory; the 401 answer names the scheme */
  resp_t r;
  get(&f, "/api/v1/counters?year=2024&terr=93", f.cw93, &r);
  CHECK_EQ(r.status, 200);
  free(r.body);
  get(&f, p93, f.cw93, &r);
  CHECK_EQ(r.status, 200);
  free(r.body);
  fx_free(&f);
}
