/*
 * error.c — the faces of the error table in psl_error.h.
 */
#include "psl_error.h"

#include <errno.h>
#include <lmdb.h>
#include <stddef.h>

struct err_entry {
  const char *name;
  const char *code;
  const char *msg;
};

static const struct err_entry err_table[] = {
#define PSL__ERR_ROW(name, code, msg) {#name, code, msg},
    PSL_ERRNO_MAP(PSL__ERR_ROW)
#undef PSL__ERR_ROW
};

static const struct err_entry *err_lookup(int err) {
  if (err <= PSL__ERR_BASE || err >= PSL__ERR_END)
    return NULL;
  return &err_table[err - PSL__ERR_BASE - 1];
}

const char *psl_err_code(int err) {
  const struct err_entry *e = err_lookup(err);
  return e ? e->code : "internal";
}

const char *psl_strerror(int err) {
  const struct err_entry *e = err_lookup(err);
  if (err == 0)
    return "success";
  return e ? e->msg : "unknown error";
}

const char *psl_err_name(int err) {
  const struct err_entry *e = err_lookup(err);
  if (err == 0)
    return "OK";
  return e ? e->name : "UNKNOWN";
}

int psl_err_from_errno(int e) {
  switch (e) {
  case 0:
    return 0;
  case ENOMEM:
    return PSL_ENOMEM;
  case ENOSPC:
  case EDQUOT:
  case EROFS:
    return PSL_EUNAVAILABLE;
  case EIO:
    return PSL_EIO;
  case ENOENT:
    return PSL_ENOTFOUND;
  case EINVAL:
    return PSL_EINVALID;
  case EAGAIN:
    return PSL_EAGAIN;
  default:
    return PSL_EINTERNAL;
  }
}

int psl_err_from_mdb(int rc) {
  switch (rc) {
  case MDB_SUCCESS:
    return 0;
  case MDB_NOTFOUND:
    return PSL_ENOTFOUND;
  case MDB_MAP_FULL:
    return PSL_EUNAVAILABLE;
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INVALID:
  case MDB_VERSION_MISMATCH:
    return PSL_ECORRUPT;
  case MDB_READERS_FULL:
  case MDB_TXN_FULL:
  case MDB_CURSOR_FULL:
  case MDB_PAGE_FULL:
  case MDB_BAD_RSLOT:
  case MDB_BAD_TXN:
  case MDB_BAD_VALSIZE:
  case MDB_BAD_DBI:
  case MDB_KEYEXIST:
  case MDB_DBS_FULL:
  case MDB_MAP_RESIZED:
  case MDB_INCOMPATIBLE:
  case MDB_TLS_FULL:
  case MDB_PANIC:
    return PSL_EINTERNAL;
  default:
    return rc > 0 ? psl_err_from_errno(rc) : PSL_EINTERNAL;
  }
}
