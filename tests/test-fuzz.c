/*
 * test-fuzz.c — the fuzz corpus replayed in `make test` (area `fuzz`): every input kept in
 * tests/fuzz/corpus/<target>/ runs once through its target, built with the ordinary compiler
 * ($(B)/bin/fuzz-replay-<target>, tests/fuzz/replay.c as main()).  Under `make asan` the
 * replay runs under AddressSanitizer and UBSan, under `make valgrind` under memcheck.  An
 * input that once crashed a target, or that libFuzzer kept for its coverage, keeps guarding
 * the code without clang or libFuzzer.  `make fuzz` grows the corpus (docs/RELIABILITY.md).
 */
#include "harness.h"

#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* The corpus folder of target t: from the repository root, or beside the build folder. */
static void corpus_dir(const char *t, char *out, size_t outlen) {
  struct stat st;
  snprintf(out, outlen, "tests/fuzz/corpus/%s", t);
  if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
    return;
  snprintf(out, outlen, "%s/../../tests/fuzz/corpus/%s", psl_test_bindir(), t);
}

static void replay(const char *t) {
  char dir[PATH_MAX], cmd[2 * PATH_MAX + 64], line[256];
  long n = -1;
  corpus_dir(t, dir, sizeof dir);
  snprintf(cmd, sizeof cmd, "'%s/fuzz-replay-%s' '%s' 2>&1", psl_test_bindir(), t, dir);
  FILE *p = popen(cmd, "r");
  CHECK(p != NULL);
  while (fgets(line, sizeof line, p)) {
    if (sscanf(line, "replayed %ld inputs", &n) != 1)
      fputs(line, stderr); /* a target's failure report */
  }
  int st = pclose(p);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    psl_test_fail(__FILE__, __LINE__, "fuzz-replay-%s on %s: wait status 0x%x", t, dir, st);
  printf("  fuzz: %s: %ld corpus inputs replayed\n", t, n);
  CHECK(n > 0);
}

TEST(fuzz, replay_frame_corpus) { replay("frame"); }
TEST(fuzz, replay_event_corpus) { replay("event"); }
TEST(fuzz, replay_http_corpus) { replay("http"); }
TEST(fuzz, replay_chunk_corpus) { replay("chunk"); }

/* ---- The HTTP parsers' rules at their edges (server/http_query.h), where a fuzzer rarely
 * lands: a buffer filled to the last byte, the limits themselves, and one past them. */

#include "http_query.h"

static int add(psl_http_query_t *q, const char *part) {
  return psl_http_query_add(q, part, strlen(part));
}

TEST(fuzz, http_query_rules_at_the_edges) {
  psl_http_query_t q;
  char part[PSL_HTTP_QUERY_MAX + 64];
  int64_t v;

  /* fill the buffer to 10 bytes from its end: each part "kNN=" + value takes key + 1 +
   * value + 1 bytes */
  psl_http_query_init(&q);
  size_t used = 0;
  for (int i = 0; used < PSL_HTTP_QUERY_MAX - 10; i++) {
    size_t left = PSL_HTTP_QUERY_MAX - 10 - used, vlen = left - 5;
    if (vlen > PSL_HTTP_VALUE_MAX)
      vlen = PSL_HTTP_VALUE_MAX;
    snprintf(part, sizeof part, "k%02d=", i);
    memset(part + 4, 'v', vlen);
    part[4 + vlen] = '\0';
    CHECK_OK(add(&q, part));
    used += 3 + 1 + vlen + 1;
    CHECK_EQ(q.used, used);
  }
  CHECK_EQ(q.used, PSL_HTTP_QUERY_MAX - 10);
  /* "ab" + NUL leaves 7 bytes: a 7-byte value and its NUL do not fit, a 6-byte one does */
  CHECK_EQ(add(&q, "ab=1234567"), PSL_ETOO_BIG);
  CHECK_EQ(q.used, PSL_HTTP_QUERY_MAX - 10);
  CHECK_OK(add(&q, "ab=123456"));
  CHECK_EQ(q.used, PSL_HTTP_QUERY_MAX);
  CHECK_EQ(add(&q, "z"), PSL_ETOO_BIG); /* not one byte more */
  CHECK_EQ(q.used, PSL_HTTP_QUERY_MAX);
  for (size_t i = 0; i < q.n; i++)
    CHECK_EQ(strlen(q.params[i].value), q.params[i].value_len);

  /* counts, lengths, bytes, duplicates */
  psl_http_query_init(&q);
  for (int i = 0; i < PSL_HTTP_MAX_PARAMS; i++) {
    snprintf(part, sizeof part, "p%d=1", i);
    CHECK_OK(add(&q, part));
  }
  CHECK_EQ(add(&q, "extra=1"), PSL_ETOO_BIG);
  psl_http_query_init(&q);
  memset(part, 'k', PSL_HTTP_KEY_MAX);
  part[PSL_HTTP_KEY_MAX] = '\0';
  CHECK_OK(add(&q, part));
  memset(part, 'j', PSL_HTTP_KEY_MAX + 1);
  part[PSL_HTTP_KEY_MAX + 1] = '\0';
  CHECK_EQ(add(&q, part), PSL_EINVALID);
  snprintf(part, sizeof part, "v=");
  memset(part + 2, 'x', PSL_HTTP_VALUE_MAX);
  part[2 + PSL_HTTP_VALUE_MAX] = '\0';
  CHECK_OK(add(&q, part));
  snprintf(part, sizeof part, "w=");
  memset(part + 2, 'x', PSL_HTTP_VALUE_MAX + 1);
  part[3 + PSL_HTTP_VALUE_MAX] = '\0';
  CHECK_EQ(add(&q, part), PSL_EINVALID);
  CHECK_EQ(add(&q, "v=again"), PSL_EINVALID);  /* a key twice */
  CHECK_EQ(add(&q, "=1"), PSL_EINVALID);       /* no key */
  CHECK_EQ(add(&q, "a b=1"), PSL_EINVALID);    /* a space in a key */
  CHECK_EQ(add(&q, "c=x\ty"), PSL_EINVALID);   /* a control byte in a value */
  CHECK_OK(add(&q, ""));                       /* an empty part is skipped */
  CHECK_OK(add(&q, "flag"));                   /* no '=': an empty value */
  CHECK_STR(psl_http_query_get(&q, "flag"), "");
  CHECK(psl_http_query_get(&q, "absent") == NULL);

  /* whole strings, and integers at their bounds */
  psl_http_query_init(&q);
  CHECK_OK(psl_http_query_parse(&q, "year=2025&&month=-1&big=9223372036854775807&over="
                                    "9223372036854775808&min=-9223372036854775808&x=1a",
                                strlen("year=2025&&month=-1&big=9223372036854775807&over="
                                       "9223372036854775808&min=-9223372036854775808&x=1a")));
  CHECK_OK(psl_http_query_int(&q, "year", 2000, 2099, &v));
  CHECK_EQ(v, 2025);
  CHECK_EQ(psl_http_query_int(&q, "month", 1, 12, &v), PSL_EINVALID);
  CHECK_OK(psl_http_query_int(&q, "big", INT64_MIN, INT64_MAX, &v));
  CHECK(v == INT64_MAX);
  CHECK_EQ(psl_http_query_int(&q, "over", INT64_MIN, INT64_MAX, &v), PSL_EINVALID);
  CHECK_OK(psl_http_query_int(&q, "min", INT64_MIN, INT64_MAX, &v));
  CHECK(v == INT64_MIN);
  CHECK_EQ(psl_http_query_int(&q, "x", 0, 100, &v), PSL_EINVALID);
  CHECK_EQ(psl_http_query_int(&q, "nope", 0, 100, &v), PSL_ENOTFOUND);
  static const char *const known[] = {"year", "month", "big", "over", "min", NULL};
  CHECK_EQ(psl_http_query_only(&q, known), PSL_EINVALID); /* x is not known */

  /* paths, bearer tokens, header lists */
  uint8_t id[PSL_UUID_BYTES];
  static const char pfx[] = "/api/v1/participants/";
  const char *ok = "/api/v1/participants/0190F5A2-7C3E-7B1D-9A4F-3C2B1A0F9E8D";
  CHECK_OK(psl_http_path_uuid(ok, strlen(ok), pfx, id));
  CHECK_EQ(psl_http_path_uuid(ok, strlen(ok) - 1, pfx, id), PSL_EINVALID);
  CHECK_EQ(psl_http_path_uuid("/api/v1/other", 13, pfx, id), PSL_ENOTFOUND);
  psl_str_t tok;
  CHECK_OK(psl_http_bearer(" bEaReR  abc.def ", 17, &tok));
  CHECK(tok.len == 7 && memcmp(tok.ptr, "abc.def", 7) == 0);
  CHECK_EQ(psl_http_bearer("Bearer", 6, &tok), PSL_EUNAUTHORIZED);
  CHECK_EQ(psl_http_bearer("Bearer a b", 10, &tok), PSL_EUNAUTHORIZED);
  CHECK_EQ(psl_http_bearer("Basic abc", 9, &tok), PSL_EUNAUTHORIZED);
  CHECK_EQ(psl_http_lists("a, passerelle.v1", 16, "passerelle.v1"), 1);
  CHECK_EQ(psl_http_lists("passerelle.v10", 14, "passerelle.v1"), 0);
  CHECK_EQ(psl_http_lists("", 0, "passerelle.v1"), 0);
}
