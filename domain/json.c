/*
 * json.c — JSON of a participant state and of territory counters, keys as DOMAIN.md names
 * them.  Breakdowns list every code of their table (zeros included) so that a client sees a
 * stable shape.  Means and shares are printed from the exact sums (null when nobody is
 * counted): mean_age and months with one decimal, shares with three.
 */
#include <stdarg.h>
#include <stdio.h>

#include "psl_domain_int.h"

#define MS_PER_DAY INT64_C(86400000)
/* Days in an average Gregorian month (365.2425 / 12): months_followed = days / this. */
#define DAYS_PER_MONTH 30.436875

int psl__json_printf(psl_buf_t *out, const char *fmt, ...) {
  va_list ap;
  char small[256];
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0)
    return PSL_EINTERNAL;
  if ((size_t)n < sizeof small)
    return psl_buf_append(out, small, (size_t)n);
  int rc = psl_buf_reserve(out, (size_t)n + 1);
  if (rc)
    return rc;
  va_start(ap, fmt);
  vsnprintf((char *)psl_buf_data(out) + out->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  out->len += (size_t)n;
  return 0;
}

int psl__json_str(psl_buf_t *out, const char *s) {
  int rc = psl_buf_append(out, "\"", 1);
  for (; !rc && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      rc = psl__json_printf(out, "\\%c", c);
    else if (c < 0x20)
      rc = psl__json_printf(out, "\\u%04x", c);
    else
      rc = psl_buf_append(out, s, 1);
  }
  return rc ? rc : psl_buf_append(out, "\"", 1);
}

static int json_code(psl_buf_t *out, psl_code_table_t t, int c) {
  const char *name = psl_code_name(t, c);
  return name ? psl__json_str(out, name) : psl_buf_append(out, "null", 4);
}

static int json_uuid(psl_buf_t *out, const uint8_t id[PSL_UUID_BYTES]) {
  static const char hex[] = "0123456789abcdef";
  char s[PSL_UUID_STR + 3];
  size_t j = 0;
  s[j++] = '"';
  for (int i = 0; i < PSL_UUID_BYTES; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      s[j++] = '-';
    s[j++] = hex[id[i] >> 4];
    s[j++] = hex[id[i] & 15];
  }
  s[j++] = '"';
  return psl_buf_append(out, s, j);
}

static int json_time(psl_buf_t *out, int64_t at) {
  return at ? psl__json_printf(out, "%lld", (long long)at) : psl_buf_append(out, "null", 4);
}

static int json_bits(psl_buf_t *out, psl_code_table_t t, uint32_t bits) {
  int rc = psl_buf_append(out, "[", 1), first = 1;
  for (int c = 1; !rc && c <= psl_code_count(t); c++) {
    if (!(bits & (1u << (c - 1))))
      continue;
    if (!first)
      rc = psl_buf_append(out, ",", 1);
    first = 0;
    if (!rc)
      rc = json_code(out, t, c);
  }
  return rc ? rc : psl_buf_append(out, "]", 1);
}

/* {"code":n,...} over every code of t; counts[c] for code c. */
static int json_breakdown(psl_buf_t *out, psl_code_table_t t, const int64_t *counts) {
  int rc = psl_buf_append(out, "{", 1);
  for (int c = 1; !rc && c <= psl_code_count(t); c++)
    rc = psl__json_printf(out, "%s\"%s\":%lld", c > 1 ? "," : "", psl_code_name(t, c),
                          (long long)counts[c]);
  return rc ? rc : psl_buf_append(out, "}", 1);
}

static int json_ratio(psl_buf_t *out, int64_t num, int64_t den, double scale, const char *fmt) {
  if (den == 0)
    return psl_buf_append(out, "null", 4);
  return psl__json_printf(out, fmt, (double)num / (double)den / scale);
}

int psl_participant_json(psl_buf_t *out, const psl_participant_t *st, int64_t now_ms) {
  int y, m;
  psl_local_ym(now_ms ? now_ms : st->max_at, &y, &m);
  int rc = psl_buf_append(out, "{\"id\":", 6);
  if (!rc) rc = json_uuid(out, st->id);
  if (!rc) rc = psl_buf_append(out, ",\"status\":", 10);
  if (!rc) rc = json_code(out, PSL_CODE_STATUS, st->status);
  if (!rc) rc = psl_buf_append(out, ",\"programme\":", 13);
  if (!rc) rc = json_code(out, PSL_CODE_PROGRAMME, st->programme);
  if (!rc) rc = psl_buf_append(out, ",\"terr\":", 8);
  if (!rc) rc = json_code(out, PSL_CODE_TERR, st->terr);
  if (!rc) rc = psl_buf_append(out, ",\"site\":", 8);
  if (!rc) rc = psl__json_str(out, st->site);
  if (!rc) rc = psl_buf_append(out, ",\"justice\":", 11);
  if (!rc) rc = json_code(out, PSL_CODE_JUSTICE, st->justice);
  if (!rc) rc = psl_buf_append(out, ",\"gender\":", 10);
  if (!rc) rc = json_code(out, PSL_CODE_GENDER, st->gender);
  if (!rc) rc = st->birth_year ? psl__json_printf(out, ",\"birth_year\":%d,\"age\":%d",
                                                  st->birth_year, psl_participant_age(st, y))
                               : psl__json_printf(out, "%s", ",\"birth_year\":null,\"age\":null");
  if (!rc) rc = psl_buf_append(out, ",\"education\":", 13);
  if (!rc) rc = json_code(out, PSL_CODE_EDUCATION, st->education);
  if (!rc) rc = psl_buf_append(out, ",\"source\":", 10);
  if (!rc) rc = json_code(out, PSL_CODE_SOURCE, st->source);
  if (!rc) rc = psl__json_printf(out, ",\"rsa\":%s", st->rsa ? "true" : "false");
  if (!rc) rc = psl_buf_append(out, ",\"barriers_open\":", 17);
  if (!rc) rc = json_bits(out, PSL_CODE_BARRIER, st->barriers_open);
  if (!rc) rc = psl_buf_append(out, ",\"barriers_lifted\":", 19);
  if (!rc) rc = json_bits(out, PSL_CODE_BARRIER, st->barriers_lifted);
  if (!rc) rc = psl__json_printf(out, ",\"care_obligation\":%s",
                                 st->care_obligation < 0 ? "null"
                                 : st->care_obligation   ? "true"
                                                         : "false");
  if (!rc) rc = psl__json_printf(out, ",\"interviews\":%u,\"interview_minutes\":%llu",
                                 st->interviews, (unsigned long long)st->interview_minutes);
  if (!rc) rc = psl_buf_append(out, ",\"last_interview\":", 18);
  if (!rc) rc = json_time(out, st->last_interview);
  if (!rc) rc = psl__json_printf(out, ",\"missed\":%u,\"sessions_attended\":%u", st->missed,
                                 st->sessions_attended);
  if (!rc) rc = psl_buf_append(out, ",\"referrals\":{", 14);
  for (size_t i = 0, first = 1; !rc && i < st->nreferrals; i++) {
    const psl_referral_t *r = &st->referrals[i];
    if (!r->referred)
      continue; /* an update whose referral has not arrived yet */
    if (!first)
      rc = psl_buf_append(out, ",", 1);
    first = 0;
    if (!rc) rc = json_uuid(out, r->ref);
    if (!rc) rc = psl_buf_append(out, ":{\"kind\":", 9);
    if (!rc) rc = json_code(out, PSL_CODE_REFERRAL_KIND, r->kind);
    if (!rc) rc = psl_buf_append(out, ",\"partner_kind\":", 16);
    if (!rc) rc = json_code(out, PSL_CODE_PARTNER_KIND, r->partner_kind);
    if (!rc) rc = psl_buf_append(out, ",\"status\":", 10);
    if (!rc) rc = r->status ? json_code(out, PSL_CODE_REFERRAL_STATUS, r->status)
                            : psl__json_str(out, "referred");
    if (!rc) rc = psl_buf_append(out, "}", 1);
  }
  if (!rc) rc = psl_buf_append(out, "},\"outcomes\":", 13);
  if (!rc) {
    int64_t counts[PSL_NOUTCOME + 1];
    for (int k = 0; k <= PSL_NOUTCOME; k++)
      counts[k] = st->outcomes[k];
    rc = json_breakdown(out, PSL_CODE_OUTCOME, counts);
  }
  if (!rc) rc = psl_buf_append(out, ",\"referred_at\":", 15);
  if (!rc) rc = json_time(out, st->referred_at);
  if (!rc) rc = psl_buf_append(out, ",\"exited_at\":", 13);
  if (!rc) rc = json_time(out, st->exited_at);
  if (!rc) rc = psl_buf_append(out, ",\"exit_reason\":", 15);
  if (!rc) rc = json_code(out, PSL_CODE_EXIT_REASON, st->exit_reason);
  if (!rc) rc = psl__json_printf(out, ",\"months_followed\":%.1f",
                                 (double)psl_participant_days_followed(st, now_ms) /
                                     DAYS_PER_MONTH);
  if (!rc && st->merged) {
    rc = psl_buf_append(out, ",\"into\":", 8);
    if (!rc) rc = json_uuid(out, st->into);
  }
  return rc ? rc : psl_buf_append(out, "}", 1);
}

/* The figures of c as members of an object (no braces). */
int psl__counters_members(psl_buf_t *out, const psl_counters_t *c) {
  int rc = psl__json_printf(out, "\"referred\":%lld,\"followed\":%lld,\"active\":%lld,\"exited\":",
                            (long long)c->referred, (long long)c->followed, (long long)c->active);
  if (!rc) rc = json_breakdown(out, PSL_CODE_EXIT_REASON, c->exited);
  if (!rc) rc = psl__json_printf(out,
                                 ",\"interviews\":%lld,\"interview_minutes\":%lld,\"missed\":%lld"
                                 ",\"sessions\":%lld,\"session_attendance\":%lld"
                                 ",\"partner_referrals\":",
                                 (long long)c->interviews, (long long)c->interview_minutes,
                                 (long long)c->missed, (long long)c->sessions,
                                 (long long)c->session_attendance);
  if (!rc) rc = json_breakdown(out, PSL_CODE_REFERRAL_KIND, c->partner_referrals);
  if (!rc) rc = psl_buf_append(out, ",\"outcomes\":", 12);
  if (!rc) rc = json_breakdown(out, PSL_CODE_OUTCOME, c->outcomes);
  if (!rc) rc = psl_buf_append(out, ",\"outcomes_by_class\":", 21);
  if (!rc) rc = json_breakdown(out, PSL_CODE_OUTCOME_CLASS, c->outcome_classes);
  if (!rc) rc = psl_buf_append(out, ",\"gender\":", 10);
  if (!rc) rc = json_breakdown(out, PSL_CODE_GENDER, c->gender);
  if (!rc) rc = psl_buf_append(out, ",\"mean_age\":", 12);
  if (!rc) rc = json_ratio(out, c->age_sum, c->age_n, 1.0, "%.1f");
  if (!rc) rc = psl_buf_append(out, ",\"education\":", 13);
  if (!rc) rc = json_breakdown(out, PSL_CODE_ISCED, c->education);
  if (!rc) rc = psl_buf_append(out, ",\"housing_barrier_share\":", 25);
  if (!rc) rc = json_ratio(out, c->housing, c->followed, 1.0, "%.3f");
  if (!rc) rc = psl_buf_append(out, ",\"homeless_share\":", 18);
  if (!rc) rc = json_ratio(out, c->homeless, c->followed, 1.0, "%.3f");
  if (!rc) rc = psl_buf_append(out, ",\"care_obligation_share\":", 25);
  if (!rc) rc = json_ratio(out, c->care_obligation, c->followed, 1.0, "%.3f");
  if (!rc) rc = psl__json_printf(out, ",\"rsa\":%lld,\"mean_months_followed\":", (long long)c->rsa);
  if (!rc) rc = json_ratio(out, c->days_followed_sum, c->days_followed_n, DAYS_PER_MONTH, "%.1f");
  return rc;
}

int psl__query_members(psl_buf_t *out, const psl_counters_query_t *q) {
  int rc = psl_buf_append(out, "\"terr\":", 7);
  if (!rc) rc = json_code(out, PSL_CODE_TERR, q->terr);
  if (!rc) rc = psl__json_printf(out, ",\"year\":%d,\"month\":", q->year);
  if (!rc) rc = q->month ? psl__json_printf(out, "%d", q->month) : psl_buf_append(out, "null", 4);
  if (!rc) rc = psl_buf_append(out, ",\"programme\":", 13);
  if (!rc) rc = json_code(out, PSL_CODE_PROGRAMME, q->programme);
  if (!rc) rc = psl_buf_append(out, ",\"site\":", 8);
  if (!rc) rc = q->site[0] ? psl__json_str(out, q->site) : psl_buf_append(out, "null", 4);
  return rc;
}

int psl_counters_json(psl_buf_t *out, const psl_counters_t *c) {
  int rc = psl_buf_append(out, "{", 1);
  if (!rc) rc = psl__query_members(out, &c->q);
  if (!rc) rc = psl_buf_append(out, ",", 1);
  if (!rc) rc = psl__counters_members(out, c);
  return rc ? rc : psl_buf_append(out, "}", 1);
}
