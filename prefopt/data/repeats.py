"""Rows that repeat one another, and completions labelled both ways: counted for the data report and said
in one warning line each. Not errors: a copy may be meant as a weight, and a label that flips may be real
disagreement between raters; but neither should pass unseen. A repeated row is trained on once per copy
and counted once per copy in the held-out metrics (all copies share a prompt, so a split): it weighs more
than the rest without anyone having chosen that. A completion labelled desirable and undesirable for one
prompt ranks level with itself, so its rows hold reward_auc toward chance, whatever the model.

Pure (pandas), no torch. A file of stated pairs (prompt, chosen, rejected) is judged by its pairs: one
completion chosen in one pair and rejected in another is a ranking (A > B > C), not a contradiction, so
there a repeat is a pair stated twice and a contradiction a pair stated both ways round.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .io import STATED_PAIR, prompt_keys


def repeats(rows: pd.DataFrame, file: str, row_numbers=None, *, paired: bool = True) -> dict:
    """The data report's duplicate_rows (rows, or stated pairs, that repeat an earlier one exactly),
    contradictory_labels (completions labelled both ways for one prompt, or pairs stated both ways round)
    and data_warnings (one line per kind present: how many, the first example by the file's row numbers,
    what to do) for canonical rows (io.canonical_rows); `row_numbers[i]` is the file's number of the row
    canonical row i came from (default: the table's rows numbered from 1). `paired`: the method trains on
    pairs; for one that reads a stated pair as two rows (KTO, SFT), a pair of one text with itself is that
    text labelled both ways, counted and said here (a paired method drops it: same_text_pairs_dropped)."""
    stated = STATED_PAIR in rows.columns
    numbers = np.asarray(row_numbers) if row_numbers is not None else \
        rows[STATED_PAIR].to_numpy() + 1 if stated else np.arange(1, len(rows) + 1)
    prompt = rows["prompt_key"].to_numpy(dtype=object)
    completion = prompt_keys(rows["completion"]).to_numpy(dtype=object)
    label = rows["label"].to_numpy(dtype=bool)
    if stated:
        first = np.flatnonzero(label)  # _unpair: each pair's chosen row, then its rejected row
        units = pd.DataFrame({"p": prompt[first], "a": completion[first], "b": completion[first + 1]})
        flipped = units.rename(columns={"a": "b", "b": "a"})[["p", "a", "b"]]
        numbers = numbers[first]
    else:
        units = pd.DataFrame({"p": prompt, "a": completion, "b": label})
        flipped = units.assign(b=~label)
    repeat = units.duplicated().to_numpy()
    # a unit whose flipped form is in the file too, counted once: at its desirable row, or at the earlier
    # of a pair's two statements; one text twice in a stated pair is same_text_pairs_dropped's
    other = pd.MultiIndex.from_frame(flipped).isin(pd.MultiIndex.from_frame(units)) & ~repeat
    if stated:
        other &= (units["a"] != units["b"]).to_numpy()
        contradiction = other & _before(units, flipped)
    else:
        contradiction = other & label
    same = (units["a"] == units["b"]).to_numpy() & ~repeat if stated and not paired else np.zeros(len(units), bool)
    out = {"duplicate_rows": int(repeat.sum()), "contradictory_labels": int(contradiction.sum() + same.sum()),
           "data_warnings": []}
    unit = "stated pair" if stated else "row"
    if repeat.any():
        i = int(np.flatnonzero(repeat)[0])
        n = out["duplicate_rows"]
        out["data_warnings"].append(
            f"{file}: {n} {unit}{'s' * (n != 1)} {'repeat' if n != 1 else 'repeats'} an earlier one exactly (first: "
            f"row {numbers[i]} repeats row {numbers[_first_like(units, units.iloc[i])]}): each copy is trained on "
            "and counted in the held-out metrics again; remove the copies, or keep them if they are meant as weights")
    if contradiction.any():
        i = int(np.flatnonzero(contradiction)[0])
        a, b = sorted((int(numbers[i]), int(numbers[_first_like(units, flipped.iloc[i])])))
        n = out["contradictory_labels"]
        what = (f"{n} pair{'s are' if n != 1 else ' is'} stated both ways round (A over B and B over A; first: rows "
                f"{a} and {b}): no reward can win both, so such pairs hold preference_accuracy and reward_auc toward "
                "chance; keep one direction per pair (e.g. the majority's)" if stated else
                f"{n} completion{'s are' if n != 1 else ' is'} labelled both desirable and undesirable for one prompt "
                f"(first: rows {a} and {b}): no reward can rank a completion against itself, so such rows hold "
                "reward_auc toward chance; keep one label per completion (e.g. the majority's)")
        out["data_warnings"].append(f"{file}: {what}")
    if same.any():
        n = int(same.sum())
        out["data_warnings"].append(
            f"{file}: {n} stated pair{'s have' if n != 1 else ' has'} one text as both chosen and rejected (first: row "
            f"{numbers[int(np.flatnonzero(same)[0])]}): read as rows, that completion is labelled both desirable and "
            "undesirable for one prompt, and no reward can rank it against itself, so "
            "such rows hold reward_auc toward chance; give each pair two different completions or remove it")
    return out


def _first_like(units: pd.DataFrame, unit: pd.Series) -> int:
    """The position of the first unit equal to `unit`."""
    return int(np.flatnonzero((units == unit.to_numpy()).all(axis=1).to_numpy())[0])


def _before(units: pd.DataFrame, flipped: pd.DataFrame) -> np.ndarray:
    """Per unit: does it come before the first unit stating it the other way round (or is there none)?"""
    first = {tuple(u): i for i, u in reversed(list(enumerate(units.itertuples(index=False))))}
    return np.array([i < first.get(tuple(f), len(units)) for i, f in enumerate(flipped.itertuples(index=False))])
