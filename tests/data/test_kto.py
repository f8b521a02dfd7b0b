"""KTO orderings, auto weights and the batch audit: unit cases, the failure mode, and properties."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from prefopt.data import kto
from prefopt.errors import UserError

STRATEGIES = {"file_order": kto.file_order, "natural": kto.natural, "balanced": kto.balanced,
              "mixed": kto.mixed}


def rows(n_desirable, n_undesirable, prompts=None, seed=0):
    """labels and prompt groups; label-sorted (desirable first) like an exported, sorted file."""
    labels = np.r_[np.ones(n_desirable, bool), np.zeros(n_undesirable, bool)]
    n = len(labels)
    groups = np.random.default_rng(seed).integers(prompts, size=n) if prompts else np.arange(n)
    return labels, groups


def order(name, labels, groups, batch_size=4, world_size=1, epochs=1, seed=0):
    return STRATEGIES[name](labels, groups, batch_size=batch_size, world_size=world_size, epochs=epochs,
                            seed=seed, file="f.jsonl")


def blocks(labels, order_, batch_size):
    return labels[np.concatenate(order_)].reshape(-1, batch_size)


# --- the failure mode the audit exists for ----------------------------------------------------------------

def test_label_sorted_file_file_order_vs_natural_vs_mixed():
    labels, groups = rows(300, 100, prompts=100)
    audits = {name: kto.audit(labels[o], groups[o], 2) for name in ("file_order", "natural", "mixed")
              for o in [np.concatenate(order(name, labels, groups, batch_size=2))]}
    assert audits["file_order"]["single_label_batches"] == audits["file_order"]["batches"] == 200  # all of them
    assert 0 < audits["natural"]["single_label_batches"] < audits["natural"]["batches"]
    assert audits["mixed"]["single_label_batches"] == 0


# --- each strategy ----------------------------------------------------------------------------------------

def test_file_order_is_the_file_padded_from_its_start():
    labels, groups = rows(5, 4)
    (o,) = order("file_order", labels, groups, batch_size=4)
    assert o.tolist() == list(range(9)) + [0, 1, 2]


def test_natural_is_seeded_and_reshuffled_per_epoch():
    labels, groups = rows(20, 12)
    a = order("natural", labels, groups, epochs=2, seed=5)
    assert [x.tolist() for x in a] == [x.tolist() for x in order("natural", labels, groups, epochs=2, seed=5)]
    assert a[0].tolist() != a[1].tolist() and sorted(a[0]) == sorted(a[1]) == list(range(32))
    assert a[0].tolist() != order("natural", labels, groups, seed=6)[0].tolist()


def test_balanced_keeps_all_minority_and_a_fixed_majority_sample():
    labels, groups = rows(30, 10)
    epochs = order("balanced", labels, groups, epochs=3, seed=1)
    for o in epochs:
        assert len(o) == 20 and labels[o].sum() == 10
        assert set(np.flatnonzero(~labels)) <= set(o)  # every minority row
    assert len({tuple(sorted(o)) for o in epochs}) == 1  # same subset every epoch, new order
    assert len({tuple(o) for o in epochs}) == 3


@pytest.mark.parametrize("batch_size, world_size", [(4, 1), (3, 1), (2, 2), (5, 1)])
def test_balanced_fills_the_last_block_with_both_labels_equally(batch_size, world_size):
    # 11 minority rows: 22 does not fill blocks of 4, 3 or 5; the filler must not tip the subset off 1:1
    labels, groups = rows(30, 11)
    for o in order("balanced", labels, groups, batch_size=batch_size, world_size=world_size, epochs=2, seed=3):
        assert len(o) % (batch_size * world_size) == 0
        assert 2 * labels[o].sum() == len(o)  # exactly 1:1, filler included
        assert len(o) - len(set(o.tolist())) < 2 * batch_size * world_size


def test_mixed_reuses_minority_rows_evenly_when_blocks_outnumber_them():
    labels, groups = rows(30, 3)
    (o,) = order("mixed", labels, groups, batch_size=2)
    b = labels[o].reshape(-1, 2)
    assert len(b) == 30 and (b.sum(axis=1) == 1).all()
    uses = np.bincount(o[~labels[o]], minlength=33)[30:]
    assert uses.tolist() == [10, 10, 10]  # spread over the minority rows, none favoured


def test_mixed_keeps_same_prompt_out_of_kl_pairs():
    labels, groups = rows(90, 30, prompts=30)  # 4 completions per prompt on average: clashes are likely
    natural = np.concatenate(order("natural", labels, groups, batch_size=4, epochs=3))
    mixed = np.concatenate(order("mixed", labels, groups, batch_size=4, epochs=3))
    assert kto.audit(labels[natural], groups[natural], 4)["kl_same_prompt_pairs"] > 0
    assert kto.audit(labels[mixed], groups[mixed], 4)["kl_same_prompt_pairs"] == 0


@pytest.mark.parametrize("prompts,batch_size", [(3, 4), (4, 8), (2, 2), (5, 16)])
def test_mixed_with_few_prompts_reorders_inside_blocks(prompts, batch_size):
    # Few prompts: clashes cannot be fixed by swaps between blocks alone, only by reordering inside them.
    labels, groups = rows(150, 50, prompts=prompts, seed=prompts)
    (o,) = order("mixed", labels, groups, batch_size=batch_size)
    (n,) = order("natural", labels, groups, batch_size=batch_size)
    mixed_audit, natural_audit = kto.audit(labels[o], groups[o], batch_size), kto.audit(labels[n], groups[n], batch_size)
    assert mixed_audit["single_label_batches"] == 0
    assert mixed_audit["kl_same_prompt_pairs"] < natural_audit["kl_same_prompt_pairs"] / 2
    if prompts > 2:
        assert mixed_audit["kl_same_prompt_pairs"] == 0


def test_mixed_with_one_prompt_only_still_mixes_and_terminates():
    labels, _ = rows(12, 4)
    groups = np.zeros(16, int)  # every pair is unavoidably same-prompt
    (o,) = order("mixed", labels, groups, batch_size=4)
    assert (labels[o].reshape(-1, 4).sum(axis=1) == 3).all()


def test_mixed_refuses_batch_of_one():
    labels, groups = rows(3, 3)
    with pytest.raises(UserError) as e:
        order("mixed", labels, groups, batch_size=1)
    assert e.value.field == "train.per_device_train_batch_size" and "set it to 2 or more" in e.value.message


def test_mixed_layout_counts():
    slots = kto.mixed_layout(75, 25, 4, 1).reshape(-1, 4)
    assert slots.shape == (25, 4) and (slots.sum(axis=1) == 3).all()
    slots = kto.mixed_layout(10, 10, 4, 2).reshape(-1, 4)  # 20 rows -> 6 blocks (a multiple of 2 processes)
    assert slots.shape == (6, 4) and slots.sum() == 12 and set(slots.sum(axis=1)) == {2}


# --- weights ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d,u,want", [(10, 10, (1.0, 1.0)), (12, 10, (1.0, 1.0)), (746, 254, (1.0, 2.2028)),
                                      (254, 746, (2.9371, 1.0)), (3, 1, (1.0, 2.2501))])
def test_auto_weights_examples(d, u, want):
    assert kto.auto_weights(d, u) == pytest.approx(want)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_auto_weights_rule(d, u):
    wd, wu = kto.auto_weights(d, u)
    assert 1 <= wd * d / (wu * u) <= 4 / 3
    assert max(wd, wu) >= 1.0 and min(wd, wu) == 1.0
    if d >= u:
        assert wd == 1.0  # the majority keeps 1.0
    if u >= d:
        assert wu == 1.0


# --- audit ------------------------------------------------------------------------------------------------

def test_audit_counts_by_hand():
    labels = np.array([1, 1, 0, 0, 1, 0, 0, 1], bool)
    groups = np.array([7, 7, 1, 2, 3, 3, 3, 4])
    a = kto.audit(labels, groups, 2)
    # blocks (7,7) (1,2) (3,3) (3,4): the first and third pair a prompt with itself both ways
    assert a == {"batches": 4, "single_label_batches": 2, "kl_same_prompt_pairs": 4}
    a = kto.audit(labels, groups, 3)  # [7,7,1] [2,3,3] [3,4]: row 1 <- row 0, row 2 of block 2 <- row 1
    assert a == {"batches": 3, "single_label_batches": 0, "kl_same_prompt_pairs": 2}


# --- properties -------------------------------------------------------------------------------------------

case = dict(n_desirable=st.integers(0, 70), n_undesirable=st.integers(0, 70), prompts=st.integers(1, 25),
            batch_size=st.integers(2, 16), world_size=st.integers(1, 4), epochs=st.integers(1, 3),
            seed=st.integers(0, 2**16))


def _labels(n_desirable, n_undesirable, prompts, seed):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.r_[np.ones(n_desirable, bool), np.zeros(n_undesirable, bool)])
    return labels, rng.integers(prompts, size=len(labels))


@settings(max_examples=150, deadline=None)
@given(**case)
def test_mixed_properties(n_desirable, n_undesirable, prompts, batch_size, world_size, epochs, seed):
    if not n_desirable or not n_undesirable:
        n_desirable, n_undesirable = n_desirable + 1, n_undesirable + 1
    labels, groups = _labels(n_desirable, n_undesirable, prompts, seed)
    n = len(labels)
    epochs_ = order("mixed", labels, groups, batch_size, world_size, epochs, seed)
    assert len(epochs_) == epochs and len({len(o) for o in epochs_}) == 1
    ideal = batch_size * n_desirable / n
    for o in epochs_:
        assert len(o) % (batch_size * world_size) == 0 and len(o) >= n
        assert set(o.tolist()) == set(range(n))  # every row in every epoch: none lost
        per_block = labels[o].reshape(-1, batch_size).sum(axis=1)
        assert ((per_block > 0) & (per_block < batch_size)).all()  # never a single-label block
        assert (np.abs(per_block - ideal) <= 1).all()  # within one row of the global ratio
        assert per_block.sum() == labels[o].sum()  # counts add up
        # repeats only where needed: world_size fewer blocks could not hold every row once, or not with
        # one row of each label per block
        blocks_ = len(o) // batch_size
        assert blocks_ % world_size == 0  # round-robin over processes gives each the same number of blocks
        fewer = blocks_ - world_size
        assert fewer * batch_size < n or fewer * (batch_size - 1) < max(n_desirable, n_undesirable)
    again = order("mixed", labels, groups, batch_size, world_size, epochs, seed)
    assert all((a == b).all() for a, b in zip(epochs_, again))  # seeded


@settings(max_examples=100, deadline=None)
@given(strategy=st.sampled_from(["file_order", "natural", "balanced"]), **case)
def test_other_strategies_properties(strategy, n_desirable, n_undesirable, prompts, batch_size, world_size, epochs,
                                     seed):
    if not n_desirable or not n_undesirable:
        n_desirable, n_undesirable = n_desirable + 1, n_undesirable + 1
    labels, groups = _labels(n_desirable, n_undesirable, prompts, seed)
    unit = batch_size * world_size
    for o in order(strategy, labels, groups, batch_size, world_size, epochs, seed):
        used = set(o.tolist())
        assert len(o) % unit == 0
        if strategy == "balanced":  # filler of both labels equally: up to one more block when unit is odd
            minority = min(n_desirable, n_undesirable)
            assert len(used) == 2 * minority and labels[list(used)].sum() == minority
            assert 2 * labels[o].sum() == len(o) and len(o) - len(used) < 2 * unit
        else:
            assert len(o) - len(used) < unit  # padding only, less than one round
            assert used == set(range(len(labels)))
