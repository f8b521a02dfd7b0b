"""The minimal plain-TRL training that prefopt is measured against (scripts/bench_overhead.py).

No prefopt code in the training (only prefopt's allocator settings, as `prefopt run` starts with, and its
option parser): transformers loads the model, PEFT makes the LoRA config, TRL trains on rows given in the
exact order prefopt would use. Writes the per-step log and the training wall time as JSON.

    python scripts/plain_trl.py SPEC.json OUT.json
SPEC: {"trainer": "trl:KTOTrainer", "config": "trl:KTOConfig", "model": DIR, "rows": JSONL,
       "args": {...config kwargs...}, "lora": {...LoraConfig kwargs...} or null}
"""

from __future__ import annotations

import importlib
import json
import time


def _cls(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def train_plain(spec: dict) -> dict:
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec["model"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype="float32")
    rows = load_dataset("json", data_files=spec["rows"], split="train")
    args = _cls(spec["config"])(**spec["args"])
    lora = LoraConfig(task_type="CAUSAL_LM", **spec["lora"]) if spec.get("lora") else None
    trainer = _cls(spec["trainer"])(model=model, args=args, train_dataset=rows, processing_class=tok,
                                    peft_config=lora)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"train_seconds": seconds, "log_history": trainer.state.log_history}


if __name__ == "__main__":
    from prefopt.allocator import reexec_with_heap_allocator

    # the baseline gets prefopt's allocator settings too: the overhead compared is prefopt's own code
    reexec_with_heap_allocator()
    from pathlib import Path

    from prefopt.cli import OneLineParser, readable_file

    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", type=readable_file("the JSON file scripts/bench_overhead.py writes"), help='a JSON file: {"trainer": "trl:KTOTrainer", "config": "trl:KTOConfig", '
                    '"model": DIR, "rows": JSONL, "args": {config kwargs}, "lora": {LoraConfig kwargs} or null}')
    ap.add_argument("out", help="where the per-step log and training seconds are written (JSON)")
    ns = ap.parse_args()
    try:
        spec = json.loads(Path(ns.spec).read_text(encoding="utf-8"))
    except ValueError as e:  # checked before the model is loaded, as a bad option is
        ap.error(f"spec: {ns.spec}: not JSON ({e}); give the JSON file scripts/bench_overhead.py writes")
    result = train_plain(spec)
    with open(ns.out, "w") as f:
        json.dump(result, f)
