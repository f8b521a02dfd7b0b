"""The held-out split, by prompt: no prompt is in both halves.

It depends only on the prompts, the fraction and the seed -- never on the method, strategy or batch
size -- so every recipe on the same file, fraction and seed is scored on the same examples. The
fingerprint (sha256 of the sorted held-out prompt keys) proves it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ..errors import UserError


def split_by_prompt(df: pd.DataFrame, eval_fraction: float, seed: int, *, file: str = None):
    if not 0 < eval_fraction < 1:
        raise UserError(file, "data.eval_fraction", f"must be between 0 and 1 (exclusive), got {eval_fraction}")
    keys = np.sort(df["prompt_key"].unique())
    if len(keys) < 2:
        raise UserError(file, "data.eval_fraction", "the file has a single prompt; a held-out split by prompt "
                        "needs at least two")
    n_eval = min(len(keys) - 1, max(1, round(len(keys) * eval_fraction)))
    held = keys[np.random.default_rng(seed).permutation(len(keys))[:n_eval]]
    is_eval = df["prompt_key"].isin(held).to_numpy()
    digest = hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest()
    return df[~is_eval].reset_index(drop=True), df[is_eval].reset_index(drop=True), digest
