"""eqprop.train on in-memory NumPy arrays, with a per-batch callback: the same run as on the
same data from a data set, recorded by checksum so that a resume needs the same arrays."""
import numpy as np
import pytest

import eqprop

TINY = ["data.yin_yang_train=60", "data.yin_yang_test=30", "network.hidden=[6]", "relax.free_steps=10",
        "relax.nudged_steps=4", "run.epochs=2", "run.batch=10"]


def _yin_yang_arrays():
    xtr, ytr = eqprop.load_dataset("yin_yang", seed=0, yin_yang_train=60, yin_yang_test=30)["train"]
    xte, yte = eqprop.load_dataset("yin_yang", seed=0, yin_yang_train=60, yin_yang_test=30)["test"]
    return xtr, ytr, xte, yte


def test_in_memory_arrays_train_like_the_data_set(tmp_path):
    data = _yin_yang_arrays()
    ref = eqprop.train(overrides=TINY, run_dir=tmp_path / "ref", verbose=False)
    batches = []
    mem = eqprop.train(overrides=TINY, run_dir=tmp_path / "mem", verbose=False, data=data,
                       on_batch=lambda *a: batches.append(a))
    assert mem["test_accuracy"] == ref["test_accuracy"]
    assert mem["test_loss"] == ref["test_loss"]
    a = eqprop.load_checkpoint(tmp_path / "ref")["arrays"]["params"]
    b = eqprop.load_checkpoint(tmp_path / "mem")["arrays"]["params"]
    assert np.array_equal(a, b)
    assert len(batches) == 2 * 6 and batches[0][:3] == (1, 1, 6) and batches[-1][:3] == (2, 6, 6)
    assert all(np.isfinite(loss) and 0 <= acc <= 1 for *_, loss, acc in batches)


def test_resuming_needs_the_same_arrays(tmp_path):
    data = _yin_yang_arrays()
    eqprop.train(overrides=TINY[:-2] + ["run.epochs=1", "run.batch=10"], run_dir=tmp_path / "r", verbose=False,
                 data=data)
    with pytest.raises(eqprop.DataError, match="in-memory arrays"):
        eqprop.train(overrides=["run.epochs=2"], run_dir=tmp_path / "r", resume=True, verbose=False)
    other = (data[0] + 0.01,) + data[1:]
    with pytest.raises(eqprop.DataError, match="differ"):
        eqprop.train(overrides=["run.epochs=2"], run_dir=tmp_path / "r", resume=True, verbose=False, data=other)
    r = eqprop.train(overrides=["run.epochs=2"], run_dir=tmp_path / "r", resume=True, verbose=False, data=data)
    assert r["epochs_done"] == 2


def test_bad_arrays_are_clear_errors(tmp_path):
    xtr, ytr, xte, yte = _yin_yang_arrays()
    with pytest.raises(eqprop.ShapeError, match="one label per sample"):
        eqprop.train(overrides=TINY, run_dir=tmp_path / "a", verbose=False, data=(xtr, ytr[:-1], xte, yte))
    bad = xte.copy()
    bad[3, 1] = np.nan
    with pytest.raises(eqprop.DataError, match="non-finite"):
        eqprop.train(overrides=TINY, run_dir=tmp_path / "b", verbose=False, data=(xtr, ytr, bad, yte))


def test_resume_reads_changes_with_the_runs_kind(tmp_path):
    """A resumed vector_field run takes overrides of its own keys without naming model.kind."""
    vf = {"model.kind": "vector_field", "data.name": "yin_yang", "data.yin_yang_train": 40, "data.yin_yang_test": 20,
          "network.hidden": [4], "network.output_size": 3, "relax.free_steps": 10, "run.epochs": 1,
          "diagnostics.samples": 0}
    eqprop.train(overrides=vf, run_dir=tmp_path / "vf", verbose=False)
    r = eqprop.train(overrides={"run.epochs": 2, "homeostasis.lambda": 0.5}, run_dir=tmp_path / "vf", resume=True,
                     verbose=False)
    assert r["epochs_done"] == 2
    with pytest.raises(eqprop.ConfigError, match="model.kind"):
        eqprop.train(overrides={"model.kind": "layered"}, run_dir=tmp_path / "vf", resume=True, verbose=False)
