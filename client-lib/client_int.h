/*
 * client_int.h — what the files of client-lib/ share (not installed; passerelle.h is the API).
 *
 *   store.c    the LMDB store on the device: outbox, replica, checkpoint, refused, meta
 *   client.c   psl_client_t: open/close, login, append, status, reads
 *   sync.c     the sync session state machine (runs on the library's thread)
 *   conn.c     the libwebsockets client connection and the library's thread and loop
 */
#ifndef PSL_CLIENT_INT_H
#define PSL_CLIENT_INT_H

#include <pthread.h>
#include <stdint.h>

#include <lmdb.h>

#include "passerelle.h"
#include "psl_proto.h"

/* ---- Store (store.c). */

typedef struct {
  MDB_env *env;
  MDB_dbi outbox;  /* order (8 BE) → `push` frame holding the one event */
  MDB_dbi replica; /* seq (8 BE) → hash (32) ‖ canonical stored event */
  MDB_dbi refused; /* order (8 BE) → refusal record (store.c) */
  MDB_dbi meta;    /* short ASCII keys → values (store.c) */
  MDB_dbi sidx;    /* stream ‖ 0 ‖ local seq (8 BE) → seq (8 BE): projection.c */
  MDB_dbi created; /* stream → "" for streams this device appended to: projection.c */
  struct psl_projdb_s *domain; /* domain/'s projection databases in the same env */
  uint64_t replica_max;
  void *map_addr; /* where data.mdb is mapped (store.c: psl__store_release_pages) */
  size_t map_len;
} psl__cstore_t;

/* The checkpoint: which log, how far. */
typedef struct {
  char server[PSL_CLIENT_SERVER_ID + 1]; /* "" when unknown (fresh or after a reset) */
  uint64_t seq;
} psl__ckpt_t;

int psl__store_open(psl__cstore_t *s, const char *dir, uint64_t replica_max);
void psl__store_close(psl__cstore_t *s);
/* Drop the map's resident pages from the process (store.c: why it is safe). */
void psl__store_release_pages(psl__cstore_t *s);
/* Replica bytes written between two releases: ~16 chunks; resident map pages stay within a
 * few MiB of it, and one madvise over the map costs well under a millisecond. */
#define PSL__RELEASE_BYTES (4u * 1024u * 1024u)

/* Short transactions.  A failed begin returns PSL_E*. */
int psl__store_rd(psl__cstore_t *s, MDB_txn **txn);
int psl__store_wr(psl__cstore_t *s, MDB_txn **txn);
int psl__store_commit(MDB_txn *txn);

/* meta */
int psl__meta_get(psl__cstore_t *s, MDB_txn *txn, const char *key, void *buf, size_t cap,
                  size_t *len);
int psl__meta_put(psl__cstore_t *s, MDB_txn *txn, const char *key, const void *val, size_t len);
int psl__meta_get_u64(psl__cstore_t *s, MDB_txn *txn, const char *key, uint64_t *v);
int psl__meta_put_u64(psl__cstore_t *s, MDB_txn *txn, const char *key, uint64_t v);
int psl__ckpt_get(psl__cstore_t *s, MDB_txn *txn, psl__ckpt_t *ck);
int psl__ckpt_put(psl__cstore_t *s, MDB_txn *txn, const psl__ckpt_t *ck);

/* outbox: put a new event (ev->id stamped by the caller) at the next order key. */
int psl__outbox_put(psl__cstore_t *s, MDB_txn *txn, const psl_event_t *ev, uint64_t *order);

/* Read up to max events of the outbox, from the first, whose frames stay within max_bytes of
 * event bytes; fills ev[] (pointing into txn's pages) and order[]; *n how many. */
int psl__outbox_batch(psl__cstore_t *s, MDB_txn *txn, psl_event_t *ev, uint64_t *order,
                      size_t max, size_t max_bytes, size_t *n);
/* Decode one outbox value (a `push` frame of one event) into *ev (points into val). */
int psl__outbox_decode(const void *val, size_t len, psl_event_t *ev);

/* refused: move outbox[order] to the refused list with its reason. */
int psl__refuse(psl__cstore_t *s, MDB_txn *txn, uint64_t order, int err, uint64_t ver,
                psl_str_t msg, int64_t now_ms);
/* Decode a refused record. */
int psl__refused_decode(const void *val, size_t len, psl_event_t *ev, int *err, uint64_t *ver,
                        psl_str_t *msg, int64_t *at);

/* replica: put one stored event (from a chunk).  Returns 0 when stored, PSL_ECONFLICT (a
 * positive "already there", not an error for the caller) when seq is already in the replica,
 * or PSL_E*.  *bytes is the record's size. */
int psl__replica_put(psl__cstore_t *s, MDB_txn *txn, const psl_event_t *ev, psl_buf_t *scratch,
                     size_t *bytes);

/* Drop the replica and projections, set the checkpoint to (server, 0). */
int psl__store_reset(psl__cstore_t *s, MDB_txn *txn, const char *server);

/* Fill an app-facing view from a decoded event (pointers shared). */
void psl__event_view(const psl_event_t *ev, psl_client_event_t *out);

/* ---- Projections (projection.c: the glue to domain/). */

/* Check ev against DOMAIN.md before it enters the outbox, in the append's write txn
 * (PSL_EINVALID, why names the key), and note its stream as one this device writes to. */
int psl__domain_check(psl__cstore_t *s, MDB_txn *txn, const psl_event_t *ev, char *why,
                      size_t whylen);
/* Open domain/'s databases in the store's env (inside txn, at open); close after the env. */
int psl__domain_open(psl__cstore_t *s, MDB_txn *txn);
void psl__domain_close(psl__cstore_t *s);
/* Fold one stored event into the projections, inside the chunk's transaction. */
int psl__domain_apply(psl__cstore_t *s, MDB_txn *txn, const psl_event_t *ev);
/* Empty the projections (reset). */
int psl__domain_drop(psl__cstore_t *s, MDB_txn *txn);
/* participant.erased was applied: rewrite every replica record of its stream with pii
 * {erased: true} (what the server now sends for them).  *delta: the change in replica
 * bytes.  0 or PSL_E*. */
int psl__domain_erase_pii(psl__cstore_t *s, MDB_txn *txn, psl_str_t stream, psl_buf_t *scratch,
                          int64_t *delta);

/* meta keys */
#define PSL__META_URL "url"
#define PSL__META_TOKEN "token"
#define PSL__META_CKPT "checkpoint"
#define PSL__META_HEAD "head"
#define PSL__META_SYNCED "synced_at"
#define PSL__META_REPLICA_BYTES "replica_bytes"
#define PSL__META_ROLE "role"
#define PSL__META_FORMAT "format"

/* Largest URL accepted by login (an https URL of a few hundred bytes at most). */
#define PSL__MAX_URL 511

int64_t psl__now_ms(void);

/* ---- The client (client.c) and its sync thread (sync.c, conn.c). */

typedef struct psl__sync_s psl__sync_t;

struct psl_client_s {
  psl__cstore_t store;
  char *home;
  char *device;
  char *agent;
  int tls_insecure;
  int no_deflate;
  psl_client_callbacks_t cb;

  /* Published by the sync thread, read by status: under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  psl_client_state_t state;
  int err;
  uint64_t server_head;
  char role[16];
  int done;     /* a one-pass sync finished (state DONE or FAILED or a pass error) */
  int done_err; /* its result */

  psl__sync_t *sync; /* NULL while the thread does not run; set/cleared by start/stop */
};

/* sync.c / conn.c: the thread. */
int psl__sync_start(psl_client_t *c, int follow);
void psl__sync_stop(psl_client_t *c);
/* Wake the thread (an append happened).  Any thread; under c->mu. */
void psl__sync_wake(psl__sync_t *s);

/* Publish a state change (under mu) and call on_state (on the library's thread). */
void psl__client_set_state(psl_client_t *c, psl_client_state_t st, int err);

#endif /* PSL_CLIENT_INT_H */
