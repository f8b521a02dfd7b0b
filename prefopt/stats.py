"""Comparing recipes on per-item records, with the prompt as the unit that varies.

Pure functions (numpy, statsmodels; no torch). A run's records are its eval_items.csv rows (prompt_id,
label, logp, ref_logp, tokens, kl_sum) and, when it has a verifier, its eval_generations.jsonl rows
(prompt_id, policy_pass, reference_pass). Every run of one comparison is scored on the same held-out
prompts, so:

- a bootstrap resample draws prompts with replacement (all rows of a prompt move together: rows of one
  prompt are not independent), and the *same* draw is used for every recipe, so differences are paired;
- seeds are drawn with replacement per recipe on top (a recipe's value is the mean over its seeds);
- each metric is recomputed on every resample (reward_auc as an AUC, not a mean of per-prompt AUCs).

A resample is a weight per prompt (how often it was drawn), so nothing is copied. Intervals come from
that bootstrap; the p-value of a difference from a paired permutation test (prompts swapped between the
two recipes), which holds its level with a few dozen prompts where the percentile bootstrap rejected
10% of true nulls. Holm adjusts within a family: one metric's recipe-vs-untrained tests, and its pairwise
tests, each family on its own.

Swapping prompts alone asks whether *these trained models* differ: it keeps every seed's model fixed, so
a recipe whose three seeds landed far apart could still be "decided" against another. The question is
about recipes, so each permuted difference also carries the seed noise a difference of seed means has:
the seed effect's variance (seed_spread: the runs' spread around their recipe's mean beyond what the
prompts explain, pooled over recipes, or a recipe's own where an F test says its seeds spread more), as a
scaled t with the matching degrees of freedom, integrated over rather than drawn. verified_success, a
rate, is tested exactly (all 2^P prompt swaps, no Monte Carlo error). With no prompt noise the test is a
t-test on seed means (the variance pooled over recipes, with the pool's df); where the estimate of the
seed effect is 0 it is the permutation test.

Every test draws from a generator of its own, derived from the comparison's seed and what it tests (the
recipe or the pair: `_stream`), so its draws do not change when another recipe joins the table or the
recipes come in another order, and `differences` gives a pair the p-value `compare` gave it. The p-value
itself can: the seed effect it carries is pooled over the recipes in the table.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

# the parts, re-exported: callers use prefopt.stats alone
from .permutation import (APART_LEVEL, CHUNK, RETEST, SPREAD_LEVEL, SeedSpread,
                          auc_vs_chance, auc_vs_chance_p, mcnemar, mcnemar_p, permutation_p,
                          seed_spread, within_prompt_testable)
from .resample import (METRICS, REFERENCE_FIXED, Run, as_reference, interval, metric, unvalued,
                       prompt_draws, rank_auc, recipe_samples, weighted_auc)
from .samples import reference_groups

# the public face, the parts' names included: pyflakes counts a name listed here as used (it ignores noqa)
__all__ = ["APART_LEVEL", "CHUNK", "RETEST", "SPREAD_LEVEL", "SeedSpread", "auc_vs_chance", "auc_vs_chance_p",
           "mcnemar", "mcnemar_p", "permutation_p", "seed_spread", "within_prompt_testable", "METRICS",
           "REFERENCE_FIXED", "Run", "as_reference", "interval", "metric", "unvalued", "prompt_draws", "rank_auc",
           "recipe_samples", "weighted_auc", "format_p", "holm", "Comparison", "UNTESTABLE_AUC", "compare",
           "reference_runs", "differences", "verdict"]


def _stream(seed: int, *key) -> np.random.Generator:
    """The generator of one part of a comparison (the prompt draws, a recipe's seed draws, one test), from
    the comparison's seed and the part's name: no part's numbers depend on how many draws another took."""
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in key)])


def format_p(p: float, decimals: int = 3) -> str:
    """A p-value as every table and plot prints it: "n/a", a bound under 0.001, three decimals under 0.01
    whatever `decimals` asks (two would print 0.004 as "0.00", read as an exact zero), else `decimals`."""
    if math.isnan(p):
        return "n/a"
    if p < 0.01:
        return "< 0.001" if p < 0.001 else f"{p:.3f}"
    text = f"{p:.{decimals}f}"
    # a p below 0.05 rounded up to "0.05" would read as undecided beside a verdict that decided it: one
    # more decimal each time until it prints below (0.048 in the heatmap's two decimals: "0.048")
    while p < 0.05 <= float(text):
        decimals += 1
        text = f"{p:.{decimals}f}"
    return text


def holm(p: list[float]) -> list[float]:
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, float)
    out = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]  # "holm" by name: the default is Holm-Sidak
    return out.tolist()


@dataclass
class Comparison:
    metric: str
    prompts: int
    n_resamples: int
    seed: int
    estimates: dict  # recipe -> (value, lo, hi)
    reference: tuple  # (value, lo, hi) of the untrained model
    vs_reference: dict  # recipe -> (delta, lo, hi, p, p_holm)
    pairwise: dict  # (a, b) -> (delta a-b, lo, hi, p, p_holm, P(a > b), P(a < b)): ties are neither
    seeds: SeedSpread | None = None  # the seed variance the p-values carry
    # recipe -> the side of the untrained model its test measured, where that is not the sign of the delta:
    # reward_auc's test measures from the permuted centre, not from 0.5 (auc_vs_chance)
    vs_side: dict | None = None
    # why no recipe could be tested against the untrained model (p NaN for every one), where that is so
    vs_note: str | None = None
    # precision -> (value, lo, hi) of the untrained model in each, where the runs ran in several (`reference` is
    # then the first recipe's precision's, and each recipe's vs_reference is from its own precision's)
    references: dict | None = None
    # the most resamples any of its intervals left out, having no value on them (resample.unvalued): each
    # interval is then over the draws that have one, and the summary says how many did not
    unvalued: int = 0

# reward_auc's test against the untrained model shuffles labels within prompts (auc_vs_chance)
UNTESTABLE_AUC = ("not tested against the untrained model: no held-out prompt holds both labels (one rated "
                  "completion per prompt), so shuffling labels within prompts changes nothing and no p-value "
                  "can be had; the pairwise tests between recipes (prompts swapped) stand")


def compare(recipes: dict[str, list[Run]], metric_name: str, n_prompts: int, *, n_resamples: int = 2000,
            seed: int = 0, alpha: float = 0.05) -> Comparison:
    """Every recipe's value with its interval, its difference from the untrained model, and every pair's
    difference, all on one set of prompt draws (paired). `seed` fixes every draw; record it."""
    draws = prompt_draws(n_prompts, n_resamples, _stream(seed, "prompts"))
    samples = {name: recipe_samples(metric_name, runs, draws, _stream(seed, "seeds", name))
               for name, runs in recipes.items()}
    first = next(iter(recipes.values()))
    stand, own = reference_runs(recipes)
    refs = {kind: recipe_samples(metric_name, runs, draws, _stream(seed, "seeds", "untrained model",
                                                                   *([kind] if kind else [])), reference=True)
            for kind, runs in stand.items()}
    ref = refs[own[next(iter(recipes))]]
    estimates = {name: interval(s) for name, s in samples.items()}
    spread = seed_spread(metric_name, recipes, n_prompts, _stream(seed, "seed spread"))

    def vs_reference_p(name, n=n_resamples, stop_below=0.0):
        """(p, the side the test measured: NaN where it is the delta's own)"""
        runs = recipes[name]
        sd, df = spread.scale((name,), len(runs))
        # a retest (n > n_resamples) draws fresh permutations; the first test keeps the stream it always had
        rng = _stream(seed, "vs untrained", name) if n == n_resamples else _stream(seed, "vs untrained", name, n)
        if metric_name == "reward_auc":
            return auc_vs_chance(runs, n, rng, sd, df, stop_below)
        # each seed against the reference records of its own run (the same model, so the same scores)
        return permutation_p(metric_name, runs, [as_reference(r) for r in runs], n_prompts, n, rng, sd, df,
                             stop_below), np.nan

    tested = {name: vs_reference_p(name) for name in samples}
    # one metric's recipes against the untrained model are a Holm family of m, with the Monte Carlo floor the
    # pairs have (see _pairwise): a recipe passing alpha unadjusted is retested on about RETEST permuted
    # statistics beyond the observed one at alpha / m
    more = math.ceil(RETEST * len(tested) / alpha)
    if more > n_resamples:
        for name, (p, _) in tested.items():
            if p < alpha:
                tested[name] = vs_reference_p(name, more, alpha / len(tested))
    vs = {name: (*interval(s - refs[own[name]]), tested[name][0]) for name, s in samples.items()}
    side = {name: t[1] for name, t in tested.items() if not np.isnan(t[1])}
    vs_holm = holm([v[3] for v in vs.values()])
    vs = {name: (*v, h) for (name, v), h in zip(vs.items(), vs_holm)}
    names = list(recipes)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    pairwise = _pairwise(metric_name, recipes, samples, pairs, n_prompts, n_resamples, seed, alpha, spread)
    note = UNTESTABLE_AUC if metric_name == "reward_auc" and not within_prompt_testable(first[0]) else None
    shown = [*samples.values(), *refs.values(), *(s - refs[own[n]] for n, s in samples.items()),
             *(samples[a] - samples[b] for a, b in pairs)]
    return Comparison(metric_name, n_prompts, n_resamples, seed, estimates, interval(ref), vs, pairwise, spread,
                      side or None, note, {kind: interval(r) for kind, r in sorted(refs.items())} if len(refs) > 1
                      or None not in refs else None, max(map(unvalued, shown)))


def reference_runs(recipes: dict[str, list[Run]]) -> tuple[dict, dict]:
    """(precision -> the runs whose reference records stand for the untrained model in it, recipe -> its
    precision). The untrained model is the same in every run of one precision, so one recipe's runs in it
    stand for it (prefopt.samples.reference_groups: the first by name, as in the family table and samples.md);
    in another (bf16 autocast against float32) it answers differently, so each recipe is measured from its own
    precision's (Run.precision; a recipe's first run's, as prefopt.compare.with_groups gives a group one). With
    no precision recorded: one."""
    own = {name: runs[0].precision for name, runs in recipes.items()}
    return {kind: recipes[name] for kind, name in reference_groups(own, own.values()).items()}, own


def _pairwise(metric_name: str, recipes: dict, samples: dict, pairs: list, n_prompts: int, n_resamples: int,
              seed: int, alpha: float, spread: SeedSpread) -> dict:
    """(a, b) -> (delta a-b, lo, hi, p, p_holm, P(a > b), P(a < b)); Holm across exactly these pairs (one
    family). Both shares are kept: resamples where the two tie (common for a pass rate) count for neither."""
    def p_value(a, b, n, stop_below=0.0):
        a, b = sorted((a, b))  # |difference| is symmetric: one pair, one stream, one p in either order
        sd, df = spread.scale((a, b), (len(recipes[a]), len(recipes[b])))
        return permutation_p(metric_name, recipes[a], recipes[b], n_prompts, n, _stream(seed, "pair", a, b, n),
                             sd, df, stop_below)

    raw = {}
    for a, b in pairs:
        d = samples[a] - samples[b]
        boot = d[1:][~np.isnan(d[1:])]
        shares = [float((boot > 0).mean()), float((boot < 0).mean())] if len(boot) else [np.nan, np.nan]
        raw[(a, b)] = [*interval(d), p_value(a, b, n_resamples), *shares]
    # A Monte Carlo p is at least 1/(n+1), and Holm multiplies the smallest by the family size m: with 2000
    # permutations and 153 pairs (18 recipes) no pair could ever be decided. Pairs that pass alpha unadjusted
    # are tested again on fresh permutations, enough for about RETEST permuted differences beyond the
    # observed one where the p-value meets the Holm threshold alpha/m (with 10, the Monte Carlo error there
    # was 30% and decisions changed with the generator's seed); the others are undecided whatever the count.
    more = math.ceil(RETEST * len(pairs) / alpha)
    if more > n_resamples:
        for (a, b), v in raw.items():
            if v[3] < alpha:
                v[3] = p_value(a, b, more, alpha / len(pairs))
    adjusted = holm([v[3] for v in raw.values()])
    return {k: (*v[:4], h, *v[4:]) for (k, v), h in zip(raw.items(), adjusted)}


def differences(recipes: dict[str, list[Run]], pairs: list[tuple[str, str]], metric_name: str, n_prompts: int, *,
                n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Only the given pairs, paired by prompt as in `compare`, Holm-adjusted as one family of their own: for a
    question asked of a few pairs (did tuning move each recipe?), not diluted by every other pair. With the
    same recipes and seed, each pair's difference and interval are those `compare` gives it, and so is its raw
    p-value unless it passed alpha unadjusted: that pair is retested on a number of permutations scaled to
    its own family's size (see `_pairwise`), so the two can differ in Monte Carlo error."""
    draws = prompt_draws(n_prompts, n_resamples, _stream(seed, "prompts"))
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    samples = {name: recipe_samples(metric_name, recipes[name], draws, _stream(seed, "seeds", name)) for name in names}
    return _pairwise(metric_name, recipes, samples, pairs, n_prompts, n_resamples, seed, alpha,
                     seed_spread(metric_name, recipes, n_prompts, _stream(seed, "seed spread")))


def verdict(c: Comparison, alpha: float = 0.05) -> str:
    """One or two sentences a reader can act on, derived from the Holm-adjusted tests only: the top recipe
    against each other one, then every other decided pair (the top one can be tied with all while lower
    ones are told apart), then each recipe against the untrained model."""
    lower = c.metric in ("kl", "desirable_nll")
    # a recipe without a value (a NaN record) is ranked nowhere: sorted among the others, NaN keys left it
    # wherever it stood, so it could open the sentence as "the top recipe"
    unvalued = [n for n in c.estimates if math.isnan(c.estimates[n][0])]
    names = sorted((n for n in c.estimates if n not in unvalued),
                   key=lambda n: c.estimates[n][0] if lower else -c.estimates[n][0])
    none = f"; without a value (a missing or NaN record), compared with none: {', '.join(unvalued)}" \
        if unvalued else ""
    if not names:
        return f"On {c.metric}, no recipe has a value{none}."
    better = "lower" if lower else "higher"
    rank = {n: i for i, n in enumerate(names)}
    wins = []  # (winner, loser) of every pair decided at alpha after Holm, in ranking order
    for (a, b), (delta, _, _, _, p_holm, *_) in c.pairwise.items():
        if p_holm < alpha and delta != 0 and a in rank and b in rank:
            wins.append((a, b) if (delta > 0) != lower else (b, a))
    wins.sort(key=lambda w: (rank[w[0]], rank[w[1]]))

    decided = [n for n in names if c.vs_reference[n][4] < alpha]
    # the side the test decided, not the delta's: a reward_auc above 0.5 whose test finds the labels ranked
    # the wrong way round within prompts is worse than the untrained model, not better
    good = [n for n in decided if ((c.vs_side or {}).get(n, c.vs_reference[n][0]) > 0) != lower]
    bad = [n for n in decided if n not in good]
    best = names[0]
    beaten = [b for a, b in wins if a == best]
    tied = [n for n in names[1:] if n not in beaten]
    others = [f"{a} ahead of {b}" for a, b in wins if a != best]
    # a test that could not be made (NaN p) decides nothing either way: "not distinguishable" would claim it was
    untested = [n for n in names if math.isnan(c.vs_reference[n][4])]
    ref_text = "; ".join(t for t in (f"better than the untrained model: {', '.join(good)}" if good else "",
                                      f"worse than {'it' if good else 'the untrained model'}: {', '.join(bad)}"
                                      if bad else "") if t) \
        or f"no {'tested ' * bool(untested)}recipe is distinguishable from the untrained model"
    if untested and len(untested) == len(names):
        ref_text = c.vs_note or "no recipe could be tested against the untrained model"
    elif untested:
        ref_text += f"; not tested against it: {', '.join(untested)}"
    ref_text += none
    # with one seed per recipe the seed effect is unknown and the tests carry none of it: what they decide
    # is which trained models differ, and the verdict that opens summary.md must not read as one on recipes
    single = c.seeds is not None and not c.seeds.df
    basis = f"{c.prompts} prompts" + single * ("; one seed per recipe, no seed effect: of these trained models, "
                                               "not the recipes")
    if len(names) == 1:
        return f"On {c.metric} ({basis}), {ref_text}."
    if not wins:
        return (f"On {c.metric}, no recipe is distinguishable from another at this budget ({basis}, "
                f"Holm-adjusted p >= {alpha}); {ref_text}.")
    if not beaten:
        return (f"On {c.metric} ({better} is better), the top recipe, {best}, is tied with every other one; "
                f"decided (Holm p < {alpha}): {', '.join(others)} ({basis}); {ref_text}.")
    also = f"; also decided: {', '.join(others)}" if others else ""
    if not tied:
        return (f"{best} is best on {c.metric} ({better} is better): ahead of every other recipe"
                + " with a value" * bool(unvalued) + f" (Holm p < {alpha})"
                + also + f" ({basis}); {ref_text}.")
    # "best" only when every other recipe is beaten: ranking first while tied with some is not being best
    return (f"{best} ranks first on {c.metric} ({better} is better), not decidedly best: ahead of "
            f"{', '.join(beaten)} (Holm p < {alpha}); tied with {', '.join(tied)}" + also
            + f" ({basis}); {ref_text}.")
