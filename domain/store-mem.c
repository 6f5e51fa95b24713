/*
 * store-mem.c — the projections in memory: hash maps of participant states, sessions and
 * counter vectors.  Used by the client library (its replica's projections), by tests, and by
 * rebuilds (the auditor's verify, psl_projdb_store), where speed matters: a rebuild folds
 * millions of events per second, so lookups are open-addressing hash probes on the key bytes.
 *
 * Queries derive per-year facts from the states on the fly (the LMDB store indexes them
 * instead): a memory store holds one organisation's replica, thousands of people, not the
 * millions an index pays off for.
 */
#include <stdlib.h>

#include "psl_domain_int.h"

/* ---- A hash set of items whose key is their first klen bytes. */

typedef struct {
  uint64_t h; /* the key's hash: most probes end on it without touching the item */
  void *item;
} slot_t;

typedef struct {
  slot_t *slot;
  size_t cap, n; /* cap a power of two; n <= cap / 2 */
} map_t;

/* Eight bytes at a time, each word mixed in with a multiply; then splitmix64's finaliser.
 * Byte-at-a-time FNV was a sixth of a rebuild's time. */
static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ n;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * UINT64_C(0xbf58476d1ce4e5b9);
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * UINT64_C(0xbf58476d1ce4e5b9);
  }
  h ^= h >> 30;
  h *= UINT64_C(0x94d049bb133111eb);
  h ^= h >> 31;
  return h;
}

typedef struct {
  psl__ckey_t key; /* first: the map's key is its encoded form, kept below */
  uint8_t kbytes[PSL__CKEY_MAX];
  size_t klen;
  int64_t vec[PSL__C_N];
} counter_t;

/* Key bytes of an item: participants and sessions start with their 16-byte id; counters keep
 * their encoded key. */
static const uint8_t *item_key(const void *item, int is_counter, size_t *len) {
  if (is_counter) {
    const counter_t *c = item;
    *len = c->klen;
    return c->kbytes;
  }
  *len = PSL_UUID_BYTES;
  return item;
}

/* Key equality; ids (16 bytes, most lookups) as two words rather than a call to memcmp. */
static inline int key_eq(const uint8_t *a, const uint8_t *b, size_t len) {
  if (len == PSL_UUID_BYTES) {
    uint64_t x[2], y[2];
    memcpy(x, a, sizeof x);
    memcpy(y, b, sizeof y);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
  }
  return memcmp(a, b, len) == 0;
}

/* The slot of key: its item, or an empty slot (item NULL) with h set for an insert. */
static slot_t *map_find(map_t *m, const uint8_t *key, size_t len, int is_counter) {
  if (!m->cap)
    return NULL;
  uint64_t h = hash_bytes(key, len);
  size_t i = h & (m->cap - 1);
  for (;;) {
    slot_t *sl = &m->slot[i];
    if (!sl->item) {
      sl->h = h;
      return sl;
    }
    if (sl->h == h) {
      size_t l;
      const uint8_t *k = item_key(sl->item, is_counter, &l);
      if (l == len && key_eq(k, key, len))
        return sl;
    }
    i = (i + 1) & (m->cap - 1);
  }
}

static int map_grow(map_t *m, int is_counter) {
  if (m->n + 1 <= m->cap / 2)
    return 0;
  size_t ncap = m->cap ? m->cap * 2 : 64;
  map_t nm = {calloc(ncap, sizeof(slot_t)), ncap, 0};
  (void)is_counter;
  if (!nm.slot)
    return PSL_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slot[i].item)
      continue;
    size_t j = m->slot[i].h & (ncap - 1);
    while (nm.slot[j].item)
      j = (j + 1) & (ncap - 1);
    nm.slot[j] = m->slot[i];
    nm.n++;
  }
  free(m->slot);
  *m = nm;
  return 0;
}

/* ---- The store. */

struct psl_proj_s {
  psl__store_t ops; /* first: the engine's view */
  map_t parts, sessions, counters;
  uint64_t seq;
  psl_participant_t *last; /* the last participant looked up: events come in runs */
};

static int part_get(psl__store_t *s, const uint8_t id[PSL_UUID_BYTES], psl_participant_t **out) {
  psl_proj_t *p = (psl_proj_t *)s;
  if (p->last && key_eq(p->last->id, id, PSL_UUID_BYTES)) {
    *out = p->last; /* states never move: the map holds pointers */
    return 0;
  }
  if (map_grow(&p->parts, 0))
    return PSL_ENOMEM;
  slot_t *slot = map_find(&p->parts, id, PSL_UUID_BYTES, 0);
  if (!slot->item) {
    psl_participant_t *st = malloc(sizeof *st);
    if (!st)
      return PSL_ENOMEM;
    psl_participant_init(st, id);
    slot->item = st;
    p->parts.n++;
  }
  *out = p->last = slot->item;
  return 0;
}

static int part_put(psl__store_t *s, psl_participant_t *st) {
  (void)s;
  (void)st; /* in place */
  return 0;
}

static int sess_get(psl__store_t *s, const uint8_t id[PSL_UUID_BYTES], psl__session_t **out) {
  psl_proj_t *p = (psl_proj_t *)s;
  if (map_grow(&p->sessions, 0))
    return PSL_ENOMEM;
  slot_t *slot = map_find(&p->sessions, id, PSL_UUID_BYTES, 0);
  if (!slot->item) {
    psl__session_t *ss = calloc(1, sizeof *ss);
    if (!ss)
      return PSL_ENOMEM;
    memcpy(ss->id, id, PSL_UUID_BYTES);
    slot->item = ss;
    p->sessions.n++;
  }
  *out = slot->item;
  return 0;
}

static int sess_put(psl__store_t *s, psl__session_t *ss) {
  (void)s;
  (void)ss;
  return 0;
}

static int counter_add(psl__store_t *s, const psl__ckey_t *k, const int64_t vec[PSL__C_N]) {
  psl_proj_t *p = (psl_proj_t *)s;
  uint8_t kb[PSL__CKEY_MAX];
  size_t kl = psl__ckey_encode(k, kb);
  if (map_grow(&p->counters, 1))
    return PSL_ENOMEM;
  slot_t *slot = map_find(&p->counters, kb, kl, 1);
  if (!slot->item) {
    counter_t *c = calloc(1, sizeof *c);
    if (!c)
      return PSL_ENOMEM;
    c->key = *k;
    memcpy(c->kbytes, kb, kl);
    c->klen = kl;
    slot->item = c;
    p->counters.n++;
  }
  counter_t *c = slot->item;
  for (int i = 0; i < PSL__C_N; i++)
    c->vec[i] += vec[i];
  return 0;
}

int psl_proj_new(psl_proj_t **out) {
  psl_proj_t *p = calloc(1, sizeof *p);
  if (!p)
    return PSL_ENOMEM;
  p->ops.part_get = part_get;
  p->ops.part_put = part_put;
  p->ops.sess_get = sess_get;
  p->ops.sess_put = sess_put;
  p->ops.counter_add = counter_add;
  *out = p;
  return 0;
}

void psl_proj_free(psl_proj_t *p) {
  if (!p)
    return;
  for (size_t i = 0; i < p->parts.cap; i++)
    if (p->parts.slot[i].item) {
      psl_participant_free(p->parts.slot[i].item);
      free(p->parts.slot[i].item);
    }
  for (size_t i = 0; i < p->sessions.cap; i++)
    if (p->sessions.slot[i].item) {
      psl__session_free(p->sessions.slot[i].item);
      free(p->sessions.slot[i].item);
    }
  for (size_t i = 0; i < p->counters.cap; i++)
    free(p->counters.slot[i].item);
  free(p->parts.slot);
  free(p->sessions.slot);
  free(p->counters.slot);
  free(p);
}

int psl_proj_apply(psl_proj_t *p, const psl_event_t *ev, psl_stream_iter_fn iter, void *arg) {
  p->ops.iter = iter;
  p->ops.iter_arg = arg;
  int rc = psl__engine_apply(&p->ops, ev);
  p->ops.iter = NULL;
  p->ops.iter_arg = NULL;
  if (!rc && ev->seq > p->seq)
    p->seq = ev->seq;
  return rc;
}

uint64_t psl_proj_seq(const psl_proj_t *p) { return p->seq; }



void psl__mem_set_seq(psl_proj_t *p, uint64_t seq) { p->seq = seq; }

const psl_participant_t *psl__mem_participant(const psl_proj_t *p,
                                              const uint8_t id[PSL_UUID_BYTES]) {
  slot_t *slot = map_find((map_t *)&p->parts, id, PSL_UUID_BYTES, 0);
  return slot ? slot->item : NULL;
}

const psl__session_t *psl__mem_session(const psl_proj_t *p, const uint8_t id[PSL_UUID_BYTES]) {
  slot_t *slot = map_find((map_t *)&p->sessions, id, PSL_UUID_BYTES, 0);
  return slot ? slot->item : NULL;
}

int psl__mem_counter(const psl_proj_t *p, const psl__ckey_t *k, int64_t vec[PSL__C_N]) {
  uint8_t kb[PSL__CKEY_MAX];
  size_t kl = psl__ckey_encode(k, kb);
  slot_t *slot = map_find((map_t *)&p->counters, kb, kl, 1);
  if (!slot || !slot->item) {
    memset(vec, 0, PSL__C_N * sizeof *vec);
    return 0;
  }
  memcpy(vec, ((counter_t *)slot->item)->vec, PSL__C_N * sizeof *vec);
  return 1;
}

int psl__mem_each(const psl_proj_t *p, int what, int (*fn)(void *arg, const void *item),
                  void *arg) {
  const map_t *m = what == 0 ? &p->parts : what == 1 ? &p->sessions : &p->counters;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slot[i].item)
      continue;
    int rc;
    if (what == 2) {
      const counter_t *c = m->slot[i].item;
      rc = fn(arg, &c->key);
    } else {
      rc = fn(arg, m->slot[i].item);
    }
    if (rc)
      return rc;
  }
  return 0;
}

/* ---- Folding a run of events with prefetching (rebuilds).
 *
 * A big log's states do not fit in cache and events visit them in no particular order, so a
 * fold spends most of its time waiting for memory.  The run is walked with three cursors
 * ahead of the fold: the first takes the participant id and prefetches its hash slot,
 * the second reads the slot (arrived by then) and prefetches the state's first lines, the
 * third its last activity mark.  The distances cover a DRAM access (~100 ns) at the few
 * hundred ns an event costs. */
#define AHEAD_SLOT 16
#define AHEAD_STATE 8
#define AHEAD_MARKS 3
#define RING 32 /* > AHEAD_SLOT, a power of 2 */

typedef struct {
  uint64_t h;
  int is_part;
} ahead_t;

/* The stream's participant id: from the fact parsed ahead, else parsed here. */
static void ahead_slot(const psl_proj_t *p, const psl_event_t *ev, const psl__fact_t *f,
                       ahead_t *a) {
  uint8_t id[PSL_UUID_BYTES];
  const uint8_t *pid = id;
  if (f) {
    a->is_part = f->stream_kind == PSL__STREAM_PARTICIPANT;
    pid = f->stream_id;
  } else {
    a->is_part =
        psl__stream_parse(ev->stream.ptr, ev->stream.len, id) == PSL__STREAM_PARTICIPANT;
  }
  a->is_part = a->is_part && p->parts.cap;
  if (!a->is_part)
    return;
  a->h = hash_bytes(pid, PSL_UUID_BYTES);
  __builtin_prefetch(&p->parts.slot[a->h & (p->parts.cap - 1)]);
}

static const psl_participant_t *ahead_item(const psl_proj_t *p, const ahead_t *a) {
  if (!a->is_part || !p->parts.cap)
    return NULL;
  const slot_t *sl = &p->parts.slot[a->h & (p->parts.cap - 1)];
  return sl->h == a->h ? sl->item : NULL;
}

int psl__mem_apply_run(psl_proj_t *p, const psl_event_t *evs, const psl__fact_t *facts, size_t n,
                       psl_stream_iter_fn iter, void *arg) {
  ahead_t ring[RING];
  int rc = 0;
  for (size_t i = 0; i < n && i < AHEAD_SLOT; i++)
    ahead_slot(p, &evs[i], facts ? &facts[i] : NULL, &ring[i % RING]);
  p->ops.iter = iter;
  p->ops.iter_arg = arg;
  for (size_t i = 0; i < n && !rc; i++) {
    size_t a = i + AHEAD_SLOT;
    if (a < n)
      ahead_slot(p, &evs[a], facts ? &facts[a] : NULL, &ring[a % RING]);
    if (i + AHEAD_STATE < n) {
      const psl_participant_t *st = ahead_item(p, &ring[(i + AHEAD_STATE) % RING]);
      if (st) {
        __builtin_prefetch(st);
        __builtin_prefetch((const char *)st + 64);
        __builtin_prefetch((const char *)st + 128);
      }
    }
    if (i + AHEAD_MARKS < n) {
      const psl_participant_t *st = ahead_item(p, &ring[(i + AHEAD_MARKS) % RING]);
      if (st && st->nmarks)
        __builtin_prefetch(&st->marks[st->nmarks - 1]);
    }
    /* psl_proj_apply, with the fact when it was parsed ahead */
    rc = facts ? psl__engine_apply_fact(&p->ops, &evs[i], &facts[i])
               : psl__engine_apply(&p->ops, &evs[i]);
    if (!rc && evs[i].seq > p->seq)
      p->seq = evs[i].seq;
  }
  p->ops.iter = NULL;
  p->ops.iter_arg = NULL;
  return rc;
}

/* ---- Queries. */

int psl_proj_participant(psl_proj_t *p, const uint8_t id[PSL_UUID_BYTES],
                         psl_participant_t *out) {
  const psl_participant_t *st = psl__mem_participant(p, id);
  psl_participant_init(out, id);
  if (!st || !st->known)
    return PSL_ENOTFOUND;
  return psl_participant_copy(out, st);
}

int psl__mem_counters(const psl_proj_t *p, const psl_counters_query_t *q, psl_counters_t *out) {
  psl__agg_t agg;
  psl__agg_begin(&agg, out, q);
  for (size_t i = 0; i < p->counters.cap; i++) {
    const counter_t *c = p->counters.slot[i].item;
    if (c && psl__ckey_matches(q, &c->key))
      psl__agg_vec(out, c->vec);
  }
  for (size_t i = 0; i < p->parts.cap; i++) {
    const psl_participant_t *st = p->parts.slot[i].item;
    if (!st || !psl__participant_counts(st))
      continue;
    uint32_t lo = psl__month_index(q->year, 1) << 16, hi = psl__month_index(q->year + 1, 1) << 16;
    int any = 0;
    for (size_t m = 0; m < st->nmarks && !any; m++)
      any = st->marks[m] >= lo && st->marks[m] < hi;
    if (!any)
      continue;
    psl__year_t y;
    int rc = psl__year_make(st, q->year, &y);
    if (rc)
      return rc;
    psl__agg_year(&agg, &y);
    psl__year_free(&y);
  }
  return 0;
}

int psl_proj_counters(psl_proj_t *p, const psl_counters_query_t *q, psl_counters_t *out) {
  return psl__mem_counters(p, q, out);
}

/* The LMDB store's caseload order (its key: terr ‖ id). */
static int terr_id_cmp(const void *a, const void *b) {
  const psl_participant_t *x = *(const psl_participant_t *const *)a;
  const psl_participant_t *y = *(const psl_participant_t *const *)b;
  if (x->terr != y->terr)
    return x->terr < y->terr ? -1 : 1;
  return memcmp(x->id, y->id, PSL_UUID_BYTES);
}

int psl_proj_caseload(psl_proj_t *p, int terr, psl_caseload_fn fn, void *arg) {
  const psl_participant_t **list = malloc((p->parts.n + 1) * sizeof *list);
  size_t n = 0;
  int rc = 0;
  if (!list)
    return PSL_ENOMEM;
  for (size_t i = 0; i < p->parts.cap; i++) {
    const psl_participant_t *st = p->parts.slot[i].item;
    if (st && st->known && (!terr || st->terr == terr))
      list[n++] = st;
  }
  qsort(list, n, sizeof *list, terr_id_cmp);
  for (size_t i = 0; i < n && !rc; i++)
    rc = fn(arg, list[i]);
  free(list);
  return rc;
}

/* Sites with activity in a year: the places of per-year facts and the counter keys. */
static int mem_sites(void *arg, int year, int (*fn)(void *fnarg, const psl__yplace_t *pl),
                     void *fnarg) {
  psl_proj_t *p = arg;
  for (size_t i = 0; i < p->counters.cap; i++) {
    const counter_t *c = p->counters.slot[i].item;
    if (!c || c->key.year != year)
      continue;
    psl__yplace_t pl = {c->key.terr, c->key.programme, 0, {0}};
    memcpy(pl.site, c->key.site, sizeof pl.site);
    int rc = fn(fnarg, &pl);
    if (rc)
      return rc;
  }
  for (size_t i = 0; i < p->parts.cap; i++) {
    const psl_participant_t *st = p->parts.slot[i].item;
    if (!st || !psl__participant_counts(st))
      continue;
    psl__year_t y;
    int rc = psl__year_make(st, year, &y);
    for (size_t j = 0; j < y.nplaces && !rc; j++)
      rc = fn(fnarg, &y.places[j]);
    psl__year_free(&y);
    if (rc)
      return rc;
  }
  return 0;
}

static int mem_query(void *arg, const psl_counters_query_t *q, psl_counters_t *c) {
  return psl__mem_counters(arg, q, c);
}

int psl_proj_report(psl_proj_t *p, int year, int terr, psl_report_t *out) {
  return psl__report_build(year, terr, mem_query, mem_sites, p, out);
}
