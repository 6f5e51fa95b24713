/*
 * fuzz.h — what every fuzz target of tests/fuzz/ shares.
 *
 * A target is one LLVMFuzzerTestOneInput over hostile bytes.  It is built two ways:
 *   make fuzz      clang -fsanitize=fuzzer,address,undefined: libFuzzer drives it
 *                  (build-fuzz/bin/fuzz-<name>), growing tests/fuzz/corpus/<name>/;
 *   make / test    the normal compiler with tests/fuzz/replay.c as main()
 *                  ($(B)/bin/fuzz-replay-<name>): every file of the corpus once, which
 *                  tests/test-fuzz.c runs in `make test` (and `make asan` under sanitizers).
 *
 * Beyond "no crash, no leak, no sanitizer report", a target checks properties with
 * FUZZ_CHECK, which aborts (libFuzzer then keeps the input as a crash).
 */
#ifndef PSL_FUZZ_H
#define PSL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed\n", __FILE__, __LINE__, #cond);      \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

#endif /* PSL_FUZZ_H */
