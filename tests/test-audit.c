/*
 * test-audit.c — passerelle-audit, run as the auditor runs it (area `audit`): verify passes
 * on an honest log and names what was altered — an event's bytes (the hash chain) or the
 * stored projections (a rebuild differs); replay gives a participant and a territory as they
 * stood at a seq or a date (the reference: the in-process fold of just those events); export
 * selects by seq, date and territory, in NDJSON and CSV, without personal data; report
 * recomputes the yearly report from the log alone.
 *
 * The log is the 2024 demo data set, appended in process with the projection hooks (as the
 * server does), then altered with LMDB directly where a test needs tampering.
 */
#include "harness.h"

#include <limits.h>

#include <lmdb.h>

#include "psl_demo.h"
#include "psl_domain.h"
#include "psl_log.h"
#include "support/run.h"

/* Events appended per call (a batch of the log's writer). */
#define APPEND_BATCH 512

typedef struct {
  char dir[PATH_MAX];
  psl_demo_event_t *ev;
  size_t n;
} afx_t;

static void stamp(const psl_demo_event_t *d, uint64_t seq, psl_event_t *e) {
  psl_demo_event_view(d, e);
  e->seq = seq;
  e->ver = (uint64_t)d->expect + 1;
  e->by = psl_str("coord-test");
  e->dev = psl_str("laptop-1");
}

/* The data folder: the demo events appended with (hooks = 1) or without projections. */
static void afx_init(afx_t *f, int hooks) {
  psl_projdb_t *db = NULL;
  psl_log_opts_t o = {0};
  psl_log_t *log;
  snprintf(f->dir, sizeof f->dir, "%s/data", psl_test_tmpdir());
  CHECK_OK(psl_demo_2024(&f->ev, &f->n));
  if (hooks)
    o.hooks = psl_projection_hooks(&db);
  CHECK_OK(psl_log_open(&log, f->dir, &o));
  psl_event_t evs[APPEND_BATCH];
  psl_push_result_t res[APPEND_BATCH];
  for (size_t i = 0; i < f->n; i += APPEND_BATCH) {
    size_t k = f->n - i < APPEND_BATCH ? f->n - i : APPEND_BATCH;
    for (size_t j = 0; j < k; j++)
      stamp(&f->ev[i + j], 0, &evs[j]);
    CHECK_OK(psl_log_append(log, evs, k, res));
    for (size_t j = 0; j < k; j++)
      CHECK_EQ(res[j].seq, i + j + 1);
  }
  psl_log_close(log);
  psl_projdb_free(db);
}

static void afx_free(afx_t *f) { free(f->ev); }

static void audit(const afx_t *f, const char *const *args, run_result_t *r) {
  const char *argv[16] = {"--data", f->dir};
  size_t n = 2;
  for (size_t i = 0; args[i] && n < 15; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  CHECK_OK(run_tool(psl_test_bindir(), "passerelle-audit", argv, 60, r));
}

/* ---- The reference: a fold of the events that pass a filter. */

typedef struct {
  const afx_t *f;
  uint64_t upto;  /* seqs 1..upto */
  int64_t until;  /* and at <= until (0: any) */
  int64_t max_at;
} sel_t;

static int sel_pass(const sel_t *s, size_t i) {
  return i + 1 <= s->upto && (!s->until || s->f->ev[i].at <= s->until);
}

static int sel_iter(void *arg, psl_str_t stream, uint64_t before, psl_event_fn fn, void *fa) {
  const sel_t *s = arg;
  for (size_t i = 0; i + 1 < before && i < s->f->n; i++) {
    const psl_demo_event_t *d = &s->f->ev[i];
    if (!sel_pass(s, i) || strlen(d->stream) != stream.len ||
        memcmp(d->stream, stream.ptr, stream.len))
      continue;
    psl_event_t e;
    stamp(d, i + 1, &e);
    int rc = fn(fa, &e);
    if (rc)
      return rc;
  }
  return 0;
}

static psl_proj_t *fold_ref(sel_t *s) {
  psl_proj_t *p;
  CHECK_OK(psl_proj_new(&p));
  for (size_t i = 0; i < s->f->n; i++) {
    if (!sel_pass(s, i))
      continue;
    psl_event_t e;
    stamp(&s->f->ev[i], i + 1, &e);
    if (e.at > s->max_at)
      s->max_at = e.at;
    CHECK_OK(psl_proj_apply(p, &e, sel_iter, s));
  }
  return p;
}

static void expect_out(const run_result_t *r, const psl_buf_t *want) {
  if (r->status != 0 || r->outlen != want->len ||
      memcmp(r->out, psl_buf_data(want), want->len) != 0) {
    fprintf(stderr, "--- status %d, stdout\n%s\n--- stderr\n%s\n--- want\n%.*s\n", r->status,
            r->out, r->err, (int)want->len, (const char *)psl_buf_data(want));
    psl_test_fail(__FILE__, __LINE__, "passerelle-audit printed something else");
  }
}

/* ---- Tampering with LMDB directly. */

typedef int (*tamper_fn)(MDB_txn *txn, MDB_dbi dbi);

static void tamper(const afx_t *f, const char *dbname, tamper_fn fn) {
  char path[PATH_MAX + 8];
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  snprintf(path, sizeof path, "%s/log", f->dir);
  CHECK_OK(mdb_env_create(&env));
  CHECK_OK(mdb_env_set_maxdbs(env, 64));
  CHECK_OK(mdb_env_open(env, path, 0, 0600));
  CHECK_OK(mdb_txn_begin(env, NULL, 0, &txn));
  CHECK_OK(mdb_dbi_open(txn, dbname, 0, &dbi));
  CHECK_OK(fn(txn, dbi));
  CHECK_OK(mdb_txn_commit(txn));
  mdb_env_close(env);
}

/* One byte of event 100's canonical bytes (its last: the device name's) changed. */
static int tamper_event(MDB_txn *txn, MDB_dbi dbi) {
  uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 100}, copy[PSL_MAX_EVENT + PSL_HASH_BYTES];
  MDB_val k = {8, key}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc || v.mv_size > sizeof copy)
    return rc ? rc : -1;
  memcpy(copy, v.mv_data, v.mv_size);
  copy[v.mv_size - 1] ^= 0x01; /* "laptop-1" → "laptop-0" */
  v.mv_data = copy;
  return mdb_put(txn, dbi, &k, &v, 0);
}

/* The first stored counter vector: one count more. */
static int tamper_counter(MDB_txn *txn, MDB_dbi dbi) {
  MDB_cursor *c;
  MDB_val k, v;
  uint8_t key[64], val[1024];
  int rc = mdb_cursor_open(txn, dbi, &c);
  if (rc)
    return rc;
  rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  mdb_cursor_close(c);
  if (rc || k.mv_size > sizeof key || v.mv_size > sizeof val || v.mv_size < 8)
    return rc ? rc : -1;
  memcpy(key, k.mv_data, k.mv_size);
  memcpy(val, v.mv_data, v.mv_size);
  val[7] += 1; /* the first count's low byte, whatever the byte order of the others */
  k.mv_data = key;
  v.mv_data = val;
  return mdb_put(txn, dbi, &k, &v, 0);
}

TEST_T(audit, verify_honest_then_tampered_event, 60) {
  afx_t f;
  run_result_t r;
  const char *verify[] = {"verify", NULL};
  afx_init(&f, 1);
  audit(&f, verify, &r);
  CHECK_EQ(r.status, 0);
  CHECK(strstr(r.out, "hash chain valid") != NULL);
  CHECK(strstr(r.out, "equal a rebuild from the log") != NULL);
  run_free(&r);
  tamper(&f, "events", tamper_event);
  audit(&f, verify, &r);
  CHECK_EQ(r.status, 1);
  if (!strstr(r.out, "chain: seq 100: hash mismatch"))
    psl_test_fail(__FILE__, __LINE__, "verify said: %s %s", r.out, r.err);
  run_free(&r);
  afx_free(&f);
}

TEST_T(audit, verify_detects_altered_projections, 60) {
  afx_t f;
  run_result_t r;
  const char *verify[] = {"verify", NULL};
  afx_init(&f, 1);
  tamper(&f, "proj_counters", tamper_counter);
  audit(&f, verify, &r);
  CHECK_EQ(r.status, 1);
  CHECK(strstr(r.out, "hash chain valid") != NULL); /* the events are intact */
  if (!strstr(r.out, "differ from a rebuild"))
    psl_test_fail(__FILE__, __LINE__, "verify said: %s %s", r.out, r.err);
  run_free(&r);
  afx_free(&f);
}

TEST_T(audit, verify_log_without_projections, 60) {
  afx_t f;
  run_result_t r;
  const char *verify[] = {"verify", NULL};
  afx_init(&f, 0);
  audit(&f, verify, &r);
  CHECK_EQ(r.status, 0);
  CHECK(strstr(r.out, "hash chain valid") != NULL);
  CHECK(strstr(r.out, "projections: none stored") != NULL);
  run_free(&r);
  afx_free(&f);
}

TEST_T(audit, replay_until_seq_and_date, 60) {
  afx_t f;
  run_result_t r;
  char u[PSL_UUID_STR + 1], seqtext[32];
  uint8_t first[PSL_UUID_BYTES];
  afx_init(&f, 1);
  psl_demo_2024_first_id(first);
  psl_uuid_format(first, u);

  /* the first participant (referred 2023, released March, exited for a job in June), as the
   * log stood at its exit's seq minus one: active, not exited */
  size_t exit_seq = 0;
  for (size_t i = 0; i < f.n && !exit_seq; i++)
    if (!strcmp(f.ev[i].type, "participant.exited") && !strcmp(f.ev[i].stream + 12, u))
      exit_seq = i + 1;
  CHECK(exit_seq > 0);
  snprintf(seqtext, sizeof seqtext, "%zu", exit_seq - 1);
  sel_t s = {&f, exit_seq - 1, 0, 0};
  psl_proj_t *p = fold_ref(&s);
  psl_participant_t st;
  psl_buf_t want;
  psl_buf_init(&want, 0);
  CHECK_OK(psl_proj_participant(p, first, &st));
  CHECK_EQ(st.status, PSL_STATUS_ACTIVE);
  CHECK_OK(psl_participant_json(&want, &st, s.max_at));
  CHECK_OK(psl_buf_append(&want, "\n", 1));
  const char *a1[] = {"replay", "--until", seqtext, "--participant", u, NULL};
  audit(&f, a1, &r);
  expect_out(&r, &want);
  run_free(&r);
  psl_participant_free(&st);
  psl_proj_free(p);

  /* at the end of 2024-06-30 (Paris): exited; and the counters of 93 as they stood then */
  int64_t end_june = psl_local_month_start(2024, 7) - 1;
  sel_t d = {&f, f.n, end_june, 0};
  p = fold_ref(&d);
  psl_buf_reset(&want);
  CHECK_OK(psl_proj_participant(p, first, &st));
  CHECK_EQ(st.status, PSL_STATUS_EXITED);
  CHECK_OK(psl_participant_json(&want, &st, end_june));
  CHECK_OK(psl_buf_append(&want, "\n", 1));
  const char *a2[] = {"replay", "--until", "2024-06-30", "--participant", u, NULL};
  audit(&f, a2, &r);
  expect_out(&r, &want);
  run_free(&r);
  psl_participant_free(&st);

  psl_counters_query_t q;
  psl_counters_t c;
  CHECK_OK(psl_counters_query_init(&q, PSL_TERR_93, 2024, 0, 0, NULL));
  q.now_ms = end_june;
  CHECK_OK(psl_proj_counters(p, &q, &c));
  CHECK(c.followed > 0 && c.followed < 60); /* not yet the whole year's 60 */
  psl_buf_reset(&want);
  CHECK_OK(psl_counters_json(&want, &c));
  CHECK_OK(psl_buf_append(&want, "\n", 1));
  const char *a3[] = {"replay", "--until", "2024-06-30", "--terr", "93", NULL};
  audit(&f, a3, &r);
  expect_out(&r, &want);
  run_free(&r);
  psl_proj_free(p);

  /* as recorded: the server recorded nothing by then (every rec is today) */
  const char *a4[] = {"replay", "--until", "2024-06-30", "--as-recorded", "--participant", u,
                      NULL};
  audit(&f, a4, &r);
  CHECK_EQ(r.status, 1);
  CHECK(strstr(r.err, "no such participant then") != NULL);
  run_free(&r);
  psl_buf_free(&want);
  afx_free(&f);
}

static size_t count_lines(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

TEST_T(audit, export_filters_and_no_personal_data, 60) {
  afx_t f;
  run_result_t r;
  afx_init(&f, 1);
  const char *all[] = {"export", "--format", "ndjson", NULL};
  audit(&f, all, &r);
  CHECK_EQ(r.status, 0);
  CHECK_EQ(count_lines(r.out), f.n);
  CHECK(strncmp(r.out, "{\"seq\":1,\"ver\":1,", 17) == 0);
  CHECK(strstr(r.out, "Personne") == NULL); /* pii: never exported */
  CHECK(strstr(r.out, "\"has_pii\":true") != NULL);
  run_free(&r);

  size_t n75 = 0, nmarch = 0;
  int64_t from = psl_local_month_start(2024, 3), until = psl_local_month_start(2024, 4) - 1;
  for (size_t i = 0; i < f.n; i++) {
    n75 += !strcmp(f.ev[i].terr, "75");
    nmarch += f.ev[i].at >= from && f.ev[i].at <= until;
  }
  const char *t75[] = {"export", "--format", "ndjson", "--terr", "75", NULL};
  audit(&f, t75, &r);
  CHECK_EQ(r.status, 0);
  CHECK_EQ(count_lines(r.out), n75);
  CHECK(strstr(r.out, "\"terr\":\"93\"") == NULL);
  run_free(&r);

  const char *seqs[] = {"export", "--format", "ndjson", "--from", "10", "--until", "20", NULL};
  audit(&f, seqs, &r);
  CHECK_EQ(r.status, 0);
  CHECK_EQ(count_lines(r.out), 11);
  CHECK(strncmp(r.out, "{\"seq\":10,", 10) == 0);
  run_free(&r);

  const char *march[] = {"export", "--format", "csv", "--from", "2024-03-01", "--until",
                         "2024-03-31", NULL};
  audit(&f, march, &r);
  CHECK_EQ(r.status, 0);
  static const char header[] = "seq,ver,id,stream,type,at,terr,rec,by,dev,hash,has_pii,data\r\n";
  CHECK(strncmp(r.out, header, strlen(header)) == 0);
  CHECK_EQ(count_lines(r.out), nmarch + 1);
  CHECK(strstr(r.out, ",2024-03-") != NULL); /* `at`, UTC: the working hours stay in March */
  CHECK(strstr(r.out, ",2024-02-") == NULL && strstr(r.out, ",2024-04-") == NULL);
  CHECK(strstr(r.out, "Personne") == NULL);
  run_free(&r);

  const char *bad[] = {"export", "--format", "xml", NULL};
  audit(&f, bad, &r);
  CHECK_EQ(r.status, 2);
  run_free(&r);
  afx_free(&f);
}

TEST_T(audit, report_recomputed_from_the_log, 60) {
  afx_t f;
  run_result_t r;
  afx_init(&f, 1);
  sel_t s = {&f, f.n, 0, 0};
  psl_proj_t *p = fold_ref(&s);
  psl_report_t rep;
  psl_buf_t md, json;
  CHECK_OK(psl_proj_report(p, 2024, PSL_TERR_75, &rep));
  psl_buf_init(&md, 0);
  psl_buf_init(&json, 0);
  CHECK_OK(psl_report_md(&md, &rep));
  CHECK_OK(psl_report_json(&json, &rep));
  CHECK_OK(psl_buf_append(&json, "\n", 1));
  const char *a1[] = {"report", "--year", "2024", "--terr", "75", NULL};
  audit(&f, a1, &r);
  expect_out(&r, &md);
  run_free(&r);
  const char *a2[] = {"report", "--year", "2024", "--terr", "75", "--format", "json", NULL};
  audit(&f, a2, &r);
  expect_out(&r, &json);
  run_free(&r);
  psl_report_free(&rep);
  psl_buf_free(&md);
  psl_buf_free(&json);
  psl_proj_free(p);
  afx_free(&f);
}
