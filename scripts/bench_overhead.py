"""Fidelity and overhead: prefopt vs a minimal plain-TRL script, same model, data order, settings, seed.

    python scripts/bench_overhead.py                       # tiny random model, kto/dpo/orpo
    python scripts/bench_overhead.py --model smollm2 --steps 10

For each method it trains once through `python -m prefopt run` and once through scripts/plain_trl.py
(fed the rows prefopt would train on, in the same order, and the same TRL config and LoRA settings),
each in a fresh process, then prints whether the per-step losses are identical and the wall-time
ratios: training loop alone (trainer.train(), the criterion: <= 1.05), and whole process (prefopt's
evaluation time subtracted, since the plain script does not evaluate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"kto": "kto_mixed", "dpo": "dpo", "orpo": "orpo"}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def bench(method: str, model: str, data: str, steps: int, work: Path) -> dict:
    from prefopt.methods import get_method
    from prefopt.recipe import load_recipe
    from prefopt.runner import config_kwargs, lora_kwargs, prepare_data, train_settings

    raw = yaml.safe_load((ROOT / "recipes" / f"{RECIPE[method]}.yaml").read_text())
    raw["model"].update(name=model, backend="transformers", dtype="float32")
    raw["data"]["path"] = data
    raw["train"].update(max_steps=steps, save_steps=10**6)  # no checkpoint writes in either
    raw["eval"].pop("verifier", None)
    path = work / f"{method}.yaml"
    path.write_text(yaml.safe_dump(raw))

    recipe, spec = load_recipe(str(path)), get_method(method)
    prepared, epochs = prepare_data(recipe, spec)
    columns = ["prompt", "completion", "label"] if spec.form == "unpaired" else ["prompt", "chosen", "rejected"]
    rows = work / f"{method}-rows.jsonl"
    prepared.train[columns].to_json(rows, orient="records", lines=True)
    from prefopt.models import resolve_model

    args = config_kwargs(recipe, spec, prepared.report, epochs, work / f"{method}-plain")
    spec_json = work / f"{method}-plain.json"
    spec_json.write_text(json.dumps({"trainer": spec.trainer, "config": spec.config, "model": resolve_model(model),
                                     "rows": str(rows), "args": args, "lora": lora_kwargs(recipe)}))

    plain_out = work / f"{method}-plain-out.json"
    plain_wall = timed([sys.executable, str(ROOT / "scripts" / "plain_trl.py"), str(spec_json), str(plain_out)])
    ours_wall = timed([sys.executable, "-m", "prefopt", "run", str(path), "--results", str(work / "results"),
                       "--force"])
    (run,) = (work / "results" / "runs" / recipe.name).iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    ours_loss = pd.read_csv(run / "train_log.csv")["loss"].dropna().to_numpy()
    plain = json.loads(plain_out.read_text())
    plain_loss = pd.Series([h.get("loss") for h in plain["log_history"]]).dropna().to_numpy()
    same = len(ours_loss) == len(plain_loss) and bool((abs(ours_loss - plain_loss) <= 1e-6).all())
    return {"method": method, "steps": len(ours_loss), "losses_identical": same,
            "max_abs_loss_diff": float(abs(ours_loss - plain_loss).max()) if len(ours_loss) == len(plain_loss) else None,
            "prefopt_train_s": metrics["train_seconds"], "plain_train_s": plain["train_seconds"],
            "train_ratio": metrics["train_seconds"] / plain["train_seconds"],
            "prefopt_wall_minus_eval_s": ours_wall - metrics["eval_seconds"], "plain_wall_s": plain_wall,
            "wall_ratio": (ours_wall - metrics["eval_seconds"]) / plain_wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="tiny (random, built here) or smollm2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--methods", default="kto,dpo,orpo")
    ns = p.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from prefopt.testing import build_tiny_model, write_feedback

        model = str(build_tiny_model(work / "tiny")) if ns.model == "tiny" else "smollm2-135m-instruct"
        data = str(write_feedback(work / "feedback.jsonl", prompts=80)) if ns.model == "tiny" else \
            str(ROOT / "data" / "feedback.jsonl")
        rows = [bench(m, model, data, ns.steps, work) for m in ns.methods.split(",")]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
