/*
 * tls.c — TLS for test clients with OpenSSL (see tls.h).
 */
#include "support/tls.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "psl_error.h"

/* Validity of a test certificate: a test lasts minutes; two days also covers a clock that
 * moved a little. */
#define CERT_DAYS 2

struct tls_conn_s {
  SSL_CTX *ctx;
  SSL *ssl;
  int fd;
};

static void say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  char ossl[160] = "";
  if (!err || !errlen)
    return;
  unsigned long e = ERR_get_error();
  if (e)
    ERR_error_string_n(e, ossl, sizeof ossl);
  ERR_clear_error();
  va_start(ap, fmt);
  int n = vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  if (ossl[0] && n > 0 && (size_t)n < errlen)
    snprintf(err + n, errlen - (size_t)n, " (%s)", ossl);
}

/* ---- A self-signed certificate. */

static int add_ext(X509 *x, int nid, const char *value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  if (!ext)
    return -1;
  int ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? 0 : -1;
}

static int write_pem(const char *path, int key, EVP_PKEY *pk, X509 *x) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  int ok = key ? PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, x);
  return fclose(f) == 0 && ok ? 0 : -1;
}

int tls_self_signed(const char *cert_path, const char *key_path, char *err, size_t errlen) {
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  int rc = PSL_EINTERNAL;
  if (!pk || !x) {
    say(err, errlen, "key generation failed");
    goto done;
  }
  X509_set_version(x, 2); /* v3 */
  ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), (long)CERT_DAYS * 86400);
  X509_set_pubkey(x, pk);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  if (add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1") ||
      add_ext(x, NID_basic_constraints, "critical,CA:TRUE") ||
      !X509_sign(x, pk, EVP_sha256())) {
    say(err, errlen, "certificate signing failed");
    goto done;
  }
  if (write_pem(key_path, 1, pk, x) || write_pem(cert_path, 0, pk, x)) {
    say(err, errlen, "cannot write %s or %s: %s", key_path, cert_path, strerror(errno));
    rc = PSL_EIO;
    goto done;
  }
  rc = 0;
done:
  X509_free(x);
  EVP_PKEY_free(pk);
  return rc;
}

/* ---- A client connection. */

int tls_conn_new(tls_conn_t **out, int fd, const char *ca_file, char *err, size_t errlen) {
  tls_conn_t *t = calloc(1, sizeof *t);
  *out = NULL;
  if (!t)
    return PSL_ENOMEM;
  t->fd = fd;
  t->ctx = SSL_CTX_new(TLS_client_method());
  if (!t->ctx) {
    say(err, errlen, "SSL_CTX_new failed");
    goto fail;
  }
  SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (ca_file) {
    if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1) {
      say(err, errlen, "cannot load %s", ca_file);
      goto fail;
    }
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
  } else {
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
  }
  t->ssl = SSL_new(t->ctx);
  if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
    say(err, errlen, "SSL_new failed");
    goto fail;
  }
  if (ca_file) {
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
    X509_VERIFY_PARAM_set1_ip_asc(vp, "127.0.0.1");
  }
  SSL_set_connect_state(t->ssl);
  *out = t;
  return 0;
fail:
  tls_conn_free(t);
  return PSL_EINTERNAL;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tls_conn_handshake(tls_conn_t *t, int timeout_ms, char *err, size_t errlen) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
      return 0;
    int e = SSL_get_error(t->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      long v = SSL_get_verify_result(t->ssl);
      say(err, errlen, "TLS handshake failed (ssl error %d%s%s)", e,
          v != X509_V_OK ? ", verify: " : "",
          v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
      return PSL_EIO;
    }
    struct pollfd pfd = {.fd = t->fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
    int64_t left = deadline - now_ms();
    if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
      say(err, errlen, "TLS handshake: no answer within %d ms", timeout_ms);
      return PSL_EAGAIN;
    }
  }
}

/* Map an SSL_read/SSL_write failure to errno and -1 (or 0 for a clean end). */
static ssize_t io_fail(tls_conn_t *t, int r) {
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN)
    return 0;
  if (e == SSL_ERROR_SYSCALL && errno == 0)
    return 0; /* EOF without close_notify: the peer hung up */
  ERR_clear_error();
  if (e != SSL_ERROR_SYSCALL)
    errno = EIO;
  return -1;
}

ssize_t tls_conn_send(tls_conn_t *t, const void *p, size_t n) {
  size_t done = 0;
  ERR_clear_error();
  errno = 0;
  int r = SSL_write_ex(t->ssl, p, n, &done);
  if (r == 1)
    return (ssize_t)done;
  ssize_t v = io_fail(t, r);
  if (v == 0) { /* a write to a closed peer */
    errno = EPIPE;
    return -1;
  }
  return v;
}

ssize_t tls_conn_recv(tls_conn_t *t, void *p, size_t n) {
  size_t done = 0;
  ERR_clear_error();
  errno = 0;
  int r = SSL_read_ex(t->ssl, p, n, &done);
  if (r == 1)
    return (ssize_t)done;
  return io_fail(t, r);
}

size_t tls_conn_pending(const tls_conn_t *t) { return (size_t)SSL_pending(t->ssl); }

void tls_conn_free(tls_conn_t *t) {
  if (!t)
    return;
  SSL_free(t->ssl);
  SSL_CTX_free(t->ctx);
  free(t);
}
