"""The Python package builds as a wheel (`python3 -m build --no-isolation --wheel`), installs
into a fresh venv whose NumPy is Debian's (--system-site-packages), imports there with the
C++ library's version and trains a tiny Yin-Yang run.

Opt-in (EQPROP_TEST_WHEEL=1; scripts/test.sh sets it): the wheel is a separate CMake build of
the library and the module (build-python/, reused; with ccache, objects compiled for ./build
are reused too), minutes from a cold cache.
"""
import json
import os
import subprocess
import sys
import venv

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(os.environ.get("EQPROP_TEST_WHEEL") != "1",
                                reason="builds the wheel: set EQPROP_TEST_WHEEL=1 (scripts/test.sh does)")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def test_wheel_installs_into_a_venv_and_trains(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run(["/usr/bin/python3", "-m", "build", "--no-isolation", "--wheel", "--outdir", str(tmp_path / "dist"), REPO],
        env=env, cwd=REPO)
    wheels = list((tmp_path / "dist").glob("eqprop-*.whl"))
    assert len(wheels) == 1, wheels

    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    py = str(tmp_path / "venv" / "bin" / "python")
    run([py, "-m", "pip", "install", "--no-index", str(wheels[0])], env=env, cwd=tmp_path)

    script = (
        "import json, eqprop\n"
        "r = eqprop.train(overrides={'data.yin_yang_train': 100, 'data.yin_yang_test': 50, 'run.epochs': 1,"
        " 'network.hidden': [8]}, run_dir='run', verbose=False)\n"
        "import os; d = os.path.dirname(eqprop.__file__)\n"
        "assert all(os.path.isfile(os.path.join(d, f)) for f in ('_core.pyi', 'py.typed'))\n"
        "print(json.dumps({'file': eqprop.__file__, 'version': eqprop.__version__,"
        " 'build_info': str(eqprop.build_info()), 'acc': r['test_accuracy']}))\n")
    out = json.loads(run([py, "-c", script], env=env, cwd=tmp_path).strip().splitlines()[-1])
    assert out["file"].startswith(str(tmp_path / "venv")), out["file"]  # the installed copy, not the checkout's
    with open(os.path.join(REPO, "VERSION")) as f:
        assert out["version"] == f.read().strip()
    assert 0 <= out["acc"] <= 1
    assert (tmp_path / "run").is_dir()
