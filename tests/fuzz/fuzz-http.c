/*
 * fuzz-http.c — the HTTP side's own parsers (server/http_query.h): query parameters, the uuid
 * of /api/v1/participants/<uuid>, the bearer token, the subprotocol header list.  (The
 * request line and headers are lws's parser, not ours.)
 *
 * The input is used whole as each thing in turn: a query string, a list of lws fragments
 * (split at 0x00 bytes), a path, an Authorization value, a header list.
 *
 * Properties checked beyond memory safety: every parameter kept obeys the rules (key bytes,
 * value bytes and lengths, no duplicates, bounded count), psl_http_query_get finds each one,
 * and printing the parameters back and parsing them again gives the same query; an integer
 * read is within its bounds; a uuid path formats back to its lowercase self; a bearer token
 * is a non-empty run of visible bytes inside the input.
 */
#include "fuzz.h"

#include <string.h>

#include "http_query.h"

static const char *const KNOWN[] = {"terr", "year", "month", "programme", "site", "format",
                                    NULL};

static int key_ok(const char *k, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = k[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '.' || c == '-'))
      return 0;
  }
  return n >= 1 && n <= PSL_HTTP_KEY_MAX;
}

static void check_query(const psl_http_query_t *q) {
  FUZZ_CHECK(q->n <= PSL_HTTP_MAX_PARAMS && q->used <= sizeof q->buf);
  for (size_t i = 0; i < q->n; i++) {
    const psl_http_param_t *p = &q->params[i];
    FUZZ_CHECK(key_ok(p->key, p->key_len) && strlen(p->key) == p->key_len);
    FUZZ_CHECK(p->value_len <= PSL_HTTP_VALUE_MAX && strlen(p->value) == p->value_len);
    for (size_t k = 0; k < p->value_len; k++)
      FUZZ_CHECK((unsigned char)p->value[k] >= 0x20 && (unsigned char)p->value[k] != 0x7f);
    FUZZ_CHECK(psl_http_query_get(q, p->key) == p->value);
    for (size_t j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(q->params[j].key, p->key) != 0);
  }
  for (const char *const *k = KNOWN; *k; k++) {
    int64_t v;
    int rc = psl_http_query_int(q, *k, 1, 2099, &v);
    FUZZ_CHECK(rc == 0 || rc == PSL_ENOTFOUND || rc == PSL_EINVALID);
    if (rc == 0)
      FUZZ_CHECK(v >= 1 && v <= 2099);
    rc = psl_http_query_int(q, *k, INT64_MIN, INT64_MAX, &v);
    FUZZ_CHECK(rc == 0 || rc == PSL_ENOTFOUND || rc == PSL_EINVALID);
  }
  (void)psl_http_query_only(q, KNOWN);
}

/* Print q back as "k=v&k=v" and parse it again: the same parameters (when no value holds an
 * '&', which only a fragment can carry). */
static void reparse(const psl_http_query_t *q) {
  char s[2 * PSL_HTTP_QUERY_MAX];
  size_t len = 0;
  for (size_t i = 0; i < q->n; i++) {
    const psl_http_param_t *p = &q->params[i];
    if (memchr(p->value, '&', p->value_len))
      return;
    if (i)
      s[len++] = '&';
    memcpy(s + len, p->key, p->key_len);
    len += p->key_len;
    s[len++] = '=';
    memcpy(s + len, p->value, p->value_len);
    len += p->value_len;
  }
  psl_http_query_t q2;
  psl_http_query_init(&q2);
  FUZZ_CHECK(psl_http_query_parse(&q2, s, len) == 0);
  FUZZ_CHECK(q2.n == q->n);
  for (size_t i = 0; i < q->n; i++)
    FUZZ_CHECK(strcmp(q2.params[i].key, q->params[i].key) == 0 &&
               strcmp(q2.params[i].value, q->params[i].value) == 0);
}

static void as_query(const char *s, size_t n) {
  psl_http_query_t q;
  psl_http_query_init(&q);
  int rc = psl_http_query_parse(&q, s, n);
  FUZZ_CHECK(rc == 0 || rc == PSL_EINVALID || rc == PSL_ETOO_BIG);
  check_query(&q);
  if (rc == 0)
    reparse(&q);
}

static void as_fragments(const char *s, size_t n) {
  psl_http_query_t q;
  psl_http_query_init(&q);
  size_t start = 0;
  while (start < n) {
    const char *z = memchr(s + start, '\0', n - start);
    size_t end = z ? (size_t)(z - s) : n;
    int rc = psl_http_query_add(&q, s + start, end - start);
    FUZZ_CHECK(rc == 0 || rc == PSL_EINVALID || rc == PSL_ETOO_BIG);
    if (rc)
      break;
    start = end + 1;
  }
  check_query(&q);
}

static void as_path(const char *s, size_t n) {
  static const char pfx[] = "/api/v1/participants/";
  uint8_t id[PSL_UUID_BYTES];
  int rc = psl_http_path_uuid(s, n, pfx, id);
  FUZZ_CHECK(rc == 0 || rc == PSL_ENOTFOUND || rc == PSL_EINVALID);
  if (rc == 0) {
    char back[PSL_UUID_STR + 1];
    size_t pl = sizeof pfx - 1;
    FUZZ_CHECK(n == pl + PSL_UUID_STR);
    psl_uuid_format(id, back);
    for (size_t i = 0; i < PSL_UUID_STR; i++) {
      char c = s[pl + i];
      if (c >= 'A' && c <= 'F')
        c = (char)(c - 'A' + 'a');
      FUZZ_CHECK(c == back[i]);
    }
  }
}

static void as_bearer(const char *s, size_t n) {
  psl_str_t tok;
  int rc = psl_http_bearer(s, n, &tok);
  FUZZ_CHECK(rc == 0 || rc == PSL_EUNAUTHORIZED);
  if (rc == 0) {
    FUZZ_CHECK(tok.len >= 1 && tok.len <= PSL_HTTP_TOKEN_MAX);
    FUZZ_CHECK(tok.ptr >= s && tok.ptr + tok.len <= s + n);
    for (size_t i = 0; i < tok.len; i++)
      FUZZ_CHECK((unsigned char)tok.ptr[i] > 0x20 && (unsigned char)tok.ptr[i] != 0x7f);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A copy of exactly size bytes, so that reading one past the input is a sanitizer report. */
  char *s = malloc(size ? size : 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  as_query(s, size);
  as_fragments(s, size);
  as_path(s, size);
  as_bearer(s, size);
  int listed = psl_http_lists(s, size, "passerelle.v1");
  FUZZ_CHECK(listed == 0 || listed == 1);
  free(s);
  return 0;
}
