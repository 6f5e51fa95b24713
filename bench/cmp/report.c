/*
 * report.c — bench-compare's results and the tables of docs/BENCHMARKS.md (see report.h).
 *
 * Ratios are "how many times better passerelle is" so that ≥ 1.0× always reads "at least as
 * good": passerelle ÷ peer for rates, peer ÷ passerelle for latencies and memory.
 */
#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psl_proto.h"

/* "Flat" in the goals table: the rate at the largest log is at least this share of the rate
 * at the smallest.  Not 1.0: two runs on a quiet machine differ by a few percent, and on a
 * shared one by more. */
#define FLAT_SHARE 0.85
#define MAX_DOC_BYTES (1024u * 1024u) /* the document is a few KiB */

typedef struct {
  const char *key, *label, *unit;
  int higher_better;
} metric_t;

static const metric_t INGEST[] = {
    {"ingest_1x1", "1 client × 1 event per round trip", "events/s", 1},
    {"ingest_64x1", "64 clients × 1 event per round trip", "events/s", 1},
    {"ingest_1000x1", "1,000 clients × 1 event per round trip", "events/s", 1},
    {"ingest_64x100", "64 clients × 100 events per request", "events/s", 1},
};
#define NINGEST (sizeof INGEST / sizeof INGEST[0])
static const metric_t CATCHUP = {"catchup", "catch-up by one client", "events/s", 1};
static const metric_t REBUILD = {"rebuild", "projection rebuild from the whole log", "events/s",
                                 1};
static const metric_t FANOUT[] = {
    {"fanout_p50", "fan-out to 1,000 live subscribers, p50 from the push", "ms", 0},
    {"fanout_p99", "fan-out to 1,000 live subscribers, p99 from the push", "ms", 0},
    {"fanout_ack_p50", "fan-out, p50 from the push's ack", "ms", 0},
    {"fanout_ack_p99", "fan-out, p99 from the push's ack", "ms", 0},
};
#define NFANOUT (sizeof FANOUT / sizeof FANOUT[0])
static const metric_t IDLE = {"idle_bytes", "idle connections: memory per connection", "bytes",
                              0};

static const char *sys_label(const char *sys) {
  if (strcmp(sys, "redis") == 0)
    return "Redis 7 Streams";
  if (strcmp(sys, "postgres") == 0)
    return "PostgreSQL 15";
  return "passerelle";
}

/* ---- Keeping values. */

void cmp_res_init(cmp_results_t *r) { memset(r, 0, sizeof *r); }

void cmp_res_free(cmp_results_t *r) {
  for (size_t i = 0; i < r->nnotes; i++)
    free(r->notes[i]);
  free(r->notes);
  free(r->cell);
  if (r->raw)
    fclose(r->raw);
  memset(r, 0, sizeof *r);
}

static cmp_cell_t *find(const cmp_results_t *r, const char *sys, const char *metric,
                        uint64_t level) {
  for (size_t i = 0; i < r->n; i++)
    if (r->cell[i].level == level && strcmp(r->cell[i].sys, sys) == 0 &&
        strcmp(r->cell[i].metric, metric) == 0)
      return &r->cell[i];
  return NULL;
}

static void keep(cmp_results_t *r, const char *sys, const char *metric, uint64_t level,
                 double v) {
  cmp_cell_t *c = find(r, sys, metric, level);
  if (!c) {
    if (r->n == r->cap) {
      size_t ncap = r->cap ? 2 * r->cap : 64;
      cmp_cell_t *nc = realloc(r->cell, ncap * sizeof *nc);
      if (!nc)
        return;
      r->cell = nc;
      r->cap = ncap;
    }
    c = &r->cell[r->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->sys, sizeof c->sys, "%s", sys);
    snprintf(c->metric, sizeof c->metric, "%s", metric);
    c->level = level;
  }
  if (c->n < CMP_MAX_RUNS && !isnan(v))
    c->v[c->n++] = v;
}

void cmp_res_add(cmp_results_t *r, const char *sys, const char *metric, uint64_t level, int run,
                 double v) {
  keep(r, sys, metric, level, v);
  if (r->raw) {
    fprintf(r->raw, "%s\t%s\t%llu\t%d\t%.9g\n", sys, metric, (unsigned long long)level, run, v);
    fflush(r->raw);
  }
}

static void add_note(cmp_results_t *r, const char *text) {
  char **nn = realloc(r->notes, (r->nnotes + 1) * sizeof *nn);
  if (!nn)
    return;
  r->notes = nn;
  if ((r->notes[r->nnotes] = strdup(text)))
    r->nnotes++;
}

void cmp_res_note(cmp_results_t *r, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  text[strcspn(text, "\t\n")] = '\0';
  add_note(r, text);
  if (r->raw) {
    fprintf(r->raw, "#note\t%s\n", text);
    fflush(r->raw);
  }
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double cmp_res_median(const cmp_results_t *r, const char *sys, const char *metric,
                      uint64_t level) {
  const cmp_cell_t *c = find(r, sys, metric, level);
  double v[CMP_MAX_RUNS];
  if (!c || c->n == 0)
    return NAN;
  memcpy(v, c->v, (size_t)c->n * sizeof *v);
  qsort(v, (size_t)c->n, sizeof *v, cmp_dbl);
  return c->n % 2 ? v[c->n / 2] : (v[c->n / 2 - 1] + v[c->n / 2]) / 2;
}

int cmp_res_load(cmp_results_t *r, const char *path) {
  FILE *f = fopen(path, "r");
  char line[1024], sys[16], metric[24];
  unsigned long long level;
  int run;
  double v;
  if (!f)
    return PSL_EIO;
  r->nlevels = 0;
  r->headline = 0;
  r->machine[0] = '\0';
  while (fgets(line, sizeof line, f)) {
    size_t ml = strlen(r->machine);
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "#note\t", 6) == 0)
      add_note(r, line + 6);
    else if (strncmp(line, "#machine\t", 9) == 0)
      snprintf(r->machine + ml, sizeof r->machine - ml, "%s\n", line + 9);
    else if (strncmp(line, "#command\t", 9) == 0)
      snprintf(r->command, sizeof r->command, "%.500s", line + 9);
    else if (strncmp(line, "#runs\t", 6) == 0)
      r->runs = atoi(line + 6);
    else if (strncmp(line, "#seconds\t", 9) == 0)
      r->seconds = atof(line + 9);
    else if (line[0] != '#' &&
             sscanf(line, "%15[^\t]\t%23[^\t]\t%llu\t%d\t%lf", sys, metric, &level, &run, &v) == 5)
      keep(r, sys, metric, (uint64_t)level, v);
  }
  fclose(f);
  /* The log sizes, in order, and the summary's: the one fan-out and idle were measured at. */
  for (size_t i = 0; i < r->n; i++) {
    uint64_t l = r->cell[i].level;
    size_t k = 0;
    while (k < r->nlevels && r->levels[k] != l)
      k++;
    if (k == r->nlevels && r->nlevels < CMP_MAX_LEVELS) {
      while (k > 0 && r->levels[k - 1] > l) {
        r->levels[k] = r->levels[k - 1];
        k--;
      }
      r->levels[k] = l;
      r->nlevels++;
    }
    if (strncmp(r->cell[i].metric, "fanout", 6) == 0 || strcmp(r->cell[i].metric, "idle_bytes") == 0)
      r->headline = l;
  }
  if (!r->headline && r->nlevels)
    r->headline = r->levels[r->nlevels - 1];
  return 0;
}

void cmp_res_header(cmp_results_t *r) {
  const char *p = r->machine;
  if (!r->raw)
    return;
  fprintf(r->raw, "#runs\t%d\n#seconds\t%g\n#command\t%s\n", r->runs, r->seconds, r->command);
  while (*p) {
    size_t n = strcspn(p, "\n");
    fprintf(r->raw, "#machine\t%.*s\n", (int)n, p);
    p += n + (p[n] == '\n');
  }
  fflush(r->raw);
}

/* ---- Formatting. */

/* 1234567.8 → "1,234,568"; small values keep decimals; NaN → "—". */
static const char *num(double v, char *out, size_t outlen) {
  char digits[64];
  if (isnan(v))
    return snprintf(out, outlen, "—"), out;
  if (fabs(v) < 100) {
    snprintf(out, outlen, "%.2f", v);
    return out;
  }
  snprintf(digits, sizeof digits, "%.0f", fabs(v));
  size_t n = strlen(digits), o = 0;
  if (v < 0 && o + 1 < outlen)
    out[o++] = '-';
  for (size_t i = 0; i < n && o + 2 < outlen; i++) {
    if (i > 0 && (n - i) % 3 == 0)
      out[o++] = ',';
    out[o++] = digits[i];
  }
  out[o] = '\0';
  return out;
}

static const char *level_name(uint64_t level, char *out, size_t outlen) {
  int e = 0;
  uint64_t x = level;
  while (x >= 10 && x % 10 == 0) {
    x /= 10;
    e++;
  }
  if (x == 1 && e >= 4)
    snprintf(out, outlen, "10^%d", e);
  else
    num((double)level, out, outlen);
  return out;
}

/* How many times better passerelle is than the peer on this metric. */
static double better(const metric_t *m, double ours, double peer) {
  if (isnan(ours) || isnan(peer) || ours <= 0 || peer <= 0)
    return NAN;
  return m->higher_better ? ours / peer : peer / ours;
}

static int has_sys(const cmp_results_t *r, const char *sys) {
  for (size_t i = 0; i < r->nsystems; i++)
    if (strcmp(r->systems[i], sys) == 0)
      return 1;
  return 0;
}

/* Ratio columns of a table: none, or after each peer (filled, or "—" where a ratio would
 * mean nothing, as for a latency that may be negative). */
enum { NO_RATIOS, RATIOS, RATIO_BLANK };

/* One row: label, then per system its value, and after each peer the ratio. */
static void row(FILE *o, const cmp_results_t *r, const metric_t *m, const char *label,
                uint64_t level, int ratios) {
  char a[48], b[48];
  double ours = cmp_res_median(r, "passerelle", m->key, level);
  fprintf(o, "| %s |", label);
  for (size_t i = 0; i < r->nsystems; i++) {
    double v = cmp_res_median(r, r->systems[i], m->key, level);
    fprintf(o, " %s |", num(v, a, sizeof a));
    if (ratios && strcmp(r->systems[i], "passerelle") != 0 && has_sys(r, "passerelle")) {
      double x = ratios == RATIOS ? better(m, ours, v) : NAN;
      if (isnan(x))
        fprintf(o, " — |");
      else
        fprintf(o, " %s× |", (snprintf(b, sizeof b, "%.2f", x), b));
    }
  }
  fputc('\n', o);
}

static void header(FILE *o, const cmp_results_t *r, const char *first, int ratios) {
  fprintf(o, "| %s |", first);
  for (size_t i = 0; i < r->nsystems; i++) {
    fprintf(o, " %s |", sys_label(r->systems[i]));
    if (ratios && strcmp(r->systems[i], "passerelle") != 0 && has_sys(r, "passerelle"))
      fprintf(o, " passerelle vs %s |", sys_label(r->systems[i]));
  }
  fprintf(o, "\n|---|");
  for (size_t i = 0; i < r->nsystems; i++) {
    fprintf(o, "---:|");
    if (ratios && strcmp(r->systems[i], "passerelle") != 0 && has_sys(r, "passerelle"))
      fprintf(o, "---:|");
  }
  fputc('\n', o);
}

/* ---- The blocks. */

static void block_machine(FILE *o, const cmp_results_t *r) {
  char lv[32];
  fprintf(o, "%s", r->machine);
  fprintf(o, "- Command: `%s`\n", r->command);
  fprintf(o, "- Each figure: the median of %d run%s; timed runs of %.0f s; log sizes:", r->runs,
          r->runs == 1 ? "" : "s", r->seconds);
  for (size_t i = 0; i < r->nlevels; i++)
    fprintf(o, "%s %s", i ? "," : "", level_name(r->levels[i], lv, sizeof lv));
  fprintf(o, " events; summary at %s.\n", level_name(r->headline, lv, sizeof lv));
}

static void block_summary(FILE *o, const cmp_results_t *r) {
  char label[200], n[48];
  header(o, r, "shape (events/s unless said)", 1);
  for (size_t i = 0; i < NINGEST; i++)
    row(o, r, &INGEST[i], INGEST[i].label, r->headline, RATIOS);
  uint64_t back = r->headline < 1000000 ? r->headline : 1000000;
  snprintf(label, sizeof label, "catch-up of %s events by one client", num((double)back, n,
                                                                          sizeof n));
  row(o, r, &CATCHUP, label, r->headline, RATIOS);
  row(o, r, &REBUILD, REBUILD.label, r->headline, RATIOS);
  for (size_t i = 0; i < NFANOUT; i++) {
    snprintf(label, sizeof label, "%s (ms)", FANOUT[i].label);
    row(o, r, &FANOUT[i], label, r->headline, i < 2 ? RATIOS : RATIO_BLANK);
  }
  /* how many connections each store held (PostgreSQL fewer: a process each) */
  size_t nl = (size_t)snprintf(label, sizeof label, "idle connections, bytes per connection (");
  for (size_t i = 0; i < r->nsystems && nl < sizeof label; i++) {
    double c = cmp_res_median(r, r->systems[i], "idle_conns", r->headline);
    nl += (size_t)snprintf(label + nl, sizeof label - nl, "%s%s: %s", i ? ", " : "",
                           sys_label(r->systems[i]), isnan(c) ? "?" : num(c, n, sizeof n));
  }
  if (nl < sizeof label)
    snprintf(label + nl, sizeof label - nl, ")");
  row(o, r, &IDLE, label, r->headline, RATIOS);
  fprintf(o, "\nRatios: how many times better passerelle is (rates: passerelle ÷ peer; "
             "latencies and memory: peer ÷ passerelle); ≥ 1.00× means at least as good.\n");
}

static void block_latency(FILE *o, const cmp_results_t *r) {
  char key[32], label[160];
  header(o, r, "ingest shape: latency of a request, ms", 0);
  for (size_t i = 0; i < NINGEST; i++)
    for (int p = 0; p < 2; p++) {
      snprintf(key, sizeof key, "%s.%s", INGEST[i].key, p ? "p99" : "p50");
      metric_t m = {key, "", "ms", 0};
      snprintf(label, sizeof label, "%s, %s", INGEST[i].label, p ? "p99" : "p50");
      row(o, r, &m, label, r->headline, NO_RATIOS);
    }
}

static void curve_table(FILE *o, const cmp_results_t *r, const metric_t *m) {
  char lv[32], a[48];
  fprintf(o, "**%s** (%s)\n\n", m->label, m->unit);
  header(o, r, "events in the log", 0);
  for (size_t l = 0; l < r->nlevels; l++)
    row(o, r, m, level_name(r->levels[l], lv, sizeof lv), r->levels[l], NO_RATIOS);
  if (r->nlevels >= 2) {
    uint64_t lo = r->levels[0], hi = r->levels[r->nlevels - 1];
    char lab[96], l1[32], l2[32];
    snprintf(lab, sizeof lab, "*%s ÷ %s*", level_name(hi, l1, sizeof l1),
             level_name(lo, l2, sizeof l2));
    fprintf(o, "| %s |", lab);
    for (size_t i = 0; i < r->nsystems; i++) {
      double x = cmp_res_median(r, r->systems[i], m->key, hi) /
                 cmp_res_median(r, r->systems[i], m->key, lo);
      fprintf(o, " %s |", isnan(x) ? "—" : (snprintf(a, sizeof a, "%.2f", x), a));
    }
    fputc('\n', o);
  }
  fputc('\n', o);
}

static void block_curve(FILE *o, const cmp_results_t *r) {
  for (size_t i = 0; i < NINGEST; i++)
    curve_table(o, r, &INGEST[i]);
  curve_table(o, r, &CATCHUP);
  curve_table(o, r, &REBUILD);
  fprintf(o, "Log size: the events stored when the measurement starts.  Each log size is a "
             "fresh instance, preloaded; up to 10^6 each ingest figure has a fresh one too, at "
             "10^7 the shapes follow one another (adding ~15 %%).  Catch-up reads the last "
             "min(log, 1,000,000) events.\n");
}

static void goal(FILE *o, const char *what, const char *measured, int met) {
  fprintf(o, "| %s | %s | %s |\n", what, measured, met < 0 ? "—" : met ? "met" : "**NOT met**");
}

static void block_goals(FILE *o, const cmp_results_t *r) {
  char what[200], meas[200], a[48], b[48], l1[32], l2[32];
  fprintf(o, "| goal | measured | |\n|---|---|---|\n");
  for (size_t i = 0; i < NINGEST; i++) {
    double ours = cmp_res_median(r, "passerelle", INGEST[i].key, r->headline), best = NAN;
    const char *who = "";
    for (size_t s = 0; s < r->nsystems; s++) {
      double v = cmp_res_median(r, r->systems[s], INGEST[i].key, r->headline);
      if (strcmp(r->systems[s], "passerelle") != 0 && !isnan(v) && (isnan(best) || v > best)) {
        best = v;
        who = sys_label(r->systems[s]);
      }
    }
    snprintf(what, sizeof what, "≥ 1.0× the best peer: %s", INGEST[i].label);
    snprintf(meas, sizeof meas, "%s× (%s: %s events/s)",
             (snprintf(a, sizeof a, "%.2f", ours / best), a), who, num(best, b, sizeof b));
    goal(o, what, meas, isnan(ours) || isnan(best) ? -1 : ours >= best);
  }
  double cu = cmp_res_median(r, "passerelle", CATCHUP.key, r->headline);
  snprintf(meas, sizeof meas, "%s events/s", num(cu, a, sizeof a));
  goal(o, "catch-up ≥ 1,000,000 events/s", meas, isnan(cu) ? -1 : cu >= 1e6);
  if (r->nlevels >= 2) {
    uint64_t lo = r->levels[0], hi = r->levels[r->nlevels - 1];
    for (size_t i = 0; i < NINGEST; i++) {
      double x = cmp_res_median(r, "passerelle", INGEST[i].key, hi) /
                 cmp_res_median(r, "passerelle", INGEST[i].key, lo);
      snprintf(what, sizeof what, "ingest flat from %s to %s events: %s",
               level_name(lo, l1, sizeof l1), level_name(hi, l2, sizeof l2), INGEST[i].label);
      snprintf(meas, sizeof meas, "rate at %s ÷ rate at %s = %s (flat: ≥ %.2f)", l2, l1,
               isnan(x) ? "—" : (snprintf(a, sizeof a, "%.2f", x), a), FLAT_SHARE);
      goal(o, what, meas, isnan(x) ? -1 : x >= FLAT_SHARE);
    }
  }
  double rb = cmp_res_median(r, "passerelle", REBUILD.key, r->headline);
  snprintf(meas, sizeof meas, "%s events/s", num(rb, a, sizeof a));
  goal(o, "projection rebuild ≥ 2,000,000 events/s (BRIEF §6)", meas, isnan(rb) ? -1 : rb >= 2e6);
  double id = cmp_res_median(r, "passerelle", IDLE.key, r->headline);
  snprintf(meas, sizeof meas, "%s bytes per connection", num(id, a, sizeof a));
  goal(o, "10,000 connections at ≤ 16 KiB each (BRIEF §6)", meas,
       isnan(id) ? -1 : id <= 16384);
}

static void block_notes(FILE *o, const cmp_results_t *r) {
  if (r->nnotes == 0)
    fprintf(o, "No failures or anomalies were recorded in this run.\n");
  for (size_t i = 0; i < r->nnotes; i++)
    fprintf(o, "- %s\n", r->notes[i]);
}

typedef struct {
  const char *name;
  void (*fn)(FILE *, const cmp_results_t *);
} block_t;

static const block_t BLOCKS[] = {
    {"machine", block_machine}, {"summary", block_summary}, {"latency", block_latency},
    {"curve", block_curve},     {"goals", block_goals},     {"notes", block_notes},
};
#define NBLOCKS (sizeof BLOCKS / sizeof BLOCKS[0])

void cmp_res_print(const cmp_results_t *r, FILE *out) {
  for (size_t i = 0; i < NBLOCKS; i++) {
    fprintf(out, "\n## %s\n\n", BLOCKS[i].name);
    BLOCKS[i].fn(out, r);
  }
}

/* ---- The document. */

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "r");
  char *buf = malloc(MAX_DOC_BYTES + 1);
  if (!f || !buf) {
    if (f)
      fclose(f);
    free(buf);
    return NULL;
  }
  *len = fread(buf, 1, MAX_DOC_BYTES, f);
  buf[*len] = '\0';
  fclose(f);
  return buf;
}

int cmp_doc_write(const cmp_results_t *r, const char *path, char *err, size_t errlen) {
  size_t len;
  char *doc = read_all(path, &len), *out = NULL, tmp[4096];
  size_t outlen = 0;
  if (!doc) {
    snprintf(err, errlen, "cannot read %s", path);
    return PSL_EIO;
  }
  FILE *o = open_memstream(&out, &outlen);
  const char *p = doc;
  int rc = 0;
  for (size_t i = 0; i < NBLOCKS && o; i++) {
    char open_m[64], close_m[64];
    snprintf(open_m, sizeof open_m, "<!-- bench:%s -->", BLOCKS[i].name);
    snprintf(close_m, sizeof close_m, "<!-- /bench:%s -->", BLOCKS[i].name);
    const char *a = strstr(p, open_m), *b = a ? strstr(a, close_m) : NULL;
    if (!a || !b) {
      snprintf(err, errlen, "%s: no %s ... %s", path, open_m, close_m);
      rc = PSL_ENOTFOUND;
      break;
    }
    fwrite(p, 1, (size_t)(a - p) + strlen(open_m), o);
    fputs("\n\n", o);
    BLOCKS[i].fn(o, r);
    fputs("\n", o);
    p = b;
  }
  if (o) {
    fputs(p, o);
    fclose(o);
  }
  if (!rc && out) {
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fwrite(out, 1, outlen, f) == outlen;
    if (f && fclose(f) != 0)
      ok = 0;
    if (!ok || rename(tmp, path) != 0) {
      snprintf(err, errlen, "cannot write %s", path);
      unlink(tmp);
      rc = PSL_EIO;
    }
  }
  free(out);
  free(doc);
  return rc;
}
