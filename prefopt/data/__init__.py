"""One binary-labeled table -> each method's form, without losing data silently.

`prepare` is pure (pandas/numpy, no torch): split by prompt, then for unpaired methods an ordered
training table (one ordering per epoch, back to back) and per-label weights, for paired methods pairs;
plus the data report that says what was used, repeated, discarded or left unpaired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UserError, did_you_mean
from .kto import STRATEGIES, audit, auto_weights
from .pairs import PAIRINGS, make_pairs
from .split import split_by_prompt

__all__ = ["Prepared", "prepare", "STRATEGIES", "PAIRINGS"]


@dataclass
class Prepared:
    train: pd.DataFrame  # unpaired: prompt, completion, label in training order; paired: prompt, chosen, rejected
    eval_rows: pd.DataFrame  # held-out rows, every column kept
    eval_pairs: pd.DataFrame  # held-out pairs (one_to_one), for the paired metrics
    report: dict


def prepare(rows: pd.DataFrame, *, file: str, method: str, form: str, strategy: str, eval_fraction: float = 0.1,
            seed: int = 42, batch_size: int = 4, world_size: int = 1, epochs: int = 1, weights="auto",
            pairing: str = "one_to_one", max_pairs_per_prompt: int | None = None) -> Prepared:
    if strategy not in STRATEGIES:
        raise UserError(file, "data.strategy", f"unknown strategy '{strategy}'; {did_you_mean(strategy, STRATEGIES)}")
    forms = STRATEGIES[strategy][1]
    if form not in forms:
        ok = [s for s, v in STRATEGIES.items() if form in v[1]]
        raise UserError(file, "data.strategy", f"'{strategy}' is for unpaired methods; {method} trains on pairs: "
                        f"use one of {', '.join(ok)}")
    if pairing not in PAIRINGS:
        raise UserError(file, "data.pairing", f"unknown pairing '{pairing}'; {did_you_mean(pairing, PAIRINGS)}")
    if max_pairs_per_prompt is not None and max_pairs_per_prompt < 1:
        raise UserError(file, "data.max_pairs_per_prompt", "must be at least 1 (or null for no limit)")

    train, held, fingerprint = split_by_prompt(rows, eval_fraction, seed, file=file)
    eval_pairs, _ = make_pairs(held, "one_to_one", seed)
    if not len(eval_pairs):
        raise UserError(file, "data.eval_fraction", f"the held-out split ({held['prompt_key'].nunique()} prompts) "
                        "has no prompt with both labels, so preference accuracy cannot be measured; raise "
                        "data.eval_fraction or change seed")
    report = {"method": method, "strategy": strategy, "rows": len(rows), "train_rows": len(train),
              "eval_rows": len(held), "eval_pairs": len(eval_pairs), "eval_fingerprint": fingerprint,
              "batch_size": batch_size, "world_size": world_size, "epochs": epochs, "seed": seed,
              "eval_fraction": eval_fraction}
    if form == "paired":
        ordered = _paired(train, report, file=file, method=method, strategy=strategy, seed=seed, epochs=epochs,
                          pairing=pairing, max_pairs=max_pairs_per_prompt)
    else:
        ordered = _unpaired(train, report, strategy=strategy, seed=seed, batch=batch_size, world=world_size,
                            epochs=epochs, weights=weights)
    return Prepared(ordered, held, eval_pairs, report)


def _unpaired(train, report, *, strategy, seed, batch, world, epochs, weights) -> pd.DataFrame:
    labels, keys = train["label"].to_numpy(dtype=bool), train["prompt_key"].to_numpy()
    fn = STRATEGIES[strategy][0]
    orders = [fn(labels, keys, batch, world, seed, e) for e in range(epochs)]
    order = np.concatenate(orders)
    first = orders[0]
    n_des = int(labels[first].sum())
    used = len(np.unique(first))
    wd, wu = auto_weights(n_des, len(first) - n_des) if weights == "auto" else map(float, weights)
    report.update(desirable=n_des, undesirable=len(first) - n_des, examples_used=used,
                  examples_discarded=len(train) - used, repeated_examples=len(first) - used, pairs=None,
                  unpaired_rows=None, desirable_weight=wd, undesirable_weight=wu,
                  **audit(labels[order], keys[order], batch))
    return train.iloc[order].reset_index(drop=True)[["prompt", "completion", "label", "prompt_key"]]


def _paired(train, report, *, file, method, strategy, seed, epochs, pairing, max_pairs) -> pd.DataFrame:
    pairs, used = make_pairs(train, pairing, seed, max_pairs)
    if not len(pairs):
        raise UserError(file, "data.path", f"no prompt in the training split has both a desirable and an "
                        f"undesirable completion, so no pair can be formed for {method}; use an unpaired method "
                        "(kto) or add completions of the other label")
    if strategy == "natural":  # the trainer reshuffles pairs itself each epoch; this fixes the first order
        pairs = pairs.iloc[np.random.default_rng([seed, 6]).permutation(len(pairs))]
    else:
        pairs = pairs.sort_values("chosen_row", kind="stable")
    report.update(desirable=int(train["label"][used].sum()), undesirable=int((~train["label"][used]).sum()),
                  examples_used=int(used.sum()), examples_discarded=int((~used).sum()), repeated_examples=0,
                  pairs=len(pairs), unpaired_rows=int((~used).sum()), desirable_weight=None,
                  undesirable_weight=None, batches=None, single_label_batches=None, kl_same_prompt_pairs=None)
    return pairs.reset_index(drop=True)
