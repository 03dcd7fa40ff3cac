// config: typed YAML configuration with command-line overrides.
//
// A program declares its settings as a table of ConfigEntry (the schema), ended by {0}; the
// CONFIG_ENTRY macro names the four fields every entry has and takes the optional ones by name:
//
//     static const ConfigEntry SFT_SCHEMA[] = {
//         CONFIG_ENTRY("data.path",      CONFIG_STRING, NULL,     "prompt/response JSONL file"),
//         CONFIG_ENTRY("train.lr",       CONFIG_DOUBLE, "3e-5",   "peak learning rate", .min = "0",
//         .max = "1"), CONFIG_ENTRY("train.steps",    CONFIG_INT,    "1000",   "optimizer steps",
//         .min = "1"), CONFIG_ENTRY("train.schedule", CONFIG_ENUM,   "cosine", "learning-rate
//         schedule",
//                      .choices = "cosine|linear|constant"),
//         CONFIG_ENTRY("log.every",      CONFIG_INT,    "10",     "log every N steps", .min = "1",
//                      .flags = CONFIG_NO_HASH),
//         {0}};
//
// then fills a Config from defaults, a YAML file and `--set key=value` overrides, in that order
// (later wins), and reads typed values by key:
//
//     Config *cfg;
//     if (config_new(&cfg, SFT_SCHEMA, err, sizeof err) ||
//         config_load_file(cfg, "sft.yaml", err, sizeof err) ||
//         config_set(cfg, "train.lr=3e-5", err, sizeof err)) { fprintf(stderr, "%s\n", err); ... }
//     double lr = config_get_double(cfg, "train.lr");
//
// YAML files: the top level is a mapping; a dotted key's parts are nested mappings
// (`train: {lr: 3e-5}`) or written dotted (`train.lr: 3e-5`), mixed as you like. An empty file (or
// one holding only comments) leaves every value as it was. Values by type:
//   int     a plain decimal integer, optional sign, within int64      steps: 1000
//   double  a plain decimal number (1, 0.5, 3e-5), finite            lr: 3e-5
//   bool    true/false (also True, TRUE, yes/no, on/off)              shuffle: true
//   string  any scalar, plain or quoted; null (`~`, `null`, nothing) is the empty string
//   enum    one of the entry's choices, exactly
//   list    a sequence of scalars (block or flow); null is the empty list
// A quoted scalar is a string: `lr: "3e-5"` is an error for a number key (the message says so).
// Errors, each one line "FILE:LINE:COLUMN: message" (1-based, from libyaml's marks; columns count
// characters): YAML syntax (libyaml's problem and context), a top level that is not a mapping,
// unknown keys (with "did you mean 'x'?" when a key is close), wrong types ("train.lr: expected a
// number, got 'abc'"), values out of range, duplicate keys (with where the first one is), a value
// where a section is expected and the reverse, anchors, aliases and tags (not supported), more
// than one document, NUL characters in a scalar, files over CONFIG_MAX_FILE bytes, sections nested
// deeper than CONFIG_MAX_DEPTH, lists of more than CONFIG_MAX_ITEMS items. A load that
// fails changes nothing: values are applied only when the whole file is valid.
//
// Overrides (`--set KEY=VALUE`, one per call of config_set): VALUE is taken verbatim for string
// and enum keys (`--set data.path=my file.jsonl`), parsed as above for int, double and bool keys,
// and for list keys is a YAML flow sequence (`--set 'data.files=[a.jsonl, b.jsonl]'`), an empty
// value (the empty list) or a single item. Errors name the override: "--set train.lr=abc:
// train.lr: expected a number, got 'abc'". Override values must be valid UTF-8.
//
// config_dump writes every effective value as canonical YAML: keys sorted, nested by their dotted
// parts, numbers in their shortest exact form (doubles round-trip bit for bit), strings
// double-quoted with YAML escapes, lists in flow style. Loading a dump with the same schema gives
// the same values and so the same hash. config_hash is FNV-1a 64 of the dump of the entries
// without CONFIG_NO_HASH (settings that do not change results, like logging), as 16 hex digits:
// runs record it, and the pipeline runner skips a stage whose hash is unchanged.
//
// Errors: bad user input (files, overrides) returns -1 with the message in err (err may be NULL);
// a bad schema (a programmer error) makes config_new return -1 with a message starting
// "schema:". Asking for a key that is not in the schema, or with the wrong type (config_get_int on
// a double), is a programmer error: it prints the key and exits (util.h DIE).
// Ownership: the schema table is borrowed and must outlive the Config (a static table). The
// Config owns every value; strings returned by getters belong to it and stay valid until the key
// is set again or the Config is freed. Nothing here keeps global state.
#ifndef CONFIG_H
#define CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_FILE  (16 << 20)  // largest YAML file accepted (bytes)
#define CONFIG_MAX_KEY   128         // longest dotted key, terminator included
#define CONFIG_MAX_DEPTH 16          // deepest nesting of sections in a file
#define CONFIG_MAX_ITEMS 65536       // most items in one list
#define CONFIG_HASH_HEX  17          // 16 hex digits + NUL

typedef enum {
    CONFIG_INT = 1,    // int64_t
    CONFIG_DOUBLE,     // double, finite
    CONFIG_BOOL,       // int, 0 or 1
    CONFIG_STRING,     // const char *
    CONFIG_ENUM,       // const char * (one of choices), or its index
    CONFIG_LIST,       // list of strings
} ConfigType;

#define CONFIG_NO_HASH 1u   // flags: left out of config_hash (still dumped): logging, threads, ...
// left out of config_hash while it holds its default: a key added to a program later keeps the
// hashes of configs written before it (so their runs resume and their pipeline stages skip)
#define CONFIG_HASH_IF_SET 2u

typedef struct {
    const char *key;       // dotted, parts of [a-z0-9_], e.g. "train.lr"; NULL ends the table
    ConfigType type;
    const char *def;       // the default, written as a --set value would be; NULL: "" / empty
                           // list for string and list, required for the other types
    const char *help;      // one line for --help
    const char *min, *max; // int / double bounds, inclusive, as text ("0", "1e-3"); NULL: none
    const char *choices;   // enum: "a|b|c"
    unsigned flags;        // CONFIG_NO_HASH
} ConfigEntry;

// One schema entry with designated initializers (so -Wextra's missing-initializer check is
// quiet and fields cannot be swapped): key, type, default, help, then .min/.max/.choices/.flags.
#define CONFIG_ENTRY(k, t, d, h, ...)                                                              \
    { .key = (k), .type = (t), .def = (d), .help = (h), __VA_ARGS__ }

typedef struct Config Config;

// Checks the schema (keys well formed and unique, no key both a value and a section, defaults of
// the right type and within bounds, enum choices) and sets every value to its default.
int  config_new(Config **out, const ConfigEntry *schema, char *err, size_t errlen);
void config_free(Config *c);   // NULL is fine

// Loads a YAML file (all or nothing, see above). Messages start with path:line:column.
int config_load_file(Config *c, const char *path, char *err, size_t errlen);
// Same for text in memory; name is used in messages in place of the path.
int config_load_string(Config *c, const char *name, const char *text, size_t len, char *err,
                       size_t errlen);
// Applies one "KEY=VALUE" override (as --set gives it).
int config_set(Config *c, const char *assignment, char *err, size_t errlen);
// Sets KEY from VALUE text (as config_set does); messages start with `where` (e.g. a pipeline
// file's "pipe.yaml:12:7") instead of "--set KEY=VALUE". where may be NULL.
int config_set_value(Config *c, const char *key, const char *value, const char *where, char *err,
                     size_t errlen);

// Typed getters; the key must be in the schema with this type (else DIE).
int64_t     config_get_int(const Config *c, const char *key);
double      config_get_double(const Config *c, const char *key);
int         config_get_bool(const Config *c, const char *key);
const char *config_get_string(const Config *c, const char *key);   // string or enum
int         config_get_enum(const Config *c, const char *key);     // index into the choices
// A list: returns its length; *items (may be NULL) receives the array, owned by the Config.
int64_t     config_get_list(const Config *c, const char *key, const char *const **items);
// 1 when the key was set by a file or an override, 0 when it still has its default.
int         config_is_set(const Config *c, const char *key);
int         config_has_key(const Config *c, const char *key);      // in the schema

// Canonical YAML of every value (see above). config_dump_string returns a malloc'd string.
char *config_dump_string(const Config *c);
int   config_dump(const Config *c, FILE *out);                     // 0, or -1 on a write error
// FNV-1a 64 of the dump without CONFIG_NO_HASH entries, as 16 lowercase hex digits.
void  config_hash(const Config *c, char hex[CONFIG_HASH_HEX]);
// Every key with its type, default, bounds or choices, and help; one line each, schema order.
void  config_help(const Config *c, FILE *out);

// The command line of a config program (sft, reward train, ppo): -c FILE, then every
// --set KEY=VALUE in order, --print-config, --help/-h. argv[0 .. argc) are the arguments (no
// program name). Returns -1 when the program should go on, else the exit status to return: 0
// after --help (usage + config_help on stdout) or --print-config (the dump), 1 for a bad file or
// override, 2 for a usage error or no arguments at all. Messages on stderr start with `prog`.
int config_parse_args(Config *c, int argc, char **argv, const char *prog, const char *usage);
#endif
