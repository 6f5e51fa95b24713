/*
 * tls.h — TLS for the test clients (wsc.h, srv.h's HTTP), with OpenSSL's libssl: the same
 * library libwebsockets uses on the server side, from the Debian package libssl-dev.
 *
 *   tls_self_signed()   a key and a self-signed certificate for a test's server (EC P-256,
 *                       CN localhost, subjectAltName DNS:localhost and IP:127.0.0.1, valid
 *                       two days), written as PEM files
 *   tls_conn_*          one client connection over a socket the caller connected; I/O never
 *                       blocks (a would-block is -1 with errno EAGAIN, as send/recv say it)
 *                       except tls_conn_handshake, bounded by its timeout
 *
 * With a CA file (the server's self-signed certificate) the client verifies the chain and
 * that the certificate names 127.0.0.1; without one it verifies nothing (tests of transport
 * only).  Every function returns 0 or PSL_E* and writes why into err when it fails.
 */
#ifndef PSL_TESTS_TLS_H
#define PSL_TESTS_TLS_H

#include <stddef.h>
#include <sys/types.h>

int tls_self_signed(const char *cert_path, const char *key_path, char *err, size_t errlen);

typedef struct tls_conn_s tls_conn_t;

/* A client over the connected socket fd (which stays the caller's).  ca_file: the PEM to
 * trust, or NULL to verify nothing. */
int tls_conn_new(tls_conn_t **out, int fd, const char *ca_file, char *err, size_t errlen);
/* Run the handshake, waiting (poll) up to timeout_ms.  0, PSL_EAGAIN (timeout), PSL_EIO. */
int tls_conn_handshake(tls_conn_t *t, int timeout_ms, char *err, size_t errlen);
/* Like send(2) / recv(2) on a non-blocking socket: bytes moved, 0 at the peer's end (recv),
 * or -1 with errno EAGAIN (try after poll), EPIPE / EIO. */
ssize_t tls_conn_send(tls_conn_t *t, const void *p, size_t n);
ssize_t tls_conn_recv(tls_conn_t *t, void *p, size_t n);
/* Bytes decrypted and not yet read: poll(2) on the socket would not announce them. */
size_t tls_conn_pending(const tls_conn_t *t);
/* Free without close_notify (the caller closes the socket).  NULL ok. */
void tls_conn_free(tls_conn_t *t);

#endif /* PSL_TESTS_TLS_H */
