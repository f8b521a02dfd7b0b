"""scripts/gpu_check.sh --dry keeps the GPU check working on CPU: every shipped recipe trains through
`prefopt run` on the tiny model and lands in one table; a failing run makes it exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable}


def test_dry_run_trains_every_shipped_recipe_into_one_table(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry", "--results", str(tmp_path / "r"),
                          "--markdown", str(tmp_path / "gpu.md")], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = (tmp_path / "gpu.md").read_text()
    recipes = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    rows = [line for line in text.splitlines() if line.startswith("| ") and "transformers" in line]
    assert [r.split(" | ")[0][2:] for r in rows] == recipes
    assert "FAILED" not in text and "2 steps per run (dry run" in text


def test_a_failing_run_is_reported_and_exits_1(tmp_path):
    # the unsloth backend refuses a machine without a GPU: that run fails, the other still trains
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry", "--backends",
                          "unsloth,transformers", "--recipes", str(ROOT / "recipes" / "orpo.yaml")],
                         capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "FAILED orpo / unsloth: exit 2" in out.stdout and "| orpo | transformers |" in out.stdout


def test_paths_are_read_from_the_folder_the_check_is_started_in(tmp_path):
    # the script changed to the repository first: a recipe named from elsewhere was not found (FAILED, exit 2)
    # and --markdown, --results landed in the repository
    (tmp_path / "mine.yaml").write_text((ROOT / "recipes" / "orpo.yaml").read_text())
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry", "--recipes", "mine.yaml",
                          "--results", "r", "--markdown", "gpu.md"], capture_output=True, text=True, env=ENV,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "| mine | transformers |" in (tmp_path / "gpu.md").read_text()
    assert list((tmp_path / "r" / "runs").iterdir()) == [tmp_path / "r" / "runs" / "mine_transformers"]
