/*
 * run.c — run_tool (run.h): fork, exec, collect stdout and stderr through temporary files
 * (no pipe to drain while waiting, whatever the size of the output), wait with a deadline.
 */
#include "support/run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "psl_error.h"

#define RUN_MAX_ARGS 32

static char *slurp(int fd, size_t *len) {
  size_t n = 0, cap = 8192;
  char *buf = malloc(cap + 1);
  if (!buf)
    return NULL;
  lseek(fd, 0, SEEK_SET);
  for (;;) {
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb)
        break;
      buf = nb;
      cap *= 2;
    }
    ssize_t got = read(fd, buf + n, cap - n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    n += (size_t)got;
  }
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

int run_tool(const char *bindir, const char *prog, const char *const *argv, int timeout_s,
             run_result_t *r) {
  char path[PATH_MAX];
  const char *args[RUN_MAX_ARGS + 2];
  size_t n = 0;
  memset(r, 0, sizeof *r);
  r->status = -1;
  snprintf(path, sizeof path, "%s/%s", bindir, prog);
  args[n++] = path;
  for (size_t i = 0; argv && argv[i] && n <= RUN_MAX_ARGS; i++)
    args[n++] = argv[i];
  args[n] = NULL;
  FILE *out = tmpfile(), *err = tmpfile();
  if (!out || !err) {
    if (out)
      fclose(out);
    if (err)
      fclose(err);
    return PSL_EIO;
  }
  pid_t pid = fork();
  if (pid < 0) {
    fclose(out);
    fclose(err);
    return PSL_EIO;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0)
      dup2(nul, STDIN_FILENO);
    dup2(fileno(out), STDOUT_FILENO);
    dup2(fileno(err), STDERR_FILENO);
    execv(path, (char *const *)args);
    fprintf(stderr, "run_tool: exec %s: %s\n", path, strerror(errno));
    _exit(127);
  }
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int st = 0;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid)
      break;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > timeout_s) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    struct timespec nap = {0, 5 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r->out = slurp(fileno(out), &r->outlen);
  r->err = slurp(fileno(err), NULL);
  fclose(out);
  fclose(err);
  return 0;
}

void run_free(run_result_t *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}
