// sha256: see sha256.h.
#include "sha256.h"
#include <string.h>

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror32(uint32_t x, int r) { return (x >> r) | (x << (32 - r)); }

static void sha256_block(Sha256 *c, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5],
             g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
                      SHA_K[i] + w[i];
        uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g; g = f; f = e; e = d + t1; d = cc; cc = b; b = a; a = t1 + t2;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d;
    c->h[4] += e; c->h[5] += f; c->h[6] += g; c->h[7] += h;
}

void sha256_init(Sha256 *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->n = 0;
}

void sha256_update(Sha256 *c, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        size_t used = (size_t)(c->n % 64), take = 64 - used < n ? 64 - used : n;
        memcpy(c->buf + used, p, take);
        c->n += take; p += take; n -= take;
        if (used + take == 64) sha256_block(c, c->buf);
    }
}

void sha256_final(Sha256 *c, uint8_t out[32]) {
    uint64_t bits = c->n * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    sha256_update(c, &pad, 1);
    while (c->n % 64 != 56) sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(c->h[i] >> (24 - 8 * j));
}

void sha256_hex(const uint8_t d[32], char hex[65]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
}

void sha256(const void *data, size_t n, uint8_t out[32]) {
    Sha256 c;
    sha256_init(&c);
    sha256_update(&c, data, n);
    sha256_final(&c, out);
}

// The inner and outer hashes of HMAC with the key's blocks already absorbed (RFC 2104: a key
// longer than a block is hashed first), so that PBKDF2's rounds hash 32 bytes each.
static void sha256_hmac_keys(const void *key, size_t keylen, Sha256 *in, Sha256 *out) {
    uint8_t k[64] = {0}, pad[64];
    if (keylen > 64) sha256(key, keylen, k);
    else if (keylen) memcpy(k, key, keylen);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    sha256_init(in);
    sha256_update(in, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    sha256_init(out);
    sha256_update(out, pad, 64);
}

// HMAC from prepared key states: H(out || H(in || msg)).
static void sha256_hmac_with(const Sha256 *in, const Sha256 *out, const void *msg, size_t n,
                             uint8_t mac[32]) {
    Sha256 c = *in;
    uint8_t inner[32];
    sha256_update(&c, msg, n);
    sha256_final(&c, inner);
    c = *out;
    sha256_update(&c, inner, 32);
    sha256_final(&c, mac);
}

void sha256_hmac(const void *key, size_t keylen, const void *msg, size_t n, uint8_t out[32]) {
    Sha256 in, outer;
    sha256_hmac_keys(key, keylen, &in, &outer);
    sha256_hmac_with(&in, &outer, msg, n, out);
}

void sha256_pbkdf2(const void *password, size_t plen, const void *salt, size_t slen,
                   uint64_t iterations, uint8_t *out, size_t dklen) {
    Sha256 in, outer;
    sha256_hmac_keys(password, plen, &in, &outer);
    for (uint32_t block = 1; dklen > 0; block++) {
        // U1 = HMAC(P, S || INT(block)); T = U1 ^ U2 ^ ... ^ Uc
        uint8_t u[32], t[32], be[4] = {(uint8_t)(block >> 24), (uint8_t)(block >> 16),
                                       (uint8_t)(block >> 8), (uint8_t)block};
        Sha256 c = in;
        uint8_t inner[32];
        sha256_update(&c, salt, slen);
        sha256_update(&c, be, 4);
        sha256_final(&c, inner);
        c = outer;
        sha256_update(&c, inner, 32);
        sha256_final(&c, u);
        memcpy(t, u, 32);
        for (uint64_t i = 1; i < iterations; i++) {
            sha256_hmac_with(&in, &outer, u, 32, u);
            for (int j = 0; j < 32; j++) t[j] ^= u[j];
        }
        size_t take = dklen < 32 ? dklen : 32;
        memcpy(out, t, take);
        out += take;
        dklen -= take;
    }
}
