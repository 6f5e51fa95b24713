/*
 * access-rules.c — the authority rules of PROTOCOL-v1 ("Authority") and the small validators
 * of psl_access.h: roles, territory codes, names.  Pure functions, no state: the store of
 * tokens is server/access.c.
 *
 * The rules, in one table (p = the token's principal, ev = the pushed event, stream_terr =
 * the participant's territory now, empty for a new stream):
 *
 *   role          read terr T        read pii  push ev
 *   ------------  -----------------  --------  --------------------------------------------
 *   caseworker    T is theirs        yes       participant.transferred: stream_terr is
 *                                              theirs; participant.erased: never;
 *                                              other types: ev->terr theirs and stream_terr
 *                                              empty or theirs
 *   coordinator   yes                yes       everything but participant.erased
 *   auditor       yes                sealed    never
 *   admin         yes                yes       everything
 *   revoked/none  never              never     never
 */
#include "psl_access.h"

#include <string.h>

/* DOMAIN.md: 75 Paris, 77 Seine-et-Marne, 93 Seine-Saint-Denis, 94 Val-de-Marne. */
static const char *const known_terr[PSL_ACCESS_NTERR_KNOWN] = {"75", "77", "93", "94"};

static const char *const role_names[] = {
    [PSL_ROLE_NONE] = "none",
    [PSL_ROLE_CASEWORKER] = "caseworker",
    [PSL_ROLE_COORDINATOR] = "coordinator",
    [PSL_ROLE_AUDITOR] = "auditor",
    [PSL_ROLE_ADMIN] = "admin",
};
#define NROLES (sizeof role_names / sizeof role_names[0])

const char *psl_role_name(psl_role_t role) {
  if ((unsigned)role >= NROLES)
    return role_names[PSL_ROLE_NONE];
  return role_names[role];
}

int psl_role_parse(const char *s, psl_role_t *out) {
  if (!s)
    return PSL_EINVALID;
  for (unsigned r = PSL_ROLE_NONE + 1; r < NROLES; r++) {
    if (strcmp(s, role_names[r]) == 0) {
      if (out)
        *out = (psl_role_t)r;
      return 0;
    }
  }
  return PSL_EINVALID;
}

static int str_is(psl_str_t s, const char *c) {
  size_t n = strlen(c);
  return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

int psl_access_terr_is_known(psl_str_t terr) {
  for (size_t i = 0; i < PSL_ACCESS_NTERR_KNOWN; i++)
    if (str_is(terr, known_terr[i]))
      return 1;
  return 0;
}

static int usable(const psl_principal_t *p) {
  return p && !p->revoked && p->role > PSL_ROLE_NONE && (unsigned)p->role < NROLES;
}

/* Is terr one of a caseworker's territories?  An empty terr never is. */
static int holds_terr(const psl_principal_t *p, psl_str_t terr) {
  if (terr.len == 0)
    return 0;
  for (size_t i = 0; i < p->nterr && i < PSL_MAX_TOKEN_TERR; i++)
    if (str_is(terr, p->terr[i]))
      return 1;
  return 0;
}

size_t psl_access_visible_terr(const psl_principal_t *p, const char **out, size_t max) {
  size_t n = 0;
  if (!usable(p))
    return 0;
  if (p->role == PSL_ROLE_CASEWORKER) {
    for (size_t i = 0; i < p->nterr && i < PSL_MAX_TOKEN_TERR && n < max; i++)
      out[n++] = p->terr[i];
  } else {
    for (size_t i = 0; i < PSL_ACCESS_NTERR_KNOWN && n < max; i++)
      out[n++] = known_terr[i];
  }
  return n;
}

/* Length of the UTF-8 sequence at s (at most n bytes) and its code point, or 0 when it is not
 * well-formed (overlong forms, surrogates and code points past U+10FFFF are not, RFC 3629). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  size_t len;
  uint32_t c = s[0], min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if ((c & 0xe0) == 0xc0) {
    len = 2, c &= 0x1f, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3, c &= 0x0f, min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4, c &= 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3f);
  }
  if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
    return 0;
  *cp = c;
  return len;
}

/* Names end up in `list` output (tab-separated), in events' `by` and `dev`, and on operators'
 * terminals: no control character (C0, DEL, C1) may hide in them. */
int psl_access_name_is_valid(const char *s) {
  if (!s)
    return 0;
  size_t n = strnlen(s, PSL_MAX_NAME + 1), i = 0;
  int visible = 0;
  if (n == 0 || n > PSL_MAX_NAME)
    return 0;
  while (i < n) {
    uint32_t cp;
    size_t len = utf8_next((const unsigned char *)s + i, n - i, &cp);
    if (len == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
      return 0;
    if (cp != ' ')
      visible = 1;
    i += len;
  }
  return visible;
}

int psl_access_may_read(const psl_principal_t *p, psl_str_t terr) {
  if (!usable(p))
    return PSL_EFORBIDDEN;
  if (p->role == PSL_ROLE_CASEWORKER && !holds_terr(p, terr))
    return PSL_EFORBIDDEN;
  return 0;
}

int psl_access_may_read_pii(const psl_principal_t *p) {
  if (!usable(p) || p->role == PSL_ROLE_AUDITOR)
    return PSL_EFORBIDDEN;
  return 0;
}

static int forbid(const char **why, const char *reason) {
  if (why)
    *why = reason;
  return PSL_EFORBIDDEN;
}

int psl_access_may_push(const psl_principal_t *p, const psl_event_t *ev, psl_str_t stream_terr,
                        const char **why) {
  if (why)
    *why = NULL;
  if (!usable(p))
    return forbid(why, "token revoked or without a role");
  if (!ev)
    return forbid(why, "no event");
  if (p->role == PSL_ROLE_AUDITOR)
    return forbid(why, "an auditor only reads");
  if (str_is(ev->type, "participant.erased"))
    return p->role == PSL_ROLE_ADMIN ? 0 : forbid(why, "only an admin may erase a participant");
  if (p->role != PSL_ROLE_CASEWORKER)
    return 0; /* coordinator, admin: everywhere */
  if (str_is(ev->type, "participant.transferred") && holds_terr(p, stream_terr))
    return 0; /* out of a territory of theirs, into any other */
  if (!holds_terr(p, ev->terr))
    return forbid(why, "territory not among this token's");
  if (stream_terr.len != 0 && !holds_terr(p, stream_terr))
    return forbid(why, "the participant belongs to another territory");
  return 0;
}
