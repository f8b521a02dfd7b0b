"""Repeated rows and completions labelled both ways: counted in the data report, one warning line each,
the file's own row numbers, never an error; stated pairs judged as pairs; the shipped data has neither."""

import json
from pathlib import Path

import pandas as pd

from prefopt.data import prepare
from prefopt.data.io import load_rows
from prefopt.data.repeats import repeats
from prefopt.data.report import format_report

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "feedback.jsonl"


def kto(rows, file="f.jsonl"):
    return prepare(rows, file=file, method="kto", form="unpaired", strategy="mixed", eval_fraction=0.2, seed=0)


def rows_file(tmp_path, rows, blank_after=()):
    path = tmp_path / "d.jsonl"
    lines = []
    for i, r in enumerate(rows):
        lines.append(json.dumps(r))
        if i in blank_after:
            lines.append("")  # a blank line: skipped, and the rows after it keep their line numbers
    path.write_text("\n".join(lines) + "\n")
    return path


def base(n=20):
    return [{"prompt": f"p{i}", "completion": f"good {i}", "label": True} for i in range(n)] + \
        [{"prompt": f"p{i}", "completion": f"bad {i}", "label": False} for i in range(n)]


def test_repeats_and_contradictions_are_counted_and_warned_with_the_files_row_numbers(tmp_path):
    rows = base()
    rows += [dict(rows[3]), dict(rows[3]), dict(rows[25])]  # lines 42, 43 (line 5 twice more), 44 (line 27)
    rows += [{**rows[7], "label": False}]  # line 45: line 9's completion, now undesirable
    path = rows_file(tmp_path, rows, blank_after=(0,))  # every line after the first moves down one
    p = kto(load_rows(str(path)), file=str(path))
    r = p.report
    assert (r["duplicate_rows"], r["contradictory_labels"]) == (3, 1)
    dup, contra = r["data_warnings"]
    assert dup == (f"{path}: 3 rows repeat an earlier one exactly (first: row 42 repeats row 5): each copy is "
                   "trained on and counted in the held-out metrics again; remove the copies, or keep them if they "
                   "are meant as weights")
    assert contra == (f"{path}: 1 completion is labelled both desirable and undesirable for one prompt (first: rows 9 "
                      "and 45): no reward can rank a completion against itself, so such rows hold reward_auc toward "
                      "chance; keep one label per completion (e.g. the majority's)")
    assert all("\n" not in w for w in r["data_warnings"])
    table = format_report(r)
    assert "duplicate_rows" in table and "contradictory_labels" in table and "repeat an earlier" not in table
    # warnings, not errors: the copies still train (users may mean them as weights)
    assert r["rows"] == len(rows) and json.loads(json.dumps(r)) == r


def test_a_table_built_in_memory_is_numbered_from_one():
    from prefopt.data.io import canonical_rows

    rows = pd.DataFrame(base(5) + [base(5)[0]])
    assert repeats(canonical_rows(rows, file="f"), "f")["data_warnings"] == [
        "f: 1 row repeats an earlier one exactly (first: row 11 repeats row 1): each copy is trained on and counted "
        "in the held-out metrics again; remove the copies, or keep them if they are meant as weights"]
    assert kto(rows).report["duplicate_rows"] == 1
    # rows from a file, filtered and reordered in memory, keep the file's numbers
    loaded = load_rows_of(rows)
    (warning,) = kto(loaded.iloc[::-1]).report["data_warnings"]
    assert warning.startswith("f.jsonl: 1 row repeats an earlier one exactly (first: row 1 repeats row 11)")


def test_stated_pairs_are_judged_as_pairs_a_ranking_is_no_contradiction(tmp_path):
    pairs = [{"prompt": f"q{i}", "chosen": "A", "rejected": "B"} for i in range(10)] + \
        [{"prompt": f"q{i}", "chosen": "B", "rejected": "C"} for i in range(10)]  # A > B > C: B both ways, fine
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    r = kto(load_rows(str(path)), file=str(path)).report
    assert (r["duplicate_rows"], r["contradictory_labels"], r["data_warnings"]) == (0, 0, [])
    pairs += [pairs[2], {"prompt": "q4", "chosen": "B", "rejected": "A"}]  # line 21: line 3 again; 22: line 5 reversed
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    r = kto(load_rows(str(path)), file=str(path)).report
    assert (r["duplicate_rows"], r["contradictory_labels"]) == (1, 1)
    dup, contra = r["data_warnings"]
    assert dup.startswith(f"{path}: 1 stated pair repeats an earlier one exactly (first: row 21 repeats row 3)")
    assert contra.startswith(f"{path}: 1 pair is stated both ways round (A over B and B over A; first: rows 5 and 22)")


def test_the_shipped_data_has_no_repeated_row_and_no_completion_labelled_both_ways():
    r = kto(load_rows(str(SHIPPED)), file="data/feedback.jsonl").report
    assert (r["duplicate_rows"], r["contradictory_labels"], r["data_warnings"]) == (0, 0, [])


def load_rows_of(frame):
    import tempfile

    path = Path(tempfile.mkdtemp()) / "d.jsonl"
    frame.to_json(path, orient="records", lines=True)
    return load_rows(str(path))


def test_a_stated_pair_of_one_text_is_a_contradiction_for_kto_and_a_dropped_pair_for_dpo(tmp_path):
    """KTO reads a pair as a desirable and an undesirable row: chosen == rejected is one completion labelled
    both ways, trained on both ways; it was neither counted nor warned of (DPO drops and counts it)."""
    pairs = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(20)]
    pairs[4]["rejected"] = pairs[6]["rejected"] = "same"
    pairs[4]["chosen"] = pairs[6]["chosen"] = "same"
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    r = kto(load_rows(str(path)), file=str(path)).report
    assert r["contradictory_labels"] == 2
    assert r["data_warnings"] == [
        f"{path}: 2 stated pairs have one text as both chosen and rejected (first: row 5): read as rows, that "
        "completion is labelled both desirable and undesirable for one prompt, and no "
        "reward can rank it against itself, so such rows hold reward_auc toward chance; give each pair two different "
        "completions or remove it"]
    dpo = prepare(load_rows(str(path)), file=str(path), method="dpo", form="paired", strategy="natural",
                  eval_fraction=0.2, seed=0).report
    assert (dpo["contradictory_labels"], dpo["data_warnings"]) == (0, [])
