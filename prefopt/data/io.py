"""Reading a data file into one validated, canonical table of unpaired rows.

This is the only module of `prefopt.data` that touches the file system. Everything after it works on the
DataFrame it returns: `prompt`, `completion`, `label` (bool), any extra columns as they were in the file,
and `prompt_key` (a string that identifies the prompt, used to group rows of the same prompt).

Every problem with the file is a `UserError` naming the file, the field (`data.path`, `columns`,
`row 17: label`, ...) and what to change, because a person with a data file, not a developer, reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError, did_you_mean, raise_all

FORMATS = ("auto", "jsonl", "json", "csv", "parquet", "arrow")
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet",
              ".pq": "parquet"}
UNPAIRED = ("prompt", "completion", "label")
ROW_NUMBERS = "row_numbers"  # DataFrame.attrs key: the file's number of each row (load_rows)
READ_NOTES = "read_notes"  # DataFrame.attrs key: lines on how the file was read (load_rows), for data_warnings
STATED_PAIR = "stated_pair"  # column of canonical rows from a paired file: the pair each row belongs to
PAIRED = ("prompt", "chosen", "rejected")

# Accepted label spellings. Strings are compared after strip() + lower(); bools and the numbers 0/1 by
# value (True == 1 and 1.0 == 1 hash alike, so one dict covers bool, int, float and numpy scalars).
_LABELS = {True: True, False: False, "true": True, "false": False, "yes": True, "no": False,
           "desirable": True, "undesirable": False, "1": True, "0": False,
           "1.0": True, "0.0": False}  # (what pandas' to_csv writes for a float column of 1/0)
ALLOWED_LABELS = "true/false, 1/0, yes/no or desirable/undesirable (any case)"


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


# --- format detection and readers -------------------------------------------------------------------------

def _pick_format(path: Path, format: str, field: str = "data.path") -> str:
    """`field`: the recipe key that named the file (data.path, or eval.prompts, which has no format key of its
    own), for the messages: pointing a prompts file's reader at data.path sent people to the wrong key."""
    file = str(path)
    if format not in FORMATS:
        raise UserError(file, "data.format", f"unknown format '{format}'; {did_you_mean(format, FORMATS)}")
    if not path.exists():
        raise UserError(file, field, f"no such file or directory; check {field} (relative paths are "
                        "read from the directory you run prefopt in)")
    if format != "auto":
        return format
    if path.is_dir():
        return "arrow"
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        fix = "or set data.format" if field == "data.path" else "rename the file to one of them"
        raise UserError(file, field, f"cannot tell the format from the extension '{path.suffix}'; supported: "
                        f"{', '.join(EXTENSIONS)} or a datasets.save_to_disk directory ({fix})")
    return fmt


def _text(path: Path, field: str) -> str:
    if path.is_dir():
        raise UserError(str(path), field, "is a directory; give a file, or data.format: arrow for a "
                        "datasets.save_to_disk directory")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")  # -sig: tolerate the BOM some editors write
    except UnicodeDecodeError as e:
        # a byte offset alone left the reader to count bytes in an editor; the line is where they look
        line = e.object[:e.start].count(b"\n") + 1  # (e.object: the bytes after a BOM, e.start within them)
        # eval.prompts has no format key: its format comes from the extension alone
        fix = "save it as UTF-8 or check data.format" if field == "data.path" else "save it as UTF-8"
        raise UserError(str(path), field, f"is not UTF-8 text (line {line}, byte "
                        f"{e.start + len(raw) - len(e.object)}: {e.object[e.start:e.start + 1]!r}); {fix}") from None
    except OSError as e:
        raise UserError(str(path), field, f"cannot be read ({e.strerror}); check its permissions") from None
    if not text.strip():
        rows = "rows of prompt, completion, label" if field == "data.path" else "one prompt per row"
        raise UserError(str(path), field, f"the file is empty; add {rows}")
    return text


def _read_jsonl(path: Path, field: str = "data.path"):
    records, lines = [], []
    # split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and other characters JSON strings may hold
    for n, line in enumerate(_text(path, field).split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, a gap) are harmless
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(str(path), f"row {n}", f"is not valid JSON ({e.msg} at column {e.colno}); each line "
                            'must be one JSON object like {"prompt": ..., "completion": ..., "label": true}') from None
        if not isinstance(record, dict):
            raise UserError(str(path), f"row {n}", f"is a JSON {type(record).__name__}, not an object; each line "
                            'must be one JSON object like {"prompt": ..., "completion": ..., "label": true}')
        records.append(record)
        lines.append(n)
    return pd.DataFrame.from_records(records), lines


def _read_json(path: Path, field: str = "data.path"):
    try:
        data = json.loads(_text(path, field))
    except json.JSONDecodeError as e:
        raise UserError(str(path), field, f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                        "for one object per line use the .jsonl extension") from None
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return pd.DataFrame.from_records(data), None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()) \
            and len({len(v) for v in data.values()}) == 1:
        return pd.DataFrame(data), None  # column form: {"prompt": [...], "completion": [...], ...}
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        # what a plain DataFrame.to_json(path) writes (orient='columns': each column keyed by row index): named,
        # with the orient to write instead, where 'got something else' left the writer guessing
        raise UserError(str(path), field, "holds columns keyed by row index, as pandas' DataFrame.to_json writes "
                        "by default; write it as rows: DataFrame.to_json(path, orient='records') (or, to a .jsonl "
                        "file, orient='records', lines=True)")
    raise UserError(str(path), field, "expected a JSON list of row objects (or an object of equal-length "
                    "column lists); got something else")


def _read_csv(path: Path, field: str = "data.path"):
    import csv
    import io

    # The csv module rather than pandas: pandas quietly turns a row with extra fields into an index and
    # guesses types; here every cell stays text (labels like "yes", empty completions reach the checks
    # below as written) and a malformed row is an error with its number.
    text = _text(path, field)
    _comma_separated(text, path, field)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records = list(reader)
    except csv.Error as e:
        raise UserError(str(path), f"row {max(reader.line_num - 1, 1)}", f"is not readable as CSV ({e}); check "
                        "its quoting") from None
    # blank lines are harmless, as in JSONL: an empty line, one of spaces, or a row of empty cells (",,", as a
    # spreadsheet exports an emptied row); the rows after one keep their numbers
    header = records[0]
    body = [(n, r) for n, r in enumerate(records[1:], start=1) if any(c.strip() for c in r)]
    for n, record in body:
        if len(record) != len(header):
            raise UserError(str(path), f"row {n}", f"is not readable as CSV: {len(record)} fields where the header "
                            f"has {len(header)}; quote fields that contain commas")
    # likewise a column with no name and no value in any row: a spreadsheet exports its unused columns along
    # (",," after every row), and two of them were refused as a header naming '' twice
    keep = [i for i, c in enumerate(header) if c.strip() or any(r[i].strip() for _, r in body)]
    header, body = [header[i] for i in keep], [(n, [r[i] for i in keep]) for n, r in body]
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise UserError(str(path), "columns", f"the header names {', '.join(map(repr, twice))} more than once; "
                        "give every column its own name")
    return pd.DataFrame([r for _, r in body], columns=header, dtype=str), [n for n, _ in body]


def _comma_separated(text: str, path: Path, field: str) -> None:
    """A header that names columns, `prompt` among them, between semicolons or tabs (a spreadsheet's export in a
    locale whose list separator is ';', a TSV named .csv) read as one column: the message asked to rename the
    columns it listed, or to check the quoting of a row with a quoted line break, neither of which is the fix.
    `prompt` is the column both the data file (either layout) and eval.prompts need, so one check serves both
    (eval.prompts was told it lacked a 'prompt' column)."""
    header = text.split("\n", 1)[0].rstrip("\r")
    if "," in header:
        return
    for sep, name in ((";", "semicolons"), ("\t", "tabs")):
        names = [c.strip().strip('"') for c in header.split(sep)]
        if len(names) > 1 and "prompt" in names:
            raise UserError(str(path), field, f"the columns are separated by {name}, not commas; save the file "
                            "as comma-separated CSV (a spreadsheet's 'CSV (comma delimited)'; pandas: "
                            "DataFrame.to_csv(path, index=False))")


def _read_parquet(path: Path, field: str = "data.path"):
    try:
        table = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file; all mean the same to a user
        raise UserError(str(path), field, f"is not a readable Parquet file ({_first_line(e)}); write it "
                        f"again (pandas DataFrame.to_parquet) or point {field} at another file") from None
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    if b"huggingface" in metadata:  # written by datasets (Dataset.to_parquet, the Hub): its features ride along
        import datasets

        table = _decode_class_labels(table, datasets.Features.from_arrow_schema(pq.read_schema(path)), str(path))
    return _plain_columns(table), None


def _read_arrow(path: Path, field: str = "data.path", split: str | None = None):
    if not path.is_dir():
        raise UserError(str(path), field, "data.format arrow expects a datasets.save_to_disk directory")
    import datasets  # only here: JSONL/CSV/Parquet users need not have it, and it is slow to import

    try:
        ds = datasets.load_from_disk(str(path))
    except IndexError:  # datasets writes an empty Dataset with no data file, then fails to load it
        rows = "prompt, completion, label" if field == "data.path" else "prompt and the column its verifier reads (e.g. constraint)"
        raise UserError(str(path), field, f"the dataset holds no rows; add rows of {rows}") from None
    except Exception as e:  # FileNotFoundError/ValueError/ArrowInvalid for a folder that is not a dataset
        raise UserError(str(path), field, f"is not a datasets.save_to_disk directory ({_first_line(e)}); "
                        f"point {field} at a data file or a folder written by Dataset.save_to_disk") from None
    note = None
    if isinstance(ds, datasets.DatasetDict):
        ds, note = _pick_split(ds, str(path), field, split)
    elif split is not None:
        raise UserError(str(path), "data.split", f"names a split ('{split}'), but {path} holds one Dataset, "
                        "not a DatasetDict of splits; remove data.split")
    table = pd.DataFrame.from_records(ds.to_list(), columns=ds.column_names)
    table = _decode_class_labels(table, ds.features, str(path))
    if note:
        table.attrs[READ_NOTES] = (note,)
    return table, None


def _pick_split(ds, file: str, field: str, split: str | None):
    """The split of a saved DatasetDict to read, and the warning line for the ones not read (or None):
    `split` (data.split), else train, else the only one; several and none of them train is refused, as
    picking one would be a guess."""
    splits = list(ds)
    if split is not None and split not in splits:
        raise UserError(file, "data.split", f"unknown split '{split}'; {did_you_mean(split, splits)}")
    if split is None and "train" not in splits and len(splits) != 1:
        raise UserError(file, field, f"holds several splits ({', '.join(splits)}) and none is named train; set "
                        f"data.split to the one to read (e.g. --set data.split={splits[0]})")
    read = split if split is not None else "train" if "train" in splits else splits[0]
    return ds[read], _unread_splits(file, splits, read, named=split is not None)


def _unread_splits(file: str, splits: list, read: str, named: bool = False) -> str | None:
    """The warning line for a saved DatasetDict whose splits other than `read` are not read, or None.
    Said, not refused: a user who saved train and test may expect test to be held out, but prefopt makes its
    own held-out split from the split it reads, and the rest would go unused unseen."""
    others = [s for s in splits if s != read]
    if not others:
        return None
    fix = "" if named else f"; to read another split, set data.split (e.g. --set data.split={others[0]})"
    return (f"{file}: a DatasetDict of splits {', '.join(splits)}: only {read} is read, not {', '.join(others)} "
            f"(prefopt makes the held-out split from {read}){fix}")


def _decode_class_labels(table: pd.DataFrame, features, file: str) -> pd.DataFrame:
    """A `label` saved as a datasets ClassLabel holds class numbers, whose meaning is in its names: read as
    0/1, names ['desirable', 'undesirable'] turned every label round without a word. The names are read
    instead; names that are no label spelling leave which class is desirable unknown, so they are refused."""
    import datasets

    feature = features.get("label") if "label" in table.columns else None
    if not isinstance(feature, datasets.ClassLabel):
        return table
    names = feature.names
    unread = [n for n in names if _LABELS.get(n.strip().lower()) is None]
    if unread:
        raise UserError(file, "label", f"is a ClassLabel whose class names ({', '.join(map(repr, names))}) are not "
                        f"labels, so which class is desirable is unknown; name the classes {ALLOWED_LABELS}, or "
                        "save the label as bool")
    # a number outside the classes (ClassLabel's -1, 'no label') stays as it is and is refused with its row
    return table.assign(label=table["label"].map(lambda i: names[i] if _whole_in(i, len(names)) else i))


def _whole_in(value, n: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < n


_READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet,
            "arrow": _read_arrow}


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


def _plain_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Parquet gives lists back as numpy arrays: turn them into lists/dicts so rows compare, hash to the
    same prompt_key and serialize as they would from JSONL."""
    for c in table.columns:
        if table[c].dtype == object:
            table[c] = table[c].map(_plain)
    return table


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


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


def _first_line(e: Exception) -> str:
    """A library exception as one line for a UserError: its type and the first line of its message."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"
