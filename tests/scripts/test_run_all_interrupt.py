"""scripts/run_all.sh's control flow and exit status, with a stand-in for `python -m prefopt` (no training)."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB = """#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
case " $* " in
    *" run "*) mkdir -p "$RESULTS"; exit "$RUN_RC" ;;
    *" compare "*) exit "$COMPARE_RC" ;;
esac
"""


@pytest.mark.parametrize("run_rc, compare_rc, expected, compared", [
    (0, 0, 0, True),
    (1, 0, 1, True),  # a failed recipe: the others' runs still reach the tables
    (130, 0, 130, False),  # Ctrl-C during a run: stop, without minutes of rebuilding
    (0, 130, 130, True),  # Ctrl-C during the rebuild: interrupted, not failed
])
def test_exit_status_and_rebuild(run_rc, compare_rc, expected, compared, tmp_path):
    python = tmp_path / "python"
    python.write_text(STUB)
    python.chmod(0o755)
    log = tmp_path / "calls"
    env = {**os.environ, "PYTHON": str(python), "STUB_LOG": str(log), "RUN_RC": str(run_rc),
           "COMPARE_RC": str(compare_rc), "RESULTS": str(tmp_path / "r")}  # a run makes the folder
    out = subprocess.run(["bash", "scripts/run_all.sh", "--results", str(tmp_path / "r"), "recipes/dpo.yaml",
                          "recipes/orpo.yaml"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == expected, out.stdout + out.stderr
    calls = log.read_text().splitlines()
    assert any(" compare " in f" {c} " for c in calls) == compared
    assert sum(" run " in f" {c} " for c in calls) == (1 if run_rc == 130 else 2)  # the next recipe not started
    if expected == 130:
        assert "interrupted" in out.stderr


def test_interrupted_recipe_is_listed_as_interrupted_not_failed(tmp_path):
    """Ctrl-C during a recipe: it is the user's stop, not the recipe's failure, and the same command resumes it."""
    python = tmp_path / "python"
    python.write_text(STUB)
    python.chmod(0o755)
    env = {**os.environ, "PYTHON": str(python), "STUB_LOG": str(tmp_path / "calls"), "RUN_RC": "130",
           "COMPARE_RC": "0", "RESULTS": str(tmp_path / "r")}
    out = subprocess.run(["bash", "scripts/run_all.sh", "--results", str(tmp_path / "r"), "recipes/dpo.yaml",
                          "recipes/orpo.yaml"], cwd=ROOT, env=env, capture_output=True, text=True)
    listed = [line for line in out.stdout.splitlines() if line.split(" ")[0] in ("PASS", "FAIL", "STOP", "SKIP")]
    assert [line.split(" (")[0] for line in listed] == ["STOP recipes/dpo.yaml", "SKIP recipes/orpo.yaml"]
    assert listed[0].startswith("STOP recipes/dpo.yaml (interrupted, ") and "exit 130" not in out.stdout
    assert "0 passed, 0 failed, 1 interrupted, 1 not run" in out.stdout
