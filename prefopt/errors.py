"""The one exception type a user ever sees.

A `UserError` is bad input: the CLI prints it as a single line
`prefopt: error: <file>: <field>: <message>` and exits with status 2, no traceback.
Everything else is an internal failure (exit status 1).
"""

from __future__ import annotations

import difflib


class UserError(Exception):
    def __init__(self, file: str | None, field: str | None, message: str):
        self.file, self.field, self.message = file, field, message
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        one_line = " ".join(self.message.split())  # never more than one line on stderr
        return ": ".join([*map(str, parts), one_line])


class UserErrors(UserError):
    """Several problems found in one pass; the CLI prints one line each."""

    def __init__(self, errors: list[UserError]):
        self.errors = errors
        super().__init__(errors[0].file, errors[0].field, errors[0].message)

    def __str__(self) -> str:
        return "\n".join(map(str, getattr(self, "errors", [])))


def raise_all(errors: list[UserError]) -> None:
    """Nothing, one error, or all of them at once."""
    if errors:
        raise errors[0] if len(errors) == 1 else UserErrors(errors)


def did_you_mean(word: str, choices) -> str:
    """'did you mean X? choices: a, b, c' for an unknown key or name."""
    choices = sorted(map(str, choices))
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    shown = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:12]) + ", ..."
    return f"{hint}choices: {shown}"
