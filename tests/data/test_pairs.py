"""Pairing for DPO/ORPO: one_to_one, all, the per-prompt cap, ordering; by hand and as properties."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from prefopt.data.pairs import check_max_pairs, make_pairs, order_pairs
from prefopt.errors import UserError


def rows(per_prompt, seed=0):
    """groups and labels from [(n_desirable, n_undesirable), ...], rows shuffled."""
    groups, labels = [], []
    for g, (d, u) in enumerate(per_prompt):
        groups += [g] * (d + u)
        labels += [True] * d + [False] * u
    perm = np.random.default_rng(seed).permutation(len(groups))
    return np.array(groups)[perm], np.array(labels, dtype=bool)[perm]


def pairs(groups, labels, seed=0, **kw):
    return make_pairs(groups, labels, rng=np.random.default_rng(seed), **kw)


def per_prompt_counts(groups, chosen):
    return Counter(groups[chosen].tolist())


def test_one_to_one_by_hand():
    groups, labels = rows([(3, 1), (2, 2), (0, 4), (1, 0)])
    chosen, rejected = pairs(groups, labels)
    assert per_prompt_counts(groups, chosen) == {0: 1, 1: 2}
    assert labels[chosen].all() and not labels[rejected].any()
    assert (groups[chosen] == groups[rejected]).all()
    assert len(set(chosen.tolist()) | set(rejected.tolist())) == 2 * len(chosen)  # each row at most once
    assert chosen.tolist() == sorted(chosen.tolist())  # file order of the chosen row


def test_one_to_one_choice_is_seeded():
    groups, labels = rows([(5, 2)] * 10)
    a, b = pairs(groups, labels, seed=1), pairs(groups, labels, seed=1)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any(pairs(groups, labels, seed=s)[0].tolist() != a[0].tolist() for s in range(2, 6))


def test_all_pairs_every_combination():
    groups, labels = rows([(3, 2), (1, 1), (2, 0)])
    chosen, rejected = pairs(groups, labels, pairing="all")
    combos = set(zip(chosen.tolist(), rejected.tolist()))
    want = {(c, r) for c in range(len(groups)) for r in range(len(groups))
            if labels[c] and not labels[r] and groups[c] == groups[r]}
    assert combos == want and len(chosen) == 3 * 2 + 1


def test_cap_per_prompt():
    groups, labels = rows([(4, 3), (1, 1), (5, 5)])
    chosen, _ = pairs(groups, labels, pairing="all", max_pairs_per_prompt=4)
    assert per_prompt_counts(groups, chosen) == {0: 4, 1: 1, 2: 4}
    chosen, _ = pairs(groups, labels, pairing="one_to_one", max_pairs_per_prompt=2)
    assert per_prompt_counts(groups, chosen) == {0: 2, 1: 1, 2: 2}


def test_order_pairs():
    assert [o.tolist() for o in order_pairs(4, "file_order", epochs=2, seed=0)] == [[0, 1, 2, 3]] * 2
    a, b = order_pairs(50, "natural", epochs=2, seed=0)
    assert sorted(a) == sorted(b) == list(range(50)) and a.tolist() != b.tolist()


@pytest.mark.parametrize("value", [0, -1, 1.5, "3", True])
def test_bad_cap(value):
    with pytest.raises(UserError) as e:
        check_max_pairs(value, "f.jsonl")
    assert e.value.field == "data.max_pairs_per_prompt" and "at least 1" in e.value.message


def test_empty_input():
    chosen, rejected = pairs(np.array([], int), np.array([], bool))
    assert len(chosen) == len(rejected) == 0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=30),
       st.sampled_from(["one_to_one", "all"]), st.one_of(st.none(), st.integers(1, 5)), st.integers(0, 999))
def test_pairing_properties(per_prompt, pairing, cap, seed):
    groups, labels = rows(per_prompt, seed)
    chosen, rejected = pairs(groups, labels, seed=seed, pairing=pairing, max_pairs_per_prompt=cap)
    assert labels[chosen].all() and not labels[rejected].any() and (groups[chosen] == groups[rejected]).all()
    assert len(set(zip(chosen.tolist(), rejected.tolist()))) == len(chosen)  # no pair twice
    for g, (d, u) in enumerate(per_prompt):
        available = min(d, u) if pairing == "one_to_one" else d * u
        assert per_prompt_counts(groups, chosen)[g] == min(available, cap or available)
    if pairing == "one_to_one":
        used = np.r_[chosen, rejected]
        assert len(np.unique(used)) == len(used)


@pytest.mark.parametrize("pairing", ["one_to_one", "all"])
def test_a_paired_files_pairs_are_trained_and_scored_as_stated(tmp_path, pairing):
    """prompt, chosen, rejected rows: DPO trains on exactly those pairs (two per prompt, and a chain A > B,
    B > C, whose middle completion is both chosen and rejected), never on a chosen row re-paired with another
    pair's rejected row, and none is dropped as a self-pair."""
    import json

    from prefopt.data import prepare
    from prefopt.data.io import load_rows

    stated = set()
    rows = []
    for i in range(24):
        pairs = [(f"A{i}", f"B{i}"), (f"C{i}", f"D{i}")] if i % 2 else [(f"A{i}", f"B{i}"), (f"B{i}", f"C{i}")]
        for c, r in pairs:
            rows.append({"prompt": f"q{i}", "chosen": c, "rejected": r})
            stated.add((f"q{i}", c, r))
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepared = prepare(load_rows(str(path)), file=str(path), method="dpo", form="paired", strategy="natural",
                       eval_fraction=0.2, validation_fraction=0.1, split_seed=42, seed=42, batch_size=2,
                       pairing=pairing)
    for frame in (prepared.train, prepared.eval_pairs, prepared.validation_pairs):
        got = set(map(tuple, frame[["prompt", "chosen", "rejected"]].to_numpy()))
        assert got <= stated and len(got) == len(frame)
    every = len(prepared.train) + len(prepared.eval_pairs) + len(prepared.validation_pairs)
    assert every == len(rows)
    assert prepared.report["pairing"] == "as stated in the file" and prepared.report["same_text_pairs_dropped"] == 0


def test_pairs_of_one_text_twice_name_the_real_fault(tmp_path):
    import json

    from prefopt.data import prepare
    from prefopt.data.io import load_rows

    path = tmp_path / "same.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"A{i}", "rejected": f"A{i}"}) + "\n"
                            for i in range(30)))
    with pytest.raises(UserError, match="the chosen and the rejected completion are the same text"):
        prepare(load_rows(str(path)), file=str(path), method="dpo", form="paired", strategy="natural",
                eval_fraction=0.1, split_seed=42, seed=42, batch_size=2)
