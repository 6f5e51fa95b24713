/*
 * passerelle.h — the field client library: record offline, sync later, never lose or
 * duplicate an event.  The one public header of libpasserelle (static and shared); it is the
 * single authority on the API.  It needs psl_error.h (the error table, shipped beside it).
 *
 * What a client is
 * ----------------
 * A psl_client_t owns a folder (`home`) holding an LMDB store (home/store/, mode 0600):
 *   - the outbox: events appended and not yet answered by the server (they survive the app
 *     being killed at any point: append returns only after a durable commit);
 *   - the replica: every stored event the token may read, as the server sent it, by seq;
 *   - the checkpoint: the server log's id and the last seq applied;
 *   - the participant projections (domain/, the same code the server runs), updated in the
 *     same transaction as the replica;
 *   - the refused events (conflict, forbidden, invalid) with the server's reason: nothing
 *     the caseworker recorded is ever silently dropped;
 *   - the server URL and the token.
 * There is no global state: several clients (with different homes) may live in one process.
 * One home may be opened by one psl_client_t at a time (LMDB would allow more; the sync
 * state would not).
 *
 * How it runs (threads)
 * ---------------------
 * psl_client_start() starts ONE thread per client, with its own libuv loop and its own
 * libwebsockets context; only that thread touches the network.  The app's thread never
 * blocks on the network:
 *   - psl_client_append, psl_client_status and the read functions (replica, outbox, refused,
 *     participants) are thread-safe, may be called from any thread at any time (sync
 *     running or not), and do only local LMDB work (append: one durable commit, ~1-2 ms on a
 *     phone's flash; it may wait for the sync thread's current chunk commit, as long);
 *   - every callback (psl_client_callbacks_t) runs on the library's thread.  A callback must
 *     return quickly, may call psl_client_append / _status / the read functions, and must
 *     NOT call psl_client_stop, psl_client_close or psl_client_sync (they join that thread);
 *   - psl_client_open, _close, _login, _start, _stop and _sync are for one controlling
 *     thread (the app's), not concurrently with each other on the same client.
 *   - psl_client_sync() is a blocking convenience for command-line tools.
 *
 * Sync, as the library runs it (PROTOCOL-v1)
 * ------------------------------------------
 *   connect (ws:// or wss://) → hello → welcome → push the outbox in batches (an event
 *   leaves the outbox only in the transaction that records its answer: stored or dup
 *   deletes it; conflict, forbidden, invalid move it to the refused list) → sub from the
 *   checkpoint → apply each `events` chunk in one bounded write transaction (replica,
 *   projections and checkpoint together), then ack → caught_up → live (events as they
 *   commit; new appends are pushed as they come).
 * On a dropped connection or a failed connect it retries with full-jitter exponential
 * backoff: sleep = random(0, min(180 s, 500 ms · 2^attempt)); the attempt count resets on a
 * welcome.  On `reset` (the server's log is not the one the checkpoint came from) it drops
 * the replica and the projections, keeps the outbox and the refused list, and syncs from 0.
 * permessage-deflate is offered unless opts.no_deflate (large catch-ups compress several
 * times).  Idle live connections are pinged after 20 s and dropped after 50 s of silence.
 * Host names are resolved on the library's thread (blocking it, never the app's).
 *
 * Memory: the library holds at most one chunk (PSL_CHUNK_BYTES plus one event) and one push
 * batch at a time, whatever the size of the catch-up; it hands the LMDB map's resident pages
 * back to the kernel as it goes.  Measured (bench/bench-client.c): peak RSS ~15 MiB for a
 * catch-up of 1,000,000 events.
 *
 * Device limits: the replica is capped (psl_client_opts_t.replica_max_bytes).  When the
 * next chunk would pass the cap, the client stops catching up (state PSL_CLIENT_FAILED with
 * PSL_ETOO_BIG); appends and pushes go on, the outbox has room of its own.
 *
 * Return codes: 0 or a negative PSL_E* of psl_error.h; psl_strerror() words them.
 * Personal data: the library never writes names, notes, phones or any pii to stderr or logs.
 */
#ifndef PASSERELLE_H
#define PASSERELLE_H

#include <stddef.h>
#include <stdint.h>

#include "psl_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct psl_client_s psl_client_t;

/* Sizes of the fixed text fields below (bytes, NUL excluded).  They match PROTOCOL-v1's
 * limits: a stream is "participant/" + 36, a type at most 64, a territory at most 8. */
#define PSL_CLIENT_ID_BYTES 16
#define PSL_CLIENT_MAX_STREAM 128
#define PSL_CLIENT_MAX_TYPE 64
#define PSL_CLIENT_MAX_TERR 8
#define PSL_CLIENT_MAX_NAME 128
#define PSL_CLIENT_SERVER_ID 36

/* Default cap of the replica (sum of its records' bytes): 1 GiB holds ~2.5 million
 * 400-byte events, years of a whole organisation's activity, and still fits a phone. */
#define PSL_CLIENT_REPLICA_MAX_DEFAULT (1024ull * 1024 * 1024)

/* ---- Events as the app sees them. */

/* An event to record.  Every pointer is the caller's and only read during the call. */
typedef struct {
  const char *stream;      /* "participant/<uuid>" or "session/<uuid>" (NUL-terminated) */
  const char *type;        /* DOMAIN.md type, e.g. "interview.held" */
  const char *terr;        /* "75", "77", "93", "94" */
  int64_t at;              /* ms since the epoch when it happened; 0: now */
  const uint8_t *data;     /* one MessagePack map (DOMAIN.md's data keys) */
  size_t data_len;
  const uint8_t *pii;      /* one MessagePack map of identifying keys, or NULL */
  size_t pii_len;
  int64_t expect;          /* -1 any version (use this by default), 0 stream must not exist,
                            * n > 0 the stream's version must be n */
} psl_client_new_event_t;

/* An event read back (outbox, replica, refused, callbacks).  Every pointer points into the
 * library's memory (LMDB pages or a received frame) and is valid only during the call that
 * handed it out; copy what you keep. */
typedef struct {
  uint8_t id[PSL_CLIENT_ID_BYTES];
  char stream[PSL_CLIENT_MAX_STREAM + 1];
  char type[PSL_CLIENT_MAX_TYPE + 1];
  char terr[PSL_CLIENT_MAX_TERR + 1];
  int64_t at;
  const uint8_t *data; /* MessagePack map */
  size_t data_len;
  const uint8_t *pii;  /* MessagePack map (or {erased: true}); NULL, 0 if absent */
  size_t pii_len;
  int64_t expect;      /* unsent events */
  /* Stored events only (0 / "" otherwise). */
  uint64_t seq, ver;
  int64_t rec;
  char by[PSL_CLIENT_MAX_NAME + 1];
  char dev[PSL_CLIENT_MAX_NAME + 1];
} psl_client_event_t;

/* An event the server refused.  `event` is valid during the call only. */
typedef struct {
  const psl_client_event_t *event;
  int err;             /* PSL_ECONFLICT, PSL_EFORBIDDEN or PSL_EINVALID */
  uint64_t server_ver; /* PSL_ECONFLICT: the stream's current version on the server */
  const char *msg;     /* the server's reason (no personal data); "" if none */
  int64_t refused_at;  /* ms since the epoch, device clock */
} psl_client_refusal_t;

/* ---- States of the sync thread (on_state, psl_client_status). */
typedef enum {
  PSL_CLIENT_IDLE = 0,    /* not started, or stopped */
  PSL_CLIENT_CONNECTING,  /* TCP/TLS/WebSocket handshake, hello sent */
  PSL_CLIENT_PUSHING,     /* welcomed; sending the outbox */
  PSL_CLIENT_CATCHING_UP, /* subscribed; applying chunks */
  PSL_CLIENT_LIVE,        /* caught up; following new events (follow mode) */
  PSL_CLIENT_WAITING,     /* disconnected; the backoff timer runs */
  PSL_CLIENT_DONE,        /* one pass: everything pushed, caught up to the head */
  PSL_CLIENT_FAILED       /* stopped retrying: bad token (PSL_EUNAUTHORIZED), replica full
                           * (PSL_ETOO_BIG: pushes go on), the store failed, or a one-pass
                           * sync ended in error; see psl_client_status.err */
} psl_client_state_t;

const char *psl_client_state_name(psl_client_state_t s); /* "live", ...; static storage */

/* Callbacks, all optional (NULL), all called on the library's thread (see the top). */
typedef struct {
  /* A chunk of new stored events was committed to the replica: called once per event, in
   * seq order, after the commit (so what the app reads back already holds it). */
  void (*on_event)(void *arg, const psl_client_event_t *ev);
  /* The server refused one of our events; it is now in the refused list. */
  void (*on_refused)(void *arg, const psl_client_refusal_t *r);
  /* The sync state changed; err is the reason for WAITING / FAILED (PSL_E*), else 0. */
  void (*on_state)(void *arg, psl_client_state_t state, int err);
  void *arg;
} psl_client_callbacks_t;

typedef struct {
  const char *home;   /* required: the client's folder (created 0700 if missing) */
  const char *device; /* optional: device name sent in hello (the server stamps `dev` from
                       * the token anyway); NULL: "passerelle-client" */
  const char *agent;  /* optional: app name/version sent in hello */
  uint64_t replica_max_bytes; /* 0: PSL_CLIENT_REPLICA_MAX_DEFAULT */
  int tls_insecure;   /* 1: accept a self-signed / mismatched certificate (tests only) */
  int no_deflate;     /* 1: do not offer permessage-deflate */
  psl_client_callbacks_t cb;
} psl_client_opts_t;

/* ---- Life cycle. */

/* Open (creating) the client store in opts->home.  Nothing starts: no thread, no network.
 * The strings of opts are copied.  Returns 0 and *out, or PSL_EINVALID (no home), PSL_EIO
 * (folder or store cannot be made), PSL_ECORRUPT, PSL_ENOMEM; *out is NULL on failure. */
int psl_client_open(psl_client_t **out, const psl_client_opts_t *opts);

/* Stop the sync thread if it runs (as psl_client_stop), close the store, free c.  Accepts
 * NULL.  Not from a callback. */
void psl_client_close(psl_client_t *c);

/* Save the server URL ("ws://host:port[/sync]" or "wss://...") and the token in the store.
 * Durable.  Changing the URL keeps everything: the server id check decides whether the
 * replica is still valid (reset otherwise).  PSL_EINVALID for a URL that is not ws:// or
 * wss:// with a host, or an empty or overlong token. */
int psl_client_login(psl_client_t *c, const char *url, const char *token);

/* ---- Recording: never touches the network. */

/* Append one event to the outbox.  Checks it against DOMAIN.md (PSL_EINVALID, with a
 * reason naming the key in why[whylen] when why is not NULL; never values), stamps a new
 * UUIDv7 id (written to id_out when not NULL) and the time (ev->at == 0), commits durably,
 * and wakes the sync thread if it runs.  Returns 0, PSL_EINVALID, PSL_ETOO_BIG (over
 * PSL_MAX_EVENT), PSL_EUNAVAILABLE (store full), PSL_EIO.  Thread-safe. */
int psl_client_append(psl_client_t *c, const psl_client_new_event_t *ev,
                      uint8_t id_out[PSL_CLIENT_ID_BYTES], char *why, size_t whylen);

/* ---- Syncing. */

/* Start the sync thread.  follow = 1: connect, push, catch up, stay live and reconnect
 * forever with backoff.  follow = 0: one pass (as psl_client_sync) without waiting.
 * Returns 0, PSL_EINVALID (not logged in), PSL_EAGAIN (already running), PSL_ENOMEM,
 * PSL_EINTERNAL (thread or loop could not start). */
int psl_client_start(psl_client_t *c, int follow);

/* Stop the sync thread: close the connection, join the thread.  Unanswered pushes stay in
 * the outbox (they are retried next time and answered `dup` if they were stored).  Blocks
 * at most a few hundred ms.  Returns 0 (also when not running).  Not from a callback. */
int psl_client_stop(psl_client_t *c);

/* Blocking, for command-line tools: one pass — connect, push the whole outbox, catch up to
 * the server's head — then stop.  timeout_ms <= 0: no limit.  Returns 0 when done;
 * PSL_EUNAVAILABLE when the server cannot be reached (refused, name or TLS failure, an
 * untrusted certificate without tls_insecure) or drops the connection (the pass does not
 * retry: the caller decides); another PSL_E* when the server answered an error that ends the
 * pass (PSL_EUNAUTHORIZED: bad or revoked token; PSL_ERATE_LIMITED, PSL_EUNAVAILABLE: its
 * log is full); PSL_ETOO_BIG (replica cap); PSL_EAGAIN on timeout; PSL_EINVALID when not
 * logged in; PSL_EAGAIN too if the sync thread already runs.  A `reset` is handled inside
 * the pass (replica dropped, outbox kept, sync from 0).  Whatever the result, nothing
 * appended is lost: unanswered events stay in the outbox. */
int psl_client_sync(psl_client_t *c, int timeout_ms);

/* ---- Reading local state: thread-safe, local only. */

typedef struct {
  psl_client_state_t state;
  int err;                  /* last error of the sync thread (PSL_E*), 0 if none */
  uint64_t outbox;          /* events not yet answered by the server */
  uint64_t refused;         /* events the server refused (kept) */
  uint64_t replica_events;  /* events in the replica */
  uint64_t replica_bytes;
  uint64_t checkpoint;      /* last seq applied */
  uint64_t server_head;     /* the server's head as last seen (welcome, caught_up, chunks) */
  int64_t last_sync_ms;     /* when the client last caught up (ms since epoch), 0 never */
  char server_id[PSL_CLIENT_SERVER_ID + 1]; /* the log's id the checkpoint belongs to */
  char url[512];            /* saved by psl_client_login ("" if none); never the token */
  char role[16];            /* from the last welcome ("" before any) */
} psl_client_status_t;

/* Fill *st.  Returns 0 or PSL_E* (store errors). */
int psl_client_status(psl_client_t *c, psl_client_status_t *st);

/* Walk the replica in seq order from seq > after; fn returns nonzero to stop (that value is
 * returned).  ev is valid during the call only.  One read transaction: keep fn short. */
int psl_client_replica_read(psl_client_t *c, uint64_t after,
                            int (*fn)(void *arg, const psl_client_event_t *ev), void *arg);

/* Walk the unsent events in append order (same rules). */
int psl_client_outbox_read(psl_client_t *c,
                           int (*fn)(void *arg, const psl_client_event_t *ev), void *arg);

/* Walk the refused events in append order (same rules). */
int psl_client_refused_read(psl_client_t *c,
                            int (*fn)(void *arg, const psl_client_refusal_t *r), void *arg);

/* The participant's state as JSON (the same object as the server's
 * GET /api/v1/participants/<uuid>), folded by domain/ from the replica, with the outbox's
 * unsent events of that participant applied on top (`"pending": n` says how many).
 * *json is malloc'd, NUL-terminated, owned by the caller (free()).  PSL_ENOTFOUND when
 * neither the replica nor the outbox knows the participant.  Contains personal data only
 * if the participant's pii does (the caller shows it, never logs it). */
int psl_client_participant_json(psl_client_t *c, const uint8_t id[PSL_CLIENT_ID_BYTES],
                                char **json);

/* The caseload: every participant the client knows (replica and outbox), not exited,
 * merged or erased.  fn gets the participant's id and its state as JSON (valid during the
 * call); returning nonzero stops the walk (that value is returned). */
int psl_client_caseload(psl_client_t *c,
                        int (*fn)(void *arg, const uint8_t id[PSL_CLIENT_ID_BYTES],
                                  const char *json),
                        void *arg);

#ifdef __cplusplus
}
#endif

#endif /* PASSERELLE_H */
