/*
 * log_read.c — reading the log: ranges with filters, one event, a stream's version and last
 * event.
 *
 * Every call is one short read transaction (psl__log_txn_begin), so a reader never holds
 * back LMDB's page reuse for longer than one chunk.  What a read sees is the snapshot of its
 * transaction: the events committed when it began, and the head from `meta` in the same
 * snapshot.
 *
 * How a filtered read avoids the whole log (layouts in log.c):
 *   territories  one cursor per territory on the DUPSORT `terr` database, positioned with
 *                MDB_GET_BOTH_RANGE at the first seq > after, merged by seq; each selected
 *                event is then fetched from `events` by its key.
 *   streams      the same over the DUPSORT `streams` database.
 *   both         the stream cursors, keeping the events whose decoded `terr` is selected:
 *                streams are small, territories are not.
 * A merge of k sources picks the least seq by a linear scan: k <= PSL_MAX_FILTER (64) and
 * the scan is cheap next to fetching the record.
 */
#include "log_int.h"

#include <string.h>

/* Budget and output of one psl_log_read. */
typedef struct {
  psl_record_fn fn;
  void *arg;
  size_t max_bytes, max_events;
  size_t bytes, count;
  uint64_t last;
} reader_t;

/* One source of a filtered read: a territory's dups or a stream's versions. */
typedef struct {
  MDB_cursor *c;
  const char *name;
  size_t len;
  uint64_t seq; /* the current seq; 0 once exhausted */
} source_t;

/* Offer one record to the reader.  Returns 1 when the read must stop (budget reached, or fn
 * asked), 0 to go on, or a PSL_E* for a malformed record. */
static int deliver(reader_t *rd, uint64_t seq, const MDB_val *v) {
  if (v->mv_size <= PSL__REC_HASH)
    return PSL_ECORRUPT;
  size_t len = v->mv_size - PSL__REC_HASH;
  if (rd->count > 0 && rd->max_bytes && rd->bytes + len > rd->max_bytes)
    return 1;
  const uint8_t *rec = v->mv_data;
  int stop = rd->fn(rd->arg, seq, rec, rec + PSL__REC_HASH, len);
  rd->count++;
  rd->bytes += len;
  rd->last = seq;
  return stop || (rd->max_events && rd->count >= rd->max_events);
}

static int read_all(psl_log_t *log, MDB_txn *txn, uint64_t after, reader_t *rd) {
  MDB_cursor *c;
  uint8_t kb[PSL__SEQ_BYTES];
  int rc = mdb_cursor_open(txn, log->db_events, &c);
  if (rc)
    return psl_err_from_mdb(rc);
  psl__be64_put(kb, after + 1);
  MDB_val k = {sizeof kb, kb}, v;
  int r = 0;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size != PSL__SEQ_BYTES) {
      r = PSL_ECORRUPT;
      break;
    }
    if ((r = deliver(rd, psl__be64_get(k.mv_data), &v)) != 0)
      break;
  }
  mdb_cursor_close(c);
  if (r < 0)
    return r;
  if (r == 0 && rc != MDB_NOTFOUND)
    return psl_err_from_mdb(rc);
  return r; /* 1: stopped by the budget; 0: exhausted */
}

/* Read the seq a source's cursor points at: its duplicate. */
static int source_seq(source_t *s, const MDB_val *v) {
  if (v->mv_size != PSL__SEQ_BYTES)
    return PSL_ECORRUPT;
  s->seq = psl__be64_get(v->mv_data);
  return 0;
}

static int source_next(source_t *s) {
  MDB_val k, v;
  int rc = mdb_cursor_get(s->c, &k, &v, MDB_NEXT_DUP);
  if (rc == MDB_NOTFOUND) {
    s->seq = 0;
    return 0;
  }
  return rc ? psl_err_from_mdb(rc) : source_seq(s, &v);
}

/* Position a source on its first seq > after. */
static int source_seek(source_t *s, uint64_t after) {
  uint8_t dup[PSL__SEQ_BYTES];
  psl__be64_put(dup, after + 1);
  MDB_val k = {s->len, (void *)s->name}, v = {sizeof dup, dup};
  int rc = mdb_cursor_get(s->c, &k, &v, MDB_GET_BOTH_RANGE);
  if (rc == MDB_NOTFOUND) {
    s->seq = 0;
    return 0;
  }
  return rc ? psl_err_from_mdb(rc) : source_seq(s, &v);
}

/* Is name among the first n names of list?  (Filters may repeat a name; it counts once.) */
static int listed(const psl_str_t *list, size_t n, const char *name, size_t len) {
  for (size_t i = 0; i < n; i++)
    if (list[i].len == len && memcmp(list[i].ptr, name, len) == 0)
      return 1;
  return 0;
}

/* Merge the sources by seq and deliver the events that pass (terr: the territory filter,
 * applied to decoded records when sources are streams). */
static int merge(psl_log_t *log, MDB_txn *txn, source_t *src, size_t n, const psl_filter_t *terr,
                 reader_t *rd) {
  MDB_cursor *ev;
  int rc = mdb_cursor_open(txn, log->db_events, &ev), r = 0;
  if (rc)
    return psl_err_from_mdb(rc);
  for (;;) {
    uint64_t seq = 0;
    for (size_t i = 0; i < n; i++)
      if (src[i].seq && (seq == 0 || src[i].seq < seq))
        seq = src[i].seq;
    if (seq == 0)
      break;
    uint8_t kb[PSL__SEQ_BYTES];
    psl__be64_put(kb, seq);
    MDB_val k = {sizeof kb, kb}, v;
    if ((rc = mdb_cursor_get(ev, &k, &v, MDB_SET_KEY)) != 0) {
      r = rc == MDB_NOTFOUND ? PSL_ECORRUPT : psl_err_from_mdb(rc);
      break;
    }
    int pass = 1;
    if (terr) {
      psl_event_t e;
      if (v.mv_size <= PSL__REC_HASH ||
          psl_event_decode_stored((const uint8_t *)v.mv_data + PSL__REC_HASH,
                                  v.mv_size - PSL__REC_HASH, &e, NULL) != 0) {
        r = PSL_ECORRUPT;
        break;
      }
      pass = listed(terr->terr, terr->nterr, e.terr.ptr, e.terr.len);
    }
    if (pass && (r = deliver(rd, seq, &v)) != 0)
      break;
    for (size_t i = 0; i < n && r == 0; i++)
      if (src[i].seq == seq)
        r = source_next(&src[i]);
    if (r)
      break;
  }
  mdb_cursor_close(ev);
  return r;
}

static int read_filtered(psl_log_t *log, MDB_txn *txn, uint64_t after, const psl_filter_t *f,
                         reader_t *rd) {
  source_t src[PSL_MAX_FILTER];
  size_t n = 0;
  int by_stream = f->nstreams > 0, r = 0;
  const psl_str_t *names = by_stream ? f->streams : f->terr;
  size_t nnames = by_stream ? f->nstreams : f->nterr;

  for (size_t i = 0; i < nnames; i++) {
    if (listed(names, i, names[i].ptr, names[i].len))
      continue;
    source_t *s = &src[n];
    s->name = names[i].ptr;
    s->len = names[i].len;
    s->seq = 0;
    if (s->len == 0 || s->len > (by_stream ? PSL_MAX_STREAM : PSL_MAX_TERR))
      continue; /* never stored: selects nothing */
    int rc = mdb_cursor_open(txn, by_stream ? log->db_streams : log->db_terr, &s->c);
    if (rc) {
      r = psl_err_from_mdb(rc);
      break;
    }
    n++;
    if ((r = source_seek(s, after)) != 0)
      break;
  }
  if (r == 0)
    r = merge(log, txn, src, n, by_stream && f->nterr ? f : NULL, rd);
  for (size_t i = 0; i < n; i++)
    mdb_cursor_close(src[i].c);
  return r;
}

int psl_log_read(psl_log_t *log, uint64_t after, const psl_filter_t *f, size_t max_bytes,
                 size_t max_events, psl_record_fn fn, void *arg, uint64_t *last) {
  reader_t rd = {fn, arg, max_bytes, max_events, 0, 0, after};
  MDB_txn *txn;
  int r;
  if (f && (f->nterr > PSL_MAX_FILTER || f->nstreams > PSL_MAX_FILTER))
    return PSL_EINVALID;
  if ((r = psl__log_txn_begin(log, MDB_RDONLY, &txn)) != 0)
    return psl_err_from_mdb(r);
  if (f && (f->nterr || f->nstreams))
    r = read_filtered(log, txn, after, f, &rd);
  else
    r = read_all(log, txn, after, &rd);
  if (r == 0) { /* the selection is exhausted: the reader has covered up to the head */
    uint64_t head;
    int rc = psl__log_meta_head(log, txn, &head, NULL);
    if (rc)
      r = psl_err_from_mdb(rc);
    else if (head > rd.last)
      rd.last = head;
  }
  psl__log_txn_end(log, txn, 0);
  if (r < 0)
    return r;
  if (last)
    *last = rd.last;
  return 0;
}

int psl_log_get(psl_log_t *log, uint64_t seq, psl_record_fn fn, void *arg) {
  MDB_txn *txn;
  uint8_t kb[PSL__SEQ_BYTES];
  int rc, err = 0;
  if (seq == 0)
    return PSL_ENOTFOUND;
  if ((rc = psl__log_txn_begin(log, MDB_RDONLY, &txn)) != 0)
    return psl_err_from_mdb(rc);
  psl__be64_put(kb, seq);
  MDB_val k = {sizeof kb, kb}, v;
  rc = mdb_get(txn, log->db_events, &k, &v);
  if (rc)
    err = psl_err_from_mdb(rc);
  else if (v.mv_size <= PSL__REC_HASH)
    err = PSL_ECORRUPT;
  else
    fn(arg, seq, v.mv_data, (const uint8_t *)v.mv_data + PSL__REC_HASH,
       v.mv_size - PSL__REC_HASH);
  psl__log_txn_end(log, txn, 0);
  return err;
}

int psl_log_stream_version(psl_log_t *log, const char *stream, size_t len, uint64_t *ver) {
  MDB_txn *txn;
  MDB_cursor *c;
  int rc;
  *ver = 0;
  if (log->overlay && psl__overlay_get(log->overlay, stream, len, ver, NULL, NULL))
    return 0; /* answered, not yet committed */
  if ((rc = psl__log_txn_begin(log, MDB_RDONLY, &txn)) != 0)
    return psl_err_from_mdb(rc);
  if ((rc = mdb_cursor_open(txn, log->db_streams, &c)) == 0) {
    rc = psl__stream_version(c, stream, len, ver);
    mdb_cursor_close(c);
  }
  psl__log_txn_end(log, txn, 0);
  return psl_err_from_mdb(rc);
}

int psl_log_stream_last(psl_log_t *log, const char *stream, size_t len, psl_record_fn fn,
                        void *arg) {
  MDB_txn *txn;
  MDB_cursor *c;
  int rc, err = 0;
  if (len == 0 || len > PSL_MAX_STREAM)
    return 0; /* never stored (log_apply.c refuses such names) */
  if (log->overlay && psl__overlay_get(log->overlay, stream, len, NULL, fn, arg))
    return 0; /* answered, not yet committed */
  if ((rc = psl__log_txn_begin(log, MDB_RDONLY, &txn)) != 0)
    return psl_err_from_mdb(rc);
  if ((rc = mdb_cursor_open(txn, log->db_streams, &c)) == 0) {
    MDB_val k = {len, (void *)stream}, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET);
    if (rc == 0)
      rc = mdb_cursor_get(c, &k, &v, MDB_LAST_DUP);
    if (rc == 0 && v.mv_size != PSL__SEQ_BYTES)
      err = PSL_ECORRUPT;
    else if (rc == 0) {
      uint64_t seq = psl__be64_get(v.mv_data);
      uint8_t kb[PSL__SEQ_BYTES];
      psl__be64_put(kb, seq);
      MDB_val ek = {sizeof kb, kb}, ev;
      rc = mdb_get(txn, log->db_events, &ek, &ev);
      if (rc == 0 && ev.mv_size <= PSL__REC_HASH)
        err = PSL_ECORRUPT;
      else if (rc == 0)
        fn(arg, seq, ev.mv_data, (const uint8_t *)ev.mv_data + PSL__REC_HASH,
           ev.mv_size - PSL__REC_HASH);
      else if (rc == MDB_NOTFOUND)
        err = PSL_ECORRUPT; /* the index names an event that is not there */
    }
    mdb_cursor_close(c);
  }
  psl__log_txn_end(log, txn, 0);
  if (err)
    return err;
  return rc == MDB_NOTFOUND ? 0 : psl_err_from_mdb(rc);
}
