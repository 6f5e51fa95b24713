/*
 * server.c — passerelled's lifecycle (psl_server.h): open the log and the token store, own
 * the libuv loop, wake it from the log's writer thread, poll revocations, stop gracefully.
 *
 * Handles on the loop, besides those of lws:
 *   wake          uv_async: the writer completed pushes (push.c's done list) or committed
 *                 (committed_head); drains both, then wakes the waiting live subscriptions
 *   access_timer  every PSL_ACCESS_POLL_MS: psl_access_generation moved → re-check tokens
 *   sigterm/int   first: graceful stop; second: exit at once
 *   stop_timer    during the stop: every PSL_STOP_POLL_MS, are all connections done?
 *   open work     uv_queue_work at start: the log opens (and its projections catch up) on a
 *                 worker thread; until it is done srv->starting holds (see "Opening")
 *
 * Stop sequence (server_finish), in this order because each step needs the next one alive:
 *   lws_context_destroy (closes the remaining connections; pending pushes make zombies)
 *   psl_log_close       (commits and completes every submitted push: done → wake list)
 *   psl__push_drain     (frees those pushes and the zombies)
 *   close our handles;  the loop then runs until lws's handles are closed too, and returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "conn.h"
#include "flood.h"
#include "psl_access_log.h"
#include "psl_domain.h"
#include "psl_keys.h"
#include "psl_say.h"

uint64_t psl__now_ms(psl__server_t *srv) { return uv_now(srv->loop); }

uint64_t psl__now_ns(void) { return uv_hrtime(); }

/* ---- Wake-ups from the writer thread. */

static void server_on_commit(void *arg, uint64_t head) {
  psl__server_t *srv = arg;
  atomic_store(&srv->committed_head, head);
  uv_async_send(&srv->wake);
}

static void server_on_wake(uv_async_t *h) {
  psl__server_t *srv = h->data;
  psl__push_drain(srv);
  uint64_t head = atomic_load(&srv->committed_head);
  if (head > srv->head) {
    srv->head = head;
    srv->metrics.head_seq = head;
    srv->metrics.commits_seen_total++;
    psl__sub_wake_waiters(srv);
    psl__http_wake(srv);
  }
}

/* ---- Revocation. */

static void server_on_access_timer(uv_timer_t *t) {
  psl__server_t *srv = t->data;
  uint64_t gen = psl_access_generation(srv->access);
  if (gen == srv->access_gen)
    return;
  srv->access_gen = gen;
  psl__conn_recheck_tokens(srv);
}

/* ---- Stop. */

static void server_on_handle_closed(uv_handle_t *h) {
  psl__server_t *srv = h->data;
  srv->handles_open--;
}

static void server_close_handle(psl__server_t *srv, uv_handle_t *h) {
  if (h->data == srv && !uv_is_closing(h))
    uv_close(h, server_on_handle_closed);
}

static void server_close_handles(psl__server_t *srv) {
  server_close_handle(srv, (uv_handle_t *)&srv->wake);
  server_close_handle(srv, (uv_handle_t *)&srv->access_timer);
  server_close_handle(srv, (uv_handle_t *)&srv->stop_timer);
  server_close_handle(srv, (uv_handle_t *)&srv->sigterm);
  server_close_handle(srv, (uv_handle_t *)&srv->sigint);
}

static void server_finish(psl__server_t *srv) {
  if (srv->nconns)
    psl_say(PSL_SAY_WARN, "stop: closing %zu connections that did not finish in time",
            srv->nconns);
  psl__net_stop(srv); /* lws calls CLOSED for every connection still open */
  psl__conn_detach_all(srv);
  psl_log_close(srv->log);
  srv->log = NULL;
  if (!srv->starting) { /* else the open in flight owns it (server_open_done) */
    psl_projdb_free(srv->projdb);
    srv->projdb = NULL;
  }
  psl__push_drain(srv);
  if (srv->nzombies)
    psl_say(PSL_SAY_ERROR, "stop: %zu connections still wait for pushes", srv->nzombies);
  server_close_handles(srv);
}

static void server_on_stop_timer(uv_timer_t *t) {
  psl__server_t *srv = t->data;
  if (!psl__conn_all_done(srv) && psl__now_ms(srv) < srv->stop_deadline_ms)
    return;
  uv_timer_stop(t);
  server_finish(srv);
}

static void server_on_signal(uv_signal_t *h, int signum) {
  psl__server_t *srv = h->data;
  if (srv->stopping) {
    psl_say(PSL_SAY_WARN, "signal %d again: exiting now", signum);
    _exit(1); /* every answered push is already durable */
  }
  srv->stopping = 1;
  srv->stop_deadline_ms = psl__now_ms(srv) + PSL_STOP_FLUSH_MS;
  psl_say(PSL_SAY_INFO, "signal %d: stopping (%zu connections)", signum, srv->nconns);
  psl__conn_stop_all(srv);
  uv_timer_start(&srv->stop_timer, server_on_stop_timer, PSL_STOP_POLL_MS, PSL_STOP_POLL_MS);
}

/* ---- Opening the log, off the loop.
 *
 * psl_log_open runs the projection hook's open (domain/store-lmdb.c), which brings the
 * stored projections up to the log's head inside the open's write transaction: a few events
 * after a normal stop, the whole log when the projections are new (a log written before
 * them), of another format, or were dropped to be rebuilt.  That may take minutes on a big
 * log, so it runs on a libuv worker thread while the loop already answers /healthz (503
 * "starting") and refuses upgrades; server_open_done, back on the loop, makes the server
 * ready.  A signal meanwhile stops the server as usual; the log, once open, is closed at
 * once. */

typedef struct {
  uv_work_t work;
  psl__server_t *srv;
  psl_log_opts_t opts;
  const char *dir;
  psl_log_t *log;
  int rc;
  uint64_t t0_ns;
  char line[320]; /* the start line, printed once ready */
} server_open_t;

/* The map the log opens with.  The projections' catch-up writes inside the open's write
 * transaction, where the log does not grow its map (it does between its own batches), and
 * LMDB maps no more than the file's used size unless told: a rebuild of a big log would fail
 * "map full".  So: twice the file and PSL_OPEN_MAP_SLACK (a full rebuild writes about a third
 * of what the log holds, measured on bench-proj's log), within --map-max when given. */
#define PSL_OPEN_MAP_SLACK ((size_t)256 << 20)
/* Attempts with a doubled map when the catch-up still found it full. */
#define PSL_OPEN_MAP_TRIES 4

static size_t server_open_map(const char *dir, size_t max) {
  char path[4096];
  struct stat st;
  size_t map = PSL_OPEN_MAP_SLACK;
  if ((size_t)snprintf(path, sizeof path, "%s/log/data.mdb", dir) < sizeof path &&
      stat(path, &st) == 0 && st.st_size > 0)
    map += 2 * (size_t)st.st_size;
  return max && map > max ? max : map;
}

static void server_open_work(uv_work_t *w) {
  server_open_t *o = w->data;
  o->opts.map_size = server_open_map(o->dir, o->opts.map_size_max);
  for (int tries = 1;; tries++) {
    o->rc = psl_log_open(&o->log, o->dir, &o->opts);
    if (o->rc != PSL_EUNAVAILABLE || tries == PSL_OPEN_MAP_TRIES ||
        (o->opts.map_size_max && o->opts.map_size >= o->opts.map_size_max))
      break;
    o->opts.map_size *= 2;
    psl_say(PSL_SAY_WARN, "the log's map was full while the projections caught up: %zu MiB",
            o->opts.map_size >> 20);
  }
  /* An erasure a crash interrupted is finished before anything reads or writes pii. */
  if (o->rc == 0 && (o->rc = psl_keys_recover(o->srv->keys, o->log)) != 0) {
    psl_say(PSL_SAY_ERROR, "start failed: the key store could not finish an erasure: %s",
            psl_strerror(o->rc));
    psl_log_close(o->log);
    o->log = NULL;
  }
}

static void server_open_done(uv_work_t *w, int status) {
  server_open_t *o = w->data;
  psl__server_t *srv = o->srv;
  double secs = (double)(psl__now_ns() - o->t0_ns) / 1e9;
  srv->starting = 0;
  if (o->rc == 0 && status != 0)
    o->rc = PSL_EINTERNAL; /* never cancelled: a libuv error */
  if (o->rc != 0) {
    psl_say(PSL_SAY_ERROR, "start failed: cannot open the log in %s/log: %s", o->dir,
            psl_strerror(o->rc));
    srv->start_rc = o->rc;
    psl_projdb_free(srv->projdb);
    srv->projdb = NULL;
    free(o);
    if (!srv->stopping) {
      srv->stopping = 1;
      server_finish(srv);
    }
    return;
  }
  if (srv->stopping) { /* a signal came during the open: the stop has run without the log */
    psl_log_close(o->log);
    psl_projdb_free(srv->projdb);
    srv->projdb = NULL;
    free(o);
    return;
  }
  srv->log = o->log;
  srv->log_id = psl_log_id(srv->log);
  srv->head = psl_log_head(srv->log, NULL);
  srv->metrics.head_seq = srv->head;
  atomic_store(&srv->committed_head, srv->head);
  psl_log_on_commit(srv->log, server_on_commit, srv);
  psl_log_stats_t ls;
  psl_log_stats(srv->log, &ls);
  if (ls.replayed) /* the last stop was a crash: what only the journal held is back */
    psl_say(PSL_SAY_WARN, "log: %llu answered events applied again from the journal",
            (unsigned long long)ls.replayed);
  fprintf(stderr, "%s (log %s, head %llu)\n", o->line, srv->log_id,
          (unsigned long long)srv->head);
  psl_say(PSL_SAY_INFO, "started port=%d max_connections=%zu head=%llu open=%.3fs", srv->port,
          srv->max_conns, (unsigned long long)srv->head, secs);
  free(o);
}

/* Queue the log's open (srv->starting is set).  0 or PSL_E*. */
static int server_open_log(psl__server_t *srv, const psl_server_opts_t *opts) {
  server_open_t *o = calloc(1, sizeof *o);
  if (!o)
    return PSL_ENOMEM;
  o->srv = srv;
  o->dir = opts->data_dir;
  o->opts.map_size_max = opts->map_size_max;
  o->opts.hooks = psl_projection_hooks(&srv->projdb);
  o->opts.sealer = psl_keys_sealer(srv->keys);
  o->t0_ns = psl__now_ns();
  o->work.data = o;
  const char *host = opts->host && *opts->host ? opts->host : "*";
  int v6 = strchr(host, ':') != NULL;
  snprintf(o->line, sizeof o->line, "passerelled: listening on %s://%s%s%s:%d/sync",
           opts->tls_cert ? "wss" : "ws", v6 ? "[" : "", host, v6 ? "]" : "", srv->port);
  int rc = uv_queue_work(srv->loop, &o->work, server_open_work, server_open_done);
  if (rc) {
    psl_say(PSL_SAY_ERROR, "start failed: %s", uv_strerror(rc));
    free(o);
    return PSL_EINTERNAL;
  }
  return 0;
}

/* ---- Start. */

/* Raise the descriptor limit toward what PSL_MAX_CONNECTIONS needs (at most the hard limit),
 * and derive the connection cap from what we got. */
static size_t server_fd_budget(void) {
  struct rlimit rl;
  size_t want = PSL_MAX_CONNECTIONS + PSL_FD_RESERVE;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 1024 - PSL_FD_RESERVE;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    rlim_t target = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    struct rlimit nl = {target, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
      rl.rlim_cur = target;
  }
  size_t have = rl.rlim_cur == RLIM_INFINITY ? want : (size_t)rl.rlim_cur;
  size_t cap = have > 2 * PSL_FD_RESERVE ? have - PSL_FD_RESERVE : PSL_FD_RESERVE;
  return cap < PSL_MAX_CONNECTIONS ? cap : PSL_MAX_CONNECTIONS;
}

static int server_init_handles(psl__server_t *srv) {
  int rc = uv_async_init(srv->loop, &srv->wake, server_on_wake);
  if (rc)
    return rc;
  srv->wake.data = srv;
  srv->handles_open++;
  if ((rc = uv_timer_init(srv->loop, &srv->access_timer)))
    return rc;
  srv->access_timer.data = srv;
  srv->handles_open++;
  if ((rc = uv_timer_init(srv->loop, &srv->stop_timer)))
    return rc;
  srv->stop_timer.data = srv;
  srv->handles_open++;
  if ((rc = uv_signal_init(srv->loop, &srv->sigterm)))
    return rc;
  srv->sigterm.data = srv;
  srv->handles_open++;
  if ((rc = uv_signal_init(srv->loop, &srv->sigint)))
    return rc;
  srv->sigint.data = srv;
  srv->handles_open++;
  if ((rc = uv_signal_start(&srv->sigterm, server_on_signal, SIGTERM)) ||
      (rc = uv_signal_start(&srv->sigint, server_on_signal, SIGINT)) ||
      (rc = uv_timer_start(&srv->access_timer, server_on_access_timer, PSL_ACCESS_POLL_MS,
                           PSL_ACCESS_POLL_MS)))
    return rc;
  return 0;
}

/* With a foreign loop, lws finishes destroying its context only when called again once its
 * handles are closed and the loop has run (info.pcontext clears srv->lws when it is done). */
static void server_lws_finish(psl__server_t *srv) {
  for (int i = 0; srv->lws && i < 2; i++) {
    lws_context_destroy(srv->lws);
    uv_run(srv->loop, UV_RUN_DEFAULT);
  }
}

static void server_close_stray(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* One server per data folder: two would each keep their own head and subscribers over one
 * log.  An flock on DIR/passerelled.lock, held for the process's life (tools such as
 * passerelle-admin do not take it, so they keep working while the server runs).  Returns the
 * descriptor, or -1 (logged). */
static int server_lock_dir(const char *dir) {
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/passerelled.lock", dir);
  if (n < 0 || (size_t)n >= sizeof path) {
    psl_say(PSL_SAY_ERROR, "start failed: data folder path too long");
    return -1;
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    psl_say(PSL_SAY_ERROR, "start failed: cannot create %s: %s", dir, strerror(errno));
    return -1;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    psl_say(PSL_SAY_ERROR, "start failed: cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    psl_say(PSL_SAY_ERROR, "start failed: another passerelled uses %s", dir);
    close(fd);
    return -1;
  }
  return fd;
}

/* The master key, the key store and the access log (psl_keys.h, psl_access_log.h).  A
 * master key that is missing its 0600 mode, or not the store's, stops the start here. */
static int server_open_privacy(psl__server_t *srv, const char *dir) {
  uint8_t master[PSL_KEY_BYTES];
  const char *why = NULL;
  int from_env = 0;
  int rc = psl_keys_master_load(dir, master, &from_env, &why);
  if (rc == 0)
    rc = psl_keys_open(&srv->keys, dir, master, &why);
  sodium_memzero(master, sizeof master);
  if (rc) {
    psl_say(PSL_SAY_ERROR, "start failed: %s", why ? why : psl_strerror(rc));
    fprintf(stderr, "passerelled: %s\n", why ? why : psl_strerror(rc));
    return rc;
  }
  psl_say(PSL_SAY_INFO, "master key from %s", from_env ? PSL_MASTER_KEY_ENV : "master.key");
  if ((rc = psl_alog_open(&srv->alog, dir)) != 0)
    psl_say(PSL_SAY_ERROR, "start failed: cannot open %s/access.log: %s", dir,
            psl_strerror(rc));
  return rc;
}

int psl_server_run(const psl_server_opts_t *opts) {
  psl__server_t *srv = calloc(1, sizeof *srv);
  uv_loop_t *loop = calloc(1, sizeof *loop);
  int rc = 0;
  if (!srv || !loop) {
    free(srv);
    free(loop);
    psl_say(PSL_SAY_ERROR, "start failed: out of memory");
    return PSL_ENOMEM;
  }
  if ((rc = uv_loop_init(loop)) != 0) {
    psl_say(PSL_SAY_ERROR, "start failed: uv_loop_init: %s", uv_strerror(rc));
    free(srv);
    free(loop);
    return PSL_EINTERNAL;
  }
  srv->loop = loop;
  psl__list_init(&srv->conns);
  psl__list_init(&srv->waiters);
  psl__list_init(&srv->http_waiters);
  pthread_mutex_init(&srv->done_mu, NULL);
  srv->log_writable = 1;
  srv->metrics.log_writable = 1;
  srv->max_conns = server_fd_budget();

  int lock_fd = server_lock_dir(opts->data_dir);
  if (lock_fd < 0) {
    rc = PSL_EIO;
    goto fail_log;
  }
  if ((rc = server_open_privacy(srv, opts->data_dir)) != 0)
    goto fail_access;
  if ((rc = psl__flood_new(&srv->flood,
                           opts->token_max_conns == SIZE_MAX ? 0
                           : opts->token_max_conns      ? opts->token_max_conns
                                                        : PSL_TOKEN_MAX_CONNS,
                           opts->token_rate < 0   ? 0.0
                           : opts->token_rate > 0 ? opts->token_rate
                                                  : PSL_TOKEN_MSGS_PER_S)) != 0)
    goto fail_access;
  if ((rc = psl_access_open(&srv->access, opts->data_dir)) != 0) {
    psl_say(PSL_SAY_ERROR, "start failed: cannot open the token store in %s/access: %s",
            opts->data_dir, psl_strerror(rc));
    goto fail_access;
  }
  srv->access_gen = psl_access_generation(srv->access);
  if ((rc = server_init_handles(srv)) != 0) {
    psl_say(PSL_SAY_ERROR, "start failed: %s", uv_strerror(rc));
    rc = PSL_EINTERNAL;
    goto fail_handles;
  }
  srv->starting = 1; /* before the first connection: the log is not open yet */
  if ((rc = psl__net_start(srv, opts)) != 0)
    goto fail_handles;
  if ((rc = server_open_log(srv, opts)) != 0)
    goto fail_handles;
  uv_run(loop, UV_RUN_DEFAULT);
  rc = srv->start_rc;
  server_lws_finish(srv);
  psl_say(PSL_SAY_INFO, "stopped%s", srv->lws ? " (lws context not fully destroyed)" : "");
  goto done;

fail_handles:
  if (srv->lws_broken) {
    /* Nothing of the loop may run again (net.c); the log still closes cleanly. */
    psl_log_close(srv->log);
    psl_access_close(srv->access);
    psl_say(PSL_SAY_ERROR, "start failed");
    _exit(3);
  }
  server_close_handles(srv);
  psl__net_stop(srv);
  psl_log_close(srv->log);
  srv->log = NULL;
  psl__push_drain(srv);
  uv_run(loop, UV_RUN_DEFAULT);
  server_lws_finish(srv);
  if (uv_loop_alive(loop)) {
    uv_walk(loop, server_close_stray, NULL); /* last resort: whatever a failed start left */
    uv_run(loop, UV_RUN_DEFAULT);
  }
done:
  psl_access_close(srv->access);
fail_access:
  psl_log_close(srv->log);
  psl_projdb_free(srv->projdb); /* after the log: its writer applied into it until the close */
  psl_keys_close(srv->keys);     /* after the log too: its writer seals with it */
  psl_alog_close(srv->alog);
  psl__flood_free(srv->flood); /* after the connections: each detached from it */
fail_log:
  if (uv_loop_close(loop) != 0)
    psl_say(PSL_SAY_WARN, "the loop still had handles at exit");
  if (lock_fd >= 0)
    close(lock_fd);
  pthread_mutex_destroy(&srv->done_mu);
  free(loop);
  free(srv);
  return rc;
}
