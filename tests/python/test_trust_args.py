"""Python arguments are validated like the CLI's: labels, array sizes, config values, resume."""
import numpy as np
import pytest

import eqprop

TINY = {"data": {"yin_yang_train": 40, "yin_yang_test": 20}, "network": {"hidden": [8]},
        "relax": {"free_steps": 10, "nudged_steps": 5}, "run": {"epochs": 1}}


def small_net():
    return eqprop.Network([4, 5], readout=3, seed=0)


@pytest.mark.parametrize("label", [2**40, 3, -1, 2**31])
def test_label_outside_the_classes_is_an_error(label):
    net = small_net()
    x = np.full((2, 4), 0.5)
    y = np.array([0, label], dtype=np.int64)
    with pytest.raises(eqprop.ShapeError, match=r"y\[1\] = -?\d+ is not a class label: labels must be integers in \[0, 3\)"):
        eqprop.estimate(net, x, y, kind="classic", beta=0.1, free_steps=5, nudged_steps=5)
    with pytest.raises(eqprop.ShapeError, match="not a class label"):
        eqprop.relax(net, x, y)


def test_huge_unsigned_label_is_an_error():
    net = small_net()
    y = np.array([1, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(eqprop.ShapeError, match="not a class label"):
        eqprop.bptt_gradient(net, np.full((2, 4), 0.5), y, steps=5)


def test_labels_in_range_still_work():
    net = small_net()
    g, info = eqprop.estimate(net, np.full((2, 4), 0.5), np.array([0, 2], dtype=np.uint8), kind="classic",
                              beta=0.1, free_steps=5, nudged_steps=5)
    assert g.shape == (net.n_params,) and np.isfinite(g).all()


def test_absurd_array_dimensions_are_shape_errors():
    net = small_net()
    # 4294967297 = 2**32 + 1 would be 1 if truncated to 32 bits; zero rows would train on nothing.
    for shape in [(0, 4294967297), (0, 4), (4294967297, 0), (2, 4294967300)]:
        x = np.lib.stride_tricks.as_strided(np.zeros(1), shape=shape, strides=(0, 0))
        with pytest.raises(eqprop.ShapeError):
            eqprop.relax(net, x)
    x3 = np.zeros((0, 4294967297, 1))
    with pytest.raises(eqprop.ShapeError):
        eqprop.relax(net, x3)


def test_uninitialised_network_raises_instead_of_reading_memory():
    n = eqprop.Network.__new__(eqprop.Network)
    for get in (lambda: n.params, lambda: n.sizes, lambda: n.n_params, lambda: n.layout, lambda: n.copy(),
                lambda: n.block("W0"), lambda: repr(n)):
        with pytest.raises(TypeError):
            get()
    with pytest.raises(TypeError):
        eqprop.relax(n, np.zeros((1, 4)))


@pytest.mark.parametrize("config,key,text", [
    ({"schedule": {"min_factor": -0.5}}, "schedule.min_factor", "in [0, 1]"),
    ({"run.epochs": -5}, "run.epochs", "an integer in [1, 1000000]"),
    ({"run": {"epochs": 0}}, "run.epochs", "an integer in [1, 1000000]"),
    ({"relax.tol": -1.0}, "relax.tol", ">= 0"),
    ({"relax.free_steps": 0}, "relax.free_steps", "[1, 1000000]"),
    ({"estimator.beta": float("nan")}, "estimator.beta", "a float > 0"),
    ({"optimizer.kind": "adamm"}, "optimizer.kind", "one of sgd, adam, adamw"),
    ({"network.hidden": [8, 2**40]}, "network.hidden", "element 1"),
])
def test_python_config_values_are_range_checked(tmp_path, config, key, text):
    for kwargs in ({"config": config}, {"overrides": config}):
        with pytest.raises(eqprop.ConfigError) as e:
            eqprop.train(run_dir=str(tmp_path / "r"), verbose=False, **kwargs)
        assert f"`{key}`" in str(e.value) and text in str(e.value)
    assert not (tmp_path / "r").exists(), "the run must not start"


def test_gle_config_values_are_range_checked(tmp_path):
    with pytest.raises(eqprop.ConfigError, match=r"`run.batch` = 0 is out of range"):
        eqprop.train(overrides={"model.kind": "gle", "run.batch": 0}, run_dir=tmp_path / "g", verbose=False)


def test_resume_applies_overrides_and_refuses_fixed_keys(tmp_path):
    run = str(tmp_path / "run")
    r = eqprop.train(config=TINY, run_dir=run, verbose=False)
    assert r["epochs_done"] == 1
    r = eqprop.train(overrides={"run.epochs": 2, "optimizer.lr": 0.05}, run_dir=run, verbose=False, resume=True)
    assert r["epochs_done"] == 2
    meta = eqprop.load_checkpoint(run)["meta"]
    assert meta["epoch"] == 2 and meta["config"]["optimizer"]["lr"] == 0.05
    assert "lr = 0.05" in (tmp_path / "run" / "config.toml").read_text()
    with pytest.raises(eqprop.ConfigError, match=r"cannot change `network.hidden` \(the run has \[8\]"):
        eqprop.train(overrides={"run.epochs": 3, "network.hidden": [9]}, run_dir=run, verbose=False, resume=True)
    assert eqprop.load_checkpoint(run)["meta"]["epoch"] == 2
    # The run's own config given again is not a change.
    r = eqprop.train(config=TINY, overrides={"run.epochs": 3}, run_dir=run, verbose=False, resume=True)
    assert r["epochs_done"] == 3


def test_gle_study_arguments_are_range_checked():
    with pytest.raises(eqprop.ConfigError, match=r"dt = nan is out of range"):
        eqprop.gle_operator(dt=float("nan"))
    with pytest.raises(eqprop.ConfigError, match=r"t_train = nan is out of range"):
        eqprop.gle_lagline(t_train=float("nan"))
    with pytest.raises(eqprop.ConfigError, match=r"window = -1"):
        eqprop.gle_lagnet(window=-1.0)


def test_config_keys_show_the_allowed_values():
    assert eqprop.config_keys()["relax.omega"][1].endswith("(allowed: a float in (0, 2))")
    assert "(allowed: one of sgd, adam, adamw)" in eqprop.config_keys("gle")["optimizer.kind"][1]
