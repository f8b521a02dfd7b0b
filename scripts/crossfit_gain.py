"""What cross-fitting bought: every pair of recipes' difference on one metric, on the single test split and
on the cross-fitted test of the same data file, with interval widths side by side and which pairs only the
cross-fitted test decides.

    python scripts/crossfit_gain.py                       # results/, reward_auc, seed 42 on both sides
    python scripts/crossfit_gain.py --seeds all           # the single split with every seed it has
    python scripts/crossfit_gain.py --metric kl --markdown results/crossfit_gain.md

Both sides come from `prefopt compare`'s own statistics (prefopt.paired: prompt-clustered paired bootstrap,
permutation p, Holm across the pairs shown), restricted to the recipes both tests have complete and, by
default, to the seeds of the cross-fitted runs with every fold finished: the same recipe names and
training seeds, each model trained on 80% of the prompts on both sides (the shipped single split keeps 10%
for validation and 10% for test; the cross-fitted runs train on 4 of 5 folds, no validation). Recipes are
matched by name: the two sides' recipes differ in their split settings (and the cross-fitted runs skip the
generation test), not in training settings. Reads results only; writes nothing but --markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefopt import compare, paired, stats  # noqa: E402
from prefopt.cli import OneLineParser  # noqa: E402
from prefopt.errors import did_you_mean  # noqa: E402


def tests_of(runs: pd.DataFrame) -> tuple[str, str]:
    """(single-split test, cross-fitted test) on the same data file: the cross-fitted partition with the
    most runs, and the single split of its data file with the most runs. ValueError when there is none."""
    folded = runs["folds"].fillna(1) > 1 if "folds" in runs else pd.Series(False, index=runs.index)
    if not folded.any():
        raise ValueError("no cross-fitted runs (data.folds > 1) in these results; run a recipe with --folds K")
    cross = runs[folded]["test"].value_counts().index[0]
    data = runs[runs["test"] == cross]["data_path"].iloc[0]
    # one file however the runs named it (data/x, ./data/x, its absolute path), as prefopt compare takes it
    files = runs["data_path"].map(compare.same_file, na_action="ignore")
    single = runs[~folded & (files == compare.same_file(data))]
    if single.empty:
        raise ValueError(f"no single-split runs on {data} to compare with; run a recipe on it without --folds")
    return single["test"].value_counts().index[0], cross


def restrict(split: pd.DataFrame, recipes: list[str], seeds: list[int] | None) -> pd.DataFrame:
    keep = split["group"].isin(recipes)
    if seeds is not None:
        keep &= split["seed"].isin(seeds)
    return split[keep]


def gain_table(single: paired.Analysis, cross: paired.Analysis, metric: str, alpha: float = 0.05) -> pd.DataFrame:
    """One row per pair present on both sides: difference, interval and its width, Holm p, on each side."""
    a, b = single.results[metric].pairwise, cross.results[metric].pairwise
    rows = []
    for pair, (d, lo, hi, _, p, *_) in b.items():
        other = a.get(pair) or a.get(pair[::-1])
        if other is None:
            continue
        # each pair read as higher minus lower on the cross-fitted test
        flip = -1 if d < 0 else 1
        sign = flip * (1 if pair in a else -1)
        sd, slo, shi, _, sp, *_ = other
        slo, shi = sorted((sign * slo, sign * shi))
        lo, hi = sorted((flip * lo, flip * hi))
        first, second = pair if flip == 1 else pair[::-1]
        rows.append({"pair": f"{first} − {second}", "single": sign * sd, "single_low": slo, "single_high": shi,
                     "single_width": shi - slo, "single_p": sp, "cross": flip * d, "cross_low": lo,
                     "cross_high": hi, "cross_width": hi - lo, "cross_p": p})
    table = pd.DataFrame(rows)
    if len(table):
        table["width_ratio"] = table["single_width"] / table["cross_width"]
        table["decided"] = np.select([(table["single_p"] < alpha) & (table["cross_p"] < alpha),
                                      table["cross_p"] < alpha, table["single_p"] < alpha],
                                     ["both", "cross-fitted only", "single split only"], "neither")
    return table


def markdown(table: pd.DataFrame, single: paired.Analysis, cross: paired.Analysis, metric: str,
             names: tuple[str, str], seeds: str) -> str:
    def ci(d, lo, hi):
        return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"

    p = stats.format_p
    n_single, n_cross = single.n_prompts[metric], cross.n_prompts[metric]
    lines = [f"## {metric}: single split `{names[0][:12]}` ({n_single} prompts) vs cross-fitted `{names[1][:12]}` "
             f"({n_cross} prompts, {cross.folds} folds); seeds {seeds}", "",
             f"Paired by prompt, bootstrap seed {paired.SEED} ({paired.RESAMPLES} resamples), Holm across the "
             f"{len(table)} pairs on each side; a pair is decided where its Holm p < 0.05.", "",
             "| pair | single split Δ [95% CI] | width | Holm p | cross-fitted Δ [95% CI] | width | Holm p | "
             "width ratio | decided |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table.sort_values("cross", ascending=False).itertuples():
        lines.append(f"| {r.pair} | {ci(r.single, r.single_low, r.single_high)} | {r.single_width:.3f} | "
                     f"{p(r.single_p)} | {ci(r.cross, r.cross_low, r.cross_high)} | {r.cross_width:.3f} | "
                     f"{p(r.cross_p)} | {r.width_ratio:.2f} | {r.decided} |")
    if len(table):
        counts = table["decided"].value_counts()
        lines += ["", f"Median interval width: single split {table['single_width'].median():.3f}, cross-fitted "
                  f"{table['cross_width'].median():.3f} (median ratio {table['width_ratio'].median():.2f}x). "
                  f"Decided: {counts.get('both', 0)} on both, {counts.get('cross-fitted only', 0)} only when "
                  f"cross-fitted, {counts.get('single split only', 0)} only on the single split, "
                  f"{counts.get('neither', 0)} on neither (tied)."]
    # resamples the intervals left out, said as summary.md says it (nothing where none were)
    notes = [f"{side}: {line}" for side, a in (("Single split", single), ("Cross-fitted", cross))
             for line in paired.unvalued_lines({metric: a.results[metric]}) if line]
    lines += ["", *notes] if notes else []
    return "\n".join(lines) + "\n"


def seed_list(text: str) -> list[int] | str:
    """--seeds: comma-separated integers, or 'all' (a bad one was a ValueError traceback after loading the runs)."""
    if text == "all":
        return text
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: expected comma-separated integers or 'all', e.g. 1,2,42") from None


def metric_name(text: str) -> str:
    """--metric: one prefopt compare compares (paired.SHOWN), refused while the options are parsed: a misspelt
    name was refused only after every run's records were read and analysed. Whether these runs measured it is
    known only then (main)."""
    if text not in paired.SHOWN:
        raise argparse.ArgumentTypeError(f"unknown metric '{text}'; {did_you_mean(text, paired.SHOWN)}")
    return text


def main(argv=None) -> int:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", default=str(ROOT / "results"),
                    help="a results folder holding cross-fitted and single-split runs (default: results)")
    ap.add_argument("--metric", type=metric_name, default="reward_auc",
                    help=f"one of {', '.join(paired.SHOWN)} (default: reward_auc)")
    ap.add_argument("--seeds", type=seed_list, default=None, help="single-split seeds, comma-separated, or 'all' "
                    "(default: the seeds of the cross-fitted runs)")
    ap.add_argument("--markdown", help="also write the table to this file (default: print only)")
    args = ap.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"crossfit_gain: {args.results}: no such folder; give a results folder (runs/<recipe>/<run>/)",
              file=sys.stderr)
        return 2
    runs = compare.load_runs(Path(args.results))
    if runs.empty:  # (before with_groups, which needs a run's columns: a KeyError traceback otherwise)
        print(f"crossfit_gain: {args.results}: no finished runs (runs/<recipe>/<run>/metrics.json); give the "
              "folder `prefopt run --results` wrote", file=sys.stderr)
        return 2
    runs = compare.with_groups(runs)
    try:  # (results that hold runs, but none this comparison can use: exit 1 through SystemExit, as a crash)
        single_fp, cross_fp = tests_of(runs)
    except ValueError as e:
        print(f"crossfit_gain: {args.results}: {e}", file=sys.stderr)
        return 2
    cross_split = runs[runs["test"] == cross_fp]
    cross_all = paired.analyze(cross_split)
    recipes = sorted(set(cross_all.runs) & set(runs[runs["test"] == single_fp]["group"]))
    seeds = (None if args.seeds == "all" else args.seeds if args.seeds
             else sorted(int(s) for s in compare.complete_pools(cross_split)["seed"].unique()))
    single = paired.analyze(restrict(runs[runs["test"] == single_fp], recipes, seeds))
    cross = paired.analyze(restrict(cross_split, recipes, None))
    if args.metric not in single.results or args.metric not in cross.results:
        print(f"crossfit_gain: --metric: {args.metric}: not measured on both tests; give one both measure, e.g. "
              "reward_auc", file=sys.stderr)
        return 2
    text = markdown(gain_table(single, cross, args.metric), single, cross, args.metric, (single_fp, cross_fp),
                    "all" if seeds is None else ", ".join(map(str, seeds)))
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
