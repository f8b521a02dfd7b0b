"""Plots that stay readable at the sizes the results come in."""

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from prefopt.compare import REFERENCE
from prefopt.plots import forest_figure, metrics_figure, pairwise_figure, png
from prefopt.stats import Comparison


def _comparison(metric: str, recipes: list[str]) -> Comparison:
    return Comparison(metric, 222, 2000, 0, estimates={r: (0.56, 0.51, 0.61) for r in recipes},
                      reference=(0.5, 0.5, 0.5), vs_reference={r: (0.06, 0.01, 0.11, 0.004, 0.014) for r in recipes},
                      pairwise={})


@pytest.mark.parametrize("n", [1, 18])
def test_forest_plot_titles_and_axis_fit_whatever_the_number_of_recipes(n):
    """With one recipe (a cross-fitted split where one recipe has all its folds) the panel titles ran into
    the figure's title and the x axis fell off the bottom."""
    recipes = [f"recipe_{i}" for i in range(n)]
    fig = forest_figure({m: _comparison(m, recipes) for m in ("reward_auc", "kl", "desirable_nll")}, "bfae55777815")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    top = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        label = ax.xaxis.label.get_window_extent(renderer)
        assert title.y1 <= top.y0, "a panel title overlaps the figure's title"
        assert label.y0 >= page.y0 and title.y1 <= page.y1, "the x axis or a title falls outside the figure"



def test_intervals_over_fewer_resamples_say_so_under_the_forest_and_bars_and_only_then():
    """summary.md says how many bootstrap resamples had no value (an AUC of prompts of one label only) and are
    left out of the intervals; the forest plot and the bars drew the same intervals without a word of it."""
    fewer = _comparison("reward_auc", ["orpo", "kto_natural"])
    fewer.unvalued = 137
    forest = forest_figure({"reward_auc": fewer, "kl": _comparison("kl", ["orpo", "kto_natural"])}, "bfae55777815")
    auc, kl = forest.axes[:2]
    assert auc.get_xlabel() == "Δ [95% CI] (222 prompts)\nover resamples with a value: up to 137 of 2000 had none"
    assert kl.get_xlabel() == "Δ [95% CI] (222 prompts)"  # none left out: as before
    forest.canvas.draw()
    label = auc.xaxis.label.get_window_extent(forest.canvas.get_renderer())
    assert label.y0 >= forest.bbox.y0, "the second line falls off the figure"
    bars = metrics_figure(_crossfitted_summary(), "bfae55777815", {"reward_auc": fewer})
    assert bars.axes[0].get_title().endswith("95% CI: bootstrap over prompts and seeds\n"
                                             "over resamples with a value: up to 137 of 2000 had none")
    fewer.unvalued = 0
    bars = metrics_figure(_crossfitted_summary(), "bfae55777815", {"reward_auc": fewer})
    assert bars.axes[0].get_title().endswith("95% CI: bootstrap over prompts and seeds")


def test_forest_plot_keeps_each_recipes_colour_across_panels():
    """Each panel sorts its rows by Δ; colours went by row, so a recipe changed colour from panel to panel."""
    recipes = ["kto_balanced", "kto_natural"]
    kl = _comparison("kl", recipes)
    kl.vs_reference["kto_balanced"] = (0.46, 0.39, 0.54, 0.001, 0.001)  # kl sorts the two the other way round
    kl.vs_reference["kto_natural"] = (0.10, 0.09, 0.11, 0.001, 0.001)
    auc = _comparison("reward_auc", recipes)
    auc.vs_reference["kto_natural"] = (0.17, 0.12, 0.22, 0.001, 0.001)
    fig = forest_figure({"reward_auc": auc, "kl": kl}, "bfae55777815")
    colour = {}
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_yticklabels()]
        points = [line for line in ax.get_lines() if line.get_marker() == "o"]
        for line in points:
            name = labels[int(line.get_ydata()[0])]
            colour.setdefault(name, set()).add(to_hex(line.get_color()))
    assert set(colour) == set(recipes)
    assert all(len(c) == 1 for c in colour.values()), colour
    assert colour["kto_balanced"] != colour["kto_natural"]


def test_a_recipe_has_one_colour_in_the_bars_and_the_forest_plot():
    """Bars coloured by rank position and forest rows by name gave one recipe two colours; beyond ten
    recipes the default cycle also gave two recipes one colour."""
    recipes = [f"recipe_{i:02d}" for i in range(12)]
    summary = pd.DataFrame({"recipe": recipes[::-1] + [REFERENCE], "test": "bfae55777815",
                            "reward_auc_mean": [0.5 + i / 100 for i in range(12)] + [0.5]})
    bars = metrics_figure(summary, "bfae55777815").axes[0].patches
    bar_colour = {r: to_hex(b.get_facecolor()) for r, b in zip(summary["recipe"], bars)}
    fig = forest_figure({"reward_auc": _comparison("reward_auc", recipes)}, "bfae55777815")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    forest_colour = {labels[int(line.get_ydata()[0])]: to_hex(line.get_color())
                     for line in ax.get_lines() if line.get_marker() == "o"}
    assert all(bar_colour[r] == forest_colour[r] for r in recipes)
    assert len({bar_colour[r] for r in recipes}) == len(recipes)


def test_pairwise_heatmap_writes_small_p_values_as_bounds():
    """Holm p under 0.001 was printed "p 0.00", which reads as an exact zero."""
    c = _comparison("reward_auc", ["a", "b"])
    c.pairwise[("a", "b")] = (0.109, 0.05, 0.17, 0.0004, 0.0004, 1.0, 0.0)
    texts = [t.get_text() for t in pairwise_figure({"reward_auc": c}, "bfae55777815").axes[0].texts]
    assert "+0.109\np < 0.001" in texts and "-0.109\np < 0.001" in texts


def test_pairwise_heatmap_keeps_three_decimals_below_001():
    """A Holm p of 0.004 printed with two decimals read "p 0.00"; 0.124 keeps two."""
    c = _comparison("reward_auc", ["a", "b", "c"])
    c.pairwise[("a", "b")] = (0.10, 0.04, 0.16, 0.004, 0.004, 1.0, 0.0)
    c.pairwise[("a", "c")] = (0.05, 0.01, 0.09, 0.124, 0.124, 0.99, 0.0)
    c.pairwise[("b", "c")] = (-0.05, -0.09, -0.01, 0.5, 1.0, 0.2, 0.8)
    texts = [t.get_text() for t in pairwise_figure({"reward_auc": c}, "bfae55777815").axes[0].texts]
    assert "+0.100\np 0.004" in texts and "+0.050\np 0.12" in texts


def _crossfitted_summary() -> pd.DataFrame:
    recipes = ["orpo", "kto_natural"]
    return pd.DataFrame({"recipe": recipes + [REFERENCE], "test": "bfae55777815",
                         "n_seeds": [1, 1, pd.NA], "n_folds": [5, 5, pd.NA], "n_runs": [5, 5, pd.NA],
                         "reward_auc_mean": [0.69, 0.67, 0.5], "reward_auc_n": [5, 5, pd.NA],
                         "preference_accuracy_mean": [0.69, 0.66, float("nan")],
                         "preference_accuracy_ci95_low": float("nan"), "preference_accuracy_ci95_high": float("nan"),
                         "preference_accuracy_n": [5, 5, pd.NA]})


def test_crossfitted_bars_count_folds_and_draw_no_interval_over_them():
    """The cross-fitted bars said "seeds in brackets" over a count of folds, and drew capped zero-length
    "t over seeds" whiskers where the summary (rightly) gives no interval over folds of one split."""
    summary = _crossfitted_summary()
    comparisons = {"reward_auc": _comparison("reward_auc", ["orpo", "kto_natural"])}
    fig = metrics_figure(summary, "bfae55777815", comparisons)
    auc, accuracy = fig.axes[:2]
    assert [t.get_text() for t in accuracy.get_xticklabels()] == ["orpo (1×5)", "kto_natural (1×5)", REFERENCE]
    assert "seeds in brackets" not in fig._suptitle.get_text()
    assert "t over seeds" not in accuracy.get_title()
    assert not accuracy.containers[1:] and not accuracy.lines, "whiskers drawn where there is no interval"
    whiskers = [c for c in auc.containers if hasattr(c, "has_yerr")]
    assert len(whiskers) == 1 and len(whiskers[0].lines[2][0].get_segments()) == 2  # two recipes; the reference's 0.5 has none


@pytest.mark.parametrize("n", [9, 18])
def test_no_recipe_is_drawn_in_the_reference_grey(n):
    """The default cycle's C7 and tab20's two greys gave one recipe (sft_tuned) the untrained model's grey."""
    recipes = [f"recipe_{i:02d}" for i in range(n)]
    summary = pd.DataFrame({"recipe": recipes + [REFERENCE], "test": "bfae55777815",
                            "reward_auc_mean": [0.6] * n + [0.5]})
    bars = metrics_figure(summary, "bfae55777815").axes[0].patches
    colours = [b.get_facecolor()[:3] for b in bars[:n]]
    assert all(len({round(c, 2) for c in rgb}) > 1 for rgb in colours), "a recipe is grey"
    assert len(set(colours)) == n


def _two_precisions() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Recipe a ran in float32 (its untrained model passes no prompt), b under bf16 autocast (every prompt):
    the summary, the runs and the paired comparisons as prefopt.compare gives them."""
    split = pd.DataFrame({"group": ["a"] * 3 + ["b"] * 3, "seed": [1, 2, 3] * 2, "test": "bfae55777815",
                          "weights_dtype": "float32", "autocast_bf16": [False] * 3 + [True] * 3,
                          "verified_success_ref": [0.0] * 3 + [1.0] * 3})
    summary = pd.DataFrame({"recipe": ["a", "b", REFERENCE], "test": "bfae55777815",
                            "reward_auc_mean": [0.6, 0.55, 0.5], "verified_success_mean": [0.3, 0.8, 0.5]})
    c = _comparison("verified_success", ["a", "b"])
    c.reference, c.references = (0.0, 0.0, 0.0), {"float32": (0.0, 0.0, 0.0), "float32 + bf16 autocast": (1.0, 1.0, 1.0)}
    return summary, split, {"verified_success": c}


def test_runs_in_two_precisions_get_a_labelled_reference_bar_each():
    """The held-out bars drew one unlabelled 'reference' where the runs ran in float32 and under bf16 autocast:
    the paired analysis' first recipe's precision's (float32: 0), or the summary's mean of both (0.5), beside
    a bf16 recipe whose own untrained model passes every prompt."""
    summary, split, comparisons = _two_precisions()
    fig = metrics_figure(summary, "bfae55777815", comparisons, split=split)
    for ax, heights in zip(fig.axes[:2], ([0.6, 0.55, 0.5, 0.5], [0.56, 0.56, 0.0, 1.0])):  # reward_auc; verified_success, paired
        assert [t.get_text() for t in ax.get_xticklabels()][2:] == [
            f"{REFERENCE} (float32)", f"{REFERENCE} (float32 + bf16 autocast)"]
        assert [round(b.get_height(), 3) for b in ax.patches] == heights
        assert [to_hex(b.get_facecolor()) for b in ax.patches[2:]] == [to_hex("0.65")] * 2
    # without the paired analysis: each precision's own runs' verified_success_ref, not their mean
    bars = metrics_figure(summary, "bfae55777815", split=split).axes[1].patches
    assert [b.get_height() for b in bars[2:]] == [0.0, 1.0]


def test_runs_in_one_precision_keep_one_unlabelled_reference_bar():
    summary, split, comparisons = _two_precisions()
    split["autocast_bf16"] = False
    fig = metrics_figure(summary, "bfae55777815", comparisons, split=split)
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()][2:] == [REFERENCE]
    assert [b.get_height() for b in fig.axes[1].patches][2:] == [0.0]  # the paired analysis' one reference
    assert png(fig) == png(metrics_figure(summary, "bfae55777815", comparisons))
