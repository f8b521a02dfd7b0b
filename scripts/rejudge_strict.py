"""Estimate what strict verdicts would make of generation records written before prefopt recorded which
answers ended (2026-12-01): a copy of a results folder whose records say, per answer, whether it ended and
whether it passes strictly; then `prefopt compare` on the copy gives the tables and the verdict.

    python scripts/rejudge_strict.py results/bf16 /tmp/strict   # then: python -m prefopt compare /tmp/strict

Whether an answer ended is *estimated*: the records keep only the decoded text, so an answer whose text
re-encodes to fewer than max_new_tokens - 1 tokens is taken as ended on its own (a cut-off answer decodes
from exactly max_new_tokens tokens; re-encoding moves that by a token or two). New runs record it exactly,
so a rerun replaces this estimate. Only each run's records and metrics.json's verified_*
(prefopt.verifiers.judge) are rewritten in the copy; the source folder is never touched.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prefopt.cli import OneLineParser, at_least, model_name  # noqa: E402


def main(argv=None) -> int:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="a results folder (runs/<recipe>/<run>/eval_generations.jsonl)")
    ap.add_argument("copy", type=Path, help="where to write the re-judged copy (must not exist)")
    ap.add_argument("--model", type=model_name, default="smollm2-135m-instruct",
                    help="whose tokenizer generated the answers (default: smollm2-135m-instruct)")
    ap.add_argument("--max-new-tokens", type=at_least(1), default=48, help="the runs' eval.max_new_tokens (default 48)")
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from prefopt.models import resolve_model
    from prefopt.results import write_json, write_jsonl
    from prefopt.verifiers import get_verifier, judge

    if not (args.source / "runs").is_dir():  # (copytree's FileNotFoundError was a traceback)
        print(f"rejudge_strict: {args.source} has no runs/ folder; give a results folder (runs/<recipe>/<run>/)",
              file=sys.stderr)
        return 2
    if args.copy.exists():
        print(f"rejudge_strict: {args.copy} exists; give a new folder", file=sys.stderr)
        return 2
    tok = AutoTokenizer.from_pretrained(resolve_model(args.model))
    verifier = get_verifier("instructions")
    shutil.copytree(args.source, args.copy, ignore=shutil.ignore_patterns("cache", "adapter", "checkpoints"))
    flips, runs = Counter(), 0
    for file in sorted(args.copy.glob("runs/*/*/eval_generations.jsonl")):
        records = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()]
        before = [(r["policy_pass"], r["reference_pass"]) for r in records]
        for r in records:
            for side in ("policy", "reference"):
                tokens = len(tok(r[f"{side}_text"], add_special_tokens=False)["input_ids"])
                r[f"{side}_ended"] = tokens < args.max_new_tokens - 1
        metrics_file = file.parent / "metrics.json"
        metrics = {**json.loads(metrics_file.read_text(encoding="utf-8")), **judge(verifier, records)}
        for r, old in zip(records, before):
            for side, was in zip(("policy", "reference"), old):
                if r[f"{side}_pass"] != was:
                    flips[(side, r[verifier.column]["id"], "fail->pass" if r[f"{side}_pass"] else "pass->fail")] += 1
        write_jsonl(file, records)
        write_json(metrics_file, metrics)
        runs += 1
    print(f"{runs} runs re-judged into {args.copy}; verdicts that changed (answers across all runs):")
    for (side, family, how), n in sorted(flips.items()):
        print(f"  {side:9} {family:16} {how:10} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
