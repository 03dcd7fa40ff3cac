"""Writer for the named-tensor fixture files that the C tests read (tests/testlib.c).

Format (all integers little-endian):

    b"RLHFFIX1"
    uint32 count
    count times:
        uint32 name_len
        name bytes (utf-8, name_len < 128)
        uint32 dtype          0 = float32, 1 = int32
        uint32 ndim           <= 8
        int64  dims[ndim]
        raw data              numel * 4 bytes, row-major (C order)

Usage:
    from fixture import write_fixture
    write_fixture("tests/fixtures/x.bin", [("tokens", tok), ("logits", logits)])

Arrays may be numpy arrays, torch tensors, or anything numpy.asarray accepts. Floating
arrays (any precision) are stored as float32; integer and boolean arrays as int32
(values must fit). Python scalars become 0-d tensors; pass a 1-element list for shape (1,).
"""
import struct

import numpy as np

MAGIC = b"RLHFFIX1"
DTYPE_F32 = 0
DTYPE_I32 = 1
MAX_NAME = 127   # testlib.c keeps names in char[128] including the terminator
MAX_NDIM = 8


def _to_numpy(x):
    """Returns x as a numpy array without keeping autograd / device state."""
    try:
        import torch  # optional: only needed when torch tensors are passed
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:
        pass
    return np.asarray(x)


def _encode(name, x):
    """Returns the bytes of one tensor record."""
    nb = name.encode("utf-8")
    if not 0 < len(nb) <= MAX_NAME:
        raise ValueError(f"fixture: tensor name {name!r} must be 1..{MAX_NAME} utf-8 bytes")
    a = _to_numpy(x)
    if a.dtype.kind == "f":
        dtype, a = DTYPE_F32, a.astype("<f4")
    elif a.dtype.kind in "iub":
        if a.size and (a.min() < -2**31 or a.max() >= 2**31):
            raise ValueError(f"fixture: {name}: integer values do not fit in int32")
        dtype, a = DTYPE_I32, a.astype("<i4")
    else:
        raise TypeError(f"fixture: {name}: unsupported dtype {a.dtype}")
    if a.ndim > MAX_NDIM:
        raise ValueError(f"fixture: {name}: ndim {a.ndim} > {MAX_NDIM}")
    head = struct.pack("<I", len(nb)) + nb + struct.pack("<II", dtype, a.ndim)
    head += struct.pack(f"<{a.ndim}q", *a.shape)
    return head + np.ascontiguousarray(a).tobytes(order="C")


def write_fixture(path, tensors):
    """Writes tensors, a list of (name, array) pairs, to path. Names must be unique."""
    names = [n for n, _ in tensors]
    if len(set(names)) != len(names):
        raise ValueError("fixture: duplicate tensor names")
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(tensors)))
        for name, x in tensors:
            f.write(_encode(name, x))


def read_fixture(path):
    """Reads a fixture back as an ordered dict name -> numpy array (for self-checks)."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != MAGIC:
        raise ValueError(f"fixture: {path}: bad magic")
    (count,), off = struct.unpack_from("<I", data, 8), 12
    for _ in range(count):
        (nl,) = struct.unpack_from("<I", data, off); off += 4
        name = data[off:off + nl].decode("utf-8"); off += nl
        dtype, ndim = struct.unpack_from("<II", data, off); off += 8
        dims = struct.unpack_from(f"<{ndim}q", data, off); off += 8 * ndim
        n = int(np.prod(dims)) if ndim else 1
        a = np.frombuffer(data, dtype="<f4" if dtype == DTYPE_F32 else "<i4", count=n, offset=off)
        off += 4 * n
        out[name] = a.reshape(dims)
    if off != len(data):
        raise ValueError(f"fixture: {path}: {len(data) - off} trailing bytes")
    return out
