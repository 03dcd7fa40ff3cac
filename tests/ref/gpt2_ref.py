"""Reference GPT-2 for the C engine's tests: writes tests/fixtures/gpt2_tiny.bin.

A self-contained, hand-written GPT-2 (no `transformers`) evaluated in float64, which is the
truth; results are stored as float32. Semantics are exactly GPT-2's:
  * learned token + position embeddings, pre-LN blocks, final LayerNorm ln_f (eps 1e-5)
  * causal self-attention, scale 1/sqrt(head_dim); c_attn output split [q | k | v], each C
    wide, head h = columns [h*hd, (h+1)*hd) of each
  * MLP C -> 4C -> C with GELU, tanh approximation
  * tied LM head: logits = ln_f(x) @ wte^T
  * scalar head (as HF GPT2ForSequenceClassification, no bias): value = ln_f(x) @ score.weight^T
  * no dropout
Parameters use Hugging Face names and Conv1D layouts (weight [in, out], y = x @ W + b).

Run from the repository root:  /usr/bin/python3 tests/ref/gpt2_ref.py
(it must be the Debian python with torch). The script also proves itself before writing:
  1. an independent forward built from torch's own kernels (F.layer_norm, F.gelu,
     F.multi_head_attention_forward, F.cross_entropy) must match the hand-written one, with
     matching gradients;
  2. central finite differences in float64 must match autograd (rel err < 1e-6) for a
     sample of entries of every parameter, for both the LM loss and the value objective;
  3. a hand-written AdamW + grad clipping must reproduce torch.optim.AdamW step by step
     (this pins down the exact update the C code must implement).

Fixture contents (dims in brackets; float32 unless marked int32):
  config int32 [5] = [maxT, V, L, NH, C]; lengths int32 [B]; tokens int32 [B,T];
  targets int32 [B,T] (-1 at padding); weights [B,T] (normalised loss weights);
  every parameter under its HF name; logits [B,T,V]; loss [1];
  grad.<name> for every parameter except score.weight (d loss / d param);
  values [B,T]; dvalues [B,T]; sgrad.<name> for every parameter (d sum(dvalues*values));
  adam_losses [10]; adam_gradnorm [10] (pre-clip global norm); final.<name> for every
  parameter except score.weight (after 10 AdamW steps on the LM loss).

Note for the C tests: the key slice [C, 2C) of each h.*.attn.c_attn.bias has an exactly-zero
true gradient (a constant added to every key shifts each softmax row by a constant), so
grad.*/sgrad.* hold ~1e-17 there, and after 10 AdamW steps a float32 implementation ends up
~1e-3 away from final.* in that slice (Adam turns rounding noise into updates of up to
~lr * |g| / (|g| + eps)). Measured with torch float32: every other final.* entry is within
2e-6, grads within 1e-6 of their max, adam_losses within 3e-7, so compare that slice loosely.
"""
import math
import os
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refcheck import (adamw_step, finite_difference_check, grads_of,  # noqa: E402
                      leaf_copy, max_rel, write_fixture_checked)

DT = torch.float64

# ---------------------------------------------------------------------------------------------
# Configuration of the test case
# ---------------------------------------------------------------------------------------------
V, MAXT, L, NH, C = 97, 16, 2, 3, 24   # V not a power of two, odd head count, head_dim 8
B, T = 3, 11
LENGTHS = [11, 7, 4]                   # right padding
PROMPT_LEN = 3                         # sequence 0's first 3 positions carry no loss
SEED = 1234
ADAM_STEPS = 10
ADAM_LR, ADAM_BETAS, ADAM_EPS, ADAM_WD = 1e-2, (0.9, 0.95), 1e-8, 0.1
CLIP_NORM = 1.0
LN_EPS = 1e-5
HEAD = "score.weight"                  # the scalar value head; not part of the LM loss

OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "gpt2_tiny.bin")


def param_specs():
    """(name, shape, kind) for every parameter in HF GPT-2 order. kind selects the init."""
    specs = [("wte.weight", (V, C), "matrix"), ("wpe.weight", (MAXT, C), "matrix")]
    for l in range(L):
        p = f"h.{l}."
        specs += [
            (p + "ln_1.weight", (C,), "ln_w"), (p + "ln_1.bias", (C,), "bias"),
            (p + "attn.c_attn.weight", (C, 3 * C), "matrix"), (p + "attn.c_attn.bias", (3 * C,), "bias"),
            (p + "attn.c_proj.weight", (C, C), "matrix"), (p + "attn.c_proj.bias", (C,), "bias"),
            (p + "ln_2.weight", (C,), "ln_w"), (p + "ln_2.bias", (C,), "bias"),
            (p + "mlp.c_fc.weight", (C, 4 * C), "matrix"), (p + "mlp.c_fc.bias", (4 * C,), "bias"),
            (p + "mlp.c_proj.weight", (4 * C, C), "matrix"), (p + "mlp.c_proj.bias", (C,), "bias"),
        ]
    specs += [("ln_f.weight", (C,), "ln_w"), ("ln_f.bias", (C,), "bias"), (HEAD, (1, C), "matrix")]
    return specs


def init_params():
    """Deterministic init (draws from the default generator, seeded by the caller).
    Weight matrices N(0, 0.1), biases N(0, 0.05), LN weights 1 + N(0, 0.1), LN biases N(0, 0.05)
    (the LN biases are "bias" kind), score.weight N(0, 0.1). Deliberately larger than GPT-2's
    0.02 so that every term of the computation visibly matters."""
    params = OrderedDict()
    for name, shape, kind in param_specs():
        z = torch.randn(shape, dtype=DT)
        if kind == "matrix":
            params[name] = 0.1 * z
        elif kind == "bias":
            params[name] = 0.05 * z
        else:  # layernorm weight
            params[name] = 1.0 + 0.1 * z
    return params


# ---------------------------------------------------------------------------------------------
# The hand-written model (every op spelled out; autograd provides the backward)
# ---------------------------------------------------------------------------------------------
def layer_norm(x, w, b):
    """LayerNorm over the last dim: biased variance, eps inside the sqrt."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + LN_EPS) * w + b


def gelu_tanh(x):
    """GELU, tanh approximation (GPT-2's 'gelu_new')."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def causal_self_attention(x, w_attn, b_attn, w_proj, b_proj):
    """x (B,T,C) -> (B,T,C). qkv = x @ c_attn + b, split [q|k|v]; heads are contiguous slices."""
    Bx, Tx, Cx = x.shape
    hd = Cx // NH
    qkv = x @ w_attn + b_attn                                  # (B,T,3C)
    q, k, v = qkv.split(Cx, dim=-1)
    q = q.reshape(Bx, Tx, NH, hd).transpose(1, 2)              # (B,NH,T,hd)
    k = k.reshape(Bx, Tx, NH, hd).transpose(1, 2)
    v = v.reshape(Bx, Tx, NH, hd).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)            # (B,NH,T,T)
    future = torch.triu(torch.ones(Tx, Tx, dtype=torch.bool), diagonal=1)
    att = att.masked_fill(future, float("-inf"))
    att = torch.exp(att - att.amax(-1, keepdim=True))          # softmax, spelled out
    att = att / att.sum(-1, keepdim=True)
    y = (att @ v).transpose(1, 2).reshape(Bx, Tx, Cx)          # heads back side by side
    return y @ w_proj + b_proj


def hidden_states(P, tokens):
    """Returns ln_f(x) (B,T,C) for int tokens (B,T). Every position is computed causally."""
    Tx = tokens.shape[1]
    x = P["wte.weight"][tokens] + P["wpe.weight"][:Tx]
    for l in range(L):
        p = f"h.{l}."
        h = layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
        x = x + causal_self_attention(h, P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"],
                                      P[p + "attn.c_proj.weight"], P[p + "attn.c_proj.bias"])
        h = layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
        h = gelu_tanh(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
        x = x + h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
    return layer_norm(x, P["ln_f.weight"], P["ln_f.bias"])


def lm_logits(P, tokens):
    """Tied LM head: (B,T,V)."""
    return hidden_states(P, tokens) @ P["wte.weight"].T


def weighted_ce(logits, targets, weights):
    """sum_{b,t} weights[b,t] * CE(logits[b,t], targets[b,t]); targets -1 contribute nothing."""
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    valid = targets >= 0
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (weights * torch.where(valid, nll, torch.zeros_like(nll))).sum()


def lm_loss(P, tokens, targets, weights):
    return weighted_ce(lm_logits(P, tokens), targets, weights)


def values_fn(P, tokens):
    """Scalar head at every position: (B,T)."""
    return (hidden_states(P, tokens) @ P[HEAD].T).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# Independent re-implementation from torch's built-in kernels (check 1)
# ---------------------------------------------------------------------------------------------
def builtin_hidden_states(P, tokens):
    """Same model through F.embedding / F.layer_norm / F.multi_head_attention_forward / F.gelu.
    MHA uses [out, in] weights, so the Conv1D weights are transposed; its head split (reshape
    to (T, B*NH, hd)) is the same contiguous-slice convention GPT-2 uses."""
    Bx, Tx = tokens.shape
    x = F.embedding(tokens, P["wte.weight"]) + F.embedding(torch.arange(Tx), P["wpe.weight"])
    causal = torch.triu(torch.full((Tx, Tx), float("-inf"), dtype=DT), diagonal=1)
    for l in range(L):
        p = f"h.{l}."
        h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps=LN_EPS)
        hT = h.transpose(0, 1)                                    # MHA wants (T,B,C)
        a, _ = F.multi_head_attention_forward(
            hT, hT, hT, C, NH, P[p + "attn.c_attn.weight"].T, P[p + "attn.c_attn.bias"],
            None, None, False, 0.0, P[p + "attn.c_proj.weight"].T, P[p + "attn.c_proj.bias"],
            training=False, need_weights=False, attn_mask=causal)
        x = x + a.transpose(0, 1)
        h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps=LN_EPS)
        h = F.gelu(F.linear(h, P[p + "mlp.c_fc.weight"].T, P[p + "mlp.c_fc.bias"]), approximate="tanh")
        x = x + F.linear(h, P[p + "mlp.c_proj.weight"].T, P[p + "mlp.c_proj.bias"])
    return F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], eps=LN_EPS)


def builtin_lm_loss(P, tokens, targets, weights):
    logits = F.linear(builtin_hidden_states(P, tokens), P["wte.weight"])
    ce = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1, reduction="none")
    return logits, (ce * weights.reshape(-1)).sum()


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def make_inputs():
    """tokens, targets, weights, dvalues (drawn after the parameters, same generator)."""
    lengths = torch.tensor(LENGTHS)
    pos = torch.arange(T).unsqueeze(0)
    real = pos < lengths.unsqueeze(1)                                # (B,T) bool
    tokens = torch.randint(0, V, (B, T))
    tokens[~real] = 0
    last_target = torch.randint(0, V, (B,))                          # target after the last token
    targets = torch.full((B, T), -1, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        targets[b, :n - 1] = tokens[b, 1:n]
        targets[b, n - 1] = last_target[b]
    mask = real.to(DT)
    mask[0, :PROMPT_LEN] = 0.0
    weights = mask / mask.sum()
    dvalues = torch.randn(B, T, dtype=DT) * real.to(DT)
    return lengths, tokens, targets, weights, dvalues


def main():
    torch.manual_seed(SEED)
    P0 = init_params()
    lengths, tokens, targets, weights, dvalues = make_inputs()
    lm_names = [n for n in P0 if n != HEAD]

    def f_lm(P):
        return lm_loss(P, tokens, targets, weights)

    def f_val(P):
        return (dvalues * values_fn(P, tokens)).sum()

    # Forward + gradients (the truth).
    with torch.no_grad():
        logits = lm_logits(P0, tokens)
        values = values_fn(P0, tokens)
    loss, G_all = grads_of(f_lm, P0)
    G = OrderedDict((n, G_all[n]) for n in lm_names)
    assert G_all[HEAD].abs().max() == 0
    _, SG = grads_of(f_val, P0)
    print(f"loss {loss.item():.10f}  (uniform would be {math.log(V):.4f})")

    # Check 1: independent forward from torch built-ins, and its autograd gradients.
    print("validation:")
    with torch.no_grad():
        bl_logits, bl_loss = builtin_lm_loss(P0, tokens, targets, weights)
        bl_values = (builtin_hidden_states(P0, tokens) @ P0[HEAD].T).squeeze(-1)
    e_logits, e_loss, e_vals = max_rel(bl_logits, logits), abs(bl_loss.item() - loss.item()), max_rel(bl_values, values)
    _, BG = grads_of(lambda P: builtin_lm_loss(P, tokens, targets, weights)[1], P0)
    e_grad = max(max_rel(BG[n], G[n]) for n in lm_names)
    print(f"  built-in kernels: logits rel {e_logits:.3g}, loss abs {e_loss:.3g}, values rel {e_vals:.3g}, "
          f"grads worst rel {e_grad:.3g}")
    assert max(e_logits, e_loss, e_vals, e_grad) < 1e-12

    # Check 2: finite differences for both objectives.
    fd_lm = finite_difference_check(f_lm, P0, G, "LM loss")
    fd_val = finite_difference_check(f_val, P0, SG, "values")

    # The training run: 10 steps of torch AdamW on the LM loss (score.weight not involved).
    P = leaf_copy(P0, lm_names)
    decay = [p for p in P.values() if p.ndim >= 2]
    no_decay = [p for p in P.values() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAM_WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS)
    Pm = OrderedDict((n, P0[n].clone()) for n in lm_names)      # check 3: manual AdamW alongside
    mstate = {}
    adam_losses, adam_norms = [], []
    for step in range(1, ADAM_STEPS + 1):
        opt.zero_grad(set_to_none=True)
        l = lm_loss(P, tokens, targets, weights)
        l.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(P.values()), CLIP_NORM)
        opt.step()
        adam_losses.append(l.item())
        adam_norms.append(norm.item())
        ml, mg = grads_of(f_lm, Pm)
        mnorm = adamw_step(Pm, mg, mstate, step, ADAM_LR, ADAM_BETAS, ADAM_EPS, ADAM_WD, CLIP_NORM)
        assert abs(ml.item() - l.item()) < 1e-12 and abs(mnorm - norm.item()) < 1e-12
    # The key slice [C, 2C) of every c_attn.bias has an exactly-zero true gradient (adding a
    # constant to all keys shifts each softmax row by a constant), so its computed gradient is
    # pure rounding noise which Adam normalises into updates of up to ~lr * |g| / (|g| + eps).
    # Compare it on an absolute scale; everything else must agree to float64 rounding.
    def split_kbias(n, t):
        if n.endswith("attn.c_attn.bias"):
            return torch.cat([t[:C], t[2 * C:]]), t[C:2 * C]
        return t, t[:0]
    e_adam, e_kbias = 0.0, 0.0
    for n in lm_names:
        (a, ak), (b, bk) = split_kbias(n, Pm[n]), split_kbias(n, P[n].detach())
        e_adam = max(e_adam, max_rel(a, b))
        if ak.numel():
            e_kbias = max(e_kbias, (ak - bk).abs().max().item())
    print(f"  manual AdamW vs torch.optim.AdamW after {ADAM_STEPS} steps: worst rel {e_adam:.3g} "
          f"(key-bias slices, zero true gradient: max abs {e_kbias:.3g})")
    assert e_adam < 1e-12 and e_kbias < 1e-9
    print("  adam losses  " + " ".join(f"{x:.5f}" for x in adam_losses))
    print("  adam norms   " + " ".join(f"{x:.5f}" for x in adam_norms))
    assert adam_losses[-1] < adam_losses[0], "AdamW did not reduce the loss"
    assert adam_norms[0] > CLIP_NORM, "clipping should be active at least on the first step"

    # Write the fixture.
    tensors = [
        ("config", torch.tensor([MAXT, V, L, NH, C], dtype=torch.int32)),
        ("lengths", lengths), ("tokens", tokens), ("targets", targets), ("weights", weights),
    ]
    tensors += [(n, p) for n, p in P0.items()]
    tensors += [("logits", logits), ("loss", loss.reshape(1))]
    tensors += [("grad." + n, g) for n, g in G.items()]
    tensors += [("values", values), ("dvalues", dvalues)]
    tensors += [("sgrad." + n, g) for n, g in SG.items()]
    tensors += [("adam_losses", torch.tensor(adam_losses, dtype=DT)),
                ("adam_gradnorm", torch.tensor(adam_norms, dtype=DT))]
    tensors += [("final." + n, P[n]) for n in lm_names]
    path = os.path.normpath(OUT_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_fixture_checked(path, tensors)
    print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
