"""prefopt.compare on fake finished runs: tables, confidence intervals, split separation, Markdown wording,
plots, unfinished runs left out, two processes rebuilding at once, and no torch import."""

from __future__ import annotations

import json
import math
import multiprocessing
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from prefopt import compare
from prefopt import summary as markdown
from prefopt.results import write_atomic, write_json, write_yaml
from prefopt.samples import read_generations

FP_A, FP_B = "aaaa1111", "bbbb2222"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_metrics(recipe: str, seed: int, fp: str, auc: float, *, method="kto", verifier=True) -> dict:
    m = {"recipe": recipe, "method": method, "strategy": "mixed" if method == "kto" else "natural", "seed": seed,
         "run_id": f"seed{seed}-{recipe[:4]}{fp[:4]}", "eval_fingerprint": fp, "data_path": "data/feedback.jsonl",
         "steps": 40, "examples_used": 160, "train_seconds": 10.0 + seed, "eval_seconds": 2.0,
         "train_tokens_per_second": 900.0 + seed, "peak_memory_mb": 512.0, "reward_auc": auc,
         "preference_accuracy": auc - 0.1, "reward_margin": 2 * auc - 1, "kl": 0.01 * seed,
         "desirable_nll": 2.0 - auc, "desirable_nll_ref": 2.0 + 0.001 * seed, "eval_rows": 100, "eval_pairs": 20}
    if verifier:
        m.update(verified_success=0.4 + auc / 10, verified_success_ref=0.3 + 0.01 * seed,
                 verified_success_delta=0.1 + auc / 10 - 0.01 * seed, verified_prompts=24)
    return m


def add_run(results: Path, metrics: dict, *, finished=True, margin=True, config=None) -> Path:
    run = results / "runs" / metrics["recipe"] / metrics["run_id"]
    write_yaml(run / "recipe.yaml", {"name": metrics["recipe"], "method": metrics["method"], "seed": metrics["seed"],
                                     "train": {"learning_rate": config or 1e-4}})
    steps = np.arange(1, 11)
    log = pd.DataFrame({"step": steps, "loss": 0.7 - 0.02 * steps * metrics["reward_auc"],
                        "learning_rate": 1e-4, "epoch": steps / 10})
    if margin:
        log["rewards/margins"] = 0.05 * steps
    summary_row = pd.DataFrame({"step": [10], "train_runtime": [12.3], "epoch": [1.0]})
    write_atomic(run / "train_log.csv", pd.concat([log, summary_row]).to_csv(index=False))
    if finished:
        write_json(run / "metrics.json", metrics)
    return run


AUC = {("kto_mixed", FP_A): [0.70, 0.72, 0.74], ("dpo", FP_A): [0.69, 0.73, 0.71],
       ("orpo", FP_A): [0.55, 0.56, 0.54], ("kto_mixed", FP_B): [0.80, 0.60], ("dpo", FP_B): [0.65]}


def make_results(root: Path) -> Path:
    for (recipe, fp), aucs in AUC.items():
        for seed, auc in enumerate(aucs, start=1):
            add_run(root, fake_metrics(recipe, seed, fp, auc, method=recipe.split("_")[0]), margin=recipe != "orpo")
    # crashed mid-training: directory, recipe and log, but no metrics.json
    add_run(root, fake_metrics("crashed", 1, FP_A, 0.99), finished=False)
    add_run(root, fake_metrics("kto_mixed", 9, FP_A, 0.99), finished=False)
    return root


@pytest.fixture
def results(tmp_path) -> Path:
    return make_results(tmp_path / "results")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Built once for the read-only tests below."""
    results = make_results(tmp_path_factory.mktemp("built") / "results")
    return results, compare.rebuild(results)


def test_returns_written_paths(built):
    results, paths = built
    names = sorted(str(p.relative_to(results)) for p in paths)
    assert names == sorted(["comparison.csv", "summary.csv", "summary.md", "plots/training_loss.png",
                            "plots/reward_margin.png", f"plots/heldout_{FP_A}.png", f"plots/heldout_{FP_B}.png"])
    assert all(p.is_file() for p in paths)


def test_comparison_one_row_per_finished_run(built):
    results, _ = built
    df = pd.read_csv(results / "comparison.csv")
    assert len(df) == sum(len(v) for v in AUC.values())
    assert "crashed" not in set(df["recipe"]) and 9 not in set(df["seed"]) and 0.99 not in set(df["reward_auc"])
    assert list(df.columns[:6]) == ["recipe", "config", "method", "strategy", "seed", "test"]
    for col in ("reward_auc", "preference_accuracy", "reward_margin", "kl", "desirable_nll", "desirable_nll_ref",
                "verified_success", "train_seconds", "peak_memory_mb", "eval_pairs"):
        assert col in df.columns
    row = df[(df.recipe == "dpo") & (df.test == FP_A) & (df.seed == 2)].iloc[0]
    assert row["reward_auc"] == 0.73 and row["method"] == "dpo"


def test_summary_means_and_ci_match_scipy(built):
    results, _ = built
    s = pd.read_csv(results / "summary.csv")
    for (recipe, fp), aucs in AUC.items():
        row = s[(s.recipe == recipe) & (s.test == fp)]
        assert len(row) == 1, (recipe, fp)
        row = row.iloc[0]
        assert row["n_seeds"] == len(aucs)
        assert row["reward_auc_mean"] == pytest.approx(np.mean(aucs))
        if len(aucs) > 1:
            low, high = stats.t.interval(0.95, len(aucs) - 1, loc=np.mean(aucs), scale=stats.sem(aucs))
            assert row["reward_auc_ci95_low"] == pytest.approx(low)
            assert row["reward_auc_ci95_high"] == pytest.approx(high)
            kl = [0.01 * s for s in range(1, len(aucs) + 1)]
            low, high = stats.t.interval(0.95, len(kl) - 1, loc=np.mean(kl), scale=stats.sem(kl))
            assert row["kl_ci95_low"] == pytest.approx(low) and row["kl_ci95_high"] == pytest.approx(high)
        else:  # one seed: no interval, and the note says so
            assert math.isnan(row["reward_auc_ci95_low"]) and math.isnan(row["reward_auc_ci95_high"])
            assert "single seed" in row["note"]


def test_summary_groups_by_fingerprint_ranks_and_adds_reference(built):
    results, _ = built
    s = pd.read_csv(results / "summary.csv", keep_default_na=False, na_values=[""])
    assert list(s.test.unique()) == [FP_A, FP_B]
    a, b = s[s.test == FP_A], s[s.test == FP_B]
    assert list(a.recipe) == ["kto_mixed", "dpo", "orpo", "reference"]  # ranked by mean reward_auc
    assert list(b.recipe) == ["kto_mixed", "dpo", "reference"]
    # never mixed: the FP_B kto mean is over its own two seeds only
    assert b[b.recipe == "kto_mixed"].reward_auc_mean.item() == pytest.approx(0.70)
    ref = a[a.recipe == "reference"].iloc[0]
    assert (ref.reward_auc_mean, ref.reward_margin_mean, ref.kl_mean, ref.preference_accuracy_mean) == (0.5, 0, 0, 0)
    ref_nll = [2.0 + 0.001 * seed for aucs in (AUC[k] for k in AUC if k[1] == FP_A) for seed in range(1, len(aucs) + 1)]
    assert ref.desirable_nll_mean == pytest.approx(np.mean(ref_nll))
    ref_vs = [0.3 + 0.01 * seed for aucs in (AUC[k] for k in AUC if k[1] == FP_A) for seed in range(1, len(aucs) + 1)]
    assert ref.verified_success_mean == pytest.approx(np.mean(ref_vs))
    assert math.isnan(ref.reward_auc_ci95_low) and math.isnan(ref.train_seconds_mean)


def test_markdown_says_what_is_not_significant(built):
    results, _ = built
    md = (results / "summary.md").read_text()
    paragraphs = md.split("\n\n")
    # it opens with the verdict of each split (these runs kept no per-item records: it says so), then the legend
    assert paragraphs[1].startswith("**Verdict**")
    assert paragraphs[2].startswith(f"On the test split `{FP_A[:12]}`:\n- No paired verdict: its runs kept no per-item")
    first = next(p for p in paragraphs if "fingerprint" in p)
    assert "test split" in first.lower() and "95%" in first
    assert "- **reward_auc** (headline)" in md and md.index("**reward_auc**") < md.index("**kl**")
    sec_a, sec_b = md.split(f"## Test split `{FP_A}`")[1].split(f"## Test split `{FP_B}`")
    header = next(line for line in sec_a.splitlines() if line.startswith("| rank"))
    assert header.split(" | ")[5] == "reward_auc"  # headline metric is the first metric column
    body = [line for line in sec_a.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[1] for line in body] == ["kto_mixed", "dpo", "orpo"]
    p = stats.ttest_ind(AUC["kto_mixed", FP_A], AUC["dpo", FP_A], equal_var=False).pvalue
    assert f"- kto_mixed vs dpo: not significant (p = {p:.2g})" in sec_a
    assert "- kto_mixed vs orpo: significant" in sec_a and "kto_mixed is higher" in sec_a
    assert "reference (untrained)" in sec_a and "¹" in sec_a and "r(chosen) > r(rejected)" in sec_a
    # split B: dpo has one seed
    assert "- kto_mixed vs dpo: single seed: cannot tell (dpo has fewer than 2 seeds)" in sec_b
    assert "(1 seed, no CI)" in sec_b and "- dpo: single seed: cannot tell" in sec_b
    assert "orpo" not in sec_b and "crashed" not in md
    # the cost table says that tokens per second compares recipes of one trainer only, in every split
    assert all(s.split("Training examples used and cost")[1].count("compares recipes of one trainer, not trainers") == 1
               for s in (sec_a, sec_b))
    # ...and which process peak_memory_mb is the peak of
    assert all(s.split("Training examples used and cost")[1].count("report the peak of the process so far") == 1
               for s in (sec_a, sec_b))


def test_plots_are_pngs(built):
    results, paths = built
    for p in paths:
        if p.suffix == ".png":
            data = p.read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 5000, p
    from matplotlib import image

    assert image.imread(results / "plots" / f"heldout_{FP_A}.png").shape[2] in (3, 4)


def test_nothing_to_do_writes_nothing(tmp_path):
    assert compare.rebuild(tmp_path / "missing") == []
    add_run(tmp_path / "r", fake_metrics("x", 1, FP_A, 0.6), finished=False)
    assert compare.rebuild(tmp_path / "r") == []
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["runs"]
    out = subprocess.run([sys.executable, "-m", "prefopt", "compare", str(tmp_path / "r")], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout == "", out.stderr


def test_cli_prints_written_paths(results):
    out = subprocess.run([sys.executable, "-m", "prefopt", "compare", str(results)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    names = ["comparison.csv", "summary.csv", "summary.md", "plots/training_loss.png", "plots/reward_margin.png",
             f"plots/heldout_{FP_A}.png", f"plots/heldout_{FP_B}.png"]
    assert sorted(out.stdout.split()) == sorted(str(results / n) for n in names)


def test_edited_recipe_is_not_averaged_with_the_old_one(tmp_path):
    root = tmp_path / "results"
    for seed, auc in ((1, 0.6), (2, 0.62)):
        add_run(root, fake_metrics("kto", seed, FP_A, auc), config=1e-4)
    m = fake_metrics("kto", 1, FP_A, 0.9)
    m["run_id"] = "seed1-edited"
    add_run(root, m, config=5e-4)
    compare.rebuild(root)
    s = pd.read_csv(root / "summary.csv")
    kto = s[s.recipe.str.startswith("kto")]
    assert sorted(kto.n_seeds) == [1, 2] and all(kto.recipe.str.match(r"kto \[[0-9a-f]{8}\]"))


def test_stale_split_plot_removed(results):
    compare.rebuild(results)
    import shutil

    shutil.rmtree(results / "runs" / "kto_mixed")
    for d in (results / "runs" / "dpo").iterdir():
        if json.loads((d / "metrics.json").read_text())["eval_fingerprint"] == FP_B:
            shutil.rmtree(d)
    compare.rebuild(results)
    assert not (results / "plots" / f"heldout_{FP_B}.png").exists()
    assert (results / "plots" / f"heldout_{FP_A}.png").exists()


def test_single_recipe_and_no_verifier_no_margin(tmp_path):
    root = tmp_path / "results"
    add_run(root, fake_metrics("orpo", 1, FP_A, 0.6, method="orpo", verifier=False), margin=False)
    paths = compare.rebuild(root)
    assert root / "plots" / "reward_margin.png" not in paths  # no run logged a margin
    md = (root / "summary.md").read_text()
    assert "Only one recipe on this split" in md and "verified_success" not in md
    assert "- orpo: single seed: cannot tell" in md  # still compared with the reference, in words
    s = pd.read_csv(root / "summary.csv")
    assert "verified_success_mean" not in s and list(s.recipe) == ["orpo", "reference"]


def test_pure_functions():
    n, mean, low, high = compare.mean_ci([1.0])
    assert (n, mean) == (1, 1.0) and math.isnan(low) and math.isnan(high)  # one seed: no interval
    n, mean, low, high = compare.mean_ci([1.0, 2.0, None, 3.0])
    assert (n, mean) == (3, 2.0)
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 2, loc=2, scale=stats.sem([1, 2, 3])))
    assert compare.mean_ci([])[0] == 0
    runs = pd.DataFrame([fake_metrics("a", s, FP_A, 0.6 + s / 100) for s in (1, 2)] +
                        [fake_metrics("b", s, FP_A, 0.6 + s / 100) for s in (1, 2)])
    runs["config"], runs["run_dir"] = "c", "nowhere"
    tests = markdown.significance(compare.with_groups(runs))
    assert len(tests) == 1 and tests[0]["verdict"] == "not significant" and tests[0]["p"] == pytest.approx(1.0)
    assert len(compare.comparison_table(runs)) == 4


# ------------------------------------------------------------------------------------------- concurrency

def _finish_runs(results: str, worker: int, n: int, barrier) -> None:
    """A stand-in for a training process: finishes n runs, rebuilding after each, as the runner does; the
    barrier makes both processes finish each run at the same moment."""
    for seed in range(n):
        barrier.wait()
        add_run(Path(results), fake_metrics(f"worker{worker}", seed, FP_A, 0.6 + 0.01 * seed))
        compare.rebuild(Path(results))


def test_two_processes_finishing_at_once(tmp_path):
    results = tmp_path / "results"
    n = 3
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_finish_runs, args=(str(results), w, n, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs):  # readers never see a half-written table
        for name in ("comparison.csv", "summary.csv"):
            if (results / name).exists():
                pd.read_csv(results / name)
                reads += 1
        if (results / "summary.md").exists():
            assert (results / "summary.md").read_text().endswith("\n")
        time.sleep(0.05)
    assert all(p.exitcode == 0 for p in procs)
    df = pd.read_csv(results / "comparison.csv")
    assert sorted(zip(df.recipe, df.seed)) == [(f"worker{w}", s) for w in (0, 1) for s in range(n)]
    s = pd.read_csv(results / "summary.csv")
    assert len(s) == 3 and sorted(s.recipe[:2]) == ["worker0", "worker1"] and s.recipe.iloc[2] == "reference"
    assert set(s.n_seeds.dropna()) == {n}
    assert not list(results.rglob("*.tmp"))
    assert reads > 0


def _rebuild_when_told(results: str, started) -> None:
    started.set()
    compare.rebuild(Path(results))


def test_rebuild_waits_for_the_lock(tmp_path):
    """While another process holds results/.compare.lock, rebuild writes nothing; it goes on once released."""
    from filelock import FileLock

    root = tmp_path / "results"
    add_run(root, fake_metrics("x", 1, FP_A, 0.6))
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    with FileLock(str(root / ".compare.lock")):
        proc = ctx.Process(target=_rebuild_when_told, args=(str(root), started))
        proc.start()
        assert started.wait(60)
        time.sleep(1.5)
        assert proc.is_alive() and not (root / "comparison.csv").exists()
    proc.join(60)
    assert proc.exitcode == 0 and (root / "summary.md").exists()


def test_import_does_not_load_torch(tmp_path):
    add_run(tmp_path / "r", fake_metrics("x", 1, FP_A, 0.6))
    code = ("import sys; from pathlib import Path; import prefopt.compare as c; c.rebuild(Path(sys.argv[1])); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'trl')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_values_do_not_break_the_summary():
    """A run whose metrics are null (e.g. no pairs held out) still gets a row; cells say '–', no crash."""
    runs = pd.DataFrame([fake_metrics("a", s, FP_A, 0.6) for s in (1, 2)])
    runs["reward_auc"] = None
    runs.loc[0, "kl"] = None
    runs["config"], runs["run_dir"] = "c", "nowhere"
    summary = compare.summary_table(runs)
    md = markdown.summary_markdown(summary, runs)
    assert "nothing to test" in md and "reward_auc_mean" not in summary  # no run recorded it
    row = summary.iloc[0]
    assert row["kl_n"] == 1 and row["n_seeds"] == 2 and "(1 of 2 seeds, no CI)" in md


def add_items(run: Path, effect: float, seed: int, prompts: int = 30) -> None:
    """Per-item records of one run: 30 prompts x 4 rows (3 desirable, 1 not), reward shifted by `effect`
    on desirable rows, and one verified generation per prompt."""
    rng = np.random.default_rng(seed)
    prompt_ids = [f"p{i:03d}" for i in range(prompts)]
    n = 4 * prompts
    ref = -np.random.default_rng(0).uniform(20, 60, n)  # the untrained model: the same in every run
    label = np.tile([True, True, True, False], prompts)
    reward = effect * label + rng.normal(size=n)
    pd.DataFrame({"row_id": np.arange(n), "prompt_id": np.repeat(prompt_ids, 4), "label": label, "logp": ref + reward,
                  "ref_logp": ref, "tokens": rng.integers(5, 30, n), "kl_sum": rng.uniform(0, 1, n)}
                 ).to_csv(run / "eval_items.csv", index=False)
    passes = rng.random(prompts) < 0.5 + effect / 4
    (run / "eval_generations.jsonl").write_text("".join(
        json.dumps({"prompt_id": p, "policy_pass": bool(x), "reference_pass": bool(y)}) + "\n"
        for p, x, y in zip(prompt_ids, passes, np.random.default_rng(99).random(prompts) < 0.4)))


def test_paired_verdict_and_tables_from_per_item_records(tmp_path):
    root = tmp_path / "results"
    for k, (recipe, effect) in enumerate((("strong", 1.5), ("weak", 0.0), ("weaker", 0.0))):
        for seed in (1, 2):
            run = add_run(root, fake_metrics(recipe, seed, FP_A, 0.6, method="dpo"))
            add_items(run, effect, seed=10 * k + seed)  # (not hash(): it varies from process to process)
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    assert text.split("\n\n")[1].startswith("**Verdict**")  # the summary opens with it
    verdict = text.split("**Verdict**", 1)[1].split("- **reward_auc**", 1)[0]
    assert "- strong ranks first on reward_auc (higher is better), not decidedly best: ahead of" in verdict
    assert "better than the untrained model: strong" in verdict and "- On kl" not in verdict
    assert "30 held-out test prompts carry the row metrics" in text and "each recipe has 2 seeds" in text
    assert "| strong | " in text and "| untrained reference | 0.5 [0.5, 0.5] |" in text
    assert "Pairwise reward_auc: row minus column" in text and "Pairwise verified_success" in text
    assert "Welch" not in text  # the seed-level t-tests give way to the paired comparison
    # and each trained model's verified_success against the untrained model's answers: exact McNemar per seed
    gens = pd.read_json(root / "runs" / "weak" / "seed2-weakaaaa" / "eval_generations.jsonl", lines=True)
    gained = int((gens.policy_pass & ~gens.reference_pass).sum())
    lost = int((~gens.policy_pass & gens.reference_pass).sum())
    p = stats.binomtest(gained, gained + lost).pvalue
    assert "(exact McNemar, two-sided, per trained model and not adjusted for multiplicity;" in text
    assert "- weak: seed 1: gained " in text and f"; seed 2: gained {gained}, lost {lost}, p {p:.3f}." in text
    # the opening says what a cell is in each kind of table: the paired tables' cells are bootstrap intervals,
    # not the '± t half-width' it once said of every cell
    assert "in the paired tables a value [its 95% bootstrap interval over prompts and seeds]" in text
    assert "each cell the mean over seeds ±" not in text
    for plot in (f"forest_{FP_A[:12]}.png", f"pairwise_{FP_A[:12]}.png"):  # Δ vs untrained; pairwise Δ heatmap
        assert (root / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_on_another_generation_test_keep_their_row_metrics_but_leave_the_verified_comparison(tmp_path):
    """One split, two generation tests (e.g. runs from before eval.prompts changed): verified_success compares
    the runs on the test most of them took; the others still count for the row metrics, and nothing breaks."""
    root = tmp_path / "results"
    for recipe, effect in (("a", 1.0), ("b", 0.0), ("old", 0.5)):
        for seed in (1, 2):
            run = add_run(root, fake_metrics(recipe, seed, FP_A, 0.6, method="dpo"))
            add_items(run, effect, seed=seed)
            if recipe == "old":  # the same rows, a smaller generation test
                lines = (run / "eval_generations.jsonl").read_text().splitlines()[:10]
                (run / "eval_generations.jsonl").write_text("\n".join(lines) + "\n")
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| old | "))
    assert row.count("n/a") == 3  # verified_success value, Δ and p
    assert "30 generation-test prompts carry verified_success" in text
    verified = text.split("Pairwise verified_success", 1)[1].split("\n\n", 2)[1]
    assert "| old |" not in verified and "| a |" in verified


def test_a_run_that_scored_other_rows_is_left_out_by_name_not_paired_row_against_unrelated_row(tmp_path):
    """The statistics pair runs row by row; a run whose held-out rows differ (other data, another split) would
    be compared row against unrelated row. It is left out of the paired comparison, named."""
    root = tmp_path / "results"
    for recipe, effect in (("a", 1.0), ("b", 0.0)):
        for seed in (1, 2):
            run = add_run(root, fake_metrics(recipe, seed, FP_A, 0.6, method="dpo"))
            add_items(run, effect, seed=seed)
            if (recipe, seed) == ("b", 2):  # the same ids, other prompts under them
                items = pd.read_csv(run / "eval_items.csv")
                items["prompt_id"] = np.roll(items["prompt_id"].to_numpy(), 4)
                items.to_csv(run / "eval_items.csv", index=False)
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    assert "Left out (no per-item records, folds missing, other rows scored, or another generation test): b seed 2 (scored other " \
           "held-out rows than the rest)." in text
    assert "| b | " in text  # its other seed still counts
    verdict = text[:text.index("\n#", text.index("**Verdict**"))]  # the block summary.md opens with says so too
    assert "- 1 run is left out of these comparisons or of one metric (its section names it and says why)." in verdict


def test_a_run_without_generation_records_leaves_only_verified_success_and_is_named(tmp_path):
    """Its recipe keeps the seeds that have them on verified_success (not the whole recipe dropped unseen), and
    an SFT baseline alone on a metric writes no empty sentence."""
    from prefopt import paired

    root = tmp_path / "results"
    for recipe, effect in (("a", 1.0), ("b", 0.0)):
        for seed in (1, 2):
            run = add_run(root, fake_metrics(recipe, seed, FP_A, 0.6, method="dpo"))
            add_items(run, effect, seed=seed)
            if (recipe, seed) == ("a", 2):
                (run / "eval_generations.jsonl").unlink()
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    assert "a seed 2 from verified_success only (has no generation records)" in text
    analysis = paired.analyze(compare.with_groups(compare.with_test(compare.load_runs(root))))
    assert len(analysis.runs["a"]) == 2  # its row metrics keep both seeds
    kept = analysis.results["verified_success"]
    assert ("a", "b") in kept.pairwise and not np.isnan(kept.pairwise[("a", "b")][3])


def test_config_id_ignores_fields_added_later_at_their_default(tmp_path):
    """A run written before eval.select (or data.folds, eval.split, tune) existed and one written after, at
    the defaults, are seeds of one configuration, as their fingerprints say."""
    import yaml

    from prefopt.compare import _config_id

    old = {"name": "sft", "method": "sft", "seed": 42, "data": {"path": "d.jsonl"}, "eval": {"batch_size": 8}}
    new = {**old, "seed": 1, "data": {"path": "d.jsonl", "folds": 1, "fold": None},
           "eval": {"batch_size": 8, "select": "last", "select_metric": "reward_auc", "split": "test"},
           "tune": {"trials": 8}, "tuned": None}
    other = {**new, "eval": {**new["eval"], "select": "best"}}
    ids = []
    for i, r in enumerate((old, new, other)):
        (tmp_path / f"{i}.yaml").write_text(yaml.safe_dump(r))
        ids.append(_config_id(tmp_path / f"{i}.yaml"))
    assert ids[0] == ids[1] != ids[2]


def test_the_summary_answers_whether_a_method_beat_the_sft_baseline():
    from prefopt.paired import baseline_lines
    from prefopt.stats import Comparison

    est = {"sft": (0.6, 0.5, 0.7), "orpo": (0.7, 0.6, 0.8), "dpo": (0.62, 0.5, 0.7), "kto": (0.5, 0.4, 0.6)}
    pairwise = {("orpo", "sft"): (0.1, 0.05, 0.15, 0.001, 0.01, 1.0), ("sft", "dpo"): (-0.02, -0.1, 0.05, 0.5, 1.0, 0.3),
                ("sft", "kto"): (0.1, 0.05, 0.15, 0.001, 0.02, 1.0), ("orpo", "dpo"): (0, 0, 0, 1, 1, 0.5),
                ("orpo", "kto"): (0, 0, 0, 1, 1, 0.5), ("dpo", "kto"): (0, 0, 0, 1, 1, 0.5)}
    c = Comparison("verified_success", 300, 10, 0, est, (0.5, 0.4, 0.6), {}, pairwise)
    split = pd.DataFrame({"group": ["sft", "orpo", "dpo", "kto"], "method": ["sft", "orpo", "dpo", "kto"]})
    (line,) = baseline_lines(split, {"verified_success": c})
    assert line == ("- Against the SFT baseline sft on verified_success: better: orpo +0.1 (Holm p 0.010); "
                    "worse: kto -0.1 (Holm p 0.020); tied: dpo +0.02.")
    assert baseline_lines(split.assign(method="dpo"), {"verified_success": c}) == []  # no SFT run: no such line


def test_cross_fitted_means_leave_out_seeds_missing_a_fold_and_carry_no_t_interval(tmp_path):
    root = tmp_path / "results"
    for recipe, folds in (("whole", (0, 1, 2)), ("partial", (0, 2))):
        for f in folds:
            m = fake_metrics(recipe, 42, f"fold{f}", 0.6 + 0.05 * f, method="dpo", verifier=False)
            m.update(run_id=f"seed42-fold{f}-{recipe}", fold=f, folds=3, partition="part")
            add_run(root, m)
    compare.rebuild(root)
    s = pd.read_csv(root / "summary.csv")
    assert list(s.recipe) == ["whole", "reference"]  # a mean over folds 0 and 2 would rest on other prompts
    whole = s.iloc[0]
    assert whole.reward_auc_mean == pytest.approx(0.65) and whole.n_runs == 3 and whole.n_folds == 3
    assert math.isnan(whole.reward_auc_ci95_low) and "not independent" in whole.note
    text = (root / "summary.md").read_text()
    assert "| whole | dpo | natural | 1 × 3 folds | 0.65 |" in text and "| partial |" not in text


def test_two_files_with_the_same_prompts_are_two_tests(tmp_path):
    """The split fingerprint hashes prompts only; a relabeled copy of a file splits the same way but its rows
    are other rows, so its runs are never compared with the original's."""
    root = tmp_path / "results"
    for path, auc in (("data/v1.jsonl", 0.6), ("data/v2.jsonl", 0.7)):
        for seed in (1, 2):
            m = fake_metrics("dpo", seed, FP_A, auc + seed / 100, method="dpo")
            m.update(data_path=path, run_id=f"seed{seed}-{path[5:7]}")
            add_run(root, m)
    compare.rebuild(root)
    s = pd.read_csv(root / "summary.csv")
    dpo = s[s.recipe == "dpo"]
    assert len(dpo) == 2 and dpo.test.nunique() == 2 and sorted(dpo.reward_auc_mean) == pytest.approx([0.615, 0.715])


def test_two_files_with_the_same_prompts_keep_apart_in_names_and_plots(tmp_path):
    """With a real (64-digit) fingerprint, the two tests of files sharing prompts were both called by its first
    12 digits: the verdict named one split twice and the second test's plots overwrote the first's."""
    root = tmp_path / "results"
    fp = "4927bcfeedef" + "ab" * 26
    for path in ("data/ours.jsonl", "data/ours.csv"):
        m = fake_metrics("dpo", 1, fp, 0.6, method="dpo")
        m.update(data_path=path, run_id=f"seed1-{path[-3:]}")
        add_run(root, m)
    compare.rebuild(root)
    names = re.findall(r"^On the test split `([^`]+)`:", (root / "summary.md").read_text(), flags=re.M)
    assert len(names) == 2 and len(set(names)) == 2, names
    assert sorted(p.name for p in (root / "plots").glob("heldout_*.png")) == sorted(f"heldout_{n}.png" for n in names)


def test_tuned_recipes_are_compared_with_the_recipe_they_were_tuned_from(tmp_path):
    """Each tuned recipe minus its untuned source, paired by prompt, Holm over the tuned pairs only: a planted
    gain is found, no gain is tied, and a tuned recipe whose source did not run here is not paired."""
    root = tmp_path / "results"
    plan = (("dpo", 0.0, None), ("dpo_tuned", 1.5, "dpo"), ("orpo", 0.0, None), ("orpo_tuned", 0.0, "orpo"),
            ("ipo_tuned", 0.0, "ipo"))
    for k, (recipe, effect, source) in enumerate(plan):
        for seed in (1, 2):
            m = fake_metrics(recipe, seed, FP_A, 0.6, method="dpo")
            if source:
                m["tuned"] = {"recipe": source, "trials": 4, "sampler": "random", "trial": 1,
                              "metric": "validation reward_auc", "value": 0.7, "chosen": {"learning_rate": 5e-4}}
            add_items(add_run(root, m), effect, seed=10 * k + seed)
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    section = text.split("Tuned against untuned", 1)[1].split("\n\n|", 1)
    assert "over the pairs each metric could test (seed 0, 2000 resamples)" in section[0]
    verdicts = section[0]
    assert re.search(r"- reward_auc \(2 pairs\): better: dpo_tuned \+[\d.]+ \(Holm p [^)]+\); tied: orpo_tuned [+-]", verdicts)
    table = section[1].split("\n\n", 1)[0]
    assert "| dpo_tuned | dpo |" in table and "| orpo_tuned | orpo |" in table and "ipo_tuned" not in table
    assert "**ipo_tuned** is tuned: 4 random trials of ipo" in text  # still marked as tuned
    # and named where the pairs are, not silently missing from them
    assert "Not compared with the recipe it was tuned from: ipo_tuned (ipo has no run compared on this test)." in text


def test_a_tuned_recipe_is_compared_with_its_source_in_its_own_precision(tmp_path):
    """dpo's seeds ran in float32 and under bf16 autocast (one configuration, two groups); dpo_tuned under bf16
    autocast. It was 'not compared: dpo ran here in 2 configurations', though a precision is not a
    configuration and one of the two is in dpo_tuned's own precision."""
    root = tmp_path / "results"
    tuned = {"recipe": "dpo", "trials": 4, "sampler": "random", "trial": 1, "metric": "validation reward_auc",
             "value": 0.7, "chosen": {"learning_rate": 5e-4}}
    plan = [("dpo", s, s > 2, None) for s in (1, 2, 3, 4)] + [("dpo_tuned", s, True, tuned) for s in (3, 4)]
    for k, (recipe, seed, bf16, source) in enumerate(plan):
        m = fake_metrics(recipe, seed, FP_A, 0.6, method="dpo")
        m.update(weights_dtype="float32", autocast_bf16=bf16)
        if source:
            m["tuned"] = source
        add_items(add_run(root, m), 1.5 if source else 0.0, seed=k)
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    assert "Not compared with the recipe it was tuned from" not in text
    table = text.split("Tuned against untuned", 1)[1].split("\n\n|", 1)[1].split("\n\n", 1)[0]
    assert "| dpo_tuned | dpo [float32 + bf16 autocast] |" in table, table


def test_tuned_against_untuned_compares_the_runs_the_pairwise_table_compares(tmp_path):
    """A tuned recipe with a seed that kept no generation records: verified_success compares its other seed,
    as the pairwise table does. The tuning section used every seed, got NaN and printed 'worse: dpo_tuned
    +nan', a decision from no test."""
    root = tmp_path / "results"
    for k, (recipe, source) in enumerate((("dpo", None), ("dpo_tuned", "dpo"))):
        for seed in (1, 2):
            m = fake_metrics(recipe, seed, FP_A, 0.6, method="dpo")
            if source:
                m["tuned"] = {"recipe": source, "trials": 4, "sampler": "random", "trial": 1,
                              "metric": "validation reward_auc", "value": 0.7, "chosen": {"learning_rate": 5e-4}}
            run = add_run(root, m)
            add_items(run, 0.0, seed=10 * k + seed)
            if (recipe, seed) == ("dpo_tuned", 2):
                (run / "eval_generations.jsonl").unlink()
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    tuning = text.split("Tuned against untuned", 1)[1].split("Pairwise reward_auc", 1)[0]
    assert "nan" not in tuning and "- verified_success (1 pairs): tied: dpo_tuned +" in tuning
    row = next(line for line in tuning.splitlines() if line.startswith("| dpo_tuned | dpo |")).rstrip(" |").split(" | ")
    matrix = text.split("Pairwise verified_success", 1)[1]
    cell = next(line for line in matrix.splitlines() if line.startswith("| dpo_tuned |")).split(" | ")[1]
    assert cell.startswith(f"{row[-2]} p {row[-1]},")  # the same difference, interval and p


def test_a_score_chosen_on_validation_is_never_reported_beside_the_test_scores(tmp_path):
    """eval.select: best keeps the checkpoint with the highest validation score, and tune the trial with the
    highest: that score is the choice's, biased up, and the tables of test-split numbers averaged it with a
    t-interval (summary.csv selected_validation_value_mean) and printed the winning trial's ('best 0.8123')."""
    root = tmp_path / "results"
    for seed in (1, 2):
        m = fake_metrics("dpo_tuned", seed, FP_A, 0.6, method="dpo")
        m.update(selected_step=16, select_metric="reward_auc", selected_validation_value=0.8123 + seed / 100,
                 validation_seconds=3.0,
                 tuned={"recipe": "dpo", "trials": 4, "sampler": "random", "trial": 1, "metric": "validation reward_auc",
                        "value": 0.8123, "chosen": {"learning_rate": 5e-4}})
        add_run(root, m)
    compare.rebuild(root)
    for table in ("summary.csv", "comparison.csv"):
        columns = pd.read_csv(root / table).columns
        assert not any(c.startswith("selected_validation_value") for c in columns)
        assert any(c.startswith("selected_step") for c in columns)  # which step was kept is no score
    text = (root / "summary.md").read_text()
    assert "0.81" not in text and "0.82" not in text
    assert "- **dpo_tuned** is tuned: 4 random trials of dpo on the validation reward_auc (trial 1 won); chosen " \
           "learning_rate 0.0005." in text


def test_runs_scored_under_bf16_autocast_are_flagged_beside_float32_scored_ones():
    old = {"autocast_bf16": True}  # before `scored_in`: scored under the autocast it trained in
    new = {"autocast_bf16": True, "scored_in": "float32"}
    plain = {"autocast_bf16": False}
    note = markdown._autocast_scored(pd.DataFrame([old, new, plain, old]))
    assert note and note[0].startswith("2 of these runs were scored under bf16 autocast")
    assert markdown._autocast_scored(pd.DataFrame([new, plain])) == []
    assert markdown._autocast_scored(pd.DataFrame([{"recipe": "x"}])) == []


def test_heldout_bars_use_the_paired_bootstrap_and_no_two_seed_t_interval():
    """The bar plot's whiskers: the summary's bootstrap interval where the paired analysis has the metric;
    else the seed t-interval from three seeds up, cut at 0 and 1 for a rate (two seeds gave t = 12.7 and
    a preference_accuracy interval far below 0)."""
    from prefopt.plots import heldout_bars
    from prefopt.stats import Comparison

    def split(pa: dict) -> pd.DataFrame:
        rows = [{**fake_metrics(r, s, FP_A, 0.5 + v / 4), "preference_accuracy": v}
                for r, vs in pa.items() for s, v in enumerate(vs)]
        return compare.summary_table(pd.DataFrame(rows).assign(config="c", run_dir="nowhere"))

    two = split({"a": [0.05, 0.95], "b": [0.5, 0.52]})
    value, low, high, what = heldout_bars(two, "preference_accuracy")
    assert np.isnan(low).all() and np.isnan(high).all() and "3+ seeds" in what
    assert dict(zip(two["recipe"], value)) == pytest.approx({"a": 0.5, "b": 0.51, compare.REFERENCE: 0.0})
    three = split({"a": [0.02, 0.95, 0.05], "b": [0.5, 0.52, 0.51]})
    assert three["preference_accuracy_ci95_low"].min() < 0  # the raw t-interval leaves [0, 1] ...
    _, low, high, _ = heldout_bars(three, "preference_accuracy")
    assert np.nanmin(low) == 0 and np.nanmax(high) <= 1 and not np.isnan(low[:2]).any()  # ... the whiskers do not
    c = Comparison("reward_auc", 30, 10, 0, {"a": (0.7, 0.6, 0.8), "b": (0.62, 0.55, 0.69)}, (0.5, 0.5, 0.5), {}, {})
    value, low, high, what = heldout_bars(two, "reward_auc", c)
    order = list(two["recipe"])
    assert what == "bootstrap over prompts and seeds"
    assert value[order.index("a")] == 0.7 and low[order.index("b")] == 0.55 and high[order.index(compare.REFERENCE)] == 0.5


def test_prompts_asking_one_question_are_one_cluster(tmp_path):
    """The unit that varies is the question: two prompts that ask the same one (other spacing, case or form)
    move together in a resample, and the summary says how many it merged."""
    from prefopt import paired

    root = tmp_path / "results"
    for recipe, effect in (("a", 1.0), ("b", 0.0)):
        for seed in (1, 2):
            run = add_run(root, fake_metrics(recipe, seed, FP_A, 0.6, method="dpo"))
            add_items(run, effect, seed=seed)
            items = pd.read_csv(run / "eval_items.csv")  # p000 and p001 ask one question, p002 and p003 too
            items["question_id"] = items["prompt_id"].replace({"p001": "p000", "p003": "p002"})
            items.to_csv(run / "eval_items.csv", index=False)
            gens = [json.loads(line) for line in (run / "eval_generations.jsonl").read_text().splitlines()]
            (run / "eval_generations.jsonl").write_text("".join(
                json.dumps({**g, "question_id": "p000" if g["prompt_id"] == "p001" else g["prompt_id"]}) + "\n"
                for g in gens))
    split = compare.with_groups(compare.with_test(compare.load_runs(root)))
    runs, counts, _ = paired.load(split)
    assert counts["reward_auc"] == 28 and counts["verified_success"] == 29
    assert counts["merged"] == {"reward_auc": 2, "verified_success": 1}
    first = runs["a"][0]
    assert first.prompt.max() == 27 and len(set(first.prompt[:16])) == 2  # rows of p000-p003: two clusters
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    assert "28 held-out test prompts carry the row metrics" in text
    assert "leave out 2 more held-out prompts and 1 more generation-test prompt that ask a question" in text


def test_records_without_question_ids_cluster_by_prompt(tmp_path):
    from prefopt import paired

    root = tmp_path / "results"
    for recipe, effect in (("a", 1.0), ("b", 0.0)):
        run = add_run(root, fake_metrics(recipe, 1, FP_A, 0.6, method="dpo"))
        add_items(run, effect, seed=1)
        if recipe == "a":  # one run with question ids, one without: every run is clustered alike, by prompt
            items = pd.read_csv(run / "eval_items.csv")
            items["question_id"] = "same"
            items.to_csv(run / "eval_items.csv", index=False)
    _, counts, _ = paired.load(compare.with_groups(compare.with_test(compare.load_runs(root))))
    assert counts["reward_auc"] == 30 and counts["merged"] == {}



def test_unpaired_data_leaves_out_the_pair_metrics_and_says_why_and_claims_nothing_untested(tmp_path):
    """KTO and SFT on one rated completion per prompt: preference_accuracy and reward_margin are NaN in every
    metrics.json (pair_metrics_note says why), and reward_auc's test against the untrained model, which shuffles
    labels within prompts, has nothing to shuffle. The summary says both and claims neither: no 0 for the
    reference's pair metrics, no 'not distinguishable from the untrained model' (its p-value of 1 said so)."""
    root = tmp_path / "results"
    note = ("preference_accuracy and reward_margin are not measured (NaN): no held-out pair, as no prompt there has "
            "both a desirable and an undesirable completion; reward_auc, kl and desirable_nll rank or score single "
            "rows and are measured")
    prompts = 40
    label = np.arange(prompts) % 4 != 3
    ref = -np.random.default_rng(0).uniform(20, 60, prompts)
    for recipe, method, effect in (("kto_mixed", "kto", 2.0), ("sft", "sft", 0.3)):
        for seed in (1, 2):
            m = fake_metrics(recipe, seed, FP_A, 0.7, method=method, verifier=False)
            m.update(preference_accuracy=math.nan, reward_margin=math.nan, eval_pairs=0, eval_rows=prompts,
                     pair_metrics_note=note)
            run = add_run(root, m)
            rng = np.random.default_rng(seed)
            pd.DataFrame({"row_id": np.arange(prompts), "prompt_id": [f"p{i:03d}" for i in range(prompts)],
                          "label": label, "logp": ref + effect * label + rng.normal(size=prompts), "ref_logp": ref,
                          "tokens": 10, "kl_sum": rng.uniform(0, 1, prompts)}).to_csv(run / "eval_items.csv",
                                                                                      index=False)
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    verdict = text.split("**Verdict**", 1)[1].split("- **reward_auc**", 1)[0]
    assert "distinguishable from the untrained model" not in verdict
    assert "not tested against the untrained model: no held-out prompt holds both labels" in verdict
    assert f"{note}." in text and "reward_auc's Holm p is n/a: not tested" in text
    assert re.search(r"\| kto_mixed \| [^|]+ \| [^|]+ \| n/a \|", text)  # its Holm p against the untrained model
    assert "Pairwise reward_auc" in text and "Against the SFT baseline sft on reward_auc" in text
    # the pair metrics: no column, no reference value, no footnote about them
    assert "preference_accuracy" not in text.replace(note, "")
    summary = pd.read_csv(root / "summary.csv")
    assert "preference_accuracy_mean" not in summary or summary["preference_accuracy_mean"].isna().all()


def add_samples(run: Path) -> Path:
    """Generation records with both answers' text: what samples.md shows."""
    (run / "eval_generations.jsonl").write_text("".join(json.dumps(
        {"prompt_id": f"p{i}", "prompt": f"q{i}", "policy_text": "a", "reference_text": "b", "policy_pass": True,
         "reference_pass": False}) + "\n" for i in range(3)))
    return run


USERS = ["notes.md", "samples_mine.md", "my.csv", "plots/heldout_mine.png", "plots/figure.png"]


def test_a_rebuild_removes_its_own_files_it_no_longer_writes_and_nothing_else(tmp_path):
    root = tmp_path / "results"
    gone = add_samples(add_run(root, fake_metrics("kto", 1, FP_B, 0.6)))
    add_samples(add_run(root, fake_metrics("kto", 1, FP_A, 0.7)))
    for name in USERS:
        write_atomic(root / name, "the user's")
    compare.rebuild(root)
    assert {f"samples_{FP_A}.md", f"samples_{FP_B}.md"} <= {p.name for p in root.iterdir()}
    import shutil

    shutil.rmtree(gone)  # one test split left: its samples are samples.md now, and FP_B's files are stale
    written = compare.rebuild(root)
    assert not (root / f"samples_{FP_A}.md").exists() and not (root / f"samples_{FP_B}.md").exists()
    assert (root / "samples.md").exists() and not (root / "plots" / f"heldout_{FP_B}.png").exists()
    assert all((root / name).read_text() == "the user's" for name in USERS)
    assert sorted(compare.own_files(root)) == sorted(written)  # what is left of its kinds is what it wrote


def test_no_finished_run_left_removes_the_tables_and_says_so_in_one_line(tmp_path):
    """An interrupted `prefopt run --force` set its finished run aside: the tables describe a run that is no
    longer compared, so they go, and compare says where the run waits."""
    from prefopt.results import set_aside

    root = tmp_path / "results"
    run = add_samples(add_run(root, fake_metrics("kto", 1, FP_A, 0.6)))
    for name in USERS:
        write_atomic(root / name, "the user's")
    compare.rebuild(root)
    assert (root / "summary.md").exists() and (root / "samples.md").exists()
    set_aside(run)
    out = subprocess.run([sys.executable, "-m", "prefopt", "compare", str(root)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "", out.stderr
    assert len(out.stderr.splitlines()) == 1 and "nothing to compare" in out.stderr
    assert "1 finished run set aside" in out.stderr and str(root / "cache" / "replaced") in out.stderr
    assert compare.own_files(root) == [] and not compare.is_current(root)
    assert all((root / name).read_text() == "the user's" for name in USERS)


def test_a_run_set_aside_by_force_leaves_only_between_rebuilds(tmp_path, monkeypatch):
    """`prefopt run --force` moved a finished run away while a rebuild was reading the runs: the tables then
    counted it finished (comparison.csv, "4 finished runs") and left it out of the paired tests as having no
    records. set_aside waits for the rebuild, which tabulates the run whole."""
    from prefopt.results import set_aside

    root = tmp_path / "results"
    runs = []
    for k, (recipe, effect) in enumerate((("strong", 1.5), ("weak", 0.0))):
        for seed in (1, 2):
            runs.append(add_run(root, fake_metrics(recipe, seed, FP_A, 0.6, method="dpo")))
            add_items(runs[-1], effect, seed=10 * k + seed)
    load, ctx = compare.load_runs, multiprocessing.get_context("fork")
    forced = []

    def then_forced(results):
        found = load(results)
        forced.append(ctx.Process(target=set_aside, args=(runs[0],)))  # another process's --force, now
        forced[0].start()
        forced[0].join(3)  # (with the lock it waits for this rebuild: not joined here)
        return found

    monkeypatch.setattr(compare, "load_runs", then_forced)
    compare.rebuild(root)
    forced[0].join(60)
    assert forced[0].exitcode == 0 and not runs[0].exists()
    text = (root / "summary.md").read_text()
    assert "4 finished runs" in text and "Left out" not in text  # the run the tables count is the one they test


def _killed_writing(path: Path) -> None:
    import os
    import signal

    from prefopt import results

    results.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # after the bytes, before the rename
    write_atomic(path, b"half a plot")


def test_a_rebuild_removes_the_temporaries_of_a_rebuild_killed_mid_write_and_no_other(tmp_path):
    root = make_results(tmp_path / "results")
    compare.rebuild(root)
    killed = multiprocessing.get_context("fork").Process(target=_killed_writing,
                                                         args=(root / "plots" / "training_loss.png",))
    killed.start()
    killed.join(60)
    assert killed.exitcode == -9 and len(list((root / "plots").glob(".training_loss.png.*.tmp"))) == 1
    (root / ".notes.md.abcd1234.tmp").write_text("the user's")  # not a name a rebuild writes: stays
    compare.rebuild(root)
    assert [p.name for p in root.rglob("*.tmp")] == [".notes.md.abcd1234.tmp"]


def test_a_recipe_folder_vanishing_while_the_runs_are_listed_does_not_stop_the_rebuild(tmp_path, monkeypatch):
    # another process's `prefopt run` of a new recipe probes runs/<name> by making and removing it
    # (check_results_dir); removed between the listing of runs/ and its own scan, pathlib's glob raised
    # FileNotFoundError out of rebuild (and so out of `prefopt compare` and the end of every `prefopt run`)
    import os

    root = tmp_path / "results"
    add_run(root, fake_metrics("kto", 1, FP_A, 0.6))
    probe = root / "runs" / "new_recipe"
    probe.mkdir()
    scandir = os.scandir

    class Listed(list):  # what os.scandir read, as a context manager
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def racing(path):
        with scandir(path) as it:  # the probe first, whatever the file system's order
            entries = Listed(sorted(it, key=lambda e: e.name != probe.name))
        if Path(path) == root / "runs" and probe.exists():
            probe.rmdir()  # listed, then gone before its own scan
        return entries

    monkeypatch.setattr(os, "scandir", racing)
    assert compare.rebuild(root) and "1 finished run" in (root / "summary.md").read_text()


def test_the_tables_stamp_is_taken_on_the_clock_files_are_stamped_on(tmp_path, monkeypatch):
    """summary.md carries the time the runs were read, and a run whose metrics.json is newer is not in the
    tables yet (is_current). That time was time.time_ns(), while file times come from the kernel's coarser
    clock, up to a tick behind: a run finishing just after the read could look older than the stamp, and
    stay out of the tables. Modelled by a time_ns() running ahead of the files' clock."""
    import time

    root = tmp_path / "results"
    add_run(root, fake_metrics("kto", 1, FP_A, 0.6))
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + 3_600 * 10**9)
    compare.rebuild(root)
    assert compare.is_current(root)
    add_run(root, fake_metrics("kto", 2, FP_A, 0.7))  # finished after the runs were read
    assert not compare.is_current(root)
    monkeypatch.undo()
    assert not [p for p in root.rglob(".stamp.*")]


def empty_items(run):
    (run / "eval_items.csv").write_text("")


def two_recipes_three_seeds(root, damage: dict) -> None:
    """Recipes a (a real effect) and b (none) at seeds 1-3 on one split; damage[(recipe, seed)](run) spoils
    that run's per-item records."""
    for recipe, effect in (("a", 1.0), ("b", 0.0)):
        for seed in (1, 2, 3):
            run = add_run(root, fake_metrics(recipe, seed, FP_A, 0.6, method="dpo"))
            add_items(run, effect, seed=seed)
            if (recipe, seed) in damage:
                damage[recipe, seed](run)


def test_damaged_per_item_records_leave_their_run_out_by_name_not_the_rebuild_stopped(tmp_path):
    """A finished run whose eval_items.csv is emptied or cut short mid-line, or whose eval_generations.jsonl is
    cut short (a copy interrupted, a hand edit), once stopped `prefopt compare` with a traceback after
    comparison.csv and summary.csv were rewritten (EmptyDataError, JSONDecodeError), or was left out as having
    'scored other held-out rows'. It is left out by name with what is wrong and the fix; the rest compare."""
    def cut_items(run):
        text = (run / "eval_items.csv").read_text()  # cut inside a label: 'Tr'
        (run / "eval_items.csv").write_text(text[:text.index(",True,", len(text) // 2) + 3])

    def cut_generations(run):
        text = (run / "eval_generations.jsonl").read_text()
        (run / "eval_generations.jsonl").write_text(text[:len(text) // 2 + 3])

    root = tmp_path / "results"
    two_recipes_three_seeds(root, {("a", 2): empty_items, ("a", 3): cut_items, ("b", 3): cut_generations})
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    assert "a seed 2 (its eval_items.csv cannot be used (" in text
    assert "a seed 3 (its eval_items.csv cannot be used (empty or unreadable cells: cut short or edited); rerun it " \
           "with --force)" in text
    assert "b seed 3 from verified_success only (its eval_generations.jsonl cannot be read; rerun it with --force)" in text
    assert "scored other held-out rows" not in text
    assert "| a | " in text and "| b | " in text  # the intact seeds still compare
    gens = read_generations(compare.with_groups(compare.load_runs(root)))  # samples.md's and the family table's
    assert set(gens.loc[gens["group"] == "b", "seed"]) == {1, 2}


def test_a_cross_fitted_seed_missing_a_fold_is_left_out_of_the_generation_tables_too(tmp_path):
    """Folds still running: the statistics and the means leave out a recipe's seed until all its folds finish,
    and so must the per-family pass rates and samples.md. They read every run, so the unfinished recipes (two
    here, each with 2 of 3 folds) outnumbered the finished one, their prompt set counted as the common
    generation test, and the one recipe every table compared vanished from those two tables."""
    root = tmp_path / "results"
    for recipe, folds in (("whole", (0, 1, 2)), ("part1", (0, 1)), ("part2", (0, 2))):
        for f in folds:
            m = fake_metrics(recipe, 42, f"fold{f}", 0.6 + 0.05 * f, method="dpo")
            m.update(run_id=f"seed42-fold{f}-{recipe}", fold=f, folds=3, partition="part")
            run = add_run(root, m)
            (run / "eval_generations.jsonl").write_text("".join(json.dumps(
                {"prompt_id": f"p{i}", "prompt": f"q{i}", "constraint": {"id": "title"}, "policy_text": recipe,
                 "reference_text": "b", "policy_pass": i % 2 == 0, "reference_pass": False}) + "\n" for i in range(4)))
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    family = text.split("Verified pass rate per constraint family", 1)[1].split("\n\n", 2)[1]
    assert "| whole | 0.500 |" in family and "part1" not in family and "part2" not in family
    samples = (root / "samples.md").read_text()
    assert "whole" in samples and "part1" not in samples and "part2" not in samples


def test_a_split_whose_only_records_are_damaged_says_so_not_that_a_fold_is_missing(tmp_path):
    """One test split, its one run's eval_items.csv emptied: no paired verdict, said as such (the verdict once
    blamed unfinished folds on a split without folds, and the section claimed no run kept records)."""
    root = tmp_path / "results"
    run = add_run(root, fake_metrics("a", 1, FP_A, 0.6, method="dpo"))
    add_items(run, 1.0, seed=1)
    (run / "eval_items.csv").write_text("")
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    assert "- No paired verdict: no run's per-item records could be used (its section says why)." in text
    assert "fold" not in text.split("- **reward_auc**", 1)[0]
    assert "No paired comparison: no run's per-item records could be used: a seed 1 (its eval_items.csv cannot" in text


def test_heldout_bars_from_the_paired_analysis_count_the_seeds_it_kept(tmp_path, monkeypatch):
    """A seed left out of the paired analysis (its eval_items.csv damaged; another without generation records):
    the bar is the analysis's estimate over the seeds it kept, so its label says those, not the summary's
    count of every finished run ('a (3)' under a value from two seeds)."""
    from prefopt import plots

    root = tmp_path / "results"
    two_recipes_three_seeds(root, {("a", 2): empty_items,
                                   ("b", 3): lambda run: (run / "eval_generations.jsonl").unlink()})
    drawn = []
    monkeypatch.setattr(plots, "png", lambda fig: drawn.append(fig) or PNG_MAGIC)
    compare.rebuild(root)
    heldout = next(f for f in drawn if f._suptitle and f._suptitle.get_text().startswith("held-out split"))
    ticks = {ax.get_title().split("\n")[0].split(" ")[0]: [t.get_text() for t in ax.get_xticklabels()]
             for ax in heldout.axes if ax.get_xticklabels()}
    assert ticks["reward_auc"] == ["a (2)", "b (3)", "reference"]
    assert ticks["verified_success"] == ["a (2)", "b (2)", "reference"]
    assert ticks["preference_accuracy"] == ["a (3)", "b (3)", "reference"]  # means over every run: the summary's


def test_a_rebuild_interrupted_in_its_statistics_leaves_every_table_as_it_was(tmp_path, monkeypatch):
    """Ctrl-C in the minutes the paired statistics take once left comparison.csv and summary.csv rewritten
    (without a run deleted since) beside the previous summary.md, which still had it."""
    from prefopt import paired

    root = tmp_path / "results"
    for recipe, effect in (("a", 1.0), ("b", 0.0)):
        for seed in (1, 2):
            add_items(add_run(root, fake_metrics(recipe, seed, FP_A, 0.6, method="dpo")), effect, seed=seed)
    compare.rebuild(root)
    before = {name: (root / name).read_bytes() for name in ("comparison.csv", "summary.csv", "summary.md")}
    import shutil

    shutil.rmtree(next((root / "runs" / "b").glob("seed2-*")))

    def interrupted(split):
        raise KeyboardInterrupt

    monkeypatch.setattr(paired, "analyze", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare.rebuild(root)
    assert {name: (root / name).read_bytes() for name in before} == before


def test_one_file_named_two_ways_is_one_test_and_another_file_stays_apart(tmp_path, monkeypatch):
    """data_path is the text a run was given: `data/feedback.jsonl` in one run, `./data/...` or its absolute
    path (`--set data.path=...`) in another once made two tests of one file, and its recipes were never
    compared. Where the file exists they are one test; a different file sharing the prompts stays its own."""
    monkeypatch.chdir(tmp_path)
    for name in ("feedback.jsonl", "other.jsonl"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / name).write_text("{}\n")

    def named(path):
        def rename(run):
            m = json.loads((run / "metrics.json").read_text())
            write_json(run / "metrics.json", {**m, "data_path": path})
        return rename

    root = tmp_path / "results"
    two_recipes_three_seeds(root, {("b", 1): named(str(tmp_path / "data" / "feedback.jsonl")),
                                   ("b", 2): named("./data/feedback.jsonl"), ("b", 3): named("data//feedback.jsonl")})
    compare.rebuild(root)
    s = pd.read_csv(root / "summary.csv")
    assert s.test.nunique() == 1 and sorted(s.recipe) == ["a", "b", "reference"]
    assert s.loc[s.recipe == "b", "n_seeds"].item() == 3
    text = (root / "summary.md").read_text()
    assert "Pairwise reward_auc: row minus column" in text and "| a | " in text and "| b | " in text
    assert "Data: `data/feedback.jsonl` (also named `" in text and "`./data/feedback.jsonl`" in text

    runs = compare.load_runs(root)
    other = runs[runs.recipe == "b"].assign(data_path="data/other.jsonl")
    tests = compare.with_test(pd.concat([runs[runs.recipe == "a"], other]))
    assert tests.groupby("recipe")["test"].nunique().tolist() == [1, 1] and tests["test"].nunique() == 2


def test_runs_in_two_precisions_get_a_reference_each_not_one_picked_or_averaged_silently(tmp_path):
    """Runs of one test made in float32 and under bf16 autocast (`autocast_bf16`, results/bf16/) generate with
    untrained models that answer differently. The family table showed the first recipe's reference alone as
    'untrained reference', and the means table's reference averaged both, unsaid."""
    def constrained(run, bf16=False):
        gens = pd.read_json(run / "eval_generations.jsonl", lines=True)
        gens["constraint"] = [{"id": "words" if i % 2 else "json"} for i in range(len(gens))]
        gens["reference_pass"] = bf16  # the autocast reference passes every prompt, float32's none
        (run / "eval_generations.jsonl").write_text(gens.to_json(orient="records", lines=True))
        m = json.loads((run / "metrics.json").read_text())
        write_json(run / "metrics.json", {**m, "weights_dtype": "float32", "autocast_bf16": bf16,
                                          "verified_success_ref": float(bf16)})

    root = tmp_path / "results"
    two_recipes_three_seeds(root, {(r, s): (lambda run, bf16=r == "b": constrained(run, bf16))
                                   for r in "ab" for s in (1, 2, 3)})
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    assert "| untrained reference (float32) | 0.000 | 0.000 | 0.000 |" in text
    assert "| untrained reference (float32 + bf16 autocast) | 1.000 | 1.000 | 1.000 |" in text
    assert "| untrained reference |" not in text.split("Verified pass rate per constraint family")[1].split("\n\n")[1]
    assert "(float32: a; float32 + bf16 autocast: b)" in text
    assert ("Its runs ran in 2 precisions, in which the untrained model scores differently: the reference's "
            "desirable_nll and verified_success above average them.") in text
    assert "float32: desirable_nll_ref 2, verified_success_ref 0 (a); float32 + bf16 autocast:" in text
    assert "verified_success_ref 1 (b)." in text



def test_a_precision_only_unfinished_cross_fitted_runs_used_is_not_said_to_be_averaged_in(tmp_path):
    """A cross-fitted test whose float32 recipe has all its folds while a bf16-autocast one is still running:
    the reference row averages the *_ref of the complete pools only (float32), but the note under it said
    that row averages two precisions and gave the unfinished runs' value as one of them."""
    root = tmp_path / "results"
    for recipe, folds, bf16 in (("whole", (0, 1, 2), False), ("partial", (0, 2), True)):
        for f in folds:
            m = fake_metrics(recipe, 42, f"fold{f}", 0.6 + 0.05 * f, method="dpo", verifier=False)
            m.update(run_id=f"seed42-fold{f}-{recipe}", fold=f, folds=3, partition="part", weights_dtype="float32",
                     autocast_bf16=bf16, desirable_nll_ref=3.0 if bf16 else 2.0)
            add_run(root, m)
    compare.rebuild(root)
    s = pd.read_csv(root / "summary.csv")
    assert s.loc[s.recipe == "reference", "desirable_nll_mean"].item() == pytest.approx(2.0)  # float32's alone
    assert "precisions" not in (root / "summary.md").read_text()

    m = fake_metrics("partial", 42, "fold1", 0.65, method="dpo", verifier=False)  # its last fold finishes
    m.update(run_id="seed42-fold1-partial", fold=1, folds=3, partition="part", weights_dtype="float32",
             autocast_bf16=True, desirable_nll_ref=3.0)
    add_run(root, m)
    compare.rebuild(root)
    assert "Its runs ran in 2 precisions" in (root / "summary.md").read_text()


def in_precision(run: Path, bf16: bool) -> None:
    """Makes a run of two_recipes_three_seeds one with IFEval-like constraints generated in float32 or under
    bf16 autocast, whose untrained model passes no prompt in float32 and every prompt under autocast."""
    gens = pd.read_json(run / "eval_generations.jsonl", lines=True)
    gens["constraint"] = [{"id": "words" if i % 2 else "json"} for i in range(len(gens))]
    gens["prompt"], gens["policy_text"] = "a question", "an answer"
    gens["reference_pass"], gens["reference_text"] = bf16, "bf16 answer" if bf16 else "float32 answer"
    (run / "eval_generations.jsonl").write_text(gens.to_json(orient="records", lines=True))
    m = json.loads((run / "metrics.json").read_text())
    write_json(run / "metrics.json", {**m, "weights_dtype": "float32", "autocast_bf16": bf16,
                                      "verified_success_ref": float(bf16)})


def test_the_paired_table_and_samples_give_each_precision_its_reference_and_each_recipe_its_own_delta(tmp_path):
    """Recipe a ran in float32 (its untrained model passes no prompt), b under bf16 autocast (passes every one).
    The paired table's 'untrained reference' row was a's alone, unlabelled, and b's Δ vs untrained was taken
    from a's reference too: b, which loses prompts its own untrained model passes, was called better than the
    untrained model. samples.md showed a's reference answer alone, unlabelled."""
    root = tmp_path / "results"
    two_recipes_three_seeds(root, {(r, s): (lambda run, bf16=r == "b": in_precision(run, bf16))
                                   for r in "ab" for s in (1, 2, 3)})
    compare.rebuild(root)
    text = (root / "summary.md").read_text()
    paired = text.split("| recipe | reward_auc [95% CI]", 1)[1].split("\n\n", 1)[0]
    assert "| untrained reference (float32) | 0.5 [0.5, 0.5] | |  | 0 [0, 0] |" in paired
    assert "| untrained reference (float32 + bf16 autocast) | 0.5 [0.5, 0.5] | |  | 1 [1, 1] |" in paired
    assert "| untrained reference |" not in paired
    b = next(line for line in paired.splitlines() if line.startswith("| b | ")).split(" | ")
    assert float(b[5].split()[0]) == pytest.approx(float(b[4].split()[0]) - 1)  # b's Δ: from its own reference
    assert "better than the untrained model: a; worse than it: b." in text
    assert "each recipe's Δ vs untrained is from its own precision's" in text
    samples = (root / "samples.md").read_text()
    assert "**untrained reference (float32)** (fail)\n\n> float32 answer" in samples
    assert "**untrained reference (float32 + bf16 autocast)** (pass)\n\n> bf16 answer" in samples
    assert "**untrained reference** (" not in samples


def test_the_heldout_plot_of_runs_in_two_precisions_gets_a_reference_bar_each(tmp_path, monkeypatch):
    """The tables gave each precision its reference; the held-out bars drew one, unlabelled: the paired
    analysis' first recipe's (float32: verified_success 0) beside b, whose own untrained model passes all."""
    from prefopt import plots

    drawn = {}
    figure = plots.metrics_figure
    monkeypatch.setattr(plots, "metrics_figure", lambda *a, **k: drawn.setdefault("fig", figure(*a, **k)))
    root = tmp_path / "results"
    two_recipes_three_seeds(root, {(r, s): (lambda run, bf16=r == "b": in_precision(run, bf16))
                                   for r in "ab" for s in (1, 2, 3)})
    compare.rebuild(root)
    ax = next(ax for ax in drawn["fig"].axes if ax.get_title().startswith("verified_success"))
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[-2:] == ["reference (float32)", "reference (float32 + bf16 autocast)"]
    assert [b.get_height() for b in ax.patches][-2:] == [0.0, 1.0]


def test_one_recipes_seeds_in_two_precisions_are_kept_apart_like_two_configurations(tmp_path):
    """model.dtype auto on two machines: b's seed 3 ran under bf16 autocast, its seeds 1 and 2 in float32, all
    with one configuration id. Their mean was one row 'b', over untrained models that answer differently."""
    root = tmp_path / "results"
    two_recipes_three_seeds(root, {(r, s): (lambda run, bf16=(r, s) == ("b", 3): in_precision(run, bf16))
                                   for r in "ab" for s in (1, 2, 3)})
    compare.rebuild(root)
    summary = pd.read_csv(root / "summary.csv").dropna(subset=["n_seeds"])
    assert dict(zip(summary["recipe"], summary["n_seeds"])) == {"a": 3, "b [float32]": 2, "b [float32 + bf16 autocast]": 1}
    text = (root / "summary.md").read_text()
    assert "| b [float32 + bf16 autocast] | " in text and "| b | " not in text
    assert "(float32: a, b [float32]; float32 + bf16 autocast: b [float32 + bf16 autocast])" in text


def test_the_family_table_names_the_runs_it_leaves_out_for_another_generation_test(tmp_path):
    """read_generations keeps the runs on the generation test most runs took; b's seed 3 answered 10 prompts
    of the 30 and dropped out of the per-family table without a word there."""
    def smaller(run):
        in_precision(run, False)
        lines = (run / "eval_generations.jsonl").read_text().splitlines()[:10]
        (run / "eval_generations.jsonl").write_text("\n".join(lines) + "\n")

    root = tmp_path / "results"
    two_recipes_three_seeds(root, {(r, s): smaller if (r, s) == ("b", 3) else (lambda run: in_precision(run, False))
                                   for r in "ab" for s in (1, 2, 3)})
    compare.rebuild(root)
    family = (root / "summary.md").read_text().split("Verified pass rate per constraint family", 1)[1].split("\n\n")
    assert any(part.startswith("Left out: b seed 3 (took another generation test") for part in family[:5])


def test_a_save_to_disk_folder_named_two_ways_is_one_test(tmp_path, monkeypatch):
    """data.path may be a datasets.save_to_disk folder, not a file: named `data/ds` by one run and by its
    absolute path by another, it was still two tests (only a file was resolved), its recipes never compared."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "ds").mkdir(parents=True)
    runs = pd.DataFrame([fake_metrics(r, 1, FP_A, 0.6) for r in ("a", "b")] + [fake_metrics("c", 1, FP_A, 0.6)])
    runs["data_path"] = ["data/ds", str(tmp_path / "data" / "ds"), "data/other"]  # (other: a second file)
    tests = compare.with_test(runs)
    assert tests.loc[0, "test"] == tests.loc[1, "test"] != tests.loc[2, "test"]
