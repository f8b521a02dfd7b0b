"""The data report as a readable table (`prefopt data RECIPE` without --json)."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

# Shown in this order, in sections; keys not listed here (added later) follow at the end.
SECTIONS = (
    ("data", ("data_path", "method", "form", "strategy", "pairing", "max_pairs_per_prompt", "seed", "rows",
              "prompts", "same_question_prompts", "duplicate_rows", "contradictory_labels")),
    ("test split (held out: every reported metric)", ("split_seed", "eval_fraction", "folds", "fold", "partition", "eval_rows", "eval_prompts", "eval_pairs", "pair_metrics_note", "eval_fingerprint",
                        "verifier", "verifier_note", "verified_prompts", "verified_prompts_from",
                        "generation_test_fingerprint", "test_fingerprint")),
    ("validation split (choices: tuning, best checkpoint)", ("validation_fraction", "validation_rows", "validation_prompts", "validation_pairs",
                          "validation_fingerprint")),
    ("training", ("train_rows", "train_prompts", "desirable", "undesirable", "examples_used", "examples_discarded",
                  "repeated_examples", "pairs", "unpaired_rows", "data_fingerprint")),
    ("batches", ("batch_size", "world_size", "epochs", "batches", "batches_per_epoch", "single_label_batches",
                 "kl_same_prompt_pairs")),
    ("KTO weights", ("weights", "desirable_weight", "undesirable_weight", "weighted_ratio")),
)


def format_report(report: dict) -> str:
    """Two columns, field and value, grouped in sections; n/a for what does not apply to the method."""
    table = Table(box=box.SIMPLE, show_header=True, title="data report", title_justify="left")
    table.add_column("field", style=None, no_wrap=True)
    table.add_column("value", overflow="fold")
    shown = set()
    for title, keys in SECTIONS:
        present = [k for k in keys if k in report]
        if not present:
            continue
        table.add_row(f"[bold]{title}[/bold]", "")
        for key in present:
            table.add_row(f"  {key}", _value(report[key]))
            shown.add(key)
    rest = [k for k in report if k not in shown and k != "data_warnings"]  # printed as warnings, one line each
    if rest:
        table.add_row("[bold]other[/bold]", "")
        for key in rest:
            table.add_row(f"  {key}", _value(report[key]))
    out = io.StringIO()
    Console(file=out, width=110, color_system=None, force_terminal=False, highlight=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip().splitlines()) + "\n"


def _value(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
