/*
 * api.h — the HTTP API of PROTOCOL-v1 (GET /api/v1/...), as route handlers for http.c's
 * table.  api.c documents the answers; proto/PROTOCOL.md ("HTTP API") is the contract.
 *
 * Each handler runs on the loop thread, reads the projections in one short LMDB read
 * transaction (psl_log_with_read_txn) and fills a JSON (or CSV, Markdown) body.  The
 * caller's failures are answered by the handler (400, 401, 403, 404, 503 with a JSON error);
 * a handler returns nonzero only for a failure of ours (http.c answers 500).
 */
#ifndef PSL_API_H
#define PSL_API_H

#include "server_int.h"

/* GET /api/v1/counters?year=Y[&terr=T][&month=M][&programme=P][&site=S] */
int psl__api_counters(const psl__http_req_t *req, psl__http_resp_t *resp);
/* GET /api/v1/participants/<uuid> */
int psl__api_participant(const psl__http_req_t *req, psl__http_resp_t *resp);
/* GET /api/v1/report?year=Y[&terr=T][&format=json|csv|md] */
int psl__api_report(const psl__http_req_t *req, psl__http_resp_t *resp);

#endif /* PSL_API_H */
