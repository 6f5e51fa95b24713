/*
 * drv-pg.c — bench-compare's driver for an events table in PostgreSQL: Debian's postgres
 * (initdb into a temporary folder, run as the `postgres` user when we are root: it refuses
 * root), durable on every commit (fsync on, synchronous_commit on), spoken to in protocol
 * 3.0 (pgw.h) over loopback TCP, trust authentication.
 *
 * The table (what a team would write for an event log):
 *
 *   events(position bigint identity primary key, id uuid unique, stream text, version int,
 *          type text, terr text, at bigint, data bytea, unique (stream, version))
 *
 *   append    per event Bind/Execute of
 *               INSERT INTO events (id, stream, version, type, terr, at, data)
 *               SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6
 *               FROM events WHERE stream = $2
 *               ON CONFLICT (id) DO NOTHING RETURNING position, version
 *             — idempotent on the event id, the next version of its stream (the unique
 *             (stream, version) index refuses a racing writer) — then one Sync: the n events
 *             are one implicit transaction, one durable commit, one round trip.
 *   catchup   SELECT every column WHERE position > $1 ORDER BY position LIMIT 1000, page
 *             after page (keyset pagination), until a short page.
 *   live      LISTEN events; each notification → the same SELECT after the last position.
 *             The pusher's transaction NOTIFYs (sys->notify) so that listeners wake at commit.
 *   rebuild   the generic client-side fold over catchup (work.c).
 *
 * Server settings besides durability: shared_buffers 1 GB (the default 128 MB would starve a
 * 10^7-row table's indexes), max_wal_size 16 GB and checkpoint_timeout 30 min (no checkpoint
 * storm inside a measurement: it would only slow PostgreSQL down), max_connections 1100.
 */
#include "cmp.h"

#include <errno.h>
#include <glob.h>
#include <poll.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pgw.h"
#include "support/srv.h"

#define PG_BIN_DEFAULT "/usr/lib/postgresql/15/bin"
#define PG_BIN_GLOB "/usr/lib/postgresql/*/bin/postgres"
#define START_MS 120000 /* recovery after a restart on 10^7 rows can take a while */
#define BLOCKING_MS 600000
#define NCOLS 8

static const char SCHEMA[] =
    "CREATE TABLE events ("
    " position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " id uuid NOT NULL UNIQUE,"
    " stream text NOT NULL,"
    " version integer NOT NULL,"
    " type text NOT NULL,"
    " terr text NOT NULL,"
    " at bigint NOT NULL,"
    " data bytea NOT NULL,"
    " UNIQUE (stream, version))";

static const char SQL_INSERT[] =
    "INSERT INTO events (id, stream, version, type, terr, at, data) "
    "SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6 "
    "FROM events WHERE stream = $2 "
    "ON CONFLICT (id) DO NOTHING RETURNING position, version";
static const uint32_t INSERT_TYPES[] = {PGW_UUID, PGW_TEXT, PGW_TEXT, PGW_TEXT, PGW_INT8,
                                        PGW_BYTEA};

static const char SQL_PAGE[] =
    "SELECT position, id, stream, version, type, terr, at, data FROM events "
    "WHERE position > $1 ORDER BY position LIMIT $2";
static const uint32_t PAGE_TYPES[] = {PGW_INT8, PGW_INT8};

typedef struct {
  char bin[PATH_MAX], data[PATH_MAX + 8], log[PATH_MAX + 16];
  uid_t uid;
  gid_t gid;
} pgsys_t;

typedef enum { P_STARTUP, P_PREPARE, P_IDLE, P_APPEND, P_PAGE, P_LISTEN } pending_t;

typedef struct {
  cmp_sock_t s;
  pending_t pending;
  int in_error, fold, live, notified;
  size_t n, stored, refused, rows;
  uint64_t after, last;
  char error[160];
} pcl_t;

/* ---- Blocking queries (set-up). */

/* Run sql on k; the first column of the first row (text) into val when not NULL. */
static int simple(cmp_sys_t *s, cmp_sock_t *k, const char *sql, char *val, size_t vallen) {
  pgw_query(&k->out, sql);
  int have_row = 0, failed = 0;
  if (val)
    val[0] = '\0';
  for (;;) {
    pgw_msg_t m;
    size_t used;
    int got = pgw_next(cmp_sock_data(k), cmp_sock_avail(k), &m, &used);
    if (got < 0)
      return PSL_EINVALID;
    if (got == 0) {
      int rc = cmp_sock_wait(k, BLOCKING_MS);
      if (rc)
        return rc;
      continue;
    }
    if (m.type == 'E') {
      pgw_error_text(&m, s->err, sizeof s->err);
      failed = 1;
    } else if (m.type == 'D' && val && !have_row) {
      pgw_col_t col;
      if (pgw_row(&m, &col, 1) == 1 && col.len >= 0) {
        size_t n = (size_t)col.len < vallen - 1 ? (size_t)col.len : vallen - 1;
        memcpy(val, col.p, n);
        val[n] = '\0';
      }
      have_row = 1;
    }
    cmp_sock_consume(k, used);
    if (m.type == 'Z')
      return failed ? PSL_EINVALID : 0;
  }
}

/* Connect and finish the startup (trust).  PSL_EAGAIN while the server is starting up. */
static int session(cmp_sys_t *s, cmp_sock_t *k) {
  if (cmp_sock_connect(k, s->port, 5000))
    return PSL_EAGAIN;
  pgw_startup(&k->out, "postgres", "postgres");
  for (;;) {
    pgw_msg_t m;
    size_t used;
    int got = pgw_next(cmp_sock_data(k), cmp_sock_avail(k), &m, &used);
    if (got < 0)
      break;
    if (got == 0) {
      if (cmp_sock_wait(k, 10000))
        break;
      continue;
    }
    if (m.type == 'E') {
      pgw_error_text(&m, s->err, sizeof s->err);
      cmp_sock_close(k);
      return strncmp(s->err, "57P03", 5) == 0 ? PSL_EAGAIN : PSL_EIO; /* starting up */
    }
    if (m.type == 'R' && (m.len < 4 || pgw_be32(m.body) != 0)) {
      snprintf(s->err, sizeof s->err, "postgres asks for a password (trust expected)");
      break;
    }
    cmp_sock_consume(k, used);
    if (m.type == 'Z')
      return 0;
  }
  cmp_sock_close(k);
  return PSL_EIO;
}

static int query1(cmp_sys_t *s, const char *sql, char *val, size_t vallen) {
  cmp_sock_t k;
  int rc = session(s, &k);
  if (rc)
    return rc;
  rc = simple(s, &k, sql, val, vallen);
  cmp_sock_close(&k);
  return rc;
}

/* ---- The server. */

static int find_bin(pgsys_t *ps) {
  glob_t g;
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/postgres", PG_BIN_DEFAULT);
  if (access(path, X_OK) == 0) {
    snprintf(ps->bin, sizeof ps->bin, "%s", PG_BIN_DEFAULT);
    return 0;
  }
  if (glob(PG_BIN_GLOB, 0, NULL, &g) != 0)
    return PSL_ENOTFOUND;
  snprintf(ps->bin, sizeof ps->bin, "%s", g.gl_pathv[g.gl_pathc - 1]);
  ps->bin[strlen(ps->bin) - strlen("/postgres")] = '\0';
  globfree(&g);
  return 0;
}

static int pg_up(cmp_sys_t *s) {
  pgsys_t *ps = s->d;
  char exe[PATH_MAX + 16], port[16];
  snprintf(exe, sizeof exe, "%s/postgres", ps->bin);
  snprintf(port, sizeof port, "%u", s->port);
  const char *argv[] = {exe, "-D", ps->data, "-k", ps->data, "-p", port,
                        "-c", "listen_addresses=127.0.0.1",
                        "-c", "fsync=on",
                        "-c", "synchronous_commit=on",
                        "-c", "full_page_writes=on",
                        "-c", "max_connections=1100",
                        "-c", "shared_buffers=1GB",
                        "-c", "max_wal_size=16GB",
                        "-c", "checkpoint_timeout=30min",
                        "-c", "logging_collector=off",
                        NULL};
  if (cmp_spawn(argv, ps->uid, ps->gid, ps->log, &s->pid)) {
    snprintf(s->err, sizeof s->err, "cannot start %.200s", exe);
    return PSL_EIO;
  }
  if (cmp_wait_port(s->port, s->pid, START_MS)) {
    snprintf(s->err, sizeof s->err, "postgres did not listen (see %.150s)", ps->log);
    return PSL_EIO;
  }
  for (int i = 0; i < START_MS / 50; i++) {
    cmp_sock_t k;
    int rc = session(s, &k);
    if (rc == 0) {
      cmp_sock_close(&k);
      return 0;
    }
    if (rc != PSL_EAGAIN)
      return rc;
    usleep(50000);
  }
  snprintf(s->err, sizeof s->err, "postgres did not accept a session (see %.150s)", ps->log);
  return PSL_EIO;
}

static int pg_start(cmp_sys_t *s) {
  pgsys_t *ps = calloc(1, sizeof *ps);
  char initdb[PATH_MAX + 16];
  if (!ps)
    return PSL_ENOMEM;
  s->d = ps;
  if (find_bin(ps)) {
    snprintf(s->err, sizeof s->err, "postgres: not installed (make bench-deps)");
    return PSL_ENOTFOUND;
  }
  snprintf(ps->data, sizeof ps->data, "%s/pg", s->dir);
  snprintf(ps->log, sizeof ps->log, "%s/postgres.log", s->dir);
  ps->uid = (uid_t)-1;
  ps->gid = (gid_t)-1;
  if (mkdir(ps->data, 0700) < 0 && errno != EEXIST)
    return PSL_EIO;
  if (geteuid() == 0) { /* postgres refuses to run as root: run it as its own user */
    struct passwd *pw = getpwnam("postgres");
    if (!pw) {
      snprintf(s->err, sizeof s->err, "no `postgres` user (install postgresql)");
      return PSL_ENOTFOUND;
    }
    ps->uid = pw->pw_uid;
    ps->gid = pw->pw_gid;
    if (chown(ps->data, ps->uid, ps->gid) < 0 || chmod(s->dir, 0755) < 0)
      return PSL_EIO;
  }
  snprintf(initdb, sizeof initdb, "%s/initdb", ps->bin);
  const char *argv[] = {initdb, "-D", ps->data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                        "--locale=C", "--no-sync", NULL};
  if (cmp_exec(argv, ps->uid, ps->gid, ps->log, s->err, sizeof s->err))
    return PSL_EIO;
  s->port = srv_free_port();
  int rc = pg_up(s);
  if (!rc)
    rc = query1(s, SCHEMA, NULL, 0);
  return rc;
}

static void pg_down(cmp_sys_t *s) {
  /* SIGINT: the fast shutdown (SIGTERM waits for every client to leave) */
  if (s->pid > 0 && cmp_stop_pid(s->pid, SIGINT, BLOCKING_MS))
    fprintf(stderr, "bench-compare: postgres had to be killed\n");
  s->pid = 0;
}

static int pg_restart(cmp_sys_t *s) {
  pg_down(s);
  s->port = srv_free_port();
  return pg_up(s);
}

static void pg_stop(cmp_sys_t *s) {
  pg_down(s);
  free(s->d);
  s->d = NULL;
}

/* TRUNCATE makes a new, empty file for the table and each index, and RESTART IDENTITY puts
 * the positions back at 1: the table of a new cluster. */
static int pg_reset(cmp_sys_t *s) {
  return query1(s, "TRUNCATE events RESTART IDENTITY", NULL, 0);
}

static int pg_count(cmp_sys_t *s, uint64_t *n) {
  char v[32];
  int rc = query1(s, "SELECT count(*) FROM events", v, sizeof v);
  *n = rc ? 0 : strtoull(v, NULL, 10);
  return rc;
}

static int pg_locate(cmp_sys_t *s, uint64_t back, cmp_pos_t *pos) {
  char sql[200], v[32];
  snprintf(sql, sizeof sql,
           "SELECT coalesce((SELECT position FROM events ORDER BY position DESC "
           "OFFSET %" PRIu64 " LIMIT 1), 0)", back);
  memset(pos, 0, sizeof *pos);
  int rc = query1(s, sql, v, sizeof v);
  if (!rc)
    pos->seq = strtoull(v, NULL, 10);
  return rc;
}

/* ---- Preloading with COPY: the same rows the inserts would make (a participant's referral at
 * version 1, then its interviews), versions counted here instead of by max(version) + 1. */

/* Rows of one COPY (one transaction): large enough that commits cost nothing, small enough
 * that WAL is recycled as it goes. */
#define COPY_ROWS 100000u
/* Rows per CopyData message: ~50 KB. */
#define COPY_MESSAGE_ROWS 100u

/* Write everything queued (the server answers nothing before CopyDone). */
static int flush_all(cmp_sock_t *k) {
  for (;;) {
    int rc = cmp_sock_flush(k);
    if (rc || !cmp_sock_pending(k))
      return rc;
    struct pollfd p = {.fd = k->fd, .events = POLLOUT};
    if (poll(&p, 1, BLOCKING_MS) < 0 && errno != EINTR)
      return PSL_EIO;
  }
}

/* One COPY text row: uuid, stream, version, type, terr, at, data as bytea hex (\\x...).
 * The strings we write hold no tab, newline or backslash. */
static void copy_row(psl_buf_t *b, const psl_event_t *e, unsigned version) {
  static const char hex[] = "0123456789abcdef";
  char u[PSL_UUID_STR + 1], head[512];
  psl_uuid_format(e->id, u);
  int n = snprintf(head, sizeof head, "%s\t%.*s\t%u\t%.*s\t%.*s\t%" PRId64 "\t\\\\x", u,
                   (int)e->stream.len, e->stream.ptr, version, (int)e->type.len, e->type.ptr,
                   (int)e->terr.len, e->terr.ptr, e->at);
  (void)psl_buf_append(b, head, (size_t)n);
  if (psl_buf_reserve(b, 2 * e->data.len + 1))
    return;
  uint8_t *p = psl_buf_data(b) + b->len;
  for (size_t i = 0; i < e->data.len; i++) {
    *p++ = (uint8_t)hex[e->data.ptr[i] >> 4];
    *p++ = (uint8_t)hex[e->data.ptr[i] & 15];
  }
  *p = '\n';
  b->len += 2 * e->data.len + 1;
}

/* Read up to ReadyForQuery; 0 when the message `want` came (0: any) and no error. */
static int until_ready(cmp_sys_t *s, cmp_sock_t *k, char want) {
  int seen = want == 0, failed = 0;
  for (;;) {
    pgw_msg_t m;
    size_t used;
    int got = pgw_next(cmp_sock_data(k), cmp_sock_avail(k), &m, &used);
    if (got < 0)
      return PSL_EINVALID;
    if (got == 0) {
      int rc = cmp_sock_wait(k, BLOCKING_MS);
      if (rc && rc != PSL_EAGAIN)
        return rc;
      continue;
    }
    if (m.type == 'E') {
      pgw_error_text(&m, s->err, sizeof s->err);
      failed = 1;
    }
    seen |= m.type == want;
    cmp_sock_consume(k, used);
    if (m.type == want && want == 'G')
      return 0; /* copy in: the server waits for data, no ReadyForQuery yet */
    if (m.type == 'Z')
      return failed || !seen ? PSL_EINVALID : 0;
  }
}

static int pg_preload(cmp_sys_t *s, uint64_t n, char *err, size_t errlen) {
  cmp_sock_t k;
  cmp_stream_t *st = malloc(sizeof *st);
  psl_event_t *evs = calloc(PSL_MAX_PUSH_EVENTS, sizeof *evs);
  psl_buf_t rows;
  int rc = st && evs ? session(s, &k) : PSL_ENOMEM;
  psl_buf_init(&rows, 0);
  for (uint64_t done = 0; !rc && done < n;) {
    uint64_t batch = n - done < COPY_ROWS ? n - done : COPY_ROWS;
    pgw_query(&k.out, "COPY events (id, stream, version, type, terr, at, data) FROM STDIN");
    if ((rc = until_ready(s, &k, 'G')))
      break;
    for (uint64_t i = 0; i < batch && !rc; i += PSL_MAX_PUSH_EVENTS) {
      size_t m = batch - i < PSL_MAX_PUSH_EVENTS ? (size_t)(batch - i) : PSL_MAX_PUSH_EVENTS;
      cmp_stream_new(st); /* a new participant per 1,000 events, as the appends */
      cmp_stream_fill(st, evs, m);
      for (size_t j = 0; j < m; j++) {
        copy_row(&rows, &evs[j], (unsigned)j + 1);
        if ((j + 1) % COPY_MESSAGE_ROWS == 0 || j + 1 == m) {
          pgw_copy_data(&k.out, psl_buf_data(&rows), rows.len);
          psl_buf_reset(&rows);
        }
      }
      rc = flush_all(&k);
    }
    pgw_copy_done(&k.out);
    if (!rc && !(rc = flush_all(&k)) && !(rc = until_ready(s, &k, 'C')))
      done += batch;
  }
  if (rc)
    snprintf(err, errlen, "COPY: %s", s->err[0] ? s->err : psl_err_name(rc));
  if (st && evs && k.fd >= 0)
    cmp_sock_close(&k);
  psl_buf_free(&rows);
  free(evs);
  free(st);
  return rc;
}

/* ---- Clients. */

static int pg_open(cmp_cl_t *c) {
  pcl_t *pc = calloc(1, sizeof *pc);
  if (!pc)
    return PSL_ENOMEM;
  c->d = pc;
  if (cmp_sock_start(&pc->s, c->run->sys->port)) {
    pc->s.fd = -1;
    return PSL_EIO;
  }
  c->fd = pc->s.fd;
  pc->pending = P_STARTUP;
  pgw_startup(&pc->s.out, "postgres", "postgres");
  return 0;
}

static void pg_close(cmp_cl_t *c) {
  pcl_t *pc = c->d;
  if (!pc)
    return;
  cmp_sock_close(&pc->s);
  free(pc);
  c->d = NULL;
}

static int pg_wants_write(const cmp_cl_t *c) {
  const pcl_t *pc = c->d;
  return cmp_sock_pending(&pc->s) > 0;
}

static int pg_flush(cmp_cl_t *c) {
  pcl_t *pc = c->d;
  return cmp_sock_flush(&pc->s);
}

static void page(pcl_t *pc) {
  uint8_t after[8], limit[8];
  pgw_put64(after, pc->after);
  pgw_put64(limit, CMP_PAGE_EVENTS);
  pgw_param_t p[2] = {{after, 8}, {limit, 8}};
  pgw_bind(&pc->s.out, "page", p, 2);
  pgw_execute(&pc->s.out, 0);
  pgw_sync(&pc->s.out);
  pc->pending = P_PAGE;
  pc->rows = 0;
}

static int on_row(cmp_cl_t *c, const pgw_msg_t *m) {
  pcl_t *pc = c->d;
  pgw_col_t col[NCOLS];
  int n = pgw_row(m, col, NCOLS);
  if (pc->pending == P_APPEND) {
    if (n != 2 || col[0].len != 8)
      return PSL_EINVALID;
    pc->last = pgw_be64(col[0].p);
    return 0;
  }
  if (n != NCOLS || col[0].len != 8 || col[1].len != PSL_UUID_BYTES || col[6].len != 8)
    return PSL_EINVALID;
  pc->after = pgw_be64(col[0].p);
  pc->rows++;
  if (pc->fold && c->run->on_event) {
    psl_event_t ev;
    memset(&ev, 0, sizeof ev);
    memcpy(ev.id, col[1].p, PSL_UUID_BYTES);
    ev.stream = (psl_str_t){(const char *)col[2].p, (size_t)col[2].len};
    ev.ver = col[3].len == 4 ? pgw_be32(col[3].p) : 0;
    ev.type = (psl_str_t){(const char *)col[4].p, (size_t)col[4].len};
    ev.terr = (psl_str_t){(const char *)col[5].p, (size_t)col[5].len};
    ev.at = (int64_t)pgw_be64(col[6].p);
    ev.data = (psl_bytes_t){col[7].p, col[7].len > 0 ? (size_t)col[7].len : 0};
    ev.seq = pc->after;
    c->run->on_event(c->run, c, &ev);
  }
  return 0;
}

/* ReadyForQuery: the request in flight is over. */
static int on_ready_for_query(cmp_cl_t *c) {
  pcl_t *pc = c->d;
  cmp_run_t *r = c->run;
  pending_t was = pc->pending;
  pc->pending = P_IDLE;
  if (pc->in_error && was != P_APPEND)
    return cmp_fail(r, PSL_EINVALID, "postgres: %s", pc->error);
  switch (was) {
  case P_STARTUP: /* prepare the statements once per connection */
    pgw_parse(&pc->s.out, "ins", SQL_INSERT, 6, INSERT_TYPES);
    pgw_parse(&pc->s.out, "page", SQL_PAGE, 2, PAGE_TYPES);
    pgw_parse(&pc->s.out, "ntf", "NOTIFY events", 0, NULL);
    pgw_sync(&pc->s.out);
    pc->pending = P_PREPARE;
    return 0;
  case P_PREPARE:
    r->nready++;
    if (r->on_ready)
      r->on_ready(r, c);
    return 0;
  case P_APPEND:
    if (pc->in_error) { /* the implicit transaction rolled back: nothing of it is stored */
      pc->in_error = 0;
      pc->refused = pc->n;
      pc->stored = 0;
    }
    if (r->on_appended)
      r->on_appended(r, c, pc->stored, pc->refused, pc->last);
    return 0;
  case P_PAGE:
    if (pc->rows && r->on_events)
      r->on_events(r, c, pc->rows, pc->after);
    if (pc->live) {
      if (pc->rows == CMP_PAGE_EVENTS || pc->notified) {
        pc->notified = 0;
        page(pc);
      }
    } else if (pc->rows < CMP_PAGE_EVENTS) {
      if (r->on_caught_up)
        r->on_caught_up(r, c);
    } else {
      page(pc);
    }
    return 0;
  case P_LISTEN:
    if (r->on_caught_up)
      r->on_caught_up(r, c);
    return 0;
  case P_IDLE:
    return cmp_fail(r, PSL_EINVALID, "postgres: ReadyForQuery nobody waited for");
  }
  return 0;
}

static int on_message(cmp_cl_t *c, const pgw_msg_t *m) {
  pcl_t *pc = c->d;
  switch (m->type) {
  case 'E':
    pgw_error_text(m, pc->error, sizeof pc->error);
    pc->in_error = 1;
    return 0;
  case 'R':
    if (m->len < 4 || pgw_be32(m->body) != 0)
      return cmp_fail(c->run, PSL_EINVALID, "postgres asks for a password (trust expected)");
    return 0;
  case 'D':
    if (on_row(c, m))
      return cmp_fail(c->run, PSL_EINVALID, "postgres: a row of an unexpected shape");
    return 0;
  case 'C':
    if (pc->pending == P_APPEND && strncmp(pgw_tag(m), "INSERT ", 7) == 0) {
      const char *tag = pgw_tag(m);
      if (tag[strlen(tag) - 1] == '1')
        pc->stored++;
      else
        pc->refused++; /* ON CONFLICT (id): a duplicate */
    }
    return 0;
  case 'A': /* a notification: read what is new (now, or after the query in flight) */
    if (pc->live && pc->pending == P_IDLE)
      page(pc);
    else
      pc->notified = 1;
    return 0;
  case 'Z':
    return on_ready_for_query(c);
  default: /* S, K, N, 1, 2, T, n, ...: nothing to do */
    return 0;
  }
}

static int pg_service(cmp_cl_t *c) {
  pcl_t *pc = c->d;
  int io = cmp_sock_io(&pc->s);
  if (io)
    return cmp_fail(c->run, io, "postgres connection: %s", psl_err_name(io));
  for (;;) {
    pgw_msg_t m;
    size_t used;
    int got = pgw_next(cmp_sock_data(&pc->s), cmp_sock_avail(&pc->s), &m, &used);
    if (got < 0)
      return cmp_fail(c->run, PSL_EINVALID, "postgres: not protocol 3.0");
    if (got == 0)
      break;
    if (on_message(c, &m))
      return c->run->failed;
    cmp_sock_consume(&pc->s, used);
  }
  if (pc->s.eof)
    return cmp_fail(c->run, PSL_ECLOSED, "postgres closed the connection%s%s",
                    pc->in_error ? ": " : "", pc->in_error ? pc->error : "");
  return cmp_sock_flush(&pc->s);
}

static int pg_append(cmp_cl_t *c, const psl_event_t *evs, size_t n) {
  pcl_t *pc = c->d;
  uint8_t at[8];
  for (size_t i = 0; i < n; i++) {
    const psl_event_t *e = &evs[i];
    pgw_put64(at, (uint64_t)e->at);
    pgw_param_t p[6] = {{e->id, PSL_UUID_BYTES},
                        {e->stream.ptr, (int32_t)e->stream.len},
                        {e->type.ptr, (int32_t)e->type.len},
                        {e->terr.ptr, (int32_t)e->terr.len},
                        {at, 8},
                        {e->data.ptr, (int32_t)e->data.len}};
    pgw_bind(&pc->s.out, "ins", p, 6);
    pgw_execute(&pc->s.out, 0);
  }
  if (c->run->sys->notify) {
    pgw_bind(&pc->s.out, "ntf", NULL, 0);
    pgw_execute(&pc->s.out, 0);
  }
  pgw_sync(&pc->s.out);
  pc->pending = P_APPEND;
  pc->n = n;
  pc->stored = pc->refused = 0;
  pc->last = 0;
  return 0;
}

static int pg_catchup(cmp_cl_t *c, const cmp_pos_t *from, int fold) {
  pcl_t *pc = c->d;
  pc->fold = fold;
  pc->live = 0;
  pc->after = from->seq;
  page(pc);
  return 0;
}

static int pg_live(cmp_cl_t *c, const cmp_pos_t *from) {
  pcl_t *pc = c->d;
  pc->live = 1;
  pc->fold = 0;
  pc->after = from->seq;
  pgw_query(&pc->s.out, "LISTEN events");
  pc->pending = P_LISTEN;
  return 0;
}

const cmp_driver_t cmp_drv_pg = {
    .name = "postgres",
    .label = "PostgreSQL 15",
    .max_batch = 1000, /* inserts per transaction, as passerelle's largest push */
    .start = pg_start,
    .restart = pg_restart,
    .stop = pg_stop,
    .reset = pg_reset,
    .locate = pg_locate,
    .rebuild = NULL,
    .count = pg_count,
    .preload = pg_preload,
    .open = pg_open,
    .service = pg_service,
    .wants_write = pg_wants_write,
    .flush = pg_flush,
    .close = pg_close,
    .append = pg_append,
    .catchup = pg_catchup,
    .live = pg_live,
};
