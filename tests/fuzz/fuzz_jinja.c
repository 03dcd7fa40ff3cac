// Chat templates (common/jinja): any text parses or gives a one-line "line L column C: ..."
// error; a parsed template renders or gives such an error, within the render limits, without
// crashing. The input is the template, optionally followed by a line "----" and the render
// context as JSON (a chat with a system prompt, two turns and a tool when absent or not JSON).
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "jinja.h"

static const char DEFAULT_CTX[] =
    "{\"messages\": ["
    "{\"role\": \"system\", \"content\": \"Be brief.\"},"
    "{\"role\": \"user\", \"content\": \"Hi\"},"
    "{\"role\": \"assistant\", \"content\": \"<think>\\nx\\n</think>\\n\\nHello\","
    " \"tool_calls\": [{\"type\": \"function\","
    " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]},"
    "{\"role\": \"tool\", \"content\": \"42\"},"
    "{\"role\": \"user\", \"content\": \"Bye \\u00e9\"}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]}";

// An error message must be one non-empty line that says where.
static void check_err(const char *err) {
    if (!err[0] || strchr(err, '\n') || (strncmp(err, "line ", 5) && !strstr(err, "context")))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    char *src = malloc(na + 1), *json = malloc(nb + 1);
    if (!src || !json) abort();
    memcpy(src, a, na);
    src[na] = 0;
    memcpy(json, b, nb);
    json[nb] = 0;
    cJSON *ctx = nb ? cJSON_Parse(json) : NULL;
    if (!ctx) ctx = cJSON_Parse(DEFAULT_CTX);
    char err[512] = "";
    JinjaTemplate *t;
    if (jinja_parse(src, &t, err, sizeof err)) {
        if (t) abort();   // a failed parse leaves nothing behind
        check_err(err);
    } else {
        char *out = NULL;
        err[0] = 0;
        if (jinja_render(t, ctx, &out, err, sizeof err)) {
            if (out) abort();
            check_err(err);
        } else if (!out) {
            abort();
        }
        free(out);
        jinja_free(t);
    }
    cJSON_Delete(ctx);
    free(src);
    free(json);
    return 0;
}
