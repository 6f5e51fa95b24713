/*
 * passerelle-audit — the funder's auditor's tool: check that nothing was altered, replay
 * history to any point, export the events, and recompute the yearly report from the log
 * alone.  Opens the log read-only (psl_log_opts_t.read_only): it runs beside a live server,
 * never writes, never creates anything.
 *
 *   passerelle-audit --data DIR verify
 *       1. the hash chain, every event from seq 1 (psl_log_verify_report);
 *       2. the projections the server stored equal a rebuild from the log, at the seq they
 *          reflect (psl_projdb_compare in one read transaction).
 *       exit 0 and "ok: ..." lines; 1 and what first differs.
 *   passerelle-audit --data DIR replay --until DATE|SEQ
 *                    (--participant UUID | [--terr T] [--year Y] [--month M]
 *                     [--programme P] [--site S]) [--as-recorded]
 *       the participant's state, or the territory's counters, as they stood then (JSON):
 *         SEQ   the log up to that seq: what the server held right after it;
 *         DATE  the events that had happened by the end of that day (`at`, Europe/Paris),
 *               as recorded now — late syncs of earlier events included; with
 *               --as-recorded, the events the server had recorded by then (`rec`) instead.
 *       Counters default to every territory and the year of DATE (of the last event for
 *       SEQ); months followed and age are measured at the date.
 *   passerelle-audit --data DIR export --format ndjson|csv [--from DATE|SEQ]
 *                    [--until DATE|SEQ] [--terr T]
 *       the events, one per line (NDJSON: the stored event as JSON, at and rec in ms; CSV,
 *       RFC 4180 with a header: at and rec as UTC ISO 8601, data as JSON).  Dates select
 *       on `at`, seqs on seq; --terr reads the territory index.  `pii` is never exported
 *       (a column says whether the event has some): an audit needs the figures and their
 *       integrity, not who the people are.
 *   passerelle-audit --data DIR report --year Y [--terr T] [--format md|csv|json]
 *       the yearly report, recomputed from the log alone (not the server's projections).
 *
 * DATE: YYYY-MM-DD (a day in Europe/Paris) or YYYY-MM-DDTHH:MM:SSZ (UTC).  SEQ: digits.
 * Long runs draw a progress bar on stderr when it is a terminal, and stay quiet in a pipe.
 * Exit status: 0 done, 1 failed (verify: something differs), 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "psl_domain.h"
#include "psl_log.h"

/* Canonical bytes copied out per read: one short read transaction per 4 MiB (~15,000
 * events), so that a replay of a live log never holds back LMDB's page reuse for long. */
#define FOLD_CHUNK_BYTES (4u * 1024u * 1024u)
/* How often the progress bar is redrawn. */
#define PROGRESS_EVERY_MS 200
/* A compare retried when the server moved the projections meanwhile (a busy server): each
 * try folds the few events it wrote; past this many, one read transaction does it all. */
#define VERIFY_TRIES 20
/* stdout buffer: an export writes hundreds of MB. */
#define OUT_BUF_BYTES (1u << 20)

#define MS_DAY INT64_C(86400000)

static void usage(void) {
  fprintf(stderr,
          "usage: passerelle-audit --data DIR verify\n"
          "       passerelle-audit --data DIR replay --until DATE|SEQ (--participant UUID |\n"
          "            [--terr T] [--year Y] [--month M] [--programme P] [--site S])"
          " [--as-recorded]\n"
          "       passerelle-audit --data DIR export --format ndjson|csv [--from DATE|SEQ]\n"
          "            [--until DATE|SEQ] [--terr T]\n"
          "       passerelle-audit --data DIR report --year Y [--terr T] [--format md|csv|json]\n"
          "DATE: YYYY-MM-DD (Europe/Paris) or YYYY-MM-DDTHH:MM:SSZ; SEQ: a number\n");
  exit(2);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Progress on a terminal. */

typedef struct {
  int on;
  const char *what;
  uint64_t total;
  int64_t t0, last;
} progress_t;

static void progress_init(progress_t *p, const char *what, uint64_t total) {
  p->on = isatty(STDERR_FILENO);
  p->what = what;
  p->total = total;
  p->t0 = p->last = now_ms();
}

static void progress_show(progress_t *p, uint64_t done) {
  int64_t t = now_ms();
  if (!p->on || t - p->last < PROGRESS_EVERY_MS)
    return;
  p->last = t;
  int width = 30, fill = p->total ? (int)(done * (uint64_t)width / p->total) : 0;
  char bar[32];
  for (int i = 0; i < width; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[width] = '\0';
  double rate = t > p->t0 ? (double)done * 1000.0 / (double)(t - p->t0) : 0;
  fprintf(stderr, "\r%s [%s] %3d%% %" PRIu64 "/%" PRIu64 " events, %.2f M/s", p->what, bar,
          p->total ? (int)(done * 100 / p->total) : 100, done, p->total, rate / 1e6);
}

static void progress_done(progress_t *p) {
  if (p->on)
    fputs("\r\033[K", stderr);
}

static void chain_progress(void *arg, uint64_t seq, uint64_t head) {
  progress_t *p = arg;
  p->total = head;
  progress_show(p, seq);
}

/* ---- Dates: Europe/Paris (EU summer time, as domain/ reads `at`). */

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* UTC ms of the last Sunday of month m of year y, 01:00 UTC (the EU change). */
static int64_t eu_change(int y, int m) {
  int64_t last = days_from_civil(y, m, 31); /* March and October have 31 days */
  int64_t wd = (last + 4) % 7;              /* 1970-01-01 was a Thursday (4); Sunday = 0 */
  return (last - wd) * MS_DAY + 3600000;
}

/* UTC ms of the local midnight that starts `days` (since 1970-01-01) in Paris; y is its year
 * (or the year before, for a January 1st: winter time either way). */
static int64_t paris_midnight(int64_t days, int y) {
  int64_t utc = days * MS_DAY;
  int64_t guess = utc - 3600000; /* winter: UTC+1 */
  return guess >= eu_change(y, 3) && guess < eu_change(y, 10) ? utc - 7200000 : guess;
}

/* A --from/--until value: a seq (*seq) or a time (*at, UTC ms).  end: a day means up to its
 * last millisecond. */
static int parse_point(const char *s, int end, uint64_t *seq, int64_t *at) {
  int y, m, d, hh, mi, ss, n = 0;
  char *e;
  *seq = 0;
  *at = 0;
  if (s[0] >= '0' && s[0] <= '9' && strlen(s) < 20 && !strchr(s, '-')) {
    errno = 0;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || *e || v == 0)
      return -1;
    *seq = v;
    return 0;
  }
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &m, &d, &hh, &mi, &ss, &n) == 6 &&
      s[n] == '\0') {
    if (y < 2000 || y > 2099 || m < 1 || m > 12 || d < 1 || d > 31 || hh > 23 || mi > 59 ||
        ss > 59)
      return -1;
    *at = days_from_civil(y, m, d) * MS_DAY + ((int64_t)hh * 3600 + mi * 60 + ss) * 1000;
    return 0;
  }
  n = 0;
  if (sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) == 3 && s[n] == '\0' && y >= 2000 &&
      y <= 2099 && m >= 1 && m <= 12 && d >= 1 && d <= 31) {
    int64_t days = days_from_civil(y, m, d);
    *at = end ? paris_midnight(days + 1, y) - 1 : paris_midnight(days, y);
    return 0;
  }
  return -1;
}

/* ---- Folding the log into a memory store, with a filter. */

typedef struct {
  psl_log_t *log;
  uint64_t upto;  /* last seq folded (0: the head) */
  int64_t until;  /* only events with at (or rec) <= until; 0: all */
  int by_rec;
  int64_t max_at; /* the latest `at` folded */
  uint64_t folded;
} fold_t;

typedef struct {
  psl_buf_t buf;
  size_t *off, *len;
  uint64_t *seq;
  size_t n, cap;
  uint64_t stop; /* copy only seq < stop (0: no bound) */
  int err;
} chunk_t;

static int chunk_copy(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                      size_t len) {
  chunk_t *c = arg;
  (void)hash;
  if (c->stop && seq >= c->stop)
    return 1;
  if (c->n == c->cap) {
    size_t ncap = c->cap ? c->cap * 2 : 4096;
    size_t *o = realloc(c->off, ncap * sizeof *o);
    if (o)
      c->off = o;
    size_t *l = o ? realloc(c->len, ncap * sizeof *l) : NULL;
    if (l)
      c->len = l;
    uint64_t *s = l ? realloc(c->seq, ncap * sizeof *s) : NULL;
    if (!s) {
      c->err = PSL_ENOMEM;
      return 1;
    }
    c->seq = s;
    c->cap = ncap;
  }
  c->off[c->n] = c->buf.len;
  c->len[c->n] = len;
  c->seq[c->n] = seq;
  if ((c->err = psl_buf_append(&c->buf, canon, len)) != 0)
    return 1;
  c->n++;
  return 0;
}

static void chunk_free(chunk_t *c) {
  psl_buf_free(&c->buf);
  free(c->off);
  free(c->len);
  free(c->seq);
}

static int selected(const fold_t *f, const psl_event_t *ev) {
  return !f->until || (f->by_rec ? ev->rec : ev->at) <= f->until;
}

/* psl_stream_iter_fn: a stream's earlier events (seq < before), through the stream index,
 * with the same filter as the fold (a recomputation must see what the fold saw). */
static int fold_stream_iter(void *arg, psl_str_t stream, uint64_t before, psl_event_fn fn,
                            void *fnarg) {
  fold_t *f = arg;
  psl_filter_t flt = {NULL, 0, &stream, 1};
  chunk_t c = {.stop = before};
  uint64_t after = 0, last = 0;
  int rc = 0;
  psl_buf_init(&c.buf, 0);
  for (;;) {
    c.n = 0;
    c.buf.len = 0;
    if ((rc = psl_log_read(f->log, after, &flt, FOLD_CHUNK_BYTES, 0, chunk_copy, &c, &last)) ||
        (rc = c.err))
      break;
    for (size_t i = 0; i < c.n && !rc; i++) {
      psl_event_t ev;
      if (psl_event_decode_stored(psl_buf_data(&c.buf) + c.off[i], c.len[i], &ev, NULL))
        rc = PSL_ECORRUPT;
      else if (selected(f, &ev))
        rc = fn(fnarg, &ev);
    }
    if (rc || c.n == 0 || last <= after || (before && c.seq[c.n - 1] + 1 >= before))
      break;
    after = c.seq[c.n - 1];
  }
  chunk_free(&c);
  return rc;
}

/* Fold events (from, f->upto] into mem. */
static int fold(fold_t *f, psl_proj_t *mem, uint64_t from, progress_t *pg) {
  chunk_t c = {0};
  uint64_t after = from, last = 0;
  int rc = 0;
  psl_buf_init(&c.buf, 0);
  c.stop = f->upto + 1;
  while (!rc && after < f->upto) {
    c.n = 0;
    c.buf.len = 0;
    if ((rc = psl_log_read(f->log, after, NULL, FOLD_CHUNK_BYTES, 0, chunk_copy, &c, &last)) ||
        (rc = c.err))
      break;
    for (size_t i = 0; i < c.n && !rc; i++) {
      psl_event_t ev;
      if (psl_event_decode_stored(psl_buf_data(&c.buf) + c.off[i], c.len[i], &ev, NULL)) {
        rc = PSL_ECORRUPT;
        break;
      }
      if (!selected(f, &ev))
        continue;
      if (ev.at > f->max_at)
        f->max_at = ev.at;
      f->folded++;
      rc = psl_proj_apply(mem, &ev, fold_stream_iter, f);
    }
    if (c.n == 0 || last <= after)
      break;
    after = c.n ? c.seq[c.n - 1] : last;
    if (pg)
      progress_show(pg, after);
  }
  chunk_free(&c);
  return rc;
}

/* ---- verify */

typedef struct {
  psl_proj_t *mem;
  uint64_t seq; /* the seq mem reflects */
  uint64_t stored_seq;
  int have, result;
  psl_diag_t diag;
} compare_t;

/* In one read transaction: the stored projections' seq and, when it is mem's, the compare. */
static int compare_txn(void *arg, MDB_txn *txn) {
  compare_t *c = arg;
  psl_projdb_t *db = NULL;
  int rc = psl_projdb_open(&db, NULL, txn);
  if (rc) {
    c->have = 0;
    return rc == PSL_ENOTFOUND ? 0 : rc;
  }
  c->have = 1;
  rc = psl_projdb_seq(db, txn, &c->stored_seq);
  if (!rc && c->mem && c->stored_seq == c->seq)
    c->result = psl_projdb_compare(db, txn, c->mem, &c->diag);
  psl_projdb_free(db);
  return rc;
}

/* The same in one transaction for a server that never pauses (psl_projdb_verify). */
static int verify_txn(void *arg, MDB_txn *txn) {
  compare_t *c = arg;
  psl_projdb_t *db = NULL;
  int rc = psl_projdb_open(&db, NULL, txn);
  if (!rc) {
    rc = psl_projdb_seq(db, txn, &c->stored_seq);
    if (!rc)
      c->result = psl_projdb_verify(db, txn, &c->diag);
  }
  psl_projdb_free(db);
  return rc;
}

static int cmd_verify(psl_log_t *log) {
  psl_verify_report_t rep;
  progress_t pg;
  progress_init(&pg, "chain      ", psl_log_head(log, NULL));
  int rc = psl_log_verify_report(log, &rep, pg.on ? chain_progress : NULL, &pg);
  progress_done(&pg);
  if (rc == PSL_ECORRUPT) {
    printf("chain: seq %" PRIu64 ": %s\n", rep.bad_seq, rep.why);
    return 1;
  }
  if (rc) {
    fprintf(stderr, "passerelle-audit: verify: %s\n", psl_strerror(rc));
    return 1;
  }
  printf("ok: %" PRIu64 " events, hash chain valid\n", rep.head);
  fflush(stdout);

  compare_t c = {0};
  if ((rc = psl_log_with_read_txn(log, compare_txn, &c)) != 0) {
    fprintf(stderr, "passerelle-audit: projections: %s\n", psl_strerror(rc));
    return 1;
  }
  if (!c.have) {
    printf("projections: none stored (a log written before them): nothing to compare\n");
    return 0;
  }
  fold_t f = {.log = log};
  if ((rc = psl_proj_new(&c.mem)) != 0)
    return 1;
  progress_init(&pg, "projections", c.stored_seq);
  for (int tries = 0; !rc && tries < VERIFY_TRIES; tries++) {
    f.upto = c.stored_seq;
    pg.total = f.upto;
    rc = fold(&f, c.mem, c.seq, &pg);
    c.seq = f.upto;
    if (!rc)
      rc = psl_log_with_read_txn(log, compare_txn, &c);
    if (!rc && c.stored_seq == c.seq)
      break;
  }
  progress_done(&pg);
  if (!rc && c.stored_seq != c.seq) /* the server never paused: one long transaction */
    rc = psl_log_with_read_txn(log, verify_txn, &c);
  psl_proj_free(c.mem);
  if (rc) {
    fprintf(stderr, "passerelle-audit: projections: %s\n", psl_strerror(rc));
    return 1;
  }
  if (c.result) {
    printf("projections at seq %" PRIu64 ": differ from a rebuild: %s\n", c.stored_seq,
           c.diag.msg);
    return 1;
  }
  printf("ok: the projections at seq %" PRIu64 " equal a rebuild from the log\n",
         c.stored_seq);
  return 0;
}

/* ---- replay */

typedef struct {
  const char *participant, *terr, *programme, *site;
  int year, month, as_recorded;
  uint64_t seq;
  int64_t at;
} replay_opts_t;

static int code_of(psl_code_table_t t, const char *s, const char *what) {
  if (!s || !*s || (t == PSL_CODE_TERR && !strcmp(s, "all")))
    return 0;
  int c = psl_code_lookup(t, s, strlen(s));
  if (!c) {
    fprintf(stderr, "passerelle-audit: %s: unknown code\n", what);
    exit(2);
  }
  return c;
}

static int cmd_replay(psl_log_t *log, const replay_opts_t *o) {
  uint8_t id[PSL_UUID_BYTES];
  if (o->participant && psl_uuid_parse(o->participant, strlen(o->participant), id) != 0)
    usage();
  fold_t f = {.log = log, .upto = psl_log_head(log, NULL), .until = o->at,
              .by_rec = o->as_recorded};
  if (o->seq && o->seq < f.upto)
    f.upto = o->seq;
  psl_proj_t *mem;
  progress_t pg;
  int rc = psl_proj_new(&mem);
  if (rc)
    return 1;
  progress_init(&pg, "replay", f.upto);
  rc = fold(&f, mem, 0, &pg);
  progress_done(&pg);
  psl_buf_t out;
  psl_buf_init(&out, 0);
  int64_t then = o->at ? o->at : f.max_at;
  if (!rc && o->participant) {
    psl_participant_t st;
    rc = psl_proj_participant(mem, id, &st);
    if (rc == PSL_ENOTFOUND) {
      fprintf(stderr, "passerelle-audit: no such participant then\n");
      psl_proj_free(mem);
      return 1;
    }
    if (!rc) {
      rc = psl_participant_json(&out, &st, then);
      psl_participant_free(&st);
    }
  } else if (!rc) {
    psl_counters_query_t q;
    psl_counters_t c;
    int year = o->year, m;
    if (!year)
      psl_local_ym(then ? then : 946684800000, &year, &m);
    rc = psl_counters_query_init(&q, code_of(PSL_CODE_TERR, o->terr, "--terr"), year, o->month,
                                 code_of(PSL_CODE_PROGRAMME, o->programme, "--programme"),
                                 o->site);
    if (rc) {
      fprintf(stderr, "passerelle-audit: replay: invalid --year, --month or --site\n");
      psl_proj_free(mem);
      return 2;
    }
    q.now_ms = then;
    if (!(rc = psl_proj_counters(mem, &q, &c)))
      rc = psl_counters_json(&out, &c);
  }
  psl_proj_free(mem);
  if (rc) {
    fprintf(stderr, "passerelle-audit: replay: %s\n", psl_strerror(rc));
    psl_buf_free(&out);
    return 1;
  }
  fwrite(psl_buf_data(&out), 1, out.len, stdout);
  putchar('\n');
  psl_buf_free(&out);
  return 0;
}

/* ---- report */

static int cmd_report(psl_log_t *log, int year, const char *terr, const char *format) {
  fold_t f = {.log = log, .upto = psl_log_head(log, NULL)};
  psl_proj_t *mem;
  progress_t pg;
  psl_report_t r;
  if (psl_proj_new(&mem))
    return 1;
  progress_init(&pg, "rebuild", f.upto);
  int rc = fold(&f, mem, 0, &pg);
  progress_done(&pg);
  if (!rc)
    rc = psl_proj_report(mem, year, code_of(PSL_CODE_TERR, terr, "--terr"), &r);
  psl_proj_free(mem);
  if (rc) {
    fprintf(stderr, "passerelle-audit: report: %s\n", psl_strerror(rc));
    return 1;
  }
  psl_buf_t out;
  psl_buf_init(&out, 0);
  rc = !strcmp(format, "json") ? psl_report_json(&out, &r)
       : !strcmp(format, "csv") ? psl_report_csv(&out, &r)
                                : psl_report_md(&out, &r);
  psl_report_free(&r);
  if (!rc)
    fwrite(psl_buf_data(&out), 1, out.len, stdout);
  if (!rc && !strcmp(format, "json"))
    putchar('\n');
  psl_buf_free(&out);
  return rc ? 1 : 0;
}

/* ---- export */

static void put_json_str(FILE *o, const char *s, size_t n) {
  putc('"', o);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\')
      fprintf(o, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(o, "\\u%04x", ch);
    else
      putc(ch, o);
  }
  putc('"', o);
}

static void put_hex(FILE *o, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    fprintf(o, "%02x", p[i]);
}

/* `data` as JSON: the stored bytes passed proto's decoder on entry (bounded depth and
 * counts), so msgpack-c may unpack them.  A bin of 16 bytes is a uuid (its text). */
static void put_mp(FILE *o, const msgpack_object *v) {
  switch (v->type) {
  case MSGPACK_OBJECT_NIL: fputs("null", o); break;
  case MSGPACK_OBJECT_BOOLEAN: fputs(v->via.boolean ? "true" : "false", o); break;
  case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(o, "%" PRIu64, v->via.u64); break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(o, "%" PRId64, v->via.i64); break;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64:
    if (v->via.f64 == v->via.f64 && v->via.f64 - v->via.f64 == 0)
      fprintf(o, "%.17g", v->via.f64);
    else
      fputs("null", o);
    break;
  case MSGPACK_OBJECT_STR: put_json_str(o, v->via.str.ptr, v->via.str.size); break;
  case MSGPACK_OBJECT_BIN:
    putc('"', o);
    if (v->via.bin.size == PSL_UUID_BYTES) {
      char u[PSL_UUID_STR + 1];
      psl_uuid_format((const uint8_t *)v->via.bin.ptr, u);
      fputs(u, o);
    } else {
      put_hex(o, (const uint8_t *)v->via.bin.ptr, v->via.bin.size);
    }
    putc('"', o);
    break;
  case MSGPACK_OBJECT_ARRAY:
    putc('[', o);
    for (uint32_t i = 0; i < v->via.array.size; i++) {
      if (i)
        putc(',', o);
      put_mp(o, &v->via.array.ptr[i]);
    }
    putc(']', o);
    break;
  case MSGPACK_OBJECT_MAP:
    putc('{', o);
    for (uint32_t i = 0; i < v->via.map.size; i++) {
      const msgpack_object *k = &v->via.map.ptr[i].key;
      if (i)
        putc(',', o);
      if (k->type == MSGPACK_OBJECT_STR)
        put_json_str(o, k->via.str.ptr, k->via.str.size);
      else
        fputs("\"?\"", o);
      putc(':', o);
      put_mp(o, &v->via.map.ptr[i].val);
    }
    putc('}', o);
    break;
  default: fputs("null", o); break;
  }
}

static void put_data(FILE *o, const psl_event_t *ev, msgpack_unpacked *u) {
  size_t off = 0;
  if (ev->data.len == 0 || msgpack_unpack_next(u, (const char *)ev->data.ptr, ev->data.len,
                                               &off) != MSGPACK_UNPACK_SUCCESS) {
    fputs("null", o);
    return;
  }
  put_mp(o, &u->data);
}

/* A CSV field: quoted, quotes doubled (RFC 4180). */
static void put_csv(FILE *o, const char *s, size_t n) {
  putc('"', o);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"')
      putc('"', o);
    putc(s[i], o);
  }
  putc('"', o);
}

static void put_iso(FILE *o, int64_t ms) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  fprintf(o, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
          tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

typedef struct {
  int csv;
  uint64_t upto;
  int64_t from_at, until_at;
  msgpack_unpacked u;
  char *data_text; /* CSV: the data JSON, written to memory first to be quoted */
  size_t data_cap;
  uint64_t written;
  int bad;
} export_t;

static int export_one(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                      size_t len) {
  export_t *x = arg;
  psl_event_t ev;
  char id[PSL_UUID_STR + 1];
  if (x->upto && seq > x->upto)
    return 1;
  if (psl_event_decode_stored(canon, len, &ev, NULL) != 0) {
    fprintf(stderr, "passerelle-audit: seq %" PRIu64 ": undecodable record\n", seq);
    x->bad = 1;
    return 0;
  }
  if ((x->from_at && ev.at < x->from_at) || (x->until_at && ev.at > x->until_at))
    return 0;
  psl_uuid_format(ev.id, id);
  if (x->csv) {
    FILE *m = open_memstream(&x->data_text, &x->data_cap);
    if (!m)
      return 1;
    put_data(m, &ev, &x->u);
    fclose(m);
    printf("%" PRIu64 ",%" PRIu64 ",%s,", seq, ev.ver, id);
    put_csv(stdout, ev.stream.ptr, ev.stream.len);
    putchar(',');
    put_csv(stdout, ev.type.ptr, ev.type.len);
    putchar(',');
    put_iso(stdout, ev.at);
    putchar(',');
    put_csv(stdout, ev.terr.ptr, ev.terr.len);
    putchar(',');
    put_iso(stdout, ev.rec);
    putchar(',');
    put_csv(stdout, ev.by.ptr, ev.by.len);
    putchar(',');
    put_csv(stdout, ev.dev.ptr, ev.dev.len);
    putchar(',');
    put_hex(stdout, hash, PSL_HASH_BYTES);
    printf(",%s,", ev.pii.len ? "true" : "false");
    put_csv(stdout, x->data_text, strlen(x->data_text));
    fputs("\r\n", stdout);
    free(x->data_text);
    x->data_text = NULL;
  } else {
    printf("{\"seq\":%" PRIu64 ",\"ver\":%" PRIu64 ",\"id\":\"%s\",\"stream\":", seq, ev.ver, id);
    put_json_str(stdout, ev.stream.ptr, ev.stream.len);
    fputs(",\"type\":", stdout);
    put_json_str(stdout, ev.type.ptr, ev.type.len);
    printf(",\"at\":%" PRId64 ",\"terr\":", ev.at);
    put_json_str(stdout, ev.terr.ptr, ev.terr.len);
    printf(",\"rec\":%" PRId64 ",\"by\":", ev.rec);
    put_json_str(stdout, ev.by.ptr, ev.by.len);
    fputs(",\"dev\":", stdout);
    put_json_str(stdout, ev.dev.ptr, ev.dev.len);
    fputs(",\"hash\":\"", stdout);
    put_hex(stdout, hash, PSL_HASH_BYTES);
    printf("\",\"has_pii\":%s,\"data\":", ev.pii.len ? "true" : "false");
    put_data(stdout, &ev, &x->u);
    fputs("}\n", stdout);
  }
  x->written++;
  return 0;
}

static int cmd_export(psl_log_t *log, const char *format, const char *from, const char *until,
                      const char *terr) {
  export_t x = {0};
  uint64_t from_seq = 0, until_seq = 0;
  if (strcmp(format, "ndjson") && strcmp(format, "csv"))
    usage();
  x.csv = !strcmp(format, "csv");
  if ((from && parse_point(from, 0, &from_seq, &x.from_at)) ||
      (until && parse_point(until, 1, &until_seq, &x.until_at)))
    usage();
  psl_str_t t = terr ? psl_str(terr) : (psl_str_t){NULL, 0};
  if (terr && !psl_code_lookup(PSL_CODE_TERR, terr, strlen(terr))) {
    fprintf(stderr, "passerelle-audit: --terr: unknown code\n");
    return 2;
  }
  psl_filter_t f = {terr ? &t : NULL, terr ? 1 : 0, NULL, 0};
  uint64_t head = psl_log_head(log, NULL), after = from_seq ? from_seq - 1 : 0, last = 0;
  x.upto = until_seq && until_seq < head ? until_seq : head;
  progress_t pg;
  progress_init(&pg, "export", x.upto);
  msgpack_unpacked_init(&x.u);
  if (x.csv)
    fputs("seq,ver,id,stream,type,at,terr,rec,by,dev,hash,has_pii,data\r\n", stdout);
  int rc = 0;
  while (after < x.upto) {
    if ((rc = psl_log_read(log, after, &f, FOLD_CHUNK_BYTES, 0, export_one, &x, &last)) != 0)
      break;
    if (last <= after)
      break;
    after = last;
    progress_show(&pg, after);
  }
  progress_done(&pg);
  msgpack_unpacked_destroy(&x.u);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "passerelle-audit: export: %s\n", strerror(errno));
    return 1;
  }
  if (rc) {
    fprintf(stderr, "passerelle-audit: export: %s\n", psl_strerror(rc));
    return 1;
  }
  return x.bad;
}

/* ---- main */

int main(int argc, char **argv) {
  const char *dir = NULL, *cmd = NULL, *format = NULL, *from = NULL, *until = NULL;
  replay_opts_t ro = {0};
  int year = 0;
  static char outbuf[OUT_BUF_BYTES];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-') {
      if (cmd)
        usage();
      cmd = a;
      continue;
    }
    if (!strcmp(a, "--as-recorded")) {
      ro.as_recorded = 1;
      continue;
    }
    if (!v)
      usage();
    i++;
    if (!strcmp(a, "--data"))
      dir = v;
    else if (!strcmp(a, "--format"))
      format = v;
    else if (!strcmp(a, "--from"))
      from = v;
    else if (!strcmp(a, "--until"))
      until = v;
    else if (!strcmp(a, "--terr"))
      ro.terr = v;
    else if (!strcmp(a, "--participant"))
      ro.participant = v;
    else if (!strcmp(a, "--programme"))
      ro.programme = v;
    else if (!strcmp(a, "--site"))
      ro.site = v;
    else if (!strcmp(a, "--year"))
      year = atoi(v);
    else if (!strcmp(a, "--month"))
      ro.month = atoi(v);
    else
      usage();
  }
  if (!dir || !cmd)
    usage();
  setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
  int is_verify = !strcmp(cmd, "verify"), is_replay = !strcmp(cmd, "replay"),
      is_export = !strcmp(cmd, "export"), is_report = !strcmp(cmd, "report");
  if (!is_verify && !is_replay && !is_export && !is_report)
    usage();
  if (is_replay && (!until || parse_point(until, 1, &ro.seq, &ro.at) || from || format))
    usage();
  if (is_report && (year < 2000 || year > 2099 || from || until || ro.participant))
    usage();
  if (is_export && (!format || year || ro.participant))
    usage();
  if (year && (year < 2000 || year > 2099))
    usage();
  ro.year = year;

  psl_log_opts_t opts = {.read_only = 1};
  psl_log_t *log;
  int err = psl_log_open(&log, dir, &opts);
  if (err) {
    fprintf(stderr, "passerelle-audit: cannot open the log in %s: %s\n", dir, psl_strerror(err));
    return 1;
  }
  int rc = is_verify   ? cmd_verify(log)
           : is_replay ? cmd_replay(log, &ro)
           : is_export ? cmd_export(log, format, from, until, ro.terr)
                       : cmd_report(log, year, ro.terr, format ? format : "md");
  fflush(stdout);
  psl_log_close(log);
  return rc;
}
