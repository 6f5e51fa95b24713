/*
 * validate.c — psl_domain_validate: is this new event one DOMAIN.md allows here?
 *
 * Order of checks (the first failure is reported): stream name, at, terr, type (known for
 * this kind of stream, or `x-…`), the `data` map (fact.c), the first-event rules, `pii`.
 * `pii` is checked only while it is a map (as pushed); once encrypted (a bin) it is opaque.
 */
#include <stdio.h>

#include "psl_domain_int.h"

static int fail(psl_diag_t *diag, const char *msg) {
  if (diag)
    snprintf(diag->msg, sizeof diag->msg, "%s", msg);
  return PSL_EINVALID;
}

typedef struct {
  const char *name;
  int required;
} piispec_t;

static const piispec_t referred_pii[] = {{"name", 1}, {"birth_date", 0}, {"phone", 0}, {NULL, 0}};
static const piispec_t notes_pii[] = {{"notes", 0}, {NULL, 0}};
static const piispec_t any_pii[] = {{NULL, 0}};
/* Identifying keys are str wherever they appear. */
static const char *const known_pii[] = {"name", "birth_date", "phone", "notes"};

static int check_pii(const psl_event_t *ev, psl__ftype_t type, psl_diag_t *diag) {
  const piispec_t *spec = any_pii;
  if (type == PSL__F_REFERRED)
    spec = referred_pii;
  else if (type == PSL__F_DIAGNOSTIC || type == PSL__F_INTERVIEW)
    spec = notes_pii;
  if (ev->pii.len == 0 || !ev->pii.ptr) {
    for (const piispec_t *k = spec; k->name; k++)
      if (k->required) {
        if (diag)
          snprintf(diag->msg, sizeof diag->msg, "pii.%s: missing", k->name);
        return PSL_EINVALID;
      }
    return 0;
  }
  psl__mp_t r;
  uint32_t n;
  psl__mp_init(&r, ev->pii.ptr, ev->pii.len);
  if (psl__mp_is_bin(&r))
    return 0; /* encrypted: opaque */
  if (psl__mp_map(&r, &n))
    return fail(diag, "pii: expected map");
  if (n > PSL_MAX_MAP_KEYS)
    return fail(diag, "pii: too many keys");
  unsigned seen = 0;
  for (uint32_t i = 0; i < n; i++) {
    const char *key, *s;
    uint32_t klen, len;
    if (psl__mp_str(&r, &key, &klen))
      return fail(diag, "pii: keys must be str");
    size_t j = 0;
    while (j < sizeof known_pii / sizeof known_pii[0] &&
           !(strlen(known_pii[j]) == klen && memcmp(known_pii[j], key, klen) == 0))
      j++;
    if (j == sizeof known_pii / sizeof known_pii[0]) {
      if (psl__mp_skip(&r, PSL_MAX_DEPTH))
        return fail(diag, "pii: malformed");
      continue;
    }
    if (seen & (1u << j)) {
      if (diag)
        snprintf(diag->msg, sizeof diag->msg, "pii.%s: duplicate key", known_pii[j]);
      return PSL_EINVALID;
    }
    seen |= 1u << j;
    if (psl__mp_is_nil(&r) && strcmp(known_pii[j], "name") != 0) {
      r.p++;
      continue;
    }
    if (psl__mp_str(&r, &s, &len) || len > PSL_MAX_STR) {
      if (diag)
        snprintf(diag->msg, sizeof diag->msg, "pii.%s: expected str", known_pii[j]);
      return PSL_EINVALID;
    }
  }
  if (r.p != r.end)
    return fail(diag, "pii: trailing bytes");
  for (const piispec_t *k = spec; k->name; k++) {
    size_t j = 0;
    while (strcmp(known_pii[j], k->name) != 0)
      j++;
    if (k->required && !(seen & (1u << j))) {
      if (diag)
        snprintf(diag->msg, sizeof diag->msg, "pii.%s: missing", k->name);
      return PSL_EINVALID;
    }
  }
  return 0;
}

static int type_known(const psl_event_t *ev, psl__ftype_t t) {
  if (t != PSL__F_OTHER)
    return 1;
  /* extension types: "x-" and something, within the protocol's bound on types */
  return ev->type.ptr && ev->type.len > 2 && ev->type.len <= PSL_MAX_TYPE &&
         memcmp(ev->type.ptr, "x-", 2) == 0;
}

int psl_domain_validate(const psl_event_t *ev, uint64_t stream_ver, psl_diag_t *diag) {
  psl__fact_t f;
  if (!ev)
    return fail(diag, "event: missing");
  /* the type first: an unknown type must not be reported as a data error */
  psl__ftype_t t = ev->type.ptr ? psl__ftype_of(ev->type.ptr, ev->type.len) : PSL__F_OTHER;
  uint8_t sid[PSL_UUID_BYTES];
  int kind = psl__stream_parse(ev->stream.ptr, ev->stream.len, sid);
  if (kind != PSL__STREAM_BAD && !type_known(ev, t))
    return fail(diag, "type: unknown");
  int rc = psl__fact_parse(ev, &f, diag);
  if (rc)
    return rc;
  if (f.stream_kind == PSL__STREAM_PARTICIPANT) {
    if (stream_ver == 0 && f.type != PSL__F_REFERRED)
      return fail(diag, "type: the first event of a participant stream is participant.referred");
    if (stream_ver > 0 && f.type == PSL__F_REFERRED)
      return fail(diag, "type: participant.referred on an existing stream");
  } else {
    if (stream_ver == 0 && f.type != PSL__F_SESSION)
      return fail(diag, "type: the first event of a session stream is session.held");
  }
  return check_pii(ev, f.type, diag);
}
