/*
 * harness.c — runs every registered test in its own process, with a time limit.
 *
 * Why a process per test: a test that crashes, leaks a thread or hangs must fail alone and
 * leave the next test a clean process (libuv's test runner, for the same reason).  The
 * parent collects the exit status; a test passes when its process exits 0.
 */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Tests register before main(); 1024 is several times what the suite holds. */
#define MAX_TESTS 1024
/* Seconds a test may run before it is killed, unless it asks for more (TEST_T) or
 * PSL_TEST_TIMEOUT says otherwise. */
#define DEFAULT_TIMEOUT_S 120

struct test_entry {
  const char *area;
  const char *name;
  psl_test_fn fn;
  int timeout_s;
};

static struct test_entry tests[MAX_TESTS];
static int ntests;
static char tmpdir_path[PATH_MAX];
static char bindir_path[PATH_MAX];

void psl_test_register(const char *area, const char *name, psl_test_fn fn, int timeout_s) {
  if (ntests == MAX_TESTS) {
    fprintf(stderr, "harness: more than %d tests\n", MAX_TESTS);
    abort();
  }
  tests[ntests].area = area;
  tests[ntests].name = name;
  tests[ntests].fn = fn;
  tests[ntests].timeout_s = timeout_s;
  ntests++;
}

void psl_test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "  %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  _exit(1);
}

static void remove_tree(const char *path) {
  char cmd[PATH_MAX + 16];
  if (getenv("PSL_TEST_KEEP"))
    return;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0)
    fprintf(stderr, "harness: could not remove %s\n", path);
}

const char *psl_test_tmpdir(void) {
  if (tmpdir_path[0] == '\0') {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir_path, sizeof tmpdir_path, "%s/psl-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir_path))
      psl_test_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
  }
  return tmpdir_path;
}

const char *psl_test_bindir(void) { return bindir_path; }

uint64_t psl_test_rand(uint64_t *state) {
  uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

static int matches(const struct test_entry *t, int argc, char **argv) {
  char full[256];
  if (argc < 2)
    return 1;
  snprintf(full, sizeof full, "%s/%s", t->area, t->name);
  for (int i = 1; i < argc; i++)
    if (strncmp(full, argv[i], strlen(argv[i])) == 0)
      return 1;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run one test in a child; 0 if it passed. */
static int run_one(const struct test_entry *t, int default_timeout) {
  int timeout = t->timeout_s > default_timeout ? t->timeout_s : default_timeout;
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    setpgid(0, 0); /* the test and anything it starts (servers) form one group */
    alarm((unsigned)timeout);
    t->fn();
    if (tmpdir_path[0])
      remove_tree(tmpdir_path);
    fflush(NULL);
    _exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  kill(-pid, SIGKILL); /* servers or clients the test left behind */
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  if (WIFSIGNALED(status))
    fprintf(stderr, "  killed by signal %d%s\n", WTERMSIG(status),
            WTERMSIG(status) == SIGALRM ? " (time limit)" : "");
  return 1;
}

int main(int argc, char **argv) {
  int passed = 0, failed = 0, default_timeout = DEFAULT_TIMEOUT_S;
  const char *env = getenv("PSL_TEST_TIMEOUT");
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

  if (n > 0) {
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
      *slash = '\0';
    snprintf(bindir_path, sizeof bindir_path, "%s", self);
  }
  if (env && atoi(env) > 0)
    default_timeout = atoi(env);
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);

  for (int i = 0; i < ntests; i++) {
    const struct test_entry *t = &tests[i];
    if (!matches(t, argc, argv))
      continue;
    double t0 = now_s();
    fflush(NULL);
    int rc = run_one(t, default_timeout);
    printf("%s %s/%s (%.2fs)\n", rc == 0 ? "ok  " : "FAIL", t->area, t->name, now_s() - t0);
    if (rc == 0)
      passed++;
    else
      failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
