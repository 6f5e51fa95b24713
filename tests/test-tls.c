/*
 * test-tls.c — the server over wss:// and https:// (area `tls`): a representative set of the
 * protocol tests of test-server.c run again over TLS (hello, push, dup, catch-up, live,
 * forged by/dev, malformed frames, HTTP), and what only TLS has (a plain client on the TLS
 * port, a client that does not trust the certificate).
 *
 * The server is the real build/bin/passerelled started with --tls-cert/--tls-key on a
 * self-signed certificate made at test time (tests/support/tls.h, OpenSSL); the clients are
 * tests/support/wsc.h over OpenSSL and verify that certificate (chain and IP 127.0.0.1).
 */
#include "harness.h"

#include <limits.h>
#include <stdarg.h>
#include <unistd.h>

#include "psl_access.h"
#include "psl_proto.h"
#include "support/evgen.h"
#include "support/mpw.h"
#include "support/require.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/tls.h"
#include "support/wsc.h"

#define W_MS 10000 /* receive timeout: only reached when something is wrong */

static srv_t *w_srv;

#define WREQ(cond, ...) SRV_REQUIRE(w_srv, cond, __VA_ARGS__)

typedef struct {
  srv_t srv;
  char coord[PSL_TOKEN_LEN + 1];
  wsc_opts_t wss;
} wfx_t;

static void wfx_start(wfx_t *f) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  WREQ(srv_init(&f->srv, psl_test_bindir(), dir) == 0, "srv_init: %s", f->srv.err);
  WREQ(srv_use_tls(&f->srv) == 0, "certificate: %s", f->srv.err);
  WREQ(srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "coord-tls", "laptop-t", f->coord) == 0,
       "token");
  w_srv = &f->srv;
  WREQ(srv_start(&f->srv, 0) == 0, "srv_start over TLS: %s", f->srv.err);
  memset(&f->wss, 0, sizeof f->wss);
  f->wss.tls = 1;
  f->wss.tls_ca = f->srv.cert;
}

static void wfx_stop(wfx_t *f) { WREQ(srv_stop(&f->srv, 0) == 0, "stop: %s", f->srv.err); }

static wsc_t *w_open(wfx_t *f, const char *token, tcli_welcome_t *w) {
  char err[1024];
  wsc_t *c = NULL;
  WREQ(tcli_open_opts(&c, f->srv.port, &f->wss, token, "laptop-t", w, err, sizeof err) == 0,
       "wss connect+hello: %s", err);
  return c;
}

static psl_msg_t w_expect(wsc_t *c, psl_msg_type_t t) {
  char err[1024];
  psl_msg_t m;
  WREQ(tcli_expect(c, t, W_MS, &m, err, sizeof err) == 0, "%s", err);
  return m;
}

static void w_push(wsc_t *c, uint64_t id, const evgen_t *e, tcli_result_t *r) {
  char err[1024];
  WREQ(tcli_push(c, id, &e->ev, 1, r, W_MS, err, sizeof err) == 0, "push: %s", err);
}

/* ==== hello, push, dup, catch-up, live, all over wss. */

TEST(tls, hello_push_sub_live_over_wss) {
  wfx_t f;
  tcli_welcome_t w;
  evgen_t e[2];
  tcli_result_t r;
  uint8_t pid[PSL_UUID_BYTES];
  wfx_start(&f);
  wsc_t *a = w_open(&f, f.coord, &w);
  WREQ(w.v == 1 && w.head == 0 && strcmp(w.role, "coordinator") == 0, "welcome over wss");

  evgen_uuid(pid);
  evgen_referred(&e[0], pid, "93", "Wss Person");
  w_push(a, 1, &e[0], &r);
  WREQ(r.err == 0 && r.seq == 1 && r.ver == 1 && !r.dup, "push over wss: err %d seq %llu",
       r.err, (unsigned long long)r.seq);
  w_push(a, 2, &e[0], &r);
  WREQ(r.err == 0 && r.dup && r.seq == 1, "the same event again: dup");

  /* catch-up on a second wss connection, then live */
  wsc_t *b = w_open(&f, f.coord, NULL);
  WREQ(tcli_sub(b, 7, 0, 1, 4, NULL, NULL) == 0, "sub");
  psl_msg_t m = w_expect(b, PSL_MSG_EVENTS);
  WREQ(m.u.events.n == 1 && m.u.events.events[0].seq == 1, "catch-up chunk");
  WREQ(m.u.events.events[0].pii.len == e[0].ev.pii.len &&
           memcmp(m.u.events.events[0].pii.ptr, e[0].ev.pii.ptr, e[0].ev.pii.len) == 0,
       "pii comes opened to a coordinator, over wss too");
  psl_msg_free(&m);
  m = w_expect(b, PSL_MSG_CAUGHT_UP);
  WREQ(m.u.caught_up.head == 1, "caught_up head");
  psl_msg_free(&m);
  evgen_interview(&e[1], pid, "93", 1, 0);
  w_push(a, 3, &e[1], &r);
  WREQ(r.err == 0 && r.seq == 2, "second push");
  m = w_expect(b, PSL_MSG_EVENTS);
  WREQ(m.u.events.n == 1 && m.u.events.events[0].seq == 2, "live event over wss");
  psl_msg_free(&m);

  /* and the HTTP side over https, certificate verified */
  int status = 0;
  char *body = NULL;
  WREQ(srv_http(&f.srv, "/healthz", NULL, W_MS, &status, &body, NULL) == 0, "https GET");
  WREQ(status == 200 && strncmp(body, "ok", 2) == 0, "https /healthz: %d", status);
  free(body);
  wsc_close(b);
  wsc_close(a);
  wfx_stop(&f);
}

/* ==== The server stamps by and dev over wss as over ws. */

TEST(tls, forged_by_dev_overwritten_over_wss) {
  wfx_t f;
  evgen_t e;
  uint8_t pid[PSL_UUID_BYTES];
  psl_buf_t b;
  mpw_t mw;
  wfx_start(&f);
  wsc_t *c = w_open(&f, f.coord, NULL);
  evgen_uuid(pid);
  evgen_referred(&e, pid, "75", "Forge Tls");
  psl_buf_init(&b, 0);
  mpw_init(&mw, &b);
  mpw_map(&mw, 3);
  mpw_str(&mw, "t");
  mpw_str(&mw, "push");
  mpw_str(&mw, "id");
  mpw_uint(&mw, 9);
  mpw_str(&mw, "events");
  mpw_array(&mw, 1);
  mpw_map(&mw, 10);
  mpw_str(&mw, "id");
  mpw_bin(&mw, e.ev.id, PSL_UUID_BYTES);
  mpw_str(&mw, "stream");
  mpw_strn(&mw, e.ev.stream.ptr, e.ev.stream.len);
  mpw_str(&mw, "type");
  mpw_strn(&mw, e.ev.type.ptr, e.ev.type.len);
  mpw_str(&mw, "at");
  mpw_int(&mw, e.ev.at);
  mpw_str(&mw, "terr");
  mpw_str(&mw, "75");
  mpw_str(&mw, "data");
  mpw_raw(&mw, e.ev.data.ptr, e.ev.data.len);
  mpw_str(&mw, "pii");
  mpw_raw(&mw, e.ev.pii.ptr, e.ev.pii.len);
  mpw_str(&mw, "expect");
  mpw_int(&mw, 0);
  mpw_str(&mw, "by");
  mpw_str(&mw, "mallory");
  mpw_str(&mw, "dev");
  mpw_str(&mw, "forged-device");
  WREQ(mw.err == 0 && wsc_send_binary(c, psl_buf_data(&b), b.len) == 0, "send forged push");
  psl_buf_free(&b);
  psl_msg_t m = w_expect(c, PSL_MSG_PUSHED);
  WREQ(m.u.pushed.n == 1 && m.u.pushed.results[0].err == 0, "forged push stored");
  psl_msg_free(&m);
  WREQ(tcli_sub(c, 1, 0, 0, 4, NULL, NULL) == 0, "sub");
  m = w_expect(c, PSL_MSG_EVENTS);
  WREQ(m.u.events.n == 1 && psl_str_eq(m.u.events.events[0].by, "coord-tls") &&
           psl_str_eq(m.u.events.events[0].dev, "laptop-t"),
       "by/dev are the token's, not the forged ones");
  psl_msg_free(&m);
  wsc_close(c);
  wfx_stop(&f);
}

/* ==== A malformed frame over wss: error, close; the server goes on. */

TEST(tls, malformed_frame_over_wss) {
  wfx_t f;
  static const uint8_t junk[] = {0xc1, 0xff, 0x00, 0x13};
  wfx_start(&f);
  wsc_t *c = w_open(&f, f.coord, NULL);
  WREQ(wsc_send_binary(c, junk, sizeof junk) == 0, "send");
  psl_msg_t m = w_expect(c, PSL_MSG_ERROR);
  WREQ(psl_str_eq(m.u.error.code, "invalid"), "code %.*s", (int)m.u.error.code.len,
       m.u.error.code.ptr);
  psl_msg_free(&m);
  WREQ(wsc_wait_closed(c, W_MS, NULL) == 0, "the server closes after a malformed frame");
  wsc_free(c);
  /* a text frame too */
  c = w_open(&f, f.coord, NULL);
  WREQ(wsc_send_text(c, "hello", 5) == 0, "send text");
  m = w_expect(c, PSL_MSG_ERROR);
  psl_msg_free(&m);
  WREQ(wsc_wait_closed(c, W_MS, NULL) == 0, "closed after a text frame");
  wsc_free(c);
  /* everyone else carries on */
  c = w_open(&f, f.coord, NULL);
  wsc_close(c);
  wfx_stop(&f);
}

/* ==== Only TLS on the TLS port; an untrusted certificate is refused by a verifying client. */

TEST(tls, plain_and_untrusted_clients_refused) {
  wfx_t f;
  char err[512], other_cert[PATH_MAX], other_key[PATH_MAX];
  wsc_t *c = NULL;
  wfx_start(&f);
  WREQ(wsc_connect(&c, f.srv.port, NULL, err, sizeof err) != 0, "plain ws on the wss port");
  snprintf(other_cert, sizeof other_cert, "%s/other.crt", psl_test_tmpdir());
  snprintf(other_key, sizeof other_key, "%s/other.key", psl_test_tmpdir());
  WREQ(tls_self_signed(other_cert, other_key, err, sizeof err) == 0, "second certificate: %s", err);
  wsc_opts_t o = f.wss;
  o.tls_ca = other_cert;
  WREQ(wsc_connect(&c, f.srv.port, &o, err, sizeof err) != 0,
       "a client trusting another certificate connected");
  WREQ(strstr(err, "verify") || strstr(err, "handshake"), "why: %s", err);
  /* the server is unharmed */
  c = w_open(&f, f.coord, NULL);
  wsc_close(c);
  wfx_stop(&f);
}
