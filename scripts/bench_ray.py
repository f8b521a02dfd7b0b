"""Ray's own cost per trial: the same batch of runs one by one in this process and as Ray Tune trials.

    python scripts/bench_ray.py recipes/orpo.yaml --seeds 1,2 --set train.max_steps=8
    python scripts/bench_ray.py RECIPE --seeds 1,2,3 --results /tmp/bench_ray

Each side is one `python -m prefopt run RECIPE --seeds ... --engine local|ray` into its own results
directory (fresh, so nothing is skipped), one trial at a time on both sides. It prints wall seconds per
side and per trial, the difference per trial (Ray's start, scheduling and worker start-up), the peak summed
resident memory of the whole process tree (the driver, and with Ray its raylet, GCS, object store and
workers; sampled every 0.2 s), and whether the two sides' metrics agree. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefopt.cli import OneLineParser, readable_file, seed_list  # noqa: E402

KEYS = ("reward_auc", "preference_accuracy", "reward_margin", "kl", "desirable_nll")


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def ray_rss(before: set[int]) -> int:
    """Ray's daemons are not children of the driver (raylet and GCS are started detached); those running
    before this side started (another Ray on the machine) are not counted."""
    total = 0
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.pid in before:
            continue
        cmd = " ".join(p.info["cmdline"] or [])
        if any(k in cmd for k in ("raylet", "gcs_server", "ray::", "ray/_private", "ray/dashboard")):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    return total


def side(engine: str, args, extra) -> dict:
    results = Path(args.results) / engine
    shutil.rmtree(results, ignore_errors=True)
    seeds = ",".join(map(str, args.seeds))
    cmd = [sys.executable, "-m", "prefopt", "run", args.recipe, "--seeds", seeds, "--engine", engine,
           "--results", str(results), *extra]
    before = {p.pid for p in psutil.process_iter()}
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc) + (ray_rss(before) if engine == "ray" else 0))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_ray: the {engine} side failed ({proc.returncode}): {' '.join(cmd)}")
    metrics = {p.parent.name: json.loads(p.read_text()) for p in sorted(results.glob("runs/*/*/metrics.json"))}
    return {"wall": wall, "peak_mb": peak / 2**20, "metrics": metrics}


def main() -> None:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", type=readable_file("a recipe file, e.g. recipes/orpo.yaml"),
                    help="the recipe both sides run, e.g. recipes/orpo.yaml")
    ap.add_argument("--seeds", type=seed_list, default=[1, 2],
                    help="comma-separated seeds, one trial each on both sides (default: 1,2)")
    ap.add_argument("--results", default="results/bench_ray", help="where the sides write, in <results>/local and "
                    "<results>/ray, each deleted first (default: results/bench_ray)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for both sides, as for `prefopt run` (repeatable; default: none)")
    args = ap.parse_args()
    extra = [a for s in args.set for a in ("--set", s)]
    n = len(args.seeds)
    local, ray = side("local", args, extra), side("ray", args, extra)
    print(f"{n} trials of {args.recipe} ({', '.join(args.set) or 'as shipped'})")
    print("| engine | wall s | s per trial | peak memory MB (process tree, + Ray's daemons) |")
    print("|---|---|---|---|")
    for name, r in (("local", local), ("ray", ray)):
        print(f"| {name} | {r['wall']:.1f} | {r['wall'] / n:.1f} | {r['peak_mb']:.0f} |")
    print(f"Ray's overhead: {(ray['wall'] - local['wall']) / n:+.1f} s per trial, "
          f"{ray['peak_mb'] - local['peak_mb']:+.0f} MB at peak")
    a, b = local["metrics"], ray["metrics"]  # the same runs on both sides: same directory names
    same = a.keys() == b.keys() and len(a) == n and all(
        k in a[r] and k in b[r] and abs(a[r][k] - b[r][k]) <= 1e-5 * max(1.0, abs(a[r][k])) for r in a for k in KEYS)
    print(f"metrics agree (rel 1e-5): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
