/*
 * http_query.c — query parameters, uuid paths, bearer tokens and header lists of the HTTP
 * routes, as pure functions over hostile bytes (http_query.h says what lws did before us and
 * the rules).  Fuzzed by tests/fuzz/fuzz-http.c.
 */
#include "http_query.h"

#include <string.h>

void psl_http_query_init(psl_http_query_t *q) {
  q->n = 0;
  q->used = 0;
}

static int key_byte_ok(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == '-';
}

static int value_byte_ok(unsigned char c) { return c >= 0x20 && c != 0x7f; }

/* Copy n bytes and a NUL into the query's buffer; NULL when it is full. */
static const char *keep(psl_http_query_t *q, const char *p, size_t n) {
  if (n + 1 > sizeof q->buf - q->used)
    return NULL;
  char *dst = q->buf + q->used;
  memcpy(dst, p, n);
  dst[n] = '\0';
  q->used += n + 1;
  return dst;
}

static const psl_http_param_t *find(const psl_http_query_t *q, const char *key, size_t len) {
  for (size_t i = 0; i < q->n; i++)
    if (q->params[i].key_len == len && memcmp(q->params[i].key, key, len) == 0)
      return &q->params[i];
  return NULL;
}

int psl_http_query_add(psl_http_query_t *q, const char *part, size_t len) {
  if (len == 0)
    return 0;
  const char *eq = memchr(part, '=', len);
  size_t klen = eq ? (size_t)(eq - part) : len;
  const char *val = eq ? eq + 1 : part + len;
  size_t vlen = len - klen - (eq ? 1 : 0);
  if (klen == 0 || klen > PSL_HTTP_KEY_MAX || vlen > PSL_HTTP_VALUE_MAX)
    return PSL_EINVALID;
  for (size_t i = 0; i < klen; i++)
    if (!key_byte_ok((unsigned char)part[i]))
      return PSL_EINVALID;
  for (size_t i = 0; i < vlen; i++)
    if (!value_byte_ok((unsigned char)val[i]))
      return PSL_EINVALID;
  if (find(q, part, klen))
    return PSL_EINVALID;
  if (q->n == PSL_HTTP_MAX_PARAMS)
    return PSL_ETOO_BIG;
  size_t mark = q->used;
  const char *k = keep(q, part, klen), *v = k ? keep(q, val, vlen) : NULL;
  if (!v) {
    q->used = mark;
    return PSL_ETOO_BIG;
  }
  psl_http_param_t *p = &q->params[q->n++];
  p->key = k;
  p->key_len = klen;
  p->value = v;
  p->value_len = vlen;
  return 0;
}

int psl_http_query_parse(psl_http_query_t *q, const char *s, size_t len) {
  size_t start = 0;
  while (start <= len) {
    const char *amp = memchr(s + start, '&', len - start);
    size_t end = amp ? (size_t)(amp - s) : len;
    int rc = psl_http_query_add(q, s + start, end - start);
    if (rc)
      return rc;
    start = end + 1;
  }
  return 0;
}

const char *psl_http_query_get(const psl_http_query_t *q, const char *key) {
  const psl_http_param_t *p = find(q, key, strlen(key));
  return p ? p->value : NULL;
}

int psl_http_query_int(const psl_http_query_t *q, const char *key, int64_t min, int64_t max,
                       int64_t *out) {
  const psl_http_param_t *p = find(q, key, strlen(key));
  if (!p)
    return PSL_ENOTFOUND;
  const char *s = p->value;
  size_t i = 0, n = p->value_len;
  int neg = n > 0 && s[0] == '-';
  if (neg)
    i++;
  if (i == n)
    return PSL_EINVALID;
  /* Accumulate toward the bound, so that no digit string overflows. */
  uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return PSL_EINVALID;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (lim - d) / 10)
      return PSL_EINVALID;
    v = v * 10 + d;
  }
  int64_t r = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
  if (r < min || r > max)
    return PSL_EINVALID;
  *out = r;
  return 0;
}

int psl_http_query_only(const psl_http_query_t *q, const char *const *known) {
  for (size_t i = 0; i < q->n; i++) {
    int ok = 0;
    for (size_t k = 0; known && known[k] && !ok; k++)
      ok = strlen(known[k]) == q->params[i].key_len &&
           memcmp(known[k], q->params[i].key, q->params[i].key_len) == 0;
    if (!ok)
      return PSL_EINVALID;
  }
  return 0;
}

int psl_http_path_uuid(const char *path, size_t len, const char *prefix,
                       uint8_t id[PSL_UUID_BYTES]) {
  size_t pl = strlen(prefix);
  if (len < pl || memcmp(path, prefix, pl) != 0)
    return PSL_ENOTFOUND;
  if (len - pl != PSL_UUID_STR)
    return PSL_EINVALID;
  return psl_uuid_parse(path + pl, PSL_UUID_STR, id) == 0 ? 0 : PSL_EINVALID;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

int psl_http_bearer(const char *value, size_t len, psl_str_t *token) {
  static const char scheme[] = "bearer";
  size_t sl = sizeof scheme - 1, i = 0;
  while (i < len && is_space(value[i]))
    i++;
  if (len - i <= sl || !is_space(value[i + sl]))
    return PSL_EUNAUTHORIZED;
  for (size_t k = 0; k < sl; k++) {
    char c = value[i + k];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c != scheme[k])
      return PSL_EUNAUTHORIZED;
  }
  i += sl;
  while (i < len && is_space(value[i]))
    i++;
  size_t end = len;
  while (end > i && is_space(value[end - 1]))
    end--;
  if (end == i || end - i > PSL_HTTP_TOKEN_MAX)
    return PSL_EUNAUTHORIZED;
  for (size_t k = i; k < end; k++)
    if ((unsigned char)value[k] <= 0x20 || (unsigned char)value[k] == 0x7f)
      return PSL_EUNAUTHORIZED;
  token->ptr = value + i;
  token->len = end - i;
  return 0;
}

int psl_http_lists(const char *value, size_t len, const char *token) {
  size_t tl = strlen(token), i = 0;
  while (i < len) {
    while (i < len && (value[i] == ',' || is_space(value[i])))
      i++;
    size_t start = i;
    while (i < len && value[i] != ',' && !is_space(value[i]))
      i++;
    if (i - start == tl && tl > 0 && memcmp(value + start, token, tl) == 0)
      return 1;
  }
  return 0;
}
