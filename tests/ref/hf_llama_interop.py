"""Hugging Face interop of the Llama family's checkpoints (test_checkpoint_llama, test_hf_llama.sh).

Only the Debian python with torch and the standard library (no `transformers`, no `safetensors`):
safetensors files are read and written by hand (tests/ref/hf_interop.py's helpers), and the model
is tests/ref/llama_ref.py's hand-written float64 Llama (the reference that proves itself by
finite differences and RoPE against its definition), built from config.json the way
transformers' config classes read it.

Usage (from the repository root):
  /usr/bin/python3 tests/ref/hf_llama_interop.py write DIR VARIANT [DIR VARIANT ...]
      Writes a tiny random checkpoint the way transformers' save_pretrained lays it out
      (config.json with the class's keys, safetensors with HF names) plus tokens.txt and
      expected_loss.txt (the loss of the tokens, float64, from exactly the stored values), and
      prints "loss <value>". VARIANT is one of
        llama    GQA 4/2 heads, tied, Llama 3 rope_scaling, F16/BF16 tensors, rotary_emb.inv_freq
                 buffers and the tied lm_head.weight stored (old exports), 3 shards + index
        qwen2    q/k/v biases, untied, BF16 everywhere, eos_token_id a list, one file
        qwen3    q/k norms, head_dim 16 with hidden_size 24 / 3 heads, rope_theta 1e6, tied,
                 2 shards + index
        mistral  multi-query (1 KV head), untied, F16, sliding_window null, one file
  /usr/bin/python3 tests/ref/hf_llama_interop.py check DIR TOKENS [DIR TOKENS ...]
      Reads a checkpoint written by ckpt_save: checks that config.json has exactly the keys
      transformers writes for its model_type (sorted), that every tensor has its HF name and
      shape and the torch_dtype's dtype, that each safetensors file is 8-byte aligned with
      contiguous offsets, and that a sharded checkpoint's index lists every tensor in its shard
      with the right total_size; prints "loss <value>" for the ids in the file TOKENS ("loss -"
      for a reward / value model without an LM head), one line per checkpoint.
"""
import json
import os
import sys

import torch

import llama_ref  # noqa: E402  (the float64 Llama the engine's fixtures come from)
from hf_interop import read_safetensors, write_safetensors  # noqa: E402  (one safetensors codec)

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
TORCH_DTYPE = {"float32": "F32", "bfloat16": "BF16"}
PREFIX = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}
# the keys transformers' config classes write (besides transformers_version)
KEYS_COMMON = ["architectures", "attention_dropout", "hidden_act", "hidden_size",
               "initializer_range", "intermediate_size", "max_position_embeddings", "model_type",
               "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps",
               "rope_theta", "tie_word_embeddings", "torch_dtype", "use_cache", "vocab_size"]
KEYS = {
    "llama": KEYS_COMMON + ["attention_bias", "head_dim", "mlp_bias", "pretraining_tp",
                            "rope_scaling"],
    "mistral": KEYS_COMMON + ["head_dim", "sliding_window"],
    "qwen2": KEYS_COMMON + ["max_window_layers", "rope_scaling", "sliding_window",
                            "use_sliding_window"],
    "qwen3": KEYS_COMMON + ["attention_bias", "head_dim", "max_window_layers", "rope_scaling",
                            "sliding_window", "use_sliding_window"],
}
OPTIONAL_KEYS = {"bos_token_id", "eos_token_id", "id2label", "label2id", "head_dim",
                 "rope_scaling"}


def fail(msg):
    print(f"hf_llama_interop: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# config.json -> llama_ref's model
# ---------------------------------------------------------------------------------------------
def ref_cfg(cfg, T=1):
    """llama_ref.Cfg of a config.json dict, with transformers' defaults for absent keys."""
    nh = cfg["num_attention_heads"]
    rs = cfg.get("rope_scaling")
    llama3 = None
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        llama3 = (rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"],
                  rs["original_max_position_embeddings"])
    mt = cfg["model_type"]
    return llama_ref.Cfg(
        "interop", mt, V=cfg["vocab_size"], C=cfg["hidden_size"], L=cfg["num_hidden_layers"],
        NH=nh, KVH=cfg.get("num_key_value_heads") or nh, F=cfg["intermediate_size"],
        max_seq_len=max(cfg.get("max_position_embeddings", T), T), lengths=[T], seed=0,
        head_dim=cfg.get("head_dim") or 0, theta=cfg.get("rope_theta", 10000.0),
        eps=cfg.get("rms_norm_eps", 1e-6), llama3=llama3, qkv_bias=mt == "qwen2",
        qk_norm=mt == "qwen3", untied=not cfg.get("tie_word_embeddings", False))


def param_shapes(cfg, lm=True, score=False):
    """(HF name, shape) of every parameter, as save_pretrained names them, for a model with an
    LM head (lm) and / or a score head (score)."""
    return [(n, shape) for n, shape, _ in llama_ref.param_specs(ref_cfg(cfg))
            if (n != "lm_head.weight" or lm) and (n != llama_ref.HEAD or score)]


def lm_loss(cfg, P, tokens):
    """Mean next-token cross-entropy of one sequence; P maps HF names to float64 tensors."""
    c = ref_cfg(cfg, len(tokens))
    tok = torch.tensor([tokens])
    logits = llama_ref.lm_logits(c, P, tok, llama_ref.inv_freq(c))[0]
    logp = torch.log_softmax(logits, dim=-1)
    return -logp[:-1].gather(1, tok[0, 1:, None]).mean().item()


# ---------------------------------------------------------------------------------------------
# write
# ---------------------------------------------------------------------------------------------
V, MAXT = 53, 64
TOKENS = [1, 17, 42, 3, 52, 38, 0, 51, 23, 23, 48, 5, 44, 31, 50, 9, 2, 30, 11, 7]


def variant_config(name):
    base = {"attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
            "max_position_embeddings": MAXT, "rms_norm_eps": 1e-5, "torch_dtype": "float32",
            "transformers_version": "4.46.0", "use_cache": True, "vocab_size": V,
            "bos_token_id": 1, "eos_token_id": 2, "num_hidden_layers": 2}
    if name == "llama":
        return dict(base, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=32,
                    intermediate_size=40, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                    attention_bias=False, mlp_bias=False, pretraining_tp=1, rope_theta=500000.0,
                    rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8, "rope_type": "llama3"},
                    tie_word_embeddings=True)
    if name == "qwen2":
        return dict(base, architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=24,
                    intermediate_size=36, num_attention_heads=3, num_key_value_heads=1,
                    max_window_layers=2, rope_scaling=None, rope_theta=1000000.0,
                    sliding_window=MAXT, use_sliding_window=False, tie_word_embeddings=False,
                    torch_dtype="bfloat16", eos_token_id=[2, 0], rms_norm_eps=1e-6)
    if name == "qwen3":
        return dict(base, architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=24,
                    intermediate_size=40, num_attention_heads=3, num_key_value_heads=3,
                    head_dim=16, attention_bias=False, max_window_layers=2, rope_scaling=None,
                    rope_theta=1000000.0, sliding_window=None, use_sliding_window=False,
                    tie_word_embeddings=True)
    if name == "mistral":
        return dict(base, architectures=["MistralForCausalLM"], model_type="mistral",
                    hidden_size=32, intermediate_size=48, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=None, rope_theta=10000.0, sliding_window=None,
                    tie_word_embeddings=False, torch_dtype="float16")
    fail(f"unknown variant {name} (llama, qwen2, qwen3, mistral)")


def store_dtype(variant, name, i):
    if variant == "qwen2":
        return "BF16"
    if variant == "mistral":
        return "F16"
    return ("F32", "F16", "BF16")[i % 3] if variant == "llama" else "F32"


def random_params(cfg, variant):
    """[(name, float64 value as stored, dtype)] in model order: llama_ref's init (matrices
    N(0, 0.2), biases N(0, 0.1), norms 1 + N(0, 0.1)) rounded to each tensor's dtype."""
    torch.manual_seed(20250101)
    P = llama_ref.init_params(ref_cfg(cfg))
    out = []
    for i, (name, _) in enumerate(param_shapes(cfg)):
        dtype = store_dtype(variant, name, i)
        out.append((name, P[name].to(DTYPES[dtype]).to(torch.float64), dtype))
    return out


def write_shards(out_dir, stored, n_shards):
    """stored split into n_shards files in model order, and the index save_pretrained writes."""
    per = (len(stored) + n_shards - 1) // n_shards
    wmap, total = {}, 0
    for s in range(n_shards):
        name = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = stored[s * per:(s + 1) * per]
        write_safetensors(os.path.join(out_dir, name), part)
        for n, t, dt in part:
            wmap[n] = name
            total += t.numel() * torch.finfo(DTYPES.get(dt, torch.float32)).bits // 8
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


def cmd_write(out_dir, variant):
    cfg = variant_config(variant)
    os.makedirs(out_dir, exist_ok=True)
    stored = random_params(cfg, variant)
    P = {n: t for n, t, _ in stored}
    if variant == "llama":   # old exports: RoPE buffers and the tied head written out
        stored += [(f"model.layers.{l}.self_attn.rotary_emb.inv_freq",
                    llama_ref.inv_freq(ref_cfg(cfg)).to(torch.float32), "F32")
                   for l in range(cfg["num_hidden_layers"])]
        stored.append(("lm_head.weight", P["model.embed_tokens.weight"], stored[0][2]))
    shards = {"llama": 3, "qwen3": 2}.get(variant, 1)
    if shards > 1:
        write_shards(out_dir, stored, shards)
    else:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), sorted(stored))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out_dir, "tokens.txt"), "w") as f:
        f.write(" ".join(str(t) for t in TOKENS) + "\n")
    loss = lm_loss(cfg, P, TOKENS)
    with open(os.path.join(out_dir, "expected_loss.txt"), "w") as f:
        f.write(f"{loss:.12f}\n")
    print(f"loss {loss:.12f}")


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------
def check_config(cfg):
    mt = cfg.get("model_type")
    if mt not in KEYS:
        fail(f"config.json: model_type {mt!r} is not of the Llama family")
    keys = list(cfg)
    if keys != sorted(keys):
        fail("config.json: keys are not sorted as transformers writes them")
    missing = [k for k in KEYS[mt] if k not in cfg and k not in OPTIONAL_KEYS]
    extra = [k for k in cfg if k not in KEYS[mt] and k not in OPTIONAL_KEYS]
    if missing or extra:
        fail(f"config.json: keys missing {missing}, not {mt}'s {extra}")
    arch = cfg["architectures"]
    want = [f"{PREFIX[mt]}ForCausalLM", f"{PREFIX[mt]}ForSequenceClassification"]
    if not arch or any(a not in want for a in arch):
        fail(f"config.json: architectures {arch}, expected among {want}")
    score = want[1] in arch
    if score and cfg.get("id2label") != {"0": "LABEL_0"}:
        fail("config.json: a score head needs id2label {'0': 'LABEL_0'} (num_labels 1)")
    if cfg["hidden_act"] != "silu" or cfg["torch_dtype"] not in TORCH_DTYPE:
        fail("config.json: hidden_act or torch_dtype")
    for k in ("rms_norm_eps", "rope_theta", "attention_dropout", "initializer_range"):
        if not isinstance(cfg[k], float):
            fail(f"config.json: {k} is not written as a float")
    return score


def check_layout(path, header, raw_size, dtype):
    """8-byte aligned data, contiguous offsets covering the data area, one dtype."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    if (8 + n) % 8:
        fail(f"{path}: data area not 8-byte aligned")
    spans = sorted(tuple(e["data_offsets"]) for k, e in header.items() if k != "__metadata__")
    pos = 0
    for b, e in spans:
        if b != pos:
            fail(f"{path}: data offsets not contiguous at {b}")
        pos = e
    if pos != raw_size - 8 - n:
        fail(f"{path}: data area has trailing bytes")
    for k, e in header.items():
        if k != "__metadata__" and e["dtype"] != dtype:
            fail(f"{path}: {k} is {e['dtype']}, torch_dtype says {dtype}")


def read_weights(ckpt, dtype):
    """{name: float64} from model.safetensors or the shards of the index, layout checked."""
    single = os.path.join(ckpt, "model.safetensors")
    files = [single]
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if not os.path.exists(single):
        with open(index) as f:
            idx = json.load(f)
        files = [os.path.join(ckpt, s) for s in sorted(set(idx["weight_map"].values()))]
    P, total = {}, 0
    for path in files:
        t, header = read_safetensors(path)
        check_layout(path, header, os.path.getsize(path), dtype)
        for name, e in header.items():
            if name == "__metadata__":
                continue
            total += e["data_offsets"][1] - e["data_offsets"][0]
            if name in P:
                fail(f"{path}: {name} is in two files")
            if not os.path.exists(single) and idx["weight_map"].get(name) != os.path.basename(path):
                fail(f"{index}: does not list {name} in {os.path.basename(path)}")
        P.update(t)
    if not os.path.exists(single):
        if set(idx["weight_map"]) != set(P) or idx["metadata"]["total_size"] != total:
            fail(f"{index}: weight_map or total_size disagrees with the shards")
    return P, len(files)


def cmd_check(ckpt, tokens_file):
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    score = check_config(cfg)
    P, n_files = read_weights(ckpt, TORCH_DTYPE[cfg["torch_dtype"]])
    lm = "ForCausalLM" in cfg["architectures"][0]
    want = param_shapes(cfg, lm, score)
    for name, shape in want:
        if name not in P:
            fail(f"weights: missing {name}")
        if tuple(P[name].shape) != shape:
            fail(f"weights: {name} has shape {tuple(P[name].shape)}, expected {shape}")
    extra = set(P) - {n for n, _ in want}
    if extra:
        fail(f"weights: unexpected tensors {sorted(extra)}")
    with open(tokens_file) as f:
        tokens = [int(t) for t in f.read().split()]
    print(f"files {n_files}, dtype {cfg['torch_dtype']}")
    print(f"loss {lm_loss(cfg, P, tokens):.12f}" if lm else "loss -")


def main():
    # several (DIR, VARIANT) or (DIR, TOKENS) pairs in one run: torch starts once
    args = sys.argv[2:]
    if len(sys.argv) < 4 or sys.argv[1] not in ("write", "check") or len(args) % 2:
        print(__doc__)
        sys.exit(2)
    for i in range(0, len(args), 2):
        (cmd_write if sys.argv[1] == "write" else cmd_check)(args[i], args[i + 1])


if __name__ == "__main__":
    main()
