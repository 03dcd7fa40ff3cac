"""What the reference models (gpt2_ref.py, llama_ref.py) share to prove themselves: autograd
gradients of a loss over a dict of named float64 tensors, finite differences against them, and
the AdamW update the C engine implements (common/optim.c), written out by hand.
"""
import math
from collections import OrderedDict

import torch

from fixture import read_fixture, write_fixture


def leaf_copy(P, names=None):
    """Fresh leaf tensors requiring grad (all of P, or the names given, in that order)."""
    return OrderedDict((n, P[n].detach().clone().requires_grad_(True)) for n in (names or P))


def grads_of(fn, P):
    """(value, {name: grad}) of scalar fn(P) w.r.t. every tensor of P (zeros where unused)."""
    Q = leaf_copy(P)
    out = fn(Q)
    gs = torch.autograd.grad(out, list(Q.values()), allow_unused=True)
    return out.detach(), OrderedDict((n, torch.zeros_like(Q[n]) if g is None else g)
                                     for n, g in zip(Q, gs))


def max_rel(a, b):
    """max |a - b| relative to max |b|."""
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-300)).item()


def finite_difference_check(fn, P, G, label, per_param=4, h=1e-3, tol=1e-6, floor=1e-30):
    """Fourth-order central differences, (f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)) / 12h, on a
    sample of entries of every tensor in G: the largest-|grad| entry plus random ones.
    (Truncation ~h^4, rounding ~1e-16/h: both far below the tolerance with h = 1e-3.)
    rel err = |fd - ad| / max(|ad|, 1e-3 * max|G[name]|, floor): the floors only matter for
    entries whose gradient is near zero, where a relative error is meaningless (floor is the
    absolute scale for a tensor whose gradient is all zero). Asserts err < tol; returns the worst."""
    gen = torch.Generator().manual_seed(99)
    worst = 0.0
    with torch.no_grad():
        for name, g in G.items():
            flat = g.reshape(-1)
            picks = [int(flat.abs().argmax())]
            picks += torch.randint(0, flat.numel(), (per_param - 1,), generator=gen).tolist()
            gmax = flat.abs().max().item()
            for i in picks:
                Q = OrderedDict((n, t.clone()) for n, t in P.items())
                q = Q[name].view(-1)
                x0 = q[i].item()
                f_at = []
                for d in (-2 * h, -h, h, 2 * h):
                    q[i] = x0 + d
                    f_at.append(fn(Q).item())
                fd = (f_at[0] - 8 * f_at[1] + 8 * f_at[2] - f_at[3]) / (12 * h)
                ad = flat[i].item()
                err = abs(fd - ad) / max(abs(ad), 1e-3 * gmax, floor)
                worst = max(worst, err)
                assert err < tol, (f"{label}: finite difference mismatch at {name}[{i}]: "
                                   f"fd {fd!r} autograd {ad!r} rel {err:.3g}")
    print(f"  finite differences ({label}): {len(G)} tensors x {per_param} entries, "
          f"worst rel err {worst:.3g}")
    return worst


def adamw_step(P, grads, state, step, lr, betas, eps, wd, clip):
    """One step of the C engine's AdamW (common/optim.c; torch 1.13's AdamW + clip_grad_norm_)
    on P in place; state holds the moments; step is 1-based. Returns the pre-clip norm.
       norm = ||all grads||_2; if norm > clip: g *= clip / (norm + 1e-6);
       p *= 1 - lr*wd (wd only for ndim >= 2); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
       p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)."""
    b1, b2 = betas
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads.values())).item()
    coef = clip / (norm + 1e-6) if norm > clip else 1.0
    for n, p in P.items():
        g = grads[n] * coef
        m, v = state.setdefault(n, (torch.zeros_like(p), torch.zeros_like(p)))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        state[n] = (m, v)
        p = p * (1 - lr * (wd if p.ndim >= 2 else 0.0))
        P[n] = p - lr / (1 - b1 ** step) * m / (v.sqrt() / math.sqrt(1 - b2 ** step) + eps)
    return norm


def write_fixture_checked(path, tensors):
    """write_fixture, then reads the file back to make sure it says what we meant (names in
    order, shapes, values within float32 rounding)."""
    write_fixture(path, tensors)
    back = read_fixture(path)
    assert list(back) == [n for n, _ in tensors]
    for n, t in tensors:
        a = t.detach().numpy()
        assert back[n].shape == a.shape, n
        assert (abs(back[n].astype("float64") - a) <= 1e-7 * (1 + abs(a))).all(), n
