"""Every Python script in scripts/ reads its command line as `prefopt` does: every option has a help line saying
what it does and its default, and a bad command line (an unknown option, a missing argument, a non-number, a count
below its least, a missing input file, an unknown name) is one line naming the option and the fix, exit 2, no
traceback, nothing written and no model loaded. Before, bench_ray.py, rejudge.py and same_run.py printed
argparse's usage above the error; a missing recipe was a traceback (bench_dtype.py, plain_trl.py), a child's error
under the script's own (bench_malloc.py, profile_step.py, gpu_check.py) or, in bench_ray.py, came after the
previous results were deleted; `bench_dtype.py --seeds x` was a traceback, `bench_overhead.py --methods kto,x` a
KeyError after the first method's runs, `bench_overhead.py --model x` benchmarked SmolLM2, and `make_dataset.py
--model x` or `rejudge_strict.py --model x` was a traceback once the model was to be loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}

# the script's parser, as it stands once built: its options, their help and whether they are required
DUMP = """
import argparse, json, runpy, sys

def dump(self, args=None, namespace=None):
    print(json.dumps([[a.option_strings or [a.dest], a.help, a.required] for a in self._actions
                      if not isinstance(a, argparse._HelpAction)]))
    raise SystemExit(0)

argparse.ArgumentParser.parse_args = dump
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_option_says_what_it_does_and_its_default(script):
    out = subprocess.run([sys.executable, "-c", DUMP, str(script)], capture_output=True, text=True, cwd=ROOT,
                         env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    actions = json.loads(out.stdout.splitlines()[-1])
    assert actions
    no_help = [names for names, text, _ in actions if not (text or "").strip()]
    assert no_help == [], f"{script.name}: options without help: {no_help}"
    no_default = [names for names, text, required in actions if not required and "default" not in text]
    assert no_default == [], f"{script.name}: options whose help does not say the default: {no_default}"


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args], cwd=cwd,
                          capture_output=True, text=True, env=ENV, timeout=300)


RECIPE = str(ROOT / "recipes" / "orpo.yaml")


@pytest.mark.parametrize("script, args, needle", [
    # an unknown option or a missing argument: one line, not argparse's usage above it
    ("bench_ray", [RECIPE, "--bogus"], "unrecognized arguments: --bogus"),
    ("bench_ray", [], "the following arguments are required: recipe"),
    ("rejudge", ["r", "--bogus"], "unrecognized arguments: --bogus"),
    ("rejudge", [], "the following arguments are required: results"),
    ("same_run", ["a", "b", "--bogus"], "unrecognized arguments: --bogus"),
    ("same_run", ["a"], "the following arguments are required: b"),
    ("eval_share", ["--bogus"], "unrecognized arguments: --bogus"),
    # a non-number where numbers are expected
    ("bench_ray", [RECIPE, "--seeds", "1,x"], "--seeds: '1,x': expected comma-separated integers, e.g. --seeds 1,2,3"),
    ("bench_dtype", ["--seeds", "x", "--report-only"],
     "--seeds: 'x': expected comma-separated integers, e.g. --seeds 1,2,3"),
    ("bench_dtype", ["--seeds", ",", "--report-only"], "--seeds: ',': expected at least one seed, e.g. --seeds 1,2,3"),
    ("bench_overhead", ["--steps", "x"], "--steps: invalid int value: 'x'"),
    # a missing input file: refused before any run is started or anything deleted
    ("bench_ray", ["nope.yaml"], "recipe: nope.yaml: no such file; give a recipe file, e.g. recipes/orpo.yaml"),
    ("bench_dtype", ["--recipes", "nope.yaml", "--report-only"],
     "--recipes: nope.yaml: no such file; give a recipe file, e.g. recipes/orpo.yaml"),
    ("bench_dtype", ["--recipes", RECIPE, "nope.yaml", "--report-only"],
     "--recipes: nope.yaml: no such file; give a recipe file, e.g. recipes/orpo.yaml"),
    ("bench_malloc", ["nope.yaml"], "recipe: nope.yaml: no such file; give a recipe file, e.g. recipes/orpo.yaml"),
    ("profile_step", ["nope.yaml"], "recipe: nope.yaml: no such file; give a recipe file, e.g. recipes/orpo.yaml"),
    ("gpu_check", ["--dry", "--recipes", "nope.yaml"],
     "--recipes: nope.yaml: no such file; give a recipe file, e.g. recipes/orpo.yaml"),
    ("plain_trl", ["nope.json", "out.json"],
     "spec: nope.json: no such file; give the JSON file scripts/bench_overhead.py writes"),
    # an unknown name: refused, not a traceback after the first runs nor SmolLM2 benchmarked instead (each with a
    # --steps 0 after it, which the old code refused at once, so that this test never trains on it)
    ("bench_overhead", ["--methods", "kto,dop", "--steps", "0"], "--methods: unknown name 'dop' in 'kto,dop'; did you mean 'dpo'? "
     "choices: dpo, kto, orpo"),
    ("bench_overhead", ["--model", "smollm", "--steps", "0"], "--model: invalid choice: 'smollm' (choose from 'tiny', 'smollm2')"),
    ("gpu_check", ["--dry", "--backends", "transformer", "--steps", "0"], "--backends: unknown name 'transformer' in 'transformer'; "
     "did you mean 'transformers'? choices: auto, transformers, unsloth"),
    # an unknown --model: found only when the model was loaded, a UserError traceback (exit 1)
    ("make_dataset", ["--model", "smollm2-135m", "--prompts", "1", "--out", "x.jsonl"], "--model: unknown model "
     "'smollm2-135m' (no such directory); use a local model directory or an alias: did you mean "
     "'smollm2-135m-instruct'? choices: smollm2-135m-instruct"),
    ("rejudge_strict", ["results", "copy", "--model", "smollm2-135m"], "--model: unknown model 'smollm2-135m' (no such "
     "directory); use a local model directory or an alias: did you mean 'smollm2-135m-instruct'? choices: "
     "smollm2-135m-instruct"),
])
def test_a_bad_command_line_is_one_line_exit_2_and_writes_nothing(script, args, needle, tmp_path):
    out = _run(script, args, tmp_path)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stderr.splitlines() == [f"{script}: error: {needle} (see {script}.py --help)"]
    assert out.stdout == "" and list(tmp_path.iterdir()) == []


def test_an_unreadable_input_file_is_one_line(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    spec.chmod(0)
    if os.access(spec, os.R_OK):
        pytest.skip("running as a user who reads any file (root)")
    out = _run("plain_trl", [str(spec), str(tmp_path / "out.json")], tmp_path)
    assert out.returncode == 2 and out.stderr.splitlines() == [
        f"plain_trl: error: spec: {spec}: cannot be read (Permission denied); give the JSON file "
        "scripts/bench_overhead.py writes (see plain_trl.py --help)"]
    assert sorted(tmp_path.iterdir()) == [spec]


def test_a_spec_that_is_not_json_is_one_line_before_any_model_is_loaded(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text("{not json")
    out = _run("plain_trl", [str(spec), str(tmp_path / "out.json")], tmp_path)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr[-2000:]
    assert out.stderr.startswith(f"plain_trl: error: spec: {spec}: not JSON (") and "Traceback" not in out.stderr
    assert sorted(tmp_path.iterdir()) == [spec]


def test_bench_ray_keeps_the_previous_results_when_the_recipe_is_missing(tmp_path):
    # it deleted <results>/local before the run found the recipe missing
    kept = tmp_path / "b" / "local" / "runs" / "kept.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text("x")
    out = _run("bench_ray", [str(tmp_path / "nope.yaml"), "--results", str(tmp_path / "b")], tmp_path)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and kept.is_file()


def test_a_relative_recipe_of_bench_malloc_is_read_from_the_repository(tmp_path):
    # its runs start in the repository, so `recipes/orpo.yaml` from another folder is the repository's
    out = _run("bench_malloc", ["recipes/orpo.yaml", "--rounds", "x"], tmp_path)
    assert out.stderr.splitlines() == ["bench_malloc: error: --rounds: invalid int value: 'x' (see bench_malloc.py --help)"]
