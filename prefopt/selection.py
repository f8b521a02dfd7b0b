"""Keeping the best checkpoint on the validation split (`eval.select: best`).

At every checkpoint the trainer saves, the policy is scored on the validation rows with the same
method-neutral metrics as the test split (prefopt.metrics), the value is logged to the run's
`validation_log.csv`, and the adapter of the best checkpoint so far is kept in `checkpoints/best/`. After
training the model gets those weights back before it is saved and scored on the test split, which is never
read here. An interrupted run resumes with its log and its best adapter.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

HIGHER_IS_BETTER = {"reward_auc": True, "preference_accuracy": True, "reward_margin": True,
                    "desirable_nll": False, "kl": False}
SELECTIONS = ("last", "best")


def best_row(log: list[dict], metric: str) -> dict | None:
    """The logged checkpoint with the best value (the earliest among equals; NaN never wins)."""
    scored = [r for r in log if r[metric] == r[metric]]
    if not scored:
        return None
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    return max(scored, key=lambda r: (sign * r[metric], -r["step"]))


def make_callback(*, metric, rows, pairs, tok, batch_size, max_length, run: Path, best_dir: Path,
                  main: bool):
    """A transformers TrainerCallback doing the above (built here so that transformers is imported late)."""
    import pandas as pd
    import torch
    from transformers import TrainerCallback

    from . import results as res
    from .metrics import score_rows, summarize

    log_file = run / "validation_log.csv"

    class BestCheckpoint(TrainerCallback):
        def __init__(self):
            self.log = pd.read_csv(log_file).to_dict("records") if log_file.is_file() else []
            self.reference = None  # the reference's validation scores, computed by the first scoring

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step > 0 and state.global_step not in {r["step"] for r in self.log}:
                self.score(state.global_step, model)  # resumed from a checkpoint that was never scored

        def on_save(self, args, state, control, model=None, **kwargs):
            self.score(state.global_step, model)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if state.global_step not in {r["step"] for r in self.log}:
                self.score(state.global_step, model)

        def score(self, step: int, model) -> None:
            import time

            start = time.perf_counter()
            device = next(model.parameters()).device.type
            # in the weights' own precision, as the test split is scored (prefopt.evaluation): bf16 rounding
            # swallows a small LoRA update, so checkpoints would be chosen on distorted kl and margins
            with _unwrapped_forward(model), torch.autocast(device, enabled=False):
                scores = score_rows(model, tok, rows, batch_size=batch_size, max_length=max_length,
                                    cached=self.reference)
            self.reference = scores["reference"]
            value = summarize(rows, scores, pairs)[metric]
            row = {"step": int(step), metric: value}
            self.log.append(row)
            best = best_row(self.log, metric)  # None while no checkpoint has a value (a diverged model: NaN)
            if main and best is not None and best["step"] == step:
                model.save_pretrained(str(best_dir))  # the adapter only; written before the log names it
            # each scoring's seconds are logged with it, so a resumed run counts its earlier attempts' scorings
            # too, as train_seconds counts their steps (a sum kept in memory counted the last attempt's only)
            row["seconds"] = time.perf_counter() - start
            if main:
                res.write_atomic(log_file, pd.DataFrame(self.log).to_csv(index=False))

        def restore(self, model) -> dict:
            """Load the best checkpoint's adapter into `model`; what was chosen, for trained.json."""
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            last = max(r["step"] for r in self.log)
            # no checkpoint with a value: none was kept, so the last weights stay (selected_validation_value NaN)
            best = best_row(self.log, metric) or next(r for r in self.log if r["step"] == last)
            if best["step"] != last:
                set_peft_model_state_dict(model, load_file(str(best_dir / "adapter_model.safetensors")))
            # seconds spent scoring checkpoints, every attempt's (inside train_seconds); NaN where a log written
            # before the seconds were logged holds rows without them: unknown, not the last attempt's alone
            seconds = math.fsum(float(r.get("seconds", math.nan)) for r in self.log)
            return {"selected_step": int(best["step"]), "select_metric": metric,
                    "selected_validation_value": float(best[metric]), "validation_seconds": seconds}

    return BestCheckpoint()


@contextlib.contextmanager
def _unwrapped_forward(model):
    """The model's own forward for the duration: under mixed precision accelerate replaces `forward` during
    training by one that enters autocast itself (keeping the original as `_original_forward`), which no
    context set outside the call can turn off."""
    original = getattr(model, "_original_forward", None)
    if original is None:
        yield
        return
    wrapped = model.forward
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped
