"""The module itself: version, networks, zero-copy parameters, shapes and errors, references."""
import gc
import os

import numpy as np
import pytest

import eqprop


def test_version_matches_cpp(repo):
    with open(os.path.join(repo, "VERSION")) as f:
        assert eqprop.__version__ == f.read().strip()
    assert eqprop.build_info()["version"] == eqprop.__version__


def test_exception_hierarchy():
    for e in (eqprop.ConfigError, eqprop.ShapeError, eqprop.DataError, eqprop.ConvergenceError):
        assert issubclass(e, eqprop.Error)
    assert issubclass(eqprop.ShapeError, ValueError) and issubclass(eqprop.ConfigError, ValueError)


def test_network_properties():
    net = eqprop.Network(sizes=[4, 5], readout=3, output="readout", activation="hep_sigmoid", init_scale=0.5, seed=0,
                         dtype="float64")
    assert net.sizes == [4, 5] and net.readout == 3 and net.dtype == "float64"
    assert net.n_params == 5 * 4 + 5 + 3 * 5 + 3 == net.params.size
    assert [b["name"] for b in net.layout] == ["W0", "b0", "Wout", "bout"]
    assert net.groups == ["layer0", "readout"]
    assert eqprop.Network(sizes=[4, 5], readout=3, dtype="float32").params.dtype == np.float32


def test_params_are_zero_copy_and_writable():
    net = eqprop.Network(sizes=[4, 5], readout=3, init_scale=0.5)
    p = net.params
    assert p.__array_interface__["data"][0] == net.params_address()
    assert p.flags.writeable and not p.flags.owndata
    w = net.block("W0")
    assert w.shape == (5, 4) and np.shares_memory(w, p)
    assert w[1, 2] == p[2 * 5 + 1]  # column-major block: W0[i, j] at offset i + j * rows
    x, y = eqprop.random_batch(4, 3, batch=2)
    before = eqprop.relax(net, x)[1]["outputs"].copy()
    p[:] *= 2  # writes the C++ buffer: the forward result changes
    after = eqprop.relax(net, x)[1]["outputs"]
    assert not np.allclose(before, after)
    g1, _ = eqprop.bptt_gradient(net, x, y)
    w[0, 0] += 0.5
    g2, _ = eqprop.bptt_gradient(net, x, y)
    assert not np.array_equal(g1, g2)


def test_params_keep_network_alive():
    p = eqprop.Network(sizes=[4, 5], readout=3, init_scale=0.5).params
    gc.collect()
    expected = eqprop.Network(sizes=[4, 5], readout=3, init_scale=0.5).params
    np.testing.assert_array_equal(p, expected)


def test_relax_real_and_complex():
    net = eqprop.Network(sizes=[4, 6, 5], readout=3, init_scale=0.5)
    x, y = eqprop.random_batch(4, 3, batch=3, seed=1)
    states, rep = eqprop.relax(net, x, y, beta=0.0, steps=200, stop_early=True)
    assert [s.shape for s in states] == [(3, 6), (3, 5)] and states[0].dtype == np.float64
    assert rep["converged"] and rep["max_residual"] <= 1e-12 and rep["steps"] < 200
    assert rep["outputs"].shape == (3, 3) and rep["predictions"].shape == (3,)
    cstates, crep = eqprop.relax(net, x, y, beta=0.1j, steps=200)
    assert cstates[0].dtype == np.complex128 and np.abs(cstates[0].imag).max() > 0
    # Holomorphic: f(conj beta) = conj f(beta).
    conj_states, _ = eqprop.relax(net, x, y, beta=-0.1j, steps=200)
    np.testing.assert_allclose(conj_states[1], np.conj(cstates[1]), atol=1e-14)


def test_layout_convention_any_memory_order():
    """x is (batch, features); Fortran-ordered or float32 input gives the same numbers."""
    net = eqprop.Network(sizes=[4, 5], readout=3, init_scale=0.5)
    x, y = eqprop.random_batch(4, 3, batch=4, seed=2)
    g, _ = eqprop.estimate(net, x, y)
    g_f, _ = eqprop.estimate(net, np.asfortranarray(x), y)
    np.testing.assert_array_equal(g, g_f)
    onehot = np.eye(3)[y]
    g_t, _ = eqprop.estimate(net, x, onehot)  # float targets (batch, n_out) = one-hot labels
    np.testing.assert_array_equal(g, g_t)


def test_shape_and_dtype_errors():
    net = eqprop.Network(sizes=[4, 5], readout=3, init_scale=0.5)
    x, y = eqprop.random_batch(4, 3, batch=2)
    with pytest.raises(eqprop.ShapeError, match=r"x must have shape \(batch, 4\).*got shape \(4, 2\)"):
        eqprop.estimate(net, x.T, y)
    with pytest.raises(ValueError, match="shape"):
        eqprop.estimate(net, x[0], y)
    with pytest.raises(TypeError, match="float32 or float64 array, got dtype int64"):
        eqprop.estimate(net, np.ones((2, 4), dtype=np.int64), y)
    with pytest.raises(eqprop.ShapeError, match=r"labels y must have shape \(2,\)"):
        eqprop.estimate(net, x, np.array([0, 1, 2]))
    with pytest.raises(eqprop.ShapeError):
        eqprop.estimate(net, x, np.array([0, 7]))  # label out of range
    with pytest.raises(TypeError, match="dtype"):
        eqprop.estimate(net, x, np.array(["a", "b"]))
    with pytest.raises(eqprop.ShapeError, match=r"y must have shape \(batch, 3\)"):
        eqprop.estimate(net, x, np.ones((2, 4)))
    with pytest.raises(eqprop.ConfigError, match="did you mean 'holomorphic'"):
        eqprop.estimate(net, x, y, kind="holomorhpic")
    with pytest.raises(eqprop.ConfigError, match="activation"):
        eqprop.Network(sizes=[4, 5], readout=3, activation="relux")
    with pytest.raises(eqprop.ConfigError, match="dtype"):
        eqprop.Network(sizes=[4, 5], readout=3, dtype="float16")
    with pytest.raises(eqprop.Error):
        eqprop.relative_error(np.ones(3), np.ones(4))
    with pytest.raises(eqprop.DataError, match="mnist"):
        eqprop.load_dataset("mnist", "/nonexistent-eqprop-data")
    with pytest.raises(eqprop.ConfigError, match="did you mean"):
        eqprop.train({"optimizer": {"lrr": 0.1}})
    with pytest.raises(eqprop.ConfigError, match="run.epochs must be of type integer"):
        eqprop.train(overrides={"run.epochs": "three"})


def test_convergence_error_carries_data():
    net = eqprop.Network(sizes=[4, 6, 5], readout=3, init_scale=0.5)  # two layers: not converged after 2 steps
    x, y = eqprop.random_batch(4, 3, batch=2)
    with pytest.raises(eqprop.ConvergenceError) as e:
        eqprop.implicit_gradient(net, x, y, steps=2, tol=1e-15)
    assert e.value.residual > 0 and isinstance(e.value.iterations, int)


def test_references_agree():
    net = eqprop.Network(sizes=[4, 6, 5], readout=3, init_scale=0.5, seed=3)
    x, y = eqprop.random_batch(4, 3, batch=2, seed=3)
    imp, info = eqprop.implicit_gradient(net, x, y, steps=500)
    cs = eqprop.complex_step_gradient(net, x, y, steps=500)
    assert eqprop.relative_error(imp, cs) < 1e-9
    fd = eqprop.finite_difference_gradient(net, x, y, steps=500, indices=[0, 5, 40])
    np.testing.assert_allclose(fd, cs[[0, 5, 40]], rtol=1e-5, atol=1e-9)
    bptt, _ = eqprop.bptt_gradient(net, x, y, steps=30)
    cs30 = eqprop.complex_step_gradient(net, x, y, steps=30, target="steps")
    assert eqprop.relative_error(bptt, cs30) < 1e-10
    assert eqprop.cosine(eqprop.bptt_gradient(net, x, y, steps=500)[0], imp) > 1 - 1e-12
    # The estimators on the gradcheck default network (one layer + readout), exact as N grows.
    net = eqprop.Network(sizes=[4, 5], readout=3, init_scale=0.5)
    x, y = eqprop.random_batch(4, 3, batch=2)
    imp, _ = eqprop.implicit_gradient(net, x, y)
    g, _ = eqprop.estimate(net, x, y, kind="holomorphic", n_points=8, beta=0.1)
    assert eqprop.relative_error(g, imp) < 1e-6
    gc_, _ = eqprop.estimate(net, x, y, kind="continuous", n_points=8, beta=0.1, nudged_steps=50, periods=3)
    assert eqprop.cosine(gc_, imp) > 0.99


def test_alternating_order_and_over_relaxation():
    # relax.order / relax.omega from Python: the same estimate at convergence, in fewer steps.
    net = eqprop.Network(sizes=[6, 8, 8], readout=3, init_scale=0.5, seed=2)
    x, y = eqprop.random_batch(6, 3, batch=3, seed=2)
    kw = dict(kind="symmetric", beta=0.2, free_steps=3000, nudged_steps=3000, tol=1e-13, stop_early=True)
    g0, i0 = eqprop.estimate(net, x, y, **kw)
    g1, i1 = eqprop.estimate(net, x, y, order="alternating", omega=1.4, **kw)
    assert eqprop.relative_error(g1, g0) < 1e-9
    assert i1["relax_steps"] < i0["relax_steps"]
    with pytest.raises(eqprop.ConfigError):
        eqprop.estimate(net, x, y, omega=2.5, **kw)
    with pytest.raises(eqprop.ConfigError):
        eqprop.estimate(net, x, y, order="random", **kw)


def test_float32_network_and_estimators():
    net = eqprop.Network(sizes=[4, 5], readout=3, init_scale=0.5, dtype="float32")
    x, y = eqprop.random_batch(4, 3, batch=2)
    for kind in ("classic", "symmetric", "holomorphic", "continuous", "bptt", "implicit"):
        g, info = eqprop.estimate(net, x, y, kind=kind)
        assert g.dtype == np.float32 and g.shape == (net.n_params,) and np.isfinite(g).all(), kind
        assert isinstance(info["estimator"], str) and info["loss"] > 0


def test_datasets():
    d = eqprop.load_dataset("yin_yang", yin_yang_train=100, yin_yang_test=50, seed=1)
    xtr, ytr = d["train"]
    assert xtr.shape == (100, 4) and xtr.dtype == np.float32 and ytr.shape == (100,) and d["n_classes"] == 3
    assert xtr.flags.c_contiguous and d["test"][0].shape == (50, 4)
    np.testing.assert_allclose(xtr[:, 2], 1 - xtr[:, 0], atol=1e-6)  # inputs (x, y, 1-x, 1-y)
    assert "yin_yang" in eqprop.dataset_names()


def test_version_names_the_commit_it_was_built_from(cli, repo):
    """The commit is read at build time, not at configure time: `eqprop --version` names HEAD."""
    import shutil
    import subprocess
    if shutil.which("git") is None or not os.path.exists(os.path.join(repo, ".git")):
        pytest.skip("no git checkout")
    head = subprocess.run(["git", "-C", repo, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("git cannot read this checkout")
    assert head.stdout.strip() in cli("--version")
