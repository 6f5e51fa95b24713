/*
 * psl_access.h — who may do what: tokens, roles, territories.
 *
 * Tokens live in their own LMDB environment, DIR/access/, apart from the event log, so that
 * passerelle-admin can create and revoke them while the server runs (LMDB serialises the two
 * processes' writers) and so that this store can be compacted on its own.  A token is only
 * ever stored as its BLAKE2b-256 hash; server/access.c documents the layout.
 *
 * Token text: "psl_" followed by 32 base64url characters (24 random bytes, 192 bits).
 * Token id (what `token list` shows and `token revoke` takes): the first 6 bytes of the
 * token's hash, as 12 hex characters.  The id reveals nothing of the token.
 *
 * Roles (PROTOCOL-v1, "Authority"):
 *   caseworker   reads and pushes only in its territories
 *   coordinator  reads and pushes everywhere
 *   auditor      reads everywhere, never pushes
 *   admin        reads and pushes everywhere; the only one that may push participant.erased
 *
 * Threads: every function is thread-safe (the store uses short LMDB transactions opened with
 * MDB_NOTLS) and may be called while other processes (passerelle-admin) use the same folder.
 * The authority rules are pure functions of their arguments.
 */
#ifndef PSL_ACCESS_H
#define PSL_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

typedef enum {
  PSL_ROLE_NONE = 0,
  PSL_ROLE_CASEWORKER,
  PSL_ROLE_COORDINATOR,
  PSL_ROLE_AUDITOR,
  PSL_ROLE_ADMIN
} psl_role_t;

#define PSL_TOKEN_ID_LEN 12   /* hex characters */
#define PSL_TOKEN_LEN 36      /* "psl_" + 32 base64url characters */
#define PSL_MAX_NAME 128      /* a person's login name or a device name */
#define PSL_MAX_TOKEN_TERR 8  /* territories one token may hold: there are four today */

/* What a valid token stands for.  Plain data; copy freely. */
typedef struct {
  char id[PSL_TOKEN_ID_LEN + 1];
  psl_role_t role;
  char terr[PSL_MAX_TOKEN_TERR][PSL_MAX_TERR + 1]; /* caseworker's territories */
  size_t nterr;
  char name[PSL_MAX_NAME + 1];   /* stamped as `by` */
  char device[PSL_MAX_NAME + 1]; /* stamped as `dev` */
  int64_t created_ms;
  int revoked;
} psl_principal_t;

typedef struct psl_access_s psl_access_t;

/* Open (creating) DIR/access/.  Returns 0 or PSL_E*. */
int psl_access_open(psl_access_t **out, const char *dir);
void psl_access_close(psl_access_t *a); /* accepts NULL */

/* Make a token.  Writes the token text (NUL-terminated) to token[PSL_TOKEN_LEN + 1] and fills
 * *out (may be NULL).  terr is required for caseworkers (1..PSL_MAX_TOKEN_TERR known codes)
 * and ignored for the other roles.  PSL_EINVALID names nothing personal. */
int psl_access_token_create(psl_access_t *a, psl_role_t role, const char *const *terr,
                            size_t nterr, const char *name, const char *device,
                            char token[PSL_TOKEN_LEN + 1], psl_principal_t *out);

/* Check a token: 0 and *out filled, or PSL_EUNAUTHORIZED (unknown or revoked).  One short
 * read transaction.  On PSL_EUNAUTHORIZED *out is zeroed for an unknown token and filled with
 * revoked = 1 for a revoked one (so that the caller can log its id); other errors (PSL_ECORRUPT,
 * PSL_EINTERNAL) zero *out.  Only a return of 0 grants anything. */
int psl_access_token_check(psl_access_t *a, const char *token, size_t len, psl_principal_t *out);

/* The same check by token id (12 hex characters, as in psl_principal_t.id): for re-checking
 * open connections after psl_access_generation() moved without keeping the token text. */
int psl_access_token_check_id(psl_access_t *a, const char *id, psl_principal_t *out);

/* Revoke by id (12 hex, any case) or by the token text.  PSL_ENOTFOUND if neither matches.
 * Revoking a revoked token again returns 0 and changes nothing. */
int psl_access_token_revoke(psl_access_t *a, const char *id_or_token);

/* The id of a token text (any string: a typo'd or foreign token gets an id too, which lets
 * logs name a failed attempt without writing the text).  Writes 12 hex characters + NUL. */
void psl_access_token_id(const char *token, size_t len, char id[PSL_TOKEN_ID_LEN + 1]);

/* Call fn for every token (revoked ones included), in id order.  fn returns nonzero to stop.
 * fn runs inside a read transaction: keep it short, p is valid during the call only. */
int psl_access_token_list(psl_access_t *a, int (*fn)(void *arg, const psl_principal_t *p),
                          void *arg);

/* A number that changes whenever a token is created or revoked (by any process).  Cheap (one
 * short read transaction): the server polls it every 250 ms and re-checks its connections'
 * tokens when it moves.  If the store cannot be read it returns the last value it read. */
uint64_t psl_access_generation(psl_access_t *a);

const char *psl_role_name(psl_role_t role); /* "caseworker", ...; "none" for anything else */
int psl_role_parse(const char *s, psl_role_t *out); /* PSL_EINVALID */

/* The territory codes of DOMAIN.md ("75", "77", "93", "94"). */
#define PSL_ACCESS_NTERR_KNOWN 4
/* 1 if terr is one of them, else 0. */
int psl_access_terr_is_known(psl_str_t terr);
/* The territories p may read, for `welcome`'s `terr`: a caseworker's own, every known one for
 * the other roles, none for a revoked or NULL principal.  Fills out[0..max) with pointers to
 * static or p-owned strings (valid while *p is); returns how many. */
size_t psl_access_visible_terr(const psl_principal_t *p, const char **out, size_t max);
/* 1 if s is a valid name or device: 1..PSL_MAX_NAME bytes of UTF-8 without control
 * characters, not only spaces.  Else 0. */
int psl_access_name_is_valid(const char *s);

/* ---- Authority rules: one place, used by push, sub, fan-out and every HTTP endpoint. */

/* May p read events of territory terr?  NOT a boolean, like every int function here:
 * 0 when p may read, PSL_EFORBIDDEN when not (a NULL or revoked p, or a caseworker and a
 * territory not theirs).  Test with `== 0`. */
int psl_access_may_read(const psl_principal_t *p, psl_str_t terr);

/* May p read `pii` (names, phones, notes) in the events it may read?  0 or PSL_EFORBIDDEN.
 * Caseworkers, coordinators and admins, who work with the people, read it decrypted; an
 * auditor checks the figures and the chain and gets `pii` as stored (the sealed bin), which
 * is also what lets it recompute every hash.  Nobody reads an erased participant's pii. */
int psl_access_may_read_pii(const psl_principal_t *p);

/* May p push ev?  0, or PSL_EFORBIDDEN with a reason in *why (static English string, no
 * personal data; why may be NULL).  Checks role and territory only (not the event's shape):
 *   - a NULL or revoked p, and an auditor, may push nothing;
 *   - participant.erased: admin only;
 *   - coordinator and admin: anything else;
 *   - caseworker: participant.transferred when stream_terr is one of theirs (whatever the
 *     event's own terr, the new territory); any other event when ev->terr is theirs and
 *     stream_terr is either empty or theirs (no writing into another territory's participant).
 * stream_terr is the territory the stream is in now (len 0 for a new stream). */
int psl_access_may_push(const psl_principal_t *p, const psl_event_t *ev, psl_str_t stream_terr,
                        const char **why);

#endif /* PSL_ACCESS_H */
