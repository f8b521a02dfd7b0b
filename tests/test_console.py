"""What a user sees during a run: phase lines, per-step progress, the closing block, the batch's last line,
and no library deprecation warnings or per-step metric dicts; piped output carries no bar redraws."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from prefopt.testing import write_feedback

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(recipe, results, *extra):
    return subprocess.run([sys.executable, "-m", "prefopt", "run", str(recipe), "--results", str(results), *extra],
                          capture_output=True, text=True, env=ENV)


def test_run_output_phases_closing_block_and_no_library_noise(write_recipe, tmp_path):
    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    recipe = write_recipe("kto", data={"path": str(data)}, eval={"verifier": "auto", "max_new_tokens": 8})
    out = run(recipe, tmp_path / "res")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    for line in (r"prefopt: tiny_kto \(kto\), seed 0 -> .*runs/tiny_kto/seed0-\w+",
                 r"prefopt: data: \d+ desirable : \d+ undesirable rows \(mixed, 0 single-label micro-batches of \d+\);"
                 r" held out \d+ rows of \d+ prompts, \d+ pairs; validation \d+ rows of \d+ prompts; verifier "
                 r"instructions on \d+ prompts; weights float32",
                 r"prefopt: loading .*: done \(\d+\.\d s\)",
                 r"prefopt: training 3 steps: \d+\.\d\d s/step \(\d+\.\d s\)",
                 r"prefopt:   step 3/3, loss \d\.\d{4}",
                 r"prefopt: scoring \d+ held-out rows \(policy and reference\): done",
                 r"prefopt: generating for \d+ held-out prompts .*: done",
                 r"prefopt: finished tiny_kto \(seed 0\): train \d+ s, eval \d+ s",
                 r"  run directory      .*runs/tiny_kto/seed0-\w+",
                 r"  reward_auc         \d\.\d{3}   \(untrained reference: 0.5\)",
                 r"  verified_success   \d\.\d{3}   \(untrained reference: \d\.\d{3}\) on \d+ prompts",
                 r"prefopt: comparison of every finished run: .*summary.md"):
        assert re.search(line, text), f"missing: {line}\n{text[-3000:]}"
    assert "FutureWarning" not in text and "DeprecationWarning" not in text
    assert "{'loss'" not in text and "Tokenizing train dataset" not in text and "Loading weights" not in text
    assert "\r" not in text  # piped: plain lines, no bar redraws
    # --verbose brings the libraries' chatter back
    verbose = run(recipe, tmp_path / "res2", "--verbose")
    assert verbose.returncode == 0 and "Tokenizing train dataset" in verbose.stdout + verbose.stderr


def test_only_rank_0_prints(write_recipe, tmp_path):
    from prefopt import console

    env = {**ENV, "RANK": "1"}
    out = subprocess.run([sys.executable, "-c", "from prefopt.console import say, phase\n"
                          "with phase('x'): say('hello')"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout == ""
    assert console.main_process()  # this process: rank 0
