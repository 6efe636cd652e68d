"""Python and the CLI run the same code: gradcheck --json and eqprop train give the same numbers."""
import json
import math
import os
import signal
import threading
import time

import numpy as np
import pytest

import eqprop


def assert_same(a, b, path="doc"):
    """Every number equal to 1e-12 relative (JSON null = NaN/inf); same keys everywhere.

    abs_tol 1e-15: a relative error of ~1e-6 between a float32 estimate and the float64
    reference moves by a few 1e-12 relative when the reference changes by one ulp, and the
    library's vectorised sums can differ by an ulp with the heap alignment of the buffers
    (observed once in a few runs), so tiny error measures are compared to absolute precision.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{path}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            assert (a is None or not math.isfinite(a)) and (b is None or not math.isfinite(b)), f"{path}: {a} vs {b}"
        else:
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), f"{path}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


CASES = [
    ({}, {}),  # the defaults: 4-5 readout 3, N = 1, 2, 4, |beta| = 0.1, float64, BPTT
    (["--layers", "4,6,5", "--readout", "3", "--batch", "3", "--seed", "7", "-N", "1,2,3,8", "--beta", "0.05,0.4",
      "--dtype", "float32", "--init-scale", "0.7"],
     dict(layers=(4, 6, 5), readout=3, batch=3, seed=7, n_points=(1, 2, 3, 8), betas=(0.05, 0.4), dtype="float32",
          init_scale=0.7)),
    (["--reference", "implicit", "--start", "warm", "--activation", "holotanh", "--T1", "150", "--T2", "80",
      "--stop-early", "-N", "4", "--beta", "0.2"],
     dict(reference="implicit", start="warm", activation="holotanh", free_steps=150, nudged_steps=80, stop_early=True,
          n_points=(4,), betas=(0.2,))),
    (["--output", "layer", "--layers", "4,6,3", "--noise", "0.01", "--noise-seed", "5", "-N", "2,4", "--reference",
      "complex-step", "--reference-steps", "400"],
     dict(output="layer", layers=(4, 6, 3), noise_std=0.01, noise_seed=5, n_points=(2, 4), reference="complex-step",
          reference_steps=400)),
]


@pytest.mark.parametrize("flags,kwargs", CASES)
def test_gradcheck_matches_cli_json(cli, tmp_path, flags, kwargs):
    out = tmp_path / "gc.json"
    cli("gradcheck", *flags, "--json", out)
    want = json.loads(out.read_text())
    got = json.loads(json.dumps(eqprop.gradcheck(**kwargs)))
    want.pop("build"), got.pop("build")
    assert_same(want, got)
    assert len(got["estimators"]) >= 1


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_train_yin_yang_matches_cli(cli, tmp_path):
    sets = {"data.yin_yang_train": 500, "run.epochs": 3, "run.seed": 3}
    cli("train", *sum((["--set", f"{k}={v}"] for k, v in sets.items()), []), "--run-dir", tmp_path / "cli", "-q")
    rows = []
    r = eqprop.train(overrides=sets, run_dir=tmp_path / "py", on_epoch=rows.append, verbose=False)
    want = metrics(tmp_path / "cli")
    assert r["epochs_done"] == 3 and len(rows) == 3 and not r["diverged"]
    assert r["test_accuracy"] == want[-1]["test_acc"]
    for a, b in zip(rows, want):
        for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "not_converged", "dropped"):
            assert a[k] == b[k], (k, a[k], b[k])
    # Same parameters in both checkpoints, bit for bit.
    p_cli = eqprop.load_checkpoint(tmp_path / "cli")["arrays"]["params"]
    p_py = eqprop.load_checkpoint(tmp_path / "py")["arrays"]["params"]
    np.testing.assert_array_equal(p_cli, p_py)
    assert eqprop.evaluate(tmp_path / "py")["accuracy"] == r["test_accuracy"]


def test_train_config_file_and_nested_dict(repo, tmp_path):
    cfg = {"data": {"yin_yang_train": 200, "yin_yang_test": 100}, "run": {"epochs": 1}, "network": {"hidden": [20]}}
    a = eqprop.train(cfg, run_dir=tmp_path / "a", verbose=False)
    toml = tmp_path / "c.toml"
    toml.write_text("[data]\nyin_yang_train = 200\nyin_yang_test = 100\n[run]\nepochs = 1\n[network]\nhidden = [20]\n")
    b = eqprop.train(str(toml), run_dir=tmp_path / "b", verbose=False)
    c = eqprop.train(overrides=["data.yin_yang_train=200", "data.yin_yang_test=100", "run.epochs=1",
                                "network.hidden=20"], run_dir=tmp_path / "c", verbose=False)
    assert a["test_accuracy"] == b["test_accuracy"] == c["test_accuracy"]


def test_callback_exception_propagates(tmp_path):
    def boom(row):
        raise RuntimeError(f"stop after epoch {row['epoch']}")
    with pytest.raises(RuntimeError, match="stop after epoch 1"):
        eqprop.train(overrides={"data.yin_yang_train": 200, "run.epochs": 3}, run_dir=tmp_path, on_epoch=boom,
                     verbose=False)


def test_ctrl_c_interrupts_training_and_gil_is_released(tmp_path):
    """SIGINT while the C++ loop runs (GIL released, so the timer thread runs) -> KeyboardInterrupt."""
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        eqprop.train(overrides={"run.epochs": 200, "data.yin_yang_train": 5000}, run_dir=tmp_path, verbose=False)
    timer.cancel()
    assert time.monotonic() - t0 < 30
