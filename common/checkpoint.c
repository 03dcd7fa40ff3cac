// Checkpoint directories: config.json, model.safetensors, tokenizer files, trainer state.
// See checkpoint.h for the layout, the atomic-save protocol and the reader rule.
#include "checkpoint.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <dirent.h>
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

#define PATH_CAP        4096
#define DIR_CAP         (PATH_CAP - 64)   // a checkpoint path leaves room for ".tmp.<pid>.<n>"
#define ST_HEADER_MAX   (100u << 20)      // the safetensors format's own limit on the header
#define JSON_FILE_MAX   (16u << 20)       // config.json / trainer_state.json
#define ST_MAX_DIMS     8
#define EXACT_INT_MAX   9007199254740992.0  // 2^53: JSON numbers are exact integers up to here
#define STATE_FORMAT    "rlhf.c trainer state"
#define STATE_VERSION   1

// ---------------------------------------------------------------------------------------------
// Paths and small file-system helpers
// ---------------------------------------------------------------------------------------------

// Copies dir without trailing slashes into out[DIR_CAP] ("/" stays "/").
static int norm_dir(const char *dir, char *out, char *err, size_t errlen) {
    if (!dir || !dir[0]) return util_err(err, errlen, "checkpoint: empty directory path");
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n >= DIR_CAP) return util_err(err, errlen, "checkpoint: path too long: %.80s...", dir);
    memcpy(out, dir, n);
    out[n] = 0;
    return 0;
}

static int path_join(char *out, const char *a, const char *b, char *err, size_t errlen) {
    int n = snprintf(out, PATH_CAP, "%s/%s", a, b);
    if (n < 0 || n >= PATH_CAP)
        return util_err(err, errlen, "checkpoint: path too long: %s/%s", a, b);
    return 0;
}

// Parent directory of a normalised path, and the last component.
static void path_split(const char *d, char *parent, char *base) {
    const char *slash = strrchr(d, '/');
    if (!slash) { strcpy(parent, "."); strcpy(base, d); return; }
    if (slash == d) strcpy(parent, "/");
    else { memcpy(parent, d, (size_t)(slash - d)); parent[slash - d] = 0; }
    strcpy(base, slash + 1);
}

enum { PK_ABSENT = 0, PK_DIR = 1, PK_OTHER = 2 };
static int path_kind(const char *p) {
    struct stat st;
    if (lstat(p, &st)) return errno == ENOENT || errno == ENOTDIR ? PK_ABSENT : PK_OTHER;
    if (S_ISLNK(st.st_mode)) { if (stat(p, &st)) return PK_OTHER; }   // follow a link to a dir
    return S_ISDIR(st.st_mode) ? PK_DIR : PK_OTHER;
}

static int file_exists(const char *dir, const char *name) {
    char p[PATH_CAP];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) return 0;
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int write_all(int fd, const void *buf, size_t n, const char *path, char *err,
                     size_t errlen) {
    const char *p = buf;
    while (n) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return util_err(err, errlen, "%s: write failed: %s", path, strerror(errno));
        }
        if (w == 0) return util_err(err, errlen, "%s: write failed: no progress", path);
        p += w; n -= (size_t)w;
    }
    return 0;
}

static int open_new(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) return util_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    return fd;
}

// fsync + close, reporting either failure (delayed write errors such as ENOSPC show up here).
static int close_synced(int fd, const char *path, char *err, size_t errlen) {
    if (fsync(fd)) {
        int e = errno;
        close(fd);
        return util_err(err, errlen, "%s: fsync failed: %s", path, strerror(e));
    }
    if (close(fd)) return util_err(err, errlen, "%s: close failed: %s", path, strerror(errno));
    return 0;
}

static int fsync_dir(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return util_err(err, errlen, "%s: cannot open directory: %s", path, strerror(errno));
    int rc = fsync(fd), e = errno;
    close(fd);
    if (rc && e != EINVAL && e != ENOTSUP)   // some file systems cannot sync directories
        return util_err(err, errlen, "%s: fsync failed: %s", path, strerror(e));
    return 0;
}

static int write_file(const char *path, const void *data, size_t n, char *err, size_t errlen) {
    int fd = open_new(path, err, errlen);
    if (fd < 0) return -1;
    if (write_all(fd, data, n, path, err, errlen)) { close(fd); return -1; }
    return close_synced(fd, path, err, errlen);
}

// Opens path for reading, a regular file (its stat in *st): the descriptor, or -1.
static int open_regular(const char *path, struct stat *st, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return util_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) || !S_ISREG(st->st_mode)) {
        close(fd);
        return util_err(err, errlen, "%s: not a regular file", path);
    }
    return fd;
}

// Reads a whole small file (at most cap bytes) into a NUL-terminated malloc'd buffer.
static int read_small_file(const char *path, size_t cap, char **out, size_t *len, char *err,
                           size_t errlen) {
    struct stat st;
    int fd = open_regular(path, &st, err, errlen);
    if (fd < 0) return -1;
    if ((uint64_t)st.st_size > cap) {
        close(fd);
        return util_err(err, errlen, "%s: file is %lld bytes, more than the %zu allowed", path,
                        (long long)st.st_size, cap);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = MALLOC_CHECK(n + 1);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) { free(buf); return util_err(err, errlen, "%s: read failed", path); }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

static int copy_file(const char *src, const char *dst, char *err, size_t errlen) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return util_err(err, errlen, "%s: cannot open: %s", src, strerror(errno));
    int out = open_new(dst, err, errlen);
    if (out < 0) { close(in); return -1; }
    char *buf = MALLOC_CHECK(1 << 20);
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = util_err(err, errlen, "%s: read failed: %s", src, strerror(errno));
            break;
        }
        if (r == 0) break;
        if (write_all(out, buf, (size_t)r, dst, err, errlen)) { rc = -1; break; }
    }
    free(buf);
    close(in);
    if (rc) { close(out); return -1; }
    return close_synced(out, dst, err, errlen);
}

// Removes a directory that holds only plain files (a checkpoint or a temporary one), removing
// config.json last so that a half-removed directory never looks like a complete checkpoint to
// anything but the reader rule. Refuses (touching nothing) if it holds a subdirectory.
static int remove_flat_dir(const char *path, char *err, size_t errlen) {
    for (int pass = 0; pass < 3;
         pass++) { // 0: check, 1: everything but config.json, 2: config.json
        DIR *d = opendir(path);
        if (!d)
            return util_err(err, errlen, "%s: cannot open directory: %s", path, strerror(errno));
        struct dirent *e;
        int rc = 0;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            int is_config = !strcmp(e->d_name, "config.json");
            if (pass == 2 && !is_config) continue;
            if (pass == 1 && is_config) continue;
            char p[PATH_CAP];
            if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) >= (int)sizeof p) {
                rc = util_err(err, errlen, "%s: name too long", path);
                break;
            }
            struct stat st;
            if (pass == 0) {
                if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
                    rc = util_err(err, errlen, "not removing %s: it holds a directory (%s)", path,
                                  e->d_name);
                    break;
                }
            } else if (unlink(p) && errno != ENOENT) {
                rc = util_err(err, errlen, "%s: cannot remove: %s", p, strerror(errno));
                break;
            }
        }
        closedir(d);
        if (rc) return -1;
    }
    if (rmdir(path))
        return util_err(err, errlen, "%s: cannot remove directory: %s", path, strerror(errno));
    return 0;
}

// The reader rule: DIR if it exists, else DIR.old if that exists.
static int resolve_dir(const char *dir, char *out, int *from_old, char *err, size_t errlen) {
    char d[DIR_CAP];
    if (norm_dir(dir, d, err, errlen)) return -1;
    *from_old = 0;
    int k = path_kind(d);
    if (k == PK_DIR) { strcpy(out, d); return 0; }
    if (k == PK_OTHER) return util_err(err, errlen, "%s: not a checkpoint directory", d);
    snprintf(out, PATH_CAP, "%s.old", d);
    if (path_kind(out) == PK_DIR) { *from_old = 1; return 0; }
    return util_err(err, errlen, "%s: no such checkpoint directory", d);
}

int ckpt_recover(const char *dir, char *err, size_t errlen) {
    char d[DIR_CAP], old[PATH_CAP], parent[PATH_CAP], base[PATH_CAP];
    if (norm_dir(dir, d, err, errlen)) return -1;
    snprintf(old, sizeof old, "%s.old", d);
    path_split(d, parent, base);
    int kd = path_kind(d), ko = path_kind(old);
    if (kd == PK_ABSENT && ko == PK_DIR) {
        // crashed between "DIR -> DIR.old" and "DIR.tmp -> DIR": DIR.old is complete
        if (rename(old, d))
            return util_err(err, errlen, "%s: cannot rename to %s: %s", old, d, strerror(errno));
        if (fsync_dir(parent, err, errlen)) return -1;
    } else if (kd == PK_DIR && ko == PK_DIR) {
        // crashed after the new DIR was in place: DIR.old is garbage
        if (remove_flat_dir(old, err, errlen)) return -1;
    }
    DIR *pd = opendir(parent);
    if (!pd) return 0;   // no parent: nothing to clean (a save reports the real problem)
    char prefix[PATH_CAP + 8];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    size_t pl = strlen(prefix);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(pd))) {
        if (strncmp(e->d_name, prefix, pl)) continue;
        char p[PATH_CAP];
        if (snprintf(p, sizeof p, "%s/%s", parent, e->d_name) >= (int)sizeof p) continue;
        if (path_kind(p) != PK_DIR) continue;
        if (remove_flat_dir(p, err, errlen)) { rc = -1; break; }
    }
    closedir(pd);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Half precision
// ---------------------------------------------------------------------------------------------

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float ckpt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, ex = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (ex == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));        // inf, NaN
    if (ex) return bits_to_f32(sign | ((ex + 112u) << 23) | (man << 13));        // normal
    float v = (float)man * 0x1p-24f;                                            // zero, subnormal
    return sign ? -v : v;
}

float ckpt_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

// ---------------------------------------------------------------------------------------------
// JSON helpers (cJSON)
// ---------------------------------------------------------------------------------------------

// An integral JSON number in [lo, hi]. Returns 1 found, 0 absent (or null when null_ok), -1 bad.
static int json_get_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi, int null_ok,
                        int64_t *out, const char *path, char *err, size_t errlen) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return 0;
    if (null_ok && cJSON_IsNull(it)) return 0;
    double v = it->valuedouble;
    if (!cJSON_IsNumber(it) || !isfinite(v) || v != floor(v) || fabs(v) > EXACT_INT_MAX)
        return util_err(err, errlen, "%s: \"%s\" must be an integer", path, key);
    if (v < (double)lo || v > (double)hi)
        return util_err(err, errlen, "%s: \"%s\" is %.0f, outside %" PRId64 "..%" PRId64, path, key,
                        v, lo, hi);
    *out = (int64_t)v;
    return 1;
}

static int json_is_uint(const cJSON *it, uint64_t max, uint64_t *out) {
    double v = it ? it->valuedouble : 0;
    if (!cJSON_IsNumber(it) || !isfinite(v) || v < 0 || v != floor(v) || v > EXACT_INT_MAX ||
        v > (double)max)
        return 0;
    *out = (uint64_t)v;
    return 1;
}

// Decimal string -> u64 / i64, the whole string, no sign for u64.
static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !s[0] || s[0] < '0' || s[0] > '9') return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

static int parse_i64(const char *s, int64_t *out) {
    if (!s || !s[0] || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

// Prints a cJSON tree to path (new file, fsynced).
static int write_json(const char *path, cJSON *root, char *err, size_t errlen) {
    char *txt = cJSON_Print(root);
    if (!txt) DIE("cJSON_Print: out of memory");
    size_t n = strlen(txt);
    char *buf = MALLOC_CHECK(n + 2);
    memcpy(buf, txt, n);
    buf[n] = '\n';
    cJSON_free(txt);
    int rc = write_file(path, buf, n + 1, err, errlen);
    free(buf);
    return rc;
}

static cJSON *json_parse_file(const char *path, char *err, size_t errlen) {
    char *txt = NULL;
    size_t n = 0;
    if (read_small_file(path, JSON_FILE_MAX, &txt, &n, err, errlen)) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(txt, n, &end, 0);
    if (!root) {
        size_t at = end && end >= txt && end <= txt + n ? (size_t)(end - txt) : 0;
        util_err(err, errlen, "%s: invalid JSON near byte %zu", path, at);
    } else {
        for (const char *p = end; p < txt + n; p++)
            if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
                util_err(err, errlen, "%s: unexpected data after the JSON value at byte %zu", path,
                         (size_t)(p - txt));
                cJSON_Delete(root);
                root = NULL;
                break;
            }
        if (root && !cJSON_IsObject(root)) {
            util_err(err, errlen, "%s: expected a JSON object", path);
            cJSON_Delete(root);
            root = NULL;
        }
    }
    free(txt);
    return root;
}

// ---------------------------------------------------------------------------------------------
// safetensors reader: u64 header length N, N bytes of JSON, then the data area
// ---------------------------------------------------------------------------------------------

enum { DT_F32, DT_F16, DT_BF16, DT_OTHER };
static const struct { const char *name; int size; int kind; } st_dtypes[] = {
    {"F32", 4, DT_F32}, {"F16", 2, DT_F16}, {"BF16", 2, DT_BF16}, {"F64", 8, DT_OTHER},
    {"I64", 8, DT_OTHER}, {"I32", 4, DT_OTHER}, {"I16", 2, DT_OTHER}, {"I8", 1, DT_OTHER},
    {"U64", 8, DT_OTHER}, {"U32", 4, DT_OTHER}, {"U16", 2, DT_OTHER}, {"U8", 1, DT_OTHER},
    {"BOOL", 1, DT_OTHER}, {"F8_E4M3", 1, DT_OTHER}, {"F8_E5M2", 1, DT_OTHER}};
#define ST_NUM_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

typedef struct {
    const char *name;          // points into the parsed header (owned by StFile.json)
    int dtype;                 // index into st_dtypes
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;       // byte range inside the data area
    int used;                  // claimed by the loader (anything unclaimed is an error)
} StEntry;

typedef struct {
    const char *path;
    uint8_t *map;              // the whole file, read-only
    uint64_t size;
    const uint8_t *data;       // data area = map + 8 + header length
    uint64_t data_size;
    cJSON *json;
    StEntry *e;                // sorted by name
    int n;
} StFile;

static void st_close(StFile *f) {
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

static int st_open(StFile *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof(*f));
    f->path = path;
    struct stat st;
    int fd = open_regular(path, &st, err, errlen);
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

static StEntry *st_find(StFile *f, const char *name) {
    StEntry key = {.name = name};
    return bsearch(&key, f->e, (size_t)f->n, sizeof(StEntry), cmp_entry_name);
}

static int st_check(const StFile *f, const StEntry *e, int ndim, const int64_t *shape, char *err,
                    size_t errlen) {
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

// Converts a checked entry into float32 (cannot fail after st_check).
static void st_read_f32(const StFile *f, const StEntry *e, float *out) {
    const uint8_t *src = f->data + e->begin;
    size_t n = (size_t)(e->end - e->begin) / (size_t)st_dtypes[e->dtype].size;
    switch (st_dtypes[e->dtype].kind) {
        case DT_F32: memcpy(out, src, n * 4); break;
        case DT_F16:
        case DT_BF16: {
            float (*to_f32)(uint16_t) =
                st_dtypes[e->dtype].kind == DT_F16 ? ckpt_f16_to_f32 : ckpt_bf16_to_f32;
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

// ---------------------------------------------------------------------------------------------
// safetensors writer (F32 only): the header is padded with spaces so the data is 8-byte aligned
// ---------------------------------------------------------------------------------------------

typedef struct { char name[96]; int ndim; int64_t shape[2]; const float *data; } StOut;

static int st_write(const char *path, const StOut *t, int n, char *err, size_t errlen) {
    size_t cap = 64 + (size_t)n * 192, len = 0;
    char *h = MALLOC_CHECK(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t bytes = 4;
        for (int d = 0; d < t[i].ndim; d++) bytes *= (uint64_t)t[i].shape[d];
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                                t[i].name);
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%" PRId64, d ? "," : "", t[i].shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                                off, off + bytes);
        off += bytes;
        if (len + 8 >= cap) DIE("safetensors header buffer too small");
    }
    h[len++] = '}';
    while (len % 8) h[len++] = ' ';
    int fd = open_new(path, err, errlen);
    if (fd < 0) { free(h); return -1; }
    uint64_t hl = len;
    int rc = write_all(fd, &hl, 8, path, err, errlen) || write_all(fd, h, len, path, err, errlen);
    free(h);
    for (int i = 0; !rc && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        rc = write_all(fd, t[i].data, numel * sizeof(float), path, err, errlen);
    }
    if (rc) { close(fd); return -1; }
    return close_synced(fd, path, err, errlen);
}

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

// Shortest decimal that reads back as the same float ("1e-05" for 1e-5f).
static double float_as_short_double(float x) {
    char buf[40];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return strtod(buf, NULL);
}

static int config_write(const char *path, const ModelConfig *c, const CkptSaveOptions *opt,
                        char *err, size_t errlen) {
    cJSON *r = cJSON_CreateObject(), *arch = cJSON_CreateArray();
    if (c->lm_head) cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    if (c->score_head)
        cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2ForSequenceClassification"));
    cJSON_AddItemToObject(r, "architectures", arch);
    cJSON_AddStringToObject(r, "model_type", "gpt2");
    cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(r, "n_positions", c->max_seq_len);
    cJSON_AddNumberToObject(r, "n_ctx", c->max_seq_len);
    cJSON_AddNumberToObject(r, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(r, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(r, "n_head", c->n_head);
    cJSON_AddNumberToObject(r, "layer_norm_epsilon", float_as_short_double(c->ln_eps));
    cJSON_AddStringToObject(r, "activation_function", "gelu_new");
    cJSON_AddTrueToObject(r, "tie_word_embeddings");
    if (c->score_head) cJSON_AddNumberToObject(r, "num_labels", 1);
    if (opt && opt->has_token_ids) {
        cJSON_AddNumberToObject(r, "bos_token_id", opt->bos_token_id);
        cJSON_AddNumberToObject(r, "eos_token_id", opt->eos_token_id);
    }
    cJSON_AddStringToObject(r, "torch_dtype", "float32");
    if (!r || !arch) DIE("cJSON: out of memory");
    int rc = write_json(path, r, err, errlen);
    cJSON_Delete(r);
    return rc;
}

static int config_parse(const char *path, ModelConfig *c, CkptInfo *info, char *err,
                        size_t errlen) {
    cJSON *r = json_parse_file(path, err, errlen);
    if (!r) return -1;
    int rc = -1;
    memset(c, 0, sizeof(*c));
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, "model_type");
    if (it && (!cJSON_IsString(it) || strcmp(it->valuestring, "gpt2"))) {
        util_err(err, errlen, "%s: model_type must be \"gpt2\"", path);
        goto done;
    }
    static const char *required[] = {"n_layer", "n_head", "n_embd", "vocab_size"};
    int64_t v[4], npos = -1, nctx = -1, x;
    for (int i = 0; i < 4; i++) {
        int got = json_get_int(r, required[i], INT32_MIN, INT32_MAX, 0, &v[i], path, err, errlen);
        if (got < 0) goto done;
        if (!got) { util_err(err, errlen, "%s: missing key \"%s\"", path, required[i]); goto done; }
    }
    c->n_layer = (int)v[0]; c->n_head = (int)v[1]; c->n_embd = (int)v[2]; c->vocab_size = (int)v[3];
    if (json_get_int(r, "n_positions", INT32_MIN, INT32_MAX, 0, &npos, path, err, errlen) < 0)
        goto done;
    if (json_get_int(r, "n_ctx", INT32_MIN, INT32_MAX, 0, &nctx, path, err, errlen) < 0) goto done;
    if (npos < 0 && nctx < 0) {
        util_err(err, errlen, "%s: missing key \"n_positions\"", path);
        goto done;
    }
    if (npos >= 0 && nctx >= 0 && npos != nctx) {
        util_err(err, errlen, "%s: n_positions (%" PRId64 ") and n_ctx (%" PRId64 ") differ", path,
                 npos, nctx);
        goto done;
    }
    c->max_seq_len = (int)(npos >= 0 ? npos : nctx);
    c->ln_eps = 1e-5f;
    it = cJSON_GetObjectItemCaseSensitive(r, "layer_norm_epsilon");
    if (it) {
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
            util_err(err, errlen, "%s: \"layer_norm_epsilon\" must be a number", path);
            goto done;
        }
        c->ln_eps = (float)it->valuedouble;
    }
    it = cJSON_GetObjectItemCaseSensitive(r, "activation_function");
    if (it && (!cJSON_IsString(it) || (strcmp(it->valuestring, "gelu_new") &&
                                       strcmp(it->valuestring, "gelu_pytorch_tanh")))) {
        util_err(err, errlen,
                 "%s: activation_function must be \"gelu_new\" (GELU, tanh approximation)", path);
        goto done;
    }
    int64_t ninner;
    int got = json_get_int(r, "n_inner", INT32_MIN, INT32_MAX, 1, &ninner, path, err, errlen);
    if (got < 0) goto done;
    if (got && ninner != 4 * (int64_t)c->n_embd) {
        util_err(err, errlen, "%s: n_inner must be 4 * n_embd or null", path);
        goto done;
    }
    static const struct { const char *key; int want;
    } flags[] = {{"tie_word_embeddings", 1},
                 {"scale_attn_weights", 1},
                 {"scale_attn_by_inverse_layer_idx", 0},
                 {"add_cross_attention", 0}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        it = cJSON_GetObjectItemCaseSensitive(r, flags[i].key);
        if (it && (!cJSON_IsBool(it) || cJSON_IsTrue(it) != flags[i].want)) {
            util_err(err, errlen, "%s: \"%s\" must be %s (GPT-2 as this engine runs it)", path,
                     flags[i].key, flags[i].want ? "true" : "false");
            goto done;
        }
    }
    it = cJSON_GetObjectItemCaseSensitive(r, "architectures");
    if (!it || cJSON_IsNull(it)) c->lm_head = 1;
    else {
        if (!cJSON_IsArray(it) || !it->child) {
            util_err(err, errlen, "%s: \"architectures\" must be a non-empty array of names", path);
            goto done;
        }
        for (const cJSON *a = it->child; a; a = a->next) {
            if (cJSON_IsString(a) && (!strcmp(a->valuestring, "GPT2LMHeadModel") ||
                                      !strcmp(a->valuestring, "GPT2Model")))
                c->lm_head = 1;
            else if (cJSON_IsString(a) && !strcmp(a->valuestring, "GPT2ForSequenceClassification"))
                c->score_head = 1;
            else {
                util_err(err, errlen, "%s: unsupported architecture %s%.60s%s (GPT2LMHeadModel, "
                         "GPT2ForSequenceClassification)", path, cJSON_IsString(a) ? "\"" : "",
                         cJSON_IsString(a) ? a->valuestring : "(not a string)",
                         cJSON_IsString(a) ? "\"" : "");
                goto done;
            }
        }
    }
    if (c->score_head) {
        got = json_get_int(r, "num_labels", INT32_MIN, INT32_MAX, 0, &x, path, err, errlen);
        if (got < 0) goto done;
        if (got && x != 1) {
            util_err(err, errlen, "%s: num_labels is %" PRId64 "; a reward/value head has 1", path,
                     x);
            goto done;
        }
    }
    int ids[2] = {-1, -1};
    static const char *idkeys[2] = {"bos_token_id", "eos_token_id"};
    for (int i = 0; i < 2; i++) {
        got = json_get_int(r, idkeys[i], 0, (int64_t)c->vocab_size - 1, 1, &x, path, err, errlen);
        if (got < 0) goto done;
        if (got) ids[i] = (int)x;
    }
    char verr[256];
    if (model_config_validate(c, verr, sizeof verr)) {
        util_err(err, errlen, "%s: %s", path, verr);
        goto done;
    }
    if (info) { info->bos_token_id = ids[0]; info->eos_token_id = ids[1]; }
    rc = 0;
done:
    cJSON_Delete(r);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Trainer state
// ---------------------------------------------------------------------------------------------

void ckpt_state_init(CkptTrainerState *st) { memset(st, 0, sizeof(*st)); }

static int state_name_ok(const char *name, char *err, size_t errlen) {
    if (!name || !name[0]) return util_err(err, errlen, "trainer state: empty entry name");
    if (strlen(name) >= CKPT_NAME_MAX)
        return util_err(err, errlen, "trainer state: entry name too long: %.80s", name);
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
            return util_err(err, errlen, "trainer state: entry name with a control, quote or "
                            "backslash character: %s", name);
    return 0;
}

// The trainer state's two tables (ints, floats) hold entries whose first member is the name:
// these helpers see a table as n entries of stride bytes and kind ("int" or "float").
static int state_find(const void *entries, int n, size_t stride, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp((const char *)entries + (size_t)i * stride, name)) return i;
    return -1;
}

// Index of the entry called name, added at the end when absent; -1 when the table is full.
static int state_slot(void *entries, int *n, size_t stride, const char *kind, const char *name,
                      char *err, size_t errlen) {
    int i = state_find(entries, *n, stride, name);
    if (i >= 0) return i;
    if (*n >= CKPT_MAX_ENTRIES)
        return util_err(err, errlen, "trainer state: more than %d %s entries", CKPT_MAX_ENTRIES,
                        kind);
    snprintf((char *)entries + (size_t)*n * stride, CKPT_NAME_MAX, "%s", name);
    return (*n)++;
}

int ckpt_state_set_int(CkptTrainerState *st, const char *name, int64_t value, char *err,
                       size_t errlen) {
    if (state_name_ok(name, err, errlen)) return -1;
    int i = state_slot(st->ints, &st->n_ints, sizeof st->ints[0], "int", name, err, errlen);
    if (i < 0) return -1;
    st->ints[i].value = value;
    return 0;
}

int ckpt_state_set_float(CkptTrainerState *st, const char *name, double value, char *err,
                         size_t errlen) {
    if (state_name_ok(name, err, errlen)) return -1;
    if (!isfinite(value)) return util_err(err, errlen, "trainer state: %s is not finite", name);
    int i = state_slot(st->floats, &st->n_floats, sizeof st->floats[0], "float", name, err,
                       errlen);
    if (i < 0) return -1;
    st->floats[i].value = value;
    return 0;
}

int ckpt_state_get_int(const CkptTrainerState *st, const char *name, int64_t *value, char *err,
                       size_t errlen) {
    int i = state_find(st->ints, st->n_ints, sizeof st->ints[0], name);
    if (i < 0) return util_err(err, errlen, "trainer state: no int entry \"%s\"", name);
    *value = st->ints[i].value;
    return 0;
}

int ckpt_state_get_float(const CkptTrainerState *st, const char *name, double *value, char *err,
                         size_t errlen) {
    int i = state_find(st->floats, st->n_floats, sizeof st->floats[0], name);
    if (i < 0) return util_err(err, errlen, "trainer state: no float entry \"%s\"", name);
    *value = st->floats[i].value;
    return 0;
}

// Entry i of a table the caller filled: its name is terminated and valid...
static int state_entry_name_ok(const void *entries, int i, size_t stride, const char *kind,
                               char *err, size_t errlen) {
    const char *name = (const char *)entries + (size_t)i * stride;
    if (!memchr(name, 0, CKPT_NAME_MAX) || state_name_ok(name, err, errlen))
        return util_err(err, errlen, "trainer state: bad %s entry name (#%d)", kind, i);
    return 0;
}

// ...and no entry before it has the same name.
static int state_entry_unique(const void *entries, int i, size_t stride, const char *kind,
                              char *err, size_t errlen) {
    const char *name = (const char *)entries + (size_t)i * stride;
    if (state_find(entries, i, stride, name) >= 0)
        return util_err(err, errlen, "trainer state: %s %s twice", kind, name);
    return 0;
}

static int state_validate(const CkptTrainerState *st, char *err, size_t errlen) {
    if (st->step < 0 || (double)st->step > EXACT_INT_MAX)
        return util_err(err, errlen, "trainer state: step %" PRId64 " outside 0..2^53", st->step);
    if (st->n_ints < 0 || st->n_ints > CKPT_MAX_ENTRIES || st->n_floats < 0 ||
        st->n_floats > CKPT_MAX_ENTRIES)
        return util_err(err, errlen, "trainer state: bad entry counts");
    size_t int_size = sizeof st->ints[0], float_size = sizeof st->floats[0];
    for (int i = 0; i < st->n_ints; i++)
        if (state_entry_name_ok(st->ints, i, int_size, "int", err, errlen) ||
            state_entry_unique(st->ints, i, int_size, "int", err, errlen))
            return -1;
    for (int i = 0; i < st->n_floats; i++) {
        if (state_entry_name_ok(st->floats, i, float_size, "float", err, errlen)) return -1;
        if (!isfinite(st->floats[i].value))
            return util_err(err, errlen, "trainer state: %s is not finite", st->floats[i].name);
        if (state_entry_unique(st->floats, i, float_size, "float", err, errlen)) return -1;
    }
    return 0;
}

static int state_write_json(const char *path, const CkptTrainerState *st, char *err,
                            size_t errlen) {
    cJSON *r = cJSON_CreateObject(), *rng = cJSON_CreateArray(), *ints = cJSON_CreateObject(),
          *fl = cJSON_CreateObject();
    char num[32];
    cJSON_AddStringToObject(r, "format", STATE_FORMAT);
    cJSON_AddNumberToObject(r, "version", STATE_VERSION);
    cJSON_AddNumberToObject(r, "step", (double)st->step);
    for (int i = 0; i < 4; i++) {
        snprintf(num, sizeof num, "%" PRIu64, st->rng.s[i]);
        cJSON_AddItemToArray(rng, cJSON_CreateString(num));
    }
    cJSON_AddItemToObject(r, "rng", rng);
    for (int i = 0; i < st->n_ints; i++) {
        snprintf(num, sizeof num, "%" PRId64, st->ints[i].value);
        cJSON_AddStringToObject(ints, st->ints[i].name, num);
    }
    cJSON_AddItemToObject(r, "ints", ints);
    for (int i = 0; i < st->n_floats; i++) {
        // cJSON prints a double with 15 digits whenever that is within an epsilon of it, which
        // loses the last bit (0.1 + 0.2 becomes 0.3): print the shortest exact form ourselves
        char buf[40];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, st->floats[i].value);
            if (strtod(buf, NULL) == st->floats[i].value) break;
        }
        cJSON_AddItemToObject(fl, st->floats[i].name, cJSON_CreateRaw(buf));
    }
    cJSON_AddItemToObject(r, "floats", fl);
    if (!r || !rng || !ints || !fl) DIE("cJSON: out of memory");
    int rc = write_json(path, r, err, errlen);
    cJSON_Delete(r);
    return rc;
}

// Reads the object key ("ints" or "floats") of trainer_state.json into st.
static int state_read_entries(const cJSON *r, const char *key, const char *path,
                              CkptTrainerState *st, char *err, size_t errlen) {
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(r, key);
    if (!cJSON_IsObject(obj))
        return util_err(err, errlen, "%s: \"%s\" must be an object", path, key);
    int ints = !strcmp(key, "ints");
    char sub[256];
    for (const cJSON *a = obj->child; a; a = a->next) {
        int64_t iv = 0;
        if (ints ? !cJSON_IsString(a) || !parse_i64(a->valuestring, &iv) : !cJSON_IsNumber(a))
            return util_err(err, errlen, "%s: %s.%.60s is not a %s", path, key, a->string,
                            ints ? "64-bit decimal string" : "number");
        int found = ints ? state_find(st->ints, st->n_ints, sizeof st->ints[0], a->string)
                         : state_find(st->floats, st->n_floats, sizeof st->floats[0], a->string);
        if (found >= 0)
            return util_err(err, errlen, "%s: %s.%.60s appears twice", path, key, a->string);
        if (ints ? ckpt_state_set_int(st, a->string, iv, sub, sizeof sub)
                 : ckpt_state_set_float(st, a->string, a->valuedouble, sub, sizeof sub))
            return util_err(err, errlen, "%s: %s", path, sub);
    }
    return 0;
}

static int state_parse_json(const char *path, CkptTrainerState *out, char *err, size_t errlen) {
    cJSON *r = json_parse_file(path, err, errlen);
    if (!r) return -1;
    CkptTrainerState *st = CALLOC_CHECK(1, sizeof(*st));
    int rc = -1;
    for (const cJSON *k = r->child; k; k = k->next)
        if (strcmp(k->string, "format") && strcmp(k->string, "version") &&
            strcmp(k->string, "step") && strcmp(k->string, "rng") && strcmp(k->string, "ints") &&
            strcmp(k->string, "floats")) {
            util_err(err, errlen, "%s: unknown key \"%.60s\"", path, k->string);
            goto done;
        }
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, "format");
    if (!cJSON_IsString(it) || strcmp(it->valuestring, STATE_FORMAT)) {
        util_err(err, errlen, "%s: \"format\" must be \"%s\"", path, STATE_FORMAT);
        goto done;
    }
    int64_t x;
    int got = json_get_int(r, "version", 0, INT32_MAX, 0, &x, path, err, errlen);
    if (got < 0) goto done;
    if (!got || x != STATE_VERSION) {
        util_err(err, errlen, "%s: \"version\" must be %d", path, STATE_VERSION);
        goto done;
    }
    got = json_get_int(r, "step", 0, INT64_MAX, 0, &st->step, path, err, errlen);
    if (got < 0) goto done;
    if (!got) { util_err(err, errlen, "%s: missing key \"step\"", path); goto done; }
    it = cJSON_GetObjectItemCaseSensitive(r, "rng");
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 4) {
        util_err(err, errlen, "%s: \"rng\" must be 4 decimal strings", path);
        goto done;
    }
    int i = 0;
    for (const cJSON *a = it->child; a; a = a->next, i++)
        if (!cJSON_IsString(a) || !parse_u64(a->valuestring, &st->rng.s[i])) {
            util_err(err, errlen, "%s: rng[%d] is not an unsigned 64-bit decimal string", path, i);
            goto done;
        }
    if (!(st->rng.s[0] | st->rng.s[1] | st->rng.s[2] | st->rng.s[3])) {
        util_err(err, errlen, "%s: rng state is all zero", path);
        goto done;
    }
    if (state_read_entries(r, "ints", path, st, err, errlen) ||
        state_read_entries(r, "floats", path, st, err, errlen))
        goto done;
    *out = *st;
    rc = 0;
done:
    free(st);
    cJSON_Delete(r);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Save
// ---------------------------------------------------------------------------------------------

// Tensor list of a model for the writer: prefix "transformer." for the transformer (HF
// save_pretrained naming), bare "score.weight"; src selects params (0), m (1) or v (2).
static StOut *model_outputs(const Model *m, int src, int *n) {
    int cnt = model_tensor_count(m);
    StOut *o = CALLOC_CHECK((size_t)cnt, sizeof(StOut));
    for (int i = 0; i < cnt; i++) {
        ModelTensor t;
        model_tensor(m, i, &t);
        if (src == 0)
            snprintf(o[i].name, sizeof o[i].name, "%s%s",
                     strcmp(t.name, "score.weight") ? "transformer." : "", t.name);
        else snprintf(o[i].name, sizeof o[i].name, "%s.%s", src == 1 ? "m" : "v", t.name);
        o[i].ndim = t.ndim;
        o[i].shape[0] = t.shape[0];
        o[i].shape[1] = t.shape[1];
        ptrdiff_t off = t.data - m->params_memory;
        o[i].data = src == 0 ? t.data : (src == 1 ? m->m_memory : m->v_memory) + off;
    }
    *n = cnt;
    return o;
}

static int save_contents(const char *tmp, const Model *m, const CkptSaveOptions *opt, char *err,
                         size_t errlen) {
    char p[PATH_CAP], src[PATH_CAP];
    if (path_join(p, tmp, "config.json", err, errlen) ||
        config_write(p, &m->config, opt, err, errlen))
        return -1;
    int n;
    StOut *o = model_outputs(m, 0, &n);
    int rc = path_join(p, tmp, "model.safetensors", err, errlen) || st_write(p, o, n, err, errlen);
    free(o);
    if (rc) return -1;
    if (opt && opt->tokenizer_dir) {
        static const char *files[2] = {"vocab.json", "merges.txt"};
        for (int i = 0; i < 2; i++)
            if (path_join(src, opt->tokenizer_dir, files[i], err, errlen) ||
                path_join(p, tmp, files[i], err, errlen) || copy_file(src, p, err, errlen))
                return -1;
    }
    if (opt && opt->state) {
        StOut *mv = CALLOC_CHECK(2 * (size_t)model_tensor_count(m), sizeof(StOut));
        StOut *a = model_outputs(m, 1, &n), *b = model_outputs(m, 2, &n);
        memcpy(mv, a, (size_t)n * sizeof(StOut));
        memcpy(mv + n, b, (size_t)n * sizeof(StOut));
        free(a); free(b);
        rc = path_join(p, tmp, "trainer_state.safetensors", err, errlen) ||
             st_write(p, mv, 2 * n, err, errlen);
        free(mv);
        if (rc) return -1;
        if (path_join(p, tmp, "trainer_state.json", err, errlen) ||
            state_write_json(p, opt->state, err, errlen))
            return -1;
    }
    return fsync_dir(tmp, err, errlen);
}

int ckpt_save(const char *dir, const Model *m, const CkptSaveOptions *opt, char *err,
              size_t errlen) {
    char d[DIR_CAP], old[PATH_CAP], tmp[PATH_CAP], parent[PATH_CAP], base[PATH_CAP], scratch[256];
    if (norm_dir(dir, d, err, errlen)) return -1;
    if (opt && opt->state) {
        if (!m->m_memory || !m->v_memory)
            return util_err(err, errlen,
                            "%s: a trainer state needs a trainable model (AdamW moments)", d);
        if (state_validate(opt->state, err, errlen)) return -1;
    }
    if (opt && opt->has_token_ids &&
        (opt->bos_token_id < 0 || opt->bos_token_id >= m->config.vocab_size ||
         opt->eos_token_id < 0 || opt->eos_token_id >= m->config.vocab_size))
        return util_err(err, errlen, "%s: bos/eos token ids %d/%d outside the vocabulary", d,
                        opt->bos_token_id, opt->eos_token_id);
    snprintf(old, sizeof old, "%s.old", d);
    path_split(d, parent, base);
    if (ckpt_recover(d, err, errlen)) return -1;
    int kd = path_kind(d);
    if (kd == PK_OTHER)
        return util_err(err, errlen, "%s: exists and is not a directory; not replacing it", d);
    if (kd == PK_DIR && !file_exists(d, "config.json")) {
        DIR *dd = opendir(d);
        int empty = 1;
        struct dirent *e;
        while (dd && (e = readdir(dd)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
        if (dd) closedir(dd);
        if (!empty)
            return util_err(err, errlen,
                            "%s: exists and is not a checkpoint (no config.json); not replacing it",
                            d);
    }
    int made = 0, moved = 0;
    for (int i = 0; i < 1000 && !made; i++) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%d", d, (long)getpid(), i);
        if (mkdir(tmp, 0777) == 0) made = 1;
        else if (errno != EEXIST)
            return util_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    }
    if (!made) return util_err(err, errlen, "%s: cannot find a free temporary name", d);
    if (save_contents(tmp, m, opt, err, errlen)) goto fail;
    if (kd == PK_DIR) {
        if (rename(d, old)) {
            util_err(err, errlen, "%s: cannot rename to %s: %s", d, old, strerror(errno));
            goto fail;
        }
        moved = 1;
        if (fsync_dir(parent, err, errlen)) goto undo;
    }
    if (rename(tmp, d)) {
        util_err(err, errlen, "%s: cannot rename to %s: %s", tmp, d, strerror(errno));
        goto undo;
    }
    if (fsync_dir(parent, err, errlen)) return -1;   // the new checkpoint is in place either way
    if (moved && remove_flat_dir(old, scratch, sizeof scratch) == 0)
        fsync_dir(parent, scratch, sizeof scratch);
    return 0; // a DIR.old that could not be removed is harmless (reader rule); the next save
              // retries
undo:
    if (moved && path_kind(d) == PK_ABSENT && rename(old, d) == 0)
        fsync_dir(parent, scratch, sizeof scratch);
fail:
    remove_flat_dir(tmp, scratch, sizeof scratch);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

int ckpt_load_config(const char *dir, ModelConfig *c, CkptInfo *info, char *err, size_t errlen) {
    char d[PATH_CAP], p[PATH_CAP];
    int from_old;
    if (resolve_dir(dir, d, &from_old, err, errlen) || path_join(p, d, "config.json", err, errlen))
        return -1;
    CkptInfo tmp = {0};
    if (config_parse(p, c, &tmp, err, errlen)) return -1;
    tmp.from_old = from_old;
    tmp.has_tokenizer = file_exists(d, "vocab.json") && file_exists(d, "merges.txt");
    tmp.has_trainer_state =
        file_exists(d, "trainer_state.json") && file_exists(d, "trainer_state.safetensors");
    if (info) *info = tmp;
    return 0;
}

// "h.<digits>.attn.bias" / "h.<digits>.attn.masked_bias": attention-mask buffers of old exports.
static int is_mask_buffer(const char *n) {
    if (strncmp(n, "h.", 2)) return 0;
    n += 2;
    if (*n < '0' || *n > '9') return 0;
    while (*n >= '0' && *n <= '9') n++;
    return !strcmp(n, ".attn.bias") || !strcmp(n, ".attn.masked_bias");
}

int ckpt_load_weights(const char *dir, Model *m, int flags, char *err, size_t errlen) {
    char d[PATH_CAP], p[PATH_CAP];
    int from_old;
    if (resolve_dir(dir, d, &from_old, err, errlen) || path_join(p, d, "config.json", err, errlen))
        return -1;
    ModelConfig fc;
    if (config_parse(p, &fc, NULL, err, errlen)) return -1;
    const ModelConfig *mc = &m->config;
    static const char *keys[5] = {"n_layer", "n_head", "n_embd", "vocab_size", "n_positions"};
    int fv[5] = {fc.n_layer, fc.n_head, fc.n_embd, fc.vocab_size, fc.max_seq_len};
    int mv[5] = {mc->n_layer, mc->n_head, mc->n_embd, mc->vocab_size, mc->max_seq_len};
    for (int i = 0; i < 5; i++)
        if (fv[i] != mv[i])
            return util_err(err, errlen, "%s: %s is %d but the model has %d", p, keys[i], fv[i],
                            mv[i]);
    if (fc.ln_eps != mc->ln_eps)
        return util_err(err, errlen, "%s: layer_norm_epsilon is %g but the model has %g", p,
                        (double)fc.ln_eps, (double)mc->ln_eps);
    if (path_join(p, d, "model.safetensors", err, errlen)) return -1;
    StFile f;
    if (st_open(&f, p, err, errlen)) return -1;
    int n = model_tensor_count(m), rc = -1, missing = 0;
    StEntry **src = CALLOC_CHECK((size_t)n, sizeof(StEntry *));
    char first_missing[96] = "";
    for (int i = 0; i < n; i++) {
        ModelTensor t;
        model_tensor(m, i, &t);
        char pref[96];
        snprintf(pref, sizeof pref, "transformer.%s", t.name);
        int is_score = !strcmp(t.name, "score.weight");
        StEntry *a = st_find(&f, t.name), *b = is_score ? NULL : st_find(&f, pref);
        if (a && b) {
            util_err(err, errlen, "%s: holds both %s and %s", p, t.name, pref);
            goto done;
        }
        src[i] = a ? a : b;
        if (!src[i]) {
            if (is_score && (flags & CKPT_ALLOW_MISSING_SCORE)) continue;
            if (!missing++) snprintf(first_missing, sizeof first_missing, "%s", t.name);
            continue;
        }
        if (st_check(&f, src[i], t.ndim, t.shape, err, errlen)) goto done;
        src[i]->used = 1;
    }
    if (missing) {
        if (!strcmp(first_missing, "score.weight"))
            util_err(err, errlen, "%s: missing tensor score.weight (a reward/value head; pass "
                     "CKPT_ALLOW_MISSING_SCORE to initialise it yourself)", p);
        else if (missing == 1) util_err(err, errlen, "%s: missing tensor %s", p, first_missing);
        else
            util_err(err, errlen, "%s: missing tensor %s and %d more", p, first_missing,
                     missing - 1);
        goto done;
    }
    StEntry *lm_head = NULL;
    for (int i = 0; i < f.n; i++) {
        StEntry *e = &f.e[i];
        if (e->used) continue;
        const char *bare = !strncmp(e->name, "transformer.", 12) ? e->name + 12 : e->name;
        if (is_mask_buffer(bare)) { e->used = 1; continue; }
        if (!strcmp(e->name, "lm_head.weight")) {
            int64_t shape[2] = {mc->vocab_size, mc->n_embd};
            if (st_check(&f, e, 2, shape, err, errlen)) goto done;
            lm_head = e;
            continue;
        }
        if (!strcmp(e->name, "score.weight") && !mc->score_head) {
            if (flags & CKPT_IGNORE_SCORE) continue;
            util_err(err, errlen, "%s: holds score.weight (a reward/value model) but the model has "
                     "no score head (pass CKPT_IGNORE_SCORE to drop it)", p);
            goto done;
        }
        util_err(err, errlen, "%s: unexpected tensor %s", p, e->name);
        goto done;
    }
    if (lm_head) {   // must be the tied wte: compare after conversion, before touching the model
        size_t cnt = (size_t)mc->vocab_size * (size_t)mc->n_embd;
        float *x = MALLOC_CHECK(cnt * sizeof(float)), *y = MALLOC_CHECK(cnt * sizeof(float));
        st_read_f32(&f, lm_head, x);
        st_read_f32(&f, src[0], y);
        int same = memcmp(x, y, cnt * sizeof(float)) == 0;
        free(x); free(y);
        if (!same) {
            util_err(err, errlen, "%s: lm_head.weight differs from wte.weight (untied output heads "
                     "are not supported)", p);
            goto done;
        }
    }
    for (int i = 0; i < n; i++) {
        if (!src[i]) continue;
        ModelTensor t;
        model_tensor(m, i, &t);
        st_read_f32(&f, src[i], t.data);
        // a NaN or Inf weight would poison every output: refuse it here, naming the tensor
        int64_t cnt = t.shape[0] * (t.ndim == 2 ? t.shape[1] : 1);
        for (int64_t j = 0; j < cnt; j++)
            if (!isfinite(t.data[j])) {
                util_err(err, errlen, "%s: tensor %s holds %s at element %lld (a diverged or "
                         "corrupt checkpoint)", p, src[i]->name, isnan(t.data[j]) ? "NaN" : "Inf",
                         (long long)j);
                goto done;
            }
    }
    rc = 0;
done:
    free(src);
    st_close(&f);
    return rc;
}

int ckpt_load_model(const char *dir, Model *m, int max_B, int max_T, int trainable, int flags,
                    char *err, size_t errlen) {
    ModelConfig c;
    memset(m, 0, sizeof(*m));
    if (ckpt_load_config(dir, &c, NULL, err, errlen)) return -1;
    if (model_init(m, &c, max_B, max_T, trainable, 0, err, errlen)) return -1;
    if (ckpt_load_weights(dir, m, flags, err, errlen)) { model_free(m); return -1; }
    return 0;
}

int ckpt_load_trainer_state(const char *dir, Model *m, CkptTrainerState *st, char *err,
                            size_t errlen) {
    char d[PATH_CAP], p[PATH_CAP];
    int from_old;
    if (resolve_dir(dir, d, &from_old, err, errlen)) return -1;
    if (!file_exists(d, "trainer_state.json"))
        return util_err(err, errlen, "%s: no trainer state (trainer_state.json) to resume from", d);
    if (path_join(p, d, "trainer_state.json", err, errlen)) return -1;
    CkptTrainerState *tmp = MALLOC_CHECK(sizeof(*tmp));
    if (state_parse_json(p, tmp, err, errlen)) { free(tmp); return -1; }
    int rc = -1;
    if (m) {
        if (!m->m_memory || !m->v_memory) {
            util_err(err, errlen, "%s: loading moments needs a trainable model", d);
            goto out;
        }
        if (path_join(p, d, "trainer_state.safetensors", err, errlen)) goto out;
        StFile f;
        if (st_open(&f, p, err, errlen)) goto out;
        int n = model_tensor_count(m);
        StEntry **src = CALLOC_CHECK(2 * (size_t)n, sizeof(StEntry *));
        int ok = 1;
        for (int i = 0; ok && i < 2 * n; i++) {
            ModelTensor t;
            model_tensor(m, i % n, &t);
            char nm[96];
            snprintf(nm, sizeof nm, "%s.%s", i < n ? "m" : "v", t.name);
            src[i] = st_find(&f, nm);
            if (!src[i]) { util_err(err, errlen, "%s: missing tensor %s", p, nm); ok = 0; }
            else if (st_check(&f, src[i], t.ndim, t.shape, err, errlen)) ok = 0;
            else src[i]->used = 1;
        }
        for (int i = 0; ok && i < f.n; i++)
            if (!f.e[i].used) {
                util_err(err, errlen, "%s: unexpected tensor %s", p, f.e[i].name);
                ok = 0;
            }
        for (int i = 0; ok && i < 2 * n; i++) {
            ModelTensor t;
            model_tensor(m, i % n, &t);
            st_read_f32(&f, src[i],
                        (i < n ? m->m_memory : m->v_memory) + (t.data - m->params_memory));
        }
        free(src);
        st_close(&f);
        if (!ok) goto out;
    }
    *st = *tmp;
    rc = 0;
out:
    free(tmp);
    return rc;
}

int ckpt_check_tokenizer(const char *ckpt, int64_t vocab_size, const char *tokdir,
                         int64_t tok_vocab, char *err, size_t errlen) {
    if (tok_vocab <= vocab_size) return 0;
    return util_err(err, errlen, "the tokenizer in %s has %lld tokens, more than the %lld of the "
                    "model in %s (config.json): they do not belong together (give the model's own "
                    "tokenizer, or a model made for this one)", tokdir, (long long)tok_vocab,
                    (long long)vocab_size, ckpt);
}
