/*
 * log_verify.c — walk the hash chain of the whole log (tamper evidence, PROTOCOL-v1 "hash").
 *
 * The walk recomputes hash(n) = BLAKE2b-256(hash(n-1) ‖ canonical(n)) from hash(0) = zeros
 * over `events` in seq order, using the recomputed previous link (never the stored one), so
 * the first seq reported is the first record whose bytes changed, even if a forger rewrote
 * every stored hash after it; the head's hash in `meta` then catches a rewritten tail.
 *
 * It reads in transactions of VERIFY_TXN_EVENTS events and begins a new one from the next
 * seq: the log is append-only, so the snapshots agree on every seq up to the head the walk
 * started from, and no read transaction lasts long enough to make the file grow.
 */
#include "log_int.h"

#include <string.h>

/* Events per read transaction: ~0.1 s of work at the verify rate here, short enough for
 * LMDB's page reuse, long enough that beginning transactions costs nothing measurable. */
#define VERIFY_TXN_EVENTS 100000u

typedef struct {
  uint64_t next;                /* the next seq expected */
  uint8_t prev[PSL_HASH_BYTES]; /* recomputed hash(next - 1) */
  uint64_t head;                /* the head the walk verifies up to */
  uint8_t head_hash[PSL_HASH_BYTES];
} walk_t;

static int bad(psl_verify_report_t *rep, uint64_t seq, const char *why) {
  rep->bad_seq = seq;
  rep->why = why;
  return PSL_ECORRUPT;
}

/* Check one record; advance the walk. */
static int check_record(walk_t *w, const MDB_val *k, const MDB_val *v, psl_verify_report_t *rep) {
  if (k->mv_size != PSL__SEQ_BYTES || psl__be64_get(k->mv_data) != w->next)
    return bad(rep, w->next, "gap in seq");
  if (v->mv_size <= PSL__REC_HASH)
    return bad(rep, w->next, "undecodable record");
  const uint8_t *rec = v->mv_data;
  size_t len = v->mv_size - PSL__REC_HASH;
  uint8_t h[PSL_HASH_BYTES];
  psl_chain_hash(w->prev, rec + PSL__REC_HASH, len, h);
  if (memcmp(h, rec, PSL_HASH_BYTES) != 0)
    return bad(rep, w->next, "hash mismatch");
  psl_event_t ev;
  if (psl_event_decode_stored(rec + PSL__REC_HASH, len, &ev, NULL) != 0)
    return bad(rep, w->next, "undecodable record");
  if (ev.seq != w->next)
    return bad(rep, w->next, "seq mismatch");
  memcpy(w->prev, h, PSL_HASH_BYTES);
  w->next++;
  return 0;
}

/* The first transaction: the head to verify up to, and nothing stored past it. */
static int walk_start(psl_log_t *log, MDB_txn *txn, walk_t *w, psl_verify_report_t *rep) {
  int rc = psl__log_meta_head(log, txn, &w->head, w->head_hash);
  if (rc)
    return psl_err_from_mdb(rc);
  MDB_cursor *c;
  if ((rc = mdb_cursor_open(txn, log->db_events, &c)) != 0)
    return psl_err_from_mdb(rc);
  MDB_val k, v;
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  mdb_cursor_close(c);
  if (rc == 0 && (k.mv_size != PSL__SEQ_BYTES || psl__be64_get(k.mv_data) > w->head))
    return bad(rep, w->head + 1, "event past the head");
  if (rc != 0 && rc != MDB_NOTFOUND)
    return psl_err_from_mdb(rc);
  return 0;
}

/* One transaction's share of the walk. */
static int walk_some(psl_log_t *log, MDB_txn *txn, walk_t *w, psl_verify_report_t *rep) {
  MDB_cursor *c;
  uint8_t kb[PSL__SEQ_BYTES];
  int rc = mdb_cursor_open(txn, log->db_events, &c), err = 0;
  if (rc)
    return psl_err_from_mdb(rc);
  psl__be64_put(kb, w->next);
  MDB_val k = {sizeof kb, kb}, v;
  uint64_t stop = w->next + VERIFY_TXN_EVENTS;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && w->next <= w->head &&
                                                      w->next < stop;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    if ((err = check_record(w, &k, &v, rep)) != 0)
      break;
  mdb_cursor_close(c);
  if (err)
    return err;
  if (rc == MDB_NOTFOUND && w->next <= w->head)
    return bad(rep, w->next, "gap in seq"); /* the head names an event that is not there */
  if (rc != 0 && rc != MDB_NOTFOUND)
    return psl_err_from_mdb(rc);
  return 0;
}

int psl_log_verify_report(psl_log_t *log, psl_verify_report_t *rep,
                          void (*progress)(void *arg, uint64_t seq, uint64_t head), void *arg) {
  walk_t w;
  MDB_txn *txn;
  int err = 0, rc;
  memset(&w, 0, sizeof w);
  memset(rep, 0, sizeof *rep);
  w.next = 1;
  for (int first = 1; err == 0 && (first || w.next <= w.head); first = 0) {
    if ((rc = psl__log_txn_begin(log, MDB_RDONLY, &txn)) != 0)
      return psl_err_from_mdb(rc);
    if (first)
      err = walk_start(log, txn, &w, rep);
    if (err == 0)
      err = walk_some(log, txn, &w, rep);
    psl__log_txn_end(log, txn, 0);
    if (err == 0 && progress)
      progress(arg, w.next - 1, w.head);
  }
  rep->head = w.head;
  if (err == 0 && memcmp(w.prev, w.head_hash, PSL_HASH_BYTES) != 0)
    err = bad(rep, w.head, "head hash mismatch");
  return err;
}

int psl_log_verify(psl_log_t *log, uint64_t *bad_seq,
                   void (*progress)(void *arg, uint64_t seq, uint64_t head), void *arg) {
  psl_verify_report_t rep;
  int err = psl_log_verify_report(log, &rep, progress, arg);
  if (bad_seq)
    *bad_seq = rep.bad_seq;
  return err;
}
