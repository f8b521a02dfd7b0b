"""Reading a data file into one validated, canonical table of unpaired rows.

This module and `readers` (the file formats, read through here) are the only ones of `prefopt.data` that
touch the file system. Everything after them works on the DataFrame returned here: `prompt`, `completion`,
`label` (bool), any extra columns as they were in the file, and `prompt_key` (a string that identifies the
prompt, used to group rows of the same prompt).

Every problem with the file is a `UserError` naming the file, the field (`data.path`, `columns`,
`row 17: label`, ...) and what to change, because a person with a data file, not a developer, reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError, raise_all
from .readers import _LABELS, _READERS, ALLOWED_LABELS, READ_NOTES, _pick_format, _plain, _read_arrow

UNPAIRED = ("prompt", "completion", "label")
ROW_NUMBERS = "row_numbers"  # DataFrame.attrs key: the file's number of each row (load_rows)
STATED_PAIR = "stated_pair"  # column of canonical rows from a paired file: the pair each row belongs to
PAIRED = ("prompt", "chosen", "rejected")


def load_rows(path: str, format: str = "auto", split: str | None = None) -> pd.DataFrame:
    """Read `path` and return canonical unpaired rows (see the module docstring); `split` names the split of
    a saved DatasetDict to read (data.split)."""
    file = str(path)
    fmt = _pick_format(Path(file), format)
    if split is not None and fmt != "arrow":  # said, not ignored: the rows read would not be the ones named
        raise UserError(file, "data.split", f"names a split of a datasets DatasetDict, but data.path is a {fmt} "
                        "file, which has none; remove data.split")
    table, row_numbers = _read_arrow(Path(file), split=split) if fmt == "arrow" else _READERS[fmt](Path(file))
    if len(table) == 0:
        raise UserError(file, "data.path", "the file holds no rows; add rows of prompt, completion, label")
    rows = canonical_rows(table, file=file, row_numbers=row_numbers)
    # the file's number of each row, for messages about rows found later (data.repeats), by index label: a
    # column would enter the data fingerprint and the trainer's rows. A pair's two rows share its number.
    numbers = np.arange(1, len(table) + 1) if row_numbers is None else np.asarray(row_numbers)
    rows.attrs[ROW_NUMBERS] = tuple(int(n) for n in (numbers[rows[STATED_PAIR]] if STATED_PAIR in rows else numbers))
    if table.attrs.get(READ_NOTES):  # e.g. a saved DatasetDict's splits not read: prepare warns of them
        rows.attrs[READ_NOTES] = tuple(table.attrs[READ_NOTES])
    return rows


def row_numbers_of(rows: pd.DataFrame):
    """The file's row numbers of `rows` (from load_rows, perhaps filtered or reordered since), or None."""
    numbers = rows.attrs.get(ROW_NUMBERS)
    index = rows.index.to_numpy()
    if numbers is None or index.dtype.kind not in "iu" or (len(index) and not 0 <= index.min() <= index.max()
                                                              < len(numbers)):
        return None
    return np.asarray(numbers)[index]


def load_prompts(path: str, *, field: str = "eval.prompts") -> pd.DataFrame:
    """Read a file of prompts to generate for (a `prompt` column plus whatever the verifier reads, e.g.
    `constraint`; no completions or labels): one row per distinct prompt, in file order."""
    file = str(path)
    fmt = _pick_format(Path(file), "auto", field=field)
    table, row_numbers = _READERS[fmt](Path(file), field=field)
    if len(table) == 0 or "prompt" not in table.columns:
        found = _found_columns(table)
        raise UserError(file, field, f"needs a 'prompt' column (found: {found}); one prompt per row, with the "
                        "column the verifier reads (e.g. constraint)")
    table = table.reset_index(drop=True)
    rows_of = np.asarray(row_numbers if row_numbers is not None else np.arange(1, len(table) + 1))
    kinds = _text_kinds(table["prompt"], "prompt", rows_of, file, completion=False)
    _same_form(kinds, "prompt", rows_of, file)
    first = ~prompt_keys(table["prompt"]).duplicated().to_numpy()
    prompts = table.loc[first].reset_index(drop=True)
    prompts.attrs[ROW_NUMBERS] = tuple(int(n) for n in rows_of[first])  # for messages about a prompt: row_numbers_of
    return prompts


def canonical_rows(table: pd.DataFrame, *, file: str, row_numbers=None) -> pd.DataFrame:
    """Validate a raw table (unpaired or paired columns) and return canonical unpaired rows.

    `row_numbers[i]` is how the file numbers table row i in messages (1-based; a JSONL line number).
    Pure: also used by `prepare` for a DataFrame built in memory.
    """
    rows_of = np.arange(1, len(table) + 1) if row_numbers is None else np.asarray(row_numbers)
    table = table.reset_index(drop=True)
    columns = set(map(str, table.columns))
    if set(UNPAIRED) <= columns and set(PAIRED) <= columns:
        # read either way, the other layout's texts would be ignored and nobody told which was used
        raise UserError(file, "columns", "holds both layouts: prompt, completion, label (one row per completion) "
                        "and prompt, chosen, rejected (one row per pair); drop or rename one layout's columns "
                        "(completion and label, or chosen and rejected)")
    if set(UNPAIRED) <= columns:
        shape = UNPAIRED
    elif set(PAIRED) <= columns:
        shape = PAIRED
    else:
        found = _found_columns(table)
        raise UserError(file, "columns", f"found columns: {found}; needed prompt, completion, label (one row per "
                        "completion) or prompt, chosen, rejected (one row per pair); rename the columns to match")

    # every column checked before any error is raised: a file's problems are reported together, one line each
    kinds, labels, errors = {}, None, []
    for name in shape:
        try:
            if name == "label":
                labels = normalize_labels(table["label"], file=file, row_numbers=rows_of)
            else:
                kinds[name] = _text_kinds(table[name], name, rows_of, file, completion=name != "prompt")
        except UserError as e:
            errors.append(e)
    raise_all(errors)
    _same_form(kinds["prompt"], "prompt", rows_of, file)
    for name in shape[1:] if shape == PAIRED else ("completion",):
        _not_after_prompt(table["prompt"], table[name], name, rows_of, file)
    if shape == PAIRED:
        both = np.concatenate([kinds["chosen"], kinds["rejected"]])
        _same_form(both, "chosen/rejected", np.concatenate([rows_of, rows_of]), file)
        table = _unpair(table)
    else:
        _same_form(kinds["completion"], "completion", rows_of, file)
        table = table.assign(label=labels)
    answer = kinds["completion" if shape == UNPAIRED else "chosen"]
    if len(answer) and answer[0] != kinds["prompt"][0]:
        # TRL treats a row as conversational only when prompt and completion both are message lists.
        forms = {"s": "a plain string", "m": "a message list"}
        raise UserError(file, f"row {int(rows_of[0])}: {shape[1]}", f"is {forms[answer[0]]} but the prompt is "
                        f"{forms[kinds['prompt'][0]]}; give prompt and {shape[1]} the same form")
    return table.assign(prompt_key=prompt_keys(table["prompt"]))


def normalize_labels(labels: pd.Series, *, file: str, row_numbers=None) -> np.ndarray:
    """Labels as a bool array; anything not in the accepted spellings is an error naming its row."""
    if pd.api.types.is_bool_dtype(labels) and not labels.isna().any():
        return labels.to_numpy(dtype=bool)
    keys = labels.map(lambda v: v.strip().lower() if isinstance(v, str) else _hashable(v))
    mapped = keys.map(lambda k: _LABELS.get(k) if k is not None else None)
    bad = mapped.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = i + 1 if row_numbers is None else int(row_numbers[i])
        raise UserError(file, f"row {row}: label", f"got {_show(labels.iloc[i])}; allowed: {ALLOWED_LABELS}; "
                        f"fix this row ({int(bad.sum())} row(s) in all have such a label)")
    return mapped.to_numpy(dtype=bool)


def prompt_keys(prompts: pd.Series) -> pd.Series:
    """One string per prompt for grouping: the prompt itself, or its messages as sorted-key JSON."""
    if pd.api.types.infer_dtype(prompts, skipna=False) == "string":
        return prompts.astype(str)  # the common plain-text case stays vectorized
    return prompts.map(lambda p: p if isinstance(p, str) else json.dumps(_plain(p), sort_keys=True)).astype(str)


def question(prompt) -> str:
    """What a prompt asks, whatever its form: a plain string, or the user turns of a message list, in NFC
    with runs of whitespace as one space and case folded. One question written as text in one file and as
    messages in another, or with other spacing or case, is the same question: the split keeps such prompts
    on one side, and the generation test may not ask what the data asks."""
    import unicodedata

    if not isinstance(prompt, str):
        messages = list(prompt)
        asked = [m["content"] for m in messages if m["role"] == "user"]
        # a prompt without a user turn (a system message alone; 'human' for 'user') asks what all its messages
        # say: taken as asking nothing, every such prompt was the one question "" and the split saw one prompt
        prompt = "\n".join(asked or [m["content"] for m in messages])
    return " ".join(unicodedata.normalize("NFC", prompt).split()).casefold()


# --- row checks -------------------------------------------------------------------------------------------

_MESSAGES_AS_TEXT = r"""\s*\[\s*\{\s*['"](?:role|content)['"]\s*:"""  # [{"role": ... or [{'content': ...


def _text_kinds(values: pd.Series, name: str, rows_of, file: str, *, completion: bool) -> np.ndarray:
    """'s' (plain string) or 'm' (message list) per row; anything else, or empty text, is an error. An empty
    prompt (a blank CSV cell is how a missing one reads) would join every such row into one prompt, ``""``,
    so pairs, KL pairs and the split would take unrelated rows for completions of one question."""
    # a missing value (a key left out of a JSON row, an empty Parquet cell) is NaN/None; under pandas' string
    # dtype it would pass as a string and reach the trainer
    missing = values.map(lambda v: pd.api.types.is_scalar(v) and bool(pd.isna(v))).to_numpy(dtype=bool)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise UserError(file, f"row {int(rows_of[i])}: {name}", f"is missing ({int(missing.sum())} row(s) in all); "
                        "give it text or remove the row")
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        kinds = np.full(len(values), "s")
        empty = values.str.strip().eq("").to_numpy()
        # chat messages saved as text (DataFrame.to_csv writes a list as its Python repr; json.dumps before
        # writing does the same in JSON) would be trained on as the literal brackets, without the chat template
        listed = values.str.match(_MESSAGES_AS_TEXT).to_numpy(dtype=bool)
        if listed.any():
            i = int(np.flatnonzero(listed)[0])
            raise UserError(file, f"row {int(rows_of[i])}: {name}", f"is text that reads as a list of chat messages "
                            f"({int(listed.sum())} row(s) in all): {_show(values.iloc[i])}; give the list itself, not "
                            "its text: save the file as JSONL (DataFrame.to_json(path, orient='records', lines=True)) "
                            "or Parquet (a CSV cell holds only text)")
    else:
        kinds = values.map(_kind).to_numpy(dtype=object)
        bad = np.flatnonzero(kinds == "?")
        if len(bad):
            i = int(bad[0])
            raise UserError(file, f"row {int(rows_of[i])}: {name}", f"got {_show(values.iloc[i])}; expected a string "
                            'or a list of chat messages like [{"role": "user", "content": "..."}]')
        empty = values.map(_is_empty if completion else _says_nothing).to_numpy(dtype=bool)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        value = values.iloc[i]
        if completion and not isinstance(value, str) and not any(m["role"] == "assistant" for m in value):
            raise UserError(file, f"row {int(rows_of[i])}: {name}", "has no assistant message; a completion's "
                            'messages are the answer, e.g. [{"role": "assistant", "content": "..."}]')
        raise UserError(file, f"row {int(rows_of[i])}: {name}", f"is empty or whitespace only ({int(empty.sum())} "
                        "row(s) in all); give it text or remove the row")
    return kinds.astype("<U1")


def _same_form(kinds: np.ndarray, name: str, rows_of, file: str) -> None:
    """TRL (and an Arrow table) needs one form per column: all plain strings or all message lists."""
    if len(kinds) and (kinds != kinds[0]).any():
        i = int(np.flatnonzero(kinds != kinds[0])[0])
        forms = {"s": "a plain string", "m": "a message list"}
        raise UserError(file, f"row {int(rows_of[i])}: {name}", f"is {forms[kinds[i]]} but row {int(rows_of[0])}'s "
                        f"is {forms[kinds[0]]}; use one form for the whole file")


def _not_after_prompt(prompts: pd.Series, answers: pd.Series, name: str, rows_of, file: str) -> None:
    """A completion of messages that opens with its prompt's messages (the Hub's chosen/rejected hold the
    whole conversation) would be trained on with the question asked twice: the trainer puts the prompt
    before it. TRL's trainers take prompt and completion as two parts of one conversation."""
    def turns(messages):
        return [(m["role"], m["content"]) for m in messages]

    repeated = [i for i, (prompt, answer) in enumerate(zip(prompts, answers))
                if not isinstance(prompt, str) and not isinstance(answer, str)
                and turns(answer[:len(prompt)]) == turns(prompt)]
    if repeated:
        i = repeated[0]
        raise UserError(file, f"row {int(rows_of[i])}: {name}", f"begins with the prompt's messages ({len(repeated)} "
                        f"row(s) in all); give {name} the answer alone (the messages after the prompt), as the "
                        "trainer puts the prompt before it")


def _kind(value) -> str:
    if isinstance(value, str):
        return "s"
    if isinstance(value, np.ndarray):  # Parquet/Arrow readers hand lists back as arrays
        value = list(value)
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value):
        return "m"
    return "?"


def _is_empty(value) -> bool:
    if isinstance(value, str):
        return not value.strip()
    said = [m["content"] for m in value if m["role"] == "assistant"]
    # A completion that is a message list is judged by what the assistant says in it.
    return not "".join(said).strip()


def _says_nothing(prompt) -> bool:
    """A prompt holds no text at all: whitespace, or messages without any (a system message alone is a prompt)."""
    return not (prompt if isinstance(prompt, str) else "".join(m["content"] for m in prompt)).strip()


def _unpair(table: pd.DataFrame) -> pd.DataFrame:
    """prompt, chosen, rejected -> two rows each: (chosen, True) then (rejected, False); extras repeated."""
    n = len(table)
    completion = np.empty(2 * n, dtype=object)
    completion[0::2] = table["chosen"].to_numpy(dtype=object)
    completion[1::2] = table["rejected"].to_numpy(dtype=object)
    extras = [c for c in table.columns if c not in PAIRED and c not in UNPAIRED]
    out = table.loc[np.repeat(np.arange(n), 2), ["prompt", *extras]].reset_index(drop=True)
    out.insert(1, "completion", completion)
    out.insert(2, "label", np.tile([True, False], n))
    out[STATED_PAIR] = np.repeat(np.arange(n), 2)  # which pair each row came from: the pairs are kept as stated
    return out



def _hashable(value):
    """A dict key for label lookup, or None for values that can never be a label (missing, lists, dicts)."""
    if _missing(value):
        return None
    try:
        hash(value)
    except TypeError:
        return None
    return value


def _missing(value) -> bool:
    """None, NaN or pd.NA (nullable columns; NA cannot even be compared); containers are not missing."""
    if isinstance(value, (list, dict, set, tuple, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _show(value) -> str:
    text = "nothing (missing)" if _missing(value) else repr(_plain(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _found_columns(table: pd.DataFrame) -> str:
    """The columns a file has, for a message: a name with spaces around it (`prompt, completion, label` as a
    CSV header) is quoted, or the message would list the very names it asks for."""
    names = [str(c) for c in table.columns]
    return ", ".join(n if n and n == n.strip() else repr(n) for n in names) or "none"
