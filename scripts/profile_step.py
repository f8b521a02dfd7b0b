"""Where a training step's time goes: torch.profiler over a few steps of one recipe, after warm-up steps.

    python scripts/profile_step.py recipes/kto_mixed.yaml                     # 2 warm-up + 4 profiled steps
    python scripts/profile_step.py recipes/dpo.yaml --steps 6 --top 25 --set train.max_length=256
    python scripts/profile_step.py recipes/orpo.yaml --trace /tmp/orpo.json   # + a Chrome trace

The recipe trains through prefopt's own runner (same trainer, data order, precision and settings as
`prefopt run`) into a temporary results directory with `train.max_steps` = warm-up + profiled steps and no
checkpoints; evaluation is skipped. It prints the profiled seconds per step and the operators with the
most self CPU time (what to fix first). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prefopt.cli import OneLineParser, at_least, readable_file  # noqa: E402


def main(argv=None) -> int:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", type=readable_file("a recipe file, e.g. recipes/orpo.yaml"),
                    help="the recipe trained, e.g. recipes/orpo.yaml")
    ap.add_argument("--warmup", type=at_least(0), default=2, help="steps before profiling (default 2)")
    ap.add_argument("--steps", type=at_least(1), default=4, help="profiled steps (default 4)")
    ap.add_argument("--top", type=at_least(1), default=15, help="operators shown (default 15)")
    ap.add_argument("--trace", help="also write a Chrome trace (chrome://tracing, Perfetto) here "
                    "(default: none)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override, as for run (repeatable; default: none)")
    args = ap.parse_args(argv)

    import torch
    from transformers import TrainerCallback

    from prefopt import runner
    from prefopt.cli import main as prefopt_main

    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    window = {}

    class Window(TrainerCallback):
        """Profiles whole optimizer steps warmup+1 .. warmup+steps."""

        def on_step_begin(self, targs, state, control, **kw):
            if state.global_step == args.warmup:
                window["start"] = time.perf_counter()
                profiler.__enter__()

        def on_step_end(self, targs, state, control, **kw):
            if state.global_step == args.warmup + args.steps:
                profiler.__exit__(None, None, None)
                window["seconds"] = time.perf_counter() - window["start"]

    own_progress = runner._own_progress

    def with_window(trainer):
        own_progress(trainer)
        trainer.add_callback(Window())

    runner._own_progress = with_window  # (the one place the runner hands us its trainer)
    runner._evaluate_and_write = lambda *a, **k: None  # training only
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        rc = prefopt_main(["run", args.recipe, "--results", tmp, "--engine", "local", "--force",
                           "--set", f"train.max_steps={total}", "--set", f"train.save_steps={total + 1}",
                           *[a for s in args.set for a in ("--set", s)]])
    if rc != 0 or "seconds" not in window:
        print(f"profile_step: the run failed or stopped before step {total} (exit {rc})", file=sys.stderr)
        return rc or 1
    print(f"\n{args.recipe}: {args.steps} profiled steps after {args.warmup} warm-up, "
          f"{window['seconds'] / args.steps:.2f} s/step under the profiler (threads: {torch.get_num_threads()})")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    if args.trace:
        profiler.export_chrome_trace(args.trace)
        print(f"trace: {args.trace}")
    return 0


if __name__ == "__main__":
    from prefopt.allocator import reexec_with_heap_allocator

    reexec_with_heap_allocator()  # trains in this process: the same allocator settings as `prefopt run`
    sys.exit(main())
