/*
 * test-privacy.c — personal data at rest and its erasure (area `privacy`), BRIEF §5:
 *
 *   pii_sealed_at_rest_and_erased  the must-hold: no file under the data folder (nor the
 *       server's own log) holds a test participant's name, phone or notes, before and after
 *       erasure; after participant.erased no file holds that participant's key (raw or
 *       sealed); pii then reads {erased: true} on every path, new pii is refused, the chain
 *       still verifies
 *   master_key_file_and_env        DIR/master.key made 0600; a looser mode, or a master key
 *       that is not the store's, stops the start; PASSERELLE_MASTER_KEY instead of the file
 *   erasure_finished_after_crash   an erasure cut between the log's commit and the key's
 *       tombstone is finished at the next start; one whose event never reached the log is
 *       undone
 *   access_log_without_personal_data  reads by coordinators, auditors and admins are logged
 *       (token id, role, selection), caseworkers' are not, and no name is ever written
 *   pii_seal_binds_event           a sealed pii opens only with its key, event id and stream
 *   client_purges_erased_pii       the field client (client-lib) rewrites an erased
 *       participant's replica records with {erased: true} when it applies the erasure
 *
 * Real server, real WebSocket clients, real LMDB files: the searches read every byte.
 */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "passerelle.h"
#include "psl_access.h"
#include "psl_keys.h"
#include "psl_log.h"
#include "psl_proto.h"
#include "support/evgen.h"
#include "support/require.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/tree.h"
#include "support/wsc.h"

#define P_MS 10000 /* receive timeout: only reached when something is wrong */

/* A test participant's personal data, distinctive enough that a match is never chance. */
#define P_NAME "Zéphyrine Quatrebarbes-Lunel"
#define P_NAME_PART "Quatrebarbes"
#define P_PHONE "0781946205"
#define P_NOTES "dort au foyer Vermillon-Saint-Ouen depuis mars"
#define P_NOTES_PART "Vermillon"

static srv_t *p_srv;

#define PREQ(cond, ...) SRV_REQUIRE(p_srv, cond, __VA_ARGS__)

typedef struct {
  srv_t srv;
  char cw[PSL_TOKEN_LEN + 1], coord[PSL_TOKEN_LEN + 1], aud[PSL_TOKEN_LEN + 1],
      admin[PSL_TOKEN_LEN + 1];
} pfx_t;

static void pfx_init(pfx_t *f, const char *name) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/%s", psl_test_tmpdir(), name);
  PREQ(srv_init(&f->srv, psl_test_bindir(), dir) == 0, "srv_init: %s", f->srv.err);
  PREQ(srv_token(&f->srv, PSL_ROLE_CASEWORKER, "93", "Camille Durand", "tablet-93", f->cw) == 0 &&
           srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "Dominique Lefort", "laptop-c",
                     f->coord) == 0 &&
           srv_token(&f->srv, PSL_ROLE_AUDITOR, NULL, "Audit FSE", "audit-1", f->aud) == 0 &&
           srv_token(&f->srv, PSL_ROLE_ADMIN, NULL, "Admin Asso", "admin-1", f->admin) == 0,
       "tokens");
  p_srv = &f->srv;
}

static void pfx_start(pfx_t *f) { PREQ(srv_start(&f->srv, 0) == 0, "start: %s", f->srv.err); }
static void pfx_stop(pfx_t *f) { PREQ(srv_stop(&f->srv, 0) == 0, "stop: %s", f->srv.err); }

static wsc_t *p_open(pfx_t *f, const char *token) {
  char err[1024];
  wsc_t *c = NULL;
  PREQ(tcli_open(&c, f->srv.port, token, "dev", NULL, err, sizeof err) == 0, "open: %s", err);
  return c;
}

static psl_msg_t p_expect(wsc_t *c, psl_msg_type_t t) {
  char err[1024];
  psl_msg_t m;
  PREQ(tcli_expect(c, t, P_MS, &m, err, sizeof err) == 0, "%s", err);
  return m;
}

static tcli_result_t p_push(wsc_t *c, uint64_t id, const evgen_t *e) {
  char err[1024];
  tcli_result_t r;
  PREQ(tcli_push(c, id, &e->ev, 1, &r, P_MS, err, sizeof err) == 0, "push: %s", err);
  return r;
}

/* A whole non-live catch-up, as copies of the events' pii (and seq, type). */
typedef struct {
  uint64_t seq;
  char type[PSL_MAX_TYPE + 1];
  uint8_t pii[512];
  size_t pii_len;
  uint8_t canon[2048];
  size_t canon_len; /* canonical form as received (for the chain check) */
  uint8_t hash[PSL_HASH_BYTES];
} got_t;

static size_t p_catch_up(wsc_t *c, uint64_t sub, got_t *out, size_t max) {
  size_t n = 0;
  PREQ(tcli_sub(c, sub, 0, 0, 8, NULL, NULL) == 0, "sub");
  for (;;) {
    psl_msg_t m = p_expect(c, PSL_MSG_NONE);
    if (m.t == PSL_MSG_CAUGHT_UP) {
      psl_msg_free(&m);
      return n;
    }
    PREQ(m.t == PSL_MSG_EVENTS, "expected events, got type %d", (int)m.t);
    for (size_t i = 0; i < m.u.events.n && n < max; i++, n++) {
      const psl_event_t *ev = &m.u.events.events[i];
      psl_buf_t b;
      out[n].seq = ev->seq;
      snprintf(out[n].type, sizeof out[n].type, "%.*s", (int)ev->type.len, ev->type.ptr);
      PREQ(ev->pii.len <= sizeof out[n].pii, "pii too long");
      if (ev->pii.len)
        memcpy(out[n].pii, ev->pii.ptr, ev->pii.len);
      out[n].pii_len = ev->pii.len;
      memcpy(out[n].hash, ev->hash, PSL_HASH_BYTES);
      psl_buf_init(&b, 0);
      PREQ(psl_event_encode_canonical(&b, ev) == 0 && b.len <= sizeof out[n].canon, "canon");
      memcpy(out[n].canon, psl_buf_data(&b), b.len);
      out[n].canon_len = b.len;
      psl_buf_free(&b);
    }
    PREQ(tcli_ack(c, sub, m.u.events.last) == 0, "ack");
    psl_msg_free(&m);
  }
}

/* No file under the data folder, nor the server's log, holds any of the test's pii. */
static void p_no_pii_on_disk(pfx_t *f, const char *when) {
  static const char *const needles[] = {P_NAME, P_NAME_PART, P_PHONE, P_NOTES_PART};
  char where[PATH_MAX];
  size_t files = 0, bytes = tree_bytes(f->srv.dir, &files);
  PREQ(files >= 4 && bytes > 0, "%s: nothing to search in %s", when, f->srv.dir);
  for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++) {
    PREQ(tree_find(f->srv.dir, needles[i], strlen(needles[i]), where, sizeof where) == 0,
         "%s: \"%s\" found in %s", when, needles[i], where);
    PREQ(tree_find(f->srv.log, needles[i], strlen(needles[i]), where, sizeof where) == 0,
         "%s: \"%s\" found in the server's log %s", when, needles[i], where);
  }
}

static int is_bin(const uint8_t *p, size_t n) { return n > 0 && (p[0] == 0xc4 || p[0] == 0xc5); }

/* The stream's sealed key record (73 bytes) straight from DIR/keys, server stopped. */
static size_t p_sealed_record(const char *dir, const char *stream, uint8_t out[128]) {
  char path[PATH_MAX + 16];
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_val k = {strlen(stream), (void *)stream}, v = {0, NULL};
  size_t n = 0;
  snprintf(path, sizeof path, "%s/keys", dir);
  CHECK_OK(mdb_env_create(&env));
  CHECK_OK(mdb_env_set_maxdbs(env, 4));
  CHECK_OK(mdb_env_open(env, path, MDB_RDONLY, 0600));
  CHECK_OK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
  CHECK_OK(mdb_dbi_open(txn, "keys", 0, &dbi));
  if (mdb_get(txn, dbi, &k, &v) == 0 && v.mv_size <= 128) {
    memcpy(out, v.mv_data, v.mv_size);
    n = v.mv_size;
  }
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return n;
}

/* The key store of DIR, opened with DIR's master key (server stopped). */
static psl_keys_t *p_keys(const char *dir) {
  uint8_t master[PSL_KEY_BYTES];
  const char *why = NULL;
  psl_keys_t *k = NULL;
  CHECK_OK(psl_keys_master_load(dir, master, NULL, &why));
  CHECK_OK(psl_keys_open(&k, dir, master, &why));
  return k;
}

TEST_T(privacy, pii_sealed_at_rest_and_erased, 120) {
  pfx_t f;
  evgen_t ref, itw, er, late, late2;
  uint8_t pid[PSL_UUID_BYTES], key[PSL_KEY_BYTES], rec[128];
  got_t *got = calloc(16, sizeof *got);
  char where[PATH_MAX];
  tcli_result_t r;
  PREQ(got, "calloc");
  pfx_init(&f, "data");
  pfx_start(&f);

  /* A caseworker refers a participant and records an interview with notes. */
  wsc_t *cw = p_open(&f, f.cw);
  evgen_uuid(pid);
  evgen_referred(&ref, pid, "93", P_NAME);
  evgen_set_pii(&ref, P_NAME, P_PHONE, NULL);
  evgen_interview(&itw, pid, "93", 1, 0);
  evgen_set_pii(&itw, NULL, NULL, P_NOTES);
  r = p_push(cw, 1, &ref);
  PREQ(r.err == 0 && r.seq == 1, "referral stored (err %d: %s)", r.err, r.msg);
  r = p_push(cw, 2, &itw);
  PREQ(r.err == 0 && r.seq == 2, "interview stored (err %d: %s)", r.err, r.msg);

  /* Readers: the caseworker gets pii opened, byte for byte what was pushed ... */
  size_t n = p_catch_up(cw, 10, got, 16);
  PREQ(n == 2, "caseworker sees %zu events", n);
  PREQ(got[0].pii_len == ref.ev.pii.len && memcmp(got[0].pii, ref.ev.pii.ptr, got[0].pii_len) == 0,
       "the referral's pii opens to what was pushed");
  PREQ(got[1].pii_len == itw.ev.pii.len && memcmp(got[1].pii, itw.ev.pii.ptr, got[1].pii_len) == 0,
       "the interview's notes open to what was pushed");
  /* ... an auditor gets it sealed, and recomputes the chain over what it received. */
  wsc_t *aud = p_open(&f, f.aud);
  n = p_catch_up(aud, 11, got, 16);
  PREQ(n == 2 && is_bin(got[0].pii, got[0].pii_len) && is_bin(got[1].pii, got[1].pii_len),
       "an auditor receives pii sealed (bin)");
  uint8_t chain[PSL_HASH_BYTES] = {0};
  for (size_t i = 0; i < n; i++) {
    psl_chain_hash(chain, got[i].canon, got[i].canon_len, chain);
    PREQ(memcmp(chain, got[i].hash, PSL_HASH_BYTES) == 0, "auditor: chain breaks at %zu", i);
  }
  wsc_close(aud);
  p_no_pii_on_disk(&f, "running, before erasure");

  /* The key as the store holds it (server stopped, so that nothing else has the store open). */
  pfx_stop(&f);
  p_no_pii_on_disk(&f, "stopped, before erasure");
  psl_keys_t *k = p_keys(f.srv.dir);
  psl_key_state_t st;
  CHECK_OK(psl_keys_state(k, ref.ev.stream, &st, key));
  CHECK_EQ(st, PSL_KEY_ACTIVE);
  psl_keys_close(k);
  size_t rl = p_sealed_record(f.srv.dir, ref.stream, rec);
  CHECK_EQ(rl, 1 + 24 + 32 + 16);
  PREQ(tree_find(f.srv.dir, rec + 1, rl - 1, where, sizeof where) == 1,
       "the search must find the sealed key where it is (sanity)");
  PREQ(tree_find(f.srv.dir, key, sizeof key, where, sizeof where) == 0,
       "the raw key is in %s: it must only be stored sealed", where);

  /* Erasure: only an admin; a coordinator watches live. */
  pfx_start(&f);
  cw = p_open(&f, f.cw);
  wsc_t *coord = p_open(&f, f.coord);
  PREQ(tcli_sub(coord, 20, 2, 1, 4, NULL, NULL) == 0, "live sub");
  psl_msg_t m = p_expect(coord, PSL_MSG_CAUGHT_UP);
  psl_msg_free(&m);
  wsc_t *admin = p_open(&f, f.admin);
  evgen_bare(&er, pid, "93", "participant.erased");
  r = p_push(admin, 3, &er);
  PREQ(r.err == 0 && r.seq == 3, "erasure stored (err %d: %s)", r.err, r.msg);
  m = p_expect(coord, PSL_MSG_EVENTS);
  PREQ(m.u.events.n == 1 && psl_str_eq(m.u.events.events[0].type, "participant.erased"),
       "the live subscriber receives the erasure");
  psl_msg_free(&m);
  wsc_close(coord);
  coord = p_open(&f, f.coord);

  /* No copy of the key left, and still no pii. */
  PREQ(tree_find(f.srv.dir, rec + 1, rl - 1, where, sizeof where) == 0,
       "after erasure the sealed key is still in %s", where);
  PREQ(tree_find(f.srv.dir, key, sizeof key, where, sizeof where) == 0,
       "after erasure the key is in %s", where);
  p_no_pii_on_disk(&f, "running, after erasure");

  /* Every reader now gets {erased: true}, and new pii for the participant is refused. */
  n = p_catch_up(cw, 12, got, 16);
  PREQ(n == 3, "caseworker sees %zu events", n);
  for (size_t i = 0; i < 2; i++)
    PREQ(got[i].pii_len == sizeof psl_pii_erased &&
             memcmp(got[i].pii, psl_pii_erased, sizeof psl_pii_erased) == 0,
         "event %zu: pii is not {erased: true}", i + 1);
  PREQ(got[2].pii_len == 0, "the erasure carries no pii");
  n = p_catch_up(coord, 13, got, 16);
  PREQ(n == 3 && got[0].pii_len == sizeof psl_pii_erased, "coordinator: {erased: true}");
  evgen_interview(&late, pid, "93", -1, 0);
  evgen_set_pii(&late, NULL, NULL, "notes after the erasure");
  r = p_push(cw, 4, &late);
  PREQ(r.err == PSL_EFORBIDDEN, "pii for an erased participant: err %d (%s)", r.err, r.msg);
  evgen_interview(&late2, pid, "93", -1, 0);
  r = p_push(cw, 5, &late2);
  PREQ(r.err == 0, "an event without pii is still taken (err %d: %s)", r.err, r.msg);
  evgen_bare(&er, pid, "93", "participant.erased");
  r = p_push(coord, 6, &er);
  PREQ(r.err == PSL_EFORBIDDEN, "a coordinator may not erase: err %d", r.err);
  /* The rebuilt key store works on: a new participant's key, and its pii opens. */
  evgen_t other;
  uint8_t pid2[PSL_UUID_BYTES];
  evgen_uuid(pid2);
  evgen_referred(&other, pid2, "93", "Other Person");
  r = p_push(cw, 7, &other);
  PREQ(r.err == 0, "a referral after the erasure (err %d: %s)", r.err, r.msg);
  n = p_catch_up(cw, 14, got, 16);
  PREQ(n == 5 && got[4].pii_len == other.ev.pii.len &&
           memcmp(got[4].pii, other.ev.pii.ptr, other.ev.pii.len) == 0,
       "a participant referred after the erasure: pii opens");
  wsc_close(admin);
  wsc_close(coord);
  wsc_close(cw);
  pfx_stop(&f);

  /* Stopped: the same searches, the chain intact, the state a tombstone. */
  p_no_pii_on_disk(&f, "stopped, after erasure");
  PREQ(tree_find(f.srv.dir, key, sizeof key, where, sizeof where) == 0, "key in %s", where);
  PREQ(tree_find(f.srv.dir, rec + 1, rl - 1, where, sizeof where) == 0, "sealed key in %s",
       where);
  psl_log_t *log;
  psl_log_opts_t ro = {.read_only = 1};
  uint64_t bad = 0;
  CHECK_OK(psl_log_open(&log, f.srv.dir, &ro));
  CHECK_OK(psl_log_verify(log, &bad, NULL, NULL));
  psl_log_close(log);
  k = p_keys(f.srv.dir);
  CHECK_OK(psl_keys_state(k, ref.ev.stream, &st, NULL));
  CHECK_EQ(st, PSL_KEY_ERASED);
  psl_keys_close(k);
  sodium_memzero(key, sizeof key);
  free(got);
}

/* ==== The master key. */

static int p_exit_status(srv_t *s) {
  return WIFEXITED(s->status) ? WEXITSTATUS(s->status) : -1;
}

TEST_T(privacy, master_key_file_and_env, 120) {
  pfx_t f;
  char path[PATH_MAX + 16], hex[2 * PSL_KEY_BYTES + 1];
  uint8_t other[PSL_KEY_BYTES];
  struct stat st;
  pfx_init(&f, "data");
  pfx_start(&f);
  pfx_stop(&f);
  snprintf(path, sizeof path, "%s/master.key", f.srv.dir);
  PREQ(stat(path, &st) == 0, "master.key made at the first start");
  CHECK_EQ(st.st_mode & 0777, 0600);
  CHECK_EQ(st.st_size, 65);

  /* Readable by the group: refused, the server does not start (exit status 3). */
  CHECK_OK(chmod(path, 0640));
  PREQ(srv_start(&f.srv, 0) != 0, "started with a master.key of mode 0640");
  CHECK_EQ(p_exit_status(&f.srv), 3);
  char *log = srv_read_file(f.srv.log, NULL);
  PREQ(log && strstr(log, "master.key"), "the refusal names master.key");
  free(log);
  CHECK_OK(chmod(path, 0600));
  pfx_start(&f);
  pfx_stop(&f);

  /* Another master key (from the environment): not the store's, refused. */
  randombytes_buf(other, sizeof other);
  sodium_bin2hex(hex, sizeof hex, other, sizeof other);
  CHECK_OK(setenv(PSL_MASTER_KEY_ENV, hex, 1));
  PREQ(srv_start(&f.srv, 0) != 0, "started with a master key that is not the store's");
  CHECK_EQ(p_exit_status(&f.srv), 3);
  CHECK_OK(setenv(PSL_MASTER_KEY_ENV, "not-hex", 1));
  PREQ(srv_start(&f.srv, 0) != 0, "started with a malformed master key");

  /* A new data folder keyed from the environment: no master.key is made, pii round-trips,
   * and without the variable (a new random file key) the store refuses to open. */
  pfx_t g;
  evgen_t e;
  uint8_t pid[PSL_UUID_BYTES];
  CHECK_OK(setenv(PSL_MASTER_KEY_ENV, hex, 1));
  pfx_init(&g, "env");
  pfx_start(&g);
  snprintf(path, sizeof path, "%s/master.key", g.srv.dir);
  PREQ(stat(path, &st) != 0 && errno == ENOENT, "master.key made although the env has one");
  wsc_t *c = p_open(&g, g.coord);
  evgen_uuid(pid);
  evgen_referred(&e, pid, "75", P_NAME);
  tcli_result_t r = p_push(c, 1, &e);
  PREQ(r.err == 0, "push");
  got_t got[2];
  PREQ(p_catch_up(c, 2, got, 2) == 1 && got[0].pii_len == e.ev.pii.len &&
           memcmp(got[0].pii, e.ev.pii.ptr, e.ev.pii.len) == 0,
       "pii opens under the env's master key");
  wsc_close(c);
  pfx_stop(&g);
  CHECK_OK(unsetenv(PSL_MASTER_KEY_ENV));
  PREQ(srv_start(&g.srv, 0) != 0, "opened an env-keyed store with a new file key");
  CHECK_EQ(p_exit_status(&g.srv), 3);
}

/* ==== An erasure cut by a crash. */

/* Read back a stored event and open its pii: ok = 1 when it opens to `expect`. */
typedef struct {
  psl_keys_t *k;
  psl_bytes_t expect;
  int ok;
} reveal_chk_t;

static int p_reveal_check(void *arg, uint64_t seq, const uint8_t *hash, const uint8_t *canon,
                          size_t len) {
  reveal_chk_t *r = arg;
  psl_event_t ev;
  psl_buf_t out;
  psl_pii_view_t view;
  (void)seq;
  (void)hash;
  CHECK_OK(psl_event_decode_stored(canon, len, &ev, NULL));
  if (!psl_str_eq(ev.type, "participant.referred"))
    return 0;
  CHECK(psl_pii_is_sealed(ev.pii));
  psl_buf_init(&out, 0);
  CHECK_OK(psl_keys_reveal(r->k, &ev, &out, &view));
  r->ok = view == PSL_PII_OPENED && out.len == r->expect.len &&
          memcmp(psl_buf_data(&out), r->expect.ptr, out.len) == 0;
  psl_buf_free(&out);
  return 0;
}

static void cut_committed(void *arg) { (void)arg; /* the crash: no tombstone, no rebuild */ }

TEST(privacy, erasure_finished_after_crash) {
  char dir[PATH_MAX], where[PATH_MAX];
  uint8_t master[PSL_KEY_BYTES], key[PSL_KEY_BYTES], pa[PSL_UUID_BYTES], pb[PSL_UUID_BYTES];
  const char *why = NULL;
  psl_keys_t *k;
  psl_log_t *log;
  evgen_t ra, rb, ea;
  psl_push_result_t res;
  psl_key_state_t st;
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  CHECK_OK(mkdir(dir, 0700));
  CHECK_OK(psl_keys_master_load(dir, master, NULL, &why));
  CHECK_OK(psl_keys_open(&k, dir, master, &why));
  psl_log_opts_t o;
  memset(&o, 0, sizeof o);
  o.sealer = psl_keys_sealer(k);
  o.sealer.committed = cut_committed;
  CHECK_OK(psl_log_open(&log, dir, &o));
  evgen_uuid(pa);
  evgen_uuid(pb);
  evgen_referred(&ra, pa, "93", P_NAME);
  evgen_referred(&rb, pb, "93", "Second Person");
  ra.ev.by = rb.ev.by = psl_str("t");
  ra.ev.dev = rb.ev.dev = psl_str("d");
  CHECK_OK(psl_log_append(log, &ra.ev, 1, &res));
  CHECK_EQ(res.err, 0);
  CHECK_OK(psl_log_append(log, &rb.ev, 1, &res));
  CHECK_EQ(res.err, 0);
  evgen_bare(&ea, pa, "93", "participant.erased");
  ea.ev.by = psl_str("t");
  ea.ev.dev = psl_str("d");
  CHECK_OK(psl_log_append(log, &ea.ev, 1, &res)); /* committed; the "crash" skips the rest */
  CHECK_EQ(res.err, 0);
  CHECK_OK(psl_keys_state(k, ra.ev.stream, &st, key));
  CHECK_EQ(st, PSL_KEY_ERASING); /* readers see {erased: true} already; the key is still there */

  /* B: a participant.erased that never reached the log (its batch failed after the keys'
   * commit): marked erasing by the sealer alone. */
  evgen_t eb;
  psl_buf_t out;
  evgen_bare(&eb, pb, "93", "participant.erased");
  psl_buf_init(&out, 0);
  psl_log_sealer_t s = psl_keys_sealer(k);
  why = NULL;
  CHECK_OK(s.seal(s.arg, &eb.ev, &out, &why));
  CHECK_OK(s.prepare(s.arg));
  psl_buf_free(&out);
  CHECK_OK(psl_keys_state(k, rb.ev.stream, &st, NULL));
  CHECK_EQ(st, PSL_KEY_ERASING);
  psl_log_close(log);
  psl_keys_close(k);

  /* The next start. */
  CHECK_OK(psl_keys_open(&k, dir, master, &why));
  memset(&o, 0, sizeof o);
  o.sealer = psl_keys_sealer(k);
  CHECK_OK(psl_log_open(&log, dir, &o));
  CHECK_OK(psl_keys_recover(k, log));
  CHECK_OK(psl_keys_state(k, ra.ev.stream, &st, NULL));
  CHECK_EQ(st, PSL_KEY_ERASED);
  CHECK_OK(psl_keys_state(k, rb.ev.stream, &st, NULL));
  CHECK_EQ(st, PSL_KEY_ACTIVE);
  CHECK(tree_find(dir, key, sizeof key, where, sizeof where) == 0);
  /* B's pii opens again. */
  reveal_chk_t chk = {k, rb.ev.pii, 0};
  psl_filter_t f = {NULL, 0, &rb.ev.stream, 1};
  uint64_t last;
  CHECK_OK(psl_log_read(log, 0, &f, 0, 10, p_reveal_check, &chk, &last));
  CHECK_EQ(chk.ok, 1);
  psl_log_close(log);
  psl_keys_close(k);
  sodium_memzero(master, sizeof master);
}

/* ==== The access log. */

static char *p_access_log(pfx_t *f) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/access.log", f->srv.dir);
  char *text = srv_read_file(path, NULL);
  PREQ(text, "no %s", path);
  return text;
}

static size_t p_count(const char *text, const char *needle) {
  size_t n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

TEST(privacy, access_log_without_personal_data) {
  pfx_t f;
  evgen_t e;
  uint8_t pid[PSL_UUID_BYTES];
  char id_cw[PSL_TOKEN_ID_LEN + 1], id_coord[PSL_TOKEN_ID_LEN + 1], id_aud[PSL_TOKEN_ID_LEN + 1],
      id_admin[PSL_TOKEN_ID_LEN + 1], line[256], u[PSL_UUID_STR + 1];
  got_t got[4];
  pfx_init(&f, "data");
  pfx_start(&f);
  psl_access_token_id(f.cw, PSL_TOKEN_LEN, id_cw);
  psl_access_token_id(f.coord, PSL_TOKEN_LEN, id_coord);
  psl_access_token_id(f.aud, PSL_TOKEN_LEN, id_aud);
  psl_access_token_id(f.admin, PSL_TOKEN_LEN, id_admin);

  wsc_t *cw = p_open(&f, f.cw);
  evgen_uuid(pid);
  evgen_referred(&e, pid, "93", P_NAME);
  evgen_set_pii(&e, P_NAME, P_PHONE, NULL);
  tcli_result_t r = p_push(cw, 1, &e);
  PREQ(r.err == 0, "push");
  PREQ(p_catch_up(cw, 2, got, 4) == 1, "caseworker's sub");
  wsc_close(cw);

  wsc_t *coord = p_open(&f, f.coord);
  const char *t93[] = {"93", NULL};
  PREQ(tcli_sub(coord, 3, 0, 0, 4, t93, NULL) == 0, "coordinator's sub of 93");
  psl_msg_t m = p_expect(coord, PSL_MSG_EVENTS);
  psl_msg_free(&m);
  m = p_expect(coord, PSL_MSG_CAUGHT_UP);
  psl_msg_free(&m);
  wsc_close(coord);
  wsc_t *aud = p_open(&f, f.aud);
  PREQ(p_catch_up(aud, 4, got, 4) == 1, "auditor's sub");
  wsc_close(aud);
  wsc_t *admin = p_open(&f, f.admin);
  const char *streams[] = {e.stream, NULL};
  PREQ(tcli_sub(admin, 5, 0, 0, 4, NULL, streams) == 0, "admin's sub of one stream");
  m = p_expect(admin, PSL_MSG_EVENTS);
  psl_msg_free(&m);
  wsc_close(admin);
  /* an HTTP read by the auditor */
  int status = 0;
  char *body = NULL, path[128];
  psl_uuid_format(pid, u);
  snprintf(path, sizeof path, "/api/v1/participants/%s", u);
  PREQ(srv_http(&f.srv, path, f.aud, P_MS, &status, &body, NULL) == 0, "GET %s", path);
  PREQ(status == 200, "auditor GET participant: %d %s", status, body);
  free(body);
  usleep(100 * 1000);

  char *text = p_access_log(&f);
  PREQ(!strstr(text, id_cw), "a caseworker's read is logged:\n%s", text);
  snprintf(line, sizeof line, "token=%s role=coordinator read=sub terr=93 streams=* from=0",
           id_coord);
  PREQ(strstr(text, line), "no line \"%s\" in:\n%s", line, text);
  snprintf(line, sizeof line, "token=%s role=auditor read=sub terr=* streams=* from=0", id_aud);
  PREQ(strstr(text, line), "no line \"%s\" in:\n%s", line, text);
  snprintf(line, sizeof line, "token=%s role=admin read=sub terr=* streams=%s", id_admin, e.stream);
  PREQ(strstr(text, line), "no line \"%s\" in:\n%s", line, text);
  snprintf(line, sizeof line, "token=%s role=auditor read=participant id=%s", id_aud, u);
  PREQ(strstr(text, line), "no line \"%s\" in:\n%s", line, text);
  CHECK_EQ(p_count(text, "\n"), 4);
  static const char *const personal[] = {P_NAME_PART, P_PHONE, "Durand", "Lefort", "Audit FSE",
                                         "Admin Asso"};
  for (size_t i = 0; i < sizeof personal / sizeof personal[0]; i++)
    PREQ(!strstr(text, personal[i]), "\"%s\" in the access log", personal[i]);
  free(text);
  pfx_stop(&f);
}

/* ==== A sealed pii opens only as itself. */

TEST(privacy, pii_seal_binds_event) {
  uint8_t key[PSL_KEY_BYTES], other[PSL_KEY_BYTES], id[PSL_UUID_BYTES], id2[PSL_UUID_BYTES];
  static const uint8_t map[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa3, 'A', 'n', 'a'};
  psl_bytes_t plain = {map, sizeof map};
  psl_str_t stream = psl_str("participant/0190f5a2-6b00-7c3e-8a1b-2c3d4e5f6a7b");
  psl_str_t stream2 = psl_str("participant/0190f5a2-6b00-7c3e-8a1b-2c3d4e5f6a7c");
  psl_buf_t sealed, out;
  CHECK(sodium_init() >= 0);
  randombytes_buf(key, sizeof key);
  randombytes_buf(other, sizeof other);
  evgen_uuid(id);
  evgen_uuid(id2);
  psl_buf_init(&sealed, 0);
  psl_buf_init(&out, 0);
  CHECK_OK(psl_pii_seal(&sealed, key, id, stream, plain));
  psl_bytes_t s = {psl_buf_data(&sealed), sealed.len};
  CHECK(psl_pii_is_sealed(s));
  CHECK_EQ(sealed.len, 2 + PSL_PII_OVERHEAD + sizeof map);
  CHECK(memmem(s.ptr, s.len, "Ana", 3) == NULL);
  CHECK_OK(psl_pii_open(&out, key, id, stream, s));
  CHECK_EQ(out.len, sizeof map);
  CHECK_MEM(psl_buf_data(&out), map, sizeof map);
  psl_buf_reset(&out);
  CHECK_EQ(psl_pii_open(&out, other, id, stream, s), PSL_ECORRUPT);   /* another key */
  CHECK_EQ(psl_pii_open(&out, key, id2, stream, s), PSL_ECORRUPT);    /* another event */
  CHECK_EQ(psl_pii_open(&out, key, id, stream2, s), PSL_ECORRUPT);    /* another stream */
  CHECK_EQ(out.len, 0);
  uint8_t *p = psl_buf_data(&sealed);
  p[sealed.len - 1] ^= 1; /* one bit of the tag */
  CHECK_EQ(psl_pii_open(&out, key, id, stream, s), PSL_ECORRUPT);
  psl_bytes_t m = {map, sizeof map};
  CHECK_EQ(psl_pii_open(&out, key, id, stream, m), PSL_EINVALID); /* not sealed */
  /* two seals of the same map differ (random nonce) */
  psl_buf_t again;
  psl_buf_init(&again, 0);
  CHECK_OK(psl_pii_seal(&again, key, id, stream, plain));
  CHECK(again.len == sealed.len && memcmp(psl_buf_data(&again), psl_buf_data(&sealed), sealed.len));
  psl_buf_free(&again);
  psl_buf_free(&sealed);
  psl_buf_free(&out);
}

/* ==== The field client purges an erased participant's pii from its replica. */

typedef struct {
  int events, with_name, erased;
} replica_scan_t;

static int p_replica_rec(void *arg, const psl_client_event_t *ev) {
  replica_scan_t *s = arg;
  s->events++;
  if (ev->pii && memmem(ev->pii, ev->pii_len, P_NAME_PART, strlen(P_NAME_PART)))
    s->with_name++;
  if (ev->pii && ev->pii_len == sizeof psl_pii_erased &&
      memcmp(ev->pii, psl_pii_erased, sizeof psl_pii_erased) == 0)
    s->erased++;
  return 0;
}

TEST_T(privacy, client_purges_erased_pii, 120) {
  pfx_t f;
  evgen_t ref, itw, er;
  uint8_t pid[PSL_UUID_BYTES];
  char home[PATH_MAX + 16], url[64];
  pfx_init(&f, "data");
  pfx_start(&f);
  wsc_t *cw = p_open(&f, f.cw);
  evgen_uuid(pid);
  evgen_referred(&ref, pid, "93", P_NAME);
  evgen_set_pii(&ref, P_NAME, P_PHONE, NULL);
  evgen_interview(&itw, pid, "93", 1, 0);
  evgen_set_pii(&itw, NULL, NULL, P_NOTES);
  PREQ(p_push(cw, 1, &ref).err == 0 && p_push(cw, 2, &itw).err == 0, "pushes");
  wsc_close(cw);

  psl_client_opts_t o;
  psl_client_t *c = NULL;
  memset(&o, 0, sizeof o);
  snprintf(home, sizeof home, "%s/phone", psl_test_tmpdir());
  o.home = home;
  o.no_deflate = 1;
  CHECK_OK(psl_client_open(&c, &o));
  snprintf(url, sizeof url, "ws://127.0.0.1:%u", f.srv.port);
  CHECK_OK(psl_client_login(c, url, f.cw));
  CHECK_OK(psl_client_sync(c, P_MS));
  replica_scan_t s = {0, 0, 0};
  CHECK_OK(psl_client_replica_read(c, 0, p_replica_rec, &s));
  PREQ(s.events == 2 && s.with_name == 1 && s.erased == 0, "before: %d events, %d named",
       s.events, s.with_name);

  wsc_t *admin = p_open(&f, f.admin);
  evgen_bare(&er, pid, "93", "participant.erased");
  PREQ(p_push(admin, 1, &er).err == 0, "erasure");
  wsc_close(admin);
  CHECK_OK(psl_client_sync(c, P_MS));
  memset(&s, 0, sizeof s);
  CHECK_OK(psl_client_replica_read(c, 0, p_replica_rec, &s));
  PREQ(s.events == 3 && s.with_name == 0 && s.erased == 2,
       "after the erasure the replica holds %d events, %d named, %d {erased: true}", s.events,
       s.with_name, s.erased);
  psl_client_close(c);

  /* A device that syncs for the first time after the erasure never receives the name. */
  snprintf(home, sizeof home, "%s/phone2", psl_test_tmpdir());
  o.home = home;
  CHECK_OK(psl_client_open(&c, &o));
  CHECK_OK(psl_client_login(c, url, f.cw));
  CHECK_OK(psl_client_sync(c, P_MS));
  memset(&s, 0, sizeof s);
  CHECK_OK(psl_client_replica_read(c, 0, p_replica_rec, &s));
  PREQ(s.events == 3 && s.with_name == 0 && s.erased == 2, "fresh device: %d named",
       s.with_name);
  psl_client_close(c);
  pfx_stop(&f);
}
