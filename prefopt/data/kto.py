"""Row order for unpaired (KTO) training, per-label weights, and the batch audit.

trl.KTOTrainer reads rows in dataset order (sequential sampling) and builds its KL estimate by rotating
completions by one inside each consecutive block of per_device_train_batch_size rows: row i of a
block is paired with the completion of row i-1, row 0 with the block's last. So the order decides
which labels each micro-batch holds, and which KL pairs are real mismatches. With N processes,
block k goes to process k mod N, so an order that is good block by block is good on every process.

Each strategy returns, per epoch, an array of row indices into the train table; every epoch's length is
a multiple of batch_size * world_size (padded with repeated rows) so no micro-batch is partial.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KL_RATIO = 7 / 6  # target for weights=auto: the middle of the KTO paper's [1, 4/3]


def _rng(seed: int, epoch: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, salt])


def _pad(order: np.ndarray, unit: int, rng) -> np.ndarray:
    short = -len(order) % unit
    return np.concatenate([order, rng.choice(order, short, replace=short > len(order))]) if short else order


def file_order(labels: np.ndarray, keys: np.ndarray, batch: int, world: int, seed: int, epoch: int) -> np.ndarray:
    return _pad(np.arange(len(labels)), batch * world, _rng(seed, epoch, 0))


def natural(labels, keys, batch, world, seed, epoch) -> np.ndarray:
    rng = _rng(seed, epoch, 1)
    return _pad(rng.permutation(len(labels)), batch * world, rng)


def balanced(labels, keys, batch, world, seed, epoch) -> np.ndarray:
    # The subset is drawn once (epoch-independent seed) and reshuffled every epoch.
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    small, large = (pos, neg) if len(pos) <= len(neg) else (neg, pos)
    subset = np.concatenate([small, np.random.default_rng([seed, 2]).choice(large, len(small), replace=False)])
    rng = _rng(seed, epoch, 3)
    return _pad(rng.permutation(subset), batch * world, rng)


def mixed(labels, keys, batch, world, seed, epoch) -> np.ndarray:
    """Every block of `batch` rows holds both labels, each block's minority count within one of the
    global share; all rows used; minority rows reused only when there are more blocks than minority rows."""
    rng = _rng(seed, epoch, 4)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    if batch < 2 or not len(pos) or not len(neg):
        return natural(labels, keys, batch, world, seed, epoch)
    small, large = (pos, neg) if len(pos) <= len(neg) else (neg, pos)
    n = len(labels)
    blocks = -(-n // batch)
    if len(small) < blocks:  # every block needs a minority row: fit the majority at batch-1 per block
        blocks = -(-len(large) // (batch - 1))
    blocks = -(-blocks // world) * world
    slots = blocks * batch
    n_small = int(np.clip(round(slots * len(small) / n), max(len(small), blocks), min(slots - len(large), slots - blocks)))
    per_block = np.diff(np.floor(np.arange(blocks + 1) * n_small / blocks).astype(np.int64))
    rng.shuffle(per_block)  # which blocks get the extra minority row

    # slot labels: the first per_block[k] slots of block k are minority, then shuffled inside the block
    is_small = (np.arange(batch)[None, :] < per_block[:, None])
    shuffle = np.argsort(rng.random((blocks, batch)), axis=1)
    is_small = np.take_along_axis(is_small, shuffle, axis=1).ravel()

    def fill(rows, count):
        rows = rng.permutation(rows)
        extra = count - len(rows)
        return np.concatenate([rows, rng.choice(rows, extra, replace=extra > len(rows))]) if extra else rows

    order = np.empty(slots, dtype=np.int64)
    order[is_small] = fill(small, int(is_small.sum()))
    order[~is_small] = fill(large, slots - int(is_small.sum()))
    return _separate_prompts(order, labels, keys, batch, rng)


def _kl_sources(length: int, batch: int) -> np.ndarray:
    """Index of the row whose completion each position's KL term borrows (rotation by one per block)."""
    pos = np.arange(length)
    start = pos - pos % batch
    width = np.minimum(batch, length - start)
    return start + (pos - start - 1) % width


def _separate_prompts(order, labels, keys, batch, rng, passes: int = 4) -> np.ndarray:
    """Swap rows of the same label between positions so no KL pair is two completions of one prompt,
    where the data allows. Label counts per block are unchanged, so the mix guarantee holds."""
    codes = pd.factorize(keys)[0]
    src = _kl_sources(len(order), batch)
    dst = np.empty_like(src)
    dst[src] = np.arange(len(src))  # the position that borrows each position's completion
    lab = labels[order]
    by_label = {True: np.flatnonzero(lab), False: np.flatnonzero(~lab)}
    for _ in range(passes):
        bad = np.flatnonzero(codes[order] == codes[order[src]])
        if not len(bad):
            break
        for i in rng.permutation(bad):
            if codes[order[i]] != codes[order[src[i]]]:
                continue  # fixed by an earlier swap
            same = by_label[bool(lab[i])]
            for j in rng.choice(same, min(8, len(same)), replace=False):
                order[i], order[j] = order[j], order[i]
                touched = (i, j, dst[i], dst[j])
                if all(codes[order[t]] != codes[order[src[t]]] for t in touched):
                    break
                order[i], order[j] = order[j], order[i]
    return order


STRATEGIES = {
    "file_order": (file_order, ("unpaired", "paired"), "rows as they stand in the file (what a bare trainer sees)"),
    "natural": (natural, ("unpaired", "paired"), "seeded shuffle, reshuffled per epoch; no batch guarantee"),
    "balanced": (balanced, ("unpaired",), "all minority rows + an equal seeded sample of the majority"),
    "mixed": (mixed, ("unpaired",), "all rows; every micro-batch holds both labels, no same-prompt KL pairs"),
}


def auto_weights(n_desirable: int, n_undesirable: int) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) with lambda_D*n_D / (lambda_U*n_U) in [1, 4/3] (KTO paper,
    Eq. 8): the majority keeps weight 1, the minority is raised; equal counts give 1, 1."""
    if n_desirable == n_undesirable or not n_desirable or not n_undesirable:
        return 1.0, 1.0
    if n_desirable > n_undesirable:
        return 1.0, round(n_desirable / (n_undesirable * KL_RATIO), 4)
    return round(KL_RATIO * n_undesirable / n_desirable, 4), 1.0


def audit(labels: np.ndarray, keys: np.ndarray, batch: int) -> dict:
    """Single-label blocks and same-prompt KL pairs over an exact order (labels/keys already ordered)."""
    n = len(labels)
    block = np.arange(n) // batch
    pos_per_block = np.bincount(block, weights=labels.astype(np.float64))
    size = np.bincount(block)
    codes = pd.factorize(keys)[0]
    src = _kl_sources(n, batch)
    same = (codes == codes[src]) & (src != np.arange(n))
    return {"batches": int(len(size)),
            "single_label_batches": int(((pos_per_block == 0) | (pos_per_block == size)).sum()),
            "kl_same_prompt_pairs": int(same.sum())}
