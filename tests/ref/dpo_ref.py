"""Float64 PyTorch reference of the dpo losses (dpo/loss.h), written from the papers and TRL's
DPOTrainer / CPOTrainer formulas, independently of the C code. Prints, for each case of
tests/test_dpo.c's reference table, the loss and its gradient with respect to each item's policy
log-probability (autograd), as the C initialisers the test holds:

    /usr/bin/python3 tests/ref/dpo_ref.py

Cases: (name, loss type, beta, label_smoothing, gamma, listwise, logp, ref, n, ranks).
Pairwise cases have two items, chosen first.
"""
import torch
import torch.nn.functional as F

CASES = [
    ("dpo", "sigmoid", 0.1, 0.0, 0.0, False, [-12.5, -15.25], [-13.0, -14.0], [5, 7], [1, 2]),
    ("dpo_wrong_way", "sigmoid", 0.5, 0.0, 0.0, False, [-20.0, -3.0], [-18.0, -4.0], [9, 2],
     [1, 2]),
    ("cdpo", "sigmoid", 0.5, 0.2, 0.0, False, [-12.5, -15.25], [-13.0, -14.0], [5, 7], [1, 2]),
    ("ipo", "ipo", 0.1, 0.0, 0.0, False, [-12.5, -15.25], [-13.0, -14.0], [5, 7], [1, 2]),
    ("ipo_beta2", "ipo", 2.0, 0.0, 0.0, False, [-1.0, -2.5], [-1.5, -2.0], [3, 4], [1, 2]),
    ("simpo", "simpo", 2.0, 0.0, 0.5, False, [-12.5, -15.25], [0.0, 0.0], [5, 7], [1, 2]),
    ("simpo_ls", "simpo", 2.5, 0.1, 1.4, False, [-6.0, -3.0], [0.0, 0.0], [4, 3], [1, 2]),
    ("listwise", "sigmoid", 0.3, 0.0, 0.0, True, [-3.0, -4.0, -2.5, -6.0], [-3.5, -3.8, -2.0, -5.0],
     [2, 3, 2, 4], [1, 2, 3, 4]),
    ("listwise_ties", "sigmoid", 0.3, 0.0, 0.0, True, [-3.0, -4.0, -2.5, -6.0, -1.0],
     [-3.5, -3.8, -2.0, -5.0, -1.5], [2, 3, 2, 4, 1], [2, 1, 3, 3, 2]),
]


def loss_of(kind, beta, eps, gamma, listwise, logp, ref, n, ranks):
    if listwise:   # Plackett-Luce over the DPO rewards; each item against those not ranked above
        r = beta * (logp - ref)
        worst = max(ranks)
        total = torch.zeros((), dtype=torch.float64)
        for i, ri in enumerate(ranks):
            if ri == worst:
                continue
            mask = torch.tensor([rj >= ri for rj in ranks])
            total = total - (r[i] - torch.logsumexp(r[mask], 0))
        return total
    if kind == "ipo":   # TRL: (logits - 1/(2 beta))^2, logits = pi log-ratio - ref log-ratio
        logits = (logp[0] - logp[1]) - (ref[0] - ref[1])
        return (logits - 1 / (2 * beta)) ** 2
    if kind == "simpo":   # TRL CPOTrainer: beta * (avg logp diff - gamma / beta)
        avg = logp / torch.tensor(n, dtype=torch.float64)
        logits = (avg[0] - avg[1]) - gamma / beta
        return -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    logits = (logp[0] - logp[1]) - (ref[0] - ref[1])   # TRL sigmoid (cDPO with eps)
    return -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps


def main():
    for name, kind, beta, eps, gamma, lw, logp, ref, n, ranks in CASES:
        lp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
        loss = loss_of(kind, beta, eps, gamma, lw, lp, torch.tensor(ref, dtype=torch.float64), n,
                       ranks)
        loss.backward()
        grad = ", ".join(f"{g:.17g}" for g in lp.grad.tolist())
        print(f'    {{"{name}", {loss.item():.17g}, {{{grad}}}}},')


if __name__ == "__main__":
    main()
