/*
 * psl_keys.h — personal data at rest: a key per participant, sealed by a master key, and the
 * encrypted form of `pii` (crypto-shredding, BRIEF §5).
 *
 * What is stored where (server/keys.c and server/pii.c document the bytes):
 *   DIR/master.key  the master key, 64 hex characters and a newline, mode 0600, made at the
 *                   first start; or the environment's PASSERELLE_MASTER_KEY (64 hex), which
 *                   then wins and no file is made.  A file readable by anyone but its owner
 *                   is refused: the server does not start.
 *   DIR/keys/       an LMDB environment of its own: stream → that stream's key, sealed with
 *                   the master key (XChaCha20-Poly1305), or a tombstone once erased.
 *   the log         `pii` of every stored event as a bin: the map the client sent, sealed
 *                   with its stream's key, the event id and stream as associated data.  The
 *                   chain covers these bytes, so erasing a key leaves the chain intact.
 *
 * Erasure: a stored `participant.erased` turns its stream's key into a tombstone, then the
 * key store is rebuilt into a new file and the old one overwritten and dropped, so that no
 * copy of the key stays in any file (LMDB's free pages would otherwise keep old values).
 * From then on the stream's pii reads {erased: true} and new pii for it is refused.
 *
 * The log drives the writes through psl_log_sealer_t (psl_keys_sealer): keys are made inside
 * the writer's batch and made durable just before the log's commit; erasures run after it.
 *
 * Threads: every function is thread-safe.  The sealer's callbacks run on the log's writer
 * thread only.  Reads (psl_keys_reveal) may run on any thread; they wait while an erasure
 * swaps the store's file (milliseconds per thousand participants).
 */
#ifndef PSL_KEYS_H
#define PSL_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "psl_log.h"
#include "psl_proto.h"

/* A key (master or per stream): 256 bits, crypto_aead_xchacha20poly1305_ietf_KEYBYTES. */
#define PSL_KEY_BYTES 32
/* The environment variable that may hold the master key (64 hex characters). */
#define PSL_MASTER_KEY_ENV "PASSERELLE_MASTER_KEY"

typedef struct psl_keys_s psl_keys_t;

/* The master key: from PSL_MASTER_KEY_ENV when set, else from DIR/master.key, made (0600,
 * 32 random bytes in hex) when absent.  0; PSL_EINVALID with *why (static text, for the
 * start-up error) for a malformed key, a file whose mode grants anything to group or others,
 * or a file owned by another user; PSL_EIO. *from_env (may be NULL) says where it came from. */
int psl_keys_master_load(const char *dir, uint8_t master[PSL_KEY_BYTES], int *from_env,
                         const char **why);

/* Open (creating) DIR/keys/ with the master key.  PSL_EINVALID with *why when the master key
 * is not the one the store was made with; finishes an erasure a crash interrupted in its
 * file swap.  The master key is copied (and wiped on close). */
int psl_keys_open(psl_keys_t **out, const char *dir, const uint8_t master[PSL_KEY_BYTES],
                  const char **why);
void psl_keys_close(psl_keys_t *k); /* accepts NULL */

/* Finish what a crash left half-done, once the log is open and before it takes writes:
 * a stream marked "erasing" whose participant.erased is in the log is erased, any other gets
 * its key back; a rebuild owed after an erasure is done.  0 or PSL_E*. */
int psl_keys_recover(psl_keys_t *k, psl_log_t *log);

/* The sealer the log calls (arg = k): seal pii with the stream's key (made at its first
 * pii), refuse pii for an erased stream, mark streams of participant.erased, make keys
 * durable before the commit, erase after it. */
psl_log_sealer_t psl_keys_sealer(psl_keys_t *k);

/* What a reader gets for a stored `pii`: */
typedef enum {
  PSL_PII_PLAIN = 0, /* not sealed (a map, as stored): out holds a copy */
  PSL_PII_OPENED,    /* decrypted: out holds the map the client sent */
  PSL_PII_ERASED,    /* the key is destroyed: out holds {erased: true} */
  PSL_PII_SEALED     /* no key to open it with, or it does not authenticate: out holds the
                        stored bin unchanged (logged; never expected) */
} psl_pii_view_t;

/* The MessagePack map {erased: true} (81 a6 'erased' c3). */
extern const uint8_t psl_pii_erased[9];

/* Open the stored pii of a stored event (ev decoded from the log: ev->pii a bin or a map;
 * len 0: nothing to do).  Appends the view's bytes to out, sets *view.  0, PSL_ENOMEM, or
 * PSL_EINTERNAL/PSL_ECORRUPT when the store cannot be read. */
int psl_keys_reveal(psl_keys_t *k, const psl_event_t *ev, psl_buf_t *out, psl_pii_view_t *view);

/* Erase a stream's key now (tombstone, rebuild): what the sealer does after a committed
 * participant.erased; for tools and tests.  0 or PSL_E*. */
int psl_keys_erase(psl_keys_t *k, psl_str_t stream);

/* Key states, as psl_keys_state reports them. */
typedef enum {
  PSL_KEY_NONE = 0, /* no pii was ever stored for the stream */
  PSL_KEY_ACTIVE = 1,
  PSL_KEY_ERASING = 2, /* participant.erased is being committed: the key still opens pii */
  PSL_KEY_ERASED = 3   /* tombstone: no key */
} psl_key_state_t;

/* The state of a stream's key and, when it has one, the key (for tests: the privacy tests
 * search every file for it).  key may be NULL.  0 or PSL_E*. */
int psl_keys_state(psl_keys_t *k, psl_str_t stream, psl_key_state_t *state,
                   uint8_t key[PSL_KEY_BYTES]);

/* ---- pii.c: the sealed form of pii, without the store.
 *
 * Stored pii, a MessagePack bin (c4/c5 header) of 1 + 24 + n + 16 bytes:
 *   0x01 (format) ‖ nonce (24 random bytes) ‖ XChaCha20-Poly1305-IETF ciphertext of the n
 *   bytes of the pii map, with its 16-byte tag
 * associated data: "psl-pii-1" ‖ event id (16) ‖ stream bytes.  A sealed pii moved to
 * another event or stream does not open. */
#define PSL_PII_FORMAT 1
#define PSL_PII_NONCE 24
#define PSL_PII_TAG 16
#define PSL_PII_OVERHEAD (1 + PSL_PII_NONCE + PSL_PII_TAG)

/* Append the sealed bin of plain (one MessagePack map) to out.  0, PSL_ENOMEM, PSL_ETOO_BIG
 * (over PSL_MAX_EVENT). */
int psl_pii_seal(psl_buf_t *out, const uint8_t key[PSL_KEY_BYTES], const uint8_t id[PSL_UUID_BYTES],
                 psl_str_t stream, psl_bytes_t plain);
/* Append the plain map of a sealed bin to out.  0; PSL_EINVALID when stored is not a sealed
 * bin of this format; PSL_ECORRUPT when it does not authenticate (wrong key, id or stream);
 * PSL_ENOMEM.  out is unchanged on error. */
int psl_pii_open(psl_buf_t *out, const uint8_t key[PSL_KEY_BYTES], const uint8_t id[PSL_UUID_BYTES],
                 psl_str_t stream, psl_bytes_t stored);
/* 1 if pii (one MessagePack value) is a bin, i.e. sealed; 0 otherwise. */
int psl_pii_is_sealed(psl_bytes_t pii);

#endif /* PSL_KEYS_H */
