/*
 * fact.c — an event read into a fact: one walk over its `data` map that both validates it
 * against DOMAIN.md and extracts what the projections fold.  Validation (validate.c) and the
 * fold (engine.c) use this same walk, so a key the server accepted is a key the fold reads.
 *
 * Each type has a table of its keys: name, value kind, code table, required.  Keys not in the
 * table are skipped (forward compatibility) — except the identifying ones (`name`, `phone`,
 * `birth_date`, `notes`), which belong in `pii` to be encrypted and are refused in `data`.
 * A nil value for an optional key means "absent".  Diagnostics name the key, never the value.
 */
#include <stdio.h>
#include <stdlib.h>

#include "psl_domain_int.h"

typedef enum {
  V_CODE,  /* str in a code table */
  V_SITE,  /* str, psl_site_valid */
  V_INT,   /* int within [min, max] */
  V_BOOL,
  V_STR,   /* str (free text, bounded by PSL_MAX_STR) */
  V_STRS,  /* array of str */
  V_CODES, /* array of codes (distinct) */
  V_UUID,  /* bin 16 */
  V_UUIDS  /* array of bin 16 (distinct) */
} vkind_t;

typedef enum {
  K_PROGRAMME, K_SITE, K_SOURCE, K_JUSTICE, K_GENDER, K_BIRTH_YEAR, K_EDUCATION, K_RSA,
  K_KIND, K_OBJECTIVES, K_BARRIERS, K_STRENGTHS, K_CARE, K_BARRIER, K_HOW, K_MINUTES,
  K_PLACE, K_TOPICS, K_REF, K_PARTNER_KIND, K_PARTNER, K_STATUS, K_TERR, K_REASON, K_INTO,
  K_OF, K_SEQUENCE, K_ATTENDEES
} kid_t;

typedef struct {
  const char *name;
  kid_t id;
  vkind_t kind;
  psl_code_table_t table; /* V_CODE, V_CODES */
  int required;
  int64_t min, max; /* V_INT */
} keyspec_t;

#define REQ 1
#define OPT 0
#define CODE(n, id, t, r) {n, id, V_CODE, t, r, 0, 0}
#define OF(n, id, k, r) {n, id, k, PSL_CODE__N, r, 0, 0}

static const keyspec_t referred_keys[] = {
    CODE("programme", K_PROGRAMME, PSL_CODE_PROGRAMME, REQ),
    OF("site", K_SITE, V_SITE, REQ),
    CODE("source", K_SOURCE, PSL_CODE_SOURCE, REQ),
    CODE("justice", K_JUSTICE, PSL_CODE_JUSTICE, REQ),
    CODE("gender", K_GENDER, PSL_CODE_GENDER, REQ),
    {"birth_year", K_BIRTH_YEAR, V_INT, PSL_CODE__N, REQ, PSL_BIRTH_YEAR_MIN, PSL_BIRTH_YEAR_MAX},
    CODE("education", K_EDUCATION, PSL_CODE_EDUCATION, REQ),
    OF("rsa", K_RSA, V_BOOL, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t engagement_keys[] = {
    CODE("kind", K_KIND, PSL_CODE_ENGAGEMENT, REQ),
    OF("objectives", K_OBJECTIVES, V_STRS, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t diagnostic_keys[] = {
    {"barriers", K_BARRIERS, V_CODES, PSL_CODE_BARRIER, REQ, 0, 0},
    OF("strengths", K_STRENGTHS, V_STRS, REQ),
    OF("care_obligation", K_CARE, V_BOOL, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t lifted_keys[] = {
    CODE("barrier", K_BARRIER, PSL_CODE_BARRIER, REQ),
    OF("how", K_HOW, V_STR, OPT),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t interview_keys[] = {
    {"minutes", K_MINUTES, V_INT, PSL_CODE__N, REQ, 1, PSL_MINUTES_MAX},
    CODE("place", K_PLACE, PSL_CODE_PLACE, REQ),
    OF("site", K_SITE, V_SITE, OPT),
    OF("topics", K_TOPICS, V_STRS, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t no_keys[] = {{NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t pref_keys[] = {
    OF("ref", K_REF, V_UUID, REQ),
    CODE("partner_kind", K_PARTNER_KIND, PSL_CODE_PARTNER_KIND, REQ),
    CODE("kind", K_KIND, PSL_CODE_REFERRAL_KIND, REQ),
    OF("partner", K_PARTNER, V_STR, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t pupd_keys[] = {
    OF("ref", K_REF, V_UUID, REQ),
    CODE("status", K_STATUS, PSL_CODE_REFERRAL_STATUS, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t outcome_keys[] = {
    CODE("kind", K_KIND, PSL_CODE_OUTCOME, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t transfer_keys[] = {
    CODE("terr", K_TERR, PSL_CODE_TERR, OPT),
    OF("site", K_SITE, V_SITE, OPT),
    CODE("programme", K_PROGRAMME, PSL_CODE_PROGRAMME, OPT),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t justice_keys[] = {
    CODE("justice", K_JUSTICE, PSL_CODE_JUSTICE, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t exited_keys[] = {
    CODE("reason", K_REASON, PSL_CODE_EXIT_REASON, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t merged_keys[] = {
    OF("into", K_INTO, V_UUID, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t voided_keys[] = {
    OF("of", K_OF, V_UUID, REQ),
    OF("reason", K_REASON, V_STR, REQ),
    {NULL, 0, 0, 0, 0, 0, 0}};
static const keyspec_t session_keys[] = {
    CODE("sequence", K_SEQUENCE, PSL_CODE_SEQUENCE, REQ),
    OF("site", K_SITE, V_SITE, REQ),
    {"minutes", K_MINUTES, V_INT, PSL_CODE__N, REQ, 1, PSL_MINUTES_MAX},
    OF("attendees", K_ATTENDEES, V_UUIDS, REQ),
    CODE("programme", K_PROGRAMME, PSL_CODE_PROGRAMME, OPT),
    {NULL, 0, 0, 0, 0, 0, 0}};

#define TYPE(name, stream, keys) {name, sizeof name - 1, stream, keys}
static const struct {
  const char *name;
  size_t len; /* strlen(name): most types are told apart by it alone */
  int stream; /* PSL__STREAM_PARTICIPANT, PSL__STREAM_SESSION, 3 both */
  const keyspec_t *keys;
} types[PSL__F__N] = {
    [PSL__F_OTHER] = TYPE("", 3, no_keys),
    [PSL__F_REFERRED] = TYPE("participant.referred", 1, referred_keys),
    [PSL__F_ENGAGEMENT] = TYPE("engagement.signed", 1, engagement_keys),
    [PSL__F_DIAGNOSTIC] = TYPE("diagnostic.recorded", 1, diagnostic_keys),
    [PSL__F_BARRIER_LIFTED] = TYPE("barrier.lifted", 1, lifted_keys),
    [PSL__F_INTERVIEW] = TYPE("interview.held", 1, interview_keys),
    [PSL__F_MISSED] = TYPE("appointment.missed", 1, no_keys),
    [PSL__F_PARTNER_REFERRED] = TYPE("partner.referred", 1, pref_keys),
    [PSL__F_PARTNER_UPDATED] = TYPE("partner.updated", 1, pupd_keys),
    [PSL__F_OUTCOME] = TYPE("outcome.recorded", 1, outcome_keys),
    [PSL__F_TRANSFERRED] = TYPE("participant.transferred", 1, transfer_keys),
    [PSL__F_JUSTICE] = TYPE("justice.changed", 1, justice_keys),
    [PSL__F_EXITED] = TYPE("participant.exited", 1, exited_keys),
    [PSL__F_MERGED] = TYPE("participant.merged", 1, merged_keys),
    [PSL__F_ERASED] = TYPE("participant.erased", 1, no_keys),
    /* DOMAIN.md lists event.voided with the participant stream; a session recorded in error
     * needs the same correction, so it is accepted in both. */
    [PSL__F_VOIDED] = TYPE("event.voided", 3, voided_keys),
    [PSL__F_SESSION] = TYPE("session.held", 2, session_keys),
};

/* Identifying keys: they travel in `pii`, encrypted with the participant's key. */
static const char *const pii_keys[] = {"name", "phone", "birth_date", "notes"};

/* s[0..len) equals the NUL-terminated name: without a strlen of every candidate (the fold
 * runs this for every event and key, millions of times a second in a rebuild). */
static inline int name_is(const char *name, const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (name[i] != s[i] || name[i] == '\0')
      return 0;
  return name[len] == '\0';
}

psl__ftype_t psl__ftype_of(const char *type, size_t len) {
  if (len == 0 || len > PSL_MAX_TYPE)
    return PSL__F_OTHER;
  for (int t = 1; t < PSL__F__N; t++)
    if (types[t].len == len && memcmp(types[t].name, type, len) == 0)
      return (psl__ftype_t)t;
  return PSL__F_OTHER;
}

const char *psl__ftype_name(psl__ftype_t t) {
  return (unsigned)t < PSL__F__N ? types[t].name : "";
}

int psl__ftype_stream(psl__ftype_t t) { return (unsigned)t < PSL__F__N ? types[t].stream : 0; }

/* Value of a lowercase hex digit, 0xff for anything else. */
static const uint8_t hexval[256] = {
    ['0'] = 0 + 1, ['1'] = 1 + 1, ['2'] = 2 + 1, ['3'] = 3 + 1, ['4'] = 4 + 1, ['5'] = 5 + 1,
    ['6'] = 6 + 1, ['7'] = 7 + 1, ['8'] = 8 + 1, ['9'] = 9 + 1, ['a'] = 10 + 1, ['b'] = 11 + 1,
    ['c'] = 12 + 1, ['d'] = 13 + 1, ['e'] = 14 + 1, ['f'] = 15 + 1}; /* +1: 0 means not hex */

/* 36 lowercase characters 8-4-4-4-12. */
static int uuid_lower_parse(const char *s, size_t len, uint8_t id[PSL_UUID_BYTES]) {
  /* offsets of the 16 byte pairs in the text */
  static const uint8_t at[PSL_UUID_BYTES] = {0,  2,  4,  6,  9,  11, 14, 16,
                                             19, 21, 24, 26, 28, 30, 32, 34};
  if (len != PSL_UUID_STR || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
    return -1;
  unsigned bad = 0;
  for (int i = 0; i < PSL_UUID_BYTES; i++) {
    unsigned hi = hexval[(uint8_t)s[at[i]]], lo = hexval[(uint8_t)s[at[i] + 1]];
    bad |= (hi == 0) | (lo == 0);
    id[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
  }
  return bad ? -1 : 0;
}

int psl__stream_parse(const char *s, size_t len, uint8_t id[PSL_UUID_BYTES]) {
  static const char part[] = "participant/", sess[] = "session/";
  if (!s)
    return PSL__STREAM_BAD;
  if (len > sizeof part - 1 && memcmp(s, part, sizeof part - 1) == 0)
    return uuid_lower_parse(s + sizeof part - 1, len - (sizeof part - 1), id) == 0
               ? PSL__STREAM_PARTICIPANT
               : PSL__STREAM_BAD;
  if (len > sizeof sess - 1 && memcmp(s, sess, sizeof sess - 1) == 0)
    return uuid_lower_parse(s + sizeof sess - 1, len - (sizeof sess - 1), id) == 0
               ? PSL__STREAM_SESSION
               : PSL__STREAM_BAD;
  return PSL__STREAM_BAD;
}

static int fail(psl_diag_t *diag, const char *fmt, const char *key, long idx) {
  if (diag) {
    char path[96];
    if (idx >= 0)
      snprintf(path, sizeof path, "%s[%ld]", key, idx);
    else
      snprintf(path, sizeof path, "%s", key);
    snprintf(diag->msg, sizeof diag->msg, fmt, path);
  }
  return PSL_EINVALID;
}

/* Store a code or site value into the fact. */
static void set_code(psl__fact_t *f, kid_t id, int c) {
  uint8_t v = (uint8_t)c;
  switch (id) {
  case K_PROGRAMME: f->programme = v; break;
  case K_SOURCE: f->source = v; break;
  case K_JUSTICE: f->justice = v; break;
  case K_GENDER: f->gender = v; break;
  case K_EDUCATION: f->education = v; break;
  case K_KIND: f->kind = v; break;
  case K_BARRIER: f->barrier = v; break;
  case K_PLACE: f->place = v; break;
  case K_PARTNER_KIND: f->partner_kind = v; break;
  case K_STATUS: f->status = v; break;
  case K_TERR: f->data_terr = v; break;
  case K_REASON: f->reason = v; break;
  case K_SEQUENCE: f->sequence = v; break;
  default: break;
  }
}

static int uuid_cmp(const void *a, const void *b) { return memcmp(a, b, PSL_UUID_BYTES); }

/* One array of str, codes or uuids. */
static int read_array(psl__mp_t *r, const keyspec_t *k, psl__fact_t *f, psl_diag_t *diag) {
  uint32_t n;
  /* Attendees, to find duplicates: an attendee listed twice would count a session twice for
   * them.  PSL_MAX_ARRAY bounds it (16 KiB). */
  static _Thread_local uint8_t seen[PSL_MAX_ARRAY][PSL_UUID_BYTES];
  if (psl__mp_array(r, &n))
    return fail(diag, "data.%s: expected array", k->name, -1);
  if (n > PSL_MAX_ARRAY)
    return fail(diag, "data.%s: too many items", k->name, -1);
  if (k->kind == V_UUIDS) {
    f->attendees = r->p;
    f->nattendees = n;
  }
  for (uint32_t i = 0; i < n; i++) {
    const char *s;
    const uint8_t *b;
    uint32_t len;
    if (k->kind == V_UUIDS) {
      if (psl__mp_bin(r, &b, &len) || len != PSL_UUID_BYTES)
        return fail(diag, "data.%s: expected uuid", k->name, i);
      memcpy(seen[i], b, PSL_UUID_BYTES);
      continue;
    }
    if (psl__mp_str(r, &s, &len))
      return fail(diag, "data.%s: expected str", k->name, i);
    if (len > PSL_MAX_STR)
      return fail(diag, "data.%s: too long", k->name, i);
    if (k->kind == V_CODES) {
      int c = psl_code_lookup(k->table, s, len);
      if (!c)
        return fail(diag, "data.%s: unknown code", k->name, i);
      if (f->barriers & (1u << (c - 1)))
        return fail(diag, "data.%s: duplicate", k->name, i);
      f->barriers |= 1u << (c - 1);
    }
  }
  if (k->kind == V_UUIDS) {
    f->attendees_end = r->p;
    qsort(seen, n, PSL_UUID_BYTES, uuid_cmp);
    for (uint32_t i = 1; i < n; i++)
      if (memcmp(seen[i - 1], seen[i], PSL_UUID_BYTES) == 0)
        return fail(diag, "data.%s: duplicate", k->name, -1);
  }
  return 0;
}

/* One value of key k. */
static int read_value(psl__mp_t *r, const keyspec_t *k, psl__fact_t *f, psl_diag_t *diag) {
  const char *s;
  const uint8_t *b;
  uint32_t len;
  int64_t v;
  int bv;
  switch (k->kind) {
  case V_CODE:
    if (psl__mp_str(r, &s, &len))
      return fail(diag, "data.%s: expected str", k->name, -1);
    {
      int c = psl_code_lookup(k->table, s, len);
      if (!c)
        return fail(diag, "data.%s: unknown code", k->name, -1);
      set_code(f, k->id, c);
    }
    return 0;
  case V_SITE:
    if (psl__mp_str(r, &s, &len))
      return fail(diag, "data.%s: expected str", k->name, -1);
    if (!psl_site_valid(s, len))
      return fail(diag, "data.%s: bad code", k->name, -1);
    memcpy(f->site, s, len);
    f->site[len] = '\0';
    return 0;
  case V_INT:
    if (psl__mp_int(r, &v))
      return fail(diag, "data.%s: expected int", k->name, -1);
    if (v < k->min || v > k->max)
      return fail(diag, "data.%s: out of range", k->name, -1);
    if (k->id == K_BIRTH_YEAR)
      f->birth_year = (int)v;
    else
      f->minutes = v;
    return 0;
  case V_BOOL:
    if (psl__mp_bool(r, &bv))
      return fail(diag, "data.%s: expected bool", k->name, -1);
    if (k->id == K_RSA) {
      f->rsa = bv;
    } else {
      f->care_obligation = bv;
      f->has_care = 1;
    }
    return 0;
  case V_STR:
    if (psl__mp_str(r, &s, &len))
      return fail(diag, "data.%s: expected str", k->name, -1);
    if (len > PSL_MAX_STR)
      return fail(diag, "data.%s: too long", k->name, -1);
    return 0;
  case V_UUID:
    if (psl__mp_bin(r, &b, &len) || len != PSL_UUID_BYTES)
      return fail(diag, "data.%s: expected uuid", k->name, -1);
    memcpy(f->uuid, b, PSL_UUID_BYTES);
    return 0;
  default:
    return read_array(r, k, f, diag);
  }
}

static int is_pii_key(const char *s, uint32_t len) {
  for (size_t i = 0; i < sizeof pii_keys / sizeof pii_keys[0]; i++)
    if (name_is(pii_keys[i], s, len))
      return (int)i + 1;
  return 0;
}

/* Nesting allowed inside unknown keys' values: proto's own bound on `data`. */
#define DATA_DEPTH PSL_MAX_DEPTH

static int parse_data(const psl_event_t *ev, const keyspec_t *keys, psl__fact_t *f,
                      psl_diag_t *diag) {
  psl__mp_t r;
  uint32_t n;
  uint64_t seen = 0; /* bit per key of the table (tables have < 64 keys) */
  psl__mp_init(&r, ev->data.ptr, ev->data.len);
  if (!ev->data.ptr || psl__mp_map(&r, &n))
    return fail(diag, "%s: expected map", "data", -1);
  if (n > PSL_MAX_MAP_KEYS)
    return fail(diag, "%s: too many keys", "data", -1);
  for (uint32_t i = 0; i < n; i++) {
    const char *key;
    uint32_t klen;
    if (psl__mp_str(&r, &key, &klen))
      return fail(diag, "%s: keys must be str", "data", -1);
    const keyspec_t *k = keys;
    while (k->name && !name_is(k->name, key, klen))
      k++;
    if (!k->name) {
      int p = is_pii_key(key, klen);
      if (p)
        return fail(diag, "data.%s: personal data belongs in pii", pii_keys[p - 1], -1);
      if (psl__mp_skip(&r, DATA_DEPTH))
        return fail(diag, "%s: malformed", "data", -1);
      continue;
    }
    uint64_t bit = UINT64_C(1) << (k - keys);
    if (seen & bit)
      return fail(diag, "data.%s: duplicate key", k->name, -1);
    seen |= bit;
    if (!k->required && psl__mp_is_nil(&r)) {
      r.p++;
      continue;
    }
    int rc = read_value(&r, k, f, diag);
    if (rc)
      return rc;
  }
  if (r.p != r.end)
    return fail(diag, "%s: trailing bytes", "data", -1);
  for (const keyspec_t *k = keys; k->name; k++)
    if (k->required && !(seen & (UINT64_C(1) << (k - keys))))
      return fail(diag, "data.%s: missing", k->name, -1);
  return 0;
}

int psl__fact_parse(const psl_event_t *ev, psl__fact_t *f, psl_diag_t *diag) {
  memset(f, 0, sizeof *f);
  f->stream_kind = psl__stream_parse(ev->stream.ptr, ev->stream.len, f->stream_id);
  if (f->stream_kind == PSL__STREAM_BAD)
    return fail(diag, "%s: expected participant/<uuid> or session/<uuid>", "stream", -1);
  memcpy(f->id, ev->id, PSL_UUID_BYTES);
  f->when.at = ev->at;
  f->when.seq = ev->seq;
  if (ev->at < PSL_AT_MIN || ev->at >= PSL_AT_MAX)
    return fail(diag, "%s: out of range", "at", -1);
  f->terr = (uint8_t)psl_code_lookup(PSL_CODE_TERR, ev->terr.ptr, ev->terr.len);
  if (!f->terr)
    return fail(diag, "%s: unknown code", "terr", -1);
  f->type = ev->type.ptr ? psl__ftype_of(ev->type.ptr, ev->type.len) : PSL__F_OTHER;
  if (f->type != PSL__F_OTHER && !(psl__ftype_stream(f->type) & f->stream_kind))
    return fail(diag, f->stream_kind == PSL__STREAM_SESSION
                          ? "%s: not allowed in a session stream"
                          : "%s: not allowed in a participant stream",
                "type", -1);
  int rc = parse_data(ev, types[f->type].keys, f, diag);
  if (rc)
    return rc;
  if (f->type == PSL__F_TRANSFERRED) {
    /* "at least one" of terr, site, programme; the event's own terr is the new one. */
    if (!f->data_terr && !f->site[0] && !f->programme)
      return fail(diag, "%s: one of terr, site, programme required", "data", -1);
    if (f->data_terr && f->data_terr != f->terr)
      return fail(diag, "data.%s: differs from the event's terr", "terr", -1);
  }
  if (f->type == PSL__F_MERGED && memcmp(f->uuid, f->stream_id, PSL_UUID_BYTES) == 0)
    return fail(diag, "data.%s: the participant itself", "into", -1);
  if (f->type == PSL__F_VOIDED && memcmp(f->uuid, f->id, PSL_UUID_BYTES) == 0)
    return fail(diag, "data.%s: the event itself", "of", -1);
  return 0;
}

void psl__attendees_begin(psl__attendees_t *it, const psl__fact_t *f) {
  /* each element was checked to be a bin of 16 bytes by the parse */
  psl__mp_init(&it->r, f->attendees, f->attendees ? (size_t)(f->attendees_end - f->attendees) : 0);
  it->left = f->nattendees;
}

int psl__attendees_next(psl__attendees_t *it, uint8_t id[PSL_UUID_BYTES]) {
  const uint8_t *b;
  uint32_t len;
  if (it->left == 0 || psl__mp_bin(&it->r, &b, &len) || len != PSL_UUID_BYTES)
    return 0;
  memcpy(id, b, PSL_UUID_BYTES);
  it->left--;
  return 1;
}
