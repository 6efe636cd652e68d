#!/usr/bin/python3
"""Runs the GLE reference implementation (Haider et al., "Backpropagation through space, time and
the brain", github.com/unibe-cns/gle-code, PyTorch) from a checkout, on this machine: steps/s of
its end-to-end MNIST-1D network at the settings of the `eqprop bench` workloads
gle_mnist1d_15k (1 thread) and gle_mnist1d_15k_2t (2 threads).

gle-code is GPL-3.0 and its README carries a patent notice: nothing of it is copied here; --code
names the user's checkout and its experiments/mnist1d/plastic_e2e.py runs unmodified (the
published 15k network: 1 -> 6 x 53 -> 10, dt 0.2, 360 steps per sample, batch 100, Adam every
step at lr 1e-3, CE, beta 1). This driver only replaces, from outside:
  * data.datasets.get_mnist1d_splits: the 360-step MNIST-1D arrays of our data directory
    (mnist-1d/gle-360/x_*_float32.npy, y_*.npy; the values the reference's generator gives)
    instead of generating them with the mnist1d package;
  * mnist1d_training.mnist1d_run, which plastic_e2e.py calls with the model and optimizer it
    built: the replacement calls the reference's own mnist1d_training.train on consecutive
    training batches and times them, then stops the script (no evaluation, nothing written);
  * pandas and sklearn, when missing (Debian 12 without python3-pandas / python3-sklearn):
    empty stand-ins, since the timed path does not use them;
  * the thread counts and the BLAS library (as ep_reference.py).

    python3 bench/reference/gle_reference.py --code /path/to/gle-code -w gle_mnist1d_15k --json F
"""
from __future__ import annotations

import contextlib
import datetime
import os
import runpy
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ep_reference as common  # noqa: E402  (environment, BLAS and machine helpers)

# eqprop bench workload -> threads (the bench runs these at fixed thread counts)
GLE_WORKLOADS = {"gle_mnist1d_15k": 1, "gle_mnist1d_15k_2t": 2}
STEPS_PER_SAMPLE = 360  # 72 / dt with dt = 0.2, as plastic_e2e.py computes it


class _Stop(Exception):
    pass


def stub_missing(name, **attrs):
    try:
        __import__(name)
    except ImportError:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod


def load_splits(data_dir):
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    d = os.path.join(data_dir, "mnist-1d", "gle-360")
    if not os.path.exists(os.path.join(d, "x_train_float32.npy")):
        sys.exit(f"gle_reference: {d}/x_train_float32.npy not found (set --data-dir or $EQPROP_DATA)")

    def split(s):
        x = torch.from_numpy(np.load(os.path.join(d, f"x_{s}_float32.npy")))
        y = torch.from_numpy(np.load(os.path.join(d, f"y_{s}.npy")).astype("int64"))
        return TensorDataset(x, y)

    return split("train"), split("test")


class BatchFeed:
    """Consecutive training batches for the reference's train(); batch k is requested when
    batch k-1 (all its time steps) is done, so the request times delimit the batches."""

    def __init__(self, data, batch_size, warmup, seconds, min_batches):
        self.x, self.y = data.tensors
        self.dataset, self.batch_size = data, batch_size
        self.warmup, self.seconds, self.min_batches = warmup, seconds, min_batches
        self.stamps = []

    def __len__(self):
        return len(self.y) // self.batch_size

    def __iter__(self):
        B, n = self.batch_size, (len(self.y) // self.batch_size) * self.batch_size
        k = 0
        while True:
            now = time.perf_counter()
            self.stamps.append(now)
            if k - self.warmup >= self.min_batches and now - self.stamps[self.warmup] >= self.seconds:
                return
            i = (k * B) % n
            yield self.x[i:i + B], self.y[i:i + B]
            k += 1

    def timed_batches(self):
        s = self.stamps[self.warmup:]
        return [b - a for a, b in zip(s, s[1:])]


def run_rate(args):
    import torch

    code = os.path.abspath(args.code)
    script = os.path.join(code, "experiments", "mnist1d", "plastic_e2e.py")
    if not os.path.exists(script):
        sys.exit(f"gle_reference: --code {args.code}: no experiments/mnist1d/plastic_e2e.py there (a checkout "
                 "of github.com/unibe-cns/gle-code)")
    sys.path[:0] = [code, os.path.dirname(script)]
    stub_missing("pandas")
    stub_missing("sklearn")
    stub_missing("sklearn.metrics", confusion_matrix=lambda *a, **k: None)
    import data.datasets  # the reference's modules, from the checkout
    import mnist1d_training

    splits = load_splits(args.data_dir)
    data.datasets.get_mnist1d_splits = lambda **kw: splits
    torch.set_num_threads(args.threads)
    results = []
    for name in args.workload:
        box = {}

        def timed_run(params, memory, model, loss_fn, fn_out, train_data, test_data, optimizer=None,
                      lr_scheduler=None, use_le=True):
            feed = BatchFeed(train_data, params["batch_size"], args.warmup, args.seconds, args.min_batches)
            mnist1d_training.train(params, memory, model, loss_fn, feed, optimizer, 1, None, use_le=use_le)
            box.update(feed=feed, params=dict(params), n_params=model.count_params())
            raise _Stop

        mnist1d_training.mnist1d_run = timed_run
        saved_argv, sys.argv = sys.argv, [script, "--seed", "42"]
        load0, t0 = os.getloadavg(), time.time()
        try:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink if not args.verbose else sys.stderr):
                runpy.run_path(script, run_name="__main__")
        except _Stop:
            pass
        finally:
            sys.argv = saved_argv
        if "feed" not in box:
            sys.exit("gle_reference: plastic_e2e.py did not call mnist1d_run")
        p, batches = box["params"], box["feed"].timed_batches()
        steps = len(batches) * p["steps_per_sample"]
        total = sum(batches)
        r = {"name": name, "rate": steps / total, "unit": "steps/s", "batches": len(batches),
             "batch": p["batch_size"], "steps": steps, "seconds": total, "threads": args.threads,
             "us_per_step": 1e6 * total / steps, "parameters": box["n_params"],
             "settings": {k: p[k] for k in ("dt", "lr", "hidden_layers", "hidden_fast_size", "hidden_slow_size",
                                            "beta", "gamma", "prospective_errors", "steps_per_sample")},
             "started": datetime.datetime.fromtimestamp(t0).isoformat(timespec="seconds"),
             "loadavg_before": list(load0), "loadavg_after": list(os.getloadavg())}
        if p["steps_per_sample"] != STEPS_PER_SAMPLE or p["batch_size"] != 100:
            sys.exit(f"gle_reference: plastic_e2e.py changed: {p['steps_per_sample']} steps per sample, batch "
                     f"{p['batch_size']} (the bench workload: {STEPS_PER_SAMPLE}, 100)")
        common.log(f"{name}: {r['rate']:.4g} steps/s ({steps} steps of batch {p['batch_size']}, {total:.1f} s)")
        results.append(r)
    common.write_rate_doc("unibe-cns/gle-code", code, results, args.json)


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", required=True, help="checkout of unibe-cns/gle-code")
    ap.add_argument("-w", "--workload", action="append", required=True, choices=list(GLE_WORKLOADS),
                    help="one per run: the thread count goes with it")
    ap.add_argument("--data-dir", default=common.default_data_dir(), help="has mnist-1d/gle-360/ (default: "
                    "$EQPROP_DATA)")
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds after the warm-up (default: 10)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed batches of 360 steps (default: 1)")
    ap.add_argument("--min-batches", type=int, default=2, help="timed batches at least (default: 2)")
    ap.add_argument("--blas", default="auto", help="as ep_reference.py")
    ap.add_argument("--json", help="write the result here (default: stdout)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the script's own output")
    args = ap.parse_args()
    threads = {GLE_WORKLOADS[w] for w in args.workload}
    if len(threads) != 1:
        ap.error("the workloads run at different thread counts: one per call")
    args.threads = threads.pop()
    common.prepare_environment(args)
    run_rate(args)


if __name__ == "__main__":
    main()
