/*
 * srv.c — start, stop and query the real passerelled (see srv.h).
 */
#include "psl_demo.h"
#include "support/srv.h"
#include "support/tls.h"

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
    const char *argv[12 + sizeof s->extra_args / sizeof s->extra_args[0]];
    size_t n = 0;
    argv[n++] = s->bin;
    argv[n++] = "--data";
    argv[n++] = s->dir;
    argv[n++] = "--listen";
    argv[n++] = listen;
    if (s->tls) {
      argv[n++] = "--tls-cert";
      argv[n++] = s->cert;
      argv[n++] = "--tls-key";
      argv[n++] = s->key;
    }
    for (size_t i = 0; i < sizeof s->extra_args / sizeof s->extra_args[0] && s->extra_args[i];
         i++)
      argv[n++] = s->extra_args[i];
    argv[n] = NULL;
    execv(s->bin, (char *const *)argv);
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
  if ((s->port = s->fixed_port ? s->fixed_port : srv_free_port()) == 0) {
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
    if (srv_http(s, "/healthz", NULL, 1000, &status, &body, NULL) == 0) {
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

/* One HTTP/1.1 GET over a connected socket, through TLS when tls is not NULL. */
typedef struct {
  int fd;
  tls_conn_t *tls;
} hconn_t;

static ssize_t h_send(hconn_t *h, const char *p, size_t n) {
  return h->tls ? tls_conn_send(h->tls, p, n) : send(h->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t h_recv(hconn_t *h, char *p, size_t n) {
  return h->tls ? tls_conn_recv(h->tls, p, n) : recv(h->fd, p, n, 0);
}

/* Wait until fd is readable (or writable) or the deadline: 0, or PSL_EAGAIN. */
static int h_wait(hconn_t *h, short events, int64_t deadline) {
  struct pollfd pfd = {.fd = h->fd, .events = events};
  if (events == POLLIN && h->tls && tls_conn_pending(h->tls))
    return 0;
  int64_t left = deadline - now_ms();
  return left > 0 && poll(&pfd, 1, (int)left) > 0 ? 0 : PSL_EAGAIN;
}

static int h_request(hconn_t *h, const char *req, size_t rl, int64_t deadline, char **out,
                     size_t *outlen) {
  size_t n = 0, cap = 16384, sent = 0;
  char *buf;
  int r = 0;
  while (sent < rl) {
    ssize_t w = h_send(h, req + sent, rl - sent);
    if (w > 0) {
      sent += (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINTR) && h_wait(h, POLLOUT, deadline) == 0)
      continue;
    return PSL_EIO;
  }
  if (!(buf = malloc(cap + 1)))
    return PSL_ENOMEM;
  for (;;) {
    if (h_wait(h, POLLIN, deadline) != 0) {
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
    ssize_t got = h_recv(h, buf + n, cap - n);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (got <= 0)
      break; /* EOF (or reset): whatever came is the answer */
    n += (size_t)got;
    buf[n] = '\0';
    if (psl_demo_http_complete(buf, n))
      break;
  }
  buf[n] = '\0';
  *out = buf;
  *outlen = n;
  return r;
}

/* Status and body of a whole answer in buf (n bytes): the body moved to the front. */
static int h_parse(char *buf, size_t n, int *status, size_t *bodylen) {
  char *he = strstr(buf, "\r\n\r\n");
  if (strncmp(buf, "HTTP/1.", 7) != 0 || !he || n < 12)
    return PSL_EINVALID;
  *status = atoi(buf + 9);
  size_t hl = (size_t)(he - buf) + 4, bl = n - hl;
  char *te = strcasestr(buf, "\r\nTransfer-Encoding:");
  int chunked = te && te < he && strcasestr(te, "chunked") && strcasestr(te, "chunked") < he;
  memmove(buf, buf + hl, bl);
  buf[bl] = '\0';
  if (chunked)
    bl = psl_demo_http_dechunk(buf, bl);
  *bodylen = bl;
  return 0;
}

static int http_get(uint16_t port, int tls, const char *ca, const char *path, const char *bearer,
                    int timeout_ms, int *status, char **body, size_t *len) {
  char req[1024], auth[256] = "", terr[256];
  int64_t deadline = now_ms() + timeout_ms;
  hconn_t h = {connect_port(port), NULL};
  char *buf = NULL;
  size_t n = 0, bl = 0;
  int r;
  *body = NULL;
  *status = 0;
  if (h.fd < 0)
    return PSL_EIO;
  if (bearer)
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", bearer);
  int rl = snprintf(req, sizeof req,
                    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%sConnection: close\r\n\r\n",
                    path, port, auth);
  if (rl <= 0 || (size_t)rl >= sizeof req) {
    close(h.fd);
    return PSL_EINVALID;
  }
  fcntl(h.fd, F_SETFL, fcntl(h.fd, F_GETFL) | O_NONBLOCK);
  if (tls) {
    int64_t left = deadline - now_ms();
    if ((r = tls_conn_new(&h.tls, h.fd, ca, terr, sizeof terr)) != 0 ||
        (r = tls_conn_handshake(h.tls, left > 0 ? (int)left : 1, terr, sizeof terr)) != 0) {
      tls_conn_free(h.tls);
      close(h.fd);
      return r;
    }
  }
  r = h_request(&h, req, (size_t)rl, deadline, &buf, &n);
  tls_conn_free(h.tls);
  close(h.fd);
  if (r == 0)
    r = h_parse(buf, n, status, &bl);
  if (r) {
    free(buf);
    return r;
  }
  *body = buf;
  if (len)
    *len = bl;
  return 0;
}

int srv_http_get(uint16_t port, const char *path, int timeout_ms, int *status, char **body,
                 size_t *len) {
  return http_get(port, 0, NULL, path, NULL, timeout_ms, status, body, len);
}

int srv_http(const srv_t *s, const char *path, const char *bearer, int timeout_ms, int *status,
             char **body, size_t *len) {
  return http_get(s->port, s->tls, s->tls ? s->cert : NULL, path, bearer, timeout_ms, status,
                  body, len);
}

int srv_use_tls(srv_t *s) {
  char err[256];
  struct stat st;
  snprintf(s->cert, sizeof s->cert, "%s.crt", s->dir);
  snprintf(s->key, sizeof s->key, "%s.key", s->dir);
  s->tls = 1;
  if (stat(s->cert, &st) == 0 && stat(s->key, &st) == 0)
    return 0;
  int r = tls_self_signed(s->cert, s->key, err, sizeof err);
  if (r)
    set_err(s, "certificate: %s", err);
  return r;
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
