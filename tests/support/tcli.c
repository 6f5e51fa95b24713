/*
 * tcli.c — PROTOCOL-v1 conversations for tests and benchmarks (see tcli.h).
 */
#include "support/tcli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!err || !errlen)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static const char *type_name(psl_msg_type_t t) {
  static const char *const names[] = {"none",    "hello",  "push",   "sub",
                                      "ack",     "unsub",  "welcome", "pushed",
                                      "events",  "caught_up", "error"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static void copy_str(char *dst, size_t cap, psl_str_t s) {
  size_t n = s.len < cap - 1 ? s.len : cap - 1;
  memcpy(dst, s.ptr ? s.ptr : "", n);
  dst[n] = '\0';
}

void tcli_hex(const uint8_t *p, size_t n, size_t max, char *out, size_t outlen) {
  size_t o = 0;
  out[0] = '\0';
  for (size_t i = 0; i < n && i < max && o + 4 < outlen; i++)
    o += (size_t)snprintf(out + o, outlen - o, "%02x ", p[i]);
  if (n > max && o + 4 < outlen)
    snprintf(out + o, outlen - o, "...");
}

void tcli_describe(const psl_msg_t *m, char *out, size_t outlen) {
  size_t o = 0;
#define PUT(...)                                                                         \
  do {                                                                                   \
    if (o < outlen)                                                                      \
      o += (size_t)snprintf(out + o, outlen - o, __VA_ARGS__);                           \
  } while (0)
  PUT("%s", type_name(m->t));
  if (m->has_id)
    PUT(" id=%llu", (unsigned long long)m->id);
  switch (m->t) {
  case PSL_MSG_WELCOME:
    PUT(" v=%llu server=%.*s head=%llu role=%.*s nterr=%zu", (unsigned long long)m->u.welcome.v,
        (int)m->u.welcome.server.len, m->u.welcome.server.ptr,
        (unsigned long long)m->u.welcome.head, (int)m->u.welcome.role.len,
        m->u.welcome.role.ptr, m->u.welcome.nterr);
    break;
  case PSL_MSG_PUSHED:
    PUT(" results=[");
    for (size_t i = 0; i < m->u.pushed.n && i < 8; i++) {
      const psl_push_result_t *r = &m->u.pushed.results[i];
      if (r->err == 0)
        PUT("{seq %llu ver %llu%s} ", (unsigned long long)r->seq, (unsigned long long)r->ver,
            r->dup ? " dup" : "");
      else
        PUT("{err %s ver %llu msg \"%.*s\"} ", psl_err_code(r->err), (unsigned long long)r->ver,
            (int)(r->msg.len < 60 ? r->msg.len : 60), r->msg.ptr ? r->msg.ptr : "");
    }
    PUT("%s] (%zu)", m->u.pushed.n > 8 ? "..." : "", m->u.pushed.n);
    break;
  case PSL_MSG_EVENTS:
    PUT(" sub=%llu n=%zu last=%llu", (unsigned long long)m->u.events.sub, m->u.events.n,
        (unsigned long long)m->u.events.last);
    if (m->u.events.n)
      PUT(" seqs=%llu..%llu", (unsigned long long)m->u.events.events[0].seq,
          (unsigned long long)m->u.events.events[m->u.events.n - 1].seq);
    break;
  case PSL_MSG_CAUGHT_UP:
    PUT(" sub=%llu head=%llu", (unsigned long long)m->u.caught_up.sub,
        (unsigned long long)m->u.caught_up.head);
    break;
  case PSL_MSG_ERROR:
    PUT(" code=%.*s msg=\"%.*s\"", (int)m->u.error.code.len, m->u.error.code.ptr,
        (int)m->u.error.msg.len, m->u.error.msg.ptr);
    break;
  default:
    break;
  }
#undef PUT
}

int tcli_expect(wsc_t *c, psl_msg_type_t t, int timeout_ms, psl_msg_t *m, char *err,
                size_t errlen) {
  wsc_frame_t f;
  psl_diag_t diag;
  char hex[200], desc[512];
  int r = wsc_recv(c, timeout_ms, &f);
  memset(m, 0, sizeof *m);
  if (r) {
    say(err, errlen, "waiting for %s: %s (%s)", type_name(t), psl_err_name(r), wsc_error(c));
    return r;
  }
  tcli_hex(f.data, f.len, 48, hex, sizeof hex);
  if (f.opcode != WSC_OP_BINARY) {
    say(err, errlen, "waiting for %s: a text frame of %zu bytes: %.100s", type_name(t), f.len,
        (const char *)f.data);
    return PSL_EINVALID;
  }
  if ((r = psl_msg_decode(f.data, f.len, m, &diag)) != 0) {
    say(err, errlen, "waiting for %s: a frame of %zu bytes that does not decode (%s: %s): %s",
        type_name(t), f.len, psl_err_name(r), diag.msg, hex);
    return PSL_EINVALID;
  }
  if (t != PSL_MSG_NONE && m->t != t) {
    tcli_describe(m, desc, sizeof desc);
    say(err, errlen, "waiting for %s, got: %s [frame %zu bytes: %s]", type_name(t), desc, f.len,
        hex);
    psl_msg_free(m);
    memset(m, 0, sizeof *m);
    return PSL_EINVALID;
  }
  return 0;
}

int tcli_hello(wsc_t *c, const char *token, const char *device, const char *server,
               tcli_welcome_t *w, char *err, size_t errlen) {
  psl_msg_t m;
  int r;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_HELLO;
  m.u.hello.v = PSL_PROTO_VERSION;
  m.u.hello.token = psl_str(token);
  m.u.hello.device = psl_str(device);
  m.u.hello.agent = psl_str("passerelle-tests/1");
  m.u.hello.server = psl_str(server);
  if ((r = wsc_send_msg(c, &m)) != 0) {
    say(err, errlen, "send hello: %s (%s)", psl_err_name(r), wsc_error(c));
    return r;
  }
  if ((r = tcli_expect(c, PSL_MSG_WELCOME, 10000, &m, err, errlen)) != 0)
    return r;
  if (w) {
    memset(w, 0, sizeof *w);
    w->v = m.u.welcome.v;
    w->head = m.u.welcome.head;
    copy_str(w->server, sizeof w->server, m.u.welcome.server);
    memcpy(w->hash, m.u.welcome.hash, PSL_HASH_BYTES);
    copy_str(w->role, sizeof w->role, m.u.welcome.role);
    for (size_t i = 0; i < m.u.welcome.nterr && i < PSL_MAX_FILTER; i++)
      copy_str(w->terr[i], sizeof w->terr[i], m.u.welcome.terr[i]);
    w->nterr = m.u.welcome.nterr;
  }
  psl_msg_free(&m);
  return 0;
}

int tcli_open(wsc_t **out, uint16_t port, const char *token, const char *device,
              tcli_welcome_t *w, char *err, size_t errlen) {
  return tcli_open_opts(out, port, NULL, token, device, w, err, errlen);
}

int tcli_open_opts(wsc_t **out, uint16_t port, const wsc_opts_t *opts, const char *token,
                   const char *device, tcli_welcome_t *w, char *err, size_t errlen) {
  int r = wsc_connect(out, port, opts, err, errlen);
  if (r)
    return r;
  if ((r = tcli_hello(*out, token, device, NULL, w, err, errlen)) != 0) {
    wsc_free(*out);
    *out = NULL;
  }
  return r;
}

void tcli_push_msg(psl_msg_t *m, uint64_t id, const psl_event_t *evs, size_t n) {
  memset(m, 0, sizeof *m);
  m->t = PSL_MSG_PUSH;
  m->has_id = 1;
  m->id = id;
  m->u.push.events = (psl_event_t *)evs; /* the encoder only reads them */
  m->u.push.n = n;
}

int tcli_push(wsc_t *c, uint64_t id, const psl_event_t *evs, size_t n, tcli_result_t *res,
              int timeout_ms, char *err, size_t errlen) {
  psl_msg_t m;
  char desc[512];
  int r;
  tcli_push_msg(&m, id, evs, n);
  if ((r = wsc_send_msg(c, &m)) != 0) {
    say(err, errlen, "send push: %s (%s)", psl_err_name(r), wsc_error(c));
    return r;
  }
  if ((r = tcli_expect(c, PSL_MSG_PUSHED, timeout_ms, &m, err, errlen)) != 0)
    return r;
  if (!m.has_id || m.id != id || m.u.pushed.n != n) {
    tcli_describe(&m, desc, sizeof desc);
    say(err, errlen, "push id=%llu of %zu events answered: %s", (unsigned long long)id, n, desc);
    psl_msg_free(&m);
    return PSL_EINVALID;
  }
  for (size_t i = 0; i < n; i++) {
    const psl_push_result_t *pr = &m.u.pushed.results[i];
    res[i].err = pr->err;
    res[i].dup = pr->dup;
    res[i].seq = pr->seq;
    res[i].ver = pr->ver;
    copy_str(res[i].msg, sizeof res[i].msg, pr->msg);
  }
  psl_msg_free(&m);
  return 0;
}

static size_t fill_filter(psl_str_t *dst, const char *const *list) {
  size_t n = 0;
  for (; list && list[n] && n < PSL_MAX_FILTER; n++)
    dst[n] = psl_str(list[n]);
  return n;
}

int tcli_sub(wsc_t *c, uint64_t id, uint64_t from, int live, uint64_t window,
             const char *const *terr, const char *const *streams) {
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_SUB;
  m.has_id = 1;
  m.id = id;
  m.u.sub.from = from;
  m.u.sub.live = live;
  m.u.sub.window = window;
  m.u.sub.nterr = fill_filter(m.u.sub.terr, terr);
  m.u.sub.has_terr = terr != NULL;
  m.u.sub.nstreams = fill_filter(m.u.sub.streams, streams);
  m.u.sub.has_streams = streams != NULL;
  return wsc_send_msg(c, &m);
}

int tcli_ack(wsc_t *c, uint64_t sub, uint64_t upto) {
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_ACK;
  m.u.ack.sub = sub;
  m.u.ack.upto = upto;
  return wsc_send_msg(c, &m);
}
