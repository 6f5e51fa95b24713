/*
 * msg_decode.c — one frame of PROTOCOL-v1, either direction, into a psl_msg_t.
 *
 * Two passes over the top-level map.  The first looks for `t` only (it may come anywhere in
 * the map; it usually comes first, and the pass stops there), skipping other values without
 * decoding them.  The second decodes every key the type knows, in whatever order they come,
 * through the type's row of `specs`: a key table, the mask of required keys and a field
 * function.  Keys the type does not know are skipped (forward compatibility); a known key
 * twice, a known key of the wrong type, or a required key missing is PSL_EINVALID; a limit
 * exceeded is PSL_ETOO_BIG.  The diagnostic names the key as "<t>.<key>", e.g.
 * "push.events[3].at: expected int", and never carries a value.
 *
 * The only allocations are the arrays of push/events events and pushed results, made after
 * their count is checked against its limit and against the bytes left.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mpack.h"

/* Bytes a stored event of an `events` chunk takes at least: the required entries of a new
 * event with the smallest values -- fixmap (1), "id" + bin 16 (3+18), "stream", "type",
 * "terr" + a 1-byte str (7+2, 5+2, 5+2), "at" + fixint (3+1), "data" + empty map (5+1): 55 --
 * plus seq, ver, rec (5 each), by, dev + empty str (3+1, 4+1) and hash (5+34): 118.  An
 * under-estimate is safe.  It keeps a client's array allocation (~200 bytes an event) within
 * a small multiple of the frame, where 65,536 events of 1 byte would ask for 13 MB.  A push
 * needs no such bound (PSL_MAX_PUSH_EVENTS caps it at ~200 KB), which lets an event that
 * lacks keys be reported by name rather than as "truncated". */
#define MIN_WIRE_EVENT_BYTES 100u
/* `sub.window` when absent: PROTOCOL-v1's default. */
#define SUB_DEFAULT_WINDOW 4u

typedef struct {
  psl__rd_t r;
  psl_diag_t *diag;
  const char *path; /* the message's `t`, first element of every diagnostic */
  psl_msg_t *m;
} dec_t;

typedef int (*field_fn)(dec_t *d, int k, const char *key);

typedef struct {
  psl_msg_type_t t;
  const char *const *keys; /* keys[0] is "t" and keys[1] "id" for every type */
  int nkeys;
  unsigned required; /* bit k: keys[k] must be present */
  field_fn field;    /* decodes keys[k], k >= 2 */
} spec_t;

#define BIT(k) (1u << (k))

/* ---- Field helpers. */

static int rd_fail(dec_t *d, int rc, const char *key, const char *expected) {
  return psl__rd_fail(d->diag, rc, d->path, key, expected);
}

/* An array of at most PSL_MAX_FILTER strings of at most max bytes, into arr. */
static int read_strs(dec_t *d, const char *key, psl_str_t *arr, size_t *n, size_t max,
                     unsigned flags) {
  uint32_t cnt;
  int rc = psl__rd_array(&d->r, &cnt);
  if (rc)
    return rd_fail(d, rc, key, "array");
  if (cnt > PSL_MAX_FILTER)
    return psl__diag(d->diag, PSL_ETOO_BIG, "%s.%s: more than %u entries", d->path, key,
                     PSL_MAX_FILTER);
  for (uint32_t i = 0; i < cnt; i++) {
    char ekey[48];
    snprintf(ekey, sizeof ekey, "%s[%u]", key, i);
    if ((rc = psl__field_str(&d->r, &arr[i], max, flags, d->diag, d->path, ekey)))
      return rc;
  }
  *n = cnt;
  return 0;
}

/* An array of events, allocated once its count is known to be plausible. */
static int read_events(dec_t *d, const char *key, psl_event_t **out, size_t *n, uint32_t limit,
                       size_t min_bytes, psl__ev_mode_t mode) {
  uint32_t cnt;
  int rc = psl__rd_array(&d->r, &cnt);
  if (rc)
    return rd_fail(d, rc, key, "array");
  if (cnt > limit)
    return psl__diag(d->diag, PSL_ETOO_BIG, "%s.%s: more than %u events", d->path, key, limit);
  if (cnt > psl__rd_left(&d->r) / min_bytes)
    return rd_fail(d, PSL__RD_SHORT, key, NULL);
  if (cnt == 0)
    return 0;
  if (!(*out = calloc(cnt, sizeof **out)))
    return psl__diag(d->diag, PSL_ENOMEM, "%s.%s: out of memory", d->path, key);
  *n = cnt; /* the msg owns the array now: psl_msg_free releases it on any error */
  for (uint32_t i = 0; i < cnt; i++) {
    char path[64];
    snprintf(path, sizeof path, "%s.%s[%u]", d->path, key, i);
    if ((rc = psl__event_decode(&d->r, &(*out)[i], mode, path, d->diag)))
      return rc;
  }
  return 0;
}

/* The PSL_E* of a protocol error code; PSL_EINTERNAL for codes this version does not know. */
static int err_from_code(psl_str_t code) {
  for (int e = PSL__ERR_BASE + 1; e < PSL__ERR_END; e++)
    if (psl_str_eq(code, psl_err_code(e)))
      return e;
  return PSL_EINTERNAL;
}

enum { R_SEQ, R_VER, R_DUP, R_ERR, R_MSG, R_COUNT };
static const char *const result_keys[R_COUNT] = {"seq", "ver", "dup", "err", "msg"};

static int read_result(dec_t *d, psl_push_result_t *res, const char *path) {
  uint32_t n;
  unsigned seen = 0, need;
  psl_str_t code = {NULL, 0}, key;
  int rc = psl__rd_map(&d->r, &n);
  if (rc)
    return psl__rd_fail(d->diag, rc, path, NULL, "map");
  for (uint32_t i = 0; i < n; i++) {
    if ((rc = psl__field_key(&d->r, &key, d->diag, path)))
      return rc;
    int k = psl__key_index(key, result_keys, R_COUNT);
    if (k < 0) {
      if ((rc = psl__rd_skip(&d->r, PSL_MAX_DEPTH)))
        return psl__rd_fail(d->diag, rc, path, NULL, "value");
      continue;
    }
    if (seen & BIT(k))
      return psl__diag(d->diag, PSL_EINVALID, "%s.%s: duplicate key", path, result_keys[k]);
    seen |= BIT(k);
    switch (k) {
    case R_SEQ: rc = psl__field_uint(&d->r, &res->seq, d->diag, path, "seq"); break;
    case R_VER: rc = psl__field_uint(&d->r, &res->ver, d->diag, path, "ver"); break;
    case R_DUP: rc = psl__field_bool(&d->r, &res->dup, d->diag, path, "dup"); break;
    case R_ERR:
      rc = psl__field_str(&d->r, &code, PSL_MAX_STR, PSL__STR_NONEMPTY, d->diag, path, "err");
      break;
    default: rc = psl__field_str(&d->r, &res->msg, PSL_MAX_STR, 0, d->diag, path, "msg"); break;
    }
    if (rc)
      return rc;
  }
  if (seen & BIT(R_ERR)) {
    res->err = err_from_code(code);
    res->dup = 0;
    need = res->err == PSL_ECONFLICT ? BIT(R_VER)
           : res->err == PSL_EFORBIDDEN || res->err == PSL_EINVALID ? BIT(R_MSG) : 0;
  } else {
    need = BIT(R_SEQ) | BIT(R_VER);
  }
  for (int k = 0; k < R_COUNT; k++)
    if ((need & BIT(k)) && !(seen & BIT(k)))
      return psl__diag(d->diag, PSL_EINVALID, "%s.%s: missing", path, result_keys[k]);
  return 0;
}

static int read_results(dec_t *d, const char *key) {
  uint32_t cnt;
  int rc = psl__rd_array(&d->r, &cnt);
  if (rc)
    return rd_fail(d, rc, key, "array");
  if (cnt > PSL_MAX_PUSH_EVENTS)
    return psl__diag(d->diag, PSL_ETOO_BIG, "%s.%s: more than %u results", d->path, key,
                     PSL_MAX_PUSH_EVENTS);
  if (cnt > psl__rd_left(&d->r)) /* a result takes at least one byte */
    return rd_fail(d, PSL__RD_SHORT, key, NULL);
  if (cnt == 0)
    return 0;
  psl_push_result_t *res = calloc(cnt, sizeof *res);
  if (!res)
    return psl__diag(d->diag, PSL_ENOMEM, "%s.%s: out of memory", d->path, key);
  d->m->u.pushed.results = res;
  d->m->u.pushed.n = cnt;
  for (uint32_t i = 0; i < cnt; i++) {
    char path[64];
    snprintf(path, sizeof path, "%s.%s[%u]", d->path, key, i);
    if ((rc = read_result(d, &res[i], path)))
      return rc;
  }
  return 0;
}

/* ---- One field function per message type: keys[k] for k >= 2. */

#define STR_FIELD(dst, max, flags) psl__field_str(&d->r, (dst), (max), (flags), d->diag, d->path, key)
#define UINT_FIELD(dst) psl__field_uint(&d->r, (dst), d->diag, d->path, key)

static const char *const hello_keys[] = {"t", "id", "v", "token", "device", "agent", "server"};
static int hello_field(dec_t *d, int k, const char *key) {
  switch (k) {
  case 2: return UINT_FIELD(&d->m->u.hello.v);
  case 3: return STR_FIELD(&d->m->u.hello.token, PSL_MAX_STR, 0);
  case 4: return STR_FIELD(&d->m->u.hello.device, PSL_MAX_STR, 0);
  case 5: return STR_FIELD(&d->m->u.hello.agent, PSL_MAX_STR, 0);
  default: return STR_FIELD(&d->m->u.hello.server, PSL_MAX_STR, 0);
  }
}

static const char *const push_keys[] = {"t", "id", "events"};
static int push_field(dec_t *d, int k, const char *key) {
  return read_events(d, key, &d->m->u.push.events, &d->m->u.push.n, PSL_MAX_PUSH_EVENTS, 1,
                     PSL__EV_NEW);
}

static const char *const sub_keys[] = {"t", "id", "from", "live", "window", "terr", "streams"};
static int sub_field(dec_t *d, int k, const char *key) {
  const unsigned ident = PSL__STR_NONEMPTY | PSL__STR_NONUL;
  int rc;
  switch (k) {
  case 2: return UINT_FIELD(&d->m->u.sub.from);
  case 3: return psl__field_bool(&d->r, &d->m->u.sub.live, d->diag, d->path, key);
  case 4:
    if ((rc = UINT_FIELD(&d->m->u.sub.window)))
      return rc;
    if (d->m->u.sub.window == 0)
      return psl__diag(d->diag, PSL_EINVALID, "%s.%s: must be at least 1", d->path, key);
    return 0;
  case 5:
    d->m->u.sub.has_terr = 1;
    return read_strs(d, key, d->m->u.sub.terr, &d->m->u.sub.nterr, PSL_MAX_TERR, ident);
  default:
    d->m->u.sub.has_streams = 1;
    return read_strs(d, key, d->m->u.sub.streams, &d->m->u.sub.nstreams, PSL_MAX_STREAM, ident);
  }
}

static const char *const ack_keys[] = {"t", "id", "sub", "upto"};
static int ack_field(dec_t *d, int k, const char *key) {
  return UINT_FIELD(k == 2 ? &d->m->u.ack.sub : &d->m->u.ack.upto);
}

static const char *const unsub_keys[] = {"t", "id", "sub"};
static int unsub_field(dec_t *d, int k, const char *key) { return UINT_FIELD(&d->m->u.unsub.sub); }

static const char *const welcome_keys[] = {"t", "id", "v", "server", "head", "hash", "role", "terr"};
static int welcome_field(dec_t *d, int k, const char *key) {
  switch (k) {
  case 2: return UINT_FIELD(&d->m->u.welcome.v);
  case 3: return STR_FIELD(&d->m->u.welcome.server, PSL_MAX_STR, 0);
  case 4: return UINT_FIELD(&d->m->u.welcome.head);
  case 5:
    return psl__field_bin_n(&d->r, d->m->u.welcome.hash, PSL_HASH_BYTES, d->diag, d->path, key);
  case 6: return STR_FIELD(&d->m->u.welcome.role, PSL_MAX_STR, 0);
  default:
    return read_strs(d, key, d->m->u.welcome.terr, &d->m->u.welcome.nterr, PSL_MAX_TERR,
                     PSL__STR_NONEMPTY | PSL__STR_NONUL);
  }
}

static const char *const pushed_keys[] = {"t", "id", "results"};
static int pushed_field(dec_t *d, int k, const char *key) { return read_results(d, key); }

static const char *const events_keys[] = {"t", "id", "sub", "last", "events"};
static int events_field(dec_t *d, int k, const char *key) {
  switch (k) {
  case 2: return UINT_FIELD(&d->m->u.events.sub);
  case 3: return UINT_FIELD(&d->m->u.events.last);
  default:
    return read_events(d, key, &d->m->u.events.events, &d->m->u.events.n, PSL_MAX_CHUNK_EVENTS,
                       MIN_WIRE_EVENT_BYTES, PSL__EV_WIRE);
  }
}

static const char *const caught_up_keys[] = {"t", "id", "sub", "head"};
static int caught_up_field(dec_t *d, int k, const char *key) {
  return UINT_FIELD(k == 2 ? &d->m->u.caught_up.sub : &d->m->u.caught_up.head);
}

static const char *const error_keys[] = {"t", "id", "code", "msg"};
static int error_field(dec_t *d, int k, const char *key) {
  return STR_FIELD(k == 2 ? &d->m->u.error.code : &d->m->u.error.msg, PSL_MAX_STR, 0);
}

#define NKEYS(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define ROW(type, name, required) {type, name##_keys, NKEYS(name##_keys), (required), name##_field}

/* Required keys per type (bit 0 is `t`, bit 1 `id`): PROTOCOL-v1's tables, where push, sub
 * and pushed carry an id because their answer (or a later ack) refers to it. */
static const spec_t specs[] = {
    ROW(PSL_MSG_HELLO, hello, 0x1d),       /* t v token device */
    ROW(PSL_MSG_PUSH, push, 0x07),         /* t id events */
    ROW(PSL_MSG_SUB, sub, 0x0f),           /* t id from live */
    ROW(PSL_MSG_ACK, ack, 0x0d),           /* t sub upto */
    ROW(PSL_MSG_UNSUB, unsub, 0x05),       /* t sub */
    ROW(PSL_MSG_WELCOME, welcome, 0xfd),   /* t v server head hash role terr */
    ROW(PSL_MSG_PUSHED, pushed, 0x07),     /* t id results */
    ROW(PSL_MSG_EVENTS, events, 0x1d),     /* t sub last events */
    ROW(PSL_MSG_CAUGHT_UP, caught_up, 0x0d), /* t sub head */
    ROW(PSL_MSG_ERROR, error, 0x0d),       /* t code msg */
};

/* ---- The two passes. */

static int find_type(const uint8_t *frame, size_t len, const spec_t **spec, psl_diag_t *diag) {
  psl__rd_t r;
  uint32_t n;
  psl_str_t key, t;
  psl__rd_init(&r, frame, len);
  int rc = psl__rd_map(&r, &n);
  if (rc == PSL__RD_TYPE)
    return psl__diag(diag, PSL_EINVALID, "frame: not a MessagePack map");
  if (rc)
    return psl__rd_fail(diag, rc, "frame", NULL, "map");
  for (uint32_t i = 0; i < n; i++) {
    if ((rc = psl__field_key(&r, &key, diag, "frame")))
      return rc;
    if (!psl_str_eq(key, "t")) {
      if ((rc = psl__rd_skip(&r, PSL_MAX_DEPTH)))
        return psl__rd_fail(diag, rc, "frame", NULL, "value");
      continue;
    }
    if ((rc = psl__field_str(&r, &t, PSL_MAX_STR, 0, diag, "frame", "t")))
      return rc;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
      if (psl_str_eq(t, psl__msg_name(specs[s].t))) {
        *spec = &specs[s];
        return 0;
      }
    return psl__diag(diag, PSL_EINVALID, "frame.t: unknown message type");
  }
  return psl__diag(diag, PSL_EINVALID, "frame.t: missing");
}

static int decode_body(dec_t *d, const spec_t *spec) {
  uint32_t n;
  unsigned seen = 0;
  psl_str_t key;
  int rc = psl__rd_map(&d->r, &n); /* cannot fail: find_type read it */
  if (rc)
    return rd_fail(d, rc, NULL, "map");
  for (uint32_t i = 0; i < n; i++) {
    if ((rc = psl__field_key(&d->r, &key, d->diag, d->path)))
      return rc;
    int k = psl__key_index(key, spec->keys, spec->nkeys);
    if (k < 0) {
      if ((rc = psl__rd_skip(&d->r, PSL_MAX_DEPTH)))
        return rd_fail(d, rc, NULL, "value");
      continue;
    }
    if (seen & BIT(k))
      return psl__diag(d->diag, PSL_EINVALID, "%s.%s: duplicate key", d->path, spec->keys[k]);
    seen |= BIT(k);
    if (k == 0) {
      rc = psl__rd_skip(&d->r, 0); /* `t`: a str, checked by find_type */
    } else if (k == 1) {
      rc = psl__field_uint(&d->r, &d->m->id, d->diag, d->path, "id");
      d->m->has_id = 1;
    } else {
      rc = spec->field(d, k, spec->keys[k]);
    }
    if (rc)
      return rc;
  }
  for (int k = 0; k < spec->nkeys; k++)
    if ((spec->required & BIT(k)) && !(seen & BIT(k)))
      return psl__diag(d->diag, PSL_EINVALID, "%s.%s: missing", d->path, spec->keys[k]);
  if (psl__rd_left(&d->r) != 0)
    return psl__diag(d->diag, PSL_EINVALID, "%s: trailing bytes after the map", d->path);
  return 0;
}

int psl_msg_decode(const uint8_t *frame, size_t len, psl_msg_t *msg, psl_diag_t *diag) {
  const spec_t *spec = NULL;
  dec_t d;
  int rc;
  memset(msg, 0, sizeof *msg);
  if (diag)
    diag->msg[0] = '\0';
  if (len > PSL_MAX_FRAME)
    return psl__diag(diag, PSL_ETOO_BIG, "frame: longer than %u bytes", PSL_MAX_FRAME);
  if ((rc = find_type(frame, len, &spec, diag)))
    return rc;
  msg->t = spec->t;
  if (msg->t == PSL_MSG_SUB)
    msg->u.sub.window = SUB_DEFAULT_WINDOW;
  psl__rd_init(&d.r, frame, len);
  d.diag = diag;
  d.path = psl__msg_name(spec->t);
  d.m = msg;
  if ((rc = decode_body(&d, spec))) {
    psl_msg_free(msg);
    return rc;
  }
  return 0;
}

void psl_msg_free(psl_msg_t *msg) {
  if (!msg)
    return;
  if (msg->t == PSL_MSG_PUSH)
    free(msg->u.push.events);
  else if (msg->t == PSL_MSG_PUSHED)
    free(msg->u.pushed.results);
  else if (msg->t == PSL_MSG_EVENTS)
    free(msg->u.events.events);
  memset(msg, 0, sizeof *msg);
}
