"""The example scripts run (quick mode) with Debian's python3."""
import os
import subprocess
import sys

import pytest


def run_example(repo, name, *args, cwd):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, os.path.join(repo, "python", "examples", name), "--quick", *args], cwd=cwd,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_gradient_exactness(repo, tmp_path):
    out = run_example(repo, "gradient_exactness.py", "-o", tmp_path / "g.png", cwd=tmp_path)
    assert (tmp_path / "g.png").stat().st_size > 0 and "N=8" in out


def test_train_mnist_hep(repo, tmp_path):
    data = os.environ.get("EQPROP_DATA") or os.path.join(repo, "..", "shared", "data")
    if not os.path.isdir(os.path.join(data, "mnist")):
        pytest.skip(f"MNIST not found in {data}/mnist (set EQPROP_DATA)")
    out = run_example(repo, "train_mnist_hep.py", "--data-dir", data, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert "final test accuracy" in out and (tmp_path / "run" / "curves.png").exists()
