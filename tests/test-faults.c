/*
 * test-faults.c — the real passerelled under storage faults, and failing allocations in the
 * codec, domain and log paths (area `faults`).
 *
 * Disk faults come from tests/fault/faultfs.c, preloaded into the server: while a trigger
 * file exists, writes that would grow a file of the data folder fail with ENOSPC (a full
 * disk), or fdatasync/fsync fail with EIO.  The map cap comes from the hidden option
 * `passerelled --map-max BYTES`.  Each case holds PROTOCOL-v1's rule for `unavailable`:
 *
 *   - a push that cannot be made durable is answered `error` code `unavailable` (never
 *     `pushed`), and none of its events is stored;
 *   - GET /healthz answers 503 with a reason; /metrics still answers;
 *   - reads go on: a subscription from 0 delivers every acknowledged event;
 *   - the connection and the server stay up; when space returns (or the cap is raised),
 *     pushes are stored again and /healthz is 200 again;
 *   - nothing acknowledged is lost or changed, nothing is stored twice (the log is checked
 *     whole through a subscription, and a refused push pushed again is stored, not dup).
 *
 * A full map that can grow (no cap) must grow, whoever fills it: the projections write in the
 * log's transaction too, and rebuild themselves inside the log's open.
 *
 * Failing allocations: build/bin/psl-oom (tests/fault/oom.c) fails the n-th allocation, and
 * every one from the n-th, for every n, in the codec and domain paths and in the log's open,
 * append, read, verify and close; it checks the answers, the leaks and the log after each.
 */
#include "harness.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "psl_domain.h"
#include "psl_log.h"
#include "support/rel.h"

/* Events per push while filling, of about FILL_EVENT_BYTES each: 100 KiB a push, so that a
 * full disk or map is reached in a few dozen pushes. */
#define FILL_EVENTS 100
#define FILL_EVENT_BYTES 1000
/* Pushes tried before concluding the fault never showed: 64 MiB of events. */
#define FILL_MAX_PUSHES 640
/* The map cap of the map-full case, and the larger one it is raised to.  The log's own
 * databases and the projections share it; 4 MiB holds a few thousand events. */
#define MAP_SMALL "4194304"
#define MAP_LARGE "67108864"

/* psl_log_with_read_txn callback: the stored projections equal a rebuild, at the head. */
static int verify_projections(void *arg, MDB_txn *txn) {
  (void)arg;
  psl_projdb_t *db = NULL;
  psl_diag_t diag;
  CHECK_OK(psl_projdb_open(&db, mdb_txn_env(txn), txn));
  diag.msg[0] = '\0';
  int rc = psl_projdb_verify(db, txn, &diag);
  if (rc)
    psl_test_fail(__FILE__, __LINE__, "projections differ from a rebuild: %s", diag.msg);
  psl_projdb_free(db);
  return 0;
}

/* ---- The disk shim. */

static char trigger_path[PATH_MAX];

/* Preload the shim into servers started from now on, hurting the files of the data folder. */
static void shim_setup(rel_fx_t *f) {
  char so[PATH_MAX], hurt[PATH_MAX + 2];
  snprintf(so, sizeof so, "%s/../lib/libpsl-faultfs.so", psl_test_bindir());
  REL_REQUIRE(f, access(so, R_OK) == 0, "%s missing (make builds it)", so);
  snprintf(trigger_path, sizeof trigger_path, "%s/disk-trigger", psl_test_tmpdir());
  snprintf(hurt, sizeof hurt, "%s/", f->srv.dir);
  setenv("LD_PRELOAD", so, 1);
  setenv("PSL_FAULT_PATH", hurt, 1);
  setenv("PSL_FAULT_TRIGGER", trigger_path, 1);
  /* a sanitizer build of the server: the shim comes before the ASan runtime */
  const char *asan = getenv("ASAN_OPTIONS");
  char opts[1024];
  snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
           asan && *asan ? ":" : "");
  setenv("ASAN_OPTIONS", opts, 1);
}

static void shim_fault(rel_fx_t *f, char mode) {
  int fd = open(trigger_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REL_REQUIRE(f, fd >= 0 && write(fd, &mode, 1) == 1, "cannot write %s", trigger_path);
  close(fd);
}

static void shim_clear(void) { unlink(trigger_path); }

/* ---- The shared scenario. */

typedef struct {
  rel_model_t m;
  uint64_t push_id;
  evgen_t *refused;  /* the events of the push answered `unavailable` */
  size_t nrefused;
} fill_t;

/* Push FILL_EVENTS-event pushes until one is answered `error`; it must be `unavailable`. */
static void fill_until_unavailable(rel_fx_t *f, wsc_t *c, fill_t *st) {
  evgen_t *g = calloc(FILL_EVENTS, sizeof *g);
  tcli_result_t *res = calloc(FILL_EVENTS, sizeof *res);
  char code[32];
  REL_REQUIRE(f, g && res, "calloc");
  for (int i = 0; i < FILL_MAX_PUSHES; i++) {
    rel_gen(g, FILL_EVENTS, FILL_EVENT_BYTES);
    if (rel_push(f, c, ++st->push_id, g, FILL_EVENTS, res, code)) {
      REL_REQUIRE(f, strcmp(code, "unavailable") == 0,
                  "a push the log could not store was answered `%s`, not `unavailable`", code);
      st->refused = g;
      st->nrefused = FILL_EVENTS;
      free(res);
      return;
    }
    rel_require_stored(f, g, FILL_EVENTS, res, &st->m);
  }
  rel_fail(f, __FILE__, __LINE__, "%d pushes were stored; the fault never showed",
           FILL_MAX_PUSHES);
}

/* While the log cannot take writes: health says so, reads and the connection go on. */
static void while_unwritable(rel_fx_t *f, wsc_t *c, fill_t *st) {
  char body[512], code[32];
  tcli_result_t *res = calloc(st->nrefused, sizeof *res);
  REL_REQUIRE(f, res, "calloc");
  int status = rel_http_status(f, "/healthz", body, sizeof body);
  REL_REQUIRE(f, status == 503 && strlen(body) > 2, "/healthz while unwritable: %d \"%s\"",
              status, body);
  REL_REQUIRE(f, rel_http_status(f, "/metrics", NULL, 0) == 200, "/metrics while unwritable");
  /* the same connection: the same push is refused again, and the connection stays */
  REL_REQUIRE(f, rel_push(f, c, ++st->push_id, st->refused, st->nrefused, res, code) == 1 &&
                     strcmp(code, "unavailable") == 0,
              "a second push while unwritable: expected `unavailable`, got `%s`", code);
  /* reads go on: what is readable is what was acknowledged, nothing of the refused pushes
   * (the events acknowledged in the last ~10 ms before the fault are durable in the journal
   * and become readable when writes are back: after_recovery checks them) */
  uint64_t head = rel_check_log_readable(f, &st->m);
  REL_REQUIRE(f, head <= st->m.n, "while unwritable: head %llu, acknowledged %zu",
              (unsigned long long)head, st->m.n);
  REL_REQUIRE(f, srv_running(&f->srv), "the server died");
  free(res);
}

/* Writes are back: the refused push is stored (not dup: nothing of it was), health is ok. */
static void after_recovery(rel_fx_t *f, wsc_t *c, fill_t *st) {
  char code[32], body[512];
  tcli_result_t *res = calloc(st->nrefused, sizeof *res);
  REL_REQUIRE(f, res, "calloc");
  REL_REQUIRE(f, rel_push(f, c, ++st->push_id, st->refused, st->nrefused, res, code) == 0,
              "the refused push once writes are back: `%s`", code);
  rel_require_stored(f, st->refused, st->nrefused, res, &st->m);
  evgen_t g[10];
  tcli_result_t r2[10];
  rel_gen(g, 10, 0);
  REL_REQUIRE(f, rel_push(f, c, ++st->push_id, g, 10, r2, code) == 0, "a new push: `%s`", code);
  rel_require_stored(f, g, 10, r2, &st->m);
  int status = rel_http_status(f, "/healthz", body, sizeof body);
  REL_REQUIRE(f, status == 200, "/healthz after recovery: %d \"%s\"", status, body);
  uint64_t head = rel_check_log(f, &st->m);
  REL_REQUIRE(f, head == st->m.n, "after recovery: head %llu, acknowledged %zu",
              (unsigned long long)head, st->m.n);
  free(res);
}

static void disk_case(char mode) {
  rel_fx_t f;
  fill_t st;
  memset(&st, 0, sizeof st);
  rel_fx_init(&f);
  shim_setup(&f);
  rel_fx_start(&f);
  wsc_t *c = rel_open(&f);
  evgen_t g[20];
  tcli_result_t res[20];
  char code[32];
  rel_gen(g, 20, 0);
  REL_REQUIRE(&f, rel_push(&f, c, ++st.push_id, g, 20, res, code) == 0, "before: `%s`", code);
  rel_require_stored(&f, g, 20, res, &st.m);

  shim_fault(&f, mode);
  fill_until_unavailable(&f, c, &st);
  printf("  faults: unavailable after %zu events acknowledged\n", st.m.n);
  while_unwritable(&f, c, &st);
  shim_clear(); /* space returns */
  after_recovery(&f, c, &st);
  wsc_close(c);

  /* and the log is whole after a restart */
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  rel_fx_start(&f);
  REL_REQUIRE(&f, rel_check_log(&f, &st.m) == st.m.n, "after the restart");
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  free(st.refused);
  rel_model_free(&st.m);
}

TEST_T(faults, disk_full_unavailable_reads_go_on_recovers, 120) { disk_case('s'); }

TEST_T(faults, fsync_fails_unavailable_reads_go_on_recovers, 120) { disk_case('y'); }

TEST_T(faults, map_full_unavailable_reads_go_on_recovers, 120) {
  rel_fx_t f;
  fill_t st;
  memset(&st, 0, sizeof st);
  rel_fx_init(&f);
  f.srv.extra_args[0] = "--map-max";
  f.srv.extra_args[1] = MAP_SMALL;
  rel_fx_start(&f);
  wsc_t *c = rel_open(&f);
  fill_until_unavailable(&f, c, &st);
  printf("  faults: map of %s bytes full after %zu events acknowledged\n", MAP_SMALL, st.m.n);
  REL_REQUIRE(&f, st.m.n > 0, "the map was full before the first event");
  while_unwritable(&f, c, &st);
  wsc_close(c);
  /* the operator raises the cap: a restart with a larger map */
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  f.srv.extra_args[1] = MAP_LARGE;
  rel_fx_start(&f);
  c = rel_open(&f);
  after_recovery(&f, c, &st);
  wsc_close(c);
  REL_REQUIRE(&f, srv_stop(&f.srv, 0) == 0, "stop: %s", f.srv.err);
  free(st.refused);
  rel_model_free(&st.m);
}

/* ---- A full map that may grow must grow, also when the projections fill it. */

/* Referrals appended with the projection hooks from a 256 KiB map: seven doublings, each a
 * full map met by the log's puts or by the projections'. */
#define GROW_MAP_START (256u * 1024u)
#define GROW_EVENTS 20000
#define GROW_BATCH 500

TEST_T(faults, map_grows_when_projections_fill_it, 120) {
  /* The writer grows the map on MDB_MAP_FULL and runs the batch again.  A full map met by a
   * hook (the projections' own puts, in the same transaction) must be taken the same way,
   * not answered `unavailable`: with no cap set, a server must never stop taking writes at
   * its initial map size (found by the crash harness at 64 MiB). */
  psl_projdb_t *db = NULL;
  psl_log_opts_t o;
  psl_log_t *log = NULL;
  memset(&o, 0, sizeof o);
  o.map_size = GROW_MAP_START;
  o.hooks = psl_projection_hooks(&db);
  CHECK_OK(psl_log_open(&log, psl_test_tmpdir(), &o));
  evgen_t *g = calloc(GROW_BATCH, sizeof *g);
  psl_event_t *ev = calloc(GROW_BATCH, sizeof *ev);
  psl_push_result_t *res = calloc(GROW_BATCH, sizeof *res);
  CHECK(g && ev && res);
  for (int k = 0; k < GROW_EVENTS / GROW_BATCH; k++) {
    for (int i = 0; i < GROW_BATCH; i++) /* new participants: the projections write most */
      rel_gen(&g[i], 1, 0);
    for (int i = 0; i < GROW_BATCH; i++) {
      g[i].ev.by = psl_str("faults-cw");
      g[i].ev.dev = psl_str("faults-tablet");
      ev[i] = g[i].ev;
    }
    int rc = psl_log_append(log, ev, GROW_BATCH, res);
    if (rc)
      psl_test_fail(__FILE__, __LINE__, "append %d answered %s at head %llu (no map cap set)", k,
                    psl_err_name(rc), (unsigned long long)psl_log_head(log, NULL));
  }
  CHECK_EQ(psl_log_head(log, NULL), GROW_EVENTS);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
  psl_log_close(log);
  psl_projdb_free(db);
  db = NULL;
  /* the projections are whole: reopened read-only, equal to a rebuild */
  psl_log_opts_t ro;
  memset(&ro, 0, sizeof ro);
  ro.read_only = 1;
  CHECK_OK(psl_log_open(&log, psl_test_tmpdir(), &ro));
  CHECK_OK(psl_log_with_read_txn(log, verify_projections, NULL));
  psl_log_close(log);
  free(g);
  free(ev);
  free(res);
}

/* The projections rebuilt from seq 1 at open (after a change of their format, or when they
 * claim more than the log holds) rewrite as much as the file already holds, in the open's one
 * transaction: the open must grow the map for it, or the server would not start again. */
TEST_T(faults, projection_rebuild_at_open_grows_the_map, 120) {
  psl_projdb_t *db = NULL;
  psl_log_opts_t o;
  psl_log_t *log = NULL;
  char path[PATH_MAX];
  memset(&o, 0, sizeof o);
  o.map_size = GROW_MAP_START;
  o.hooks = psl_projection_hooks(&db);
  CHECK_OK(psl_log_open(&log, psl_test_tmpdir(), &o));
  evgen_t *g = calloc(GROW_BATCH, sizeof *g);
  psl_event_t *ev = calloc(GROW_BATCH, sizeof *ev);
  psl_push_result_t *res = calloc(GROW_BATCH, sizeof *res);
  CHECK(g && ev && res);
  for (int k = 0; k < GROW_EVENTS / GROW_BATCH; k++) {
    for (int i = 0; i < GROW_BATCH; i++) {
      rel_gen(&g[i], 1, 0);
      g[i].ev.by = psl_str("faults-cw");
      g[i].ev.dev = psl_str("faults-tablet");
      ev[i] = g[i].ev;
    }
    CHECK_OK(psl_log_append(log, ev, GROW_BATCH, res));
  }
  psl_log_close(log);
  psl_projdb_free(db);
  db = NULL;

  /* proj_seq past the head: the next open must rebuild the projections from seq 1 */
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  uint8_t seq[8] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  MDB_val k = {8, (void *)"proj_seq"}, v = {sizeof seq, seq};
  snprintf(path, sizeof path, "%s/log", psl_test_tmpdir());
  CHECK_OK(mdb_env_create(&env));
  CHECK_OK(mdb_env_set_maxdbs(env, 32));
  CHECK_OK(mdb_env_open(env, path, 0, 0600));
  CHECK_OK(mdb_txn_begin(env, NULL, 0, &txn));
  CHECK_OK(mdb_dbi_open(txn, "proj_meta", 0, &dbi));
  CHECK_OK(mdb_put(txn, dbi, &k, &v, 0));
  CHECK_OK(mdb_txn_commit(txn));
  mdb_env_close(env);

  /* reopened with the small map asked for: LMDB maps just what the file holds */
  int rc = psl_log_open(&log, psl_test_tmpdir(), &o);
  if (rc)
    psl_test_fail(__FILE__, __LINE__, "the open that rebuilds the projections: %s",
                  psl_err_name(rc));
  CHECK_EQ(psl_log_head(log, NULL), GROW_EVENTS);
  psl_log_close(log);
  psl_projdb_free(db);
  psl_log_opts_t ro;
  memset(&ro, 0, sizeof ro);
  ro.read_only = 1;
  CHECK_OK(psl_log_open(&log, psl_test_tmpdir(), &ro));
  CHECK_OK(psl_log_with_read_txn(log, verify_projections, NULL));
  psl_log_close(log);
  free(g);
  free(ev);
  free(res);
}

/* ---- Failing allocations. */

/* Run build/bin/psl-oom with args; its summary line into out.  The exit status. */
static int run_oom(const char *args, char *out, size_t outlen) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "'%s/psl-oom' %s", psl_test_bindir(), args);
  FILE *p = popen(cmd, "r");
  CHECK(p != NULL);
  out[0] = '\0';
  char line[1024];
  while (fgets(line, sizeof line, p))
    if (strncmp(line, "oom ", 4) == 0)
      snprintf(out, outlen, "%s", line);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The corpus files the codec case decodes (every frame type, a whole participant story). */
static void corpus_args(char *out, size_t outlen) {
  static const char *const files[] = {
      "frame/seed-hello",  "frame/seed-push",        "frame/seed-pushed",  "frame/seed-sub",
      "frame/seed-ack",    "frame/seed-unsub",       "frame/seed-welcome", "frame/seed-events",
      "frame/seed-error",  "frame/seed-caught_up",   "frame/seed-wire-1",  "frame/seed-story",
      "chunk/seed-story",  NULL};
  char root[PATH_MAX];
  struct stat st;
  snprintf(root, sizeof root, "tests/fuzz/corpus");
  if (stat(root, &st) != 0)
    snprintf(root, sizeof root, "%s/../../tests/fuzz/corpus", psl_test_bindir());
  size_t o = 0;
  out[0] = '\0';
  for (int i = 0; files[i] && o < outlen; i++)
    o += (size_t)snprintf(out + o, outlen - o, " '%s/%s'", root, files[i]);
}

TEST_T(faults, alloc_failures_codec_domain_answer_enomem, 120) {
  char args[8192], out[1024];
  long total = 0, runs = 0;
  snprintf(args, sizeof args, "codec");
  corpus_args(args + 5, sizeof args - 5);
  int rc = run_oom(args, out, sizeof out);
  printf("  %s", out);
  CHECK_EQ(rc, 0);
  CHECK(sscanf(out, "oom codec: %ld allocations, %ld runs", &total, &runs) == 2);
  CHECK(total > 50); /* the interposition works: the workload does allocate */
  CHECK_EQ(runs, 2 * total);
}

TEST_T(faults, alloc_failures_log_never_corrupt, 120) {
  char args[PATH_MAX + 16], out[1024], dir[PATH_MAX], cmd[PATH_MAX + 16];
  long total = 0, runs = 0;
  /* Two hundred durable commits: in memory (tmpfs) when there is one, since what is tested
   * is the allocations, and a busy disk's fsyncs would make it slow. */
  snprintf(dir, sizeof dir, "/dev/shm/psl-oom-XXXXXX");
  if (access("/dev/shm", W_OK) != 0 || !mkdtemp(dir))
    snprintf(dir, sizeof dir, "%s", psl_test_tmpdir());
  snprintf(args, sizeof args, "log '%s'", dir);
  int rc = run_oom(args, out, sizeof out);
  if (strcmp(dir, psl_test_tmpdir()) != 0) {
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_OK(system(cmd));
  }
  printf("  %s", out);
  CHECK_EQ(rc, 0);
  CHECK(sscanf(out, "oom log: %ld allocations, %ld runs", &total, &runs) == 2);
  CHECK(total > 20);
  CHECK_EQ(runs, 2 * total);
}
