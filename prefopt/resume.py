"""What a run folder holds from an earlier attempt, and what a run that continues must find again: the
checkpoint it restarts from (the newest one saved whole), the training seconds before it, and the checks
that it resumes in the precision, on the data, the process count and the model files it began with. Read
only; the runner writes.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from . import results as res
from .errors import UserError
from .recipe import Recipe


def check_resumes_in_same_precision(run: Path, precision: dict, file: str) -> None:
    """A run that trained part-way (a complete checkpoint, or training done and evaluation left) continues
    only in the precision it began in. `dtype: auto` resolves per machine and thread count (bf16 autocast on
    one CPU, float32 on another) while the run id stays the same, so without this a run moved between machines
    would train its steps in two precisions, and env.json, rewritten at the start, would name only the second.
    The fix named is deleting that one run: --force would also retrain every finished seed or fold of a batch."""
    before = stored(run / "env.json").get("precision") or {}
    again = f"or delete {run} to train it again from the start here"
    if not all(k in before for k in ("weights", "autocast_bf16")):
        raise UserError(str(run / "env.json"), "precision", "the run trained part-way but its env.json does not "
                        f"say in which precision, so it cannot continue in the same one; {again}")
    if any(before[k] != precision.get(k) for k in ("weights", "autocast_bf16")):
        def said(p):
            return f"{p.get('weights')} weights" + (" under bf16 autocast" if p.get("autocast_bf16") else "")
        raise UserError(file, "model.dtype", f"{run} began with {said(before)} and would continue here with "
                        f"{said(precision)}; finish it where model.dtype resolves as it did there (that machine, "
                        f"the same thread count), {again}")


def started(run: Path) -> bool:
    """Trained part-way: a complete checkpoint, or training done and evaluation left."""
    return (run / "trained.json").exists() or any(
        _whole_json(p) for p in (run / "checkpoints").glob("checkpoint-*/trainer_state.json"))


def stored(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def check_same_data(run: Path, report: dict, file: str, *, finished: bool) -> None:
    """A run folder stands (finished) or continues (started) only on the data it began with: the run id
    names the resolved recipe, not data.path's contents, so an edited data file (or another process count,
    which reorders the training rows) would otherwise be skipped as done or trained on in two versions."""
    before = stored(run / "data_report.json").get("data_fingerprint")
    if before is None or before == report["data_fingerprint"]:
        return
    what = "finished" if finished else "began"
    raise UserError(file, "data.path", f"{run} {what} on other data (its rows, or their training order under "
                    f"another process count, changed since); --force trains it again on this data, or use "
                    f"another --results folder to keep both")


def check_resumes_on_same_processes(run: Path, world_size: int, backend: str, file: str) -> None:
    """A run continues with the process count and backend it began with: its checkpoint's data position and
    env.json (rewritten at the start) would otherwise describe two trainings as one."""
    env = stored(run / "env.json")
    for field, now in (("world_size", world_size), ("backend", backend)):
        if env.get(field) not in (None, now):
            raise UserError(file, "model.backend" if field == "backend" else "processes",
                            f"{run} began with {field} {env[field]} and would continue with {now}; finish it as it "
                            f"began, or delete {run} to train it again from the start")


def check_resumes_on_same_model(run: Path, files: list | None, recipe: Recipe) -> None:
    """A run continues only on the model files it began with: the run id names model.name, not what is in that
    folder, so a model replaced there (rebuilt, reconverted, another revision) would get the rest of the
    steps, or the evaluation, of an adapter trained on the first one. Files are compared by name, size and
    content (refcache.model_files); a run begun before they were recorded is trusted."""
    before = stored(run / "env.json").get("model_files")
    if before is None or files is None or before == files:
        return
    was, now = ({f[0]: list(f) for f in x} for x in (before, files))
    changed = sorted(n for n in was.keys() | now.keys() if was.get(n) != now.get(n))
    raise UserError(recipe.source, "model.name", f"{run} began with other files in {recipe.model.name} "
                    f"({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''} changed since), and would "
                    f"continue on these; put the model it began with back, or delete {run} to train it again "
                    "from the start")


def _whole_json(path: Path) -> bool:
    """Whether the file parses: transformers writes trainer_state.json last, so a checkpoint without a whole
    one was cut off mid-save and will not be resumed from (last_complete_checkpoint)."""
    import json

    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def step_of(checkpoint: str) -> int:
    return int(Path(checkpoint).name.split("-")[-1])


CLOCK = "clock.json"  # in the checkpoints folder: {step: training seconds up to that checkpoint, all attempts}


def clock_callback(folder: Path, start: float, earlier: float):
    """A TrainerCallback recording, before each checkpoint is written, the training seconds up to it
    (earlier attempts' included), so that a resumed run reports what all its steps took, not only its last
    attempt. Written first: a checkpoint complete enough to resume from always has its entry."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save:  # set by the trainer's own flow callback, which runs first
                seen = json.loads((folder / CLOCK).read_text()) if (folder / CLOCK).is_file() else {}
                res.write_json(folder / CLOCK, {**seen, str(state.global_step): earlier + time.perf_counter() - start})

    return Clock()


def seconds_before(checkpoint: str) -> float:
    """Training seconds up to `checkpoint` from the clock; NaN where it was not recorded (a run begun before
    the clock existed): the cost table then says unknown rather than count the last attempt as the whole."""
    clock = Path(checkpoint).parent / CLOCK
    seconds = json.loads(clock.read_text()).get(Path(checkpoint).name.split("-")[-1]) if clock.is_file() else None
    return math.nan if seconds is None else float(seconds)


def last_complete_checkpoint(folder: Path) -> str | None:
    """Newest checkpoint whose trainer_state.json (the last file transformers writes) parses; newer,
    half-written ones (a kill during a save) are removed so resuming never reads them."""
    steps = sorted((int(p.name.split("-")[-1]), p) for p in folder.glob("checkpoint-*")
                   if p.name.split("-")[-1].isdigit()) if folder.is_dir() else []
    for _, path in reversed(steps):
        if _whole_json(path / "trainer_state.json"):
            return str(path)
        shutil.rmtree(path, ignore_errors=True)
    return None
