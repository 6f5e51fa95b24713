/*
 * test-journal.c — the log's journal (server/log_journal.c, log_replay.c, log_overlay.c):
 * an append is answered once its journal frame is fsync'd, and becomes readable when the
 * writer commits its open transaction.  Between the two, a crash must lose nothing.
 *
 * A crash is a child process that appends with a long visible_ms (so the open transaction
 * never commits) and reports what it was answered through a pipe; the parent kills it with
 * SIGKILL, then opens the folder as the restarted server would.
 */
#include "harness.h"
#include "psl_log.h"
#include "support/logev.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Long enough that no open transaction commits by age during a test. */
#define NEVER_MS 600000u
#define BATCHES 4
#define PER_BATCH 150

static const char *const TERRS[] = {"75", "93", "94", "77"};

static psl_log_t *open_log(const char *dir, unsigned visible_ms) {
  psl_log_opts_t o = {.visible_ms = visible_ms};
  psl_log_t *log = NULL;
  CHECK_OK(psl_log_open(&log, dir, &o));
  return log;
}

/* Append n events (ids from *idn, streams 0..6) with psl_log_append_durable; seqs out. */
static void append_durable(psl_log_t *log, uint64_t *idn, size_t n, uint64_t *seqs) {
  tev_t *t = calloc(n, sizeof *t);
  psl_event_t *evs = calloc(n, sizeof *evs);
  psl_push_result_t *res = calloc(n, sizeof *res);
  CHECK(t && evs && res);
  for (size_t i = 0; i < n; i++) {
    uint64_t id = ++*idn;
    tev_fill(&t[i], id, (int)(id % 7), TERRS[id % 4], PSL_EXPECT_ANY);
    evs[i] = t[i].ev;
  }
  CHECK_OK(psl_log_append_durable(log, evs, n, res));
  for (size_t i = 0; i < n; i++) {
    CHECK_EQ(res[i].err, 0);
    CHECK_EQ(res[i].dup, 0);
    seqs[i] = res[i].seq;
  }
  free(res);
  free(evs);
  free(t);
}

/* In a child: append `batches` batches durably (after `committed` events made readable and
 * committed), write every answered seq to fd, close it and wait for the parent's SIGKILL. */
static void crash_child(const char *dir, int fd, size_t committed, int batches) {
  psl_log_t *log = open_log(dir, NEVER_MS);
  uint64_t idn = 0, seqs[PER_BATCH];
  for (size_t done = 0; done < committed; done += PER_BATCH) {
    append_durable(log, &idn, PER_BATCH, seqs);
    if (write(fd, seqs, sizeof seqs) != (ssize_t)sizeof seqs)
      _exit(3);
  }
  if (committed)
    CHECK_OK(psl_log_flush(log));
  for (int b = 0; b < batches; b++) {
    append_durable(log, &idn, PER_BATCH, seqs);
    if (write(fd, seqs, sizeof seqs) != (ssize_t)sizeof seqs)
      _exit(3);
  }
  /* The parent kills it once the pipe closes: a crash from outside, as kill -9 is (no
   * psl_log_close, no exit handlers: the open transaction dies with the process, and
   * valgrind, which traces children, has nothing to report of it). */
  close(fd);
  for (;;)
    pause();
}

/* Run crash_child; return how many seqs it was answered (checked gap-free from 1). */
static uint64_t crash_after(const char *dir, size_t committed, int batches) {
  int p[2];
  CHECK_OK(pipe(p));
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    crash_child(dir, p[1], committed, batches);
  }
  close(p[1]);
  uint64_t seq, n = 0;
  while (read(p[0], &seq, sizeof seq) == (ssize_t)sizeof seq)
    CHECK_EQ(seq, ++n);
  close(p[0]);
  kill(pid, SIGKILL); /* it has answered everything it will: crash it */
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  return n;
}

static int count_record(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                        size_t len) {
  uint64_t *n = arg;
  psl_event_t ev;
  CHECK_OK(psl_event_decode_stored(canon, len, &ev, NULL));
  CHECK_EQ(ev.seq, seq);
  CHECK_EQ(seq, *n + 1);
  (*n)++;
  return 0;
}

/* Every event 1..head readable, in order, and the chain whole. */
static void check_readable(psl_log_t *log, uint64_t head) {
  uint64_t n = 0, last = 0;
  CHECK_EQ(psl_log_head(log, NULL), head);
  for (uint64_t after = 0;; after = last) {
    uint64_t before = n;
    CHECK_OK(psl_log_read(log, after, NULL, 0, 1000, count_record, &n, &last));
    if (n == before)
      break;
  }
  CHECK_EQ(n, head);
  CHECK_OK(psl_log_verify(log, NULL, NULL, NULL));
}

TEST(journal, answered_survive_a_crash) {
  const char *dir = psl_test_tmpdir();
  uint64_t answered = crash_after(dir, 0, BATCHES);
  CHECK_EQ(answered, BATCHES * PER_BATCH);
  /* A tool (read-only) sees LMDB as the crash left it, and the journal's answered events. */
  psl_log_opts_t ro = {.read_only = 1};
  psl_log_t *log = NULL;
  CHECK_OK(psl_log_open(&log, dir, &ro));
  uint64_t pending, last;
  CHECK_OK(psl_log_journal_pending(log, &pending, &last));
  CHECK_EQ(psl_log_head(log, NULL), 0);
  CHECK_EQ(pending, answered);
  CHECK_EQ(last, answered);
  psl_log_close(log);
  log = open_log(dir, 0);
  psl_log_stats_t st;
  psl_log_stats(log, &st);
  CHECK_EQ(st.replayed, answered);
  check_readable(log, answered);
  /* The same events again are dups with their original seqs, and a stream goes on from the
   * version the replay gave it. */
  uint64_t idn = 0;
  tev_t t[3];
  psl_event_t evs[3];
  psl_push_result_t res[3];
  for (int i = 0; i < 3; i++) {
    idn++;
    tev_fill(&t[i], idn, (int)(idn % 7), TERRS[idn % 4], PSL_EXPECT_ANY);
    evs[i] = t[i].ev;
  }
  CHECK_OK(psl_log_append(log, evs, 3, res));
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(res[i].dup, 1);
    CHECK_EQ(res[i].seq, (uint64_t)i + 1);
  }
  uint64_t ver = 0;
  CHECK_OK(psl_log_stream_version(log, t[0].stream, strlen(t[0].stream), &ver));
  tev_fill(&t[0], 1000000, 1, "75", (int64_t)ver);
  evs[0] = t[0].ev;
  CHECK_OK(psl_log_append(log, evs, 1, res));
  CHECK_EQ(res[0].err, 0);
  CHECK_EQ(res[0].seq, answered + 1);
  CHECK_EQ(res[0].ver, ver + 1);
  psl_log_close(log);
  /* Applied once: a second open finds nothing more to apply. */
  log = open_log(dir, 0);
  psl_log_stats(log, &st);
  CHECK_EQ(st.replayed, 0);
  check_readable(log, answered + 1);
  psl_log_close(log);
  CHECK_OK(psl_log_open(&log, dir, &ro));
  CHECK_OK(psl_log_journal_pending(log, &pending, &last));
  CHECK_EQ(pending, 0);
  psl_log_close(log);
}

/* A frame cut by the crash was never answered: the scan stops before it. */
TEST(journal, torn_frame_is_ignored) {
  const char *dir = psl_test_tmpdir();
  uint64_t answered = crash_after(dir, 0, 2);
  char path[512];
  snprintf(path, sizeof path, "%s/log/journal", dir);
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0);
  /* Walk the two frames (header: magic, gen, first seq, count, payload length at 20). */
  off_t off = 0;
  uint8_t hdr[32];
  for (int f = 0; f < 2; f++) {
    CHECK_EQ(pread(fd, hdr, sizeof hdr, off), (ssize_t)sizeof hdr);
    CHECK(memcmp(hdr, "PSLJ", 4) == 0);
    uint32_t plen = (uint32_t)hdr[20] << 24 | (uint32_t)hdr[21] << 16 | (uint32_t)hdr[22] << 8 |
                    hdr[23];
    off += 32 + (off_t)plen + 16;
  }
  /* What a third frame cut short looks like: its header and half of a payload, no sum. */
  CHECK_EQ(pread(fd, hdr, sizeof hdr, 0), (ssize_t)sizeof hdr);
  uint64_t next = answered + 1;
  for (int i = 0; i < 8; i++)
    hdr[8 + i] = (uint8_t)(next >> (8 * (7 - i)));
  CHECK_EQ(pwrite(fd, hdr, sizeof hdr, off), (ssize_t)sizeof hdr);
  uint8_t junk[300];
  memset(junk, 0x5a, sizeof junk);
  CHECK_EQ(pwrite(fd, junk, sizeof junk, off + 32), (ssize_t)sizeof junk);
  close(fd);

  psl_log_t *log = open_log(dir, 0);
  check_readable(log, answered);
  psl_log_close(log);
}

/* Events committed to LMDB before the crash are not applied twice, although the frames of
 * that earlier round may still lie in the file past the new round's. */
TEST(journal, committed_round_is_not_replayed) {
  const char *dir = psl_test_tmpdir();
  uint64_t answered = crash_after(dir, 3 * PER_BATCH, 1);
  CHECK_EQ(answered, 4 * PER_BATCH);
  psl_log_t *log = open_log(dir, 0);
  psl_log_stats_t st;
  psl_log_stats(log, &st);
  CHECK_EQ(st.replayed, PER_BATCH);
  check_readable(log, answered);
  psl_log_close(log);
}

static uint64_t last_seq_seen;

static int last_record(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                       size_t len) {
  psl_event_t ev;
  (void)arg;
  CHECK_OK(psl_event_decode_stored(canon, len, &ev, NULL));
  CHECK_EQ(ev.seq, seq);
  last_seq_seen = seq;
  return 0;
}

/* Answered, not yet readable: the stream's version and last event already count (the
 * server checks the next push of a caseworker against them), the range reads do not. */
TEST(journal, answered_versions_before_commit) {
  const char *dir = psl_test_tmpdir();
  psl_log_t *log = open_log(dir, NEVER_MS);
  tev_t t;
  psl_event_t ev;
  psl_push_result_t res;
  tev_fill(&t, 1, 5, "93", 0); /* expect 0: a new stream */
  ev = t.ev;
  CHECK_OK(psl_log_append_durable(log, &ev, 1, &res));
  CHECK_EQ(res.err, 0);
  CHECK_EQ(res.ver, 1);
  CHECK_EQ(psl_log_head(log, NULL), 0);
  uint64_t ver = 0;
  CHECK_OK(psl_log_stream_version(log, t.stream, strlen(t.stream), &ver));
  CHECK_EQ(ver, 1);
  last_seq_seen = 0;
  CHECK_OK(psl_log_stream_last(log, t.stream, strlen(t.stream), last_record, NULL));
  CHECK_EQ(last_seq_seen, 1);
  tev_fill(&t, 2, 5, "93", 1); /* expect 1: follows the answered one */
  ev = t.ev;
  CHECK_OK(psl_log_append_durable(log, &ev, 1, &res));
  CHECK_EQ(res.err, 0);
  CHECK_EQ(res.ver, 2);
  CHECK_OK(psl_log_flush(log));
  check_readable(log, 2);
  CHECK_OK(psl_log_stream_version(log, t.stream, strlen(t.stream), &ver));
  CHECK_EQ(ver, 2);
  psl_log_close(log);
}

/* A hook that fails on one seq: the batch holding it fails, and with it the open
 * transaction, which also held an answered batch.  That one must come back. */
typedef struct {
  uint64_t fail_seq;
  MDB_dbi dbi;
} failing_t;

static int fh_open(void *arg, MDB_env *env, MDB_txn *txn) {
  failing_t *f = arg;
  (void)env;
  return mdb_dbi_open(txn, "test_hook", MDB_CREATE, &f->dbi) ? PSL_EINTERNAL : 0;
}

static int fh_apply(void *arg, MDB_txn *txn, const psl_event_t *ev) {
  failing_t *f = arg;
  if (ev->seq == f->fail_seq) {
    f->fail_seq = 0; /* once */
    return PSL_EINTERNAL;
  }
  uint8_t k[8];
  memcpy(k, &ev->seq, sizeof k);
  MDB_val kv = {sizeof k, k}, vv = {0, NULL};
  return mdb_put(txn, f->dbi, &kv, &vv, 0) ? PSL_EINTERNAL : 0;
}

static int fh_count(void *arg, MDB_txn *txn) {
  failing_t *f = arg;
  MDB_stat st;
  if (mdb_stat(txn, f->dbi, &st))
    return -1;
  return (int)st.ms_entries;
}

TEST(journal, failed_batch_replays_the_answered) {
  const char *dir = psl_test_tmpdir();
  failing_t f = {.fail_seq = PER_BATCH + 10};
  psl_log_opts_t o = {.visible_ms = NEVER_MS,
                      .hooks = {.open = fh_open, .apply = fh_apply, .arg = &f}};
  psl_log_t *log = NULL;
  CHECK_OK(psl_log_open(&log, dir, &o));
  uint64_t idn = 0, seqs[PER_BATCH];
  append_durable(log, &idn, PER_BATCH, seqs); /* answered, in the open transaction */
  tev_t t[PER_BATCH];
  psl_event_t evs[PER_BATCH];
  psl_push_result_t res[PER_BATCH];
  for (size_t i = 0; i < PER_BATCH; i++) {
    idn++;
    tev_fill(&t[i], idn, (int)(idn % 7), "94", PSL_EXPECT_ANY);
    evs[i] = t[i].ev;
  }
  CHECK_EQ(psl_log_append_durable(log, evs, PER_BATCH, res), PSL_EINTERNAL);
  CHECK_EQ(evs[0].seq, 0);
  /* The versions of the answered batch still hold while it waits for its replay. */
  uint64_t ver = 0;
  CHECK_OK(psl_log_stream_version(log, t[0].stream, strlen(t[0].stream), &ver));
  CHECK(ver > 0);
  CHECK_OK(psl_log_append(log, evs, PER_BATCH, res)); /* the failed batch, again */
  CHECK_EQ(res[0].seq, PER_BATCH + 1);
  check_readable(log, 2 * PER_BATCH);
  CHECK_EQ(psl_log_with_read_txn(log, fh_count, &f), 2 * PER_BATCH);
  psl_log_close(log);
}
