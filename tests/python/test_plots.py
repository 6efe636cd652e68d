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
