"""glibc's own allocator against prefopt's heap settings (prefopt/allocator.py), same recipe, seed and steps.

    python scripts/bench_malloc.py                                   # recipes/orpo.yaml, 24 steps, 2 rounds
    python scripts/bench_malloc.py recipes/kto_mixed.yaml --steps 12 --rounds 3 --markdown results/bench_malloc.md

Each round trains and evaluates the recipe twice, each an ordinary `python -m prefopt run` in its own process:
once with PREFOPT_MALLOC=system (glibc as it comes) and once as prefopt starts by default, alternating which
goes first so a slow spell of the host hits both alike. Both write into one results folder, so the untrained
reference is scored once (by a warm-up run that is not counted) and read from the cache by every measured
run. Prints seconds per step, the scoring and generation phases, peak memory, and whether every result file
(per-step losses, per-item scores, generations, metrics; timings left out) is identical between the two.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prefopt.allocator import SETTINGS as ALLOCATOR  # noqa: E402
from prefopt.cli import OneLineParser, at_least, readable_file  # noqa: E402

SIDES = {"glibc": {"PREFOPT_MALLOC": "system"}, "prefopt heap": {}}
PHASES = {"s/step": r"training \d+ steps: ([\d.]+) s/step", "scoring s": r"scoring .*: done \(([\d.]+) s\)",
          "generation s": r"generating .*: done \(([\d.]+) s\)"}
TIMING = re.compile(r"second|runtime|per_second|memory")


def run_once(recipe: str, steps: int, results: Path, env: dict) -> tuple[dict, dict]:
    """(phase timings and peak memory, every result with timings removed) of one fresh run."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "PREFOPT_MALLOC"}
    out = subprocess.run([sys.executable, "-m", "prefopt", "run", recipe, "--results", str(results), "--force",
                          "--no-compare", "--set", f"train.max_steps={steps}"], capture_output=True, text=True, cwd=ROOT,
                         env={**base, "HF_HUB_OFFLINE": "1", **env})
    if out.returncode != 0:
        raise SystemExit(f"bench_malloc: the run failed:\n{out.stderr[-2000:]}")
    log = out.stdout + out.stderr
    row = {k: float(re.search(p, log).group(1)) for k, p in PHASES.items() if re.search(p, log)}
    run = max((results / "runs").glob("*/*/metrics.json"), key=lambda p: p.stat().st_mtime).parent  # this one
    metrics = json.loads((run / "metrics.json").read_text())
    row["peak MB"] = round(metrics["peak_memory_mb"])
    expected = {} if env.get("PREFOPT_MALLOC") == "system" else ALLOCATOR
    if json.loads((run / "env.json").read_text())["malloc"] != expected:  # the run must have had its settings
        raise SystemExit(f"bench_malloc: {run} did not run with the allocator settings {expected}")
    log_history = pd.read_csv(run / "train_log.csv")
    files = {"metrics": {k: v for k, v in metrics.items() if not TIMING.search(k)},
             "train_log": log_history[[c for c in log_history.columns if not TIMING.search(c)]].to_csv(index=False),
             "eval_items": (run / "eval_items.csv").read_text(),
             "generations": (run / "eval_generations.jsonl").read_text() if (run / "eval_generations.jsonl").exists()
             else ""}
    return row, files


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)])


def main(argv=None) -> int:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default="recipes/orpo.yaml",
                    type=readable_file("a recipe file, e.g. recipes/orpo.yaml", base=ROOT),
                    help="the recipe every run trains; a relative path is read from the repository "
                    "(default: recipes/orpo.yaml)")
    ap.add_argument("--steps", type=at_least(1), default=24, help="train.max_steps of every run (default 24)")
    ap.add_argument("--rounds", type=at_least(1), default=2,
                    help="measured runs per allocator, alternating which goes first (default 2)")
    ap.add_argument("--markdown", type=Path, help="also write the table here (default: print only)")
    args = ap.parse_args(argv)
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        run_once(args.recipe, 1, results, {})  # warm-up: fills the reference cache every measured run reads
        for r in range(args.rounds):
            order = list(SIDES) if r % 2 == 0 else list(SIDES)[::-1]
            for side in order:
                row, files = run_once(args.recipe, args.steps, results, SIDES[side])
                rows.append({"round": r + 1, "allocator": side, **row})
                outputs.setdefault(side, []).append(files)
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    same = all(f == outputs["glibc"][0] for fs in outputs.values() for f in fs)
    medians = table.groupby("allocator")[[c for c in table.columns if c not in ("round", "allocator")]].median()
    speed = medians.loc["glibc", "s/step"] / medians.loc["prefopt heap", "s/step"]
    text = "\n".join([f"{args.recipe}, {args.steps} steps, {args.rounds} rounds (reference cached)", "",
                      markdown(table), "",
                      f"training speed-up (median s/step, glibc / prefopt heap): {speed:.2f}x; "
                      f"losses, per-item scores, generations and metrics identical: {same}"])
    print(text)
    if args.markdown:
        from prefopt.results import write_atomic

        write_atomic(args.markdown, text + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
