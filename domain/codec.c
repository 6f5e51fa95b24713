/*
 * codec.c — byte layouts of what the LMDB store keeps (store-lmdb.c names the databases).
 * Integers little-endian; a `when` is at (i64) ‖ seq (u64); a site is len (u8, ≤ 48) ‖ bytes;
 * codes are their table numbers (codes.c: append-only tables).  Every record starts with a
 * version byte (2; store-lmdb.c's PROJ_FORMAT changes with it).  Decoders check every count against the bytes left and every code
 * against its table, and answer PSL_ECORRUPT otherwise: the files are ours, but a damaged
 * one must not become an out-of-bounds read.
 *
 * Participant state (proj_part; the key is the id; view fields are recomputed on decode):
 *   u8 version | u8 flags (1 known, 2 merged, 4 erased, 8 rsa)
 *   u8 gender education source justice exit_reason ref_terr ref_programme care(0xff = none)
 *   u16 birth_year | u32 interviews missed sessions_attended | u64 interview_minutes
 *   i64 last_interview referred_at activated_at exited_at housing_at homeless_at care_at
 *       employment_at training_at max_at
 *   when ref justice care exit merged | into (16) | u32 outcomes[8]
 *   u8 n × barrier: u8 code, u8 state (1 open, 2 lifted), when — only barriers ever named
 *   site ref_site
 *   u32 n × referral: ref (16) u8 referred kind partner_kind status, when referred, updated
 *   u32 n × transfer: when, u8 terr programme, site
 *   u32 n × u32 mark
 *
 * Year block (proj_year; the key holds year, terr and a bucket of ids: store-lmdb.c): the
 * per-year facts of the bucket's people, packed so that a counters query walks a few
 * thousand contiguous values for a year rather than one LMDB record per person (the cost of
 * that query was the LMDB walk and a cache miss per record):
 *   u8 version | u32 n (>= 1) | n × participant id (16), ascending | n × entry, same order
 * The ids come first so that a query, which needs none, skips them whole.
 * Entry: a fixed head that the query reads in place (offsets PSL__YE_*), then its places:
 *    0 u8 gender   1 u8 education   2 u8 exit_reason   3 u8 flags (1 rsa, 2 exit_employment,
 *      4 exit_training)   4 u8 ref_month   5 u8 exit_month (1..12; 0 with no such place)
 *    6 u8 month codes of activated_at, 7 housing_at, 8 homeless_at, 9 care_at
 *   10 u16 birth_year   12 u16 nplaces   14 u16 ref_place   16 u16 exit_place (0xffff: none)
 *   18 i64 referred_at   26 i64 exited_at   (exact: months followed divides their distance)
 *   34 nplaces × place: u8 terr programme, u16 months (bit m - 1), site
 * A month code keeps of a date only what the counters compare it with — a period's end,
 * which is always the start of a month of the entry's year or of the next January — so
 * that the query needs no calendar: 0 none, 1 before the year, 1 + m in month m, 14 after
 * the year; then "d < the end of a period whose last month is m" is 1 <= code <= m + 1.
 *
 * Session (proj_sess; the key is the session id):
 *   u8 version | u32 n × held: event id (16), when, u8 terr programme, site,
 *   u32 attendees, attendees × 16 bytes
 *
 * Counter vector (proj_counters): PSL__C_N × i64.
 */
#include <stdlib.h>

#include "psl_domain_int.h"

#define VERSION 2

void psl__out_bytes(psl__out_t *o, const void *p, size_t n) {
  if (o->err)
    return;
  if (o->len + n > o->cap) {
    size_t ncap = o->cap ? o->cap : 256;
    while (ncap < o->len + n)
      ncap *= 2;
    uint8_t *q = realloc(o->p, ncap);
    if (!q) {
      o->err = PSL_ENOMEM;
      return;
    }
    o->p = q;
    o->cap = ncap;
  }
  if (n)
    memcpy(o->p + o->len, p, n);
  o->len += n;
}

void psl__out_u8(psl__out_t *o, uint8_t v) { psl__out_bytes(o, &v, 1); }

static void out_le(psl__out_t *o, uint64_t v, unsigned n) {
  uint8_t b[8];
  for (unsigned i = 0; i < n; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  psl__out_bytes(o, b, n);
}

void psl__out_u16(psl__out_t *o, uint16_t v) { out_le(o, v, 2); }
void psl__out_u32(psl__out_t *o, uint32_t v) { out_le(o, v, 4); }
void psl__out_u64(psl__out_t *o, uint64_t v) { out_le(o, v, 8); }

void psl__out_free(psl__out_t *o) {
  free(o->p);
  memset(o, 0, sizeof *o);
}

static void out_when(psl__out_t *o, psl_when_t w) {
  psl__out_u64(o, (uint64_t)w.at);
  psl__out_u64(o, w.seq);
}

static void out_site(psl__out_t *o, const char *site) {
  size_t n = strnlen(site, PSL_SITE_MAX);
  psl__out_u8(o, (uint8_t)n);
  psl__out_bytes(o, site, n);
}

/* ---- Reader with a sticky error. */

typedef struct {
  const uint8_t *p, *end;
  int err;
} in_t;

static int in_need(in_t *in, size_t n) {
  if (in->err || (size_t)(in->end - in->p) < n) {
    in->err = PSL_ECORRUPT;
    return 0;
  }
  return 1;
}

static uint64_t in_le(in_t *in, unsigned n) {
  uint64_t v = 0;
  if (!in_need(in, n))
    return 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(&v, in->p, n); /* queries decode tens of thousands of records: no byte loop */
#else
  for (unsigned i = 0; i < n; i++)
    v |= (uint64_t)in->p[i] << (8 * i);
#endif
  in->p += n;
  return v;
}

static uint8_t in_u8(in_t *in) { return (uint8_t)in_le(in, 1); }
static uint16_t in_u16(in_t *in) { return (uint16_t)in_le(in, 2); }
static uint32_t in_u32(in_t *in) { return (uint32_t)in_le(in, 4); }
static int64_t in_i64(in_t *in) { return (int64_t)in_le(in, 8); }

static psl_when_t in_when(in_t *in) {
  psl_when_t w;
  w.at = in_i64(in);
  w.seq = in_le(in, 8);
  return w;
}

static void in_bytes(in_t *in, void *dst, size_t n) {
  if (n == 0 || !in_need(in, n))
    return;
  memcpy(dst, in->p, n);
  in->p += n;
}

/* A site: its length is checked (memory safety); its characters are not — they were checked
 * when the event was validated, and every output escapes them anyway. */
static void in_site(in_t *in, char site[PSL_SITE_MAX + 1], int allow_empty) {
  uint8_t n = in_u8(in);
  site[0] = '\0';
  if (n > PSL_SITE_MAX || (n == 0 && !allow_empty)) {
    in->err = PSL_ECORRUPT;
    return;
  }
  if (!in_need(in, n))
    return;
  /* word by word: gcc inlines a variable-length memcpy here as `rep movs`, whose start-up
   * cost was a sixth of a counters query */
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    memcpy(site + i, in->p + i, 8);
  for (; i < n; i++)
    site[i] = (char)in->p[i];
  site[n] = '\0';
  in->p += n;
}

/* A code of table t, or 0.  Counts cached: decoding runs per record of a query. */
static uint8_t in_code(in_t *in, psl_code_table_t t) {
  static _Thread_local int count[PSL_CODE__N];
  uint8_t c = in_u8(in);
  if (!count[t])
    count[t] = psl_code_count(t);
  if (c > count[t])
    in->err = PSL_ECORRUPT;
  return c;
}

/* A count of elements of at least min_size bytes each that must fit in what is left. */
static uint32_t in_count(in_t *in, size_t min_size) {
  uint32_t n = in_u32(in);
  if (!in->err && (uint64_t)n * min_size > (uint64_t)(in->end - in->p))
    in->err = PSL_ECORRUPT;
  return in->err ? 0 : n;
}

/* ---- Participant state. */

int psl__participant_encode(psl__out_t *o, const psl_participant_t *st) {
  psl__out_u8(o, VERSION);
  psl__out_u8(o, (uint8_t)((st->known ? 1 : 0) | (st->merged ? 2 : 0) | (st->erased ? 4 : 0) |
                           (st->rsa ? 8 : 0)));
  uint8_t codes[] = {st->gender,      st->education,   st->source,
                     st->justice,     st->exit_reason, st->ref_terr,
                     st->ref_programme, (uint8_t)(st->care_obligation < 0 ? 0xff : st->care_obligation)};
  psl__out_bytes(o, codes, sizeof codes);
  psl__out_u16(o, (uint16_t)st->birth_year);
  psl__out_u32(o, st->interviews);
  psl__out_u32(o, st->missed);
  psl__out_u32(o, st->sessions_attended);
  psl__out_u64(o, st->interview_minutes);
  const int64_t dates[] = {st->last_interview, st->referred_at, st->activated_at,
                           st->exited_at,      st->housing_at,  st->homeless_at,
                           st->care_at,        st->employment_at, st->training_at,
                           st->max_at};
  for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++)
    psl__out_u64(o, (uint64_t)dates[i]);
  out_when(o, st->ref_when);
  out_when(o, st->justice_when);
  out_when(o, st->care_when);
  out_when(o, st->exit_when);
  out_when(o, st->merged_when);
  psl__out_bytes(o, st->into, PSL_UUID_BYTES);
  for (int k = 1; k <= PSL_NOUTCOME; k++)
    psl__out_u32(o, st->outcomes[k]);
  uint8_t nb = 0;
  for (int b = 1; b <= PSL_NBARRIER; b++)
    nb += st->barrier_state[b] != 0;
  psl__out_u8(o, nb); /* sparse: a person has a few barriers of sixteen */
  for (int b = 1; b <= PSL_NBARRIER; b++)
    if (st->barrier_state[b]) {
      psl__out_u8(o, (uint8_t)b);
      psl__out_u8(o, st->barrier_state[b]);
      out_when(o, st->barrier_when[b]);
    }
  out_site(o, st->ref_site);
  psl__out_u32(o, (uint32_t)st->nreferrals);
  for (size_t i = 0; i < st->nreferrals; i++) {
    const psl_referral_t *r = &st->referrals[i];
    psl__out_bytes(o, r->ref, PSL_UUID_BYTES);
    uint8_t b[] = {(uint8_t)r->referred, r->kind, r->partner_kind, r->status};
    psl__out_bytes(o, b, sizeof b);
    out_when(o, r->referred_when);
    out_when(o, r->updated_when);
  }
  psl__out_u32(o, (uint32_t)st->ntransfers);
  for (size_t i = 0; i < st->ntransfers; i++) {
    const psl_transfer_t *t = &st->transfers[i];
    out_when(o, t->when);
    psl__out_u8(o, t->terr);
    psl__out_u8(o, t->programme);
    out_site(o, t->site);
  }
  psl__out_u32(o, (uint32_t)st->nmarks);
  for (size_t i = 0; i < st->nmarks; i++)
    psl__out_u32(o, st->marks[i]);
  return o->err;
}

int psl__participant_decode(const uint8_t *p, size_t len, psl_participant_t *st) {
  in_t in = {p, p + len, 0};
  uint8_t id[PSL_UUID_BYTES];
  memcpy(id, st->id, sizeof id);
  psl_participant_free(st);
  psl_participant_init(st, id);
  if (in_u8(&in) != VERSION)
    return PSL_ECORRUPT;
  uint8_t flags = in_u8(&in);
  st->known = flags & 1;
  st->merged = (flags >> 1) & 1;
  st->erased = (flags >> 2) & 1;
  st->rsa = (flags >> 3) & 1;
  st->gender = in_code(&in, PSL_CODE_GENDER);
  st->education = in_code(&in, PSL_CODE_EDUCATION);
  st->source = in_code(&in, PSL_CODE_SOURCE);
  st->justice = in_code(&in, PSL_CODE_JUSTICE);
  st->exit_reason = in_code(&in, PSL_CODE_EXIT_REASON);
  st->ref_terr = in_code(&in, PSL_CODE_TERR);
  st->ref_programme = in_code(&in, PSL_CODE_PROGRAMME);
  uint8_t care = in_u8(&in);
  st->care_obligation = care == 0xff ? -1 : care;
  if (care > 1 && care != 0xff)
    in.err = PSL_ECORRUPT;
  st->birth_year = in_u16(&in);
  st->interviews = in_u32(&in);
  st->missed = in_u32(&in);
  st->sessions_attended = in_u32(&in);
  st->interview_minutes = in_le(&in, 8);
  int64_t *dates[] = {&st->last_interview, &st->referred_at, &st->activated_at,
                      &st->exited_at,      &st->housing_at,  &st->homeless_at,
                      &st->care_at,        &st->employment_at, &st->training_at,
                      &st->max_at};
  for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++)
    *dates[i] = in_i64(&in);
  st->ref_when = in_when(&in);
  st->justice_when = in_when(&in);
  st->care_when = in_when(&in);
  st->exit_when = in_when(&in);
  st->merged_when = in_when(&in);
  in_bytes(&in, st->into, PSL_UUID_BYTES);
  for (int k = 1; k <= PSL_NOUTCOME; k++)
    st->outcomes[k] = in_u32(&in);
  uint8_t nb = in_u8(&in);
  for (uint8_t i = 0; i < nb && !in.err; i++) {
    uint8_t b = in_u8(&in), state = in_u8(&in);
    if (b < 1 || b > PSL_NBARRIER || state < 1 || state > 2 || st->barrier_state[b]) {
      in.err = PSL_ECORRUPT;
      break;
    }
    st->barrier_state[b] = state;
    st->barrier_when[b] = in_when(&in);
  }
  in_site(&in, st->ref_site, !st->known);
  uint32_t n = in_count(&in, 20 + 32);
  if (n && !(st->referrals = calloc(n, sizeof *st->referrals)))
    return PSL_ENOMEM;
  st->cap_referrals = st->nreferrals = n;
  for (size_t i = 0; i < n; i++) {
    psl_referral_t *r = &st->referrals[i];
    in_bytes(&in, r->ref, PSL_UUID_BYTES);
    r->referred = in_u8(&in) != 0;
    r->kind = in_code(&in, PSL_CODE_REFERRAL_KIND);
    r->partner_kind = in_code(&in, PSL_CODE_PARTNER_KIND);
    r->status = in_code(&in, PSL_CODE_REFERRAL_STATUS);
    r->referred_when = in_when(&in);
    r->updated_when = in_when(&in);
  }
  n = in_count(&in, 16 + 3);
  if (n && !(st->transfers = calloc(n, sizeof *st->transfers)))
    return PSL_ENOMEM;
  st->cap_transfers = st->ntransfers = n;
  for (size_t i = 0; i < n; i++) {
    psl_transfer_t *t = &st->transfers[i];
    t->when = in_when(&in);
    t->terr = in_code(&in, PSL_CODE_TERR);
    t->programme = in_code(&in, PSL_CODE_PROGRAMME);
    in_site(&in, t->site, 1);
  }
  n = in_count(&in, 4);
  if (n && !(st->marks = malloc(n * sizeof *st->marks)))
    return PSL_ENOMEM;
  st->cap_marks = st->nmarks = n;
  for (size_t i = 0; i < n; i++)
    st->marks[i] = in_u32(&in);
  if (!in.err && in.p != in.end)
    in.err = PSL_ECORRUPT;
  if (in.err)
    return in.err;
  psl__participant_resolve(st);
  return 0;
}

/* ---- Year blocks. */

static uint64_t le_at(const uint8_t *p, unsigned n) {
  uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(&v, p, n); /* queries read every entry of a year: no byte loop */
#else
  for (unsigned i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
#endif
  return v;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* Month code of date d in year (see the top): what "d < a period's end" needs. */
static uint8_t month_code(int64_t d, int year) {
  if (!d)
    return PSL__YE_CODE_NONE;
  uint32_t mi = psl__at_month_index(d), first = psl__month_index(year, 1);
  if (mi < first)
    return PSL__YE_CODE_BEFORE;
  if (mi >= first + 12)
    return PSL__YE_CODE_AFTER;
  return (uint8_t)(PSL__YE_CODE_BEFORE + 1 + (mi - first));
}

int psl__yentry_encode(psl__out_t *o, const psl__year_t *y) {
  uint8_t h[PSL__YE_HEAD];
  if (y->nplaces >= PSL__YE_NO_PLACE)
    return PSL_EINVALID;
  h[PSL__YE_GENDER] = y->gender;
  h[PSL__YE_EDUCATION] = y->education;
  h[PSL__YE_EXIT_REASON] = y->exit_reason;
  h[PSL__YE_FLAGS] = (uint8_t)((y->rsa ? PSL__YE_RSA : 0) |
                               (y->exit_employment ? PSL__YE_EXIT_EMPLOYMENT : 0) |
                               (y->exit_training ? PSL__YE_EXIT_TRAINING : 0));
  h[PSL__YE_REF_MONTH] = y->ref_place >= 0 ? y->ref_month : 0;
  h[PSL__YE_EXIT_MONTH] = y->exit_place >= 0 ? y->exit_month : 0;
  h[PSL__YE_ACTIVATED] = month_code(y->activated_at, y->year);
  h[PSL__YE_HOUSING] = month_code(y->housing_at, y->year);
  h[PSL__YE_HOMELESS] = month_code(y->homeless_at, y->year);
  h[PSL__YE_CARE] = month_code(y->care_at, y->year);
  put_le(h + PSL__YE_BIRTH_YEAR, (uint16_t)y->birth_year, 2);
  put_le(h + PSL__YE_NPLACES, y->nplaces, 2);
  put_le(h + PSL__YE_REF_PLACE, y->ref_place < 0 ? PSL__YE_NO_PLACE : (unsigned)y->ref_place, 2);
  put_le(h + PSL__YE_EXIT_PLACE, y->exit_place < 0 ? PSL__YE_NO_PLACE : (unsigned)y->exit_place,
         2);
  put_le(h + PSL__YE_REFERRED_AT, (uint64_t)y->referred_at, 8);
  put_le(h + PSL__YE_EXITED_AT, (uint64_t)y->exited_at, 8);
  psl__out_bytes(o, h, sizeof h);
  for (size_t i = 0; i < y->nplaces; i++) {
    psl__out_u8(o, y->places[i].terr);
    psl__out_u8(o, y->places[i].programme);
    psl__out_u16(o, y->places[i].months);
    out_site(o, y->places[i].site);
  }
  return o->err;
}

/* Code table sizes, cached: entries are checked per person a query reads. */
typedef struct {
  uint8_t gender, education, exit, terr, programme;
} counts_t;

static const counts_t *code_counts(void) {
  static _Thread_local counts_t n;
  if (!n.gender) {
    n.education = (uint8_t)psl_code_count(PSL_CODE_EDUCATION);
    n.exit = (uint8_t)psl_code_count(PSL_CODE_EXIT_REASON);
    n.terr = (uint8_t)psl_code_count(PSL_CODE_TERR);
    n.programme = (uint8_t)psl_code_count(PSL_CODE_PROGRAMME);
    n.gender = (uint8_t)psl_code_count(PSL_CODE_GENDER);
  }
  return &n;
}

int psl__yentry_parse(const uint8_t *p, size_t left, psl__yentry_t *e) {
  const counts_t *n = code_counts();
  if (left < PSL__YE_HEAD || p[PSL__YE_GENDER] > n->gender ||
      p[PSL__YE_EDUCATION] > n->education || p[PSL__YE_EXIT_REASON] > n->exit ||
      p[PSL__YE_REF_MONTH] > 12 || p[PSL__YE_EXIT_MONTH] > 12 ||
      p[PSL__YE_ACTIVATED] > PSL__YE_CODE_AFTER || p[PSL__YE_HOUSING] > PSL__YE_CODE_AFTER ||
      p[PSL__YE_HOMELESS] > PSL__YE_CODE_AFTER || p[PSL__YE_CARE] > PSL__YE_CODE_AFTER)
    return PSL_ECORRUPT;
  size_t np = (size_t)le_at(p + PSL__YE_NPLACES, 2);
  size_t rp = (size_t)le_at(p + PSL__YE_REF_PLACE, 2), xp = (size_t)le_at(p + PSL__YE_EXIT_PLACE, 2);
  if ((rp != PSL__YE_NO_PLACE && rp >= np) || (xp != PSL__YE_NO_PLACE && xp >= np))
    return PSL_ECORRUPT;
  const uint8_t *q = p + PSL__YE_HEAD, *end = p + left;
  for (size_t i = 0; i < np; i++) {
    if (end - q < 5 || q[0] > n->terr || q[1] > n->programme || q[4] > PSL_SITE_MAX ||
        (size_t)(end - q) < 5u + q[4])
      return PSL_ECORRUPT;
    q += 5 + q[4];
  }
  e->p = p;
  e->places = p + PSL__YE_HEAD;
  e->nplaces = np;
  e->len = (size_t)(q - p);
  return 0;
}

const uint8_t *psl__yplace_read(const uint8_t *p, psl__yplace_t *pl) {
  pl->terr = p[0];
  pl->programme = p[1];
  pl->months = (uint16_t)le_at(p + 2, 2);
  memcpy(pl->site, p + 5, p[4]);
  pl->site[p[4]] = '\0';
  return p + 5 + p[4];
}

/* A block's header: version, n (u32). */
#define YBLOCK_HEAD 5

int psl__yblock_open(const uint8_t *p, size_t len, psl__yblock_t *b) {
  if (len < YBLOCK_HEAD || p[0] != VERSION)
    return PSL_ECORRUPT;
  uint32_t n = (uint32_t)le_at(p + 1, 4);
  /* every entry has at least its head */
  if (n == 0 || (uint64_t)n * (PSL_UUID_BYTES + PSL__YE_HEAD) > len - YBLOCK_HEAD)
    return PSL_ECORRUPT;
  b->n = n;
  b->ids = p + YBLOCK_HEAD;
  b->entries = b->ids + (size_t)n * PSL_UUID_BYTES;
  b->end = p + len;
  return 0;
}

int psl__yblock_find(const psl__yblock_t *b, const uint8_t id[PSL_UUID_BYTES], uint32_t *i) {
  uint32_t lo = 0, hi = b ? b->n : 0;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    int c = memcmp(b->ids + (size_t)mid * PSL_UUID_BYTES, id, PSL_UUID_BYTES);
    if (c == 0) {
      *i = mid;
      return 1;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *i = lo;
  return 0;
}

/* Bytes from entry `from` to entry `to` (from <= to <= n), starting at p. */
static int entries_span(const psl__yblock_t *b, const uint8_t *p, uint32_t from, uint32_t to,
                        const uint8_t **out) {
  psl__yentry_t e;
  for (uint32_t i = from; i < to; i++) {
    int rc = psl__yentry_parse(p, (size_t)(b->end - p), &e);
    if (rc)
      return rc;
    p += e.len;
  }
  *out = p;
  return 0;
}

int psl__yblock_splice(psl__out_t *o, const psl__yblock_t *b, const uint8_t id[PSL_UUID_BYTES],
                       const uint8_t *entry, size_t len) {
  uint32_t i, n = b ? b->n : 0;
  int found = psl__yblock_find(b, id, &i);
  uint32_t nn = n - (uint32_t)found + (entry ? 1 : 0);
  const uint8_t *before = NULL, *after = NULL, *end = NULL;
  o->len = 0;
  if (nn == 0)
    return 0;
  if (b) {
    /* the entries after id's are copied as they are, unread: every reader checks them */
    int rc = entries_span(b, b->entries, 0, i, &before);
    if (!rc)
      rc = entries_span(b, before, i, i + (uint32_t)found, &after);
    if (rc)
      return rc;
    end = b->end;
  }
  psl__out_u8(o, VERSION);
  psl__out_u32(o, nn);
  if (b)
    psl__out_bytes(o, b->ids, (size_t)i * PSL_UUID_BYTES);
  if (entry)
    psl__out_bytes(o, id, PSL_UUID_BYTES);
  if (b)
    psl__out_bytes(o, b->ids + (size_t)(i + (uint32_t)found) * PSL_UUID_BYTES,
                   (size_t)(n - i - (uint32_t)found) * PSL_UUID_BYTES);
  if (b)
    psl__out_bytes(o, b->entries, (size_t)(before - b->entries));
  if (entry)
    psl__out_bytes(o, entry, len);
  if (b)
    psl__out_bytes(o, after, (size_t)(end - after));
  return o->err;
}

int psl__yblock_middle(const psl__yblock_t *b, uint32_t *i) {
  size_t half = (size_t)(b->end - b->entries) / 2, at = 0;
  const uint8_t *p = b->entries;
  psl__yentry_t e;
  *i = 1;
  for (uint32_t j = 0; j + 1 < b->n; j++) {
    int rc = psl__yentry_parse(p, (size_t)(b->end - p), &e);
    if (rc)
      return rc;
    p += e.len;
    at += e.len;
    *i = j + 1;
    if (at >= half)
      break;
  }
  return 0;
}

int psl__yblock_slice(psl__out_t *o, const psl__yblock_t *b, uint32_t from, uint32_t to) {
  const uint8_t *first, *last;
  int rc = from < to && to <= b->n ? entries_span(b, b->entries, 0, from, &first) : PSL_ECORRUPT;
  if (!rc)
    rc = entries_span(b, first, from, to, &last);
  if (rc)
    return rc;
  o->len = 0;
  psl__out_u8(o, VERSION);
  psl__out_u32(o, to - from);
  psl__out_bytes(o, b->ids + (size_t)from * PSL_UUID_BYTES, (size_t)(to - from) * PSL_UUID_BYTES);
  psl__out_bytes(o, first, (size_t)(last - first));
  return o->err;
}

int psl__yblock_build(psl__out_t *o, const psl__yitem_t *items, size_t n) {
  o->len = 0;
  if (n == 0 || n > UINT32_MAX)
    return PSL_EINVALID;
  psl__out_u8(o, VERSION);
  psl__out_u32(o, (uint32_t)n);
  for (size_t i = 0; i < n; i++)
    psl__out_bytes(o, items[i].id, PSL_UUID_BYTES);
  for (size_t i = 0; i < n; i++)
    psl__out_bytes(o, items[i].entry, items[i].len);
  return o->err;
}

/* ---- Sessions. */

void psl__session_free(psl__session_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->n; i++)
    free(s->held[i].attendees);
  free(s->held);
  s->held = NULL;
  s->n = s->cap = 0;
}

int psl__session_add(psl__session_t *s, const psl__fact_t *f) {
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 2;
    psl__held_t *h = realloc(s->held, ncap * sizeof *h);
    if (!h)
      return PSL_ENOMEM;
    s->held = h;
    s->cap = ncap;
  }
  psl__held_t *h = &s->held[s->n];
  memset(h, 0, sizeof *h);
  memcpy(h->ev_id, f->id, PSL_UUID_BYTES);
  h->when = f->when;
  h->terr = f->terr;
  h->programme = f->programme;
  memcpy(h->site, f->site, sizeof h->site);
  if (f->nattendees) {
    h->attendees = malloc((size_t)f->nattendees * PSL_UUID_BYTES);
    if (!h->attendees)
      return PSL_ENOMEM;
    psl__attendees_t it;
    psl__attendees_begin(&it, f);
    while (h->n < f->nattendees && psl__attendees_next(&it, h->attendees[h->n]))
      h->n++;
  }
  s->n++;
  return 0;
}

int psl__session_encode(psl__out_t *o, const psl__session_t *s) {
  psl__out_u8(o, VERSION);
  psl__out_u32(o, (uint32_t)s->n);
  for (size_t i = 0; i < s->n; i++) {
    const psl__held_t *h = &s->held[i];
    psl__out_bytes(o, h->ev_id, PSL_UUID_BYTES);
    out_when(o, h->when);
    psl__out_u8(o, h->terr);
    psl__out_u8(o, h->programme);
    out_site(o, h->site);
    psl__out_u32(o, h->n);
    psl__out_bytes(o, h->attendees, (size_t)h->n * PSL_UUID_BYTES);
  }
  return o->err;
}

int psl__session_decode(const uint8_t *p, size_t len, psl__session_t *s) {
  in_t in = {p, p + len, 0};
  psl__session_free(s);
  if (in_u8(&in) != VERSION)
    return PSL_ECORRUPT;
  uint32_t n = in_count(&in, 16 + 16 + 2 + 1 + 4);
  if (in.err)
    return in.err;
  if (n && !(s->held = calloc(n, sizeof *s->held)))
    return PSL_ENOMEM;
  s->cap = n;
  for (size_t i = 0; i < n && !in.err; i++) {
    psl__held_t *h = &s->held[i];
    s->n++;
    in_bytes(&in, h->ev_id, PSL_UUID_BYTES);
    h->when = in_when(&in);
    h->terr = in_code(&in, PSL_CODE_TERR);
    h->programme = in_code(&in, PSL_CODE_PROGRAMME);
    in_site(&in, h->site, 0);
    uint32_t na = in_count(&in, PSL_UUID_BYTES);
    if (in.err)
      break;
    if (na && !(h->attendees = malloc((size_t)na * PSL_UUID_BYTES))) {
      in.err = PSL_ENOMEM;
      break;
    }
    h->n = na;
    in_bytes(&in, h->attendees, (size_t)na * PSL_UUID_BYTES);
  }
  if (!in.err && in.p != in.end)
    in.err = PSL_ECORRUPT;
  if (in.err)
    psl__session_free(s);
  return in.err;
}

int psl__session_equal(const psl__session_t *a, const psl__session_t *b) {
  if (a->n != b->n)
    return 0;
  for (size_t i = 0; i < a->n; i++) {
    const psl__held_t *x = &a->held[i], *y = &b->held[i];
    if (memcmp(x->ev_id, y->ev_id, PSL_UUID_BYTES) || x->when.at != y->when.at ||
        x->when.seq != y->when.seq || x->terr != y->terr || x->programme != y->programme ||
        strcmp(x->site, y->site) || x->n != y->n ||
        (x->n && memcmp(x->attendees, y->attendees, (size_t)x->n * PSL_UUID_BYTES)))
      return 0;
  }
  return 1;
}

/* ---- Counter vectors. */

void psl__vec_encode(const int64_t vec[PSL__C_N], uint8_t out[PSL__C_N * 8]) {
  for (int i = 0; i < PSL__C_N; i++)
    for (int j = 0; j < 8; j++)
      out[i * 8 + j] = (uint8_t)((uint64_t)vec[i] >> (8 * j));
}

int psl__vec_decode(const uint8_t *p, size_t len, int64_t vec[PSL__C_N]) {
  if (len != PSL__C_N * 8)
    return PSL_ECORRUPT;
  for (int i = 0; i < PSL__C_N; i++) {
    uint64_t v = 0;
    for (int j = 0; j < 8; j++)
      v |= (uint64_t)p[i * 8 + j] << (8 * j);
    vec[i] = (int64_t)v;
  }
  return 0;
}
