// hash: the project's one 64-bit hash, FNV-1a, and a finalizer to apply before taking a result
// modulo anything. Fixed forever: data splits, data-order fingerprints, token-file checksums,
// config hashes and pipeline stage fingerprints are computed with it and stored.
//
// data_hash_bytes continues FNV-1a 64 over p[0..n) from h (start from DATA_HASH_INIT);
// data_hash_u64 is data_hash_bytes over v's 8 bytes, little-endian; data_hash_mix is the
// MurmurHash3 finalizer (full avalanche). (The names keep their data_ prefix: the file formats
// that store these values are documented with them.)
#ifndef HASH_H
#define HASH_H
#include <stddef.h>
#include <stdint.h>

#define DATA_HASH_INIT 0xcbf29ce484222325ULL   // FNV-1a 64 offset basis
uint64_t data_hash_bytes(uint64_t h, const void *p, size_t n);
uint64_t data_hash_u64(uint64_t h, uint64_t v);
uint64_t data_hash_mix(uint64_t h);

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord files frame their records:
// continues crc (start from 0) over p[0..n). hash_crc32c(0, "123456789", 9) = 0xE3069283.
uint32_t hash_crc32c(uint32_t crc, const void *p, size_t n);
// TFRecord's masked form of a CRC: ((crc >> 15) | (crc << 17)) + 0xA282EAD8.
uint32_t hash_crc32c_mask(uint32_t crc);
#endif
