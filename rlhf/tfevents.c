// tfevents: see tfevents.h.
#include "tfevents.h"
#include "hash.h"
#include "util.h"
#include <stdlib.h>
#include <string.h>

// A protocol buffer under construction (bounded: a scalar event is small).
typedef struct { unsigned char *p; size_t n, cap; } TfBuf;

static void tf_put(TfBuf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = REALLOC_CHECK(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void tf_varint(TfBuf *b, uint64_t v) {
    unsigned char out[10];
    size_t n = 0;
    do {
        out[n++] = (unsigned char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    tf_put(b, out, n);
}

static void tf_le(TfBuf *b, uint64_t v, int bytes) {
    unsigned char out[8];
    for (int i = 0; i < bytes; i++) out[i] = (unsigned char)(v >> (8 * i));
    tf_put(b, out, (size_t)bytes);
}

static void tf_double(TfBuf *b, int field, double x) {
    uint64_t u;
    memcpy(&u, &x, 8);
    tf_varint(b, (uint64_t)field << 3 | 1);
    tf_le(b, u, 8);
}

// A length-delimited field: a string or an embedded message.
static void tf_bytes(TfBuf *b, int field, const void *data, size_t n) {
    tf_varint(b, (uint64_t)field << 3 | 2);
    tf_varint(b, n);
    tf_put(b, data, n);
}

int tfevents_write_record(FILE *f, const unsigned char *data, size_t n) {
    unsigned char head[12];
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)n >> (8 * i));
    uint32_t c = hash_crc32c_mask(hash_crc32c(0, head, 8));
    for (int i = 0; i < 4; i++) head[8 + i] = (unsigned char)(c >> (8 * i));
    uint32_t d = hash_crc32c_mask(hash_crc32c(0, data, n));
    unsigned char tail[4];
    for (int i = 0; i < 4; i++) tail[i] = (unsigned char)(d >> (8 * i));
    return fwrite(head, 1, 12, f) == 12 && fwrite(data, 1, n, f) == n &&
                   fwrite(tail, 1, 4, f) == 4
               ? 0
               : -1;
}

static int tf_finish(FILE *f, TfBuf *b) {
    int rc = tfevents_write_record(f, b->p, b->n);
    free(b->p);
    return rc;
}

int tfevents_write_version(FILE *f, double wall_time) {
    static const char version[] = "brain.Event:2";
    TfBuf b = {0};
    tf_double(&b, 1, wall_time);
    tf_bytes(&b, 3, version, sizeof version - 1);
    return tf_finish(f, &b);
}

int tfevents_write_scalar(FILE *f, double wall_time, int64_t step, const char *tag, float value) {
    TfBuf val = {0}, sum = {0}, ev = {0};
    uint32_t u;
    memcpy(&u, &value, 4);
    tf_bytes(&val, 1, tag, strlen(tag));
    tf_varint(&val, 2 << 3 | 5);   // simple_value: fixed32
    tf_le(&val, u, 4);
    tf_bytes(&sum, 1, val.p, val.n);
    tf_double(&ev, 1, wall_time);
    tf_varint(&ev, 2 << 3 | 0);
    tf_varint(&ev, (uint64_t)step);   // int64: negative steps take 10 bytes, as protobuf says
    tf_bytes(&ev, 5, sum.p, sum.n);
    free(val.p);
    free(sum.p);
    return tf_finish(f, &ev);
}
