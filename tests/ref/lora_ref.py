"""Reference LoRA in float64 PyTorch for the C engine's adapters (tests/test_lora.sh runs it).

Usage:  /usr/bin/python3 tests/ref/lora_ref.py DIR
DIR is what `build/tests/test_lora --export DIR ARCH` wrote: base.safetensors (the base model's
Hugging Face tensors), config.txt, adapter/ (adapter_config.json + adapter_model.safetensors as
PEFT writes them) and out.safetensors (the batch, the engine's logits with the adapters, and the
engine's gradients of every lora_A / lora_B for the loss sum w * CE).

The script reads the PEFT files by hand (no peft, no safetensors package): for each module named
base_model.model.<module>.lora_A.weight [r, in] / lora_B.weight [out, r] it replaces the base
layer by  y = base(x) + (alpha / r) * (x A^T) B^T, where base(x) for GPT-2's Conv1D layers is
x @ W with W [in, out] (PEFT's fan_in_fan_out = true: the adapter's delta is (B A)^T there) and
for Llama's nn.Linear x @ W^T. The models are the hand-written float64 ones of gpt2_ref.py /
llama_ref.py, whose linear layers read the effective weight W + scale * delta: the same function
of x as the unmerged sum, exactly, in exact arithmetic. It checks, printing one line per check
and exiting 1 on any failure:
  1. the adapter config is PEFT's (peft_type LORA, fan_in_fan_out as the architecture has it);
  2. every adapter tensor has PEFT's name and shape (A [r, in], B [out, r]) and none is extra;
  3. the engine's logits equal the reference's at every real position (float32 tolerances);
  4. the engine's gradients of every A and B equal PyTorch autograd's of the same loss;
  5. a zero B gives exactly the base model's logits (in the reference);
  6. the trained biases (the adapter's bias "all": every bias of the model) and norms
     (modules_to_save; on a Qwen3-style base its per-head q_norm and k_norm too), saved under the base model's own names (base_model.model.<module>.bias /
     .weight), replace the base's, and the engine's gradients of them equal autograd's.
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref  # noqa: E402
import llama_ref  # noqa: E402

DT = torch.float64


def read_safetensors(path):
    """{name: float64 tensor} of an F32 safetensors file, parsed by hand."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=torch.float32).to(DT)
        out[name] = t.reshape(e["shape"])
    return out


def read_config(path):
    cfg = {}
    with open(path) as f:
        for line in f:
            k, v = line.split()
            cfg[k] = int(v)
    return cfg


FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILS.append(what)


def module_names(cfg):
    """(module path inside the HF model, in, out) of every adaptable layer, PEFT's naming."""
    C, L = cfg["C"], cfg["L"]
    mods = []
    if cfg["arch"] == 0:
        for l in range(L):
            p = f"transformer.h.{l}."
            mods += [(p + "attn.c_attn", C, 3 * C), (p + "attn.c_proj", C, C),
                     (p + "mlp.c_fc", C, 4 * C), (p + "mlp.c_proj", 4 * C, C)]
    else:
        hd = C // cfg["NH"]
        q, kv, F = cfg["NH"] * hd, cfg["KVH"] * hd, cfg["F"]
        for l in range(L):
            p = f"model.layers.{l}."
            mods += [(p + "self_attn.q_proj", C, q), (p + "self_attn.k_proj", C, kv),
                     (p + "self_attn.v_proj", C, kv), (p + "self_attn.o_proj", q, C),
                     (p + "mlp.gate_proj", C, F), (p + "mlp.up_proj", C, F),
                     (p + "mlp.down_proj", F, C)]
    return mods


def base_key(cfg, module):
    """The base tensor (as base.safetensors names it) that a PEFT module path adapts."""
    return (module[len("transformer."):] if cfg["arch"] == 0 else module) + ".weight"


def effective(cfg, P, adapters, scale):
    """The base weights with every adapter applied: W + scale * delta (Conv1D: transposed)."""
    Q = dict(P)
    for module, (A, B) in adapters.items():
        delta = scale * (B @ A)                      # [out, in]
        key = base_key(cfg, module)
        Q[key] = Q[key] + (delta.T if cfg["arch"] == 0 else delta)
    return Q


def bias_names(cfg):
    """The PEFT module path of every trained vector: each bias of the model (PEFT's bias "all")
    and each norm's weight (modules_to_save: the norms; GPT-2's biases of them are biases)."""
    L, names = cfg["L"], []
    for l in range(L):
        if cfg["arch"] == 0:
            p = f"transformer.h.{l}."
            names += [p + m + ".bias" for m in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2",
                                               "mlp.c_fc", "mlp.c_proj")]
            names += [p + "ln_1.weight", p + "ln_2.weight"]
        else:
            p = f"model.layers.{l}."
            if cfg.get("qkv_bias", 1):
                names += [p + "self_attn." + m + ".bias" for m in ("q_proj", "k_proj", "v_proj")]
            names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
            if cfg.get("qk_norm", 0):   # Qwen3's per-head norms (modules_to_save q_norm, k_norm)
                names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
    if cfg["arch"] == 0:
        return names + ["transformer.ln_f.bias", "transformer.ln_f.weight"]
    return names + ["model.norm.weight"]


def vec_key(cfg, name):
    """The base tensor (base.safetensors' name) of a trained vector's PEFT module path."""
    return name[len("transformer."):] if cfg["arch"] == 0 else name


def vec_grad(out, name):
    """The engine's gradient of a trained vector: grad.L.<module> per layer, else grad.<name>."""
    parts = name.split(".")
    if parts[1] in ("h", "layers"):
        return out["grad.%d.%s" % (int(parts[2]), name.split(".", 3)[3])]
    return out["grad." + name]


def logits_of(cfg, Q, tokens):
    if cfg["arch"] == 0:
        gpt2_ref.NH, gpt2_ref.L = cfg["NH"], cfg["L"]
        return gpt2_ref.lm_logits(Q, tokens)
    qk_norm = bool(cfg.get("qk_norm", 0))
    c = llama_ref.Cfg("lora", "qwen3" if qk_norm else "qwen2", V=cfg["V"], C=cfg["C"], L=cfg["L"],
                      NH=cfg["NH"], KVH=cfg["KVH"], F=cfg["F"], max_seq_len=cfg["max_seq_len"],
                      lengths=[tokens.shape[1]], seed=0, qkv_bias=bool(cfg.get("qkv_bias", 1)),
                      qk_norm=qk_norm)
    return llama_ref.lm_logits(c, Q, tokens, llama_ref.inv_freq(c))


def worst_gap(ours, ref, lengths):
    """Largest |ours - ref| over the real positions, relative to 1 + the sequence's largest."""
    worst = 0.0
    for b in range(ours.shape[0]):
        n = int(lengths[b])
        err = (ours[b, :n] - ref[b, :n]).abs().max().item()
        worst = max(worst, err / (1.0 + ref[b, :n].abs().max().item()))
    return worst


def main():
    d = sys.argv[1]
    cfg = read_config(os.path.join(d, "config.txt"))
    P = read_safetensors(os.path.join(d, "base.safetensors"))
    out = read_safetensors(os.path.join(d, "out.safetensors"))
    with open(os.path.join(d, "adapter", "adapter_config.json")) as f:
        ac = json.load(f)
    check(ac["peft_type"] == "LORA" and ac["bias"] == "all" and ac["task_type"] == "CAUSAL_LM",
          "adapter_config.json: peft_type LORA, bias all, task_type CAUSAL_LM")
    check(ac["fan_in_fan_out"] == (cfg["arch"] == 0),
          "adapter_config.json: fan_in_fan_out %s" % ac["fan_in_fan_out"])
    r, scale = ac["r"], ac["lora_alpha"] / ac["r"]
    W = read_safetensors(os.path.join(d, "adapter", "adapter_model.safetensors"))
    adapters, names_ok = {}, True
    for module, fin, fout in module_names(cfg):
        a = W.pop("base_model.model." + module + ".lora_A.weight", None)
        b = W.pop("base_model.model." + module + ".lora_B.weight", None)
        if a is None or b is None or tuple(a.shape) != (r, fin) or tuple(b.shape) != (fout, r):
            names_ok = False
            continue
        adapters[module] = (a.clone().requires_grad_(True), b.clone().requires_grad_(True))
    biases = {}
    for name in bias_names(cfg):
        b = W.pop("base_model.model." + name, None)
        key = vec_key(cfg, name)
        if b is None or b.shape != P[key].shape:
            names_ok = False
            continue
        biases[key] = b.clone().requires_grad_(True)
    check(names_ok and not W, "adapter_model.safetensors: PEFT names, A [r, in], B [out, r], "
          "%d biases, nothing else (%d modules)" % (len(biases), len(adapters)))
    base_P = P
    P = dict(P)
    P.update(biases)   # the trained biases replace the base's

    tokens = out["tokens"].long()
    targets = out["targets"].long()
    weights = out["weights"]
    lengths = out["lengths"].long().flatten()
    Bn, T = tokens.shape
    V = cfg["V"]
    ours = out["logits"].reshape(Bn, T, V)
    Q = effective(cfg, P, adapters, scale)
    ref = logits_of(cfg, Q, tokens)
    worst = worst_gap(ours, ref, lengths)
    check(worst < 2e-5, "logits with the adapters vs the float64 reference (worst %.2e)" % worst)

    # loss = sum w * CE at the real positions with a target (causal: padding changes nothing)
    logp = ref - torch.logsumexp(ref, dim=-1, keepdim=True)
    mask = targets >= 0
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    loss = -(weights * picked * mask).sum()
    loss.backward()
    worst, where = 0.0, ""
    for module, (A, B) in adapters.items():
        # transformer.h.L.<site> / model.layers.L.<site>: the engine's gradient names L.<site>
        l, site = int(module.split(".")[2]), module.split(".", 3)[3]
        for which, t in (("A", A), ("B", B)):
            g = out["grad.%d.%s.lora_%s" % (l, site, which)]
            e = (g - t.grad).abs().max().item() / (1e-3 + t.grad.abs().max().item())
            if e > worst:
                worst, where = e, "%s.lora_%s" % (module, which)
    check(worst < 1e-4, "gradients of every A and B vs autograd (worst relative %.2e at %s)" %
          (worst, where))
    worst, where = 0.0, ""
    for name in bias_names(cfg):
        key = vec_key(cfg, name)
        g = vec_grad(out, name)
        t = biases[key].grad
        e = (g.flatten() - t).abs().max().item() / (1e-3 + t.abs().max().item())
        if e > worst:
            worst, where = e, name
    check(worst < 1e-4, "gradients of every trained bias and norm vs autograd (worst relative "
          "%.2e at %s)" % (worst, where))

    zero = {m: (A.detach(), torch.zeros_like(B)) for m, (A, B) in adapters.items()}
    same = torch.equal(logits_of(cfg, effective(cfg, base_P, zero, scale), tokens),
                       logits_of(cfg, base_P, tokens))
    check(same, "a zero B is exactly the base model")
    if len(sys.argv) > 3 and sys.argv[2] == "--merged":
        M = read_safetensors(os.path.join(sys.argv[3], "model.safetensors"))
        M = {k[len("transformer."):] if k.startswith("transformer.") else k: v
             for k, v in M.items()}
        check(set(M) == set(base_P), "the merged checkpoint holds the base's tensors")
        worst = worst_gap(ours, logits_of(cfg, M, tokens), lengths)
        check(worst < 2e-5, "rlhf merge's checkpoint, no adapters, vs the engine's adapter logits "
              "(worst %.2e)" % worst)
    if FAILS:
        sys.exit(1)


if __name__ == "__main__":
    main()
