/*
 * oom.c — psl-oom: failing allocations in the codec, domain and log paths (SQLite's malloc
 * tests, libuv's test-loop-oom).  Run by tests/test-faults.c; prints one summary line.
 *
 *   psl-oom codec FRAME...   decode, re-encode, canonical and wire forms, chunks, validation,
 *                            the projections' fold and their JSON/CSV renderings, over the
 *                            frames given (corpus files)
 *   psl-oom log DIR          open a log in DIR, append, read, verify, close
 *
 * How: this program defines malloc, calloc, realloc, free and the aligned allocators itself
 * (ELF interposition: liblmdb, libmsgpackc and libc's own callers resolve them here) and
 * forwards them to the next definition (libc's, or the sanitizer's in `make asan`).  A
 * workload first runs unarmed, which counts its allocations (T) and keeps its answer as the
 * reference.  Then for every n in 1..T it runs twice more: failing the n-th allocation only
 * (transient), and the n-th and every later one (persistent: memory is gone).  Each run must
 *
 *   - answer PSL_ENOMEM (or, for the log, PSL_ENOMEM / PSL_EUNAVAILABLE for the batch hit)
 *     or exactly the reference answer: never a crash, a hang, a different answer, or an
 *     allocation failure dressed up as "invalid" or "corrupt";
 *   - leave nothing allocated behind (the count of live allocations returns to where it was;
 *     `make asan` adds LeakSanitizer, `make valgrind` memcheck);
 *   - for the log: leave a log that reopens, verifies (psl_log_verify) and holds every event
 *     answered stored at its seq, and nothing else (head = events answered stored).
 *
 * Exit status 0 and "oom <workload>: T allocations, N runs, F injected failures, 0 wrong";
 * 1 with the first wrong run described.
 *
 * Under `make asan` the allocator forwarded to is the sanitizer's: the live count is left to
 * LeakSanitizer (OOM_COUNT_LIVE), and pthread_getattr_np is wrapped so that the sanitizer's
 * own set-up of a new thread is never failed (it treats that as a fatal CHECK).  Under
 * valgrind memcheck replaces this allocator: nothing is counted (the test then fails, which
 * is why `make valgrind` leaves psl-oom native).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psl_domain.h"
#include "psl_log.h"
#include "psl_proto.h"

/* ==== The failing allocator ============================================================== */

/* Under AddressSanitizer some libc functions (strdup, realpath...) are the sanitizer's own
 * and allocate without coming through here, while their blocks are freed through here: the
 * live count is then meaningless, and LeakSanitizer checks for leaks instead. */
#if defined(__SANITIZE_ADDRESS__)
#define OOM_COUNT_LIVE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OOM_COUNT_LIVE 0
#endif
#endif
#ifndef OOM_COUNT_LIVE
#define OOM_COUNT_LIVE 1
#endif

/* dlsym itself may allocate before the real functions are known: those few requests are
 * served from here and never freed. */
#define BOOT_BYTES 65536
static _Alignas(16) unsigned char boot[BOOT_BYTES];
static _Atomic size_t boot_used;

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static _Atomic int resolving;

static _Atomic long armed;      /* 0: off; n > 0: fail the n-th allocation from arming */
static _Atomic int persistent;  /* and every one after it */
static _Atomic long counted;    /* allocations since arming */
static _Atomic long injected;   /* failures injected since arming */
static _Atomic long live;       /* allocations not yet freed (boot ones excluded) */

static void resolve(void) {
  if (real_malloc)
    return;
  atomic_store(&resolving, 1);
  real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
  real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
  real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
  real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
  real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
  real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
  atomic_store(&resolving, 0);
}

static void *boot_alloc(size_t n) {
  n = (n + 15) & ~(size_t)15;
  size_t at = atomic_fetch_add(&boot_used, n);
  if (at + n > BOOT_BYTES)
    return NULL;
  return boot + at;
}

static int is_boot(const void *p) {
  return (const unsigned char *)p >= boot && (const unsigned char *)p < boot + BOOT_BYTES;
}

/* Set while the sanitizer runtime sets up a new thread: it reads the thread's attributes
 * (pthread_getattr_np allocates) and treats a failure there as a fatal CHECK of its own. */
static _Thread_local int in_runtime;

/* 1 when this allocation must fail. */
static int must_fail(void) {
  long at = atomic_load(&armed);
  if (at <= 0 || in_runtime)
    return 0;
  long c = atomic_fetch_add(&counted, 1) + 1;
  if (c == at || (c > at && atomic_load(&persistent))) {
    atomic_fetch_add(&injected, 1);
    errno = ENOMEM;
    return 1;
  }
  return 0;
}

static void *counted_ptr(void *p) {
  if (p)
    atomic_fetch_add(&live, 1);
  return p;
}

void *malloc(size_t n) {
  if (!real_malloc) {
    if (atomic_load(&resolving))
      return boot_alloc(n);
    resolve();
  }
  if (must_fail())
    return NULL;
  return counted_ptr(real_malloc(n));
}

void *calloc(size_t k, size_t n) {
  if (!real_calloc) {
    if (atomic_load(&resolving)) {
      void *p = (n && k > SIZE_MAX / n) ? NULL : boot_alloc(k * n);
      return p; /* boot memory is zero: never reused */
    }
    resolve();
  }
  if (must_fail())
    return NULL;
  return counted_ptr(real_calloc(k, n));
}

void free(void *p) {
  if (!p || is_boot(p))
    return;
  if (!real_free)
    resolve();
  atomic_fetch_sub(&live, 1);
  real_free(p);
}

void *realloc(void *p, size_t n) {
  if (!real_realloc)
    resolve();
  if (p && is_boot(p)) { /* move out of the boot area */
    void *q = malloc(n);
    size_t room = (size_t)(boot + BOOT_BYTES - (unsigned char *)p);
    if (q) /* the old size is unknown: copy what the boot area holds past p, at most n */
      memcpy(q, p, n < room ? n : room);
    return q;
  }
  if (!p)
    return malloc(n);
  if (n == 0) {
    free(p);
    return NULL;
  }
  if (must_fail())
    return NULL;
  return real_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n) {
  if (!real_posix_memalign)
    resolve();
  if (must_fail())
    return ENOMEM;
  int rc = real_posix_memalign(out, align, n);
  if (rc == 0)
    counted_ptr(*out);
  return rc;
}

void *aligned_alloc(size_t align, size_t n) {
  if (!real_aligned_alloc)
    resolve();
  if (must_fail())
    return NULL;
  return counted_ptr(real_aligned_alloc(align, n));
}

void *memalign(size_t align, size_t n) {
  if (!real_memalign)
    resolve();
  if (must_fail())
    return NULL;
  return counted_ptr(real_memalign(align, n));
}

/* Allocations leaked since `base` was read (0 when they cannot be counted). */
static long leaked_since(long base) { return OOM_COUNT_LIVE ? atomic_load(&live) - base : 0; }

typedef int (*getattr_fn)(pthread_t, pthread_attr_t *);

int pthread_getattr_np(pthread_t th, pthread_attr_t *attr) {
  static getattr_fn real_getattr;
  if (!real_getattr)
    real_getattr = (getattr_fn)dlsym(RTLD_NEXT, "pthread_getattr_np");
  in_runtime++;
  int rc = real_getattr(th, attr);
  in_runtime--;
  return rc;
}

static void arm(long n, int pers) {
  atomic_store(&counted, 0);
  atomic_store(&injected, 0);
  atomic_store(&persistent, pers);
  atomic_store(&armed, n);
}

/* Stop failing; returns the allocations counted since arming. */
static long disarm(void) {
  atomic_store(&armed, 0);
  return atomic_load(&counted);
}

/* The count only runs while armed: "arm" at a point past any allocation to count them. */
#define COUNT_ONLY (0x7fffffffffffffffL)

/* ==== Reporting ========================================================================== */

static void wrong(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void wrong(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "oom: WRONG: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
  _exit(1);
}

/* ==== Codec and domain workload ========================================================== */

typedef struct {
  uint8_t *p;
  size_t n;
} blob_t;

/* Everything a workload produced, as one byte string, and the first error code. */
typedef struct {
  psl_buf_t out;
  int rc;
  const char *step; /* where rc came from */
} answer_t;

static int note(answer_t *a, int rc, const char *step) {
  if (rc && !a->rc) {
    a->rc = rc;
    a->step = step;
  }
  return rc;
}

typedef struct {
  psl_event_t *ev;
  size_t n;
} evlist_t;

static int iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn, void *fnarg) {
  evlist_t *l = arg;
  for (size_t i = 0; i < l->n && l->ev[i].seq < before_seq; i++)
    if (l->ev[i].stream.len == stream.len &&
        memcmp(l->ev[i].stream.ptr, stream.ptr, stream.len) == 0) {
      int rc = fn(fnarg, &l->ev[i]);
      if (rc)
        return rc;
    }
  return 0;
}

/* Stamp the push's valid events as a log would, fold them, and render what can be read. */
static int fold_push(answer_t *a, const psl_msg_t *m) {
  size_t n = m->u.push.n;
  psl_buf_t *canon = calloc(n ? n : 1, sizeof *canon);
  psl_event_t *st = calloc(n ? n : 1, sizeof *st);
  psl_proj_t *p = NULL;
  evlist_t l = {st, 0};
  int rc = (!canon || !st) ? PSL_ENOMEM : psl_proj_new(&p);
  note(a, rc, "fold: alloc");
  for (size_t i = 0; i < n && !a->rc; i++) {
    psl_event_t ev = m->u.push.events[i];
    uint64_t ver = 0;
    for (size_t k = 0; k < l.n; k++)
      ver += st[k].stream.len == ev.stream.len &&
             memcmp(st[k].stream.ptr, ev.stream.ptr, ev.stream.len) == 0;
    if (psl_domain_validate(&ev, ver, NULL) != 0)
      continue;
    ev.seq = l.n + 1;
    ev.ver = ver + 1;
    ev.rec = ev.at;
    ev.by = psl_str("oom-cw");
    ev.dev = psl_str("oom-dev");
    psl_buf_init(&canon[l.n], 0);
    if (note(a, psl_event_encode_canonical(&canon[l.n], &ev), "fold: canonical"))
      break;
    if (note(a, psl_event_decode_stored(psl_buf_data(&canon[l.n]), canon[l.n].len, &st[l.n],
                                        NULL),
             "fold: decode stored"))
      break;
    l.n++;
    note(a, psl_proj_apply(p, &st[l.n - 1], iter, &l), "fold: apply");
  }
  for (size_t i = 0; i < l.n && !a->rc; i++) {
    static const char pfx[] = "participant/";
    uint8_t id[PSL_UUID_BYTES];
    psl_participant_t ps;
    if (st[i].stream.len != sizeof pfx - 1 + PSL_UUID_STR ||
        psl_uuid_parse(st[i].stream.ptr + sizeof pfx - 1, PSL_UUID_STR, id) != 0)
      continue;
    rc = psl_proj_participant(p, id, &ps);
    if (rc == PSL_ENOTFOUND)
      continue;
    if (note(a, rc, "participant"))
      break;
    note(a, psl_participant_json(&a->out, &ps, st[i].at), "participant json");
    psl_participant_free(&ps);
  }
  if (!a->rc && l.n) {
    int year, month;
    psl_counters_query_t q;
    psl_counters_t c;
    psl_report_t rep;
    memset(&rep, 0, sizeof rep);
    psl_local_ym(st[0].at, &year, &month);
    if (!note(a, psl_counters_query_init(&q, 0, year, 0, 0, NULL), "counters query") &&
        !note(a, psl_proj_counters(p, &q, &c), "counters"))
      note(a, psl_counters_json(&a->out, &c), "counters json");
    if (!a->rc && !note(a, psl_proj_report(p, year, 0, &rep), "report") &&
        !note(a, psl_report_json(&a->out, &rep), "report json") &&
        !note(a, psl_report_csv(&a->out, &rep), "report csv"))
      note(a, psl_report_md(&a->out, &rep), "report md");
    psl_report_free(&rep);
  }
  psl_proj_free(p);
  for (size_t i = 0; canon && i < n; i++)
    psl_buf_free(&canon[i]);
  free(canon);
  free(st);
  return a->rc;
}

/* Canonical and wire forms of a chunk's events, and a chunk rebuilt from them. */
static int rebuild_chunk(answer_t *a, const psl_msg_t *m) {
  psl_buf_t canon, chunk;
  psl_chunk_t ck;
  psl_buf_init(&canon, 0);
  psl_buf_init(&chunk, 0);
  if (note(a, psl_chunk_begin(&chunk, m->u.events.sub, &ck), "chunk begin"))
    goto done;
  for (size_t i = 0; i < m->u.events.n; i++) {
    psl_buf_reset(&canon);
    if (note(a, psl_event_encode_canonical(&canon, &m->u.events.events[i]), "chunk canonical") ||
        note(a, psl_chunk_add(&chunk, &ck, psl_buf_data(&canon), canon.len,
                              m->u.events.events[i].hash),
             "chunk add"))
      goto done;
  }
  psl_chunk_end(&chunk, &ck, m->u.events.last);
  note(a, psl_buf_append(&a->out, psl_buf_data(&chunk), chunk.len), "chunk copy");
done:
  psl_buf_free(&canon);
  psl_buf_free(&chunk);
  return a->rc;
}

static void codec_once(const blob_t *in, size_t nin, answer_t *a) {
  psl_buf_init(&a->out, 0);
  a->rc = 0;
  a->step = NULL;
  for (size_t i = 0; i < nin && !a->rc; i++) {
    psl_msg_t m;
    psl_diag_t diag;
    int rc = psl_msg_decode(in[i].p, in[i].n, &m, &diag);
    if (rc == PSL_ENOMEM) {
      static const psl_msg_t zero;
      if (memcmp(&m, &zero, sizeof m) != 0)
        wrong("psl_msg_decode answered ENOMEM and left a message to free");
      note(a, rc, "decode");
      break;
    }
    if (rc) { /* not a frame: a stored event? */
      psl_event_t ev;
      if (psl_event_decode_stored(in[i].p, in[i].n, &ev, NULL) == 0) {
        size_t before = a->out.len;
        rc = psl_event_encode_canonical(&a->out, &ev);
        if (rc && a->out.len != before)
          wrong("psl_event_encode_canonical failed and left bytes behind");
        note(a, rc, "stored canonical");
      }
      continue;
    }
    size_t before = a->out.len;
    rc = psl_msg_encode(&a->out, &m);
    if (rc && a->out.len != before)
      wrong("psl_msg_encode failed and left half a frame");
    if (!note(a, rc, "encode")) {
      if (m.t == PSL_MSG_PUSH)
        fold_push(a, &m);
      else if (m.t == PSL_MSG_EVENTS)
        rebuild_chunk(a, &m);
    }
    psl_msg_free(&m);
  }
}

static blob_t read_blob(const char *path) {
  blob_t b = {NULL, 0};
  FILE *f = fopen(path, "rb");
  if (!f)
    wrong("cannot read %s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  b.p = malloc(n > 0 ? (size_t)n : 1);
  if (!b.p || fread(b.p, 1, (size_t)n, f) != (size_t)n)
    wrong("cannot read %s", path);
  b.n = (size_t)n;
  fclose(f);
  return b;
}

static int run_codec(int argc, char **argv) {
  size_t nin = (size_t)argc;
  blob_t *in = calloc(nin, sizeof *in);
  answer_t ref, a;
  long runs = 0, failures = 0;
  if (!in)
    wrong("calloc");
  for (size_t i = 0; i < nin; i++)
    in[i] = read_blob(argv[i]);

  codec_once(in, nin, &ref); /* warm-up: lazy allocations of libc happen here */
  psl_buf_free(&ref.out);
  long base = atomic_load(&live);
  arm(COUNT_ONLY, 0);
  codec_once(in, nin, &ref);
  long total = disarm();
  if (ref.rc)
    wrong("the unarmed run failed at %s: %s", ref.step, psl_strerror(ref.rc));
  long base_ref = atomic_load(&live);

  for (long n = 1; n <= total; n++)
    for (int pers = 0; pers < 2; pers++) {
      arm(n, pers);
      codec_once(in, nin, &a);
      disarm();
      long inj = atomic_load(&injected);
      runs++;
      failures += inj;
      if (a.rc && a.rc != PSL_ENOMEM)
        wrong("allocation %ld of %ld failed (%s): %s answered %s instead of ENOMEM", n, total,
              pers ? "persistent" : "transient", a.step, psl_err_name(a.rc));
      if (!a.rc && (a.out.len != ref.out.len ||
                    memcmp(psl_buf_data(&a.out), psl_buf_data(&ref.out), a.out.len) != 0))
        wrong("allocation %ld of %ld failed (%s): success, but not the reference answer", n,
              total, pers ? "persistent" : "transient");
      psl_buf_free(&a.out);
      if (leaked_since(base_ref))
        wrong("allocation %ld of %ld failed (%s, at %s): %ld allocation(s) leaked", n, total,
              pers ? "persistent" : "transient", a.step ? a.step : "-",
              leaked_since(base_ref));
    }
  psl_buf_free(&ref.out);
  if (leaked_since(base))
    wrong("the reference run leaked %ld allocation(s)", leaked_since(base));
  for (size_t i = 0; i < nin; i++)
    free(in[i].p);
  free(in);
  printf("oom codec: %ld allocations, %ld runs, %ld injected failures, 0 wrong\n", total, runs,
         failures);
  return 0;
}

/* ==== Log workload ======================================================================= */

/* Events per round; rounds per run (each a durable commit). */
#define LOG_EVENTS 24
#define LOG_ROUNDS 2

typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  uint64_t seq;
} acked_t;

static acked_t *acked;
static size_t nacked, capacked;
static uint64_t next_id = 1;

typedef struct {
  psl_event_t ev;
  char stream[64];
  uint8_t data[32];
} lev_t;

static void lev_fill(lev_t *e, uint64_t idn) {
  memset(e, 0, sizeof *e);
  e->ev.id[0] = 0x01;
  for (int i = 0; i < 8; i++)
    e->ev.id[8 + i] = (uint8_t)(idn >> (8 * (7 - i)));
  snprintf(e->stream, sizeof e->stream, "participant/00000000-0000-7000-8000-%012d",
           (int)(idn % 5));
  e->ev.stream = psl_str(e->stream);
  e->ev.type = psl_str("interview.held");
  e->ev.at = 1700000000000 + (int64_t)idn;
  e->ev.terr = psl_str("93");
  static const uint8_t d[] = {0x81, 0xa7, 'm', 'i', 'n', 'u', 't', 'e', 's', 45};
  memcpy(e->data, d, sizeof d);
  e->ev.data.ptr = e->data;
  e->ev.data.len = sizeof d;
  e->ev.expect = PSL_EXPECT_ANY;
  e->ev.by = psl_str("oom-cw");
  e->ev.dev = psl_str("oom-dev");
}

static void ack(const uint8_t id[PSL_UUID_BYTES], uint64_t seq) {
  if (nacked == capacked) {
    capacked = capacked ? 2 * capacked : 1024;
    acked = realloc(acked, capacked * sizeof *acked);
    if (!acked)
      wrong("realloc");
  }
  memcpy(acked[nacked].id, id, PSL_UUID_BYTES);
  acked[nacked].seq = seq;
  nacked++;
}

static int count_cb(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                    size_t len) {
  (void)seq;
  (void)hash;
  (void)canon;
  (void)len;
  (*(uint64_t *)arg)++;
  return 0;
}

/* One run: open, LOG_ROUNDS appends, a read, a verify, close.  Returns the first error. */
static int log_once(const char *dir, const char **step) {
  psl_log_t *log = NULL;
  static lev_t evs[LOG_EVENTS];
  psl_event_t batch[LOG_EVENTS];
  psl_push_result_t res[LOG_EVENTS];
  int first = 0, rc;
  psl_log_opts_t opts;
  memset(&opts, 0, sizeof opts);
  opts.map_size = 1u << 20; /* small: growth (a resize under the lock) is on the path too */
  if ((rc = psl_log_open(&log, dir, &opts)) != 0) {
    *step = "open";
    return rc;
  }
  for (int r = 0; r < LOG_ROUNDS; r++) {
    for (int i = 0; i < LOG_EVENTS; i++) {
      lev_fill(&evs[i], next_id++);
      batch[i] = evs[i].ev;
    }
    rc = psl_log_append(log, batch, LOG_EVENTS, res);
    if (rc) {
      if (!first) {
        first = rc;
        *step = "append";
      }
      continue;
    }
    for (int i = 0; i < LOG_EVENTS; i++) {
      if (res[i].err || res[i].dup)
        wrong("event %d of a fresh batch answered %s%s", i, psl_err_name(res[i].err),
              res[i].dup ? " dup" : "");
      ack(evs[i].ev.id, res[i].seq);
    }
  }
  uint64_t n = 0, last = 0;
  rc = psl_log_read(log, 0, NULL, 0, 1000000, count_cb, &n, &last);
  if (rc && !first) {
    first = rc;
    *step = "read";
  }
  uint64_t bad = 0;
  rc = psl_log_verify(log, &bad, NULL, NULL);
  if (rc && !first) {
    first = rc;
    *step = rc == PSL_ECORRUPT ? "verify (says corrupt)" : "verify";
  }
  psl_log_close(log);
  return first;
}

typedef struct {
  size_t i;
  int bad;
} check_t;

static int check_cb(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                    size_t len) {
  (void)hash;
  check_t *c = arg;
  psl_event_t ev;
  if (psl_event_decode_stored(canon, len, &ev, NULL) != 0 || ev.seq != seq) {
    c->bad = 1;
    return 1;
  }
  if (c->i >= nacked || acked[c->i].seq != seq ||
      memcmp(acked[c->i].id, ev.id, PSL_UUID_BYTES) != 0) {
    c->bad = 1;
    return 1;
  }
  c->i++;
  return 0;
}

/* The log after a run: verifies, and holds exactly the events answered stored, in order. */
static void log_check(const char *dir, long n, int pers, const char *step) {
  psl_log_t *log = NULL;
  int rc = psl_log_open(&log, dir, NULL);
  if (rc)
    wrong("after allocation %ld failed (%s, at %s) the log does not reopen: %s", n,
          pers ? "persistent" : "transient", step, psl_err_name(rc));
  psl_verify_report_t rep;
  rc = psl_log_verify_report(log, &rep, NULL, NULL);
  if (rc)
    wrong("after allocation %ld failed (%s, at %s) the log does not verify: %s at seq %llu", n,
          pers ? "persistent" : "transient", step, rep.why ? rep.why : psl_err_name(rc),
          (unsigned long long)rep.bad_seq);
  uint64_t head = psl_log_head(log, NULL);
  if (head != nacked)
    wrong("after allocation %ld failed (%s, at %s): head %llu, events answered stored %zu", n,
          pers ? "persistent" : "transient", step, (unsigned long long)head, nacked);
  for (uint64_t after = 0; after < head;) {
    check_t c = {(size_t)after, 0};
    uint64_t last = after;
    rc = psl_log_read(log, after, NULL, 0, 100000, check_cb, &c, &last);
    if (rc || c.bad)
      wrong("after allocation %ld failed (%s, at %s): the log does not hold the events "
            "answered stored (read %s at seq %llu)",
            n, pers ? "persistent" : "transient", step, psl_err_name(rc),
            (unsigned long long)after + 1);
    if (last <= after)
      break;
    after = last;
  }
  psl_log_close(log);
}

static int run_log(const char *dir) {
  const char *step = NULL;
  long runs = 0, failures = 0;
  if (log_once(dir, &step) != 0) /* warm-up, and creates the log */
    wrong("the unarmed warm-up failed at %s", step);
  long base = atomic_load(&live);
  arm(COUNT_ONLY, 0);
  int rc = log_once(dir, &step);
  long total = disarm();
  if (rc)
    wrong("the unarmed run failed at %s: %s", step, psl_err_name(rc));
  if (leaked_since(base))
    wrong("the unarmed run leaked %ld allocation(s)", leaked_since(base));
  log_check(dir, 0, 0, "-");

  for (long n = 1; n <= total; n++)
    for (int pers = 0; pers < 2; pers++) {
      step = "-";
      arm(n, pers);
      rc = log_once(dir, &step);
      disarm();
      runs++;
      failures += atomic_load(&injected);
      if (rc && rc != PSL_ENOMEM && rc != PSL_EUNAVAILABLE)
        wrong("allocation %ld of %ld failed (%s): %s answered %s", n, total,
              pers ? "persistent" : "transient", step, psl_err_name(rc));
      if (leaked_since(base))
        wrong("allocation %ld of %ld failed (%s, at %s): %ld allocation(s) leaked", n, total,
              pers ? "persistent" : "transient", step, leaked_since(base));
      log_check(dir, n, pers, step);
    }
  free(acked);
  printf("oom log: %ld allocations, %ld runs, %ld injected failures, 0 wrong (%zu events "
         "stored)\n",
         total, runs, failures, nacked);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 3 && strcmp(argv[1], "codec") == 0)
    return run_codec(argc - 2, argv + 2);
  if (argc == 3 && strcmp(argv[1], "log") == 0)
    return run_log(argv[2]);
  fprintf(stderr, "usage: psl-oom codec FRAME... | psl-oom log DIR\n");
  return 2;
}
