"""The package installs outside the build tree and imports with the C++ library's version."""
import os
import subprocess
import sys

import pytest

from conftest import REPO


def test_install_into_a_directory_and_import(tmp_path):
    script = os.path.join(REPO, "scripts", "install-python.sh")
    r = subprocess.run([script, "--target", str(tmp_path)], capture_output=True, text=True,
                       env={**os.environ, "EQPROP_BUILD_DIR": os.path.join(REPO, "build")})
    assert r.returncode == 0, r.stderr
    for f in ("_core.pyi", "py.typed"):  # the type stub and its PEP 561 marker go with the package
        assert (tmp_path / "eqprop" / f).is_file(), f
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", "import eqprop; print(eqprop.__file__, eqprop.__version__)"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    path, version = out.stdout.split()
    assert path.startswith(str(tmp_path))
    with open(os.path.join(REPO, "VERSION")) as f:
        assert version == f.read().strip()
