/*
 * srv.c — start, stop and query the real passerelled (see srv.h).
 */
#include "support/srv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Default bounds: an ASan build of the server opens its LMDB environments in well under a
 * second; 20 s only matters when something is wrong. */
#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 10000
/* Interval between /healthz probes while the server starts. */
#define PROBE_INTERVAL_MS 20
/* An HTTP answer of /metrics is a few KiB; 4 MiB bounds a broken server's. */
#define MAX_HTTP_ANSWER (4u * 1024u * 1024u)

static void set_err(srv_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(srv_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

uint16_t srv_free_port(void) {
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  uint16_t port = 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
    port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

int srv_init(srv_t *s, const char *bindir, const char *dir) {
  memset(s, 0, sizeof *s);
  snprintf(s->bin, sizeof s->bin, "%s/passerelled", bindir);
  snprintf(s->dir, sizeof s->dir, "%s", dir);
  snprintf(s->log, sizeof s->log, "%s.log", dir);
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
    set_err(s, "mkdir %s: %s", dir, strerror(errno));
    return psl_err_from_errno(errno);
  }
  if (access(s->bin, X_OK) < 0) {
    set_err(s, "%s: %s (is the server built?)", s->bin, strerror(errno));
    return PSL_ENOTFOUND;
  }
  return 0;
}

int srv_running(srv_t *s) {
  int st;
  if (s->pid <= 0)
    return 0;
  pid_t r = waitpid(s->pid, &st, WNOHANG);
  if (r == s->pid) {
    s->status = st;
    s->pid = 0;
    return 0;
  }
  return 1;
}

static pid_t spawn(srv_t *s) {
  char listen[32];
  snprintf(listen, sizeof listen, "127.0.0.1:%u", s->port);
  int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    signal(SIGPIPE, SIG_DFL);
    execl(s->bin, s->bin, "--data", s->dir, "--listen", listen, (char *)NULL);
    fprintf(stderr, "srv: exec %s: %s\n", s->bin, strerror(errno));
    _exit(127);
  }
  close(fd);
  return pid;
}

int srv_start(srv_t *s, int timeout_ms) {
  int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : START_TIMEOUT_MS);
  if (s->pid > 0) {
    set_err(s, "already running");
    return PSL_EINVALID;
  }
  if ((s->port = srv_free_port()) == 0) {
    set_err(s, "no free port");
    return PSL_EIO;
  }
  if ((s->pid = spawn(s)) < 0) {
    s->pid = 0;
    set_err(s, "fork: %s", strerror(errno));
    return PSL_EIO;
  }
  while (now_ms() < deadline) {
    int status = 0;
    char *body = NULL;
    if (!srv_running(s)) {
      set_err(s, "passerelled exited during start-up (wait status 0x%x); see %s", s->status,
              s->log);
      return PSL_EIO;
    }
    if (srv_http_get(s->port, "/healthz", 1000, &status, &body, NULL) == 0) {
      free(body);
      if (status == 200)
        return 0;
    }
    sleep_ms(PROBE_INTERVAL_MS);
  }
  set_err(s, "/healthz did not answer 200 within %d ms; see %s",
          timeout_ms > 0 ? timeout_ms : START_TIMEOUT_MS, s->log);
  srv_kill(s);
  return PSL_EAGAIN;
}

int srv_stop(srv_t *s, int timeout_ms) {
  int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : STOP_TIMEOUT_MS);
  if (s->pid <= 0)
    return 0;
  kill(s->pid, SIGTERM);
  while (now_ms() < deadline) {
    if (!srv_running(s))
      return 0;
    sleep_ms(10);
  }
  set_err(s, "passerelled did not exit within %d ms of SIGTERM",
          timeout_ms > 0 ? timeout_ms : STOP_TIMEOUT_MS);
  srv_kill(s);
  return PSL_EAGAIN;
}

void srv_kill(srv_t *s) {
  int st;
  if (s->pid <= 0)
    return;
  kill(s->pid, SIGKILL);
  while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
    ;
  s->status = st;
  s->pid = 0;
}

int srv_token(const srv_t *s, psl_role_t role, const char *terr, const char *name,
              const char *device, char token[PSL_TOKEN_LEN + 1]) {
  psl_access_t *a = NULL;
  const char *t[1] = {terr};
  int r = psl_access_open(&a, s->dir);
  if (r)
    return r;
  r = psl_access_token_create(a, role, terr ? t : NULL, terr ? 1 : 0, name, device, token,
                              NULL);
  psl_access_close(a);
  return r;
}

/* ---- HTTP. */

static int connect_port(uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Whether buf[0..n) holds a whole answer: headers, then Content-Length bytes, or a
 * chunked body up to its 0-size chunk.  Without either, only EOF ends it. */
static int answer_complete(const char *buf, size_t n) {
  const char *he = memmem(buf, n, "\r\n\r\n", 4);
  if (!he)
    return 0;
  size_t hl = (size_t)(he - buf) + 4;
  const char *cl = strcasestr(buf, "\r\nContent-Length:");
  if (cl && cl < he)
    return n >= hl + (size_t)strtoul(cl + 17, NULL, 10);
  const char *te = strcasestr(buf, "\r\nTransfer-Encoding:");
  if (te && te < he && strcasestr(te, "chunked"))
    return memmem(he, n - (size_t)(he - buf), "\r\n0\r\n\r\n", 7) != NULL;
  return 0;
}

static size_t dechunk(char *body, size_t n) {
  size_t in = 0, out = 0;
  while (in < n) {
    char *end;
    unsigned long sz = strtoul(body + in, &end, 16);
    char *eol = memmem(body + in, n - in, "\r\n", 2);
    if (!eol || end == body + in)
      break;
    in = (size_t)(eol - body) + 2;
    if (sz == 0 || in + sz > n)
      break;
    memmove(body + out, body + in, sz);
    out += sz;
    in += sz + 2;
  }
  body[out] = '\0';
  return out;
}

int srv_http_get(uint16_t port, const char *path, int timeout_ms, int *status, char **body,
                 size_t *len) {
  char req[512];
  size_t n = 0, cap = 16384;
  int64_t deadline = now_ms() + timeout_ms;
  int fd = connect_port(port), r = 0;
  char *buf;
  *body = NULL;
  *status = 0;
  if (fd < 0)
    return PSL_EIO;
  int rl = snprintf(req, sizeof req,
                    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n", path,
                    port);
  if (send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) {
    close(fd);
    return PSL_EIO;
  }
  if (!(buf = malloc(cap + 1))) {
    close(fd);
    return PSL_ENOMEM;
  }
  for (;;) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int64_t left = deadline - now_ms();
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
      r = PSL_EAGAIN;
      break;
    }
    if (n == cap) {
      char *nb;
      if (cap >= MAX_HTTP_ANSWER || !(nb = realloc(buf, cap * 2 + 1))) {
        r = PSL_ETOO_BIG;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t got = recv(fd, buf + n, cap - n, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break; /* EOF (or reset): whatever came is the answer */
    n += (size_t)got;
    buf[n] = '\0';
    if (answer_complete(buf, n))
      break;
  }
  close(fd);
  buf[n] = '\0';
  char *he = strstr(buf, "\r\n\r\n");
  if (r == 0 && (strncmp(buf, "HTTP/1.", 7) != 0 || !he || n < 12))
    r = PSL_EINVALID;
  if (r) {
    free(buf);
    return r;
  }
  *status = atoi(buf + 9);
  size_t hl = (size_t)(he - buf) + 4, bl = n - hl;
  char *te = strcasestr(buf, "\r\nTransfer-Encoding:");
  int chunked = te && te < he && strcasestr(te, "chunked") && strcasestr(te, "chunked") < he;
  memmove(buf, buf + hl, bl);
  buf[bl] = '\0';
  if (chunked)
    bl = dechunk(buf, bl);
  *body = buf;
  if (len)
    *len = bl;
  return 0;
}

/* ---- Misc. */

long srv_rss_kib(pid_t pid) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}

char *srv_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0;
  if (!f)
    return NULL;
  for (;;) {
    if (cap - n < 4096) {
      char *nb = realloc(buf, cap ? cap * 2 : 8192);
      if (!nb) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
      cap = cap ? cap * 2 : 8192;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0)
      break;
  }
  fclose(f);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

int srv_self_dir(char *out, size_t outlen) {
  ssize_t n = readlink("/proc/self/exe", out, outlen - 1);
  if (n <= 0)
    return PSL_EIO;
  out[n] = '\0';
  char *slash = strrchr(out, '/');
  if (slash)
    *slash = '\0';
  return 0;
}

void srv_dump_log(const srv_t *s, size_t bytes) {
  size_t n;
  char *text = srv_read_file(s->log, &n);
  if (!text) {
    fprintf(stderr, "  (no server log at %s)\n", s->log);
    return;
  }
  size_t from = n > bytes ? n - bytes : 0;
  fprintf(stderr, "  ---- last %zu bytes of %s ----\n%s\n  ----\n", n - from, s->log,
          text + from);
  free(text);
}
