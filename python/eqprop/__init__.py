"""eqprop: equilibrium propagation and holomorphic EP, the C++ library from Python.

Conventions: a batch x is a float array of shape (batch, n_inputs); targets y are integer
class labels (batch,) or float targets (batch, n_out); gradients are 1-D arrays in the
layout of ``Network.params`` (dL/dtheta, descend with theta -= lr * grad). Everything the
command-line tool computes gives the same numbers here (same seeds, same code).

    import eqprop
    net = eqprop.Network(sizes=[4, 5], readout=3, init_scale=0.5)
    x, y = eqprop.random_batch(4, 3, batch=2)
    g, info = eqprop.estimate(net, x, y, kind="holomorphic", n_points=4, beta=0.1)
    ref, _ = eqprop.bptt_gradient(net, x, y, steps=100)
    eqprop.cosine(g, ref)

A trained run of any model.kind: ``run = eqprop.load_run("runs/my-run")`` gives run.kind,
run.network (a Network, a VectorFieldNetwork for model.kind = vector_field, a GraphNetwork for
model.kind = graph, a GleNetwork for model.kind = gle), run.config, run.metrics,
run.predict(x), run.scores(x) and run.evaluate() (docs/python.md).

DEEP networks on directed graphs (docs/deep.md): GraphNetwork, graph_relax (one phase of the
dynamics) and graph_estimate (the DEEP estimator's gradient on a batch); their keywords are
the last parts of the graph config keys (dynamics.dt -> dt, relax.free_steps -> free_steps,
estimator.kind -> kind).

Every public callable has a real signature (inspect.signature, help()); the compiled
module's types are in eqprop/_core.pyi.

Generalized Latent Equilibrium (docs/gle.md): gle_operator, gle_lagline and gle_lagnet run the
`eqprop gle` studies, eqprop.plots.gle_lagline / gle_lagnet draw them; GLE networks train with
train(overrides={"model.kind": "gle", ...}) (config_keys("gle") lists their keys); GleNetwork is
such a network (GleNetwork.run runs sequences through it), load_run reads gle runs.
"""
import math as _math

from . import _core
from ._core import (  # noqa: F401
    __version__, Error, ConfigError, ShapeError, DataError, ConvergenceError, Network, VectorFieldNetwork, GraphNetwork,
    GleNetwork, build_info, relax, graph_relax, graph_estimate,
    bptt_gradient, backprop_gradient, implicit_gradient, finite_difference_gradient, complex_step_gradient, relative_error, cosine,
    per_group_rel_error, per_group_cosine, random_batch, load_dataset, dataset_names, train, config_keys,
    load_checkpoint, evaluate, gle_operator, gle_lagline, gle_lagnet,
)
from .runs import Run, load_run  # noqa: F401

__all__ = [
    "__version__", "Error", "ConfigError", "ShapeError", "DataError", "ConvergenceError", "Network",
    "VectorFieldNetwork", "GraphNetwork", "GleNetwork", "build_info",
    "relax", "graph_relax", "graph_estimate", "estimate", "gradcheck", "bptt_gradient", "backprop_gradient", "implicit_gradient",
    "finite_difference_gradient", "complex_step_gradient", "relative_error", "cosine", "per_group_rel_error",
    "per_group_cosine", "random_batch", "load_dataset", "dataset_names", "train", "config_keys", "load_checkpoint",
    "evaluate", "load_run", "Run", "gle_operator", "gle_lagline", "gle_lagnet",
    "plots",
]


def estimate(net, x, y, kind="holomorphic", n_points=4, beta=0.1, free_steps=100, nudged_steps=100, tol=0.0,
             stop_early=False, start="free", noise_std=0.0, noise_seed=0, noise_free_phase=False, average_last=0,
             on_failure="drop", fail_residual=1.0, periods=3, smooth=False, alpha=1.0, truncate=0,
             order="synchronous", omega=1.0):
    """Gradient estimate on one batch, in the network's dtype. Returns (grad, info).

    kind: classic (N=1) | symmetric (N=2) | holomorphic (N = n_points) | continuous
    (rotating beta for `periods` periods, nudged_steps per point, smooth/alpha) | bptt
    (free_steps, truncate) | implicit. Options are the config keys of the same names
    (tol 0: 1e-5 in float32, 1e-12 in float64; order and omega: relax.order and relax.omega,
    for every relaxation of the estimate). info: estimator, loss, predictions, free
    (relaxation report), points (one report per nudged relaxation), n_dropped, relax_steps.
    """
    args = _core._EstimateArgs(kind, n_points, beta, free_steps, nudged_steps, tol, stop_early, start, noise_std,
                               noise_seed, noise_free_phase, average_last, on_failure, fail_residual, periods, smooth,
                               alpha, truncate, order, omega)
    return _core.estimate(net, x, y, args)


def gradcheck(layers=(4, 5), readout=3, output="readout", activation="hep_sigmoid", init_scale=0.5, seed=0, batch=2,
              dtype="float64", free_steps=100, nudged_steps=100, tol=0.0, stop_early=False, n_points=(1, 2, 4),
              betas=(0.1,), start="free", reference="bptt", reference_steps=0, dataset=None, data_dir=None,
              noise_std=0.0, noise_seed=0, order="synchronous", omega=1.0):
    """``eqprop gradcheck`` from Python: the same document as its ``--json`` (same keys, same numbers).

    Every estimator (N in n_points, |beta| in betas) is compared with an exact float64
    reference (bptt | implicit | fd | complex-step) on the same batch: random inputs from
    the seed, or the first `batch` test samples of `dataset`.
    """
    import numpy as np
    net = Network(sizes=list(layers), readout=readout, output=output, activation=activation, init_scale=init_scale,
                  seed=seed, dtype=dtype)
    if dataset:
        d = load_dataset(dataset, data_dir, seed=seed)
        xt, yt = d["test"]
        if xt.shape[1] != layers[0]:
            raise ShapeError(f"dataset '{dataset}' has {xt.shape[1]} inputs but layers starts with {layers[0]}")
        x, labels = xt[:batch].astype(np.float64), yt[:batch]
        if len(labels) < batch:
            raise ShapeError("dataset test split is smaller than the batch")
    else:
        x, labels = random_batch(layers[0], net.n_output, batch, seed)
    steps = reference_steps if reference_steps > 0 else free_steps
    ref_tol = tol if tol > 0 else 1e-12
    ref_residual = None
    if reference == "bptt":
        ref, info = bptt_gradient(net, x, labels, steps=steps)
        ref_name, ref_residual = info["estimator"], info["free"]["max_residual"]
    elif reference == "implicit":
        ref, info = implicit_gradient(net, x, labels, steps=max(steps, 1), tol=ref_tol, stop_early=True)
        ref_name, ref_residual = info["estimator"], info["free"]["max_residual"]
    elif reference == "fd":
        ref, ref_name = finite_difference_gradient(net, x, labels, steps=max(steps, 1), tol=ref_tol), \
            "central finite differences"
    elif reference == "complex-step":
        ref, ref_name = complex_step_gradient(net, x, labels, steps=max(steps, 1), tol=ref_tol), \
            "complex-step differences"
    else:
        raise ConfigError(f"unknown reference '{reference}': expected bptt, implicit, fd or complex-step")
    doc = {
        "build": build_info(),
        "network": {"layers": list(layers), "readout": net.readout, "output": output, "activation": activation,
                    "init_scale": init_scale, "seed": seed, "batch": batch, "dtype": dtype, "n_params": net.n_params},
        "relax": {"free_steps": free_steps, "nudged_steps": nudged_steps, "tol": tol, "stop_early": stop_early,
                  "order": order, "omega": omega, "noise_std": noise_std, "noise_seed": noise_seed},
        "reference": {"name": ref_name, "dtype": "float64"},
    }
    rows = []
    for n in n_points:
        for beta in betas:
            g, info = estimate(net, x, labels, kind="holomorphic", n_points=n, beta=beta, free_steps=free_steps,
                               nudged_steps=nudged_steps, tol=tol, stop_early=stop_early, start=start,
                               on_failure="keep", noise_std=noise_std, noise_seed=noise_seed, order=order,
                               omega=omega)
            rel_l, cos_l = per_group_rel_error(net, g, ref), per_group_cosine(net, g, ref)
            rows.append({
                "estimator": info["estimator"], "n_points": n, "beta": beta, "start": start,
                "rel_error": relative_error(g, ref), "cosine": cosine(g, ref),
                "per_layer": {k: {"rel_error": r, "cosine": c} for k, r, c in zip(net.groups, rel_l, cos_l)},
                "free_residual": info["free"]["max_residual"],
                "free_not_converged": info["free"]["n_not_converged"],
                "points": [{"max_residual": p["max_residual"], "not_converged": p["n_not_converged"],
                            "steps": p["steps"]} for p in info["points"]],
            })
    doc["free_residual"] = ref_residual if ref_residual is None or _math.isfinite(ref_residual) else None
    doc["estimators"] = rows
    return doc


from . import plots  # noqa: E402,F401  (matplotlib is imported only when a figure is drawn)
