/*
 * psl_proto.h — the wire and event codecs of PROTOCOL-v1, shared by server/ and client-lib/.
 *
 * Decoding is zero-copy: every psl_str_t and psl_bytes_t of a decoded message points into
 * the buffer that was decoded, which must outlive the message.  Only arrays whose length
 * comes from the input (push events, pushed results, events chunks) are allocated, after
 * their length is checked against the limits below and against the bytes that remain;
 * psl_msg_free() releases them.  Every byte is treated as hostile: types are checked, lengths
 * bounded before anything is read, unknown keys skipped, and a failure names the offending
 * key in psl_diag_t.
 *
 * Encoding appends to a psl_buf_t, which can keep `headroom` free bytes in front of the data
 * (libwebsockets wants LWS_PRE bytes before what lws_write sends).
 *
 * The canonical encoding of a stored event (psl_event_encode_canonical) is the one byte string
 * the log stores and the hash chain covers; proto/PROTOCOL.md documents it byte by byte.
 */
#ifndef PSL_PROTO_H
#define PSL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "psl_error.h"

/* ---- Limits: each bounds memory or work that a hostile peer could otherwise make us spend. */

/* Largest frame (one MessagePack map) a peer may send: a full push of PSL_MAX_PUSH_EVENTS
 * events of 2 KiB each fits, and a gathering connection never holds more than this. */
#define PSL_MAX_FRAME (2u * 1024u * 1024u)
/* Events in one push: a caseworker back from a prison has ~300 unsent events; clients send
 * more in several pushes.  Bounds the writer's work per request. */
#define PSL_MAX_PUSH_EVENTS 1000u
/* Largest event (canonical stored form): notes of an interview are free text, a few KiB;
 * 64 KiB leaves room and keeps catch-up chunks (PSL_CHUNK_BYTES) holding many events. */
#define PSL_MAX_EVENT (64u * 1024u)
/* A stream name: "participant/" or "session/" + a 36-character uuid, with room to spare. */
#define PSL_MAX_STREAM 128u
/* An event type: "participant.transferred" is 23; `x-` extension types get 64. */
#define PSL_MAX_TYPE 64u
/* A territory code: "75", "93"...; 8 leaves room for future codes like "2A". */
#define PSL_MAX_TERR 8u
/* Any other string (token, device, agent, by, dev, error message, codes). */
#define PSL_MAX_STR 1024u
/* Keys, elements and nesting inside `data` and `pii`: DOMAIN.md's largest map has 8 keys,
 * its lists (barriers, attendees) tens of items, its nesting depth 2. */
#define PSL_MAX_MAP_KEYS 64u
#define PSL_MAX_ARRAY 1024u
#define PSL_MAX_DEPTH 8u
/* Territories or streams named in one `sub`, and territories a token may see. */
#define PSL_MAX_FILTER 64u
/* Events in one `events` chunk a client accepts: a chunk is bounded in bytes by the server
 * (PSL_CHUNK_BYTES); this bounds the decoder's array. */
#define PSL_MAX_CHUNK_EVENTS 65536u
/* Bytes of one `events` chunk the server builds: large enough to amortise a frame per
 * hundreds of 300-byte events, small enough that a window of 4 costs 1 MiB per subscriber. */
#define PSL_CHUNK_BYTES (256u * 1024u)

#define PSL_PROTO_VERSION 1
#define PSL_SUBPROTOCOL "passerelle.v1"
#define PSL_HASH_BYTES 32
#define PSL_UUID_BYTES 16
#define PSL_UUID_STR 36 /* 8-4-4-4-12 lowercase hex, without the NUL */

/* expect: -1 any version (the default), 0 the stream must not exist, n > 0 its version. */
#define PSL_EXPECT_ANY (-1)

typedef struct {
  const char *ptr; /* not NUL-terminated; points into the decoded buffer */
  size_t len;
} psl_str_t;

typedef struct {
  const uint8_t *ptr; /* points into the decoded buffer */
  size_t len;
} psl_bytes_t;

/* Diagnostics of a failed decode: a message naming the key, e.g. "events[3].at: expected int".
 * Never contains the values themselves (they may be personal data). */
typedef struct {
  char msg[160];
} psl_diag_t;

/* One event, new (client → server) or stored (server → client, and in the log).
 * Stored-only fields are zero in a new event. */
typedef struct psl_event_s {
  uint8_t id[PSL_UUID_BYTES];
  psl_str_t stream;
  psl_str_t type;
  int64_t at; /* ms since the epoch, device clock */
  psl_str_t terr;
  psl_bytes_t data; /* one MessagePack map, the bytes as received */
  psl_bytes_t pii;  /* one MessagePack value (a map; a bin once encrypted); len 0 if absent */
  int64_t expect;   /* new events only: PSL_EXPECT_ANY, 0 or n > 0 */
  /* stored form */
  uint64_t seq;
  uint64_t ver;
  int64_t rec; /* ms since the epoch, when the server recorded it */
  psl_str_t by;
  psl_str_t dev;
  uint8_t hash[PSL_HASH_BYTES];
  int has_hash; /* the wire form carries `hash`; the canonical form does not */
} psl_event_t;

/* One entry of `pushed.results`.  Encoding writes {seq, ver[, dup]} when err is 0,
 * {err, ver} for PSL_ECONFLICT, {err, msg} for any other err (its psl_err_code).  Decoding
 * maps `err` back through the error table; a code this version does not know gives
 * PSL_EINTERNAL. */
typedef struct {
  int err;        /* 0 (stored or dup), PSL_ECONFLICT, PSL_EFORBIDDEN or PSL_EINVALID */
  int dup;        /* err == 0: 1 if the event id was already stored */
  uint64_t seq;   /* err == 0 */
  uint64_t ver;   /* err == 0: the event's version; PSL_ECONFLICT: the stream's current one */
  psl_str_t msg;  /* PSL_EFORBIDDEN / PSL_EINVALID: why (no personal data) */
} psl_push_result_t;

typedef enum {
  PSL_MSG_NONE = 0,
  /* client → server */
  PSL_MSG_HELLO,
  PSL_MSG_PUSH,
  PSL_MSG_SUB,
  PSL_MSG_ACK,
  PSL_MSG_UNSUB,
  /* server → client */
  PSL_MSG_WELCOME,
  PSL_MSG_PUSHED,
  PSL_MSG_EVENTS,
  PSL_MSG_CAUGHT_UP,
  PSL_MSG_ERROR
} psl_msg_type_t;

typedef struct psl_msg_s {
  psl_msg_type_t t;
  int has_id;
  uint64_t id;
  union {
    struct {
      uint64_t v;
      psl_str_t token, device, agent, server; /* agent, server: len 0 if absent */
    } hello;
    struct {
      psl_event_t *events; /* allocated by the decoder, n <= PSL_MAX_PUSH_EVENTS */
      size_t n;
    } push;
    struct {
      uint64_t from;
      int live;
      uint64_t window; /* 4 if absent */
      psl_str_t terr[PSL_MAX_FILTER];
      size_t nterr; /* 0: no territory filter */
      int has_terr;
      psl_str_t streams[PSL_MAX_FILTER];
      size_t nstreams; /* 0: no stream filter */
      int has_streams;
    } sub;
    struct {
      uint64_t sub, upto;
    } ack;
    struct {
      uint64_t sub;
    } unsub;
    struct {
      uint64_t v;
      psl_str_t server;
      uint64_t head;
      uint8_t hash[PSL_HASH_BYTES];
      psl_str_t role;
      psl_str_t terr[PSL_MAX_FILTER];
      size_t nterr;
    } welcome;
    struct {
      psl_push_result_t *results; /* allocated by the decoder */
      size_t n;
    } pushed;
    struct {
      uint64_t sub;
      uint64_t last;
      psl_event_t *events; /* allocated by the decoder, n <= PSL_MAX_CHUNK_EVENTS */
      size_t n;
    } events;
    struct {
      uint64_t sub, head;
    } caught_up;
    struct {
      psl_str_t code, msg;
    } error;
  } u;
} psl_msg_t;

/* ---- Growable output buffer. */

typedef struct {
  uint8_t *base; /* allocation; data starts at base + headroom */
  size_t headroom;
  size_t len; /* bytes of data after the headroom */
  size_t cap; /* bytes allocated after the headroom */
} psl_buf_t;

void psl_buf_init(psl_buf_t *b, size_t headroom);
void psl_buf_free(psl_buf_t *b);                   /* accepts a zeroed or freed buffer */
void psl_buf_reset(psl_buf_t *b);                  /* len = 0, keeps the allocation */
int psl_buf_reserve(psl_buf_t *b, size_t more);    /* PSL_ENOMEM */
int psl_buf_append(psl_buf_t *b, const void *p, size_t n);
/* Start of the data (NULL while nothing was ever appended). */
static inline uint8_t *psl_buf_data(const psl_buf_t *b) {
  return b->base ? b->base + b->headroom : NULL;
}

/* ---- Decoding. */

/* Decode one frame into *msg.  On success the caller owns *msg and calls psl_msg_free();
 * the frame must outlive it.  On failure returns PSL_EINVALID (or PSL_ETOO_BIG for a limit,
 * PSL_ENOMEM), fills diag when not NULL, and *msg needs no free (it is zeroed).
 * Decodes every type of both directions; push events are read as new events (stored-only
 * keys such as `by` or `seq` are ignored, pii must be a map), `events` events as stored
 * events in wire form (`hash` required, pii a map or a bin).  Defaults: sub.window 4,
 * event.expect PSL_EXPECT_ANY.  The rules are proto/PROTOCOL.md's §2-§4. */
int psl_msg_decode(const uint8_t *frame, size_t len, psl_msg_t *msg, psl_diag_t *diag);
/* Accepts NULL and a zeroed msg; zeroes *msg. */
void psl_msg_free(psl_msg_t *msg);

/* Decode one stored event in canonical form (as kept in the log, without `hash`) or in wire
 * form (with `hash`: has_hash is set).  Zero-copy: ev points into buf.  Key order and
 * integer widths are not checked (re-encode with psl_event_encode_canonical to compare).
 * PSL_EINVALID / PSL_ETOO_BIG with diag ("event.seq: missing"); ev is zeroed on failure. */
int psl_event_decode_stored(const uint8_t *buf, size_t len, psl_event_t *ev, psl_diag_t *diag);

/* ---- Encoding: append one frame (a MessagePack map) to out.  On any error out->len is
 * left as it was (never half a frame). */

/* Every type of both directions.  Keys in a fixed order (t, id, then PROTOCOL.md's order);
 * optional keys only when set: hello.agent/server when not empty, sub.terr/streams when
 * has_* or n > 0, event.pii when pii.len > 0, event.expect when not PSL_EXPECT_ANY;
 * sub.window is always written.  `events` events are written in wire form (with hash).
 * PSL_EINVALID for an unknown msg->t, PSL_ETOO_BIG for counts over the limits, PSL_ENOMEM.
 * The fields are not validated beyond that: the caller encodes what it decoded or built. */
int psl_msg_encode(psl_buf_t *out, const psl_msg_t *msg);

/* The canonical stored form of ev (no `hash`), appended to out.  Keys in this fixed order:
 * id stream type at terr data [pii] seq ver rec by dev; integers in their shortest form;
 * data and pii copied as they are; expect and hash never written.  PSL_EINVALID when a
 * string is empty/over its limit or data/pii do not start as a map (bin for pii);
 * PSL_ETOO_BIG when the result exceeds PSL_MAX_EVENT; PSL_ENOMEM.  out unchanged on error. */
int psl_event_encode_canonical(psl_buf_t *out, const psl_event_t *ev);

/* Wire form of a stored event from its canonical bytes and hash: the same map with `hash`
 * added.  A copy, no re-encoding: this is what catch-up does per event.  PSL_EINVALID when
 * canon does not start with a fixmap header of at most 14 entries; PSL_ENOMEM. */
int psl_event_wire_from_canonical(psl_buf_t *out, const uint8_t *canon, size_t len,
                                  const uint8_t hash[PSL_HASH_BYTES]);

/* An `events` chunk, built incrementally from stored records (server side):
 *   psl_chunk_begin(out, sub, &ck); psl_chunk_add(out, &ck, canon, len, hash)...;
 *   psl_chunk_end(out, &ck, last);
 * The map is {t: "events", sub, last, events} with `last` written as a uint64 (cf + 8 bytes)
 * and `events` as an array32 (dd + 4 bytes), both patched by _end; out may already hold
 * other data (offsets are relative to psl_buf_data(out)), but nothing may be appended to out
 * between _begin and _end except through _add.  psl_chunk_add returns PSL_ETOO_BIG when the
 * chunk already holds PSL_MAX_CHUNK_EVENTS events (the most a client decodes), PSL_EINVALID
 * when canon is not a canonical event, PSL_ENOMEM; out is unchanged on error.  The byte
 * budget (PSL_CHUNK_BYTES) is the caller's: compare out->len before adding. */
typedef struct {
  size_t count_at; /* offset of the 4 count bytes after dd in out's data */
  size_t last_at;  /* offset of the 8 value bytes after cf */
  uint32_t n;      /* events added */
} psl_chunk_t;
int psl_chunk_begin(psl_buf_t *out, uint64_t sub, psl_chunk_t *ck);
int psl_chunk_add(psl_buf_t *out, psl_chunk_t *ck, const uint8_t *canon, size_t len,
                  const uint8_t hash[PSL_HASH_BYTES]);
void psl_chunk_end(psl_buf_t *out, psl_chunk_t *ck, uint64_t last);

/* ---- Hash chain: hash(n) = BLAKE2b-256(hash(n-1) ‖ canonical bytes of event n). */

void psl_chain_hash(const uint8_t prev[PSL_HASH_BYTES], const uint8_t *canon, size_t len,
                    uint8_t out[PSL_HASH_BYTES]);

/* ---- Small helpers. */

/* 16 bytes → 36 lowercase characters + NUL (out has room for 37). */
void psl_uuid_format(const uint8_t id[PSL_UUID_BYTES], char out[PSL_UUID_STR + 1]);
/* 36 characters (hyphens required, any case) → 16 bytes; PSL_EINVALID otherwise. */
int psl_uuid_parse(const char *s, size_t len, uint8_t id[PSL_UUID_BYTES]);
/* A new UUIDv7 (time-ordered, random tail from libsodium).  Thread-safe. */
void psl_uuid_v7(uint8_t id[PSL_UUID_BYTES], int64_t now_ms);

/* 1 if s holds exactly the bytes of cstr (NULL is ""), 0 otherwise. */
int psl_str_eq(psl_str_t s, const char *cstr);
static inline psl_str_t psl_str(const char *cstr);

#include <string.h>
static inline psl_str_t psl_str(const char *cstr) {
  psl_str_t s = {cstr, cstr ? strlen(cstr) : 0};
  return s;
}

#endif /* PSL_PROTO_H */
