"""load_rows: every supported format, both row shapes, both text forms, and every bad input's message."""

import json

import numpy as np
import pandas as pd
import pytest

from prefopt.data.io import READ_NOTES, canonical_rows, load_prompts, load_rows, normalize_labels, prompt_keys
from prefopt.errors import UserError

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def error(path, fmt="auto") -> UserError:
    with pytest.raises(UserError) as info:
        load_rows(str(path), fmt)
    assert "Traceback" not in str(info.value)
    return info.value


def test_jsonl_strings_labels_extras(tmp_path):
    labels = [True, False, 1, 0, "Yes", "no", " DESIRABLE ", "undesirable", "TRUE", "false", "1", "0", 1.0]
    rows = [{"prompt": f"p{i % 3}", "completion": f"c{i}", "label": v, "constraint": {"k": i}}
            for i, v in enumerate(labels)]
    df = load_rows(write_jsonl(tmp_path / "d.jsonl", rows))
    assert df["label"].dtype == bool
    assert df["label"].tolist() == [True, False] * 6 + [True]
    assert df["constraint"].tolist() == [{"k": i} for i in range(len(labels))]  # extras kept as they are
    assert df["prompt_key"].tolist() == [f"p{i % 3}" for i in range(len(labels))]
    assert df["completion"].tolist() == [f"c{i}" for i in range(len(labels))]


def test_jsonl_messages_stay_lists_and_key_is_sorted_json(tmp_path):
    answer = [{"role": "assistant", "content": "hello"}]
    df = load_rows(write_jsonl(tmp_path / "d.jsonl", [{"prompt": CHAT, "completion": answer, "label": True}]))
    assert df["prompt"][0] == CHAT and isinstance(df["prompt"][0], list)
    assert df["completion"][0] == answer
    assert df["prompt_key"][0] == json.dumps(CHAT, sort_keys=True)


def test_paired_rows_are_unpaired_into_two(tmp_path):
    rows = [{"prompt": "p1", "chosen": "good1", "rejected": "bad1", "source": "a"},
            {"prompt": "p2", "chosen": "good2", "rejected": "bad2", "source": "b"}]
    df = load_rows(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert df[["prompt", "completion", "label", "source"]].values.tolist() == [
        ["p1", "good1", True, "a"], ["p1", "bad1", False, "a"], ["p2", "good2", True, "b"], ["p2", "bad2", False, "b"]]
    assert "chosen" not in df.columns and "rejected" not in df.columns


def test_json_csv_parquet_arrow_agree(tmp_path):
    rows = [{"prompt": f"p{i}", "completion": f"c{i}", "label": bool(i % 2)} for i in range(6)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "arrow_dir"))
    want = load_rows(write_jsonl(tmp_path / "d.jsonl", rows))[["prompt", "completion", "label"]].values.tolist()
    for name in ("d.json", "d.csv", "d.parquet", "arrow_dir"):
        got = load_rows(str(tmp_path / name))
        assert got[["prompt", "completion", "label"]].values.tolist() == want, name


def test_parquet_and_arrow_give_message_lists_back_as_lists(tmp_path):
    rows = [{"prompt": CHAT, "completion": [{"role": "assistant", "content": f"a{i}"}], "label": i % 2 == 0,
             "constraint": {"words": ["x", "y"]}} for i in range(4)]
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    for path in (tmp_path / "d.parquet", tmp_path / "dd"):
        df = load_rows(str(path))
        assert df["prompt"][0] == CHAT and type(df["prompt"][0]) is list
        assert df["prompt_key"][0] == json.dumps(CHAT, sort_keys=True)
        assert df["completion"].tolist() == [r["completion"] for r in rows]
        assert df["constraint"][0] == {"words": ["x", "y"]} and type(df["constraint"][0]["words"]) is list


def test_explicit_format_overrides_extension(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text(json.dumps({"prompt": "p", "completion": "c", "label": "yes"}) + "\n")
    assert load_rows(str(path), "jsonl")["label"].tolist() == [True]


def test_jsonl_without_datasets_import(tmp_path):
    import subprocess
    import sys

    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c", "label": 1}])
    code = ("import sys; from prefopt.data.io import load_rows; load_rows(sys.argv[1]); "
            "assert 'datasets' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# --- bad inputs -------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    e = error(tmp_path / "nope.jsonl")
    assert (e.file, e.field) == (str(tmp_path / "nope.jsonl"), "data.path") and "no such file" in e.message


def test_unsupported_extension_lists_supported(tmp_path):
    (tmp_path / "d.xlsx").write_text("x")
    e = error(tmp_path / "d.xlsx")
    assert e.field == "data.path" and "'.xlsx'" in e.message
    for ext in (".jsonl", ".json", ".csv", ".parquet"):
        assert ext in e.message


def test_unknown_format_suggests(tmp_path):
    e = error(write_jsonl(tmp_path / "d.jsonl", []), "jsnl")
    assert e.field == "data.format" and "did you mean 'jsonl'?" in e.message


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file(tmp_path, content):
    (tmp_path / "d.jsonl").write_text(content)
    e = error(tmp_path / "d.jsonl")
    assert e.field == "data.path" and "empty" in e.message


def test_csv_with_header_only_has_no_rows(tmp_path):
    (tmp_path / "d.csv").write_text("prompt,completion,label\n")
    e = error(tmp_path / "d.csv")
    assert e.field == "data.path" and "no rows" in e.message


def test_garbled_jsonl_line_names_the_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "completion": "c", "label": 1}\n\n{"prompt": "p", oops\n')
    e = error(tmp_path / "d.jsonl")
    assert e.field == "row 3" and "not valid JSON" in e.message and "one JSON object" in e.message


def test_jsonl_line_that_is_not_an_object(tmp_path):
    (tmp_path / "d.jsonl").write_text('["p", "c", true]\n')
    e = error(tmp_path / "d.jsonl")
    assert e.field == "row 1" and "not an object" in e.message


def test_binary_file(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    e = error(tmp_path / "d.jsonl")
    assert e.field == "data.path" and "UTF-8" in e.message


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_not_utf8_names_the_line_and_the_byte(tmp_path, bom):
    # a byte offset alone (byte 65) left the reader counting bytes; the line is where an editor goes
    good = b'{"prompt": "a", "completion": "b", "label": true}\n'
    (tmp_path / "d.jsonl").write_bytes(bom + good + b'{"prompt": "caf\xe9", "completion": "b", "label": false}\n')
    e = error(tmp_path / "d.jsonl")
    offset = len(bom) + len(good) + len(b'{"prompt": "caf')
    assert e.field == "data.path" and e.message.startswith(f"is not UTF-8 text (line 2, byte {offset}: b'\\xe9');")
    assert "\n" not in str(e)


def test_not_utf8_prompts_file_names_no_data_format(tmp_path):
    # eval.prompts has no format key; sending its reader to data.format pointed at the other file's setting
    (tmp_path / "p.jsonl").write_bytes(b'{"prompt": "caf\xe9", "constraint": {"id": "lowercase"}}\n')
    with pytest.raises(UserError) as e:
        load_prompts(str(tmp_path / "p.jsonl"))
    assert e.value.field == "eval.prompts" and "UTF-8" in e.value.message and "data.format" not in e.value.message


def test_garbled_parquet_and_csv(tmp_path):
    (tmp_path / "d.parquet").write_bytes(b"PAR1 this is not parquet")
    e = error(tmp_path / "d.parquet")
    assert e.field == "data.path" and "Parquet" in e.message and "to_parquet" in e.message
    cases = {'prompt,completion,label\np,c,1\n"p,c,1\n': "row 2",  # a quote never closed
             "prompt,completion,label\np,c,1,extra,fields\n": "row 1"}  # a comma too many
    for text, field in cases.items():
        (tmp_path / "d.csv").write_text(text)
        e = error(tmp_path / "d.csv")
        assert e.field == field and "not readable as CSV" in e.message, text


def test_bad_json_document(tmp_path):
    (tmp_path / "d.json").write_text('{"prompt": 1')
    assert error(tmp_path / "d.json").field == "data.path"
    (tmp_path / "d.json").write_text('"just a string"')
    assert "list of row objects" in error(tmp_path / "d.json").message


def test_json_of_pandas_default_orient_names_the_orient_to_write(tmp_path):
    # DataFrame.to_json(path) writes {"prompt": {"0": ...}, ...}: it got 'got something else'
    pd.DataFrame({"prompt": ["p", "p"], "completion": ["a", "b"], "label": [1, 0]}).to_json(tmp_path / "d.json")
    e = error(tmp_path / "d.json")
    assert e.field == "data.path" and "orient='records'" in e.message


def test_arrow_directory_that_is_not_a_dataset(tmp_path):
    (tmp_path / "folder").mkdir()
    e = error(tmp_path / "folder")
    assert e.field == "data.path" and "save_to_disk" in e.message


def test_bad_label_names_row_in_file_numbering(tmp_path):
    (tmp_path / "d.jsonl").write_text(
        '{"prompt": "p", "completion": "c", "label": true}\n\n'
        '{"prompt": "p", "completion": "c", "label": "maybe"}\n')
    e = error(tmp_path / "d.jsonl")
    assert e.field == "row 3: label"  # line 3 of the file: the blank line 2 counts
    assert "'maybe'" in e.message and "true/false, 1/0, yes/no or desirable/undesirable" in e.message


@pytest.mark.parametrize("value", [2, None, 0.5, [True], "", "positive"])
def test_every_unaccepted_label_is_an_error(tmp_path, value):
    rows = [{"prompt": "p", "completion": "c", "label": True}, {"prompt": "p", "completion": "c", "label": value}]
    e = error(write_jsonl(tmp_path / "d.jsonl", rows))
    assert e.field == "row 2: label" and "allowed:" in e.message


def test_missing_label_key(tmp_path):
    rows = [{"prompt": "p", "completion": "c", "label": True}, {"prompt": "p", "completion": "c"}]
    e = error(write_jsonl(tmp_path / "d.jsonl", rows))
    assert e.field == "row 2: label" and "missing" in e.message


def test_csv_quoted_fields_keep_commas_and_newlines(tmp_path):
    (tmp_path / "d.csv").write_text('prompt,completion,label\n"a, b","line1\nline2",desirable\n\n')
    df = load_rows(str(tmp_path / "d.csv"))
    assert df[["prompt", "completion", "label"]].values.tolist() == [["a, b", "line1\nline2", True]]


def test_csv_row_numbers_and_labels(tmp_path):
    (tmp_path / "d.csv").write_text("prompt,completion,label\np,c,Yes\np,c,nope\n")
    e = error(tmp_path / "d.csv")
    assert e.field == "row 2: label" and "'nope'" in e.message


def test_csv_blank_lines_of_spaces_or_empty_cells_are_skipped_and_keep_the_numbering(tmp_path):
    # a trailing line of spaces was 'row 3: is not readable as CSV ... quote fields that contain commas', a
    # spreadsheet's emptied row (",,") three errors about an empty prompt, completion and label, and a row after
    # a blank line was numbered as if the blank were not there
    (tmp_path / "d.csv").write_text("prompt,completion,label\np,a,yes\n  \n,,\n\np,b,no\n \t\n")
    assert load_rows(str(tmp_path / "d.csv"))["completion"].tolist() == ["a", "b"]
    (tmp_path / "d.csv").write_text("prompt,completion,label\np,a,yes\n\n,,\np,b,maybe\n")
    assert error(tmp_path / "d.csv").field == "row 4: label"


def test_missing_columns_lists_found_and_needed(tmp_path):
    e = error(write_jsonl(tmp_path / "d.jsonl", [{"question": "p", "answer": "c", "label": True}]))
    assert e.field == "columns"
    assert "question, answer, label" in e.message
    assert "prompt, completion, label" in e.message and "prompt, chosen, rejected" in e.message


def test_missing_columns_shows_spaces_around_a_name(tmp_path):
    # a CSV header written "prompt, completion, label" once read back as "found columns: prompt, completion,
    # label; needed prompt, completion, label": the names it asked for, with the spaces that differ unseen
    (tmp_path / "d.csv").write_text("prompt, completion, label\np,c,yes\n")
    e = error(tmp_path / "d.csv")
    assert e.field == "columns" and "found columns: prompt, ' completion', ' label';" in e.message


@pytest.mark.parametrize("completion", ["", "   \n\t", [{"role": "assistant", "content": "  "}]])  # (no assistant
# turn at all: test_csv_float_labels_and_a_completion_with_no_assistant_message)
def test_empty_completion_names_row(tmp_path, completion):
    prompt = "p" if isinstance(completion, str) else [{"role": "user", "content": "p"}]
    ok = "fine" if isinstance(completion, str) else [{"role": "assistant", "content": "fine"}]
    rows = [{"prompt": prompt, "completion": ok, "label": True}, {"prompt": prompt, "completion": completion,
                                                                  "label": False}]
    e = error(write_jsonl(tmp_path / "d.jsonl", rows))
    assert e.field == "row 2: completion" and "empty" in e.message and "remove the row" in e.message


@pytest.mark.parametrize("prompt", ["", " \n", [{"role": "user", "content": " "}]])
def test_empty_prompt_names_row(tmp_path, prompt):
    # a blank prompt cell (how a CSV export writes a missing prompt) was accepted, and every such row became
    # one prompt "": DPO paired and the split grouped completions of unrelated questions
    (tmp_path / "d.csv").write_text("prompt,completion,label\nq1,c,yes\n,d,no\nq2,e,yes\n,f,no\n")
    e = error(tmp_path / "d.csv")
    assert e.field == "row 2: prompt" and "empty or whitespace only (2 row(s) in all)" in e.message
    ok = [{"role": "system", "content": "be brief"}] if isinstance(prompt, list) else "q"
    answer = [{"role": "assistant", "content": "c"}] if isinstance(prompt, list) else "c"
    rows = [{"prompt": ok, "completion": answer, "label": True}, {"prompt": prompt, "completion": answer, "label": False}]
    e = error(write_jsonl(tmp_path / "d.jsonl", rows))
    assert e.field == "row 2: prompt" and "empty" in e.message and "remove the row" in e.message


def test_chat_messages_saved_as_text_are_refused(tmp_path):
    # a chat DataFrame saved with to_csv (each list as its Python repr) was read as plain-string prompts and
    # completions: the run would train on the brackets, without the chat template
    rows = pd.DataFrame({"prompt": [[{"role": "user", "content": "hi"}]] * 2,
                         "completion": [[{"role": "assistant", "content": c}] for c in "ab"], "label": [True, False]})
    rows.to_csv(tmp_path / "d.csv", index=False)
    e = error(tmp_path / "d.csv")
    assert e.field == "row 1: prompt" and "reads as a list of chat messages (2 row(s) in all)" in e.message
    assert "save the file as JSONL" in e.message
    text = [{**r, "prompt": json.dumps(r["prompt"])} for r in rows.to_dict("records")]  # json.dumps'd in JSONL
    assert error(write_jsonl(tmp_path / "d.jsonl", text)).field == "row 1: prompt"
    fine = [{"prompt": "[{'role' in Python: what is it?", "completion": "c", "label": True}]  # not a message list
    assert load_rows(write_jsonl(tmp_path / "e.jsonl", fine))["prompt"].tolist() == [fine[0]["prompt"]]


def test_empty_rejected_in_paired_file(tmp_path):
    e = error(write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "c", "rejected": " "}]))
    assert e.field == "row 1: rejected" and "empty" in e.message


@pytest.mark.parametrize("prompt", [7, {"role": "user"}, [], [{"role": "user"}]])  # None: "is missing"
def test_prompt_that_is_not_text(tmp_path, prompt):
    e = error(write_jsonl(tmp_path / "d.jsonl", [{"prompt": prompt, "completion": "c", "label": True}]))
    assert e.field == "row 1: prompt" and "expected a string or a list of chat messages" in e.message


def test_mixed_forms_are_refused(tmp_path):
    rows = [{"prompt": "p", "completion": "c", "label": True},
            {"prompt": [{"role": "user", "content": "p"}], "completion": "c", "label": False}]
    e = error(write_jsonl(tmp_path / "d.jsonl", rows))
    assert e.field == "row 2: prompt" and "one form for the whole file" in e.message
    rows = [{"prompt": "p", "completion": [{"role": "assistant", "content": "c"}], "label": True}]
    e = error(write_jsonl(tmp_path / "e.jsonl", rows))
    assert e.field == "row 1: completion" and "same form" in e.message


def test_error_string_is_one_line_with_file_and_field(tmp_path):
    e = error(write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "completion": "c", "label": "x"}]))
    assert str(e).startswith(f"{tmp_path / 'd.jsonl'}: row 1: label: ") and "\n" not in str(e)


# --- pure helpers -----------------------------------------------------------------------------------------

def test_normalize_labels_vectorized_fast_path_and_numpy_scalars():
    assert normalize_labels(pd.Series([True, False]), file="f").tolist() == [True, False]
    values = pd.Series([np.int64(1), np.float64(0.0), np.bool_(True)], dtype=object)
    assert normalize_labels(values, file="f").tolist() == [True, False, True]


def test_nullable_boolean_labels():
    assert normalize_labels(pd.Series([True, False], dtype="boolean"), file="f").tolist() == [True, False]
    with pytest.raises(UserError) as e:
        normalize_labels(pd.Series([True, None], dtype="boolean"), file="f")
    assert e.value.field == "row 2: label" and "missing" in e.value.message


def test_prompt_keys_mixed_types():
    keys = prompt_keys(pd.Series(["plain", CHAT], dtype=object))
    assert keys.tolist() == ["plain", json.dumps(CHAT, sort_keys=True)]


def test_canonical_rows_in_memory_table():
    df = canonical_rows(pd.DataFrame({"prompt": ["a"], "completion": ["b"], "label": ["no"]}), file="mem")
    assert df["label"].tolist() == [False] and df["prompt_key"].tolist() == ["a"]


def test_jsonl_strings_may_hold_unicode_line_breaks(tmp_path):
    """U+2028, U+0085 and the like are legal inside a JSON string; only "\\n" ends a JSONL row."""
    rows = [{"prompt": "p", "completion": "first line\u2028second\x85third", "label": True},
            {"prompt": "p", "completion": "b", "label": False}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows), encoding="utf-8")
    assert list(load_rows(str(path))["completion"]) == [rows[0]["completion"], "b"]


def test_csv_header_that_repeats_a_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion,label,label\np,a,1,0\n")
    with pytest.raises(UserError, match=r"columns: the header names 'label' more than once"):
        load_rows(str(path))


def test_csv_unnamed_empty_columns_of_a_spreadsheet_export_are_dropped(tmp_path):
    # a spreadsheet's export of three used columns and two unused ones (",," after every cell row) was refused:
    # 'the header names '' more than once'
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion,label,,\r\np,a,yes,,\r\np,b,no,,\r\n")
    rows = load_rows(str(path))
    assert rows["completion"].tolist() == ["a", "b"] and "" not in rows.columns
    path.write_text("prompt,completion,label,,\np,a,yes,x,\np,b,no,,y\n")  # unnamed columns holding values
    with pytest.raises(UserError, match=r"columns: the header names '' more than once"):
        load_rows(str(path))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("column", ["prompt", "completion", "chosen", "rejected"])
def test_missing_values_name_their_row(tmp_path, fmt, column):
    """A null or left-out value is an error at load, in every column and format (under pandas' string dtype
    it used to pass as text and fail inside the trainer)."""
    paired = column in ("chosen", "rejected")
    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} if paired else
            {"prompt": f"p{i}", "completion": "a", "label": i % 2 == 0} for i in range(4)]
    rows[2][column] = None
    path = tmp_path / f"d.{fmt}"
    if fmt == "jsonl":
        del rows[2][column]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    with pytest.raises(UserError, match=rf"row 3: {column}: is missing \(1 row\(s\) in all\)"):
        load_rows(str(path))


def test_problems_in_several_columns_are_reported_together(tmp_path):
    from prefopt.errors import UserErrors

    rows = [{"prompt": "p1", "completion": "a", "label": True}, {"prompt": "p1", "completion": "b", "label": "maybe"},
            {"prompt": "p2", "completion": "  ", "label": True}, {"prompt": 5, "completion": "d", "label": False}]
    with pytest.raises(UserErrors) as info:
        load_rows(write_jsonl(tmp_path / "d.jsonl", rows))
    assert [e.field for e in info.value.errors] == ["row 4: prompt", "row 3: completion", "row 2: label"]
    assert len(str(info.value).splitlines()) == 3


def test_csv_float_labels_and_a_completion_with_no_assistant_message(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion,label\np,a,1.0\np,b,0.0\n")
    assert load_rows(str(path))["label"].tolist() == [True, False]
    rows = [{"prompt": CHAT, "completion": [{"role": "user", "content": "an answer"}], "label": True}]
    e = error(write_jsonl(tmp_path / "d.jsonl", rows))
    assert e.field == "row 1: completion" and "has no assistant message" in e.message


@pytest.mark.parametrize("save", ["save_to_disk", "to_parquet"])
def test_class_label_is_read_by_its_names_not_its_numbers(tmp_path, save):
    import datasets

    # class 0 is desirable here: read as the number 0, every label came out turned round
    features = datasets.Features({"prompt": datasets.Value("string"), "completion": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["desirable", "undesirable"])})
    ds = datasets.Dataset.from_dict({"prompt": ["p", "p", "q"], "completion": ["a", "b", "c"], "label": [0, 1, 0]},
                                    features=features)
    path = str(tmp_path / ("d" if save == "save_to_disk" else "d.parquet"))
    getattr(ds, save)(path)
    assert load_rows(path)["label"].tolist() == [True, False, True]


def test_class_label_whose_names_are_not_labels_is_refused(tmp_path):
    import datasets

    features = datasets.Features({"prompt": datasets.Value("string"), "completion": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["good", "bad"])})
    datasets.Dataset.from_dict({"prompt": ["p", "p"], "completion": ["a", "b"], "label": [0, 1]},
                               features=features).save_to_disk(str(tmp_path / "d"))
    e = error(tmp_path / "d")
    assert e.field == "label" and "'good', 'bad'" in e.message and "ClassLabel" in e.message


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_chat_answer_that_repeats_the_prompt_is_refused(tmp_path, fmt):
    # the Hub's chosen/rejected hold the whole conversation: with a prompt column as well, the trainer
    # would see the question twice
    user = [{"role": "user", "content": "hi"}]
    rows = [{"prompt": user, "chosen": user + [{"role": "assistant", "content": "hello"}],
             "rejected": [{"role": "assistant", "content": "go away"}]}]
    path = tmp_path / f"d.{fmt}"
    write_jsonl(path, rows) if fmt == "jsonl" else pd.DataFrame(rows).to_parquet(path)
    e = error(path)
    assert e.field == "row 1: chosen" and "prompt's messages" in e.message
    rows[0]["chosen"] = rows[0]["chosen"][1:]  # the answer alone is read
    write_jsonl(path, rows) if fmt == "jsonl" else pd.DataFrame(rows).to_parquet(path)
    assert load_rows(str(path))["completion"].tolist() == [rows[0]["chosen"], rows[0]["rejected"]]


def test_empty_save_to_disk_dataset_says_it_holds_no_rows(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"prompt": [], "completion": [], "label": []}).save_to_disk(str(tmp_path / "d"))
    e = error(tmp_path / "d")
    assert e.field == "data.path" and "no rows" in e.message and "is not a" not in e.message
    assert "completion, label" in e.message
    datasets.Dataset.from_dict({"prompt": [], "constraint": []}).save_to_disk(str(tmp_path / "p"))
    with pytest.raises(UserError) as raised:  # a generation test's prompts carry no completion or label
        load_prompts(tmp_path / "p")
    assert raised.value.field == "eval.prompts" and "no rows" in raised.value.message
    assert "label" not in raised.value.message and "constraint" in raised.value.message


def test_a_saved_dataset_dict_says_which_split_is_read_and_which_are_not(tmp_path):
    """A DatasetDict of train and test was read from train alone without a word: the test split went unused
    unseen. Now one data warning names the folder, the split read, the splits not read and how to use one."""
    import datasets

    from prefopt.data import prepare

    def split(tag):
        return datasets.Dataset.from_list([{"prompt": f"{tag}{i}", "completion": f"c{j}", "label": bool(j)}
                                           for i in range(10) for j in range(2)])

    def warnings(path):
        rows = load_rows(str(path))
        assert set(rows["prompt"]) == {f"p{i}" for i in range(10)}  # the train split's rows, and only those
        return prepare(rows, file=str(path), method="kto", form="unpaired", strategy="mixed", eval_fraction=0.2,
                       seed=0).report["data_warnings"]

    both = tmp_path / "both"
    datasets.DatasetDict({"train": split("p"), "test": split("t"), "extra": split("x")}).save_to_disk(str(both))
    (line,) = warnings(both)
    assert line.startswith(f"{both}: a DatasetDict of splits train, test, extra: only train is read, not test, extra")
    assert line.endswith("; to read another split, set data.split (e.g. --set data.split=test)")
    assert "\n" not in line
    # one split, train or not, or a Dataset: nothing goes unread, nothing to say
    for name, saved in (("train", datasets.DatasetDict({"train": split("p")})),
                        ("only", datasets.DatasetDict({"test": split("p")})), ("plain", split("p"))):
        saved.save_to_disk(str(tmp_path / name))
        assert warnings(tmp_path / name) == [], name


def test_data_split_reads_the_named_split_of_a_saved_dataset_dict(tmp_path):
    """Published preference sets are saved as train_prefs/test_prefs: with no split named train they were
    refused with 'save the split to use on its own' and no way to name one. data.split names it; a split the
    folder lacks is refused with the choices, and so is data.split on a file or a Dataset, which have none."""
    import datasets

    def split(tag):
        return datasets.Dataset.from_list([{"prompt": f"{tag}{i}", "chosen": f"a{i}", "rejected": f"b{i}"}
                                           for i in range(10)])

    prefs = tmp_path / "prefs"
    datasets.DatasetDict({"train_prefs": split("p"), "test_prefs": split("t")}).save_to_disk(str(prefs))
    e = error(prefs)  # none named: one line naming the splits and the key that picks one
    assert e.field == "data.path" and "several splits (train_prefs, test_prefs)" in e.message
    assert "set data.split to the one to read (e.g. --set data.split=train_prefs)" in e.message
    for name, tag in (("train_prefs", "p"), ("test_prefs", "t")):
        rows = load_rows(str(prefs), split=name)
        assert set(rows["prompt"]) == {f"{tag}{i}" for i in range(10)}, name
        (note,) = rows.attrs[READ_NOTES]  # named, the other split is still said to go unread, without the fix
        assert f"only {name} is read" in note and "set data.split" not in note
    with pytest.raises(UserError) as raised:
        load_rows(str(prefs), split="train_pref")
    assert raised.value.field == "data.split"
    assert raised.value.message == ("unknown split 'train_pref'; did you mean 'train_prefs'? choices: test_prefs, "
                                    "train_prefs")
    split("p").save_to_disk(str(tmp_path / "plain"))
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "completion": "c", "label": true}\n')
    for path, words in ((tmp_path / "plain", "holds one Dataset, not a DatasetDict"), (tmp_path / "d.jsonl",
                                                                                        "is a jsonl file")):
        with pytest.raises(UserError) as raised:
            load_rows(str(path), split="train")
        assert raised.value.field == "data.split" and words in raised.value.message, path
        assert raised.value.message.endswith("remove data.split"), path


@pytest.mark.parametrize("sep", [";", "\t"])
def test_csv_separated_by_semicolons_or_tabs_says_so(tmp_path, sep):
    # read as one column named 'prompt;completion;label', it was told to rename the columns it listed; with a
    # quoted line break in a cell, to check the quoting of row 2; the fix is the separator
    path = tmp_path / "d.csv"
    for body in ("p;a;yes\np;b;no\n", '"p\n";a;yes\n"p\n";b;no\n'):
        path.write_text(f"prompt{sep}completion{sep}label\n" + body.replace(";", sep))
        e = error(path)
        assert e.field == "data.path" and "not commas" in e.message and "to_csv" in e.message
    # a prompts file of one column is not taken for one: its header holds no separator, whatever its rows hold
    path.write_text("prompt\nUse a; b\n")
    assert list(load_prompts(path)["prompt"]) == ["Use a; b"]
