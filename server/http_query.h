/*
 * http_query.h — the small parsers of the HTTP side (routes of http.c): query parameters, a
 * path ending in a uuid, a bearer token, a comma-separated header list.  Pure functions over
 * bytes, no lws: so that tests/fuzz/fuzz-http.c runs them on hostile input by the million.
 *
 * What lws already did.  lws parses the request line and headers itself (its parser is its
 * own, fuzzed upstream, not ours).  For the query string it url-decodes each `a=b` part (%xx,
 * '+' → ' '; a %00 is refused with 403), splits parts at an unencoded '&' or ';', and hands
 * each part out as a fragment of WSI_TOKEN_HTTP_URI_ARGS (lws_hdr_copy_fragment).  So these
 * functions never percent-decode again: a part is already the bytes the client meant.
 *
 *   psl_http_query_add(q, part, len)      one fragment as lws gives it: "key=value"
 *   psl_http_query_parse(q, s, len)       a whole "a=1&b=2" string (split at '&')
 *
 * Prefer _add per fragment: once parts are joined with '&', a value that held an encoded
 * '&' (%26) can no longer be told apart from two parameters.
 *
 * Rules (each one an answer, never a crash or a silent guess):
 *   - a part without '=' is a key with an empty value; an empty part is skipped;
 *   - a key must be 1..PSL_HTTP_KEY_MAX bytes of [A-Za-z0-9_.-]: PSL_EINVALID otherwise;
 *   - a value is at most PSL_HTTP_VALUE_MAX bytes and holds no control byte (< 0x20, 0x7f):
 *     PSL_EINVALID otherwise (values end up in JSON and CSV answers and in log lines);
 *   - a key given twice is PSL_EINVALID (which one would count?);
 *   - more than PSL_HTTP_MAX_PARAMS parameters, or more than PSL_HTTP_QUERY_MAX bytes kept,
 *     is PSL_ETOO_BIG.
 * After an error the query keeps what was added before it; callers answer 400 and stop.
 */
#ifndef PSL_HTTP_QUERY_H
#define PSL_HTTP_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

/* Parameters of one request: the report takes the most (year, terr, format, month,
 * programme, site), 16 leaves room without letting a client make us loop over thousands. */
#define PSL_HTTP_MAX_PARAMS 16
/* Bytes of keys and values kept, NULs included: http.c reads at most 1 KiB of query. */
#define PSL_HTTP_QUERY_MAX 1024
/* Longest key: ours are short words ("programme" is 9). */
#define PSL_HTTP_KEY_MAX 32
/* Longest value: a site code (PSL_SITE_MAX, 48) or a uuid (36) with room to spare. */
#define PSL_HTTP_VALUE_MAX 128
/* Longest bearer token accepted from a header (tokens are PSL_TOKEN_LEN, far shorter). */
#define PSL_HTTP_TOKEN_MAX 256

typedef struct {
  const char *key, *value; /* NUL-terminated, inside the query's own buffer */
  size_t key_len, value_len;
} psl_http_param_t;

typedef struct {
  psl_http_param_t params[PSL_HTTP_MAX_PARAMS];
  size_t n;
  char buf[PSL_HTTP_QUERY_MAX]; /* keys and values, NUL-terminated */
  size_t used;
} psl_http_query_t;

void psl_http_query_init(psl_http_query_t *q);
/* One "key=value" part.  0, PSL_EINVALID or PSL_ETOO_BIG (rules above). */
int psl_http_query_add(psl_http_query_t *q, const char *part, size_t len);
/* Every '&'-separated part of s[0..len).  0 or the first part's error. */
int psl_http_query_parse(psl_http_query_t *q, const char *s, size_t len);

/* The value of key (NUL-terminated, valid while q lives), or NULL when absent. */
const char *psl_http_query_get(const psl_http_query_t *q, const char *key);
/* key as a decimal integer in [min, max]: 0 and *out; PSL_ENOTFOUND when absent;
 * PSL_EINVALID when not only digits (an optional leading '-'), or out of range. */
int psl_http_query_int(const psl_http_query_t *q, const char *key, int64_t min, int64_t max,
                       int64_t *out);
/* PSL_EINVALID when q holds a key not in the NULL-terminated list `known` (a typo such as
 * `yaer=2025` is answered, not ignored), else 0. */
int psl_http_query_only(const psl_http_query_t *q, const char *const *known);

/* path = prefix ‖ a 36-character uuid, nothing after it: 0 and id; PSL_ENOTFOUND when path
 * does not start with prefix; PSL_EINVALID when what follows is not exactly a uuid. */
int psl_http_path_uuid(const char *path, size_t len, const char *prefix,
                       uint8_t id[PSL_UUID_BYTES]);

/* An Authorization header value "Bearer <token>" (scheme case-insensitive, RFC 7235; spaces
 * around the token ignored): 0 and *token pointing into value; PSL_EUNAUTHORIZED for another
 * scheme, an empty token, a token with a space or control byte, or one longer than
 * PSL_HTTP_TOKEN_MAX. */
int psl_http_bearer(const char *value, size_t len, psl_str_t *token);

/* 1 if the comma-separated header value lists token exactly (case-sensitive, as WebSocket
 * subprotocols are; spaces and tabs around items ignored), else 0. */
int psl_http_lists(const char *value, size_t len, const char *token);

#endif /* PSL_HTTP_QUERY_H */
