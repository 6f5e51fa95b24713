/*
 * drv-redis.c — bench-compare's driver for Redis Streams: Debian's redis-server started on a
 * temporary folder, durable on every reply (appendonly yes, appendfsync always: Redis writes
 * and fsyncs the AOF before it sends the replies of an event-loop turn), spoken to in RESP.
 *
 * The log is one stream, `log`; an event is one entry with the fields
 *   id (16 bytes) · stream · type · terr · at (decimal ms) · data (MessagePack bytes)
 * — the same values passerelle stores.  Redis checks neither the event id's uniqueness nor a
 * per-stream version: it does less than the other two (the report says so).
 *
 *   append    n XADD log * ... pipelined in one write; answered when all n ids came back
 *   catchup   XRANGE log (<last-id> + COUNT 1000, page after page, until a short page
 *   live      XREAD BLOCK 0 COUNT 1000 STREAMS log <last-id>, again after each delivery
 *   locate    XLEN, then XREVRANGE in pages of 10,000 back to the entry before the range
 *   rebuild   the generic client-side fold over catchup (work.c)
 *
 * Server settings besides durability: no RDB snapshots (--save ""), no automatic AOF
 * rewrite (a rewrite forks and copies the whole data set in the background: inside a
 * measurement it would only slow Redis down), room for 10,100 clients.
 */
#include "cmp.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "resp.h"
#include "support/srv.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define STREAM_KEY "log"
/* Entries one XREVRANGE of locate() reads: ~4 MB per reply. */
#define LOCATE_PAGE 10000
#define START_MS 60000   /* loading a 10^7-entry AOF takes tens of seconds */
#define BLOCKING_MS 600000
/* Fields of an entry, in XADD order. */
#define NFIELDS 6

typedef enum { M_HELLO, M_IDLE, M_APPEND, M_CATCHUP, M_LIVE } rmode_t;

typedef struct {
  cmp_sock_t s;
  resp_scan_t sc;
  rmode_t mode;
  size_t expect, stored, refused;
  char last_id[48];
  size_t page_rows;
  int fold;
  uint64_t pos; /* events read so far in this catch-up (a fold's seq) */
} rcl_t;

typedef struct {
  char dir[PATH_MAX + 16], log[PATH_MAX + 16];
} rsys_t;

/* ---- Blocking commands (set-up). */

/* Wait for one whole reply on s; *len its bytes at cmp_sock_data(s). */
static int wait_reply(cmp_sock_t *s, size_t *len) {
  resp_scan_t sc = {0, 0};
  for (;;) {
    int k = resp_scan(&sc, cmp_sock_data(s), cmp_sock_avail(s));
    if (k == 1) {
      *len = sc.pos;
      return 0;
    }
    if (k < 0)
      return PSL_EINVALID;
    int rc = cmp_sock_wait(s, BLOCKING_MS);
    if (rc)
      return rc;
  }
}

static int ping_ok(uint16_t port) {
  cmp_sock_t s;
  size_t len;
  int ok = 0;
  if (cmp_sock_connect(&s, port, 1000))
    return 0;
  resp_cmd(&s.out, 1);
  resp_arg_str(&s.out, "PING");
  if (wait_reply(&s, &len) == 0)
    ok = len >= 5 && memcmp(cmp_sock_data(&s), "+PONG", 5) == 0; /* not -LOADING */
  cmp_sock_close(&s);
  return ok;
}

static int redis_up(cmp_sys_t *s) {
  rsys_t *rs = s->d;
  char port[16];
  snprintf(port, sizeof port, "%u", s->port);
  const char *argv[] = {REDIS_SERVER, "--port", port, "--bind", "127.0.0.1", "--dir", rs->dir,
                        "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                        "--auto-aof-rewrite-percentage", "0", "--maxclients", "10100",
                        "--protected-mode", "no", "--daemonize", "no", NULL};
  if (cmp_spawn(argv, (uid_t)-1, (gid_t)-1, rs->log, &s->pid)) {
    snprintf(s->err, sizeof s->err, "cannot start %s", REDIS_SERVER);
    return PSL_EIO;
  }
  if (cmp_wait_port(s->port, s->pid, START_MS)) {
    snprintf(s->err, sizeof s->err, "redis-server did not listen (see %.150s)", rs->log);
    return PSL_EIO;
  }
  for (int i = 0; i < START_MS / 50; i++) {
    if (ping_ok(s->port))
      return 0;
    usleep(50000);
  }
  snprintf(s->err, sizeof s->err, "redis-server did not answer PING (see %.150s)", rs->log);
  return PSL_EIO;
}

static int redis_start(cmp_sys_t *s) {
  rsys_t *rs = calloc(1, sizeof *rs);
  if (!rs)
    return PSL_ENOMEM;
  s->d = rs;
  if (access(REDIS_SERVER, X_OK) < 0) {
    snprintf(s->err, sizeof s->err, "%s: not installed (make bench-deps)", REDIS_SERVER);
    return PSL_ENOTFOUND;
  }
  snprintf(rs->dir, sizeof rs->dir, "%s/redis", s->dir);
  snprintf(rs->log, sizeof rs->log, "%s/redis.log", s->dir);
  if (mkdir(rs->dir, 0700) < 0 && errno != EEXIST)
    return PSL_EIO;
  s->port = srv_free_port();
  return redis_up(s);
}

static void redis_down(cmp_sys_t *s) {
  if (s->pid > 0 && cmp_stop_pid(s->pid, SIGTERM, BLOCKING_MS))
    fprintf(stderr, "bench-compare: redis-server had to be killed\n");
  s->pid = 0;
}

static int redis_restart(cmp_sys_t *s) {
  redis_down(s);
  s->port = srv_free_port();
  return redis_up(s);
}

static void redis_stop(cmp_sys_t *s) {
  redis_down(s);
  free(s->d);
  s->d = NULL;
}

static int command(cmp_sys_t *s, cmp_sock_t *k, const char *const *argv, unsigned argc,
                   resp_rd_t *rd) {
  size_t len;
  k->in_pos = k->in_len; /* forget the previous reply */
  resp_cmd(&k->out, argc);
  for (unsigned i = 0; i < argc; i++)
    resp_arg_str(&k->out, argv[i]);
  int rc = wait_reply(k, &len);
  if (rc) {
    snprintf(s->err, sizeof s->err, "%s: %s", argv[0], psl_err_name(rc));
    return rc;
  }
  rd->p = cmp_sock_data(k);
  rd->e = rd->p + len;
  return 0;
}

static int redis_count(cmp_sys_t *s, uint64_t *n) {
  cmp_sock_t k;
  resp_rd_t rd;
  int64_t v = 0;
  const char *argv[] = {"XLEN", STREAM_KEY};
  if (cmp_sock_connect(&k, s->port, 5000))
    return PSL_EIO;
  int rc = command(s, &k, argv, 2, &rd);
  if (!rc && resp_int(&rd, &v))
    rc = PSL_EINVALID;
  cmp_sock_close(&k);
  *n = (uint64_t)v;
  return rc;
}

/* The id of the (back + 1)-th entry from the end: the last one not to read. */
static int redis_locate(cmp_sys_t *s, uint64_t back, cmp_pos_t *pos) {
  cmp_sock_t k;
  resp_rd_t rd;
  uint64_t len, seen = 0;
  char start[64] = "+", count[24];
  int rc = redis_count(s, &len);
  memset(pos, 0, sizeof *pos);
  snprintf(pos->rid, sizeof pos->rid, "0-0");
  if (rc || back >= len)
    return rc;
  if (cmp_sock_connect(&k, s->port, 5000))
    return PSL_EIO;
  snprintf(count, sizeof count, "%d", LOCATE_PAGE);
  while (!rc) {
    const char *argv[] = {"XREVRANGE", STREAM_KEY, start, "-", "COUNT", count};
    int64_t n, two;
    if ((rc = command(s, &k, argv, 6, &rd)) || (rc = resp_array(&rd, &n)))
      break;
    if (n <= 0) {
      rc = PSL_ENOTFOUND;
      break;
    }
    for (int64_t i = 0; i < n && !rc; i++, seen++) {
      const uint8_t *id;
      size_t idl;
      if ((rc = resp_array(&rd, &two)) || (rc = resp_string(&rd, &id, &idl)) ||
          (rc = resp_skip(&rd)))
        break;
      if (seen == back) {
        snprintf(pos->rid, sizeof pos->rid, "%.*s", (int)idl, (const char *)id);
        cmp_sock_close(&k);
        return 0;
      }
      snprintf(start, sizeof start, "(%.*s", (int)idl, (const char *)id);
    }
  }
  cmp_sock_close(&k);
  snprintf(s->err, sizeof s->err, "XREVRANGE: %s", psl_err_name(rc));
  return rc;
}

/* ---- Clients. */

static int redis_open(cmp_cl_t *c) {
  rcl_t *rc = calloc(1, sizeof *rc);
  if (!rc)
    return PSL_ENOMEM;
  c->d = rc;
  if (cmp_sock_start(&rc->s, c->run->sys->port)) {
    rc->s.fd = -1;
    return PSL_EIO;
  }
  c->fd = rc->s.fd;
  rc->mode = M_HELLO; /* a PING, so that the server has set the client up */
  resp_cmd(&rc->s.out, 1);
  resp_arg_str(&rc->s.out, "PING");
  return 0;
}

static void redis_close(cmp_cl_t *c) {
  rcl_t *rc = c->d;
  if (!rc)
    return;
  cmp_sock_close(&rc->s);
  free(rc);
  c->d = NULL;
}

static int redis_wants_write(const cmp_cl_t *c) {
  const rcl_t *rc = c->d;
  return cmp_sock_pending(&rc->s) > 0;
}

static int redis_flush(cmp_cl_t *c) {
  rcl_t *rc = c->d;
  return cmp_sock_flush(&rc->s);
}

static void xrange(rcl_t *rc) {
  char start[64];
  snprintf(start, sizeof start, "(%s", rc->last_id);
  resp_cmd(&rc->s.out, 6);
  resp_arg_str(&rc->s.out, "XRANGE");
  resp_arg_str(&rc->s.out, STREAM_KEY);
  resp_arg_str(&rc->s.out, strcmp(rc->last_id, "0-0") == 0 ? "-" : start);
  resp_arg_str(&rc->s.out, "+");
  resp_arg_str(&rc->s.out, "COUNT");
  resp_arg_i64(&rc->s.out, CMP_PAGE_EVENTS);
}

static void xread(rcl_t *rc) {
  resp_cmd(&rc->s.out, 8);
  resp_arg_str(&rc->s.out, "XREAD");
  resp_arg_str(&rc->s.out, "BLOCK");
  resp_arg_str(&rc->s.out, "0");
  resp_arg_str(&rc->s.out, "COUNT");
  resp_arg_i64(&rc->s.out, CMP_PAGE_EVENTS);
  resp_arg_str(&rc->s.out, "STREAMS");
  resp_arg_str(&rc->s.out, STREAM_KEY);
  resp_arg_str(&rc->s.out, rc->last_id);
}

/* One entry [id, [field, value, ...]]: its id into rc->last_id; with fold, the event. */
static int read_entry(cmp_cl_t *c, resp_rd_t *rd) {
  rcl_t *rc = c->d;
  int64_t two, nf;
  const uint8_t *id, *f[2 * NFIELDS];
  size_t idl, fl[2 * NFIELDS];
  if (resp_array(rd, &two) || two != 2 || resp_string(rd, &id, &idl) || idl >= sizeof rc->last_id)
    return PSL_EINVALID;
  memcpy(rc->last_id, id, idl);
  rc->last_id[idl] = '\0';
  rc->pos++;
  if (!rc->fold)
    return resp_skip(rd);
  if (resp_array(rd, &nf) || nf != 2 * NFIELDS)
    return PSL_EINVALID;
  for (int i = 0; i < 2 * NFIELDS; i++)
    if (resp_string(rd, &f[i], &fl[i]) || !f[i])
      return PSL_EINVALID;
  psl_event_t ev;
  char at[24];
  memset(&ev, 0, sizeof ev);
  if (fl[1] != PSL_UUID_BYTES || fl[9] >= sizeof at)
    return PSL_EINVALID;
  memcpy(ev.id, f[1], PSL_UUID_BYTES);
  ev.stream = (psl_str_t){(const char *)f[3], fl[3]};
  ev.type = (psl_str_t){(const char *)f[5], fl[5]};
  ev.terr = (psl_str_t){(const char *)f[7], fl[7]};
  memcpy(at, f[9], fl[9]);
  at[fl[9]] = '\0';
  ev.at = strtoll(at, NULL, 10);
  ev.data = (psl_bytes_t){f[11], fl[11]};
  ev.seq = rc->pos;
  if (c->run->on_event)
    c->run->on_event(c->run, c, &ev);
  return 0;
}

static int on_entries(cmp_cl_t *c, resp_rd_t *rd, size_t *n) {
  int64_t k;
  if (resp_array(rd, &k) || k < 0)
    return PSL_EINVALID;
  for (int64_t i = 0; i < k; i++)
    if (read_entry(c, rd))
      return PSL_EINVALID;
  *n = (size_t)k;
  return 0;
}

static int on_reply(cmp_cl_t *c, const uint8_t *p, size_t len) {
  rcl_t *rc = c->d;
  cmp_run_t *r = c->run;
  resp_rd_t rd = {p, p + len};
  const uint8_t *s;
  size_t sl, n;
  int64_t one;
  if (resp_peek(&rd) == '-') {
    resp_string(&rd, &s, &sl);
    return cmp_fail(r, PSL_EINVALID, "redis: %.*s", (int)(sl < 120 ? sl : 120),
                    (const char *)s);
  }
  switch (rc->mode) {
  case M_HELLO:
    rc->mode = M_IDLE;
    r->nready++;
    if (r->on_ready)
      r->on_ready(r, c);
    return 0;
  case M_IDLE:
    return cmp_fail(r, PSL_EINVALID, "a reply nobody asked for");
  case M_APPEND:
    rc->stored++;
    if (--rc->expect == 0) {
      rc->mode = M_IDLE;
      if (r->on_appended)
        r->on_appended(r, c, rc->stored, rc->refused, 0);
    }
    return 0;
  case M_CATCHUP:
    if (on_entries(c, &rd, &n))
      return cmp_fail(r, PSL_EINVALID, "XRANGE: a reply that does not parse");
    if (r->on_events && n)
      r->on_events(r, c, n, rc->pos);
    if (n < CMP_PAGE_EVENTS) {
      rc->mode = M_IDLE;
      if (r->on_caught_up)
        r->on_caught_up(r, c);
    } else {
      xrange(rc);
    }
    return 0;
  case M_LIVE:
    /* *1 [ [ "log", entries ] ] */
    if (resp_array(&rd, &one) || one != 1 || resp_array(&rd, &one) || one != 2 ||
        resp_string(&rd, &s, &sl) || on_entries(c, &rd, &n))
      return cmp_fail(r, PSL_EINVALID, "XREAD: a reply that does not parse");
    xread(rc);
    if (r->on_events)
      r->on_events(r, c, n, rc->pos);
    return 0;
  }
  return 0;
}

static int redis_service(cmp_cl_t *c) {
  rcl_t *rc = c->d;
  int io = cmp_sock_io(&rc->s);
  if (io)
    return cmp_fail(c->run, io, "redis connection: %s", psl_err_name(io));
  for (;;) {
    int k = resp_scan(&rc->sc, cmp_sock_data(&rc->s), cmp_sock_avail(&rc->s));
    if (k < 0)
      return cmp_fail(c->run, PSL_EINVALID, "redis: not RESP");
    if (k == 0)
      break;
    size_t len = rc->sc.pos;
    memset(&rc->sc, 0, sizeof rc->sc);
    if (on_reply(c, cmp_sock_data(&rc->s), len))
      return c->run->failed;
    cmp_sock_consume(&rc->s, len);
  }
  if (rc->s.eof)
    return cmp_fail(c->run, PSL_ECLOSED, "redis closed the connection");
  return cmp_sock_flush(&rc->s);
}

static void put_field(psl_buf_t *b, const char *name, const void *p, size_t n) {
  resp_arg_str(b, name);
  resp_arg(b, p, n);
}

static int redis_append(cmp_cl_t *c, const psl_event_t *evs, size_t n) {
  rcl_t *rc = c->d;
  char at[24];
  for (size_t i = 0; i < n; i++) {
    const psl_event_t *e = &evs[i];
    int k = snprintf(at, sizeof at, "%" PRId64, e->at);
    resp_cmd(&rc->s.out, 3 + 2 * NFIELDS);
    resp_arg_str(&rc->s.out, "XADD");
    resp_arg_str(&rc->s.out, STREAM_KEY);
    resp_arg_str(&rc->s.out, "*");
    put_field(&rc->s.out, "id", e->id, PSL_UUID_BYTES);
    put_field(&rc->s.out, "stream", e->stream.ptr, e->stream.len);
    put_field(&rc->s.out, "type", e->type.ptr, e->type.len);
    put_field(&rc->s.out, "terr", e->terr.ptr, e->terr.len);
    put_field(&rc->s.out, "at", at, (size_t)k);
    put_field(&rc->s.out, "data", e->data.ptr, e->data.len);
  }
  rc->mode = M_APPEND;
  rc->expect = n;
  rc->stored = rc->refused = 0;
  return 0;
}

static int redis_catchup(cmp_cl_t *c, const cmp_pos_t *from, int fold) {
  rcl_t *rc = c->d;
  snprintf(rc->last_id, sizeof rc->last_id, "%s", from->rid[0] ? from->rid : "0-0");
  rc->fold = fold;
  rc->pos = 0;
  rc->mode = M_CATCHUP;
  xrange(rc);
  return 0;
}

static int redis_live(cmp_cl_t *c, const cmp_pos_t *from) {
  rcl_t *rc = c->d;
  snprintf(rc->last_id, sizeof rc->last_id, "%s", from->rid[0] ? from->rid : "$");
  rc->mode = M_LIVE;
  xread(rc);
  /* No answer says "blocked": the id makes it race-free (an entry added before the XREAD
   * arrives is returned at once). */
  if (c->run->on_caught_up)
    c->run->on_caught_up(c->run, c);
  return 0;
}

const cmp_driver_t cmp_drv_redis = {
    .name = "redis",
    .label = "Redis 7 Streams",
    .max_batch = 1000, /* XADDs pipelined per write, as passerelle's largest push */
    .start = redis_start,
    .restart = redis_restart,
    .stop = redis_stop,
    .locate = redis_locate,
    .rebuild = NULL,
    .count = redis_count,
    .open = redis_open,
    .service = redis_service,
    .wants_write = redis_wants_write,
    .flush = redis_flush,
    .close = redis_close,
    .append = redis_append,
    .catchup = redis_catchup,
    .live = redis_live,
};
