// safetensors files (u64 little-endian header length N, N bytes of JSON, then the data area),
// read defensively and written as Hugging Face's save_pretrained writes them.
//
// Reading: st_open memory-maps a file read-only and validates the whole header before a byte of
// data is used: header length vs file size, JSON syntax, every dtype, every shape, data_offsets
// inside the data area, sizes equal to numel * dtype size, no two tensors overlapping, no name
// twice. Nothing is allocated from a size a file claims. st_check then matches an entry against
// the shape a model expects and a loadable dtype (F32, F16, BF16); st_read_f32 converts it.
// A StSet is the weights of a checkpoint directory: model.safetensors, or, when that is absent,
// the shards model.safetensors.index.json lists ({"metadata": {...}, "weight_map": {tensor:
// file}}): every shard validated as above, each listed tensor in its shard, each tensor of a
// shard listed there (so no tensor is in two shards), no tensor listed twice, shard names plain
// file names in the directory.
//
// Writing: F32 or BF16 (round to nearest even), the header padded with spaces so the data is
// 8-byte aligned, tensors in the order given; st_write_weights splits past a size into
// model-0000i-of-0000n.safetensors and writes the index with sorted keys, as transformers does.
//
// Errors: 0, or -1 with a one-line message naming the file and the tensor in err. Ownership: a
// StFile / StSet owns its mapping and parsed header (st_close / st_set_close release them);
// StEntry pointers and names point into them.
#ifndef SAFETENSORS_H
#define SAFETENSORS_H
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include "fileio.h"

#define ST_SINGLE      "model.safetensors"
#define ST_INDEX       "model.safetensors.index.json"
#define ST_MAX_DIMS    8
#define SHARD_NAME_MAX 255

enum { DT_F32, DT_F16, DT_BF16, DT_OTHER };

typedef struct StFile StFile;
typedef struct {
    const char *name;          // points into the parsed header (owned by StFile.json)
    const StFile *file;        // the file holding it
    int dtype;                 // index into the dtype table
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;       // byte range inside the data area
    int used;                  // claimed by the loader (anything unclaimed is an error)
} StEntry;

struct StFile {
    const char *path;          // the caller's string (must outlive the StFile)
    uint8_t *map;              // the whole file, read-only
    uint64_t size;
    const uint8_t *data;       // data area = map + 8 + header length
    uint64_t data_size;
    cJSON *json;
    StEntry *e;                // sorted by name
    int n;
};

typedef struct {
    StFile *f;                    // the files (their entries point back at them: never moved)
    char (*paths)[FIO_PATH_CAP];  // f[i].path
    int nf;
} StSet;

// A tensor to write: name, shape and float32 data (converted when written as BF16).
typedef struct { char name[96]; int ndim; int64_t shape[2]; const float *data; } StOut;

// IEEE half and bfloat16 to float32 (exact; NaN stays NaN, subnormals included); float32 to
// bfloat16 rounding to nearest even (past the largest bfloat16: infinity; NaN stays quiet NaN).
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t b);
uint16_t st_f32_to_bf16(float x);

int st_open(StFile *f, const char *path, char *err, size_t errlen);
void st_close(StFile *f);
StEntry *st_find(StFile *f, const char *name);          // NULL when absent
// The entry has this shape and a dtype st_read_f32 converts (F32, F16, BF16).
int st_check(const StEntry *e, int ndim, const int64_t *shape, char *err, size_t errlen);
// Elements [first, first + n) of a checked entry as float32 / the whole entry.
void st_read_f32_range(const StEntry *e, size_t first, size_t n, float *out);
void st_read_f32(const StEntry *e, float *out);
// Gives the entry's mapped pages back (the whole pages inside its bytes): a loader that has read
// it keeps no copy of the file beside its own. The data stays readable (read from the file again).
void st_release(const StEntry *e);

// The weights of checkpoint directory d (see above).
int st_set_open(StSet *s, const char *d, char *err, size_t errlen);
void st_set_close(StSet *s);
StEntry *st_set_find(StSet *s, const char *name);       // NULL when absent
// The weight_map of index r (read from ip), validated as above; *shards (malloc'd, pointing
// into r) receives the distinct shard names in name order.
int st_index_shards(const cJSON *r, const char *ip, const char ***shards, int *nshards,
                    char *err, size_t errlen);

// Writes t[0..n) as the new file path, F32 or (bf16) BF16.
int st_write(const char *path, const StOut *t, int n, int bf16, char *err, size_t errlen);
// Writes t[0..n) into directory dir as model.safetensors, or, when max_shard_bytes > 0 and the
// tensors are larger, as shards of at most that many bytes (filled in order; a larger tensor gets
// a shard of its own) and model.safetensors.index.json.
int st_write_weights(const char *dir, const StOut *t, int n, int bf16, uint64_t max_shard_bytes,
                     char *err, size_t errlen);
#endif
