/*
 * log_chain.c — the chain hasher: a second thread that computes the hash chain of a large
 * batch while the writer thread does the batch's index work.
 *
 * Why: hashing (BLAKE2b over ~330 bytes, ~0.5 µs) is a quarter of the writer's work per
 * event, and it is the one part that needs no LMDB transaction.  The chain itself is serial
 * (hash(n) needs hash(n-1)), but it is independent of the B-trees: one thread can walk it
 * while the writer inserts the next events' ids, streams and territories.  Small batches
 * (one-event clients) skip the hand-off and hash on the writer (log_apply.c).
 *
 * A ring of CHAIN_RING slots, each a buffer holding one record: 32 free bytes ‖ canonical.
 *
 *       consumed ≤ done ≤ pub ≤ consumed + CHAIN_RING        (counters only grow)
 *
 *   writer    fills slot[pub % R] (psl__chain_slot), then publishes it (pub + 1)
 *   hasher    hashes slot[done % R]: gap = BLAKE2b(prev ‖ canonical), prev = gap; done + 1
 *   writer    takes slot[consumed % R] once done > consumed (psl__chain_next): stores it
 *
 * A slot belongs to the writer outside [consumed, pub) and to the hasher inside [done, pub):
 * the release store of pub (of done) hands its bytes over, the acquire load takes them.
 * Either side sleeps on a condition variable when it has nothing to do; the other wakes it
 * only when it said it sleeps (a flag read after its own counter store, both sequentially
 * consistent: one of the two always sees the other).
 */
#include "log_int.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Slots in flight: enough for the hasher to run ~250 events behind the writer without the
 * writer ever waiting; each slot's buffer is as large as the largest record it held (~330
 * bytes typically, at most PSL_MAX_EVENT + 32), so the ring costs ~100 KiB in practice. */
#define CHAIN_RING 256u
/* Polls before a side sleeps: a record takes ~0.5 µs to hash, a sleep and wake ~10 µs. */
#define CHAIN_SPINS 200

typedef struct {
  psl_buf_t buf;
  void *tag;
} chain_slot_t;

struct psl__chain_s {
  chain_slot_t ring[CHAIN_RING];
  uint8_t prev[PSL_HASH_BYTES]; /* the hasher's: hash of the last record hashed */
  _Atomic uint64_t pub, done;
  uint64_t consumed; /* the writer's */
  _Atomic int hasher_sleeps, writer_sleeps, stop;
  pthread_mutex_t mu;
  pthread_cond_t hasher_cond, writer_cond;
  pthread_t thread;
};

static void wake(psl__chain_t *c, _Atomic int *sleeps, pthread_cond_t *cond) {
  if (atomic_load(sleeps)) {
    pthread_mutex_lock(&c->mu);
    pthread_cond_signal(cond);
    pthread_mutex_unlock(&c->mu);
  }
}

static void *hasher_main(void *arg) {
  psl__chain_t *c = arg;
  for (;;) {
    uint64_t n = atomic_load_explicit(&c->done, memory_order_relaxed);
    int spins = 0;
    while (atomic_load_explicit(&c->pub, memory_order_acquire) == n) {
      if (++spins < CHAIN_SPINS) {
        sched_yield();
        continue;
      }
      pthread_mutex_lock(&c->mu);
      atomic_store(&c->hasher_sleeps, 1);
      while (atomic_load(&c->pub) == n && !atomic_load(&c->stop))
        pthread_cond_wait(&c->hasher_cond, &c->mu);
      atomic_store(&c->hasher_sleeps, 0);
      pthread_mutex_unlock(&c->mu);
      if (atomic_load(&c->pub) == n) /* stopping, and nothing left */
        return NULL;
    }
    chain_slot_t *s = &c->ring[n % CHAIN_RING];
    uint8_t *rec = psl_buf_data(&s->buf);
    psl_chain_hash(c->prev, rec + PSL__REC_HASH, s->buf.len - PSL__REC_HASH, rec);
    memcpy(c->prev, rec, PSL_HASH_BYTES);
    atomic_store(&c->done, n + 1);
    wake(c, &c->writer_sleeps, &c->writer_cond);
  }
}

int psl__chain_start(psl__chain_t **out) {
  psl__chain_t *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c)
    return PSL_ENOMEM;
  for (size_t i = 0; i < CHAIN_RING; i++)
    psl_buf_init(&c->ring[i].buf, 0);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->hasher_cond, NULL);
  pthread_cond_init(&c->writer_cond, NULL);
  int e = pthread_create(&c->thread, NULL, hasher_main, c);
  if (e) {
    pthread_cond_destroy(&c->writer_cond);
    pthread_cond_destroy(&c->hasher_cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return psl_err_from_errno(e);
  }
  pthread_setname_np(c->thread, "psl-log-chain");
  *out = c;
  return 0;
}

void psl__chain_stop(psl__chain_t *c) {
  if (!c)
    return;
  pthread_mutex_lock(&c->mu);
  atomic_store(&c->stop, 1);
  pthread_cond_signal(&c->hasher_cond);
  pthread_mutex_unlock(&c->mu);
  pthread_join(c->thread, NULL);
  for (size_t i = 0; i < CHAIN_RING; i++)
    psl_buf_free(&c->ring[i].buf);
  pthread_cond_destroy(&c->writer_cond);
  pthread_cond_destroy(&c->hasher_cond);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* Wait until the hasher has done more than `than`. */
static void wait_done(psl__chain_t *c, uint64_t than) {
  for (int spins = 0; atomic_load_explicit(&c->done, memory_order_acquire) <= than; spins++) {
    if (spins < CHAIN_SPINS) {
      sched_yield();
      continue;
    }
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->writer_sleeps, 1);
    while (atomic_load(&c->done) <= than)
      pthread_cond_wait(&c->writer_cond, &c->mu);
    atomic_store(&c->writer_sleeps, 0);
    pthread_mutex_unlock(&c->mu);
  }
}

void psl__chain_begin(psl__chain_t *c, const uint8_t prev[PSL_HASH_BYTES]) {
  psl__chain_drain(c);
  memcpy(c->prev, prev, PSL_HASH_BYTES); /* the hasher is idle: done == pub */
}

int psl__chain_full(const psl__chain_t *c) {
  return atomic_load_explicit(&c->pub, memory_order_relaxed) - c->consumed == CHAIN_RING;
}

psl_buf_t *psl__chain_slot(psl__chain_t *c) {
  uint64_t p = atomic_load_explicit(&c->pub, memory_order_relaxed);
  return &c->ring[p % CHAIN_RING].buf;
}

void psl__chain_publish(psl__chain_t *c, void *tag) {
  uint64_t p = atomic_load_explicit(&c->pub, memory_order_relaxed);
  c->ring[p % CHAIN_RING].tag = tag;
  atomic_store(&c->pub, p + 1);
  wake(c, &c->hasher_sleeps, &c->hasher_cond);
}

psl_buf_t *psl__chain_next(psl__chain_t *c, int wait, void **tag) {
  if (c->consumed == atomic_load_explicit(&c->pub, memory_order_relaxed))
    return NULL; /* nothing in flight */
  if (atomic_load_explicit(&c->done, memory_order_acquire) == c->consumed) {
    if (!wait)
      return NULL;
    wait_done(c, c->consumed);
  }
  chain_slot_t *s = &c->ring[c->consumed % CHAIN_RING];
  c->consumed++;
  *tag = s->tag;
  return &s->buf;
}

void psl__chain_drain(psl__chain_t *c) {
  uint64_t p = atomic_load_explicit(&c->pub, memory_order_relaxed);
  if (p > 0)
    wait_done(c, p - 1);
  c->consumed = p;
}
