"""The bootstrap over prompts and seeds, and the metrics it recomputes on every resample.

Pure functions (numpy, scipy; no torch). A run's records are its eval_items.csv rows (prompt_id, label,
logp, ref_logp, tokens, kl_sum) and, when it has a verifier, its eval_generations.jsonl rows (prompt_id,
policy_pass, reference_pass). A resample is a weight per prompt (how often it was drawn), so nothing is
copied: every row of a prompt moves with it, and the same draw serves every recipe (paired). prefopt.stats
builds the comparison from these; prefopt.permutation holds its tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METRICS = ("reward_auc", "kl", "desirable_nll", "verified_success")
# what the untrained model scores by definition, where no record is needed
REFERENCE_FIXED = {"reward_auc": 0.5, "kl": 0.0}


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
    seed: int | None = None  # the training seed, for what is reported per seed (McNemar)
    # the precision it ran in, where the comparison's runs ran in several (prefopt.samples.precisions): its
    # untrained model's records are then those of that precision's reference, not another's
    precision: str | None = None


def prompt_draws(n_prompts: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, prompts) counts: how often each prompt is drawn in each resample (row 0: the data)."""
    counts = rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts), size=n_resamples)
    return np.vstack([np.ones(n_prompts, int), counts])


def blocks(block: np.ndarray | None, n: int) -> list:
    """Row masks of each block (one mask of every row without blocks)."""
    if block is None:
        return [np.ones(n, bool)]
    return [block == b for b in np.unique(block)]


def weighted_auc(score: np.ndarray, label: np.ndarray, w: np.ndarray, block: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC of `score` for `label` with row weights w (resamples, rows): the AUC of the resampled rows,
    ties counting one half, for every resample at once. With `block`, over (desirable, undesirable) pairs
    within a block only: the blocks' AUCs averaged, each weighted by its number of such pairs."""
    if np.isnan(score).any():  # argsort would rank a NaN above every score: no AUC rather than a wrong one
        return np.full(w.shape[0], np.nan)
    num, total = 0.0, 0.0
    for rows in blocks(block, len(score)):
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
    `block`, over pairs within a block, as weighted_auc. Scores of shape (rows) serve every row of labels."""
    from scipy.stats import rankdata

    scores, labels = np.atleast_2d(scores), np.atleast_2d(labels).astype(bool)
    num, total = 0.0, 0.0
    for rows in blocks(block, scores.shape[1]):
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


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(value on the data, percentile interval over the resamples that have a value: `unvalued` counts the
    others, for the reader)."""
    boot = samples[1:][~np.isnan(samples[1:])]
    if not len(boot):
        return float(samples[0]), np.nan, np.nan
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(samples[0]), float(lo), float(hi)


def unvalued(samples: np.ndarray) -> int:
    """Resamples without a value though the data has one, which `interval` leaves out: an AUC on a draw of
    prompts of one label only, a desirable_nll on a draw without a desirable row (one rated completion per
    prompt, few held-out prompts). A value NaN on the data itself is said elsewhere (n/a), not here."""
    return 0 if np.isnan(samples[0]) else int(np.isnan(samples[1:]).sum())
