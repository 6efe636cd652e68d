"""Shared fixtures: the CLI binary ($EQPROP_CLI, default build/eqprop) and the repository root.
Run with PYTHONPATH=build/python EQPROP_CLI=build/eqprop /usr/bin/python3 -m pytest -q tests/python."""
import os
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("EQPROP_CLI") or os.path.join(REPO, "build", "eqprop")
    if not os.access(path, os.X_OK):
        pytest.fail(f"eqprop CLI not found at {path}: build it or set EQPROP_CLI")

    def run(*args, cwd=None):
        r = subprocess.run([path, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"eqprop {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r.stdout
    return run


@pytest.fixture(scope="session")
def repo():
    return REPO
