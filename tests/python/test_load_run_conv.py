"""load_run of ConvNet runs (layered and vector_field): predictions score the test split as
`eqprop eval` does, on 3-class 1x6x6 images (a bright square whose position is the class)."""
import re

import numpy as np
import pytest

import eqprop

CASES = {
    "layered": {"model.kind": "layered", "network.conv": [2], "network.hidden": [], "relax.free_steps": 6,
                "relax.nudged_steps": 3, "optimizer.lr": 0.05},
    "vector_field": {"model.kind": "vector_field", "network.conv": [2], "network.hidden": [], "network.output_size": 3,
                     "relax.free_steps": 6, "relax.nudged_steps": 3, "homeostasis.lambda": 1, "homeostasis.probes": 1,
                     "diagnostics.samples": 2, "estimator.fail_residual": 1e30},
}


def images(n, offset=0):
    i = np.arange(offset, offset + n)
    y = (i % 3).astype(np.int64)
    p = np.arange(36)[None, :]
    x = (((i[:, None] * 13 + p * 7) % 17) / 34.0).reshape(n, 1, 6, 6)
    for k in range(n):
        x[k, 0, 1:3, 2 * y[k]:2 * y[k] + 2] += 1.0
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    (xtr, ytr), (xte, yte) = images(30), images(40, offset=500)
    for name, a in [("x_train", xtr), ("y_train", ytr), ("x_test", xte), ("y_test", yte)]:
        np.save(d / f"{name}.npy", a)
    return d, xte.reshape(len(xte), -1), yte


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_conv_run_predicts_what_eval_and_the_trainer_score(kind, data_dir, tmp_path, cli):
    d, x, y = data_dir
    overrides = {**CASES[kind], "data.name": "npy", "data.dir": str(d), "run.epochs": 1, "run.batch": 10}
    trained = eqprop.train(overrides=overrides, run_dir=tmp_path / kind, verbose=False)
    run = eqprop.load_run(tmp_path / kind)
    assert run.kind == kind
    assert list(run.network.conv) == [2], run.network  # a ConvNet: one conv layer of 2 channels
    acc = float(np.mean(run.predict(x) == y))
    assert abs(acc - trained["test_accuracy"]) <= 1e-12
    assert abs(acc - run.evaluate()["accuracy"]) <= 1e-12
    m = re.search(r"test accuracy ([0-9.]+)%", cli("eval", tmp_path / kind))
    assert m and abs(100 * acc - float(m.group(1))) <= 0.005 + 1e-9
