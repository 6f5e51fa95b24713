/*
 * codes.c — the code tables of DOMAIN.md, sites, and the Europe/Paris calendar.
 *
 * A code's number is its position (from 1) in DOMAIN.md's list: stored states, counter keys
 * and year facts keep numbers, so the order of each table below is part of the stored format
 * (store-lmdb.c's "format"): append new codes, never reorder.
 */
#include <pthread.h>

#include "psl_domain_int.h"

static const char *const terr_codes[] = {"75", "77", "93", "94"};
static const char *const programme_codes[] = {"rsa93", "dynamiques-emploi", "en-route-idf",
                                              "o2r"};
static const char *const source_codes[] = {"spip", "mission-locale", "epi", "chrs",
                                           "pjj", "france-travail", "self", "other"};
static const char *const justice_codes[] = {"detained",     "sas",
                                            "semi-liberty", "open-custody",
                                            "electronic-monitoring", "released"};
static const char *const gender_codes[] = {"f", "m", "x"};
static const char *const education_codes[] = {"none", "infra3", "3", "4", "5+"};
static const char *const barrier_codes[] = {
    "housing-none", "housing-precarious", "health",      "mental-health",
    "addiction",    "id-papers",          "domiciliation", "social-security",
    "debts",        "digital",            "literacy",    "qualification",
    "mobility",     "childcare",          "language",    "judicial-constraints"};
static const char *const engagement_codes[] = {"cer", "contrat-engagement", "charte"};
static const char *const place_codes[] = {"detention", "office", "phone", "video", "outreach"};
static const char *const partner_kind_codes[] = {"siae",   "training", "france-travail", "csapa",
                                                 "health", "housing",  "other"};
static const char *const referral_kind_codes[] = {"pmsmp",   "training", "job",  "care",
                                                  "housing", "rights",   "other"};
static const char *const referral_status_codes[] = {"accepted", "refused", "started",
                                                    "completed", "cancelled"};
static const char *const outcome_codes[] = {"cdi",     "cdd-6m", "business", "cdd-short",
                                            "interim", "cddi",   "training", "other-siae"};
static const char *const outcome_class_codes[] = {"durable", "transitional", "positive"};
static const char *const exit_codes[] = {"completed", "job",          "training",
                                         "reincarcerated", "moved",   "lost-contact",
                                         "declined",  "deceased",     "other"};
static const char *const sequence_codes[] = {"info",          "career-analysis",
                                             "shortage-sectors", "workplace-codes",
                                             "interview-practice", "partner-talk",
                                             "cultural-outing", "other"};
static const char *const status_codes[] = {"referred", "active", "exited", "merged", "erased"};
static const char *const isced_codes[] = {"0-2", "3-4", "5-8"};

/* Outcome classes of DOMAIN.md, by outcome code. */
static const uint8_t outcome_class[PSL_NOUTCOME + 1] = {
    0, PSL_CLASS_DURABLE, PSL_CLASS_DURABLE, PSL_CLASS_DURABLE, PSL_CLASS_TRANSITIONAL,
    PSL_CLASS_TRANSITIONAL, PSL_CLASS_TRANSITIONAL, PSL_CLASS_POSITIVE, PSL_CLASS_POSITIVE};
/* ISCED groups of DOMAIN.md, by education code: none, infra3 → 0-2; 3, 4 → 3-4; 5+ → 5-8. */
static const uint8_t education_isced[] = {0, 1, 1, 2, 2, 3};

#define TABLE(a) {a, sizeof a / sizeof a[0]}
static const struct {
  const char *const *names;
  int n;
} tables[PSL_CODE__N] = {
    [PSL_CODE_TERR] = TABLE(terr_codes),
    [PSL_CODE_PROGRAMME] = TABLE(programme_codes),
    [PSL_CODE_SOURCE] = TABLE(source_codes),
    [PSL_CODE_JUSTICE] = TABLE(justice_codes),
    [PSL_CODE_GENDER] = TABLE(gender_codes),
    [PSL_CODE_EDUCATION] = TABLE(education_codes),
    [PSL_CODE_BARRIER] = TABLE(barrier_codes),
    [PSL_CODE_ENGAGEMENT] = TABLE(engagement_codes),
    [PSL_CODE_PLACE] = TABLE(place_codes),
    [PSL_CODE_PARTNER_KIND] = TABLE(partner_kind_codes),
    [PSL_CODE_REFERRAL_KIND] = TABLE(referral_kind_codes),
    [PSL_CODE_REFERRAL_STATUS] = TABLE(referral_status_codes),
    [PSL_CODE_OUTCOME] = TABLE(outcome_codes),
    [PSL_CODE_OUTCOME_CLASS] = TABLE(outcome_class_codes),
    [PSL_CODE_EXIT_REASON] = TABLE(exit_codes),
    [PSL_CODE_SEQUENCE] = TABLE(sequence_codes),
    [PSL_CODE_STATUS] = TABLE(status_codes),
    [PSL_CODE_ISCED] = TABLE(isced_codes),
};

int psl_code_count(psl_code_table_t t) {
  return (unsigned)t < PSL_CODE__N ? tables[t].n : 0;
}

const char *psl_code_name(psl_code_table_t t, int c) {
  if ((unsigned)t >= PSL_CODE__N || c < 1 || c > tables[t].n)
    return NULL;
  return tables[t].names[c - 1];
}

int psl_code_lookup(psl_code_table_t t, const char *s, size_t len) {
  if ((unsigned)t >= PSL_CODE__N || !s)
    return 0;
  for (int i = 0; i < tables[t].n; i++) {
    const char *name = tables[t].names[i];
    size_t j = 0;
    while (j < len && name[j] == s[j] && name[j] != '\0')
      j++;
    if (j == len && name[len] == '\0')
      return i + 1;
  }
  return 0;
}

int psl_outcome_class(int outcome) {
  return outcome >= 1 && outcome <= PSL_NOUTCOME ? outcome_class[outcome] : 0;
}

int psl_education_isced(int education) {
  return education >= 1 && education <= 5 ? education_isced[education] : 0;
}

int psl_site_valid(const char *s, size_t len) {
  if (!s || len == 0 || len > PSL_SITE_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return 0;
  }
  return 1;
}

/* ---- Calendar.  Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian). */

#define MS_PER_DAY INT64_C(86400000)
#define MS_PER_HOUR INT64_C(3600000)

static int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Day number of the last Sunday of (y, m). */
static int64_t last_sunday(int y, int m) {
  int64_t last = days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) - 1;
  int64_t wd = floor_div(last + 4, 7); /* 1970-01-01 was a Thursday (4, Sunday = 0) */
  wd = last + 4 - wd * 7;
  return last - wd;
}

/* Offset of Paris from UTC at instant utc: +1 h, +2 h in summer time (01:00 UTC on the last
 * Sunday of March to 01:00 UTC on the last Sunday of October). */
static int64_t paris_offset(int64_t utc) {
  int y, m, d;
  civil_from_days(floor_div(utc, MS_PER_DAY), &y, &m, &d);
  int64_t start = last_sunday(y, 3) * MS_PER_DAY + MS_PER_HOUR;
  int64_t end = last_sunday(y, 10) * MS_PER_DAY + MS_PER_HOUR;
  return (utc >= start && utc < end) ? 2 * MS_PER_HOUR : MS_PER_HOUR;
}

void psl_local_ym(int64_t at, int *year, int *month) {
  int d;
  civil_from_days(floor_div(at + paris_offset(at), MS_PER_DAY), year, month, &d);
}

int64_t psl_local_month_start(int year, int month) {
  if (month == 13) {
    year++;
    month = 1;
  }
  int64_t local = days_from_civil(year, month, 1) * MS_PER_DAY;
  /* Midnight is never within an hour of a change (they happen at 02:00 or 03:00 local), so
   * the offset an hour before is the offset at midnight. */
  return local - paris_offset(local - MS_PER_HOUR);
}

/* Month starts from January 2000 to January 2100 (the range of `at`), computed once: the
 * fold finds an event's month for every event, and the calendar arithmetic above costs more
 * than the fold itself.  Filled under pthread_once, read-only afterwards. */
#define TABLE_YEAR0 2000
#define TABLE_MONTHS (100 * 12 + 1)
static int64_t month_start[TABLE_MONTHS];
static pthread_once_t month_once = PTHREAD_ONCE_INIT;

static void month_table_init(void) {
  for (int i = 0; i < TABLE_MONTHS; i++)
    month_start[i] = psl_local_month_start(TABLE_YEAR0 + i / 12, 1 + i % 12);
}

uint32_t psl__at_month_index(int64_t at) {
  pthread_once(&month_once, month_table_init);
  if (at < month_start[0] || at >= month_start[TABLE_MONTHS - 1]) {
    int y, m;
    psl_local_ym(at, &y, &m);
    return psl__month_index(y, m);
  }
  /* an average Gregorian month is 2,629,746 s: the estimate is off by at most one */
  int64_t i = (at - month_start[0]) / INT64_C(2629746000);
  if (i >= TABLE_MONTHS - 1)
    i = TABLE_MONTHS - 2;
  while (i > 0 && at < month_start[i])
    i--;
  while (i + 1 < TABLE_MONTHS - 1 && at >= month_start[i + 1])
    i++;
  return psl__month_index(TABLE_YEAR0, 1) + (uint32_t)i;
}
