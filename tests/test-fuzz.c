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
