/*
 * logev.h — events for the log's tests (test-log.c, test-journal.c): ids from a counter,
 * streams by number, a `data` map {"minutes": 45, "note": "..."} whose note length varies
 * with the id, so record sizes vary.
 */
#ifndef PSL_TEST_LOGEV_H
#define PSL_TEST_LOGEV_H

#include <stdint.h>

#include "psl_proto.h"

typedef struct {
  psl_event_t ev;
  char stream[PSL_MAX_STREAM + 1];
  uint8_t data[128];
} tev_t;

/* Fill t: event id from idn (never all zero), stream "participant/…<stream_no>", terr, expect. */
void tev_fill(tev_t *t, uint64_t idn, int stream_no, const char *terr, int64_t expect);

#endif /* PSL_TEST_LOGEV_H */
