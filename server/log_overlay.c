/*
 * log_overlay.c — the streams whose latest events are answered (durable in the journal) but
 * not yet readable from LMDB (the writer's open transaction holds them: log_write.c).
 *
 * Why: a caseworker's app pushes a referral, gets `pushed`, and at once pushes the first
 * interview.  The server checks the second against the stream as it stands (its version, the
 * territory of its last event: server/push.c) through psl_log_stream_version and
 * psl_log_stream_last.  Those must see the referral although LMDB will only show it at the
 * next commit of the open transaction, up to PSL_LOG_VISIBLE_MS later.  So the writer
 * publishes here, after each journal fsync, each stream's version and last record, and
 * forgets them all once the transaction is committed (readers then find them in LMDB).
 *
 * Layout: an open-addressing table of entries (name hash, version, seq, offsets into an
 * arena that holds the name and the record), and the arena, a psl_buf_t that only grows
 * until the next clear.  A stream written twice takes a second copy: the arena is bounded by
 * the open transaction's bytes, which the writer bounds (log_write.c).
 *
 * Threads: the writer puts and clears; any thread looks up.  One mutex; lookups are short.
 */
#include "log_int.h"

#include <stdlib.h>
#include <string.h>

/* Initial table slots (a power of 2); doubles at half full. */
#define OVERLAY_SLOTS 1024u

typedef struct {
  uint64_t h; /* 0: empty (a name hashing to 0 is stored as 1) */
  uint64_t ver, seq;
  size_t name_off, rec_off, rec_len;
  uint8_t name_len;
} entry_t;

struct psl__overlay_s {
  pthread_mutex_t mu;
  entry_t *slot;
  size_t cap, n;
  psl_buf_t arena;
};

int psl__overlay_new(psl__overlay_t **out) {
  psl__overlay_t *o = calloc(1, sizeof *o);
  *out = NULL;
  if (!o)
    return PSL_ENOMEM;
  if (!(o->slot = calloc(OVERLAY_SLOTS, sizeof *o->slot))) {
    free(o);
    return PSL_ENOMEM;
  }
  o->cap = OVERLAY_SLOTS;
  psl_buf_init(&o->arena, 0);
  pthread_mutex_init(&o->mu, NULL);
  *out = o;
  return 0;
}

void psl__overlay_free(psl__overlay_t *o) {
  if (!o)
    return;
  pthread_mutex_destroy(&o->mu);
  psl_buf_free(&o->arena);
  free(o->slot);
  free(o);
}

static uint64_t key_hash(const char *name, size_t len) {
  uint64_t h = psl__stream_hash(name, len);
  return h ? h : 1;
}

/* The slot of name: its entry, or the empty slot where it would go. */
static entry_t *find(psl__overlay_t *o, const char *name, size_t len, uint64_t h) {
  const uint8_t *arena = psl_buf_data(&o->arena);
  for (size_t i = h & (o->cap - 1);; i = (i + 1) & (o->cap - 1)) {
    entry_t *e = &o->slot[i];
    if (e->h == 0 || (e->h == h && e->name_len == len &&
                      memcmp(arena + e->name_off, name, len) == 0))
      return e;
  }
}

static int grow(psl__overlay_t *o) {
  size_t ncap = o->cap * 2;
  entry_t *ns = calloc(ncap, sizeof *ns), *old = o->slot;
  if (!ns)
    return PSL_ENOMEM;
  for (size_t i = 0; i < o->cap; i++) {
    if (!old[i].h)
      continue;
    size_t j = old[i].h & (ncap - 1);
    while (ns[j].h)
      j = (j + 1) & (ncap - 1);
    ns[j] = old[i];
  }
  free(old);
  o->slot = ns;
  o->cap = ncap;
  return 0;
}

int psl__overlay_put(psl__overlay_t *o, const char *name, size_t len, uint64_t ver, uint64_t seq,
                     const uint8_t *rec, size_t rec_len) {
  uint64_t h = key_hash(name, len);
  int err = 0;
  pthread_mutex_lock(&o->mu);
  if (2 * (o->n + 1) > o->cap && (err = grow(o)) != 0)
    goto out;
  size_t name_off = o->arena.len;
  if ((err = psl_buf_append(&o->arena, name, len)) != 0)
    goto out;
  size_t rec_off = o->arena.len;
  if ((err = psl_buf_append(&o->arena, rec, rec_len)) != 0)
    goto out;
  entry_t *e = find(o, name, len, h);
  if (!e->h)
    o->n++;
  e->h = h;
  e->ver = ver;
  e->seq = seq;
  e->name_off = name_off;
  e->name_len = (uint8_t)len;
  e->rec_off = rec_off;
  e->rec_len = rec_len;
out:
  pthread_mutex_unlock(&o->mu);
  return err;
}

void psl__overlay_clear(psl__overlay_t *o) {
  pthread_mutex_lock(&o->mu);
  if (o->n)
    memset(o->slot, 0, o->cap * sizeof *o->slot);
  o->n = 0;
  psl_buf_reset(&o->arena);
  pthread_mutex_unlock(&o->mu);
}

int psl__overlay_get(psl__overlay_t *o, const char *name, size_t len, uint64_t *ver,
                     psl_record_fn fn, void *arg) {
  uint64_t h = key_hash(name, len);
  int found = 0;
  pthread_mutex_lock(&o->mu);
  if (o->n) {
    entry_t *e = find(o, name, len, h);
    if (e->h) {
      found = 1;
      if (ver)
        *ver = e->ver;
      if (fn) {
        const uint8_t *rec = psl_buf_data(&o->arena) + e->rec_off;
        fn(arg, e->seq, rec, rec + PSL__REC_HASH, e->rec_len - PSL__REC_HASH);
      }
    }
  }
  pthread_mutex_unlock(&o->mu);
  return found;
}
