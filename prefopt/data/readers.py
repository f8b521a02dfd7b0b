"""The file formats a data file may come in (JSONL, JSON, CSV, Parquet, a datasets.save_to_disk directory):
each reader turns one into a raw table and the file's number of each row, for `io` to validate.

Picking the format (from data.format or the extension), decoding the text, choosing the split of a saved
DatasetDict and reading a ClassLabel by its names happen here; what the columns and rows must hold is
checked in `io`. Every problem is a `UserError` naming the file and the field, as in `io`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError, did_you_mean

FORMATS = ("auto", "jsonl", "json", "csv", "parquet", "arrow")
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet",
              ".pq": "parquet"}
READ_NOTES = "read_notes"  # DataFrame.attrs key: lines on how the file was read (load_rows), for data_warnings

# Accepted label spellings. Strings are compared after strip() + lower(); bools and the numbers 0/1 by
# value (True == 1 and 1.0 == 1 hash alike, so one dict covers bool, int, float and numpy scalars).
_LABELS = {True: True, False: False, "true": True, "false": False, "yes": True, "no": False,
           "desirable": True, "undesirable": False, "1": True, "0": False,
           "1.0": True, "0.0": False}  # (what pandas' to_csv writes for a float column of 1/0)
ALLOWED_LABELS = "true/false, 1/0, yes/no or desirable/undesirable (any case)"


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


def _first_line(e: Exception) -> str:
    """A library exception as one line for a UserError: its type and the first line of its message."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"
