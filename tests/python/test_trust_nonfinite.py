"""From Python, no number computed from NaN/Inf is reported: non-finite data and empty splits
are errors naming the split and sample, and a checkpoint with NaN parameters evaluates to
accuracy 0 with every sample counted as non-finite (never 1.0)."""
import json
import math
import struct
import zlib

import numpy as np
import pytest

import eqprop


def write_npy_dataset(d, n_train=30, n_test=12, nan_test_sample=None):
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x = (np.arange(n * 4, dtype=np.float32).reshape(n, 4) % 10) / 10
        if split == "test" and nan_test_sample is not None:
            x[nan_test_sample, 2] = np.nan
        np.save(d / f"x_{split}.npy", x)
        np.save(d / f"y_{split}.npy", np.arange(n, dtype=np.int64) % 3)
    return d


def poison_params(path):
    """Rewrites a checkpoint file with every parameter NaN (format: docs/runs.md)."""
    raw = bytearray(path.read_bytes())
    assert raw[:8] == b"EQPROPCK"
    (hlen,) = struct.unpack_from("<Q", raw, 12)
    header = json.loads(raw[20:20 + hlen])
    data = 20 + hlen
    arr = next(a for a in header["arrays"] if a["name"] == "params")
    assert arr["dtype"] == "f32"
    start = data + arr["offset"]
    raw[start:start + arr["length"]] = np.full(arr["length"] // 4, np.nan, dtype="<f4").tobytes()
    raw[-4:] = struct.pack("<I", zlib.crc32(bytes(raw[:-4])))
    path.write_bytes(bytes(raw))


def test_nan_checkpoint_evaluates_to_zero_with_non_finite_count(tmp_path):
    sets = {"data.yin_yang_train": 300, "data.yin_yang_test": 200, "network.hidden": [10], "run.epochs": 1}
    r = eqprop.train(overrides=sets, run_dir=tmp_path / "run", verbose=False)
    assert not r["diverged"] and r["epochs_done"] == 1
    good = eqprop.evaluate(tmp_path / "run")
    assert good["n"] == 200 and good["n_non_finite"] == 0 and good["accuracy"] > 0.3 and math.isfinite(good["loss"])
    poison_params(tmp_path / "run" / "checkpoint.eqck")
    assert np.isnan(eqprop.load_checkpoint(tmp_path / "run")["arrays"]["params"]).all()
    bad = eqprop.evaluate(tmp_path / "run")
    assert bad["n"] == 200 and bad["n_non_finite"] == 200
    assert bad["accuracy"] == 0.0 and bad["top5"] == 0.0  # used to be 1.0
    assert math.isnan(bad["loss"])


def test_nan_test_data_is_an_error_naming_split_and_sample(tmp_path):
    data = write_npy_dataset(tmp_path / "data", nan_test_sample=5)
    with pytest.raises(eqprop.DataError, match=r"test sample 5 \(0-based, of 12\).*feature 2"):
        eqprop.train(overrides={"data.name": "npy", "network.hidden": [5], "run.epochs": 1}, data_dir=data,
                     run_dir=tmp_path / "run", verbose=False)
    assert not (tmp_path / "run" / "checkpoint.eqck").exists()
    with pytest.raises(eqprop.DataError, match="test sample 5"):
        eqprop.train(overrides={"model.kind": "gle", "data.name": "npy", "network.depth": 1, "run.epochs": 1},
                     data_dir=data, run_dir=tmp_path / "gle", verbose=False)


def test_empty_split_is_an_error(tmp_path):
    with pytest.raises(eqprop.ConfigError, match="data.limit_test"):
        eqprop.train(overrides={"data.limit_test": 0, "run.epochs": 1}, run_dir=tmp_path / "run", verbose=False)
    data = write_npy_dataset(tmp_path / "data", n_test=0)
    with pytest.raises(eqprop.DataError, match="test split has no samples"):
        eqprop.train(overrides={"data.name": "npy", "run.epochs": 1}, data_dir=data, run_dir=tmp_path / "run2",
                     verbose=False)
    with pytest.raises(eqprop.DataError, match="test split has no samples"):
        eqprop.train(overrides={"model.kind": "gle", "data.name": "npy", "network.depth": 1, "run.epochs": 1},
                     data_dir=data, run_dir=tmp_path / "gle", verbose=False)
