// sha256: SHA-256 (FIPS 180-4), for the workspace's content hashes of imported files and its
// deterministic splits. Incremental (init, update..., final) or in one call. No state beyond the
// caller's Sha256.
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
#endif
