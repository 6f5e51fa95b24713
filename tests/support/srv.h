/*
 * srv.h — run the real build/bin/passerelled for tests and benchmarks.
 *
 * srv_start() picks a free loopback port (binds 127.0.0.1:0, reads the port, closes), starts
 * `passerelled --data DIR --listen 127.0.0.1:PORT` with its stdout and stderr appended to
 * DIR.log (a sibling of DIR, so that tests can check what the server logged), and waits until
 * GET /healthz answers 200.  srv_stop() sends SIGTERM and waits (then SIGKILL); srv_start()
 * again restarts on the same data folder (on a new port).  The server dies with the process
 * that started it (PR_SET_PDEATHSIG), so start it from a thread that lives as long as it.
 *
 * Tokens: srv_token() calls psl_access_token_create on DIR, before or while the server runs.
 */
#ifndef PSL_TESTS_SRV_H
#define PSL_TESTS_SRV_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "psl_access.h"

typedef struct {
  char bin[PATH_MAX]; /* passerelled */
  char dir[PATH_MAX]; /* --data */
  char log[PATH_MAX]; /* the server's stdout + stderr */
  pid_t pid;          /* 0 when not running */
  uint16_t port;
  int status;         /* wait status of the last run that ended */
  char err[256];      /* why the last call failed */
  /* More arguments for passerelled after --listen (e.g. "--map-max", "1048576"), NULL-ended;
   * set after srv_init.  The environment (LD_PRELOAD of fault shims) is inherited. */
  const char *extra_args[8];
  /* Nonzero: srv_start listens on this port rather than on a free one, so that a restart
   * keeps the address (a browser page reconnects to where it was loaded from). */
  uint16_t fixed_port;
  /* wss:// and https:// (srv_use_tls): the server's self-signed certificate and key. */
  int tls;
  char cert[PATH_MAX + 8];
  char key[PATH_MAX + 8];
} srv_t;

/* Set up: bindir holds passerelled; dir (created if missing) is the data folder. */
int srv_init(srv_t *s, const char *bindir, const char *dir);
/* Start and wait for /healthz 200 (at most timeout_ms; 0: 20 s).  0 or PSL_E* (s->err). */
int srv_start(srv_t *s, int timeout_ms);
/* SIGTERM, wait up to timeout_ms (0: 10 s) for the exit; then SIGKILL.  0 if it exited by
 * itself (s->status holds the wait status), PSL_EAGAIN if it had to be killed. */
int srv_stop(srv_t *s, int timeout_ms);
/* SIGKILL and reap. */
void srv_kill(srv_t *s);
/* 1 while the process runs (reaps it when it has exited, setting s->status). */
int srv_running(srv_t *s);

/* A token for DIR (terr: one territory for a caseworker, or NULL). */
int srv_token(const srv_t *s, psl_role_t role, const char *terr, const char *name,
              const char *device, char token[PSL_TOKEN_LEN + 1]);

/* Make the next srv_start use TLS: a self-signed certificate and key beside DIR (DIR.crt,
 * DIR.key, made once with tests/support/tls.h) passed as --tls-cert/--tls-key; the start's
 * /healthz probe and srv_http go over https.  0 or PSL_E* (s->err). */
int srv_use_tls(srv_t *s);

/* GET path from s (https:// verifying s's certificate when s->tls), with "Authorization:
 * Bearer <bearer>" when bearer is not NULL.  As srv_http_get otherwise. */
int srv_http(const srv_t *s, const char *path, const char *bearer, int timeout_ms, int *status,
             char **body, size_t *len);

/* GET http://127.0.0.1:port/path.  *status the HTTP status; the body (de-chunked) is
 * malloc'd into *body (NUL-terminated; the caller frees), its length in *len (may be NULL).
 * 0, or PSL_EIO / PSL_EAGAIN (timeout) / PSL_EINVALID (not HTTP). */
int srv_http_get(uint16_t port, const char *path, int timeout_ms, int *status, char **body,
                 size_t *len);

/* VmRSS of a process in KiB (-1 if unreadable). */
long srv_rss_kib(pid_t pid);
/* A whole file, malloc'd and NUL-terminated (NULL if unreadable). */
char *srv_read_file(const char *path, size_t *len);
/* The directory of the running executable (for benchmarks: passerelled is beside them). */
int srv_self_dir(char *out, size_t outlen);
/* Print the last `bytes` of the server's log to stderr (for failure messages). */
void srv_dump_log(const srv_t *s, size_t bytes);
/* A free loopback TCP port (0 on failure). */
uint16_t srv_free_port(void);

#endif /* PSL_TESTS_SRV_H */
