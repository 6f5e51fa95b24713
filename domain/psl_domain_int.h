/*
 * psl_domain_int.h — what domain/'s files share and nobody else uses (prefix psl__).
 *
 *   mp.c           a strict MessagePack reader for `data` maps (hostile bytes)
 *   codes.c        code tables, sites, Europe/Paris dates
 *   fact.c         event → fact: one walk over `data` that validates and extracts
 *   validate.c     psl_domain_validate: stream, type, first-event rules, pii
 *   participant.c  the participant fold (pure), placement timeline, activity marks
 *   counters.c     additive counter keys and contributions, per-year facts, aggregation
 *   engine.c       psl__engine_apply: O(1) folds, void/transfer recomputation, sessions
 *   store-mem.c    the memory store
 *   store-lmdb.c   the LMDB store: open, fold into it;  lmdb-query.c  its queries;
 *   lmdb-rebuild.c its rebuilds, compare, verify and the log hooks
 *   rebuild-log.c  a memory rebuild through psl_log_read (the one call into the server)
 *   codec.c        byte layouts of the stored state, sessions, year facts, counters
 *   json.c, report.c  renderers
 */
#ifndef PSL_DOMAIN_INT_H
#define PSL_DOMAIN_INT_H

#include <stdint.h>
#include <string.h>

#include "psl_domain.h"

/* ---- mp.c: MessagePack reader.  Every length is checked against the bytes left. */

typedef struct {
  const uint8_t *p, *end;
} psl__mp_t;

enum { PSL__MP_OK = 0, PSL__MP_TYPE = 1, PSL__MP_SHORT, PSL__MP_RANGE, PSL__MP_DEEP };

static inline void psl__mp_init(psl__mp_t *r, const uint8_t *p, size_t len) {
  r->p = p;
  r->end = p + len;
}
int psl__mp_map(psl__mp_t *r, uint32_t *n);
int psl__mp_array(psl__mp_t *r, uint32_t *n);
int psl__mp_str(psl__mp_t *r, const char **s, uint32_t *len);
int psl__mp_bin(psl__mp_t *r, const uint8_t **b, uint32_t *len);
int psl__mp_int(psl__mp_t *r, int64_t *v);
int psl__mp_bool(psl__mp_t *r, int *v);
int psl__mp_is_nil(const psl__mp_t *r);
int psl__mp_is_map(const psl__mp_t *r);
int psl__mp_is_bin(const psl__mp_t *r);
int psl__mp_skip(psl__mp_t *r, unsigned depth);
/* A stored event (canonical form, as the log keeps it) read for a fold: id, stream, type,
 * at, terr, data and seq only, zero-copy.  0 or PSL_ECORRUPT (then use proto's decoder). */
int psl__event_read_stored(const uint8_t *buf, size_t len, psl_event_t *ev);

/* ---- codes.c */

/* Month index of (year, month): year * 12 + month - 1 (fits 16 bits up to year 5461). */
static inline uint32_t psl__month_index(int year, int month) {
  return (uint32_t)(year * 12 + month - 1);
}
uint32_t psl__at_month_index(int64_t at);

/* ---- fact.c: one event, parsed. */

typedef enum {
  PSL__F_OTHER = 0, /* x- types, unknown types: activity only */
  PSL__F_REFERRED,
  PSL__F_ENGAGEMENT,
  PSL__F_DIAGNOSTIC,
  PSL__F_BARRIER_LIFTED,
  PSL__F_INTERVIEW,
  PSL__F_MISSED,
  PSL__F_PARTNER_REFERRED,
  PSL__F_PARTNER_UPDATED,
  PSL__F_OUTCOME,
  PSL__F_TRANSFERRED,
  PSL__F_JUSTICE,
  PSL__F_EXITED,
  PSL__F_MERGED,
  PSL__F_ERASED,
  PSL__F_VOIDED,
  PSL__F_SESSION,
  PSL__F__N
} psl__ftype_t;

enum { PSL__STREAM_BAD = 0, PSL__STREAM_PARTICIPANT, PSL__STREAM_SESSION };

typedef struct {
  psl__ftype_t type;
  int stream_kind;
  uint8_t stream_id[PSL_UUID_BYTES];
  uint8_t id[PSL_UUID_BYTES];
  psl_when_t when;
  uint8_t terr; /* the event's own */
  /* data, per type (0 / "" when absent) */
  uint8_t programme, source, justice, gender, education, kind, partner_kind, status, reason,
      place, sequence, data_terr;
  int rsa, care_obligation, has_care;
  int birth_year;
  int64_t minutes;
  uint32_t barriers; /* bit (code - 1) */
  uint8_t barrier;
  char site[PSL_SITE_MAX + 1];
  uint8_t uuid[PSL_UUID_BYTES]; /* ref, into or of */
  const uint8_t *attendees;     /* session.held: the array's elements, in the event's bytes */
  const uint8_t *attendees_end;
  uint32_t nattendees;
} psl__fact_t;

psl__ftype_t psl__ftype_of(const char *type, size_t len);
const char *psl__ftype_name(psl__ftype_t t);
/* 1 for a type that belongs to participant streams, 2 session streams, 0 neither. */
int psl__ftype_stream(psl__ftype_t t);

/* Stream name → kind and uuid (lowercase only).  PSL__STREAM_BAD when malformed. */
int psl__stream_parse(const char *s, size_t len, uint8_t id[PSL_UUID_BYTES]);

/* Parse ev into f: stream, type, at, terr, and the `data` map against the type's keys.
 * Returns 0 or PSL_EINVALID with diag.  An unknown or x- type gets PSL__F_OTHER and only needs
 * `data` to be a map. */
int psl__fact_parse(const psl_event_t *ev, psl__fact_t *f, psl_diag_t *diag);

/* The next attendee of a session fact (i < nattendees, in order). */
typedef struct {
  psl__mp_t r;
  uint32_t left;
} psl__attendees_t;
void psl__attendees_begin(psl__attendees_t *it, const psl__fact_t *f);
int psl__attendees_next(psl__attendees_t *it, uint8_t id[PSL_UUID_BYTES]);

/* ---- participant.c */

static inline int psl__when_cmp(psl_when_t a, psl_when_t b) {
  if (a.at != b.at)
    return a.at < b.at ? -1 : 1;
  if (a.seq != b.seq)
    return a.seq < b.seq ? -1 : 1;
  return 0;
}

/* Fold one effective fact of the participant's own stream (not VOIDED) — without its
 * activity mark: marks need the final placement timeline (psl__participant_mark). */
int psl__participant_fold(psl_participant_t *st, const psl__fact_t *f);
/* Add the activity mark of f (if it is activity) under the current timeline. */
int psl__participant_mark(psl_participant_t *st, const psl__fact_t *f);
int psl__fact_is_activity(const psl__fact_t *f);
/* Recompute the view fields (status, current placement, barriers) from the bookkeeping. */
void psl__participant_resolve(psl_participant_t *st);
/* Placement in effect at `at`: its index (0 referral, i + 1 transfer i) and fields. */
typedef struct {
  uint8_t terr, programme;
  const char *site;
} psl__place_t;
unsigned psl__participant_place_at(const psl_participant_t *st, int64_t at, psl__place_t *pl);
void psl__participant_place_index(const psl_participant_t *st, unsigned idx, psl__place_t *pl);
/* Forget the stream-derived part (keeps id and sessions_attended): before a refold. */
void psl__participant_reset_stream(psl_participant_t *st);
/* Move src's arrays into dst (dst's freed), src left empty. */
void psl__participant_move(psl_participant_t *dst, psl_participant_t *src);

/* ---- counters.c */

/* Additive counters, one vector per key (year, month, terr, programme, site). */
enum {
  PSL__C_INTERVIEWS,
  PSL__C_MINUTES,
  PSL__C_MISSED,
  PSL__C_SESSIONS,
  PSL__C_ATTENDANCE,
  PSL__C_PREF,                            /* + referral kind - 1 */
  PSL__C_OUTCOME = PSL__C_PREF + PSL_NREFKIND, /* + outcome - 1 */
  PSL__C_N = PSL__C_OUTCOME + PSL_NOUTCOME
};

typedef struct {
  uint16_t year;
  uint8_t month, terr, programme; /* programme 0: a session without one */
  char site[PSL_SITE_MAX + 1];
} psl__ckey_t;

/* Byte form of a key (the LMDB key and the memory map's): 5 bytes + site.  Returns length. */
#define PSL__CKEY_MAX (5 + PSL_SITE_MAX)
size_t psl__ckey_encode(const psl__ckey_t *k, uint8_t out[PSL__CKEY_MAX]);
int psl__ckey_decode(const uint8_t *p, size_t len, psl__ckey_t *k);

/* Contribution of one effective fact of a participant stream, under st's timeline.
 * Returns 1 and fills key and vec (zeroed first) if the fact counts, else 0. */
int psl__contrib_participant(const psl_participant_t *st, const psl__fact_t *f,
                             psl__ckey_t *key, int64_t vec[PSL__C_N]);
/* Contribution of a session.held record. */
void psl__contrib_session(int64_t at, uint8_t terr, uint8_t programme, const char *site,
                          uint32_t nattendees, psl__ckey_t *key, int64_t vec[PSL__C_N]);

/* One placement with activity in a year: months as bits (bit month - 1). */
typedef struct {
  uint8_t terr, programme;
  uint16_t months;
  char site[PSL_SITE_MAX + 1];
} psl__yplace_t;

/* A participant's per-person facts for one year: what the distinct figures need. */
typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  int year;
  uint8_t gender, education, rsa, exit_reason;
  int birth_year;
  int64_t referred_at, activated_at, exited_at;
  int64_t housing_at, homeless_at, care_at;
  uint8_t exit_employment, exit_training;
  int ref_place, exit_place; /* index into places, -1 when not in this year */
  uint8_t ref_month, exit_month;
  psl__yplace_t *places;
  size_t nplaces;
} psl__year_t;

/* The years in which st has activity (ascending, unique), up to max; returns the count. */
size_t psl__participant_years(const psl_participant_t *st, int *years, size_t max);
/* Whether st yields per-person facts at all (known and not merged). */
int psl__participant_counts(const psl_participant_t *st);
/* st's facts for year (places allocated; psl__year_free).  PSL_ENOMEM. */
int psl__year_make(const psl_participant_t *st, int year, psl__year_t *y);
void psl__year_free(psl__year_t *y);
int psl__year_equal(const psl__year_t *a, const psl__year_t *b);

/* An aggregation in progress: the counters and what every person-year needs of the query,
 * computed once (calendar arithmetic per record was a third of a query's time). */
typedef struct {
  psl_counters_t *c;
  uint16_t mask;     /* months of the period as bits */
  int64_t end;       /* the period's end */
  int64_t stop;      /* end, or now_ms if earlier: for months followed */
  uint8_t last_code; /* year entries' month codes of dates before end: 1..last_code (codec.c) */
  uint8_t site_len;  /* strlen(c->q.site) */
  uint8_t ngender, neducation, nexit;    /* code table sizes, to check entries against */
  uint8_t isced[PSL_CODE_MAX + 1];       /* ISCED group by education code */
} psl__agg_t;
void psl__agg_begin(psl__agg_t *a, psl_counters_t *c, const psl_counters_query_t *q);
/* Accumulate one person-year, and one counter vector. */
void psl__agg_year(const psl__agg_t *a, const psl__year_t *y);
int psl__ckey_matches(const psl_counters_query_t *q, const psl__ckey_t *k);
void psl__agg_vec(psl_counters_t *c, const int64_t vec[PSL__C_N]);
/* Accumulate every person of a year block (codec.c) straight from its bytes.  PSL_ECORRUPT. */
int psl__agg_block(const psl__agg_t *a, const uint8_t *p, size_t len);
void psl__counters_start(psl_counters_t *c, const psl_counters_query_t *q);

/* ---- codec.c: byte layouts (documented there). */

typedef struct {
  uint8_t *p;
  size_t len, cap;
  int err;
} psl__out_t;
void psl__out_bytes(psl__out_t *o, const void *p, size_t n);
void psl__out_u8(psl__out_t *o, uint8_t v);
void psl__out_u16(psl__out_t *o, uint16_t v);
void psl__out_u32(psl__out_t *o, uint32_t v);
void psl__out_u64(psl__out_t *o, uint64_t v);
void psl__out_free(psl__out_t *o);

int psl__participant_encode(psl__out_t *o, const psl_participant_t *st);
int psl__participant_decode(const uint8_t *p, size_t len, psl_participant_t *st);
/* Year blocks (proj_year): the compact per-year entries of a run of people, ids ascending. */
enum { /* offsets in an entry's fixed head (codec.c) */
  PSL__YE_GENDER = 0, PSL__YE_EDUCATION = 1, PSL__YE_EXIT_REASON = 2, PSL__YE_FLAGS = 3,
  PSL__YE_REF_MONTH = 4, PSL__YE_EXIT_MONTH = 5, PSL__YE_ACTIVATED = 6, PSL__YE_HOUSING = 7,
  PSL__YE_HOMELESS = 8, PSL__YE_CARE = 9, PSL__YE_BIRTH_YEAR = 10, PSL__YE_NPLACES = 12,
  PSL__YE_REF_PLACE = 14, PSL__YE_EXIT_PLACE = 16, PSL__YE_REFERRED_AT = 18,
  PSL__YE_EXITED_AT = 26, PSL__YE_HEAD = 34
};
enum { PSL__YE_RSA = 1, PSL__YE_EXIT_EMPLOYMENT = 2, PSL__YE_EXIT_TRAINING = 4 };
/* Month codes of a date in an entry's year: none, before the year, month m = BEFORE + m, after. */
enum { PSL__YE_CODE_NONE = 0, PSL__YE_CODE_BEFORE = 1, PSL__YE_CODE_AFTER = 14 };
#define PSL__YE_NO_PLACE 0xffffu
typedef struct {
  const uint8_t *ids;      /* n × 16, ascending */
  const uint8_t *entries;  /* n entries, in the ids' order */
  const uint8_t *end;
  uint32_t n;
} psl__yblock_t;
typedef struct {
  const uint8_t *p;      /* the entry (its head: PSL__YE_HEAD bytes) */
  const uint8_t *places; /* its nplaces places */
  size_t nplaces, len;   /* len: of the whole entry */
} psl__yentry_t;
/* y's entry appended to o.  PSL_ENOMEM, PSL_EINVALID (more places than an entry holds). */
int psl__yentry_encode(psl__out_t *o, const psl__year_t *y);
/* The entry at p (left bytes at most), its codes, counts and lengths checked.  PSL_ECORRUPT. */
int psl__yentry_parse(const uint8_t *p, size_t left, psl__yentry_t *e);
/* The place at p of a parsed entry into pl; returns the next place. */
const uint8_t *psl__yplace_read(const uint8_t *p, psl__yplace_t *pl);
/* A block's header and ids checked (not its entries).  PSL_ECORRUPT. */
int psl__yblock_open(const uint8_t *p, size_t len, psl__yblock_t *b);
/* Index of id in b (1 found) or where it would go (0). */
int psl__yblock_find(const psl__yblock_t *b, const uint8_t id[PSL_UUID_BYTES], uint32_t *i);
/* b (NULL: an empty block) with id's entry set to entry[0..len) (entry NULL: removed),
 * written to o (o->len 0: the block is now empty).  PSL_ECORRUPT, PSL_ENOMEM. */
int psl__yblock_splice(psl__out_t *o, const psl__yblock_t *b, const uint8_t id[PSL_UUID_BYTES],
                       const uint8_t *entry, size_t len);
/* Where to split b (n >= 2) in two halves of about the same bytes: 1 <= *i < n. */
int psl__yblock_middle(const psl__yblock_t *b, uint32_t *i);
/* Entries [from, to) of b as a block, written to o. */
int psl__yblock_slice(psl__out_t *o, const psl__yblock_t *b, uint32_t from, uint32_t to);
/* A block of n people (ids ascending), written to o. */
typedef struct {
  const uint8_t *id, *entry;
  size_t len;
} psl__yitem_t;
int psl__yblock_build(psl__out_t *o, const psl__yitem_t *items, size_t n);
void psl__vec_encode(const int64_t vec[PSL__C_N], uint8_t out[PSL__C_N * 8]);
int psl__vec_decode(const uint8_t *p, size_t len, int64_t vec[PSL__C_N]);

/* ---- Sessions: the effective session.held records of one session stream. */

typedef struct {
  uint8_t ev_id[PSL_UUID_BYTES];
  psl_when_t when;
  uint8_t terr, programme;
  char site[PSL_SITE_MAX + 1];
  uint32_t n;
  uint8_t (*attendees)[PSL_UUID_BYTES];
} psl__held_t;

typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  psl__held_t *held;
  size_t n, cap;
} psl__session_t;

void psl__session_free(psl__session_t *s);
/* Append a record for fact f (copies its attendees).  PSL_ENOMEM. */
int psl__session_add(psl__session_t *s, const psl__fact_t *f);
int psl__session_encode(psl__out_t *o, const psl__session_t *s);
int psl__session_decode(const uint8_t *p, size_t len, psl__session_t *s);
int psl__session_equal(const psl__session_t *a, const psl__session_t *b);

/* ---- engine.c: the fold over a store. */

typedef struct psl__store_s psl__store_t;
struct psl__store_s {
  /* The participant's state, created empty (known 0) if absent; valid until put. */
  int (*part_get)(psl__store_t *s, const uint8_t id[PSL_UUID_BYTES], psl_participant_t **st);
  int (*part_put)(psl__store_t *s, psl_participant_t *st);
  int (*sess_get)(psl__store_t *s, const uint8_t id[PSL_UUID_BYTES], psl__session_t **ss);
  int (*sess_put)(psl__store_t *s, psl__session_t *ss);
  int (*counter_add)(psl__store_t *s, const psl__ckey_t *k, const int64_t vec[PSL__C_N]);
  psl_stream_iter_fn iter;
  void *iter_arg;
};

int psl__engine_apply(psl__store_t *s, const psl_event_t *ev);
/* psl__engine_apply in two steps, so that a rebuild parses on another thread than it folds.
 * The fact of ev: 0, or 1 for an event the fold ignores (f->stream_kind is then
 * PSL__STREAM_BAD).  f may point into ev's bytes (attendees): keep them alive. */
int psl__engine_fact(const psl_event_t *ev, psl__fact_t *f);
/* Fold ev whose fact psl__engine_fact gave (a PSL__STREAM_BAD fact is ignored). */
int psl__engine_apply_fact(psl__store_t *s, const psl_event_t *ev, const psl__fact_t *f);

/* ---- store-mem.c internals that the LMDB store's store, compare and verify read. */
void psl__mem_set_seq(psl_proj_t *p, uint64_t seq);
/* Apply n events in order, prefetching the states they will touch (rebuilds).  facts, when
 * not NULL, holds psl__engine_fact of each event (parsed ahead, e.g. on another thread). */
int psl__mem_apply_run(psl_proj_t *p, const psl_event_t *evs, const psl__fact_t *facts, size_t n,
                       psl_stream_iter_fn iter, void *arg);
const psl_participant_t *psl__mem_participant(const psl_proj_t *p,
                                              const uint8_t id[PSL_UUID_BYTES]);
const psl__session_t *psl__mem_session(const psl_proj_t *p, const uint8_t id[PSL_UUID_BYTES]);
/* Counter vector of key k (zeros when absent); returns 1 if present. */
int psl__mem_counter(const psl_proj_t *p, const psl__ckey_t *k, int64_t vec[PSL__C_N]);
/* Every item: what 0 participants (psl_participant_t), 1 sessions (psl__session_t),
 * 2 counter keys (psl__ckey_t).  Hash order. */
enum { PSL__MEM_PARTS, PSL__MEM_SESSIONS, PSL__MEM_COUNTERS };
int psl__mem_each(const psl_proj_t *p, int what, int (*fn)(void *arg, const void *item),
                  void *arg);
int psl__mem_counters(const psl_proj_t *p, const psl_counters_query_t *q, psl_counters_t *out);

/* ---- store-lmdb.c, lmdb-query.c, lmdb-rebuild.c: the LMDB store's shared parts (layouts
 * documented at the top of store-lmdb.c). */

#include <lmdb.h>

/* proj_meta "format": these layouts, codec.c's records and codes.c's tables.  Another value
 * makes the open drop the databases and rebuild them. */
#define PSL__PROJ_FORMAT 4
/* proj_stream key: kind ('p' or 's') ‖ stream id. */
#define PSL__SKEY_BYTES (1 + PSL_UUID_BYTES)

struct psl_projdb_s {
  MDB_dbi part, sess, counters, year, terr, meta, stream;
  MDB_dbi log_events;
  int have_log; /* the env holds a log (its `events` database) */
  /* writer scratch (apply is single-threaded) */
  psl_participant_t cur;
  /* cur as decoded, as far as its index entries go: scalars, and its marks and transfers
   * copied (referrals NULL).  Most events change none of it (an interview in a month already
   * marked), and then part_put writes the state alone. */
  psl_participant_t old;
  size_t cap_old_marks, cap_old_transfers;
  psl__session_t cur_sess;
  psl__out_t out;
  psl__out_t yentry, yblock, ysplit; /* a year entry, the block it goes into, a half of it */
};

/* Where a stream iterator reads: the log's `events` through txn. */
typedef struct {
  psl_projdb_t *db;
  MDB_txn *txn;
} psl__logread_t;

static inline void psl__be16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void psl__be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}
static inline uint64_t psl__get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

int psl__db_err(int mdb_rc); /* LMDB code → PSL_E* (0 stays 0) */
int psl__db_format_ok(psl_projdb_t *db, MDB_txn *txn);
int psl__db_set_seq(psl_projdb_t *db, MDB_txn *txn, uint64_t seq, int format);
int psl__db_years_of(const psl_participant_t *st, psl__year_t **out, size_t *n, size_t *cap);
/* Bytes of a year block past which an insert splits it (one person's entry excepted).  A
 * query reads a year's people at the speed of memory when they lie in few long runs: a
 * block past ~2 KB lies in LMDB overflow pages, which are contiguous (on bench-proj's log,
 * blocks of 12-16 KB took an all-territory query to 1.1 ms, against 2.8 ms for ~1 KB ones).
 * Each update rewrites its block, though: this bounds that copy whatever the number of
 * people.  A rebuild fills blocks to 3/4, so that the inserts after it split few. */
#define PSL__YBLOCK_MAX_DEFAULT (16 * 1024)
#define PSL__YBLOCK_MAX (psl__test_yblock_max ? psl__test_yblock_max : PSL__YBLOCK_MAX_DEFAULT)
#define PSL__YBLOCK_FILL (PSL__YBLOCK_MAX / 4 * 3)

/* Test knobs, 0 (the default) in production: a test sets them in its own process (each
 * runs forked) to reach paths that real sizes reach only on big logs — year blocks that
 * split (store-lmdb.c) with 200, a rebuild that spans many chunks (rebuild-log.c) with a few
 * KiB per chunk. */
extern size_t psl__test_yblock_max;
extern size_t psl__test_rebuild_chunk;
/* proj_year key: year ‖ terr ‖ id (a block's lower bound). */
#define PSL__YKEY_BYTES (3 + PSL_UUID_BYTES)
void psl__db_year_key(uint8_t key[PSL__YKEY_BYTES], int year, uint8_t terr,
                      const uint8_t id[PSL_UUID_BYTES]);
/* Set y's entries (one per territory of its places, and terr 0), replacing old's (NULL: none)
 * and removing those of old's territories that y lacks; y NULL: remove old's. */
int psl__db_year_write(psl_projdb_t *db, MDB_txn *txn, const psl__year_t *old,
                       const psl__year_t *y);
int psl__db_caseload_write(psl_projdb_t *db, MDB_txn *txn, uint8_t terr,
                           const uint8_t id[PSL_UUID_BYTES], int status, int put);
/* A record of `events` (hash ‖ canonical) into ev, zero-copy.  PSL_ECORRUPT. */
int psl__db_decode_record(const MDB_val *v, psl_event_t *ev);
/* Event seq of `events` into fn. */
int psl__db_with_event(psl__logread_t *lr, uint64_t seq, psl_event_fn fn, void *fnarg);
/* The proj_stream key of a stream; 0 if it is not a participant or session stream. */
size_t psl__db_stream_key(psl_str_t stream, uint8_t key[PSL__SKEY_BYTES]);
/* psl_stream_iter_fn over proj_stream (arg: a psl__logread_t). */
int psl__db_index_stream_iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                              void *fnarg);

/* ---- report.c: the report from a query function and the year's places. */
int psl__report_build(int year, int terr,
                      int (*query)(void *arg, const psl_counters_query_t *q, psl_counters_t *c),
                      int (*places)(void *arg, int year,
                                    int (*fn)(void *fnarg, const psl__yplace_t *pl), void *fnarg),
                      void *arg, psl_report_t *out);

/* ---- json.c helpers */
int psl__json_str(psl_buf_t *out, const char *s);
int psl__json_printf(psl_buf_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The figures of c, and the query's echo, as members of an object (no braces). */
int psl__counters_members(psl_buf_t *out, const psl_counters_t *c);
int psl__query_members(psl_buf_t *out, const psl_counters_query_t *q);

#endif /* PSL_DOMAIN_INT_H */
