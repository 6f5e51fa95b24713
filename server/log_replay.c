/*
 * log_replay.c — the journal's records past LMDB's head, applied again inside a write
 * transaction: at open (after a crash, a kill -9 or a power cut, the answered events that the
 * writer's open transaction held), and by the writer when that transaction was lost (a
 * failed batch aborts it, a failed commit loses it: log_write.c).
 *
 * A record is stored exactly as it was answered: its seq, ver, rec and sealed pii are in its
 * canonical bytes, so nothing is decided again.  What is checked: the seqs follow the head
 * without a gap, each record decodes and carries its seq, its hash is the chain's, and its
 * id is new.  Anything else is PSL_ECORRUPT: the log refuses to open rather than guess.
 * Records at or below the head are already in LMDB and are skipped.
 */
#include "log_int.h"

#include <string.h>

typedef struct {
  psl_log_t *log;
  MDB_txn *txn;
  MDB_cursor *events, *ids;
  psl__bindex_t *bx;
  uint64_t head;
  uint8_t hash[PSL_HASH_BYTES];
  uint64_t replayed;
  int mdb_rc;
} replay_t;

static int fail(replay_t *r, int rc) {
  r->mdb_rc = rc;
  return psl__log_write_err(rc);
}

static int replay_record(void *arg, uint64_t seq, const uint8_t *rec, size_t len) {
  replay_t *r = arg;
  psl_event_t ev;
  uint8_t hash[PSL_HASH_BYTES];
  int rc;
  if (seq <= r->head)
    return 0;
  if (seq != r->head + 1 || len <= PSL__REC_HASH)
    return PSL_ECORRUPT;
  const uint8_t *canon = rec + PSL__REC_HASH;
  size_t clen = len - PSL__REC_HASH;
  if (psl_event_decode_stored(canon, clen, &ev, NULL) != 0 || ev.seq != seq)
    return PSL_ECORRUPT;
  psl_chain_hash(r->hash, canon, clen, hash);
  if (memcmp(hash, rec, PSL_HASH_BYTES) != 0)
    return PSL_ECORRUPT;
  memcpy(ev.hash, hash, PSL_HASH_BYTES);
  ev.has_hash = 1;

  uint8_t seqk[PSL__SEQ_BYTES], sv[2 * PSL__SEQ_BYTES];
  psl__be64_put(seqk, seq);
  MDB_val k = {PSL__SEQ_BYTES, seqk}, v = {len, (void *)rec};
  if ((rc = mdb_cursor_put(r->events, &k, &v, MDB_APPEND)) != 0)
    return rc == MDB_KEYEXIST ? PSL_ECORRUPT : fail(r, rc);
  psl__be64_put(sv, ev.seq);
  psl__be64_put(sv + PSL__SEQ_BYTES, ev.ver);
  MDB_val ik = {PSL_UUID_BYTES, ev.id}, iv = {sizeof sv, sv};
  if ((rc = mdb_cursor_put(r->ids, &ik, &iv, MDB_NOOVERWRITE)) != 0)
    return rc == MDB_KEYEXIST ? PSL_ECORRUPT : fail(r, rc);
  if ((rc = psl__bindex_add(r->bx, &ev, psl__stream_hash(ev.stream.ptr, ev.stream.len))) != 0)
    return rc;
  if (r->log->hooks.apply) {
    int err = r->log->hooks.apply(r->log->hooks.arg, r->txn, &ev);
    if (err == PSL_EUNAVAILABLE)
      return fail(r, MDB_MAP_FULL);
    if (err)
      return err < 0 ? err : PSL_EINTERNAL;
  }
  r->head = seq;
  memcpy(r->hash, hash, PSL_HASH_BYTES);
  r->replayed++;
  return 0;
}

int psl__log_replay(psl_log_t *log, MDB_txn *txn, int at_open, int *mdb_rc, uint64_t *head,
                    uint8_t hash[PSL_HASH_BYTES], uint64_t *replayed) {
  replay_t r;
  int rc, err;
  memset(&r, 0, sizeof r);
  r.log = log;
  r.txn = txn;
  *mdb_rc = 0;
  *replayed = 0;
  if ((rc = psl__log_meta_head(log, txn, &r.head, r.hash)) != 0)
    return psl_err_from_mdb(rc);
  uint64_t start = r.head;
  if ((err = psl__bindex_new(&r.bx)) != 0)
    return err;
  if ((rc = mdb_cursor_open(txn, log->db_events, &r.events)) != 0 ||
      (rc = mdb_cursor_open(txn, log->db_ids, &r.ids)) != 0) {
    err = fail(&r, rc);
    goto out;
  }
  if ((err = psl__journal_scan(log->journal, !at_open, replay_record, &r)) != 0)
    goto out;
  if (r.head == start)
    goto out;
  MDB_cursor *cs = NULL, *ct = NULL;
  if ((rc = mdb_cursor_open(txn, log->db_streams, &cs)) != 0 ||
      (rc = mdb_cursor_open(txn, log->db_terr, &ct)) != 0 ||
      (rc = psl__bindex_flush(r.bx, cs, ct)) != 0) {
    err = fail(&r, rc);
    goto out;
  }
  uint8_t hv[PSL__SEQ_BYTES + PSL_HASH_BYTES];
  psl__be64_put(hv, r.head);
  memcpy(hv + PSL__SEQ_BYTES, r.hash, PSL_HASH_BYTES);
  MDB_val k = {4, (void *)"head"}, v = {sizeof hv, hv};
  if ((rc = mdb_put(txn, log->db_meta, &k, &v, 0)) != 0) {
    err = fail(&r, rc);
    goto out;
  }
out:
  psl__bindex_free(r.bx); /* cursors end with the transaction */
  *mdb_rc = r.mdb_rc;
  *head = r.head;
  memcpy(hash, r.hash, PSL_HASH_BYTES);
  *replayed = r.replayed;
  return err;
}
