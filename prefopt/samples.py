"""What the verified numbers mean: pass rates per constraint family, and side-by-side sample answers.

Both are built from the runs' eval_generations.jsonl (one line per test prompt: prompt, constraint, the
policy's and the reference's greedy text and pass/fail). Pure functions on DataFrames plus a reader; no
torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SAMPLES = 12  # prompts shown in samples.md
SAMPLE_SEED = 42  # the training seed whose answers are shown (the smallest seed when a recipe lacks it)


def read_generations(split: pd.DataFrame) -> pd.DataFrame:
    """Every generation record of the split's runs, with the run's group and seed (empty when none)."""
    frames = []
    for row, kind in zip(split.itertuples(), precisions(split)):
        g = read_generation_file(Path(row.run_dir) / "eval_generations.jsonl")
        if g is not None and "prompt_id" in g:
            frames.append(g.assign(group=row.group, seed=row.seed, precision=kind))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    # one generation test: the prompt set most runs used (as prefopt.paired does for verified_success)
    sets = {run: tuple(sorted(g["prompt_id"])) for run, g in out.groupby(["group", "seed"])}
    common = pd.Series(list(sets.values())).value_counts().index[0]
    out = out[[sets[(g, s)] == common for g, s in zip(out["group"], out["seed"])]].reset_index(drop=True)
    # the constraint family (IFEval's instruction id); other verifiers' records form one family
    out["family"] = out["constraint"].map(lambda c: c.get("id", "-") if isinstance(c, dict) else "-") \
        if "constraint" in out else "-"
    # the runs left out, for the tables to name (prefopt.paired names them too, in its own section)
    out.attrs["other_test"] = [f"{g} seed {s}" for (g, s), ids in sorted(sets.items()) if ids != common]
    return out


def precision(run) -> str | None:
    """The precision a run generated in (the weights' dtype, and bf16 autocast where it trained under it): the
    untrained model's greedy answers differ with it. None where the run did not record it."""
    weights, autocast = getattr(run, "weights_dtype", None), getattr(run, "autocast_bf16", None)
    if pd.isna(weights) and pd.isna(autocast):
        return None
    return (weights if isinstance(weights, str) else "?") + (" + bf16 autocast" if not pd.isna(autocast) and bool(autocast) else "")


UNRECORDED = "precision not recorded"


def precisions(runs: pd.DataFrame) -> list[str | None]:
    """Each run's precision (`precision`) where the runs recorded several, UNRECORDED for a run that recorded
    none; None for every run where they recorded one or none: one untrained model then stands for all."""
    kinds = [precision(r) for r in runs.itertuples()]
    if len({k for k in kinds if k is not None}) < 2:
        return [None] * len(kinds)
    return [k or UNRECORDED for k in kinds]


def read_generation_file(file: Path) -> pd.DataFrame | None:
    """A run's eval_generations.jsonl; None where it is absent or cannot be read whole (cut short or edited:
    the runner writes it atomically), which leaves the run out of the generation tables, not the rebuild
    stopped by a traceback."""
    try:
        return pd.DataFrame([json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()])
    except (OSError, UnicodeDecodeError, ValueError):  # (json's JSONDecodeError is a ValueError)
        return None


def family_table(gens: pd.DataFrame) -> list[str]:
    """Markdown: strict per-prompt pass rate per constraint family (IFEval's convention), for every recipe
    (mean over its seeds) and the untrained reference."""
    if gens.empty or "constraint" not in gens:
        return []
    rates = gens.groupby(["group", "family"])["policy_pass"].mean().unstack("family")
    overall = gens.groupby("group")["policy_pass"].mean()
    refs = references(gens)
    first = next(iter(refs.values()))
    prompts = first.groupby("family")["prompt_id"].nunique()
    families = list(prompts.sort_values(ascending=False).index)
    lines = ["Verified pass rate per constraint family (strict, per prompt; mean over seeds):", "",
             "| recipe | all | " + " | ".join(f"{f} ({prompts[f]})" for f in families) + " |",
             "|---|---:|" + "---:|" * len(families)]
    for group in overall.sort_values(ascending=False).index:
        lines.append(f"| {group} | {overall[group]:.3f} | " + " | ".join(f"{rates.loc[group, f]:.3f}" for f in families) + " |")
    for label, ref in refs.items():
        rate = ref.groupby("family")["reference_pass"].mean()
        lines.append(f"| untrained reference{label} | {ref['reference_pass'].mean():.3f} | "
                     + " | ".join(f"{rate[f]:.3f}" for f in families) + " |")
    recorded = "policy_ended" in gens and gens["policy_ended"].notna().all()
    if recorded:  # where the token budget bites: a cut-off answer passes only a constraint it already settles
        for name, frame, column in (("recipes' answers", gens, "policy_ended"),
                                    *((f"reference's{label}", ref, "reference_ended") for label, ref in refs.items())):
            cut = ~frame[column].astype(bool)
            lines.append(f"| *cut off by the budget: {name}* | {cut.mean():.3f} | " + " | ".join(
                f"{cut[frame['family'] == f].mean():.3f}" for f in families) + " |")
    lines += ["", f"({len(first)} prompts; in brackets, prompts per family.)"]
    if gens.attrs.get("other_test"):
        lines += ["", "Left out: " + ", ".join(gens.attrs["other_test"]) + " (took another generation test than "
                  "the one most runs took, so their answers are to other prompts)."]
    if len(refs) > 1:
        ran = gens.drop_duplicates(["group", "precision"]).groupby("precision", sort=True)["group"].agg(", ".join)
        lines += ["", f"These runs generated in {len(refs)} precisions, and the untrained model can answer "
                  "differently in each: a reference row per precision, each from one of its runs; compare a "
                  "recipe with its own precision's (" + "; ".join(f"{p}: {g}" for p, g in ran.items()) + ")."]
    if not recorded:
        lines += ["", "These answers were judged as given, cut off by `eval.max_new_tokens` or not: the runs predate "
                  "2026-12-01, when prefopt began to record which answers ended. A cut-off answer meets 'at most N "
                  "words' whatever the model would have gone on to write, and rarely 'end with ...' or 'one JSON "
                  "object'; runs since pass a cut-off answer only where no continuation could undo the pass. "
                  "Rerun (`--force`) for strict verdicts; `scripts/rejudge_strict.py` estimates them meanwhile."]
    return lines + [""]


def reference_groups(groups, kinds) -> dict:
    """precision -> the group whose runs stand for the untrained model in it, from each run's group and
    precision (`precisions`; None throughout where one stands for all): the first by name. Every run of one
    precision holds the same untrained model, so any would do; one rule keeps the family table, samples.md
    and the paired table (prefopt.stats.reference_runs) on the same runs. Ordered by precision."""
    first = {}
    for group, kind in zip(groups, kinds):
        kind = None if pd.isna(kind) else kind
        first[kind] = min(first.get(kind, group), group)
    return dict(sorted(first.items(), key=lambda item: item[0] or ""))


def references(gens: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """label -> the untrained model's records: one run's (`reference_groups`' group, its smallest seed), or
    one per precision where the runs generated in several (`precisions`), labelled by it."""
    kinds = gens["precision"] if "precision" in gens else [None] * len(gens)
    out = {}
    for kind, group in reference_groups(gens["group"], kinds).items():
        first = gens[(gens["group"] == group) & (True if kind is None else gens["precision"] == kind)]
        out["" if kind is None else f" ({kind})"] = first[first["seed"] == first["seed"].min()]
    return out


def pick_prompts(gens: pd.DataFrame, n: int = SAMPLES) -> list[str]:
    """n prompt ids spread over the constraint families (round-robin, families by size), fixed: the same
    prompts whatever the results (ordered by id within a family)."""
    by_family = gens.drop_duplicates("prompt_id").sort_values("prompt_id").groupby("family")["prompt_id"].apply(list)
    order = sorted(by_family.index, key=lambda f: (-len(by_family[f]), f))
    chosen, depth = [], 0
    while len(chosen) < n and any(depth < len(by_family[f]) for f in order):
        chosen += [by_family[f][depth] for f in order if depth < len(by_family[f])][: n - len(chosen)]
        depth += 1
    return chosen


def _text(prompt) -> str:
    if isinstance(prompt, list):
        return "\n".join(m.get("content", "") for m in prompt if m.get("role") == "user")
    return prompt if isinstance(prompt, str) else "(prompt not recorded)"


def _quote(text: str) -> str:
    text = text.strip() or "(empty)"
    return "\n".join("> " + line for line in text.splitlines())


def samples_markdown(gens: pd.DataFrame, fp: str, n: int = SAMPLES) -> str:
    """samples.md for one split: each picked prompt, its constraint, the reference's answer and every
    recipe's (seed SAMPLE_SEED), each marked pass or fail."""
    seeds = gens.groupby("group")["seed"].agg(lambda s: SAMPLE_SEED if SAMPLE_SEED in set(s) else min(s))
    shown = gens[gens["seed"] == gens["group"].map(seeds)]
    picked = pick_prompts(gens, n)  # fewer than n where the generation test has fewer prompts (a user's own file)
    lines = [f"# Sample answers, split `{fp}`", "",
             f"{len(picked)} fixed test prompts spread over the constraint families; for each, the untrained reference's "
             f"greedy answer and every recipe's (training seed {SAMPLE_SEED} where it exists), with the verifier's "
             "pass/fail. Generations are cut at the recipe's eval.max_new_tokens.", ""]
    mark = {True: "pass", False: "fail"}
    kinds = "precision" in shown and shown["precision"].notna().any()
    stand = reference_groups(shown["group"], shown["precision"] if kinds else [None] * len(shown))
    if kinds:  # (`precisions`: set only where the runs generated in several)
        lines += ["These runs generated in several precisions, in which the untrained model can answer differently: "
                  "its answer in each is shown, labelled by it.", ""]
    for k, pid in enumerate(picked, 1):
        rows = shown[shown["prompt_id"] == pid].sort_values("group")
        first = rows.iloc[0]
        lines += [f"## {k}. {first['family']}", "", _quote(_text(first.get("prompt", "(prompt not recorded)"))), ""]
        lines += [f"Constraint: `{json.dumps(first['constraint'], sort_keys=True)}`", ""] if "constraint" in first else []
        for kind, group in stand.items():
            ref = rows[(rows["group"] == group) & (True if kind is None else rows["precision"] == kind)].iloc[0]
            lines += [f"**untrained reference{'' if kind is None else f' ({kind})'}** "
                      f"({mark[bool(ref['reference_pass'])]})", "", _quote(ref["reference_text"]), ""]
        for r in rows.itertuples():
            lines += [f"**{r.group}** (seed {r.seed}, {mark[bool(r.policy_pass)]})", "", _quote(r.policy_text), ""]
    return "\n".join(lines) + "\n"
