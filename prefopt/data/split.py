"""The held-out split: by prompt, seeded, and the same for every recipe that shares file, fraction and seed.

Methods are only comparable on the same held-out examples, so nothing here may depend on the method, the
data strategy or the batch size: the split sees prompt keys, labels, the fraction and the seed, nothing else.
It is also independent of row order (prompts are ranked by their key before the seeded draw), so
re-sorting a file does not move prompts between train and held-out.

The draw is stratified: prompts that carry both labels and prompts that carry one are split separately
with the same fraction. Held-out preference accuracy needs prompts with both labels, and a plain draw can
leave the held-out split without any (small files, few such prompts); stratifying guarantees at least one
whenever the file has one, and keeps the held-out mix like the file's. A file in which no prompt has both
labels (one rated completion per prompt, KTO's own form) is stratified by its prompts' label instead, so
that reward_auc, which ranks desirable against undesirable rows, has both held out (`strata`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UserError

# Independent random streams per purpose, so that e.g. changing the strategy cannot change the split.
SPLIT, ORDER, PAIRS, EVAL_PAIRS, VALIDATION, FOLDS = range(6)


def stream(seed: int, *purpose: int) -> np.random.Generator:
    """A generator for one purpose (and e.g. one epoch) derived from the recipe seed."""
    return np.random.default_rng([int(seed), *purpose])


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row positions in the input, in file order
    held_out: np.ndarray  # row positions in the input, in file order
    held_out_prompts: int
    fingerprint: str  # sha256 (hex) of the sorted held-out prompt keys, as a JSON list
    partition: str | None = None  # with folds: sha256 of every fold's sorted keys (the same for all k folds)


def group_codes(prompt_keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, key per code): the integer group of every row, from its prompt key."""
    codes, uniques = pd.factorize(prompt_keys, sort=False)
    # object, not numpy's fixed-width str: that would size every key like the longest prompt
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def question_groups(codes: np.ndarray, keys: np.ndarray, prompts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """group_codes' (code per row, key per code) regrouped: prompts that ask the same question (io.question:
    the user turns, spacing, case and Unicode form aside) share one group, so the split cannot put
    "Write a haiku" in training and "write a  haiku" in the test split. A group's key is the smallest of its
    prompt keys: where no two prompts share a question, the groups, their keys and so the split are
    exactly those of the prompts themselves."""
    from .io import question

    first = np.unique(codes, return_index=True)[1]  # a row of each prompt, in code order
    asks, _ = pd.factorize(pd.Series([question(prompts.iloc[i]) for i in first]), sort=False)
    group_keys = pd.Series(keys).groupby(asks).min().to_numpy(dtype=object)
    return asks.astype(np.int64)[codes], group_keys


def label_counts(codes: np.ndarray, labels: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(desirable, undesirable) row counts per group."""
    total = np.bincount(codes, minlength=groups)
    desirable = np.bincount(codes, weights=labels, minlength=groups).astype(np.int64)
    return desirable, total - desirable


def check_labels(labels: np.ndarray, both_prompts: int, *, file: str, form: str, method: str) -> None:
    """Errors that no split or strategy can work around: one label only, or no prompt to pair."""
    n_desirable = int(labels.sum())
    if n_desirable in (0, len(labels)):
        have, need = ("desirable", "undesirable") if n_desirable else ("undesirable", "desirable")
        why = {"unpaired": "it learns from the contrast", "paired": "its pairs hold one of each",
               "desirable": "it trains on desirable rows, but every method is scored on how it ranks desirable "
                            "against undesirable held-out completions"}.get(form, "")
        raise UserError(file, "label", f"every row is {have}; {method} needs both labels ({why}); add {need} rows "
                        "or check how the labels were written")
    if both_prompts == 0 and form == "paired":
        raise UserError(file, "label", f"no pair can be formed for {method}: no prompt has both a desirable and "
                        "an undesirable completion; add completions of the other label to some prompts")
    # The unpaired and desirable forms train without pairs: one rated completion per prompt (thumbs up or
    # down) is what KTO is for. Only the pair metrics then go unmeasured (prepare's pair_metrics_note).


def strata(desirable: np.ndarray, undesirable: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """(prompt mask, keep one on each side) per stratum of the draws: 'has both labels' and the rest, or,
    where no prompt has both, desirable-only and undesirable-only prompts (each side then gets both labels
    when each label has two prompts). The second form only ever applies to files no paired method can use:
    files with a prompt of both labels split exactly as before it existed."""
    both = (desirable > 0) & (undesirable > 0)
    if both.any():
        return [(both, True), (~both, False)]
    return [(desirable > 0, True), (undesirable > 0, True)]


def split_by_prompt(codes: np.ndarray, keys: np.ndarray, labels: np.ndarray, *, eval_fraction: float, seed: int,
                    file: str) -> Split:
    """Hold out about `eval_fraction` of the prompts (all their rows), seeded, stratified by 'has both labels'."""
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) \
            or not 0 < eval_fraction < 1 or math.isnan(eval_fraction):
        raise UserError(file, "data.eval_fraction", f"must be a number between 0 and 1 (exclusive), got "
                        f"{eval_fraction!r}; 0.1 holds out a tenth of the prompts")
    by_key = np.argsort(keys, kind="stable")  # group ids in key order: row order cannot matter
    rng = stream(seed, SPLIT)
    held = np.zeros(len(keys), dtype=bool)
    for stratum, at_least_one in strata(*label_counts(codes, labels, len(keys))):
        ids = by_key[stratum[by_key]]
        take = math.floor(eval_fraction * len(ids) + 0.5)
        if at_least_one and len(ids):
            # Held-out pairs (or labels) need one such prompt; training keeps one too while there are two or more.
            take = min(max(take, 1), max(len(ids) - 1, 1))
        held[ids[rng.permutation(len(ids))[:take]]] = True
    if not held.any() or held.all():
        raise UserError(file, "data.eval_fraction", f"{len(keys)} prompt(s) cannot be split into train and "
                        f"held-out with eval_fraction={eval_fraction}; add prompts or change the fraction")
    # (a file with a prompt carrying both labels holds one out: at_least_one above; one without any has no
    # pairs to hold out, which only a paired method refuses, in check_labels, and holds out both labels)
    return _split(codes, keys, held)


def _split(codes: np.ndarray, keys: np.ndarray, held: np.ndarray, partition: str | None = None) -> Split:
    held_rows = held[codes]
    return Split(train=np.flatnonzero(~held_rows), held_out=np.flatnonzero(held_rows),
                 held_out_prompts=int(held.sum()), fingerprint=_keys_hash(keys[held]), partition=partition)


def _keys_hash(keys: np.ndarray) -> str:
    return hashlib.sha256(json.dumps(np.sort(keys).tolist()).encode()).hexdigest()


def fold_of(codes: np.ndarray, keys: np.ndarray, labels: np.ndarray, *, folds: int, seed: int,
            file: str) -> np.ndarray:
    """The fold (0..folds-1) of every prompt (group id): a seeded partition by prompt, stratified like the
    split (`strata`, each dealt round-robin after a shuffle, so fold sizes differ by at most one per
    stratum), in key order so row order cannot matter. Every fold gets a prompt with both labels, or in a
    file where none has both, a prompt of each label."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be a whole number >= 2, got {folds!r}")  # recipe.py checks the user's value
    desirable, undesirable = label_counts(codes, labels, len(keys))
    both = (desirable > 0) & (undesirable > 0)
    # none at all (one rated completion per prompt, for KTO or SFT): every fold lacks pairs alike, and only
    # the pair metrics go unmeasured; a few, fewer than the folds, would leave them measured in some folds only
    if 0 < both.sum() < folds:
        raise UserError(file, "data.folds", f"{int(both.sum())} prompt(s) carry both labels, fewer than the "
                        f"{folds} folds, so some fold could not measure preference accuracy; lower data.folds")
    fewest = min(int((desirable > 0).sum()), int((undesirable > 0).sum()))
    if not both.any() and fewest < folds:
        raise UserError(file, "data.folds", f"{fewest} prompt(s) carry the rarer label, fewer than the {folds} "
                        "folds, so some fold could not measure reward_auc; lower data.folds")
    by_key = np.argsort(keys, kind="stable")
    rng = stream(seed, FOLDS)
    fold = np.empty(len(keys), dtype=np.int64)
    offset = 0
    for stratum, _ in strata(desirable, undesirable):
        ids = by_key[stratum[by_key]]
        # the second stratum continues the round-robin, so the small folds of one fill up with the other
        fold[ids[rng.permutation(len(ids))]] = (np.arange(len(ids)) + offset) % folds
        offset += len(ids)
    return fold


def fold_split(codes: np.ndarray, keys: np.ndarray, labels: np.ndarray, *, folds: int, fold: int, seed: int,
               file: str) -> Split:
    """Cross-fitting: fold `fold` of the partition is the held-out (test) split, the other folds train.
    Every prompt is held out by exactly one fold; `partition` names the whole partition, so runs of one
    partition can be pooled and runs of different ones never are."""
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < folds:
        raise UserError(file, "data.fold", f"must be a fold number from 0 to {folds - 1}, got {fold!r}; "
                        "leave it out to run every fold")
    of = fold_of(codes, keys, labels, folds=folds, seed=seed, file=file)
    partition = hashlib.sha256(json.dumps([_keys_hash(keys[of == f]) for f in range(folds)]).encode()).hexdigest()
    return _split(codes, keys, of == fold, partition)


def validation_split(codes: np.ndarray, keys: np.ndarray, labels: np.ndarray, train: np.ndarray, *,
                     validation_fraction: float, seed: int, file: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Carve a validation split out of the training rows `train` (positions): about `validation_fraction`
    of all prompts, by prompt, seeded apart from the test draw (so the test split is the same with or
    without it), stratified like it. Returns (train positions, validation positions, fingerprint); with a
    fraction of 0 the validation split is empty."""
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)) \
            or not 0 <= validation_fraction < 1 or math.isnan(validation_fraction):
        raise UserError(file, "data.validation_fraction", f"must be a number from 0 (no validation split) up to "
                        f"1 (exclusive), got {validation_fraction!r}; 0.1 keeps a tenth of the prompts apart")
    in_train = np.zeros(len(keys), dtype=bool)
    in_train[codes[train]] = True
    by_key = np.argsort(keys, kind="stable")
    rng = stream(seed, VALIDATION)
    chosen = np.zeros(len(keys), dtype=bool)
    for stratum, keep_one in strata(*label_counts(codes, labels, len(keys))):
        ids = by_key[(stratum & in_train)[by_key]]
        want = math.floor(validation_fraction * int(stratum.sum()) + 0.5)
        take = min(want, max(len(ids) - 1, 0)) if keep_one else min(want, len(ids))
        chosen[ids[rng.permutation(len(ids))[:take]]] = True
    rows = chosen[codes[train]]
    return train[~rows], train[rows], _keys_hash(keys[chosen])
