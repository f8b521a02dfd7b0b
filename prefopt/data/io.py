"""Reading a labeled file into one normalized table (the only I/O in prefopt.data).

Output columns: prompt, completion, label (bool), prompt_key (a string that identifies the prompt, for
grouping), plus any extra columns of the file (a verifier's metadata, say). Paired files
(prompt, chosen, rejected) are unpaired into two rows per pair.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import UserError, did_you_mean

FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
TRUE = {"true", "yes", "desirable", "1"}
FALSE = {"false", "no", "undesirable", "0"}


def load_rows(path: str, format: str = "auto") -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise UserError(path, "data.path", "no such file; point data.path at a JSONL, JSON, CSV or Parquet file "
                        "or a datasets.save_to_disk directory (relative paths are read from the current directory)")
    fmt = _format(p, format)
    try:
        df = _read(p, fmt)
    except UserError:
        raise
    except Exception as e:  # the readers raise many types; all mean "not a readable file of that format"
        raise UserError(path, "data.path", f"cannot read it as {fmt} ({e.__class__.__name__}: "
                        f"{str(e).splitlines()[0][:120] if str(e) else ''}); check the file or set data.format") from None
    if len(df) == 0:
        raise UserError(path, "data.path", "the file has no rows; it needs prompt, completion and label rows")
    return normalize(df, path)


def _format(p: Path, format: str) -> str:
    if format != "auto":
        choices = set(FORMATS.values()) | {"arrow"}
        if format not in choices:
            raise UserError(str(p), "data.format", f"unknown format '{format}'; {did_you_mean(format, choices)}")
        return format
    if p.is_dir():
        return "arrow"
    if p.suffix.lower() not in FORMATS:
        raise UserError(str(p), "data.path", f"unsupported extension '{p.suffix}'; use one of "
                        f"{', '.join(FORMATS)} or a datasets.save_to_disk directory (or set data.format)")
    return FORMATS[p.suffix.lower()]


def _read(p: Path, fmt: str) -> pd.DataFrame:
    if fmt == "arrow":
        from datasets import load_from_disk  # only this format needs `datasets`

        return load_from_disk(str(p)).to_pandas()
    if fmt == "csv":
        return pd.read_csv(p, dtype=str, keep_default_na=False)
    if fmt == "parquet":
        return pd.read_parquet(p)
    if p.stat().st_size == 0:
        return pd.DataFrame()
    if fmt == "jsonl":
        with open(p, encoding="utf-8") as f:
            records = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        raise UserError(str(p), f"row {n}", "not valid JSON; each line must be one JSON object") from None
        return pd.DataFrame.from_records(records)
    data = json.loads(p.read_text(encoding="utf-8"))
    return pd.DataFrame.from_records(data if isinstance(data, list) else data.get("data", data))


def normalize(df: pd.DataFrame, path: str) -> pd.DataFrame:
    """Checks columns, labels and completions; unpairs paired rows; adds prompt_key."""
    cols = set(df.columns)
    if {"prompt", "chosen", "rejected"} <= cols and "completion" not in cols:
        df = unpair(df)
    elif not {"prompt", "completion", "label"} <= cols:
        missing = sorted({"prompt", "completion", "label"} - cols)
        raise UserError(path, "columns", f"missing {', '.join(missing)} (found: {', '.join(map(str, df.columns))}); "
                        "rows need prompt, completion, label (or prompt, chosen, rejected)")
    df = df.reset_index(drop=True).copy()
    df["label"] = parse_labels(df["label"], path)
    empty = [i for i, c in enumerate(df["completion"]) if not _text(c).strip()]
    if empty:
        raise UserError(path, f"row {empty[0] + 1}: completion", f"empty completion ({len(empty)} such rows); "
                        "remove them or fill them in")
    for col in ("prompt", "completion"):
        if not isinstance(df[col].iloc[0], str):
            df[col] = [_plain(v) for v in df[col]]
    df["prompt_key"] = [p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in df["prompt"]]
    if df["label"].all() or not df["label"].any():
        only = "desirable" if df["label"].all() else "undesirable"
        raise UserError(path, "label", f"every row is {only}; preference optimization needs both labels")
    return df


def unpair(df: pd.DataFrame) -> pd.DataFrame:
    extra = [c for c in df.columns if c not in ("prompt", "chosen", "rejected")]
    good = df[["prompt", *extra]].assign(completion=df["chosen"], label=True)
    bad = df[["prompt", *extra]].assign(completion=df["rejected"], label=False)
    return pd.concat([good, bad]).sort_index(kind="stable").reset_index(drop=True)


def parse_labels(labels: pd.Series, path: str) -> pd.Series:
    if labels.dtype == bool:
        return labels
    text = labels.map(lambda v: str(v).strip().lower() if not isinstance(v, bool) else str(v).lower())
    out = text.isin(TRUE)
    bad = ~(out | text.isin(FALSE))
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise UserError(path, f"row {i + 1}: label", f"{labels.iloc[i]!r} is not a label; use true/false, 1/0, "
                        "yes/no or desirable/undesirable")
    return out


def _text(value) -> str:
    """The text of a completion: a string, or the contents of a message list."""
    if isinstance(value, str):
        return value
    try:
        return "".join(str(m.get("content") or "") for m in value)
    except (TypeError, AttributeError):
        return "" if value is None else str(value)


def _plain(value):
    """Message lists read from Parquet/Arrow come as numpy arrays of dicts; make them JSON-able."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [dict(m) for m in value] if isinstance(value, list) else value
