/*
 * chain.c — the hash chain of the log, and libsodium's one-time initialisation.
 *
 *   hash(0) = 32 zero bytes
 *   hash(n) = BLAKE2b-256(hash(n-1) ‖ canonical bytes of event n)
 *
 * BLAKE2b unkeyed with a 32-byte output (libsodium's crypto_generichash), over the 32 bytes
 * of the previous hash followed by the canonical stored form of event.c.  The canonical form
 * keeps `pii` as stored (encrypted), so erasing a participant's key does not break the chain.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>

#include "mpack.h"

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

/* sodium_init() picks the fastest implementations for this CPU and opens the system's random
 * source.  It fails only when no random source is usable: uuids and keys would then not be
 * random, which is worse than stopping. */
static void sodium_init_once(void) {
  if (sodium_init() < 0)
    abort();
}

void psl__sodium_init(void) { pthread_once(&sodium_once, sodium_init_once); }

void psl_chain_hash(const uint8_t prev[PSL_HASH_BYTES], const uint8_t *canon, size_t len,
                    uint8_t out[PSL_HASH_BYTES]) {
  crypto_generichash_state st;
  psl__sodium_init();
  crypto_generichash_init(&st, NULL, 0, PSL_HASH_BYTES);
  crypto_generichash_update(&st, prev, PSL_HASH_BYTES);
  crypto_generichash_update(&st, canon, len);
  crypto_generichash_final(&st, out, PSL_HASH_BYTES);
}
