"""Judge the stored generation records of finished runs again with the current verifier, so that after a
verifier fix the runs' pass flags and metrics.json's verified_* follow it without generating anything again.

    python scripts/rejudge.py results            # rewrite the runs whose verdicts changed; print the changes
    python scripts/rejudge.py results --check    # change nothing; exit 1 if any stored verdict is stale

Only `<side>_pass` in eval_generations.jsonl and the verified_* keys of metrics.json change; texts, `ended`
flags and every other metric stay. Each file is replaced atomically, the records first and metrics.json last,
so an interrupted re-judge leaves no run half-written: run it again to finish. Then `prefopt compare` rebuilds
the tables. The verifier is the one each run's data_report.json names. Pure Python: torch is not imported.
A run it cannot judge (no data_report.json, records without the `ended` flags, as in results/bf16) is said
in one line, exit status 2, before any run is rewritten.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefopt.cli import OneLineParser  # noqa: E402
from prefopt.results import write_json, write_jsonl  # noqa: E402
from prefopt.verifiers import SIDES, VERIFIERS, get_verifier, judge  # noqa: E402


class Unjudgeable(Exception):
    """A run whose stored records this script cannot judge: said in one line, naming the run."""


def rejudge_run(run: Path, write: bool) -> Counter:
    """(side, family, 'pass->fail' or 'fail->pass') -> answers of this run whose verdict the current verifier
    changes; with `write`, the run's records and metrics.json are rewritten to the new verdicts."""
    file = run / "eval_generations.jsonl"
    report = run / "data_report.json"
    if not report.is_file():
        raise Unjudgeable(f"{run}: no data_report.json, which names the verifier the run was judged by")
    name = json.loads(report.read_text(encoding="utf-8")).get("verifier")
    if name not in VERIFIERS:
        raise Unjudgeable(f"{run}: data_report.json names verifier {name!r}, not one of {sorted(VERIFIERS)}")
    verifier = get_verifier(name)
    records = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()]
    lacking = sorted({f"{side}_ended" for r in records for side, _ in SIDES
                      if f"{side}_text" in r and f"{side}_ended" not in r})
    if lacking:  # records from before the flag (results/bf16): scripts/rejudge_strict.py estimates it
        raise Unjudgeable(f"{run}: its records lack {', '.join(lacking)}, which the strict verdicts need "
                          "(records made before runs kept it; scripts/rejudge_strict.py estimates it into a copy)")
    before = [{side: r.get(f"{side}_pass") for side, _ in SIDES} for r in records]
    metrics_file = run / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    verified = judge(verifier, records)
    changed = Counter()
    for old, r in zip(before, records):
        for side, _ in SIDES:
            if f"{side}_pass" in r and old[side] != r[f"{side}_pass"]:
                family = r[verifier.column]["id"] if isinstance(r[verifier.column], dict) else "?"
                changed[(side, family, "fail->pass" if r[f"{side}_pass"] else "pass->fail")] += 1
    stale = changed or any(metrics.get(k) != v for k, v in verified.items())
    if write and stale:
        write_jsonl(file, records)
        write_json(metrics_file, {**metrics, **verified})
    if stale and not changed:
        changed[("metrics", "verified_*", "stale")] += 1
    return changed


def main(argv=None) -> int:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a results folder (runs/<recipe>/<run>/eval_generations.jsonl)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if any verdict is stale "
                    "(default: off, the stale runs are rewritten)")
    args = ap.parse_args(argv)
    if not (args.results / "runs").is_dir():  # a mistyped folder judged nothing and --check passed
        print(f"rejudge: {args.results} has no runs/ folder; give a results folder (runs/<recipe>/<run>/)",
              file=sys.stderr)
        return 2
    runs = sorted(f.parent for f in args.results.glob("runs/*/*/eval_generations.jsonl")
                  if (f.parent / "metrics.json").exists())  # finished runs only
    total, stale = Counter(), 0
    try:  # every run judged before any is rewritten: one the script cannot judge leaves the folder as it was
        for run in runs:
            rejudge_run(run, write=False)
    except Unjudgeable as e:
        print(f"rejudge: {e}", file=sys.stderr)
        return 2
    for run in runs:
        changed = rejudge_run(run, write=not args.check)
        total.update(changed)
        stale += bool(changed)
    verb = "would change" if args.check else "changed"
    print(f"{len(runs)} runs judged again; {stale} {verb}" + (":" if total else ""))
    for (side, family, how), n in sorted(total.items()):
        print(f"  {side:9} {family:16} {how:10} {n}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
