/*
 * tcli.h — PROTOCOL-v1 conversations over a wsc_t, for tests and benchmarks: hello, push,
 * expecting a message type, and one-line descriptions of what the server sent (for failure
 * messages: types, ids, seqs, codes, a hex head of the frame; never `data` or `pii`).
 *
 * Every function returns 0 or PSL_E* and, on failure, writes why into err (errlen bytes).
 */
#ifndef PSL_TESTS_TCLI_H
#define PSL_TESTS_TCLI_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"
#include "support/wsc.h"

/* What a `welcome` said, copied out of the frame. */
typedef struct {
  uint64_t v, head;
  char server[64];
  uint8_t hash[PSL_HASH_BYTES];
  char role[32];
  char terr[PSL_MAX_FILTER][PSL_MAX_TERR + 1];
  size_t nterr;
} tcli_welcome_t;

/* One `pushed` result, copied out of the frame. */
typedef struct {
  int err; /* 0, PSL_ECONFLICT, PSL_EFORBIDDEN, PSL_EINVALID */
  int dup;
  uint64_t seq, ver;
  char msg[96];
} tcli_result_t;

/* "pushed id=3 results=[{seq 1 ver 1} {err conflict ver 2}]" and the like. */
void tcli_describe(const psl_msg_t *m, char *out, size_t outlen);
/* The first bytes of a frame in hex ("85 a1 74 ..."). */
void tcli_hex(const uint8_t *p, size_t n, size_t max, char *out, size_t outlen);

/* Send hello (server: the id to claim, or NULL) and wait for welcome. */
int tcli_hello(wsc_t *c, const char *token, const char *device, const char *server,
               tcli_welcome_t *w, char *err, size_t errlen);
/* Connect to port and hello. */
int tcli_open(wsc_t **out, uint16_t port, const char *token, const char *device,
              tcli_welcome_t *w, char *err, size_t errlen);
/* The same with connection options (wss: opts->tls). */
int tcli_open_opts(wsc_t **out, uint16_t port, const wsc_opts_t *opts, const char *token,
                   const char *device, tcli_welcome_t *w, char *err, size_t errlen);

/* The next message must be of type t (PSL_MSG_NONE: any).  On another type, or a frame that
 * does not decode, PSL_EINVALID and err describes what came.  The caller frees *m. */
int tcli_expect(wsc_t *c, psl_msg_type_t t, int timeout_ms, psl_msg_t *m, char *err,
                size_t errlen);

/* Push n events with request id `id` and wait for the `pushed` of that id: n results. */
int tcli_push(wsc_t *c, uint64_t id, const psl_event_t *evs, size_t n, tcli_result_t *res,
              int timeout_ms, char *err, size_t errlen);
/* Build (without sending) a push message over evs. */
void tcli_push_msg(psl_msg_t *m, uint64_t id, const psl_event_t *evs, size_t n);

/* Send `sub` (terr / streams: NULL-terminated lists of C strings, or NULL). */
int tcli_sub(wsc_t *c, uint64_t id, uint64_t from, int live, uint64_t window,
             const char *const *terr, const char *const *streams);
int tcli_ack(wsc_t *c, uint64_t sub, uint64_t upto);

#endif /* PSL_TESTS_TCLI_H */
