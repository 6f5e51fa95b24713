/*
 * msg_encode.c — every message of PROTOCOL-v1, both directions, from a psl_msg_t.
 *
 * Each message is one map whose keys come in a fixed order: `t` first, then `id` when the
 * message has one, then the keys of its type in the order of PROTOCOL.md's tables.  The
 * order is not part of the protocol (a reader takes any order) but makes our frames
 * deterministic, so PROTOCOL.md's test vectors are exactly what we send.  Optional keys are
 * written only when they carry something (hello's agent and server when not empty, a pii
 * when present, expect when not the default, sub's filters when given).
 */
#include "mpack.h"

/* The `t` of each type: the one table shared with msg_decode.c through psl__msg_name. */
static const char *const msg_names[] = {
    [PSL_MSG_HELLO] = "hello",         [PSL_MSG_PUSH] = "push",
    [PSL_MSG_SUB] = "sub",             [PSL_MSG_ACK] = "ack",
    [PSL_MSG_UNSUB] = "unsub",         [PSL_MSG_WELCOME] = "welcome",
    [PSL_MSG_PUSHED] = "pushed",       [PSL_MSG_EVENTS] = "events",
    [PSL_MSG_CAUGHT_UP] = "caught_up", [PSL_MSG_ERROR] = "error",
};

const char *psl__msg_name(psl_msg_type_t t) {
  if ((unsigned)t >= sizeof msg_names / sizeof msg_names[0] || !msg_names[t])
    return NULL;
  return msg_names[t];
}

static void w_strs(psl__wr_t *w, const psl_str_t *s, size_t n) {
  psl__w_array(w, (uint32_t)n);
  for (size_t i = 0; i < n; i++)
    psl__w_pstr(w, s[i]);
}

static void w_result(psl__wr_t *w, const psl_push_result_t *r) {
  if (r->err == 0) {
    psl__w_map(w, r->dup ? 3 : 2);
    psl__w_cstr(w, "seq");
    psl__w_uint(w, r->seq);
    psl__w_cstr(w, "ver");
    psl__w_uint(w, r->ver);
    if (r->dup) {
      psl__w_cstr(w, "dup");
      psl__w_bool(w, 1);
    }
    return;
  }
  psl__w_map(w, 2);
  psl__w_cstr(w, "err");
  psl__w_cstr(w, psl_err_code(r->err));
  if (r->err == PSL_ECONFLICT) {
    psl__w_cstr(w, "ver");
    psl__w_uint(w, r->ver);
  } else {
    psl__w_cstr(w, "msg");
    psl__w_pstr(w, r->msg);
  }
}

/* Number of entries of m's map after `t` and `id`. */
static uint32_t body_entries(const psl_msg_t *m) {
  switch (m->t) {
  case PSL_MSG_HELLO:
    return 3 + (m->u.hello.agent.len != 0) + (m->u.hello.server.len != 0);
  case PSL_MSG_PUSH: return 1;
  case PSL_MSG_SUB:
    return 3 + (m->u.sub.has_terr || m->u.sub.nterr) + (m->u.sub.has_streams || m->u.sub.nstreams);
  case PSL_MSG_ACK: return 2;
  case PSL_MSG_UNSUB: return 1;
  case PSL_MSG_WELCOME: return 6;
  case PSL_MSG_PUSHED: return 1;
  case PSL_MSG_EVENTS: return 3;
  case PSL_MSG_CAUGHT_UP: return 2;
  default: /* PSL_MSG_ERROR */ return 2;
  }
}

static void w_body(psl__wr_t *w, const psl_msg_t *m) {
  switch (m->t) {
  case PSL_MSG_HELLO:
    psl__w_cstr(w, "v");
    psl__w_uint(w, m->u.hello.v);
    psl__w_cstr(w, "token");
    psl__w_pstr(w, m->u.hello.token);
    psl__w_cstr(w, "device");
    psl__w_pstr(w, m->u.hello.device);
    if (m->u.hello.agent.len) {
      psl__w_cstr(w, "agent");
      psl__w_pstr(w, m->u.hello.agent);
    }
    if (m->u.hello.server.len) {
      psl__w_cstr(w, "server");
      psl__w_pstr(w, m->u.hello.server);
    }
    break;
  case PSL_MSG_PUSH:
    psl__w_cstr(w, "events");
    psl__w_array(w, (uint32_t)m->u.push.n);
    for (size_t i = 0; i < m->u.push.n; i++)
      psl__event_write_new(w, &m->u.push.events[i]);
    break;
  case PSL_MSG_SUB:
    psl__w_cstr(w, "from");
    psl__w_uint(w, m->u.sub.from);
    psl__w_cstr(w, "live");
    psl__w_bool(w, m->u.sub.live);
    psl__w_cstr(w, "window");
    psl__w_uint(w, m->u.sub.window);
    if (m->u.sub.has_terr || m->u.sub.nterr) {
      psl__w_cstr(w, "terr");
      w_strs(w, m->u.sub.terr, m->u.sub.nterr);
    }
    if (m->u.sub.has_streams || m->u.sub.nstreams) {
      psl__w_cstr(w, "streams");
      w_strs(w, m->u.sub.streams, m->u.sub.nstreams);
    }
    break;
  case PSL_MSG_ACK:
    psl__w_cstr(w, "sub");
    psl__w_uint(w, m->u.ack.sub);
    psl__w_cstr(w, "upto");
    psl__w_uint(w, m->u.ack.upto);
    break;
  case PSL_MSG_UNSUB:
    psl__w_cstr(w, "sub");
    psl__w_uint(w, m->u.unsub.sub);
    break;
  case PSL_MSG_WELCOME:
    psl__w_cstr(w, "v");
    psl__w_uint(w, m->u.welcome.v);
    psl__w_cstr(w, "server");
    psl__w_pstr(w, m->u.welcome.server);
    psl__w_cstr(w, "head");
    psl__w_uint(w, m->u.welcome.head);
    psl__w_cstr(w, "hash");
    psl__w_bin(w, m->u.welcome.hash, PSL_HASH_BYTES);
    psl__w_cstr(w, "role");
    psl__w_pstr(w, m->u.welcome.role);
    psl__w_cstr(w, "terr");
    w_strs(w, m->u.welcome.terr, m->u.welcome.nterr);
    break;
  case PSL_MSG_PUSHED:
    psl__w_cstr(w, "results");
    psl__w_array(w, (uint32_t)m->u.pushed.n);
    for (size_t i = 0; i < m->u.pushed.n; i++)
      w_result(w, &m->u.pushed.results[i]);
    break;
  case PSL_MSG_EVENTS: /* same key order as psl_chunk_begin */
    psl__w_cstr(w, "sub");
    psl__w_uint(w, m->u.events.sub);
    psl__w_cstr(w, "last");
    psl__w_uint(w, m->u.events.last);
    psl__w_cstr(w, "events");
    psl__w_array(w, (uint32_t)m->u.events.n);
    for (size_t i = 0; i < m->u.events.n; i++)
      psl__event_write_wire(w, &m->u.events.events[i]);
    break;
  case PSL_MSG_CAUGHT_UP:
    psl__w_cstr(w, "sub");
    psl__w_uint(w, m->u.caught_up.sub);
    psl__w_cstr(w, "head");
    psl__w_uint(w, m->u.caught_up.head);
    break;
  default: /* PSL_MSG_ERROR */
    psl__w_cstr(w, "code");
    psl__w_pstr(w, m->u.error.code);
    psl__w_cstr(w, "msg");
    psl__w_pstr(w, m->u.error.msg);
    break;
  }
}

/* Counts that arrays in the struct cannot hold, or that a peer's decoder refuses. */
static int check_counts(const psl_msg_t *m) {
  switch (m->t) {
  case PSL_MSG_PUSH: return m->u.push.n > PSL_MAX_PUSH_EVENTS;
  case PSL_MSG_SUB: return m->u.sub.nterr > PSL_MAX_FILTER || m->u.sub.nstreams > PSL_MAX_FILTER;
  case PSL_MSG_WELCOME: return m->u.welcome.nterr > PSL_MAX_FILTER;
  case PSL_MSG_PUSHED: return m->u.pushed.n > PSL_MAX_PUSH_EVENTS;
  case PSL_MSG_EVENTS: return m->u.events.n > PSL_MAX_CHUNK_EVENTS;
  default: return 0;
  }
}

int psl_msg_encode(psl_buf_t *out, const psl_msg_t *msg) {
  const char *name = psl__msg_name(msg->t);
  if (!name)
    return PSL_EINVALID;
  if (check_counts(msg))
    return PSL_ETOO_BIG;
  size_t start = out->len;
  psl__wr_t w = {out, 0};
  psl__w_map(&w, 1 + (msg->has_id != 0) + body_entries(msg));
  psl__w_cstr(&w, "t");
  psl__w_cstr(&w, name);
  if (msg->has_id) {
    psl__w_cstr(&w, "id");
    psl__w_uint(&w, msg->id);
  }
  w_body(&w, msg);
  if (w.err)
    out->len = start; /* never leave half a frame behind */
  return w.err;
}
