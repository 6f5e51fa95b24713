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

/* Check a token: 0 and *out filled, or PSL_EUNAUTHORIZED (unknown or revoked). */
int psl_access_token_check(psl_access_t *a, const char *token, size_t len, psl_principal_t *out);

/* Revoke by id (12 hex) or by the token text.  PSL_ENOTFOUND if neither matches. */
int psl_access_token_revoke(psl_access_t *a, const char *id_or_token);

/* Call fn for every token (revoked ones included), in id order.  fn returns nonzero to stop. */
int psl_access_token_list(psl_access_t *a, int (*fn)(void *arg, const psl_principal_t *p),
                          void *arg);

/* A number that changes whenever a token is revoked (by any process).  Cheap: the server
 * polls it every 250 ms and re-checks its connections' tokens when it moves. */
uint64_t psl_access_generation(psl_access_t *a);

const char *psl_role_name(psl_role_t role); /* "caseworker", ... */
int psl_role_parse(const char *s, psl_role_t *out); /* PSL_EINVALID */

/* ---- Authority rules: one place, used by push, sub, fan-out and every HTTP endpoint. */

/* May p read events of territory terr? */
int psl_access_may_read(const psl_principal_t *p, psl_str_t terr);

/* May p push ev?  0, or PSL_EFORBIDDEN with a reason in *why (static string, no personal
 * data).  Checks role and territory; participant.erased is admin only.  stream_terr is the
 * territory the stream is in now (len 0 for a new stream): a caseworker may push
 * participant.transferred out of a territory of theirs into another one. */
int psl_access_may_push(const psl_principal_t *p, const psl_event_t *ev, psl_str_t stream_terr,
                        const char **why);

#endif /* PSL_ACCESS_H */
