/*
 * test-proto.c — the codecs of proto/: messages, stored events, chunks, chain hash, uuids.
 *
 * The hex test vectors live in one place, proto/PROTOCOL.md, in ```hex <name> blocks (hex
 * bytes; `#` starts a comment).  proto/doc_vectors builds each vector from the fixtures
 * below and checks it equals the document's bytes; proto/vectors_decode decodes the
 * document's bytes and checks the fields and the re-encoding.  So the document cannot drift
 * from the code.  To regenerate the blocks after a deliberate change:
 *   PSL_PROTO_VECTORS=print build/bin/run-tests proto/doc_vectors
 * prints every block, annotated, on stderr.
 *
 * Hostile input: every vector truncated at every length, each key's value replaced by one of
 * the wrong type, huge declared counts, depth bombs, limits, and a deterministic mutation
 * fuzz loop (seed printed) that must never crash — `make asan` runs it under ASan/UBSan.
 */
#include "harness.h"
#include "mpack.h"
#include "psl_proto.h"

#include <ctype.h>
#include <msgpack.h>
#include <sodium.h>

/* ---- Fixtures: two events of one participant, and one message of each type. */

static const uint8_t EV1_ID[16] = {0x01, 0x90, 0xf5, 0xa2, 0x7c, 0x3e, 0x7b, 0x1d,
                                   0x9a, 0x4f, 0x3c, 0x2b, 0x1a, 0x0f, 0x9e, 0x8d};
static const uint8_t EV2_ID[16] = {0x01, 0x90, 0xf5, 0xa2, 0x7c, 0x3f, 0x70, 0x00,
                                   0x80, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77};
#define STREAM1 "participant/0190f5a2-6b00-7c3e-8a1b-2c3d4e5f6a7b"
#define SERVER_ID "0190f5a0-1c2d-7e3f-8a4b-5c6d7e8f9a0b"

typedef struct {
  psl_buf_t data1, pii1, data2, canon1, canon2, tmp;
  psl_event_t new1;     /* event 1 as pushed */
  psl_event_t ev1, ev2; /* stored, with hash */
  uint8_t hash1[PSL_HASH_BYTES], hash2[PSL_HASH_BYTES];
  psl_push_result_t results[5];
  psl_str_t terr93[1];
} fx_t;

static fx_t fx;

static void fx_data(void) {
  psl__wr_t w = {&fx.data1, 0};
  psl__w_map(&w, 8);
  psl__w_cstr(&w, "programme"), psl__w_cstr(&w, "rsa93");
  psl__w_cstr(&w, "site"), psl__w_cstr(&w, "ma-villepinte");
  psl__w_cstr(&w, "source"), psl__w_cstr(&w, "spip");
  psl__w_cstr(&w, "justice"), psl__w_cstr(&w, "detained");
  psl__w_cstr(&w, "gender"), psl__w_cstr(&w, "f");
  psl__w_cstr(&w, "birth_year"), psl__w_uint(&w, 1994);
  psl__w_cstr(&w, "education"), psl__w_cstr(&w, "3");
  psl__w_cstr(&w, "rsa"), psl__w_bool(&w, 1);
  CHECK_OK(w.err);
  w.b = &fx.pii1;
  psl__w_map(&w, 2);
  psl__w_cstr(&w, "name"), psl__w_cstr(&w, "Jeanne Exemple");
  psl__w_cstr(&w, "birth_date"), psl__w_cstr(&w, "1994-03-12");
  CHECK_OK(w.err);
  w.b = &fx.data2;
  psl__w_map(&w, 4);
  psl__w_cstr(&w, "minutes"), psl__w_uint(&w, 45);
  psl__w_cstr(&w, "place"), psl__w_cstr(&w, "detention");
  psl__w_cstr(&w, "site"), psl__w_cstr(&w, "ma-villepinte");
  psl__w_cstr(&w, "topics"), psl__w_array(&w, 2), psl__w_cstr(&w, "cv"),
      psl__w_cstr(&w, "housing");
  CHECK_OK(w.err);
}

static void fx_init(void) {
  static const uint8_t zero[PSL_HASH_BYTES];
  memset(&fx, 0, sizeof fx);
  fx_data();
  psl_event_t *e = &fx.new1;
  memcpy(e->id, EV1_ID, 16);
  e->stream = psl_str(STREAM1);
  e->type = psl_str("participant.referred");
  e->at = 1720000000000;
  e->terr = psl_str("93");
  e->data.ptr = psl_buf_data(&fx.data1), e->data.len = fx.data1.len;
  e->pii.ptr = psl_buf_data(&fx.pii1), e->pii.len = fx.pii1.len;
  e->expect = 0;

  fx.ev1 = fx.new1;
  fx.ev1.expect = 0;
  fx.ev1.seq = 1, fx.ev1.ver = 1, fx.ev1.rec = 1720000005123;
  fx.ev1.by = psl_str("c.martin"), fx.ev1.dev = psl_str("tablet-07");
  CHECK_OK(psl_event_encode_canonical(&fx.canon1, &fx.ev1));
  psl_chain_hash(zero, psl_buf_data(&fx.canon1), fx.canon1.len, fx.hash1);
  memcpy(fx.ev1.hash, fx.hash1, 32), fx.ev1.has_hash = 1;

  e = &fx.ev2;
  memcpy(e->id, EV2_ID, 16);
  e->stream = psl_str(STREAM1);
  e->type = psl_str("interview.held");
  e->at = 1720600000000;
  e->terr = psl_str("93");
  e->data.ptr = psl_buf_data(&fx.data2), e->data.len = fx.data2.len;
  e->seq = 2, e->ver = 2, e->rec = 1720600002000;
  e->by = psl_str("c.martin"), e->dev = psl_str("tablet-07");
  CHECK_OK(psl_event_encode_canonical(&fx.canon2, e));
  psl_chain_hash(fx.hash1, psl_buf_data(&fx.canon2), fx.canon2.len, fx.hash2);
  memcpy(e->hash, fx.hash2, 32), e->has_hash = 1;

  psl_push_result_t *r = fx.results;
  r[0] = (psl_push_result_t){.seq = 1, .ver = 1};
  r[1] = (psl_push_result_t){.dup = 1, .seq = 1, .ver = 1};
  r[2] = (psl_push_result_t){.err = PSL_ECONFLICT, .ver = 3};
  r[3] = (psl_push_result_t){.err = PSL_EFORBIDDEN, .msg = psl_str("territory 75 is not yours")};
  r[4] = (psl_push_result_t){.err = PSL_EINVALID, .msg = psl_str("data.gender: unknown code")};
  fx.terr93[0] = psl_str("93");
}

/* The message of a message vector, NULL's t for the others. */
static void fx_msg(const char *name, psl_msg_t *m) {
  memset(m, 0, sizeof *m);
  if (!strcmp(name, "hello")) {
    m->t = PSL_MSG_HELLO;
    m->u.hello.v = 1;
    m->u.hello.token = psl_str("psl_tok_3f9a2c71");
    m->u.hello.device = psl_str("tablet-07");
    m->u.hello.agent = psl_str("passerelle-android/1.0");
  } else if (!strcmp(name, "push")) {
    m->t = PSL_MSG_PUSH, m->has_id = 1, m->id = 1;
    m->u.push.events = &fx.new1, m->u.push.n = 1;
  } else if (!strcmp(name, "pushed")) {
    m->t = PSL_MSG_PUSHED, m->has_id = 1, m->id = 1;
    m->u.pushed.results = fx.results, m->u.pushed.n = 5;
  } else if (!strcmp(name, "sub")) {
    m->t = PSL_MSG_SUB, m->has_id = 1, m->id = 2;
    m->u.sub.from = 0, m->u.sub.live = 1, m->u.sub.window = 4;
    m->u.sub.terr[0] = psl_str("93"), m->u.sub.nterr = 1, m->u.sub.has_terr = 1;
  } else if (!strcmp(name, "ack")) {
    m->t = PSL_MSG_ACK, m->u.ack.sub = 2, m->u.ack.upto = 2;
  } else if (!strcmp(name, "unsub")) {
    m->t = PSL_MSG_UNSUB, m->u.unsub.sub = 2;
  } else if (!strcmp(name, "welcome")) {
    m->t = PSL_MSG_WELCOME;
    m->u.welcome.v = 1;
    m->u.welcome.server = psl_str(SERVER_ID);
    m->u.welcome.head = 2;
    memcpy(m->u.welcome.hash, fx.hash2, 32);
    m->u.welcome.role = psl_str("caseworker");
    m->u.welcome.terr[0] = psl_str("93"), m->u.welcome.nterr = 1;
  } else if (!strcmp(name, "caught_up")) {
    m->t = PSL_MSG_CAUGHT_UP, m->u.caught_up.sub = 2, m->u.caught_up.head = 2;
  } else if (!strcmp(name, "error")) {
    m->t = PSL_MSG_ERROR, m->has_id = 1, m->id = 1;
    m->u.error.code = psl_str("invalid");
    m->u.error.msg = psl_str("push.events[0].at: expected int");
  }
}

/* The `events` chunk of both events, built the way the server builds it. */
static void fx_chunk(psl_buf_t *out) {
  psl_chunk_t ck;
  CHECK_OK(psl_chunk_begin(out, 2, &ck));
  CHECK_OK(psl_chunk_add(out, &ck, psl_buf_data(&fx.canon1), fx.canon1.len, fx.hash1));
  CHECK_OK(psl_chunk_add(out, &ck, psl_buf_data(&fx.canon2), fx.canon2.len, fx.hash2));
  psl_chunk_end(out, &ck, 2);
}

static const char *const message_vectors[] = {"hello", "push",  "pushed",    "sub",  "ack",
                                              "unsub", "welcome", "caught_up", "error"};
#define N_MESSAGE_VECTORS (sizeof message_vectors / sizeof message_vectors[0])

/* Every vector of the document, in its order, and the bytes the code makes for it. */
static const char *const all_vectors[] = {"hello",  "push",   "pushed", "sub",         "ack",
                                          "unsub",  "welcome", "canonical-1", "hash-1",
                                          "wire-1", "canonical-2", "hash-2", "events",
                                          "caught_up", "error"};
#define N_ALL_VECTORS (sizeof all_vectors / sizeof all_vectors[0])

static void fx_bytes(const char *name, psl_buf_t *out) {
  psl_msg_t m;
  fx_msg(name, &m);
  if (m.t != PSL_MSG_NONE)
    CHECK_OK(psl_msg_encode(out, &m));
  else if (!strcmp(name, "canonical-1"))
    CHECK_OK(psl_buf_append(out, psl_buf_data(&fx.canon1), fx.canon1.len));
  else if (!strcmp(name, "canonical-2"))
    CHECK_OK(psl_buf_append(out, psl_buf_data(&fx.canon2), fx.canon2.len));
  else if (!strcmp(name, "hash-1"))
    CHECK_OK(psl_buf_append(out, fx.hash1, 32));
  else if (!strcmp(name, "hash-2"))
    CHECK_OK(psl_buf_append(out, fx.hash2, 32));
  else if (!strcmp(name, "wire-1"))
    CHECK_OK(psl_event_wire_from_canonical(out, psl_buf_data(&fx.canon1), fx.canon1.len,
                                           fx.hash1));
  else if (!strcmp(name, "events"))
    fx_chunk(out);
  else
    psl_test_fail(__FILE__, __LINE__, "no fixture for vector %s", name);
}

/* ---- The document's vectors. */

static char *read_doc(void) {
  char alt[4096];
  const char *paths[2] = {"proto/PROTOCOL.md", alt};
  snprintf(alt, sizeof alt, "%s/../../proto/PROTOCOL.md", psl_test_bindir());
  for (int i = 0; i < 2; i++) {
    FILE *f = fopen(paths[i], "rb");
    if (!f)
      continue;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    CHECK(s != NULL);
    CHECK_EQ(fread(s, 1, (size_t)n, f), n);
    s[n] = '\0';
    fclose(f);
    return s;
  }
  psl_test_fail(__FILE__, __LINE__, "proto/PROTOCOL.md not found (run from the repo root)");
}

/* The bytes of block ```hex <name>; 0 if the document has no such block. */
static int doc_vector(const char *name, psl_buf_t *out) {
  static char *doc;
  char fence[64];
  if (!doc)
    doc = read_doc();
  snprintf(fence, sizeof fence, "```hex %s\n", name);
  const char *p = strstr(doc, fence);
  if (!p)
    return 0;
  p += strlen(fence);
  const char *end = strstr(p, "```");
  CHECK(end != NULL);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *stop = eol ? eol : end;
    const char *hash = memchr(p, '#', (size_t)(stop - p));
    const char *q = p;
    for (const char *lim = hash ? hash : stop; q < lim;) {
      if (isspace((unsigned char)*q)) {
        q++;
        continue;
      }
      unsigned v;
      CHECK(lim - q >= 2 && isxdigit((unsigned char)q[0]) && isxdigit((unsigned char)q[1]));
      CHECK(sscanf(q, "%2x", &v) == 1);
      uint8_t b = (uint8_t)v;
      CHECK_OK(psl_buf_append(out, &b, 1));
      q += 2;
    }
    p = stop + 1;
  }
  return 1;
}

/* ---- Annotated dump of a vector, for the document (PSL_PROTO_VECTORS=print). */

static void dump_line(int indent, const uint8_t *p, size_t n, const char *comment) {
  for (size_t off = 0; off < n || off == 0; off += 16) {
    char hex[64] = "";
    size_t k = 0;
    for (size_t i = off; i < n && i < off + 16; i++)
      k += (size_t)snprintf(hex + k, sizeof hex - k, i > off ? " %02x" : "%02x", p[i]);
    if (off == 0 && comment)
      fprintf(stderr, "%*s%-*s  # %s\n", indent, "", 48 - indent, hex, comment);
    else
      fprintf(stderr, "%*s%s\n", indent, "", hex);
    if (n == 0)
      break;
  }
}

/* One value at r: its bytes and a comment naming it (`label`) and saying what it is. */
static void dump_value(psl__rd_t *r, int indent, const char *label, const uint8_t *prefix,
                       size_t prefix_len) {
  const uint8_t *start = r->p;
  psl__rd_t t = *r;
  uint32_t n;
  char c[200];
  psl_str_t s;
  psl_bytes_t b;
  uint64_t u;
  int64_t i;
  int v;
  uint8_t line[64];
  if (psl__rd_map(&t, &n) == 0 || (t = *r, psl__rd_array(&t, &n) == 0)) {
    int is_map = psl__rd_is_map(r);
    snprintf(c, sizeof c, "%s: %s of %u", label, is_map ? "map" : "array", n);
    memcpy(line, prefix, prefix_len);
    memcpy(line + prefix_len, start, (size_t)(t.p - start));
    dump_line(indent, line, prefix_len + (size_t)(t.p - start), c);
    *r = t;
    for (uint32_t k = 0; k < n; k++) {
      if (is_map) {
        const uint8_t *ks = r->p;
        CHECK_OK(psl__rd_str(r, &s));
        snprintf(c, sizeof c, "%.*s", (int)s.len, s.ptr);
        dump_value(r, indent + 2, c, ks, (size_t)(r->p - ks));
      } else {
        snprintf(c, sizeof c, "[%u]", k);
        dump_value(r, indent + 2, c, NULL, 0);
      }
    }
    return;
  }
  t = *r;
  if (psl__rd_str(&t, &s) == 0)
    snprintf(c, sizeof c, "%s: \"%.*s\"", label, (int)s.len, s.ptr);
  else if ((t = *r, psl__rd_bin(&t, &b)) == 0)
    snprintf(c, sizeof c, "%s: bin %zu", label, b.len);
  else if ((t = *r, psl__rd_uint(&t, &u)) == 0)
    snprintf(c, sizeof c, "%s: %llu", label, (unsigned long long)u);
  else if ((t = *r, psl__rd_int(&t, &i)) == 0)
    snprintf(c, sizeof c, "%s: %lld", label, (long long)i);
  else if ((t = *r, psl__rd_bool(&t, &v)) == 0)
    snprintf(c, sizeof c, "%s: %s", label, v ? "true" : "false");
  else
    psl_test_fail(__FILE__, __LINE__, "dump: unexpected type at %s", label);
  size_t vlen = (size_t)(t.p - start);
  if (prefix_len + vlen <= 16) { /* key and value on one line */
    memcpy(line, prefix, prefix_len);
    memcpy(line + prefix_len, start, vlen);
    dump_line(indent, line, prefix_len + vlen, c);
  } else {
    if (prefix_len)
      dump_line(indent, prefix, prefix_len, label);
    dump_line(indent + (prefix_len ? 2 : 0), start, vlen, c);
  }
  *r = t;
}

static void dump_vector(const char *name, const uint8_t *p, size_t len) {
  fprintf(stderr, "```hex %s\n", name);
  if (!strncmp(name, "hash-", 5)) {
    dump_line(0, p, 16, "BLAKE2b-256");
    dump_line(0, p + 16, 16, NULL);
  } else {
    psl__rd_t r;
    psl__rd_init(&r, p, len);
    dump_value(&r, 0, name, NULL, 0);
    CHECK_EQ(psl__rd_left(&r), 0);
  }
  fprintf(stderr, "```\n\n");
}

/* ---- Comparisons. */

static int str_same(psl_str_t a, psl_str_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}
static int bytes_same(psl_bytes_t a, psl_bytes_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void check_event(const psl_event_t *a, const psl_event_t *b) {
  CHECK_MEM(a->id, b->id, 16);
  CHECK(str_same(a->stream, b->stream));
  CHECK(str_same(a->type, b->type));
  CHECK_EQ(a->at, b->at);
  CHECK(str_same(a->terr, b->terr));
  CHECK(bytes_same(a->data, b->data));
  CHECK(bytes_same(a->pii, b->pii));
  CHECK_EQ(a->expect, b->expect);
  CHECK_EQ(a->seq, b->seq);
  CHECK_EQ(a->ver, b->ver);
  CHECK_EQ(a->rec, b->rec);
  CHECK(str_same(a->by, b->by));
  CHECK(str_same(a->dev, b->dev));
  CHECK_EQ(a->has_hash, b->has_hash);
  if (a->has_hash)
    CHECK_MEM(a->hash, b->hash, 32);
}

static void check_strs(const psl_str_t *a, const psl_str_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    CHECK(str_same(a[i], b[i]));
}

static void check_msg(const psl_msg_t *a, const psl_msg_t *b) {
  CHECK_EQ(a->t, b->t);
  CHECK_EQ(a->has_id, b->has_id);
  CHECK_EQ(a->id, b->id);
  switch (a->t) {
  case PSL_MSG_HELLO:
    CHECK_EQ(a->u.hello.v, b->u.hello.v);
    CHECK(str_same(a->u.hello.token, b->u.hello.token));
    CHECK(str_same(a->u.hello.device, b->u.hello.device));
    CHECK(str_same(a->u.hello.agent, b->u.hello.agent));
    CHECK(str_same(a->u.hello.server, b->u.hello.server));
    break;
  case PSL_MSG_PUSH:
    CHECK_EQ(a->u.push.n, b->u.push.n);
    for (size_t i = 0; i < a->u.push.n; i++)
      check_event(&a->u.push.events[i], &b->u.push.events[i]);
    break;
  case PSL_MSG_SUB:
    CHECK_EQ(a->u.sub.from, b->u.sub.from);
    CHECK_EQ(a->u.sub.live, b->u.sub.live);
    CHECK_EQ(a->u.sub.window, b->u.sub.window);
    CHECK_EQ(a->u.sub.has_terr, b->u.sub.has_terr);
    CHECK_EQ(a->u.sub.nterr, b->u.sub.nterr);
    check_strs(a->u.sub.terr, b->u.sub.terr, a->u.sub.nterr);
    CHECK_EQ(a->u.sub.has_streams, b->u.sub.has_streams);
    CHECK_EQ(a->u.sub.nstreams, b->u.sub.nstreams);
    check_strs(a->u.sub.streams, b->u.sub.streams, a->u.sub.nstreams);
    break;
  case PSL_MSG_ACK:
    CHECK_EQ(a->u.ack.sub, b->u.ack.sub);
    CHECK_EQ(a->u.ack.upto, b->u.ack.upto);
    break;
  case PSL_MSG_UNSUB:
    CHECK_EQ(a->u.unsub.sub, b->u.unsub.sub);
    break;
  case PSL_MSG_WELCOME:
    CHECK_EQ(a->u.welcome.v, b->u.welcome.v);
    CHECK(str_same(a->u.welcome.server, b->u.welcome.server));
    CHECK_EQ(a->u.welcome.head, b->u.welcome.head);
    CHECK_MEM(a->u.welcome.hash, b->u.welcome.hash, 32);
    CHECK(str_same(a->u.welcome.role, b->u.welcome.role));
    CHECK_EQ(a->u.welcome.nterr, b->u.welcome.nterr);
    check_strs(a->u.welcome.terr, b->u.welcome.terr, a->u.welcome.nterr);
    break;
  case PSL_MSG_PUSHED:
    CHECK_EQ(a->u.pushed.n, b->u.pushed.n);
    for (size_t i = 0; i < a->u.pushed.n; i++) {
      const psl_push_result_t *x = &a->u.pushed.results[i], *y = &b->u.pushed.results[i];
      CHECK_EQ(x->err, y->err);
      CHECK_EQ(x->dup, y->dup);
      CHECK_EQ(x->seq, y->seq);
      CHECK_EQ(x->ver, y->ver);
      CHECK(str_same(x->msg, y->msg));
    }
    break;
  case PSL_MSG_EVENTS:
    CHECK_EQ(a->u.events.sub, b->u.events.sub);
    CHECK_EQ(a->u.events.last, b->u.events.last);
    CHECK_EQ(a->u.events.n, b->u.events.n);
    for (size_t i = 0; i < a->u.events.n; i++)
      check_event(&a->u.events.events[i], &b->u.events.events[i]);
    break;
  case PSL_MSG_CAUGHT_UP:
    CHECK_EQ(a->u.caught_up.sub, b->u.caught_up.sub);
    CHECK_EQ(a->u.caught_up.head, b->u.caught_up.head);
    break;
  case PSL_MSG_ERROR:
    CHECK(str_same(a->u.error.code, b->u.error.code));
    CHECK(str_same(a->u.error.msg, b->u.error.msg));
    break;
  default:
    CHECK(0);
  }
}

/* Decode, compare with want, re-encode: the same bytes. */
static void roundtrip(const psl_msg_t *want) {
  psl_buf_t a, b;
  psl_msg_t m;
  psl_diag_t diag;
  psl_buf_init(&a, 16);
  psl_buf_init(&b, 0);
  CHECK_OK(psl_msg_encode(&a, want));
  int rc = psl_msg_decode(psl_buf_data(&a), a.len, &m, &diag);
  if (rc)
    psl_test_fail(__FILE__, __LINE__, "decode: %s", diag.msg);
  check_msg(&m, want);
  CHECK_OK(psl_msg_encode(&b, &m));
  CHECK_EQ(a.len, b.len);
  CHECK_MEM(psl_buf_data(&a), psl_buf_data(&b), a.len);
  psl_msg_free(&m);
  psl_buf_free(&a);
  psl_buf_free(&b);
}

/* ---- Tests: vectors. */

TEST(proto, doc_vectors) {
  int print = getenv("PSL_PROTO_VECTORS") && !strcmp(getenv("PSL_PROTO_VECTORS"), "print");
  int bad = 0;
  fx_init();
  for (size_t i = 0; i < N_ALL_VECTORS; i++) {
    psl_buf_t want, doc;
    psl_buf_init(&want, 0);
    psl_buf_init(&doc, 0);
    fx_bytes(all_vectors[i], &want);
    int found = doc_vector(all_vectors[i], &doc);
    int same = found && doc.len == want.len &&
               memcmp(psl_buf_data(&doc), psl_buf_data(&want), want.len) == 0;
    if (!same) {
      fprintf(stderr, "  vector %s: %s\n", all_vectors[i], found ? "differs" : "missing");
      bad++;
    }
    if (print || !same)
      dump_vector(all_vectors[i], psl_buf_data(&want), want.len);
    psl_buf_free(&want);
    psl_buf_free(&doc);
  }
  CHECK_EQ(bad, 0);
}

TEST(proto, vectors_decode) {
  fx_init();
  for (size_t i = 0; i < N_MESSAGE_VECTORS; i++) {
    psl_buf_t doc, again;
    psl_msg_t m, want;
    psl_diag_t diag;
    psl_buf_init(&doc, 0);
    psl_buf_init(&again, 0);
    CHECK(doc_vector(message_vectors[i], &doc));
    int rc = psl_msg_decode(psl_buf_data(&doc), doc.len, &m, &diag);
    if (rc)
      psl_test_fail(__FILE__, __LINE__, "%s: %s", message_vectors[i], diag.msg);
    fx_msg(message_vectors[i], &want);
    check_msg(&m, &want);
    CHECK_OK(psl_msg_encode(&again, &m));
    CHECK_EQ(again.len, doc.len);
    CHECK_MEM(psl_buf_data(&again), psl_buf_data(&doc), doc.len);
    psl_msg_free(&m);
    psl_buf_free(&doc);
    psl_buf_free(&again);
  }
}

TEST(proto, vectors_stored_and_chunk) {
  static const uint8_t zero[32];
  psl_buf_t c1, c2, h1, h2, w1, ch, out;
  psl_event_t ev;
  psl_diag_t diag;
  psl_msg_t m;
  uint8_t h[32];
  fx_init();
  psl_buf_t *bufs[] = {&c1, &c2, &h1, &h2, &w1, &ch, &out};
  for (size_t i = 0; i < 7; i++)
    psl_buf_init(bufs[i], 0);
  CHECK(doc_vector("canonical-1", &c1) && doc_vector("canonical-2", &c2));
  CHECK(doc_vector("hash-1", &h1) && doc_vector("hash-2", &h2));
  CHECK(doc_vector("wire-1", &w1) && doc_vector("events", &ch));

  /* canonical → event → canonical; the chain from hash(0) = zeros. */
  CHECK_OK(psl_event_decode_stored(psl_buf_data(&c1), c1.len, &ev, &diag));
  psl_event_t want = fx.ev1;
  want.has_hash = 0, want.expect = PSL_EXPECT_ANY;
  check_event(&ev, &want);
  CHECK_OK(psl_event_encode_canonical(&out, &ev));
  CHECK_EQ(out.len, c1.len);
  CHECK_MEM(psl_buf_data(&out), psl_buf_data(&c1), c1.len);
  psl_chain_hash(zero, psl_buf_data(&c1), c1.len, h);
  CHECK_EQ(h1.len, 32);
  CHECK_MEM(h, psl_buf_data(&h1), 32);
  psl_chain_hash(h, psl_buf_data(&c2), c2.len, h);
  CHECK_MEM(h, psl_buf_data(&h2), 32);

  /* wire = canonical + hash; it decodes to the same event with its hash. */
  CHECK_OK(psl_event_decode_stored(psl_buf_data(&w1), w1.len, &ev, &diag));
  want.has_hash = 1;
  memcpy(want.hash, psl_buf_data(&h1), 32);
  check_event(&ev, &want);
  psl_buf_reset(&out);
  CHECK_OK(psl_event_wire_from_canonical(&out, psl_buf_data(&c1), c1.len, psl_buf_data(&h1)));
  CHECK_EQ(out.len, w1.len);
  CHECK_MEM(psl_buf_data(&out), psl_buf_data(&w1), w1.len);

  /* the events chunk decodes to both stored events. */
  CHECK_OK(psl_msg_decode(psl_buf_data(&ch), ch.len, &m, &diag));
  CHECK_EQ(m.t, PSL_MSG_EVENTS);
  CHECK_EQ(m.u.events.sub, 2);
  CHECK_EQ(m.u.events.last, 2);
  CHECK_EQ(m.u.events.n, 2);
  fx.ev1.expect = PSL_EXPECT_ANY, fx.ev2.expect = PSL_EXPECT_ANY;
  check_event(&m.u.events.events[0], &fx.ev1);
  check_event(&m.u.events.events[1], &fx.ev2);
  /* each event re-encodes to its canonical vector */
  psl_buf_reset(&out);
  CHECK_OK(psl_event_encode_canonical(&out, &m.u.events.events[1]));
  CHECK_EQ(out.len, c2.len);
  CHECK_MEM(psl_buf_data(&out), psl_buf_data(&c2), c2.len);
  /* psl_msg_encode writes the same message with shortest headers: decodes the same */
  psl_buf_reset(&out);
  CHECK_OK(psl_msg_encode(&out, &m));
  CHECK(out.len < ch.len);
  psl_msg_t m2;
  CHECK_OK(psl_msg_decode(psl_buf_data(&out), out.len, &m2, &diag));
  check_msg(&m2, &m);
  psl_msg_free(&m2);
  psl_msg_free(&m);
  for (size_t i = 0; i < 7; i++)
    psl_buf_free(bufs[i]);
}

/* msgpack-c, the reference implementation, reads every vector whole, and packs what it read
 * back to the same bytes: our encoder writes the shortest forms msgpack-c writes. */
TEST(proto, vectors_read_by_msgpack_c) {
  fx_init();
  for (size_t i = 0; i < N_ALL_VECTORS; i++) {
    if (!strncmp(all_vectors[i], "hash-", 5))
      continue;
    psl_buf_t doc;
    psl_buf_init(&doc, 0);
    CHECK(doc_vector(all_vectors[i], &doc));
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    CHECK_EQ(msgpack_unpack_next(&u, (const char *)psl_buf_data(&doc), doc.len, &off),
             MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ(off, doc.len);
    CHECK_EQ(u.data.type, MSGPACK_OBJECT_MAP);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    CHECK_OK(msgpack_pack_object(&pk, u.data));
    if (strcmp(all_vectors[i], "events") == 0) {
      CHECK(sb.size < doc.len); /* the chunk's fixed-width headers, repacked shortest */
    } else {
      CHECK_EQ(sb.size, doc.len);
      CHECK_MEM(sb.data, psl_buf_data(&doc), doc.len);
    }
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
    psl_buf_free(&doc);
  }
}

/* An independent check of the hash function: BLAKE2b-256 of 32 zero bytes, as Python's
 * hashlib.blake2b(bytes(32), digest_size=32) computes it. */
TEST(proto, chain_hash_is_blake2b_256) {
  static const uint8_t zero[32];
  static const char *want = "89eb0d6a8a691dae2cd15ed0369931ce0a949ecafa5c3f93f8121833646e15c3";
  uint8_t h[32];
  char hex[65];
  psl_chain_hash(zero, (const uint8_t *)"", 0, h);
  sodium_bin2hex(hex, sizeof hex, h, 32);
  CHECK_STR(hex, want);
}

/* ---- Tests: round trips beyond the vectors. */

TEST(proto, roundtrip_every_type) {
  psl_msg_t m;
  fx_init();
  for (size_t i = 0; i < N_MESSAGE_VECTORS; i++) {
    fx_msg(message_vectors[i], &m);
    roundtrip(&m);
  }
  /* variants: hello with server and no agent */
  fx_msg("hello", &m);
  m.u.hello.agent = psl_str(NULL);
  m.u.hello.server = psl_str(SERVER_ID);
  roundtrip(&m);
  /* sub with streams, no terr, big from, window 64, not live */
  fx_msg("sub", &m);
  m.u.sub.nterr = 0, m.u.sub.has_terr = 0;
  m.u.sub.streams[0] = psl_str(STREAM1);
  m.u.sub.streams[1] = psl_str("session/0190f5a2-6b00-7c3e-8a1b-2c3d4e5f6a7c");
  m.u.sub.nstreams = 2, m.u.sub.has_streams = 1;
  m.u.sub.from = UINT64_MAX, m.u.sub.live = 0, m.u.sub.window = 64;
  roundtrip(&m);
  /* an empty push, an empty pushed, an error without id */
  fx_msg("push", &m);
  m.u.push.n = 0;
  roundtrip(&m);
  fx_msg("pushed", &m);
  m.u.pushed.n = 0;
  roundtrip(&m);
  fx_msg("error", &m);
  m.has_id = 0, m.id = 0;
  roundtrip(&m);
  /* a push of both events, the second without pii and with expect 1, negative at */
  psl_event_t evs[2] = {fx.new1, fx.ev2};
  evs[1].seq = evs[1].ver = 0, evs[1].rec = 0, evs[1].has_hash = 0;
  evs[1].by = evs[1].dev = psl_str(NULL);
  memset(evs[1].hash, 0, 32);
  evs[1].expect = 1, evs[1].at = -5000;
  fx_msg("push", &m);
  m.u.push.events = evs, m.u.push.n = 2;
  roundtrip(&m);
  /* an events message made by psl_msg_encode */
  memset(&m, 0, sizeof m);
  psl_event_t stored[2] = {fx.ev1, fx.ev2};
  stored[0].expect = stored[1].expect = PSL_EXPECT_ANY;
  m.t = PSL_MSG_EVENTS, m.u.events.sub = 9, m.u.events.last = 77;
  m.u.events.events = stored, m.u.events.n = 2;
  roundtrip(&m);
  /* welcome with no territory (a coordinator sees all: the list may be empty) */
  fx_msg("welcome", &m);
  m.u.welcome.nterr = 0;
  roundtrip(&m);
}

TEST(proto, canonical_form) {
  psl_buf_t a, b;
  psl_event_t ev, dec;
  psl_diag_t diag;
  fx_init();
  psl_buf_init(&a, 0);
  psl_buf_init(&b, 0);
  /* deterministic; expect and hash never stored; a fixmap of 11 or 12 entries */
  ev = fx.ev1;
  ev.expect = 5;
  CHECK_OK(psl_event_encode_canonical(&a, &ev));
  CHECK_EQ(a.len, fx.canon1.len);
  CHECK_MEM(psl_buf_data(&a), psl_buf_data(&fx.canon1), a.len);
  CHECK_EQ(psl_buf_data(&a)[0], 0x8c);
  CHECK_EQ(psl_buf_data(&fx.canon2)[0], 0x8b);
  CHECK_OK(psl_event_decode_stored(psl_buf_data(&a), a.len, &dec, &diag));
  CHECK_EQ(dec.has_hash, 0);
  CHECK_EQ(dec.expect, PSL_EXPECT_ANY);
  CHECK_OK(psl_event_encode_canonical(&b, &dec));
  CHECK_EQ(a.len, b.len);
  CHECK_MEM(psl_buf_data(&a), psl_buf_data(&b), a.len);

  /* ints that are not shortest in the input come out shortest: decode a stored event whose
   * seq is written as uint64, re-encode canonical: seq is a fixint again */
  psl_buf_reset(&b);
  psl__wr_t w = {&b, 0};
  psl__w_map(&w, 11);
  psl__w_cstr(&w, "dev"), psl__w_cstr(&w, "d"); /* any key order is read */
  psl__w_cstr(&w, "id"), psl__w_bin(&w, EV1_ID, 16);
  psl__w_cstr(&w, "stream"), psl__w_cstr(&w, STREAM1);
  psl__w_cstr(&w, "type"), psl__w_cstr(&w, "x-test");
  psl__w_cstr(&w, "at"), psl__w_raw(&w, "\xd3\0\0\0\0\0\0\0\x07", 9); /* int64 7 */
  psl__w_cstr(&w, "terr"), psl__w_cstr(&w, "75");
  psl__w_cstr(&w, "data"), psl__w_raw(&w, "\xde\0\0", 3);               /* map16 of 0 */
  psl__w_cstr(&w, "seq"), psl__w_raw(&w, "\xcf\0\0\0\0\0\0\0\x03", 9);  /* uint64 3 */
  psl__w_cstr(&w, "ver"), psl__w_raw(&w, "\xd0\x01", 2);                /* int8 1 */
  psl__w_cstr(&w, "rec"), psl__w_int(&w, -1);
  psl__w_cstr(&w, "by"), psl__w_raw(&w, "\xd9\x01u", 3);                /* str8 "u" */
  CHECK_OK(w.err);
  CHECK_OK(psl_event_decode_stored(psl_buf_data(&b), b.len, &dec, &diag));
  CHECK_EQ(dec.at, 7);
  CHECK_EQ(dec.seq, 3);
  CHECK_EQ(dec.ver, 1);
  CHECK_EQ(dec.rec, -1);
  CHECK_EQ(dec.data.len, 3); /* data is kept as received */
  psl_buf_reset(&a);
  CHECK_OK(psl_event_encode_canonical(&a, &dec));
  static const uint8_t tail[] = {0xa3, 's', 'e', 'q', 0x03, 0xa3, 'v', 'e', 'r', 0x01,
                                 0xa3, 'r', 'e', 'c', 0xff, 0xa2, 'b', 'y', 0xa1, 'u',
                                 0xa3, 'd', 'e', 'v', 0xa1, 'd'};
  CHECK(a.len > sizeof tail);
  CHECK_MEM(psl_buf_data(&a) + a.len - sizeof tail, tail, sizeof tail);

  /* what cannot be encoded leaves the buffer as it was */
  size_t before = a.len;
  ev = fx.ev1;
  ev.data.len = 0;
  CHECK_EQ(psl_event_encode_canonical(&a, &ev), PSL_EINVALID);
  ev = fx.ev1;
  ev.stream.len = PSL_MAX_STREAM + 1;
  CHECK_EQ(psl_event_encode_canonical(&a, &ev), PSL_EINVALID);
  ev = fx.ev1;
  ev.data.ptr = (const uint8_t *)"\x91\x00", ev.data.len = 2; /* an array */
  CHECK_EQ(psl_event_encode_canonical(&a, &ev), PSL_EINVALID);
  CHECK_EQ(a.len, before);
  uint8_t *big = calloc(1, PSL_MAX_EVENT);
  CHECK(big != NULL);
  big[0] = 0x81, big[1] = 0xa1, big[2] = 'n', big[3] = 0xc6; /* {n: bin32} */
  psl__put_be32(big + 4, PSL_MAX_EVENT - 8);
  ev = fx.ev1;
  ev.data.ptr = big, ev.data.len = PSL_MAX_EVENT;
  CHECK_EQ(psl_event_encode_canonical(&a, &ev), PSL_ETOO_BIG);
  CHECK_EQ(a.len, before);
  free(big);

  /* wire_from_canonical refuses what is not a canonical map */
  CHECK_EQ(psl_event_wire_from_canonical(&a, (const uint8_t *)"\x91\x00", 2, fx.hash1),
           PSL_EINVALID);
  CHECK_EQ(psl_event_wire_from_canonical(&a, (const uint8_t *)"", 0, fx.hash1), PSL_EINVALID);
  CHECK_EQ(a.len, before);
  psl_buf_free(&a);
  psl_buf_free(&b);
}

TEST(proto, chunk_building) {
  psl_buf_t out;
  psl_chunk_t ck;
  psl_msg_t m;
  psl_diag_t diag;
  fx_init();
  /* a chunk after other data in the buffer, with headroom; an empty chunk */
  psl_buf_init(&out, 16);
  CHECK_OK(psl_buf_append(&out, "xyz", 3));
  CHECK_OK(psl_chunk_begin(&out, 300, &ck));
  psl_chunk_end(&out, &ck, 12345678901ull);
  CHECK_OK(psl_msg_decode(psl_buf_data(&out) + 3, out.len - 3, &m, &diag));
  CHECK_EQ(m.u.events.sub, 300);
  CHECK_EQ(m.u.events.last, 12345678901ull);
  CHECK_EQ(m.u.events.n, 0);
  psl_msg_free(&m);
  /* many events: past the size where the buffer reallocates under the chunk */
  psl_buf_reset(&out);
  CHECK_OK(psl_chunk_begin(&out, 1, &ck));
  for (int i = 0; i < 500; i++)
    CHECK_OK(psl_chunk_add(&out, &ck, psl_buf_data(&fx.canon2), fx.canon2.len, fx.hash2));
  CHECK_EQ(psl_chunk_add(&out, &ck, (const uint8_t *)"\x90", 1, fx.hash2), PSL_EINVALID);
  psl_chunk_end(&out, &ck, 999);
  CHECK_OK(psl_msg_decode(psl_buf_data(&out), out.len, &m, &diag));
  CHECK_EQ(m.u.events.n, 500);
  CHECK_EQ(m.u.events.last, 999);
  fx.ev2.expect = PSL_EXPECT_ANY;
  check_event(&m.u.events.events[499], &fx.ev2);
  psl_msg_free(&m);
  /* the count limit a client decodes */
  ck.n = PSL_MAX_CHUNK_EVENTS;
  CHECK_EQ(psl_chunk_add(&out, &ck, psl_buf_data(&fx.canon2), fx.canon2.len, fx.hash2),
           PSL_ETOO_BIG);
  psl_buf_free(&out);
}

/* ---- Tests: hostile input. */

static int is_msg_vector(const char *name) {
  for (size_t i = 0; i < N_MESSAGE_VECTORS; i++)
    if (!strcmp(name, message_vectors[i]))
      return 1;
  return !strcmp(name, "events");
}

static int decode_any(const char *name, const uint8_t *p, size_t len, psl_diag_t *diag) {
  if (is_msg_vector(name)) {
    psl_msg_t m;
    int rc = psl_msg_decode(p, len, &m, diag);
    if (rc == 0)
      psl_msg_free(&m);
    return rc;
  }
  psl_event_t ev;
  return psl_event_decode_stored(p, len, &ev, diag);
}

TEST(proto, truncated_at_every_length) {
  fx_init();
  for (size_t i = 0; i < N_ALL_VECTORS; i++) {
    const char *name = all_vectors[i];
    if (!strncmp(name, "hash-", 5))
      continue;
    psl_buf_t v;
    psl_buf_init(&v, 0);
    fx_bytes(name, &v);
    for (size_t n = 0; n < v.len; n++) {
      /* a copy of exactly n bytes, so ASan sees any read past the end */
      uint8_t *p = malloc(n ? n : 1);
      memcpy(p, psl_buf_data(&v), n);
      psl_diag_t diag;
      int rc = decode_any(name, p, n, &diag);
      if (rc != PSL_EINVALID)
        psl_test_fail(__FILE__, __LINE__, "%s cut at %zu: rc %d", name, n, rc);
      CHECK(diag.msg[0] != '\0');
      free(p);
    }
    psl_buf_free(&v);
  }
}

/* Where each key's value lies in a frame, and the name a diagnostic must give it. */
typedef struct {
  size_t off, len;
  char where[96];
  int is_int;
} span_t;

static int value_is_int(uint8_t b) { return b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3); }

static size_t map_spans(psl__rd_t *r, const uint8_t *base, const char *path, span_t *out,
                        size_t at, size_t max) {
  uint32_t n;
  psl_str_t key;
  CHECK_OK(psl__rd_map(r, &n));
  for (uint32_t i = 0; i < n; i++) {
    CHECK_OK(psl__rd_str(r, &key));
    const uint8_t *v = r->p;
    CHECK(at < max);
    span_t *s = &out[at++];
    s->off = (size_t)(v - base);
    s->is_int = value_is_int(*v);
    if (key.len == 1 && key.ptr[0] == 't')
      snprintf(s->where, sizeof s->where, "frame.t");
    else
      snprintf(s->where, sizeof s->where, "%s.%.*s", path, (int)key.len, key.ptr);
    int nested = (psl_str_eq(key, "events") || psl_str_eq(key, "results"));
    uint32_t cnt;
    psl__rd_t t = *r;
    if (nested && psl__rd_array(&t, &cnt) == 0) {
      *r = t;
      for (uint32_t k = 0; k < cnt; k++) {
        char sub[96];
        snprintf(sub, sizeof sub, "%s.%.*s[%u]", path, (int)key.len, key.ptr, k);
        at = map_spans(r, base, sub, out, at, max);
      }
    } else {
      CHECK_OK(psl__rd_skip(r, 16));
    }
    s->len = (size_t)(r->p - v);
  }
  return at;
}

TEST(proto, wrong_type_names_the_key) {
  fx_init();
  int checked = 0;
  for (size_t i = 0; i < N_ALL_VECTORS; i++) {
    const char *name = all_vectors[i];
    if (!strncmp(name, "hash-", 5))
      continue;
    psl_buf_t v;
    span_t spans[256];
    psl_buf_init(&v, 0);
    fx_bytes(name, &v);
    psl__rd_t r;
    /* path prefix: the message's t, or "event" for a stored event */
    const char *path = "event";
    psl_msg_t m;
    if (is_msg_vector(name)) {
      CHECK_OK(psl_msg_decode(psl_buf_data(&v), v.len, &m, NULL));
      path = psl__msg_name(m.t);
      psl_msg_free(&m);
    }
    psl__rd_init(&r, psl_buf_data(&v), v.len);
    size_t n = map_spans(&r, psl_buf_data(&v), path, spans, 0, 256);
    for (size_t k = 0; k < n; k++) {
      const span_t *s = &spans[k];
      const char *repl = s->is_int ? "\xa1x" : "\x07";
      size_t rlen = s->is_int ? 2 : 1;
      size_t len = v.len - s->len + rlen;
      uint8_t *f = malloc(len);
      memcpy(f, psl_buf_data(&v), s->off);
      memcpy(f + s->off, repl, rlen);
      memcpy(f + s->off + rlen, psl_buf_data(&v) + s->off + s->len, v.len - s->off - s->len);
      psl_diag_t diag;
      int rc = decode_any(name, f, len, &diag);
      if (rc != PSL_EINVALID || !strstr(diag.msg, s->where) || !strstr(diag.msg, "expected"))
        psl_test_fail(__FILE__, __LINE__, "%s, %s replaced: rc %d, diag \"%s\"", name, s->where,
                      rc, diag.msg);
      free(f);
      checked++;
    }
    psl_buf_free(&v);
  }
  CHECK(checked > 100);
}

/* A frame from a recipe of raw bytes (the writer cannot make the wrong frames we want). */
static int decode_raw(const void *p, size_t len, psl_diag_t *diag) {
  psl_msg_t m;
  uint8_t *copy = malloc(len ? len : 1);
  memcpy(copy, p, len);
  int rc = psl_msg_decode(copy, len, &m, diag);
  if (rc == 0)
    psl_msg_free(&m);
  else
    CHECK_EQ(m.t, PSL_MSG_NONE); /* nothing to free after a failure */
  free(copy);
  return rc;
}

#define EXPECT_FAIL(rc_want, diag_part, bytes, len)                                       \
  do {                                                                                    \
    psl_diag_t d_;                                                                        \
    int rc_ = decode_raw((bytes), (len), &d_);                                            \
    if (rc_ != (rc_want) || !strstr(d_.msg, (diag_part)))                                 \
      psl_test_fail(__FILE__, __LINE__, "rc %d (want %d), diag \"%s\" (want \"%s\")", rc_, \
                    (rc_want), d_.msg, (diag_part));                                      \
  } while (0)

/* The same, for a string literal (its length without the final NUL). */
#define EXPECT_FAIL_LIT(rc_want, diag_part, lit) EXPECT_FAIL(rc_want, diag_part, lit, sizeof(lit) - 1)

TEST(proto, huge_declared_sizes) {
  psl_buf_t b;
  psl_buf_init(&b, 0);
  psl__wr_t w = {&b, 0};
  /* a push announcing 1,000,001 events, then nothing */
  psl__w_map(&w, 3);
  psl__w_cstr(&w, "t"), psl__w_cstr(&w, "push");
  psl__w_cstr(&w, "id"), psl__w_uint(&w, 1);
  psl__w_cstr(&w, "events"), psl__w_array(&w, 1000001);
  EXPECT_FAIL(PSL_ETOO_BIG, "push.events: more than 1000 events", psl_buf_data(&b), b.len);
  /* within the limit but with no bytes behind the count: no allocation, truncated */
  psl_buf_reset(&b);
  psl__w_map(&w, 3);
  psl__w_cstr(&w, "t"), psl__w_cstr(&w, "push");
  psl__w_cstr(&w, "id"), psl__w_uint(&w, 1);
  psl__w_cstr(&w, "events"), psl__w_array(&w, 1000);
  EXPECT_FAIL(PSL_EINVALID, "push.events: truncated", psl_buf_data(&b), b.len);
  /* an events chunk of 0xffffffff events; pushed of 0xffffffff results */
  static const uint8_t chunk[] = "\x84\xa1t\xa6""events\xa3sub\x01\xa4last\x01\xa6""events\xdd\xff\xff\xff\xff";
  EXPECT_FAIL(PSL_ETOO_BIG, "events.events: more than 65536", chunk, sizeof chunk - 1);
  static const uint8_t chunk2[] = "\x84\xa1t\xa6""events\xa3sub\x01\xa4last\x01\xa6""events\xdd\x00\x00\xff\xff";
  EXPECT_FAIL(PSL_EINVALID, "events.events: truncated", chunk2, sizeof chunk2 - 1);
  static const uint8_t pushed[] = "\x83\xa1t\xa6pushed\xa2id\x01\xa7results\xdd\x7f\xff\xff\xff";
  EXPECT_FAIL(PSL_ETOO_BIG, "pushed.results: more than", pushed, sizeof pushed - 1);
  /* a str32 / bin32 / map32 / array32 of 4 GiB with 0 bytes behind */
  static const uint8_t s32[] = "\x82\xa1t\xa5hello\xa5token\xdb\xff\xff\xff\xff";
  EXPECT_FAIL(PSL_EINVALID, "hello.token: truncated", s32, sizeof s32 - 1);
  static const uint8_t m32[] = "\xdf\xff\xff\xff\xff\xa1t";
  EXPECT_FAIL(PSL_EINVALID, "frame: truncated", m32, sizeof m32 - 1);
  static const uint8_t unk[] = "\x82\xa1t\xa5unsub\xa1x\xdd\xff\xff\xff\xff";
  EXPECT_FAIL(PSL_EINVALID, "truncated", unk, sizeof unk - 1);
  static const uint8_t ext[] = "\x82\xa1t\xa5unsub\xa1x\xc9\xff\xff\xff\xff\x01";
  EXPECT_FAIL(PSL_EINVALID, "truncated", ext, sizeof ext - 1);
  /* a data map announcing 65 keys / an array of 1025 elements: limits, named */
  psl_buf_reset(&b);
  psl__w_map(&w, 3);
  psl__w_cstr(&w, "t"), psl__w_cstr(&w, "push");
  psl__w_cstr(&w, "id"), psl__w_uint(&w, 1);
  psl__w_cstr(&w, "events"), psl__w_array(&w, 1);
  psl__w_map(&w, 6);
  psl__w_cstr(&w, "id"), psl__w_bin(&w, EV1_ID, 16);
  psl__w_cstr(&w, "stream"), psl__w_cstr(&w, STREAM1);
  psl__w_cstr(&w, "type"), psl__w_cstr(&w, "x-t");
  psl__w_cstr(&w, "at"), psl__w_uint(&w, 1);
  psl__w_cstr(&w, "terr"), psl__w_cstr(&w, "93");
  psl__w_cstr(&w, "data");
  size_t at = b.len;
  psl__w_map(&w, PSL_MAX_MAP_KEYS + 1);
  for (int i = 0; i < 80; i++)
    psl__w_raw(&w, "\x00", 1);
  EXPECT_FAIL(PSL_ETOO_BIG, "push.events[0].data: a map has more than 64 keys",
              psl_buf_data(&b), b.len);
  b.len = at;
  psl__w_map(&w, 1), psl__w_cstr(&w, "l"), psl__w_array(&w, PSL_MAX_ARRAY + 1);
  for (unsigned i = 0; i < PSL_MAX_ARRAY + 1; i++)
    psl__w_raw(&w, "\x00", 1);
  EXPECT_FAIL(PSL_ETOO_BIG, "push.events[0].data: an array has more than 1024",
              psl_buf_data(&b), b.len);
  b.len = at;
  psl__w_map(&w, 1), psl__w_cstr(&w, "l"), psl__w_array(&w, PSL_MAX_ARRAY);
  for (unsigned i = 0; i < PSL_MAX_ARRAY; i++)
    psl__w_raw(&w, "\x00", 1);
  CHECK_OK(decode_raw(psl_buf_data(&b), b.len, NULL)); /* exactly at the limit: fine */
  CHECK_OK(w.err);
  psl_buf_free(&b);
}

/* A push of one event whose data is `data` (raw bytes), and optional extra entries. */
static void push_with(psl_buf_t *b, const void *data, size_t dlen, const char *extra_key,
                      const void *extra, size_t elen) {
  psl__wr_t w = {b, 0};
  psl_buf_reset(b);
  psl__w_map(&w, 3);
  psl__w_cstr(&w, "t"), psl__w_cstr(&w, "push");
  psl__w_cstr(&w, "id"), psl__w_uint(&w, 1);
  psl__w_cstr(&w, "events"), psl__w_array(&w, 1);
  psl__w_map(&w, extra_key ? 7 : 6);
  psl__w_cstr(&w, "id"), psl__w_bin(&w, EV1_ID, 16);
  psl__w_cstr(&w, "stream"), psl__w_cstr(&w, STREAM1);
  psl__w_cstr(&w, "type"), psl__w_cstr(&w, "x-t");
  psl__w_cstr(&w, "at"), psl__w_uint(&w, 1);
  psl__w_cstr(&w, "terr"), psl__w_cstr(&w, "93");
  psl__w_cstr(&w, "data"), psl__w_raw(&w, data, dlen);
  if (extra_key)
    psl__w_cstr(&w, extra_key), psl__w_raw(&w, extra, elen);
  CHECK_OK(w.err);
}

TEST(proto, depth_bombs) {
  psl_buf_t b;
  psl_buf_init(&b, 0);
  uint8_t deep[200000];
  /* data nested 8 deep is fine, 9 is too deep */
  memset(deep, 0x81, sizeof deep); /* {"a": {"a": ...}} */
  uint8_t nest[64];
  size_t n = 0;
  for (int i = 0; i < 8; i++)
    nest[n++] = 0x81, nest[n++] = 0xa1, nest[n++] = 'a';
  nest[n++] = 0x80;
  push_with(&b, nest, n, NULL, NULL, 0);
  EXPECT_FAIL(PSL_ETOO_BIG, "push.events[0].data: nested deeper than 8", psl_buf_data(&b), b.len);
  push_with(&b, nest + 3, n - 3, NULL, NULL, 0);
  CHECK_OK(decode_raw(psl_buf_data(&b), b.len, NULL));
  /* 200,000 nested arrays: as data, as pii, as an unknown key, as the frame itself */
  memset(deep, 0x91, sizeof deep);
  deep[sizeof deep - 1] = 0xc0;
  push_with(&b, deep, sizeof deep, NULL, NULL, 0);
  EXPECT_FAIL(PSL_EINVALID, "push.events[0].data: expected map", psl_buf_data(&b), b.len);
  push_with(&b, "\x80", 1, "pii", deep, sizeof deep);
  EXPECT_FAIL(PSL_EINVALID, "push.events[0].pii: expected map", psl_buf_data(&b), b.len);
  push_with(&b, "\x80", 1, "zz", deep, sizeof deep);
  EXPECT_FAIL(PSL_ETOO_BIG, "push.events[0]: nested deeper", psl_buf_data(&b), b.len);
  EXPECT_FAIL(PSL_EINVALID, "frame: not a MessagePack map", deep, sizeof deep);
  /* maps nested in maps: {"a": {"a": ...}} 60,000 deep, in data and at top level */
  for (size_t i = 0; i + 3 <= sizeof deep; i += 3)
    deep[i] = 0x81, deep[i + 1] = 0xa1, deep[i + 2] = 'a';
  push_with(&b, deep, sizeof deep - (sizeof deep % 3), NULL, NULL, 0);
  EXPECT_FAIL(PSL_ETOO_BIG, "nested deeper", psl_buf_data(&b), b.len);
  EXPECT_FAIL(PSL_ETOO_BIG, "frame: nested deeper", deep, sizeof deep - (sizeof deep % 3));
  psl_buf_free(&b);
}

TEST(proto, malformed_frames) {
  psl_buf_t b;
  psl_buf_init(&b, 0);
  /* not MessagePack at all, or not a map */
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame", "");
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame: not a MessagePack map", "hello world");
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame: not a MessagePack map", "{\"t\":\"hello\"}");
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame: not a MessagePack map", "\x91\xa1t");
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame.t: missing", "\x80");
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame.t: missing", "\x81\xa1x\x01");
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame.t: unknown message type", "\x81\xa1t\xa4nope");
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame.t: expected str", "\x81\xa1t\x01");
  EXPECT_FAIL_LIT(PSL_EINVALID, "frame: a key is not a str", "\x81\x01\x01");
  EXPECT_FAIL_LIT(PSL_EINVALID, "not MessagePack (byte 0xc1)", "\x82\xa1x\xc1\xa1t\xa5unsub");
  /* trailing bytes; a duplicate key; missing keys */
  EXPECT_FAIL_LIT(PSL_EINVALID, "unsub: trailing bytes", "\x82\xa1t\xa5unsub\xa3sub\x01\x00");
  EXPECT_FAIL_LIT(PSL_EINVALID, "unsub.sub: duplicate key", "\x83\xa1t\xa5unsub\xa3sub\x01\xa3sub\x02");
  EXPECT_FAIL_LIT(PSL_EINVALID, "unsub.sub: missing", "\x81\xa1t\xa5unsub");
  EXPECT_FAIL_LIT(PSL_EINVALID, "push.id: missing", "\x82\xa1t\xa4push\xa6""events\x90");
  EXPECT_FAIL_LIT(PSL_EINVALID, "push.events: missing", "\x82\xa1t\xa4push\xa2id\x01");
  EXPECT_FAIL_LIT(PSL_EINVALID, "ack.sub: out of range", "\x83\xa1t\xa3""ack\xa3sub\xff\xa4upto\x01");
  /* `t` may come last */
  static const char tlast[] = "\x82\xa3sub\x05\xa1t\xa5unsub";
  CHECK_OK(decode_raw(tlast, sizeof tlast - 1, NULL));
  /* a frame over the limit */
  uint8_t *big = calloc(1, PSL_MAX_FRAME + 1);
  EXPECT_FAIL(PSL_ETOO_BIG, "frame: longer than", big, PSL_MAX_FRAME + 1);
  free(big);
  /* strings over their limits, NUL, bad UTF-8, empty names */
  char s[PSL_MAX_STR + 2];
  memset(s, 'a', sizeof s);
  psl__wr_t w = {&b, 0};
  psl__w_map(&w, 4), psl__w_cstr(&w, "t"), psl__w_cstr(&w, "hello");
  psl__w_cstr(&w, "v"), psl__w_uint(&w, 1), psl__w_cstr(&w, "device"), psl__w_cstr(&w, "d");
  psl__w_cstr(&w, "token"), psl__w_str(&w, s, PSL_MAX_STR + 1);
  EXPECT_FAIL(PSL_ETOO_BIG, "hello.token: longer than 1024 bytes", psl_buf_data(&b), b.len);
  EXPECT_FAIL_LIT(PSL_EINVALID, "hello.token: not valid UTF-8", "\x84\xa1t\xa5hello\xa1v\x01\xa6""device\xa1""d\xa5token\xa2\xc3\x28");
  EXPECT_FAIL_LIT(PSL_EINVALID, "hello.token: not valid UTF-8", "\x84\xa1t\xa5hello\xa1v\x01\xa6""device\xa1""d\xa5token\xa2\xc0\x80");
  EXPECT_FAIL_LIT(PSL_EINVALID, "hello.token: not valid UTF-8", "\x84\xa1t\xa5hello\xa1v\x01\xa6""device\xa1""d\xa5token\xa3\xed\xa0\x80");
  static const char emoji[] =
      "\x84\xa1t\xa5hello\xa1v\x01\xa6""device\xa1""d\xa5token\xa4\xf0\x9f\x98\x80";
  CHECK_OK(decode_raw(emoji, sizeof emoji - 1, NULL));
  static const char *const bad_streams[][2] = {
      {"\xa3\x61\x00\x62", "push.events[0].stream: contains a NUL byte"},
      {"\xa0", "push.events[0].stream: empty"},
      {"\xa2\xff\xfe", "push.events[0].stream: not valid UTF-8"},
  };
  for (int i = 0; i < 3; i++) {
    psl_buf_reset(&b);
    push_with(&b, "\x80", 1, NULL, NULL, 0);
    /* replace the stream value (after "stream" key) */
    uint8_t *p = psl_buf_data(&b);
    uint8_t *k = memmem(p, b.len, "\xa6stream", 7);
    CHECK(k != NULL);
    size_t off = (size_t)(k - p) + 7, vlen = 1 + strlen(STREAM1) + 1; /* d9 len + bytes */
    size_t rl = (size_t)(bad_streams[i][0][0] & 0x1f) + 1;
    size_t rest = b.len - off - vlen;
    uint8_t *f = malloc(off + rl + rest);
    memcpy(f, p, off);
    memcpy(f + off, bad_streams[i][0], rl);
    memcpy(f + off + rl, p + off + vlen, rest);
    EXPECT_FAIL(PSL_EINVALID, bad_streams[i][1], f, off + rl + rest);
    free(f);
  }
  /* pii: bin refused in a push (only the server stores encrypted pii), nil means absent */
  push_with(&b, "\x80", 1, "pii", "\xc4\x02zz", 4);
  EXPECT_FAIL(PSL_EINVALID, "push.events[0].pii: expected map", psl_buf_data(&b), b.len);
  push_with(&b, "\x80", 1, "pii", "\xc0", 1);
  psl_msg_t m;
  CHECK_OK(psl_msg_decode(psl_buf_data(&b), b.len, &m, NULL));
  CHECK_EQ(m.u.push.events[0].pii.len, 0);
  CHECK_EQ(m.u.push.events[0].expect, PSL_EXPECT_ANY);
  psl_msg_free(&m);
  /* expect: -1, 0, n accepted, -2 refused */
  push_with(&b, "\x80", 1, "expect", "\xff", 1);
  CHECK_OK(decode_raw(psl_buf_data(&b), b.len, NULL));
  push_with(&b, "\x80", 1, "expect", "\xfe", 1);
  EXPECT_FAIL(PSL_EINVALID, "push.events[0].expect: out of range", psl_buf_data(&b), b.len);
  /* data: key not a str, duplicate key, ext, a value that is not a map */
  push_with(&b, "\x81\x01\x01", 3, NULL, NULL, 0);
  EXPECT_FAIL(PSL_EINVALID, "push.events[0].data: a map key is not a str", psl_buf_data(&b), b.len);
  push_with(&b, "\x82\xa1k\x01\xa1k\x02", 7, NULL, NULL, 0);
  EXPECT_FAIL(PSL_EINVALID, "push.events[0].data: duplicate key", psl_buf_data(&b), b.len);
  push_with(&b, "\x81\xa1k\xd4\x01\x00", 6, NULL, NULL, 0);
  EXPECT_FAIL(PSL_EINVALID, "push.events[0].data: ext values are not allowed", psl_buf_data(&b),
              b.len);
  push_with(&b, "\x81\xa1k\xa2\xc3\x28", 6, NULL, NULL, 0);
  EXPECT_FAIL(PSL_EINVALID, "push.events[0].data: not valid UTF-8", psl_buf_data(&b), b.len);
  push_with(&b, "\x81\xa1k\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18", 12, NULL, NULL, 0);
  CHECK_OK(decode_raw(psl_buf_data(&b), b.len, NULL)); /* a float is fine */
  /* sub: window 0, too many territories, a territory too long */
  EXPECT_FAIL_LIT(PSL_EINVALID, "sub.window: must be at least 1", "\x85\xa1t\xa3sub\xa2id\x01\xa4""from\x00\xa4live\xc3\xa6window\x00");
  psl_buf_reset(&b);
  psl__w_map(&w, 5), psl__w_cstr(&w, "t"), psl__w_cstr(&w, "sub");
  psl__w_cstr(&w, "id"), psl__w_uint(&w, 1), psl__w_cstr(&w, "from"), psl__w_uint(&w, 0);
  psl__w_cstr(&w, "live"), psl__w_bool(&w, 0), psl__w_cstr(&w, "terr");
  size_t at = b.len;
  psl__w_array(&w, PSL_MAX_FILTER + 1);
  for (unsigned i = 0; i <= PSL_MAX_FILTER; i++)
    psl__w_cstr(&w, "93");
  EXPECT_FAIL(PSL_ETOO_BIG, "sub.terr: more than 64 entries", psl_buf_data(&b), b.len);
  b.len = at;
  psl__w_array(&w, 1), psl__w_cstr(&w, "123456789");
  EXPECT_FAIL(PSL_ETOO_BIG, "sub.terr[0]: longer than 8 bytes", psl_buf_data(&b), b.len);
  b.len = at;
  psl__w_array(&w, 0);
  CHECK_OK(psl_msg_decode(psl_buf_data(&b), b.len, &m, NULL));
  CHECK_EQ(m.u.sub.has_terr, 1);
  CHECK_EQ(m.u.sub.nterr, 0);
  CHECK_EQ(m.u.sub.window, 4); /* the default */
  CHECK_EQ(m.u.sub.live, 0);
  psl_msg_free(&m);
  CHECK_OK(w.err);
  psl_buf_free(&b);
}

TEST(proto, pushed_results_rules) {
  psl_msg_t m;
  /* unknown error codes decode as internal; known ones map back to their PSL_E* */
  static const char codes[] = "\x83\xa1t\xa6pushed\xa2id\x01\xa7results\x92"
                              "\x81\xa3""err\xa7too_big\x81\xa3""err\xa4wat?";
  CHECK_OK(psl_msg_decode((const uint8_t *)codes, sizeof codes - 1, &m, NULL));
  CHECK_EQ(m.u.pushed.n, 2);
  CHECK_EQ(m.u.pushed.results[0].err, PSL_ETOO_BIG);
  CHECK_EQ(m.u.pushed.results[1].err, PSL_EINTERNAL);
  psl_msg_free(&m);
  EXPECT_FAIL_LIT(PSL_EINVALID, "pushed.results[0].ver: missing", "\x83\xa1t\xa6pushed\xa2id\x01\xa7results\x91\x81\xa3""err\xa8""conflict");
  EXPECT_FAIL_LIT(PSL_EINVALID, "pushed.results[0].msg: missing", "\x83\xa1t\xa6pushed\xa2id\x01\xa7results\x91\x81\xa3""err\xa7invalid");
  EXPECT_FAIL_LIT(PSL_EINVALID, "pushed.results[0].seq: missing", "\x83\xa1t\xa6pushed\xa2id\x01\xa7results\x91\x81\xa3ver\x01");
  EXPECT_FAIL_LIT(PSL_EINVALID, "pushed.results[0].err: empty", "\x83\xa1t\xa6pushed\xa2id\x01\xa7results\x91\x81\xa3""err\xa0");
}

TEST(proto, unknown_keys_skipped) {
  psl_buf_t b, plain;
  psl_msg_t m, want;
  psl_diag_t diag;
  fx_init();
  psl_buf_init(&b, 0);
  psl_buf_init(&plain, 0);
  /* a push whose map and whose event carry keys of every type this version does not know,
   * including the stored-only keys a client must not set (by, seq): they are ignored */
  static const uint8_t odd[] =
      "\xa2zz\x82\xa1""a\x93\x01\xc0\xa1x\xa1""b\xc4\x01\x00" /* {a:[1,nil,"x"], b:bin} */
      "\xa2zf\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18"           /* a float64 */
      "\xa2ze\xd6\x05\x01\x02\x03\x04"                       /* an ext */
      "\xa2zk\x81\x01\x02";                                  /* a map with an int key */
  psl__wr_t w = {&b, 0};
  psl__w_map(&w, 3 + 4);
  psl__w_raw(&w, odd, sizeof odd - 1);
  psl__w_cstr(&w, "t"), psl__w_cstr(&w, "push");
  psl__w_cstr(&w, "id"), psl__w_uint(&w, 1);
  psl__w_cstr(&w, "events"), psl__w_array(&w, 1);
  psl__w_map(&w, 8 + 4 + 2);
  psl__w_raw(&w, odd, sizeof odd - 1);
  psl__w_cstr(&w, "by"), psl__w_cstr(&w, "someone-else");
  psl__w_cstr(&w, "seq"), psl__w_uint(&w, 42);
  psl__w_cstr(&w, "id"), psl__w_bin(&w, EV1_ID, 16);
  psl__w_cstr(&w, "stream"), psl__w_cstr(&w, STREAM1);
  psl__w_cstr(&w, "type"), psl__w_cstr(&w, "participant.referred");
  psl__w_cstr(&w, "at"), psl__w_int(&w, 1720000000000);
  psl__w_cstr(&w, "terr"), psl__w_cstr(&w, "93");
  psl__w_cstr(&w, "data"), psl__w_raw(&w, psl_buf_data(&fx.data1), fx.data1.len);
  psl__w_cstr(&w, "pii"), psl__w_raw(&w, psl_buf_data(&fx.pii1), fx.pii1.len);
  psl__w_cstr(&w, "expect"), psl__w_int(&w, 0);
  CHECK_OK(w.err);
  int rc = psl_msg_decode(psl_buf_data(&b), b.len, &m, &diag);
  if (rc)
    psl_test_fail(__FILE__, __LINE__, "%s", diag.msg);
  fx_msg("push", &want);
  check_msg(&m, &want);
  CHECK_OK(psl_msg_encode(&plain, &m)); /* re-encoded without them */
  psl_buf_t doc;
  psl_buf_init(&doc, 0);
  fx_bytes("push", &doc);
  CHECK_EQ(plain.len, doc.len);
  CHECK_MEM(psl_buf_data(&plain), psl_buf_data(&doc), doc.len);
  psl_msg_free(&m);
  /* a stored event ignores `expect` and unknown keys */
  psl_buf_reset(&b);
  psl__w_map(&w, 14);
  psl__w_raw(&w, psl_buf_data(&fx.canon2) + 1, fx.canon2.len - 1);
  psl__w_cstr(&w, "expect"), psl__w_int(&w, 3);
  psl__w_cstr(&w, "zz"), psl__w_array(&w, 0);
  psl__w_cstr(&w, "hash"), psl__w_bin(&w, fx.hash2, 32);
  psl_event_t ev;
  CHECK_OK(psl_event_decode_stored(psl_buf_data(&b), b.len, &ev, &diag));
  fx.ev2.expect = PSL_EXPECT_ANY;
  check_event(&ev, &fx.ev2);
  psl_buf_free(&b);
  psl_buf_free(&plain);
  psl_buf_free(&doc);
}

/* Mutations of every vector: whatever comes back, no crash, no leak, and a frame that
 * decodes re-encodes and decodes again. */
TEST(proto, fuzz_mutations) {
  uint64_t seed = 0x5eed0f9a55e11e01ull;
  const char *env = getenv("PSL_PROTO_FUZZ_SEED");
  if (env)
    seed = strtoull(env, NULL, 0);
  fprintf(stderr, "  seed 0x%llx (PSL_PROTO_FUZZ_SEED)\n", (unsigned long long)seed);
  fx_init();
  psl_buf_t vec[N_ALL_VECTORS];
  for (size_t i = 0; i < N_ALL_VECTORS; i++) {
    psl_buf_init(&vec[i], 0);
    fx_bytes(all_vectors[i], &vec[i]);
  }
  psl_buf_t out;
  psl_buf_init(&out, 0);
  int decoded = 0;
  const int iterations = 100000;
  for (int it = 0; it < iterations; it++) {
    size_t vi = psl_test_rand(&seed) % N_ALL_VECTORS;
    if (!strncmp(all_vectors[vi], "hash-", 5))
      continue;
    uint8_t f[2048];
    size_t len = vec[vi].len;
    CHECK(len + 64 <= sizeof f);
    memcpy(f, psl_buf_data(&vec[vi]), len);
    int nmut = 1 + (int)(psl_test_rand(&seed) % 4);
    for (int k = 0; k < nmut && len > 0; k++) {
      uint64_t x = psl_test_rand(&seed);
      size_t pos = (size_t)(x >> 8) % len;
      switch (x % 7) {
      case 0: f[pos] ^= (uint8_t)(1u << ((x >> 40) % 8)); break;
      case 1: f[pos] = (uint8_t)(x >> 32); break;
      case 2: /* a byte inserted */
        if (len + 1 < sizeof f) {
          memmove(f + pos + 1, f + pos, len - pos);
          f[pos] = (uint8_t)(x >> 32);
          len++;
        }
        break;
      case 3: memmove(f + pos, f + pos + 1, len - pos - 1), len--; break;
      case 4: len = pos; break;
      case 5: /* a length or count made huge */
        for (size_t j = pos; j < len && j < pos + 4; j++)
          f[j] = 0xff;
        break;
      default: /* a type byte swapped for another header byte */
        f[pos] = (uint8_t)(0xc0 + ((x >> 32) % 0x20));
        break;
      }
    }
    uint8_t *p = malloc(len ? len : 1); /* exact size: ASan catches any over-read */
    memcpy(p, f, len);
    psl_msg_t m;
    psl_diag_t diag;
    if (psl_msg_decode(p, len, &m, &diag) == 0) {
      decoded++;
      psl_buf_reset(&out);
      CHECK_OK(psl_msg_encode(&out, &m));
      psl_msg_t m2;
      int rc = psl_msg_decode(psl_buf_data(&out), out.len, &m2, &diag);
      if (rc)
        psl_test_fail(__FILE__, __LINE__, "iteration %d: re-encoded frame: %s", it, diag.msg);
      psl_msg_free(&m2);
      psl_msg_free(&m);
    } else {
      CHECK(diag.msg[0] != '\0');
    }
    psl_event_t ev;
    if (psl_event_decode_stored(p, len, &ev, &diag) == 0) {
      psl_buf_reset(&out);
      CHECK_OK(psl_event_encode_canonical(&out, &ev));
    }
    free(p);
  }
  fprintf(stderr, "  %d of %d mutated frames still decoded\n", decoded, iterations);
  for (size_t i = 0; i < N_ALL_VECTORS; i++)
    psl_buf_free(&vec[i]);
  psl_buf_free(&out);
}

/* ---- Tests: the small helpers. */

TEST(proto, buf) {
  psl_buf_t b;
  psl_buf_init(&b, 16);
  CHECK(psl_buf_data(&b) == NULL);
  CHECK_OK(psl_buf_append(&b, "", 0));
  for (int i = 0; i < 10000; i++)
    CHECK_OK(psl_buf_append(&b, &i, sizeof i));
  CHECK_EQ(b.len, 10000 * sizeof(int));
  CHECK(psl_buf_data(&b) == b.base + 16);
  int v;
  memcpy(&v, psl_buf_data(&b) + 9999 * sizeof(int), sizeof v);
  CHECK_EQ(v, 9999);
  size_t cap = b.cap;
  psl_buf_reset(&b);
  CHECK_EQ(b.len, 0);
  CHECK_EQ(b.cap, cap);
  CHECK_OK(psl_buf_reserve(&b, cap));
  CHECK_EQ(b.cap, cap);
  CHECK_EQ(psl_buf_reserve(&b, SIZE_MAX - 8), PSL_ENOMEM);
  psl_buf_free(&b);
  psl_buf_free(&b);
  psl_buf_free(NULL);
  psl_buf_t z;
  memset(&z, 0, sizeof z);
  psl_buf_free(&z);
}

TEST(proto, uuid) {
  char s[PSL_UUID_STR + 1];
  uint8_t id[16], back[16];
  psl_uuid_format(EV1_ID, s);
  CHECK_STR(s, "0190f5a2-7c3e-7b1d-9a4f-3c2b1a0f9e8d");
  CHECK_OK(psl_uuid_parse(s, strlen(s), back));
  CHECK_MEM(back, EV1_ID, 16);
  CHECK_OK(psl_uuid_parse("0190F5A2-7C3E-7B1D-9A4F-3C2B1A0F9E8D", 36, back));
  CHECK_MEM(back, EV1_ID, 16);
  CHECK_EQ(psl_uuid_parse(s, 35, back), PSL_EINVALID);
  CHECK_EQ(psl_uuid_parse("0190f5a2x7c3e-7b1d-9a4f-3c2b1a0f9e8d", 36, back), PSL_EINVALID);
  CHECK_EQ(psl_uuid_parse("0190f5a2-7c3e-7b1d-9a4f-3c2b1a0f9e8g", 36, back), PSL_EINVALID);
  CHECK_EQ(psl_uuid_parse("0190f5a27c3e-7b1d-9a4f-3c2b1a0f9e8d0", 36, back), PSL_EINVALID);
  CHECK_EQ(psl_uuid_parse(NULL, 0, back), PSL_EINVALID);
  /* v7: timestamp, version and variant bits; random tail differs */
  int64_t now = 1720000000123;
  psl_uuid_v7(id, now);
  psl_uuid_v7(back, now);
  uint64_t ts = 0;
  for (int i = 0; i < 6; i++)
    ts = ts << 8 | id[i];
  CHECK_EQ(ts, now);
  CHECK_EQ(id[6] >> 4, 7);
  CHECK_EQ(id[8] >> 6, 2);
  CHECK(memcmp(id, back, 16) != 0);
  psl_uuid_format(id, s);
  CHECK_EQ(s[14], '7');
}

TEST(proto, str_eq_and_shortest_ints) {
  CHECK(psl_str_eq(psl_str("abc"), "abc"));
  CHECK(!psl_str_eq(psl_str("abc"), "ab"));
  CHECK(!psl_str_eq(psl_str("ab"), "abc"));
  CHECK(psl_str_eq(psl_str(NULL), ""));
  CHECK(psl_str_eq(psl_str(""), NULL));
  /* each boundary value: its shortest encoding, and back */
  static const struct {
    int64_t v;
    size_t len;
    uint8_t first;
  } cases[] = {
      {0, 1, 0x00},          {127, 1, 0x7f},         {128, 2, 0xcc},       {255, 2, 0xcc},
      {256, 3, 0xcd},        {65535, 3, 0xcd},       {65536, 5, 0xce},     {4294967295, 5, 0xce},
      {4294967296, 9, 0xcf}, {INT64_MAX, 9, 0xcf},   {-1, 1, 0xff},        {-32, 1, 0xe0},
      {-33, 2, 0xd0},        {-128, 2, 0xd0},        {-129, 3, 0xd1},      {-32768, 3, 0xd1},
      {-32769, 5, 0xd2},     {INT32_MIN, 5, 0xd2},   {(int64_t)INT32_MIN - 1, 9, 0xd3},
      {INT64_MIN, 9, 0xd3},
  };
  psl_buf_t b;
  psl_buf_init(&b, 0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    psl_buf_reset(&b);
    psl__wr_t w = {&b, 0};
    psl__w_int(&w, cases[i].v);
    CHECK_OK(w.err);
    CHECK_EQ(b.len, cases[i].len);
    CHECK_EQ(psl_buf_data(&b)[0], cases[i].first);
    psl__rd_t r;
    int64_t back;
    psl__rd_init(&r, psl_buf_data(&b), b.len);
    CHECK_OK(psl__rd_int(&r, &back));
    CHECK_EQ(back, cases[i].v);
    CHECK_EQ(psl__rd_left(&r), 0);
  }
  /* uint64 above INT64_MAX: a uint, not an int */
  psl_buf_reset(&b);
  psl__wr_t w = {&b, 0};
  psl__w_uint(&w, UINT64_MAX);
  psl__rd_t r;
  int64_t i64;
  uint64_t u64;
  psl__rd_init(&r, psl_buf_data(&b), b.len);
  CHECK_EQ(psl__rd_int(&r, &i64), PSL__RD_RANGE);
  psl__rd_init(&r, psl_buf_data(&b), b.len);
  CHECK_OK(psl__rd_uint(&r, &u64));
  CHECK(u64 == UINT64_MAX);
  /* str headers at their boundaries */
  static const size_t lens[][2] = {{0, 1}, {31, 1}, {32, 2}, {255, 2}, {256, 3}, {65535, 3},
                                   {65536, 5}};
  char *s = calloc(1, 65536);
  memset(s, 'a', 65536);
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    psl_buf_reset(&b);
    psl__w_str(&w, s, lens[i][0]);
    CHECK_EQ(b.len, lens[i][0] + lens[i][1]);
    psl_str_t back;
    psl__rd_init(&r, psl_buf_data(&b), b.len);
    CHECK_OK(psl__rd_str(&r, &back));
    CHECK_EQ(back.len, lens[i][0]);
  }
  free(s);
  /* map, array and bin headers at their boundaries */
  static const struct {
    char kind;
    uint32_t n;
    const char *head;
    size_t hlen;
  } heads[] = {
      {'m', 15, "\x8f", 1},           {'m', 16, "\xde\x00\x10", 3},
      {'m', 65535, "\xde\xff\xff", 3}, {'m', 65536, "\xdf\x00\x01\x00\x00", 5},
      {'a', 0, "\x90", 1},            {'a', 16, "\xdc\x00\x10", 3},
      {'a', 65536, "\xdd\x00\x01\x00\x00", 5}, {'b', 0, "\xc4\x00", 2},
      {'b', 255, "\xc4\xff", 2},      {'b', 256, "\xc5\x01\x00", 3},
      {'b', 65536, "\xc6\x00\x01\x00\x00", 5},
  };
  uint8_t *zeros = calloc(1, 65536);
  for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
    psl_buf_reset(&b);
    if (heads[i].kind == 'm')
      psl__w_map(&w, heads[i].n);
    else if (heads[i].kind == 'a')
      psl__w_array(&w, heads[i].n);
    else
      psl__w_bin(&w, zeros, heads[i].n);
    CHECK_OK(w.err);
    CHECK(b.len >= heads[i].hlen);
    CHECK_MEM(psl_buf_data(&b), heads[i].head, heads[i].hlen);
  }
  free(zeros);
  psl_buf_free(&b);
}
