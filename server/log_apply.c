/*
 * log_apply.c — what one batch writes: the events of a group of requests, applied inside the
 * writer's open LMDB write transaction, each stored record also added to the journal's frame
 * (the format is in log.c and log_journal.c; the group commit and the journal's fsync in
 * log_write.c).
 *
 * One event:
 *
 *   refuse invalid shapes (stream/terr empty or too long, a 0x00 in the stream)  → invalid
 *   current ver of the stream (this batch's entries, the cache below, else `streams`)
 *   expect check fails → `ids` holds the id ? dup : conflict (current ver)
 *   stamp seq = head+1, ver = current+1, rec
 *   sealer.seal (psl_log_sealer_t: the server encrypts pii) → refused ? (dup ? dup : refusal)
 *   encode canonical, with the sealed pii, after a 32-byte gap
 *   canonical > PSL_MAX_EVENT → `ids` holds the id ? dup : invalid "event too big"
 *   ids put NOOVERWRITE seq‖ver → the id exists ? dup (LMDB sees this batch's own writes)
 *   gather the streams and terr entries (log_index.c: written in runs at the end of the batch)
 *   the record: hash = chain(prev, canonical) into the gap; events put APPEND; hooks.apply
 *
 * A dup is answered before a conflict or a refusal: an event already stored is stored,
 * whatever the retry carries.
 *
 * The record step runs in seq order but may lag: in a batch of PIPELINE_MIN events or more
 * the chain hasher thread (log_chain.c) hashes records while this thread indexes the next
 * events, and the records are stored as their hashes come back.  hooks.apply is called in
 * that step, so in seq order, inside the transaction.
 *
 * The head (seq, hash) lives in the batch until it succeeds; after a failure the caller
 * aborts the transaction and empties the stream cache, which may hold versions that were
 * never stored.
 */
#include "log_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Events in a batch from which hashing moves to the chain hasher: below it the hand-off
 * (a wake-up, ~10 µs) costs more than the ~0.5 µs per event it saves. */
#define PIPELINE_MIN 64u

/* The stream-version cache: stream → current version, kept across batches.  It saves the
 * `streams` lookup (a B-tree search and a count) for the streams a busy log writes again and
 * again: a caseworker's participants.  Direct-mapped and bounded: STREAM_CACHE_SLOTS slots of
 * ~150 bytes, 600 KiB; a slot taken by another stream only costs a lookup.  Versions given in
 * the batch in progress are answered first by the batch's own entries (log_index.c), so a
 * slot lost in mid-batch never hides them. */
#define STREAM_CACHE_SLOTS 4096u /* a power of 2: several times the participants of a year */

typedef struct {
  uint64_t h; /* hash of the name */
  uint64_t ver;
  uint8_t len; /* 0: empty slot */
  char name[PSL_MAX_STREAM];
} stream_slot_t;

_Static_assert(PSL_MAX_STREAM <= UINT8_MAX, "stream_slot_t.len is one byte");

struct psl__writer_s {
  stream_slot_t cache[STREAM_CACHE_SLOTS];
  uint64_t head; /* the head the cache reflects (0 with an empty cache) */
  psl_buf_t buf; /* the record of an inline (unpipelined) event: no allocation per event */
  psl_buf_t seal; /* the sealer's output for the event being encoded */
  psl__chain_t *chain;
  psl__bindex_t *bx;
};

typedef struct {
  psl_log_t *log;
  psl__writer_t *w;
  MDB_txn *txn;
  MDB_cursor *c_events, *c_ids, *c_streams, *c_terr;
  uint64_t next_seq;             /* the seq the next stored event gets */
  uint64_t seq;                  /* the last record stored */
  uint8_t hash[PSL_HASH_BYTES];  /* its hash */
  int64_t rec;
  int pipelined;
  int mdb_rc; /* the LMDB code that failed the batch (MDB_MAP_FULL: grow and retry) */
} batch_t;

static const char MSG_TOO_BIG[] = "event too big";
static const char MSG_STREAM[] = "stream: empty, too long or holding a 0x00 byte";
static const char MSG_TERR[] = "terr: empty or too long";
static const char MSG_EXPECT[] = "expect: must be -1, 0 or a version";
static const char MSG_ENCODE[] = "event cannot be encoded";
static const char MSG_SEAL[] = "pii: refused";

int psl__writer_new(psl__writer_t **out) {
  psl__writer_t *w = calloc(1, sizeof *w);
  int err;
  *out = NULL;
  if (!w)
    return PSL_ENOMEM;
  psl_buf_init(&w->buf, 0);
  psl_buf_init(&w->seal, 0);
  if ((err = psl__bindex_new(&w->bx)) != 0)
    goto fail_bindex;
  if ((err = psl__chain_start(&w->chain)) != 0)
    goto fail_chain;
  *out = w;
  return 0;

fail_chain:
  psl__bindex_free(w->bx);
fail_bindex:
  free(w);
  return err;
}

void psl__writer_free(psl__writer_t *w) {
  if (!w)
    return;
  psl__chain_stop(w->chain);
  psl__bindex_free(w->bx);
  psl_buf_free(&w->buf);
  psl_buf_free(&w->seal);
  free(w);
}

void psl__writer_forget(psl__writer_t *w) {
  for (size_t i = 0; i < STREAM_CACHE_SLOTS; i++)
    w->cache[i].len = 0;
  w->head = 0;
}

uint64_t psl__stream_hash(const char *p, size_t n) { /* FNV-1a, 64 bits */
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
  return h;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Record an LMDB failure of the batch and return its PSL_E*. */
static int batch_fail(batch_t *b, int rc) {
  b->mdb_rc = rc;
  return psl__log_write_err(rc);
}

static void refuse(psl_push_result_t *res, int err, const char *msg) {
  res->err = err;
  res->msg.ptr = msg;
  res->msg.len = strlen(msg);
}

static void unstamp_one(psl_event_t *ev) {
  ev->seq = ev->ver = 0;
  ev->rec = 0;
  ev->has_hash = 0;
}

/* A dup: the original seq and ver from an `ids` value. */
static int answer_dup(batch_t *b, const MDB_val *v, psl_push_result_t *res) {
  if (v->mv_size != 2 * PSL__SEQ_BYTES)
    return batch_fail(b, MDB_CORRUPTED);
  res->err = 0;
  res->dup = 1;
  res->seq = psl__be64_get(v->mv_data);
  res->ver = psl__be64_get((const uint8_t *)v->mv_data + PSL__SEQ_BYTES);
  return 1;
}

/* The event's id is already stored: answer dup.  1 if it was a dup, 0 if not, or a negative
 * PSL_E* after batch_fail. */
static int answer_if_dup(batch_t *b, const psl_event_t *ev, psl_push_result_t *res) {
  MDB_val k = {PSL_UUID_BYTES, (void *)ev->id}, v;
  int rc = mdb_get(b->txn, b->log->db_ids, &k, &v);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != 0)
    return batch_fail(b, rc);
  return answer_dup(b, &v, res);
}

/* Why the event's shape cannot be stored, or NULL. */
static const char *shape_error(const psl_event_t *ev) {
  if (ev->stream.len == 0 || ev->stream.len > PSL_MAX_STREAM ||
      memchr(ev->stream.ptr, 0, ev->stream.len))
    return MSG_STREAM;
  if (ev->terr.len == 0 || ev->terr.len > PSL_MAX_TERR)
    return MSG_TERR;
  if (ev->expect < PSL_EXPECT_ANY)
    return MSG_EXPECT;
  return NULL;
}

/* Store one record (32-byte gap, now the hash, ‖ canonical) of a stamped event. */
static int put_record(batch_t *b, psl_event_t *ev, const psl_buf_t *r) {
  psl_log_t *log = b->log;
  uint8_t *rec = psl_buf_data(r), seqk[PSL__SEQ_BYTES];
  psl__be64_put(seqk, ev->seq);
  MDB_val k = {PSL__SEQ_BYTES, seqk}, v = {r->len, rec};
  int rc = mdb_cursor_put(b->c_events, &k, &v, MDB_APPEND);
  if (rc)
    return batch_fail(b, rc == MDB_KEYEXIST ? MDB_CORRUPTED : rc);
  int err = psl__journal_add(log->journal, ev->seq, rec, r->len);
  if (err)
    return err;
  memcpy(b->hash, rec, PSL_HASH_BYTES);
  memcpy(ev->hash, rec, PSL_HASH_BYTES);
  ev->has_hash = 1;
  b->seq = ev->seq;
  if (log->hooks.apply) {
    err = log->hooks.apply(log->hooks.arg, b->txn, ev);
    /* Inside a write transaction LMDB's only "unavailable" is a full map (disk writes come
     * at the commit): grow and run the batch again, as for the log's own puts. */
    if (err == PSL_EUNAVAILABLE)
      return batch_fail(b, MDB_MAP_FULL);
    if (err)
      return err < 0 ? err : PSL_EINTERNAL;
  }
  return 0;
}

/* Store the records the hasher has finished (all of them when `wait`). */
static int drain(batch_t *b, int wait) {
  psl_buf_t *r;
  void *tag;
  while ((r = psl__chain_next(b->w->chain, wait, &tag)) != NULL) {
    int err = put_record(b, tag, r);
    if (err)
      return err;
  }
  return 0;
}

/* The record buffer for the next stored event: a ring slot when pipelined (waiting for the
 * hasher if the ring is full), else the writer's own. */
static int record_buffer(batch_t *b, psl_buf_t **out) {
  if (!b->pipelined) {
    *out = &b->w->buf;
    return 0;
  }
  while (psl__chain_full(b->w->chain)) {
    psl_buf_t *r;
    void *tag;
    if ((r = psl__chain_next(b->w->chain, 1, &tag)) != NULL) {
      int err = put_record(b, tag, r);
      if (err)
        return err;
    }
  }
  *out = psl__chain_slot(b->w->chain);
  return 0;
}

/* The stream's current version: as this batch left it (its index entries are not in LMDB
 * yet), else as the cache remembers it, else from `streams`. */
static int stream_version(batch_t *b, const psl_event_t *ev, uint64_t h, stream_slot_t **slotp,
                          uint64_t *cur) {
  stream_slot_t *slot = &b->w->cache[h & (STREAM_CACHE_SLOTS - 1)];
  *slotp = slot;
  if (psl__bindex_stream_ver(b->w->bx, ev->stream.ptr, ev->stream.len, h, cur))
    return 0;
  if (slot->len == ev->stream.len && slot->h == h &&
      memcmp(slot->name, ev->stream.ptr, ev->stream.len) == 0) {
    *cur = slot->ver;
    return 0;
  }
  int rc = psl__stream_version(b->c_streams, ev->stream.ptr, ev->stream.len, cur);
  if (rc)
    return batch_fail(b, rc);
  slot->h = h;
  slot->ver = *cur;
  slot->len = (uint8_t)ev->stream.len;
  memcpy(slot->name, ev->stream.ptr, ev->stream.len);
  return 0;
}

/* What is stored of a stamped event: ev itself, or *copy with the pii the sealer gave.  0,
 * PSL_EFORBIDDEN / PSL_EINVALID with *why (refuse this event), or a PSL_E* failing the batch. */
static int seal_event(batch_t *b, const psl_event_t *ev, psl_event_t *copy,
                      const psl_event_t **stored, const char **why) {
  const psl_log_sealer_t *s = &b->log->sealer;
  *stored = ev;
  if (!s->seal)
    return 0;
  psl_buf_reset(&b->w->seal);
  *why = NULL;
  int err = s->seal(s->arg, ev, &b->w->seal, why);
  if (err)
    return err;
  if (b->w->seal.len) {
    *copy = *ev;
    copy->pii.ptr = psl_buf_data(&b->w->seal);
    copy->pii.len = b->w->seal.len;
    *stored = copy;
  }
  return 0;
}

/* The record of a stamped event: 32 free bytes ‖ canonical, in *out.  0; 1 when the event
 * was answered instead (dup, or refused as too big, not encodable or by the sealer); or a
 * PSL_E* failing the batch. */
static int encode_record(batch_t *b, psl_event_t *ev, psl_push_result_t *res, psl_buf_t **out) {
  psl_buf_t *r;
  psl_event_t copy;
  const psl_event_t *stored;
  const char *why = NULL;
  int err, rc;
  if ((err = seal_event(b, ev, &copy, &stored, &why)) != 0) {
    if (err != PSL_EFORBIDDEN && err != PSL_EINVALID)
      return err < 0 ? err : PSL_EINTERNAL;
    unstamp_one(ev);
    if ((rc = answer_if_dup(b, ev, res)) != 0)
      return rc;
    refuse(res, err, why ? why : MSG_SEAL);
    return 1;
  }
  if ((err = record_buffer(b, &r)) != 0)
    return err;
  psl_buf_reset(r);
  if ((err = psl_buf_reserve(r, PSL__REC_HASH)) != 0)
    return err;
  r->len = PSL__REC_HASH; /* the hash goes here once the canonical bytes are known */
  err = psl_event_encode_canonical(r, stored);
  if (err == PSL_ENOMEM)
    return err;
  if (err == 0 && r->len - PSL__REC_HASH <= PSL_MAX_EVENT) {
    *out = r;
    return 0;
  }
  unstamp_one(ev);
  if ((rc = answer_if_dup(b, ev, res)) != 0)
    return rc;
  refuse(res, PSL_EINVALID, err && err != PSL_ETOO_BIG ? MSG_ENCODE : MSG_TOO_BIG);
  return 1;
}

/* Apply one event.  Per-event refusals go to res and return 0; a negative return fails the
 * whole batch. */
static int apply_event(batch_t *b, psl_event_t *ev, psl_push_result_t *res) {
  stream_slot_t *slot;
  psl_buf_t *r;
  uint64_t cur;
  int rc, err;

  memset(res, 0, sizeof *res);
  unstamp_one(ev);
  const char *bad = shape_error(ev);
  if (bad) {
    if ((err = answer_if_dup(b, ev, res)) != 0)
      return err < 0 ? err : 0;
    refuse(res, PSL_EINVALID, bad);
    return 0;
  }
  uint64_t h = psl__stream_hash(ev->stream.ptr, ev->stream.len);
  if ((err = stream_version(b, ev, h, &slot, &cur)) != 0)
    return err;
  if ((ev->expect == 0 && cur != 0) || (ev->expect > 0 && (uint64_t)ev->expect != cur)) {
    if ((err = answer_if_dup(b, ev, res)) != 0)
      return err < 0 ? err : 0;
    res->err = PSL_ECONFLICT;
    res->ver = cur;
    return 0;
  }

  ev->seq = b->next_seq;
  ev->ver = cur + 1;
  ev->rec = b->rec;
  if ((err = encode_record(b, ev, res, &r)) != 0)
    return err < 0 ? err : 0;

  uint8_t sv[2 * PSL__SEQ_BYTES];
  psl__be64_put(sv, ev->seq);
  psl__be64_put(sv + PSL__SEQ_BYTES, ev->ver);
  MDB_val k = {PSL_UUID_BYTES, ev->id}, v = {sizeof sv, sv};
  rc = mdb_cursor_put(b->c_ids, &k, &v, MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST) {
    unstamp_one(ev);
    err = answer_dup(b, &v, res);
    return err < 0 ? err : 0;
  }
  if (rc != 0)
    return batch_fail(b, rc);
  if ((err = psl__bindex_add(b->w->bx, ev, h)) != 0)
    return err;
  b->next_seq++;
  /* The cache keeps a stream's slot as long as no other stream hashes to it; the batch's
   * own entries answer for the streams it touched whatever happens to their slots. */
  if (slot->len == ev->stream.len && slot->h == h &&
      memcmp(slot->name, ev->stream.ptr, ev->stream.len) == 0)
    slot->ver = ev->ver;
  res->seq = ev->seq;
  res->ver = ev->ver;

  if (b->pipelined) {
    psl__chain_publish(b->w->chain, ev);
    return drain(b, 0);
  }
  uint8_t *rec = psl_buf_data(r);
  psl_chain_hash(b->hash, rec + PSL__REC_HASH, r->len - PSL__REC_HASH, rec);
  return put_record(b, ev, r);
}

static int open_cursors(batch_t *b) {
  psl_log_t *log = b->log;
  int rc;
  if ((rc = mdb_cursor_open(b->txn, log->db_events, &b->c_events)) != 0 ||
      (rc = mdb_cursor_open(b->txn, log->db_ids, &b->c_ids)) != 0 ||
      (rc = mdb_cursor_open(b->txn, log->db_streams, &b->c_streams)) != 0 ||
      (rc = mdb_cursor_open(b->txn, log->db_terr, &b->c_terr)) != 0)
    return batch_fail(b, rc);
  return 0;
}

/* Everything of the batch inside the open transaction, up to the meta head. */
static int apply_all(batch_t *b, psl_append_req_t *first) {
  psl_log_t *log = b->log;
  int rc, err;
  /* The head as this transaction sees it.  It differs from the one the cache reflects after
   * a replay (the cache may hold versions of an aborted batch), or if another process wrote
   * to the log (two servers on one folder: a mistake, but not a corruption). */
  if ((rc = psl__log_meta_head(log, b->txn, &b->seq, b->hash)) != 0)
    return batch_fail(b, rc);
  if (b->seq != b->w->head)
    psl__writer_forget(b->w);
  uint64_t start = b->seq;
  b->next_seq = b->seq + 1;
  psl__bindex_reset(b->w->bx);
  if ((err = open_cursors(b)) != 0)
    return err;

  size_t n = 0;
  for (psl_append_req_t *r = first; r; r = r->next_)
    n += r->n;
  b->pipelined = n >= PIPELINE_MIN;
  if (b->pipelined)
    psl__chain_begin(b->w->chain, b->hash);
  for (psl_append_req_t *r = first; r; r = r->next_)
    for (size_t i = 0; i < r->n; i++)
      if ((err = apply_event(b, &r->events[i], &r->results[i])) != 0)
        return err;
  if (b->pipelined && (err = drain(b, 1)) != 0)
    return err;
  if ((rc = psl__bindex_flush(b->w->bx, b->c_streams, b->c_terr)) != 0)
    return batch_fail(b, rc);

  if (b->seq != start) {
    uint8_t hv[PSL__SEQ_BYTES + PSL_HASH_BYTES];
    psl__be64_put(hv, b->seq);
    memcpy(hv + PSL__SEQ_BYTES, b->hash, PSL_HASH_BYTES);
    MDB_val k = {4, (void *)"head"}, v = {sizeof hv, hv};
    if ((rc = mdb_put(b->txn, log->db_meta, &k, &v, 0)) != 0)
      return batch_fail(b, rc);
  }
  return 0;
}

int psl__batch_apply(psl_log_t *log, psl__writer_t *w, MDB_txn *txn, psl_append_req_t *first,
                     int *mdb_rc, uint64_t *head, uint8_t hash[PSL_HASH_BYTES]) {
  batch_t b;
  memset(&b, 0, sizeof b);
  b.log = log;
  b.w = w;
  b.txn = txn;
  b.rec = now_ms();
  int err = apply_all(&b, first);
  if (err && b.pipelined)
    psl__chain_drain(w->chain); /* the hasher may still be reading this batch's slots */
  /* The transaction goes on after the batch: its cursors end here. */
  MDB_cursor *cursors[] = {b.c_events, b.c_ids, b.c_streams, b.c_terr};
  for (size_t i = 0; i < sizeof cursors / sizeof cursors[0]; i++)
    if (cursors[i])
      mdb_cursor_close(cursors[i]);
  if (!err)
    w->head = b.seq;
  *mdb_rc = b.mdb_rc;
  *head = b.seq;
  memcpy(hash, b.hash, PSL_HASH_BYTES);
  return err;
}
