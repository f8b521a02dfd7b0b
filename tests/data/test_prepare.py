"""prepare(): both forms end to end, the shared split, the report's arithmetic, options and their errors."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from prefopt.data import PAIRINGS, STRATEGIES, Prepared, prepare
from prefopt.data.io import load_rows
from prefopt.data.report import format_report
from prefopt.errors import UserError
from prefopt.testing import write_feedback

REPORT_KEYS = {"method", "strategy", "rows", "train_rows", "eval_rows", "eval_fingerprint", "desirable", "undesirable",
               "examples_used", "examples_discarded", "repeated_examples", "pairs", "unpaired_rows", "eval_pairs",
               "batch_size", "world_size", "epochs", "batches", "single_label_batches", "kl_same_prompt_pairs",
               "desirable_weight", "undesirable_weight", "seed", "eval_fraction"}
SHIPPED = Path(__file__).resolve().parents[2] / "data" / "feedback.jsonl"


@pytest.fixture(scope="module")
def chat_rows(tmp_path_factory):
    return load_rows(str(write_feedback(tmp_path_factory.mktemp("d") / "feedback.jsonl", prompts=60)))


def frame(per_prompt, extra=False):
    """Plain-string rows from [(n_desirable, n_undesirable), ...]."""
    out = []
    for i, (d, u) in enumerate(per_prompt):
        out += [{"prompt": f"p{i}", "completion": f"p{i} {'good' if j < d else 'bad'} {j}", "label": j < d,
                 **({"constraint": {"id": i}} if extra else {})} for j in range(d + u)]
    return pd.DataFrame(out)


def kto(rows, **kw):
    return prepare(rows, **{"file": "f.jsonl", "method": "kto", "form": "unpaired", "strategy": "mixed",
                            "eval_fraction": 0.2, "seed": 0, **kw})


def dpo(rows, **kw):
    return prepare(rows, **{"file": "f.jsonl", "method": "dpo", "form": "paired", "strategy": "natural",
                            "eval_fraction": 0.2, "seed": 0, **kw})


def test_unpaired_form(chat_rows):
    p = kto(chat_rows, batch_size=4, epochs=2)
    assert isinstance(p, Prepared)
    assert {"prompt", "completion", "label"} <= set(p.train.columns) and p.train["label"].dtype == bool
    assert isinstance(p.train["prompt"][0], list)  # conversational rows stay conversational
    assert len(p.train) == 2 * (p.report["desirable"] + p.report["undesirable"])
    assert p.report["single_label_batches"] == 0 and p.report["kl_same_prompt_pairs"] == 0
    assert set(p.eval_rows.columns) == set(chat_rows.columns) | {"row_id"}  # row_id: position in the file
    assert list(p.eval_pairs.columns) == ["prompt", "chosen", "rejected"] and len(p.eval_pairs) > 0
    assert REPORT_KEYS <= set(p.report) and json.loads(json.dumps(p.report)) == p.report


def test_paired_form(chat_rows):
    p = dpo(chat_rows)
    assert list(p.train.columns) == ["prompt", "chosen", "rejected"]
    r = p.report
    assert r["pairs"] == len(p.train) and r["desirable_weight"] is None and r["single_label_batches"] is None
    assert r["examples_used"] + r["unpaired_rows"] == r["train_rows"]  # nothing dropped silently
    # every training pair is two rows of one prompt, desirable then undesirable
    index = {(r_["prompt_key"], json.dumps(r_["completion"], sort_keys=True)): r_["label"]
             for r_ in chat_rows.to_dict("records")}
    for pair in p.train.to_dict("records"):
        key = json.dumps(pair["prompt"], sort_keys=True)
        assert index[(key, json.dumps(pair["chosen"], sort_keys=True))] is True
        assert index[(key, json.dumps(pair["rejected"], sort_keys=True))] is False


def test_extras_kept_in_eval_rows_and_unpaired_train():
    p = kto(frame([(2, 1)] * 20, extra=True))
    assert "constraint" in p.eval_rows.columns and "constraint" in p.train.columns
    assert all(r["constraint"]["id"] == int(r["prompt"][1:]) for r in p.train.to_dict("records"))


def test_split_is_shared_by_every_recipe(chat_rows):
    variants = [kto(chat_rows, strategy=s, batch_size=b, world_size=w, epochs=e)
                for s in ("mixed", "natural", "balanced", "file_order") for b, w, e in ((2, 1, 1), (8, 2, 3))]
    variants += [dpo(chat_rows, strategy=s, pairing=pr) for s in ("natural", "file_order") for pr in PAIRINGS]
    variants += [prepare(chat_rows, file="f.jsonl", method="orpo", form="paired", strategy="natural",
                         eval_fraction=0.2, seed=0)]
    first = variants[0]
    for v in variants[1:]:
        assert v.report["eval_fingerprint"] == first.report["eval_fingerprint"]
        assert v.eval_rows.equals(first.eval_rows) and v.eval_pairs.equals(first.eval_pairs)
    assert kto(chat_rows, seed=1).report["eval_fingerprint"] != first.report["eval_fingerprint"]


def test_one_epoch_is_the_first_of_three(chat_rows):
    one, three = kto(chat_rows, epochs=1), kto(chat_rows, epochs=3)
    assert len(three.train) == 3 * len(one.train)
    assert three.train.iloc[:len(one.train)].reset_index(drop=True).equals(one.train)
    assert not three.train.iloc[len(one.train):2 * len(one.train)].reset_index(drop=True).equals(one.train)


def test_same_inputs_same_output(chat_rows):
    a, b = kto(chat_rows, strategy="natural"), kto(chat_rows, strategy="natural")
    assert a.train.equals(b.train) and a.report == b.report


def test_failure_mode_on_a_label_sorted_file(tmp_path):
    rows = frame([(3, 1)] * 100).sample(frac=1, random_state=0).sort_values("label", ascending=False)
    path = tmp_path / "sorted.jsonl"
    rows.to_json(path, orient="records", lines=True)
    rows = load_rows(str(path))
    audit = {s: kto(rows, strategy=s, batch_size=2, eval_fraction=0.1).report for s in ("file_order", "natural",
                                                                                        "mixed")}
    assert audit["file_order"]["single_label_batches"] >= 0.95 * audit["file_order"]["batches"]
    assert 0 < audit["natural"]["single_label_batches"] < audit["natural"]["batches"]
    assert audit["mixed"]["single_label_batches"] == 0


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped data file")
def test_failure_mode_on_the_shipped_data():
    rows = load_rows(str(SHIPPED))
    natural = kto(rows, strategy="natural", batch_size=2, eval_fraction=0.1).report
    mixed = kto(rows, strategy="mixed", batch_size=2, eval_fraction=0.1).report
    assert natural["single_label_batches"] > 0 and mixed["single_label_batches"] == 0


def test_weights_auto_and_explicit():
    rows = frame([(3, 1)] * 50)
    r = kto(rows, strategy="natural").report
    assert r["desirable_weight"] == 1.0 and 1 <= r["desirable"] / (r["undesirable_weight"] * r["undesirable"]) <= 4 / 3
    r = kto(rows, strategy="balanced").report  # trained counts are equal
    assert (r["desirable_weight"], r["undesirable_weight"]) == (1.0, 1.0)
    r = kto(rows, strategy="natural", weights=(0.5, 2)).report
    assert (r["desirable_weight"], r["undesirable_weight"], r["weights"]) == (0.5, 2.0, "explicit")


def test_report_arithmetic_paired_all():
    r = dpo(frame([(3, 2)] * 10 + [(2, 0)] * 5), pairing="all", eval_fraction=0.25).report
    assert r["pairs"] == r["desirable"] == r["undesirable"]
    assert r["desirable"] + r["undesirable"] == r["examples_used"] + r["repeated_examples"]
    assert r["examples_used"] + r["unpaired_rows"] == r["train_rows"] and r["unpaired_rows"] >= 8


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)).filter(lambda t: sum(t) > 0), min_size=4,
                max_size=25), st.sampled_from(sorted(STRATEGIES)), st.integers(2, 16), st.integers(1, 4),
       st.integers(1, 3), st.integers(0, 1000))
def test_report_counts_add_up(per_prompt, strategy, batch_size, world_size, epochs, seed):
    per_prompt = [(2, 1)] * 3 + per_prompt  # prompts with both labels for both sides of the split
    p = kto(frame(per_prompt), strategy=strategy, batch_size=batch_size, world_size=world_size, epochs=epochs,
            seed=seed, eval_fraction=0.3)
    r = p.report
    epoch = r["desirable"] + r["undesirable"]
    assert len(p.train) == epochs * epoch and epoch % (batch_size * world_size) == 0
    assert epoch == r["examples_used"] + r["repeated_examples"]
    assert r["examples_used"] + r["examples_discarded"] == r["train_rows"]
    assert r["train_rows"] + r["eval_rows"] == r["rows"] == sum(map(sum, per_prompt))
    assert r["batches"] == len(p.train) // batch_size
    assert p.train["label"].iloc[:epoch].sum() == r["desirable"]
    assert not set(p.train["prompt"]) & set(p.eval_rows["prompt"])
    if strategy == "mixed":
        assert r["single_label_batches"] == 0
    if strategy != "balanced":
        assert r["examples_discarded"] == 0


# --- errors -----------------------------------------------------------------------------------------------

def error(call, rows, **kw) -> UserError:
    with pytest.raises(UserError) as e:
        call(rows, **kw)
    assert e.value.file == "f.jsonl"
    return e.value


def test_option_errors():
    rows = frame([(2, 1)] * 10)
    e = error(kto, rows, strategy="mixd")
    assert e.field == "data.strategy" and "did you mean 'mixed'?" in e.message
    e = error(dpo, rows, strategy="mixed")
    assert e.field == "data.strategy" and "use one of: file_order, natural" in e.message
    e = error(dpo, rows, pairing="one2one")
    assert e.field == "data.pairing" and "did you mean 'one_to_one'?" in e.message
    assert error(dpo, rows, max_pairs_per_prompt=0).field == "data.max_pairs_per_prompt"
    for w in ((1, 0), (1,), "sometimes", (1, float("nan")), (True, 1)):
        e = error(kto, rows, weights=w)
        assert e.field == "data.weights" and "two positive numbers" in e.message
    assert error(kto, rows, batch_size=0).field == "train.per_device_train_batch_size"
    assert error(kto, rows, batch_size=1).field == "train.per_device_train_batch_size"  # mixed needs 2
    assert error(kto, rows, seed=-1).field == "seed"
    assert error(kto, rows, eval_fraction=1.0).field == "data.eval_fraction"
    with pytest.raises(ValueError):
        kto(rows, form="pairs")


def test_data_errors():
    e = error(kto, frame([(3, 0)] * 5))
    assert e.field == "label" and "every row is desirable" in e.message
    e = error(dpo, frame([(3, 0)] * 5 + [(0, 2)] * 5))
    assert e.field == "label" and "no pair can be formed" in e.message
    e = error(dpo, frame([(1, 1)] + [(3, 0)] * 5 + [(0, 2)] * 5))  # the only pairable prompt is held out
    assert e.field == "data.eval_fraction" and "no training pair" in e.message
    e = error(kto, pd.DataFrame(columns=["prompt", "completion", "label"]))
    assert e.field == "data.path" and "no rows" in e.message
    e = error(kto, pd.DataFrame({"prompt": ["a", "a"], "completion": ["x", "y"], "label": ["yes", "perhaps"]}))
    assert e.field == "row 2: label"


def test_one_rated_completion_per_prompt_trains_kto_and_sft_with_the_pair_metrics_left_unmeasured():
    """KTO's own data, a thumbs up or down per prompt: refused before ('held-out split has no prompt with both
    labels'); now prepared, with both labels held out for reward_auc and the data report saying why
    preference_accuracy and reward_margin will be NaN. Pair methods still refuse it, in one line."""
    rows = frame([(1, 0)] * 15 + [(0, 1)] * 5)  # 20 prompts, 3:1
    sft = lambda r, **kw: prepare(r, **{"file": "f.jsonl", "method": "sft", "form": "desirable",
                                        "strategy": "natural", "eval_fraction": 0.2, "seed": 0, **kw})
    for p in (kto(rows), sft(rows), kto(rows, validation_fraction=0.2)):
        assert p.report["eval_pairs"] == 0 and len(p.eval_pairs) == 0
        assert p.eval_rows["label"].any() and not p.eval_rows["label"].all()  # reward_auc can be measured
        note = p.report["pair_metrics_note"]
        assert note.startswith("preference_accuracy and reward_margin are not measured (NaN): no held-out pair, as no "
                               "prompt there has both a desirable and an undesirable completion") and "\n" not in note
        assert "pair_metrics_note" in format_report(p.report)
    assert kto(frame([(1, 1)] * 20)).report["pair_metrics_note"] is None
    for method in ("dpo", "orpo", "ipo", "simpo"):
        e = error(dpo, rows, method=method)
        assert e.field == "label" and f"no pair can be formed for {method}" in e.message
    # pairs of one text (a completion labelled both ways) are no pairs either: the note says which it is
    same = pd.DataFrame([row for i in range(5) for row in (
        {"prompt": f"a{i}", "completion": "x", "label": True}, {"prompt": f"a{i}", "completion": "x", "label": False},
        {"prompt": f"b{i}", "completion": "y", "label": True}, {"prompt": f"c{i}", "completion": "z", "label": False})])
    p = kto(same, eval_fraction=0.5)
    assert p.report["eval_pairs"] == 0 and "one completion under both labels" in p.report["pair_metrics_note"]


def test_format_report(chat_rows):
    text = format_report(kto(chat_rows).report)
    for key in ("eval_fingerprint", "single_label_batches", "kl_same_prompt_pairs", "desirable_weight", "mixed"):
        assert key in text
    paired = format_report(dpo(chat_rows).report)
    assert "pairs" in paired and "n/a" in paired  # KTO-only fields say they do not apply
    assert all(line == line.rstrip() for line in text.splitlines())


@pytest.mark.parametrize("form, method", [("unpaired", "kto"), ("paired", "dpo"), ("desirable", "sft")])
def test_folds_score_every_row_once_and_never_train_or_validate_on_the_fold(chat_rows, form, method):
    """Cross-fitting: the k held-out folds are a partition of the rows; a row of fold f's prompts is never
    in fold f's training rows (any form) nor its validation split."""
    k, seen = 3, []
    for fold in range(k):
        p = prepare(chat_rows, file="f.jsonl", method=method, form=form, strategy="natural", seed=0, folds=k,
                    fold=fold, validation_fraction=0.1)
        held = set(p.eval_rows["prompt_key"])
        trained = set(p.train["prompt"].map(lambda m: json.dumps(m, sort_keys=True)))
        assert not trained & set(p.eval_rows["prompt"].map(lambda m: json.dumps(m, sort_keys=True)))
        assert not held & set(p.validation_rows["prompt_key"]) and len(p.validation_rows)
        assert p.report["fold"] == fold and p.report["folds"] == k and p.report["eval_fraction"] is None
        seen.append(p.eval_rows["row_id"].to_numpy())
    assert sorted(np.concatenate(seen).tolist()) == list(range(len(chat_rows)))
    assert "partition" in format_report(p.report) and p.report["partition"]


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_a_completion_labelled_both_ways_never_pairs_with_itself(pairing):
    # a paired file's chain A > B, B > C unpairs to B desirable and undesirable: (B, B) is a pair no model wins
    out = []
    for i in range(30):
        out += [{"prompt": f"p{i}", "completion": c, "label": lab}
                for c, lab in (("A", True), ("B", False), ("B", True), ("C", False))]
    p = dpo(pd.DataFrame(out), pairing=pairing, validation_fraction=0.2)
    for pairs in (p.train, p.eval_pairs, p.validation_pairs):
        assert len(pairs) and (pairs["chosen"] != pairs["rejected"]).all()
    assert p.report["same_text_pairs_dropped"] > 0 and p.report["pairs"] == len(p.train)


@pytest.mark.parametrize("folds", [1, 5])
def test_prompts_asking_one_question_stay_on_one_side_of_every_split(folds):
    """ "p3" and " P3 " are one question: training on one and testing on the other would test recall."""
    rows = frame([(2, 1)] * 40)
    twins = rows.assign(prompt=" " + rows["prompt"].str.upper() + " ", completion=rows["completion"] + " again")
    rows = pd.concat([rows, twins], ignore_index=True)
    for seed in range(6):
        p = kto(rows, seed=seed, validation_fraction=0.2, folds=folds, fold=seed % folds)
        sides = [set(part["prompt"].str.strip().str.lower()) for part in (p.train, p.eval_rows, p.validation_rows)]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        assert p.report["same_question_prompts"] == 80 and p.report["prompts"] == 80
        assert p.report["eval_prompts"] == p.eval_rows["prompt"].nunique()
