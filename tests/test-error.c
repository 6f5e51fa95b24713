/* test-error.c — the error table: every code has a protocol face and a message. */
#include "harness.h"
#include "psl_error.h"

#include <errno.h>
#include <lmdb.h>

TEST(error, table_faces) {
  CHECK_STR(psl_err_code(PSL_ECONFLICT), "conflict");
  CHECK_STR(psl_err_code(PSL_ETOO_BIG), "too_big");
  CHECK_STR(psl_err_code(PSL_ENOMEM), "internal");
  CHECK_STR(psl_err_name(PSL_ERATE_LIMITED), "RATE_LIMITED");
  CHECK_STR(psl_err_code(12345), "internal");
  CHECK_STR(psl_strerror(0), "success");
  for (int e = PSL__ERR_BASE + 1; e < PSL__ERR_END; e++) {
    CHECK(psl_strerror(e)[0] != '\0');
    CHECK(psl_err_code(e)[0] != '\0');
  }
}

TEST(error, boundaries_map_into_range) {
  CHECK_EQ(psl_err_from_mdb(MDB_MAP_FULL), PSL_EUNAVAILABLE);
  CHECK_EQ(psl_err_from_mdb(ENOSPC), PSL_EUNAVAILABLE);
  CHECK_EQ(psl_err_from_mdb(MDB_CORRUPTED), PSL_ECORRUPT);
  CHECK_EQ(psl_err_from_mdb(0), 0);
  CHECK_EQ(psl_err_from_errno(ENOMEM), PSL_ENOMEM);
  CHECK(psl_err_from_errno(EPERM) < PSL__ERR_END);
}
