"""Hugging Face interop for the checkpoint tests (tests/test_checkpoint.c).

Only the Debian python with torch and the standard library (no `transformers`, no `safetensors`
package): safetensors files are read and written by hand with struct + json. The format is
    u64 little-endian header length N | N bytes of JSON | data area
    JSON: {name: {"dtype": "F32"|"F16"|"BF16"|..., "shape": [...], "data_offsets": [begin, end]},
           "__metadata__": {...}}   (offsets relative to the data area)

Usage (from the repository root):
  /usr/bin/python3 tests/ref/hf_interop.py write DIR
      Writes a tiny random GPT-2 the way Hugging Face files look: config.json with the usual
      GPT2Config keys, model.safetensors with *bare* names (as the public gpt2 files), some
      tensors stored as F16 / BF16, an h.0.attn.bias / h.0.attn.masked_bias buffer (F32) and an
      h.1.attn.bias buffer stored as U8, the tied lm_head.weight, tensors in name order (not
      model order); plus tokens.txt (the fixed token sequence) and expected_loss.txt: the mean
      next-token cross-entropy of that sequence, computed in float64 from exactly the stored
      (rounded) values. The committed output is tests/fixtures/hf_tiny/.
  /usr/bin/python3 tests/ref/hf_interop.py check DIR
      Reads a checkpoint saved by ckpt_save: checks config.json, checks that model.safetensors is
      what HF save_pretrained writes ("transformer."-prefixed F32 tensors with HF GPT-2 shapes,
      bare score.weight, 8-byte aligned data, offsets contiguous and covering the data area),
      checks trainer_state.safetensors / trainer_state.json when present, and prints
      "loss <value>" for the same token sequence with the same float64 forward.

The model (hand-written, float64): learned token + position embeddings, pre-LN blocks, causal
attention with scale 1/sqrt(head_dim), MLP with GELU (tanh), final LayerNorm, tied LM head;
Conv1D weights are [in, out] (y = x @ W + b). V = 101 (odd), NH = 3 (odd), head_dim 8.
"""
import json
import math
import os
import struct
import sys

import torch

from gpt2_ref import gelu_tanh  # noqa: E402  (the reference model's GELU: one definition)

V, MAXT, L, NH, C = 101, 16, 2, 3, 24
LN_EPS = 1e-5
SEED = 20240601
BOS = 100
TOKENS = [100, 17, 42, 3, 99, 58, 0, 71, 23, 23, 88, 5, 64, 31, 100, 9]   # T = 16 = n_positions
# storage dtype of some tensors (the rest are F32), to exercise conversion in the loader
STORE = {"wpe.weight": "F16", "h.0.attn.c_attn.weight": "BF16", "h.1.mlp.c_fc.weight": "F16",
         "h.1.ln_2.bias": "BF16", "h.0.ln_1.weight": "F16"}
DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


def param_shapes(n_layer, n_embd, vocab, npos, score=False):
    """(bare HF name, shape) for every GPT-2 parameter, in model order."""
    c = n_embd
    out = [("wte.weight", (vocab, c)), ("wpe.weight", (npos, c))]
    for l in range(n_layer):
        p = f"h.{l}."
        out += [(p + "ln_1.weight", (c,)), (p + "ln_1.bias", (c,)),
                (p + "attn.c_attn.weight", (c, 3 * c)), (p + "attn.c_attn.bias", (3 * c,)),
                (p + "attn.c_proj.weight", (c, c)), (p + "attn.c_proj.bias", (c,)),
                (p + "ln_2.weight", (c,)), (p + "ln_2.bias", (c,)),
                (p + "mlp.c_fc.weight", (c, 4 * c)), (p + "mlp.c_fc.bias", (4 * c,)),
                (p + "mlp.c_proj.weight", (4 * c, c)), (p + "mlp.c_proj.bias", (c,))]
    out += [("ln_f.weight", (c,)), ("ln_f.bias", (c,))]
    if score:
        out.append(("score.weight", (1, c)))
    return out


# ---------------------------------------------------------------------------------------------
# safetensors by hand
# ---------------------------------------------------------------------------------------------
def tensor_bytes(t, dtype):
    """Raw little-endian bytes of t stored as dtype (F32/F16/BF16/U8)."""
    flat = t.reshape(-1)
    if dtype == "F32":
        return struct.pack(f"<{flat.numel()}f", *flat.to(torch.float32).tolist())
    if dtype in ("F16", "BF16"):
        bits = flat.to(DTYPES[dtype][0]).view(torch.int16).tolist()
        return struct.pack(f"<{len(bits)}h", *bits)
    if dtype == "U8":
        return bytes(int(v) for v in flat.tolist())
    raise ValueError(dtype)


def write_safetensors(path, tensors):
    """tensors: list of (name, tensor, dtype) written in this order."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t, dtype in tensors:
        b = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def fail(msg):
    print(f"hf_interop: {msg}", file=sys.stderr)
    sys.exit(1)


def read_safetensors(path, strict=False):
    """Returns ({name: float64 tensor}, header). strict: the layout ckpt_save must produce."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        fail(f"{path}: too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        fail(f"{path}: header length {n} exceeds the file")
    header = json.loads(raw[8:8 + n].decode())
    data = raw[8 + n:]
    if strict and (8 + n) % 8:
        fail(f"{path}: data area not 8-byte aligned")
    out, spans = {}, []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (b, en) = e["dtype"], e["shape"], e["data_offsets"]
        numel = math.prod(shape)
        if strict and dtype != "F32":
            fail(f"{path}: {name} is {dtype}, expected F32")
        if dtype == "F32":
            vals = struct.unpack(f"<{numel}f", data[b:en])
        elif dtype == "F16":
            vals = struct.unpack(f"<{numel}e", data[b:en])
        elif dtype == "BF16":
            vals = [struct.unpack("<f", struct.pack("<I", h << 16))[0]
                    for h in struct.unpack(f"<{numel}H", data[b:en])]
        else:
            spans.append((b, en))
            continue
        if en - b != numel * DTYPES[dtype][1]:
            fail(f"{path}: {name}: size mismatch")
        out[name] = torch.tensor(vals, dtype=torch.float64).reshape(shape)
        spans.append((b, en))
    if strict:
        spans.sort()
        pos = 0
        for b, en in spans:
            if b != pos:
                fail(f"{path}: data offsets not contiguous at {b}")
            pos = en
        if pos != len(data):
            fail(f"{path}: data area has {len(data) - pos} trailing bytes")
    return out, header


# ---------------------------------------------------------------------------------------------
# The model (float64)
# ---------------------------------------------------------------------------------------------
def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def final_hidden(P, tokens, n_layer, n_head, eps):
    """ln_f of the last block's output (T, C) for one sequence; P maps bare names to float64
    tensors. tests/test_reward.sh scores with it (GPT2ForSequenceClassification)."""
    tok = torch.tensor(tokens)
    T = len(tokens)
    x = P["wte.weight"][tok] + P["wpe.weight"][:T]
    c = x.shape[-1]
    hd = c // n_head
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for l in range(n_layer):
        p = f"h.{l}."
        h = layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        q, k, v = (h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]).split(c, dim=-1)
        q, k, v = (z.reshape(T, n_head, hd).transpose(0, 1) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(0, 1).reshape(T, c)
        x = x + y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        h = layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        h = gelu_tanh(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
        x = x + h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
    return layer_norm(x, P["ln_f.weight"], P["ln_f.bias"], eps)


def lm_loss(P, tokens, n_layer, n_head, eps):
    """Mean next-token cross-entropy of one sequence (tied LM head)."""
    x = final_hidden(P, tokens, n_layer, n_head, eps)
    logits = x @ P["wte.weight"].T
    logp = torch.log_softmax(logits, dim=-1)
    tgt = torch.tensor(tokens)[1:]
    return -logp[:-1].gather(1, tgt[:, None]).mean().item()


# ---------------------------------------------------------------------------------------------
# write / check
# ---------------------------------------------------------------------------------------------
def cmd_write(out_dir):
    torch.manual_seed(SEED)
    os.makedirs(out_dir, exist_ok=True)
    stored, P = [], {}
    for name, shape in param_shapes(L, C, V, MAXT):
        z = torch.randn(shape, dtype=torch.float64)
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            t = 1.0 + 0.1 * z
        elif name.endswith("bias"):
            t = 0.05 * z
        elif name == "wte.weight":
            t = 0.3 * z       # logits of std ~1.5: the loss is far from log(V) and sensitive
        else:
            t = 0.1 * z
        dtype = STORE.get(name, "F32")
        t = t.to(DTYPES[dtype][0]).to(torch.float64)    # the value the file really holds
        P[name] = t
        stored.append((name, t, dtype))
    causal = torch.tril(torch.ones(MAXT, MAXT)).reshape(1, 1, MAXT, MAXT)
    stored += [("h.0.attn.bias", causal, "F32"), ("h.0.attn.masked_bias", torch.tensor(-1e4), "F32"),
               ("h.1.attn.bias", causal, "U8"), ("lm_head.weight", P["wte.weight"], "F32")]
    stored.sort(key=lambda e: e[0])
    write_safetensors(os.path.join(out_dir, "model.safetensors"), stored)
    config = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": BOS, "embd_pdrop": 0.1, "eos_token_id": BOS, "initializer_range": 0.02,
        "layer_norm_epsilon": LN_EPS, "model_type": "gpt2", "n_ctx": MAXT, "n_embd": C, "n_head": NH,
        "n_inner": None, "n_layer": L, "n_positions": MAXT, "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1, "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 16}},
        "torch_dtype": "float32", "transformers_version": "4.36.2", "use_cache": True, "vocab_size": V}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "tokens.txt"), "w") as f:
        f.write(" ".join(str(t) for t in TOKENS) + "\n")
    loss = lm_loss(P, TOKENS, L, NH, LN_EPS)
    with open(os.path.join(out_dir, "expected_loss.txt"), "w") as f:
        f.write(f"{loss:.12f}\n")
    print(f"loss {loss:.12f}")


def cmd_check(ckpt):
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "gpt2":
        fail("config.json: model_type is not gpt2")
    for key in ("n_layer", "n_head", "n_embd", "n_positions", "n_ctx", "vocab_size", "layer_norm_epsilon", "architectures"):
        if key not in cfg:
            fail(f"config.json: missing {key}")
    n_layer, n_head, n_embd, vocab, npos = (cfg[k] for k in ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions"))
    score = "GPT2ForSequenceClassification" in cfg["architectures"]
    if score and cfg.get("num_labels") != 1:
        fail("config.json: a score head needs num_labels 1")
    tensors, _ = read_safetensors(os.path.join(ckpt, "model.safetensors"), strict=True)
    want = param_shapes(n_layer, n_embd, vocab, npos, score)
    P = {}
    for name, shape in want:
        key = name if name == "score.weight" else "transformer." + name
        if key not in tensors:
            fail(f"model.safetensors: missing {key}")
        if tuple(tensors[key].shape) != shape:
            fail(f"model.safetensors: {key} has shape {tuple(tensors[key].shape)}, expected {shape}")
        P[name] = tensors.pop(key)
    if tensors:
        fail(f"model.safetensors: unexpected tensors {sorted(tensors)}")
    ts = os.path.join(ckpt, "trainer_state.safetensors")
    if os.path.exists(ts):
        moments, _ = read_safetensors(ts, strict=True)
        for name, shape in want:
            for k in ("m.", "v."):
                if tuple(moments.pop(k + name).shape) != shape:
                    fail(f"trainer_state.safetensors: {k + name} has the wrong shape")
        if moments:
            fail(f"trainer_state.safetensors: unexpected tensors {sorted(moments)}")
        with open(os.path.join(ckpt, "trainer_state.json")) as f:
            st = json.load(f)
        if len(st["rng"]) != 4 or not all(isinstance(s, str) and 0 <= int(s) < 2 ** 64 for s in st["rng"]):
            fail("trainer_state.json: rng must be 4 u64 decimal strings")
        print(f"trainer_state ok: step {st['step']}, {len(st['ints'])} ints, {len(st['floats'])} floats")
    loss = lm_loss(P, TOKENS, n_layer, n_head, cfg["layer_norm_epsilon"])
    print(f"loss {loss:.12f}")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        print(__doc__)
        sys.exit(2)
    (cmd_write if sys.argv[1] == "write" else cmd_check)(sys.argv[2])


if __name__ == "__main__":
    main()
