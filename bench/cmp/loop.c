/*
 * loop.c — the epoll loop bench-compare's workloads run in, the plain non-blocking socket the
 * Redis and PostgreSQL drivers speak through, clocks and latency samples (see cmp.h).
 *
 * One thread serves every client: the load generator keeps to one core and leaves the other
 * to the server under test (the machine has two).  Level-triggered epoll: a client is served
 * while it has input, and polled for output only while it has bytes queued.
 */
#include "cmp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Readiness events taken per epoll_wait: enough to serve many clients per wakeup. */
#define EPOLL_BATCH 256
/* Bytes one socket reads per call: a catch-up page is ~300 KB; a bound so that one busy
 * connection does not hold the loop while a thousand others wait. */
#define READ_BUDGET (1024u * 1024u)
#define READ_STEP (256u * 1024u)
/* Largest input a client buffers (a reply the parser cannot yet use): a Redis XRANGE page
 * of CMP_PAGE_EVENTS is ~400 KB; 64 MiB only bounds a runaway. */
#define SOCK_MAX_INPUT (64u * 1024u * 1024u)

double cmp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double cmp_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The kernel's receive time of the first unread byte on fd (a peek: nothing is consumed),
 * NaN when there is none. */
static double rx_stamp(int fd) {
  char b, ctl[CMSG_SPACE(sizeof(struct timespec)) * 2];
  struct iovec iov = {&b, 1};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  if (recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT) <= 0)
    return NAN;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
  return NAN;
}

double cmp_cpu_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int cmp_fail(cmp_run_t *r, int rc, const char *fmt, ...) {
  va_list ap;
  if (r->failed)
    return rc;
  r->failed = rc ? rc : PSL_EINTERNAL;
  va_start(ap, fmt);
  vsnprintf(r->err, sizeof r->err, fmt, ap);
  va_end(ap);
  return rc;
}

/* ---- The run. */

int cmp_run_init(cmp_run_t *r, cmp_sys_t *s, size_t n) {
  memset(r, 0, sizeof *r);
  r->sys = s;
  r->n = n;
  r->max_connecting = CMP_CONNECTING;
  r->ep = epoll_create1(EPOLL_CLOEXEC);
  if (r->ep < 0)
    return PSL_EIO;
  r->cl = calloc(n ? n : 1, sizeof *r->cl);
  if (!r->cl) {
    close(r->ep);
    return PSL_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    r->cl[i].run = r;
    r->cl[i].index = i;
    r->cl[i].fd = -1;
  }
  return 0;
}

void cmp_run_free(cmp_run_t *r) {
  if (!r->cl)
    return;
  for (size_t i = 0; i < r->opened; i++)
    r->sys->drv->close(&r->cl[i]);
  free(r->cl);
  r->cl = NULL;
  close(r->ep);
}

static int set_interest(cmp_cl_t *c) {
  cmp_run_t *r = c->run;
  unsigned want = EPOLLIN | (r->sys->drv->wants_write(c) ? EPOLLOUT : 0);
  if (want == c->interest)
    return 0;
  struct epoll_event ev = {.events = want, .data.ptr = c};
  if (epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
    return cmp_fail(r, PSL_EIO, "epoll_ctl: %s", strerror(errno));
  c->interest = want;
  return 0;
}

int cmp_kick(cmp_cl_t *c) {
  int rc = c->run->sys->drv->flush(c);
  if (rc)
    return cmp_fail(c->run, rc, "client %zu: send: %s", c->index, psl_err_name(rc));
  return set_interest(c);
}

static void serve(cmp_cl_t *c) {
  if (c->run->rx_stamps)
    c->rx_at = rx_stamp(c->fd);
  int rc = c->run->sys->drv->service(c);
  if (rc)
    cmp_fail(c->run, rc, "client %zu: %s", c->index, psl_err_name(rc));
  else
    set_interest(c);
}

static int open_one(cmp_run_t *r) {
  cmp_cl_t *c = &r->cl[r->opened];
  int rc = r->sys->drv->open(c);
  if (rc)
    return r->failed ? rc : cmp_fail(r, rc, "connection %zu: %s", r->opened, psl_err_name(rc));
  r->opened++;
  if (r->rx_stamps) {
    int one = 1;
    setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  }
  c->interest = EPOLLIN | EPOLLOUT;
  struct epoll_event ev = {.events = c->interest, .data.ptr = c};
  if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
    return cmp_fail(r, PSL_EIO, "epoll_ctl add: %s", strerror(errno));
  return 0;
}

int cmp_run_loop(cmp_run_t *r, double max_s) {
  struct epoll_event evs[EPOLL_BATCH];
  double deadline = cmp_now() + max_s;
  while (!r->done && !r->failed) {
    while (r->opened < r->n && r->opened - r->nready < r->max_connecting && !r->failed)
      open_one(r);
    int n = epoll_wait(r->ep, evs, EPOLL_BATCH, 100);
    if (n < 0 && errno != EINTR)
      return cmp_fail(r, PSL_EIO, "epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n && !r->failed; i++)
      serve(evs[i].data.ptr);
    if (r->on_tick && !r->failed)
      r->on_tick(r);
    if (!r->done && !r->failed && cmp_now() > deadline)
      cmp_fail(r, PSL_EAGAIN, "no end within %.0f s (%zu of %zu clients ready)", max_s,
               r->nready, r->n);
  }
  return r->failed;
}

/* ---- A plain socket. */

static int sock_new(cmp_sock_t *s, uint16_t port, int *inprogress) {
  struct sockaddr_in sa;
  int one = 1;
  memset(s, 0, sizeof *s);
  psl_buf_init(&s->out, 0);
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0)
    return PSL_EIO;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  *inprogress = 0;
  if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    if (errno != EINPROGRESS) {
      close(s->fd);
      s->fd = -1;
      return PSL_EIO;
    }
    *inprogress = 1;
  }
  return 0;
}

int cmp_sock_start(cmp_sock_t *s, uint16_t port) {
  int inprogress;
  return sock_new(s, port, &inprogress);
}

int cmp_sock_connect(cmp_sock_t *s, uint16_t port, int timeout_ms) {
  int inprogress, soerr = 0;
  socklen_t sl = sizeof soerr;
  int rc = sock_new(s, port, &inprogress);
  if (rc || !inprogress)
    return rc;
  struct pollfd p = {.fd = s->fd, .events = POLLOUT};
  if (poll(&p, 1, timeout_ms) != 1 || getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 ||
      soerr != 0) {
    cmp_sock_close(s);
    return PSL_EIO;
  }
  return 0;
}

int cmp_sock_flush(cmp_sock_t *s) {
  while (s->out_pos < s->out.len) {
    ssize_t n = send(s->fd, psl_buf_data(&s->out) + s->out_pos, s->out.len - s->out_pos,
                     MSG_NOSIGNAL);
    if (n > 0) {
      s->out_pos += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN))
      return 0;
    return PSL_EIO;
  }
  s->out.len = s->out_pos = 0;
  return 0;
}

static int sock_read(cmp_sock_t *s) {
  size_t budget = READ_BUDGET;
  if (s->in_pos > 0) { /* compact: what was consumed goes */
    memmove(s->in, s->in + s->in_pos, s->in_len - s->in_pos);
    s->in_len -= s->in_pos;
    s->in_pos = 0;
  }
  while (budget > 0 && !s->eof) {
    if (s->in_cap - s->in_len < READ_STEP / 4) {
      size_t ncap = s->in_cap ? 2 * s->in_cap : READ_STEP;
      if (ncap > SOCK_MAX_INPUT)
        return PSL_ETOO_BIG;
      uint8_t *p = realloc(s->in, ncap);
      if (!p)
        return PSL_ENOMEM;
      s->in = p;
      s->in_cap = ncap;
    }
    size_t room = s->in_cap - s->in_len;
    ssize_t n = recv(s->fd, s->in + s->in_len, room < budget ? room : budget, 0);
    if (n > 0) {
      s->in_len += (size_t)n;
      budget -= (size_t)n;
      if ((size_t)n < room)
        break; /* the socket is drained */
      continue;
    }
    if (n == 0) {
      s->eof = 1;
      break;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN)
      break;
    return PSL_EIO;
  }
  return 0;
}

int cmp_sock_io(cmp_sock_t *s) {
  int rc = sock_read(s);
  if (!rc)
    rc = cmp_sock_flush(s);
  return rc;
}

int cmp_sock_wait(cmp_sock_t *s, int timeout_ms) {
  struct pollfd p = {.fd = s->fd, .events = POLLIN | (cmp_sock_pending(s) ? POLLOUT : 0)};
  int rc = cmp_sock_flush(s);
  if (rc)
    return rc;
  if (s->eof)
    return PSL_ECLOSED;
  p.events = POLLIN | (cmp_sock_pending(s) ? POLLOUT : 0);
  int n = poll(&p, 1, timeout_ms);
  if (n < 0 && errno != EINTR)
    return PSL_EIO;
  if (n == 0)
    return PSL_EAGAIN;
  return cmp_sock_io(s);
}

void cmp_sock_close(cmp_sock_t *s) {
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  psl_buf_free(&s->out);
  free(s->in);
  s->in = NULL;
  s->in_len = s->in_pos = s->in_cap = 0;
}

/* ---- Samples. */

int cmp_samples_add(cmp_samples_t *s, double x) {
  if (s->n == s->cap) {
    size_t ncap = s->cap ? 2 * s->cap : 4096;
    double *v = realloc(s->v, ncap * sizeof *v);
    if (!v)
      return PSL_ENOMEM;
    s->v = v;
    s->cap = ncap;
  }
  s->v[s->n++] = x;
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double cmp_samples_pct(cmp_samples_t *s, double pct) {
  if (s->n == 0)
    return NAN;
  qsort(s->v, s->n, sizeof *s->v, cmp_double);
  size_t i = (size_t)(pct / 100.0 * (double)s->n);
  return s->v[i < s->n ? i : s->n - 1];
}

void cmp_samples_free(cmp_samples_t *s) {
  free(s->v);
  memset(s, 0, sizeof *s);
}
