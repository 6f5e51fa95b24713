/*
 * proc.c — server processes for bench-compare: start (as another user for PostgreSQL, which
 * refuses to run as root), wait for the port, stop, and read their memory and CPU from /proc.
 *
 * Every process started here gets PR_SET_PDEATHSIG(SIGKILL): if the benchmark dies, its
 * servers die with it instead of holding ports, memory and gigabytes of temporary files.
 */
#include "cmp.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How often a starting server's port is probed. */
#define PROBE_MS 20
/* Processes a tree walk looks at: /proc of this machine holds a few hundred, PostgreSQL with
 * a thousand clients a thousand more. */
#define MAX_PROCS 65536

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

int cmp_spawn(const char *const argv[], uid_t uid, gid_t gid, const char *logpath, pid_t *pid) {
  pid_t parent = getpid();
  pid_t p = fork();
  if (p < 0)
    return PSL_EIO;
  if (p == 0) {
    int fd = open(logpath ? logpath : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  0644);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    setpgid(0, 0);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0)
      dup2(nul, 0);
    if (uid != (uid_t)-1) {
      if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
        fprintf(stderr, "cannot become uid %d: %s\n", (int)uid, strerror(errno));
        _exit(127);
      }
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* setuid clears it */
    }
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  *pid = p;
  return 0;
}

int cmp_exec(const char *const argv[], uid_t uid, gid_t gid, const char *logpath, char *err,
             size_t errlen) {
  pid_t p;
  int st;
  if (cmp_spawn(argv, uid, gid, logpath, &p)) {
    snprintf(err, errlen, "cannot start %s", argv[0]);
    return PSL_EIO;
  }
  while (waitpid(p, &st, 0) < 0)
    if (errno != EINTR)
      return PSL_EIO;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    return 0;
  snprintf(err, errlen, "%s failed (wait status 0x%x; see %s)", argv[0], st,
           logpath ? logpath : "its output");
  return PSL_EIO;
}

int cmp_stop_pid(pid_t pid, int sig, int timeout_ms) {
  int st;
  if (pid <= 0)
    return 0;
  kill(pid, sig);
  for (int waited = 0; waited < timeout_ms; waited += PROBE_MS) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD))
      return 0;
    sleep_ms(PROBE_MS);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return PSL_EAGAIN;
}

static int port_open(uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;
  if (fd < 0)
    return 0;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  close(fd);
  return ok;
}

int cmp_wait_port(uint16_t port, pid_t pid, int timeout_ms) {
  int st;
  for (int waited = 0; waited < timeout_ms; waited += PROBE_MS) {
    if (port_open(port))
      return 0;
    if (waitpid(pid, &st, WNOHANG) == pid)
      return PSL_EIO; /* it died */
    sleep_ms(PROBE_MS);
  }
  return PSL_EAGAIN;
}

/* ---- /proc. */

typedef struct {
  pid_t pid, ppid;
} proc_t;

/* Every process's pid and parent.  *n processes into the malloc'd array (NULL on failure). */
static proc_t *list_procs(size_t *n) {
  DIR *d = opendir("/proc");
  proc_t *v = NULL;
  size_t cap = 0;
  struct dirent *e;
  *n = 0;
  if (!d)
    return NULL;
  while ((e = readdir(d)) && *n < MAX_PROCS) {
    char path[64], buf[512];
    pid_t pid = (pid_t)atoi(e->d_name);
    if (pid <= 0)
      continue;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *p = strrchr(buf, ')');
    int ppid;
    if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1)
      continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 1024;
      proc_t *nv = realloc(v, cap * sizeof *nv);
      if (!nv)
        break;
      v = nv;
    }
    v[*n].pid = pid;
    v[(*n)++].ppid = (pid_t)ppid;
  }
  closedir(d);
  return v;
}

/* Is pid root or one of its descendants? */
static int in_tree(const proc_t *v, size_t n, pid_t pid, pid_t root) {
  for (int depth = 0; depth < 64 && pid > 1; depth++) {
    if (pid == root)
      return 1;
    pid_t parent = 0;
    for (size_t i = 0; i < n; i++)
      if (v[i].pid == pid) {
        parent = v[i].ppid;
        break;
      }
    pid = parent;
  }
  return pid == root;
}

static long pss_kib(pid_t pid) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Pss:", 4) == 0)
      kib = strtol(line + 4, NULL, 10);
  fclose(f);
  return kib;
}

/* utime + stime (+ cutime + cstime when children) of one process, in seconds. */
static double cpu_of(pid_t pid, int children) {
  char path[64], buf[1024];
  unsigned long ut = 0, st = 0;
  long cut = 0, cst = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime
   * cstime (fields 3..17) */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld", &ut,
                   &st, &cut, &cst) != 4)
    return 0;
  double ticks = (double)(ut + st) + (children ? (double)(cut + cst) : 0);
  return ticks / (double)sysconf(_SC_CLK_TCK);
}

long cmp_pss_tree_kib(pid_t root) {
  size_t n;
  long sum = 0;
  proc_t *v = list_procs(&n);
  if (!v)
    return pss_kib(root);
  for (size_t i = 0; i < n; i++)
    if (in_tree(v, n, v[i].pid, root)) {
      long k = pss_kib(v[i].pid);
      if (k > 0)
        sum += k;
    }
  free(v);
  return sum;
}

double cmp_cpu_tree(pid_t root) {
  size_t n;
  double sum = 0;
  proc_t *v = list_procs(&n);
  if (!v)
    return cpu_of(root, 1);
  for (size_t i = 0; i < n; i++)
    if (in_tree(v, n, v[i].pid, root))
      sum += cpu_of(v[i].pid, v[i].pid == root);
  free(v);
  return sum;
}

/* ---- Files. */

int cmp_rm_rf(const char *dir) {
  if (!dir || !dir[0] || strcmp(dir, "/") == 0)
    return PSL_EINVALID;
  const char *argv[] = {"/bin/rm", "-rf", "--", dir, NULL};
  char err[128];
  return cmp_exec(argv, (uid_t)-1, (gid_t)-1, NULL, err, sizeof err);
}

void cmp_dump_tail(const char *path, size_t bytes) {
  FILE *f = fopen(path, "r");
  char buf[4096];
  size_t n;
  if (!f)
    return;
  if (fseek(f, 0, SEEK_END) == 0) {
    long size = ftell(f);
    fseek(f, size > (long)bytes ? size - (long)bytes : 0, SEEK_SET);
  }
  fprintf(stderr, "---- %s (end)\n", path);
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    fwrite(buf, 1, n, stderr);
  fprintf(stderr, "----\n");
  fclose(f);
}

void cmp_first_line(const char *const argv[], char *out, size_t outlen) {
  char tmpl[] = "/tmp/psl-cmp-version-XXXXXX", err[128];
  int fd = mkstemp(tmpl);
  out[0] = '\0';
  if (fd < 0)
    return;
  close(fd);
  if (cmp_exec(argv, (uid_t)-1, (gid_t)-1, tmpl, err, sizeof err) == 0) {
    FILE *f = fopen(tmpl, "r");
    if (f) {
      if (fgets(out, (int)outlen, f))
        out[strcspn(out, "\r\n")] = '\0';
      fclose(f);
    }
  }
  unlink(tmpl);
}
