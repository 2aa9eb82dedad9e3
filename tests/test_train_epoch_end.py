"""The shared end-of-epoch bookkeeping: evaluation cadence, history saved beside the
checkpoints, and the history of a resumed run — for fit and for the mesh loops."""

import numpy as np
import optax

from jaxcomp.data import synthetic
from jaxcomp.distributed import make_mesh
from jaxcomp.distributed.vectorized import fit_stacked, init_stacked
from jaxcomp.models import get_model
from jaxcomp.train.epoch_end import close_epoch, history_path, resumed_history


class _Ckpt:
    def __init__(self):
        self.saved = []

    def save(self, state, epoch):
        self.saved.append(epoch)


def test_close_epoch_cadence_checkpoint_history_and_callback(tmp_path):
    history, seen, evals = [], [], []
    ckpt = _Ckpt()

    def evaluate(state):
        evals.append(state)
        return {"accuracy": 0.5 + state, "nll": 1.0 - state}

    for epoch in range(1, 6):
        close_epoch(epoch, epochs=5, eval_every=2, record={"epoch": epoch, "train_loss": 1.0},
                    state=epoch / 10, evaluate=evaluate, history=history, ckpt=ckpt,
                    checkpoint_dir=str(tmp_path),
                    on_epoch=lambda e, s, r: seen.append((e, "test_accuracy" in r)))
    assert evals == [0.2, 0.4, 0.5]  # every 2nd epoch and the last
    assert seen == [(1, False), (2, True), (3, False), (4, True), (5, True)]
    assert ckpt.saved == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in resumed_history(str(tmp_path), 3)] == [1, 2, 3]
    assert resumed_history(str(tmp_path), 5)[-1]["test_accuracy"] == 1.0


def test_non_writer_process_writes_no_history(tmp_path):
    close_epoch(1, epochs=1, eval_every=1, record={"epoch": 1}, state=None,
                evaluate=lambda s: {"accuracy": 1.0, "nll": 0.0}, history=[], ckpt=_Ckpt(),
                checkpoint_dir=str(tmp_path), writer=False)
    assert not (tmp_path / "history.json").exists()
    assert history_path(str(tmp_path)).endswith("history.json")


def test_stacked_sweep_resumed_history_has_every_epoch(tmp_path):
    ds = synthetic(num_train=256, num_test=64)
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(8,))
    mesh, tx = make_mesh(), optax.sgd(0.05)
    ck = str(tmp_path / "ck")

    def run(epochs):
        state = init_stacked(model, ds, tx, seeds=[0, 1], mesh=mesh)
        return fit_stacked(model, ds, tx, state, mesh=mesh, epochs=epochs, batch_size=32,
                           checkpoint_dir=ck)

    first = run(2)
    resumed = run(3)  # restores epoch 2, trains the third
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for a, b in zip(first.history, resumed.history[:2], strict=True):
        np.testing.assert_allclose(np.asarray(a["test_accuracy"]),
                                   np.asarray(b["test_accuracy"]))
    assert np.asarray(resumed.history[-1]["test_accuracy"]).shape == (2,)
