"""DEEP graph networks from Python: GraphNetwork, graph_relax, graph_estimate (checked against
central differences of the loss and against the endpoint rule written out), and load_run of a
graph run, whose predictions and scores are those of `eqprop eval`."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import eqprop

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])
# The recommended dynamics (docs/deep.md): absolute decay, leak 1, rho = logistic(4s - 2), no
# clipping, each phase run until max_b |ds_b|^2 <= tol (a unique fixed point).
LEAKY = dict(decay="abs_row_sum", leak=1.0, presyn="hep_sigmoid", clip=False, tol=1e-30, free_steps=100000,
             nudged_steps=100000)


def test_a_graph_network_has_its_topology_and_checked_parameters():
    net = eqprop.GraphNetwork(n_input=2, n_output=2, hidden=[3], init_std=0.3, seed=1)
    n = 2 + 1 + 3 + 2
    assert (net.size, net.n_input, net.n_output, net.hidden, net.n_hidden, net.bias_index) == (n, 2, 2, [3], 3, 2)
    assert net.topology == "complete" and net.dtype == "float64" and net.init_std == 0.3
    assert net.weights.shape == net.pruned.shape == net.structural.shape == (n, n) and net.bias.shape == (5,)
    assert net.pruned.dtype == np.bool_ and not net.pruned.any()
    assert net.n_params == n * n + 5 == net.params.size
    assert net.n_allowed == 3 * 5 + 5 * 4 == int(net.structural.sum()) == net.n_nonzero and net.sparsity == 0.0
    assert not net.weights[:, :3].any() and not np.diag(net.weights).any()  # nothing into the inputs, no self-loop
    w, b = net.split(net.params)
    np.testing.assert_array_equal(w, net.weights)
    np.testing.assert_array_equal(b, net.bias)
    assert "GraphNetwork(n_input=2, n_output=2, hidden=[3], topology='complete'" in repr(net)

    with pytest.raises(ValueError, match="read-only"):
        net.weights[3, 4] = 1.0  # views are read-only: assignments go through the checked setters
    twin = net.copy()
    twin.weights = np.ones((n, n))  # the masks apply: nothing outside the graph
    np.testing.assert_array_equal(twin.weights, net.structural.astype(float))
    pruned = np.zeros((n, n), dtype=bool)
    pruned[3, 4] = True
    twin.pruned = pruned
    assert twin.weights[3, 4] == 0 and twin.n_nonzero == twin.n_allowed - 1
    assert twin.sparsity == pytest.approx(1 / twin.n_allowed)
    twin.bias = np.arange(5.0)
    np.testing.assert_array_equal(twin.bias, np.arange(5.0))
    assert net.weights[3, 4] != 0 and not net.bias.any()  # the copy is independent

    # The same draws for both dtypes; the trainer's for run.seed = seed.
    f32 = eqprop.GraphNetwork(n_input=2, n_output=2, hidden=[3], init_std=0.3, seed=1, dtype="float32")
    assert f32.dtype == "float32" and f32.weights.dtype == np.float32
    np.testing.assert_array_equal(f32.weights, net.weights.astype(np.float32))
    np.testing.assert_array_equal(net.astype("float32").weights, f32.weights)

    layered = eqprop.GraphNetwork(n_input=2, n_output=1, hidden=[3, 2], topology="layered")
    custom = eqprop.GraphNetwork(n_input=2, n_output=1, hidden=[3, 2], topology="custom",
                                 adjacency=layered.structural)
    np.testing.assert_array_equal(custom.structural, layered.structural)


def test_graph_inputs_are_checked_with_clear_errors():
    net = eqprop.GraphNetwork(n_input=2, n_output=2, hidden=[3])
    for bad, match in [(dict(n_input=0, n_output=1), "n_input"), (dict(n_input=2, n_output=1, dtype="float16"), "dtype"),
                       (dict(n_input=2, n_output=1, topology="ring"), "topology"),
                       (dict(n_input=2, n_output=1, topology="custom"), "adjacency"),
                       (dict(n_input=2, n_output=1, adjacency=np.ones((6, 6))), "only for topology 'custom'"),
                       (dict(n_input=2, n_output=1, init_std=-1.0), "init_std")]:
        with pytest.raises(eqprop.ConfigError, match=match):
            eqprop.GraphNetwork(**bad)
    with pytest.raises(eqprop.ShapeError, match=r"adjacency must have shape \(6, 6\), got shape \(5, 5\)"):
        eqprop.GraphNetwork(n_input=2, n_output=1, hidden=[2], topology="custom", adjacency=np.ones((5, 5)))
    with pytest.raises(eqprop.ConfigError, match="into an input"):
        eqprop.GraphNetwork(n_input=2, n_output=1, hidden=[2], topology="custom", adjacency=np.ones((6, 6)))
    with pytest.raises(eqprop.ShapeError, match=r"weights must have shape \(8, 8\), got shape \(3, 3\)"):
        net.weights = np.zeros((3, 3))
    with pytest.raises(eqprop.ShapeError, match=r"bias must have shape \(5,\)"):
        net.bias = np.zeros((5, 1))
    with pytest.raises(TypeError, match="weights must be a real numeric array"):
        net.weights = np.full((8, 8), "a")
    with pytest.raises(eqprop.ShapeError, match=r"x must have shape \(batch, 2\)"):
        eqprop.graph_relax(net, np.zeros((4, 3)))
    with pytest.raises(eqprop.ShapeError, match="not a class label"):
        eqprop.graph_estimate(net, XOR_X, np.array([0, 1, 2, 0]))
    with pytest.raises(eqprop.ShapeError, match=r"state must have shape \(batch, 8\)"):
        eqprop.graph_relax(net, XOR_X, state=np.zeros((4, 7)))
    with pytest.raises(eqprop.ConfigError, match="needs targets y"):
        eqprop.graph_relax(net, XOR_X, beta=0.5)
    with pytest.raises(eqprop.ConfigError, match="dynamics.dt"):
        eqprop.graph_relax(net, XOR_X, dt=0.0)
    with pytest.raises(eqprop.ConfigError, match="estimator.kind"):
        eqprop.graph_estimate(net, XOR_X, XOR_Y, kind="backprop")
    with pytest.raises(eqprop.ConfigError, match="clip"):
        eqprop.graph_estimate(net, XOR_X, XOR_Y, kind="vector_field", reciprocal_nudge=True)
    assert issubclass(eqprop.ShapeError, ValueError) and issubclass(eqprop.ConfigError, ValueError)


def _loss(net, x, y_onehot):
    _, rep = eqprop.graph_relax(net, x, seed=6, **LEAKY)
    assert rep["converged"]
    return 0.5 * np.mean(np.sum((y_onehot - rep["outputs"]) ** 2, axis=1))


def test_the_reciprocal_vector_field_rule_is_the_loss_gradient():
    """grad = -dW of the vector_field rule with the reciprocal nudge is dC/dW (C = mean over the
    batch of 1/2 |y - s_out*|^2 at the free fixed point) up to O(beta): central differences of C.
    Without the reciprocal nudge the rule follows J^-1 instead of J^-T and misses it."""
    net = eqprop.GraphNetwork(n_input=2, n_output=2, hidden=[3], init_std=0.8, seed=19)
    grad, info = eqprop.graph_estimate(net, XOR_X, XOR_Y, kind="vector_field", reciprocal_nudge=True, beta=1e-5,
                                       seed=6, **LEAKY)
    assert info["free"]["converged"] and info["points"][0]["converged"] and info["n_dropped"] == 0
    g_w, g_b = net.split(grad)
    assert not g_b.any() and not g_w[~net.structural].any()
    y = np.eye(2)[XOR_Y]
    assert info["loss"] == pytest.approx(_loss(net, XOR_X, y), rel=1e-12)
    fd = np.zeros_like(g_w)
    h = 1e-6
    for i, j in zip(*np.nonzero(net.structural)):
        w = net.weights.copy()
        plus, minus = net.copy(), net.copy()
        w[i, j] += h
        plus.weights = w
        w[i, j] -= 2 * h
        minus.weights = w
        fd[i, j] = (_loss(plus, XOR_X, y) - _loss(minus, XOR_X, y)) / (2 * h)
    assert np.abs(fd).max() > 1e-3
    assert eqprop.cosine(g_w.ravel(), fd.ravel()) > 0.999999
    assert eqprop.relative_error(g_w.ravel(), fd.ravel()) < 1e-5  # 3.5e-6 here: O(beta)
    plain, _ = eqprop.graph_estimate(net, XOR_X, XOR_Y, kind="vector_field", beta=1e-5, seed=6, **LEAKY)
    assert eqprop.relative_error(net.split(plain)[0].ravel(), fd.ravel()) > 1e-2


def test_the_estimate_is_the_endpoint_rule_of_the_relaxed_states():
    """graph_relax composes the estimator's phases: the free phase from the same seed, then the
    nudged phase from its end state; the endpoint rule written out from them is the estimate."""
    net = eqprop.GraphNetwork(n_input=2, n_output=2, hidden=[3], init_std=0.5, seed=3)
    p = net.pruned.copy()
    p[3, 6] = True
    net.pruned = p
    opts = dict(dt=0.1, free_steps=200, nudged_steps=150)
    beta = 0.5
    grad, info = eqprop.graph_estimate(net, XOR_X, XOR_Y, kind="endpoint", beta=beta, seed=11, **opts)
    s0, rep0 = eqprop.graph_relax(net, XOR_X, seed=11, **opts)
    s1, rep1 = eqprop.graph_relax(net, XOR_X, XOR_Y, beta=beta, state=s0, **opts)
    assert rep0["steps"] == 200 and rep1["steps"] == 150
    np.testing.assert_array_equal(s0, info["states_free"])
    np.testing.assert_array_equal(s1, info["states_nudged"])
    first_free = net.n_input + 1
    dw = np.zeros_like(net.weights)
    dw[:, first_free:] = s0.T @ (s1 - s0)[:, first_free:] / (beta * len(XOR_X))
    dw[~net.structural | net.pruned] = 0
    np.testing.assert_allclose(net.split(grad)[0], -dw, rtol=0, atol=1e-13)
    # float32 runs the same dynamics in single precision.
    g32, _ = eqprop.graph_estimate(net.astype("float32"), XOR_X, XOR_Y, kind="endpoint", beta=beta, seed=11, **opts)
    assert g32.dtype == np.float32 and eqprop.cosine(g32, grad) > 0.9999


# eval_batch 3: the 4 test samples take two batches, the second drawing on from the first.
# few_steps: 3 free steps, far from the fixed point, so the scores depend on the initial
# states: equal losses show that predict draws them as the evaluation does.
RUNS = {"one_hot": {"network.one_hot": True}, "one_output": {"network.one_hot": False},
        "few_steps": {"network.one_hot": True, "relax.free_steps": 3, "relax.tol": 0.0, "optimizer.lr": 0.1}}


@pytest.fixture(scope="module", params=list(RUNS))
def graph_run(request, tmp_path_factory, repo):
    run_dir = tmp_path_factory.mktemp("runs") / "graph"
    r = eqprop.train(config=os.path.join(repo, "configs", "graph_xor_recommended.toml"),
                     overrides={"run.epochs": 20, "run.eval_batch": 3, **RUNS[request.param]},
                     run_dir=run_dir, verbose=False)
    assert r["epochs_done"] == 20 and not r["diverged"], r
    return run_dir, r, RUNS[request.param]["network.one_hot"]


def test_a_graph_run_predicts_what_evaluate_and_the_cli_score(graph_run, cli):
    run_dir, trained, one_hot = graph_run
    run = eqprop.load_run(run_dir)
    assert run.kind == "graph" and run.config["model"]["kind"] == "graph" and len(run.metrics) == 20
    net = run.network
    assert isinstance(net, eqprop.GraphNetwork) and net.dtype == run.config["network"]["dtype"]
    assert (net.n_input, net.n_output, net.hidden) == (2, 2 if one_hot else 1, [4])
    ck = eqprop.load_checkpoint(run_dir)["arrays"]
    np.testing.assert_array_equal(net.params, ck["params"])
    np.testing.assert_array_equal(net.pruned.ravel(order="F"), ck["pruned"].astype(bool))

    x, y = eqprop.load_dataset("xor")["test"]
    scores, pred = run.scores(x), run.predict(x)
    assert scores.shape == (4, 2) and pred.dtype == np.int64
    np.testing.assert_array_equal(pred, np.argmax(scores, axis=1))
    ev = run.evaluate()
    acc = float(np.mean(pred == y))
    assert ev["n"] == 4 and acc == ev["accuracy"] == trained["test_accuracy"]
    outputs = scores if one_hot else scores[:, 1:]  # one output neuron s scores (1 - s, s)
    targets = np.eye(2)[y] if one_hot else y[:, None].astype(float)
    loss = float(np.mean(0.5 * np.sum((targets - outputs) ** 2, axis=1)))
    assert loss == pytest.approx(ev["loss"], rel=1e-12, abs=1e-15)
    out = cli("eval", run_dir)
    m = re.search(r"test accuracy ([0-9.]+)% .*, loss ([0-9.]+),", out)
    assert m, out
    assert acc == float(m.group(1)) / 100 and f"{loss:.4f}" == m.group(2)
    # Every call restarts the evaluation stream, as every evaluation does.
    np.testing.assert_array_equal(run.scores(x), scores)
    if run.config["relax"]["free_steps"] == 3:  # there the initial states matter
        assert not np.array_equal(run.scores(x[::-1])[::-1], scores)


def test_the_docs_example_runs(repo, tmp_path):
    """The example of docs/python.md's graph section runs as written (from a directory with configs/)."""
    with open(os.path.join(repo, "docs", "python.md")) as f:
        doc = f.read()
    start = doc.index("```python\n", doc.index("## DEEP graph networks")) + len("```python\n")
    (tmp_path / "configs").symlink_to(os.path.join(repo, "configs"))
    r = subprocess.run([sys.executable, "-c", doc[start:doc.index("```", start)]], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "GraphNetwork(n_input=2, n_output=2, hidden=[4]" in r.stdout
