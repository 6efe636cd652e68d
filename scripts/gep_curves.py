#!/usr/bin/python3
"""Learning curves of `eqprop train` runs of vector_field configs: test accuracy, Jacobian symmetry index and
per-layer cos(EP, RBP) against epochs, one line per run directory (its metrics.csv).

usage: scripts/gep_curves.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(run_dir):
    with open(f"{run_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


def column(rows, key):
    xs, ys = [], []
    for r in rows:
        if r.get(key, "") not in ("", None):
            xs.append(int(r["epoch"]))
            ys.append(float(r[key]))
    return xs, ys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, runs = sys.argv[1], [a.rsplit("=", 1) for a in sys.argv[2:]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for label, d in runs:
        rows = load(d)
        x, y = column(rows, "test_acc")
        axes[0].plot(x, [100 * v for v in y], marker="o", label=label)
        x, y = column(rows, "symmetry_index")
        axes[1].plot(x, y, marker="o", label=label)
        x, y = column(rows, "cos_layer1")
        axes[2].plot(x, y, marker="o", label=label)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].set_ylabel("Jacobian symmetry index |S|/(|S|+|A|)")
    axes[2].set_ylabel("cos(EP error, RBP error), layer 1")
    for a in axes:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
