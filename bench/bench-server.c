/*
 * bench-server — figures for passerelled end to end: real WebSocket clients (tests/support/
 * wsc.h) against the real server on a loopback port, durable (fsync before every `pushed`),
 * with BRIEF §6's event shape (~300 canonical bytes: an interview.held on a participant
 * stream).  It starts its own server on a temporary data folder (removed at the end).
 *
 * Prints, each run for ~PSL_BENCH_SECONDS (default 3) seconds, beside BRIEF §6's targets:
 *   1 client x 1 event per round trip              events/s (and push latency p50/p99)
 *   64 clients x 1 event per round trip            events/s
 *   64 clients x 100 events per push               events/s
 *   catch-up by one client, window 8, acking       events/s over >= 1,000,000 events (the
 *                                                  log is first loaded with 1,000-event pushes)
 *   10,000 idle connections after hello            server VmRSS delta / connection (on a
 *                                                  freshly restarted server, so that buffers
 *                                                  freed by earlier shapes do not hide any)
 *
 * The load runs in one thread: an epoll loop over non-blocking wsc connections, leaving the
 * second core to the server.  Figures only, never assertions; a protocol error stops the run
 * (exit 1) with the frame that caused it.
 *
 *   bench-server            (env PSL_BENCH_SECONDS=N, PSL_BENCH_KEEP=1 keeps the folder)
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "psl_access.h"
#include "psl_proto.h"
#include "support/evgen.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

/* BRIEF §6's targets. */
#define TARGET_1X1 6800.0
#define TARGET_64X1 80000.0
#define TARGET_64X100 400000.0
#define TARGET_CATCHUP 1000000.0
#define TARGET_CONN_KIB 16.0

#define EVENT_BYTES 300u        /* canonical stored bytes per event (BRIEF §6) */
#define CLIENTS 64
#define BATCH 100
#define LOAD_BATCH 1000u        /* PSL_MAX_PUSH_EVENTS: the biggest push, to load fast */
#define CATCHUP_EVENTS 1000000u
#define CATCHUP_WINDOW 8
#define IDLE_CONNS 10000
#define IDLE_CONNECTING 256     /* handshakes in flight at once: under the listen backlog */
#define EPOLL_BATCH 256
#define MAX_DRAIN_S 30.0        /* how long in-flight pushes may take to finish after a run */

/* ---- Small things. */

static srv_t server;
static char tmpdir[PATH_MAX];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cleanup(void) {
  char cmd[PATH_MAX + 16];
  srv_kill(&server);
  if (tmpdir[0] && !getenv("PSL_BENCH_KEEP")) {
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
      fprintf(stderr, "bench-server: could not remove %s\n", tmpdir);
  }
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "bench-server: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  srv_dump_log(&server, 2000);
  cleanup();
  exit(1);
}

static double run_seconds(void) {
  const char *e = getenv("PSL_BENCH_SECONDS");
  double s = e ? atof(e) : 0;
  return s > 0 ? s : 3.0;
}

/* CPU seconds this process (the load generator) used: printed beside each figure so that a
 * figure limited by the client, not the server, shows. */
static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds the server used so far (utime + stime of /proc/PID/stat). */
static double server_cpu_s(void) {
  char path[64], buf[1024];
  unsigned long ut = 0, st = 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)server.pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  /* after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
   * utime stime (fields 3..15) */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ---- A light reader for `events` / `caught_up` frames: the catch-up figure must measure
 * the server, not this client's full decoder (which validates every event's UTF-8 and keys). */

static const uint8_t *mp_skip(const uint8_t *p, const uint8_t *e, int depth);

static const uint8_t *mp_len(const uint8_t *p, const uint8_t *e, int bytes, uint64_t *n) {
  if (e - p < bytes)
    return NULL;
  *n = 0;
  for (int i = 0; i < bytes; i++)
    *n = *n << 8 | p[i];
  return p + bytes;
}

static const uint8_t *mp_skip_n(const uint8_t *p, const uint8_t *e, uint64_t n, int depth) {
  for (uint64_t i = 0; p && i < n; i++)
    p = mp_skip(p, e, depth);
  return p;
}

static const uint8_t *mp_skip(const uint8_t *p, const uint8_t *e, int depth) {
  uint64_t n;
  if (!p || p >= e || depth > 16)
    return NULL;
  uint8_t b = *p++;
  if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
    return p;
  if ((b & 0xf0) == 0x80)
    return mp_skip_n(p, e, 2u * (b & 0x0f), depth + 1);
  if ((b & 0xf0) == 0x90)
    return mp_skip_n(p, e, b & 0x0f, depth + 1);
  if ((b & 0xe0) == 0xa0)
    return (size_t)(e - p) >= (b & 0x1fu) ? p + (b & 0x1f) : NULL;
  switch (b) {
  case 0xc4: case 0xd9: p = mp_len(p, e, 1, &n); break;
  case 0xc5: case 0xda: p = mp_len(p, e, 2, &n); break;
  case 0xc6: case 0xdb: p = mp_len(p, e, 4, &n); break;
  case 0xcc: case 0xd0: return e - p >= 1 ? p + 1 : NULL;
  case 0xcd: case 0xd1: return e - p >= 2 ? p + 2 : NULL;
  case 0xca: case 0xce: case 0xd2: return e - p >= 4 ? p + 4 : NULL;
  case 0xcb: case 0xcf: case 0xd3: return e - p >= 8 ? p + 8 : NULL;
  case 0xdc: p = mp_len(p, e, 2, &n); return p ? mp_skip_n(p, e, n, depth + 1) : NULL;
  case 0xdd: p = mp_len(p, e, 4, &n); return p ? mp_skip_n(p, e, n, depth + 1) : NULL;
  case 0xde: p = mp_len(p, e, 2, &n); return p ? mp_skip_n(p, e, 2 * n, depth + 1) : NULL;
  case 0xdf: p = mp_len(p, e, 4, &n); return p ? mp_skip_n(p, e, 2 * n, depth + 1) : NULL;
  case 0xd4: return e - p >= 2 ? p + 2 : NULL;
  case 0xd5: return e - p >= 3 ? p + 3 : NULL;
  case 0xd6: return e - p >= 5 ? p + 5 : NULL;
  case 0xd7: return e - p >= 9 ? p + 9 : NULL;
  case 0xd8: return e - p >= 17 ? p + 17 : NULL;
  case 0xc7: p = mp_len(p, e, 1, &n); n++; break;
  case 0xc8: p = mp_len(p, e, 2, &n); n++; break;
  case 0xc9: p = mp_len(p, e, 4, &n); n++; break;
  default: return NULL;
  }
  return p && (uint64_t)(e - p) >= n ? p + n : NULL;
}

static const uint8_t *mp_uint(const uint8_t *p, const uint8_t *e, uint64_t *v) {
  if (p >= e)
    return NULL;
  uint8_t b = *p++;
  if (b <= 0x7f) {
    *v = b;
    return p;
  }
  switch (b) {
  case 0xcc: return mp_len(p, e, 1, v);
  case 0xcd: return mp_len(p, e, 2, v);
  case 0xce: return mp_len(p, e, 4, v);
  case 0xcf: return mp_len(p, e, 8, v);
  default: return NULL;
  }
}

static const uint8_t *mp_str(const uint8_t *p, const uint8_t *e, const char **s, size_t *n) {
  uint64_t len;
  if (p >= e)
    return NULL;
  uint8_t b = *p++;
  if ((b & 0xe0) == 0xa0)
    len = b & 0x1f;
  else if (b == 0xd9)
    p = mp_len(p, e, 1, &len);
  else
    return NULL;
  if (!p || (uint64_t)(e - p) < len)
    return NULL;
  *s = (const char *)p;
  *n = (size_t)len;
  return p + len;
}

typedef struct {
  char t[16];
  uint64_t last, head, nevents;
} light_t;

static int light_parse(const uint8_t *p, size_t len, light_t *m) {
  const uint8_t *e = p + len;
  uint64_t n;
  memset(m, 0, sizeof *m);
  if (len == 0)
    return -1;
  if ((*p & 0xf0) == 0x80)
    n = *p++ & 0x0f;
  else if (*p == 0xde)
    p = mp_len(p + 1, e, 2, &n);
  else
    return -1;
  for (uint64_t i = 0; p && i < n; i++) {
    const char *k, *s;
    size_t kl, sl;
    if (!(p = mp_str(p, e, &k, &kl)))
      return -1;
    if (kl == 1 && k[0] == 't') {
      if (!(p = mp_str(p, e, &s, &sl)))
        return -1;
      snprintf(m->t, sizeof m->t, "%.*s", (int)sl, s);
    } else if (kl == 4 && memcmp(k, "last", 4) == 0) {
      p = mp_uint(p, e, &m->last);
    } else if (kl == 4 && memcmp(k, "head", 4) == 0) {
      p = mp_uint(p, e, &m->head);
    } else if (kl == 6 && memcmp(k, "events", 6) == 0 && p < e && (*p == 0xdd || *p == 0xdc ||
                                                                    (*p & 0xf0) == 0x90)) {
      uint64_t cnt = 0;
      if ((*p & 0xf0) == 0x90) {
        cnt = *p++ & 0x0f;
      } else {
        int w = *p == 0xdd ? 4 : 2;
        if (!(p = mp_len(p + 1, e, w, &cnt)))
          return -1;
      }
      m->nevents = cnt;
      p = mp_skip_n(p, e, cnt, 1);
    } else {
      p = mp_skip(p, e, 0);
    }
  }
  return p ? 0 : -1;
}

/* ---- The epoll loop over many connections. */

typedef struct bench_s bench_t;

typedef struct {
  wsc_t *ws;
  int hello_sent, ready, primed, busy, closed;
  unsigned interest;
  uint64_t next_id;
  uint8_t pid[PSL_UUID_BYTES];
  evgen_t *tmpl;     /* pushing connections: the event every push copies, with a new id */
  psl_event_t *evs;
  size_t batch;
  double sent_at;
} conn_t;

struct bench_s {
  int ep;
  uint16_t port;
  const char *token;
  conn_t *c;
  size_t n, opened, nready, nprimed;
  size_t max_connecting;
  void (*on_ready)(bench_t *, conn_t *);
  void (*on_frame)(bench_t *, conn_t *, const wsc_frame_t *);
  int done;
  /* push shapes */
  size_t batch;
  double t0, t_end, t_last, cpu0, srv_cpu0;
  int measuring;
  uint64_t events, pushes, refused, max_seq;
  double *lat;
  size_t nlat, caplat;
  /* catch-up */
  uint64_t caught_events, caught_head, caught_last, sub_id, rounds;
  size_t chunks;
  uint64_t bytes;
};

static void update_interest(bench_t *b, conn_t *c) {
  unsigned want = EPOLLIN | (wsc_pending(c->ws) ? EPOLLOUT : 0);
  if (want == c->interest)
    return;
  struct epoll_event ev = {.events = want, .data.ptr = c};
  if (epoll_ctl(b->ep, EPOLL_CTL_MOD, wsc_fd(c->ws), &ev) < 0)
    die("epoll_ctl: %s", strerror(errno));
  c->interest = want;
}

static void open_one(bench_t *b) {
  conn_t *c = &b->c[b->opened++];
  int r = wsc_start(&c->ws, b->port, NULL);
  if (r)
    die("connection %zu: %s", b->opened, psl_err_name(r));
  c->interest = EPOLLIN | EPOLLOUT;
  struct epoll_event ev = {.events = c->interest, .data.ptr = c};
  if (epoll_ctl(b->ep, EPOLL_CTL_ADD, wsc_fd(c->ws), &ev) < 0)
    die("epoll_ctl add: %s", strerror(errno));
}

static void send_hello(conn_t *c, const char *token) {
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_HELLO;
  m.u.hello.v = PSL_PROTO_VERSION;
  m.u.hello.token = psl_str(token);
  m.u.hello.device = psl_str("bench-1");
  m.u.hello.agent = psl_str("bench-server/1");
  if (wsc_queue_msg(c->ws, &m))
    die("queue hello: %s", wsc_error(c->ws));
  c->hello_sent = 1;
}

static void on_welcome(bench_t *b, conn_t *c, const wsc_frame_t *f) {
  psl_msg_t m;
  psl_diag_t d;
  char desc[512];
  if (psl_msg_decode(f->data, f->len, &m, &d))
    die("a frame that does not decode instead of welcome: %s", d.msg);
  if (m.t != PSL_MSG_WELCOME) {
    tcli_describe(&m, desc, sizeof desc);
    die("hello answered: %s", desc);
  }
  psl_msg_free(&m);
  c->ready = 1;
  b->nready++;
  if (b->on_ready)
    b->on_ready(b, c);
}

static void service(bench_t *b, conn_t *c) {
  wsc_frame_t f;
  int io = wsc_io(c->ws);
  for (;;) {
    int r = wsc_next(c->ws, &f);
    if (!c->hello_sent && wsc_is_open(c->ws))
      send_hello(c, b->token);
    if (r == PSL_EAGAIN)
      break;
    if (r)
      die("connection %zu: %s (%s)", (size_t)(c - b->c), psl_err_name(r), wsc_error(c->ws));
    if (!c->ready)
      on_welcome(b, c, &f);
    else
      b->on_frame(b, c, &f);
  }
  if (io && io != PSL_EAGAIN)
    die("connection %zu: %s (%s)", (size_t)(c - b->c), psl_err_name(io), wsc_error(c->ws));
  if (wsc_flush_nb(c->ws))
    die("send: %s", wsc_error(c->ws));
  update_interest(b, c);
}

/* Run until b->done, or die after max_s. */
static void loop(bench_t *b, double max_s) {
  struct epoll_event evs[EPOLL_BATCH];
  double deadline = now_s() + max_s;
  while (!b->done) {
    while (b->opened < b->n && b->opened - b->nready < b->max_connecting)
      open_one(b);
    int n = epoll_wait(b->ep, evs, EPOLL_BATCH, 100);
    if (n < 0 && errno != EINTR)
      die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++)
      service(b, evs[i].data.ptr);
    if (now_s() > deadline)
      die("a run did not finish within %.0f s (%zu of %zu connections ready)", max_s,
          b->nready, b->n);
  }
}

static void bench_init(bench_t *b, size_t n, const char *token) {
  memset(b, 0, sizeof *b);
  b->ep = epoll_create1(EPOLL_CLOEXEC);
  if (b->ep < 0)
    die("epoll_create1: %s", strerror(errno));
  b->port = server.port;
  b->token = token;
  b->n = n;
  b->max_connecting = IDLE_CONNECTING;
  b->c = calloc(n, sizeof *b->c);
  if (!b->c)
    die("calloc");
}

static void bench_free(bench_t *b) {
  for (size_t i = 0; i < b->opened; i++) {
    wsc_free(b->c[i].ws);
    free(b->c[i].tmpl);
    free(b->c[i].evs);
  }
  free(b->c);
  free(b->lat);
  close(b->ep);
}

/* ---- Push shapes. */

static size_t template_target; /* wire bytes that make EVENT_BYTES canonical bytes */

static void send_push(bench_t *b, conn_t *c) {
  psl_msg_t m;
  int64_t at = evgen_now_ms();
  for (size_t i = 0; i < c->batch; i++) {
    c->evs[i] = c->tmpl->ev;
    evgen_uuid(c->evs[i].id);
    c->evs[i].at = at;
  }
  tcli_push_msg(&m, ++c->next_id, c->evs, c->batch);
  if (wsc_queue_msg(c->ws, &m))
    die("queue push: %s", wsc_error(c->ws));
  c->busy = 1;
  c->sent_at = now_s();
}

static void push_ready(bench_t *b, conn_t *c) {
  evgen_t ref;
  psl_msg_t m;
  evgen_uuid(c->pid);
  c->tmpl = malloc(sizeof *c->tmpl);
  c->evs = calloc(b->batch, sizeof *c->evs);
  if (!c->tmpl || !c->evs)
    die("malloc");
  c->batch = b->batch;
  evgen_interview(c->tmpl, c->pid, "93", PSL_EXPECT_ANY, template_target);
  /* the participant's first event, before the clock starts */
  evgen_referred(&ref, c->pid, "93", "Bench Person");
  tcli_push_msg(&m, ++c->next_id, &ref.ev, 1);
  if (wsc_queue_msg(c->ws, &m))
    die("queue push: %s", wsc_error(c->ws));
  c->busy = 1;
}

static void push_frame(bench_t *b, conn_t *c, const wsc_frame_t *f) {
  psl_msg_t m;
  psl_diag_t d;
  char desc[512];
  double t = now_s();
  if (psl_msg_decode(f->data, f->len, &m, &d))
    die("a frame that does not decode: %s", d.msg);
  if (m.t != PSL_MSG_PUSHED || m.id != c->next_id) {
    tcli_describe(&m, desc, sizeof desc);
    die("waiting for pushed id=%" PRIu64 ", got %s", c->next_id, desc);
  }
  for (size_t i = 0; i < m.u.pushed.n; i++) {
    if (m.u.pushed.results[i].err || m.u.pushed.results[i].dup)
      b->refused++;
    if (m.u.pushed.results[i].seq > b->max_seq)
      b->max_seq = m.u.pushed.results[i].seq;
  }
  c->busy = 0;
  if (!c->primed) {
    c->primed = 1;
    if (++b->nprimed == b->n) { /* every client ready: start the clock */
      b->t0 = now_s();
      b->t_end = b->t0 + run_seconds();
      b->cpu0 = self_cpu_s();
      b->srv_cpu0 = server_cpu_s();
      b->measuring = 1;
      for (size_t i = 0; i < b->n; i++)
        send_push(b, &b->c[i]);
      for (size_t i = 0; i < b->n; i++) {
        if (wsc_flush_nb(b->c[i].ws))
          die("send: %s", wsc_error(b->c[i].ws));
        update_interest(b, &b->c[i]);
      }
    }
    psl_msg_free(&m);
    return;
  }
  b->events += m.u.pushed.n;
  b->pushes++;
  b->t_last = t;
  if (b->nlat == b->caplat) {
    b->caplat = b->caplat ? 2 * b->caplat : 4096;
    if (!(b->lat = realloc(b->lat, b->caplat * sizeof *b->lat)))
      die("realloc");
  }
  b->lat[b->nlat++] = t - c->sent_at;
  psl_msg_free(&m);
  if (t < b->t_end) {
    send_push(b, c);
    return;
  }
  size_t busy = 0;
  for (size_t i = 0; i < b->n; i++)
    busy += b->c[i].busy;
  if (busy == 0)
    b->done = 1;
}

static void print_row(const char *what, double value, const char *unit, double target,
                      int higher_better, const char *extra) {
  int met = higher_better ? value >= target : value <= target;
  printf("  %-44s %12.0f %-10s target %s %9.0f  %s  %s\n", what, value, unit,
         higher_better ? ">=" : "<=", target, met ? "met " : "MISS", extra ? extra : "");
  fflush(stdout);
}

static uint64_t push_shape(const char *what, size_t clients, size_t batch, double target,
                           const char *token) {
  bench_t b;
  char extra[200] = "";
  bench_init(&b, clients, token);
  b.batch = batch;
  b.on_ready = push_ready;
  b.on_frame = push_frame;
  b.cpu0 = -1;
  loop(&b, run_seconds() + MAX_DRAIN_S + 30);
  double el = b.t_last - b.t0, cpu = self_cpu_s() - b.cpu0;
  double scpu = server_cpu_s() - b.srv_cpu0;
  if (b.nlat) {
    qsort(b.lat, b.nlat, sizeof *b.lat, cmp_double);
    snprintf(extra, sizeof extra,
             "(%" PRIu64 " pushes, latency p50 %.2f ms, p99 %.2f ms; cpu: server %.0f%%, "
             "client %.0f%%)",
             b.pushes, b.lat[b.nlat / 2] * 1e3, b.lat[b.nlat * 99 / 100] * 1e3,
             el > 0 ? 100.0 * scpu / el : 0, el > 0 ? 100.0 * cpu / el : 0);
  }
  print_row(what, el > 0 ? (double)b.events / el : 0, "events/s", target, 1, extra);
  if (b.refused)
    printf("    note: %" PRIu64 " results were not plain stores (refused or dup)\n", b.refused);
  uint64_t head = b.max_seq;
  bench_free(&b);
  return head;
}

/* ---- Loading the log and catching up. */

static void load_ready(bench_t *b, conn_t *c) { push_ready(b, c); }

static void load_frame(bench_t *b, conn_t *c, const wsc_frame_t *f) {
  psl_msg_t m;
  psl_diag_t d;
  char desc[512];
  if (psl_msg_decode(f->data, f->len, &m, &d))
    die("a frame that does not decode: %s", d.msg);
  if (m.t != PSL_MSG_PUSHED || m.id != c->next_id) {
    tcli_describe(&m, desc, sizeof desc);
    die("load: waiting for pushed id=%" PRIu64 ", got %s", c->next_id, desc);
  }
  for (size_t i = 0; i < m.u.pushed.n; i++)
    if (m.u.pushed.results[i].seq > b->max_seq)
      b->max_seq = m.u.pushed.results[i].seq;
  psl_msg_free(&m);
  c->busy = 0;
  if (b->max_seq < b->caught_head) {
    send_push(b, c);
    return;
  }
  size_t busy = 0;
  for (size_t i = 0; i < b->n; i++)
    busy += b->c[i].busy;
  if (busy == 0)
    b->done = 1;
}

static uint64_t load_to(uint64_t head, uint64_t target, const char *token) {
  bench_t b;
  if (head >= target)
    return head;
  double t0 = now_s();
  bench_init(&b, CLIENTS, token);
  b.batch = LOAD_BATCH;
  b.caught_head = target;
  b.max_seq = head;
  b.on_ready = load_ready;
  b.on_frame = load_frame;
  loop(&b, 600);
  printf("  (loaded the log to %" PRIu64 " events with %u-event pushes: %.0f events/s)\n",
         b.max_seq, LOAD_BATCH, (double)(b.max_seq - head) / (now_s() - t0));
  head = b.max_seq;
  bench_free(&b);
  return head;
}

static void catchup_sub(bench_t *b, conn_t *c) {
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_SUB;
  m.has_id = 1;
  m.id = ++b->sub_id;
  m.u.sub.from = 0;
  m.u.sub.live = 0;
  m.u.sub.window = CATCHUP_WINDOW;
  if (wsc_queue_msg(c->ws, &m))
    die("queue sub");
  b->caught_last = 0;
}

static void catchup_ready(bench_t *b, conn_t *c) {
  b->t0 = now_s();
  b->cpu0 = self_cpu_s();
  b->srv_cpu0 = server_cpu_s();
  catchup_sub(b, c);
}

static void catchup_frame(bench_t *b, conn_t *c, const wsc_frame_t *f) {
  light_t m;
  psl_msg_t ack;
  if (f->opcode != WSC_OP_BINARY || light_parse(f->data, f->len, &m) != 0)
    die("catch-up: a frame of %zu bytes that does not parse", f->len);
  if (strcmp(m.t, "events") == 0) {
    if (m.last < b->caught_last)
      die("catch-up: last went back from %" PRIu64 " to %" PRIu64, b->caught_last, m.last);
    b->caught_events += m.nevents;
    b->caught_last = m.last;
    b->chunks++;
    b->bytes += f->len;
    memset(&ack, 0, sizeof ack);
    ack.t = PSL_MSG_ACK;
    ack.u.ack.sub = b->sub_id;
    ack.u.ack.upto = m.last;
    if (wsc_queue_msg(c->ws, &ack))
      die("queue ack");
    return;
  }
  if (strcmp(m.t, "caught_up") == 0) {
    if (m.head != b->caught_last)
      die("catch-up: caught_up head %" PRIu64 " after last %" PRIu64, m.head, b->caught_last);
    b->caught_head = m.head;
    b->t_last = now_s();
    b->rounds++;
    if (b->t_last - b->t0 < run_seconds())
      catchup_sub(b, c); /* again from 0, so that the figure covers a few seconds */
    else
      b->done = 1;
    return;
  }
  die("catch-up: unexpected \"%s\"", m.t);
}

static void catchup_shape(const char *token) {
  bench_t b;
  char extra[240];
  bench_init(&b, 1, token);
  b.on_ready = catchup_ready;
  b.on_frame = catchup_frame;
  loop(&b, 600);
  double el = b.t_last - b.t0, cpu = self_cpu_s() - b.cpu0;
  double scpu = server_cpu_s() - b.srv_cpu0;
  snprintf(extra, sizeof extra,
           "(%" PRIu64 " catch-ups of %" PRIu64 " events in %.2f s, %zu chunks, %.0f MB/s; "
           "cpu: server %.0f%%, client %.0f%%)",
           b.rounds, b.caught_head, el, b.chunks, (double)b.bytes / el / 1e6,
           100.0 * scpu / el, 100.0 * cpu / el);
  print_row("catch-up, 1 client, window 8, acking", (double)b.caught_events / el, "events/s",
            TARGET_CATCHUP, 1, extra);
  if (b.caught_events != b.caught_head * b.rounds)
    printf("    note: %" PRIu64 " events delivered in %" PRIu64 " catch-ups to head %" PRIu64
           "\n", b.caught_events, b.rounds, b.caught_head);
  bench_free(&b);
}

/* ---- Idle connections. */

static void idle_frame(bench_t *b, conn_t *c, const wsc_frame_t *f) {
  die("an idle connection received a frame of %zu bytes", f->len);
}

static void idle_ready(bench_t *b, conn_t *c) {
  if (b->nready == b->n)
    b->done = 1;
}

static long rss_anon_kib(pid_t pid) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "RssAnon:", 8) == 0)
      kib = strtol(line + 8, NULL, 10);
  fclose(f);
  return kib;
}

static void idle_shape(const char *token) {
  bench_t b;
  char extra[160];
  struct rlimit rl;
  size_t n = IDLE_CONNS;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < n + 100) {
    n = rl.rlim_cur > 200 ? rl.rlim_cur - 100 : 100;
    printf("    note: RLIMIT_NOFILE is %lu: measuring %zu connections\n",
           (unsigned long)rl.rlim_cur, n);
  }
  usleep(500000);
  long rss0 = srv_rss_kib(server.pid), anon0 = rss_anon_kib(server.pid);
  double t0 = now_s();
  bench_init(&b, n, token);
  b.on_ready = idle_ready;
  b.on_frame = idle_frame;
  loop(&b, 120);
  double el = now_s() - t0;
  usleep(1000000); /* let the server settle (lazy frees, pings not due yet) */
  for (size_t i = 0; i < b.n; i++) /* answer anything that came (pings) */
    service(&b, &b.c[i]);
  long rss1 = srv_rss_kib(server.pid), anon1 = rss_anon_kib(server.pid);
  double per = (double)(rss1 - rss0) / (double)n;
  snprintf(extra, sizeof extra, "(VmRSS %ld -> %ld KiB, RssAnon %+.1f KiB/conn; opened in %.2f s)",
           rss0, rss1, (double)(anon1 - anon0) / (double)n, el);
  char what[64];
  snprintf(what, sizeof what, "%zu idle connections: memory per connection", n);
  print_row(what, per * 1024.0, "B/conn", TARGET_CONN_KIB * 1024.0, 0, extra);
  bench_free(&b);
}

/* ---- main. */

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* Wire bytes of an interview whose canonical stored form (with seq, ver, rec, by, dev of a
 * loaded log) is EVENT_BYTES. */
static size_t find_template_target(void) {
  uint8_t pid[PSL_UUID_BYTES];
  evgen_t *e = malloc(sizeof *e);
  psl_buf_t b;
  size_t target = EVENT_BYTES;
  if (!e)
    die("malloc");
  evgen_uuid(pid);
  psl_buf_init(&b, 0);
  for (int i = 0; i < 3; i++) {
    evgen_interview(e, pid, "93", PSL_EXPECT_ANY, target);
    e->ev.seq = 1000000;
    e->ev.ver = 20000;
    e->ev.rec = evgen_now_ms();
    e->ev.by = psl_str("coord-bench");
    e->ev.dev = psl_str("bench-1");
    psl_buf_reset(&b);
    if (psl_event_encode_canonical(&b, &e->ev))
      die("canonical");
    if (b.len == EVENT_BYTES)
      break;
    target = target + EVENT_BYTES - b.len;
  }
  printf("  event: %zu bytes in a push, %zu canonical bytes stored (interview.held)\n",
         evgen_wire_size(&e->ev), b.len);
  psl_buf_free(&b);
  free(e);
  return target;
}

int main(void) {
  char bindir[PATH_MAX], dir[PATH_MAX + 16], token[PSL_TOKEN_LEN + 1];
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  raise_nofile();
  if (srv_self_dir(bindir, sizeof bindir))
    die("cannot find my own directory");
  snprintf(tmpdir, sizeof tmpdir, "%s/psl-bench-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                          : "/tmp");
  if (!mkdtemp(tmpdir))
    die("mkdtemp: %s", strerror(errno));
  snprintf(dir, sizeof dir, "%s/data", tmpdir);
  if (srv_init(&server, bindir, dir))
    die("%s", server.err);
  /* One token stands for every client here: the per-token flood limits (server/flood.h) are
   * lifted so that the figures measure the server, not them. */
  server.extra_args[0] = "--token-max-conns";
  server.extra_args[1] = "0";
  server.extra_args[2] = "--token-rate";
  server.extra_args[3] = "0";
  if (srv_token(&server, PSL_ROLE_COORDINATOR, NULL, "coord-bench", "bench-1", token))
    die("token create failed");
  if (srv_start(&server, 0))
    die("%s", server.err);
  printf("bench-server: passerelled on 127.0.0.1:%u, data in %s, %.0f s per figure\n",
         server.port, dir, run_seconds());
  template_target = find_template_target();

  uint64_t head = push_shape("1 client x 1 event per round trip", 1, 1, TARGET_1X1, token);
  head = push_shape("64 clients x 1 event per round trip", CLIENTS, 1, TARGET_64X1, token);
  head = push_shape("64 clients x 100 events per push", CLIENTS, BATCH, TARGET_64X100, token);
  head = load_to(head, CATCHUP_EVENTS, token);
  catchup_shape(token);

  if (srv_stop(&server, 0))
    die("stop: %s", server.err);
  if (srv_start(&server, 0))
    die("restart: %s", server.err);
  idle_shape(token);

  if (srv_stop(&server, 30000))
    printf("  note: %s\n", server.err);
  else if (!WIFEXITED(server.status) || WEXITSTATUS(server.status) != 0)
    printf("  note: passerelled exited with wait status 0x%x after SIGTERM\n", server.status);
  cleanup();
  return 0;
}
