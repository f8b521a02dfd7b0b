"""Verifiers: programs that say pass/fail for a generated completion.

A recipe's `eval.verifier: <name>` turns on generation-based evaluation: greedy completions for the
held-out prompts are checked with `check(row[column], text)`. Adding a verifier for another dataset is one
function plus one entry in VERIFIERS. Pure Python; nothing heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import UserError, did_you_mean
from . import instructions


@dataclass(frozen=True)
class Verifier:
    name: str
    column: str  # the data column whose value is passed to `check` as `meta`
    check: Callable[[dict, str], bool]  # (meta, completion text) -> passes
    description: str


VERIFIERS: dict[str, Verifier] = {
    "instructions": Verifier(
        name="instructions",
        column="constraint",
        check=instructions.check,
        description=f"IFEval-style constraints ({len(instructions.FAMILIES)} families: lowercase, max_words, "
                    "json_object, ...) read from the row's `constraint`",
    ),
}


def get_verifier(name: str) -> Verifier:
    if name not in VERIFIERS:
        raise UserError(None, "eval.verifier", f"unknown verifier '{name}'; " + did_you_mean(name, VERIFIERS))
    return VERIFIERS[name]
