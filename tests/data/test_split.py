"""The held-out split: by prompt, seeded, stratified, order-independent, fingerprinted, and its errors."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from prefopt.data.split import check_labels, group_codes, question_groups, split_by_prompt
from prefopt.errors import UserError


def table(per_prompt):
    """Rows from [(n_desirable, n_undesirable), ...] per prompt, prompt i keyed 'p{i}'."""
    keys, labels = [], []
    for i, (d, u) in enumerate(per_prompt):
        keys += [f"p{i}"] * (d + u)
        labels += [True] * d + [False] * u
    return pd.Series(keys), np.array(labels, dtype=bool)


def split(keys, labels, fraction=0.25, seed=0):
    codes, uniq = group_codes(keys)
    return split_by_prompt(codes, uniq, labels, eval_fraction=fraction, seed=seed, file="f.jsonl")


def test_no_prompt_on_both_sides_and_all_rows_accounted():
    keys, labels = table([(2, 1)] * 30 + [(3, 0)] * 10)
    s = split(keys, labels)
    train, held = set(keys[s.train]), set(keys[s.held_out])
    assert not train & held
    assert sorted(np.r_[s.train, s.held_out].tolist()) == list(range(len(keys)))
    assert list(s.train) == sorted(s.train) and list(s.held_out) == sorted(s.held_out)  # file order kept
    assert s.held_out_prompts == len(held) == 8 + 3  # 25% of 30 (7.5 -> 8) both-label + 25% of 10 (2.5 -> 3)


def test_fingerprint_is_sha256_of_sorted_held_out_keys():
    keys, labels = table([(1, 1)] * 20)
    s = split(keys, labels)
    held = sorted(set(keys[s.held_out]))
    assert s.fingerprint == hashlib.sha256(json.dumps(held).encode()).hexdigest()


def test_seeded_deterministic_and_seed_matters():
    keys, labels = table([(1, 1)] * 50)
    assert split(keys, labels, seed=3).fingerprint == split(keys, labels, seed=3).fingerprint
    assert len({split(keys, labels, seed=s).fingerprint for s in range(5)}) == 5


def test_row_order_does_not_move_prompts():
    keys, labels = table([(2, 1)] * 20 + [(0, 2)] * 8)
    perm = np.random.default_rng(1).permutation(len(keys))
    a, b = split(keys, labels), split(keys[perm].reset_index(drop=True), labels[perm])
    assert a.fingerprint == b.fingerprint
    assert set(keys[a.held_out]) == set(keys[perm].reset_index(drop=True)[b.held_out])


def test_held_out_always_gets_a_prompt_with_both_labels():
    # 2 of 102 prompts carry both labels: an unstratified 10% draw would miss both most of the time.
    keys, labels = table([(1, 1)] * 2 + [(2, 0)] * 60 + [(0, 2)] * 40)
    for seed in range(20):
        s = split(keys, labels, fraction=0.1, seed=seed)
        held = set(keys[s.held_out])
        assert {"p0", "p1"} & held and {"p0", "p1"} - held  # one held out, one kept for training pairs


def test_single_both_label_prompt_goes_to_held_out():
    keys, labels = table([(1, 1)] + [(2, 0)] * 5 + [(0, 2)] * 5)
    assert "p0" in set(keys[split(keys, labels, fraction=0.2).held_out])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), "0.1", True, None])
def test_eval_fraction_bounds(fraction):
    keys, labels = table([(1, 1)] * 10)
    with pytest.raises(UserError) as e:
        split(keys, labels, fraction=fraction)
    assert (e.value.file, e.value.field) == ("f.jsonl", "data.eval_fraction")
    assert "between 0 and 1" in e.value.message


def test_one_prompt_cannot_be_split():
    keys, labels = table([(3, 3)])
    with pytest.raises(UserError) as e:
        split(keys, labels)
    assert e.value.field == "data.eval_fraction" and "cannot be split" in e.value.message


def test_check_labels_errors():
    with pytest.raises(UserError) as e:
        check_labels(np.ones(5, bool), 0, file="f", form="unpaired", method="kto")
    assert e.value.field == "label" and "every row is desirable" in e.value.message and "add undesirable" in e.value.message
    with pytest.raises(UserError) as e:
        check_labels(np.array([True, False]), 0, file="f", form="paired", method="dpo")
    assert e.value.field == "label" and "no pair can be formed for dpo" in e.value.message
    # one rated completion per prompt is what KTO is for, and SFT takes the desirable rows: only the pair
    # metrics go unmeasured (they were refused here, for want of held-out pairs)
    check_labels(np.array([True, False]), 0, file="f", form="unpaired", method="kto")
    check_labels(np.array([True, False]), 0, file="f", form="desirable", method="sft")
    check_labels(np.array([True, False]), 1, file="f", form="paired", method="dpo")  # fine
    # the SFT baseline trains on desirable rows only; the reason it gives was KTO's and DPO's
    with pytest.raises(UserError) as e:
        check_labels(np.ones(5, bool), 0, file="f", form="desirable", method="sft")
    assert "sft needs both labels (it trains on desirable rows, but every method is scored" in e.value.message


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)).filter(lambda t: sum(t) > 0), min_size=3,
                max_size=40), st.floats(0.05, 0.6), st.integers(0, 2**16))
def test_split_properties(per_prompt, fraction, seed):
    per_prompt = [(1, 1)] * 2 + per_prompt  # at least two prompts with both labels
    keys, labels = table(per_prompt)
    s = split(keys, labels, fraction, seed)
    held = set(keys[s.held_out])
    assert not held & set(keys[s.train]) and len(s.train) + len(s.held_out) == len(keys)
    both = {f"p{i}" for i, (d, u) in enumerate(per_prompt) if d and u}
    assert both & held and both - held
    # stratum sizes follow the fraction
    n_both = len(both)
    assert len(both & held) == min(max(int(np.floor(fraction * n_both + 0.5)), 1), n_both - 1)


def test_validation_split_leaves_the_test_split_alone_and_never_overlaps():
    """The validation prompts come out of the training prompts only: the test split (and its fingerprint)
    is the same with or without one, and no prompt is in two splits."""
    from prefopt.data import prepare
    from prefopt.data.io import load_rows

    rows = load_rows("data/feedback.jsonl")
    kw = dict(file="data/feedback.jsonl", method="kto", form="unpaired", strategy="natural", seed=3, split_seed=42)
    without = prepare(rows, **kw)
    with_val = prepare(rows, validation_fraction=0.1, **kw)
    assert with_val.report["eval_fingerprint"] == without.report["eval_fingerprint"]
    assert with_val.eval_rows["row_id"].tolist() == without.eval_rows["row_id"].tolist()
    test = set(with_val.eval_rows["prompt_key"])
    val = set(with_val.validation_rows["prompt_key"])
    train = set(with_val.train["prompt_key"])
    assert not (test & val) and not (val & train) and not (test & train)
    assert len(val) == with_val.report["validation_prompts"] == round(0.1 * with_val.report["prompts"])
    assert without.report["validation_rows"] == 0 and len(without.validation_rows) == 0
    # the same validation prompts whatever the training seed or method
    other = prepare(rows, **{**kw, "seed": 4, "method": "dpo", "form": "paired"}, validation_fraction=0.1)
    assert other.report["validation_fingerprint"] == with_val.report["validation_fingerprint"]
    assert with_val.report["train_rows"] + with_val.report["validation_rows"] == without.report["train_rows"]


@pytest.mark.parametrize("fraction", [-0.1, 1.0, "x", float("nan")])
def test_validation_fraction_bounds(fraction):
    from prefopt.data import prepare
    from prefopt.data.io import load_rows

    with pytest.raises(UserError) as e:
        prepare(load_rows("data/feedback.jsonl"), file="f.jsonl", method="kto", form="unpaired", strategy="natural",
                validation_fraction=fraction)
    assert e.value.field == "data.validation_fraction"


# ---- cross-fitting folds (data.folds)

def folds_of(keys, labels, k=4, fold=0, seed=0):
    from prefopt.data.split import fold_split

    codes, uniq = group_codes(keys)
    return fold_split(codes, uniq, labels, folds=k, fold=fold, seed=seed, file="f.jsonl")


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_partition_the_prompts_and_each_holds_both_labels(k):
    keys, labels = table([(2, 1)] * 23 + [(3, 0)] * 9 + [(0, 2)] * 4)
    splits = [folds_of(keys, labels, k, f) for f in range(k)]
    held = [set(keys[s.held_out]) for s in splits]
    assert set().union(*held) == set(keys) and sum(map(len, held)) == keys.nunique()  # each prompt in one fold
    for s, h in zip(splits, held):
        assert not set(keys[s.train]) & h  # nothing of the fold's prompts trains its model
        assert sorted(np.r_[s.train, s.held_out].tolist()) == list(range(len(keys)))
        assert labels[s.held_out].any() and not labels[s.held_out].all()
    sizes = sorted(map(len, held))
    assert sizes[-1] - sizes[0] <= 2  # round-robin within each stratum
    assert len({s.partition for s in splits}) == 1 and len({s.fingerprint for s in splits}) == k


def test_fold_partition_is_seeded_order_free_and_differs_by_k():
    keys, labels = table([(2, 1)] * 20 + [(0, 2)] * 8)
    perm = np.random.default_rng(1).permutation(len(keys))
    a = folds_of(keys, labels, 4, 1)
    b = folds_of(keys[perm].reset_index(drop=True), labels[perm], 4, 1)
    assert (a.fingerprint, a.partition) == (b.fingerprint, b.partition)
    assert folds_of(keys, labels, 4, 1, seed=1).partition != a.partition
    assert folds_of(keys, labels, 5, 1).partition != a.partition  # different k: never pooled together


def test_too_few_both_label_prompts_for_the_folds_is_a_user_error():
    keys, labels = table([(1, 1)] * 3 + [(2, 0)] * 10)
    with pytest.raises(UserError, match="data.folds.*3 prompt.*fewer than the 4 folds"):
        folds_of(keys, labels, 4, 0)
    with pytest.raises(UserError, match="data.fold.*0 to 2"):
        folds_of(keys, labels, 3, 3)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 30), st.integers(2, 30), st.floats(0.05, 0.5), st.integers(0, 2**16))
def test_without_a_prompt_of_both_labels_each_label_is_held_out_and_trained_on(n_desirable, n_undesirable,
                                                                                fraction, seed):
    """One rated completion per prompt: reward_auc ranks desirable against undesirable held-out rows, so both
    labels are held out (a plain draw of 10% of 20 prompts, 3:1, held out one label alone half the time) and
    both stay in training, in the test split, the validation split and every fold."""
    from prefopt.data.split import validation_split

    keys, labels = table([(1, 0)] * n_desirable + [(0, 1)] * n_undesirable)
    s = split(keys, labels, fraction, seed)
    for part in (s.held_out, s.train):
        assert labels[part].any() and not labels[part].all()
    assert (labels[s.held_out].sum(), (~labels[s.held_out]).sum()) == tuple(
        min(max(int(np.floor(fraction * n + 0.5)), 1), n - 1) for n in (n_desirable, n_undesirable))
    codes, uniq = group_codes(keys)
    train, valid, _ = validation_split(codes, uniq, labels, s.train, validation_fraction=fraction, seed=seed,
                                       file="f.jsonl")
    assert labels[train].any() and not labels[train].all()
    k = min(n_desirable, n_undesirable, 4)
    if k >= 2:
        for f in range(k):
            held = folds_of(keys, labels, k, f).held_out
            assert labels[held].any() and not labels[held].all()


def test_files_with_a_prompt_of_both_labels_split_as_before_the_unpaired_strata():
    # the label strata apply only where no prompt has both labels: the shipped splits and results stand
    # (the values pinned are those of prefopt before the label strata)
    from prefopt.data.split import validation_split

    keys, labels = table([(2, 1)] * 30 + [(3, 0)] * 10 + [(0, 2)] * 5)
    s = split(keys, labels)
    assert s.fingerprint == "5a8b9280d8c30e1489dd6b46de977cce1774432e13e43b0e2eb01517e4c42ae0"
    assert folds_of(keys, labels, 4, 1).partition == "788783600cfe398c564618f056ec4f78c382c97e8452dcc1a2f8fc379e9cd1af"
    codes, uniq = group_codes(keys)
    assert validation_split(codes, uniq, labels, s.train, validation_fraction=0.2, seed=0, file="f")[2] == \
        "ae8594e89f039e02210af246bba00dbedbc134c02760e9ccfe6b317c2f5c963e"


def test_too_few_prompts_of_a_label_for_the_folds_of_unpaired_data_is_a_user_error():
    keys, labels = table([(1, 0)] * 10 + [(0, 1)] * 3)
    with pytest.raises(UserError, match="data.folds: 3 prompt.*rarer label, fewer than the 4 folds.*reward_auc"):
        folds_of(keys, labels, 4, 0)
    assert len(folds_of(keys, labels, 3, 0).held_out) in (4, 5)


def test_prompts_asking_one_question_form_one_group_keyed_by_the_smallest():
    prompts = pd.Series(["Write a haiku", "write a  haiku ", [{"role": "user", "content": "WRITE A HAIKU"}],
                         "Cafe\u0301 menu", "Caf\u00e9 menu", "other"])
    keys = pd.Series([p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in prompts])
    codes, group_keys = question_groups(*group_codes(keys), prompts)
    assert codes[0] == codes[1] == codes[2] and codes[3] == codes[4] and len(set(codes)) == 3
    assert group_keys[codes[0]] == min(keys[:3]) and group_keys[codes[5]] == "other"


def test_prompts_without_a_user_turn_are_not_one_question():
    # 40 prompts as 'human' (not 'user') messages, or a system message alone, once were one question "" each,
    # and prefopt data said '1 prompt(s) cannot be split into train and held-out ... add prompts'
    prompts = pd.Series([[{"role": "human", "content": "a"}], [{"role": "human", "content": "b"}],
                         [{"role": "system", "content": "c"}], [{"role": "system", "content": "C"}],
                         [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a"}]])
    keys = pd.Series([json.dumps(p, sort_keys=True) for p in prompts])
    codes, _ = question_groups(*group_codes(keys), prompts)
    assert len({codes[0], codes[1], codes[2]}) == 3 and codes[2] == codes[3]  # (case: one question)
    assert codes[4] == codes[0]  # with a user turn, the user turn is the question, as before


def test_where_no_two_prompts_share_a_question_the_split_is_the_prompts_own():
    keys, labels = table([(2, 1)] * 30 + [(3, 0)] * 10)
    codes, group_keys = question_groups(*group_codes(keys), keys)
    s = split_by_prompt(codes, group_keys, labels, eval_fraction=0.25, seed=0, file="f.jsonl")
    plain = split(keys, labels)
    assert (s.train.tolist(), s.held_out.tolist(), s.fingerprint) == (plain.train.tolist(), plain.held_out.tolist(),
                                                                      plain.fingerprint)
