#!/usr/bin/python3
"""Train holomorphic EP (N = 4, |beta| = 0.5) on MNIST, 784-256-256-10, with the C++ trainer.

Data from --data-dir, else $EQPROP_DATA, else ../shared/data. --quick trains on a few
hundred samples for one epoch (a smoke test, not an accuracy claim).

    PYTHONPATH=build/python /usr/bin/python3 python/examples/train_mnist_hep.py --quick
"""
import argparse
import os
import tempfile

import eqprop

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 training / 200 test samples, 1 epoch")
    ap.add_argument("--data-dir", default=os.environ.get("EQPROP_DATA") or os.path.join(REPO, "..", "shared", "data"))
    ap.add_argument("--run-dir", default=None, help="default: a new temporary directory")
    a = ap.parse_args()

    overrides = {"run.epochs": 1}
    if a.quick:
        overrides.update({"data.limit_train": 500, "data.limit_test": 200})
    run_dir = a.run_dir or tempfile.mkdtemp(prefix="mnist_hep-")

    def on_epoch(row):
        print(f"epoch {row['epoch']}: train acc {100 * row['train_acc']:.2f}%  test acc {100 * row['test_acc']:.2f}%")

    r = eqprop.train(os.path.join(REPO, "configs", "mnist_hep.toml"), overrides, run_dir=run_dir, data_dir=a.data_dir,
                     on_epoch=on_epoch, verbose=False)
    print(f"final test accuracy {100 * r['test_accuracy']:.2f}% after {r['epochs_done']} epoch(s); run in {r['run_dir']}")
    eqprop.plots.run_curves(r["run_dir"]).savefig(os.path.join(r["run_dir"], "curves.png"), dpi=110)


if __name__ == "__main__":
    main()
