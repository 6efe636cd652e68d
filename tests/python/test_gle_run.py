"""GLE from Python: eqprop.GleNetwork, and eqprop.load_run of a gle run, whose predictions score
the test split exactly as `eqprop eval` and the trainer's own evaluation do."""
import re

import numpy as np
import pytest

import eqprop

T = 24  # steps per sequence


def sequences(n, offset=0):
    """3-class sequences of T steps: a bump whose time is the class (as tests/test_model_kinds.cpp)."""
    i = np.arange(offset, offset + n)[:, None]
    t = np.arange(T)[None, :]
    y = (i[:, 0] % 3).astype(np.int64)
    x = ((i * 5 + t * 3) % 7) / 14.0 + (t // 8 == y[:, None])
    return x.astype(np.float32), y


TINY = {"model.kind": "gle", "data.name": "npy", "network.width": 6, "network.depth": 1,
        "network.tau_groups": "3:0.6:0.2, 3:1.0:1.0", "network.output_tau": 0.6, "run.batch": 10,
        "run.eval_batch": 7, "run.epochs": 2, "optimizer.lr": 0.01, "schedule.plateau_patience": 0}


@pytest.fixture(scope="module")
def gle_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gle")
    data = root / "data"
    data.mkdir()
    xtr, ytr = sequences(30)
    xte, yte = sequences(100, offset=1000)
    for name, a in [("x_train", xtr), ("y_train", ytr), ("x_test", xte), ("y_test", yte)]:
        np.save(data / f"{name}.npy", a)
    run_dir = root / "run"
    r = eqprop.train(overrides={**TINY, "data.dir": str(data)}, run_dir=run_dir, verbose=False)
    assert r["epochs_done"] == 2
    return run_dir, r, xte, yte


def test_a_gle_run_predicts_what_eval_and_the_trainer_score(gle_run, cli):
    run_dir, trained, x, y = gle_run
    run = eqprop.load_run(run_dir)
    assert run.kind == "gle"
    net = run.network
    assert isinstance(net, eqprop.GleNetwork)
    assert net.sizes == [1, 6, 3] and net.n_output == 3 and net.dtype == run.config["network"]["dtype"]
    ck = eqprop.load_checkpoint(run_dir)
    np.testing.assert_array_equal(net.params, ck["arrays"]["params"])
    np.testing.assert_array_equal(net.state(0)["u"], ck["arrays"]["state0_u"].T)  # the saved neuron state
    assert net.batch == run.config["run"]["batch"]

    pred = run.predict(x)
    assert pred.shape == (100,) and pred.dtype == np.int64
    acc = float(np.mean(pred == y))
    ev = run.evaluate()
    assert ev["n"] == 100
    assert abs(acc - ev["accuracy"]) <= 1e-12
    assert abs(acc - trained["test_accuracy"]) <= 1e-12
    out = cli("eval", run_dir)  # percent with 2 decimals: exact for 100 samples
    m = re.search(r"test accuracy ([0-9.]+)%", out)
    assert m, out
    assert abs(acc - float(m.group(1)) / 100) <= 1e-12

    # scores: outputs summed over time; predict is their argmax. The evaluation runs a copy
    # of the network: the run's own network keeps its state.
    scores = run.scores(x)
    assert scores.shape == (100, 3)
    np.testing.assert_array_equal(np.argmax(scores, axis=1), pred)
    np.testing.assert_array_equal(net.state(0)["u"], ck["arrays"]["state0_u"].T)

    # GleNetwork.run on a copy, batch after batch of run.eval_batch, is the same evaluation:
    # the same scores, and its per-step losses average to evaluate()'s loss.
    ev_net = net.copy()
    b = run.config["run"]["eval_batch"]
    parts = [ev_net.run(x[i:i + b], y[i:i + b]) for i in range(0, len(x), b)]
    np.testing.assert_array_equal(np.concatenate([p["scores"] for p in parts]), scores)
    loss = float(np.mean(np.concatenate([p["loss"] for p in parts])))
    assert loss == pytest.approx(ev["loss"], rel=1e-6, abs=1e-9)
    assert trained["test_loss"] == pytest.approx(ev["loss"], rel=1e-6)


def test_a_gle_network_built_from_overrides(gle_run):
    run_dir, _, x, y = gle_run
    run = eqprop.load_run(run_dir)
    keys = {k: v for k, v in TINY.items() if k.split(".")[0] in ("network", "run", "dynamics")}
    fresh = eqprop.GleNetwork(3, overrides={**keys, "network.dtype": run.network.dtype})
    assert fresh.sizes == run.network.sizes and fresh.n_params == run.network.n_params
    assert fresh.layout == run.network.layout and fresh.batch == 10
    np.testing.assert_allclose(fresh.tau_m[0], [0.6] * 3 + [1.0] * 3)
    np.testing.assert_allclose(fresh.tau_r[0], [0.2] * 3 + [1.0] * 3)
    assert "GleNetwork(sizes=[1, 6, 3]" in repr(fresh)
    r = fresh.run(x[:5], record=True)
    assert r["scores"].shape == (5, 3) and r["outputs"].shape == (T, 5, 3) and fresh.batch == 5
    np.testing.assert_allclose(r["outputs"].sum(axis=0), r["scores"], rtol=1e-5, atol=1e-6)
    fresh.reset_state(2)
    assert fresh.batch == 2 and not fresh.state(1)["r"].any()
    d64 = eqprop.GleNetwork(4, overrides={"network.width": 5, "network.depth": 2, "network.tau_groups": "5:1.0:0.5",
                                          "network.dtype": "float64"})
    assert d64.sizes == [1, 5, 5, 4] and d64.dtype == "float64" and d64.params.dtype == np.float64
    bank = eqprop.GleNetwork(3, overrides={**keys, "network.lag_bank": 4, "network.lag_bank_stages": 2})
    assert bank.sizes == [1, 4, 4, 6, 3] and bank.lag_bank_layers == 2
    first = bank.run(x[:3])["scores"]
    np.testing.assert_array_equal(bank.run(x[:3])["scores"].shape, first.shape)


def test_gle_errors_name_what_is_wrong(gle_run):
    run_dir, _, x, y = gle_run
    run = eqprop.load_run(run_dir)
    with pytest.raises(eqprop.ShapeError, match=r"\(batch, 24\)"):
        run.predict(x[:, :10])
    with pytest.raises(eqprop.ShapeError, match="steps"):
        run.network.copy().run(x[0])
    with pytest.raises(eqprop.ShapeError, match="labels"):
        run.network.copy().run(x[:4], y[:3])
    with pytest.raises(eqprop.ShapeError, match="layer"):
        run.network.state(5)
    with pytest.raises(eqprop.ConfigError, match="n_classes"):
        eqprop.GleNetwork(0)
    with pytest.raises(eqprop.ConfigError, match="network.width"):
        eqprop.GleNetwork(3, overrides={"network.width": -1})
    with pytest.raises(eqprop.ConfigError):
        eqprop.GleNetwork(3, overrides={"network.tau_groups": "2:1.0:1.0"})  # counts do not sum to the width
