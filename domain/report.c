/*
 * report.c — the yearly report: one row for the whole (a territory or all), then one per
 * territory, programme and site with activity that year, each a full set of counters with
 * the EU ESF+ participant indicators; rendered as JSON, CSV or Markdown (French headings,
 * as the organisation's activity report is written; keys and CSV columns in English).
 *
 * ESF+ indicators (Regulation (EU) 2021/1057, annex I, common output and result indicators
 * for participants), from the per-person facts of the year:
 *   participants                  followed in the year
 *   under 18 / 18–29 / 55 and over age in the year (year − birth_year)
 *   ISCED 0–2 / 3–4 / 5–8          education groups of DOMAIN.md
 *   homeless or housing exclusion `housing-none` or `housing-precarious` in a diagnostic
 *   at exit in education/training exit reason `training`, or a `training` outcome by then
 *   at exit in employment         exit reason `job`, or a durable or transitional outcome
 */
#include <stdio.h>
#include <stdlib.h>

#include "psl_domain_int.h"

void psl_report_free(psl_report_t *r) {
  if (!r)
    return;
  free(r->rows);
  r->rows = NULL;
  r->nrows = 0;
}

static int counters_empty(const psl_counters_t *c) {
  psl_counters_t zero;
  psl__counters_start(&zero, &c->q);
  return psl_counters_equal(c, &zero);
}

static int add_row(psl_report_t *r, size_t *cap, const char *dimension, const char *code,
                   const psl_counters_t *c, int keep_empty) {
  if (!keep_empty && counters_empty(c))
    return 0;
  if (r->nrows == *cap) {
    size_t ncap = *cap ? *cap * 2 : 16;
    psl_report_row_t *p = realloc(r->rows, ncap * sizeof *p);
    if (!p)
      return PSL_ENOMEM;
    r->rows = p;
    *cap = ncap;
  }
  psl_report_row_t *row = &r->rows[r->nrows++];
  memset(row, 0, sizeof *row);
  row->dimension = dimension;
  if (code)
    memcpy(row->code, code, strnlen(code, PSL_SITE_MAX));
  row->c = *c;
  return 0;
}

/* The distinct sites seen, sorted. */
typedef struct {
  char (*site)[PSL_SITE_MAX + 1];
  size_t n, cap;
  int terr;
} sites_t;

static int site_seen(void *arg, const psl__yplace_t *pl) {
  sites_t *s = arg;
  if (!pl->site[0] || (s->terr && pl->terr != s->terr))
    return 0;
  size_t i = 0;
  while (i < s->n && strcmp(s->site[i], pl->site) < 0)
    i++;
  if (i < s->n && strcmp(s->site[i], pl->site) == 0)
    return 0;
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 16;
    char(*p)[PSL_SITE_MAX + 1] = realloc(s->site, ncap * sizeof *p);
    if (!p)
      return PSL_ENOMEM;
    s->site = p;
    s->cap = ncap;
  }
  memmove(&s->site[i + 1], &s->site[i], (s->n - i) * sizeof *s->site);
  memcpy(s->site[i], pl->site, sizeof s->site[i]);
  s->n++;
  return 0;
}

int psl__report_build(int year, int terr,
                      int (*query)(void *arg, const psl_counters_query_t *q, psl_counters_t *c),
                      int (*places)(void *arg, int year,
                                    int (*fn)(void *fnarg, const psl__yplace_t *pl), void *fnarg),
                      void *arg, psl_report_t *out) {
  psl_counters_query_t q;
  psl_counters_t c;
  sites_t sites = {NULL, 0, 0, terr};
  size_t cap = 0;
  memset(out, 0, sizeof *out);
  out->year = year;
  out->terr = terr;
  int rc = psl_counters_query_init(&q, terr, year, 0, 0, NULL);
  if (!rc) rc = query(arg, &q, &c);
  if (!rc) rc = add_row(out, &cap, "total", NULL, &c, 1);
  for (int t = 1; !rc && !terr && t <= PSL_NTERR; t++) {
    if (!(rc = psl_counters_query_init(&q, t, year, 0, 0, NULL)) && !(rc = query(arg, &q, &c)))
      rc = add_row(out, &cap, "terr", psl_code_name(PSL_CODE_TERR, t), &c, 0);
  }
  for (int p = 1; !rc && p <= PSL_NPROGRAMME; p++) {
    if (!(rc = psl_counters_query_init(&q, terr, year, 0, p, NULL)) && !(rc = query(arg, &q, &c)))
      rc = add_row(out, &cap, "programme", psl_code_name(PSL_CODE_PROGRAMME, p), &c, 0);
  }
  if (!rc)
    rc = places(arg, year, site_seen, &sites);
  for (size_t i = 0; !rc && i < sites.n; i++) {
    if (!(rc = psl_counters_query_init(&q, terr, year, 0, 0, sites.site[i])) &&
        !(rc = query(arg, &q, &c)))
      rc = add_row(out, &cap, "site", sites.site[i], &c, 0);
  }
  free(sites.site);
  if (rc)
    psl_report_free(out);
  return rc;
}

/* ---- JSON */

static int esf_json(psl_buf_t *out, const psl_counters_t *c) {
  return psl__json_printf(
      out,
      "\"esf\":{\"participants\":%lld,\"under_18\":%lld,\"age_18_29\":%lld,"
      "\"age_55_plus\":%lld,\"isced_0_2\":%lld,\"isced_3_4\":%lld,\"isced_5_8\":%lld,"
      "\"homeless_or_housing_exclusion\":%lld,\"exit_in_education_or_training\":%lld,"
      "\"exit_in_employment\":%lld}",
      (long long)c->followed, (long long)c->esf_under18, (long long)c->esf_18_29,
      (long long)c->esf_55plus, (long long)c->education[1], (long long)c->education[2],
      (long long)c->education[3], (long long)c->housing, (long long)c->esf_exit_training,
      (long long)c->esf_exit_employment);
}

int psl_report_json(psl_buf_t *out, const psl_report_t *r) {
  int rc = psl__json_printf(out, "{\"year\":%d,\"terr\":", r->year);
  if (!rc) rc = psl_code_name(PSL_CODE_TERR, r->terr)
                   ? psl__json_str(out, psl_code_name(PSL_CODE_TERR, r->terr))
                   : psl_buf_append(out, "null", 4);
  if (!rc) rc = psl_buf_append(out, ",\"rows\":[", 9);
  for (size_t i = 0; !rc && i < r->nrows; i++) {
    const psl_report_row_t *row = &r->rows[i];
    rc = psl__json_printf(out, "%s{\"dimension\":\"%s\",\"code\":", i ? "," : "", row->dimension);
    if (!rc) rc = row->code[0] ? psl__json_str(out, row->code) : psl_buf_append(out, "null", 4);
    if (!rc) rc = psl_buf_append(out, ",", 1);
    if (!rc) rc = psl__counters_members(out, &row->c);
    if (!rc) rc = psl_buf_append(out, ",", 1);
    if (!rc) rc = esf_json(out, &row->c);
    if (!rc) rc = psl_buf_append(out, "}", 1);
  }
  return rc ? rc : psl_buf_append(out, "]}", 2);
}

/* ---- CSV (RFC 4180; codes and numbers only, so no quoting is needed). */

static double ratio(int64_t num, int64_t den, double scale) {
  return den ? (double)num / (double)den / scale : 0.0;
}

#define DAYS_PER_MONTH 30.436875

int psl_report_csv(psl_buf_t *out, const psl_report_t *r) {
  static const psl_code_table_t breakdowns[] = {PSL_CODE_EXIT_REASON, PSL_CODE_REFERRAL_KIND,
                                                PSL_CODE_OUTCOME, PSL_CODE_OUTCOME_CLASS,
                                                PSL_CODE_GENDER, PSL_CODE_ISCED};
  static const char *const prefix[] = {"exited_", "partner_referrals_", "outcomes_", "",
                                       "gender_", "isced_"};
  int rc = psl_buf_append(out, "year,dimension,code,referred,followed,active", 44);
  for (size_t b = 0; !rc && b < sizeof breakdowns / sizeof breakdowns[0]; b++)
    for (int c = 1; !rc && c <= psl_code_count(breakdowns[b]); c++)
      rc = psl__json_printf(out, ",%s%s", prefix[b], psl_code_name(breakdowns[b], c));
  if (!rc)
    rc = psl__json_printf(out, "%s",
                          ",interviews,interview_minutes,missed,sessions,session_attendance,"
                          "mean_age,housing_barrier_share,homeless_share,care_obligation_share,"
                          "rsa,mean_months_followed,esf_participants,esf_under_18,esf_18_29,"
                          "esf_55_plus,esf_homeless_or_housing_exclusion,"
                          "esf_exit_in_education_or_training,esf_exit_in_employment\r\n");
  for (size_t i = 0; !rc && i < r->nrows; i++) {
    const psl_report_row_t *row = &r->rows[i];
    const psl_counters_t *c = &row->c;
    const int64_t *counts[] = {c->exited, c->partner_referrals, c->outcomes,
                               c->outcome_classes, c->gender, c->education};
    rc = psl__json_printf(out, "%d,%s,%s,%lld,%lld,%lld", r->year, row->dimension, row->code,
                          (long long)c->referred, (long long)c->followed, (long long)c->active);
    for (size_t b = 0; !rc && b < sizeof breakdowns / sizeof breakdowns[0]; b++)
      for (int k = 1; !rc && k <= psl_code_count(breakdowns[b]); k++)
        rc = psl__json_printf(out, ",%lld", (long long)counts[b][k]);
    if (!rc)
      rc = psl__json_printf(
          out, ",%lld,%lld,%lld,%lld,%lld,%.1f,%.3f,%.3f,%.3f,%lld,%.1f,%lld,%lld,%lld,%lld,%lld,"
               "%lld,%lld\r\n",
          (long long)c->interviews, (long long)c->interview_minutes, (long long)c->missed,
          (long long)c->sessions, (long long)c->session_attendance, ratio(c->age_sum, c->age_n, 1),
          ratio(c->housing, c->followed, 1), ratio(c->homeless, c->followed, 1),
          ratio(c->care_obligation, c->followed, 1), (long long)c->rsa,
          ratio(c->days_followed_sum, c->days_followed_n, DAYS_PER_MONTH), (long long)c->followed,
          (long long)c->esf_under18, (long long)c->esf_18_29, (long long)c->esf_55plus,
          (long long)c->housing, (long long)c->esf_exit_training,
          (long long)c->esf_exit_employment);
  }
  return rc;
}

/* ---- Markdown, in French. */

static const char *row_label(const psl_report_row_t *row, char *buf, size_t n) {
  if (!strcmp(row->dimension, "total"))
    return "Ensemble";
  if (!strcmp(row->dimension, "terr"))
    snprintf(buf, n, "Territoire %s", row->code);
  else if (!strcmp(row->dimension, "programme"))
    snprintf(buf, n, "Programme %s", row->code);
  else
    snprintf(buf, n, "Site %s", row->code);
  return buf;
}

static int pct(psl_buf_t *out, int64_t num, int64_t den) {
  return den ? psl__json_printf(out, " %.0f %% |", 100.0 * (double)num / (double)den)
             : psl__json_printf(out, "%s", " — |");
}

int psl_report_md(psl_buf_t *out, const psl_report_t *r) {
  char label[80];
  const char *terr = psl_code_name(PSL_CODE_TERR, r->terr);
  int rc = psl__json_printf(out, "# Rapport annuel %d — %s\n\n", r->year,
                            terr ? terr : "tous territoires");
  if (!rc)
    rc = psl__json_printf(out, "%s",
                          "## Personnes accompagnées et activité\n\n"
                          "| Périmètre | Orientées | Suivies | Actives | Sorties | Entretiens |"
                          " Minutes | Absences | Séances collectives | Participations |"
                          " Âge moyen | Durée moyenne de suivi (mois) | Logement | Sans domicile |"
                          " Obligation de soins | RSA |\n"
                          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                          "---:|---:|\n");
  for (size_t i = 0; !rc && i < r->nrows; i++) {
    const psl_counters_t *c = &r->rows[i].c;
    int64_t exited = 0;
    for (int k = 1; k <= PSL_NEXIT; k++)
      exited += c->exited[k];
    rc = psl__json_printf(out, "| %s | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %lld |",
                          row_label(&r->rows[i], label, sizeof label), (long long)c->referred,
                          (long long)c->followed, (long long)c->active, (long long)exited,
                          (long long)c->interviews, (long long)c->interview_minutes,
                          (long long)c->missed, (long long)c->sessions,
                          (long long)c->session_attendance);
    if (!rc)
      rc = c->age_n ? psl__json_printf(out, " %.1f |", ratio(c->age_sum, c->age_n, 1))
                    : psl__json_printf(out, "%s", " — |");
    if (!rc)
      rc = c->days_followed_n
               ? psl__json_printf(out, " %.1f |",
                                  ratio(c->days_followed_sum, c->days_followed_n, DAYS_PER_MONTH))
               : psl__json_printf(out, "%s", " — |");
    if (!rc) rc = pct(out, c->housing, c->followed);
    if (!rc) rc = pct(out, c->homeless, c->followed);
    if (!rc) rc = pct(out, c->care_obligation, c->followed);
    if (!rc) rc = psl__json_printf(out, " %lld |\n", (long long)c->rsa);
  }
  if (!rc)
    rc = psl__json_printf(out, "%s",
                          "\n## Sorties et résultats\n\n"
                          "| Périmètre | Sorties emploi | Sorties formation | Autres sorties |"
                          " Résultats durables | Transitoires | Positifs |\n"
                          "|---|---:|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; !rc && i < r->nrows; i++) {
    const psl_counters_t *c = &r->rows[i].c;
    int64_t other = 0;
    for (int k = 1; k <= PSL_NEXIT; k++)
      if (k != PSL_EXIT_JOB && k != PSL_EXIT_TRAINING)
        other += c->exited[k];
    rc = psl__json_printf(out, "| %s | %lld | %lld | %lld | %lld | %lld | %lld |\n",
                          row_label(&r->rows[i], label, sizeof label),
                          (long long)c->exited[PSL_EXIT_JOB],
                          (long long)c->exited[PSL_EXIT_TRAINING], (long long)other,
                          (long long)c->outcome_classes[PSL_CLASS_DURABLE],
                          (long long)c->outcome_classes[PSL_CLASS_TRANSITIONAL],
                          (long long)c->outcome_classes[PSL_CLASS_POSITIVE]);
  }
  if (!rc)
    rc = psl__json_printf(out, "%s",
                          "\n## Indicateurs FSE+ (participants)\n\n"
                          "| Périmètre | Participants | Moins de 18 ans | 18–29 ans |"
                          " 55 ans et plus | CITE 0–2 | CITE 3–4 | CITE 5–8 |"
                          " Sans domicile ou exclus du logement | En formation à la sortie |"
                          " En emploi à la sortie |\n"
                          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; !rc && i < r->nrows; i++) {
    const psl_counters_t *c = &r->rows[i].c;
    rc = psl__json_printf(out,
                          "| %s | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %lld |"
                          " %lld |\n",
                          row_label(&r->rows[i], label, sizeof label), (long long)c->followed,
                          (long long)c->esf_under18, (long long)c->esf_18_29,
                          (long long)c->esf_55plus, (long long)c->education[1],
                          (long long)c->education[2], (long long)c->education[3],
                          (long long)c->housing, (long long)c->esf_exit_training,
                          (long long)c->esf_exit_employment);
  }
  return rc;
}
