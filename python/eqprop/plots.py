"""Figures for eqprop. Every function returns a matplotlib Figure (Agg backend, no display
needed); save it with fig.savefig("out.png").

  run_curves(run_dirs)   loss, error and relaxation failures per epoch of eqprop runs
  sweep_runs(sweep_dir)  test accuracy and loss per epoch of an `eqprop train --seeds/--grid`
                         sweep: mean line and +- std band (sample std) per grid point
  seed_bands(groups)     the same figure for any groups of runs [(label, [run_dir, ...]), ...]
  sweep_beta(data)       cosine / rel. error with the exact gradient vs |beta|, one curve per N
  sweep_periods(data)    continuous hEP: cosine vs periods, one curve per T2
  stability(data)        log10 residual of the nudged relaxation over the complex beta plane
  gle_lagline(runs)      GLE LagLine: loss, weights and tau_m over time (teacher dashed)
  gle_lagnet(data)       GLE errors e against the adjoint method's lambda per hidden neuron

`data` is a CSV path written by `eqprop sweep`, a dict of columns, a list of row dicts, or
(sweep_beta) the document returned by eqprop.gradcheck(). This file imports nothing from the
compiled module, so scripts/eqprop_plot.py (the CLI's plotter) loads it directly.
"""
import csv
import math
import os


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, axes, title, legend_size=7):
    """Grid and legend on every axis, the optional title; returns fig."""
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=legend_size)
    if title:
        fig.suptitle(title)
    return fig


def _columns(data):
    """Columns as lists of floats from a CSV path, a dict of columns, row dicts or a gradcheck document."""
    if isinstance(data, (str, os.PathLike)):
        return read_csv(os.fspath(data))
    if isinstance(data, dict) and "estimators" in data:
        data = data["estimators"]
    if isinstance(data, dict):
        return {k: [float(v) for v in vs] for k, vs in data.items()}
    rows = list(data)
    if not rows:
        raise ValueError("no rows to plot")
    return {k: [float(r[k]) for r in rows] for k, v in rows[0].items() if isinstance(v, (int, float))}


def read_csv(path):
    """Columns of a CSV file as lists of floats (non-numeric columns are skipped)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"eqprop_plot: {path}: no such file")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"eqprop_plot: {path}: no rows")
    cols = {}
    for key in rows[0]:
        try:
            cols[key] = [float(r[key]) if r[key] not in ("", None) else math.nan for r in rows]
        except ValueError:
            continue
    return cols


def _first(m, *names):
    """The first of the named columns that m has, or None."""
    return next((m[n] for n in names if n in m), None)


def _error(m, split):
    """Error in % of a split from its accuracy column (acc or accuracy) or its error column."""
    acc = _first(m, f"{split}_acc", f"{split}_accuracy")
    if acc is not None:
        return [100 * (1 - v) for v in acc]
    err = m.get(f"{split}_error")
    return None if err is None else [100 * v for v in err]


def run_curves(run_dirs, title=None):
    """Loss, error and relaxation failures per epoch of one or more eqprop runs (a path or a list)."""
    plt = _plt()
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for d in run_dirs:
        path = os.path.join(d, "metrics.csv")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"eqprop_plot: {path}: no such file (is {d} an eqprop run directory?)")
        m = read_csv(path)
        name = os.path.basename(os.path.normpath(d))
        ep = m["epoch"]
        c = None

        def draw(axis, values, style, label):
            nonlocal c
            if values is None:
                return
            # Epochs without a value (test metrics of epochs run.eval_every skips) are left out.
            points = [(e, v) for e, v in zip(ep, values) if not math.isnan(v)]
            line, = axis.plot([p[0] for p in points], [p[1] for p in points], style, color=c, label=f"{name} {label}")
            c = line.get_color()

        # `eqprop train` names first; `deep train` (error, MSE) and older gep runs as fallbacks.
        draw(ax[0], _first(m, "train_loss", "train_mse"), "--", "train")
        draw(ax[0], _first(m, "test_loss", "test_mse"), "-", "test")
        draw(ax[1], _error(m, "train"), "--", "train")
        draw(ax[1], _error(m, "test"), "-", "test")
        draw(ax[2], m.get("dropped", m.get("n_dropped", [0] * len(ep))), "-", "dropped")
        draw(ax[2], _first(m, "not_converged", "free_not_converged"), ":", "free phase not converged")
    ax[0].set(xlabel="epoch", ylabel="cost", title="loss")
    ax[1].set(xlabel="epoch", ylabel="error (%)", title="error", yscale="log")
    ax[2].set(xlabel="epoch", ylabel="samples per epoch", title="relaxation failures")
    return _finish(fig, ax, title)


# Metrics column names for runs outside a sweep; a sweep's sweep.json names its own.
DEFAULT_SWEEP_COLUMNS = {"epoch": "epoch", "test_acc": "test_acc", "test_loss": "test_loss"}


def _mean_std(values):
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    return mean, (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0)


def seed_bands(groups, title=None, columns=None):
    """Test accuracy (%) and test loss per epoch: for each (label, [run_dir, ...]) in groups, the
    mean over its runs as a line and mean +- sample std as a band (at each epoch, over the runs
    that reached it)."""
    plt = _plt()
    cols = dict(DEFAULT_SWEEP_COLUMNS, **(columns or {}))
    fig, ax = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for label, run_dirs in groups:
        by_epoch = {}
        for d in run_dirs:
            path = os.path.join(d, "metrics.csv")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"eqprop_plot: {path}: no such file (is {d} an eqprop run directory?)")
            m = read_csv(path)
            for key in cols.values():
                if key not in m:
                    raise ValueError(f"eqprop_plot: {path}: no column {key}")
            for i, ep in enumerate(m[cols["epoch"]]):
                if math.isnan(ep) or math.isnan(m[cols["test_acc"]][i]):  # not evaluated (run.eval_every)
                    continue
                acc, loss = by_epoch.setdefault(ep, ([], []))
                acc.append(100 * m[cols["test_acc"]][i])
                loss.append(m[cols["test_loss"]][i])
        if not by_epoch:
            continue
        eps = sorted(by_epoch)
        for a, k in ((ax[0], 0), (ax[1], 1)):
            stats = [_mean_std(by_epoch[e][k]) for e in eps]
            mean = [s[0] for s in stats]
            line, = a.plot(eps, mean, "-", label=f"{label} (n={len(run_dirs)})")
            a.fill_between(eps, [mu - sd for mu, sd in stats], [mu + sd for mu, sd in stats], color=line.get_color(),
                           alpha=0.2, lw=0)
    ax[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy (mean +- std over seeds)")
    ax[1].set(xlabel="epoch", ylabel="test loss", title="test loss (mean +- std over seeds)")
    return _finish(fig, ax, title)


def sweep_runs(sweep_dir, title=None):
    """The figure of a sweep directory written by `eqprop train --seeds/--grid` (reads its
    sweep.json): one band per grid point over its finished runs."""
    import json
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"eqprop_plot: {path}: no such file (is {sweep_dir} a sweep directory of "
                                f"`eqprop train --seeds/--grid`?)")
    with open(path) as f:
        sweep = json.load(f)
    groups = [(p["name"] or "all seeds", [os.path.join(sweep_dir, r) for r in p["runs"]]) for p in sweep["points"]]
    return seed_bands([g for g in groups if g[1]], title or os.path.basename(os.path.normpath(sweep_dir)),
                      sweep.get("columns"))


def group_seed_runs(run_dirs):
    """Groups run directories for seed_bands: runs named seed-<S> that share a parent directory
    (one grid point of a sweep) form one group labelled by the parent; every other run is its own
    group. Returns None when no two runs share a group (draw them with run_curves instead)."""
    groups = {}
    for d in run_dirs:
        norm = os.path.normpath(d)
        parent, base = os.path.split(norm)
        key = parent if base.startswith("seed-") else norm
        groups.setdefault(key, []).append(d)
    if all(len(v) == 1 for v in groups.values()):
        return None
    return [(os.path.basename(k) or k, v) for k, v in groups.items()]


def _two_panel_curves(m, group, x, left, right, label, axes, title):
    """One curve per value of column `group`: left(m, i) and right(m, i) against column x."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for g in sorted(set(m[group])):
        idx = [i for i, v in enumerate(m[group]) if v == g]
        xs = [m[x][i] for i in idx]
        ax[0].plot(xs, [left(m, i) for i in idx], "o-", ms=3, label=label.format(int(g)))
        ax[1].plot(xs, [right(m, i) for i in idx], "o-", ms=3, label=label.format(int(g)))
    for a, kw in zip(ax, axes):
        a.set(**kw)
    return _finish(fig, ax, title, legend_size=None)


def sweep_beta(data, title=None):
    """Cosine with the exact gradient and relative error versus |beta|, one curve per N."""
    return _two_panel_curves(
        _columns(data), "n_points", "beta", lambda m, i: m["cosine"][i], lambda m, i: m["rel_error"][i], "N = {}",
        [dict(xlabel="|beta|", ylabel="cosine with the exact gradient", title="gradient direction"),
         dict(xlabel="|beta|", ylabel="relative error", title="gradient error", yscale="log")], title)


def sweep_periods(data, title=None):
    """Continuous hEP: cosine with the exact gradient after each period, one curve per T2."""
    return _two_panel_curves(
        _columns(data), "steps_per_point", "period", lambda m, i: m["cosine"][i],
        lambda m, i: max(1e-16, 1 - m["cosine"][i]), "T2 = {}",
        [dict(xlabel="periods", ylabel="cosine with the exact gradient", title="continuous holomorphic EP"),
         dict(xlabel="periods", ylabel="1 - cosine", yscale="log", title="distance from the exact direction")], title)


def stability(data, title=None):
    """log10 of the relaxation residual over the complex beta plane (dark: converged)."""
    plt = _plt()
    import numpy as np
    m = _columns(data)
    re, im, res = np.array(m["re"]), np.array(m["im"]), np.array(m["residual"])
    xs, ys = np.unique(re), np.unique(im)
    grid = np.full((len(ys), len(xs)), np.nan)
    xi, yi = np.searchsorted(xs, re), np.searchsorted(ys, im)
    with np.errstate(divide="ignore"):
        grid[yi, xi] = np.log10(np.where(np.isfinite(res), np.maximum(res, 1e-16), 1e3))
    fig, ax = plt.subplots(figsize=(6.4, 5.4), constrained_layout=True)
    im_ = ax.imshow(grid, origin="lower", extent=[xs[0], xs[-1], ys[0], ys[-1]], cmap="magma", vmin=-16, vmax=1,
                    interpolation="nearest", aspect="equal")
    fig.colorbar(im_, ax=ax, label="log10 residual after the nudged phase")
    ax.set(xlabel="Re beta", ylabel="Im beta", title=title or "where the nudged relaxation converges")
    return fig


def gle_lagline(runs, title=None):
    """LagLine: loss, weights and membrane time constants over time, one line style per run.

    runs: CSV paths written by `eqprop gle lagline --out`, dicts returned by
    eqprop.gle_lagline(), or a list of either. Teacher values are dashed.
    """
    plt = _plt()
    if isinstance(runs, (str, os.PathLike, dict)):
        runs = [runs]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for run in runs:
        if isinstance(run, dict):
            m, name = {k: list(v) for k, v in run.items() if k in ("t", "loss", "w1", "w2", "tau_m1", "tau_m2")}, \
                run.get("rule", "run")
        else:
            m = read_csv(os.fspath(run))
            name = os.path.splitext(os.path.basename(os.fspath(run)))[0].replace("lagline_", "")
        line, = ax[0].plot(m["t"], [max(v, 1e-16) for v in m["loss"]], label=name)
        c = line.get_color()
        ax[1].plot(m["t"], m["w1"], color=c, label=f"{name} w1")
        ax[1].plot(m["t"], m["w2"], color=c, ls="-.", label=f"{name} w2")
        ax[2].plot(m["t"], m["tau_m1"], color=c, label=f"{name} tau_m1")
        ax[2].plot(m["t"], m["tau_m2"], color=c, ls="-.", label=f"{name} tau_m2")
    for a, ys in ((ax[1], (1, 2)), (ax[2], (1, 2))):
        for y in ys:
            a.axhline(y, color="k", ls="--", lw=0.8)
    ax[0].set(xlabel="time", ylabel="mean squared error", yscale="log", title="loss")
    ax[1].set(xlabel="time", ylabel="weight", title="weights (teacher dashed)")
    ax[2].set(xlabel="time", ylabel="tau_m", title="membrane time constants (teacher dashed)")
    return _finish(fig, ax, title)


def gle_lagnet(data, title=None):
    """LagNet: GLE error e (solid) and the adjoint method's lambda (dashed) for each hidden neuron.

    data: lagnet_traces.csv from `eqprop gle lagnet --out` or the dict of eqprop.gle_lagnet().
    """
    plt = _plt()
    if isinstance(data, dict):
        t, e, lam = list(data["t"]), data["e"], data["lambda"]
        names = list(e.keys())
    else:
        m = read_csv(os.fspath(data))
        t = m["t"]
        names = [k[2:] for k in m if k.startswith("e_")]
        e = {n: m["e_" + n] for n in names}
        lam = {n: m["lambda_" + n] for n in names}
    fig, ax = plt.subplots(len(names), 1, figsize=(11, 2.2 * len(names)), sharex=True, constrained_layout=True)
    for a, n in zip(ax, names):
        a.plot(t, e[n], lw=1, label=f"GLE e ({n})")
        a.plot(t, lam[n], "--", lw=1, label=f"adjoint lambda ({n})")
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="upper right")
        a.set_ylabel("error")
    ax[-1].set_xlabel("time in the comparison window")
    fig.suptitle(title or "GLE errors against the adjoint method (i: instantaneous, r: retrospective neuron)")
    return fig
