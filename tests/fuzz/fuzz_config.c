// YAML configuration files against a schema with every type: any text loads or gives a
// file:line:column error, and a failed load changes nothing.
#include "config.h"
#include "fuzz_common.h"

static const ConfigEntry SCHEMA[] = {
    CONFIG_ENTRY("a.int", CONFIG_INT, "1", "an int", .min = "0", .max = "100"),
    CONFIG_ENTRY("a.dbl", CONFIG_DOUBLE, "0.5", "a double"),
    CONFIG_ENTRY("a.b.flag", CONFIG_BOOL, "false", "a bool"),
    CONFIG_ENTRY("s", CONFIG_STRING, "x", "a string"),
    CONFIG_ENTRY("e", CONFIG_ENUM, "one", "an enum", .choices = "one|two"),
    CONFIG_ENTRY("l", CONFIG_LIST, NULL, "a list"),
    {0}};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Config *c;
    char err[512], h0[CONFIG_HASH_HEX], h1[CONFIG_HASH_HEX];
    if (config_new(&c, SCHEMA, err, sizeof err)) abort();
    config_hash(c, h0);
    if (config_load_string(c, "fuzz.yaml", (const char *)data, size, err, sizeof err)) {
        config_hash(c, h1);
        if (strcmp(h0, h1)) abort();   // a failed load changes nothing
    } else {
        char *dump = config_dump_string(c);   // a dump loads back to the same hash
        Config *d;
        if (config_new(&d, SCHEMA, err, sizeof err) || config_load_string(d, "dump", dump, strlen(dump), err, sizeof err)) abort();
        config_hash(c, h0);
        config_hash(d, h1);
        if (strcmp(h0, h1)) abort();
        config_free(d);
        free(dump);
    }
    config_free(c);
    return 0;
}
