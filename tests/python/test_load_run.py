"""eqprop.load_run reads a trained run back: its network, config and metrics, and predictions
that score the test split exactly as `eqprop eval` does."""
import json
import os
import re
import struct
import subprocess
import zlib

import numpy as np
import pytest

import eqprop

TINY = {"run.epochs": 1, "data.yin_yang_train": 200, "data.yin_yang_test": 100, "network.hidden": [8]}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    r = eqprop.train(overrides=TINY, run_dir=run_dir, verbose=False)
    assert r["epochs_done"] == 1
    return run_dir, r


def test_load_run_predicts_what_evaluate_and_the_cli_score(tiny_run, cli):
    run_dir, trained = tiny_run
    run = eqprop.load_run(run_dir)
    assert run.path == run_dir
    assert run.config["network"]["hidden"] == [8]
    assert run.config["data"]["yin_yang_test"] == 100
    assert [row["epoch"] for row in run.metrics] == [1]
    net = run.network
    assert isinstance(net, eqprop.Network)
    assert net.sizes == [4, 8] and net.readout == 3 and net.dtype == run.config["network"]["dtype"]
    ck = eqprop.load_checkpoint(run_dir)
    np.testing.assert_array_equal(net.params, ck["arrays"]["params"])

    d = eqprop.load_dataset("yin_yang", seed=run.config["run"]["seed"], yin_yang_train=200, yin_yang_test=100)
    x, y = d["test"]
    pred = run.predict(x)
    assert pred.shape == (100,) and pred.dtype == np.int64
    assert set(np.unique(pred)) <= {0, 1, 2}
    acc = float(np.mean(pred == y))
    ev = run.evaluate()
    assert ev["n"] == 100
    assert abs(acc - ev["accuracy"]) <= 1e-12
    assert abs(acc - trained["test_accuracy"]) <= 1e-12
    # `eqprop eval` prints the accuracy in percent with 2 decimals: exact for 100 samples.
    out = cli("eval", run_dir)
    m = re.search(r"test accuracy ([0-9.]+)%", out)
    assert m, out
    assert abs(acc - float(m.group(1)) / 100) <= 1e-12

    # The checkpoint file is a run too; predictions do not depend on how x is split into calls.
    again = eqprop.load_run(run_dir / "checkpoint.eqck")
    assert again.path == run_dir
    np.testing.assert_array_equal(np.concatenate([again.predict(x[:37]), again.predict(x[37:])]), pred)


def test_predict_argmax_of_the_free_phase_outputs(tiny_run):
    run = eqprop.load_run(tiny_run[0])
    x, _ = eqprop.load_dataset("yin_yang", seed=0, yin_yang_train=200, yin_yang_test=100)["test"]
    steps = run.config["relax"]["free_steps"]
    if run.config["relax"]["stop_early"]:
        pytest.skip("the run's relaxation stops early: relax() here runs a fixed number of steps")
    _, rep = eqprop.relax(run.network, x[:5].astype(run.network.dtype), steps=steps, tol=run.config["relax"]["tol"])
    np.testing.assert_array_equal(run.predict(x[:5]), np.argmax(rep["outputs"], axis=1))


def test_errors_name_what_is_wrong(tmp_path, tiny_run):
    with pytest.raises(eqprop.DataError, match="not a run directory"):
        eqprop.load_run(tmp_path)
    with pytest.raises(eqprop.DataError, match="no such run directory"):
        eqprop.load_run(tmp_path / "missing")
    run = eqprop.load_run(tiny_run[0])
    with pytest.raises(eqprop.ShapeError):
        run.predict(np.zeros((2, 5)))
    with pytest.raises(TypeError):
        run.predict(np.zeros((2, 4), dtype=np.int32))


def _with_kind(src, dst, kind):
    """A copy of checkpoint src whose meta has "kind": kind (docs/runs.md: magic, u32 version,
    u64 header length, JSON header padded to 8 bytes, data, CRC32 of all bytes before it)."""
    raw = src.read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 12)
    header = json.loads(raw[20:20 + n])
    header["meta"]["kind"] = kind
    text = json.dumps(header).encode()
    text += b" " * ((-(20 + len(text))) % 8)
    body = raw[:12] + struct.pack("<Q", len(text)) + text + raw[20 + n:-4]
    dst.write_bytes(body + struct.pack("<I", zlib.crc32(body)))


def test_a_checkpoint_of_another_trainer_is_refused(tmp_path, tiny_run):
    src = tiny_run[0] / "checkpoint.eqck"
    _with_kind(src, tmp_path / "layered.eqck", "layered")  # the rewrite itself keeps a readable checkpoint
    copy = eqprop.load_run(tmp_path / "layered.eqck")
    assert copy.network.n_params == eqprop.load_run(src).network.n_params
    assert copy.evaluate()["accuracy"] == eqprop.evaluate(src)["accuracy"]  # evaluates the file it read
    _with_kind(src, tmp_path / "gep.eqck", "gep")
    with pytest.raises(eqprop.DataError, match='kind "gep"'):
        eqprop.load_run(tmp_path / "gep.eqck")


VF = {"model.kind": "vector_field", "data.name": "yin_yang", "data.yin_yang_train": 100, "data.yin_yang_test": 50,
      "network.hidden": [6], "network.output_size": 3, "relax.free_steps": 20, "run.epochs": 1,
      "diagnostics.samples": 5}


@pytest.fixture(scope="module")
def vf_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "vf"
    r = eqprop.train(overrides=VF, run_dir=run_dir, verbose=False)
    assert r["epochs_done"] == 1 and not r["diverged"], r
    return run_dir, r


def test_a_vector_field_run_predicts_what_evaluate_and_the_cli_score(vf_run):
    run_dir, trained = vf_run
    run = eqprop.load_run(run_dir)
    assert run.kind == "vector_field" and run.config["model"]["kind"] == "vector_field"
    assert run.path == run_dir and [row["epoch"] for row in run.metrics] == [0, 1]
    net = run.network
    assert isinstance(net, eqprop.VectorFieldNetwork)
    assert net.sizes == [4, 6, 3] and net.n_classes == 3 and net.topology == run.config["network"]["topology"]
    assert net.dtype == run.config["network"]["dtype"] and net.angle == run.config["network"]["angle"]
    np.testing.assert_array_equal(net.params, eqprop.load_checkpoint(run_dir)["arrays"]["params"])
    assert net.n_params == net.params.size == sum(int(np.prod(b["shape"])) for b in net.layout)

    x, y = eqprop.load_dataset("yin_yang", seed=run.config["run"]["seed"], yin_yang_train=100, yin_yang_test=50)["test"]
    pred = run.predict(x)
    assert pred.shape == (50,) and pred.dtype == np.int64 and set(np.unique(pred)) <= {0, 1, 2}
    acc = float(np.mean(pred == y))
    ev = run.evaluate()
    assert ev["n"] == 50
    assert acc == ev["accuracy"] == trained["test_accuracy"] == run.metrics[-1]["test_acc"]
    np.testing.assert_array_equal(np.concatenate([run.predict(x[:17]), run.predict(x[17:])]), pred)
    cli_path = os.environ.get("EQPROP_CLI")
    if cli_path:  # `eqprop eval` prints the accuracy in percent with 2 decimals: exact for 50 samples
        out = subprocess.run([cli_path, "eval", str(run_dir)], capture_output=True, text=True, check=True).stdout
        m = re.search(r"test accuracy ([0-9.]+)%", out)
        assert m, out
        assert acc == float(m.group(1)) / 100


def test_a_vector_field_network_copies_and_views_its_parameters(vf_run):
    net = eqprop.load_run(vf_run[0]).network
    twin = net.copy()
    assert repr(twin) == repr(net) and twin.n_params == net.n_params
    twin.params[:] = 0  # a writable view of the copy's own parameters
    assert not np.any(twin.params) and np.any(net.params)
    built = eqprop.VectorFieldNetwork(sizes=[4, 6, 3], n_classes=3, angle=45.0, dtype="float32", seed=1)
    assert built.sizes == [4, 6, 3] and built.angle == 45.0 and built.dtype == "float32"
    assert built.topology == "chain" and built.params.dtype == np.float32 and built.n_params == net.n_params
    with pytest.raises(eqprop.ConfigError, match="dtype"):
        eqprop.VectorFieldNetwork(sizes=[4, 3], n_classes=3, dtype="float16")
    with pytest.raises(TypeError, match="never initialised"):
        eqprop.VectorFieldNetwork.__new__(eqprop.VectorFieldNetwork).params
