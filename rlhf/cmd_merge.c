// rlhf merge BASE ADAPTER --out DIR: a plain checkpoint with a LoRA adapter folded in.
#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "lora.h"
#include "model.h"
#include "peft.h"
#include <stdio.h>

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)

static const char *merge_usage =
    "usage: rlhf merge BASE ADAPTER --out DIR\n"
    "Folds a LoRA adapter (ADAPTER/adapter_config.json + adapter_model.safetensors, as PEFT\n"
    "saves them) into the weights of the checkpoint BASE: W += lora_alpha / r * B A for every\n"
    "adapted layer (transposed for GPT-2's Conv1D layers), and the adapter's score head when it\n"
    "trains one (modules_to_save). DIR is a plain checkpoint (config, weights, and BASE's\n"
    "tokenizer).\n";

int cmd_merge(int argc, char **argv) {
    const char *out = NULL;
    CliList pos = {0};
    int status;
    char err[1024];
    CliOption opts[] = {CLI_STRING("--out", &out), {0}};
    CliCommand cmd = {.prog = "rlhf merge", .usage = merge_usage, .opts = opts,
                      .arg_name = "BASE ADAPTER", .arg_list = &pos, .args_min = 2,
                      .args_max = 2};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    const char *args[2] = {pos.items[0], pos.items[1]};
    cli_list_free(&pos);
    if (!out) return cli_usage_error(&cmd, "missing --out DIR");
    ModelConfig c;
    CkptInfo ci;
    if (ckpt_load_config(args[0], &c, &ci, err, sizeof err)) FAIL("rlhf merge: %s", err);
    Model m;
    if (ckpt_load_model(args[0], &m, 1, 1, 0, 0, err, sizeof err)) FAIL("rlhf merge: %s", err);
    Lora lo;
    if (peft_load(&lo, args[1], &m.config, 1, 0, err, sizeof err)) {
        model_free(&m);
        FAIL("rlhf merge: %s", err);
    }
    lora_merge(&lo, &m);
    char tdir[4200];
    snprintf(tdir, sizeof tdir, "%s%s", args[0], ci.from_old ? ".old" : "");
    CkptSaveOptions so = {.tokenizer_dir = ci.has_tokenizer ? tdir : NULL,
                          .has_token_ids = ci.eos_token_id >= 0,
                          .bos_token_id = ci.bos_token_id,
                          .eos_token_id = ci.eos_token_id};
    int rc = ckpt_save(out, &m, &so, err, sizeof err);
    if (!rc)
        fprintf(stderr, "rlhf merge: %s: %s + %s (r=%d, %d target module%s) written\n", out,
                args[0], args[1], lo.cfg.r, lo.cfg.n_targets, lo.cfg.n_targets == 1 ? "" : "s");
    lora_free(&lo);
    model_free(&m);
    if (rc) FAIL("rlhf merge: %s", err);
    return 0;
}
