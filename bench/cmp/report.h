/*
 * report.h — bench-compare's results: every measured value kept per (system, metric, log
 * size), the raw values written as they come to a tab-separated file, medians, and the
 * markdown tables written into docs/BENCHMARKS.md between its markers:
 *
 *   <!-- bench:NAME -->  ...generated...  <!-- /bench:NAME -->
 *
 * for NAME in machine, summary, latency, curve, goals, notes.  Text outside the markers is
 * left as it is.
 *
 * The raw file, one value per line:
 *   system <TAB> metric <TAB> log size <TAB> run <TAB> value
 * and lines starting with #: "#runs", "#seconds", "#command", "#machine" (one per line of
 * the machine block) and "#note", each followed by a tab and its text.
 */
#ifndef PSL_BENCH_REPORT_H
#define PSL_BENCH_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CMP_MAX_RUNS 15
#define CMP_MAX_LEVELS 8

typedef struct {
  char sys[16], metric[24];
  uint64_t level;
  double v[CMP_MAX_RUNS];
  int n;
} cmp_cell_t;

typedef struct {
  cmp_cell_t *cell;
  size_t n, cap;
  char **notes;
  size_t nnotes;
  FILE *raw; /* NULL: not kept */
  /* what the document says about the run */
  const char *systems[3];
  size_t nsystems;
  uint64_t levels[CMP_MAX_LEVELS];
  size_t nlevels;
  uint64_t headline; /* the log size of the summary table */
  int runs;
  double seconds;
  char machine[2048];  /* markdown lines */
  char command[512];
} cmp_results_t;

void cmp_res_init(cmp_results_t *r);
void cmp_res_free(cmp_results_t *r);
void cmp_res_add(cmp_results_t *r, const char *sys, const char *metric, uint64_t level, int run,
                 double v);
void cmp_res_note(cmp_results_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The median of the runs (NaN when none). */
double cmp_res_median(const cmp_results_t *r, const char *sys, const char *metric,
                      uint64_t level);
/* Write the run's parameters and machine lines at the head of the raw file. */
void cmp_res_header(cmp_results_t *r);
/* Read a raw file written by an earlier run: its values, notes, parameters, machine lines,
 * log sizes and summary size.  0 or PSL_EIO. */
int cmp_res_load(cmp_results_t *r, const char *path);
/* Rewrite the generated blocks of the document.  0, PSL_EIO, or PSL_ENOTFOUND when a marker
 * is missing (the document is left as it was). */
int cmp_doc_write(const cmp_results_t *r, const char *path, char *err, size_t errlen);
/* The same tables, plain, to out (the quick run of `make bench`). */
void cmp_res_print(const cmp_results_t *r, FILE *out);

#endif /* PSL_BENCH_REPORT_H */
