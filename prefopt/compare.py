"""Comparison tables and plots, rebuilt from every finished run (a run directory with metrics.json).

    results/comparison.csv      one row per run
    results/summary.csv / .md   one row per recipe within each test (`test`: the split's eval fingerprint, or a
                                cross-fitting partition's): mean and
                                95% Student-t confidence interval over seeds, plus the untrained reference
    results/plots/*.png         training loss and reward margin curves, held-out metrics with CI whiskers

Table building is pure functions on DataFrames (summary.md's text: prefopt.summary; the paired statistics:
prefopt.paired and prefopt.stats; plots: prefopt.plots); `rebuild` does the I/O, under a file lock and with
atomic writes, so two runs finishing at once cannot garble the tables. No torch: this runs anywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .results import COMPARE_LOCK, clear_temporaries, finished_metrics, write_atomic
from .samples import UNRECORDED, precision, read_generations, samples_markdown

HEADLINE = "reward_auc"
PAIR_METRICS = ("preference_accuracy", "reward_margin")  # measured on held-out pairs only
QUALITY = ["reward_auc", "preference_accuracy", "reward_margin", "kl", "desirable_nll", "verified_success"]
# examples_used: training rows the method learned from (KTO all or a balanced subset, DPO/ORPO/IPO/SimPO
# the paired rows, SFT the desirable ones), so "uses more of the data" is a column, not a footnote
COST = ["examples_used", "steps", "train_seconds", "eval_seconds", "train_tokens_per_second", "peak_memory_mb"]
# what the runner counts (runner._tokens_seen): the trainer's own tokenized columns, whose layouts differ
TOKENS_NOTE = ("train_tokens_per_second counts the token ids in the rows of the trainer's own tokenized dataset, "
               "so it compares recipes of one trainer, not trainers: ORPO's and CPO's (SimPO's) rows hold the prompt "
               "once alone and again inside each completion, DPO's and KTO's hold it once, though the model reads it "
               "once per completion (twice per pair; with KTO, with the completion and the KL completion); SFT's "
               "rows are what the model reads. Compare trainers by train_seconds and steps.")
MEMORY_NOTE = ("peak_memory_mb is the GPU memory this run allocated at most on CUDA; on a CPU it is the process's "
               "peak resident memory, which a process keeps: runs sharing one process (`--engine local` with several "
               "seeds or folds) report the peak of the process so far, while separate `prefopt run`s and Ray trials (a "
               "worker process each) report their own.")
ORDER = QUALITY + ["verified_success_delta", "desirable_nll_ref", "verified_success_ref"] + COST + [
    "eval_rows", "eval_pairs", "verified_prompts"]
# the validation score of the checkpoint `eval.select: best` kept: the choice picked it for being high, so it
# runs above what the model scores on held-out data. metrics.json keeps it; the test tables never show it
CHOSEN_ON_VALIDATION = ["selected_validation_value"]
IDS = ["recipe", "config", "method", "strategy", "seed", "fold", "folds", "test", "eval_fingerprint", "run_id", "data_path"]
REFERENCE = "reference"
MARGIN_COLUMN = "rewards/margins"
LEGEND = {
    "reward_auc": "ROC AUC of r = log πθ(y|x) − log πref(y|x) (summed over completion tokens) separating "
                  "desirable from undesirable held-out completions; 0.5 is chance",
    "preference_accuracy": "share of held-out pairs (prompts with both labels) with r(chosen) > r(rejected)",
    "reward_margin": "mean r(chosen) − r(rejected) over held-out pairs",
    "kl": "mean per-token KL(πθ ‖ πref) over held-out completion tokens (over the reference's top 1,024 tokens, "
          "the rest lumped: a lower bound); lower stays closer to the start",
    "desirable_nll": "mean per-token negative log-likelihood of held-out desirable completions; lower is better",
    "verified_success": "share of the generation test's prompts (eval.prompts, else the held-out prompts) whose "
                        "greedy generation passes the recipe's verifier (strict: an answer cut off by "
                        "eval.max_new_tokens passes only a constraint no continuation could undo)",
}


# ---------------------------------------------------------------------------------------------- reading

def load_runs(results: Path) -> pd.DataFrame:
    """Every finished run under results/runs/, one row each. Unfinished runs (no metrics.json) are invisible."""
    rows = []
    for path in finished_metrics(results):
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # written atomically, so only a hand-edited file lands here
            print(f"prefopt: warning: skipping {path}: {e}", file=sys.stderr)
            continue
        if row.get("split") == "validation":  # a tuning trial: never beside the test-split results
            continue
        row["config"] = _config_id(path.parent / "recipe.yaml")
        row["run_dir"] = str(path.parent)
        rows.append(row)
    return pd.DataFrame(rows)


def _config_id(recipe_yaml: Path) -> str:
    """The resolved recipe without its seed: runs sharing it are seeds of one configuration."""
    import yaml

    try:
        recipe = yaml.safe_load(recipe_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "?"
    if isinstance(recipe, dict):  # the folds of one partition are one configuration, like seeds
        from .recipe import identity_of

        recipe = identity_of({k: v for k, v in recipe.items() if k not in ("seed", "seeds")})
        if isinstance(recipe.get("data"), dict):
            recipe["data"] = {k: v for k, v in recipe["data"].items() if k != "fold"}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:8]


def read_train_log(run_dir: str) -> pd.DataFrame | None:
    try:
        log = pd.read_csv(Path(run_dir) / "train_log.csv")
    except (OSError, ValueError):
        return None
    return log if "step" in log.columns else None


# ------------------------------------------------------------------------------------ pure table building

def metric_columns(runs: pd.DataFrame) -> list[str]:
    """Numeric, not entirely missing, not an identifier: known metrics in reading order, then any others."""
    cols = [c for c in runs.columns if c not in IDS + CHOSEN_ON_VALIDATION + ["run_dir"] and runs[c].notna().any()
            and pd.api.types.is_numeric_dtype(runs[c]) and not pd.api.types.is_bool_dtype(runs[c])]
    return [c for c in ORDER if c in cols] + sorted(c for c in cols if c not in ORDER)


def with_test(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds `test`, the held-out test a run's numbers belong to: its split's eval fingerprint, or for a
    cross-fitted run its partition (the k folds form one test, every prompt once; eval_fingerprint stays
    the fold's own rows)."""
    runs = runs.copy()
    test = runs["eval_fingerprint"]
    runs["test"] = runs["partition"].fillna(test) if "partition" in runs else test
    if "data_path" in runs:  # the fingerprints hash prompts only: files sharing prompts are still two tests
        runs["_file"] = runs["data_path"].map(same_file, na_action="ignore")
        shared = runs.groupby("test")["_file"].transform("nunique") > 1
        # a file's part of the name: the least of the ways its runs wrote it (not its resolved path, which
        # moves with the directory compare runs in)
        name = runs.groupby(["test", "_file"])["data_path"].transform(lambda p: min(map(str, p)))
        name = name.fillna(runs["data_path"].astype(str))
        runs = runs.drop(columns="_file")
        runs.loc[shared, "test"] = [f"{str(t)[:12]}-{hashlib.sha256(str(p).encode()).hexdigest()[:6]}"
                                    for t, p in zip(runs.loc[shared, "test"], name[shared])]
    return runs


def same_file(path) -> str:
    """What identifies a run's data file across the ways runs name it (`data/x.jsonl`, `./data/x.jsonl`, its
    absolute path: `--set data.path=...`): the resolved path where the file exists here (or the folder: a
    datasets.save_to_disk directory), else the path as written, tidied of `.` parts and doubled slashes only
    (`..` can pass through a link, so it stays)."""
    text = str(path)
    try:
        return str(Path(text).resolve()) if Path(text).exists() else str(Path(text))
    except (OSError, ValueError):  # a name this filesystem cannot hold: the text alone
        return text


def short_name(test) -> str:
    """A test's name in titles and file names: its fingerprint's first 12 digits, and the data file's hash
    that with_test appends when two files share the fingerprint (cut to 12, the two tests of such files would
    share one name, and one's plots would overwrite the other's)."""
    head, dash, tail = str(test).partition("-")
    return head[:12] + dash + tail


def with_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds `test` and `group`: the recipe name, plus its configuration id where one name covers several
    configurations on one test (an edited recipe), so seeds of different configurations are never averaged
    together; plus the precision where one configuration's seeds ran in several (model.dtype auto on other
    machines: one configuration id), which are kept apart the same way: the untrained model answers
    differently in each, so each group has one reference, and its seeds' spread is not precision's."""
    runs = with_test(runs)
    for col in ("method", "strategy", "config"):
        if col not in runs:
            runs[col] = None
    runs["config"] = runs["config"].fillna("?")
    n_configs = runs.groupby(["test", "recipe"])["config"].transform("nunique")
    runs["group"] = np.where(n_configs > 1, runs["recipe"] + " [" + runs["config"] + "]", runs["recipe"])
    kind = pd.Series([precision(r) or UNRECORDED for r in runs.itertuples()], index=runs.index)
    recorded = kind.where(kind != UNRECORDED)
    n_kinds = recorded.groupby([runs["test"], runs["group"]]).transform("nunique")
    runs["group"] = np.where(n_kinds > 1, runs["group"] + " [" + kind + "]", runs["group"])
    return runs


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    runs = with_test(runs)
    ids = [c for c in IDS if c in runs]
    return runs[ids + metric_columns(runs)].sort_values([c for c in ("test", "recipe", "config",
                                                                      "seed", "fold") if c in runs],
                                                        ignore_index=True)


def mean_ci(values) -> tuple[int, float, float, float]:
    """(n, mean, low, high) of the 95% Student-t interval over seeds; low/high NaN below two values."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return 0, math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return 1, mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return len(v), mean, mean - half, mean + half


def reference_values(runs: pd.DataFrame, metrics: list[str]) -> dict:
    """The untrained model: r ≡ 0, so AUC 0.5, margin and KL 0, and no pair with r(chosen) > r(rejected)."""
    known = {"reward_auc": 0.5, "preference_accuracy": 0.0, "reward_margin": 0.0, "kl": 0.0,
             "verified_success_delta": 0.0}
    if "desirable_nll_ref" in runs:
        known["desirable_nll"] = runs["desirable_nll_ref"].mean()
    if "verified_success_ref" in runs:
        known["verified_success"] = runs["verified_success_ref"].mean()
    return {m: known[m] for m in metrics if m in known}


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per recipe (group) per eval fingerprint, ranked by the headline metric, then the reference."""
    runs = with_groups(runs)
    metrics = metric_columns(runs)
    out = []
    for fp, split in runs.groupby("test", sort=True):
        split = complete_pools(split)
        if split.empty:  # a cross-fitted test with no recipe's folds all finished yet (summary.md says so)
            continue
        rows = []
        for group, g in split.groupby("group", sort=True):
            folds = fold_count(g)
            row = {"test": fp, "recipe": group, "method": _one(g["method"]),
                   "strategy": _one(g["strategy"]), "n_seeds": g["seed"].nunique(), "n_folds": folds,
                   "n_runs": len(g), "seeds": " ".join(str(s) for s in sorted(g["seed"].unique()))}
            for m in metrics:
                n, mean, low, high = mean_ci(g[m])
                if folds > 1:  # folds share most of their training data: no t-interval over them
                    low = high = math.nan
                row.update({f"{m}_mean": mean, f"{m}_ci95_low": low, f"{m}_ci95_high": high, f"{m}_n": n})
            row["note"] = ("single seed: no confidence interval" if len(g) == 1 else
                           f"cross-fitted: mean over {len(g)} runs ({folds} folds x seeds), no t-interval "
                           "(folds are not independent)" if folds > 1 else "")
            rows.append(row)
        rows.sort(key=lambda r: (is_nan(r.get(f"{HEADLINE}_mean")), -(r.get(f"{HEADLINE}_mean") or 0)))
        ref = {"test": fp, "recipe": REFERENCE, "method": "none (untrained)", "strategy": "",
               "n_seeds": math.nan, "seeds": "",
               "note": "untrained model: reward_auc, preference_accuracy, reward_margin, kl by definition "
                       "(r ≡ 0); desirable_nll and verified_success are the runs' *_ref means"}
        # no pair held out on this split (one rated completion per prompt): no reference value for the pair
        # metrics either, where the runs' cells are empty
        measured = [m for m in metrics if m not in PAIR_METRICS or split[m].notna().any()]
        ref.update({f"{m}_mean": v for m, v in reference_values(split, measured).items()})
        out.extend(rows + [ref])
    table = pd.DataFrame(out)
    counts = ["n_seeds", "n_folds", "n_runs"] + [f"{m}_n" for m in metrics]
    return table.astype({c: "Int64" for c in counts if c in table})  # the reference's blanks stay blank, not 3.0


def complete_pools(split: pd.DataFrame) -> pd.DataFrame:
    """A cross-fitted test's runs without the (recipe, seed) pools still missing a fold (the statistics
    leave them out and list them; a mean over some folds would rest on other prompts)."""
    folds = fold_count(split)
    if folds == 1 or split.empty:
        return split
    keys = ["group" if "group" in split else "recipe", "seed"]
    have = split.groupby(keys)["fold"].transform("nunique")
    return split[have >= folds]


def fold_count(runs: pd.DataFrame) -> int:
    """k for cross-fitted runs (data.folds), 1 for runs on one test split."""
    return int(runs["folds"].max()) if "folds" in runs and runs["folds"].notna().any() else 1


def _one(values: pd.Series):
    distinct = values.dropna().unique()
    return distinct[0] if len(distinct) == 1 else "/".join(map(str, distinct))


def is_nan(x) -> bool:
    return x is None or bool(pd.isna(x))


# ------------------------------------------------------------------------------------------------ I/O edge

# the names `rebuild` writes (a test's part is its short_name: hex digits, and a data file's hash after a dash),
# and nothing else: users keep their own files in results/, and only these are ever removed
_TEST = r"[0-9a-f]{1,12}(?:-[0-9a-f]{6})?"
OWN = re.compile(rf"comparison\.csv|summary\.csv|summary\.md|samples\.md|samples_{_TEST}\.md|"
                 rf"plots/(?:training_loss|reward_margin|(?:heldout|forest|pairwise)_{_TEST})\.png")


def own_files(results: Path) -> list[Path]:
    """The tables and plots an earlier `rebuild` left in `results`."""
    results = Path(results)
    found = [*results.glob("*.csv"), *results.glob("*.md"), *results.glob("plots/*.png")]
    return sorted(p for p in found if OWN.fullmatch(p.relative_to(results).as_posix()))


def rebuild(results: Path) -> list[Path]:
    """Rewrite the tables and plots from every finished run; returns the paths written ([] with no runs).
    Tables and plots of an earlier rebuild that this one does not write (a test split whose runs are gone,
    samples.md against samples_<test>.md as the number of tests changes; all of them when no run is
    finished any more) are removed: a reader would take them for current."""
    from filelock import FileLock

    results = Path(results)
    if not finished_metrics(results) and not own_files(results):
        return []
    with FileLock(str(results / COMPARE_LOCK)):
        for folder, under in ((results, ""), (results / "plots", "plots/")):  # a rebuild killed mid-write left
            clear_temporaries(folder, lambda target: bool(OWN.fullmatch(under + target)))  # them: ours alone now
        began = _filesystem_now(results)  # every run finished by now is read below; summary.md carries it
        runs = load_runs(results)
        if runs.empty:
            for old in own_files(results):
                old.unlink(missing_ok=True)
            return []
        summary = summary_table(runs)
        tests = list(summary["test"].unique()) if "test" in summary else []
        written = []

        def text(name, content):
            write_atomic(results / name, content)
            written.append(results / name)

        from .paired import analyze
        from .summary import has_records, summary_markdown

        grouped = with_groups(runs)
        splits = {fp: grouped[grouped["test"] == fp] for fp in tests}
        # the statistics take the minutes: an interrupt (Ctrl-C) or a failure in them leaves every table as the
        # last rebuild wrote it, not new csv files beside an old summary.md
        analyses = {fp: analyze(split) for fp, split in splits.items() if has_records(split)}
        markdown = summary_markdown(summary, runs, analyses)
        text("comparison.csv", comparison_table(runs).to_csv(index=False))
        text("summary.csv", summary.to_csv(index=False))
        with_gens = {fp: g for fp, split in splits.items()  # (complete pools, as every other table)
                     if {"policy_text", "reference_text"}
                     <= set((g := read_generations(complete_pools(split))).columns)}
        for fp, gens in with_gens.items():
            text("samples.md" if len(with_gens) == 1 else f"samples_{short_name(fp)}.md", samples_markdown(gens, short_name(fp)))

        from .plots import curves_figure, forest_figure, metrics_figure, pairwise_figure, png

        plots = results / "plots"
        logs = {d: read_train_log(d) for d in runs["run_dir"]}
        figures = {"training_loss.png": curves_figure(runs, logs, "loss", "training loss per run"),
                   "reward_margin.png": curves_figure(runs, logs, MARGIN_COLUMN,
                                                      f"training reward margin ({MARGIN_COLUMN}) per run")}
        figures.update({f"heldout_{short_name(fp)}.png":
                        metrics_figure(summary, fp, *((a.results, seeds_used(a)) if (a := analyses.get(fp)) else (None, None)),
                                       split=splits[fp])
                        for fp in tests})
        for fp, a in analyses.items():
            figures[f"forest_{short_name(fp)}.png"] = forest_figure(a.results, short_name(fp))
            figures[f"pairwise_{short_name(fp)}.png"] = pairwise_figure(a.results, short_name(fp))
        for name, fig in figures.items():
            if fig is not None:
                write_atomic(plots / name, png(fig))
                written.append(plots / name)
        for stale in own_files(results):
            if stale not in written and stale != results / "summary.md":  # (summary.md: rewritten next)
                stale.unlink(missing_ok=True)  # a test whose runs have since been deleted, a renamed samples file
        # summary.md last, stamped with the time the runs were read: a rebuild stopped part-way (Ctrl-C in
        # the minutes it takes) leaves it older than the newest run, so the next `prefopt run` rebuilds
        text("summary.md", markdown)
        os.utime(results / "summary.md", ns=(began, began))
    return written


def seeds_used(analysis) -> dict:
    """metric -> recipe -> how many seeds the paired analysis compared on it (what its bars rest on)."""
    from .paired import runs_for

    return {m: {g: len(rs) for g, rs in runs_for(m, analysis.runs).items()} for m in analysis.results}


def _filesystem_now(results: Path) -> int:
    """Now, as the filesystem stamps files (a new file's mtime), in ns. Not time.time_ns(): file times come
    from the kernel's coarser clock, up to a tick behind it, so a run finishing just after the rebuild read
    the runs could carry an mtime before a time_ns() stamp and be judged already in the tables."""
    import tempfile

    where = Path(results) / "cache"  # (ignored by git: a stamp file a SIGKILL left is no one's concern)
    where.mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=where, prefix=".stamp.", suffix=".tmp") as f:
        return os.fstat(f.fileno()).st_mtime_ns


def is_current(results: Path) -> bool:
    """Whether the tables hold every finished run: summary.md, written last by `rebuild`, is stamped no
    earlier than every metrics.json."""
    try:
        built = (Path(results) / "summary.md").stat().st_mtime_ns
        return all(m.stat().st_mtime_ns <= built for m in finished_metrics(results))
    except FileNotFoundError:  # no tables yet (or a run removed while looking): rebuild
        return False
