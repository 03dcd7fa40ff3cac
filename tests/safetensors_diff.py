"""Prints the largest absolute difference between the F32 tensors of two safetensors files.
Standard library only (used by the shell tests): python3 tests/safetensors_diff.py [--no-key-bias] A B

--no-key-bias leaves out the key third of every attn.c_attn.bias: adding a constant to every key
of a query's scores leaves the softmax unchanged, so their gradient is 0 in exact arithmetic and
rounding noise alone, which AdamW turns into steps of up to the learning rate; two runs that sum
the same gradients in another order (several processes) differ there by noise."""
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


args = sys.argv[1:]
skip = "--no-key-bias" in args
args = [x for x in args if x != "--no-key-bias"]
a, b = load(args[0]), load(args[1])
if sorted(a) != sorted(b):
    sys.exit("the files hold different tensors")


def diffs(k):
    d = [abs(x - y) for x, y in zip(a[k], b[k])]
    if skip and k.endswith("attn.c_attn.bias"):
        c = len(d) // 3
        d = d[:c] + d[2 * c:]
    return d


print(max(max(diffs(k)) for k in a))
