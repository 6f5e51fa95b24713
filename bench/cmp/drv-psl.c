/*
 * drv-psl.c — bench-compare's driver for passerelled: the real server started on a temporary
 * data folder (tests/support/srv.h), spoken to over real WebSocket connections
 * (tests/support/wsc.h) with PROTOCOL-v1 messages, a coordinator's token.
 *
 *   append    one `push` of n events (expect any), answered by `pushed` once durable
 *   catchup   `sub` {from, live: false, window 8}, acking every chunk, until `caught_up`
 *   live      `sub` {from: head, live: true}: `caught_up`, then live `events`
 *   rebuild   psl_proj_rebuild_from_log (domain/) over the log opened read-only beside the
 *             running server: the server's own rebuild, in process
 *
 * Chunks are read with a light MessagePack walk (t, last, head and the number of events),
 * not the full decoder: the figure is the server's, and the full decoder checks every
 * event's UTF-8 and keys (a client does that work once, in its own time).  With fold, the
 * full decoder runs and each event is reported.
 */
#include "cmp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psl_access.h"
#include "psl_domain.h"
#include "psl_log.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

/* Nesting a light walk follows: events are maps of maps of arrays (DOMAIN.md data); 16 is
 * PSL_MAX_DEPTH with room. */
#define MAX_WALK_DEPTH 16
#define BLOCKING_MS 30000

typedef struct {
  srv_t srv;
  char token[PSL_TOKEN_LEN + 1];
} psys_t;

typedef struct {
  wsc_t *ws;
  int hello_sent, welcomed, fold;
  uint64_t next_id, sub_id;
} pcl_t;

/* ---- A light MessagePack walk. */

static const uint8_t *be(const uint8_t *p, const uint8_t *e, int bytes, uint64_t *n) {
  if (e - p < bytes)
    return NULL;
  *n = 0;
  for (int i = 0; i < bytes; i++)
    *n = *n << 8 | p[i];
  return p + bytes;
}

static const uint8_t *skip(const uint8_t *p, const uint8_t *e, int depth);

static const uint8_t *skip_n(const uint8_t *p, const uint8_t *e, uint64_t n, int depth) {
  for (uint64_t i = 0; p && i < n; i++)
    p = skip(p, e, depth);
  return p;
}

/* Fixed extra bytes after the type byte, for the types that have no length field. */
static int fixed_size(uint8_t b) {
  switch (b) {
  case 0xc0: case 0xc2: case 0xc3: return 0;
  case 0xcc: case 0xd0: return 1;
  case 0xcd: case 0xd1: case 0xd4: return 2;
  case 0xd5: return 3;
  case 0xca: case 0xce: case 0xd2: return 4;
  case 0xd6: return 5;
  case 0xcb: case 0xcf: case 0xd3: return 8;
  case 0xd7: return 9;
  case 0xd8: return 17;
  default: return -1;
  }
}

static const uint8_t *skip(const uint8_t *p, const uint8_t *e, int depth) {
  uint64_t n;
  if (!p || p >= e || depth > MAX_WALK_DEPTH)
    return NULL;
  uint8_t b = *p++;
  if (b <= 0x7f || b >= 0xe0)
    return p;
  if ((b & 0xf0) == 0x80)
    return skip_n(p, e, 2u * (b & 0x0f), depth + 1);
  if ((b & 0xf0) == 0x90)
    return skip_n(p, e, b & 0x0f, depth + 1);
  if ((b & 0xe0) == 0xa0)
    n = b & 0x1f;
  else if (fixed_size(b) >= 0)
    n = (uint64_t)fixed_size(b);
  else if (b == 0xc4 || b == 0xd9)
    p = be(p, e, 1, &n);
  else if (b == 0xc5 || b == 0xda)
    p = be(p, e, 2, &n);
  else if (b == 0xc6 || b == 0xdb)
    p = be(p, e, 4, &n);
  else if (b == 0xc7 || b == 0xc8 || b == 0xc9) { /* ext: length, type byte, data */
    p = be(p, e, b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4, &n);
    n++;
  } else if (b == 0xdc || b == 0xdd) {
    p = be(p, e, b == 0xdc ? 2 : 4, &n);
    return p ? skip_n(p, e, n, depth + 1) : NULL;
  } else if (b == 0xde || b == 0xdf) {
    p = be(p, e, b == 0xde ? 2 : 4, &n);
    return p ? skip_n(p, e, 2 * n, depth + 1) : NULL;
  } else
    return NULL;
  return p && (uint64_t)(e - p) >= n ? p + n : NULL;
}

typedef struct {
  char t[16];
  uint64_t last, head, nevents;
} light_t;

static const uint8_t *read_uint(const uint8_t *p, const uint8_t *e, uint64_t *v) {
  if (p >= e)
    return NULL;
  uint8_t b = *p++;
  if (b <= 0x7f) {
    *v = b;
    return p;
  }
  int w = b == 0xcc ? 1 : b == 0xcd ? 2 : b == 0xce ? 4 : b == 0xcf ? 8 : 0;
  return w ? be(p, e, w, v) : NULL;
}

static const uint8_t *read_str(const uint8_t *p, const uint8_t *e, const char **s, size_t *n) {
  uint64_t len;
  if (p >= e)
    return NULL;
  uint8_t b = *p++;
  if ((b & 0xe0) == 0xa0)
    len = b & 0x1f;
  else if (b == 0xd9)
    p = be(p, e, 1, &len);
  else
    return NULL;
  if (!p || (uint64_t)(e - p) < len)
    return NULL;
  *s = (const char *)p;
  *n = (size_t)len;
  return p + len;
}

static const uint8_t *read_array_len(const uint8_t *p, const uint8_t *e, uint64_t *n) {
  if (p >= e)
    return NULL;
  if ((*p & 0xf0) == 0x90) {
    *n = *p & 0x0f;
    return p + 1;
  }
  if (*p == 0xdc || *p == 0xdd)
    return be(p + 1, e, *p == 0xdc ? 2 : 4, n);
  return NULL;
}

static int light_parse(const uint8_t *p, size_t len, light_t *m) {
  const uint8_t *e = p + len;
  uint64_t n;
  memset(m, 0, sizeof *m);
  if (len == 0)
    return -1;
  if ((*p & 0xf0) == 0x80)
    n = *p++ & 0x0f;
  else if (*p == 0xde)
    p = be(p + 1, e, 2, &n);
  else
    return -1;
  for (uint64_t i = 0; p && i < n; i++) {
    const char *k, *s;
    size_t kl, sl;
    if (!(p = read_str(p, e, &k, &kl)))
      return -1;
    if (kl == 1 && k[0] == 't') {
      if ((p = read_str(p, e, &s, &sl)))
        snprintf(m->t, sizeof m->t, "%.*s", (int)sl, s);
    } else if (kl == 4 && memcmp(k, "last", 4) == 0) {
      p = read_uint(p, e, &m->last);
    } else if (kl == 4 && memcmp(k, "head", 4) == 0) {
      p = read_uint(p, e, &m->head);
    } else if (kl == 6 && memcmp(k, "events", 6) == 0) {
      if ((p = read_array_len(p, e, &m->nevents)))
        p = skip_n(p, e, m->nevents, 1);
    } else {
      p = skip(p, e, 0);
    }
  }
  return p ? 0 : -1;
}

/* ---- The server. */

static int psl_start(cmp_sys_t *s) {
  char dir[PATH_MAX + 8];
  psys_t *ps = calloc(1, sizeof *ps);
  if (!ps)
    return PSL_ENOMEM;
  s->d = ps;
  snprintf(dir, sizeof dir, "%s/data", s->dir);
  int rc = srv_init(&ps->srv, s->bindir, dir);
  /* One token stands for every client here, as in bench-server: the per-token flood limits
   * (server/flood.h) are lifted so that the figures measure the server, not them. */
  ps->srv.extra_args[0] = "--token-max-conns";
  ps->srv.extra_args[1] = "0";
  ps->srv.extra_args[2] = "--token-rate";
  ps->srv.extra_args[3] = "0";
  if (rc ||
      srv_token(&ps->srv, PSL_ROLE_COORDINATOR, NULL, "bench", "bench-1", ps->token) ||
      srv_start(&ps->srv, 0)) {
    snprintf(s->err, sizeof s->err, "passerelled: %.200s", ps->srv.err);
    return PSL_EIO;
  }
  s->port = ps->srv.port;
  s->pid = ps->srv.pid;
  return 0;
}

static int psl_restart(cmp_sys_t *s) {
  psys_t *ps = s->d;
  if (srv_stop(&ps->srv, BLOCKING_MS) || srv_start(&ps->srv, 0)) {
    snprintf(s->err, sizeof s->err, "passerelled restart: %.200s", ps->srv.err);
    return PSL_EIO;
  }
  s->port = ps->srv.port;
  s->pid = ps->srv.pid;
  return 0;
}

static void psl_stop(cmp_sys_t *s) {
  psys_t *ps = s->d;
  if (!ps)
    return;
  if (srv_stop(&ps->srv, BLOCKING_MS))
    fprintf(stderr, "bench-compare: passerelled: %s\n", ps->srv.err);
  free(ps);
  s->d = NULL;
  s->pid = 0;
}

static int head_of(cmp_sys_t *s, uint64_t *head) {
  psys_t *ps = s->d;
  wsc_t *ws;
  tcli_welcome_t w;
  if (tcli_open(&ws, s->port, ps->token, "bench-1", &w, s->err, sizeof s->err))
    return PSL_EIO;
  *head = w.head;
  wsc_close(ws);
  return 0;
}

static int psl_count(cmp_sys_t *s, uint64_t *n) { return head_of(s, n); }

static int psl_locate(cmp_sys_t *s, uint64_t back, cmp_pos_t *pos) {
  uint64_t head;
  int rc = head_of(s, &head);
  memset(pos, 0, sizeof *pos);
  if (!rc)
    pos->seq = head > back ? head - back : 0;
  return rc;
}

static int psl_rebuild(cmp_sys_t *s, uint64_t *events, char *err, size_t errlen) {
  psys_t *ps = s->d;
  psl_log_opts_t o;
  psl_log_t *log;
  psl_proj_t *proj;
  memset(&o, 0, sizeof o);
  o.read_only = 1;
  int rc = psl_log_open(&log, ps->srv.dir, &o);
  if (rc) {
    snprintf(err, errlen, "open the log read-only: %s", psl_err_name(rc));
    return rc;
  }
  if ((rc = psl_proj_rebuild_from_log(log, &proj)) != 0) {
    snprintf(err, errlen, "psl_proj_rebuild_from_log: %s", psl_err_name(rc));
  } else {
    *events = psl_proj_seq(proj);
    psl_proj_free(proj);
  }
  psl_log_close(log);
  return rc;
}

/* ---- Clients. */

static int psl_open(cmp_cl_t *c) {
  pcl_t *pc = calloc(1, sizeof *pc);
  if (!pc)
    return PSL_ENOMEM;
  c->d = pc;
  int rc = wsc_start(&pc->ws, c->run->sys->port, NULL);
  if (rc)
    return rc;
  c->fd = wsc_fd(pc->ws);
  return 0;
}

static void psl_close(cmp_cl_t *c) {
  pcl_t *pc = c->d;
  if (!pc)
    return;
  wsc_free(pc->ws);
  free(pc);
  c->d = NULL;
}

static int psl_wants_write(const cmp_cl_t *c) {
  const pcl_t *pc = c->d;
  return wsc_pending(pc->ws) > 0;
}

static int psl_flush(cmp_cl_t *c) {
  pcl_t *pc = c->d;
  return wsc_flush_nb(pc->ws);
}

static int queue(cmp_cl_t *c, const psl_msg_t *m) {
  pcl_t *pc = c->d;
  if (wsc_queue_msg(pc->ws, m))
    return cmp_fail(c->run, PSL_EIO, "queue: %s", wsc_error(pc->ws));
  return 0;
}

static int send_hello(cmp_cl_t *c) {
  pcl_t *pc = c->d;
  psys_t *ps = c->run->sys->d;
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_HELLO;
  m.u.hello.v = PSL_PROTO_VERSION;
  m.u.hello.token = psl_str(ps->token);
  m.u.hello.device = psl_str("bench-1");
  m.u.hello.agent = psl_str("bench-compare/1");
  pc->hello_sent = 1;
  return queue(c, &m);
}

static int on_welcome(cmp_cl_t *c, const wsc_frame_t *f) {
  pcl_t *pc = c->d;
  psl_msg_t m;
  psl_diag_t d;
  char desc[256];
  if (psl_msg_decode(f->data, f->len, &m, &d))
    return cmp_fail(c->run, PSL_EINVALID, "instead of welcome: %s", d.msg);
  if (m.t != PSL_MSG_WELCOME) {
    tcli_describe(&m, desc, sizeof desc);
    psl_msg_free(&m);
    return cmp_fail(c->run, PSL_EINVALID, "hello answered: %s", desc);
  }
  psl_msg_free(&m);
  pc->welcomed = 1;
  c->run->nready++;
  if (c->run->on_ready)
    c->run->on_ready(c->run, c);
  return 0;
}

static int on_pushed(cmp_cl_t *c, const wsc_frame_t *f) {
  psl_msg_t m;
  psl_diag_t d;
  char desc[256];
  size_t stored = 0, refused = 0;
  uint64_t last = 0;
  if (psl_msg_decode(f->data, f->len, &m, &d))
    return cmp_fail(c->run, PSL_EINVALID, "pushed: %s", d.msg);
  if (m.t != PSL_MSG_PUSHED) {
    tcli_describe(&m, desc, sizeof desc);
    psl_msg_free(&m);
    return cmp_fail(c->run, PSL_EINVALID, "push answered: %s", desc);
  }
  for (size_t i = 0; i < m.u.pushed.n; i++) {
    const psl_push_result_t *pr = &m.u.pushed.results[i];
    if (pr->err || pr->dup) {
      refused++;
    } else {
      stored++;
      if (pr->seq > last)
        last = pr->seq;
    }
  }
  psl_msg_free(&m);
  if (c->run->on_appended)
    c->run->on_appended(c->run, c, stored, refused, last);
  return 0;
}

static int fold_chunk(cmp_cl_t *c, const wsc_frame_t *f) {
  psl_msg_t m;
  psl_diag_t d;
  if (psl_msg_decode(f->data, f->len, &m, &d) || m.t != PSL_MSG_EVENTS) {
    psl_msg_free(&m);
    return cmp_fail(c->run, PSL_EINVALID, "events chunk: %s", d.msg);
  }
  for (size_t i = 0; i < m.u.events.n && c->run->on_event; i++)
    c->run->on_event(c->run, c, &m.u.events.events[i]);
  psl_msg_free(&m);
  return 0;
}

static int on_frame(cmp_cl_t *c, const wsc_frame_t *f) {
  pcl_t *pc = c->d;
  cmp_run_t *r = c->run;
  light_t m;
  if (!pc->welcomed)
    return on_welcome(c, f);
  if (f->opcode != WSC_OP_BINARY || light_parse(f->data, f->len, &m) != 0)
    return cmp_fail(r, PSL_EINVALID, "a frame of %zu bytes that does not parse", f->len);
  if (strcmp(m.t, "pushed") == 0)
    return on_pushed(c, f);
  if (strcmp(m.t, "events") == 0) {
    psl_msg_t ack;
    if (pc->fold && fold_chunk(c, f))
      return r->failed;
    memset(&ack, 0, sizeof ack);
    ack.t = PSL_MSG_ACK;
    ack.u.ack.sub = pc->sub_id;
    ack.u.ack.upto = m.last;
    if (queue(c, &ack))
      return r->failed;
    if (r->on_events)
      r->on_events(r, c, (size_t)m.nevents, m.last);
    return 0;
  }
  if (strcmp(m.t, "caught_up") == 0) {
    if (r->on_caught_up)
      r->on_caught_up(r, c);
    return 0;
  }
  psl_msg_t full;
  psl_diag_t d;
  char desc[256] = "";
  if (psl_msg_decode(f->data, f->len, &full, &d) == 0) {
    tcli_describe(&full, desc, sizeof desc);
    psl_msg_free(&full);
  }
  return cmp_fail(r, PSL_EINVALID, "unexpected \"%s\": %s", m.t, desc);
}

static int psl_service(cmp_cl_t *c) {
  pcl_t *pc = c->d;
  wsc_frame_t f;
  int io = wsc_io(pc->ws);
  for (;;) {
    int r = wsc_next(pc->ws, &f);
    if (!pc->hello_sent && wsc_is_open(pc->ws) && send_hello(c))
      return c->run->failed;
    if (r == PSL_EAGAIN)
      break;
    if (r)
      return cmp_fail(c->run, r, "%s", wsc_error(pc->ws));
    if (on_frame(c, &f))
      return c->run->failed;
  }
  if (io && io != PSL_EAGAIN)
    return cmp_fail(c->run, io, "%s", wsc_error(pc->ws));
  return wsc_flush_nb(pc->ws);
}

static int psl_append(cmp_cl_t *c, const psl_event_t *evs, size_t n) {
  pcl_t *pc = c->d;
  psl_msg_t m;
  tcli_push_msg(&m, ++pc->next_id, evs, n);
  return queue(c, &m);
}

static int sub(cmp_cl_t *c, uint64_t from, int live) {
  pcl_t *pc = c->d;
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_SUB;
  m.has_id = 1;
  m.id = ++pc->sub_id;
  m.u.sub.from = from;
  m.u.sub.live = live;
  m.u.sub.window = CMP_WINDOW;
  return queue(c, &m);
}

static int psl_catchup(cmp_cl_t *c, const cmp_pos_t *from, int fold) {
  pcl_t *pc = c->d;
  pc->fold = fold;
  return sub(c, from->seq, 0);
}

static int psl_live(cmp_cl_t *c, const cmp_pos_t *from) { return sub(c, from->seq, 1); }

const cmp_driver_t cmp_drv_psl = {
    .name = "passerelle",
    .label = "passerelle",
    .max_batch = PSL_MAX_PUSH_EVENTS,
    .start = psl_start,
    .restart = psl_restart,
    .stop = psl_stop,
    .locate = psl_locate,
    .rebuild = psl_rebuild,
    .count = psl_count,
    .open = psl_open,
    .service = psl_service,
    .wants_write = psl_wants_write,
    .flush = psl_flush,
    .close = psl_close,
    .append = psl_append,
    .catchup = psl_catchup,
    .live = psl_live,
};
