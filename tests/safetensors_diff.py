"""Prints the largest absolute difference between the F32 tensors of two safetensors files.
Standard library only (used by the shell tests):
    python3 tests/safetensors_diff.py [--no-key-bias] [--skip NAME]... A B

Options leave out weights whose gradient is 0 in exact arithmetic and rounding noise alone, which
AdamW turns into steps of up to the learning rate, so that two runs summing the same gradients in
another order (several processes) differ there by noise:
  --no-key-bias  the key third of every attn.c_attn.bias (a constant added to every key score of a
                 query leaves its softmax unchanged)
  --skip NAME    the tensor NAME (e.g. transformer.ln_f.bias of a reward model: the ranking loss
                 depends only on score differences, and ln_f.bias moves every score alike)"""
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {t['dtype']}, not F32")
        s, e = t["data_offsets"]
        out[name] = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
    return out


args, skip, names = sys.argv[1:], False, set()
while args and args[0].startswith("--"):
    if args[0] == "--no-key-bias":
        skip, args = True, args[1:]
    elif args[0] == "--skip" and len(args) > 1:
        names.add(args[1])
        args = args[2:]
    else:
        sys.exit(f"unknown option {args[0]}")
a, b = load(args[0]), load(args[1])
if sorted(a) != sorted(b):
    sys.exit("the files hold different tensors")


def diffs(k):
    d = [abs(x - y) for x, y in zip(a[k], b[k])]
    if skip and k.endswith("attn.c_attn.bias"):
        c = len(d) // 3
        d = d[:c] + d[2 * c:]
    return d


print(max(max(diffs(k)) for k in a if k not in names))
