"""The paired, prompt-clustered comparison of one held-out split, for summary.md.

Reads each finished run's per-item records (eval_items.csv, eval_generations.jsonl), aligns them on the
split's prompts and rows, runs prefopt.stats on them and renders the verdict and tables. Runs without
records (made before prefopt kept them) are listed and left out. No torch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import stats
from .samples import precision, precisions

SEED = 0  # the bootstrap and permutation seed, printed with every table
RESAMPLES = 2000
SHOWN = ("reward_auc", "verified_success", "kl", "desirable_nll")
MATRICES = ("reward_auc", "verified_success")


def load(split: pd.DataFrame) -> tuple[dict[str, list[stats.Run]], dict[str, int], list[str]]:
    """(group -> runs in seed order, prompts per metric, runs left out). The verified test may run on its
    own prompt file: its prompts are then a cluster set of their own, resampled on their own.

    Cross-fitted runs (data.folds > 1; `split` holds the folds of one partition) are pooled per recipe and
    seed: the k folds' held-out records together score every prompt once, each by the model that did not
    train on it, and form one run of the statistics (reward_auc then compares rows within a fold: see
    stats.Run.block); their generation records are kept fold by fold, so with a shared generation test
    (eval.prompts) a prompt's k generations move together in a resample.
    A recipe and seed missing a fold is left out (its prompts would not match the others')."""
    records, missing = [], []
    folds = int(split["folds"].max()) if "folds" in split and split["folds"].notna().any() else 1
    kinds = pd.Series(precisions(split), index=split.index, dtype=object)  # (with_groups: one per group)
    kind = {}  # (group, seed) -> its precision, where the split's runs ran in several
    for (group, seed), runs in split.sort_values(["group", "seed"]).groupby(["group", "seed"], sort=False):
        if folds > 1 and runs["fold"].nunique() < folds:
            have = sorted(int(f) for f in runs["fold"].dropna().unique())
            missing.append(f"{group} seed {seed} (folds {', '.join(map(str, have))} of {folds} finished)")
            continue
        if folds > 1:
            runs = runs.drop_duplicates("fold").sort_values("fold")  # (one run per fold: the same partition)
        parts = [_records(d) for d in runs["run_dir"]]
        damaged = [p for p in parts if isinstance(p, str)]
        if any(p is None for p in parts) or damaged:
            missing.append(f"{group} seed {seed}" + (f" ({damaged[0]})" if damaged else ""))
            continue
        items = pd.concat([i.assign(block=k) for k, (i, _) in enumerate(parts)], ignore_index=True)
        records.append((group, seed, items, [g for _, g in parts]))
        kind[group, seed] = kinds[runs.index[0]]
    # the statistics pair runs row by row: every run must have scored the same rows (row id, prompt, label,
    # fold). A run that scored others (made from other data or another split) is left out, named, rather
    # than compared row against unrelated row
    def rows(items):
        return tuple(map(tuple, items[["row_id", "prompt_id", "label", "block"]].astype(str).to_numpy()))

    usual = Counter(rows(items) for *_, items, _ in records).most_common(1)
    missing += [f"{group} seed {seed} (scored other held-out rows than the rest)"
                for group, seed, items, _ in records if rows(items) != usual[0][0]]
    records = [r for r in records if rows(r[2]) == usual[0][0]]
    # the unit that varies is the question: prompts asking the same one (other spacing, case or form) are one
    # cluster. Records from before prefopt kept question ids cluster by prompt (all runs alike)
    key = _cluster_key([items for *_, items, _ in records])
    prompts = sorted({p for _, _, items, _ in records for p in items[key]})
    index = {p: i for i, p in enumerate(prompts)}
    # verified_success compares runs on one generation test: the prompt set most runs used (a run on another
    # set, e.g. from before eval.prompts changed, keeps its row metrics and is left out of this one)
    # A run's test is its folds' generations together: with eval.prompts every fold took the same prompts
    # (each then appears k times), without it each fold generated for its own held-out prompts (each once).
    def pooled(gens):
        return tuple(sorted(p for g in gens for p in g["prompt_id"]))

    sets = Counter(pooled(gens) for *_, gens in records if any(len(g) for g in gens))
    chosen = sets.most_common(1)[0][0] if sets else ()
    used = [g for *_, gens in records if chosen and pooled(gens) == chosen for g in gens]
    gen_key = _cluster_key(used)
    gen_prompts = sorted({q for g in used for q in g[gen_key]})
    gen_index = {q: i for i, q in enumerate(gen_prompts)}
    runs: dict[str, list[stats.Run]] = {}
    for group, seed, items, gens in records:
        same = bool(chosen) and pooled(gens) == chosen
        if chosen and not same:  # its other metrics stay; verified_success is compared without it
            why = ("took another generation test" if any(len(g) for g in gens) else
                   "its eval_generations.jsonl cannot be read; rerun it with --force"
                   if any(g.attrs.get("damaged") for g in gens) else "has no generation records")
            missing.append(f"{group} seed {seed} from verified_success only ({why})")
        gens = pd.concat(gens, ignore_index=True) if same else gens[0].iloc[:0]
        runs.setdefault(group, []).append(stats.Run(
            prompt=items[key].map(index).to_numpy(), label=items["label"].to_numpy(bool),
            logp=items["logp"].to_numpy(float), ref_logp=items["ref_logp"].to_numpy(float),
            tokens=items["tokens"].to_numpy(float), kl_sum=items["kl_sum"].to_numpy(float),
            block=items["block"].to_numpy(int) if folds > 1 else None,  # the fold whose model scored the row
            gen_prompt=gens[gen_key].map(gen_index).to_numpy(int), policy_pass=gens["policy_pass"].to_numpy(bool),
            reference_pass=gens["reference_pass"].to_numpy(bool), seed=int(seed), precision=kind[group, seed]))
    counts = {m: len(gen_prompts) if m == "verified_success" else len(prompts) for m in SHOWN}
    raw = {"reward_auc": len({p for *_, items, _ in records for p in items["prompt_id"]}),
           "verified_success": len(set(chosen))}
    counts["merged"] = {m: raw[m] - counts[m] for m in raw if raw[m] > counts[m]}  # prompts sharing a question
    return runs, counts, missing


def _cluster_key(frames) -> str:
    return "question_id" if frames and all("question_id" in f for f in frames) else "prompt_id"


ITEM_COLUMNS = ["row_id", "prompt_id", "label", "logp", "ref_logp", "tokens", "kl_sum"]


def _records(run_dir: str) -> tuple[pd.DataFrame, pd.DataFrame] | str | None:
    """(held-out rows, generations) of one run, sorted by id; None without per-item records; a sentence saying
    why where eval_items.csv is there but cannot be used whole (cut short, emptied, edited by hand: the runner
    writes it atomically, so only that lands here), so that the run is left out by name, not the comparison
    stopped by a traceback or the run taken for one that scored other rows. Generations that cannot be read
    leave only verified_success (an empty frame; load names it)."""
    from .samples import read_generation_file

    items_file = Path(run_dir) / "eval_items.csv"
    if not items_file.is_file():
        return None
    fix = "its eval_items.csv cannot be used ({}); rerun it with --force"
    try:
        items = pd.read_csv(items_file)
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        return fix.format(str(e).splitlines()[0] if str(e) else type(e).__name__)
    absent = [c for c in ITEM_COLUMNS if c not in items]
    if absent:
        return fix.format(f"no column {', '.join(absent)}")
    if items[ITEM_COLUMNS].isna().any().any() or not pd.api.types.is_bool_dtype(items["label"]):
        return fix.format("empty or unreadable cells: cut short or edited")
    gen_file = Path(run_dir) / "eval_generations.jsonl"
    gens = read_generation_file(gen_file)
    if gens is None or not {"prompt_id", "policy_pass", "reference_pass"} <= set(gens.columns):
        damaged = gen_file.exists() if gens is None else len(gens) > 0  # (an empty file: no prompt to verify)
        gens = pd.DataFrame(columns=["prompt_id", "policy_pass", "reference_pass"])
        gens.attrs["damaged"] = damaged
    return items.sort_values("row_id", ignore_index=True), gens.sort_values("prompt_id", ignore_index=True)


def runs_for(metric: str, runs: dict[str, list[stats.Run]]) -> dict[str, list[stats.Run]]:
    """The runs a metric compares: for verified_success those that took the common generation test (the
    others are named in load), for the row metrics all."""
    if metric != "verified_success":
        return runs
    return {g: kept for g, rs in runs.items() if (kept := [r for r in rs if len(r.gen_prompt)])}


def comparisons(runs: dict[str, list[stats.Run]], n_prompts: dict[str, int]) -> dict[str, stats.Comparison]:
    out = {}
    for metric in SHOWN:
        chosen = runs_for(metric, runs)
        if chosen:
            out[metric] = stats.compare(chosen, metric, n_prompts[metric], n_resamples=RESAMPLES, seed=SEED)
    return out


def _num(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}" if abs(x) >= 0.01 \
        else f"{x:.2g}"


def _ci(value, lo, hi) -> str:
    return f"{_num(value)} [{_num(lo)}, {_num(hi)}]"


@dataclass
class Analysis:
    runs: dict  # group -> runs in seed order
    n_prompts: dict  # metric -> prompts it rests on
    missing: list  # runs left out: no records, folds missing, or other rows scored
    results: dict  # metric -> stats.Comparison
    folds: int = 1  # cross-fitting: the k folds of each recipe and seed pooled into one run


def analyze(split: pd.DataFrame) -> Analysis:
    """Records and statistics of one split (computed once, for the summary and the plots)."""
    runs, n_prompts, missing = load(split)
    folds = int(split["folds"].max()) if "folds" in split and split["folds"].notna().any() else 1
    return Analysis(runs, n_prompts, missing, comparisons(runs, n_prompts) if runs else {}, folds)


def baseline_lines(split: pd.DataFrame, results: dict, alpha: float = 0.05) -> list[str]:
    """'Did a preference method beat the SFT baseline?': each recipe against every recipe trained by
    supervised fine-tuning alone (method sft), from the same Holm-adjusted pairwise tests."""
    baselines = sorted(set(split.loc[split["method"] == "sft", "group"])) if "method" in split else []
    out = []
    for base in baselines:
        for metric in MATRICES:
            c = results.get(metric)
            if c is None or base not in c.estimates or len(c.estimates) < 2:
                continue
            better, worse, tied = [], [], []
            for other in (g for g in c.estimates if g != base):
                key, sign = ((other, base), 1) if (other, base) in c.pairwise else ((base, other), -1)
                delta, _, _, _, p_holm, *_ = c.pairwise[key]
                ahead = sign * delta > 0 if metric not in ("kl", "desirable_nll") else sign * delta < 0
                (better if ahead and p_holm < alpha else worse if p_holm < alpha else tied).append(
                    f"{other} {sign * delta:+.3g}" + (f" (Holm p {stats.format_p(p_holm)})" if p_holm < alpha else ""))
            out.append(f"- Against the SFT baseline {base} on {metric}: "
                       + "; ".join(t for t in (f"better: {', '.join(better)}" if better else "",
                                               f"worse: {', '.join(worse)}" if worse else "",
                                               f"tied: {', '.join(tied)}" if tied else "") if t) + ".")
    return out


def tuned_record(runs: pd.DataFrame) -> dict | None:
    """The `tuned` record (source recipe, trials, chosen values) of a group's runs; None if not tuned."""
    return next((v for v in runs["tuned"] if isinstance(v, dict)), None) if "tuned" in runs else None


def tuned_pairs(split: pd.DataFrame, groups) -> list[tuple[str, str]]:
    """(tuned group, the untuned group of the recipe it was tuned from) for each tuned recipe on this split
    whose source recipe ran here with one configuration."""
    if "tuned" not in split:
        return []
    pairs = []
    for group, g in split.groupby("group", sort=True):
        t = tuned_record(g)
        if t is None or group not in groups:
            continue
        plain = _source_groups(split, g, t)
        if len(plain) == 1 and plain[0] in groups:
            pairs.append((group, plain[0]))
    return pairs


def _source_groups(split: pd.DataFrame, tuned: pd.DataFrame, t: dict) -> list[str]:
    """The groups of the untuned recipe a tuned group was tuned from, in the tuned runs' precision where one
    configuration ran in several (with_groups keeps them apart): a precision is not another configuration,
    and a tuned bf16 recipe is measured against the untuned one in bf16."""
    plain = split[(split["recipe"] == t["recipe"]) & ~split["tuned"].map(lambda v: isinstance(v, dict))]
    kinds = {precision(r) for r in tuned.itertuples()}
    if plain["config"].nunique() == 1 and len(kinds) == 1:
        same = plain[[precision(r) in kinds for r in plain.itertuples()]]
        plain = same if len(same) else plain
    return sorted(plain["group"].unique())


def unpaired_tuned(split: pd.DataFrame, groups, pairs) -> list[str]:
    """The tuned recipes of this split that tuned_pairs could not pair, each with why: their source recipe has
    no run compared here (not run on this test, renamed since, its runs left out) or several configurations."""
    if "tuned" not in split:
        return []
    paired = {t for t, _ in pairs}
    out = []
    for group, g in split.groupby("group", sort=True):
        t = tuned_record(g)
        if t is None or group not in groups or group in paired:
            continue
        configs = len(_source_groups(split, g, t))
        out.append(f"{group} ({t['recipe']} " + (f"ran here in {configs} configurations: which one was tuned "
                                                  "is not known)" if configs > 1 else
                                                  "has no run compared on this test)"))
    return out


def tuning_lines(split: pd.DataFrame, a: Analysis, alpha: float = 0.05) -> list[str]:
    """Did tuning move each recipe? Tuned minus untuned, paired by prompt, Holm over these pairs alone (the
    question asked of them), per quality metric. A tuned recipe without its source here is named, not
    silently missing from the table."""
    pairs = tuned_pairs(split, a.runs)
    alone = unpaired_tuned(split, a.runs, pairs)
    alone = [f"Not compared with the recipe it was tuned from: {', '.join(alone)}.", ""] if alone else []
    if not pairs:
        return alone
    found = {}
    for metric in MATRICES:
        if metric not in a.results:
            continue
        chosen = [p for p in pairs if all(g in a.results[metric].estimates for g in p)]
        if chosen:
            # the runs compare() compared: a seed without generation records would make the pair's
            # verified_success NaN
            found[metric] = stats.differences(runs_for(metric, a.runs), chosen, metric, a.n_prompts[metric],
                                              n_resamples=RESAMPLES, seed=SEED)
    lines = [f"Tuned against untuned: each tuned recipe minus the recipe it was tuned from, paired by prompt, "
             f"Holm-adjusted over the pairs each metric could test (seed {SEED}, {RESAMPLES} resamples):", ""]
    for metric, d in found.items():
        moved = {"better": [], "worse": [], "tied": []}
        for (tuned, plain), (delta, _, _, _, p_holm, *_) in d.items():
            word = "tied" if not p_holm < alpha else "better" if delta > 0 else "worse"  # (NaN: undecided)
            holm = f" (Holm p {stats.format_p(p_holm)})" if p_holm < alpha else ""
            moved[word].append(f"{tuned} {delta:+.3g}{holm}")
        lines.append(f"- {metric} ({len(d)} pairs): " + "; ".join(f"{w}: {', '.join(v)}" for w, v in moved.items() if v) + ".")
    lines += ["", "| tuned | from | " + " | ".join(f"{m} tuned | untuned | Δ [95% CI] | Holm p" for m in found) + " |",
              "|---|---|" + "---|---|---|---|" * len(found)]
    for tuned, plain in pairs:
        cells = []
        for metric, d in found.items():
            if (tuned, plain) not in d:
                cells += ["n/a"] * 4
                continue
            est = a.results[metric].estimates
            delta, lo, hi, _, p_holm, *_ = d[(tuned, plain)]
            cells += [_num(est[tuned][0]), _num(est[plain][0]), _ci(delta, lo, hi), stats.format_p(p_holm)]
        lines.append(f"| {tuned} | {plain} | " + " | ".join(cells) + " |")
    return lines + ["", *alone]


def seed_text(results: dict, seeds: list[int]) -> str:
    """What the seeds let the p-values say: about the recipes (seed effect estimated) or only about these
    trained models (one seed each)."""
    if seeds == [1]:
        return ("With one seed per recipe the seed effect cannot be estimated: intervals and p-values say how "
                "sure the held-out prompts make the comparison of these trained models, not of the recipes.")
    parts = []
    for m, c in results.items():
        s = c.seeds
        if s is None or not s.df:
            continue
        larger = [f"{r} {_num(math.sqrt(s.own[r][0]))}" for r in s.own if s.spreads_more(r)]
        parts.append(f"{m} {_num(math.sqrt(s.pooled))} ({s.df} df)"
                     + (f"; own, larger: {', '.join(larger)}" if larger else ""))
    return ("A recipe is a distribution over training seeds, so the p-values carry the seed effect too: how far a "
            "seed's model moves a metric beyond what the prompts explain (sd pooled over recipes, or a recipe's "
            "own where its seeds spread more than the others', F test at 0.1: " + "; ".join(parts) + "). Three "
            "seeds estimate it poorly: a recipe whose seeds disagree is tested on its own seeds' df (2 for three) "
            "and seldom decided; more seeds are the remedy.")


def verdict_lines(a: Analysis) -> list[str]:
    """The split's verdict on the quality metrics (summary.md opens with these), from the Holm-adjusted tests."""
    lines = [f"- {stats.verdict(c)}" for m, c in a.results.items() if m in MATRICES]
    if a.missing:  # a reader of the verdict alone would take it for every run's
        one = len(a.missing) == 1
        lines.append(f"- {len(a.missing)} run{' is' if one else 's are'} left out of these comparisons or of one "
                     f"metric (its section names {'it' if one else 'them'} and says why).")
    return lines


def mcnemar_lines(a: Analysis) -> list[str]:
    """verified_success of each trained model (recipe and seed) against the untrained model's answers to the
    same prompts: exact McNemar, one greedy answer per prompt each. Cross-fitted runs pool k models' answers
    (with a shared generation test, k per prompt): no such pairing, no line."""
    chosen = runs_for("verified_success", a.runs)
    if a.folds > 1 or "verified_success" not in a.results or not chosen:
        return []
    lines = ["verified_success of each seed's model against the untrained model on the same prompts (exact McNemar, "
             "two-sided, per trained model and not adjusted for multiplicity; gained: prompts it passes that the "
             "untrained model fails, lost: the reverse):", ""]
    for group in sorted(chosen):
        cells = []
        for r in chosen[group]:
            gained, lost, p = stats.mcnemar(r.policy_pass, r.reference_pass)
            cells.append(f"seed {r.seed}: gained {gained}, lost {lost}, p {stats.format_p(p)}")
        lines.append(f"- {group}: " + "; ".join(cells) + ".")
    return lines + [""]


def unvalued_lines(results: dict) -> list[str]:
    """Per metric whose bootstrap drew resamples without a value (stats.Comparison.unvalued): how many of them
    its intervals leave out, or an interval over fewer draws reads as one over all. Nothing where none were."""
    why = {"reward_auc": "drew prompts of one label only, which have no AUC",
           "desirable_nll": "drew no desirable row"}
    said = [f"{c.metric}: up to {c.unvalued} of {c.n_resamples} resamples have no value ("
            f"{why.get(c.metric, 'the statistic is undefined on them')}) and are left out of its intervals, which "
            "are over the resamples that have one; more held-out prompts, or prompts holding both labels, leave "
            "fewer out." for c in results.values() if c.unvalued]
    return [*said, ""] if said else []


def merged_text(n_prompts: dict) -> str:
    merged = n_prompts.get("merged") or {}
    if not merged:
        return ""
    parts = [f"{n} more {'held-out' if m == 'reward_auc' else 'generation-test'} prompt{'s' * (n != 1)}"
             for m, n in merged.items()]
    return (f"Prompts asking the same question (other spacing, case or form) count as one: the counts above leave "
            f"out {' and '.join(parts)} that ask a question another prompt asks. ")


def section(split: pd.DataFrame, analysis: Analysis | None = None) -> list[str]:
    """How the verdict was reached, the per-recipe table and the pairwise matrices of one split (markdown
    lines; the verdict itself opens summary.md: `verdict_lines`)."""
    a = analysis or analyze(split)
    runs, n_prompts, missing, results = a.runs, a.n_prompts, a.missing, a.results
    if not runs:
        if a.folds > 1 and missing:
            return [f"No recipe has all {a.folds} folds of a seed yet: no paired comparison. Waiting for: "
                    f"{', '.join(missing)}.", ""]
        if missing:  # records there, none usable (damaged): say whose and why
            return [f"No paired comparison: no run's per-item records could be used: {', '.join(missing)}.", ""]
        return ["No run on this split kept per-item records: no paired comparison (rerun to get one).", ""]
    seeds = sorted({len(rs) for rs in runs.values()})
    lines = ["**How the verdict is reached**: paired by prompt; intervals from a bootstrap over prompts and seeds, "
             "p-values from a paired permutation test over prompts with the seed effect drawn in, Holm-adjusted; "
             f"seed {SEED}, {RESAMPLES} resamples.", ""]
    baselines = baseline_lines(split, results)
    lines += ["Each recipe against the SFT baseline (the same Holm-adjusted pairwise tests):", "", *baselines] \
        if baselines else []
    lines += ["", "Decisions rest on the Holm-adjusted p-values alone: a bootstrap interval that misses 0 "
              "while p >= 0.05 is not a decided difference (percentile intervals over a few dozen prompts run "
              "narrow: on simulated tables they excluded a true null about 10% of the time, not 5%). reward_auc's "
              "interval against the untrained model is a distance from 0.5, while its test measures the distance "
              "from the AUC that label shuffles within prompts give (above 0.5 when prompts differ), so an "
              "interval clear of 0 with Holm p 1.000 is no contradiction. verified_success "
              "is tested exactly (every prompt swap counted, no Monte Carlo error). On the row metrics a test "
              "whose unadjusted p is below 0.05, a pair's or a recipe's against the untrained model, is retested "
              f"on up to {stats.RETEST} x m / 0.05 fresh permutations, m the tests its Holm family holds (the "
              "pairs, or the recipes), fewer once its p is known well enough, so that Holm over many recipes can "
              "still reach 0.05 (the smallest Monte Carlo p is 1/(permutations + 1)) and a p-value near the "
              "threshold is known to about 10%.",
              "", (f"{n_prompts['reward_auc']} held-out test prompts carry" if a.folds == 1 else
                   f"Cross-fitted over {a.folds} folds: all {n_prompts['reward_auc']} labeled prompts carry, each "
                   "scored by the fold's model that did not train on it (a recipe's seed pools its folds),")
              + " the row metrics (reward_auc, kl, desirable_nll)"
              + (f", {n_prompts['verified_success']} generation-test prompts carry verified_success"
                 if "verified_success" in results else "") + "; each recipe has "
              f"{' or '.join(map(str, seeds))} seed{'s' * (seeds != [1])}. " + merged_text(n_prompts)
              + seed_text(results, seeds), ""]
    if missing:
        lines += [f"Left out (no per-item records, folds missing, other rows scored, or another generation test): {', '.join(missing)}.", ""]
    header = "| recipe | " + " | ".join(f"{m} [95% CI] | Δ vs untrained [95% CI] | Holm p" for m in results) + " |"
    lines += [header, "|---|" + "---|---|---|" * len(results)]
    for group in sorted(runs, key=lambda g: -results["reward_auc"].estimates[g][0]):
        cells = []
        for c in results.values():
            if group not in c.estimates:  # no generation records on this split's common test
                cells += ["n/a", "n/a", "n/a"]
                continue
            cells += [_ci(*c.estimates[group]), _ci(*c.vs_reference[group][:3]), stats.format_p(c.vs_reference[group][4])]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    kinds = sorted({k for c in results.values() for k in c.references or ()})
    for kind in kinds or [None]:  # a row per precision the runs ran in, where several (each recipe's Δ is from its own)
        ref = " | ".join(f"{_ci(*(c.reference if kind is None else c.references.get(kind, (math.nan,) * 3)))} | | "
                         for c in results.values())
        lines.append(f"| untrained reference{'' if kind is None else f' ({kind})'} | {ref}|")
    lines.append("")
    if kinds:
        lines += [f"These runs ran in {len(kinds)} precisions, in which the untrained model answers and scores "
                  "differently: a reference row per precision (from the first recipe's runs in it), and each "
                  "recipe's Δ vs untrained is from its own precision's.", ""]
    lines += [f"{c.metric}'s Holm p is n/a: {c.vs_note}." for c in results.values() if c.vs_note]
    lines += [""] if any(c.vs_note for c in results.values()) else []
    lines += unvalued_lines(results)
    lines += mcnemar_lines(a)
    lines += tuning_lines(split, a)
    for metric in MATRICES:
        if metric not in results or len(results[metric].estimates) < 2:
            continue
        c = results[metric]
        names = [g for g in runs if g in c.estimates]
        lines += [f"Pairwise {metric}: row minus column, [95% CI], Holm p; P(row > column) over the resamples.", "",
                  "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for a in names:
            cells = []
            for b in names:
                if a == b:
                    cells.append("")
                    continue
                key, sign = ((a, b), 1) if (a, b) in c.pairwise else ((b, a), -1)
                d, lo, hi, _, p_holm, above, below = c.pairwise[key]
                lo, hi = (lo, hi) if sign == 1 else (-hi, -lo)
                cells.append(f"{_num(sign * d)} [{_num(lo)}, {_num(hi)}] p {stats.format_p(p_holm)}, "
                             f"P {_num(above if sign == 1 else below)}")
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines
