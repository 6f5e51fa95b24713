/*
 * psl_server.h — passerelled, the sync server of PROTOCOL-v1, as a library call.
 *
 * server/main.c parses the command line and calls psl_server_run(), which owns a libuv loop
 * and runs libwebsockets on it until SIGTERM or SIGINT, then stops gracefully:
 *
 *   1. new connections are refused;
 *   2. every push already received is committed and answered;
 *   3. send queues are flushed (at most PSL_STOP_FLUSH_MS);
 *   4. connections are closed with 1001 (going away), the log and token store closed.
 *
 * A second signal during the stop exits at once (status 1): every answered event is already
 * durable, so nothing acknowledged is lost.
 */
#ifndef PSL_SERVER_H
#define PSL_SERVER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *data_dir; /* DIR: DIR/log/ and DIR/access/ are opened (created if needed) */
  const char *host;     /* an address or name to listen on; NULL or "" or "*": every one */
  int port;             /* 0: any free port (printed in the start line) */
  const char *tls_cert; /* both or neither: PEM files; wss:// when given */
  const char *tls_key;
  /* Largest LMDB map of the log in bytes (0: no limit but the disk); past it pushes are
   * answered `unavailable` while reads go on.  Hidden option --map-max, for fault tests. */
  size_t map_size_max;
  /* Per-token flood limits (server/flood.h): connections one token may hold (0: 32, SIZE_MAX:
   * none) and messages per second across them (0: 20,000, events ten times that; < 0: none).
   * --token-max-conns N and --token-rate N; 0 on the command line lifts the limit (a
   * benchmark whose one token stands for many devices). */
  size_t token_max_conns;
  double token_rate;
} psl_server_opts_t;

/* Run until a signal asks to stop.  Prints "passerelled: listening on ws://HOST:PORT/sync (log
 * <id>, head N)" on stderr once ready.  Returns 0 after a graceful stop, or PSL_E* if the
 * server could not start (the reason is logged). */
int psl_server_run(const psl_server_opts_t *opts);

#endif /* PSL_SERVER_H */
