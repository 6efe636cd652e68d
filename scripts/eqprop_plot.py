#!/usr/bin/python3
"""Figures for eqprop: learning curves of runs and the gradient-study figures.

  eqprop_plot.py run RUN_DIR [RUN_DIR ...] [-o OUT.png] [--title T]
                 (runs named seed-<S> that share a parent directory are drawn as one mean +- std band)
  eqprop_plot.py sweep SWEEP_DIR [-o OUT.png]                 (`eqprop train --seeds/--grid`: bands per grid point)
  eqprop_plot.py sweep-beta sweep_beta.csv [-o OUT.png]        (cosine, rel. error vs |beta| per N)
  eqprop_plot.py sweep-periods sweep_periods.csv [-o OUT.png]  (continuous hEP: cosine vs periods per T2)
  eqprop_plot.py stability stability.csv [-o OUT.png]          (residual over the complex beta plane)
  eqprop_plot.py gle-lagline lagline_gle.csv [...] [-o OUT.png] (GLE LagLine: loss, weights, tau_m over time)
  eqprop_plot.py gle-lagnet lagnet_traces.csv [-o OUT.png]      (GLE errors against the adjoint's lambda)

The figure functions live in python/eqprop/plots.py (eqprop.plots from Python); this script
loads that file directly, so it needs neither the compiled module nor PYTHONPATH. Uses
Debian's python3 with matplotlib (Agg backend, no display needed).
"""
import argparse
import importlib.util
import os
import sys

_PLOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "eqprop", "plots.py")
_spec = importlib.util.spec_from_file_location("eqprop_plots", _PLOTS)
plots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plots)
run_curves, sweep_beta, sweep_periods, stability, read_csv = (
    plots.run_curves, plots.sweep_beta, plots.sweep_periods, plots.stability, plots.read_csv)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    r = sub.add_parser("run")
    r.add_argument("runs", nargs="+")
    sub.add_parser("sweep").add_argument("dir")
    for k in ("sweep-beta", "sweep-periods", "stability", "gle-lagnet"):
        sub.add_parser(k).add_argument("csv")
    sub.add_parser("gle-lagline").add_argument("csvs", nargs="+")
    for p in sub.choices.values():
        p.add_argument("-o", "--out")
        p.add_argument("--title")
    a = ap.parse_args(argv)
    try:
        fig, out = _figure(a)
    except ImportError as e:
        raise SystemExit(f"eqprop_plot: {e} (the figures need matplotlib: apt-get install python3-matplotlib)")
    except (OSError, ValueError) as e:
        raise SystemExit(str(e))
    fig.savefig(out, dpi=110)
    print(out)


def _figure(a):
    if a.kind == "run":
        groups = plots.group_seed_runs(a.runs)
        fig = plots.seed_bands(groups, a.title) if groups else run_curves(a.runs, a.title)
        out = a.out or (os.path.join(a.runs[0], "curves.png") if len(a.runs) == 1 else "curves.png")
    elif a.kind == "sweep":
        fig = plots.sweep_runs(a.dir, a.title)
        out = a.out or os.path.join(a.dir, "summary.png")
    elif a.kind == "gle-lagline":
        fig = plots.gle_lagline(a.csvs, a.title)
        out = a.out or os.path.join(os.path.dirname(a.csvs[0]), "lagline.png")
    elif a.kind == "gle-lagnet":
        fig = plots.gle_lagnet(a.csv, a.title)
        out = a.out or os.path.splitext(a.csv)[0] + ".png"
    else:
        fig = {"sweep-beta": sweep_beta, "sweep-periods": sweep_periods, "stability": stability}[a.kind](a.csv, a.title)
        out = a.out or os.path.splitext(a.csv)[0] + ".png"
    return fig, out


if __name__ == "__main__":
    main(sys.argv[1:])
