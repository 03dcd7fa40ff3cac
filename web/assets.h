// assets: the files of web/static/ (script, style sheet) compiled into the binary by web/embed.sh
// (a Makefile rule), served by `rlhf serve` under /static/NAME. Read-only tables.
#ifndef ASSETS_H
#define ASSETS_H
#include <stddef.h>

typedef struct {
    const char *name;               // the file's name in web/static/; NULL ends the table
    const char *type;               // its Content-Type
    const unsigned char *data;      // its bytes (and a NUL after them)
    size_t n;                       // how many bytes
} WebAsset;
extern const WebAsset WEB_ASSETS[];
#endif
