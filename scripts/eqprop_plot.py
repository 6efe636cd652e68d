#!/usr/bin/python3
"""Learning curves of eqprop runs as a PNG: loss, accuracy and convergence per epoch.

Usage: plot_run.py RUN_DIR [RUN_DIR ...] [-o OUT.png] [--title TEXT]

Reads each run's metrics.csv (written by `eqprop train`); several runs are overlaid,
labelled by their directory names. Default output: RUN_DIR/curves.png for one run,
./curves.png for several. Uses Debian's python3 with matplotlib (Agg, no display).
"""
import argparse
import csv
import os
import sys


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.isfile(path):
        raise SystemExit(f"plot: {path}: no such file (is {run_dir} an eqprop run directory?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"plot: {path}: no epochs logged yet")
    cols = {}
    for key in rows[0]:
        try:
            cols[key] = [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows]
        except ValueError:
            continue  # non-numeric column
    return cols


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories")
    ap.add_argument("-o", "--out", help="output PNG")
    ap.add_argument("--title", default=None)
    a = ap.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(os.path.basename(os.path.normpath(r)), read_metrics(r)) for r in a.runs]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for name, m in runs:
        ep = m["epoch"]
        l, = ax[0].plot(ep, m["train_loss"], "--", label=f"{name} train")
        ax[0].plot(ep, m["test_loss"], "-", color=l.get_color(), label=f"{name} test")
        ax[1].plot(ep, [100 * (1 - v) for v in m["train_acc"]], "--", color=l.get_color(), label=f"{name} train")
        ax[1].plot(ep, [100 * (1 - v) for v in m["test_acc"]], "-", color=l.get_color(), label=f"{name} test")
        ax[2].plot(ep, m.get("dropped", [0] * len(ep)), "-", color=l.get_color(), label=f"{name} dropped")
        if "not_converged" in m:
            ax[2].plot(ep, m["not_converged"], ":", color=l.get_color(), label=f"{name} not converged")
    ax[0].set(xlabel="epoch", ylabel="cross-entropy / cost", title="loss")
    ax[1].set(xlabel="epoch", ylabel="error (%)", title="error (lower is better)", yscale="log")
    ax[2].set(xlabel="epoch", ylabel="samples per epoch", title="relaxation failures")
    for x in ax:
        x.grid(alpha=0.3)
        x.legend(fontsize=7)
    if a.title:
        fig.suptitle(a.title)
    out = a.out or (os.path.join(a.runs[0], "curves.png") if len(a.runs) == 1 else "curves.png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
