/*
 * check.c — psl_demo_check: the figures of the 2024 activity report (BRIEF.md §3) read back
 * from a yearly report's JSON (GET /api/v1/report?year=2024, psl_report_json), each printed
 * the way the Markdown report prints it (means with one decimal, shares as whole percents),
 * and compared with the seed.
 *
 * The JSON is read by a small walker that knows only what psl_report_json writes (objects,
 * arrays, strings, numbers, null): the rows are found by their `dimension` and `code`, the
 * figures by their keys.  A malformed text is answered PSL_EINVALID, never read past its end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_int.h"

/* Nesting of the report's JSON: report → rows → row → breakdown; 16 is plenty. */
#define JSON_MAX_DEPTH 16

typedef struct {
  const char *p, *end; /* a value's text */
} span_t;

static const char *ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  return p;
}

/* End of the value starting at p (after whitespace), or NULL if malformed. */
static const char *skip(const char *p, const char *end, int depth) {
  p = ws(p, end);
  if (p >= end || depth > JSON_MAX_DEPTH)
    return NULL;
  if (*p == '"') {
    for (p++; p < end; p++) {
      if (*p == '\\')
        p++;
      else if (*p == '"')
        return p + 1;
    }
    return NULL;
  }
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = ws(p + 1, end);
    if (p < end && *p == close)
      return p + 1;
    for (;;) {
      if (close == '}') { /* key : */
        if (!(p = skip(p, end, depth + 1)) || (p = ws(p, end)) >= end || *p != ':')
          return NULL;
        p++;
      }
      if (!(p = skip(p, end, depth + 1)) || (p = ws(p, end)) >= end)
        return NULL;
      if (*p == close)
        return p + 1;
      if (*p != ',')
        return NULL;
      p++;
    }
  }
  while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n')
    p++;
  return p;
}

/* The value of key in the object obj (top level only). */
static int get(span_t obj, const char *key, span_t *out) {
  const char *p = ws(obj.p, obj.end);
  size_t kl = strlen(key);
  if (p >= obj.end || *p != '{')
    return PSL_EINVALID;
  p++;
  for (;;) {
    p = ws(p, obj.end);
    if (p >= obj.end || *p == '}')
      return PSL_ENOTFOUND;
    const char *k = p, *ke = skip(p, obj.end, 1);
    if (!ke || *k != '"')
      return PSL_EINVALID;
    p = ws(ke, obj.end);
    if (p >= obj.end || *p != ':')
      return PSL_EINVALID;
    const char *v = ws(p + 1, obj.end), *ve = skip(v, obj.end, 1);
    if (!ve)
      return PSL_EINVALID;
    if ((size_t)(ke - k) == kl + 2 && memcmp(k + 1, key, kl) == 0) {
      out->p = v;
      out->end = ve;
      return 0;
    }
    p = ws(ve, obj.end);
    if (p < obj.end && *p == ',')
      p++;
  }
}

static int is_str(span_t v, const char *s) {
  size_t n = strlen(s);
  return (size_t)(v.end - v.p) == n + 2 && v.p[0] == '"' && memcmp(v.p + 1, s, n) == 0;
}

/* The row of the report with this dimension and code (code NULL: the total). */
static int row(span_t report, const char *dimension, const char *code, span_t *out) {
  span_t rows, d, c;
  int rc = get(report, "rows", &rows);
  if (rc)
    return rc;
  const char *p = ws(rows.p, rows.end);
  if (p >= rows.end || *p != '[')
    return PSL_EINVALID;
  for (p++;;) {
    p = ws(p, rows.end);
    if (p >= rows.end || *p == ']')
      return PSL_ENOTFOUND;
    span_t r = {p, skip(p, rows.end, 2)};
    if (!r.end)
      return PSL_EINVALID;
    if (get(r, "dimension", &d) == 0 && is_str(d, dimension) && get(r, "code", &c) == 0 &&
        (code ? is_str(c, code) : (size_t)(c.end - c.p) == 4)) {
      *out = r;
      return 0;
    }
    p = ws(r.end, rows.end);
    if (p < rows.end && *p == ',')
      p++;
  }
}

/* A number of a row: key, or key.sub in a breakdown.  NaN-free: -1 when absent or null. */
static double num(span_t r, const char *key, const char *sub) {
  span_t v, w;
  if (get(r, key, &v))
    return -1;
  if (sub) {
    if (get(v, sub, &w))
      return -1;
    v = w;
  }
  if (v.p >= v.end || v.p[0] == 'n')
    return -1;
  char buf[32];
  size_t n = (size_t)(v.end - v.p) < sizeof buf - 1 ? (size_t)(v.end - v.p) : sizeof buf - 1;
  memcpy(buf, v.p, n);
  buf[n] = '\0';
  return strtod(buf, NULL);
}

typedef enum { F_COUNT, F_MEAN1, F_PERCENT, F_MIN } fmt_t;

/* Fill one figure: got printed as the report prints it; ok when it reads as the seed. */
static int figure(psl_demo_figure_t *f, const char *what, const char *seed, double got,
                  fmt_t fmt, double want) {
  memset(f, 0, sizeof *f);
  f->what = what;
  snprintf(f->seed, sizeof f->seed, "%s", seed);
  if (got < 0) {
    snprintf(f->got, sizeof f->got, "missing");
    return 0;
  }
  switch (fmt) {
  case F_COUNT:
    snprintf(f->got, sizeof f->got, "%.0f", got);
    f->ok = got == want;
    break;
  case F_MIN: /* "30+" */
    snprintf(f->got, sizeof f->got, "%.0f", got);
    f->ok = got >= want;
    break;
  case F_MEAN1: /* one decimal, as the report; the seed's "34" reads as 34.0 */
    snprintf(f->got, sizeof f->got, "%.1f", got);
    f->ok = strtod(f->got, NULL) == want;
    break;
  case F_PERCENT:
    snprintf(f->got, sizeof f->got, "%.0f %%", 100.0 * got);
    f->ok = strtod(f->got, NULL) == want;
    break;
  }
  return f->ok;
}

int psl_demo_check(const char *json, size_t len, psl_demo_figure_t *figs) {
  span_t rep = {json, json + len}, total, t93, t75, vil, gag, noi, san, chr, rsa;
  if (!json || row(rep, "total", NULL, &total))
    return PSL_EINVALID;
  /* a row that is missing reads as "missing" below, not as an error */
  static const char empty[] = "{}";
  const span_t none = {empty, empty + 2};
  if (row(rep, "terr", "93", &t93)) t93 = none;
  if (row(rep, "terr", "75", &t75)) t75 = none;
  if (row(rep, "site", "ma-villepinte", &vil)) vil = none;
  if (row(rep, "site", "csl-gagny", &gag)) gag = none;
  if (row(rep, "site", "sas-noisy", &noi)) noi = none;
  if (row(rep, "site", "qsl-sante", &san)) san = none;
  if (row(rep, "site", "chrs-chemin-vert", &chr)) chr = none;
  if (row(rep, "programme", "rsa93", &rsa)) rsa = none;

  double det_sessions = num(vil, "sessions", NULL) + num(noi, "sessions", NULL);
  double det_attendance =
      num(vil, "session_attendance", NULL) + num(noi, "session_attendance", NULL);
  double minutes = num(total, "interview_minutes", NULL), interviews = num(total, "interviews", NULL);
  double rsa_out = num(rsa, "exited", "job") + num(rsa, "exited", "training");
  int ok = 0, i = 0;
  ok += figure(&figs[i++], "people followed in 2024", "104", num(total, "followed", NULL),
               F_COUNT, 104);
  ok += figure(&figs[i++], "mean age", "34", num(total, "mean_age", NULL), F_MEAN1, 34);
  ok += figure(&figs[i++], "mean age in Seine-Saint-Denis (93)", "33.5",
               num(t93, "mean_age", NULL), F_MEAN1, 33.5);
  ok += figure(&figs[i++], "mean age in Paris (75)", "35.5", num(t75, "mean_age", NULL),
               F_MEAN1, 35.5);
  ok += figure(&figs[i++], "homeless or very precarious housing", "30 %",
               num(total, "housing_barrier_share", NULL), F_PERCENT, 30);
  ok += figure(&figs[i++], "with a care obligation", "60 %",
               num(total, "care_obligation_share", NULL), F_PERCENT, 60);
  ok += figure(&figs[i++], "Villepinte (maison d'arret)", "15", num(vil, "followed", NULL),
               F_COUNT, 15);
  ok += figure(&figs[i++], "Gagny (CSL)", "15", num(gag, "followed", NULL), F_COUNT, 15);
  ok += figure(&figs[i++], "Gagny: months followed on average", "9",
               num(gag, "mean_months_followed", NULL), F_MEAN1, 9);
  ok += figure(&figs[i++], "Noisy-le-Grand (SAS)", "23", num(noi, "followed", NULL), F_COUNT,
               23);
  ok += figure(&figs[i++], "QSL de la Sante (Paris)", "24", num(san, "followed", NULL),
               F_COUNT, 24);
  ok += figure(&figs[i++], "CHRS Chemin Vert", "6", num(chr, "followed", NULL), F_COUNT, 6);
  ok += figure(&figs[i++], "RSA 93 programme", "27", num(rsa, "followed", NULL), F_COUNT, 27);
  ok += figure(&figs[i++], "RSA 93: left for a job or training", "8",
               num(rsa, "exited", "job") < 0 ? -1 : rsa_out, F_COUNT, 8);
  ok += figure(&figs[i++], "collective sessions in detention", "30+",
               num(vil, "sessions", NULL) < 0 ? -1 : det_sessions, F_MIN, 30);
  ok += figure(&figs[i++], "participants per session in detention", "6",
               det_sessions > 0 ? det_attendance / det_sessions : -1, F_MEAN1, 6);
  /* ~45 minutes: the seed's "about" reads as 45 once rounded to the minute */
  psl_demo_figure_t *f = &figs[i++];
  figure(f, "minutes per interview", "~45", interviews > 0 ? minutes / interviews : -1,
         F_COUNT, 45);
  if (interviews > 0) {
    snprintf(f->got, sizeof f->got, "%.0f", minutes / interviews);
    f->ok = strcmp(f->got, "45") == 0;
  }
  ok += f->ok;
  return ok;
}
