// Files for checkpoints: see fileio.h.
#include "fileio.h"
#include "util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIO_JSON_MAX (16u << 20)   // config.json, trainer_state.json, an index

int fio_path_join(char *out, const char *a, const char *b, char *err, size_t errlen) {
    int n = snprintf(out, FIO_PATH_CAP, "%s/%s", a, b);
    if (n < 0 || n >= FIO_PATH_CAP)
        return util_err(err, errlen, "checkpoint: path too long: %s/%s", a, b);
    return 0;
}

int fio_exists(const char *dir, const char *name) {
    char p[FIO_PATH_CAP];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) return 0;
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int fio_write_all(int fd, const void *buf, size_t n, const char *path, char *err,
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

int fio_open_new(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) return util_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    return fd;
}

// fsync + close, reporting either failure (delayed write errors such as ENOSPC show up here).
int fio_close_synced(int fd, const char *path, char *err, size_t errlen) {
    if (fsync(fd)) {
        int e = errno;
        close(fd);
        return util_err(err, errlen, "%s: fsync failed: %s", path, strerror(e));
    }
    if (close(fd)) return util_err(err, errlen, "%s: close failed: %s", path, strerror(errno));
    return 0;
}

int fio_fsync_dir(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return util_err(err, errlen, "%s: cannot open directory: %s", path, strerror(errno));
    int rc = fsync(fd), e = errno;
    close(fd);
    if (rc && e != EINVAL && e != ENOTSUP)   // some file systems cannot sync directories
        return util_err(err, errlen, "%s: fsync failed: %s", path, strerror(e));
    return 0;
}

int fio_write_file(const char *path, const void *data, size_t n, char *err, size_t errlen) {
    int fd = fio_open_new(path, err, errlen);
    if (fd < 0) return -1;
    if (fio_write_all(fd, data, n, path, err, errlen)) { close(fd); return -1; }
    return fio_close_synced(fd, path, err, errlen);
}

// Opens path for reading, a regular file (its stat in *st): the descriptor, or -1.
int fio_open_regular(const char *path, struct stat *st, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return util_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) || !S_ISREG(st->st_mode)) {
        close(fd);
        return util_err(err, errlen, "%s: not a regular file", path);
    }
    return fd;
}

// Reads a whole small file (at most cap bytes) into a NUL-terminated malloc'd buffer.
int fio_read_small(const char *path, size_t cap, char **out, size_t *len, char *err,
                           size_t errlen) {
    struct stat st;
    int fd = fio_open_regular(path, &st, err, errlen);
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

int fio_copy_file(const char *src, const char *dst, char *err, size_t errlen) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return util_err(err, errlen, "%s: cannot open: %s", src, strerror(errno));
    int out = fio_open_new(dst, err, errlen);
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
        if (fio_write_all(out, buf, (size_t)r, dst, err, errlen)) { rc = -1; break; }
    }
    free(buf);
    close(in);
    if (rc) { close(out); return -1; }
    return fio_close_synced(out, dst, err, errlen);
}

// Prints a cJSON tree to path (new file, fsynced).
int fio_write_json(const char *path, cJSON *root, char *err, size_t errlen) {
    char *txt = cJSON_Print(root);
    if (!txt) DIE("cJSON_Print: out of memory");
    size_t n = strlen(txt);
    char *buf = MALLOC_CHECK(n + 2);
    memcpy(buf, txt, n);
    buf[n] = '\n';
    cJSON_free(txt);
    int rc = fio_write_file(path, buf, n + 1, err, errlen);
    free(buf);
    return rc;
}

cJSON *fio_read_json(const char *path, char *err, size_t errlen) {
    char *txt = NULL;
    size_t n = 0;
    if (fio_read_small(path, FIO_JSON_MAX, &txt, &n, err, errlen)) return NULL;
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
