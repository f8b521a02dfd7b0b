"""scripts/tune_all.sh on the tiny model: tunes, then trains the tuned recipe with seeds on the test split,
and a second call finds everything finished; with a stand-in python (no training), tune_all.sh and crossfit.sh
take relative paths from where they were started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tune_all_tunes_then_runs_the_tuned_recipe_and_resumes(write_recipe, tmp_path):
    recipe = write_recipe("orpo", data={"validation_fraction": 0.25})
    results = tmp_path / "res"
    cmd = ["bash", str(ROOT / "scripts" / "tune_all.sh"), "--trials", "2", "--seeds", "1", "--results", str(results),
           str(recipe), "--", "--engine", "local"]
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    trials = (results / "tuning" / "tiny_orpo" / "trials.csv").read_text().splitlines()
    assert len(trials) == 3  # header + 2 trials
    (run,) = (results / "runs" / "tiny_orpo_tuned").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert run.name.startswith("seed1-") and metrics["split"] != "validation"
    assert "tiny_orpo_tuned" in (results / "summary.md").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr


STUB = """#!/usr/bin/env bash
if [[ $1 == -c ]]; then exec "$REAL_PYTHON" "$@"; fi  # tune_all.sh reading a recipe's name
echo "$PWD|$*" >> "$STUB_LOG"
if [[ " $* " == *" run "* ]]; then mkdir -p "$RESULTS"; fi
"""


def stand_in(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A `python` that logs where and how it was called (no training); the caller's directory, with a recipe."""
    python, log, cwd = tmp_path / "python", tmp_path / "calls", tmp_path / "work"
    python.write_text(STUB)
    python.chmod(0o755)
    cwd.mkdir()
    (cwd / "mine.yaml").write_text("name: mine\nmethod: dpo\n")
    env = {**os.environ, "PYTHON": str(python), "REAL_PYTHON": sys.executable, "STUB_LOG": str(log),
           "RESULTS": str(cwd / "res")}
    return env, log, cwd


def test_relative_paths_are_the_callers(tmp_path):
    """A relative recipe and --results are taken from where the script was started, not the repository root."""
    env, log, cwd = stand_in(tmp_path)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "tune_all.sh"), "--trials", "1", "--seeds", "7",
                          "--results", "res", "mine.yaml"], capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == f"{cwd}|-m prefopt tune mine.yaml --trials 1 --results res"
    assert calls[1] == f"{cwd}|-m prefopt run res/tuned/mine.yaml --results res --no-compare --seeds 7"
    assert calls[2] == f"{cwd}|-m prefopt compare res"


def test_the_tuned_recipe_is_found_under_the_name_tune_gave_it(tmp_path):
    """`-- --set name=x` reaches `prefopt tune`, which writes tuned/x.yaml; the script looked for the file's own
    name (tuned/mine.yaml) and every tuned run failed with 'no such file'. A recipe broken by the time its name is
    read is one line, exit 2, not a Python traceback."""
    env, log, cwd = stand_in(tmp_path)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "tune_all.sh"), "--seeds", "7", "--results", "res",
                          "mine.yaml", "--", "--engine", "local", "--set", "name=yours", "--set=seed=3"],
                         capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    # the --set values reach the runs inside the tuned recipe (named yours_tuned), not again on the command
    # line: there `--set name=yours` renamed it back, and the tuned runs joined the untuned ones in runs/yours
    assert log.read_text().splitlines()[1] == (f"{cwd}|-m prefopt run res/tuned/yours.yaml --results res --no-compare "
                                               "--seeds 7 --engine local")
    log.unlink()
    (cwd / "mine.yaml").write_text("name: [mine\n")  # (the stand-in's tune does not read it)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "tune_all.sh"), "--results", "res", "mine.yaml"],
                         capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == ["prefopt: error: mine.yaml: line 2: invalid YAML (expected ',' or ']', but got "
                                       "'<stream end>'); fix the syntax"]
    assert len(log.read_text().splitlines()) == 1  # the tune only: no run, no compare


def test_crossfit_relative_paths_are_the_callers(tmp_path):
    env, log, cwd = stand_in(tmp_path)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "crossfit.sh"), "--results", "res", "mine.yaml"],
                         capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    run, compare = log.read_text().splitlines()
    assert run.startswith(f"{cwd}|-m prefopt run mine.yaml --results res --no-compare --seeds 42 --folds 5 ")
    assert compare == f"{cwd}|-m prefopt compare res"


def test_no_recipes_here_is_one_line(tmp_path):
    env, log, cwd = stand_in(tmp_path)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "tune_all.sh")], capture_output=True, text=True, env=env,
                         cwd=cwd)
    assert out.returncode == 2 and "no recipes/*.yaml" in out.stderr and not log.exists()


def test_options_in_their_one_word_form(tmp_path):
    """`--trials=1` was refused as 'unknown option', though run_all.sh takes `--results=DIR`."""
    env, log, cwd = stand_in(tmp_path)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "tune_all.sh"), "--trials=1", "--seeds=7", "--results=res",
                          "mine.yaml"], capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    assert log.read_text().splitlines() == [f"{cwd}|-m prefopt tune mine.yaml --trials 1 --results res",
                                            f"{cwd}|-m prefopt run res/tuned/mine.yaml --results res --no-compare "
                                            "--seeds 7", f"{cwd}|-m prefopt compare res"]


def test_bad_seeds_are_refused_before_any_trial(tmp_path):
    """--seeds reaches only the runs: a bad value was refused by every run, after all the tuning."""
    env, log, cwd = stand_in(tmp_path)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "tune_all.sh"), "--seeds", "1,x", "mine.yaml"],
                         capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 2 and out.stderr == "tune_all.sh: --seeds: 1,x: expected comma-separated integers, " \
        "e.g. --seeds 1,2,3\n" and not log.exists()
    for seeds, why in (("1,x", "expected comma-separated integers"), ("", "expected at least one seed")):
        out = subprocess.run(["bash", str(ROOT / "scripts" / "tune_all.sh"), f"--seeds={seeds}", "mine.yaml"],
                             capture_output=True, text=True, env=env, cwd=cwd)
        assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
        assert out.stderr.startswith("tune_all.sh: --seeds: ") and why in out.stderr and not log.exists()


def test_the_script_s_own_options_after_the_double_dash_are_refused_before_any_trial(tmp_path):
    """`-- --trials 8` reached `prefopt tune` (8 trials under a banner saying 4) and then every run, which
    refused it after all the tuning; `-- --results other` wrote the tuned recipes where the runs did not look."""
    env, log, cwd = stand_in(tmp_path)
    for extra in (["--trials", "8"], ["--trials=8"], ["--engine", "local", "--results", "other"], ["--results=o"]):
        out = subprocess.run(["bash", str(ROOT / "scripts" / "tune_all.sh"), "mine.yaml", "--", *extra],
                             capture_output=True, text=True, env=env, cwd=cwd)
        option = next(x for x in extra if x.startswith(("--trials", "--results"))).split("=")[0]
        assert out.returncode == 2 and out.stderr == (f"tune_all.sh: {option} after -- is tune_all.sh's own option: "
                                                      "give it before -- (see --help)\n"), out.stderr
        assert not log.exists()
