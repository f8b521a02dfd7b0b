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
    check: Callable[..., bool]  # (meta, completion text, ended=True) -> passes (strict on a cut-off answer)
    description: str
    validate: Callable[[dict], object]  # raises UserError(field=column) for a value `check` cannot read
    settled: Callable[..., bool]  # (meta, text, ended) -> whether the verdict is final (see instructions)


VERIFIERS: dict[str, Verifier] = {
    "instructions": Verifier(
        name="instructions",
        column="constraint",
        check=instructions.check,
        description=f"IFEval-style constraints ({len(instructions.FAMILIES)} families: lowercase, max_words, "
                    "json_object, ...) read from the row's `constraint`",
        validate=instructions.validate,
        settled=instructions.settled,
    ),
}
AUTO = "auto"  # eval.verifier: auto -> the verifier whose column the data has, else none


SIDES = (("reference", "_ref"), ("policy", ""))  # record prefix, metrics suffix


def judge(verifier: Verifier, records: list[dict]) -> dict:
    """Set each generation record's `<side>_pass` from its text, `<side>_ended` and the verifier's column,
    for both sides present, and return the verified_* metrics they give. Evaluation judges its fresh
    generations with this and scripts/rejudge.py stored ones, so a record and its run's metrics.json never
    disagree on a verdict."""
    out = {}
    for side, suffix in SIDES:
        if records and f"{side}_text" not in records[0]:
            continue
        passed, final = [], []
        for r in records:
            meta, text, ended = r[verifier.column], r[f"{side}_text"], r[f"{side}_ended"]
            r[f"{side}_pass"] = bool(verifier.check(meta, text, ended))
            passed.append(r[f"{side}_pass"])
            final.append(bool(verifier.settled(meta, text, ended)))
        n = max(len(records), 1)  # no records: shares of 0, not a division by zero
        out["verified_success" + suffix] = sum(passed) / n
        out["verified_cut_off" + suffix] = 1 - sum(bool(r[f"{side}_ended"]) for r in records) / n if records else 0.0
        out["verified_open" + suffix] = 1 - sum(final) / n if records else 0.0
    if "verified_success" in out and "verified_success_ref" in out:
        out["verified_success_delta"] = out["verified_success"] - out["verified_success_ref"]
    return out


def get_verifier(name: str, file: str | None = None) -> Verifier:
    """The verifier registered as `name`; an unknown name is a UserError naming `file` (the recipe)."""
    if name not in VERIFIERS:
        raise UserError(file, "eval.verifier", f"unknown verifier '{name}'; " + did_you_mean(name, VERIFIERS))
    return VERIFIERS[name]


def resolve(name: str | None, columns, rows, *, recipe: str | None, data: str,
            row_numbers=None) -> tuple[Verifier | None, str | None]:
    """(verifier to run, or None; a note saying why none runs). `rows` are the held-out rows (dicts): each
    one's value is checked now, so a bad value fails before training, not after it. `row_numbers[i]`: the
    number `data` gives rows[i] (a CSV's data row, a JSONL line), so a bad value's message points at it."""
    if name is None:
        return None, "eval.verifier is not set"
    if name == AUTO:
        found = [v for v in VERIFIERS.values() if v.column in columns]
        if not found:
            wanted = ", ".join(sorted(f"'{v.column}' ({v.name})" for v in VERIFIERS.values()))
            return None, f"the data has no verifier column ({wanted}): generation not scored"
        verifier = found[0]
    else:
        verifier = get_verifier(name, recipe)
        if verifier.column not in columns:
            raise UserError(recipe, "eval.verifier", f"verifier '{name}' reads each row's '{verifier.column}' "
                            f"column, which {data} lacks; use eval.verifier: auto (skips generation when the "
                            "column is missing) or null")
    for i, row in enumerate(rows):
        try:
            verifier.validate(row[verifier.column])
        except UserError as e:
            # the file's row number: a count among the held-out (or distinct) prompts matched no row the reader
            # could look up
            n = i + 1 if row_numbers is None else int(row_numbers[i])
            raise UserError(data, f"row {n}: {verifier.column}", f"{e.message} (prompt "
                            f"{str(row.get('prompt'))[:40]!r})") from None
    return verifier, None
