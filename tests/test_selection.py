"""prefopt.selection: the checkpoint kept by `eval.select: best` (scoring stubbed: no model is trained)."""

from __future__ import annotations

import math

import pytest


class Model:
    """A one-parameter torch model with the one PEFT method the callback calls."""

    def __init__(self, saved: list):
        import torch

        self.net, self.saved = torch.nn.Linear(1, 1), saved

    def parameters(self):
        return self.net.parameters()

    def save_pretrained(self, path):
        self.saved.append(path)


@pytest.fixture
def callback(tmp_path, monkeypatch):
    """make_callback on kl with the validation scores given by `values` (one per scoring, in order)."""
    from prefopt import metrics, selection

    values = []
    monkeypatch.setattr(metrics, "score_rows", lambda *a, **k: {"reference": None})
    monkeypatch.setattr(metrics, "summarize", lambda rows, scores, pairs: {"kl": values.pop(0)})
    cb = selection.make_callback(metric="kl", rows=[], pairs=[], tok=None, batch_size=1, max_length=None,
                                 run=tmp_path, best_dir=tmp_path / "best", main=True)
    return cb, values


def test_a_checkpoint_without_a_value_is_logged_and_never_kept(callback):
    """A diverged model scores NaN on the validation split: its checkpoint is logged, none is kept for it (the
    first scoring used to stop training with a TypeError: no best checkpoint yet), and a later checkpoint
    with a value becomes the best."""
    cb, values = callback
    saved = []
    values += [math.nan, 0.3, math.nan]
    model = Model(saved)
    cb.score(5, model)
    assert saved == []
    cb.score(10, model)
    assert len(saved) == 1  # step 10: the first with a value
    cb.score(15, model)
    assert len(saved) == 1
    assert [r["step"] for r in cb.log] == [5, 10, 15] and math.isnan(cb.log[0]["kl"])


def test_with_no_checkpoint_valued_the_last_weights_stay_and_the_record_says_none_was_chosen(callback):
    cb, values = callback
    saved = []
    values += [math.nan, math.nan]
    model = Model(saved)
    cb.score(5, model)
    cb.score(10, model)
    chosen = cb.restore(model)  # loading an adapter would fail: none was saved
    assert saved == [] and chosen["selected_step"] == 10 and math.isnan(chosen["selected_validation_value"])
