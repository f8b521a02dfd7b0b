"""results/summary.md as text: the verdict, each test's tables, the paired analyses' sections and the notes
a reader needs beside them, from the tables `prefopt.compare` builds. Nothing is written here; the per-family
table reads the runs' generation records (prefopt.samples), and `compare.rebuild` writes the text.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd
from scipy import stats

from .compare import (COST, HEADLINE, LEGEND, MEMORY_NOTE, QUALITY, REFERENCE, TOKENS_NOTE, complete_pools,
                      fold_count, is_nan, short_name, with_groups)
from .samples import family_table, precision, read_generations


def _fmt(x) -> str:
    if is_nan(x):
        return "–"
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _plus_minus(mean: float, half: float) -> str:
    """Mean and CI half-width to the half-width's second significant digit: 0.720 ± 0.050."""
    if half <= 0 or not math.isfinite(half):
        return f"{_fmt(mean)} ± 0"
    d = min(6, max(0, 1 - math.floor(math.log10(half))))
    return f"{mean:.{d}f} ± {half:.{d}f}"


def _cell(row, m) -> str:
    mean, low, high, n = (row.get(f"{m}_{k}") for k in ("mean", "ci95_low", "ci95_high", "n"))
    if is_nan(mean):
        return "–"
    if row["recipe"] == REFERENCE:
        return _fmt(mean) + (" ¹" if m == "preference_accuracy" else "")
    runs = row.get("n_runs", row["n_seeds"])
    unit = "runs" if (row.get("n_folds") or 1) > 1 else "seeds"
    seeds = "1 seed" if n == runs == 1 else f"{n} of {runs} {unit}"  # others recorded no value
    if is_nan(low) and unit == "runs":  # cross-fitted: a mean over folds, no interval by design
        return _fmt(mean) + ("" if n == runs else f" ({seeds})")
    if is_nan(low):
        return f"{_fmt(mean)} ({seeds}, no CI)"
    return _plus_minus(mean, (high - low) / 2) + ("" if n == runs else f" ({seeds})")


def _table(rows: pd.DataFrame, metrics: list[str], ranked: bool) -> list[str]:
    head = (["rank"] if ranked else []) + ["recipe", "method", "strategy", "seeds"] + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    rank = 0
    for _, r in rows.iterrows():
        is_ref = r["recipe"] == REFERENCE
        rank += not is_ref
        cells = ([("" if is_ref else str(rank))] if ranked else []) + [
            "reference (untrained)" if is_ref else str(r["recipe"]), str(r["method"]), str(r["strategy"] or ""),
            "" if is_ref else _seeds_cell(r)] + [_cell(r, m) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _seeds_cell(r) -> str:
    folds = r.get("n_folds")
    return str(int(r["n_seeds"])) + (f" × {int(folds)} folds" if not is_nan(folds) and folds > 1 else "")


def _significance_lines(split: pd.DataFrame, order: list[str]) -> list[str]:
    if HEADLINE not in split or split[HEADLINE].isna().all():
        return [f"No run on this split recorded {HEADLINE}: nothing to test."]
    runs = split.set_index("group").loc[order].reset_index()
    lines = [f"**Which {HEADLINE} differences are not significant** (Welch t-test over seeds; p ≥ 0.05 means the "
             "seeds cannot tell the two apart; no correction for multiple comparisons):", ""]
    if len(order) < 2:
        lines = [f"Only one recipe on this split: no {HEADLINE} difference between recipes to test."]
    for t in significance(runs) if len(order) > 1 else []:
        pair = f"{t['a']} vs {t['b']}"
        if t["verdict"] == "single seed":
            few = [g for g, n in ((t["a"], t["n_a"]), (t["b"], t["n_b"])) if n < 2]
            lines.append(f"- {pair}: single seed: cannot tell ({' and '.join(few)} "
                         f"{'has' if len(few) == 1 else 'have'} fewer than 2 seeds)")
        elif t["verdict"] == "cannot tell":
            lines.append(f"- {pair}: cannot tell (no spread across seeds to test with)")
        elif t["verdict"] == "not significant":
            lines.append(f"- {pair}: not significant (p = {t['p']:.2g}); treat them as tied")
        else:
            lines.append(f"- {pair}: significant (p = {t['p']:.2g}); {t['higher']} is higher")
    lines += ["", f"Against the untrained reference ({HEADLINE} = 0.5 exactly), one-sample t-test over seeds:", ""]
    for g in order:
        v = runs.loc[runs["group"] == g, HEADLINE].dropna().to_numpy(dtype=float)
        if len(v) < 2:
            lines.append(f"- {g}: single seed: cannot tell")
            continue
        p = float(stats.ttest_1samp(v, 0.5).pvalue)
        side = "above" if v.mean() > 0.5 else "below"
        lines.append(f"- {g}: " + ("cannot tell (no spread across seeds)" if math.isnan(p) else
                                   f"{side} the reference (p = {p:.2g})" if p < 0.05 else
                                   f"not significantly different from the reference (p = {p:.2g})"))
    return lines


def summary_markdown(summary: pd.DataFrame, runs: pd.DataFrame, analyses: dict | None = None) -> str:
    """summary.md; `analyses` (split fingerprint -> paired.Analysis) saves recomputing the statistics."""
    runs = with_groups(runs)
    analyses = dict(analyses or {})
    tests = list(summary["test"].unique()) if "test" in summary else []
    for fp in tests:
        if fp not in analyses and has_records(split := runs[runs["test"] == fp]):
            from .paired import analyze

            analyses[fp] = analyze(split)
    present = [c for c in summary.columns if c.endswith("_mean") and summary[c].notna().any()]
    quality = [m for m in QUALITY if f"{m}_mean" in present]
    cost = [m for m in COST if f"{m}_mean" in present]
    lines = ["# prefopt comparison", "",
             "Test-split metrics of every finished run (the validation split, where recipes use one, is never "
             "scored here), one section per test split (eval fingerprint; runs on "
             "different splits are never compared): in the paired tables a value [its 95% bootstrap interval over "
             "prompts and seeds], in the means tables the mean over seeds ± half-width of the 95% Student-t "
             "confidence interval; recipes ranked by the headline metric, " + HEADLINE + ".", ""]
    lines[2:2] = verdict_block(runs, tests, analyses)
    lines += [f"- **{m}**{' (headline)' if m == HEADLINE else ''}: {LEGEND[m]}" for m in quality]
    for fp, s in (summary.groupby("test", sort=True) if "test" in summary else []):
        split = runs[runs["test"] == fp]
        spread_split = complete_pools(split)
        folds = fold_count(split)
        per_fold = split.drop_duplicates("fold") if folds > 1 else split.iloc[:1]  # (a fold's sizes: every recipe)
        sizes = ", ".join(f"{int(per_fold[k].sum())} held-out {w}" for k, w in (("eval_rows", "rows"), ("eval_pairs", "pairs"))
                          if k in split and per_fold[k].notna().all())
        title = (f"## Cross-fitted test `{short_name(fp)}` ({folds} folds: every labeled prompt held out once)"
                 if folds > 1 else f"## Test split `{fp}` (held out)")
        lines += ["", title, "",
                  f"Data: {_data_names(split)}" + (f", {sizes}" if sizes else "") +
                  (f" over {folds} folds" if folds > 1 else "") +
                  f"; {len(split)} finished run{'s' * (len(split) != 1)}.", ""]
        lines += _autocast_scored(split)
        lines += _pair_note(split)
        paired = _paired_section(split, analyses.get(fp))
        lines += paired
        lines += family_table(read_generations(spread_split))  # (a seed missing a fold: in no table)
        means = ("Means over runs (each fold's value; folds × seeds), without a t-interval: folds share most of "
                 "their training data, so their values are not independent (the paired bootstrap above gives "
                 "the intervals):" if folds > 1 else
                 "Means over seeds (± half-width of the 95% Student-t interval):")
        lines += [means, ""] if paired else []
        lines += _table(s, quality, ranked=True)
        measured = [m for m in ("desirable_nll", "verified_success") if m in quality]
        scored = (f"; its {' and '.join(measured)} {'is' if len(measured) == 1 else 'are'} the mean of the runs' "
                  + " and ".join(f"{m}_ref" for m in measured) + " (the untrained model scored in each run)"
                  if measured else "")
        pairs = "preference_accuracy_mean" in s and s.loc[s["recipe"] == REFERENCE, "preference_accuracy_mean"].notna().any()
        lines += ["", ("¹ The reference's preference_accuracy is 0, not 0.5: with r ≡ 0 for the untrained model no "
                       "pair has r(chosen) > r(rejected) (ties are not wins). Its reward_auc 0.5, reward_margin 0 and "
                       f"kl 0 hold by definition{scored}." if pairs else
                       f"The reference's reward_auc 0.5 and kl 0 hold by definition (r ≡ 0){scored}."), ""]
        lines += _mixed_reference(spread_split, measured)  # the runs the reference row averages
        lines += tuned_lines(split)
        if folds > 1:
            lines += spread_lines(spread_split, [r for r in s["recipe"] if r != REFERENCE])
        if not paired:  # runs made before per-item records: only the seed-level tests are possible
            lines += _significance_lines(split, [r for r in s["recipe"] if r != REFERENCE])
        if cost:
            lines += ["", "Training examples used and cost (mean over folds × seeds):" if folds > 1 else
                      "Training examples used and cost (mean ± 95% CI over seeds):", ""]
            lines += _table(s[s["recipe"] != REFERENCE], cost, ranked=False)
            lines += ["", TOKENS_NOTE, "", MEMORY_NOTE]
    for fp, split in runs.groupby("test", sort=True):
        if "test" not in summary or fp not in set(summary["test"]):
            have = split.groupby(["group", "seed"])["fold"].apply(lambda f: ", ".join(str(int(x)) for x in sorted(f)))
            lines += ["", f"## Cross-fitted test `{short_name(fp)}`: unfinished", "",
                      f"No recipe has all {fold_count(split)} folds of a seed yet: " +
                      "; ".join(f"{g} seed {s} (folds {v} of {fold_count(split)} finished)" for (g, s), v in have.items())
                      + "."]
    return "\n".join(lines) + "\n"


def _mixed_reference(split: pd.DataFrame, measured: list[str]) -> list[str]:
    """Where a test's runs ran in several precisions, the reference row's *_ref means average untrained models
    that answered differently (bf16 autocast against float32): said, with each precision's own value. `split`:
    the runs that row averages (complete_pools: a seed still missing a fold is in neither)."""
    kinds = pd.Series([precision(r) for r in split.itertuples()], index=split.index)
    measured = [m for m in measured if f"{m}_ref" in split]
    if kinds.nunique() < 2 or not measured:
        return []
    own = "; ".join(f"{kind}: " + ", ".join(f"{m}_ref {_fmt(g[f'{m}_ref'].mean())}" for m in measured)
                    + f" ({', '.join(sorted(g['group'].unique()))})" for kind, g in split.groupby(kinds, sort=True))
    return [f"Its runs ran in {kinds.nunique()} precisions, in which the untrained model scores differently: the "
            f"reference's {' and '.join(measured)} above average them. Each precision's own: {own}.", ""]


def _data_names(split: pd.DataFrame) -> str:
    """The test's data file as its first run names it, and the other names its runs gave the same file."""
    names = list(dict.fromkeys(split["data_path"].dropna().astype(str))) if "data_path" in split else []
    first = f"`{split.iloc[0].get('data_path', '?')}`"
    others = [f"`{n}`" for n in names if f"`{n}`" != first]
    return first + (f" (also named {', '.join(others)})" if others else "")


def verdict_block(runs: pd.DataFrame, tests: list, analyses: dict) -> list[str]:
    """What summary.md opens with: each split's verdict from its Holm-adjusted paired tests."""
    from .paired import verdict_lines

    lines = []
    for fp in tests:
        split = runs[runs["test"] == fp]
        name = (f"cross-fitted test `{short_name(fp)}`" if fold_count(split) > 1 else f"test split `{short_name(fp)}`")
        a = analyses.get(fp)
        said = verdict_lines(a) if a is not None and a.results else \
            ["- No paired verdict: " + ("its runs kept no per-item records (rerun them to get one); the seed-level "
                                        "tests are in its section." if a is None else "not every fold has finished."
                                        if a.folds > 1 else "no run's per-item records could be used (its section "
                                        "says why).")]
        lines += ([f"On the {name}:"] if len(tests) > 1 else []) + said + [""]
    head = "**Verdict** (from the Holm-adjusted paired tests; how they are made, and every number, below):"
    return [head, "", *lines] if lines else []


def tuned_lines(split: pd.DataFrame) -> list[str]:
    """Which recipes `prefopt tune` set, with its trial count and chosen values (from the runs' records)."""
    from .paired import tuned_record

    if "tuned" not in split:
        return []
    lines = []
    for group, g in split.groupby("group", sort=True):
        t = tuned_record(g)
        if t:
            chosen = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in t["chosen"].items())
            lines.append(f"- **{group}** is tuned: {t['trials']} {t['sampler']} trials of {t['recipe']} on the "
                         f"{t['metric']} (trial {t['trial']} won); chosen {chosen}.")
    # (not the winning trial's validation score: picked for being the highest, it overstates the recipe; the
    # test split's numbers above are its result)
    return ["", "Tuned recipes (`prefopt tune`; every choice made on the validation split):", "", *lines, ""] \
        if lines else []


def spread(g: pd.DataFrame, metric: str, across: str) -> float:
    """Mean standard deviation of a per-run metric `across` folds or seeds, within each value of the other
    (fold-to-fold spread: how much the prompts of a fold move a number; seed spread: how much training
    noise does). NaN where no fold or seed has two runs."""
    within = "seed" if across == "fold" else "fold"
    sds = g.groupby(within)[metric].std(ddof=1).dropna()
    return float(sds.mean()) if len(sds) else math.nan


def spread_lines(split: pd.DataFrame, order: list[str]) -> list[str]:
    """Per-fold values and fold-to-fold against seed spread, for a cross-fitted split."""
    metrics = [m for m in ("reward_auc", "verified_success") if m in split and split[m].notna().any()]
    folds = fold_count(split)
    lines = ["", "Per-fold values (mean over seeds), and the spread of a run's value across folds (same seed) and "
             "across seeds (same fold), as standard deviations:", "",
             "| recipe | metric | " + " | ".join(f"fold {f}" for f in range(folds)) + " | sd across folds | "
             "sd across seeds |", "|---|---|" + "---|" * (folds + 2)]
    for group in order:
        g = split[split["group"] == group]
        for m in metrics:
            by_fold = g.groupby("fold")[m].mean()
            cells = [_fmt(by_fold.get(f, math.nan)) for f in range(folds)]
            lines.append(f"| {group} | {m} | " + " | ".join(cells) + f" | {_fmt(spread(g, m, 'fold'))} | "
                         f"{_fmt(spread(g, m, 'seed'))} |")
    return lines + [""]


def has_records(split: pd.DataFrame) -> bool:
    return any((Path(d) / "eval_items.csv").is_file() for d in split["run_dir"])


def _paired_section(split: pd.DataFrame, analysis=None) -> list[str]:
    """prefopt.paired's verdict and tables when the split's runs kept per-item records, else nothing."""
    if not has_records(split):
        return []
    from .paired import section

    return section(split, analysis)


def _autocast_scored(split: pd.DataFrame) -> list[str]:
    """A warning when runs of this split were scored under bf16 autocast (prefopt before `scored_in`), which
    rounds small policy changes away: their row metrics are not comparable to float32-scored runs'."""
    if "autocast_bf16" not in split:
        return []
    scored = split["scored_in"] if "scored_in" in split else pd.Series(None, index=split.index)
    old = split[split["autocast_bf16"].fillna(False).astype(bool) & scored.isna()]
    if old.empty:
        return []
    return [f"{len(old)} of these runs were scored under bf16 autocast, as they trained (prefopt before "
            "2026-12-01; runs since are scored in float32, `scored_in`). That rounding understates small changes: "
            "one float32-trained adapter scored both ways gave kl 0.0061 against 0.0102 and reward_margin 0.085 "
            "against 0.169 (DPO), kl 0.089 against 0.093 and reward_margin -0.20 against +0.04 (KTO); reward_auc "
            "0.583 against 0.604 and 0.628 against 0.635. Compare their kl and reward_margin with float32-scored "
            "runs only after rerunning them (`--force`).", ""]


def _pair_note(split: pd.DataFrame) -> list[str]:
    """Why the pair metrics are missing from this split's tables, where the runs recorded why (metrics.json's
    pair_metrics_note: no held-out prompt with both labels), instead of columns silently left out."""
    measured = "preference_accuracy" in split and split["preference_accuracy"].notna().any()
    if "pair_metrics_note" not in split or measured:
        return []
    notes = split["pair_metrics_note"].dropna().unique()
    return [f"{notes[0]}.", ""] if len(notes) else []


def significance(runs: pd.DataFrame, metric: str = HEADLINE) -> list[dict]:
    """Welch t-test over seeds for every pair of groups on one split (rows in the order given)."""
    values = {g: d[metric].dropna().to_numpy(dtype=float) for g, d in runs.groupby("group", sort=False)}
    out = []
    for a, b in itertools.combinations(values, 2):
        va, vb = values[a], values[b]
        p = math.nan
        if min(len(va), len(vb)) >= 2:
            p = float(stats.ttest_ind(va, vb, equal_var=False).pvalue)
        verdict = ("single seed" if min(len(va), len(vb)) < 2 else "cannot tell" if math.isnan(p)
                   else "not significant" if p >= 0.05 else "significant")
        hi, lo = (a, b) if va.mean() >= vb.mean() else (b, a)
        out.append({"a": a, "b": b, "higher": hi, "lower": lo, "n_a": len(va), "n_b": len(vb), "p": p,
                    "verdict": verdict})
    return out
