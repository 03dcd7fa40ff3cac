// sha256: SHA-256 (FIPS 180-4), for the workspace's content hashes of imported files and its
// deterministic splits; HMAC and PBKDF2 over it for the hashes of login tokens. Incremental
// (init, update..., final) or in one call. No state beyond the caller's Sha256.
#ifndef SHA256_H
#define SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t n;          // bytes hashed so far
    uint8_t buf[64];
} Sha256;

void sha256_init(Sha256 *c);
void sha256_update(Sha256 *c, const void *data, size_t n);
void sha256_final(Sha256 *c, uint8_t out[32]);
void sha256(const void *data, size_t n, uint8_t out[32]);   // init, update, final
void sha256_hex(const uint8_t d[32], char hex[65]);         // 64 lowercase hex digits and a NUL
// HMAC-SHA256 (RFC 2104) of msg under key.
void sha256_hmac(const void *key, size_t keylen, const void *msg, size_t n, uint8_t out[32]);
// PBKDF2-HMAC-SHA256 (RFC 8018): dklen bytes derived from password and salt with `iterations`
// rounds (>= 1), for the login tokens of `rlhf serve`.
void sha256_pbkdf2(const void *password, size_t plen, const void *salt, size_t slen,
                   uint64_t iterations, uint8_t *out, size_t dklen);
#endif
