"""PyTorch reference for bench/bench_reward.c: the reward model of the small config (the GPT-2 of
bench/bench_torch.py without its LM head, plus a score head score.weight (1,C) read at the last
token), float32 on the CPU, same shapes and threads.

  /usr/bin/python3 bench/bench_reward_torch.py --mode train [--rankings 8 --K 4 --T 128 --steps 8]
  /usr/bin/python3 bench/bench_reward_torch.py --mode score [--B 16 --T 128 --steps 8]

train: one step = rankings*K sequences in one batch, scores at the last token, the K-wise loss
       (mean over rankings of the mean over pairs of -log sigmoid(r_w - r_l), no ties), backward,
       AdamW; 2 warmup steps, then the median. comparisons_per_s = rankings*C(K,2) / step_s.
score: forward of B sequences under torch.no_grad(); completions_per_s = B / batch_s.
Prints one JSON line on stdout (the keys of bench_reward.c).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import GPT2, PRESETS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True, choices=["train", "score"])
    ap.add_argument("--rankings", type=int, default=8)
    ap.add_argument("--K", type=int, default=4)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = GPT2(**PRESETS["small"])
    C = model.cfg["C"]
    score_w = torch.nn.Parameter(torch.randn(1, C) / C ** 0.5)
    g = torch.Generator().manual_seed(0)
    train = a.mode == "train"
    B = a.rankings * a.K if train else a.B
    tokens = torch.randint(0, model.cfg["V"], (B, a.T), generator=g)
    ranks = torch.stack([torch.randperm(a.K, generator=g) for _ in range(a.rankings)])   # 0 = best
    better = ranks.unsqueeze(2) < ranks.unsqueeze(1)       # (R,K,K): w better than l
    params = list(model.parameters()) + [score_w]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.0},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=1e-5, betas=(0.9, 0.95), eps=1e-8)

    def step():
        if not train:
            with torch.no_grad():
                return (model.hidden(tokens)[:, -1] @ score_w.t()).sum().item()
        opt.zero_grad(set_to_none=True)
        r = (model.hidden(tokens)[:, -1] @ score_w.t()).view(a.rankings, a.K)
        d = r.unsqueeze(2) - r.unsqueeze(1)                # r_w - r_l
        per_pair = -F.logsigmoid(d) * better
        loss = (per_pair.sum((1, 2)) / better.sum((1, 2))).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    times = []
    for i in range(a.steps + 2):
        t0 = time.perf_counter()
        v = step()
        dt = time.perf_counter() - t0
        print(f"{a.mode} {i}: {v:.4f} {dt:.3f}s{' (warmup)' if i < 2 else ''}", file=sys.stderr)
        if i >= 2:
            times.append(dt)
    s = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if train:
        pairs = int(better.sum())
        print(json.dumps(dict(impl="pytorch", mode="train", rankings=a.rankings, K=a.K, T=a.T,
                              threads=torch.get_num_threads(),
                              comparisons_per_s=round(pairs / s, 1), step_s=round(s, 4),
                              peak_rss_mb=round(rss, 1))))
    else:
        print(json.dumps(dict(impl="pytorch", mode="score", B=B, T=a.T,
                              threads=torch.get_num_threads(),
                              completions_per_s=round(B / s, 1), batch_s=round(s, 4),
                              peak_rss_mb=round(rss, 1))))


if __name__ == "__main__":
    main()
