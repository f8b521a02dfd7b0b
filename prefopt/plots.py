"""The comparison's figures (matplotlib, Agg canvas: no display needed). Pure: figure in, PNG bytes out.

    training_loss.png, reward_margin.png   one panel per recipe, one line per run
    heldout_<split>.png                    every held-out metric per recipe with its 95% CI
    forest_<split>.png                     each recipe's difference from the untrained model, paired CI
    pairwise_<split>.png                   row-minus-column differences, Holm p in each cell
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from .compare import HEADLINE, QUALITY, REFERENCE, complete_pools, reference_values, short_name, with_groups
from .samples import precisions
from .stats import format_p


def _figure(n_panels: int, width: float = 4.2, height: float = 3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _colours(recipes) -> dict:
    """One colour per recipe, by name, so a recipe looks the same in every panel and figure of a split:
    matplotlib's default cycle up to 9 recipes, tab20's 18 beyond (then they repeat). Both without their
    greys, which belong to the untrained reference."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    names = sorted(set(recipes))
    cycle = [f"C{i}" for i in range(10)] if len(names) <= 9 else list(colormaps["tab20"].colors)
    cycle = [c for c in cycle if len(set(np.round(to_rgb(c), 2))) > 1]
    return {n: cycle[i % len(cycle)] for i, n in enumerate(names)}


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def curves_figure(runs: pd.DataFrame, logs: dict, column: str, title: str):
    """One panel per recipe, one line per run; runs whose log lacks `column` are skipped. None if no data."""
    runs = with_groups(runs)
    # a fold names a cross-fitted run's test; single-split tests are told apart by fingerprint when needed
    folded = runs["fold"].notna() if "fold" in runs else pd.Series(False, index=runs.index)
    split_count = runs[~folded].groupby("group")["test"].nunique()
    panels = {}
    for _, r in runs.sort_values([c for c in ("group", "test", "seed", "fold") if c in runs]).iterrows():
        log = logs.get(r["run_dir"])
        if log is None or column not in log:
            continue
        points = log[["step", column]].apply(pd.to_numeric, errors="coerce").dropna()
        if len(points):
            fold = r.get("fold")
            label = (f"seed {r['seed']} fold {int(fold)}" if fold is not None and pd.notna(fold) else
                     f"seed {r['seed']}" + (f" · test {short_name(r['test'])}" if split_count.get(r["group"], 0) > 1 else ""))
            panels.setdefault(r["group"], []).append((label, points))
    if not panels:
        return None
    fig, axes = _figure(len(panels))
    for ax, (group, lines) in zip(axes, panels.items()):
        for label, pts in lines:
            ax.plot(pts["step"], pts[column], label=label, linewidth=1.2)
        ax.set(title=group, xlabel="step", ylabel=column)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


BOUNDED = {"reward_auc", "preference_accuracy", "verified_success"}  # rates in [0, 1]


def heldout_bars(s: pd.DataFrame, metric: str, comparison=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(value, low, high, what the whiskers are) per row of one split's summary, for one metric.

    Where the paired analysis covers the metric, its estimate and bootstrap interval over prompts and seeds
    (what summary.md prints); otherwise the mean over seeds with the Student-t interval, drawn only from
    three seeds up (with two, t = 12.7 gives whiskers far outside any sensible range) and cut at 0 and 1
    for a rate. Cross-fitted runs get none there: folds share most of their training data, so a t-interval
    over them would claim a precision they do not have (summary_table leaves it blank for the same reason)."""
    names = list(s["recipe"])
    kinds = s["precision"] if "precision" in s else [None] * len(s)  # (with_precisions: reference rows only)
    refs = [_paired_reference(comparison, k) if n == REFERENCE else None for n, k in zip(names, kinds)]
    if comparison is not None and all(n in comparison.estimates or r is not None for n, r in zip(names, refs)):
        rows = [r if n == REFERENCE else comparison.estimates[n] for n, r in zip(names, refs)]
        value, low, high = (np.array([r[i] for r in rows], dtype=float) for i in range(3))
        return value, low, high, "bootstrap over prompts and seeds" + _unvalued_note(comparison)
    value = s[f"{metric}_mean"].to_numpy(dtype=float)
    low, high = (s.get(f"{metric}_ci95_{k}", pd.Series(math.nan, index=s.index)).to_numpy(dtype=float)
                 for k in ("low", "high"))
    few = s.get(f"{metric}_n", pd.Series(math.nan, index=s.index)).fillna(0).to_numpy(dtype=float) < 3
    low, high = np.where(few, np.nan, low), np.where(few, np.nan, high)
    if metric in BOUNDED:
        low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
    if _n_folds(s) > 1:
        return value, low, high, "none (folds of one split are not independent)"
    return value, low, high, "t over seeds, 3+ seeds"


def _unvalued_note(comparison) -> str:
    """A second line under a bootstrap interval where resamples without a value were left out of it
    (Comparison.unvalued, which summary.md also gives): else the plot alone reads as over all of them."""
    if not comparison.unvalued:
        return ""
    return f"\nover resamples with a value: up to {comparison.unvalued} of {comparison.n_resamples} had none"


def _paired_reference(comparison, kind) -> tuple | None:
    """The paired analysis' untrained model: in one precision (a reference bar of with_precisions), or the
    one that stands for all; None where it has none for that precision."""
    if comparison is None:
        return None
    if not isinstance(kind, str):
        return comparison.reference
    return (comparison.references or {}).get(kind)


def with_precisions(s: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """One split's summary rows with the reference row made one per precision, labelled in `precision`, where
    its runs ran in several (`precisions`): the untrained model scores differently in each (bf16 autocast
    against float32), so one bar would stand for the first recipe's precision, or average them, unsaid. Its
    *_ref means are each precision's own runs' (summary.md gives them beside the means table)."""
    split = complete_pools(split)  # (the runs summary_table averaged)
    kinds = pd.Series(precisions(split), index=split.index, dtype=object)
    if kinds.isna().all() or not (s["recipe"] == REFERENCE).any():
        return s
    ref = s[s["recipe"] == REFERENCE].iloc[0]
    measured = [m for m in QUALITY if pd.notna(ref.get(f"{m}_mean"))]
    rows = [{**ref, "precision": kind, **{f"{m}_mean": v for m, v in reference_values(runs, measured).items()}}
            for kind, runs in split.groupby(kinds, sort=True)]
    return pd.concat([s[s["recipe"] != REFERENCE], pd.DataFrame(rows)], ignore_index=True)


def _n_folds(s: pd.DataFrame) -> int:
    folds = s.get("n_folds", pd.Series(dtype=float)).dropna()
    return int(folds.max()) if len(folds) else 1


def _tick(recipe: str, n, seeds, folds) -> str:
    """The bar's label: how many runs its value averages, as seeds or, cross-fitted, seeds x folds."""
    if recipe == REFERENCE:
        return recipe
    if not pd.isna(folds) and folds > 1 and not pd.isna(seeds) and n == seeds * folds:
        return f"{recipe} ({int(seeds)}×{int(folds)})"
    return f"{recipe} ({int(n)})"


def metrics_figure(summary: pd.DataFrame, fp: str, comparisons: dict | None = None, seeds_used: dict | None = None,
                   split: pd.DataFrame | None = None):
    """Bars of each held-out metric per recipe (reference in grey) with 95% CI whiskers, one split.
    `seeds_used` (metric -> recipe -> seeds the paired analysis kept): a bar drawn from the paired bootstrap
    counts those, not the summary's, which include seeds the analysis left out (records damaged or missing,
    no generation records). `split` (the test's runs, with_groups): a reference bar per precision where they
    ran in several (with_precisions)."""
    s = summary[summary["test"] == fp]
    s = s if split is None else with_precisions(s, split)
    metrics = [m for m in QUALITY if f"{m}_mean" in s and s[f"{m}_mean"].notna().any()]
    fig, axes = _figure(len(metrics), width=4.6, height=3.4)
    labels = list(s["recipe"])
    colour_of = _colours(r for r in labels if r != REFERENCE)
    blank = pd.Series(pd.NA, index=s.index)
    for ax, m in zip(axes, metrics):
        value, low, high, whiskers = heldout_bars(s, m, (comparisons or {}).get(m))
        colors = ["0.65" if r == REFERENCE else colour_of[r] for r in labels]
        x = np.arange(len(labels))
        ax.bar(x, np.nan_to_num(value), color=colors)
        # only real intervals: a zero-length whisker with caps (the reference's r = 0 by definition, or a
        # blank interval drawn as 0) reads as a tiny interval
        shown = np.isfinite(low) & np.isfinite(high) & np.isfinite(value) & (high > low)
        if shown.any():
            ax.errorbar(x[shown], value[shown], yerr=np.vstack([value - low, high - value])[:, shown],
                        fmt="none", ecolor="black", capsize=4)
        n, seeds = s.get(f"{m}_n", blank).fillna(0), s.get("n_seeds", blank)
        if whiskers.startswith("bootstrap") and m in (seeds_used or {}):  # (cross-fitted: a seed's runs are its folds)
            seeds = pd.Series([seeds_used[m].get(r, 0) for r in labels], index=s.index)
            n = seeds * s.get("n_folds", blank).fillna(1)
        ticks = [_tick(r, v, k, folds) + (f" ({kind})" if isinstance(kind, str) else "")
                 for r, v, k, folds, kind in zip(labels, n, seeds, s.get("n_folds", blank), s.get("precision", blank))]
        ax.set_xticks(x, ticks, rotation=30, ha="right", fontsize="small")
        ax.set_title(m + (" (headline)" if m == HEADLINE else "") + f"\n95% CI: {whiskers}", fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
    counted = "seeds × folds" if _n_folds(s) > 1 else "seeds"
    fig.suptitle(f"held-out split {short_name(fp)}: each recipe's value ({counted} in brackets), 95% CI whiskers "
                 "(none where too few seeds or no valid interval)")
    return fig


def forest_figure(comparisons: dict, fp: str):
    """One panel per metric: each recipe's difference from the untrained model with its paired 95% CI
    (prompts and seeds resampled), a filled marker where the Holm-adjusted test decides it. None if empty."""
    if not comparisons:
        return None
    # 1.6 in for the titles and the x axis whatever the rows: with one or two recipes they were cut off
    fig, axes = _figure(len(comparisons), width=4.6, height=1.6 + 0.45 * len(next(iter(comparisons.values())).estimates))
    # each panel sorts its rows by Δ, so a recipe keeps one colour in every panel to be followed across them
    colour_of = _colours(name for c in comparisons.values() for name in c.vs_reference)
    for ax, (metric, c) in zip(axes, comparisons.items()):
        names = sorted(c.vs_reference, key=lambda n: c.vs_reference[n][0])
        for y, name in enumerate(names):
            delta, lo, hi, _, p_holm = c.vs_reference[name]
            ax.plot([lo, hi], [y, y], color=colour_of[name], linewidth=2)
            ax.plot([delta], [y], "o", color=colour_of[name], fillstyle="full" if p_holm < 0.05 else "none",
                    markersize=7)
        ax.axvline(0, color="0.4", linewidth=1, linestyle="--")
        ax.set_yticks(range(len(names)), names, fontsize="small")
        ax.set(title=f"{metric}: Δ vs untrained", xlabel=f"Δ [95% CI] ({c.prompts} prompts)" + _unvalued_note(c))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"test {fp}: difference from the untrained model (filled: Holm p < 0.05)")
    return fig


def pairwise_figure(comparisons: dict, fp: str, metrics=("reward_auc", "verified_success")):
    """Heatmaps of row-minus-column differences for the given metrics, Holm p written in each cell."""
    shown = {m: comparisons[m] for m in metrics if m in comparisons and len(comparisons[m].estimates) > 1}
    if not shown:
        return None
    most = max(len(c.estimates) for c in shown.values())
    fig, axes = _figure(len(shown), width=1.6 + 1.1 * most, height=1.4 + 0.9 * most)
    for ax, (metric, c) in zip(axes, shown.items()):
        names = sorted(c.estimates, key=lambda k: -c.estimates[k][0])
        n = len(names)
        delta = np.full((n, n), np.nan)
        text = [[""] * n for _ in range(n)]
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if a == b:
                    continue
                key, sign = ((a, b), 1) if (a, b) in c.pairwise else ((b, a), -1)
                d, _, _, _, p_holm, *_ = c.pairwise[key]
                delta[i, j] = sign * d
                text[i][j] = f"{sign * d:+.3f}\np " + format_p(p_holm, decimals=2)  # two fit the cell
        limit = np.nanmax(np.abs(delta)) or 1.0
        image = ax.imshow(delta, cmap="RdBu", vmin=-limit, vmax=limit)
        for i in range(n):
            for j in range(n):
                dark = not np.isnan(delta[i, j]) and abs(delta[i, j]) > 0.6 * limit
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize="x-small", color="white" if dark else "black")
        ax.set_xticks(range(n), names, rotation=30, ha="right", fontsize="small")
        ax.set_yticks(range(n), names, fontsize="small")
        ax.set_title(f"{metric}: row − column")
        ax.figure.colorbar(image, ax=ax, shrink=0.8)
    # two short lines: one line clipped on the narrow figure of a two-recipe test
    fig.suptitle(f"test {fp}\npairwise differences (paired by prompt), Holm p", fontsize="medium")
    return fig


def tuning_figure(trials: pd.DataFrame, metric: str, name: str):
    """`prefopt tune`: the validation metric of every trial against each searched setting (log axis for
    settings spanning more than a decade), the best trial ringed."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    column = f"validation_{metric}"
    settings = [c for c in trials.columns if c not in ("trial", column, "validation_reward_auc", "train_seconds",
                                                        "run_id") and pd.api.types.is_numeric_dtype(trials[c])]
    fig, axes = _figure(max(1, len(settings)))
    from .selection import HIGHER_IS_BETTER

    values = trials[column].to_numpy(dtype=float)
    best = None
    if np.isfinite(values).any():
        best = int(np.nanargmax(values) if HIGHER_IS_BETTER[metric] else np.nanargmin(values))
    for ax, key in zip(axes, settings):
        x = trials[key].to_numpy(dtype=float)
        ax.scatter(x, values, color="tab:blue")
        if best is not None:
            ax.scatter([x[best]], [values[best]], s=160, facecolors="none", edgecolors="tab:red", label="chosen")
            ax.legend(fontsize=8)
        if (x > 0).all() and x.max() / x.min() > 10:
            ax.set_xscale("log")
            # ticks at 1, 2 and 5 per decade, plainly labelled; minor ticks unlabelled (their default labels overlap)
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(key)
        ax.set_ylabel(column)
    # one panel is narrow: the title goes on two lines rather than past the figure's edges
    fig.suptitle(f"{name}: {len(trials)} trials,{chr(10) if len(settings) < 2 else ' '}{column} (validation split)")
    return fig
