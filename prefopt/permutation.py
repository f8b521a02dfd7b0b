"""The tests behind prefopt.stats: paired permutation tests over prompts with the seed effect's noise
integrated in, the exact test of verified_success, the seed effect's variance, and McNemar per seed.

Pure functions (numpy, scipy; no torch). Swapping prompts between two recipes asks whether *these trained
models* differ; each permuted difference also carries the seed noise a difference of seed means has
(seed_spread, SeedSpread.scale), so the question is about recipes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .resample import METRICS, Run, blocks, metric, rank_auc

SPREAD_LEVEL = 0.1  # a recipe's seeds spread more than the others' when an F test says so at this level
APART_LEVEL = 0.01  # ... and so far apart that they stay out of the pool at this one
CHUNK = 20_000  # permutations drawn at once
RETEST = 100  # a pair retested for Holm gets RETEST x pairs / alpha permutations (see stats._pairwise)


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

    def scale(self, recipes: tuple, k: int | tuple) -> tuple[float, float]:
        """(sd, df) of the seed noise in a difference of seed means of `recipes` (one name against the
        reference, whose model is the same in every run; two names against each other), over k seeds each
        (or each recipe's own count, a tuple). Welch-Satterthwaite over the independent estimates: the pooled
        one counts once however many recipes use it."""
        ks = k if isinstance(k, tuple) else (k,) * len(recipes)
        parts = {}  # estimate -> (variance it contributes, its df)
        for r, n in zip(recipes, ks):
            var, df, key = self.term(r)
            parts[key] = (parts.get(key, (0.0, df))[0] + var / n, df)
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
        return _swapped_auc_difference(ra, rb, a.label, a.block, f)
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


def _swapped_auc_difference(ra: np.ndarray, rb: np.ndarray, label: np.ndarray, block: np.ndarray | None,
                            f: np.ndarray) -> np.ndarray:
    """rank_auc(where(f, rb, ra)) - rank_auc(where(f, ra, rb)) for every row of `f`, without ranking each
    permutation: a desirable row i and an undesirable row j of one block compare in one of four ways, as
    each takes a's score or b's (c[s][t]: 1, 1/2 on a tie, or 0), so a permutation's concordant count is four
    bilinear forms in its swap vector, and all permutations are a few matrix products. The counts are sums
    of halves, exact in float64 in any order, so the AUCs are the ranks' own, bit for bit."""
    if np.isnan(ra).any() or np.isnan(rb).any():
        return np.full(f.shape[0], np.nan)
    label, f = label.astype(bool), f.astype(float)
    num_a, num_b, total = np.zeros(f.shape[0]), np.zeros(f.shape[0]), 0
    for rows in blocks(block, len(ra)):
        pos, neg = rows & label, rows & ~label
        x, y = (ra[pos], rb[pos]), (ra[neg], rb[neg])
        fp, fn = (1 - f[:, pos], f[:, pos]), (1 - f[:, neg], f[:, neg])
        for s in (0, 1):
            for t in (0, 1):
                c = (x[s][:, None] > y[t]) + 0.5 * (x[s][:, None] == y[t])
                num_a += ((fp[s] @ c) * fn[t]).sum(1)  # a' takes a's score where not swapped
                num_b += ((fp[1 - s] @ c) * fn[1 - t]).sum(1)  # b' takes b's there
        total += int(pos.sum()) * int(neg.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return num_a / total - num_b / total


def _quantiles(score: np.ndarray, block: np.ndarray | None) -> np.ndarray:
    from scipy.stats import rankdata

    out = np.empty(len(score))
    for rows in blocks(block, len(score)):
        out[rows] = rankdata(score[rows]) / rows.sum()
    return out


def permutation_p(name: str, a: list[Run], b: list[Run], n_prompts: int, n_permutations: int,
                  rng: np.random.Generator, seed_sd: float = 0.0, seed_df: float = 0.0, stop_below: float = 0.0
                  ) -> float:
    """Paired permutation test of 'a and b score alike': prompts are the exchangeable units, so each
    permutation swaps a's and b's records on a random half of the prompts (in every seed pair at once) and
    recomputes the difference of the seed means, to which it adds the seed noise (seed_sd, seed_df:
    SeedSpread.scale; none by default, which tests these trained models only). Seeds are paired in order;
    with different seed counts every seed of a is paired with every seed of b, so that the observed statistic
    (the mean of those pairs' differences) is the difference of the seed means the tables print, all seeds
    counted. verified_success is computed
    exactly (_exact_pass_p): no permutation drawn, `rng` untouched. `stop_below`: a retest's level, at
    which it may stop early (_monte_carlo_p)."""
    if len(a) != len(b):
        a, b = [x for x in a for _ in b], [y for _ in a for y in b]
    k = len(a)
    if name == "verified_success":
        if not all(len(r.gen_prompt) for r in a[:k] + b[:k]):
            return np.nan
        return _exact_pass_p(a[:k], b[:k], seed_sd, seed_df)
    def chunk(n):
        flips = rng.random((n + 1, n_prompts)) < 0.5
        flips[0] = False
        delta = np.mean([_flipped(name, ra, rb, flips) for ra, rb in zip(a[:k], b[:k])], axis=0)
        return np.nan if np.isnan(delta[0]) else _beyond(delta[1:], abs(delta[0]), seed_sd, seed_df)

    return _monte_carlo_p(chunk, n_permutations, stop_below)


def _monte_carlo_p(chunk, n_permutations: int, stop_below: float = 0.0) -> float:
    """(1 + count) / (permutations + 1), drawn in chunks (a retest may take a few hundred thousand):
    chunk(n) counts how many of n fresh permutations lie beyond the observed statistic (_beyond), NaN where
    there is no statistic. With `stop_below` (a retest) it stops at a chunk's end once the p-value is known
    well enough for a decision at that level: RETEST permuted statistics beyond the observed one (about 10%
    Monte Carlo error), or so few that p is surely below half of `stop_below`."""
    count, done = 0.0, 0
    while done < n_permutations:
        n = min(CHUNK, n_permutations - done)
        beyond = chunk(n)
        if np.isnan(beyond):
            return np.nan
        count, done = count + beyond, done + n
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
                    seed_df: float = 0.0, stop_below: float = 0.0) -> float:
    """auc_vs_chance's p-value alone."""
    return auc_vs_chance(runs, n_permutations, rng, seed_sd, seed_df, stop_below)[0]


def auc_vs_chance(runs: list[Run], n_permutations: int, rng: np.random.Generator, seed_sd: float = 0.0,
                  seed_df: float = 0.0, stop_below: float = 0.0) -> tuple[float, float]:
    """(p, observed AUC - permuted centre). Permutation test of 'the reward does not separate the labels'
    (what the untrained model's all-zero rewards do, AUC 0.5): labels are shuffled within each prompt, the
    same shuffle in every seed, and the seed-mean AUC recomputed. (Swapping records with the reference's
    all-zero rewards would mix prompts scored on different scales and lose most of the power.) The AUC
    compares rows across prompts too, and a shuffle within prompts keeps what prompts' rewards and label
    mixes share: the permuted AUCs centre there (about 0.6 on the shipped single split), not at 0.5, so
    distances are taken from their mean. Measured from 0.5, a reward that separated prompts but no label
    within one read as significant, and one below the permuted centre as no different. So the side the test
    decides is the sign of AUC - centre, which can differ from that of AUC - 0.5 (a reward above 0.5 that
    ranks the labels the wrong way round within prompts is worse than none). NaN rewards give NaN, and so
    does a table where no prompt holds both labels (one rated completion per prompt): every shuffle within
    prompts is then the labels as they are, the permuted AUCs all equal the observed one, and the p-value
    of 1 it would give is no test (within_prompt_testable). Seed noise as in permutation_p; `stop_below` as
    there: permutations in chunks, the centre that of the first (all of them up to CHUNK: no permuted AUC is
    kept beyond one chunk)."""
    if any(np.isnan(r.logp - r.ref_logp).any() for r in runs) or not within_prompt_testable(runs[0]):
        return np.nan, np.nan
    first = runs[0]
    n = len(first.prompt)
    grouped = np.argsort(first.prompt, kind="stable")  # rows prompt by prompt

    def aucs(k):
        """the seed-mean AUC for the observed labels (row 0), then for k shuffles within prompts"""
        order = np.argsort(first.prompt[None, :] + rng.random((k, n)), axis=1)
        labels = np.empty((k + 1, n), bool)
        labels[0] = first.label
        labels[np.arange(1, k + 1)[:, None], order] = first.label[grouped][None, :]
        # (a prompt lies in one block, so shuffling within prompts keeps every block's label counts)
        # the scores are ranked once: only the labels move (ranking them in every row took most of a retest)
        return np.mean([rank_auc(r.logp - r.ref_logp, labels, first.block) for r in runs], axis=0)

    head = aucs(min(CHUNK, n_permutations))
    observed, centre = head[0], float(head[1:].mean())
    if np.isnan(observed):  # one label only: no AUC, so nothing to test (not the p of NaN never beyond)
        return np.nan, np.nan
    pending = [head]

    def chunk(k):
        null = (pending.pop() if pending else aucs(k))[1:]
        return _beyond(null - centre, abs(observed - centre), seed_sd, seed_df)

    return _monte_carlo_p(chunk, n_permutations, stop_below), float(observed - centre)


def within_prompt_testable(run: Run) -> bool:
    """Can shuffling labels within prompts (auc_vs_chance) move any label: does a prompt hold both?"""
    labels = run.label.astype(bool)
    desirable = np.bincount(run.prompt, weights=labels)
    return bool(((desirable > 0) & (desirable < np.bincount(run.prompt))).any())


def mcnemar_p(policy_pass: np.ndarray, reference_pass: np.ndarray) -> float:
    """mcnemar's p-value alone."""
    return mcnemar(policy_pass, reference_pass)[2]


def mcnemar(policy_pass: np.ndarray, reference_pass: np.ndarray) -> tuple[int, int, float]:
    """(prompts only the policy passes, prompts only the reference passes, two-sided p): the exact McNemar
    test of one run's verified passes against the reference's, prompt by prompt (valid for one greedy
    generation per prompt, i.e. per seed)."""
    from scipy.stats import binomtest

    policy, reference = np.asarray(policy_pass, bool), np.asarray(reference_pass, bool)
    b = int((policy & ~reference).sum())
    c = int((~policy & reference).sum())
    return b, c, 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
