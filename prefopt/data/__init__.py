"""The data layer: one binary-labeled table -> the exact rows each method trains on, plus a report.

Pure and model-free: no torch, transformers or trl here (a test checks it), so `prefopt data` and
`prefopt list` run anywhere and fast. `io.load_rows` reads a file; `prepare` does everything else:

    rows -> held-out split by prompt (same for every method; or one fold of k) -> train split
         -> unpaired form (KTO): one ordering per epoch from the strategy, padded to full micro-batches
         -> paired form (DPO/ORPO): pairs within each prompt, in the strategy's order
    plus held-out rows and held-out pairs for the metrics, and the report that describes all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UserError, did_you_mean
from . import kto
from .io import READ_NOTES, STATED_PAIR, canonical_rows, row_numbers_of
from .pairs import PAIRINGS, check_max_pairs, make_pairs, order_pairs
from .repeats import repeats
from .split import (EVAL_PAIRS, PAIRS, check_labels, fold_split, group_codes, label_counts, question_groups,
                    split_by_prompt, stream, validation_split)

__all__ = ["Prepared", "prepare", "pair_metrics_note", "STRATEGIES", "PAIRINGS", "FORMS"]

UNPAIRED, PAIRED, DESIRABLE = "unpaired", "paired", "desirable"
FORMS = {UNPAIRED: ("prompt", "completion", "label"), PAIRED: ("prompt", "chosen", "rejected"),
         DESIRABLE: ("prompt", "completion")}  # form -> the columns its trainer reads

# name -> (ordering function for unpaired rows, forms it supports, one line for `prefopt list`).
# For the paired and desirable forms, natural and file_order order pairs or kept rows (pairs.order_pairs).
STRATEGIES = {
    "file_order": (kto.file_order, (UNPAIRED, PAIRED, DESIRABLE),
                   "rows (or pairs) as they stand in the file: what a bare TRL trainer sees"),
    "natural": (kto.natural, (UNPAIRED, PAIRED, DESIRABLE),
                "seeded shuffle, a new one per epoch; no guarantee about any batch"),
    "balanced": (kto.balanced, (UNPAIRED,),
                 "all minority-label rows plus an equal-size seeded sample of the majority, shuffled"),
    "mixed": (kto.mixed, (UNPAIRED,),
              "all rows; every micro-batch holds both labels near the global ratio, no same-prompt KL pairs "
              "where the data allows; reshuffled per epoch"),
}


@dataclass
class Prepared:
    train: pd.DataFrame  # unpaired: prompt, completion, label (+ extras); paired: prompt, chosen, rejected
    eval_rows: pd.DataFrame  # held-out rows, every column
    eval_pairs: pd.DataFrame  # held-out pairs: prompt, chosen, rejected (one_to_one, seeded)
    report: dict  # plain JSON-serializable values
    validation_rows: "pd.DataFrame | None" = None  # the validation split (choices are made on it), every column
    validation_pairs: "pd.DataFrame | None" = None
    verify: "pd.DataFrame | None" = None  # prompts of the generation test (set by the runner with the verifier)


def prepare(rows: pd.DataFrame, *, file: str, method: str, form: str, strategy: str, eval_fraction: float = 0.1,
            seed: int = 42, split_seed: int | None = None, batch_size: int = 4, world_size: int = 1,
            epochs: int = 1, weights="auto", validation_fraction: float = 0.0,
            pairing: str = "one_to_one", max_pairs_per_prompt: int | None = None, folds: int = 1,
            fold: int = 0) -> Prepared:
    """Shape `rows` (from `io.load_rows`, or any table of prompt/completion/label) for `method`.

    `train` is in exact training order with all `epochs` orderings back to back: the trainer makes one
    sequential pass over it. See issue 4 / the module docs of kto, pairs and split for the semantics.
    `split_seed` (default: `seed`) fixes the held-out split and its pairs; `seed` everything trained on.
    With `folds` > 1 the held-out split is fold `fold` of a partition of the prompts (cross-fitting:
    split.fold_split) and `eval_fraction` is unused.
    """
    split_seed = seed if split_seed is None else split_seed
    weights = _check_options(file=file, form=form, strategy=strategy, seed=seed, batch_size=batch_size,
                             world_size=world_size, epochs=epochs, weights=weights, pairing=pairing,
                             max_pairs_per_prompt=max_pairs_per_prompt, method=method)
    if len(rows) == 0:
        raise UserError(file, "data.path", "the file holds no rows; add rows of prompt, completion, label")
    numbers, notes = row_numbers_of(rows), list(rows.attrs.get(READ_NOTES, ()))
    if "prompt_key" not in rows.columns or not pd.api.types.is_bool_dtype(rows["label"]):
        rows, numbers = canonical_rows(rows, file=file), None  # a table built in memory: validate it like a file
    rows = rows.reset_index(drop=True)
    codes, keys = group_codes(rows["prompt_key"])
    labels = rows["label"].to_numpy(dtype=bool)
    desirable, undesirable = label_counts(codes, labels, len(keys))
    check_labels(labels, int(((desirable > 0) & (undesirable > 0)).sum()), file=file, form=form, method=method)
    # the splits go by question (prompts that differ only in spacing, case or form stay on one side); pairs,
    # batches and counts by prompt
    groups, group_keys = question_groups(codes, keys, rows["prompt"])
    if folds > 1:
        split = fold_split(groups, group_keys, labels, folds=folds, fold=fold, seed=split_seed, file=file)
    else:
        split = split_by_prompt(groups, group_keys, labels, eval_fraction=eval_fraction, seed=split_seed, file=file)

    held = split.held_out
    stated = rows[STATED_PAIR].to_numpy() if STATED_PAIR in rows.columns else None
    chosen, rejected = _unlike(rows, held, *make_pairs(codes[held], labels[held], rng=stream(split_seed, EVAL_PAIRS),
                                                       stated=_at(stated, held)))
    eval_pairs = _pair_frame(rows, held[chosen], held[rejected])
    train_pos, valid, valid_fingerprint = validation_split(groups, group_keys, labels, split.train, seed=split_seed,
                                                           validation_fraction=validation_fraction, file=file)
    chosen, rejected = _unlike(rows, valid, *make_pairs(codes[valid], labels[valid],
                                                        rng=stream(split_seed, EVAL_PAIRS, 1), stated=_at(stated, valid)))
    validation_pairs = _pair_frame(rows, valid[chosen], valid[rejected])

    train_codes, train_labels = codes[train_pos], labels[train_pos]
    group_of = np.zeros(len(keys), dtype=np.int64)
    group_of[codes] = groups
    sizes = np.bincount(group_of, minlength=len(group_keys))
    report = {"method": method, "form": form, "strategy": strategy, "data_path": str(file), "rows": len(rows),
              "prompts": len(keys), "same_question_prompts": int(sizes[sizes > 1].sum()),
              **repeats(rows, str(file), numbers, paired=form == PAIRED),
              "train_rows": len(train_pos), "train_prompts": len(np.unique(train_codes)),
              "eval_rows": len(held), "eval_prompts": len(np.unique(codes[held])), "eval_fingerprint": split.fingerprint,
              "folds": folds, "fold": fold if folds > 1 else None, "partition": split.partition,
              "validation_fraction": validation_fraction, "validation_rows": len(valid),
              "validation_prompts": len(np.unique(codes[valid])), "validation_pairs": len(validation_pairs),
              "validation_fingerprint": valid_fingerprint}
    report["data_warnings"][:0] = notes  # how the file was read (io.load_rows), before what is in it
    common = dict(file=file, strategy=strategy, seed=seed, batch_size=batch_size, epochs=epochs)
    if form == DESIRABLE:
        train, part = _desirable(rows, train_pos, train_labels, strategy=strategy, seed=seed, epochs=epochs,
                                 batch_size=batch_size)
    elif form == UNPAIRED:
        train, part = _unpaired(rows, train_pos, train_codes, train_labels, world_size=world_size,
                                weights=weights, **common)
    else:
        train, part = _paired(rows, train_pos, train_codes, train_labels, pairing=pairing,
                              max_pairs_per_prompt=max_pairs_per_prompt, stated=_at(stated, train_pos), **common)
    report.update(part)
    report.update(eval_pairs=len(eval_pairs), pair_metrics_note=pair_metrics_note(rows.iloc[held], eval_pairs),
                  batch_size=batch_size, world_size=world_size, epochs=epochs,
                  seed=seed, split_seed=split_seed, data_fingerprint=content_fingerprint(rows, train),
                  eval_fraction=eval_fraction if folds == 1 else None)  # with folds the fold is the split
    eval_rows = rows.iloc[held].reset_index(drop=True).assign(row_id=held)  # row_id: position in the file's rows
    validation_rows = rows.iloc[valid].reset_index(drop=True).assign(row_id=valid)
    return Prepared(train=train, eval_rows=eval_rows, eval_pairs=eval_pairs, report=_plain(report),
                    validation_rows=validation_rows, validation_pairs=validation_pairs)


def pair_metrics_note(rows: pd.DataFrame, pairs: pd.DataFrame, split: str = "held-out") -> str | None:
    """Why preference_accuracy and reward_margin are NaN on these scored rows (one line for the data report
    and metrics.json), or None where they have pairs. The row metrics need no pair and are measured."""
    if len(pairs) or not len(rows):
        return None
    both = rows.groupby("prompt_key")["label"].nunique().eq(2).any()
    why = ("every prompt with both labels there has one completion under both labels (a pair of one text is no "
           "pair)" if both else "no prompt there has both a desirable and an undesirable completion")
    return (f"preference_accuracy and reward_margin are not measured (NaN): no {split} pair, as {why}; "
            "reward_auc, kl and desirable_nll rank or score single rows and are measured")


def _unpaired(rows, train_pos, codes, labels, *, file, strategy, seed, batch_size, world_size, epochs, weights):
    if labels.all() or not labels.any():
        have = "desirable" if labels.all() else "undesirable"
        raise UserError(file, "data.eval_fraction", f"after holding out the eval prompts, every training row is "
                        f"{have}; add prompts with both labels or lower data.eval_fraction")
    orders = STRATEGIES[strategy][0](labels, codes, batch_size=batch_size, world_size=world_size, epochs=epochs,
                                     seed=seed, file=file)
    order = np.concatenate(orders)
    first = orders[0]
    n_desirable = int(labels[first].sum())
    n_undesirable = len(first) - n_desirable
    used = _distinct(order, len(labels))
    weight_d, weight_u = kto.auto_weights(n_desirable, n_undesirable) if weights == "auto" else weights
    train = rows.take(train_pos[order]).reset_index(drop=True)
    return train, {
        "desirable": n_desirable, "undesirable": n_undesirable,
        "examples_used": used, "examples_discarded": len(labels) - used,
        "repeated_examples": len(first) - _distinct(first, len(labels)),
        "pairs": None, "pairing": None, "max_pairs_per_prompt": None, "unpaired_rows": None,
        **kto.audit(labels[order], codes[order], batch_size),
        "batches_per_epoch": len(first) // batch_size,
        "weights": "auto" if weights == "auto" else "explicit",
        "desirable_weight": weight_d, "undesirable_weight": weight_u,
        # the KTO paper's rule asks this to lie in [1, 4/3]
        "weighted_ratio": round(weight_d * n_desirable / (weight_u * n_undesirable), 4),
    }


def _at(values, positions):
    return None if values is None else values[positions]


def _paired(rows, train_pos, codes, labels, *, file, strategy, seed, batch_size, epochs, pairing,
            max_pairs_per_prompt, stated=None):
    made = make_pairs(codes, labels, pairing=pairing, max_pairs_per_prompt=max_pairs_per_prompt,
                      rng=stream(seed, PAIRS), file=file, stated=stated)
    chosen, rejected = _unlike(rows, train_pos, *made)
    if len(chosen) == 0 and len(made[0]):
        raise UserError(file, "label", f"no training pair is left: in all {len(made[0])} the chosen and the rejected "
                        "completion are the same text; give each pair two different completions")
    if len(chosen) == 0:
        raise UserError(file, "data.eval_fraction", "no training pair can be formed: every prompt with both "
                        "labels is in the held-out split; add prompts with both labels or lower data.eval_fraction")
    order = np.concatenate(order_pairs(len(chosen), strategy, epochs=epochs, seed=seed))
    train = _pair_frame(rows, train_pos[chosen[order]], train_pos[rejected[order]])
    used = _distinct(np.concatenate([chosen, rejected]), len(labels))
    return train, {
        "desirable": len(chosen), "undesirable": len(chosen),  # one chosen and one rejected per pair
        "examples_used": used, "examples_discarded": len(labels) - used,
        "repeated_examples": 2 * len(chosen) - used,  # rows in more than one pair ('all')
        "pairs": len(chosen), "pairing": "as stated in the file" if stated is not None else pairing,
        "max_pairs_per_prompt": max_pairs_per_prompt,
        "same_text_pairs_dropped": len(made[0]) - len(chosen),
        "unpaired_rows": len(labels) - used,  # in no pair: one label only, one_to_one leftovers, or the cap
        "batches": math.ceil(len(train) / batch_size), "batches_per_epoch": math.ceil(len(chosen) / batch_size),
        # every pair holds both labels and DPO/ORPO have no KL rotation: the audit does not apply
        "single_label_batches": None, "kl_same_prompt_pairs": None,
        "weights": None, "desirable_weight": None, "undesirable_weight": None, "weighted_ratio": None,
    }


def _desirable(rows, train_pos, labels, *, strategy, seed, epochs, batch_size):
    """SFT's form: the desirable training rows only, in the strategy's order; the undesirable ones are
    counted as discarded (the baseline learns nothing from them)."""
    keep = np.flatnonzero(labels)
    order = np.concatenate(order_pairs(len(keep), strategy, epochs=epochs, seed=seed))
    train = rows.take(train_pos[keep[order]]).reset_index(drop=True)
    return train, {
        "desirable": len(keep), "undesirable": 0, "examples_used": len(keep),
        "examples_discarded": len(labels) - len(keep), "repeated_examples": 0,
        "pairs": None, "pairing": None, "max_pairs_per_prompt": None, "unpaired_rows": None,
        "batches": math.ceil(len(train) / batch_size), "batches_per_epoch": math.ceil(len(keep) / batch_size),
        "single_label_batches": None, "kl_same_prompt_pairs": None,
        "weights": None, "desirable_weight": None, "undesirable_weight": None, "weighted_ratio": None,
    }


def _unlike(rows: pd.DataFrame, pos: np.ndarray, chosen: np.ndarray, rejected: np.ndarray):
    """The pairs (indices into `pos`, positions in `rows`) whose two completions differ: one completion of a
    prompt labelled both ways (noisy labels; a paired row with one text twice) would otherwise pair with
    itself, a pair no model can win, held out or trained on."""
    from .io import prompt_keys

    text = prompt_keys(rows["completion"]).to_numpy()
    keep = text[pos[chosen]] != text[pos[rejected]]
    return chosen[keep], rejected[keep]


def _pair_frame(rows: pd.DataFrame, chosen: np.ndarray, rejected: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"prompt": rows["prompt"].take(chosen).reset_index(drop=True),
                         "chosen": rows["completion"].take(chosen).reset_index(drop=True),
                         "rejected": rows["completion"].take(rejected).reset_index(drop=True)})


def _check_options(*, file, form, strategy, seed, batch_size, world_size, epochs, weights, pairing,
                   max_pairs_per_prompt, method):
    """Validate every option up front (so an error never comes after minutes of work); return the weights."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {tuple(FORMS)}, got {form!r}")  # the method spec's bug
    if strategy not in STRATEGIES:
        raise UserError(file, "data.strategy", f"unknown strategy '{strategy}'; {did_you_mean(strategy, STRATEGIES)}")
    if form not in STRATEGIES[strategy][1]:
        valid = ", ".join(n for n, v in STRATEGIES.items() if form in v[1])
        what = {PAIRED: "pairs", DESIRABLE: "the desirable rows only"}[form]
        raise UserError(file, "data.strategy", f"'{strategy}' balances labels in unpaired batches and {method} "
                        f"trains on {what}; use one of: {valid}")
    if pairing not in PAIRINGS:
        raise UserError(file, "data.pairing", f"unknown pairing '{pairing}'; {did_you_mean(pairing, PAIRINGS)}")
    check_max_pairs(max_pairs_per_prompt, file)
    if not _whole(seed) or seed < 0:
        raise UserError(file, "seed", f"must be a whole number 0 or more, got {seed!r}")
    if not _whole(batch_size) or batch_size < 1:
        raise UserError(file, "train.per_device_train_batch_size", f"must be a whole number of at least 1, "
                        f"got {batch_size!r}")
    if not _whole(world_size) or world_size < 1 or not _whole(epochs) or epochs < 1:
        raise ValueError(f"world_size and epochs must be whole numbers >= 1, got {world_size!r}, {epochs!r}")
    if isinstance(weights, str) and weights == "auto":
        return weights
    try:
        pair = tuple(float(w) for w in weights if not isinstance(w, bool))
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(math.isfinite(w) and w > 0 for w in pair):
        raise UserError(file, "data.weights", f"expected auto or two positive numbers (desirable, undesirable), got "
                        f"{weights!r}")
    return pair


def _distinct(positions: np.ndarray, n: int) -> int:
    """How many of the n rows occur in positions (bincount: far faster than np.unique for row positions)."""
    return int(np.count_nonzero(np.bincount(positions, minlength=n)))


def _whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def generation_test_fingerprint(verify: pd.DataFrame, verifier: str, column: str) -> str:
    """sha256 (hex) of the generation test: each prompt with the value its verifier reads, and the verifier.
    From a file of its own (eval.prompts) it is not in content_fingerprint, so an edited test file would
    otherwise leave a finished run standing on the prompts it was answered on."""
    import hashlib
    import json

    text = json.dumps([verifier, verify[["prompt", column]].to_dict("records")], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def content_fingerprint(rows: pd.DataFrame, train: pd.DataFrame) -> str:
    """sha256 (hex) of every row's prompt, completion and label, and of the training rows in their training
    order: what a run trained and was scored on. The run id names the recipe, not the file's contents, so a
    run begun before the data file was edited, or under another process count (which changes the order),
    is caught by this instead of being resumed or skipped as if nothing had changed."""
    import hashlib
    import json

    def records(frame, columns):
        return frame[[c for c in columns if c in frame.columns]].to_dict("records")

    text = json.dumps([records(rows, ("prompt", "completion", "label")), records(train, train.columns)],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value):
    """numpy scalars -> python, so json.dumps takes the report as it is."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value
