"""How closely two finished runs of one recipe, seed and split agree (e.g. one rerun on another machine):
each metric, the per-item scores, the generations and the per-step losses, side by side.

    python -m prefopt run recipes/orpo.yaml --seeds 42 --results /tmp/here --no-compare
    python scripts/same_run.py results/runs/orpo/seed42-2f5003e4d9 /tmp/here/runs/orpo/seed42-2f5003e4d9

Prints markdown (--markdown FILE also writes it). Timings, memory and whether the reference came from the
cache are machine facts, listed apart; a recipe, split or seed that differs is refused (exit 2): those runs
are not the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefopt.cli import OneLineParser  # noqa: E402

MACHINE = {"eval_seconds", "train_seconds", "train_tokens_per_second", "peak_memory_mb", "reference_cached"}
SCORES = ("logp", "ref_logp", "kl_sum")


def _fmt(x) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def compare(a: Path, b: Path) -> list[str]:
    """Markdown lines comparing run folders `a` and `b`."""
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    lines = [f"`{a}` (A) against `{b}` (B)", "", "| metric | A | B | relative difference |", "|---|---|---|---|"]
    for key in sorted((set(ma) | set(mb)) - MACHINE):
        va, vb = ma.get(key), mb.get(key)
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
            rel = abs(va - vb) / max(abs(va), 1e-12)
            lines.append(f"| {key} | {_fmt(va)} | {_fmt(vb)} | {'same' if va == vb else f'{rel:.1e}'} |")
        elif va != vb:
            lines.append(f"| {key} | {_fmt(va)} | {_fmt(vb)} | differs |")
    lines += ["", "Machine facts (not results): " + "; ".join(
        f"{k} {_fmt(ma.get(k))} / {_fmt(mb.get(k))}" for k in sorted(MACHINE) if k in ma or k in mb), ""]
    items = [pd.read_csv(r / "eval_items.csv").sort_values("row_id", ignore_index=True) for r in (a, b)]
    if items[0]["row_id"].equals(items[1]["row_id"]):
        worst = {c: float((items[0][c] - items[1][c]).abs().max()) for c in SCORES}
        lines.append(f"Per-item scores, {len(items[0])} rows: largest difference " +
                     ", ".join(f"{c} {v:.2g}" for c, v in worst.items()) +
                     f"; completion tokens {'identical' if items[0]['tokens'].equals(items[1]['tokens']) else 'differ'}.")
    gens = [{g["prompt_id"]: g for g in map(json.loads, (r / "eval_generations.jsonl").read_text().splitlines())}
            if (r / "eval_generations.jsonl").is_file() else {} for r in (a, b)]
    shared = sorted(set(gens[0]) & set(gens[1]))
    if shared:
        same = sum(gens[0][p]["policy_text"] == gens[1][p]["policy_text"] for p in shared)
        verdicts = sum(gens[0][p]["policy_pass"] == gens[1][p]["policy_pass"] for p in shared)
        lines.append(f"Generations: {same} of {len(shared)} policy answers identical, {verdicts} verdicts the same.")
    logs = [pd.read_csv(r / "train_log.csv") for r in (a, b)]
    losses = [log["loss"].dropna().to_numpy() for log in logs if "loss" in log]
    if len(losses) == 2 and len(losses[0]) == len(losses[1]) and len(losses[0]):
        gap = np.abs(losses[0] - losses[1])
        lines.append(f"Per-step losses, {len(gap)} steps: {'identical' if not gap.any() else f'largest difference {gap.max():.2g}'}.")
    return lines + [""]


def main(argv=None) -> int:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="a finished run's folder (runs/<recipe>/<run>), the reference (A)")
    ap.add_argument("b", type=Path, help="the other run's folder, of the same recipe, seed and split (B)")
    ap.add_argument("--markdown", type=Path, help="also write the lines to this file (default: print only)")
    args = ap.parse_args(argv)
    for run in (args.a, args.b):
        if not (run / "metrics.json").is_file():
            print(f"same_run: {run}: no metrics.json; give a finished run's folder", file=sys.stderr)
            return 2
    recipes = [(r / "recipe.yaml").read_text() if (r / "recipe.yaml").is_file() else None for r in (args.a, args.b)]
    if recipes[0] != recipes[1]:
        print(f"same_run: {args.b}: its recipe.yaml differs from {args.a}'s; these are not the same run",
              file=sys.stderr)
        return 2
    lines = compare(args.a, args.b)
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
