#!/usr/bin/python3
"""Runs the reference EP implementation (Laborieux et al. 2021, "Scaling Equilibrium Propagation
to Deep ConvNets", PyTorch) from a checkout of its repository, on this machine.

Nothing of the reference is copied here, and nothing is fetched: --code names the user's
checkout (github.com/Laborieux-Axel/Equilibrium-Propagation) and its main.py runs unmodified,
with the command-line arguments its README documents. This driver only replaces, from outside:
  * torchvision.datasets.MNIST: reads the idx files of our data directory (--data-dir, default
    $EQPROP_DATA), decompressed once into --cache-dir; never downloads;
  * torchvision.datasets.CIFAR10 (rate mode only): an empty stand-in, since the VGG-4 workload
    times a random CIFAR-shaped batch, as `eqprop bench` does;
  * model_utils.train and model_utils.evaluate, which main.py calls: the replacements call the
    originals, feeding them the batches to time (rate), one epoch at a time with checkpoints
    (to-accuracy), or a single batch with an optimizer that records the gradient (check);
  * the thread counts (torch.set_num_threads, OMP/OpenBLAS variables) and the BLAS library.

Modes (`ep_reference.py MODE --help` for the options):
  list         the rate workloads and accuracy tasks, with the main.py arguments of each
  rate         samples/s of the reference training step (free phase, nudged phase(s), EP
               update, optimizer step) at the settings of an `eqprop bench` workload
  to-accuracy  trains a task with the reference's published settings, test accuracy and
               wall time after every epoch, until --target or --max-epochs; one JSON-lines
               file per task and seed in --out-dir, resumable (see run_to_accuracy)
  check        the reference's gradient on one MNIST batch beside eqprop's (Python package,
               --eqprop-python) at the same weights: relative error per parameter tensor

BLAS: Debian's python3-torch calls whatever libblas.so.3 the alternatives system selects; the
netlib reference BLAS (the only one unless an optimized one is installed) is about 30x slower
than OpenBLAS. With --blas auto (the default) the driver re-executes itself with Debian's
OpenBLAS (libopenblas0-pthread) first on LD_LIBRARY_PATH when it is installed, and every
result records the library that was loaded.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import gzip
import io
import json
import os
import platform
import runpy
import shutil
import subprocess
import sys
import time

# Rate workloads: the reference's main.py arguments for the settings of the `eqprop bench`
# workload of the same name (tools/eqprop/cmd_bench.cpp; `eqprop bench --list`).
#   data: "mnist" (consecutive training batches, as the bench) or "random" (one fixed batch)
#   warmup: untimed batches; min_batches: timed batches at least (the bench's values)
RATE_WORKLOADS = {
    "mlp512_symmetric": dict(
        args="--model MLP --task MNIST --archi 784 512 10 --act mysig --loss mse --alg EP "
        "--betas 0.0 0.1 --thirdphase --T1 30 --T2 10 --mbs 50 --optim adam --lrs 5e-4 5e-4",
        data="mnist", warmup=2, min_batches=3),
    "mlp512_classic": dict(
        args="--model MLP --task MNIST --archi 784 512 10 --act mysig --loss mse --alg EP "
        "--betas 0.0 0.1 --T1 30 --T2 10 --mbs 50 --optim adam --lrs 5e-4 5e-4",
        data="mnist", warmup=2, min_batches=3),
    "mlp512x2_symmetric": dict(
        args="--model MLP --task MNIST --archi 784 512 512 10 --act mysig --loss mse --alg EP "
        "--betas 0.0 0.1 --thirdphase --T1 100 --T2 20 --mbs 50 --optim adam --lrs 5e-4 5e-4 5e-4",
        data="mnist", warmup=2, min_batches=3),
    "conv32_64_classic": dict(
        args="--model CNN --task MNIST --channels 32 64 --kernels 5 5 --strides 1 1 --paddings 0 0 "
        "--pools mm --fc 10 --act hard_sigmoid --loss mse --alg EP --betas 0.0 0.4 --T1 200 --T2 10 "
        "--mbs 100 --optim adam --lrs 5e-5 1e-5 8e-6",
        data="mnist", warmup=2, min_batches=3),
    "vgg4_symmetric": dict(
        args="--model CNN --task CIFAR10 --channels 128 256 512 512 --kernels 3 3 3 3 --strides 1 1 1 1 "
        "--paddings 1 1 1 0 --pools mmmm --fc 10 --act my_hard_sig --loss cel --softmax --alg EP "
        "--betas 0.0 1.0 --thirdphase --T1 250 --T2 25 --mbs 128 --optim sgd --mmt 0.9 "
        "--lrs 0.05 0.05 0.05 0.05 0.05",
        data="random", warmup=0, min_batches=1),
}

# Accuracy tasks (MNIST). "published": the repository's own command, check/train_mnist.sh and
# check/train_mnist_cnn.sh, less --check-thm (a BPTT-vs-EP diagnostic every tenth of an
# epoch, not part of training), --save and --device, and with --epochs from --max-epochs.
ACC_TASKS = {
    "mlp784_512_10": dict(
        args="--model MLP --task MNIST --archi 784 512 10 --optim adam --lrs 5e-4 5e-4 --act mysig "
        "--todo train --betas 0.0 0.1 --T1 30 --T2 10 --mbs 50",
        source="published: check/train_mnist.sh (one-sided EP)"),
    "mlp784_512_10_symmetric": dict(
        args="--model MLP --task MNIST --archi 784 512 10 --optim adam --lrs 5e-4 5e-4 --act mysig "
        "--todo train --betas 0.0 0.1 --thirdphase --T1 30 --T2 10 --mbs 50",
        source="check/train_mnist.sh with --thirdphase (symmetric EP, as mlp512_symmetric)"),
    "mlp784_512_512_10": dict(
        args="--model MLP --task MNIST --archi 784 512 512 10 --optim adam --lrs 5e-4 5e-4 5e-4 "
        "--act mysig --todo train --betas 0.0 0.1 --thirdphase --T1 100 --T2 20 --mbs 50",
        source="not in the repository: Adam lr 5e-4 (as its 784-512-10 command) with the estimator "
        "settings of mlp512x2_symmetric (symmetric EP beta 0.1, T1 100, T2 20, batch 50)"),
    "cnn_mnist": dict(
        args="--model CNN --task MNIST --channels 32 64 --kernels 5 5 --pools mm --strides 1 1 --fc 10 "
        "--optim adam --lrs 5e-5 1e-5 8e-6 --act hard_sigmoid --todo train --betas 0.0 0.4 "
        "--T1 200 --T2 10 --mbs 100",
        source="published: check/train_mnist_cnn.sh (one-sided EP)"),
}

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"]


def log(msg):
    print(f"[ep_reference] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Environment: threads and BLAS are fixed before torch is imported (re-executing if needed).


def openblas_dir():
    for pattern in ("/usr/lib/*/openblas-pthread", "/usr/lib/*/openblas-openmp", "/usr/lib/*/openblas"):
        for d in sorted(glob.glob(pattern)):
            if os.path.exists(os.path.join(d, "libblas.so.3")):
                return d
    return None


def prepare_environment(args):
    """Re-executes this script once with the thread variables and the BLAS path set."""
    if os.environ.get("EQPROP_REF_CHILD") == "1":
        return
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    blas = openblas_dir() if args.blas == "auto" else (None if args.blas == "system" else args.blas)
    if args.blas not in ("auto", "system") and not os.path.exists(os.path.join(args.blas, "libblas.so.3")):
        sys.exit(f"ep_reference: --blas {args.blas}: no libblas.so.3 there")
    if blas:
        env["LD_LIBRARY_PATH"] = blas + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    elif args.blas == "auto":
        log("no OpenBLAS found (Debian: apt-get install libopenblas0-pthread); torch uses the system "
            "libblas.so.3, which may be the slow netlib reference BLAS")
    env["EQPROP_REF_CHILD"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def loaded_blas():
    """The BLAS library this process loaded (after torch): its resolved path."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if name.startswith(("libblas", "libopenblas", "libmkl_rt", "libblis")):
                found.add(os.path.realpath(path))
    return sorted(found)


def machine_info():
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "hardware_threads": os.cpu_count(), "hostname": platform.node()}


def code_commit(code):
    try:
        return subprocess.run(["git", "-C", code, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ---------------------------------------------------------------------------------------------
# Data: MNIST from our data directory, laid out as torchvision's MNIST class reads it.


def default_data_dir():
    return os.environ.get("EQPROP_DATA") or "data"


def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "eqprop-reference")


def prepare_mnist(data_dir, cache_dir):
    """Returns a root with MNIST/raw/<idx files> (decompressed copies of data_dir/mnist/*)."""
    raw = os.path.join(cache_dir, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for name in MNIST_FILES:
        dst = os.path.join(raw, name)
        if os.path.exists(dst):
            continue
        src = os.path.join(data_dir, "mnist", name)
        tmp = dst + f".tmp{os.getpid()}"
        if os.path.exists(src + ".gz"):
            with gzip.open(src + ".gz", "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        elif os.path.exists(src):
            shutil.copyfile(src, tmp)
        else:
            sys.exit(f"ep_reference: MNIST not found: {src}(.gz) (set --data-dir or $EQPROP_DATA; "
                     "`eqprop data fetch mnist` downloads it)")
        os.replace(tmp, dst)
    return cache_dir


class Reference:
    """The reference repository imported from --code, with the dataset classes replaced."""

    def __init__(self, code, mnist_root):
        import torch
        import torchvision

        self.code = os.path.abspath(code)
        main = os.path.join(self.code, "main.py")
        if not os.path.exists(main) or not os.path.exists(os.path.join(self.code, "model_utils.py")):
            sys.exit(f"ep_reference: --code {code}: no main.py and model_utils.py there (a checkout of "
                     "github.com/Laborieux-Axel/Equilibrium-Propagation)")
        self.main = main
        sys.path.insert(0, self.code)
        import model_utils  # the reference's module, from the checkout

        self.mu = model_utils
        self.train = model_utils.train
        self.evaluate = model_utils.evaluate
        self.torch = torch
        original_mnist = torchvision.datasets.MNIST

        class MNIST(original_mnist):  # the name matters: torchvision reads <root>/MNIST/raw
            def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
                super().__init__(mnist_root, train=train, transform=transform, target_transform=target_transform,
                                 download=False)

        class CIFAR10(torch.utils.data.Dataset):  # rate mode: the batches come from the feed
            def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
                self.train = train

            def __len__(self):
                return 50000 if self.train else 10000

            def __getitem__(self, i):
                raise RuntimeError("ep_reference: no CIFAR-10 here; only rate mode uses this stand-in")

        torchvision.datasets.MNIST = MNIST
        torchvision.datasets.CIFAR10 = CIFAR10

    def run_main(self, main_args, on_train, quiet=True):
        """Runs main.py with main_args; its call train(model, optimizer, ...) becomes
        on_train(model, optimizer, train_loader, test_loader, T1, T2, betas, device, epochs,
        criterion, **kw). Returns what on_train returned."""
        result = {}

        def train(*a, **kw):
            result["value"] = on_train(*a, **kw)

        self.mu.train = train
        saved_argv = sys.argv
        sys.argv = [self.main] + main_args
        sink = open(os.devnull, "w") if quiet else sys.stderr
        try:
            with contextlib.redirect_stdout(sink):
                runpy.run_path(self.main, run_name="__main__")
        finally:
            sys.argv = saved_argv
            self.mu.train = self.train
            self.mu.evaluate = self.evaluate
            if quiet:
                sink.close()
        if "value" not in result:
            sys.exit("ep_reference: main.py did not call train (check the arguments)")
        return result["value"]


def parse_main_args(s):
    return s.split()


# ---------------------------------------------------------------------------------------------
# rate


class _Sized:
    """What train() reads of a loader's dataset: its length and the train flag."""

    def __init__(self, n, train=True):
        self.n, self.train = n, train

    def __len__(self):
        return self.n


class TimedFeed:
    """A loader for the reference's train(): batch k is requested when step k-1 ends, so the
    request times delimit the training steps. Stops (the epoch ends) once min_batches steps
    after the warm-up ran and `seconds` passed since the warm-up ended."""

    def __init__(self, make_batch, batch_size, warmup, seconds, min_batches, n_virtual=60000):
        self.make_batch, self.batch_size = make_batch, batch_size
        self.warmup, self.seconds, self.min_batches = warmup, seconds, max(1, min_batches)
        self.dataset = _Sized(max(n_virtual, 10 * batch_size))  # train() divides by len // (10 B)
        self.stamps = []

    def __iter__(self):
        k = 0
        while True:
            now = time.perf_counter()
            self.stamps.append(now)
            timed = k - self.warmup
            if timed >= self.min_batches and now - self.stamps[self.warmup] >= self.seconds:
                return
            yield self.make_batch(k)
            k += 1

    def timed_steps(self):
        s = self.stamps[self.warmup:]
        return [b - a for a, b in zip(s, s[1:])]


def mnist_batches(dataset, B, dtype=None):
    """Consecutive training batches (pixels / 255, as ToTensor), from the start again at the end."""
    images, labels = dataset.data, dataset.targets
    n = (len(labels) // B) * B

    def make(k):
        i = (k * B) % n
        return images[i:i + B].to(dtype or images.new_empty(0).float().dtype).div_(255).unsqueeze_(1), \
            labels[i:i + B].clone()
    return make


def random_batch(torch, B, shape):
    g = torch.Generator().manual_seed(1)
    x = torch.rand((B,) + shape, generator=g)
    y = torch.arange(B) % 10
    return lambda k: (x, y)


def run_rate(args):
    ref = Reference(args.code, prepare_mnist(args.data_dir, args.cache_dir) if needs_mnist(args) else "")
    torch = ref.torch
    torch.set_num_threads(args.threads)
    results = []
    for name in args.workload:
        w = RATE_WORKLOADS[name]
        main_args = parse_main_args(w["args"])
        warmup = w["warmup"] if args.warmup is None else args.warmup
        feed_box = {}

        def on_train(model, optimizer, train_loader, test_loader, T1, T2, betas, device, epochs, criterion, **kw):
            B = train_loader.batch_size
            make = mnist_batches(train_loader.dataset, B) if w["data"] == "mnist" else \
                random_batch(torch, B, (3, 32, 32))
            feed = TimedFeed(make, B, warmup, args.seconds, w["min_batches"])
            feed_box["feed"], feed_box["B"] = feed, B
            ref.mu.evaluate = lambda *a, **k: 0  # no test-set pass: only training steps are timed
            ref.train(model, optimizer, feed, test_loader, T1, T2, betas, device, 1, criterion, **kw)
            return feed

        load0 = os.getloadavg()
        t0 = time.time()
        feed = ref.run_main(main_args, on_train, quiet=not args.verbose)
        steps = feed.timed_steps()
        B = feed_box["B"]
        total = sum(steps)
        r = {
            "name": name,
            "rate": len(steps) * B / total,
            "unit": "samples/s",
            "batches": len(steps),
            "batch": B,
            "seconds": total,
            "ms_per_batch_median": 1e3 * sorted(steps)[len(steps) // 2],
            "warmup_batches": warmup,
            "data": w["data"],
            "threads": args.threads,
            "main_args": w["args"],
            "started": datetime.datetime.fromtimestamp(t0).isoformat(timespec="seconds"),
            "loadavg_before": list(load0),
            "loadavg_after": list(os.getloadavg()),
        }
        log(f"{name}: {r['rate']:.4g} samples/s ({len(steps)} batches of {B}, {total:.1f} s)")
        results.append(r)
    write_rate_doc("Laborieux-Axel/Equilibrium-Propagation", ref.code, results, args.json)


def write_rate_doc(implementation, code, results, path):
    """Writes the rate results of one reference implementation as JSON to path (None: stdout),
    with what identifies the run: the code's commit, torch, its threads, the BLAS, the machine."""
    import torch

    doc = {"implementation": implementation, "code": code, "code_commit": code_commit(code),
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "blas": loaded_blas(),
           "machine": machine_info(), "workloads": results}
    text = json.dumps(doc, indent=2)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


def needs_mnist(args):
    return any(RATE_WORKLOADS[w]["data"] == "mnist" for w in args.workload)


# ---------------------------------------------------------------------------------------------
# to-accuracy


def read_jsonl(path):
    out = []
    with contextlib.suppress(FileNotFoundError), open(path) as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
    return out


def write_atomic(path, text_or_bytes):
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(text_or_bytes.encode() if isinstance(text_or_bytes, str) else text_or_bytes)
    os.replace(tmp, path)


def seed_finished(epochs, target, max_epochs):
    return bool(epochs) and (epochs[-1]["test_acc"] >= target or len(epochs) >= max_epochs)


def run_to_accuracy(args):
    """One file <task>-seed<S>.jsonl per seed: a "run" line, then one "epoch" line per epoch.

    Resuming: after every epoch the model, the optimizer (and scheduler) state, the RNG states
    and the epoch lines are saved to <task>-seed<S>.ckpt (atomically); a rerun continues every
    unfinished seed from there (rewriting its JSON-lines file from the checkpoint) and skips the
    finished ones (target reached or max-epochs epochs run). The data order depends only on the
    torch RNG, which the checkpoint restores, so a resumed seed follows the same trajectory as
    an uninterrupted one."""
    task = ACC_TASKS.get(args.task)
    if args.ref_args is None and task is None:
        sys.exit(f"ep_reference: unknown task {args.task}; `ep_reference.py list` names them "
                 "(or give --ref-args)")
    main_args = parse_main_args(args.ref_args if args.ref_args is not None else task["args"])
    os.makedirs(args.out_dir, exist_ok=True)
    todo = []
    for seed in args.seeds:
        stem = os.path.join(args.out_dir, f"{args.task}-seed{seed}")
        epochs = [r for r in read_jsonl(stem + ".jsonl") if r.get("type") == "epoch"]
        if seed_finished(epochs, args.target, args.max_epochs):
            log(f"{args.task} seed {seed}: finished ({len(epochs)} epochs, test accuracy "
                f"{epochs[-1]['test_acc']:.4f}); skipped")
        else:
            todo.append((seed, stem))
    if not todo:
        return
    ref = Reference(args.code, prepare_mnist(args.data_dir, args.cache_dir))
    torch = ref.torch
    torch.set_num_threads(args.threads)
    import numpy as np
    import random

    for seed, stem in todo:
        argv = main_args + ["--seed", str(seed), "--epochs", str(args.max_epochs)]

        def on_train(model, optimizer, train_loader, test_loader, T1, T2, betas, device, epochs, criterion, **kw):
            scheduler = kw.get("scheduler")
            header = {"type": "run", "task": args.task, "seed": seed, "main_args": " ".join(argv),
                      "source": task["source"] if task and args.ref_args is None else "--ref-args",
                      "target": args.target, "max_epochs": args.max_epochs, "threads": args.threads,
                      "torch": torch.__version__, "blas": loaded_blas(), "code": ref.code,
                      "code_commit": code_commit(ref.code), "machine": machine_info()}
            records = []
            if os.path.exists(stem + ".ckpt"):
                ck = torch.load(stem + ".ckpt")
                model.load_state_dict(ck["model"])
                optimizer.load_state_dict(ck["optimizer"])
                if scheduler is not None and ck.get("scheduler") is not None:
                    scheduler.load_state_dict(ck["scheduler"])
                torch.set_rng_state(ck["torch_rng"])
                np.random.set_state(ck["numpy_rng"])
                random.setstate(ck["python_rng"])
                records = ck["records"]
                header["resumed_from_epoch"] = len(records)
                log(f"{args.task} seed {seed}: resuming after epoch {len(records)}")
            write_atomic(stem + ".jsonl", "".join(json.dumps(r) + "\n" for r in [header] + records))
            evals = []

            def timed_evaluate(model_, loader, T, device_):
                t = time.perf_counter()
                correct = ref.evaluate(model_, loader, T, device_)
                evals.append((correct, time.perf_counter() - t))
                return correct

            ref.mu.evaluate = timed_evaluate
            while not seed_finished(records, args.target, args.max_epochs):
                evals.clear()
                t = time.perf_counter()
                ref.train(model, optimizer, train_loader, test_loader, T1, T2, betas, device, 1, criterion, **kw)
                wall = time.perf_counter() - t
                correct, eval_s = evals[-1]
                prev = records[-1] if records else {"train_seconds_total": 0.0, "eval_seconds_total": 0.0}
                rec = {"type": "epoch", "epoch": len(records) + 1,
                       "test_acc": correct / len(test_loader.dataset),
                       "train_seconds": wall - eval_s, "eval_seconds": eval_s,
                       "train_seconds_total": prev["train_seconds_total"] + wall - eval_s,
                       "eval_seconds_total": prev["eval_seconds_total"] + eval_s,
                       "time": datetime.datetime.now().isoformat(timespec="seconds"),
                       "loadavg": list(os.getloadavg())}
                records.append(rec)
                buf = io.BytesIO()
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict() if scheduler is not None else None,
                            "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                            "python_rng": random.getstate(), "records": records}, buf)
                write_atomic(stem + ".ckpt", buf.getvalue())
                with open(stem + ".jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
                log(f"{args.task} seed {seed} epoch {rec['epoch']}: test accuracy {rec['test_acc']:.4f}, "
                    f"train {rec['train_seconds']:.0f} s (total {rec['train_seconds_total']:.0f} s), "
                    f"eval {eval_s:.0f} s")
            return records

        ref.run_main(argv, on_train, quiet=not args.verbose)


# ---------------------------------------------------------------------------------------------
# check: the reference's gradient beside eqprop's at the same weights


class GradientRecorder:
    """Stands in for the optimizer: step() records the parameters' .grad (weights unchanged)."""

    def __init__(self, model):
        self.model, self.grads = model, None

    def step(self):
        self.grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters()}

    def zero_grad(self):
        pass


def ours_from_reference(eqprop, model, name, dtype):
    """An eqprop network (of dtype) with the reference model's weights."""
    torch_params = dict(model.named_parameters())
    if name.startswith("mlp"):
        archi = model.archi
        net = eqprop.Network(list(archi), output="layer", activation="hep_sigmoid", dtype=dtype)
        for j in range(len(archi) - 1):
            net.block(f"W{j}")[...] = torch_params[f"synapses.{j}.weight"].detach().numpy()
            net.block(f"b{j}")[...] = torch_params[f"synapses.{j}.bias"].detach().numpy()[:, None]
        return net, lambda g: g
    # conv32_64_classic: conv weights (C_out, C_in, ky, kx) -> C_out x (ky, kx, C_in) with C_in
    # fastest; the dense layer after the convs reads HWC-flattened states, torch CHW-flattened.
    net = eqprop.Network([10], output="layer", activation="half_clamp01", dtype=dtype, conv=[32, 64],
                         input_shape=(1, 28, 28), conv_kernel=[5], conv_padding=["valid"], conv_pool=["max"])
    for j in range(2):
        w = torch_params[f"synapses.{j}.weight"].detach()
        net.block(f"W{j}")[...] = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).numpy()
        net.block(f"b{j}")[...] = torch_params[f"synapses.{j}.bias"].detach().numpy()[:, None]
    w = torch_params["synapses.2.weight"].detach()
    net.block("W2")[...] = w.reshape(10, 64, 4, 4).permute(0, 2, 3, 1).reshape(10, -1).numpy()
    net.block("b2")[...] = torch_params["synapses.2.bias"].detach().numpy()[:, None]

    def to_torch_layout(blocks):  # our dense gradient back to torch's CHW column order
        blocks["W2"] = blocks["W2"].reshape(10, 4, 4, 64).transpose(0, 3, 1, 2).reshape(10, -1)
        for j in range(2):
            blocks[f"W{j}"] = blocks[f"W{j}"].reshape(blocks[f"W{j}"].shape[0], 5, 5, -1).transpose(0, 3, 1, 2)
        return blocks
    return net, to_torch_layout


def run_check(args):
    sys.path.insert(0, os.path.abspath(args.eqprop_python))
    import numpy as np
    import eqprop

    ref = Reference(args.code, prepare_mnist(args.data_dir, args.cache_dir))
    torch = ref.torch
    torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    torch.set_default_dtype(dtype)  # main.py then builds the model in this type
    worst = 0.0
    for name in args.workload:
        w = RATE_WORKLOADS[name]
        if w["data"] != "mnist":
            sys.exit(f"ep_reference: check covers the MNIST workloads, not {name}")
        main_args = parse_main_args(w["args"]) + ["--seed", str(args.seed)]
        spec = {}

        def on_train(model, optimizer, train_loader, test_loader, T1, T2, betas, device, epochs, criterion, **kw):
            rec = GradientRecorder(model)
            make = mnist_batches(train_loader.dataset, args.batch or train_loader.batch_size, dtype)
            feed = TimedFeed(make, train_loader.batch_size, 0, 0.0, 1)
            ref.mu.evaluate = lambda *a, **k: 0
            ref.train(model, rec, feed, test_loader, T1, T2, betas, device, 1, criterion, **kw)
            spec.update(T1=T1, T2=T2, betas=betas, thirdphase=kw.get("thirdphase", False), x=make(0))
            return model, rec.grads

        model, ref_grads = ref.run_main(main_args, on_train, quiet=not args.verbose)
        x, y = spec["x"]
        B = x.shape[0]
        net, to_torch_layout = ours_from_reference(eqprop, model, name, args.dtype)
        xs = np.ascontiguousarray(x.reshape(B, -1).numpy())
        ys = np.zeros((B, 10), xs.dtype)
        ys[np.arange(B), y.numpy()] = 1
        kind = "symmetric" if spec["thirdphase"] else "classic"
        grad, info = eqprop.estimate(net, xs, ys, kind=kind, beta=spec["betas"][1], free_steps=spec["T1"],
                                     nudged_steps=spec["T2"])
        g = net.copy()  # the gradient has the parameters' layout: read it through the block views
        g.params[:] = grad
        blocks = to_torch_layout({b["name"]: np.array(g.block(b["name"])) for b in g.layout if b["shape"][0]})
        print(f"{name}: {kind} EP, beta {spec['betas'][1]}, T1 {spec['T1']}, T2 {spec['T2']}, batch {B} "
              f"(first MNIST training images), {args.dtype}")
        for j in range(len(model.synapses)):
            for kind_, ours_name in (("weight", f"W{j}"), ("bias", f"b{j}")):
                g_ref = ref_grads[f"synapses.{j}.{kind_}"].numpy().astype(np.float64).ravel()
                g_our = blocks[ours_name].astype(np.float64).ravel()
                rel = np.linalg.norm(g_our - g_ref) / max(np.linalg.norm(g_ref), 1e-30)
                worst = max(worst, rel)
                print(f"  synapses.{j}.{kind_:<6} |g_ref| {np.linalg.norm(g_ref):.4e}  relative error {rel:.2e}")
    print(f"largest relative error: {worst:.2e} (tolerance {args.tol:g})")
    if worst > args.tol:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------


def run_list(_args):
    print("rate workloads (eqprop bench names; main.py arguments):")
    for k, w in RATE_WORKLOADS.items():
        print(f"  {k:<20} data={w['data']:<6} {w['args']}")
    print("to-accuracy tasks:")
    for k, t in ACC_TASKS.items():
        print(f"  {k:<24} {t['source']}\n  {'':<24} {t['args']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)

    def common(p, code=True):
        if code:
            p.add_argument("--code", required=True, help="checkout of Laborieux-Axel/Equilibrium-Propagation")
        p.add_argument("--data-dir", default=default_data_dir(), help="has mnist/*-ubyte(.gz) (default: $EQPROP_DATA)")
        p.add_argument("--cache-dir", default=default_cache_dir(),
                       help="where the decompressed MNIST files go (default: %(default)s)")
        p.add_argument("--threads", type=int, default=2, help="torch, OpenMP and OpenBLAS threads (default: 2)")
        p.add_argument("--blas", default="auto",
                       help="auto (Debian's OpenBLAS if installed), system (libblas.so.3 as selected), or a "
                       "directory holding libblas.so.3")
        p.add_argument("-v", "--verbose", action="store_true", help="show main.py's own output")

    p = sub.add_parser("list", help="rate workloads and accuracy tasks")
    p.set_defaults(func=run_list, threads=1, blas="system")
    p = sub.add_parser("rate", help="samples/s of the reference training step at an eqprop bench workload")
    common(p)
    p.add_argument("-w", "--workload", action="append", required=True, choices=list(RATE_WORKLOADS),
                   help="repeatable")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds after the warm-up (default: 10)")
    p.add_argument("--warmup", type=int, default=None, help="untimed batches (default: the bench's, 2 or 0)")
    p.add_argument("--json", help="write the result here (default: stdout)")
    p.set_defaults(func=run_rate)
    p = sub.add_parser("to-accuracy", help="train to a test accuracy, per-epoch JSON lines, resumable")
    common(p)
    p.add_argument("--task", required=True, help="see `list`; with --ref-args, any name for the files")
    p.add_argument("--ref-args", help="main.py arguments instead of the task's (quoted, one string)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--target", type=float, default=0.975, help="stop once the test accuracy reaches this")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--out-dir", required=True, help="<task>-seed<S>.jsonl and .ckpt go here")
    p.set_defaults(func=run_to_accuracy)
    p = sub.add_parser("check", help="the reference's gradient beside eqprop's, one MNIST batch")
    common(p)
    p.add_argument("-w", "--workload", action="append", choices=[k for k, w in RATE_WORKLOADS.items()
                                                                 if w["data"] == "mnist"])
    p.add_argument("--eqprop-python", default="build/python", help="eqprop's Python package (default: %(default)s)")
    p.add_argument("--batch", type=int, default=0, help="samples (default: the workload's batch)")
    p.add_argument("--seed", type=int, default=0, help="main.py --seed: the initial weights")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="both sides' type (float64: torch's default dtype, set before main.py builds the model)")
    p.add_argument("--tol", type=float, default=1e-3, help="largest relative error accepted")
    p.set_defaults(func=run_check)
    args = ap.parse_args()
    if args.mode == "check" and not args.workload:
        args.workload = ["mlp512_symmetric", "mlp512_classic", "mlp512x2_symmetric"]
    if args.mode != "list":
        if args.threads < 1:
            ap.error("--threads must be at least 1")
        prepare_environment(args)
    args.func(args)


if __name__ == "__main__":
    main()
