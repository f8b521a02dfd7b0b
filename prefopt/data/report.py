"""The data report as a readable table (rich renders it to text; no torch)."""

from __future__ import annotations

import io

ORDER = ["method", "strategy", "rows", "train_rows", "eval_rows", "eval_pairs", "eval_fingerprint", "desirable",
         "undesirable", "examples_used", "examples_discarded", "repeated_examples", "pairs", "unpaired_rows",
         "batch_size", "world_size", "epochs", "batches", "single_label_batches", "kl_same_prompt_pairs",
         "desirable_weight", "undesirable_weight", "seed", "eval_fraction"]
NOTES = {
    "desirable": "train split after the strategy, one epoch, repeats counted",
    "single_label_batches": "micro-batches holding one label only, over the exact training order",
    "kl_same_prompt_pairs": "KL pairs whose borrowed completion has the same prompt",
    "examples_discarded": "train rows the strategy does not use",
    "unpaired_rows": "train rows in no pair (their prompt lacks the other label)",
}


def format_report(report: dict) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"data report: {report.get('method')} / {report.get('strategy')}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    table.add_column("meaning", style="dim")
    for key in ORDER + sorted(set(report) - set(ORDER)):
        if key in report and report[key] is not None:
            value = report[key]
            text = value[:16] + "…" if key == "eval_fingerprint" else f"{value:.4g}" if isinstance(value, float) else str(value)
            table.add_row(key, text, NOTES.get(key, ""))
    buf = io.StringIO()
    Console(file=buf, width=110, color_system=None).print(table)
    return buf.getvalue().rstrip()
