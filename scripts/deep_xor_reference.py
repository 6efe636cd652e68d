#!/usr/bin/env python3
"""Independent NumPy transcription of DEEP (spec deep.md §2-§4.1) for XOR with one-hot outputs.

Written from the spec's equations only, to check that the C++ success rate of the published
settings (docs/results/deep.md, "XOR, one-hot, published settings") is a property of the algorithm, not of the
implementation. Every seed k uses its own generator numpy.random.default_rng(first + k), so
results do not depend on how many seeds run together.

    python3 scripts/deep_xor_reference.py --seeds 100            # ~45 s on one core

Per seed: weights ~ N(0, 0.05^2) on the complete mask; every epoch, free states ~ U(0, 0.1),
T1 free Euler steps, T2 nudged steps from the free end state, clip to [0, 1] after each step;
full-batch trajectory rule dW_ij = (1/(B T2)) sum_b sum_t s_i(t) (s_j(t) - s_j(t-1)),
W <- mask(W + eta dW). After training, one fresh free phase decides the error, then one more
epoch classifies each failure (frozen hidden layer / nudge too weak / blow-up).
"""
import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=2)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=200.0)
    ap.add_argument("--dt", type=float, default=0.05)
    ap.add_argument("--T", type=int, default=1000, help="T1 = T2")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--init-std", type=float, default=0.05)
    a = ap.parse_args()

    K = a.seeds
    rngs = [np.random.default_rng(a.first + k) for k in range(K)]
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    labels = np.array([0, 1, 1, 0])
    y = np.eye(2)[labels]
    B, n_in, n_h, n_out = 4, 3, a.hidden, 2  # n_in counts the bias neuron
    n = n_in + n_h + n_out
    allowed = np.ones((n, n), bool)
    np.fill_diagonal(allowed, False)
    allowed[:, :n_in] = False  # nothing enters an input or the bias
    inputs = np.broadcast_to(np.concatenate([x, np.ones((B, 1))], 1), (K, B, n_in))
    w = np.stack([r.normal(0, a.init_std, (n, n)) for r in rngs]) * allowed

    def init_states():
        return np.concatenate([inputs, np.stack([r.uniform(0, 0.1, (B, n_h + n_out)) for r in rngs])], 2)

    def relax(s, w, nudge, acc=None):
        decay = w.sum(2)  # row sums: total outgoing weight of each neuron
        for _ in range(a.T):
            ds = np.einsum("kbi,kij->kbj", s, w) - s * decay[:, None, :]
            if nudge:
                ds[:, :, -n_out:] += a.beta * (y - s[:, :, -n_out:])
            nxt = s.copy()
            nxt[:, :, n_in:] = np.clip(s[:, :, n_in:] + a.dt * ds[:, :, n_in:], 0.0, 1.0)
            if acc is not None:
                acc += np.einsum("kbi,kbj->kij", nxt, nxt - s)
            s = nxt
        return s

    def epoch(w):
        s_free = relax(init_states(), w, False)
        acc = np.zeros_like(w)
        s_nudged = relax(s_free, w, True, acc)
        return w + a.lr * acc / (B * a.T) * allowed, s_free, s_nudged

    t0 = time.time()
    for _ in range(a.epochs):
        w, _, _ = epoch(w)
    s = relax(init_states(), w, False)
    err = (s[:, :, -n_out:].argmax(2) != labels).mean(1)
    w_new, s_free, s_nudged = epoch(w)
    dw = np.abs(w_new - w)
    hid = slice(n_in, n_in + n_h)
    hidden_clipped = ((s_free[:, :, hid] == 0) | (s_free[:, :, hid] == 1)).all((1, 2))
    dw_hidden = dw[:, :, hid].sum((1, 2))
    nudged_err = (s_nudged[:, :, -n_out:].argmax(2) != labels).mean(1)
    fail = err > 0
    blown = fail & (np.abs(w).max((1, 2)) > 1e3)
    weak = fail & ~blown & (nudged_err > 0)
    frozen = fail & ~blown & ~weak & (dw_hidden == 0)
    print(f"{(~fail).sum()} of {K} seeds reach 0% free-phase error; mean error {100 * err.mean():.2f}% "
          f"({time.time() - t0:.0f} s)")
    print("seeds at 0%:", " ".join(str(a.first + k) for k in np.flatnonzero(~fail)))
    print(f"failures: {frozen.sum()} frozen hidden layer ({(frozen & hidden_clipped).sum()} with every hidden state clipped), "
          f"{weak.sum()} nudge too weak, {blown.sum()} blow-up (|W| > 1e3), "
          f"{(fail & ~blown & ~frozen & ~weak).sum()} other")


if __name__ == "__main__":
    main()
