/*
 * crash.h — the crash harness: the real passerelled under concurrent push load, killed with
 * SIGKILL at random moments, restarted, and checked.  tests/test-crash.c runs a few cycles in
 * `make test`; bench/crash-test.c runs 100 or more (`make crash-test`) and prints the figures
 * of docs/RELIABILITY.md.
 *
 * One cycle:
 *
 *   1. (first cycle) start the server on the data folder (srv.h);
 *   2. retry: push again, as they were, the pushes that were in flight at the last kill
 *      (sent, never answered).  A push is one request to the log, committed whole or not at
 *      all, so each must come back all `dup` with the seqs the log holds for its events, or
 *      all stored anew;
 *   3. load: `pushers` connections, each keeping `depth` pushes in flight.  Every push is
 *      self-contained (a new participant's `participant.referred`, expect 0, then 0..n
 *      interviews), so that any subset of pushes may survive a crash and the rest stay
 *      valid; one push in eight also carries an event answered stored earlier, which must
 *      be answered `dup` with its original seq and ver;
 *   4. SIGKILL after a random time in [min_load_ms, max_load_ms];
 *   5. restart the server, as an administrator would: its log applies the journal's answered
 *      records past LMDB's head before it serves (server/log_replay.c);
 *   6. check, before any push, by opening its log read-only beside it (psl_log.h):
 *        - the chain verifies (psl_log_verify: seqs 1..head gap-free, every hash);
 *        - every event ever answered stored is at the seq it was answered with, with the same
 *          id, ver and content (a fingerprint of stream, type, at, terr, data, and whether
 *          it has pii: pii is stored encrypted);
 *        - every stored event is one that was answered stored or was in flight at the kill;
 *        - the projections (when the server keeps them: domain/'s proj_* databases) are at
 *          the head and equal a rebuild from the log (psl_projdb_verify);
 *      and, during the run, no seq is ever answered for two different ids, no id is ever
 *      answered stored twice.
 *
 * Every failure stops the run with a message (ids as hex, never data or pii).
 */
#ifndef PSL_TESTS_CRASH_H
#define PSL_TESTS_CRASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct crash_s crash_t;

typedef struct {
  const char *bindir; /* holds passerelled */
  const char *dir;    /* the data folder (created) */
  int pushers;        /* connections pushing at once (0: 6) */
  int depth;          /* pushes in flight per connection (0: 4) */
  int max_events;     /* events per push: 1..max_events (0: 24) */
  int min_load_ms;    /* the kill comes this long after the load starts, at the least (0: 50) */
  int max_load_ms;    /* and at the most (0: 600) */
  uint64_t seed;      /* kill moments and push sizes (0: from the clock); printed */
} crash_opts_t;

typedef struct {
  int cycles;              /* kill -9 cycles done */
  uint64_t pushes;         /* pushes sent (load and retries) */
  uint64_t acked;          /* distinct events answered stored */
  uint64_t dup_checked;    /* `dup` answers checked against the original seq and ver */
  uint64_t inflight;       /* events in flight at a kill (sent, unanswered), all cycles */
  uint64_t inflight_kept;  /* of those, found stored after the restart (answered dup on retry) */
  uint64_t head;           /* the log's head at the last check */
  uint64_t lost;           /* acknowledged events missing or changed: must stay 0 */
  uint64_t proj_checks;    /* cycles whose projections were compared with a rebuild */
  int proj_absent;         /* 1 when the log holds no projections to compare */
  double kill_ms_min, kill_ms_max; /* the kill moments used */
  double check_s;          /* time spent checking */
  double elapsed_s;
  uint64_t seed;
} crash_stats_t;

/* 0, or PSL_E* with err. */
int crash_new(crash_t **out, const crash_opts_t *opts, char *err, size_t errlen);
/* One cycle (steps 1-5).  0, or PSL_E* with err describing the first broken guarantee. */
int crash_cycle(crash_t *c, char *err, size_t errlen);
/* Restart, retry what was in flight, stop gracefully (SIGTERM) and check once more. */
int crash_finish(crash_t *c, char *err, size_t errlen);
void crash_stats(const crash_t *c, crash_stats_t *st);
/* The server's log file (for failure messages). */
const char *crash_server_log(const crash_t *c);
void crash_free(crash_t *c);

#endif /* PSL_TESTS_CRASH_H */
