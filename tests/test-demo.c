/*
 * test-demo.c — the demo data sets (area `demo`): the 2024 set is valid DOMAIN.md and, written
 * by passerelle-demo into the real server through the sync protocol, makes the report print
 * the figures of the 2024 activity report exactly as the report prints them; the --scale
 * histories are valid, in time order and deterministic.
 *
 * The figures (BRIEF.md §3): 104 people followed in 2024; mean age 34 (33.5 in 93, 35.5 in
 * Paris); 30 % homeless or in very precarious housing; 60 % with a care obligation;
 * Villepinte 15, Gagny 15 (9 months followed on average), Noisy-le-Grand 23, QSL de la
 * Santé 24, CHRS Chemin Vert 6; RSA 93: 27 people, 8 left for a job or training; 30+
 * sessions in detention with 6 participants on average; interviews of ~45 minutes.
 */
#include "harness.h"

#include <limits.h>
#include <stdarg.h>

#include "psl_access.h"
#include "psl_demo.h"
#include "psl_domain.h"
#include "support/run.h"
#include "support/demoref.h"
#include "support/srv.h"

/* ---- Reading the Markdown report as printed. */

/* The text of the cell (row `label`, column `header`) of the n-th table (0-based) whose
 * header starts with "| Périmètre", trimmed, into out.  0, or -1 when absent. */
static int md_cell(const char *md, int table, const char *label, const char *header,
                   char *out, size_t outlen) {
  const char *p = md;
  for (int t = 0;; t++) {
    p = strstr(p, "| Périmètre |");
    if (!p)
      return -1;
    if (t == table)
      break;
    p++;
  }
  /* the header's cells: find the column */
  const char *eol = strchr(p, '\n');
  if (!eol)
    return -1;
  int col = -1, c = 0;
  for (const char *q = p + 1; q < eol; c++) {
    const char *e = memchr(q, '|', (size_t)(eol - q));
    if (!e)
      break;
    const char *a = q, *b = e;
    while (a < b && *a == ' ')
      a++;
    while (b > a && b[-1] == ' ')
      b--;
    if ((size_t)(b - a) == strlen(header) && memcmp(a, header, (size_t)(b - a)) == 0)
      col = c;
    q = e + 1;
  }
  if (col < 0)
    return -1;
  /* the rows, to the blank line */
  char want[128];
  snprintf(want, sizeof want, "| %s |", label);
  for (const char *row = eol + 1; *row && *row != '\n';) {
    const char *rend = strchr(row, '\n');
    if (!rend)
      rend = row + strlen(row);
    if (strncmp(row, want, strlen(want)) == 0) {
      const char *q = row + 1;
      for (int k = 0; k < col && q < rend; k++)
        q = memchr(q, '|', (size_t)(rend - q)) + 1;
      const char *e = memchr(q, '|', (size_t)(rend - q));
      if (!e)
        return -1;
      while (q < e && *q == ' ')
        q++;
      while (e > q && e[-1] == ' ')
        e--;
      snprintf(out, outlen, "%.*s", (int)(e - q), q);
      return 0;
    }
    row = *rend ? rend + 1 : rend;
  }
  return -1;
}

static void check_cell(const char *md, int table, const char *label, const char *header,
                       const char *want) {
  char got[64];
  if (md_cell(md, table, label, header, got, sizeof got) != 0)
    psl_test_fail(__FILE__, __LINE__, "report: no cell (%s, %s)", label, header);
  if (strcmp(got, want) != 0)
    psl_test_fail(__FILE__, __LINE__, "report: (%s, %s) prints \"%s\", the seed \"%s\"", label,
                  header, got, want);
}

static long cell_num(const char *md, int table, const char *label, const char *header) {
  char got[64];
  if (md_cell(md, table, label, header, got, sizeof got) != 0)
    psl_test_fail(__FILE__, __LINE__, "report: no cell (%s, %s)", label, header);
  return atol(got);
}

/* Every seed figure, read from the Markdown as the report prints it. */
static void check_seed_figures(const char *md) {
  check_cell(md, 0, "Ensemble", "Suivies", "104");
  check_cell(md, 0, "Ensemble", "Âge moyen", "34.0");
  check_cell(md, 0, "Territoire 93", "Âge moyen", "33.5");
  check_cell(md, 0, "Territoire 75", "Âge moyen", "35.5");
  check_cell(md, 0, "Ensemble", "Logement", "30 %");
  check_cell(md, 0, "Ensemble", "Obligation de soins", "60 %");
  check_cell(md, 0, "Site ma-villepinte", "Suivies", "15");
  check_cell(md, 0, "Site csl-gagny", "Suivies", "15");
  check_cell(md, 0, "Site csl-gagny", "Durée moyenne de suivi (mois)", "9.0");
  check_cell(md, 0, "Site sas-noisy", "Suivies", "23");
  check_cell(md, 0, "Site qsl-sante", "Suivies", "24");
  check_cell(md, 0, "Site chrs-chemin-vert", "Suivies", "6");
  check_cell(md, 0, "Programme rsa93", "Suivies", "27");
  CHECK_EQ(cell_num(md, 1, "Programme rsa93", "Sorties emploi") +
               cell_num(md, 1, "Programme rsa93", "Sorties formation"),
           8);
  long sessions = cell_num(md, 0, "Site ma-villepinte", "Séances collectives") +
                  cell_num(md, 0, "Site sas-noisy", "Séances collectives");
  long attendance = cell_num(md, 0, "Site ma-villepinte", "Participations") +
                    cell_num(md, 0, "Site sas-noisy", "Participations");
  CHECK(sessions >= 30);
  CHECK_EQ(attendance, 6 * sessions);
  long interviews = cell_num(md, 0, "Ensemble", "Entretiens");
  long minutes = cell_num(md, 0, "Ensemble", "Minutes");
  CHECK(interviews > 0);
  CHECK_EQ((minutes + interviews / 2) / interviews, 45);
}

/* ---- The data sets, in process. */

typedef struct {
  char stream[PSL_MAX_STREAM];
  uint64_t ver;
} ver_t;

/* Each event valid at its stream's version, and each stream's `expect`s 0, 1, 2... */
static void check_valid_and_ordered(const psl_demo_event_t *ev, size_t n, int by_time) {
  ver_t *vers = calloc(n, sizeof *vers);
  size_t nv = 0;
  CHECK(vers != NULL);
  for (size_t i = 0; i < n; i++) {
    psl_event_t e;
    psl_diag_t d = {{0}};
    psl_demo_event_view(&ev[i], &e);
    size_t j = 0;
    while (j < nv && strcmp(vers[j].stream, ev[i].stream) != 0)
      j++;
    if (j == nv) {
      snprintf(vers[nv++].stream, sizeof vers[0].stream, "%s", ev[i].stream);
    }
    if ((uint64_t)ev[i].expect != vers[j].ver)
      psl_test_fail(__FILE__, __LINE__, "event %zu (%s): expect %lld, the stream is at %llu", i,
                    ev[i].type, (long long)ev[i].expect, (unsigned long long)vers[j].ver);
    if (psl_domain_validate(&e, vers[j].ver, &d) != 0)
      psl_test_fail(__FILE__, __LINE__, "event %zu (%s) invalid: %s", i, ev[i].type, d.msg);
    vers[j].ver++;
    if (by_time && i > 0)
      CHECK(ev[i].at >= ev[i - 1].at);
  }
  free(vers);
}


TEST(demo, data_set_2024_meets_the_seed_in_process) {
  psl_demo_event_t *ev;
  size_t n;
  CHECK_OK(psl_demo_2024(&ev, &n));
  CHECK(n > 1500);
  check_valid_and_ordered(ev, n, 1);
  psl_proj_t *p;
  CHECK_OK(demoref_fold(ev, n, "demo", "test", &p));
  psl_report_t r;
  psl_buf_t md, json;
  CHECK_OK(psl_proj_report(p, 2024, 0, &r));
  psl_buf_init(&md, 0);
  psl_buf_init(&json, 0);
  CHECK_OK(psl_report_md(&md, &r));
  CHECK_OK(psl_buf_append(&md, "", 1));
  CHECK_OK(psl_report_json(&json, &r));
  check_seed_figures((const char *)psl_buf_data(&md));
  psl_demo_figure_t figs[PSL_DEMO_NFIGURES];
  CHECK_EQ(psl_demo_check((const char *)psl_buf_data(&json), json.len, figs), PSL_DEMO_NFIGURES);
  /* the first participant is a Villepinte detainee referred in 2023 */
  uint8_t first[PSL_UUID_BYTES];
  psl_participant_t st;
  psl_demo_2024_first_id(first);
  CHECK_OK(psl_proj_participant(p, first, &st));
  CHECK_STR(st.site, "ma-villepinte");
  psl_participant_free(&st);
  psl_report_free(&r);
  psl_buf_free(&md);
  psl_buf_free(&json);
  psl_proj_free(p);
  free(ev);
}

TEST(demo, scale_histories_valid_ordered_deterministic) {
  psl_demo_scale_opts_t o = {300, 42, 2023, 2};
  psl_demo_scale_t *g1, *g2;
  size_t n = 0, cap = 0;
  psl_demo_event_t *ev = NULL, e2;
  int types_seen = 0;
  CHECK_OK(psl_demo_scale_new(&g1, &o));
  CHECK_OK(psl_demo_scale_new(&g2, &o));
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 4096;
      ev = realloc(ev, cap * sizeof *ev);
      CHECK(ev != NULL);
    }
    int r1 = psl_demo_scale_next(g1, &ev[n]), r2 = psl_demo_scale_next(g2, &e2);
    CHECK_EQ(r1, r2);
    if (r1 == PSL_ENOTFOUND)
      break;
    CHECK_OK(r1);
    /* the same options, the same events, ids included */
    CHECK_MEM(ev[n].id, e2.id, PSL_UUID_BYTES);
    CHECK_EQ(ev[n].data_len, e2.data_len);
    CHECK_MEM(ev[n].data, e2.data, ev[n].data_len);
    types_seen |= !strcmp(ev[n].type, "session.held") << 0 |
                  !strcmp(ev[n].type, "participant.exited") << 1 |
                  !strcmp(ev[n].type, "partner.updated") << 2 |
                  !strcmp(ev[n].type, "justice.changed") << 3 |
                  !strcmp(ev[n].type, "interview.held") << 4;
    n++;
  }
  CHECK(n > 300 * 10);
  CHECK_EQ(types_seen, 31);
  check_valid_and_ordered(ev, n, 1);
  psl_demo_scale_free(g1);
  psl_demo_scale_free(g2);
  free(ev);
}

/* ---- Through the real server. */

static void run_ok(const char *prog, const char *const *argv, run_result_t *r) {
  CHECK_OK(run_tool(psl_test_bindir(), prog, argv, 120, r));
  if (r->status != 0) {
    fprintf(stderr, "%s exited %d\n--- stdout\n%s\n--- stderr\n%s\n", prog, r->status,
            r->out ? r->out : "", r->err ? r->err : "");
    psl_test_fail(__FILE__, __LINE__, "%s failed", prog);
  }
}

TEST_T(demo, writer_prints_the_seed_figures_through_the_server, 180) {
  srv_t s;
  char dir[PATH_MAX], url[64], token[PSL_TOKEN_LEN + 1];
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  CHECK_OK(srv_init(&s, psl_test_bindir(), dir));
  CHECK_OK(srv_token(&s, PSL_ROLE_COORDINATOR, NULL, "demo", "test", token));
  if (srv_start(&s, 0) != 0)
    psl_test_fail(__FILE__, __LINE__, "server: %s", s.err);
  snprintf(url, sizeof url, "ws://127.0.0.1:%u", s.port);

  /* written through the sync protocol by the client library, then the report over HTTP */
  run_result_t r;
  const char *args[] = {"--url", url, "--token", token, NULL};
  run_ok("passerelle-demo", args, &r);
  CHECK(strstr(r.out, " stored, 0 already there") != NULL);
  CHECK(strstr(r.out, "17 of 17 figures as in the activity report") != NULL);
  check_seed_figures(r.out);
  run_free(&r);

  /* again: every event a conflict, nothing stored twice, the same figures */
  run_ok("passerelle-demo", args, &r);
  CHECK(strstr(r.out, "0 stored") != NULL);
  CHECK(strstr(r.out, "(the data set was written before)") != NULL);
  check_seed_figures(r.out);
  run_free(&r);

  /* the auditor recomputes the same report from the log alone, beside the live server */
  int status;
  char *api_md = NULL;
  CHECK_OK(psl_demo_http_get("127.0.0.1", s.port, "/api/v1/report?year=2024&format=md", token,
                             10000, &status, &api_md, NULL, NULL, 0));
  CHECK_EQ(status, 200);
  const char *rep[] = {"--data", dir, "report", "--year", "2024", NULL};
  run_ok("passerelle-audit", rep, &r);
  CHECK_STR(r.out, api_md);
  run_free(&r);
  free(api_md);
  const char *ver[] = {"--data", dir, "verify", NULL};
  run_ok("passerelle-audit", ver, &r);
  CHECK(strstr(r.out, "hash chain valid") != NULL);
  CHECK(strstr(r.out, "equal a rebuild from the log") != NULL);
  run_free(&r);
  CHECK_OK(srv_stop(&s, 0));
}
