"""Runs written by ``eqprop train`` / ``eqprop.train``, read back: ``load_run(path)`` -> ``Run``."""
import json
import pathlib

from . import _core

class Run:
    """A trained run (``eqprop train`` / ``eqprop.train``) of any model.kind, as ``load_run`` returns it.

    Attributes: ``path`` (pathlib.Path of the run directory), ``kind`` (the run's
    model.kind: "layered", "vector_field", "graph" or "gle"), ``network`` (the trained network,
    built from the saved config by the trainer's own builder: an ``eqprop.Network`` for a
    layered run, an ``eqprop.VectorFieldNetwork`` for a vector_field run, an
    ``eqprop.GraphNetwork`` with its pruning mask for a graph run, an ``eqprop.GleNetwork``
    with the neuron state training left for a gle run), ``config`` (the saved config, a
    dict of sections as in config.toml), ``metrics`` (one dict per row of metrics.jsonl, in
    order; empty when the file is missing), ``checkpoint`` (the checkpoint file read, str).
    """

    def __init__(self, path, data_dir=None):
        """Reads the run at ``path`` (a run directory or its checkpoint.eqck); see load_run."""
        path = pathlib.Path(path)
        self._saved = _core._load_run(path, data_dir)
        self.path = path.parent if path.is_file() else path
        self._data_dir = data_dir
        self.kind = self._saved.kind
        self.network = self._saved.network
        self.config = self._saved.config
        self.checkpoint = self._saved.checkpoint
        self.metrics = _read_metrics(self.path / "metrics.jsonl")

    def predict(self, x):
        """Integer class predictions, shape (batch,) int64, for inputs ``x`` of shape (batch, n_inputs).

        ``x`` holds raw inputs as ``eqprop.load_dataset`` returns them: they are converted to
        float32 and normalised by the run's data.normalize_mean / normalize_std, as the trainer
        prepares data. The free phase then relaxes with the run's relax.* settings in batches
        of run.eval_batch, exactly as ``eqprop eval`` scores the test split; the class is the
        argmax of ``scores(x)`` (ties to the lower index), -1 for a sample whose scores are
        NaN/Inf. So ``mean(predict(x_test) == y_test)`` is ``evaluate()["accuracy"]``.

        A graph run relaxes with its dynamics.* and relax.* settings from initial states drawn
        from its evaluation stream, which restarts at every call as at every evaluation: a
        sample's prediction can depend on where it stands in ``x`` (the draws it gets), and
        ``predict(x_test)`` with the whole test split in order is what ``eqprop eval`` scores.

        A gle run's ``x`` is (batch, steps), one sequence per row: a copy of ``network`` (the
        state training left) runs the batches in order without teaching, its state going on
        from batch to batch, as every evaluation runs the test split; the scores are the
        outputs summed over time. So here too a prediction depends on what precedes it in
        ``x``, and ``predict(x_test)`` with the whole test split is what ``eqprop eval`` scores.
        """
        return self._saved.predict(x)

    def scores(self, x):
        """The output scores, shape (batch, n_classes) in the network's dtype, that ``predict`` takes the argmax of.

        A layered network's output layer or readout scores, a vector-field network's readout
        probabilities, a graph network's output states (one output neuron s scores the two
        classes (1 - s, s)), a gle network's outputs summed over time; computed as ``predict``
        computes them.
        """
        return self._saved.scores(x)

    def evaluate(self, data_dir=None):
        """``eqprop.evaluate`` of this run on its test split: {accuracy, top5, loss, n, n_non_finite,
        n_not_converged, mean_residual}. data_dir None: the one given to load_run, else the run's
        own choice (the config's data.dir, else the directory the run recorded)."""
        return _core.evaluate(self._saved.checkpoint, data_dir if data_dir is not None else self._data_dir)

    def __repr__(self):
        return f"Run({str(self.path)!r}, kind={self.kind!r}, network={self.network!r}, epochs={len(self.metrics)})"


def _read_metrics(file):
    if not file.exists():
        return []
    with open(file) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_run(path, data_dir=None):
    """Reads a run written by ``eqprop train`` or ``eqprop.train`` (any model.kind) into a ``Run``.

    path: the run directory (or its checkpoint.eqck). data_dir: where the run's data is
    (None: as ``eqprop eval`` chooses: the config's data.dir, else the directory the run
    recorded; Yin-Yang is generated and needs none). The network is sized by the input size,
    classes and sample shape the checkpoint records; for a checkpoint that records none
    (older runs), the test split is read to size it exactly as the trainer did, and its files
    must have the checksums the run recorded.
    Raises eqprop.DataError for a path that is not a run (no checkpoint.eqck) or a
    checkpoint of another trainer (gep, gle: its meta "kind" is not "layered").
    """
    return Run(path, data_dir)
