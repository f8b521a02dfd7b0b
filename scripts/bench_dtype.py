"""float32 against the default precision (`model.dtype: auto`) on the same steps, per method and seed.

    python scripts/bench_dtype.py                                   # kto_mixed, dpo, orpo x seeds 1, 2, 42
    python scripts/bench_dtype.py --against bf16 --seeds 42         # float32 vs bf16 autocast forced on
    python scripts/bench_dtype.py --steps 24 --seeds 42 --recipes recipes/orpo.yaml
    python scripts/bench_dtype.py --results /tmp/b -- --set model.name=/path/to/tiny   # extra `prefopt run` args

Every training is an ordinary `python -m prefopt run` (its own process, so peak memory is its own) into
--results (default results/bench_dtype), with `--set model.dtype=float32` for one side and `--set model.dtype=auto`
for the other (with --against bf16, also `--set train.bf16=true`: bf16 autocast whatever `auto` would pick,
for a CPU where `auto` measured bf16 slower and chose float32); finished runs are skipped, so an interrupted
benchmark resumes. For each recipe it prints:
seconds per training step, evaluation seconds and peak memory (median over seeds), the held-out metrics
(mean and 95% t-interval over seeds, and whether the default's mean lies inside float32's interval), and
the per-step losses of the first seed side by side. With --markdown FILE the same tables are written there.
What `auto` resolved to (env.json) is printed too: on a CPU without native bf16 both sides are float32.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prefopt.cli import OneLineParser, at_least, readable_file, seed_list  # noqa: E402
SIDES = {"float32": ["model.dtype=float32"], "auto": ["model.dtype=auto"],  # each side's `--set`: the shipped
         "bf16": ["model.dtype=auto", "train.bf16=true"]}  # recipes pin float32, so `auto` is asked for
METRICS = ["reward_auc", "preference_accuracy", "kl", "desirable_nll", "verified_success"]


def sets_for(side: str, steps: int | None, extra: list[str]) -> list[str]:
    """The `--set` overrides of one side's runs (the recipe's own fingerprint follows from them)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--set", action="append", default=[])
    sets = p.parse_known_args(extra)[0].set
    return sets + SIDES[side] + ([f"train.max_steps={steps}"] if steps else [])


def run(recipe: str, side: str, seed: int, steps: int | None, results: Path, extra: list[str]) -> None:
    sets = [x for s in sets_for(side, steps, []) for x in ("--set", s)]  # extra's own --set follow as given
    cmd = [sys.executable, "-m", "prefopt", "run", recipe, "--results", str(results), "--no-compare",
           "--seeds", str(seed), *sets, *extra]
    print("+", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def collect(results: Path, recipe: str, seeds: list[int], steps: int | None, extra: list[str],
            against: str = "auto") -> tuple[str, pd.DataFrame]:
    """(recipe name, one row per finished run of this benchmark): side, seed, cost, metrics, per-step losses.
    Runs are found by the fingerprint of exactly the recipe each side ran, so runs of other settings in the
    same folder are never mixed in."""
    from prefopt.recipe import load_recipe
    from prefopt.results import is_finished, run_dir

    rows, name = [], None
    for side in ("float32", against):
        resolved = load_recipe(recipe, sets_for(side, steps, extra))
        name = resolved.name
        for seed in seeds:
            r = resolved.for_seed(seed)
            run = run_dir(results, r.name, seed, r.fingerprint())
            if not is_finished(run):
                continue
            m = json.loads((run / "metrics.json").read_text())
            env = json.loads((run / "env.json").read_text())
            log = pd.read_csv(run / "train_log.csv")
            losses = log.dropna(subset=["loss"]).set_index("step")["loss"]
            rows.append({"side": side, "seed": seed, "steps": m["steps"],
                         "resolved": env["precision"]["weights"] + (" + bf16 autocast" if m["autocast_bf16"] else ""),
                         "s_per_step": m["train_seconds"] / max(m["steps"], 1), "eval_seconds": m["eval_seconds"],
                         "peak_memory_mb": m["peak_memory_mb"], "losses": losses,
                         **{k: m.get(k, math.nan) for k in METRICS}})
    return name, pd.DataFrame(rows)


def ci95(values: np.ndarray) -> tuple[float, float, float]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def _mean_ci(m: tuple[float, float, float]) -> str:
    """mean [low, high]; the mean alone from one seed, which gives no interval."""
    return f"{m[0]:.3f}" if math.isnan(m[1]) else f"{m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}]"


def report(name: str, runs: pd.DataFrame, against: str = "auto") -> list[str]:
    out = [f"### {name}", ""]
    if runs.empty or set(runs["side"]) != {"float32", against}:
        return out + ["(no finished runs on both sides yet)", ""]
    by = {side: runs[runs["side"] == side].sort_values("seed") for side in ("float32", against)}
    f32, other = by["float32"], by[against]
    speedup = f32["s_per_step"].median() / other["s_per_step"].median()
    out += ["| side | resolved to | seeds | steps | s/step | eval s | peak MB |", "|---|---|---|---|---|---|---|"]
    for side, d in by.items():
        out.append(f"| {side} | {d['resolved'].iloc[0]} | {', '.join(map(str, d['seed']))} | {d['steps'].iloc[0]} | "
                   f"{d['s_per_step'].median():.2f} | {d['eval_seconds'].median():.1f} | "
                   f"{d['peak_memory_mb'].median():.0f} |")
    out += ["", f"training speed-up (float32 s/step / {against} s/step, medians): **{speedup:.2f}x**; evaluation: "
            f"{f32['eval_seconds'].median() / other['eval_seconds'].median():.2f}x", ""]
    out += [f"| metric | float32 mean [95% CI] | {against} mean [95% CI] | {against} inside float32's CI |",
            "|---|---|---|---|"]
    for metric in METRICS:
        a, b = ci95(f32[metric].to_numpy(float)), ci95(other[metric].to_numpy(float))
        if math.isnan(a[0]):
            continue
        inside = "n/a" if math.isnan(a[1]) else "yes" if a[1] <= b[0] <= a[2] else "**no**"
        out.append(f"| {metric} | {_mean_ci(a)} | {_mean_ci(b)} | {inside} |")
    common = sorted(set(f32["seed"]) & set(other["seed"]))
    if not common:
        return out + [""]
    seed = int(common[0])
    left, right = (d[d["seed"] == seed]["losses"].iloc[0] for d in (f32, other))
    both = pd.DataFrame({"float32": left, against: right})
    gap = np.nanmax(np.abs(both["float32"] - both[against]))
    out += ["", f"per-step loss, seed {seed}: max |difference| {gap:.4f}",
            "", f"| step | float32 | {against} |", "|---|---|---|"]
    out += [f"| {step} | {r['float32']:.4f} | {r[against]:.4f} |" for step, r in both.iterrows()]
    return out + [""]


def main(argv=None) -> int:
    p = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", type=readable_file("a recipe file, e.g. recipes/orpo.yaml"),
                   default=[str(ROOT / "recipes" / f"{n}.yaml") for n in ("kto_mixed", "dpo", "orpo")],
                   help="recipes compared, each on both sides, from the folder the command is started in (default: "
                   "the repository's recipes/kto_mixed.yaml recipes/dpo.yaml recipes/orpo.yaml)")
    p.add_argument("--seeds", type=seed_list, default=[1, 2, 42],
                   help="comma-separated seeds, one run per side each (default: 1,2,42)")
    p.add_argument("--steps", type=at_least(1), help="train.max_steps for both sides (default: each recipe's own)")
    p.add_argument("--results", type=Path, default=ROOT / "results" / "bench_dtype",
                   help="where the runs are written and found again (default: the repository's results/bench_dtype)")
    p.add_argument("--markdown", type=Path, help="also write the tables to this file (default: print only)")
    p.add_argument("--against", choices=["auto", "bf16"], default="auto",
                   help="the other side: the recipe's model.dtype auto (default), or bf16 autocast forced on")
    p.add_argument("--report-only", action="store_true", help="tabulate the finished runs, train nothing "
                   "(default: off)")
    p.add_argument("extra", nargs="*", help="after --: more `prefopt run` arguments for every run (default: none)")
    args = p.parse_args(argv)
    # the runs start in the repository (the shipped recipes' data paths are relative to it) while the options
    # are checked and the runs found again here: a relative recipe or --results was one file at parse time and
    # in collect(), another (or none) in the runs. The caller's paths, made absolute once.
    args.recipes = [str(Path(r).resolve()) for r in args.recipes]
    args.results = args.results.resolve()
    seeds = args.seeds
    try:
        for recipe in [] if args.report_only else args.recipes:
            for seed in seeds:  # alternate sides seed by seed, so a slow spell of the host hits both alike
                for side in ("float32", args.against):
                    run(recipe, side, seed, args.steps, args.results, args.extra)
    except subprocess.CalledProcessError as e:  # the run said why (its own line above): no traceback here
        print(f"bench_dtype: stopped: the run above failed (exit {e.returncode}); finished runs are kept and skipped "
              "by the same command", file=sys.stderr)
        return e.returncode if e.returncode in (2, 130) else 1
    title = "model.dtype: auto" if args.against == "auto" else "bf16 autocast forced on (train.bf16=true)"
    lines = [f"## float32 vs {title}", ""]
    for recipe in args.recipes:
        name, runs = collect(args.results, recipe, seeds, args.steps, args.extra, args.against)
        lines += report(name, runs, args.against)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        from prefopt.results import write_atomic

        write_atomic(args.markdown, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
