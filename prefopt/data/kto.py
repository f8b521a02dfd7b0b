"""KTO orderings, the automatic desirable/undesirable weights, and the batch audit.

Why the order matters: `trl.KTOTrainer` reads the training rows sequentially, so every consecutive block of
`per_device_train_batch_size` rows is one device micro-batch (under N processes block k goes to process
k mod N; gradient accumulation does not change a micro-batch). Inside a block it builds the KL completions
by rotating by one: row i is scored with the completion of row i-1, row 0 with the block's last row. So
the order *is* the composition of every batch, and of every KL pair.

Every strategy takes the train split's labels and prompt groups and returns one array of row positions
per epoch. Each epoch is padded (by repeating rows) to a multiple of batch_size * world_size, so every
micro-batch on every process is a full block and epochs line up on block boundaries.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from .split import ORDER, stream


def file_order(labels, groups, *, batch_size, world_size, epochs, seed, file=None) -> list[np.ndarray]:
    """Rows as they stand in the file (what a bare KTOTrainer sees), every epoch alike."""
    order = _pad(np.arange(len(labels)), batch_size * world_size)
    return [order] * epochs


def natural(labels, groups, *, batch_size, world_size, epochs, seed, file=None) -> list[np.ndarray]:
    """A seeded shuffle, a new one per epoch; no guarantee about any block."""
    unit = batch_size * world_size
    return [_pad(stream(seed, ORDER, 1 + e).permutation(len(labels)), unit) for e in range(epochs)]


def balanced(labels, groups, *, batch_size, world_size, epochs, seed, file=None) -> list[np.ndarray]:
    """All minority rows plus an equal-size seeded sample of the majority, shuffled per epoch.

    The sample is drawn once, so every epoch trains on the same balanced subset (the notebook's
    workaround); only the order changes between epochs. Filling the last micro-batch repeats rows of
    both labels equally (a seeded draw from each half of the subset), so every epoch stays exactly 1:1
    and every block full; with an odd block size that can take up to one more block of filler."""
    labels = np.asarray(labels, dtype=bool)
    desirable, undesirable = np.flatnonzero(labels), np.flatnonzero(~labels)
    minority, majority = sorted((desirable, undesirable), key=len)
    sample = stream(seed, ORDER, 0).choice(majority, size=len(minority), replace=False)
    unit = batch_size * world_size
    length = math.ceil(2 * len(minority) / unit) * unit
    if length % 2:  # an odd multiple cannot split 1:1: take the next one, which is even
        length += unit
    orders = []
    for e in range(epochs):
        rng = stream(seed, ORDER, 1 + e)
        half = length // 2
        rows = np.concatenate([_fill(np.sort(minority), half, rng), _fill(np.sort(sample), half, rng)])
        orders.append(rng.permutation(rows))
    return orders


def mixed(labels, groups, *, batch_size, world_size, epochs, seed, file=None) -> list[np.ndarray]:
    """All rows; every block holds both labels in about the global ratio; KL pairs of one prompt avoided.

    Per epoch: choose the number of blocks K (a multiple of world_size) and how many desirable slots each
    block has, then fill desirable slots with a seeded shuffle of the desirable rows and the rest with the
    undesirable rows, and finally rearrange (inside blocks, and same-label swaps between blocks) until no KL
    rotation pairs two completions of one prompt, or nothing more helps. A heuristic: it reaches zero
    whenever prompts are plentiful relative to the batch; with a handful of prompts it lowers the count.
    """
    if batch_size < 2:
        raise UserError(file, "train.per_device_train_batch_size", f"the mixed strategy needs at least 2 rows per "
                        f"micro-batch to hold both labels, got {batch_size}; set it to 2 or more")
    labels = np.asarray(labels, dtype=bool)
    groups = np.asarray(groups)
    desirable, undesirable = np.flatnonzero(labels), np.flatnonzero(~labels)
    slots = mixed_layout(len(desirable), len(undesirable), batch_size, world_size)
    orders = []
    for e in range(epochs):
        rng = stream(seed, ORDER, 1 + e)
        order = np.empty(slots.size, dtype=np.int64)
        order[slots] = _fill(desirable, int(slots.sum()), rng)
        order[~slots] = _fill(undesirable, int((~slots).sum()), rng)
        orders.append(_spread_prompts(order, groups, labels, batch_size, rng))
    return orders


def mixed_layout(n_desirable: int, n_undesirable: int, batch_size: int, world_size: int) -> np.ndarray:
    """Which slots of one epoch are desirable: a flat bool array of K * batch_size slots.

    K is the fewest blocks (a multiple of world_size) that hold every row once with room for one row of each
    label per block. The desirable total is the global ratio of the padded length, kept between one per
    block and one short of a full block per block; blocks then get floor or ceil of the per-block share,
    spread evenly (Bresenham), so each block is within one row of the ideal ratio.
    """
    n, b = n_desirable + n_undesirable, batch_size
    majority = max(n_desirable, n_undesirable)
    blocks = max(math.ceil(n / b), math.ceil(majority / (b - 1)), 1)
    blocks = math.ceil(blocks / world_size) * world_size
    length = blocks * b
    ideal = math.floor(n_desirable / n * length + 0.5)
    total = min(max(ideal, n_desirable, blocks), length - n_undesirable, length - blocks)
    per_block = np.diff(np.arange(blocks + 1) * total // blocks)  # floor/ceil, evenly spread
    return (np.arange(b)[None, :] < per_block[:, None]).ravel()


def auto_weights(n_desirable: int, n_undesirable: int) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) with λD·nD / (λU·nU) in [1, 4/3] (KTO paper, Eq. 8).

    The majority class keeps weight 1.0; the minority gets the smallest weight (4 decimals, just inside the
    interval so float rounding cannot push the ratio out) that brings the ratio into range. Counts already
    in range keep 1.0 / 1.0.
    """
    if n_desirable == 0 or n_undesirable == 0:
        return 1.0, 1.0
    ratio = n_desirable / n_undesirable
    if 1 <= ratio <= 4 / 3:
        return 1.0, 1.0
    if ratio > 4 / 3:  # too many desirable: raise the undesirable weight until the ratio is just under 4/3
        return 1.0, _just_above(3 * n_desirable / (4 * n_undesirable))
    return _just_above(n_undesirable / n_desirable), 1.0  # too few desirable: ratio just over 1


def audit(labels: np.ndarray, groups: np.ndarray, batch_size: int) -> dict:
    """Count over an exact training order, in blocks of batch_size (a short last block counts as a block):
    blocks, blocks holding one label only, and KL rotation pairs whose completion is of the same prompt."""
    labels, groups = np.asarray(labels, dtype=bool), np.asarray(groups)
    full = len(labels) // batch_size * batch_size
    parts = [(labels[:full].reshape(-1, batch_size), groups[:full].reshape(-1, batch_size))]
    if full < len(labels):
        parts.append((labels[full:][None, :], groups[full:][None, :]))
    blocks = single = same = 0
    for lab, grp in parts:
        desirable = lab.sum(axis=1)
        blocks += len(lab)
        single += int(((desirable == 0) | (desirable == lab.shape[1])).sum())
        same += int((grp == np.roll(grp, 1, axis=1)).sum())  # row i is scored with row i-1's completion
    return {"batches": blocks, "single_label_batches": single, "kl_same_prompt_pairs": same}


# --- helpers ----------------------------------------------------------------------------------------------

def _pad(order: np.ndarray, unit: int) -> np.ndarray:
    """Repeat rows from the start of the order until its length is a multiple of unit."""
    return np.resize(order, math.ceil(len(order) / unit) * unit) if len(order) % unit else order


def _fill(rows: np.ndarray, slots: int, rng: np.random.Generator) -> np.ndarray:
    """`slots` rows: each row once, plus the shortfall drawn by cycling a second shuffle (so reuse is spread
    over rows, none used twice before all used once more), all in one seeded shuffle."""
    extra = np.resize(rng.permutation(rows), slots - len(rows)) if slots > len(rows) else rows[:0]
    return rng.permutation(np.concatenate([rows, extra]))


def _spread_prompts(order, groups, labels, batch_size, rng):
    """Rearrange so no KL rotation pairs two rows of one prompt, where the data allows, without changing how
    many rows of each label any block holds: reorder inside blocks, swap same-label rows between blocks,
    and reorder inside blocks once more for what the swaps could not fix."""
    order = _interleave(order, groups, batch_size)
    order = _swap_between_blocks(order, groups, labels, batch_size, rng)
    return _interleave(order, groups, batch_size)


def _interleave(order, groups, b, chunk: int = 1 << 14):
    """In every block that has a clash, put rows sorted by (how often their prompt occurs in the block, prompt)
    on positions 0, 2, 4, ... then 1, 3, 5, ...: copies of one prompt land two apart, so they only meet
    when a prompt fills more than half the block. Kept only where it lowers the block's clashes."""
    g = groups[order].reshape(-1, b)
    clashes = (g == np.roll(g, 1, axis=1)).sum(axis=1)
    todo = np.flatnonzero(clashes)
    if not len(todo) or b < 3:
        return order  # a block of 2 pairs its rows both ways whatever the order
    out = order.reshape(-1, b).copy()
    slot = np.r_[np.arange(0, b, 2), np.arange(1, b, 2)]  # where the k-th sorted row goes
    for part in np.array_split(todo, math.ceil(len(todo) / chunk)):  # bounds the (blocks, b, b) counts
        rows, grp = out[part], g[part]
        count = (grp[:, :, None] == grp[:, None, :]).sum(axis=2)
        by = _row_lexsort(-count, grp)
        new_rows, new_grp = np.empty_like(rows), np.empty_like(grp)
        new_rows[:, slot] = np.take_along_axis(rows, by, axis=1)
        new_grp[:, slot] = np.take_along_axis(grp, by, axis=1)
        better = (new_grp == np.roll(new_grp, 1, axis=1)).sum(axis=1) < clashes[part]
        out[part[better]] = new_rows[better]
    return out.ravel()


def _row_lexsort(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Per row of two (k, b) arrays: the column order sorting by primary, then secondary."""
    by_secondary = np.argsort(secondary, axis=1, kind="stable")
    primary_then = np.take_along_axis(primary, by_secondary, axis=1)
    return np.take_along_axis(by_secondary, np.argsort(primary_then, axis=1, kind="stable"), axis=1)


def _swap_between_blocks(order, groups, labels, batch_size, rng, tries: int = 8, patience: int = 4,
                         max_rounds: int = 200):
    """Swap rows between blocks (same label, so every block keeps its label counts) until no KL rotation
    pairs two rows of one prompt, or `patience` rounds in a row find no swap that helps.

    Each round takes one clashing position per block, draws `tries` random positions of the same label in
    other blocks and keeps the first whose swap leaves both places free of clashes; the accepted swaps are
    applied together, at most one per block, so the checks made before applying still hold after it.
    """
    b = batch_size
    g = groups[order]
    slots = labels[order]  # the label at each position; swaps below never change it
    by_label = [np.flatnonzero(~slots), np.flatnonzero(slots)]
    stale = 0
    for _ in range(max_rounds):
        blocks = g.reshape(-1, b)
        clash = np.flatnonzero((blocks == np.roll(blocks, 1, axis=1)).ravel())
        if not len(clash) or stale >= patience:
            break
        clash = clash[np.unique(clash // b, return_index=True)[1]]  # one per block
        lab = slots[clash].astype(int)
        pick = np.empty((len(clash), tries), dtype=np.int64)
        for value in (0, 1):
            mine = lab == value
            pick[mine] = by_label[value][rng.integers(len(by_label[value]), size=(int(mine.sum()), tries))]
        here = np.repeat(clash, tries).reshape(-1, tries)
        fits = (pick // b != here // b) & _fits(g, g[pick], here, b) & _fits(g, g[here], pick, b)
        ok = fits.any(axis=1)
        pick = pick[np.arange(len(clash)), fits.argmax(axis=1)]  # the first candidate that fits
        a, c = clash[ok], pick[ok]
        involved = np.concatenate([a // b, c // b])
        seen, counts = np.unique(involved, return_counts=True)
        once = np.isin(a // b, seen[counts == 1]) & np.isin(c // b, seen[counts == 1])
        a, c = a[once], c[once]
        stale = 0 if len(a) else stale + 1
        order[a], order[c] = order[c], order[a].copy()
        g[a], g[c] = g[c], g[a].copy()
    return order


def _fits(g: np.ndarray, new: np.ndarray, at: np.ndarray, b: int) -> np.ndarray:
    """Whether group `new` at position `at` would differ from both rotation neighbours in its block."""
    start = at // b * b
    before = start + (at - start - 1) % b
    after = start + (at - start + 1) % b
    return (g[before] != new) & (g[after] != new)


def _just_above(x: float) -> float:
    return (math.floor(x * 1e4 + 1e-6) + 1) / 1e4
