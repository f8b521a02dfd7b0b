"""Issue 12's target, eval_seconds at most 30% of train_seconds, in tokens: for each finished single-split run,
the tokens its training fed the policy against the tokens its evaluation fed it, with the measured seconds.

    python scripts/eval_share.py                               # results/, every recipe's seeds
    python scripts/eval_share.py --markdown results/eval_share.md

Both sides are counted alike, with the model's tokenizer and prefopt's own encoding (the max_length cut),
padding left out: training, every (prompt, completion) sequence of steps x batch x accumulation rows, times
its processes (a pair is two sequences): the first rows of the prepared training data, which are the rows
KTO's steps took (it reads them in order) and, for the methods whose trainer draws its rows at random (DPO,
IPO, ORPO, SimPO, SFT), a sample of the same size, not those rows themselves; evaluation, each
held-out row's prompt and completion (the reference's scores come from the cache), each test prompt
(prefilled) and each greedy answer's tokens after its first (one decode step each). A training token costs
the policy a forward and a backward pass (plus a reference forward for the methods that have one, and KTO's
KL completions, not counted here); an evaluation token one forward pass. eval_seconds <= 0.3 x
train_seconds needs evaluation to get through tokens (eval tokens / train tokens) / 0.3 times as fast as
training does. Run it from the repository root (the runs' recipes name their data relative to it). Reads
results only; writes nothing but --markdown.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def eval_tokens(run: Path, tok, rows_of: dict) -> dict:
    """Tokens one run's evaluation fed the policy, padding left out as on the training side: the scored rows'
    prompts and completions, the test prompts (prefilled), and each answer's tokens after its first (a decode
    step each; the first comes from the prefill)."""
    import pandas as pd

    from prefopt.models import encode

    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    data = recipe["data"]
    key = (data["path"], data.get("split"))  # data.split: another split of one saved DatasetDict, other rows
    if key not in rows_of:
        from prefopt.data.io import load_rows

        rows_of[key] = load_rows(data["path"], data.get("format", "auto"), data.get("split"))
    rows = rows_of[key]
    items = pd.read_csv(run / "eval_items.csv")
    max_length = recipe["train"].get("max_length")
    scored = sum(len(encode(tok, rows["prompt"][i], rows["completion"][i], max_length)[0]) for i in items["row_id"])
    prefill, decoded = 0, 0
    gens = run / "eval_generations.jsonl"
    if gens.exists():
        records = [json.loads(line) for line in gens.read_text().splitlines()]
        chat = bool(records) and isinstance(records[0]["prompt"], list)
        rendered = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) if chat
                    else r["prompt"] for r in records]
        prefill = sum(len(ids) for ids in tok(rendered, add_special_tokens=not chat)["input_ids"])
        # an answer's tokens, its end token included when it ended, at most the budget (the text is re-tokenized:
        # an answer that ended early may come out a token off; one cut at the budget, most of them, cannot)
        budget = recipe["eval"]["max_new_tokens"]
        answers = tok([r["policy_text"] for r in records], add_special_tokens=False)["input_ids"]
        decoded = sum(min(budget, len(ids) + bool(r["policy_ended"])) - 1 for ids, r in zip(answers, records))
    return {"scored": scored, "prefill": prefill, "decoded": decoded}


def train_tokens(run: Path, tok, steps: int) -> int:
    """Tokens of the (prompt, completion) sequences of as many training rows as the run's steps took: the first
    rows of the prepared data (exactly KTO's, a same-size sample for a trainer that draws rows at random)."""
    from prefopt.methods import get_method
    from prefopt.models import encode
    from prefopt.recipe import load_recipe
    from prefopt.preflight import prepare_data, train_settings

    recipe = load_recipe(str(run / "recipe.yaml"))
    spec = get_method(recipe.method, file=recipe.source)
    settings = train_settings(recipe, spec)
    prepared, _ = prepare_data(recipe, spec)
    taken = prepared.train.head(steps * settings.get("per_device_train_batch_size", 8)
                                * settings.get("gradient_accumulation_steps", 1))
    columns = [c for c in ("completion", "chosen", "rejected") if c in taken.columns]
    return sum(len(encode(tok, row["prompt"], row[c], settings.get("max_length"))[0])
               for row in taken.to_dict("records") for c in columns)


def table(results: Path, tok) -> list[dict]:
    by_recipe, rows_of = {}, {}
    for metrics_file in sorted(results.glob("runs/*/*/metrics.json")):
        run = metrics_file.parent
        m = json.loads(metrics_file.read_text())
        if m.get("folds", 1) not in (1, None) or m.get("fold") is not None:
            continue  # cross-fitted folds take no generation test: another evaluation
        t = eval_tokens(run, tok, rows_of)
        by_recipe.setdefault(run.parent.name, []).append(
            {"train_tokens": train_tokens(run, tok, m["steps"]) * m.get("processes", 1), "train_s": m["train_seconds"],
             "eval_s": m["eval_seconds"], "eval_tokens": sum(t.values()), **t})
    out = []
    for recipe, runs in sorted(by_recipe.items()):
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        token_ratio = med["eval_tokens"] / med["train_tokens"]
        speed = (med["eval_tokens"] / med["eval_s"]) / (med["train_tokens"] / med["train_s"])
        out.append({"recipe": recipe, "runs": len(runs), **{k: round(v) for k, v in med.items()},
                    "token_ratio": round(token_ratio, 2), "eval_over_train_s": round(med["eval_s"] / med["train_s"], 2),
                    "eval_speed_x": round(speed, 2), "needed_speed_x": round(token_ratio / 0.3, 2)})
    return out


def markdown(rows: list[dict], results: Path) -> str:
    head = ("| recipe | runs | train tokens | eval tokens (scored + prefill + decoded) | eval / train tokens | "
            "train s | eval s | eval / train s | eval tokens/s ÷ train tokens/s | needed for 30% |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['recipe']} | {r['runs']} | {r['train_tokens']} | {r['eval_tokens']} ({r['scored']} + "
                   f"{r['prefill']} + {r['decoded']}) | {r['token_ratio']} | {r['train_s']} | {r['eval_s']} | "
                   f"{r['eval_over_train_s']} | {r['eval_speed_x']}x | {r['needed_speed_x']}x |\n" for r in rows)
    return ("# Evaluation against training, in tokens and seconds (issue 12's eval_seconds <= 30% of train_seconds)\n\n"
            f"    python scripts/eval_share.py --results {results} --markdown <this file>\n\n"
            f"Medians over each recipe's single-split runs in {results}/runs; how both sides are counted: the "
            "script's docstring. 'needed for 30%' is how many times as fast as training evaluation must get "
            "through a token for eval_seconds to be 30% of train_seconds; the column before it, how many times "
            "as fast it does.\n\n" + head + body)


def main(argv=None) -> int:
    from prefopt.cli import OneLineParser

    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results", help="a results folder (default: results, from the repository root)")
    ap.add_argument("--markdown", help="also write the table to this file (default: print only)")
    args = ap.parse_args(argv)
    results = Path(args.results)
    if not (results / "runs").is_dir():
        print(f"eval_share: error: {results}/runs: no such folder; give --results a folder `prefopt run` wrote",
              file=sys.stderr)
        return 2
    from transformers import AutoTokenizer

    from prefopt.models import local_model_dir

    names = {yaml.safe_load(p.read_text())["model"]["name"] for p in results.glob("runs/*/*/recipe.yaml")}
    if len(names) != 1 or local_model_dir(next(iter(names))) is None:
        print(f"eval_share: error: {results}/runs: the runs must share one model already on disk "
              f"(found {sorted(names)}); run one of them first, which converts it", file=sys.stderr)
        return 2
    tok = AutoTokenizer.from_pretrained(local_model_dir(next(iter(names))))
    text = markdown(table(results, tok), results)
    print(text)
    if args.markdown:
        from prefopt.results import write_atomic

        write_atomic(Path(args.markdown), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
