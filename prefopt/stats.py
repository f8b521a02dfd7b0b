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
recipe or the pair: `_stream`), so a p-value does not change when another recipe joins the table
or the recipes come in another order, and `differences` gives a pair the p-value `compare` gave it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

METRICS = ("reward_auc", "kl", "desirable_nll", "verified_success")
# what the untrained model scores by definition, where no record is needed
REFERENCE_FIXED = {"reward_auc": 0.5, "kl": 0.0}
SPREAD_LEVEL = 0.1  # a recipe's seeds spread more than the others' when an F test says so at this level
APART_LEVEL = 0.01  # ... and so far apart that they stay out of the pool at this one
CHUNK = 20_000  # permutations drawn at once
RETEST = 100  # a pair retested for Holm gets RETEST x pairs / alpha permutations (see _pairwise)


@dataclass
class Run:
    """One run's records, aligned to the comparison's prompt index (0..P-1)."""
    prompt: np.ndarray  # per row: prompt index
    label: np.ndarray  # per row: bool
    logp: np.ndarray
    ref_logp: np.ndarray
    tokens: np.ndarray
    kl_sum: np.ndarray
    # per row: which model scored it (cross-fitting: the fold). reward_auc compares only rows of one block:
    # the k fold models' rewards are on scales of their own, and pooling them would rank one model's rows
    # against another's (Airola et al. 2011: pooled cross-validated AUC runs low). None: one model.
    block: np.ndarray | None = None
    gen_prompt: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # per verified prompt
    policy_pass: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reference_pass: np.ndarray = field(default_factory=lambda: np.zeros(0))


def prompt_draws(n_prompts: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, prompts) counts: how often each prompt is drawn in each resample (row 0: the data)."""
    counts = rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts), size=n_resamples)
    return np.vstack([np.ones(n_prompts, int), counts])


def _blocks(block: np.ndarray | None, n: int) -> list:
    """Row masks of each block (one mask of every row without blocks)."""
    if block is None:
        return [np.ones(n, bool)]
    return [block == b for b in np.unique(block)]


def weighted_auc(score: np.ndarray, label: np.ndarray, w: np.ndarray, block: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC of `score` for `label` with row weights w (resamples, rows): the AUC of the resampled rows,
    ties counting one half, for every resample at once. With `block`, over (desirable, undesirable) pairs
    within a block only: the blocks' AUCs averaged, each weighted by its number of such pairs."""
    num, total = 0.0, 0.0
    for rows in _blocks(block, len(score)):
        n, t = _auc_parts(score[rows], label[rows], w[:, rows])
        num, total = num + n, total + t
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, num / np.where(total > 0, total, 1), np.nan)


def _auc_parts(score: np.ndarray, label: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(concordant weight, pair weight) per resample: the AUC is their ratio."""
    if not len(score):
        return np.zeros(w.shape[0]), np.zeros(w.shape[0])
    order = np.argsort(score, kind="stable")
    score, label, w = score[order], label[order].astype(bool), w[:, order]
    first = np.r_[True, score[1:] != score[:-1]]  # start of each run of tied scores
    group = np.cumsum(first) - 1
    onehot = np.zeros((len(score), group[-1] + 1 if len(group) else 0))
    onehot[np.arange(len(score)), group] = 1
    pos = (w * label) @ onehot  # (resamples, tie groups): weight of desirable rows at each score
    neg = (w * ~label) @ onehot
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each tie group
    return (pos * (below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1)


def rank_auc(scores: np.ndarray, labels: np.ndarray, block: np.ndarray | None = None) -> np.ndarray:
    """Unweighted AUC of each row of `scores` (k, rows) for `labels` (rows, or (k, rows) with the same
    count of desirable rows per block in every row of k), by ranks (ties share their mean rank); with
    `block`, over pairs within a block, as weighted_auc."""
    from scipy.stats import rankdata

    scores, labels = np.atleast_2d(scores), np.atleast_2d(labels).astype(bool)
    num, total = 0.0, 0.0
    for rows in _blocks(block, scores.shape[1]):
        lab = labels[:, rows]
        n1 = lab[0].sum()
        n0 = rows.sum() - n1
        num = num + (lab * rankdata(scores[:, rows], axis=1)).sum(1) - n1 * (n1 + 1) / 2
        total = total + n1 * n0
    return num / total


def metric(name: str, run: Run, draws: np.ndarray, reference: bool = False) -> np.ndarray:
    """One metric of one run (or of its untrained reference) on every resample: shape (resamples,)."""
    if reference and name in REFERENCE_FIXED:
        return np.full(draws.shape[0], REFERENCE_FIXED[name])
    logp = run.ref_logp if reference else run.logp
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "verified_success":  # drawn over the generation test's prompts, not the held-out rows'
            if not len(run.gen_prompt):
                return np.full(draws.shape[0], np.nan)
            g = draws[:, run.gen_prompt]
            passed = run.reference_pass if reference else run.policy_pass
            return (g * passed).sum(1) / g.sum(1)
        w = draws[:, run.prompt]
        if name == "reward_auc":
            return weighted_auc(run.logp - run.ref_logp, run.label, w, run.block)
        if name == "kl":
            return (w * run.kl_sum).sum(1) / (w * run.tokens).sum(1)
        if name == "desirable_nll":
            d = run.label.astype(bool)
            return -(w[:, d] * logp[d]).sum(1) / (w[:, d] * run.tokens[d]).sum(1)
    raise ValueError(f"unknown metric {name!r}; one of {METRICS}")


def recipe_samples(name: str, runs: list[Run], draws: np.ndarray, rng: np.random.Generator,
                   reference: bool = False) -> np.ndarray:
    """A recipe's value (mean over its seeds) on every resample; seeds are drawn with replacement too,
    except in row 0 (the data as it is)."""
    per_seed = np.stack([metric(name, r, draws, reference) for r in runs])  # (seeds, resamples)
    n = len(runs)
    picks = rng.multinomial(n, np.full(n, 1 / n), size=draws.shape[0]).T.astype(float)  # (seeds, resamples)
    picks[:, 0] = 1
    return (picks * per_seed).sum(0) / n


def as_reference(run: Run) -> Run:
    """The untrained model's records in the form of a run: reward 0, KL 0, the reference's generations."""
    return Run(prompt=run.prompt, label=run.label, logp=run.ref_logp, ref_logp=run.ref_logp, tokens=run.tokens,
               kl_sum=np.zeros_like(run.kl_sum), block=run.block, gen_prompt=run.gen_prompt, policy_pass=run.reference_pass,
               reference_pass=run.reference_pass)


@dataclass
class SeedSpread:
    """The seed effect's variance on one metric (seed_spread), per recipe and pooled."""
    own: dict  # recipe -> (variance of its seed effect, df = seeds - 1, raw variance of its seeds' values)
    pooled: float  # the seed effect's variance pooled over the recipes with two or more seeds, less those
    df: int  # whose seeds lie far apart (APART_LEVEL); its df (0: no recipe has two seeds: unknown)

    def spreads_more(self, recipe: str, level: float = SPREAD_LEVEL) -> bool:
        """Do this recipe's seeds spread more than the other recipes' (F test of its raw seed variance against
        theirs pooled, one-sided at `level`)? Raw variances, not seed effects: those hold the prompts' part
        too, so the ratio never divides by an estimate near 0."""
        from scipy.stats import f

        if recipe not in self.own:
            return False
        _, d, raw = self.own[recipe]
        rest = [(o[1], o[2]) for r, o in self.own.items() if r != recipe]
        d_rest = sum(x for x, _ in rest)
        raw_rest = sum(x * v for x, v in rest) / d_rest if d_rest else 0.0
        return bool(d_rest and raw_rest > 0 and f.sf(raw / raw_rest, d, d_rest) < level)

    def term(self, recipe: str) -> tuple[float, int, str | None]:
        """(variance, df, whose estimate: the recipe or None for the pool) for one recipe's seeds: the pooled
        estimate, as in a random-effects ANOVA (three seeds give a recipe 2 df of its own: a t with 2 df
        would leave almost nothing decidable), unless its seeds spread more than the others' (spreads_more)
        and its own estimate is the larger: then its own, with its own df, since a recipe whose seeds disagree
        must not borrow the others' calm. (The F test reads raw variances, which hold the prompts' part too: a
        recipe can pass it with a smaller seed effect left over than the pool's, and is then given the pool's,
        not a smaller one.)"""
        if self.spreads_more(recipe) and self.own[recipe][0] > self.pooled:
            var, df, _ = self.own[recipe]
            return var, df, recipe
        return self.pooled, self.df, None

    def scale(self, recipes: tuple, k: int) -> tuple[float, float]:
        """(sd, df) of the seed noise in a difference of k-seed means of `recipes` (one name against the
        reference, whose model is the same in every run; two names against each other). Welch-Satterthwaite
        over the independent estimates: the pooled one counts once however many recipes use it."""
        parts = {}  # estimate -> (variance it contributes, its df)
        for r in recipes:
            var, df, key = self.term(r)
            parts[key] = (parts.get(key, (0.0, df))[0] + var / k, df)
        total = sum(v for v, _ in parts.values())
        if not self.df or total <= 0:
            return 0.0, 0.0
        return math.sqrt(total), total ** 2 / sum(v ** 2 / d for v, d in parts.values() if v > 0)


def seed_spread(name: str, recipes: dict[str, list[Run]], n_prompts: int, rng: np.random.Generator,
                n_permutations: int = 200) -> SeedSpread:
    """The variance of the seed effect on `name`: how far a run's value on the data lies from its recipe's
    seed mean, less the part the prompts already put there. Two seeds' models disagree prompt by prompt,
    and on P prompts that alone spreads their values by about the variance that swapping prompts between
    them shows (the permutation test counts that part already; counting it twice halved the power on
    simulated tables). Two-way random-effects ANOVA in permutation form, so it holds for AUC too:
    var(seed values) - mean over seed pairs of var(permuted difference) / 2, at least 0."""
    if all(len(runs) < 2 for runs in recipes.values()):  # one seed each: nothing to estimate, no draw spent
        return SeedSpread({}, 0.0, 0)
    data = np.ones((1, n_prompts), int)
    flips = rng.random((n_permutations + 1, n_prompts)) < 0.5
    own, net = {}, {}
    for recipe, runs in recipes.items():
        values = np.array([metric(name, r, data)[0] for r in runs])
        if len(runs) < 2 or np.isnan(values).any():
            continue
        noise = np.mean([_swap_variance(name, runs[i], runs[j], flips)
                         for i in range(len(runs)) for j in range(i + 1, len(runs))])
        raw = values.var(ddof=1)
        net[recipe] = raw - noise / 2  # unclipped in the pool, so that chance negatives keep it unbiased
        own[recipe] = (max(net[recipe], 0.0), len(runs) - 1, raw)
    # the pool leaves out recipes whose seeds lie far apart (F test at APART_LEVEL): one whose KL scatters
    # ten times the others' would otherwise widen every other recipe's test. Not at SPREAD_LEVEL: dropping
    # every chance high from the pool biased it low and the simulated level rose to 0.08
    calm = [r for r in own if not SeedSpread(own, 0.0, 0).spreads_more(r, APART_LEVEL)] or list(own)
    df = sum(own[r][1] for r in calm)
    return SeedSpread(own, max(sum(net[r] * own[r][1] for r in calm) / df, 0.0) if df else 0.0, df)


def _stream(seed: int, *key) -> np.random.Generator:
    """The generator of one part of a comparison (the prompt draws, a recipe's seed draws, one test), from
    the comparison's seed and the part's name: no part's numbers depend on how many draws another took."""
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in key)])


def _swap_variance(name: str, a: Run, b: Run, flips: np.ndarray) -> float:
    """The variance of metric(a') - metric(b') over prompt swaps: exact for verified_success (a sum of
    independent +-1 terms), else over the rows of `flips` but the first."""
    if name == "verified_success":
        totals = _pass_totals([a], [b])
        return float((totals ** 2).sum() / len(a.gen_prompt) ** 2)
    return float(_flipped(name, a, b, flips)[1:].var())


def _pass_totals(a: list[Run], b: list[Run]) -> np.ndarray:
    """Per generation-test prompt, the passes of a's seeds minus b's (seeds paired in order): integers. A
    prompt generated for several times (cross-fitting with a shared test: once per fold) counts them all."""
    n = int(max(r.gen_prompt.max(initial=-1) for r in a + b)) + 1
    return sum(np.bincount(ra.gen_prompt, ra.policy_pass.astype(int) - rb.policy_pass.astype(int), minlength=n)
               for ra, rb in zip(a, b)).round().astype(int)


def _exact_pass_p(a: list[Run], b: list[Run], seed_sd: float, seed_df: float) -> float:
    """permutation_p for verified_success, exact: the difference of pass rates under prompt swaps is
    sum(s_p x_p) / (seeds x answers) with independent signs s_p = +-1 and integer x_p (the passes a's seeds
    gained over b's on prompt p), so its whole distribution is a convolution over the integers, all 2^P
    swaps at once. The seed noise is integrated over it (scaled t), not drawn: no Monte Carlo error, which
    at the Holm threshold of 153 pairs (p near 3e-4) put a few thousand permutations' p-values 30% either
    way, enough to flip a decision from one generator seed to the next."""
    from scipy.stats import t

    totals = _pass_totals(a, b)
    x, observed = np.abs(totals), abs(int(totals.sum()))
    dist = np.ones(1)  # P(S = s) for s = -total .. total
    for v in x[x > 0]:
        dist = 0.5 * (np.r_[dist, np.zeros(2 * v)] + np.r_[np.zeros(2 * v), dist])
    half = (len(dist) - 1) // 2
    values = np.arange(-half, half + 1)
    if not (seed_sd > 0 and seed_df > 0):
        return float(min(1.0, dist[np.abs(values) >= observed].sum()))
    scale = len(a) * len(a[0].gen_prompt)  # seeds x answers per run: S / scale is the difference of rates
    d, obs, sd = values / scale, observed / scale, seed_sd
    tail = t.sf((obs - d) / sd, seed_df) + t.cdf((-obs - d) / sd, seed_df)
    return float(min(1.0, (dist * tail).sum()))


def _flipped(name: str, a: Run, b: Run, flips: np.ndarray) -> np.ndarray:
    """metric(a') - metric(b') for each row of `flips` (permutations, prompts): a' holds b's records on the
    flipped prompts and b' holds a's. Row 0 of `flips` flips nothing (the observed difference)."""
    if name == "verified_success":
        if not len(a.gen_prompt):
            return np.full(flips.shape[0], np.nan)
        f = flips[:, a.gen_prompt]
        pa, pb = a.policy_pass.astype(float), b.policy_pass.astype(float)
        return (np.where(f, pb, pa) - np.where(f, pa, pb)).mean(1)
    f = flips[:, a.prompt]
    if name == "reward_auc":
        # rewards as within-block quantiles: the AUC of each run is unchanged (it reads ranks within a block
        # only), but the records swapped between runs are then on one scale. Raw rewards of two recipes (or
        # of two folds' models) differ in spread, and swapping them made the test reject a true null 10% of
        # the time on cross-fitted tables
        ra, rb = _quantiles(a.logp - a.ref_logp, a.block), _quantiles(b.logp - b.ref_logp, b.block)
        return (rank_auc(np.where(f, rb, ra), a.label, a.block)
                - rank_auc(np.where(f, ra, rb), a.label, a.block))
    if name == "kl":
        num, den = (a.kl_sum, b.kl_sum), (a.tokens, b.tokens)
    elif name == "desirable_nll":
        d = a.label.astype(bool)
        f = f[:, d]
        num, den = (-a.logp[d], -b.logp[d]), (a.tokens[d], b.tokens[d])
    else:
        raise ValueError(f"unknown metric {name!r}; one of {METRICS}")

    swapped = np.where(f, num[1], num[0]).sum(1) / np.where(f, den[1], den[0]).sum(1)  # a'
    kept = np.where(f, num[0], num[1]).sum(1) / np.where(f, den[0], den[1]).sum(1)  # b'
    return swapped - kept


def _quantiles(score: np.ndarray, block: np.ndarray | None) -> np.ndarray:
    from scipy.stats import rankdata

    out = np.empty(len(score))
    for rows in _blocks(block, len(score)):
        out[rows] = rankdata(score[rows]) / rows.sum()
    return out


def permutation_p(name: str, a: list[Run], b: list[Run], n_prompts: int, n_permutations: int,
                  rng: np.random.Generator, seed_sd: float = 0.0, seed_df: float = 0.0, stop_below: float = 0.0
                  ) -> float:
    """Paired permutation test of 'a and b score alike': prompts are the exchangeable units, so each
    permutation swaps a's and b's records on a random half of the prompts (in every seed pair at once) and
    recomputes the difference of the seed means, to which it adds the seed noise (seed_sd, seed_df:
    SeedSpread.scale; none by default, which tests these trained models only). Seeds are paired in order;
    recipes with different seed counts are compared on their common count. verified_success is computed
    exactly (_exact_pass_p): no permutation drawn, `rng` untouched. With `stop_below` (a retest: many
    permutations) it stops at a chunk's end once the p-value is known well enough for a decision at that
    level: RETEST permuted differences beyond the observed one (about 10% Monte Carlo error), or so few
    that p is surely below half of `stop_below`."""
    k = min(len(a), len(b))
    if name == "verified_success":
        if not all(len(r.gen_prompt) for r in a[:k] + b[:k]):
            return np.nan
        return _exact_pass_p(a[:k], b[:k], seed_sd, seed_df)
    count, done = 0.0, 0
    while done < n_permutations:  # in chunks: a retest may take a few hundred thousand
        n = min(CHUNK, n_permutations - done)
        flips = rng.random((n + 1, n_prompts)) < 0.5
        flips[0] = False
        delta = np.mean([_flipped(name, ra, rb, flips) for ra, rb in zip(a[:k], b[:k])], axis=0)
        if np.isnan(delta[0]):
            return np.nan
        count, done = count + _beyond(delta[1:], abs(delta[0]), seed_sd, seed_df), done + n
        if stop_below and (count >= RETEST or (count + 3 * math.sqrt(count + 1) + 3) / done < stop_below / 2):
            break
    return float((1 + count) / (done + 1))


def _beyond(null: np.ndarray, observed: float, seed_sd: float, seed_df: float) -> float:
    """How many of the permuted differences, each plus the seed noise, lie at least as far from 0 as the
    observed one: a count without seed noise; with it, the sum of each one's probability of doing so (the
    t integrated, not drawn: the same expectation, less Monte Carlo error)."""
    if not (seed_sd > 0 and seed_df > 0):
        return float((np.abs(null) >= observed - 1e-12).sum())
    from scipy.stats import t

    return float((t.sf((observed - null) / seed_sd, seed_df) + t.cdf((-observed - null) / seed_sd, seed_df)).sum())


def auc_vs_chance_p(runs: list[Run], n_permutations: int, rng: np.random.Generator, seed_sd: float = 0.0,
                    seed_df: float = 0.0) -> float:
    """Permutation test of 'the reward does not separate the labels' (reward_auc = 0.5, which is what the
    untrained model scores by definition): labels are shuffled within each prompt, the same shuffle in every
    seed, and the seed-mean AUC recomputed. (Swapping records with the reference's all-zero rewards would
    mix prompts scored on different scales and lose most of the power.) Seed noise as in permutation_p."""
    first = runs[0]
    n = len(first.prompt)
    grouped = np.argsort(first.prompt, kind="stable")  # rows prompt by prompt
    order = np.argsort(first.prompt[None, :] + rng.random((n_permutations, n)), axis=1)  # shuffled within
    labels = np.empty((n_permutations + 1, n), bool)
    labels[0] = first.label
    labels[np.arange(1, n_permutations + 1)[:, None], order] = first.label[grouped][None, :]
    # (a prompt lies in one block, so shuffling within prompts keeps every block's label counts)
    aucs = np.mean([rank_auc(np.broadcast_to(r.logp - r.ref_logp, labels.shape), labels, first.block)
                    for r in runs], axis=0)
    return float((1 + _beyond(aucs[1:] - 0.5, abs(aucs[0] - 0.5), seed_sd, seed_df)) / (n_permutations + 1))


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(value on the data, percentile interval over the resamples)."""
    boot = samples[1:][~np.isnan(samples[1:])]
    if not len(boot):
        return float(samples[0]), np.nan, np.nan
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(samples[0]), float(lo), float(hi)


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
    pairwise: dict  # (a, b) -> (delta a-b, lo, hi, p, p_holm, P(a > b))
    seeds: SeedSpread | None = None  # the seed variance the p-values carry


def compare(recipes: dict[str, list[Run]], metric_name: str, n_prompts: int, *, n_resamples: int = 2000,
            seed: int = 0, alpha: float = 0.05) -> Comparison:
    """Every recipe's value with its interval, its difference from the untrained model, and every pair's
    difference, all on one set of prompt draws (paired). `seed` fixes every draw; record it."""
    draws = prompt_draws(n_prompts, n_resamples, _stream(seed, "prompts"))
    samples = {name: recipe_samples(metric_name, runs, draws, _stream(seed, "seeds", name))
               for name, runs in recipes.items()}
    first = next(iter(recipes.values()))  # the same model in every run
    ref = recipe_samples(metric_name, first, draws, _stream(seed, "seeds", "untrained model"), reference=True)
    estimates = {name: interval(s) for name, s in samples.items()}
    spread = seed_spread(metric_name, recipes, n_prompts, _stream(seed, "seed spread"))

    def vs_reference_p(name):
        runs = recipes[name]
        sd, df = spread.scale((name,), len(runs))
        rng = _stream(seed, "vs untrained", name)
        if metric_name == "reward_auc":
            return auc_vs_chance_p(runs, n_resamples, rng, sd, df)
        # each seed against the reference records of its own run (the same model, so the same scores)
        return permutation_p(metric_name, runs, [as_reference(r) for r in runs], n_prompts, n_resamples, rng, sd, df)

    vs = {name: (*interval(s - ref), vs_reference_p(name)) for name, s in samples.items()}
    vs_holm = holm([v[3] for v in vs.values()])
    vs = {name: (*v, h) for (name, v), h in zip(vs.items(), vs_holm)}
    names = list(recipes)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    pairwise = _pairwise(metric_name, recipes, samples, pairs, n_prompts, n_resamples, seed, alpha, spread)
    return Comparison(metric_name, n_prompts, n_resamples, seed, estimates, interval(ref), vs, pairwise, spread)


def _pairwise(metric_name: str, recipes: dict, samples: dict, pairs: list, n_prompts: int, n_resamples: int,
              seed: int, alpha: float, spread: SeedSpread) -> dict:
    """(a, b) -> (delta a-b, lo, hi, p, p_holm, P(a > b)); Holm across exactly these pairs (one family)."""
    def p_value(a, b, n, stop_below=0.0):
        a, b = sorted((a, b))  # |difference| is symmetric: one pair, one stream, one p in either order
        sd, df = spread.scale((a, b), min(len(recipes[a]), len(recipes[b])))
        return permutation_p(metric_name, recipes[a], recipes[b], n_prompts, n, _stream(seed, "pair", a, b, n),
                             sd, df, stop_below)

    raw = {}
    for a, b in pairs:
        d = samples[a] - samples[b]
        boot = d[1:][~np.isnan(d[1:])]
        raw[(a, b)] = [*interval(d), p_value(a, b, n_resamples), float((boot > 0).mean()) if len(boot) else np.nan]
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
    return {k: (*v[:4], h, v[4]) for (k, v), h in zip(raw.items(), adjusted)}


def differences(recipes: dict[str, list[Run]], pairs: list[tuple[str, str]], metric_name: str, n_prompts: int, *,
                n_resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Only the given pairs, paired by prompt as in `compare`, Holm-adjusted as one family of their own: for a
    question asked of a few pairs (did tuning move each recipe?), not diluted by every other pair. With the
    same recipes and seed, each pair's difference, interval and raw p-value are those `compare` gives it."""
    draws = prompt_draws(n_prompts, n_resamples, _stream(seed, "prompts"))
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    samples = {name: recipe_samples(metric_name, recipes[name], draws, _stream(seed, "seeds", name)) for name in names}
    return _pairwise(metric_name, recipes, samples, pairs, n_prompts, n_resamples, seed, alpha,
                     seed_spread(metric_name, recipes, n_prompts, _stream(seed, "seed spread")))


def mcnemar_p(policy_pass: np.ndarray, reference_pass: np.ndarray) -> float:
    """Exact McNemar test of one run's verified passes against the reference's, prompt by prompt (valid for
    one greedy generation per prompt, i.e. per seed)."""
    from scipy.stats import binomtest

    b = int((policy_pass & ~reference_pass).sum())
    c = int((~policy_pass & reference_pass).sum())
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def verdict(c: Comparison, alpha: float = 0.05) -> str:
    """One or two sentences a reader can act on, derived from the Holm-adjusted tests only."""
    names = sorted(c.estimates, key=lambda n: -c.estimates[n][0] if c.metric != "kl" and c.metric != "desirable_nll"
                   else c.estimates[n][0])
    better = "higher" if c.metric not in ("kl", "desirable_nll") else "lower"

    def beats(a, b):
        key, sign = ((a, b), 1) if (a, b) in c.pairwise else ((b, a), -1)
        delta, _, _, _, p_holm, _ = c.pairwise[key]
        good = sign * delta > 0 if better == "higher" else sign * delta < 0
        return good and p_holm < alpha

    decided = [n for n in names if c.vs_reference[n][4] < alpha]
    good = [n for n in decided if (c.vs_reference[n][0] > 0) == (better == "higher")]
    bad = [n for n in decided if n not in good]
    best = names[0]
    beaten = [n for n in names[1:] if beats(best, n)]
    tied = [n for n in names[1:] if n not in beaten]
    ref_text = "; ".join(t for t in (f"better than the untrained model: {', '.join(good)}" if good else "",
                                      f"worse than it: {', '.join(bad)}" if bad else "") if t) \
        or "no recipe is distinguishable from the untrained model"
    if len(names) == 1:
        return f"On {c.metric} ({c.prompts} prompts), {ref_text}."
    if not beaten:
        return (f"On {c.metric}, no recipe is distinguishable from another at this budget ({c.prompts} prompts, "
                f"Holm-adjusted p >= {alpha}); {ref_text}.")
    return (f"{best} is best on {c.metric} ({better} is better): ahead of {', '.join(beaten)} (Holm p < {alpha})"
            + (f"; tied with {', '.join(tied)}" if tied else "") + f" ({c.prompts} prompts); {ref_text}.")
