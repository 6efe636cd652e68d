#!/usr/bin/python3
"""How exact is holomorphic EP? Cosine and relative error with the exact (BPTT) gradient
versus |beta| for N = 1, 2, 4, 8 teaching signals on a toy network; saves a PNG.

    PYTHONPATH=build/python /usr/bin/python3 python/examples/gradient_exactness.py [--quick] [-o out.png]
"""
import argparse

import numpy as np

import eqprop


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer |beta| values")
    ap.add_argument("-o", "--out", default="gradient_exactness.png")
    a = ap.parse_args()

    # The hEP paper's toy network (6 -> 4 -> 4, readout 4), float64, one random sample.
    net = eqprop.Network(sizes=[6, 4, 4], readout=4, init_scale=0.5, seed=0, dtype="float64")
    x, y = eqprop.random_batch(6, 4, batch=1, seed=0)
    steps = 200
    ref, _ = eqprop.bptt_gradient(net, x, y, steps=steps)
    betas = np.geomspace(0.01, 1.0, 5 if a.quick else 20)
    rows = []
    for n in (1, 2, 4, 8):
        for beta in betas:
            g, _ = eqprop.estimate(net, x, y, kind="holomorphic", n_points=n, beta=float(beta), free_steps=steps,
                                   nudged_steps=steps, on_failure="keep")
            rows.append({"n_points": n, "beta": float(beta), "cosine": eqprop.cosine(g, ref),
                         "rel_error": eqprop.relative_error(g, ref)})
            print(f"N={n:<2} |beta|={beta:7.4f}  cosine {rows[-1]['cosine']:.10f}  rel. error {rows[-1]['rel_error']:.3e}")
    fig = eqprop.plots.sweep_beta(rows, title="holomorphic EP vs BPTT, toy network")
    fig.savefig(a.out, dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()
