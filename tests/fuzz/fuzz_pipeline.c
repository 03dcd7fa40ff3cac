// Pipeline files: any text parses and resolves, or gives a file:line:column error; loading has no
// side effects (nothing is created or run).
#include "fuzz_common.h"
#include "pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write("pipeline.yaml", data, size, path, sizeof path);
    Pipeline *p = calloc(1, sizeof(Pipeline));
    if (!p) abort();
    snprintf(p->bindir, sizeof p->bindir, "/nonexistent");
    const char *over[1] = {"vars.x=1"};
    if (pipeline_load(p, path, over, 1) != 0 && !strstr(p->err, "pipeline.yaml")) abort();   // errors name the file
    pipeline_free(p);
    free(p);
    return 0;
}
