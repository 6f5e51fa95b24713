/*
 * cmp.h — bench-compare's parts: three event stores (passerelled, Redis Streams, a PostgreSQL
 * events table) behind one driver interface, and the workloads that drive any of them through
 * it, from one thread, over non-blocking loopback sockets in one epoll loop.
 *
 *   loop.c        the epoll loop over clients, a plain non-blocking socket, clocks, samples,
 *                 the memory of a process tree
 *   proc.c        starting and stopping server processes (as another user for PostgreSQL)
 *   resp.c/.h     the Redis protocol (RESP2): commands out, replies in
 *   pgw.c/.h      the PostgreSQL v3 protocol: startup, simple and extended queries, COPY
 *   drv-psl.c     passerelled over WebSocket (tests/support/wsc.h)
 *   drv-redis.c   redis-server: XADD / XRANGE / XREAD BLOCK into one stream `log`
 *   drv-pg.c      postgres: INSERT ... RETURNING / SELECT by position / LISTEN + NOTIFY,
 *                 preloaded with COPY
 *   work.c        the workloads: ingest, preload, catch-up, rebuild, fan-out, idle
 *   report.c      results, medians, the markdown tables of docs/BENCHMARKS.md
 *
 * The same events go to the three (the passerelle shape of bench-server: an interview.held
 * whose canonical stored form is 300 bytes, preceded on each stream by a participant.referred):
 * the same id, stream, type, territory, time and `data` bytes.  Every store acknowledges only
 * once the event is durable (fsync): passerelled always; Redis with appendfsync always;
 * PostgreSQL with fsync and synchronous_commit on.
 *
 * Callbacks: a driver's service() reads what its socket has, parses it and reports to the
 * workload through the cmp_run_t's on_* functions; a workload reacts by queueing the next
 * request (append, catchup, ...).  Errors are PSL_E* codes with a reason in run->err; a
 * failed workload is recorded as such and the comparison goes on.
 */
#ifndef PSL_BENCH_CMP_H
#define PSL_BENCH_CMP_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "psl_proto.h"
#include "support/evgen.h"

/* ---- Sizes of the comparison (BRIEF §6 and the benchmark issue). */

#define CMP_EVENT_BYTES 300u     /* passerelle's canonical stored bytes per event */
#define CMP_CATCHUP_EVENTS 1000000u
#define CMP_FANOUT_SUBS 1000u
#define CMP_IDLE_CONNS 10000u
/* PostgreSQL runs a process per connection: 10,000 would take ~30 GB on this 24 GiB machine
 * (a pooler would be the answer there), so its idle figure is taken at this many and given
 * per connection. */
#define CMP_PG_IDLE_CONNS 1000u
/* Handshakes in flight at once: under the servers' listen backlogs (passerelled and Redis
 * 511, PostgreSQL 1100 here). */
#define CMP_CONNECTING 256u
/* Events a peer's catch-up reads per request (XRANGE COUNT, SELECT ... LIMIT): ~300 KB, the
 * size of a passerelle chunk (PSL_CHUNK_BYTES, 256 KiB) within 20 %. */
#define CMP_PAGE_EVENTS 1000u
/* passerelle's catch-up window (chunks in flight), as bench-server. */
#define CMP_WINDOW 8u

typedef struct cmp_sys_s cmp_sys_t;
typedef struct cmp_cl_s cmp_cl_t;
typedef struct cmp_run_s cmp_run_t;

/* A place in a store's log.  seq: passerelle's seq / PostgreSQL's position after which to read
 * (0: from the start); rid: Redis's entry id to read from, inclusive ("-": the start; "$": the
 * end). */
typedef struct {
  uint64_t seq;
  char rid[48];
} cmp_pos_t;

typedef struct {
  const char *name;  /* "passerelle", "redis", "postgres": the key in result files */
  const char *label; /* for tables */
  /* Most events one append request carries (a push, a pipeline, a transaction). */
  size_t max_batch;
  /* Server side, blocking. */
  int (*start)(cmp_sys_t *s);   /* a fresh, empty instance in s->dir */
  int (*restart)(cmp_sys_t *s); /* stop and start again on the same data */
  void (*stop)(cmp_sys_t *s);   /* stop; the data stays (the caller removes s->dir) */
  /* Empty the running instance in place, as good as a fresh one; NULL: the caller stops it
   * and starts a new one (cheap for passerelled and redis-server, not for initdb). */
  int (*reset)(cmp_sys_t *s);
  /* Where to read from to get the last `back` events (all when back >= the log's size). */
  int (*locate)(cmp_sys_t *s, uint64_t back, cmp_pos_t *pos);
  /* The projections rebuilt from the whole log; NULL: the generic one of work.c (read every
   * event through catchup(fold) and fold it client-side).  *events folded. */
  int (*rebuild)(cmp_sys_t *s, uint64_t *events, char *err, size_t errlen);
  /* Events in the log now (blocking). */
  int (*count)(cmp_sys_t *s, uint64_t *n);
  /* Add n events the store's fastest way (blocking), the same events as appends would;
   * NULL: appends of max_batch events (work.c).  Not a figure: the ground for the others. */
  int (*preload)(cmp_sys_t *s, uint64_t n, char *err, size_t errlen);
  /* Client side, non-blocking, in the run's epoll loop. */
  int (*open)(cmp_cl_t *c);           /* connect and start the handshake; sets c->fd */
  int (*service)(cmp_cl_t *c);        /* the socket is ready: I/O, parse, report */
  int (*wants_write)(const cmp_cl_t *c);
  int (*flush)(cmp_cl_t *c);          /* write what is queued (no reading, no callbacks) */
  void (*close)(cmp_cl_t *c);         /* free c->d */
  /* Queue one request that appends evs in order (one durable commit for the lot). */
  int (*append)(cmp_cl_t *c, const psl_event_t *evs, size_t n);
  /* Read every event after / from `from` to the end, in pages; fold: decode each event and
   * report it with on_event. */
  int (*catchup)(cmp_cl_t *c, const cmp_pos_t *from, int fold);
  /* Be told of every new event after `from` (live). */
  int (*live)(cmp_cl_t *c, const cmp_pos_t *from);
} cmp_driver_t;

extern const cmp_driver_t cmp_drv_psl, cmp_drv_redis, cmp_drv_pg;

/* One running instance of a store. */
struct cmp_sys_s {
  const cmp_driver_t *drv;
  char dir[PATH_MAX];    /* its data folder (created by start) */
  char bindir[PATH_MAX]; /* where passerelled is */
  uint16_t port;
  pid_t pid;             /* the server (PostgreSQL: the postmaster) */
  int notify;            /* PostgreSQL: appends also NOTIFY (fan-out) */
  void *d;               /* the driver's */
  char err[256];
};

/* One client connection. */
struct cmp_cl_s {
  cmp_run_t *run;
  size_t index;
  int fd;
  unsigned interest; /* epoll events registered */
  void *d;           /* the driver's */
  /* the workload's */
  int ready, primed, busy;
  double t_sent;
  uint64_t got, last;
  double rx_at; /* with run->rx_stamps: when the kernel received the unread input (wall) */
  void *w;
};

/* One workload over n clients of one system. */
struct cmp_run_s {
  cmp_sys_t *sys;
  int ep;
  cmp_cl_t *cl;
  size_t n, opened, nready, max_connecting;
  int done, failed;
  /* Stamp each client's input with the kernel's receive time (SO_TIMESTAMPNS) in c->rx_at
   * before the driver reads it: latencies then exclude the time this one thread takes to get
   * round to a socket among a thousand ready ones. */
  int rx_stamps;
  char err[256];
  /* The workload's reactions (NULL: ignored). */
  void (*on_ready)(cmp_run_t *r, cmp_cl_t *c);
  /* An append answered: `stored` events durable, `refused` not (conflict, duplicate, error);
   * last: the position of the last one stored (0 if unknown). */
  void (*on_appended)(cmp_run_t *r, cmp_cl_t *c, size_t stored, size_t refused, uint64_t last);
  /* n events received (catch-up page or live delivery), the last at position `last`. */
  void (*on_events)(cmp_run_t *r, cmp_cl_t *c, size_t n, uint64_t last);
  /* One event decoded (catchup with fold); ev and its bytes live during the call. */
  void (*on_event)(cmp_run_t *r, cmp_cl_t *c, const psl_event_t *ev);
  /* A catch-up reached the end; or, for live, the subscription is in place. */
  void (*on_caught_up)(cmp_run_t *r, cmp_cl_t *c);
  /* Called at every turn of the loop (at least every 100 ms). */
  void (*on_tick)(cmp_run_t *r);
  void *w;
};

/* ---- loop.c */

double cmp_now(void);     /* monotonic seconds */
double cmp_wall(void);    /* CLOCK_REALTIME seconds: the clock of kernel receive stamps */
double cmp_cpu_self(void); /* CPU seconds this process used */

/* Set up a run of n clients (none opened yet).  0 or PSL_ENOMEM / PSL_EIO. */
int cmp_run_init(cmp_run_t *r, cmp_sys_t *s, size_t n);
void cmp_run_free(cmp_run_t *r); /* closes every client */
/* Open clients (at most max_connecting handshakes at once) and serve them until r->done or
 * r->failed, or max_s seconds (PSL_EAGAIN).  Returns 0 or the failure. */
int cmp_run_loop(cmp_run_t *r, double max_s);
/* Record a failure (first one wins): r->failed, r->err; returns rc. */
int cmp_fail(cmp_run_t *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* After queueing output on a client from another client's callback (or outside the loop):
 * write what its socket takes now and poll it for output if some is left.  Never parses, so
 * it is safe from any callback. */
int cmp_kick(cmp_cl_t *c);

/* A plain non-blocking TCP client socket to 127.0.0.1:port with an input and output buffer. */
typedef struct {
  int fd;
  psl_buf_t out;
  size_t out_pos;
  uint8_t *in;
  size_t in_len, in_pos, in_cap;
  int eof;
} cmp_sock_t;

int cmp_sock_start(cmp_sock_t *s, uint16_t port); /* non-blocking connect */
int cmp_sock_connect(cmp_sock_t *s, uint16_t port, int timeout_ms); /* blocking connect */
/* Read what is there (bounded per call) and write what is queued: 0, PSL_EIO, PSL_ECLOSED
 * (EOF: data read before stays available). */
int cmp_sock_io(cmp_sock_t *s);
int cmp_sock_flush(cmp_sock_t *s); /* write only: 0 or PSL_EIO */
/* Wait (poll) up to timeout_ms for input, then cmp_sock_io: blocking use. */
int cmp_sock_wait(cmp_sock_t *s, int timeout_ms);
static inline const uint8_t *cmp_sock_data(const cmp_sock_t *s) { return s->in + s->in_pos; }
static inline size_t cmp_sock_avail(const cmp_sock_t *s) { return s->in_len - s->in_pos; }
static inline void cmp_sock_consume(cmp_sock_t *s, size_t n) { s->in_pos += n; }
static inline size_t cmp_sock_pending(const cmp_sock_t *s) { return s->out.len - s->out_pos; }
void cmp_sock_close(cmp_sock_t *s);

/* Samples (latencies), growable. */
typedef struct {
  double *v;
  size_t n, cap;
} cmp_samples_t;
int cmp_samples_add(cmp_samples_t *s, double x);
double cmp_samples_pct(cmp_samples_t *s, double pct); /* sorts; NaN when empty */
void cmp_samples_free(cmp_samples_t *s);

/* ---- proc.c */

/* Start argv[0] (a path) with argv, as uid/gid when uid != (uid_t)-1, stdout and stderr
 * appended to logpath, in its own process group, killed if we die.  0 and *pid, or PSL_EIO. */
int cmp_spawn(const char *const argv[], uid_t uid, gid_t gid, const char *logpath, pid_t *pid);
/* cmp_spawn and wait: 0 if it exited 0, PSL_EIO otherwise (err says how). */
int cmp_exec(const char *const argv[], uid_t uid, gid_t gid, const char *logpath, char *err,
             size_t errlen);
/* SIGTERM (sig), wait up to timeout_ms, then SIGKILL; reaps.  0 if it exited by itself. */
int cmp_stop_pid(pid_t pid, int sig, int timeout_ms);
/* Wait until 127.0.0.1:port accepts connections while pid lives: 0, PSL_EAGAIN, PSL_EIO. */
int cmp_wait_port(uint16_t port, pid_t pid, int timeout_ms);
/* Proportional set size (KiB) of pid and its descendants (-1 if unreadable). */
long cmp_pss_tree_kib(pid_t pid);
/* CPU seconds used by pid and its live descendants, plus the children it reaped. */
double cmp_cpu_tree(pid_t pid);
/* rm -rf dir (refuses "/" and ""). */
int cmp_rm_rf(const char *dir);
/* The last `bytes` of a file to stderr (a server's log, when it failed). */
void cmp_dump_tail(const char *path, size_t bytes);
/* The first line a command prints (versions), or "" */
void cmp_first_line(const char *const argv[], char *out, size_t outlen);

/* ---- work.c: each returns 0 or PSL_E* (err says why) and fills its result. */

typedef struct {
  double events_per_s, p50_ms, p99_ms;
  uint64_t events, requests, refused;
  uint64_t stored; /* every event stored, the unmeasured first requests too */
  double server_cpu, client_cpu; /* fractions of one core over the run */
} cmp_ingest_t;

typedef struct {
  double events_per_s;
  uint64_t events;
  double seconds;
} cmp_rate_t;

typedef struct {
  double p50_push_ms, p99_push_ms; /* from sending the push to each subscriber's delivery */
  double p50_ack_ms, p99_ack_ms;   /* from the push's ack to each delivery (may be < 0) */
  uint64_t samples, rounds;
} cmp_fanout_t;

typedef struct {
  size_t conns;
  double bytes_per_conn; /* Pss delta of the server's processes / conns */
  long kib_before, kib_after;
} cmp_idle_t;

/* clients x batch events per request, for `seconds` after every client made its first
 * (unmeasured) request. */
int cmp_ingest(cmp_sys_t *s, size_t clients, size_t batch, double seconds, cmp_ingest_t *out,
               char *err, size_t errlen);
/* Append until the log holds at least `target` events (max_batch per request, a new
 * participant per request).  *count the events in the log afterwards. */
int cmp_preload(cmp_sys_t *s, uint64_t target, uint64_t *count, char *err, size_t errlen);
/* One client reads the last `back` events, again and again for `seconds` (at least once). */
int cmp_catchup(cmp_sys_t *s, uint64_t back, double seconds, cmp_rate_t *out, char *err,
                size_t errlen);
/* The projections from the whole log (the driver's, or the generic client-side fold). */
int cmp_rebuild(cmp_sys_t *s, cmp_rate_t *out, char *err, size_t errlen);
/* subs live subscribers; one client pushes one event at a time, `rounds` times or for
 * `seconds`. */
int cmp_fanout(cmp_sys_t *s, size_t subs, size_t rounds, double seconds, cmp_fanout_t *out,
               char *err, size_t errlen);
/* n connections after their handshake, held; the server's memory before and after. */
int cmp_idle(cmp_sys_t *s, size_t n, cmp_idle_t *out, char *err, size_t errlen);

/* ---- The events (work.c). */

/* One participant's stream: its first event (referred) and the interview every later append
 * copies with a new id. */
typedef struct {
  uint8_t pid[PSL_UUID_BYTES];
  evgen_t ref, tmpl;
  int started;
} cmp_stream_t;

void cmp_stream_new(cmp_stream_t *st);
/* Fill evs[0..n) with the stream's next events (its referral first when not started). */
void cmp_stream_fill(cmp_stream_t *st, psl_event_t *evs, size_t n);
/* Wire bytes that make a CMP_EVENT_BYTES canonical interview (computed once). */
size_t cmp_template_target(void);

#endif /* PSL_BENCH_CMP_H */
