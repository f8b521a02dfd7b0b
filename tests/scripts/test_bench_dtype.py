"""scripts/bench_dtype.py on the tiny model: both sides train through `prefopt run`, the tables name what
each side resolved to, the per-step losses sit side by side, and a second call reuses the finished runs.
(Its speed-up is a benchmark figure, never asserted here.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_dtype_tables_and_resume(write_recipe, tmp_path):
    recipe = write_recipe("kto", model={"dtype": "auto"})
    results, table = tmp_path / "bench", tmp_path / "bench.md"
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_dtype.py"), "--recipes", str(recipe), "--seeds", "0,1",
           "--steps", "2", "--results", str(results), "--markdown", str(table), "--", "--set", "eval.batch_size=4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-2000:]
    text = table.read_text()
    assert text.strip() in first.stdout
    from prefopt.models import resolve_precision

    auto = "float32 + bf16 autocast" if resolve_precision("auto").autocast else "float32"
    assert "| float32 | float32 | 0, 1 | 2 |" in text and f"| auto | {auto} | 0, 1 | 2 |" in text
    assert "training speed-up" in text and "| reward_auc |" in text
    assert "per-step loss, seed 0" in text and "| 1 |" in text and "| 2 |" in text
    assert len(list((results / "runs" / "tiny_kto").iterdir())) == 4  # 2 sides x 2 seeds
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert again.returncode == 0 and again.stdout.count("already finished") == 4


def test_bench_dtype_against_forced_bf16(write_recipe, tmp_path):
    """--against bf16 turns autocast on for the second side even where `auto` measured bf16 slower."""
    recipe = write_recipe("kto", model={"dtype": "auto"})
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_dtype.py"), "--recipes", str(recipe), "--seeds", "0",
           "--steps", "1", "--results", str(tmp_path / "bench"), "--against", "bf16", "--", "--set", "eval.batch_size=4"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "## float32 vs bf16 autocast forced on" in done.stdout
    assert "| float32 | float32 | 0 | 1 |" in done.stdout and "| bf16 | float32 + bf16 autocast | 0 | 1 |" in done.stdout
    assert "float32 s/step / bf16 s/step" in done.stdout and "| step | float32 | bf16 |" in done.stdout


def test_a_run_that_fails_stops_the_bench_in_one_line(tmp_path):
    # prefopt run's own error line, then a CalledProcessError traceback (exit 1) before
    # (a recipe that is there but fails in the run: a missing one is refused before any run, test_script_cli)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethod: kto\nbogus: 1\n")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_dtype.py"), "--recipes", str(bad),
                          "--seeds", "1", "--results", str(tmp_path / "bench")], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"prefopt: error: {bad}: bogus: unknown key; choices: data, eval, method, model, name, seed, seeds, train, "
        "tune, tuned",
        "bench_dtype: stopped: the run above failed (exit 2); finished runs are kept and skipped by the same command"]


def test_relative_paths_are_the_callers_at_parse_and_in_the_runs(write_recipe, tmp_path, monkeypatch, capsys):
    """The options were checked, and the runs found again, from the caller's folder, but the runs started in the
    repository: `--recipes mine.yaml` passed the check and the runs failed (or ran the repository's file of that
    name), and the default recipes from another folder were a traceback. Paths are made absolute once, at parse.
    The runs themselves are recorded here, not started."""
    spec = importlib.util.spec_from_file_location("bench_dtype", ROOT / "scripts" / "bench_dtype.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    started = []
    monkeypatch.setattr(bench, "run", lambda recipe, side, seed, steps, results, extra:
                        started.append((recipe, results)))
    write_recipe("kto", name="mine")
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--recipes", "mine.yaml", "--seeds", "1", "--results", "r"]) == 0
    assert started == [(str(tmp_path / "mine.yaml"), tmp_path / "r")] * 2  # float32, then auto
    assert "### mine" in capsys.readouterr().out
    assert bench.main(["--report-only", "--results", "r"]) == 0  # the default recipes: the repository's
    out = capsys.readouterr().out
    assert all(f"### {n}" in out for n in ("kto_mixed", "dpo", "orpo")), out
