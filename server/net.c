/*
 * net.c — libwebsockets on the server's own libuv loop ("foreign loop"): the context, its
 * one vhost, the protocols and the WebSocket callback that hands everything to conn.c.
 *
 * Protocols of the vhost (lws sends every HTTP request to protocols[0]):
 *   [0] "http"           http.c: GET /healthz, GET /metrics, the upgrade gate (only /sync
 *                        with subprotocol passerelle.v1 may upgrade), the connection cap
 *   [1] "passerelle.v1"  this file → conn.c: one psl__conn_t per connection, its pointer in
 *                        lws's per-session data
 * Extensions: permessage-deflate, accepted when a client offers it (PROTOCOL-v1).
 *
 * Liveness: the vhost's retry_and_idle_policy makes lws ping a connection silent for
 * PSL_IDLE_PING_S and hang up one silent for PSL_IDLE_HANGUP_S.
 *
 * Everything here runs on the loop thread: lws is not thread-safe.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "psl_say.h"

static int net_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len) {
  psl__conn_t **pc = user;
  switch (reason) {
  case LWS_CALLBACK_ESTABLISHED: {
    psl__server_t *srv = lws_context_user(lws_get_context(wsi));
    *pc = psl__conn_open(srv, wsi);
    return *pc ? 0 : -1;
  }
  case LWS_CALLBACK_RECEIVE:
    return *pc ? psl__conn_receive(*pc, in, len) : -1;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    return *pc ? psl__conn_writable(*pc) : -1;
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    if (*pc && len >= 2) {
      const uint8_t *b = in;
      psl_say(PSL_SAY_DEBUG, "conn=%llu peer closed code=%u", (unsigned long long)(*pc)->cid,
              (unsigned)(b[0] << 8 | b[1]));
    }
    return 0;
  case LWS_CALLBACK_CLOSED:
    if (pc && *pc) {
      psl__conn_closed(*pc);
      *pc = NULL;
    }
    return 0;
  default:
    return 0;
  }
}

static const struct lws_protocols net_protocols[] = {
    {.name = "http",
     .callback = psl__http_callback,
     .per_session_data_size = 0, /* set at start from psl__http_session_size() */
     .rx_buffer_size = 0},
    {.name = PSL_SUBPROTOCOL,
     .callback = net_ws_callback,
     .per_session_data_size = sizeof(psl__conn_t *),
     .rx_buffer_size = PSL_RX_BUFFER,
     .tx_packet_size = PSL_TX_PACKET},
    {.name = NULL, .callback = NULL}};

static const struct lws_extension net_extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL}};

static const lws_retry_bo_t net_idle_policy = {
    .secs_since_valid_ping = PSL_IDLE_PING_S,
    .secs_since_valid_hangup = PSL_IDLE_HANGUP_S,
};

/* lws's own signal handling is not wanted: server.c owns SIGTERM/SIGINT on the loop. */
static void net_signal_ignored(void *handle, int signum) {
  (void)handle;
  psl_say(PSL_SAY_DEBUG, "lws saw signal %d (handled by the server)", signum);
}

/* Try to bind host:port ourselves first (then close): a port in use is then a clear error
 * before lws is involved, since lws 4.1 on a foreign loop cannot be cleanly torn down after a
 * failed listen (its handles call back into an unloaded event-lib plugin). */
static int net_port_free(const char *host, int port) {
  struct addrinfo hints, *res = NULL;
  char service[16];
  memset(&hints, 0, sizeof hints);
  hints.ai_family = host ? AF_UNSPEC : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(service, sizeof service, "%d", port);
  if (getaddrinfo(host, service, &hints, &res) != 0 || !res)
    return PSL_EINVALID;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rc = fd < 0 ? psl_err_from_errno(errno) : 0;
  if (rc == 0) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as lws does */
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
      psl_say(PSL_SAY_ERROR, "cannot listen on %s:%d: %s", host ? host : "*", port,
              strerror(errno));
      rc = PSL_EIO;
    }
    close(fd);
  }
  freeaddrinfo(res);
  return rc;
}

int psl__net_start(psl__server_t *srv, const psl_server_opts_t *opts) {
  static struct lws_protocols protocols[3];
  memcpy(protocols, net_protocols, sizeof protocols);
  protocols[0].per_session_data_size = psl__http_session_size();

  lws_set_log_level(LLL_ERR | LLL_WARN, psl_say_lws);

  void *loops[1] = {srv->loop};
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = opts->port;
  info.iface = (opts->host && *opts->host) ? opts->host : NULL;
  info.protocols = protocols;
  info.extensions = net_extensions;
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6;
  if (info.iface && strchr(info.iface, ':'))
    info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6; /* an IPv6 address */
  info.foreign_loops = loops;
  info.signal_cb = net_signal_ignored;
  info.user = srv;
  info.pcontext = &srv->lws;
  info.timeout_secs = PSL_HANDSHAKE_TIMEOUT_S;
  info.retry_and_idle_policy = &net_idle_policy;
  info.server_string = "passerelled";
  info.vhost_name = "passerelle";
  if (opts->tls_cert && opts->tls_key) {
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.ssl_cert_filepath = opts->tls_cert;
    info.ssl_private_key_filepath = opts->tls_key;
  }
  if (net_port_free(info.iface, opts->port) != 0)
    return PSL_EIO;
  srv->lws = lws_create_context(&info);
  if (!srv->lws) {
    psl_say(PSL_SAY_ERROR, "could not listen on %s:%d (lws context creation failed)",
            info.iface ? info.iface : "*", opts->port);
    return PSL_EIO;
  }
  /* lws 4.1 may return a context whose vhost failed (port in use): no listener, no server. */
  srv->vhost = lws_get_vhost_by_name(srv->lws, info.vhost_name);
  if (!srv->vhost) {
    psl_say(PSL_SAY_ERROR, "could not listen on %s:%d", info.iface ? info.iface : "*",
            opts->port);
    srv->lws_broken = 1; /* see net_port_free: leave it to the process's exit */
    return PSL_EIO;
  }
  srv->port = lws_get_vhost_listen_port(srv->vhost);
  return 0;
}

void psl__net_stop(psl__server_t *srv) {
  if (srv->lws)
    lws_context_destroy(srv->lws); /* sets srv->lws to NULL once done (info.pcontext) */
}
