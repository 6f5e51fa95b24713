/*
 * test-flood.c — flood limits (area `flood`), server/flood.h and conn.c:
 *
 *   token_connection_limit      a token holds at most PSL_TOKEN_MAX_CONNS (32) connections:
 *                               the next hello is answered rate_limited and closed; others'
 *                               tokens are not affected; a freed slot can be used again
 *   token_rate_across_connections  the message rate is the token's, whatever the number of
 *                               its connections; another token keeps its own
 *   slow_handshake_closed       an HTTP upgrade that never finishes is cut (lws timeout,
 *                               PSL_HANDSHAKE_TIMEOUT_S); over TLS, a TLS handshake too
 *   half_sent_frame_closed      a message started and not continued for PSL_FRAME_STALL_S
 *                               closes its connection; everyone else carries on
 *
 * Real server, real sockets.  The timeout tests wait for the server's own clock (10 s).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "psl_access.h"
#include "psl_proto.h"
#include "support/evgen.h"
#include "support/require.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

#define F_MS 10000 /* receive timeout: only reached when something is wrong */
/* The server's limits under test (server/flood.h, server/server_int.h, server/conn.h). */
#define F_TOKEN_MAX_CONNS 32
#define F_HANDSHAKE_S 10
#define F_STALL_S 10
/* Slack over a server timeout: lws checks its timeouts once a second, and a loaded CI machine
 * (or an ASan build) adds to that. */
#define F_SLACK_S 6

static srv_t *f_srv;

#define FREQ(cond, ...) SRV_REQUIRE(f_srv, cond, __VA_ARGS__)

static void ffx_start(srv_t *s, char tok[PSL_TOKEN_LEN + 1], const char *a0, const char *a1) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  FREQ(srv_init(s, psl_test_bindir(), dir) == 0, "srv_init: %s", s->err);
  FREQ(srv_token(s, PSL_ROLE_COORDINATOR, NULL, "flood-a", "dev-a", tok) == 0, "token");
  s->extra_args[0] = a0;
  s->extra_args[1] = a0 ? a1 : NULL;
  f_srv = s;
  FREQ(srv_start(s, 0) == 0, "start: %s", s->err);
}

static wsc_t *f_open(srv_t *s, const char *tok) {
  char err[1024];
  wsc_t *c = NULL;
  FREQ(tcli_open(&c, s->port, tok, "dev", NULL, err, sizeof err) == 0, "open: %s", err);
  return c;
}

static double f_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ==== Connections per token. */

TEST_T(flood, token_connection_limit, 60) {
  srv_t s;
  char a[PSL_TOKEN_LEN + 1], b[PSL_TOKEN_LEN + 1], err[512];
  wsc_t *conns[F_TOKEN_MAX_CONNS];
  ffx_start(&s, a, NULL, NULL);
  FREQ(srv_token(&s, PSL_ROLE_COORDINATOR, NULL, "flood-b", "dev-b", b) == 0, "token b");
  for (int i = 0; i < F_TOKEN_MAX_CONNS; i++)
    conns[i] = f_open(&s, a);
  /* the 33rd: refused at hello, rate_limited, closed */
  wsc_t *c = NULL;
  FREQ(wsc_connect(&c, s.port, NULL, err, sizeof err) == 0, "upgrade: %s", err);
  psl_msg_t m;
  memset(&m, 0, sizeof m);
  m.t = PSL_MSG_HELLO;
  m.u.hello.v = 1;
  m.u.hello.token = psl_str(a);
  m.u.hello.device = psl_str("dev");
  FREQ(wsc_send_msg(c, &m) == 0, "send hello");
  FREQ(tcli_expect(c, PSL_MSG_ERROR, F_MS, &m, err, sizeof err) == 0, "33rd hello: %s", err);
  FREQ(psl_str_eq(m.u.error.code, "rate_limited"), "code %.*s", (int)m.u.error.code.len,
       m.u.error.code.ptr);
  psl_msg_free(&m);
  FREQ(wsc_wait_closed(c, F_MS, NULL) == 0, "the 33rd connection is closed");
  wsc_free(c);
  /* another token is not affected */
  wsc_t *other = f_open(&s, b);
  wsc_close(other);
  /* a slot freed is a slot again (the close reaches the server first) */
  wsc_close(conns[0]);
  usleep(200 * 1000);
  conns[0] = f_open(&s, a);
  for (int i = 0; i < F_TOKEN_MAX_CONNS; i++)
    wsc_close(conns[i]);
  FREQ(srv_stop(&s, 0) == 0, "stop");
}

/* ==== Rate per token, across its connections. */

static void f_send_acks(wsc_t *c, int n) {
  psl_msg_t ack;
  memset(&ack, 0, sizeof ack);
  ack.t = PSL_MSG_ACK;
  ack.u.ack.sub = 999; /* no such sub: answered nothing, unless refused */
  for (int i = 0; i < n; i++)
    FREQ(wsc_send_msg(c, &ack) == 0, "send ack %d", i);
}

/* The refusals that came for what was sent (none for 400 ms ends the count). */
static int f_count_limited(wsc_t *c) {
  psl_msg_t m;
  char err[256];
  int limited = 0;
  while (tcli_expect(c, PSL_MSG_ERROR, 400, &m, err, sizeof err) == 0) {
    limited += psl_str_eq(m.u.error.code, "rate_limited");
    psl_msg_free(&m);
  }
  return limited;
}

static int f_acks_then_count_limited(wsc_t *c, int n) {
  f_send_acks(c, n);
  return f_count_limited(c);
}

TEST_T(flood, token_rate_across_connections, 60) {
  srv_t s;
  char a[PSL_TOKEN_LEN + 1], b[PSL_TOKEN_LEN + 1];
  /* 100 messages a second per token: two connections of 80 messages each pass a
   * per-connection budget, not the token's. */
  ffx_start(&s, a, "--token-rate", "100");
  FREQ(srv_token(&s, PSL_ROLE_COORDINATOR, NULL, "flood-b", "dev-b", b) == 0, "token b");
  wsc_t *a1 = f_open(&s, a), *a2 = f_open(&s, a), *b1 = f_open(&s, b);
  f_send_acks(a1, 80);
  f_send_acks(a2, 80);
  int l1 = f_count_limited(a1), l2 = f_count_limited(a2);
  FREQ(l1 + l2 >= 40 && l2 > 0, "token a sent 160 messages at 100/s: %d + %d refused", l1, l2);
  FREQ(f_acks_then_count_limited(b1, 80) == 0, "token b has its own budget");
  /* a second later the token may speak again, on either connection, and nothing closed */
  usleep(1100 * 1000);
  FREQ(f_acks_then_count_limited(a2, 50) == 0, "token a after a second");
  evgen_t e;
  uint8_t pid[PSL_UUID_BYTES];
  tcli_result_t r;
  char err[512];
  evgen_uuid(pid);
  evgen_referred(&e, pid, "93", "Rate Person");
  FREQ(tcli_push(a1, 1, &e.ev, 1, &r, F_MS, err, sizeof err) == 0 && r.err == 0, "push: %s",
       err);
  wsc_close(a1);
  wsc_close(a2);
  wsc_close(b1);
  FREQ(srv_stop(&s, 0) == 0, "stop");
}

/* ==== Time limits. */

static int f_tcp(uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FREQ(fd >= 0, "socket");
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  FREQ(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s", strerror(errno));
  return fd;
}

/* Seconds until the server closes fd (EOF or reset), reading and dropping what it sends;
 * -1 if it has not after max_s. */
static double f_until_closed(int fd, double max_s) {
  double t0 = f_now();
  char buf[4096];
  for (;;) {
    double left = max_s - (f_now() - t0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&p, 1, (int)(left * 1000)) <= 0)
      return -1;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      return f_now() - t0;
  }
}

TEST_T(flood, slow_handshake_closed, 90) {
  srv_t s, t2;
  char a[PSL_TOKEN_LEN + 1], dir[PATH_MAX];
  static const char part[] = "GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";
  ffx_start(&s, a, NULL, NULL);
  /* and a TLS server, where a TCP connection never starts its TLS handshake */
  snprintf(dir, sizeof dir, "%s/tls", psl_test_tmpdir());
  FREQ(srv_init(&t2, psl_test_bindir(), dir) == 0 && srv_use_tls(&t2) == 0, "tls: %s", t2.err);
  FREQ(srv_start(&t2, 0) == 0, "start tls: %s", t2.err);
  int fd = f_tcp(s.port), tfd = f_tcp(t2.port);
  FREQ(send(fd, part, sizeof part - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof part - 1), "send");
  double t = f_until_closed(fd, F_HANDSHAKE_S + F_SLACK_S);
  FREQ(t >= 0, "an upgrade request left half-sent was not cut within %d s",
       F_HANDSHAKE_S + F_SLACK_S);
  t = f_until_closed(tfd, F_SLACK_S); /* its clock ran meanwhile */
  FREQ(t >= 0, "a silent TLS client was not cut within %d s", F_HANDSHAKE_S + F_SLACK_S);
  close(fd);
  close(tfd);
  /* both servers carry on */
  wsc_t *c = f_open(&s, a);
  wsc_close(c);
  FREQ(srv_stop(&s, 0) == 0, "stop");
  FREQ(srv_stop(&t2, 0) == 0, "stop tls");
}

TEST_T(flood, half_sent_frame_closed, 90) {
  srv_t s;
  char a[PSL_TOKEN_LEN + 1];
  uint8_t some[100];
  ffx_start(&s, a, NULL, NULL);
  wsc_t *slow = f_open(&s, a), *fine = f_open(&s, a);
  memset(some, 0x90, sizeof some); /* the start of something: its end never comes */
  FREQ(wsc_send_partial(slow, WSC_OP_BINARY, 1000, some, sizeof some) == 0, "send partial");
  double t0 = f_now();
  FREQ(wsc_wait_closed(slow, (F_STALL_S + F_SLACK_S) * 1000, NULL) == 0,
       "a message half sent for %d s did not close its connection", F_STALL_S + F_SLACK_S);
  double t = f_now() - t0;
  FREQ(t >= F_STALL_S - 2, "closed after %.1f s: before the stall limit", t);
  wsc_free(slow);
  /* the other connection of the same token is untouched and works */
  evgen_t e;
  uint8_t pid[PSL_UUID_BYTES];
  tcli_result_t r;
  char err[512];
  evgen_uuid(pid);
  evgen_referred(&e, pid, "93", "Patient Person");
  FREQ(tcli_push(fine, 1, &e.ev, 1, &r, F_MS, err, sizeof err) == 0 && r.err == 0, "push: %s",
       err);
  wsc_close(fine);
  FREQ(srv_stop(&s, 0) == 0, "stop");
}
