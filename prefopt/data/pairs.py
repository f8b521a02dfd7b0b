"""Pairs for DPO / ORPO from binary-labeled rows: within a prompt, a desirable row and an undesirable row.

All functions return row positions, never copies of text, so the same code pairs a million rows in a
fraction of a second and the caller decides which columns a pair carries. Rows left out of every pair are
not dropped silently: `prepare` reports them as `unpaired_rows`.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .split import ORDER, stream

PAIRINGS = {
    "one_to_one": "each completion in at most one pair: min(desirable, undesirable) pairs per prompt, seeded choice",
    "all": "every desirable x undesirable combination of a prompt",
}


def make_pairs(groups, labels, *, pairing: str = "one_to_one", max_pairs_per_prompt: int | None = None,
               rng: np.random.Generator, file: str | None = None, stated=None) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rejected) row positions, sorted by chosen then rejected position (file order). `stated`: each
    row's pair id when the file gave pairs (prompt, chosen, rejected): those pairs are kept as stated, the
    `pairing` rule is for labels alone."""
    groups, labels = np.asarray(groups, dtype=np.int64), np.asarray(labels, dtype=bool)
    if stated is not None:
        # each stated pair's two rows share a prompt, so a split by prompt keeps or holds out both
        ids = np.asarray(stated, dtype=np.int64)
        chosen, rejected = (rows[np.argsort(ids[rows], kind="stable")]
                            for rows in (np.flatnonzero(labels), np.flatnonzero(~labels)))
    elif pairing == "one_to_one":
        chosen, rejected = _one_to_one(groups, labels, rng)
    elif pairing == "all":
        chosen, rejected = _all(groups, labels)
    else:
        raise ValueError(f"unknown pairing {pairing!r}")  # prepare checks user input first
    if max_pairs_per_prompt is not None:
        keep = _first_per_group(groups[chosen], max_pairs_per_prompt, rng)
        chosen, rejected = chosen[keep], rejected[keep]
    by_file = np.lexsort((rejected, chosen))
    return chosen[by_file], rejected[by_file]


def order_pairs(n_pairs: int, strategy: str, *, epochs: int, seed: int) -> list[np.ndarray]:
    """Pair positions in training order, one array per epoch: file order, or a seeded shuffle per epoch."""
    if strategy == "file_order":
        return [np.arange(n_pairs)] * epochs
    return [stream(seed, ORDER, 1 + e).permutation(n_pairs) for e in range(epochs)]


def _shuffled_runs(key: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions sorted by key with each run of equal keys in seeded random order, and every position's
    rank inside its run (0, 1, ...): 'rank < k' then picks k random members of every run."""
    shuffled = rng.permutation(len(key))
    order = shuffled[np.argsort(key[shuffled], kind="stable")]
    k = key[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order, rank


def _one_to_one(groups, labels, rng):
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    desirable = np.bincount(groups, weights=labels, minlength=n_groups).astype(np.int64)
    undesirable = np.bincount(groups, minlength=n_groups) - desirable
    pairs = np.minimum(desirable, undesirable)
    order, rank = _shuffled_runs(groups * 2 + labels, rng)  # runs: one label of one prompt
    used = rank < pairs[groups[order]]  # the first min(nD, nU) of each run, which is a random choice
    # Both kept lists are ordered by (group, rank), so the k-th desirable meets the k-th undesirable.
    return order[used & labels[order]], order[used & ~labels[order]]


def _all(groups, labels):
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    desirable = np.flatnonzero(labels)
    desirable = desirable[np.argsort(groups[desirable], kind="stable")]
    undesirable = np.flatnonzero(~labels)
    undesirable = undesirable[np.argsort(groups[undesirable], kind="stable")]
    per_group = np.bincount(groups[undesirable], minlength=n_groups)
    first = np.cumsum(per_group) - per_group  # where each group's undesirable rows start
    times = per_group[groups[desirable]]  # each desirable row meets every undesirable row of its prompt
    chosen = np.repeat(desirable, times)
    offset = np.arange(len(chosen)) - np.repeat(np.cumsum(times) - times, times)
    rejected = undesirable[np.repeat(first[groups[desirable]], times) + offset]
    return chosen, rejected


def _first_per_group(groups: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Mask keeping a seeded random `limit` items of every group."""
    order, rank = _shuffled_runs(groups, rng)
    keep = np.zeros(len(groups), dtype=bool)
    keep[order[rank < limit]] = True
    return keep


def check_max_pairs(value, file: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise UserError(file, "data.max_pairs_per_prompt", f"must be a whole number of at least 1 (or left out "
                        f"for no limit), got {value!r}")
