"""What a user sees while prefopt works: phase lines with timings, progress bars, a closing block.

Only the main process prints (under torchrun every rank runs the same code). Bars are drawn on a terminal
only; piped to a file or run by CI, progress comes as a few plain lines instead of bar redraws. Library
chatter (dataset-preparation bars, weight-loading bars, deprecation warnings raised inside transformers,
TRL, PEFT, accelerate or datasets) is quieted unless `--verbose` is given or the user set the libraries'
own variables; warnings raised at prefopt's own call sites, and every other warning, stay visible.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

LIBRARIES = r"(transformers|trl|peft|accelerate|datasets|huggingface_hub)(\.|$)"
_verbose = False


def main_process() -> bool:
    return int(os.environ.get("RANK", 0)) == 0


def interactive() -> bool:
    return sys.stderr.isatty()


def say(message: str) -> None:
    if main_process():
        print(message, flush=True)


def warn_data(report: dict) -> None:
    """The data report's warnings (repeated rows, completions labelled both ways), one line each on stderr:
    not errors, so the command goes on, but said where `prefopt data` and `prefopt run` are read."""
    if main_process():
        for line in report.get("data_warnings") or ():
            print(f"prefopt: warning: {line}", file=sys.stderr, flush=True)


def quiet_libraries(verbose: bool = False) -> None:
    """Call before transformers/TRL are imported: some settings are read at import time."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    # setdefault: a user's own TRANSFORMERS_VERBOSITY=info (etc.) wins
    for key, value in (("TRANSFORMERS_VERBOSITY", "error"), ("DATASETS_VERBOSITY", "error"),
                       ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TRL_EXPERIMENTAL_SILENCE", "1")):
        os.environ.setdefault(key, value)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARIES)


@contextlib.contextmanager
def phase(title: str, done: str = "done"):
    """`title ...` now, `title: done (N s)` when the block ends (N s: wall time of the block); the block may
    replace `done` through the yielded dict's "note"."""
    say(f"prefopt: {title} ...")
    start = time.perf_counter()
    result = {"note": done}
    yield result
    say(f"prefopt: {title}: {result['note']} ({time.perf_counter() - start:.1f} s)")


def progress(total: int, desc: str):
    """A tqdm bar on a terminal (main process only); a silent stand-in elsewhere."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"prefopt: {desc}", leave=False, dynamic_ncols=True,
                disable=not (interactive() and main_process()))


def trainer_progress():
    """A transformers TrainerCallback: a step bar on a terminal, else a line every tenth of the run; the
    per-step metric dicts the trainer would print go to train_log.csv only."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def __init__(self):
            self.bar, self.start, self.every = None, 0.0, 1

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()
            self.every = max(1, state.max_steps // 10)
            self.bar = progress(state.max_steps, "training")
            self.bar.update(state.global_step)  # resumed runs start part-way

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            # the trainer logs after on_step_end, so the step's own loss is known only here
            if not logs or "loss" not in logs:
                return
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}")
            step = state.global_step
            if not interactive() and (step % self.every == 0 or step == state.max_steps):
                took = time.perf_counter() - self.start
                say(f"prefopt:   step {step}/{state.max_steps}, loss {logs['loss']:.4f} ({took:.0f} s)")

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return StepProgress()


def data_line(report: dict, precision: dict) -> str:
    """The data report's key counts, and the precision, on one line."""
    counts = (f"{report['pairs']} pairs" if report.get("pairs") is not None else
              f"{report['desirable']} desirable : {report['undesirable']} undesirable rows")
    single = report.get("single_label_batches")
    batches = f", {single} single-label micro-batches of {report['batches']}" if single is not None else ""
    autocast = " + bf16 autocast" if precision["autocast_bf16"] else ""
    verifier = (f"verifier {report['verifier']} on {report.get('verified_prompts')} prompts"
                if report.get("verifier") else f"no verifier ({report.get('verifier_note')})")
    validation = (f"; validation {report['validation_rows']} rows of {report['validation_prompts']} prompts"
                  if report.get("validation_rows") else "")
    fold = f" (fold {report['fold']} of 0..{report['folds'] - 1})" if report.get("fold") is not None else ""
    return (f"prefopt: data: {counts} ({report['strategy']}{batches}); held out{fold} {report['eval_rows']} rows of "
            f"{report['eval_prompts']} prompts, {report['eval_pairs']} pairs{validation}; {verifier}; weights "
            f"{precision['weights']}{autocast}")


def closing_block(run, metrics: dict) -> None:
    """The run's headline numbers against the untrained reference, and where everything is."""
    def num(key, digits=3):
        value = metrics.get(key)
        return "n/a" if value is None or value != value else f"{value:.{digits}f}"

    lines = [f"prefopt: finished {metrics['recipe']} (seed {metrics['seed']}): train {metrics['train_seconds']:.0f} s,"
             f" eval {metrics['eval_seconds']:.0f} s",
             f"  run directory      {run}",
             f"  reward_auc         {num('reward_auc')}   (untrained reference: 0.5)",
             f"  preference_acc.    {num('preference_accuracy')}   over {metrics.get('eval_pairs', 0)} held-out pairs"
             + (" (none to measure: pair_metrics_note in metrics.json says why)"
                if metrics.get("pair_metrics_note") else ""),
             f"  desirable_nll      {num('desirable_nll')}   (untrained reference: {num('desirable_nll_ref')})",
             f"  kl                 {num('kl', 4)}"]
    if "verified_success" in metrics:
        lines.append(f"  verified_success   {num('verified_success')}   (untrained reference: "
                     f"{num('verified_success_ref')}) on {metrics['verified_prompts']} prompts")
    elif metrics.get("verified_note"):
        lines.append(f"  verified_success   n/a ({metrics['verified_note']})")
    say("\n".join(lines))
