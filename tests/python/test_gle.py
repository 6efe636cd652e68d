"""GLE from Python: the same numbers as `eqprop gle`, and the GLE figures."""
import csv
import math
import os

import numpy as np
import pytest

import eqprop
from matplotlib.figure import Figure


def test_operator_phase_and_gain():
    r = eqprop.gle_operator(tau_m=1.0, tau_r=0.2, omega=2.0, dt=1e-3)
    gain_h, phase_h = r["theory_H"]
    assert abs(phase_h + 0.7266) < 1e-3
    assert abs(r["adjoint"][1] - r["gle_error"][1]) < 5e-3          # same phase as the adjoint
    assert abs(r["gle_error"][0] * r["adjoint"][0] - 1.0) < 1e-2    # inverse gain


def test_lagline_matches_cli_and_plots(cli, tmp_path):
    py = eqprop.gle_lagline(t_train=300.0)
    out = cli("gle", "lagline", "--t-train", 300, "--out", tmp_path, "--no-plot")
    with open(tmp_path / "lagline_gle.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(py["t"])
    assert float(rows[-1]["w1"]) == pytest.approx(py["w1"][-1], rel=1e-9)
    assert float(rows[-1]["tau_m2"]) == pytest.approx(py["tau_m2"][-1], rel=1e-9)
    assert "gle" in out
    fig = eqprop.plots.gle_lagline([py, str(tmp_path / "lagline_gle.csv")])
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "l.png")
    assert (tmp_path / "l.png").stat().st_size > 10000
    cli("plot", tmp_path / "lagline_gle.csv", "-o", tmp_path / "cli.png")  # `eqprop plot` draws GLE traces too
    assert (tmp_path / "cli.png").stat().st_size > 10000


def test_lagnet_errors_align_with_adjoint(tmp_path):
    r = eqprop.gle_lagnet(window=100.0, train=False)
    by = {n["name"]: n for n in r["neurons"]}
    hid2r = by["hid2.r"]
    for g, t, p in zip(hid2r["gain"], hid2r["theory_gain"], hid2r["phase"]):
        assert abs(p) < 0.05 and abs(g / t - 1) < 0.05
    assert by["hid2.i"]["correlation"] > 0.999
    assert set(r["e"]) == set(by) and len(r["t"]) == len(r["e"]["hid1.r"])
    fig = eqprop.plots.gle_lagnet(r)
    fig.savefig(tmp_path / "n.png")
    assert (tmp_path / "n.png").stat().st_size > 10000


def test_gle_train_small_run(repo, tmp_path):
    data = os.environ.get("EQPROP_DATA") or os.path.join(repo, "..", "shared", "data")
    if not os.path.isdir(os.path.join(data, "mnist-1d", "gle-360")):
        pytest.skip(f"MNIST-1D (gle-360) not found in {data}")
    seen = []
    r = eqprop.train(overrides={"model": {"kind": "gle"}, "run": {"epochs": 1},
                                "data": {"limit_train": 200, "limit_test": 100}, "network": {"depth": 2}},
                     data_dir=data, run_dir=tmp_path / "run", on_epoch=seen.append, verbose=False)
    assert len(seen) == 1 and seen[0]["epoch"] == 1 and 0 <= seen[0]["test_acc"] <= 1
    assert r["test_accuracy"] == seen[0]["test_acc"] and "test_readout_loss" in seen[0]
    params = eqprop.load_checkpoint(tmp_path / "run")["arrays"]["params"]
    assert params.dtype == np.float32 and np.isfinite(params).all()
    assert eqprop.evaluate(tmp_path / "run")["accuracy"] == r["test_accuracy"]
    with pytest.raises(eqprop.ConfigError, match="network.widht"):
        eqprop.train(overrides={"model.kind": "gle", "network.widht": 5}, data_dir=data, verbose=False)


def test_old_activation_names_are_errors_naming_the_new_ones(tmp_path):
    # GLE configs meant 1/(1+e^-x) by 'sigmoid'; EP networks meant logistic(4x-2).
    with pytest.raises(eqprop.ConfigError, match=r"use 'logistic' for 1/\(1\+e\^-x\)"):
        eqprop.train(overrides={"model": {"kind": "gle"}, "network": {"activation": "sigmoid"}}, data_dir=tmp_path,
                     verbose=False)
    with pytest.raises(eqprop.ConfigError, match=r"use 'clamp01' for clamp\(x, 0, 1\)"):
        eqprop.train(overrides={"model.kind": "gle", "network.first_activation": "hard_sigmoid"}, data_dir=tmp_path,
                     verbose=False)
    with pytest.raises(eqprop.ConfigError, match="'hep_sigmoid' for logistic"):
        eqprop.Network(sizes=[4, 5], readout=3, activation="sigmoid")
    net = eqprop.Network(sizes=[4, 5], readout=3, activation="hep_sigmoid")
    assert net.activation == "hep_sigmoid"
