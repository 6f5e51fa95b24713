/*
 * fuzz-chunk.c — the client library's application of an `events` chunk from a hostile (or
 * broken) server: decode the frame, then, in one write transaction of a real client store
 * (client-lib/store.c in a temporary folder), put each event in the replica and fold it into
 * the projections, as client-lib/sync.c's apply_chunk does (seq checks, replica put, "already
 * there" never folded twice, domain apply).
 *
 * apply_chunk itself is static in sync.c (it takes the whole sync session); this target runs
 * the same steps through the internal functions it calls (client_int.h).  The transaction is
 * aborted after each input: every run starts from the same empty store, and no fsync is paid.
 *
 * Properties checked beyond memory safety: applying the same chunk again in the same
 * transaction stores nothing and folds nothing (every event it stored is "already there").
 */
#include "fuzz.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client_int.h"
#include "psl_proto.h"

/* Replica cap of the fuzzing store: far above what one input can hold. */
#define FUZZ_REPLICA_MAX (16u * 1024u * 1024u)

static psl__cstore_t store;
static psl_buf_t scratch;
static char dir[64];
static int ready;

static void teardown(void) {
  char cmd[128];
  psl__store_close(&store);
  psl_buf_free(&scratch);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "fuzz-chunk: could not remove %s\n", dir);
}

static int setup(void) {
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(dir, sizeof dir, "%s/psl-fuzz-chunk-XXXXXX", base);
  if (!mkdtemp(dir))
    return -1;
  if (psl__store_open(&store, dir, FUZZ_REPLICA_MAX) != 0)
    return -1;
  psl_buf_init(&scratch, 0);
  atexit(teardown);
  ready = 1;
  return 0;
}

/* sync.c's apply_chunk, without the checkpoint and byte accounting.  stored[i] is set for
 * the events put in the replica by this pass. */
static int apply(MDB_txn *txn, const psl_msg_t *m, uint8_t *stored) {
  const psl_event_t *ev = m->u.events.events;
  for (size_t i = 0; i < m->u.events.n; i++) {
    size_t len = 0;
    stored[i] = 0;
    if (ev[i].seq == 0 || ev[i].seq > m->u.events.last)
      return PSL_EINVALID;
    int rc = psl__replica_put(&store, txn, &ev[i], &scratch, &len);
    if (rc == PSL_ECONFLICT)
      continue;
    if (rc)
      return rc;
    stored[i] = 1;
    rc = psl__domain_apply(&store, txn, &ev[i]);
    if (rc)
      return rc;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  psl_msg_t m;
  MDB_txn *txn;
  if (!ready && setup() != 0) {
    fprintf(stderr, "fuzz-chunk: cannot open a client store\n");
    abort();
  }
  if (psl_msg_decode(data, size, &m, NULL) != 0)
    return 0;
  if (m.t != PSL_MSG_EVENTS || m.u.events.n == 0) {
    psl_msg_free(&m);
    return 0;
  }
  uint8_t *stored = calloc(m.u.events.n, 2);
  FUZZ_CHECK(stored != NULL);
  FUZZ_CHECK(psl__store_wr(&store, &txn) == 0);
  if (apply(txn, &m, stored) == 0) {
    uint8_t *again = stored + m.u.events.n;
    FUZZ_CHECK(apply(txn, &m, again) == 0);
    for (size_t i = 0; i < m.u.events.n; i++)
      FUZZ_CHECK(!again[i]);
  }
  mdb_txn_abort(txn);
  free(stored);
  psl_msg_free(&m);
  return 0;
}
