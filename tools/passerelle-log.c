/*
 * passerelle-log — look at the event log of a data folder: its head, its events as JSON
 * lines, and whether its hash chain holds.  Opens the log read-only, so it runs beside a
 * live server and never creates anything.
 *
 *   passerelle-log --data DIR head                 log id, head seq, head hash (hex), and
 *                                                  the journal's events past the head, if any
 *   passerelle-log --data DIR dump [--from N] [--to M]
 *                                                  one JSON object per event and line
 *   passerelle-log --data DIR verify               exit 0 "ok: N events, chain valid";
 *                                                  exit 1 "seq N: <what is wrong>"
 *
 * Exit status: 0 done, 1 the log is missing, unreadable or (verify) not valid, 2 usage.
 *
 * dump's JSON: {"seq","ver","id" (uuid text),"stream","type","at","terr","rec","by","dev",
 * "hash" (hex),"data","pii" (null when absent)}.  `data` and `pii` are MessagePack turned into
 * JSON with msgpack-c's unpacker: a bin becomes a hex string (an encrypted pii is a bin),
 * an ext {"ext": type, "hex": ...}, a non-string map key its JSON text as a string.  dump
 * prints personal data (pii): it is an administrator's tool, its output is theirs to keep.
 */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psl_log.h"

/* Bytes per read while dumping: one short read transaction per MiB, so that a dump of a live
 * log never holds back LMDB's page reuse. */
#define DUMP_READ_BYTES (1u << 20)
/* Containers nested deeper than this are printed as "…": the log's events were checked on
 * entry against PSL_MAX_DEPTH; a damaged record must not make the tool recurse without end. */
#define JSON_MAX_DEPTH PSL_MAX_DEPTH
/* stdout buffer: a dump writes hundreds of MB, a big buffer keeps it to few write(2) calls. */
#define OUT_BUF_BYTES (1u << 20)

static void usage(void) {
  fprintf(stderr, "usage: passerelle-log --data DIR head\n"
                  "       passerelle-log --data DIR dump [--from N] [--to M]\n"
                  "       passerelle-log --data DIR verify\n");
  exit(2);
}

static void hex(FILE *f, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    putc(digits[p[i] >> 4], f);
    putc(digits[p[i] & 15], f);
  }
}

/* Length of the UTF-8 sequence at p (RFC 3629), or 0 if it is not a valid one. */
static size_t utf8_seq(const uint8_t *p, size_t left) {
  uint8_t c = p[0];
  size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                          : (c & 0xf8) == 0xf0 ? 4 : 0;
  if (n == 0 || n > left || (n == 2 && c < 0xc2) || (n == 4 && c > 0xf4))
    return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  if (n == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
    return 0; /* overlong, or a surrogate */
  if (n == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
    return 0;
  return n;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
static void json_str(FILE *f, const char *s, size_t len) {
  const uint8_t *p = (const uint8_t *)s;
  putc('"', f);
  for (size_t i = 0; i < len;) {
    uint8_t c = p[i];
    if (c == '"' || c == '\\') {
      putc('\\', f);
      putc(c, f);
      i++;
    } else if (c < 0x20) {
      fprintf(f, "\\u%04x", c);
      i++;
    } else {
      size_t n = utf8_seq(p + i, len - i);
      if (n == 0) {
        fputs("\xef\xbf\xbd", f);
        i++;
      } else {
        fwrite(p + i, 1, n, f);
        i += n;
      }
    }
  }
  putc('"', f);
}

/* Bounded walk before the unpacker sees the bytes: msgpack-c allocates an array from its
 * header's count before the elements exist, so every count is checked against the bytes
 * left (each element takes at least one).  Returns the bytes of one value, or 0. */
static size_t mp_check(const uint8_t *p, size_t left, unsigned depth) {
  if (left == 0)
    return 0;
  uint8_t c = p[0];
  size_t hdr = 1, body = 0, items = 0;
  if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
    return 1;
  if ((c & 0xe0) == 0xa0)
    body = c & 0x1f;
  else if ((c & 0xf0) == 0x90)
    items = c & 0x0f;
  else if ((c & 0xf0) == 0x80)
    items = 2u * (c & 0x0f);
  else {
    static const uint8_t fixed[] = {[0xca] = 4, [0xcb] = 8, [0xcc] = 1, [0xcd] = 2,
                                    [0xce] = 4, [0xcf] = 8, [0xd0] = 1, [0xd1] = 2,
                                    [0xd2] = 4, [0xd3] = 8, [0xd4] = 2, [0xd5] = 3,
                                    [0xd6] = 5, [0xd7] = 9, [0xd8] = 17};
    if (c >= 0xca && c <= 0xd8)
      return 1u + fixed[c] <= left ? 1u + fixed[c] : 0;
    size_t w = 0;
    int kind = 0; /* 1 bytes, 2 array, 3 map, 4 ext */
    switch (c) {
    case 0xc4: case 0xd9: w = 1, kind = 1; break;
    case 0xc5: case 0xda: w = 2, kind = 1; break;
    case 0xc6: case 0xdb: w = 4, kind = 1; break;
    case 0xc7: w = 1, kind = 4; break;
    case 0xc8: w = 2, kind = 4; break;
    case 0xc9: w = 4, kind = 4; break;
    case 0xdc: w = 2, kind = 2; break;
    case 0xdd: w = 4, kind = 2; break;
    case 0xde: w = 2, kind = 3; break;
    case 0xdf: w = 4, kind = 3; break;
    default: return 0; /* 0xc1 */
    }
    if (left < 1 + w)
      return 0;
    size_t n = 0;
    for (size_t i = 0; i < w; i++)
      n = n << 8 | p[1 + i];
    hdr = 1 + w + (kind == 4);
    if (kind == 1 || kind == 4)
      body = n;
    else
      items = kind == 3 ? 2 * n : n;
  }
  if (hdr > left || body > left - hdr)
    return 0;
  if (items == 0)
    return hdr + body;
  if (depth == 0 || items > left - hdr)
    return 0;
  size_t off = hdr;
  for (size_t i = 0; i < items; i++) {
    size_t k = mp_check(p + off, left - off, depth - 1);
    if (k == 0)
      return 0;
    off += k;
  }
  return off;
}

static void json_obj(FILE *f, const msgpack_object *o, unsigned depth);

static void json_key(FILE *f, const msgpack_object *k, unsigned depth) {
  if (k->type == MSGPACK_OBJECT_STR) {
    json_str(f, k->via.str.ptr, k->via.str.size);
    return;
  }
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (m) {
    json_obj(m, k, depth);
    fclose(m);
    json_str(f, text, len);
    free(text);
  } else {
    fputs("\"?\"", f);
  }
}

static void json_obj(FILE *f, const msgpack_object *o, unsigned depth) {
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: fputs("null", f); break;
  case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", f); break;
  case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(f, "%" PRIu64, o->via.u64); break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(f, "%" PRId64, o->via.i64); break;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64:
    if (o->via.f64 == o->via.f64 && o->via.f64 - o->via.f64 == 0)
      fprintf(f, "%.17g", o->via.f64);
    else
      fputs("null", f); /* NaN and infinities have no JSON form */
    break;
  case MSGPACK_OBJECT_STR: json_str(f, o->via.str.ptr, o->via.str.size); break;
  case MSGPACK_OBJECT_BIN:
    putc('"', f);
    hex(f, (const uint8_t *)o->via.bin.ptr, o->via.bin.size);
    putc('"', f);
    break;
  case MSGPACK_OBJECT_EXT:
    fprintf(f, "{\"ext\":%d,\"hex\":\"", o->via.ext.type);
    hex(f, (const uint8_t *)o->via.ext.ptr, o->via.ext.size);
    fputs("\"}", f);
    break;
  case MSGPACK_OBJECT_ARRAY:
    if (depth == 0) {
      fputs("\"\xe2\x80\xa6\"", f);
      break;
    }
    putc('[', f);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
      if (i)
        putc(',', f);
      json_obj(f, &o->via.array.ptr[i], depth - 1);
    }
    putc(']', f);
    break;
  case MSGPACK_OBJECT_MAP:
    if (depth == 0) {
      fputs("\"\xe2\x80\xa6\"", f);
      break;
    }
    putc('{', f);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      if (i)
        putc(',', f);
      json_key(f, &o->via.map.ptr[i].key, depth - 1);
      putc(':', f);
      json_obj(f, &o->via.map.ptr[i].val, depth - 1);
    }
    putc('}', f);
    break;
  default: fputs("null", f); break;
  }
}

/* One MessagePack value as JSON; "null" for an absent or unreadable one. */
static void json_msgpack(FILE *f, const uint8_t *p, size_t len, msgpack_unpacked *u) {
  size_t off = 0;
  if (len == 0 || mp_check(p, len, JSON_MAX_DEPTH + 1) != len ||
      msgpack_unpack_next(u, (const char *)p, len, &off) != MSGPACK_UNPACK_SUCCESS) {
    fputs("null", f);
    return;
  }
  json_obj(f, &u->data, JSON_MAX_DEPTH);
}

typedef struct {
  uint64_t to;
  msgpack_unpacked u;
  int bad;
} dump_t;

static int dump_one(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                    size_t len) {
  dump_t *d = arg;
  psl_event_t ev;
  char id[PSL_UUID_STR + 1];
  if (d->to && seq > d->to)
    return 1;
  if (psl_event_decode_stored(canon, len, &ev, NULL) != 0) {
    printf("{\"seq\":%" PRIu64 ",\"error\":\"undecodable record\"}\n", seq);
    d->bad = 1;
    return 0;
  }
  psl_uuid_format(ev.id, id);
  printf("{\"seq\":%" PRIu64 ",\"ver\":%" PRIu64 ",\"id\":\"%s\",\"stream\":", seq, ev.ver, id);
  json_str(stdout, ev.stream.ptr, ev.stream.len);
  fputs(",\"type\":", stdout);
  json_str(stdout, ev.type.ptr, ev.type.len);
  printf(",\"at\":%" PRId64 ",\"terr\":", ev.at);
  json_str(stdout, ev.terr.ptr, ev.terr.len);
  printf(",\"rec\":%" PRId64 ",\"by\":", ev.rec);
  json_str(stdout, ev.by.ptr, ev.by.len);
  fputs(",\"dev\":", stdout);
  json_str(stdout, ev.dev.ptr, ev.dev.len);
  fputs(",\"hash\":\"", stdout);
  hex(stdout, hash, PSL_HASH_BYTES);
  fputs("\",\"data\":", stdout);
  json_msgpack(stdout, ev.data.ptr, ev.data.len, &d->u);
  fputs(",\"pii\":", stdout);
  json_msgpack(stdout, ev.pii.ptr, ev.pii.len, &d->u);
  fputs("}\n", stdout);
  return 0;
}

static int cmd_dump(psl_log_t *log, uint64_t from, uint64_t to) {
  dump_t d = {.to = to};
  uint64_t after = from ? from - 1 : 0, last;
  int err = 0;
  msgpack_unpacked_init(&d.u);
  for (;;) {
    uint64_t head = psl_log_head(log, NULL);
    if (after >= head || (to && after >= to))
      break;
    if ((err = psl_log_read(log, after, NULL, DUMP_READ_BYTES, 0, dump_one, &d, &last)) != 0)
      break;
    if (last <= after)
      break;
    after = last;
  }
  msgpack_unpacked_destroy(&d.u);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "passerelle-log: dump: %s\n", strerror(errno));
    return 1;
  }
  if (err) {
    fprintf(stderr, "passerelle-log: dump: %s\n", psl_strerror(err));
    return 1;
  }
  return d.bad;
}

static void progress(void *arg, uint64_t seq, uint64_t head) {
  fprintf(stderr, "\rverify: %" PRIu64 " / %" PRIu64 " events (%d%%)", seq, head,
          head ? (int)(seq * 100 / head) : 100);
}

static int cmd_verify(psl_log_t *log) {
  psl_verify_report_t rep;
  int tty = isatty(STDERR_FILENO);
  int err = psl_log_verify_report(log, &rep, tty ? progress : NULL, NULL);
  if (tty)
    fputs("\r\033[K", stderr);
  if (err == PSL_ECORRUPT) {
    printf("seq %" PRIu64 ": %s\n", rep.bad_seq, rep.why);
    return 1;
  }
  if (err) {
    fprintf(stderr, "passerelle-log: verify: %s\n", psl_strerror(err));
    return 1;
  }
  printf("ok: %" PRIu64 " events, chain valid\n", rep.head);
  return 0;
}

static int cmd_head(psl_log_t *log) {
  uint8_t h[PSL_HASH_BYTES];
  uint64_t head = psl_log_head(log, h);
  printf("log %s\nhead %" PRIu64 "\nhash ", psl_log_id(log), head);
  hex(stdout, h, sizeof h);
  putchar('\n');
  uint64_t n, last;
  int err = psl_log_journal_pending(log, &n, &last);
  if (err) {
    fprintf(stderr, "passerelle-log: reading the journal: %s\n", psl_strerror(err));
    return 1;
  }
  if (n)
    printf("journal %" PRIu64 " answered events past the head, up to seq %" PRIu64
           " (a running passerelled commits them within %u ms; a stopped one applies them "
           "when it starts)\n",
           n, last, PSL_LOG_VISIBLE_MS);
  return 0;
}

static uint64_t parse_seq(const char *s) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-')
    usage();
  return (uint64_t)v;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *cmd = NULL;
  uint64_t from = 0, to = 0;
  int has_range = 0;
  static char outbuf[OUT_BUF_BYTES];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
      dir = argv[++i];
    else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
      from = parse_seq(argv[++i]), has_range = 1;
    else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
      to = parse_seq(argv[++i]), has_range = 1;
    else if (argv[i][0] != '-' && !cmd)
      cmd = argv[i];
    else
      usage();
  }
  if (!dir || !cmd || (strcmp(cmd, "head") && strcmp(cmd, "dump") && strcmp(cmd, "verify")))
    usage();
  if (has_range && strcmp(cmd, "dump"))
    usage();
  setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

  psl_log_opts_t opts = {.read_only = 1};
  psl_log_t *log;
  int err = psl_log_open(&log, dir, &opts);
  if (err) {
    fprintf(stderr, "passerelle-log: cannot open the log in %s: %s\n", dir, psl_strerror(err));
    return 1;
  }
  int rc = strcmp(cmd, "head") == 0 ? cmd_head(log)
           : strcmp(cmd, "dump") == 0 ? cmd_dump(log, from, to)
                                      : cmd_verify(log);
  psl_log_close(log);
  fflush(stdout);
  return rc;
}
