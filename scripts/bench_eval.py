"""Greedy generation as evaluation runs it, with and without autocast keeping its bf16 weight casts for the
pass (prefopt.metrics.cached_autocast_casts), on the recipe's generation test, batch size and token budget.

    python scripts/bench_eval.py                                # recipes/dpo.yaml, first 128 test prompts, 2 rounds
    python scripts/bench_eval.py recipes/kto_mixed.yaml --prompts 300 --rounds 1
    python scripts/bench_eval.py --set model.name=/path/to/tiny --prompts 4     # what the test runs

The policy is the recipe's model with a fresh LoRA adapter whose B matrices are random (seeded), merged for
generation as a trained one is. Rounds alternate the two modes; the texts must be identical (it exits 1 if
not), so the speed-up changes no result. On a CPU without native bf16 autocast is off and both modes are
the same code path.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prefopt.cli import OneLineParser, at_least  # noqa: E402


def main(argv=None) -> int:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", nargs="?", default=str(ROOT / "recipes/dpo.yaml"),
                    help="the recipe whose model and generation test are used (default: recipes/dpo.yaml)")
    ap.add_argument("--prompts", type=at_least(1), default=128, help="first N prompts of eval.prompts (default 128)")
    ap.add_argument("--rounds", type=at_least(1), default=2,
                    help="rounds, each generating in both modes (default 2)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override, as for run (repeatable; default: none)")
    args = ap.parse_args(argv)
    from prefopt.errors import UserError
    from prefopt.recipe import load_recipe

    try:  # a bad recipe or model is the user's: one line, exit 2, as `prefopt run` says it (not a traceback)
        recipe = load_recipe(args.recipe, args.set)
        import torch
        from peft import LoraConfig, get_peft_model

        import prefopt.metrics as metrics
        from prefopt.models import load_model, resolve_precision

        precision = resolve_precision(recipe.model.dtype)
        model, tok = load_model(recipe.model.name, dtype=recipe.model.dtype, file=args.recipe)
    except UserError as e:
        print("\n".join(f"bench_eval: error: {line}" for line in str(e).splitlines()), file=sys.stderr)
        return 2
    model = get_peft_model(model, LoraConfig(r=recipe.model.lora.r, lora_alpha=recipe.model.lora.alpha,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    lines = (ROOT / recipe.eval.prompts).read_text().splitlines()
    prompts = [json.loads(line)["prompt"] for line in lines[:args.prompts]]
    modes = {"cached casts": metrics.cached_autocast_casts,
             "cast per step": lambda m: contextlib.nullcontext()}
    print(f"{len(prompts)} prompts, batch {recipe.eval.batch_size}, max_new_tokens {recipe.eval.max_new_tokens}, "
          f"autocast bf16 {precision.autocast}, {torch.get_num_threads()} threads")
    times, texts = {m: [] for m in modes}, {}
    for _ in range(args.rounds):
        for mode, ctx in modes.items():
            metrics.cached_autocast_casts = ctx
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.autocast):
                texts[mode], _ = metrics.generate(model, tok, prompts, batch_size=recipe.eval.batch_size,
                                                  max_new_tokens=recipe.eval.max_new_tokens)
            times[mode].append(time.perf_counter() - start)
    print("| mode | seconds per round | seconds per prompt |\n|---|---|---|")
    for mode, ts in times.items():
        print(f"| {mode} | {' / '.join(f'{t:.1f}' for t in ts)} | {min(ts) / len(prompts):.3f} |")
    same = len(set(map(tuple, texts.values()))) == 1
    print(f"speed-up (best rounds): {min(times['cast per step']) / min(times['cached casts']):.2f}x; "
          f"identical texts: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    from prefopt.allocator import reexec_with_heap_allocator

    reexec_with_heap_allocator()  # generates in this process: the same allocator settings as `prefopt run`
    sys.exit(main())
