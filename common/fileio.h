// Files as checkpoints need them: writes that report every failure (short writes retried, fsync
// before close so delayed errors such as ENOSPC surface), new files only (O_EXCL: nothing is
// overwritten in place), regular files only when reading, small files read whole with a cap, and
// JSON files through cJSON. Each function returns 0 (or a descriptor / a tree) or -1 (NULL) with a
// one-line message naming the path in err (err may be NULL); nothing here keeps state.
// Ownership: fio_read_small's *out and fio_read_json's tree belong to the caller (free /
// cJSON_Delete).
#ifndef FILEIO_H
#define FILEIO_H
#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/stat.h>

#define FIO_PATH_CAP 4096   // longest path, terminator included

// out[FIO_PATH_CAP] = a/b; -1 when it does not fit.
int fio_path_join(char *out, const char *a, const char *b, char *err, size_t errlen);
// 1 when dir/name is a regular file (links followed), else 0.
int fio_exists(const char *dir, const char *name);
int fio_write_all(int fd, const void *buf, size_t n, const char *path, char *err, size_t errlen);
// Creates path (which must not exist) for writing: the descriptor, or -1.
int fio_open_new(const char *path, char *err, size_t errlen);
// fsync + close, reporting either failure.
int fio_close_synced(int fd, const char *path, char *err, size_t errlen);
// fsync of a directory (file systems that cannot sync directories are not an error).
int fio_fsync_dir(const char *path, char *err, size_t errlen);
// A new file holding data[0..n), fsynced.
int fio_write_file(const char *path, const void *data, size_t n, char *err, size_t errlen);
// Opens a regular file for reading (its stat in *st): the descriptor, or -1.
int fio_open_regular(const char *path, struct stat *st, char *err, size_t errlen);
// The whole file (at most cap bytes) in a NUL-terminated malloc'd *out of *len bytes.
int fio_read_small(const char *path, size_t cap, char **out, size_t *len, char *err,
                   size_t errlen);
// Copies src into the new file dst, fsynced.
int fio_copy_file(const char *src, const char *dst, char *err, size_t errlen);
// Prints root (formatted, newline at the end) into the new file path, fsynced.
int fio_write_json(const char *path, cJSON *root, char *err, size_t errlen);
// Parses path (at most 16 MiB), which must hold one JSON object and nothing after it.
cJSON *fio_read_json(const char *path, char *err, size_t errlen);
#endif
