/*
 * http.c — psl_demo_http_get: one HTTP/1.1 GET over plain TCP with a bearer token, for the
 * demo writer (the report, /healthz) and the tests of the API.  Connection: close; the
 * answer is read to its end (Content-Length, chunked, or EOF), bounded in size and time.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "demo_int.h"

/* The largest answer read: a yearly report at --scale is a few hundred KiB; 64 MiB bounds a
 * broken or hostile server's. */
#define HTTP_MAX_ANSWER (64u * 1024u * 1024u)
/* The request: a path and a token are short (PROTOCOL-v1); longer ones are refused. */
#define HTTP_MAX_REQUEST 2048

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int http_connect(const char *host, uint16_t port, int64_t deadline) {
  struct addrinfo hints, *res = NULL;
  char svc[8];
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(svc, sizeof svc, "%u", port);
  if (getaddrinfo(host, svc, &hints, &res) != 0)
    return -1;
  int fd = -1;
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0)
      continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
      break;
    struct pollfd pfd = {fd, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof err;
    int64_t left = deadline - mono_ms();
    if (errno != EINPROGRESS || left <= 0 || poll(&pfd, 1, (int)left) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR)
      return PSL_EIO;
    struct pollfd pfd = {fd, POLLOUT, 0};
    int64_t left = deadline - mono_ms();
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
      return PSL_EAGAIN;
  }
  return 0;
}

int psl_demo_http_complete(const char *buf, size_t n) {
  const char *he = memmem(buf, n, "\r\n\r\n", 4);
  if (!he)
    return 0;
  size_t hl = (size_t)(he - buf) + 4;
  const char *cl = strcasestr(buf, "\r\ncontent-length:");
  if (cl && cl < he)
    return n >= hl + (size_t)strtoul(cl + 17, NULL, 10);
  const char *te = strcasestr(buf, "\r\ntransfer-encoding:");
  if (te && te < he && strcasestr(te, "chunked"))
    return memmem(he, n - (size_t)(he - buf), "\r\n0\r\n\r\n", 7) != NULL;
  return 0;
}

size_t psl_demo_http_dechunk(char *body, size_t n) {
  size_t in = 0, out = 0;
  while (in < n) {
    char *endp;
    unsigned long sz = strtoul(body + in, &endp, 16);
    char *eol = memmem(body + in, n - in, "\r\n", 2);
    if (!eol || endp == body + in)
      break;
    in = (size_t)(eol - body) + 2;
    if (sz == 0 || sz > n - in)
      break;
    memmove(body + out, body + in, sz);
    out += sz;
    in += sz + 2;
  }
  body[out] = '\0';
  return out;
}

int psl_demo_http_get(const char *host, uint16_t port, const char *path, const char *token,
                      int timeout_ms, int *status, char **body, size_t *len, char *ctype,
                      size_t ctypelen) {
  char req[HTTP_MAX_REQUEST];
  int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 10000);
  *status = 0;
  *body = NULL;
  if (ctype && ctypelen)
    ctype[0] = '\0';
  int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%u\r\n%s%s%sConnection: close\r\n\r\n",
                    path, host, port, token ? "Authorization: Bearer " : "", token ? token : "",
                    token ? "\r\n" : "");
  if (rl < 0 || (size_t)rl >= sizeof req)
    return PSL_EINVALID;
  int fd = http_connect(host, port, deadline);
  if (fd < 0)
    return PSL_EIO;
  int rc = send_all(fd, req, (size_t)rl, deadline);
  size_t n = 0, cap = 16384;
  char *buf = rc ? NULL : malloc(cap + 1);
  if (!rc && !buf)
    rc = PSL_ENOMEM;
  while (!rc) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int64_t left = deadline - mono_ms();
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
      rc = PSL_EAGAIN;
      break;
    }
    if (n == cap) {
      char *nb = cap >= HTTP_MAX_ANSWER ? NULL : realloc(buf, cap * 2 + 1);
      if (!nb) {
        rc = cap >= HTTP_MAX_ANSWER ? PSL_ETOO_BIG : PSL_ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t got = recv(fd, buf + n, cap - n, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (got <= 0)
      break; /* EOF (or reset): what came is the answer */
    n += (size_t)got;
    buf[n] = '\0';
    if (psl_demo_http_complete(buf, n))
      break;
  }
  close(fd);
  if (rc) {
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  char *he = strstr(buf, "\r\n\r\n");
  if (n < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || !he) {
    free(buf);
    return PSL_EINVALID;
  }
  *status = atoi(buf + 9);
  *he = '\0'; /* headers end here, for the searches below */
  if (ctype && ctypelen) {
    const char *ct = strcasestr(buf, "\r\ncontent-type:");
    if (ct) {
      ct += 15;
      while (*ct == ' ')
        ct++;
      size_t cl = strcspn(ct, "\r\n");
      snprintf(ctype, ctypelen, "%.*s", (int)cl, ct);
    }
  }
  int chunked = strcasestr(buf, "\r\ntransfer-encoding: chunked") != NULL;
  size_t hl = (size_t)(he - buf) + 4, bl = n - hl;
  memmove(buf, buf + hl, bl);
  buf[bl] = '\0';
  if (chunked)
    bl = psl_demo_http_dechunk(buf, bl);
  *body = buf;
  if (len)
    *len = bl;
  return 0;
}
