// safetensors files: see safetensors.h.
#include "safetensors.h"
#include "util.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

#define ST_HEADER_MAX   (100u << 20)      // the safetensors format's own limit on the header
#define EXACT_INT_MAX   9007199254740992.0  // 2^53: JSON numbers are exact integers up to here

// ---------------------------------------------------------------------------------------------
// Half precision
// ---------------------------------------------------------------------------------------------

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, ex = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (ex == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));        // inf, NaN
    if (ex) return bits_to_f32(sign | ((ex + 112u) << 23) | (man << 13));        // normal
    float v = (float)man * 0x1p-24f;                                            // zero, subnormal
    return sign ? -v : v;
}

float st_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t st_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);   // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);   // round to nearest, ties to the even upper half
    return (uint16_t)(u >> 16);
}

static int json_is_uint(const cJSON *it, uint64_t max, uint64_t *out) {
    double v = it ? it->valuedouble : 0;
    if (!cJSON_IsNumber(it) || !isfinite(v) || v < 0 || v != floor(v) || v > EXACT_INT_MAX ||
        v > (double)max)
        return 0;
    *out = (uint64_t)v;
    return 1;
}

// ---------------------------------------------------------------------------------------------
// safetensors reader: u64 header length N, N bytes of JSON, then the data area
// ---------------------------------------------------------------------------------------------

static const struct { const char *name; int size; int kind; } st_dtypes[] = {
    {"F32", 4, DT_F32}, {"F16", 2, DT_F16}, {"BF16", 2, DT_BF16}, {"F64", 8, DT_OTHER},
    {"I64", 8, DT_OTHER}, {"I32", 4, DT_OTHER}, {"I16", 2, DT_OTHER}, {"I8", 1, DT_OTHER},
    {"U64", 8, DT_OTHER}, {"U32", 4, DT_OTHER}, {"U16", 2, DT_OTHER}, {"U8", 1, DT_OTHER},
    {"BOOL", 1, DT_OTHER}, {"F8_E4M3", 1, DT_OTHER}, {"F8_E5M2", 1, DT_OTHER}};
#define ST_NUM_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

void st_close(StFile *f) {
    if (f->map) munmap(f->map, (size_t)f->size);
    cJSON_Delete(f->json);
    free(f->e);
    memset(f, 0, sizeof(*f));
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const StEntry *)a)->name, ((const StEntry *)b)->name);
}

static int cmp_entry_range(const void *a, const void *b) {
    const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// Parses and validates one header entry. Returns 0 or -1 (message names the tensor).
static int st_parse_entry(StFile *f, const cJSON *it, StEntry *e, char *err, size_t errlen) {
    const char *nm = it->string;
    e->name = nm;
    if (!cJSON_IsObject(it))
        return util_err(err, errlen, "%s: header entry \"%s\" is not an object", f->path, nm);
    for (const cJSON *k = it->child; k; k = k->next)
        if (strcmp(k->string, "dtype") && strcmp(k->string, "shape") &&
            strcmp(k->string, "data_offsets"))
            return util_err(err, errlen, "%s: tensor %s: unknown key \"%s\"", f->path, nm,
                            k->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt))
        return util_err(err, errlen, "%s: tensor %s: missing or non-string dtype", f->path, nm);
    e->dtype = -1;
    for (int i = 0; i < ST_NUM_DTYPES; i++)
        if (!strcmp(dt->valuestring, st_dtypes[i].name)) e->dtype = i;
    if (e->dtype < 0)
        return util_err(err, errlen, "%s: tensor %s: unknown dtype \"%.32s\"", f->path, nm,
                        dt->valuestring);
    if (!cJSON_IsArray(sh))
        return util_err(err, errlen, "%s: tensor %s: missing or non-array shape", f->path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return util_err(err, errlen, "%s: tensor %s: %d dimensions (at most %d)", f->path, nm, nd,
                        ST_MAX_DIMS);
    e->ndim = nd;
    // numel * dtype size must equal the byte range, which lies inside the file: dims that would
    // overflow are rejected on the way (no dimension may exceed the data area's size)
    uint64_t bytes = (uint64_t)st_dtypes[e->dtype].size, zero = 0;
    int d = 0;
    for (const cJSON *x = sh->child; x; x = x->next, d++) {
        uint64_t v;
        if (!json_is_uint(x, UINT64_MAX, &v))
            return util_err(err, errlen,
                            "%s: tensor %s: shape entries must be non-negative integers", f->path,
                            nm);
        e->shape[d] = (int64_t)v;
        if (v == 0) zero = 1;
        else if (!zero) {
            if (v > f->data_size || bytes > f->data_size / v) bytes = UINT64_MAX;
            else bytes *= v;
        }
    }
    if (zero) bytes = 0;
    uint64_t b, en;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
        !json_is_uint(of->child, UINT64_MAX, &b) || !json_is_uint(of->child->next, UINT64_MAX, &en))
        return util_err(err, errlen,
                        "%s: tensor %s: data_offsets must be two non-negative integers", f->path,
                        nm);
    if (b > en || en > f->data_size)
        return util_err(err, errlen,
                        "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                        "] outside the data area of %" PRIu64 " bytes",
                        f->path, nm, b, en, f->data_size);
    if (bytes != en - b) {
        char s[160];
        shape_str(s, sizeof s, e->ndim, e->shape);
        return util_err(
            err, errlen, "%s: tensor %s: %s %s needs %s bytes but data_offsets span %" PRIu64,
            f->path, nm, st_dtypes[e->dtype].name, s,
            bytes == UINT64_MAX ? "more than the file's" : "a different number of", en - b);
    }
    e->begin = b;
    e->end = en;
    return 0;
}

int st_open(StFile *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof(*f));
    f->path = path;
    struct stat st;
    int fd = fio_open_regular(path, &st, err, errlen);
    if (fd < 0) return -1;
    f->size = (uint64_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        return util_err(err, errlen,
                        "%s: file is %" PRIu64 " bytes, too short for a safetensors header", path,
                        f->size);
    }
    void *map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return util_err(err, errlen, "%s: cannot map: %s", path, strerror(errno));
    f->map = map;
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    if (hlen > f->size - 8) {
        util_err(err, errlen,
                 "%s: header length %" PRIu64 " exceeds the file size (%" PRIu64
                 " bytes): truncated or not safetensors",
                 path, hlen, f->size);
        goto fail;
    }
    if (hlen > ST_HEADER_MAX) {
        util_err(err, errlen, "%s: header length %" PRIu64 " exceeds the 100 MiB limit", path,
                 hlen);
        goto fail;
    }
    if (hlen < 2) { util_err(err, errlen, "%s: empty header", path); goto fail; }
    f->data = f->map + 8 + hlen;
    f->data_size = f->size - 8 - hlen;
    const char *h = (const char *)f->map + 8, *end = NULL;
    f->json = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!f->json) {
        size_t at = end && end >= h && end <= h + hlen ? (size_t)(end - h) : 0;
        util_err(err, errlen, "%s: header is not valid JSON (near byte %zu of %" PRIu64 ")", path,
                 at, hlen);
        goto fail;
    }
    for (const char *p = end; p < h + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            util_err(err, errlen, "%s: unexpected bytes after the header JSON (byte %zu)", path,
                     (size_t)(p - h));
            goto fail;
        }
    if (!cJSON_IsObject(f->json)) {
        util_err(err, errlen, "%s: header is not a JSON object", path);
        goto fail;
    }
    int n = 0;
    for (const cJSON *it = f->json->child; it; it = it->next) n++;
    f->e = CALLOC_CHECK((size_t)n + 1, sizeof(StEntry));
    for (const cJSON *it = f->json->child; it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it)) {
                util_err(err, errlen, "%s: __metadata__ is not an object", path);
                goto fail;
            }
            continue;
        }
        if (st_parse_entry(f, it, &f->e[f->n], err, errlen)) goto fail;
        f->e[f->n].file = f;
        f->n++;
    }
    qsort(f->e, (size_t)f->n, sizeof(StEntry), cmp_entry_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->e[i].name, f->e[i - 1].name)) {
            util_err(err, errlen, "%s: tensor %s appears twice in the header", path, f->e[i].name);
            goto fail;
        }
    // no two byte ranges may overlap (empty ranges overlap nothing)
    StEntry **by = MALLOC_CHECK(((size_t)f->n + 1) * sizeof(StEntry *));
    int m = 0;
    for (int i = 0; i < f->n; i++) if (f->e[i].end > f->e[i].begin) by[m++] = &f->e[i];
    qsort(by, (size_t)m, sizeof(StEntry *), cmp_entry_range);
    for (int i = 1; i < m; i++)
        if (by[i]->begin < by[i - 1]->end) {
            util_err(err, errlen, "%s: tensors %s and %s overlap in the data area", path,
                     by[i - 1]->name, by[i]->name);
            free(by);
            goto fail;
        }
    free(by);
    return 0;
fail:
    st_close(f);
    return -1;
}

StEntry *st_find(StFile *f, const char *name) {
    StEntry key = {.name = name};
    return bsearch(&key, f->e, (size_t)f->n, sizeof(StEntry), cmp_entry_name);
}

int st_check(const StEntry *e, int ndim, const int64_t *shape, char *err, size_t errlen) {
    const StFile *f = e->file;
    int same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
    if (!same) {
        char a[160], b[160];
        shape_str(a, sizeof a, e->ndim, e->shape);
        shape_str(b, sizeof b, ndim, shape);
        return util_err(err, errlen, "%s: tensor %s has shape %s, expected %s", f->path, e->name, a,
                        b);
    }
    if (st_dtypes[e->dtype].kind == DT_OTHER)
        return util_err(err, errlen,
                        "%s: tensor %s has dtype %s; only F32, F16 and BF16 can be loaded", f->path,
                        e->name, st_dtypes[e->dtype].name);
    return 0;
}

// Converts elements [first, first + n) of a checked entry into float32 (cannot fail after
// st_check).
void st_read_f32_range(const StEntry *e, size_t first, size_t n, float *out) {
    const StFile *f = e->file;
    int kind = st_dtypes[e->dtype].kind;
    const uint8_t *src = f->data + e->begin + first * (size_t)st_dtypes[e->dtype].size;
    switch (kind) {
        case DT_F32: memcpy(out, src, n * 4); break;
        case DT_F16:
        case DT_BF16: {
            float (*to_f32)(uint16_t) = kind == DT_F16 ? st_f16_to_f32 : st_bf16_to_f32;
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, src + 2 * i, 2);
                out[i] = to_f32(h);
            }
            break;
        }
        default: DIE("st_read_f32 on an unchecked entry");
    }
}

// The whole entry.
void st_read_f32(const StEntry *e, float *out) {
    st_read_f32_range(e, 0, (size_t)(e->end - e->begin) / (size_t)st_dtypes[e->dtype].size, out);
}

void st_release(const StEntry *e) {
    util_release_pages((void *)(uintptr_t)(e->file->data + e->begin), (size_t)(e->end - e->begin));
}

// ---------------------------------------------------------------------------------------------
// The weights of a checkpoint: model.safetensors, or the shards model.safetensors.index.json
// lists, each validated as above and cross-checked against the index
// ---------------------------------------------------------------------------------------------


void st_set_close(StSet *s) {
    for (int i = 0; i < s->nf; i++) st_close(&s->f[i]);
    free(s->f);
    free(s->paths);
    memset(s, 0, sizeof(*s));
}

StEntry *st_set_find(StSet *s, const char *name) {
    for (int i = 0; i < s->nf; i++) {
        StEntry *e = st_find(&s->f[i], name);
        if (e) return e;
    }
    return NULL;
}

// A shard's name as the index gives it: a plain file name in the checkpoint directory.
static int shard_name_ok(const cJSON *v) {
    if (!cJSON_IsString(v)) return 0;
    const char *n = v->valuestring;
    size_t len = strlen(n);
    return len > 0 && len <= SHARD_NAME_MAX && !strchr(n, '/') && strcmp(n, ".") &&
           strcmp(n, "..");
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Every tensor of every shard is listed in the index, under that shard (ip is the index's path).
static int st_set_check_listed(const StSet *s, const cJSON *wm, const char *ip, char *err,
                               size_t errlen) {
    for (int k = 0; k < s->nf; k++)
        for (int i = 0; i < s->f[k].n; i++) {
            const char *nm = s->f[k].e[i].name;
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(wm, nm);
            if (!v)
                return util_err(err, errlen, "%s: holds tensor %s, which %s does not list",
                                s->f[k].path, nm, ip);
            if (strcmp(v->valuestring, strrchr(s->f[k].path, '/') + 1))
                return util_err(err, errlen, "%s: tensor %s is in two shards (%s and %s)", ip, nm,
                                strrchr(s->f[k].path, '/') + 1, v->valuestring);
        }
    return 0;
}

// The weight_map of index r (file ip): a non-empty object of tensor names (each once) to shard
// file names; *shards (malloc'd, pointing into r) receives the distinct shards in name order.
int st_index_shards(const cJSON *r, const char *ip, const char ***shards, int *nshards,
                        char *err, size_t errlen) {
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(r, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child)
        return util_err(err, errlen, "%s: \"weight_map\" must be a non-empty object", ip);
    int n = 0, nf = 0;
    for (const cJSON *v = wm->child; v; v = v->next) n++;
    const char **names = MALLOC_CHECK((size_t)n * sizeof(*names));
    n = 0;
    for (const cJSON *v = wm->child; v; v = v->next) {
        if (!shard_name_ok(v)) {
            free(names);
            return util_err(err, errlen, "%s: weight_map[\"%.80s\"] must be a file name in the "
                            "checkpoint directory", ip, v->string);
        }
        names[n++] = v->string;
    }
    qsort(names, (size_t)n, sizeof(*names), cmp_str_ptr);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i], names[i - 1])) {
            util_err(err, errlen, "%s: tensor %s appears twice in weight_map", ip, names[i]);
            free(names);
            return -1;
        }
    n = 0;
    for (const cJSON *v = wm->child; v; v = v->next) names[n++] = v->valuestring;
    qsort(names, (size_t)n, sizeof(*names), cmp_str_ptr);
    for (int i = 0; i < n; i++)
        if (!nf || strcmp(names[i], names[nf - 1])) names[nf++] = names[i];
    *shards = names;
    *nshards = nf;
    return 0;
}

// Opens the shards listed in the weight_map of the index file ip in directory d.
static int st_set_open_index(StSet *s, const char *d, const char *ip, char *err, size_t errlen) {
    cJSON *r = fio_read_json(ip, err, errlen);
    if (!r) return -1;
    int rc = -1, nf = 0;
    const char **names = NULL;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(r, "weight_map");
    if (st_index_shards(r, ip, &names, &nf, err, errlen)) goto done;
    s->f = CALLOC_CHECK((size_t)nf, sizeof(StFile));
    s->paths = CALLOC_CHECK((size_t)nf, sizeof(*s->paths));
    for (int i = 0; i < nf; i++) {
        if (fio_path_join(s->paths[i], d, names[i], err, errlen)) goto done;
        if (!fio_exists(d, names[i])) {
            util_err(err, errlen, "%s: shard %s (listed in weight_map) is missing", ip, names[i]);
            goto done;
        }
        if (st_open(&s->f[i], s->paths[i], err, errlen)) goto done;
        s->nf++;
    }
    for (const cJSON *v = wm->child; v; v = v->next) {
        const char *nm[1] = {v->valuestring};
        const char **k = bsearch(nm, names, (size_t)nf, sizeof(*names), cmp_str_ptr);
        if (!st_find(&s->f[k - names], v->string)) {
            util_err(err, errlen, "%s: weight_map puts %s in %s, which does not hold it", ip,
                     v->string, v->valuestring);
            goto done;
        }
    }
    rc = st_set_check_listed(s, wm, ip, err, errlen);
done:
    free(names);
    cJSON_Delete(r);
    if (rc) st_set_close(s);
    return rc;
}

// The weights of checkpoint directory d: model.safetensors, else the index's shards.
int st_set_open(StSet *s, const char *d, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    char ip[FIO_PATH_CAP];
    if (!fio_exists(d, ST_SINGLE) && fio_exists(d, ST_INDEX))
        return fio_path_join(ip, d, ST_INDEX, err, errlen) ||
               st_set_open_index(s, d, ip, err, errlen) ? -1 : 0;
    s->f = CALLOC_CHECK(1, sizeof(StFile));
    s->paths = CALLOC_CHECK(1, sizeof(*s->paths));
    if (fio_path_join(s->paths[0], d, ST_SINGLE, err, errlen) ||
        st_open(&s->f[0], s->paths[0], err, errlen)) {
        st_set_close(s);
        return -1;
    }
    s->nf = 1;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// safetensors writer (F32 or BF16): the header is padded with spaces so the data is 8-byte aligned
// ---------------------------------------------------------------------------------------------

static uint64_t st_out_bytes(const StOut *t, int bf16) {
    uint64_t bytes = bf16 ? 2 : 4;
    for (int d = 0; d < t->ndim; d++) bytes *= (uint64_t)t->shape[d];
    return bytes;
}

// Writes n floats as bfloat16 (round to nearest even), a block at a time.
static int write_bf16(int fd, const float *x, size_t n, const char *path, char *err,
                      size_t errlen) {
    uint16_t buf[8192];
    for (size_t i = 0; i < n; i += 8192) {
        size_t k = n - i < 8192 ? n - i : 8192;
        for (size_t j = 0; j < k; j++) buf[j] = st_f32_to_bf16(x[i + j]);
        if (fio_write_all(fd, buf, k * 2, path, err, errlen)) return -1;
    }
    return 0;
}

// Writes tensors t[0..n) as one safetensors file, F32 or (bf16) BF16.
int st_write(const char *path, const StOut *t, int n, int bf16, char *err, size_t errlen) {
    size_t cap = 64 + (size_t)n * 192, len = 0;
    char *h = MALLOC_CHECK(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t bytes = st_out_bytes(&t[i], bf16);
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                t[i].name, bf16 ? "BF16" : "F32");
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%" PRId64, d ? "," : "", t[i].shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                off, off + bytes);
        off += bytes;
        if (len + 8 >= cap) DIE("safetensors header buffer too small");
    }
    h[len++] = '}';
    while (len % 8) h[len++] = ' ';
    int fd = fio_open_new(path, err, errlen);
    if (fd < 0) { free(h); return -1; }
    uint64_t hl = len;
    int rc = fio_write_all(fd, &hl, 8, path, err, errlen) ||
             fio_write_all(fd, h, len, path, err, errlen);
    free(h);
    for (int i = 0; !rc && i < n; i++) {
        size_t numel = (size_t)st_out_bytes(&t[i], 0) / sizeof(float);
        rc = bf16 ? write_bf16(fd, t[i].data, numel, path, err, errlen)
                  : fio_write_all(fd, t[i].data, numel * sizeof(float), path, err, errlen);
    }
    if (rc) { close(fd); return -1; }
    return fio_close_synced(fd, path, err, errlen);
}


static int cmp_out_name(const void *a, const void *b) {
    return strcmp((*(const StOut *const *)a)->name, (*(const StOut *const *)b)->name);
}

// model.safetensors.index.json for shards; first[s] .. first[s+1] are the tensors of shard s.
static int write_shard_index(const char *tmp, const StOut *o, int n, const int *first, int ns,
                             uint64_t total, char *err, size_t errlen) {
    const StOut **sorted = MALLOC_CHECK((size_t)n * sizeof(*sorted));
    int *shard_of = MALLOC_CHECK((size_t)n * sizeof(int));
    for (int s = 0; s < ns; s++)
        for (int i = first[s]; i < first[s + 1]; i++) shard_of[i] = s;
    for (int i = 0; i < n; i++) sorted[i] = &o[i];
    qsort(sorted, (size_t)n, sizeof(*sorted), cmp_out_name);   // sorted keys, as transformers
    cJSON *r = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *wm = cJSON_CreateObject();
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON_AddItemToObject(r, "metadata", meta);
    char name[64], p[FIO_PATH_CAP];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors",
                 shard_of[sorted[i] - o] + 1, ns);
        cJSON_AddStringToObject(wm, sorted[i]->name, name);
    }
    cJSON_AddItemToObject(r, "weight_map", wm);
    if (!r || !meta || !wm) DIE("cJSON: out of memory");
    int rc =
        fio_path_join(p, tmp, ST_INDEX, err, errlen) || fio_write_json(p, r, err, errlen) ? -1 : 0;
    cJSON_Delete(r);
    free(sorted);
    free(shard_of);
    return rc;
}

// The weights: model.safetensors, or (past max_shard_bytes) shards and their index. Shards are
// filled in model order, a new one started when the next tensor would not fit (transformers'
// rule), so a tensor larger than the limit has a shard of its own.
int st_write_weights(const char *dir, const StOut *o, int n, int bf16, uint64_t max_shard_bytes,
                     char *err, size_t errlen) {
    int rc = 0;
    uint64_t cap = max_shard_bytes, total = 0;
    for (int i = 0; i < n; i++) total += st_out_bytes(&o[i], bf16);
    char p[FIO_PATH_CAP], name[64];
    if (!cap || total <= cap)
        return fio_path_join(p, dir, ST_SINGLE, err, errlen) || st_write(p, o, n, bf16, err, errlen)
                   ? -1 : 0;
    int *first = MALLOC_CHECK(((size_t)n + 1) * sizeof(int)), ns = 0;
    uint64_t used = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = st_out_bytes(&o[i], bf16);
        if (!ns || (used && used + b > cap)) { first[ns++] = i; used = 0; }
        used += b;
    }
    first[ns] = n;
    for (int s = 0; !rc && s < ns; s++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, ns);
        rc = fio_path_join(p, dir, name, err, errlen) ||
             st_write(p, o + first[s], first[s + 1] - first[s], bf16, err, errlen);
    }
    if (!rc) rc = write_shard_index(dir, o, n, first, ns, total, err, errlen);
    free(first);
    return rc ? -1 : 0;
}

