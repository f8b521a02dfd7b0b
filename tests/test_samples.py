"""Per-family pass rates and the side-by-side samples, from generation records."""

from types import SimpleNamespace

import pandas as pd

from prefopt.samples import family_table, pick_prompts, reference_groups, samples_markdown
from prefopt.stats import reference_runs


def gens():
    rows = []
    families = ["a"] * 6 + ["b"] * 3 + ["c"]
    for seed in (1, 42):
        for group, passes in (("x", [1, 1, 1, 0, 0, 0, 1, 0, 0, 1]), ("y", [0] * 10)):
            for i, (fam, ok) in enumerate(zip(families, passes)):
                rows.append({"prompt_id": f"p{i:02d}", "prompt": [{"role": "user", "content": f"q{i}"}],
                             "constraint": {"id": fam, "kwargs": {}}, "family": fam, "group": group, "seed": seed,
                             "policy_text": f"{group} answer {i}", "policy_pass": bool(ok),
                             "reference_text": f"ref {i}", "reference_pass": i % 2 == 0})
    return pd.DataFrame(rows)


def test_family_table_rates():
    lines = family_table(gens())
    x = next(line for line in lines if line.startswith("| x |"))
    assert x == "| x | 0.500 | 0.500 | 0.333 | 1.000 |"  # all, a (3 of 6), b (1 of 3), c (1 of 1)
    ref = next(line for line in lines if line.startswith("| untrained reference |"))
    assert ref == "| untrained reference | 0.500 | 0.500 | 0.667 | 0.000 |"  # even prompts pass: 3/6, 2/3, 0/1
    assert "a (6)" in lines[2] and any(line.startswith("(10 prompts") for line in lines)
    assert any("judged as given" in line for line in lines)  # records without `ended`: said, not hidden
    assert not any("cut off by the budget" in line for line in lines)


def test_family_table_shows_where_the_budget_cut_answers_off():
    g = gens()
    g["policy_ended"] = g["prompt_id"] < "p06"  # family a's answers ended, b's and c's hit the budget
    g["reference_ended"] = True
    lines = family_table(g)
    cut = next(line for line in lines if "recipes' answers" in line)
    assert cut.endswith("| 0.400 | 0.000 | 1.000 | 1.000 |")  # all, a, b, c
    assert next(line for line in lines if "reference's" in line).endswith("| 0.000 | 0.000 | 0.000 | 0.000 |")
    assert not any("judged as given" in line for line in lines)


def test_samples_spread_over_families_and_fixed():
    g = gens()
    picked = pick_prompts(g, 4)
    assert picked == ["p00", "p06", "p09", "p01"]  # one per family (largest first), then the next of each
    assert pick_prompts(g.sample(frac=1, random_state=0), 4) == picked  # row order does not matter
    text = samples_markdown(g, "fp", n=4)
    assert text.count("## ") == 4 and "**x** (seed 42, pass)" in text and "> q0" in text
    assert "**untrained reference** (pass)" in text and "\n4 fixed test prompts" in text
    few = samples_markdown(g, "fp", n=12)  # a generation test of 10 prompts: all 10 shown, and said so
    assert few.count("## ") == 10 and "\n10 fixed test prompts" in few


def test_the_family_table_samples_and_paired_table_take_the_reference_from_one_recipe():
    """Which recipe's runs stand for the untrained model was chosen three ways: the family table the first in
    record order, samples.md the first by name, the paired table the first of its recipes. Every run of one
    precision holds the same model, so they agree on real runs; here y (listed first) holds other reference
    records than x, and all three take x, the first by name, in each precision."""
    g = gens()
    g = pd.concat([g[g["group"] == "y"], g[g["group"] == "x"]], ignore_index=True)
    g.loc[g["group"] == "y", ["reference_text", "reference_pass"]] = ["y's reference", False]
    assert reference_groups(g["group"], [None] * len(g)) == {None: "x"}
    assert reference_groups(["b2", "a2", "b1", "a1"], ["bf16", "fp32", "bf16", "fp32"]) == {"bf16": "b1", "fp32": "a1"}
    ref = next(line for line in family_table(g) if line.startswith("| untrained reference |"))
    assert ref == "| untrained reference | 0.500 | 0.500 | 0.667 | 0.000 |"  # x's: even prompts pass
    text = samples_markdown(g, "fp", n=1)
    assert "**untrained reference** (pass)" in text and "y's reference" not in text
    runs = {name: [SimpleNamespace(precision=None)] for name in ("y", "x")}
    assert reference_runs(runs)[0] == {None: runs["x"]}
