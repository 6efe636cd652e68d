"""eqprop.plots returns Figures; the CLI's plot and sweep commands still draw through it."""
import os

import pytest

import eqprop

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    eqprop.train(overrides={"data.yin_yang_train": 200, "data.yin_yang_test": 100, "run.epochs": 2}, run_dir=d,
                 verbose=False)
    return d


def test_figures_are_returned_and_saved(run_dir, tmp_path):
    figs = {
        "curves": eqprop.plots.run_curves(run_dir, title="yin-yang"),
        "beta": eqprop.plots.sweep_beta(eqprop.gradcheck(n_points=(1, 4), betas=(0.05, 0.1, 0.2))),
        "periods": eqprop.plots.sweep_periods({"steps_per_point": [5, 5, 10, 10], "period": [1, 2, 1, 2],
                                               "cosine": [0.9, 0.99, 0.95, 0.999]}),
        "stability": eqprop.plots.stability([{"re": r, "im": i, "residual": abs(r + 1j * i) ** 4}
                                             for r in (-1, 0, 1) for i in (-1, 0, 1)]),
    }
    for name, fig in figs.items():
        assert isinstance(fig, Figure), name
        out = tmp_path / f"{name}.png"
        fig.savefig(out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_and_sweep_still_work(cli, run_dir, tmp_path):
    cli("plot", run_dir, "-o", tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0
    cli("sweep", "beta", "-N", "1,2", "--beta", "0.1,0.2", "--out", tmp_path / "sb")
    assert (tmp_path / "sb" / "sweep_beta.png").stat().st_size > 0
    fig = eqprop.plots.sweep_beta(tmp_path / "sb" / "sweep_beta.csv")  # the CLI's CSV from Python
    assert isinstance(fig, Figure)


def _fake_sweep(root):
    """A sweep directory as `eqprop train --seeds 0,1 --grid optimizer.lr=0.01,0.02` writes it, with hand-written
    metrics (2 epochs per run)."""
    import json
    points = []
    for lr in ("0.01", "0.02"):
        name = f"optimizer.lr={lr}"
        for seed in (0, 1):
            d = root / name / f"seed-{seed}"
            d.mkdir(parents=True)
            (d / "metrics.csv").write_text("epoch,train_loss,test_loss,test_acc,time_s\n"
                                           f"1,0.5,0.5,{0.5 + seed / 10},1.0\n2,0.4,0.4,{0.6 + seed / 10},1.0\n")
        points.append({"name": name, "values": {"optimizer.lr": lr}, "runs": [f"{name}/seed-0", f"{name}/seed-1"]})
    (root / "sweep.json").write_text(json.dumps({
        "axes": [{"key": "optimizer.lr", "values": ["0.01", "0.02"]}], "seeds": [0, 1],
        "columns": {"epoch": "epoch", "test_acc": "test_acc", "test_loss": "test_loss", "time_s": "time_s"},
        "points": points}))
    (root / "summary.csv").write_text("point\n")
    return root


def test_sweep_bands(tmp_path):
    root = _fake_sweep(tmp_path / "sweep")
    fig = eqprop.plots.sweep_runs(root)
    assert isinstance(fig, Figure)
    acc = fig.axes[0]
    assert [line.get_label() for line in acc.get_lines()] == ["optimizer.lr=0.01 (n=2)", "optimizer.lr=0.02 (n=2)"]
    assert list(acc.get_lines()[0].get_ydata()) == pytest.approx([55.0, 65.0])  # mean over the two seeds, in %
    assert len(acc.collections) == 2  # one band per point
    runs = [root / "optimizer.lr=0.01" / "seed-0", root / "optimizer.lr=0.01" / "seed-1"]
    assert [g[0] for g in eqprop.plots.group_seed_runs(runs)] == ["optimizer.lr=0.01"]
    assert eqprop.plots.group_seed_runs([root / "a", root / "b"]) is None  # plain runs stay overlaid


def test_cli_plot_of_a_sweep_directory(cli, tmp_path):
    root = _fake_sweep(tmp_path / "sweep")
    cli("plot", root)
    assert (root / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cli("plot", root / "optimizer.lr=0.01" / "seed-0", root / "optimizer.lr=0.01" / "seed-1", "-o", tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 0


def test_run_curves_read_every_trainers_columns(tmp_path):
    """`deep train` runs log error and MSE instead of loss and accuracy: the curves use them."""
    d = tmp_path / "deep"
    d.mkdir()
    (d / "metrics.csv").write_text("epoch,train_error,train_mse,nudged_error,train_accuracy\n"
                                   "1,0.5,0.3,0.5,0.5\n2,0.25,0.2,0.25,0.75\n")
    fig = eqprop.plots.run_curves([d])
    loss_axis = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "deep train"][0]
    assert list(loss_axis.get_ydata()) == [0.3, 0.2]
    error_axis = [ln for ln in fig.axes[1].get_lines() if ln.get_label() == "deep train"][0]
    assert list(error_axis.get_ydata()) == [50.0, 25.0]


def test_run_curves_skip_epochs_without_an_evaluation(tmp_path):
    """Epochs that run.eval_every did not evaluate have empty test cells: the test curve joins the others."""
    d = tmp_path / "every2"
    d.mkdir()
    (d / "metrics.csv").write_text("epoch,train_loss,train_acc,test_loss,test_acc\n"
                                   "1,0.5,0.6,,\n2,0.4,0.7,0.45,0.65\n3,0.3,0.8,0.35,0.75\n")
    fig = eqprop.plots.run_curves([d])
    test_loss = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "every2 test"][0]
    assert list(test_loss.get_xdata()) == [2.0, 3.0]
    assert list(test_loss.get_ydata()) == [0.45, 0.35]
    train_loss = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "every2 train"][0]
    assert list(train_loss.get_ydata()) == [0.5, 0.4, 0.3]
