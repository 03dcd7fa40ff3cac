"""PyTorch side of the speed benchmarks: the same models as the C engine (GPT-2 and the Llama-style
SmolLM2-135M shape), in float32 on the CPU (generation also in bfloat16: --dtype bfloat16).

One configuration per process, so that peak memory (ru_maxrss) belongs to that configuration:

  /usr/bin/python3 bench/bench_torch.py --mode train --preset gpt2  --B 4  --T 256  [--steps 5]
  /usr/bin/python3 bench/bench_torch.py --mode train --preset small --B 16 --T 128  [--steps 20]
  /usr/bin/python3 bench/bench_torch.py --mode generate --preset gpt2 --B 8 [--sampling greedy]
  /usr/bin/python3 bench/bench_torch.py --mode train --preset smollm2-135m --B 4 --T 256

train:    one step = forward + masked mean cross-entropy over all B*T tokens + backward +
          AdamW (weight decay 0.1 on matrices, 0 on biases/LayerNorm); 2 warmup steps, then
          the median over --steps. tokens_per_s = B*T / step_s.
generate: random prompts of --prompt (16) tokens, --new (64) new tokens each, greedy or
          multinomial sampling, KV cache preallocated per layer, under torch.no_grad().
          The timed region includes the prefill; step_s is that whole time and
          tokens_per_s = B*new / step_s. T is reported as prompt + new (the final length).
          One short untimed warmup generation (B=1) comes first.

Prints exactly one JSON line on stdout:
  {"impl":"pytorch","mode":..,"preset":..,"B":..,"T":..,"threads":..,"tokens_per_s":..,
   "step_s":..,"peak_rss_mb":..} (generate adds "prompt_len", "new_tokens", "sampling"; train
  adds "cpu_s_per_step" and "sleeps_per_step", CPU time and voluntary context switches per
  timed step); then how torch runs: "torch_threads", "parallel", "cpu_capability", "blas_info",
  "openblas_core", "omp_wait_policy".
Progress notes go to stderr.

The model is the hand-written GPT-2 of tests/ref/gpt2_ref.py in its fast eager form:
nn.Linear (addmm), F.layer_norm, F.gelu(approximate="tanh"), attention written by hand
(torch 1.13 has no F.scaled_dot_product_attention), tied LM head, N(0, 0.02) init
(c_proj weights scaled by 1/sqrt(2L) as in GPT-2), no dropout.

The Llama-style model (presets smollm2-135m, llama-small) is written in the same style: RMSNorm in
its hand form (torch 1.13 has no F.rms_norm), q/k/v and gate/up each one nn.Linear without bias
(the fused products the C engine runs too), hand-written rotate-half RoPE from a cos/sin table,
grouped-query attention with the query heads of a KV head folded into the rows of one product (no
copies of K and V), SwiGLU, a tied LM head; N(0, 0.02) init with o_proj/down_proj scaled by
1/sqrt(2L), norm weights 1; AdamW decays the matrices only. Its KV cache is preallocated per
layer by KV heads, as in rlhf.c.
"""
import argparse
import ctypes
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    #          layers, heads, channels, vocab, max positions
    "gpt2":  dict(L=12, NH=12, C=768, V=50257, maxT=1024),
    "small": dict(L=4, NH=4, C=256, V=8192, maxT=256),
}
# Llama-style shapes (bench_model.c has the same): KV heads, MLP width, RoPE base
LLAMA_PRESETS = {
    "smollm2-135m": dict(L=30, NH=9, KVH=3, C=576, F=1536, V=49152, maxT=2048, theta=100000.0),
    "llama-small":  dict(L=4, NH=4, KVH=2, C=256, F=688, V=8192, maxT=256, theta=10000.0),
}


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, C, NH):
        super().__init__()
        self.NH, self.hd = NH, C // NH
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def _heads(self, t, B, T):
        """(B,T,C) -> (B,NH,T,hd): head h is the contiguous slice [h*hd, (h+1)*hd)."""
        return t.view(B, T, self.NH, self.hd).transpose(1, 2)

    def _attend(self, q, k, v, mask):
        """Softmax(q k^T / sqrt(hd) + mask) v, written by hand."""
        att = torch.matmul(q, k.transpose(-2, -1)).mul_(1.0 / math.sqrt(self.hd))
        if mask is not None:
            att = att.masked_fill(mask, float("-inf"))
        return torch.matmul(torch.softmax(att, dim=-1), v)

    def forward(self, x, mask, cache=None, pos=0):
        """x (B,T,C). mask: bool (T, T_total) True where attention is forbidden, or None.
        cache: optional (k_buf, v_buf) each (B,NH,maxT,hd); the new k,v are written at
        [pos, pos+T) and attention runs over [0, pos+T)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=-1)
        q, k, v = self._heads(q, B, T), self._heads(k, B, T), self._heads(v, B, T)
        if cache is not None:
            k_buf, v_buf = cache
            k_buf[:, :, pos:pos + T] = k
            v_buf[:, :, pos:pos + T] = v
            k, v = k_buf[:, :, :pos + T], v_buf[:, :, :pos + T]
        y = self._attend(q, k, v, mask).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, L, NH, C, V, maxT):
        super().__init__()
        self.cfg = dict(L=L, NH=NH, C=C, V=V, maxT=maxT)
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(maxT, C)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self._init(L)

    @torch.no_grad()
    def _init(self, L):
        """GPT-2 style: weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), biases 0."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif "ln_" in name:
                p.fill_(1.0)
            else:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                p.normal_(0.0, std)

    def hidden(self, idx, caches=None, pos=0):
        """ln_f of the last layer's output for tokens idx (B,T) placed at positions [pos, pos+T)."""
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(pos, pos + T))
        # causal mask over the visible keys [0, pos+T); a single new token sees everything
        mask = None
        if T > 1:
            mask = torch.ones(T, pos + T, dtype=torch.bool).triu_(pos + 1)
        for l, block in enumerate(self.h):
            x = block(x, mask, None if caches is None else caches[l], pos)
        return self.ln_f(x)

    def logits(self, h):
        """Tied LM head."""
        return F.linear(h, self.wte.weight)


def rms_norm(x, w, eps):
    """RMSNorm in its hand form: x / sqrt(mean(x^2) + eps) * w."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate(x, cos, sin):
    """RoPE, rotate-half convention: element i pairs with i + hd/2.
    x (..., T, hd), cos/sin (T, hd)."""
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


class LlamaBlock(nn.Module):
    """x + o_proj(attn(rms(x))), then x + down(silu(gate) * up) of rms(x)."""

    def __init__(self, C, NH, KVH, F_, eps):
        super().__init__()
        self.NH, self.KVH, self.hd, self.eps = NH, KVH, C // NH, eps
        self.ln_1 = nn.Parameter(torch.ones(C))
        self.qkv = nn.Linear(C, (NH + 2 * KVH) * self.hd, bias=False)
        self.o_proj = nn.Linear(NH * self.hd, C, bias=False)
        self.ln_2 = nn.Parameter(torch.ones(C))
        self.gate_up = nn.Linear(C, 2 * F_, bias=False)
        self.down_proj = nn.Linear(F_, C, bias=False)

    def forward(self, x, cos, sin, mask, cache=None, pos=0):
        """x (B,T,C); cos/sin (T,hd) of positions [pos, pos+T); mask bool (T, pos+T) or None;
        cache: optional (k_buf, v_buf) each (B,KVH,maxT,hd), written at [pos, pos+T)."""
        B, T, C = x.shape
        NH, KVH, hd = self.NH, self.KVH, self.hd
        G = NH // KVH
        q, k, v = self.qkv(rms_norm(x, self.ln_1, self.eps)).split(
            [NH * hd, KVH * hd, KVH * hd], dim=-1)
        q = rotate(q.view(B, T, NH, hd).transpose(1, 2), cos, sin)        # (B,NH,T,hd)
        k = rotate(k.view(B, T, KVH, hd).transpose(1, 2), cos, sin)       # (B,KVH,T,hd)
        v = v.view(B, T, KVH, hd).transpose(1, 2)
        if cache is not None:
            k_buf, v_buf = cache
            k_buf[:, :, pos:pos + T] = k
            v_buf[:, :, pos:pos + T] = v
            k, v = k_buf[:, :, :pos + T], v_buf[:, :, :pos + T]
        # the G query heads of a KV head as G*T rows of one product against that head's keys
        qg = q.reshape(B, KVH, G * T, hd)
        att = torch.matmul(qg, k.transpose(-2, -1)).mul_(1.0 / math.sqrt(hd))   # (B,KVH,G*T,S)
        if mask is not None:
            att = att.view(B, KVH, G, T, -1).masked_fill(mask, float("-inf"))
            att = att.view(B, KVH, G * T, -1)
        y = torch.matmul(torch.softmax(att, dim=-1), v)                          # (B,KVH,G*T,hd)
        y = y.view(B, NH, T, hd).transpose(1, 2).reshape(B, T, NH * hd)
        x = x + self.o_proj(y)
        gate, up = self.gate_up(rms_norm(x, self.ln_2, self.eps)).chunk(2, dim=-1)
        return x + self.down_proj(F.silu(gate) * up)


class Llama(nn.Module):
    def __init__(self, L, NH, KVH, C, F, V, maxT, theta, eps=1e-5):
        super().__init__()
        self.cfg = dict(L=L, NH=NH, KVH=KVH, C=C, V=V, maxT=maxT)
        self.eps = eps
        self.wte = nn.Embedding(V, C)
        self.h = nn.ModuleList(LlamaBlock(C, NH, KVH, F, eps) for _ in range(L))
        self.ln_f = nn.Parameter(torch.ones(C))
        hd = C // NH
        inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(maxT, dtype=torch.float64)[:, None] * inv_freq[None, :]
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        self._init(L)

    @torch.no_grad()
    def _init(self, L):
        for name, p in self.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0)
            else:
                scaled = name.endswith(("o_proj.weight", "down_proj.weight"))
                std = 0.02 / math.sqrt(2 * L) if scaled else 0.02
                p.normal_(0.0, std)

    def hidden(self, idx, caches=None, pos=0):
        """Final-norm rows of tokens idx (B,T) placed at positions [pos, pos+T)."""
        B, T = idx.shape
        x = self.wte(idx)
        cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]
        mask = None
        if T > 1:
            mask = torch.ones(T, pos + T, dtype=torch.bool).triu_(pos + 1)
        for l, block in enumerate(self.h):
            x = block(x, cos, sin, mask, None if caches is None else caches[l], pos)
        return rms_norm(x, self.ln_f, self.eps)

    def logits(self, h):
        """Tied LM head."""
        return F.linear(h, self.wte.weight)


def torch_setup():
    """How this PyTorch runs: its intra-op threads, its parallel backend and CPU capability (the
    vector width of its own kernels), the BLAS behind its matrix products and, when that is
    OpenBLAS, the kernel (core) OpenBLAS runs in this process, and the OpenMP wait policy."""
    show = torch.__config__.show()
    field = lambda key: next((l.split(key, 1)[1].split(",")[0].strip()
                              for l in show.splitlines() if key in l), None)
    core = None
    try:    # Debian's torch calls the system BLAS (BLAS_INFO=generic): libblas.so.3
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        pass
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "parallel": "openmp" if "ATen parallel backend: OpenMP" in
            torch.__config__.parallel_info() else "other",
            "cpu_capability": field("CPU capability usage:"), "blas_info": field("BLAS_INFO="),
            "openblas_core": core, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def train_bench(model, B, T, steps, warmup=2):
    V = model.cfg["V"]
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    except TypeError:   # older torch without the foreach switch
        opt = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T)                       # loss over all tokens, but still masked
    mask_norm = mask / mask.sum()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model.logits(model.hidden(tokens))
        ce = F.cross_entropy(logits.view(-1, V), targets.view(-1), reduction="none")
        loss = (ce * mask_norm.view(-1)).sum()
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(warmup):
        t0 = time.perf_counter()
        loss = step()
        print(f"warmup {i}: loss {loss:.4f} {time.perf_counter() - t0:.3f}s", file=sys.stderr)
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    # the median step, as bench_model.c reports: robust to a stray slow step on a shared machine
    step_s = statistics.median(times)
    print(f"{steps} steps: last loss {loss:.4f}, median {step_s:.3f}s/step", file=sys.stderr)
    # CPU time (user + sys, all threads) and voluntary context switches (a thread going to sleep:
    # OpenMP's waits under OMP_WAIT_POLICY=passive) per timed step, as bench_model.c counts them
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / steps
    sleeps = (r1.ru_nvcsw - r0.ru_nvcsw) / steps
    return step_s, B * T / step_s, {"cpu_s_per_step": round(cpu, 4),
                                    "sleeps_per_step": round(sleeps, 1)}


@torch.no_grad()
def generate(model, prompts, n_new, sampling, g):
    """Prefill the prompt, then n_new single-token steps with a preallocated KV cache."""
    cfg = model.cfg
    B, P = prompts.shape
    total = P + n_new
    assert total <= cfg["maxT"]
    hd = cfg["C"] // cfg["NH"]
    kvh = cfg.get("KVH", cfg["NH"])                       # the cache is sized by KV heads
    dt = model.wte.weight.dtype                          # the model's: float32 or bfloat16
    caches = [(torch.empty(B, kvh, total, hd, dtype=dt), torch.empty(B, kvh, total, hd, dtype=dt))
              for _ in range(cfg["L"])]
    out = torch.empty(B, n_new, dtype=torch.long)
    h = model.hidden(prompts, caches, 0)[:, -1]          # only the last position's logits
    pos = P
    for i in range(n_new):
        logits = model.logits(h)                          # (B,V)
        if sampling == "greedy":
            nxt = logits.argmax(-1)
        else:
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).squeeze(1)
        out[:, i] = nxt
        if i + 1 < n_new:                                 # the last token needs no forward
            h = model.hidden(nxt.unsqueeze(1), caches, pos)[:, -1]
            pos += 1
    return out


def generate_bench(model, B, prompt_len, n_new, sampling):
    g = torch.Generator().manual_seed(0)
    V = model.cfg["V"]
    generate(model, torch.randint(0, V, (1, prompt_len), generator=g), 4, sampling, g)   # warmup
    prompts = torch.randint(0, V, (B, prompt_len), generator=g)
    t0 = time.perf_counter()
    out = generate(model, prompts, n_new, sampling, g)
    dt = time.perf_counter() - t0
    print(f"generated {tuple(out.shape)} in {dt:.3f}s", file=sys.stderr)
    return dt, B * n_new / dt


def decode_only_bench(model, B, prompt_len, n_new, sampling):
    """Decoding steps alone, as bench_model --mode decode_lowp measures them: a prefill, then n_new
    one-token steps (greedy) each timed on its own from the token to the next logits (the LM head
    included, the argmax not); the median step (robust to a busy machine)."""
    g = torch.Generator().manual_seed(0)
    cfg = model.cfg
    V = cfg["V"]
    generate(model, torch.randint(0, V, (1, prompt_len), generator=g), 2, sampling, g)   # warmup
    prompts = torch.randint(0, V, (B, prompt_len), generator=g)
    hd, kvh = cfg["C"] // cfg["NH"], cfg.get("KVH", cfg["NH"])
    dt = model.wte.weight.dtype
    total = prompt_len + n_new
    caches = [(torch.empty(B, kvh, total, hd, dtype=dt), torch.empty(B, kvh, total, hd, dtype=dt))
              for _ in range(cfg["L"])]
    logits = model.logits(model.hidden(prompts, caches, 0)[:, -1])
    times = []
    for i in range(n_new):
        nxt = logits.argmax(-1)
        t0 = time.perf_counter()   # a step gives the next logits, LM head included, as ours does
        logits = model.logits(model.hidden(nxt.unsqueeze(1), caches, prompt_len + i)[:, -1])
        times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return step, B / step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["train", "generate"], required=True)
    ap.add_argument("--preset", choices=sorted(PRESETS) + sorted(LLAMA_PRESETS), default="gpt2")
    ap.add_argument("--B", type=int, default=None, help="batch (train gpt2: 4, small: 16; generate: 1)")
    ap.add_argument("--T", type=int, default=None, help="train sequence length (gpt2: 256, small: 128)")
    ap.add_argument("--steps", type=int, default=None, help="timed train steps (gpt2: 5, small: 20)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=16, help="generate: prompt length")
    ap.add_argument("--new", type=int, default=64, help="generate: new tokens per sequence")
    ap.add_argument("--sampling", choices=["greedy", "multinomial"], default="greedy")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="generate: the weights, activations and KV cache")
    ap.add_argument("--decode-only", action="store_true",
                    help="generate: time the decoding steps alone (prefill excluded)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.set_grad_enabled(a.mode == "train")
    full = a.preset in ("gpt2", "smollm2-135m")         # the full-size shapes take their defaults
    model = GPT2(**PRESETS[a.preset]) if a.preset in PRESETS else Llama(**LLAMA_PRESETS[a.preset])
    if a.mode == "train":
        B = a.B or (4 if full else 16)
        T = a.T or (256 if full else 128)
        steps = a.steps or (5 if full else 20)
        model.train()
        step_s, tps, extra = train_bench(model, B, T, steps)
    else:
        B, T = a.B or 1, a.prompt + a.new
        model.eval()
        model.to(getattr(torch, a.dtype))
        bench = decode_only_bench if a.decode_only else generate_bench
        step_s, tps = bench(model, B, a.prompt, a.new, a.sampling)
        extra = {"prompt_len": a.prompt, "new_tokens": a.new, "sampling": a.sampling,
                 "dtype": a.dtype, "decode_only": a.decode_only}
    rec = {"impl": "pytorch", "mode": a.mode, "preset": a.preset, "B": B, "T": T,
           "threads": a.threads, "tokens_per_s": round(tps, 3), "step_s": round(step_s, 6),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    rec.update(extra)
    rec.update(torch_setup())
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
