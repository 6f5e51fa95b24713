/*
 * www.c — serve the dashboard's files (server/www/, embedded by the build: www.h).
 *
 * Headers of every file:
 *   content-security-policy  the page may load and connect to this server only (its own
 *                            HTTP API and the WebSocket /sync); no inline script or style, no
 *                            framing, no form posted anywhere
 *   x-content-type-options   nosniff: a file is only ever what its content type says
 *   referrer-policy          no-referrer
 *   cache-control            index.html: no-cache (a new build is seen at the next load);
 *                            the others: immutable for a year, since index.html names them
 *                            with ?v=<checksum of their bytes> (gen-assets.sh)
 */
#include <string.h>

#include "www.h"

#define WWW_CSP                                                                          \
  "default-src 'self'; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; " \
  "frame-ancestors 'none'"

static const char *const www_headers_page[] = {
    "cache-control:",           "no-cache",
    "content-security-policy:", WWW_CSP,
    "x-content-type-options:",  "nosniff",
    "referrer-policy:",         "no-referrer",
    NULL};

static const char *const www_headers_versioned[] = {
    "cache-control:",           "public, max-age=31536000, immutable",
    "content-security-policy:", WWW_CSP,
    "x-content-type-options:",  "nosniff",
    "referrer-policy:",         "no-referrer",
    NULL};

const psl__www_asset_t *psl__www_find(const char *path) {
  for (size_t i = 0; i < psl__www_nassets; i++)
    if (strcmp(psl__www_assets[i].path, path) == 0)
      return &psl__www_assets[i];
  return NULL;
}

int psl__www_handler(const psl__http_req_t *req, psl__http_resp_t *resp) {
  const psl__www_asset_t *a = psl__www_find(req->path);
  if (!a) {
    resp->status = 404;
    return psl_buf_append(resp->body, "not found\n", 10);
  }
  resp->ctype = a->ctype;
  resp->headers = a->versioned ? www_headers_versioned : www_headers_page;
  return psl_buf_append(resp->body, a->data, a->len);
}
