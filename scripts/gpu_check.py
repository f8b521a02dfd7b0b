"""Train every shipped recipe a fixed number of steps with each backend and print one table.

    scripts/gpu_check.sh                       # on a CUDA machine: installs the GPU extras, then this
    python scripts/gpu_check.py --steps 20     # transformers and unsloth backends, every recipes/*.yaml
    python scripts/gpu_check.py --dry          # CPU: tiny random model, 2 steps, transformers only (CI)
    python scripts/gpu_check.py --export-skeleton .gpu/smollm2   # config + tokenizer only, for a machine
                                                                  # that cannot install the weights package

Every training is an ordinary `python -m prefopt run` into a fresh results folder (`--set name=<recipe>_
<backend>`, `model.backend`, `train.max_steps`, and `model.dtype=auto`: bf16 on a GPU that has it). The
table: recipe, backend, seconds per step, training tokens per second, peak memory (GPU memory on CUDA,
process RSS on CPU), final training loss and held-out reward_auc. Any failed run is listed under the table and the exit status is 1.

A --model folder holding a config and tokenizer but no weights is initialised at random (seeded): speed
and memory are then real, the losses and reward_auc are not. SmolLM2's weights package (94 MB) is too
large to carry to a machine without network access; its skeleton (about 3 MB) is not.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prefopt.cli import OneLineParser, at_least, names_from, readable_file  # noqa: E402
from prefopt.models import BACKENDS  # noqa: E402
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def export_skeleton(model: str, out: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from prefopt.models import resolve_model

    path = resolve_model(model)
    AutoConfig.from_pretrained(path).save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    print(f"wrote {out} (config and tokenizer, no weights)")


def materialize(model: str, work: Path) -> tuple[str, bool]:
    """(loadable model, whether its weights are random)."""
    path = Path(model)
    if not (path / "config.json").is_file() or any((path / w).is_file() for w in WEIGHTS):
        return model, False
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    out = work / "random-init"
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    return str(out), True


def run(recipe: Path, backend: str, steps: int, results: Path, sets: list[str]) -> tuple[str, int]:
    name = f"{recipe.stem}_{backend}"
    cmd = [sys.executable, "-m", "prefopt", "run", str(recipe), "--results", str(results), "--no-compare",
           "--set", f"name={name}", "--set", f"model.backend={backend}", "--set", f"train.max_steps={steps}",
           "--set", "model.dtype=auto"]  # the recipes pin float32 for CPUs; a GPU's own precision is what is checked
    for s in sets:
        cmd += ["--set", s]
    print("+", " ".join(cmd[1:]), flush=True)
    return name, subprocess.run(cmd, cwd=ROOT).returncode


def row(results: Path, recipe: str, backend: str, name: str) -> dict:
    (run_dir,) = (results / "runs" / name).iterdir()
    m = json.loads((run_dir / "metrics.json").read_text())
    log = pd.read_csv(run_dir / "train_log.csv")
    losses = log["loss"].dropna() if "loss" in log else pd.Series(dtype=float)
    return {"recipe": recipe, "backend": backend, "s/step": m["train_seconds"] / max(m["steps"], 1),
            "tokens/s": m["train_tokens_per_second"], "peak MB": m["peak_memory_mb"],
            "final loss": float(losses.iloc[-1]) if len(losses) else math.nan, "reward_auc": m["reward_auc"]}


def table(rows: list[dict]) -> str:
    lines = ["| recipe | backend | s/step | tokens/s | peak MB | final loss | reward_auc |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['backend']} | {r['s/step']:.3f} | {r['tokens/s']:.0f} | {r['peak MB']:.0f} | "
                     f"{r['final loss']:.4f} | {r['reward_auc']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    p.add_argument("--dry", action="store_true", help="CPU: tiny random model and data, 2 steps, transformers only "
                   "(default: off, a CUDA device is needed)")
    p.add_argument("--steps", type=at_least(1), help="train.max_steps of every run (default 20; 2 with --dry)")
    p.add_argument("--backends", type=names_from(BACKENDS), default=None, help="comma-separated (default transformers,unsloth; "
                   "transformers with --dry)")
    p.add_argument("--recipes", nargs="+", type=readable_file("a recipe file, e.g. recipes/orpo.yaml"),
                   default=sorted((ROOT / "recipes").glob("*.yaml")),
                   help="recipes run on every backend (default: every recipe in recipes/)")
    p.add_argument("--model", help="alias or model folder for every run (default: each recipe's own)")
    p.add_argument("--results", type=Path, help="results folder (default: a new temporary folder)")
    p.add_argument("--markdown", type=Path, help="also write the table to this file (default: print only)")
    p.add_argument("--export-skeleton", type=Path, metavar="DIR", help="write --model's config and tokenizer "
                   "to DIR and exit (default: off)")
    args = p.parse_args(argv)
    if args.export_skeleton:
        export_skeleton(args.model or "smollm2-135m-instruct", args.export_skeleton)
        return 0

    import torch

    cuda = torch.cuda.is_available()
    if not args.dry and not cuda:
        print("gpu_check: no CUDA device here; use --dry for the CPU check", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="prefopt-gpu-check-"))
    # each run starts in the repository (the shipped recipes' data paths are relative to it), so the paths given
    # here, the caller's, from the folder the command was started in, are made absolute first
    results = args.results.resolve() if args.results else work / "results"
    recipes = [Path(p).resolve() for p in args.recipes]
    steps = args.steps or (2 if args.dry else 20)
    backends = (args.backends or ("transformers" if args.dry else "transformers,unsloth")).split(",")
    sets, random_weights = [], False
    if args.dry:
        from prefopt.testing import build_tiny_model, write_feedback

        sets = [f"model.name={build_tiny_model(work / 'tiny-model')}", f"data.path={write_feedback(work / 'data.jsonl')}",
                "eval.verifier=null", "train.max_length=64", "eval.batch_size=8", "data.eval_fraction=0.25"]
    elif args.model:
        model, random_weights = materialize(str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
                                            work)
        sets = [f"model.name={model}"]

    rows, failed = [], []
    for recipe in recipes:
        for backend in backends:
            name, rc = run(recipe, backend, steps, results, sets)
            if rc == 0:
                rows.append(row(results, recipe.stem, backend, name))
            else:
                failed.append(f"{recipe.stem} / {backend}: exit {rc}")
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    text = "\n".join([f"## gpu_check: {device}, torch {torch.__version__}, {steps} steps per run"
                      + (" (dry run: tiny random model)" if args.dry else "")
                      + (" (random weights: losses and reward_auc are not meaningful)" if random_weights else ""),
                      "", table(rows), ""] + [f"FAILED {f}" for f in failed])
    print(text)
    if args.markdown:
        from prefopt.results import write_atomic

        write_atomic(args.markdown, text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
