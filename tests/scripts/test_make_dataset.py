"""scripts/make_dataset.py without the model: prompts, selection to exact counts, the selection-only CLI."""

import collections
import importlib.util
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt.verifiers import instructions

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("make_dataset", ROOT / "scripts" / "make_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


md = _load()


def fake_pool(n_prompts=60, per_prompt=5, p_pass=0.6, seed=0):
    """Labeled rows in the pool's format; each prompt has its own pass probability."""
    rng = random.Random(seed)
    pool = []
    for i in range(n_prompts):
        p = rng.choice([0.0, p_pass, p_pass, 0.9, 1.0])
        prompt = [{"role": "user", "content": f"prompt {i}"}]
        for s in range(per_prompt):
            pool.append({"prompt_id": i, "sample": s, "prompt": prompt,
                         "completion": [{"role": "assistant", "content": f"answer {i}.{s}"}],
                         "constraint": {"id": "title", "kwargs": {}}, "label": rng.random() < p,
                         "truncated": rng.random() < 0.5})
    return pool


def key(r):
    return json.dumps(r["prompt"], sort_keys=True)


def test_selection_hits_the_exact_counts():
    pool = fake_pool()
    rows = md.select_rows(pool, n_rows=100, n_desirable=75, seed=0)
    labels = collections.Counter(r["label"] for r in rows)
    assert len(rows) == 100 and labels[True] == 75 and labels[False] == 25
    assert len({id(r) for r in rows}) == 100  # no completion twice


def test_selection_prefers_pairs_and_multiple_completions():
    pool = fake_pool()
    rows = md.select_rows(pool, n_rows=100, n_desirable=75, seed=0)
    by_prompt = collections.defaultdict(set)
    for r in rows:
        by_prompt[key(r)].add(r["label"])
    sizes = collections.Counter(key(r) for r in rows)
    pool_labels = collections.defaultdict(set)
    for r in pool:
        pool_labels[key(r)].add(r["label"])
    mixed_in_pool = sum(len(v) == 2 for v in pool_labels.values())
    both = sum(len(v) == 2 for v in by_prompt.values())
    assert both == min(mixed_in_pool, 25)  # every undesirable row that can be paired is paired first
    assert sum(n > 1 for n in sizes.values()) >= 0.8 * len(sizes)
    assert max(sizes.values()) <= 4


def test_selection_prefers_finished_completions():
    pool = fake_pool(seed=3)
    rows = md.select_rows(pool, n_rows=40, n_desirable=30, seed=0)
    assert sum(r["truncated"] for r in rows) < sum(r["truncated"] for r in pool) / len(pool) * len(rows)


def test_selection_is_deterministic_and_seeded():
    pool = fake_pool()
    ids = lambda rows: [(r["prompt_id"], r["sample"]) for r in rows]
    assert ids(md.select_rows(pool, 100, 75, seed=1)) == ids(md.select_rows(list(pool), 100, 75, seed=1))
    assert ids(md.select_rows(pool, 100, 75, seed=1)) != ids(md.select_rows(pool, 100, 75, seed=2))


def test_selection_says_when_the_pool_is_too_small():
    pool = fake_pool(n_prompts=10)
    with pytest.raises(ValueError, match="desirable"):
        md.select_rows(pool, n_rows=len(pool) + 1, n_desirable=5)
    with pytest.raises(ValueError, match="between 0"):
        md.select_rows(pool, n_rows=10, n_desirable=11)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.floats(0.05, 0.95), st.integers(0, 10**6),
       st.integers(0, 3), st.data())
def test_selection_exact_counts_whenever_possible(n_prompts, per_prompt, p_pass, seed, sel_seed, data):
    pool = fake_pool(n_prompts, per_prompt, p_pass, seed)
    have = collections.Counter(r["label"] for r in pool)
    n_rows = data.draw(st.integers(0, len(pool)))
    n_des = data.draw(st.integers(max(0, n_rows - have[False]), min(n_rows, have[True])))
    rows = md.select_rows(pool, n_rows, n_des, seed=sel_seed)
    assert len(rows) == n_rows and sum(r["label"] for r in rows) == n_des


def test_prompts_are_distinct_seeded_and_carry_their_constraint():
    a, b = md.make_prompts(200, seed=0), md.make_prompts(200, seed=0)
    assert a == b and a != md.make_prompts(200, seed=1)
    texts = [p["prompt"][0]["content"] for p in a]
    assert len(set(texts)) == 200
    families = collections.Counter(p["constraint"]["id"] for p in a)
    assert set(families) == set(md.FAMILY_WEIGHTS) <= set(instructions.FAMILIES)
    total = sum(md.FAMILY_WEIGHTS.values())
    for fam, n in families.items():
        assert abs(n - 200 * md.FAMILY_WEIGHTS[fam] / total) <= 1
    for p, text in zip(a, texts):
        assert text.endswith(instructions.render(p["constraint"]))
        assert p["prompt"][0]["role"] == "user"


def test_too_many_prompts_is_refused():
    with pytest.raises(ValueError, match="at most 960"):
        md.make_prompts(len(md.TASKS) * len(md.TOPICS) + 1, seed=0)


def refused(args, capsys) -> str:
    """The one line a bad command line ends in, with exit status 2."""
    with pytest.raises(SystemExit) as e:
        md.main([str(a) for a in args])
    err = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("make_dataset: error: "), (e.value.code, err)
    return err[0]


def test_too_many_prompts_is_one_line_exit_2_naming_the_option(tmp_path, capsys):
    # make_prompts' SystemExit(message) exited with status 1, and for --test-prompts named --prompts
    out = tmp_path / "out" / "f.jsonl"
    assert "--prompts: 961: must be at most 960," in refused(["--prompts", 961, "--out", out], capsys)
    line = refused(["--test-prompts", 961, "--exclude", ROOT / "data/feedback.jsonl", "--out", out], capsys)
    assert line.startswith("make_dataset: error: --test-prompts: 961: must be at most ")
    assert not out.parent.exists()


def test_unreadable_input_files_are_one_line_exit_2(tmp_path, capsys):
    # both were a FileNotFoundError traceback
    out = tmp_path / "out" / "f.jsonl"
    assert "--exclude: " in refused(["--test-prompts", 3, "--exclude", tmp_path / "no.jsonl", "--out", out], capsys)
    (tmp_path / "bad.jsonl").write_text("{\n")
    assert "not a JSON-lines file" in refused(["--test-prompts", 3, "--exclude", tmp_path / "bad.jsonl",
                                                    "--out", out], capsys)
    assert "--from-pool: " in refused(["--from-pool", tmp_path / "no.jsonl", "--out", out], capsys)
    pool = _pool_file(tmp_path, fake_pool())
    pool.with_suffix(".meta.json").unlink()
    assert "pool.meta.json: cannot be read" in refused(["--from-pool", pool, "--out", out], capsys)
    assert not out.parent.exists()


def test_an_output_path_that_cannot_be_written_is_refused_before_any_write(tmp_path, capsys):
    # an OSError traceback; for --readme after --out and its .meta.json were written
    pool = _pool_file(tmp_path, fake_pool())
    (tmp_path / "afile").write_text("")
    out = tmp_path / "out" / "f.jsonl"
    common = ["--from-pool", pool, "--rows", 100, "--desirable", 75]
    line = refused([*common, "--out", out, "--readme", tmp_path / "afile" / "README.md"], capsys)
    assert line.startswith(f"make_dataset: error: --readme: {tmp_path / 'afile' / 'README.md'}: ") and "is a file" in line
    assert "--out: " in refused([*common, "--out", tmp_path / "afile" / "sub" / "f.jsonl"], capsys)
    (tmp_path / "folder.jsonl").mkdir()
    assert "is a folder" in refused([*common, "--out", tmp_path / "folder.jsonl"], capsys)
    assert "is a file" in refused(["--test-prompts", 3, "--exclude", ROOT / "data/feedback.jsonl",
                                   "--out", tmp_path / "afile" / "t.jsonl"], capsys)
    assert not out.parent.exists() and (tmp_path / "afile").read_text() == ""
    assert not list((tmp_path / "folder.jsonl").iterdir())


def test_family_counts():
    rows = [{"prompt": [1], "constraint": {"id": "title"}, "label": True},
            {"prompt": [1], "constraint": {"id": "title"}, "label": False},
            {"prompt": [2], "constraint": {"id": "title"}, "label": True},
            {"prompt": [3], "constraint": {"id": "no_commas"}, "label": False}]
    counts = md.family_counts(rows)
    assert counts["title"] == {"desirable": 2, "undesirable": 1, "prompts": 2, "prompts_both_labels": 1,
                               "pass_rate": round(2 / 3, 4)}
    assert md.totals(counts)["prompts_both_labels"] == 1 and md.rows_per_prompt(rows) == {"1": 2, "2": 1}


def _pool_file(tmp_path, pool):
    path = tmp_path / "pool.jsonl"
    path.write_text(md.jsonl(pool))
    gen = {"model": "fake", "dtype": "float32", "samples_per_prompt": 5, "temperature": 0.8, "top_p": 0.95,
           "top_k": 0, "max_new_tokens": 8, "batch_size": 4, "completions": len(pool), "seconds": 1.0,
           "truncated": 0, "machine": "test", "prompts_args": {"prompts": 60, "seed": 0}}
    path.with_suffix(".meta.json").write_text(json.dumps(gen))
    return path


def test_from_pool_relabels_selects_and_writes_reproducibly(tmp_path):
    pool = fake_pool()
    for r in pool:  # real texts: the verifier (not the stored label) decides
        r["completion"][0]["content"] = "<<T>> fine" if r["label"] else "no title"
        r["label"] = not r["label"]  # a wrong stored label must be ignored
    path = _pool_file(tmp_path, pool)
    out = tmp_path / "out" / "feedback.jsonl"
    args = ["--seed", "0", "--out", str(out), "--from-pool", str(path), "--rows", "100", "--desirable", "75"]
    assert md.main(args) == 0
    first = out.read_bytes()
    rows = [json.loads(line) for line in first.decode().splitlines()]
    assert len(rows) == 100 and sum(r["label"] for r in rows) == 75
    assert all(r["label"] == instructions.check(r["constraint"], r["completion"][0]["content"]) for r in rows)
    assert set(rows[0]) == {"prompt", "completion", "label", "constraint"}
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["selection"]["total"]["desirable"] == 75 and meta["pool"]["total"]["desirable"] == sum(
        not r["label"] for r in pool)
    assert "| title |" in (out.parent / "README.md").read_text()
    assert md.main(args) == 0 and out.read_bytes() == first  # same seed: same file
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_a_pool_too_small_for_the_counts_is_one_line_exit_2(tmp_path, capsys):
    # select_rows' ValueError ended the script in a traceback after the whole generation
    out = tmp_path / "out" / "feedback.jsonl"
    args = ["--out", str(out), "--from-pool", str(_pool_file(tmp_path, fake_pool(n_prompts=3))), "--rows", "100",
            "--desirable", "75"]
    assert md.main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("make_dataset: error: --rows 100 --desirable 75: the pool has ") and err[-1].endswith(
        "(sample more prompts or completions)") and not out.parent.exists()


def test_shipped_generation_test_asks_nothing_the_data_asks(tmp_path):
    """data/verified_test.jsonl: 300+ constraint prompts, none sharing a prompt (or even its question) with
    data/feedback.jsonl, and exactly what its recorded command makes."""
    import hashlib
    import json

    root = Path(__file__).resolve().parents[2]
    test = [json.loads(line) for line in (root / "data/verified_test.jsonl").read_text().splitlines()]
    data = [json.loads(line) for line in (root / "data/feedback.jsonl").read_text().splitlines()]
    assert len(test) >= 300 and all(r["constraint"]["id"] in md.FAMILY_WEIGHTS for r in test)
    texts = {r["prompt"][0]["content"] for r in test}
    assert len(texts) == len(test) and not texts & {r["prompt"][0]["content"] for r in data}
    asked = md.questions_in(root / "data/feedback.jsonl")
    assert len(asked) == len({json.dumps(r["prompt"]) for r in data})  # every data prompt's question is found
    assert not any(t.startswith(q + " ") for t in texts for q in asked)
    meta = json.loads((root / "data/verified_test.meta.json").read_text())
    rows, again = md.make_test_set(meta["prompts"], meta["seed"], root / "data/feedback.jsonl")
    assert again["sha256"] == meta["sha256"] == hashlib.sha256((root / "data/verified_test.jsonl").read_bytes()).hexdigest()


def test_input_rows_without_the_keys_read_are_one_line_exit_2(tmp_path, capsys):
    # valid JSON of the wrong shape (no "prompt", a row that is not an object, a .meta.json without the
    # generation settings) was a KeyError or TypeError traceback
    out = tmp_path / "out" / "f.jsonl"
    (tmp_path / "noprompt.jsonl").write_text('{"prompt": "What is x? Answer."}\n\n{"text": "hi"}\n')
    line = refused(["--test-prompts", 3, "--exclude", tmp_path / "noprompt.jsonl", "--out", out], capsys)
    assert line.startswith(f"make_dataset: error: --exclude: {tmp_path / 'noprompt.jsonl'}: line 3: no \"prompt\"")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    assert "line 1: not a JSON object" in refused(["--test-prompts", 3, "--exclude", tmp_path / "list.jsonl",
                                                   "--out", out], capsys)
    pool = fake_pool()
    del pool[7]["prompt_id"]
    line = refused(["--from-pool", _pool_file(tmp_path, pool), "--out", out], capsys)
    assert line.startswith(f"make_dataset: error: --from-pool: {tmp_path / 'pool.jsonl'}: line 8: no \"prompt_id\"")
    path = _pool_file(tmp_path, fake_pool())
    path.write_text(path.read_text() + "{\n")
    assert "not a JSON-lines file" in refused(["--from-pool", path, "--out", out], capsys)
    path = _pool_file(tmp_path, fake_pool())
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    del meta["prompts_args"]
    path.with_suffix(".meta.json").write_text(json.dumps(meta))
    line = refused(["--from-pool", path, "--out", out], capsys)
    assert f"--from-pool: {path.with_suffix('.meta.json')}: no \"prompts_args\"" in line
    assert not out.parent.exists()


def test_exclude_reads_every_message_of_a_chat_prompt_and_refuses_other_shapes(tmp_path, capsys):
    # a chat prompt was read by its first message's "content" alone: a system message first hid the question
    # (the test set could then ask it), and a message without "content" was a KeyError traceback
    question = md.TASKS[0].format(t=next(iter(md.TOPICS)))
    (tmp_path / "chat.jsonl").write_text(json.dumps({"prompt": [{"role": "system", "content": "Be brief."},
                                                                {"role": "user", "content": question + " Answer."}]}) + "\n")
    assert md.questions_in(tmp_path / "chat.jsonl") == {question}
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n{"prompt": [{"role": "user"}]}\n')
    out = tmp_path / "out" / "f.jsonl"
    line = refused(["--test-prompts", 3, "--exclude", tmp_path / "bad.jsonl", "--out", out], capsys)
    assert line.startswith(f"make_dataset: error: --exclude: {tmp_path / 'bad.jsonl'}: line 2: prompt: expected"), line
    assert not out.parent.exists()


def test_input_files_that_are_not_utf8_are_one_line_exit_2_naming_the_option(tmp_path, capsys):
    # --exclude's UnicodeDecodeError (a ValueError) was said of --test-prompts, with no fix; --from-pool's, or
    # its .meta.json's, was a traceback
    out = tmp_path / "out" / "f.jsonl"
    (tmp_path / "latin1.jsonl").write_bytes('{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    line = refused(["--test-prompts", 3, "--exclude", tmp_path / "latin1.jsonl", "--out", out], capsys)
    assert line.startswith(f"make_dataset: error: --exclude: {tmp_path / 'latin1.jsonl'}: is not UTF-8") and "save it as UTF-8" in line
    path = _pool_file(tmp_path, fake_pool())
    path.write_bytes(path.read_bytes() + b"\xff\n")
    assert f"--from-pool: {path}: is not UTF-8" in refused(["--from-pool", path, "--out", out], capsys)
    path = _pool_file(tmp_path, fake_pool())
    path.with_suffix(".meta.json").write_bytes(b"\xff{}")
    assert f"--from-pool: {path.with_suffix('.meta.json')}: is not UTF-8" in refused(["--from-pool", path, "--out", out],
                                                                                     capsys)
    assert not out.parent.exists()
