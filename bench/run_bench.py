"""Runs every benchmark of rlhf.c next to its reference, in this one script, on this machine.

  /usr/bin/python3 bench/run_bench.py [--build build] [--threads 2] [--quick] [--only NAME,...]
  (--only decode_lowp: decoding with fp32 / bf16 / int8 weights against PyTorch and the read limit)

Engine figures: bench_model (C) and bench_torch.py (PyTorch, the same model: GPT-2 and the
Llama-style SmolLM2-135M shape; same threads and shapes) run back to back, one configuration per
process so that peak memory belongs to it; the ratio is ours / PyTorch. Training figures come
from --rounds (3) short rounds in alternation (rlhf.c, PyTorch, rlhf.c, PyTorch, ...): each
side's figure is the median of its rounds and the ratio is the ratio of the medians (the rounds'
range is printed and recorded), with each side's CPU time and sleeps (voluntary context
switches) per step beside it. The sgemm ceiling is measured by bench_model itself. Tokenizer
figures come from bench/tokenizer.sh. Everything is printed as a table and written to
bench/results.json: "measured" says where and how (date, commit, the machine as `rlhf info
--system` sees it under the benchmarks' settings: CPU, ISA, OpenBLAS kernel and configuration,
threads, OMP_WAIT_POLICY; "pytorch": how PyTorch ran: its threads, parallel backend, CPU
capability, BLAS and the OpenBLAS kernel in its process, OMP_WAIT_POLICY), "figures" holds one
object per figure (name, value, unit, ref_name, ref_value, ratio; a training rate adds rounds,
values and ref_values, each round's figures). Where OpenBLAS on its own would choose a narrower
kernel than the CPU runs, every benchmark, PyTorch's included (it calls the same library), runs
with OPENBLAS_CORETYPE set to the best one, as the programs select for themselves; a user's
OPENBLAS_CORETYPE is kept.
Benchmarks never fail on time: they print figures.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# how PyTorch runs (bench_torch.py reports it with each training figure): printed and recorded
TORCH_SETUP = ("torch", "torch_threads", "parallel", "cpu_capability", "blas_info",
               "openblas_core", "omp_wait_policy")


def run_json(cmd, env):
    out = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, check=True).stdout
    lines = [l for l in out.splitlines() if l.startswith("{")]
    return json.loads(lines[-1])


def system_info(rlhf, env):
    """`rlhf info --system` as a dict ("openblas core": "...", ...), and its stderr (the BLAS
    line)."""
    p = subprocess.run([rlhf, "info", "--system"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, check=True)
    info = {l[:20].strip(): l[21:].strip() for l in p.stdout.splitlines() if len(l) > 21}
    return info, p.stderr.strip()


def commit():
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def decode_lowp(a, env, cbin, torch, add):
    """Decoding steps (prefill excluded) of GPT-2 124M and the SmolLM2-135M shape at B = 1, 8, 64
    with fp32, bf16 and int8 weights (bf16 KV cache with the narrow ones), beside PyTorch fp32 and
    bf16 and the read-bandwidth limit of each format's weight bytes measured by the same process."""
    new = 12 if a.quick else 20
    for preset in ("gpt2", "smollm2-135m"):
        for B in (1, 8, 64):
            args = ["--preset", preset, "--B", str(B), "--prompt", "4", "--new"]
            out = subprocess.run([cbin, "--mode", "decode_lowp"] + args + [str(new)], cwd=ROOT,
                                 env=env, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, check=True).stdout
            c = {r["precision"]: r for r in map(json.loads, out.splitlines())}
            # PyTorch's bf16 CPU path is slow: a few steps suffice to time it
            t32 = run_json(torch + ["--mode", "generate", "--decode-only"] + args + [str(new)], env)
            t16 = run_json(torch + ["--mode", "generate", "--decode-only", "--dtype", "bfloat16"]
                           + args + ["6"], env)
            tag = f"decode {preset} B={B}"
            for p in ("fp32", "bf16", "int8"):
                add(f"{tag} {p} tokens/s", c[p]["tokens_per_s"], "tok/s", "pytorch fp32",
                    t32["tokens_per_s"])
            add(f"{tag} pytorch bf16 tokens/s", t16["tokens_per_s"], "tok/s", "pytorch fp32",
                t32["tokens_per_s"])
            for p in ("bf16", "int8"):
                add(f"{tag} {p} vs own fp32", c[p]["tokens_per_s"], "tok/s", "rlhf.c fp32",
                    c["fp32"]["tokens_per_s"])
            for p in ("fp32", "bf16", "int8"):
                add(f"{tag} {p} vs read limit", c[p]["tokens_per_s"], "tok/s",
                    f"read {c[p]['read_gb_s']:.1f} GB/s", c[p]["limit_tokens_per_s"])
            if B == 1:
                for p in ("bf16", "int8"):
                    add(f"{preset} {p} copy refresh", 1e3 * c[p]["refresh_s"], "ms", "-", None)
        # a frozen model's full forward (reference log-probs, reward scores): 256 rows
        out = subprocess.run([cbin, "--mode", "forward_lowp", "--preset", preset, "--B", "4",
                              "--T", "64"], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, check=True).stdout
        f = {r["precision"]: r for r in map(json.loads, out.splitlines())}
        for p in ("bf16", "int8"):
            add(f"forward {preset} 4x64 {p} (frozen)", f[p]["tokens_per_s"], "tok/s", "rlhf.c fp32",
                f["fp32"]["tokens_per_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="fewer steps and one round (a smoke run, noisier figures)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="training figures: rounds of rlhf.c then PyTorch, alternating; each "
                         "side's figure is the median of its rounds (default 3; --quick 1)")
    ap.add_argument("--only", default="",
                    help="comma-separated subset: sgemm,train_gpt2,train_small,gen1,gen8,gen64,"
                         "train_smollm2,smol_gen1,smol_gen8,smol_gen64,tokenizer,mpi,sft,reward,"
                         "ppo,ppo_gpt2,lowp,lora,decode_lowp")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    want = lambda n: not only or n in only
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    rlhf = os.path.join(a.build, "bin", "rlhf")
    info, blas_line = system_info(rlhf, env)
    core = info.get("openblas core", "").split(" ")[0]
    selected = "selected at startup" in info.get("openblas core", "")
    if blas_line and "OPENBLAS_CORETYPE" not in os.environ and selected:
        env["OPENBLAS_CORETYPE"] = core             # the programs' own selection, for every process
        print(f"bench: {blas_line}; every benchmark (PyTorch too) runs with "
              f"OPENBLAS_CORETYPE={core}")
    if "OMP_WAIT_POLICY" not in os.environ:
        # the programs choose passive with a short spin themselves when it is unset
        # (blas_startup); PyTorch would keep libgomp's spinning default, so both sides get the
        # programs' choice explicitly
        env["OMP_WAIT_POLICY"] = "passive"
        env.setdefault("GOMP_SPINCOUNT", "20000")
    measured = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit=commit(),
                    threads=a.threads, system=info,
                    env={k: env.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                 "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                 "OMP_PROC_BIND", "OPENBLAS_CORETYPE",
                                                 "ATEN_CPU_CAPABILITY")})
    print(f"machine: {info.get('cpu')}; OpenBLAS kernel {core}; {a.threads} threads; "
          f"commit {measured['commit']}")
    cbin = os.path.join(a.build, "bench", "bench_model")
    torch = [sys.executable, "bench/bench_torch.py", "--threads", str(a.threads)]
    results = []

    def add(name, value, unit, ref_name, ref_value, **extra):
        ratio = value / ref_value if ref_value else None
        results.append(dict(name=name, value=round(value, 3), unit=unit, ref_name=ref_name,
                            ref_value=round(ref_value, 3) if ref_value is not None else None,
                            ratio=round(ratio, 3) if ratio is not None else None, **extra))
        rs = f"{ratio:6.2f}x" if ratio is not None else "      "
        rv = f"{ref_value:10.1f}" if ref_value is not None else " " * 10
        print(f"{name:34s} {value:10.1f} {unit:9s} {ref_name:22s} {rv}  {rs}", flush=True)

    print(f"{'figure':34s} {'rlhf.c':>10s} {'unit':9s} {'reference':22s} {'ref':>10s}  ratio")
    ceiling = None
    pytorch_setup = None
    if want("sgemm") or want("train_gpt2") or want("train_small") or want("train_smollm2"):
        ceiling = run_json([cbin, "--mode", "sgemm"], env)["gflops"]
        add("sgemm ceiling (2048^3)", ceiling, "GFLOP/s", "-", None)
    rounds = a.rounds or (1 if a.quick else 3)
    for name, preset, B, T, steps in (("train_gpt2", "gpt2", 4, 256, 2 if a.quick else 3),
                                      ("train_small", "small", 16, 128, 5 if a.quick else 10),
                                      ("train_smollm2", "smollm2-135m", 4, 256,
                                       2 if a.quick else 3)):
        if not want(name):
            continue
        args = ["--mode", "train", "--preset", preset, "--B", str(B), "--T", str(T),
                "--steps", str(steps)]
        # the two sides alternate in short rounds (ours, PyTorch, ours, PyTorch, ...): a change
        # of the machine's load or of how the host schedules the VM's cores during the run falls
        # on both; each side's figure is the median of its rounds, the ratio theirs
        cs, ts = [], []
        for r in range(rounds):
            cs.append(run_json([cbin] + args, env))
            ts.append(run_json(torch + args, env))
        if pytorch_setup is None:
            pytorch_setup = {k: ts[0].get(k) for k in TORCH_SETUP}
            measured["pytorch"] = pytorch_setup
            print(f"pytorch: {pytorch_setup}")
        tag = f"train {preset} B={B} T={T}"
        med = lambda rs, k: statistics.median(r[k] for r in rs)
        span = lambda rs, k: [min(r[k] for r in rs), max(r[k] for r in rs)]
        c_tps, t_tps = med(cs, "tokens_per_s"), med(ts, "tokens_per_s")
        add(f"{tag} tokens/s", c_tps, "tok/s", "pytorch", t_tps, rounds=len(cs),
            values=[r["tokens_per_s"] for r in cs], ref_values=[r["tokens_per_s"] for r in ts])
        (lo, hi), (tlo, thi) = span(cs, "tokens_per_s"), span(ts, "tokens_per_s")
        print(f"{'':34s} {len(cs)} rounds: rlhf.c {lo:.1f}..{hi:.1f}, pytorch {tlo:.1f}..{thi:.1f}"
              f" tok/s; ratio of medians {c_tps / t_tps:.3f}, range "
              f"{lo / thi:.3f}..{hi / tlo:.3f}")
        # the ceiling measured by each process right after its steps: the round whose fraction
        # of it is the median (the lower middle of an even count)
        mid = sorted(cs, key=lambda r: r["gflops"] / r["ceiling_gflops"])[(len(cs) - 1) // 2]
        add(f"{tag} GFLOP/s", mid["gflops"], "GFLOP/s", "sgemm ceiling, same process",
            mid["ceiling_gflops"])
        add(f"{tag} peak RSS", max(r["peak_rss_mb"] for r in cs), "MiB", "pytorch",
            max(r["peak_rss_mb"] for r in ts))
        # CPU time and sleeps (voluntary context switches) per step: how much work each side
        # does and how often its threads wait for each other, which the load moves little
        add(f"{tag} CPU s/step", med(cs, "cpu_s_per_step"), "s", "pytorch",
            med(ts, "cpu_s_per_step"))
        add(f"{tag} sleeps/step", med(cs, "sleeps_per_step"), "count", "pytorch",
            med(ts, "sleeps_per_step"))
    for name, preset, B in [(f"gen{B}", "gpt2", B) for B in (1, 8, 64)] + \
                           [(f"smol_gen{B}", "smollm2-135m", B) for B in (1, 8, 64)]:
        if not want(name):
            continue
        args = ["--mode", "generate", "--preset", preset, "--B", str(B)]
        c = run_json([cbin] + args, env)
        t = run_json(torch + args, env)
        add(f"generate {preset} B={B} tokens/s", c["tokens_per_s"], "tok/s", "pytorch",
            t["tokens_per_s"])
        add(f"generate {preset} B={B} peak RSS", c["peak_rss_mb"], "MiB", "pytorch",
            t["peak_rss_mb"])
    if want("decode_lowp"):
        decode_lowp(a, env, cbin, torch, add)
    # scripts that print RESULT lines: the tokenizer against JavaScript tokenizers, SFT on 1 and 2
    # MPI ranks, and the stage programs' own benchmarks when present
    ppo_bin = os.path.join(a.build, "bench", "bench_ppo")
    lowp_bin = os.path.join(a.build, "bench", "bench_lowp")
    quick_reward = ["--quick"] if a.quick else []
    quick_ppo = ["--iterations", "2", "--repeats", "1"] if a.quick else []
    for name, cmd in (("tokenizer", ["sh", "bench/tokenizer.sh", a.build]),
                      ("mpi", ["sh", "bench/mpi.sh", a.build]),
                      ("sft", ["sh", "bench/sft.sh", a.build]),
                      ("reward", ["sh", "bench/bench_reward.sh", a.build] + quick_reward),
                      ("ppo", [ppo_bin, "--preset", "small"] + quick_ppo),
                      # one PPO iteration at the 124M shape, where its time goes (2-3 minutes)
                      ("ppo_gpt2", [ppo_bin, "--preset", "gpt2", "--B", "16", "--repeats", "1"]
                       + (["--iterations", "2"] if a.quick else [])),
                      # the same with bf16 sampling and frozen models (precision.*)
                      ("ppo_gpt2_bf16", [ppo_bin, "--preset", "gpt2", "--B", "16", "--repeats",
                                         "1", "--set", "precision.sample=bf16", "--set",
                                         "precision.frozen=bf16"]
                       + (["--iterations", "2"] if a.quick else [])),
                      ("lowp", [lowp_bin, "--threads", str(a.threads)]
                       + (["--rows", "1"] if a.quick else [])),
                      ("lora", ["sh", "bench/lora.sh", a.build])):
        program = cmd[1] if cmd[0] == "sh" else cmd[0]
        if not want(name) or not os.path.exists(os.path.join(ROOT, program)):
            continue
        out = subprocess.run(cmd, cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        for line in out.splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[len("RESULT "):])
                add(r["name"], r["value"], r["unit"], r.get("ref_name") or "-", r.get("ref_value"))
    with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
        json.dump(dict(measured=measured, figures=results), f, indent=1)
        f.write("\n")
    print("wrote bench/results.json")


if __name__ == "__main__":
    main()
