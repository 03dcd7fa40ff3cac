"""Prints the largest absolute difference between the F32 tensors of two safetensors files.
Standard library only (used by the shell tests): python3 tests/safetensors_diff.py A B"""
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


a, b = load(sys.argv[1]), load(sys.argv[2])
if sorted(a) != sorted(b):
    sys.exit("the files hold different tensors")
print(max(max(abs(x - y) for x, y in zip(a[k], b[k])) for k in a))
