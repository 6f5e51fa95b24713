/*
 * psl_error.h — the one error table of passerelle.
 *
 * Every function of proto/, server/, client-lib/ and tools/ that can fail returns an int:
 * 0 on success, or one of the negative PSL_E* codes below.  LMDB and errno codes are mapped
 * into this range at the boundary (psl_err_from_mdb, psl_err_from_errno) and never leak out.
 *
 * Each entry has three faces, generated from the one table (libuv's UV_ERRNO_MAP):
 *   PSL_E<NAME>      the C enum value;
 *   psl_err_code()   the protocol error code of PROTOCOL-v1 (`invalid`, `conflict`, ...) that
 *                    a client is answered with: internal-only conditions map to `internal`
 *                    or `unavailable`;
 *   psl_strerror()   a short English message for logs.  It never contains personal data.
 */
#ifndef PSL_ERROR_H
#define PSL_ERROR_H

#define PSL_ERRNO_MAP(XX)                                                          \
  XX(INVALID,      "invalid",      "malformed or invalid input")                   \
  XX(UNAUTHORIZED, "unauthorized", "unknown or revoked token")                     \
  XX(FORBIDDEN,    "forbidden",    "not allowed for this token")                   \
  XX(CONFLICT,     "conflict",     "stream version does not match")                \
  XX(TOO_BIG,      "too_big",      "over a size limit")                            \
  XX(RATE_LIMITED, "rate_limited", "too many requests")                            \
  XX(RESET,        "reset",        "the client must drop its replica")             \
  XX(UNAVAILABLE,  "unavailable",  "the log cannot take writes (disk or map full)")\
  XX(INTERNAL,     "internal",     "internal error")                               \
  XX(NOMEM,        "internal",     "out of memory")                                \
  XX(NOTFOUND,     "not_found",    "not found")                                    \
  XX(CORRUPT,      "internal",     "stored data is corrupt")                       \
  XX(IO,           "unavailable",  "input/output error")                           \
  XX(AGAIN,        "internal",     "would block: try again later")                 \
  XX(CLOSED,       "unavailable",  "shutting down")

typedef enum {
  PSL_OK = 0,
  PSL__ERR_BASE = -1000, /* below every errno value, so the ranges never mix */
#define PSL__ERR_ENUM(name, code, msg) PSL_E##name,
  PSL_ERRNO_MAP(PSL__ERR_ENUM)
#undef PSL__ERR_ENUM
  PSL__ERR_END
} psl_err_t;

/* Protocol code of PROTOCOL-v1 for err (e.g. "conflict"); "internal" for unknown values. */
const char *psl_err_code(int err);

/* Short message for logs; never personal data.  Static storage, never NULL. */
const char *psl_strerror(int err);

/* Name of the enum value without the prefix ("CONFLICT"); for tests and logs. */
const char *psl_err_name(int err);

/* Map an LMDB return code (MDB_MAP_FULL, ENOSPC, ...) to PSL_E*.  0 stays 0. */
int psl_err_from_mdb(int rc);

/* Map an errno value to PSL_E*.  0 stays 0. */
int psl_err_from_errno(int e);

#endif /* PSL_ERROR_H */
