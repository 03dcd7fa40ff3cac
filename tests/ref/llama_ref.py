"""Reference Llama-family models for the C engine's tests: writes tests/fixtures/llama_*.bin.

A self-contained, hand-written Llama-style transformer (no `transformers`) evaluated in float64,
which is the truth; results are stored as float32. The semantics are those of Hugging Face's
LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM:
  * token embeddings model.embed_tokens, no learned positions, no dropout
  * pre-norm blocks with RMSNorm: x * 1/sqrt(mean(x^2) + eps) * weight (eps inside the sqrt)
  * attention: q/k/v = nn.Linear (weight [out, in], y = x @ W^T [+ b]); q_proj NH*hd rows,
    k_proj / v_proj KVH*hd rows; head h is rows [h*hd, (h+1)*hd); q head h reads kv head
    h // (NH/KVH) (HF repeat_kv); biases only with qkv_bias (Qwen2); with qk_norm (Qwen3) an
    RMSNorm over each head's hd values of q and of k (q_norm / k_norm weights (hd)) BEFORE RoPE
  * RoPE in the HF rotate_half convention: element i of a head pairs with element i + hd/2,
    angle = position * inv_freq[i], inv_freq[i] = theta^(-2i/hd), optionally rescaled as
    Llama 3's rope_scaling {rope_type: llama3, factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings}; positions restart at 0 in every sequence
  * causal softmax attention, scale 1/sqrt(hd); o_proj [C, NH*hd]
  * SwiGLU MLP: down_proj(silu(gate_proj(x)) * up_proj(x))
  * final RMSNorm model.norm; LM head logits = h @ W^T with W = lm_head.weight when untied,
    else model.embed_tokens.weight
  * scalar head (as HF *ForSequenceClassification, no bias): value = model.norm(x) @ score.weight^T
    at every token (the C engine's value head; a reward model reads the last real token)
The parameters are drawn, then rounded to float32, so the float64 truth is computed from exactly
the values stored in the fixture (loss weights and dvalues likewise).

Run from the repository root:  /usr/bin/python3 tests/ref/llama_ref.py
(it must be the Debian python with torch). The script proves itself before writing anything:
  1. RoPE against its definition: the rotate_half form equals multiplying each pair
     (x_i, x_{i+hd/2}) as a complex number by exp(i * pos * inv_freq_i) (torch.complex128); the
     rotation keeps norms and <R(m)q, R(n)k> depends only on m - n.
  2. Llama 3 inv_freq: the vectorised form used by the model equals the formula evaluated
     element by element in plain Python floats (math module), every regime (kept, divided by
     factor, interpolated) occurs, and the result is continuous at both wavelength boundaries.
  3. A second forward written differently (per-head loop with the kv index h // (NH/KVH), the
     complex RoPE, norms through vector_norm, torch.softmax / F.silu / F.cross_entropy) gives
     the same logits, loss and values (rel < 1e-12); each sequence run alone gives the same
     results as in the padded batch.
  4. Central finite differences (fourth order, float64) match autograd for a sample of entries
     of every parameter, for the LM loss and the value objective.
  5. A hand-written AdamW + clipping (the C engine's update, common/optim.c) reproduces
     torch.optim.AdamW + clip_grad_norm_ step by step.
  6. The same model and AdamW run in torch float32 stay well inside the C test's tolerances
     (logits, gradients relative to their tensor's max, parameters after 10 steps: < 2e-5), so
     the fixture can be met by a correct float32 engine.

Fixture contents (float32 unless marked int32; B sequences, T padded length, N = sum(lengths)):
  config.<field> int32 0-d: family (model.h MODEL_FAMILY_*: 1 llama, 2 mistral, 3 qwen2,
    4 qwen3), max_seq_len, vocab_size, n_layer, n_head, n_embd, n_kv_head, head_dim (0 = implied
    n_embd / n_head), d_ff, rope_scaling (0 default, 1 llama3), rope_original_max_pos, qkv_bias,
    qk_norm, untied; config.<field> float32 0-d: ln_eps (rms_norm_eps), rope_theta, rope_factor,
    rope_low_freq_factor, rope_high_freq_factor.
  adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay, adam.grad_clip: float32 0-d.
  rope_inv_freq [hd/2]: the (scaled) inverse frequencies, float64 truth rounded once.
  lengths int32 [B]; tokens int32 [B,T] (0 at padding); targets int32 [B,T] (-1 at padding, at
    the prompt of sequence 0 and at one more position of sequence 1); weights [B,T] (the loss is
    sum over targets >= 0 of weights * CE; weights are nonzero at one position whose target is
    -1, which must count for nothing, and 0 at the prompt).
  every parameter under its HF name (the engine's model_tensor names, nn.Linear [out, in]);
  logits [N,V]: the real positions only, packed sequence after sequence; loss [1];
  grad.<name> for every parameter except score.weight (d loss / d param);
  values [B,T] (0 at padding); dvalues [B,T] (0 at padding); sgrad.<name> for every parameter
    (d sum(dvalues * values));
  adam_losses [10] (the loss before each step); adam_gradnorm [10] (pre-clip global norm);
  final.<name> for every parameter except score.weight, after 10 AdamW steps on the LM loss
    (weight decay on the matrices, ndim >= 2: embeddings, projections, lm_head.weight).
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
HEAD = "score.weight"
ADAM_STEPS = 10
# eps 1e-5, not torch's 1e-8: Adam's first step is lr * g / (|g| + eps), whose slope at g ~ 0 is
# lr / eps, so an entry whose true gradient is below float32 noise (~1e-8 here; every case has a
# few among its ~10^4 entries) would move by ~1e-4 differently in a correct float32 engine with
# eps 1e-8 (measured with torch float32: 4e-4 after 10 steps). With 1e-5 the float32 run stays
# within 1e-5 (check 6), and eps's place in the update (outside the sqrt, after the bias
# correction of v) matters more, not less.
ADAM = OrderedDict([("lr", 1e-2), ("beta1", 0.9), ("beta2", 0.95), ("eps", 1e-5),
                    ("weight_decay", 0.1), ("grad_clip", 1.0)])
# adamw_step's lr, betas, eps, wd, clip
ADAM_ARGS = (ADAM["lr"], (ADAM["beta1"], ADAM["beta2"]), ADAM["eps"], ADAM["weight_decay"],
             ADAM["grad_clip"])
FAMILY = {"llama": 1, "mistral": 2, "qwen2": 3, "qwen3": 4}
FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def f32(x):
    """x rounded to the nearest float32, as a Python float (config values the C side reads)."""
    return torch.tensor(x, dtype=torch.float32).item()


class Cfg:
    """One test case: the model's shape and options, and its batch."""

    def __init__(self, name, family, V, C, L, NH, KVH, F, max_seq_len, lengths, seed,
                 head_dim=0, theta=10000.0, eps=1e-5, llama3=None, qkv_bias=False,
                 qk_norm=False, untied=False, prompt_len=3):
        self.name, self.family, self.seed = name, family, seed
        self.V, self.C, self.L, self.NH, self.KVH, self.F = V, C, L, NH, KVH, F
        self.head_dim = head_dim                       # as written in the config (0 = implied)
        self.hd = head_dim or C // NH
        self.max_seq_len, self.lengths, self.prompt_len = max_seq_len, lengths, prompt_len
        self.theta, self.eps = f32(theta), f32(eps)
        self.llama3 = llama3   # None or (factor, low_freq_factor, high_freq_factor, orig_max_pos)
        self.qkv_bias, self.qk_norm, self.untied = qkv_bias, qk_norm, untied
        assert NH % KVH == 0 and self.hd % 2 == 0 and max(lengths) <= max_seq_len
        assert family in FAMILY and (not qk_norm or family == "qwen3")

    def config_tensors(self):
        sc = self.llama3 or (0.0, 0.0, 0.0, 0)
        ints = [("family", FAMILY[self.family]), ("max_seq_len", self.max_seq_len),
                ("vocab_size", self.V), ("n_layer", self.L), ("n_head", self.NH),
                ("n_embd", self.C), ("n_kv_head", self.KVH), ("head_dim", self.head_dim),
                ("d_ff", self.F), ("rope_scaling", 1 if self.llama3 else 0),
                ("rope_original_max_pos", sc[3]), ("qkv_bias", int(self.qkv_bias)),
                ("qk_norm", int(self.qk_norm)), ("untied", int(self.untied))]
        floats = [("ln_eps", self.eps), ("rope_theta", self.theta), ("rope_factor", sc[0]),
                  ("rope_low_freq_factor", sc[1]), ("rope_high_freq_factor", sc[2])]
        out = [("config." + k, torch.tensor(v, dtype=torch.int32)) for k, v in ints]
        out += [("config." + k, torch.tensor(v, dtype=DT)) for k, v in floats]
        return out


# The shapes nobody tunes for. Sizes are kept tiny so the fixtures stay small and fast.
CASES = [
    # 9 query heads sharing 3 KV heads, two layers, odd vocabulary, head_dim implied (24/9 is not
    # an integer, so it is given: 8), tied embeddings
    Cfg("llama_gqa", "llama", V=61, C=24, L=2, NH=9, KVH=3, F=40, head_dim=8, max_seq_len=32,
        lengths=[13, 9, 4], seed=11),
    # multi-query attention (1 KV head), head_dim 48 wider than C / NH, untied lm_head
    Cfg("llama_mqa_hd48", "mistral", V=97, C=16, L=1, NH=3, KVH=1, F=32, head_dim=48,
        max_seq_len=24, lengths=[11, 6], seed=12, untied=True),
    # Qwen2: q/k/v biases, rope_theta 1e6, rms_norm_eps 1e-6, head_dim implied (32 / 4)
    Cfg("llama_qwen2_bias", "qwen2", V=89, C=32, L=1, NH=4, KVH=2, F=40, max_seq_len=20,
        lengths=[9, 12, 5], seed=13, theta=1e6, eps=1e-6, qkv_bias=True),
    # Qwen3: per-head q/k RMSNorm before RoPE, head_dim 64, untied
    Cfg("llama_qwen3_hd64", "qwen3", V=61, C=16, L=1, NH=2, KVH=1, F=32, head_dim=64,
        max_seq_len=16, lengths=[10, 7, 3], seed=14, theta=1e6, eps=1e-6, qk_norm=True,
        untied=True),
    # positions past 1000: rope_theta 1e6 with Llama 3 scaling (factor 8, low 1, high 4,
    # original 64, so with hd 16 every regime occurs), one sequence of 1030 tokens
    Cfg("llama_long_rope", "llama", V=29, C=32, L=1, NH=2, KVH=1, F=32, max_seq_len=1040,
        lengths=[1030, 11, 4], seed=15, theta=1e6, eps=1e-5, llama3=(8.0, 1.0, 4.0, 64)),
]


def param_specs(c):
    """(name, shape, kind) for every parameter, in HF order. kind selects the init."""
    hd = c.hd
    specs = [("model.embed_tokens.weight", (c.V, c.C), "matrix")]
    for l in range(c.L):
        p = f"model.layers.{l}."
        specs.append((p + "input_layernorm.weight", (c.C,), "norm"))
        for proj, rows in (("q", c.NH * hd), ("k", c.KVH * hd), ("v", c.KVH * hd)):
            specs.append((p + f"self_attn.{proj}_proj.weight", (rows, c.C), "matrix"))
            if c.qkv_bias:
                specs.append((p + f"self_attn.{proj}_proj.bias", (rows,), "bias"))
        specs.append((p + "self_attn.o_proj.weight", (c.C, c.NH * hd), "matrix"))
        if c.qk_norm:
            specs += [(p + "self_attn.q_norm.weight", (hd,), "norm"),
                      (p + "self_attn.k_norm.weight", (hd,), "norm")]
        specs += [(p + "post_attention_layernorm.weight", (c.C,), "norm"),
                  (p + "mlp.gate_proj.weight", (c.F, c.C), "matrix"),
                  (p + "mlp.up_proj.weight", (c.F, c.C), "matrix"),
                  (p + "mlp.down_proj.weight", (c.C, c.F), "matrix")]
    specs.append(("model.norm.weight", (c.C,), "norm"))
    if c.untied:
        specs.append(("lm_head.weight", (c.V, c.C), "matrix"))
    specs.append((HEAD, (1, c.C), "matrix"))
    return specs


def init_params(c):
    """Matrices N(0, 0.2), biases N(0, 0.1), norm weights 1 + N(0, 0.1), rounded to float32.
    Larger than a real init so every term (RoPE angles, biases, norms) visibly matters."""
    P = OrderedDict()
    for name, shape, kind in param_specs(c):
        z = torch.randn(shape, dtype=DT)
        x = {"matrix": 0.2 * z, "bias": 0.1 * z, "norm": 1.0 + 0.1 * z}[kind]
        P[name] = x.float().double()
    return P


# ---------------------------------------------------------------------------------------------
# RoPE frequencies
# ---------------------------------------------------------------------------------------------
def inv_freq(c):
    """(hd/2) float64: theta^(-2i/hd), then Llama 3's rescaling (vectorised, as HF writes it)."""
    i = torch.arange(0, c.hd, 2, dtype=DT)
    inv = 1.0 / (c.theta ** (i / c.hd))
    if c.llama3 is None:
        return inv
    factor, low, high, orig = c.llama3
    low_wavelen, high_wavelen = orig / low, orig / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (orig / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def inv_freq_scalar(c):
    """The same, element by element in Python floats: the formula written the other way round
    (classify by frequency, interpolate between inv/factor and inv)."""
    out, regimes = [], set()
    for i in range(c.hd // 2):
        f = c.theta ** (-2.0 * i / c.hd)
        if c.llama3 is None:
            out.append(f)
            continue
        factor, low, high, orig = c.llama3
        wavelen = 2.0 * math.pi / f
        if wavelen < orig / high:            # high frequency: kept
            out.append(f); regimes.add("kept")
        elif wavelen > orig / low:           # low frequency: divided by factor
            out.append(f / factor); regimes.add("divided")
        else:                                # in between: linear in orig / wavelen
            s = (orig / wavelen - low) / (high - low)
            out.append((1.0 - s) * f / factor + s * f); regimes.add("interpolated")
    return torch.tensor(out, dtype=DT), regimes


def check_inv_freq(c):
    inv = inv_freq(c)
    ref, regimes = inv_freq_scalar(c)
    err = ((inv - ref).abs() / ref).max().item()
    assert err < 1e-14, f"{c.name}: inv_freq vectorised vs scalar formula: rel {err:.3g}"
    if c.llama3 is not None:
        assert regimes == {"kept", "divided", "interpolated"}, f"{c.name}: regimes {regimes}"
        factor, low, high, orig = c.llama3
        # continuity: the interpolation meets inv/factor and inv exactly at the boundaries
        for wl, want in ((orig / low, 1.0 / factor), (orig / high, 1.0)):
            s = (orig / wl - low) / (high - low)
            got = (1.0 - s) / factor + s
            assert abs(got - want) < 1e-15, f"{c.name}: llama3 interpolation discontinuous at {wl}"
        assert torch.all(inv[1:] < inv[:-1]), f"{c.name}: scaled frequencies not decreasing"
    kinds = ", llama3: " + " ".join(sorted(regimes)) if regimes else ""
    print(f"  inv_freq ({c.hd // 2} frequencies{kinds}): vectorised vs scalar formula "
          f"rel {err:.3g}")
    return inv


# ---------------------------------------------------------------------------------------------
# The hand-written model (autograd provides the backward)
# ---------------------------------------------------------------------------------------------
def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rope(x, pos, inv):
    """x (..., T, hd), pos (T): HF apply_rotary_pos_emb."""
    ang = pos.to(inv.dtype)[:, None] * inv[None, :]       # (T, hd/2)
    emb = torch.cat([ang, ang], dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def rope_complex(x, pos, inv):
    """The definition: pair (x_i, x_{i+hd/2}) is a complex number turned by pos * inv_freq_i."""
    h = x.shape[-1] // 2
    z = torch.complex(x[..., :h], x[..., h:])
    z = z * torch.polar(torch.ones_like(inv), pos.to(DT)[:, None] * inv[None, :])
    return torch.cat([z.real, z.imag], dim=-1)


def linear(x, P, name):
    y = x @ P[name + ".weight"].T
    b = P.get(name + ".bias")
    return y if b is None else y + b


def attention(c, P, p, x, inv):
    """x (B,T,C) -> (B,T,C): GQA with repeat_interleave of the kv heads (HF repeat_kv)."""
    Bx, Tx, _ = x.shape
    hd, rep = c.hd, c.NH // c.KVH
    q = linear(x, P, p + "self_attn.q_proj").reshape(Bx, Tx, c.NH, hd).transpose(1, 2)
    k = linear(x, P, p + "self_attn.k_proj").reshape(Bx, Tx, c.KVH, hd).transpose(1, 2)
    v = linear(x, P, p + "self_attn.v_proj").reshape(Bx, Tx, c.KVH, hd).transpose(1, 2)
    if c.qk_norm:
        q = rms_norm(q, P[p + "self_attn.q_norm.weight"], c.eps)
        k = rms_norm(k, P[p + "self_attn.k_norm.weight"], c.eps)
    pos = torch.arange(Tx)
    q, k = rope(q, pos, inv), rope(k, pos, inv)
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
    future = torch.triu(torch.ones(Tx, Tx, dtype=torch.bool), diagonal=1)
    att = att.masked_fill(future, float("-inf"))
    att = torch.exp(att - att.amax(-1, keepdim=True))
    att = att / att.sum(-1, keepdim=True)
    y = (att @ v).transpose(1, 2).reshape(Bx, Tx, c.NH * hd)
    return y @ P[p + "self_attn.o_proj.weight"].T


def silu(x):
    return x / (1.0 + torch.exp(-x))


def hidden_states(c, P, tokens, inv):
    """model.norm(x) (B,T,C) for int tokens (B,T); every position causally."""
    x = P["model.embed_tokens.weight"][tokens]
    for l in range(c.L):
        p = f"model.layers.{l}."
        x = x + attention(c, P, p, rms_norm(x, P[p + "input_layernorm.weight"], c.eps), inv)
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], c.eps)
        g = h @ P[p + "mlp.gate_proj.weight"].T
        u = h @ P[p + "mlp.up_proj.weight"].T
        x = x + (silu(g) * u) @ P[p + "mlp.down_proj.weight"].T
    return rms_norm(x, P["model.norm.weight"], c.eps)


def lm_weight(c, P):
    return P["lm_head.weight"] if c.untied else P["model.embed_tokens.weight"]


def lm_logits(c, P, tokens, inv):
    return hidden_states(c, P, tokens, inv) @ lm_weight(c, P).T


def weighted_ce(logits, targets, weights):
    """sum over targets >= 0 of weights * CE; positions with target -1 count for nothing."""
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    valid = targets >= 0
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, weights * nll, torch.zeros_like(nll)).sum()


def values_fn(c, P, tokens, inv):
    return (hidden_states(c, P, tokens, inv) @ P[HEAD].T).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# A second forward, written differently (check 3)
# ---------------------------------------------------------------------------------------------
def alt_norm(x, w, eps):
    n = x.shape[-1]
    return x / torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / n + eps) * w


def alt_hidden_states(c, P, tokens, inv):
    Bx, Tx = tokens.shape
    hd, rep = c.hd, c.NH // c.KVH
    pos = torch.arange(Tx)
    causal = torch.ones(Tx, Tx, dtype=torch.bool).tril()
    x = F.embedding(tokens, P["model.embed_tokens.weight"])
    for l in range(c.L):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        h = alt_norm(x, P[p + "input_layernorm.weight"], c.eps)
        q = F.linear(h, P[a + "q_proj.weight"], P.get(a + "q_proj.bias"))
        k = F.linear(h, P[a + "k_proj.weight"], P.get(a + "k_proj.bias"))
        v = F.linear(h, P[a + "v_proj.weight"], P.get(a + "v_proj.bias"))
        heads = []
        for qh in range(c.NH):
            kv = qh // rep
            qq, kk = q[..., qh * hd:(qh + 1) * hd], k[..., kv * hd:(kv + 1) * hd]
            vv = v[..., kv * hd:(kv + 1) * hd]
            if c.qk_norm:
                qq = alt_norm(qq, P[a + "q_norm.weight"], c.eps)
                kk = alt_norm(kk, P[a + "k_norm.weight"], c.eps)
            qq, kk = rope_complex(qq, pos, inv), rope_complex(kk, pos, inv)
            s = torch.einsum("btd,bsd->bts", qq, kk) / math.sqrt(hd)
            s = s.masked_fill(~causal, float("-inf"))
            heads.append(torch.softmax(s, dim=-1) @ vv)
        x = x + F.linear(torch.cat(heads, dim=-1), P[a + "o_proj.weight"])
        h = alt_norm(x, P[p + "post_attention_layernorm.weight"], c.eps)
        gate = F.silu(F.linear(h, P[p + "mlp.gate_proj.weight"]))
        up = F.linear(h, P[p + "mlp.up_proj.weight"])
        x = x + F.linear(gate * up, P[p + "mlp.down_proj.weight"])
    return alt_norm(x, P["model.norm.weight"], c.eps)


def alt_loss(c, P, tokens, targets, weights, inv):
    logits = F.linear(alt_hidden_states(c, P, tokens, inv), lm_weight(c, P))
    t = targets.reshape(-1)
    ce = F.cross_entropy(logits.reshape(-1, c.V), t, ignore_index=-1, reduction="none")
    return logits, (ce * torch.where(t >= 0, weights.reshape(-1), torch.zeros_like(ce))).sum()


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------
def check_rope(c, inv):
    """Check 1: rotate_half RoPE against complex multiplication, norms, relative positions."""
    gen = torch.Generator().manual_seed(5)
    Tx = max(c.lengths)
    x = torch.randn(2, Tx, c.hd, dtype=DT, generator=gen)
    pos = torch.arange(Tx)
    r, z = rope(x, pos, inv), rope_complex(x, pos, inv)
    e_def = max_rel(r, z)
    e_norm = max_rel(r.norm(dim=-1), x.norm(dim=-1))
    q, k = x[0, :1].expand(Tx, -1), x[1, :1].expand(Tx, -1)   # same q and k at every position
    d0 = (rope(q, pos, inv) * rope(k, pos.roll(3), inv)).sum(-1)
    d1 = (rope(q, pos + 37, inv) * rope(k, pos.roll(3) + 37, inv)).sum(-1)
    e_rel = max_rel(d1, d0)
    print(f"  RoPE (positions 0..{Tx - 1}): rotate_half vs complex rel {e_def:.3g}, norm kept rel "
          f"{e_norm:.3g}, <R(m)q,R(n)k> shift-invariant rel {e_rel:.3g}")
    assert e_def < 1e-13 and e_norm < 1e-13 and e_rel < 1e-9


def float32_check(c, P0, tokens, targets, weights, lengths, inv, logits, G, final):
    """How close a correct float32 implementation gets: the same model and the hand-written
    AdamW run in torch float32 (inv_freq rounded once, as the engine does). Asserts that it lands
    well inside the C test's tolerances, so that a failure there means a bug, not rounding (Adam
    turns a gradient below float32 noise into a full-size step: a case where that happens would
    be a bad fixture)."""
    P = OrderedDict((n, p.float()) for n, p in P0.items() if n != HEAD)
    inv32, w32 = inv.float(), weights.float()

    def f32_lm(Q):
        return weighted_ce(lm_logits(c, Q, tokens, inv32), targets, w32)

    with torch.no_grad():
        e_logits = (packed(lm_logits(c, P, tokens, inv32), lengths).double()
                    - packed(logits, lengths)).abs().max().item()
    loss, G32 = grads_of(f32_lm, P)
    e_grad = max(((G32[n].double() - G[n]).abs().max() / G[n].abs().max().clamp(min=1e-30)).item()
                 for n in G)
    state = {}
    for step in range(1, ADAM_STEPS + 1):
        _, g = grads_of(f32_lm, P)
        adamw_step(P, g, state, step, *ADAM_ARGS)
    e_final = max((P[n].double() - final[n]).abs().max().item() for n in final)
    print(f"  torch float32: logits abs {e_logits:.3g}, grads rel-to-max {e_grad:.3g}, "
          f"params after {ADAM_STEPS} AdamW steps abs {e_final:.3g}")
    assert e_logits < 2e-5 and e_grad < 2e-5 and e_final < 2e-5


def adamw_run(f_lm, P0, names):
    """10 steps of torch.optim.AdamW with a hand-written AdamW alongside (check 5)."""
    lr, b1, b2, eps, wd, clip = ADAM.values()
    P = leaf_copy(P0, names)
    groups = [{"params": [p for p in P.values() if p.ndim >= 2], "weight_decay": wd},
              {"params": [p for p in P.values() if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(b1, b2), eps=eps)
    Pm, mstate = OrderedDict((n, P0[n].clone()) for n in names), {}
    losses, norms = [], []
    for step in range(1, ADAM_STEPS + 1):
        opt.zero_grad(set_to_none=True)
        loss = f_lm(P)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(P.values()), clip)
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
        ml, mg = grads_of(f_lm, Pm)
        mnorm = adamw_step(Pm, mg, mstate, step, *ADAM_ARGS)
        assert abs(ml.item() - loss.item()) < 1e-12 and abs(mnorm - norm.item()) < 1e-12
    e = max(max_rel(Pm[n], P[n].detach()) for n in names)
    print(f"  manual AdamW vs torch.optim.AdamW after {ADAM_STEPS} steps: worst rel {e:.3g}")
    assert e < 1e-12
    assert losses[-1] < losses[0], "AdamW did not reduce the loss"
    assert norms[0] > clip, "clipping should be active on the first step"
    print("  adam losses " + " ".join(f"{x:.5f}" for x in losses))
    return OrderedDict((n, P[n].detach()) for n in names), losses, norms


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------
def make_batch(c):
    """tokens, targets, weights, dvalues: right-padded, targets -1 at padding and in places."""
    B, T = len(c.lengths), max(c.lengths)
    lengths = torch.tensor(c.lengths)
    real = torch.arange(T)[None, :] < lengths[:, None]
    tokens = torch.randint(0, c.V, (B, T))
    tokens[~real] = 0
    last = torch.randint(0, c.V, (B,))
    targets = torch.full((B, T), -1, dtype=torch.long)
    for b, n in enumerate(c.lengths):
        targets[b, :n - 1] = tokens[b, 1:n]
        targets[b, n - 1] = last[b]
    weights = (0.5 + torch.rand(B, T, dtype=DT)) * real.to(DT)   # uneven per-token weights
    weights[0, :c.prompt_len] = 0.0                              # the prompt carries no loss
    targets[0, :c.prompt_len - 1] = -1                           # ... and some have no target
    targets[1, 2] = -1                                           # no target, yet a weight:
    weights = weights / weights[targets >= 0].sum()              # it must count for nothing
    dvalues = torch.randn(B, T, dtype=DT) * real.to(DT)
    return lengths, tokens, targets, weights.float().double(), dvalues.float().double()


def packed(x, lengths):
    """(B,T,...) -> (N,...): the real positions of each sequence, one after another."""
    return torch.cat([x[b, :n] for b, n in enumerate(lengths.tolist())])


def run_case(c):
    print(f"{c.name}: {c.family}, V {c.V}, C {c.C}, L {c.L}, NH {c.NH}, KVH {c.KVH}, "
          f"hd {c.hd}, F {c.F}, lengths {c.lengths}")
    torch.manual_seed(c.seed)
    P0 = init_params(c)
    lengths, tokens, targets, weights, dvalues = make_batch(c)
    inv = check_inv_freq(c)
    check_rope(c, inv)
    lm_names = [n for n in P0 if n != HEAD]

    def f_lm(P):
        return weighted_ce(lm_logits(c, P, tokens, inv), targets, weights)

    def f_val(P):
        return (dvalues * values_fn(c, P, tokens, inv)).sum()

    with torch.no_grad():
        logits = lm_logits(c, P0, tokens, inv)
        real = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).to(DT)
        values = values_fn(c, P0, tokens, inv) * real
    loss, G_all = grads_of(f_lm, P0)
    assert G_all[HEAD].abs().max() == 0
    G = OrderedDict((n, G_all[n]) for n in lm_names)
    _, SG = grads_of(f_val, P0)
    print(f"  loss {loss.item():.10f} (uniform would be {math.log(c.V):.4f})")

    # Check 3: the second forward, and each sequence alone.
    with torch.no_grad():
        a_logits, a_loss = alt_loss(c, P0, tokens, targets, weights, inv)
        a_values = (alt_hidden_states(c, P0, tokens, inv) @ P0[HEAD].T).squeeze(-1)
        e = [max_rel(packed(a_logits, lengths), packed(logits, lengths)),
             abs(a_loss.item() - loss.item()) / abs(loss.item()),
             max_rel(packed(a_values, lengths), packed(values, lengths))]
        alone = 0.0
        for b, n in enumerate(c.lengths):
            one = lm_logits(c, P0, tokens[b:b + 1, :n], inv)[0]
            alone = max(alone, max_rel(one, logits[b, :n]))
    print(f"  second forward: logits rel {e[0]:.3g}, loss rel {e[1]:.3g}, values rel {e[2]:.3g}; "
          f"each sequence alone: logits rel {alone:.3g}")
    assert max(e) < 1e-12 and alone < 1e-12

    # Check 4: finite differences (fewer entries for the long case: each forward is larger).
    per = 2 if max(c.lengths) > 100 else 4
    finite_difference_check(f_lm, P0, G, "LM loss", per, floor=1e-6)
    finite_difference_check(f_val, P0, SG, "values", per, floor=1e-6)

    final, losses, norms = adamw_run(f_lm, P0, lm_names)
    float32_check(c, P0, tokens, targets, weights, lengths, inv, logits, G, final)

    tensors = c.config_tensors()
    tensors += [("adam." + k, torch.tensor(v, dtype=DT)) for k, v in ADAM.items()]
    tensors += [("rope_inv_freq", inv), ("lengths", lengths), ("tokens", tokens),
                ("targets", targets), ("weights", weights)]
    tensors += list(P0.items())
    tensors += [("logits", packed(logits, lengths)), ("loss", loss.reshape(1))]
    tensors += [("grad." + n, g) for n, g in G.items()]
    tensors += [("values", values), ("dvalues", dvalues)]
    tensors += [("sgrad." + n, g) for n, g in SG.items()]
    tensors += [("adam_losses", torch.tensor(losses, dtype=DT)),
                ("adam_gradnorm", torch.tensor(norms, dtype=DT))]
    tensors += [("final." + n, p) for n, p in final.items()]
    path = os.path.normpath(os.path.join(FIXTURE_DIR, c.name + ".bin"))
    write_fixture_checked(path, tensors)
    print(f"  wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def main():
    torch.set_num_threads(1)   # tiny tensors: more threads only spin
    names = sys.argv[1:]
    unknown = set(names) - {c.name for c in CASES}
    if unknown:
        sys.exit(f"llama_ref.py: unknown case {sorted(unknown)[0]} "
                 f"(cases: {' '.join(c.name for c in CASES)})")
    for c in CASES:
        if not names or c.name in names:
            run_case(c)


if __name__ == "__main__":
    main()
