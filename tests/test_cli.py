"""CLI contract: exit 0 / 2 (one line per problem, no traceback) / 1, and `list`/`data` without torch."""

import json
import os
import subprocess
import sys

import pytest

from prefopt.cli import main

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def prefopt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "prefopt", *args], capture_output=True, text=True, env=ENV, cwd=cwd)


def test_user_error_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethod: kto\ntrain: {per_device_train_batch_size: 1}\n")
    out = prefopt("run", str(bad), "--results", str(tmp_path / "res"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"prefopt: error: {bad}: train.per_device_train_batch_size: must be at least 2 "
                                  "for kto (KTO's KL term pairs each row with another completion of its "
                                  "micro-batch); set it to 2 or more")
    assert not (tmp_path / "res").exists()


def test_console_script_behaves_like_the_module(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "prefopt")
    if not os.path.exists(script):
        pytest.skip("the prefopt console script is installed by `pip install -e .`")
    listed = subprocess.run([script, "list"], capture_output=True, text=True, env=ENV)
    assert listed.returncode == 0 and "kto" in listed.stdout, listed.stderr
    missing = tmp_path / "missing.yaml"
    bad = subprocess.run([script, "run", str(missing)], capture_output=True, text=True, env=ENV)
    assert bad.returncode == 2 and bad.stderr.startswith(f"prefopt: error: {missing}"), bad.stderr


def test_internal_failure_is_exit_1(write_recipe, tmp_path):
    driver = ("import sys, prefopt.runner as r; r.run_recipe = lambda *a, **k: 1 / 0; "
              "from prefopt.cli import main; sys.exit(main(['run', sys.argv[1]]))")
    out = subprocess.run([sys.executable, "-c", driver, str(write_recipe("dpo"))], capture_output=True, text=True,
                         env=ENV)
    assert out.returncode == 1 and "ZeroDivisionError" in out.stderr


def run_without_torch(args: list[str], cwd=None):
    code = ("import sys, io, contextlib; from prefopt.cli import main; buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): rc = main(sys.argv[1:])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint(buf.getvalue()); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, cwd=cwd)


def test_list_shows_registries_without_torch():
    out = run_without_torch(["list"])
    assert out.returncode == 0, out.stderr
    for word in ("kto", "dpo", "orpo", "sft", "ipo", "simpo", "mixed", "balanced", "natural", "file_order",
                 "one_to_one", "instructions", "smollm2-135m-instruct", "unsloth"):
        assert word in out.stdout
    assert "[desirable] supervised fine-tuning on the desirable completions only" in out.stdout
    assert "recipes (./recipes):" in out.stdout and "[sft] The baseline: supervised fine-tuning" in out.stdout


def test_list_says_why_a_recipe_does_not_load_and_keeps_whole_sentences(tmp_path):
    # a broken recipe was listed as a bare `[?]`, a latin-1 one crashed `list` with a traceback, and a
    # description was its first comment line, cut mid-sentence
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "good.yaml").write_text("# KTO on all the data, ordered so that every micro-batch (e.g.\n"
                                                    "# four rows) holds both labels. A second sentence.\n#\n"
                                                    "# usage line\nname: good\nmethod: kto\n")
    (tmp_path / "recipes" / "broken.yaml").write_text("# broken\nname: x\nmethod: [kto\n")
    (tmp_path / "recipes" / "latin.yaml").write_bytes(b"# caf\xe9\nname: z\nmethod: kto\n")
    out = run_without_torch(["list"], cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.stdout.split("recipes (./recipes):")[1].splitlines()
             if line.strip()}
    assert lines["good"] == ("[kto] KTO on all the data, ordered so that every micro-batch (e.g. four rows) holds "
                             "both labels.")
    assert lines["broken"] == ("[?] does not load: line 4: invalid YAML (expected ',' or ']', but got "
                               "'<stream end>'); fix the syntax")
    assert lines["latin"] == "[?] does not load: recipe: cannot read the file (UnicodeDecodeError); check it is UTF-8 text"


def test_data_report_json_without_torch(write_recipe):
    out = run_without_torch(["data", str(write_recipe("kto")), "--json"])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["strategy"] == "mixed" and report["single_label_batches"] == 0
    assert report["examples_used"] == report["train_rows"]  # mixed trains on every row
    assert report["desirable"] + report["undesirable"] == report["batches_per_epoch"] * report["batch_size"]
    table = run_without_torch(["data", str(write_recipe("dpo"))])
    assert table.returncode == 0 and "pairs" in table.stdout


@pytest.mark.parametrize("where", ["recipe", "--set"])
def test_data_and_run_report_the_same_train_field_errors(where, write_recipe, tmp_path):
    if where == "recipe":
        recipe, sets = str(write_recipe("dpo", train={"max_stepz": 3, "bta": 0.2})), []
    else:
        recipe, sets = str(write_recipe("dpo")), ["--set", "train.max_stepz=3", "--set", "train.bta=0.2"]
    data = run_without_torch(["data", recipe, *sets])  # still no torch import on the way to the error
    run = prefopt("run", recipe, *sets, "--results", str(tmp_path / "res"))
    assert data.returncode == run.returncode == 2 and "Traceback" not in data.stderr + run.stderr
    assert data.stderr == run.stderr and len(run.stderr.strip().splitlines()) == 2
    assert "train.max_stepz: not a field of DPOConfig; did you mean 'max_steps'?" in run.stderr
    assert not (tmp_path / "res").exists()


def test_data_and_run_refuse_a_train_value_of_the_wrong_type_alike(write_recipe, tmp_path):
    # max_steps: 2.5 passed the recipe check and failed in the trainer after the run's first files were written
    recipe, sets = str(write_recipe("dpo")), ["--set", "train.max_steps=2.5"]
    data = run_without_torch(["data", recipe, *sets])
    run = prefopt("run", recipe, *sets, "--results", str(tmp_path / "res"))
    assert data.returncode == run.returncode == 2 and data.stderr == run.stderr
    assert run.stderr.strip() == (f"prefopt: error: {recipe}: train.max_steps: expected int (DPOConfig declares it "
                                  "so), got 2.5")
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("args,needle", [
    (["run", "nope.yaml"], "nope.yaml: recipe: no such file"),
    (["run", "{recipe}", "--set", "train.max_stepz=3"], "did you mean 'max_steps'?"),
    (["run", "{recipe}", "--seeds", "a,b"], "--seeds: a,b: expected comma-separated integers"),
    (["data", "{recipe}", "--set", "data.strategy=mixd"], "did you mean 'mixed'?"),
])
def test_bad_invocations(args, needle, write_recipe, tmp_path):
    recipe = str(write_recipe("kto"))
    out = prefopt(*[a.format(recipe=recipe) for a in args], "--results" if args[0] == "run" else "--json",
                  *([str(tmp_path / "res")] if args[0] == "run" else []))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_reader_that_leaves_early_gets_no_traceback(unbuffered):
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"} | ({"PYTHONUNBUFFERED": "1"} if unbuffered else {})
    proc = subprocess.Popen([sys.executable, "-m", "prefopt", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    proc.stdout.close()  # like `prefopt list | head -0`: gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_a_launchers_worker_ends_without_finalization_after_flushing(world_size, tmp_path):
    # under torchrun a native thread could abort the interpreter's finalization after a finished run;
    # a worker ends by os._exit instead, with its output complete and its exit status kept
    driver = ("import atexit, sys; atexit.register(lambda: print('finalized', file=sys.stderr)); "
              "from prefopt.cli import main; sys.exit(main())")
    env = {**ENV, "WORLD_SIZE": world_size}
    listed = subprocess.run([sys.executable, "-c", driver, "list"], capture_output=True, text=True, env=env)
    alone = subprocess.run([sys.executable, "-m", "prefopt", "list"], capture_output=True, text=True, env=ENV)
    assert listed.returncode == 0 and listed.stdout == alone.stdout and "kto" in listed.stdout
    assert ("finalized" in listed.stderr) == (world_size == "1"), listed.stderr
    missing = tmp_path / "missing.yaml"
    bad = subprocess.run([sys.executable, "-c", driver, "run", str(missing)], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith(f"prefopt: error: {missing}"), bad.stderr


@pytest.mark.parametrize("command", ["run", "tune"])
def test_a_results_path_that_cannot_hold_results(command, write_recipe, tmp_path, capsys):
    """A file, or a folder under a file: one line naming --results and exit 2 before any training; a folder
    still to be made is made only by a command that goes on to write in it."""
    recipe = str(write_recipe("kto"))
    (tmp_path / "afile").write_text("x")
    for where, said in ((tmp_path / "afile", "is a file"), (tmp_path / "afile" / "sub", "Not a directory")):
        assert main([command, recipe, "--results", str(where)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{where}: --results: " in err[0] and said in err[0], err
    broken = write_recipe("kto", name="broken", data={"path": str(tmp_path / "none.jsonl")})
    assert main([command, str(broken), "--results", str(tmp_path / "new" / "results")]) == 2
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["run", "tune", "compare"])
def test_an_empty_results_path_is_refused(command, write_recipe, tmp_path, capsys, monkeypatch):
    """`--results "$OUT"` with OUT unset: Path("") is the current folder, and a run spread runs/, cache/ and the
    tables over wherever it was started."""
    recipe = str(write_recipe("kto"))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    args = ["compare", ""] if command == "compare" else [command, recipe, "--results", ""]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results: is empty" in err[0], err
    assert list(here.iterdir()) == []


def test_interrupted_tune_names_the_command_that_resumes(write_recipe, tmp_path, capsys, monkeypatch):
    from prefopt import tuning

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "tune_recipes", interrupted)
    assert main(["tune", str(write_recipe("kto")), "--results", str(tmp_path)]) == 130
    assert "`prefopt tune` on the same recipes resumes" in capsys.readouterr().err


def test_an_interrupted_forced_batch_does_not_say_the_same_command_skips_the_finished(write_recipe, tmp_path,
                                                                                       capsys, monkeypatch):
    # with --force the same command trains every run again: "skips the finished runs" was untrue there
    from prefopt import runner
    from prefopt.batch import Interrupted

    def interrupted(*args, force=False, **kwargs):
        raise Interrupted(1, 3, force)

    monkeypatch.setattr(runner, "run_recipe", interrupted)
    recipe = str(write_recipe("kto"))
    assert main(["run", recipe, "--seeds", "1,2,3", "--results", str(tmp_path), "--force"]) == 130
    assert "the same command without --force skips the finished runs" in capsys.readouterr().err
    assert main(["run", recipe, "--seeds", "1,2,3", "--results", str(tmp_path)]) == 130
    assert "1 of 3 runs finished (kept): the same command skips the finished runs" in capsys.readouterr().err


def test_interrupted_compare_names_the_command_that_rebuilds(tmp_path, capsys, monkeypatch):
    from prefopt import compare

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "rebuild", interrupted)
    assert main(["compare", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "prefopt: interrupted; `prefopt compare` again rebuilds the tables and plots\n"


def test_a_file_where_the_runs_folder_goes_is_said_before_training(write_recipe, tmp_path, capsys):
    recipe = str(write_recipe("kto"))
    (tmp_path / "res" / "runs").mkdir(parents=True)
    (tmp_path / "res" / "runs" / "tiny_kto").write_text("x")
    assert main(["run", recipe, "--results", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'res' / 'runs' / 'tiny_kto'}: --results: is a file" in err[0], err


def test_own_file_with_a_shipped_recipe_keeps_its_generation_prompts_until_dropped(tmp_path):
    # what the README says of a file of one's own without a `constraint` column (it once said the generation
    # test was skipped, while the shipped recipe's eval.prompts kept it)
    from pathlib import Path

    from prefopt.testing import write_feedback

    root, own = Path(__file__).resolve().parents[1], write_feedback(tmp_path / "ours.jsonl")
    sets = ["--set", f"data.path={own}"]
    kept = run_without_torch(["data", str(root / "recipes" / "kto_balanced.yaml"), *sets, "--json"], cwd=root)
    dropped = run_without_torch(["data", str(root / "recipes" / "kto_balanced.yaml"), *sets,
                                 "--set", "eval.prompts=null", "--json"], cwd=root)
    assert kept.returncode == dropped.returncode == 0, kept.stderr + dropped.stderr
    kept, dropped = json.loads(kept.stdout), json.loads(dropped.stdout)
    assert kept["verified_prompts_from"] == "data/verified_test.jsonl" and kept["verified_prompts"] == 300
    assert dropped["verified_prompts"] == 0 and "no verifier column" in dropped["verifier_note"]


def test_compare_says_when_there_is_nothing_to_compare(tmp_path, capsys):
    # a mistyped results folder (or a data file given by mistake) compared nothing, printed nothing, exit 0
    for path, what in ((tmp_path / "reslts", "no such folder"), (tmp_path / "d.jsonl", "is a file, not a folder")):
        if what.startswith("is a file"):
            path.write_text("{}\n")
        assert main(["compare", str(path)]) == 2
        err = capsys.readouterr().err
        assert err == (f"prefopt: error: {path}: results: {what}; give the folder that `prefopt run --results` "
                       "wrote (default: results)\n")
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no finished run in" in out.err and not any((tmp_path / "empty").iterdir())


def test_compare_does_not_call_a_folder_that_appears_while_it_looks_a_file(tmp_path, capsys, monkeypatch):
    # `prefopt run --results out` probes a new folder by making and removing it; made between compare's "a
    # folder?" and "exists?", it was called "is a file, not a folder" (the bug cd139bc fixed in run's check)
    from pathlib import Path

    target = tmp_path / "out"
    is_dir = Path.is_dir

    def probed(self):
        answer = is_dir(self)
        if self == target and not answer:
            target.mkdir()  # the other process's probe, just after this look
        return answer

    monkeypatch.setattr(Path, "is_dir", probed)
    assert main(["compare", str(target)]) == 2
    assert capsys.readouterr().err.startswith(f"prefopt: error: {target}: results: no such folder;")

def test_one_rated_completion_per_prompt_kto_and_sft_take_it_and_pair_methods_refuse_it_alike(write_recipe,
                                                                                                 tmp_path):
    # a thumbs up or down per prompt (no prompt with both labels): KTO's own data was refused by data and run
    data = tmp_path / "thumbs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"question {i}", "completion": f" answer {i}", "label": i % 4 != 3})
                            + "\n" for i in range(40)))
    sets = ["--set", f"data.path={data}"]
    for method in ("kto", "sft"):
        out = run_without_torch(["data", str(write_recipe(method)), *sets, "--json"])
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["eval_pairs"] == 0 and "no prompt there has both a desirable and an undesirable completion" \
            in report["pair_metrics_note"]
    for method in ("dpo", "orpo"):
        recipe = str(write_recipe(method))
        shown = run_without_torch(["data", recipe, *sets])
        run = prefopt("run", recipe, *sets, "--results", str(tmp_path / "res"))
        assert shown.returncode == run.returncode == 2 and shown.stderr == run.stderr, run.stderr
        assert run.stderr.strip() == (f"prefopt: error: {data}: label: no pair can be formed for {method}: no prompt "
                                      "has both a desirable and an undesirable completion; add completions of the "
                                      "other label to some prompts")
    assert not (tmp_path / "res").exists()


def test_data_warns_of_repeated_rows_and_completions_labelled_both_ways_in_one_line_each(write_recipe, tiny_data,
                                                                                          tmp_path):
    lines = tiny_data.read_text().splitlines()
    first = json.loads(lines[0])
    flipped = json.dumps({**first, "label": not first["label"]})
    data = tmp_path / "noisy.jsonl"
    data.write_text("\n".join(lines + [lines[0], lines[0], flipped]) + "\n")  # line 1 twice more; then flipped
    n = len(lines)
    for json_out in ([], ["--json"]):
        out = run_without_torch(["data", str(write_recipe("kto")), "--set", f"data.path={data}", *json_out])
        assert out.returncode == 0, out.stderr  # warnings, not errors
        assert out.stderr.splitlines() == [
            f"prefopt: warning: {data}: 2 rows repeat an earlier one exactly (first: row {n + 1} repeats row 1): each "
            "copy is trained on and counted in the held-out metrics again; remove the copies, or keep them if they "
            "are meant as weights",
            f"prefopt: warning: {data}: 1 completion is labelled both desirable and undesirable for one prompt (first: "
            f"rows 1 and {n + 3}): no reward can rank a completion against itself, so such rows hold reward_auc "
            "toward chance; keep one label per completion (e.g. the majority's)"]
    report = json.loads(out.stdout)
    assert (report["duplicate_rows"], report["contradictory_labels"], len(report["data_warnings"])) == (2, 1, 2)
    clean = run_without_torch(["data", str(write_recipe("kto"))])
    assert clean.returncode == 0 and clean.stderr == ""


def test_max_concurrent_on_the_local_engine_is_refused_or_said(write_recipe, tmp_path, capsys, monkeypatch):
    """`--engine local --max-concurrent 2` ran the runs one at a time without a word (exit 0); now refused in one
    line, nothing run. With --engine auto choosing local (no Ray) the runs go on, with a note saying so."""
    from prefopt import batch, runner
    from prefopt.recipe import load_recipe

    ran = []
    monkeypatch.setattr(runner, "run_one", lambda recipe, *, results, force=False: ran.append(recipe.seed)
                        or results / f"seed{recipe.seed}")
    recipe = str(write_recipe("dpo", data={"validation_fraction": 0.25}, tune={"trials": 2}))
    for command in ("run", "tune"):
        argv = [command, recipe, "--results", str(tmp_path / "r"), "--engine", "local", "--max-concurrent", "2"]
        assert main(argv + (["--seeds", "1,2"] if command == "run" else [])) == 2
        err = capsys.readouterr().err
        assert err == ("prefopt: error: --max-concurrent: 2: sets how many Ray trials run at once; --engine local "
                       "runs one run at a time: leave --max-concurrent out, or use --engine ray\n"), err
    assert ran == []
    monkeypatch.setattr(batch, "ray_available", lambda: False)
    assert batch.run_jobs([load_recipe(recipe).for_seed(s) for s in (1, 2)], results=tmp_path / "r",
                          max_concurrent=2) == [tmp_path / "r" / "seed1", tmp_path / "r" / "seed2"]
    assert "--max-concurrent 2 is for the ray engine, not used here" in capsys.readouterr().err and ran == [1, 2]
    batch.run_jobs([load_recipe(recipe).for_seed(3)], results=tmp_path / "r", engine="local", max_concurrent=1)
    assert capsys.readouterr().err == ""  # one at a time is what local does


@pytest.mark.parametrize("ray, seeds, why", [(False, (1, 2), "Ray is not installed"),
                                             (True, (1,), "one run to do: --engine auto starts Ray for several")])
def test_storage_left_unused_by_auto_is_said(ray, seeds, why, write_recipe, tmp_path, capsys, monkeypatch):
    """--engine auto choosing local (Ray missing, one run to do, torchrun) dropped --storage without a word, where
    --engine local refuses it; now said in one note, with --max-concurrent's when both are unused. Only cases
    that resolve to local (Ray's workers would import the real run_one)."""
    from prefopt import batch, runner
    from prefopt.recipe import load_recipe

    ran = []
    monkeypatch.setattr(runner, "run_one", lambda recipe, *, results, force=False: ran.append(recipe.seed)
                        or results / f"seed{recipe.seed}")
    monkeypatch.setattr(batch, "ray_available", lambda: ray)
    monkeypatch.setattr(batch, "_on_ray", lambda *a, **k: pytest.fail("auto must choose local here"))
    recipe = load_recipe(str(write_recipe("dpo")))
    assert batch.pick_engine("auto", len(seeds)) == "local"
    batch.run_jobs([recipe.for_seed(s) for s in seeds], results=tmp_path / "r", storage="/shared/ray",
                   max_concurrent=2)
    runs = "the 2 runs run one at a time" if len(seeds) > 1 else "the run runs"
    both = "--storage /shared/ray and --max-concurrent 2 are" if len(seeds) > 1 else "--storage /shared/ray is"
    assert capsys.readouterr().err == (f"prefopt: note: {both} for the ray engine, not used here ({why}): {runs} in "
                                       "this process, nothing is written under --storage\n")
    assert ran == list(seeds)


@pytest.mark.parametrize("option, value", [("--address", "127.0.0.1:6379"), ("--storage", "/shared/ray")])
def test_ray_options_on_the_local_engine_are_refused(option, value, write_recipe, tmp_path, capsys, monkeypatch):
    """`--engine local --address HOST:PORT` (or `--storage PATH`) ran every run here, the cluster never asked,
    exit 0 without a word; refused in one line naming --engine ray, as --max-concurrent is, before any run."""
    from prefopt import runner

    ran = []
    monkeypatch.setattr(runner, "run_one", lambda recipe, *, results, force=False: ran.append(recipe.seed)
                        or results / f"seed{recipe.seed}")
    recipe = str(write_recipe("dpo", data={"validation_fraction": 0.25}, tune={"trials": 2}))
    for command in ("run", "tune"):
        argv = [command, recipe, "--results", str(tmp_path / "r"), "--engine", "local", option, value]
        assert main(argv + (["--seeds", "1,2"] if command == "run" else [])) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"prefopt: error: {option}: {value}: ") and "--engine ray" in err, err
        assert len(err.splitlines()) == 1, err
    assert ran == []


def test_ray_address_from_the_environment_on_the_local_engine_is_said(write_recipe, tmp_path, capsys, monkeypatch):
    """$RAY_ADDRESS under --engine local went unused without a word (an --address is refused); a one-line note now,
    not a refusal: the variable may be set for the whole machine, and the runs still run here."""
    from prefopt import runner

    ran = []
    monkeypatch.setattr(runner, "run_one", lambda recipe, *, results, force=False: ran.append(recipe.seed)
                        or results / f"seed{recipe.seed}")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    recipe = str(write_recipe("dpo"))
    assert main(["run", recipe, "--results", str(tmp_path / "r"), "--engine", "local", "--seeds", "1,2",
                 "--no-compare"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "prefopt: note: $RAY_ADDRESS 10.0.0.1:6379 is for the ray engine, not used here (--engine local): the 2 runs "
        "run one at a time in this process"]
    assert ran == [1, 2]
    monkeypatch.delenv("RAY_ADDRESS")
    assert main(["run", recipe, "--results", str(tmp_path / "r"), "--engine", "local", "--seeds", "3",
                 "--no-compare"]) == 0
    assert "note" not in capsys.readouterr().err and ran == [1, 2, 3]


def test_help_says_what_each_command_does_and_every_option():
    # `list` was said to show "methods, data strategies, verifiers and model aliases" (it also lists pairings,
    # backends and the shipped recipes); `tune` to write results/tuned/ whatever --results said; and
    # `data --set`, `tune --verbose` had no help at all
    from prefopt.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    for section in ("methods", "data strategies", "pairings", "verifiers", "model aliases", "backends", "recipes"):
        assert section in helps["list"], section
    assert "--results" in helps["tune"]
    # --engine auto was said to pick Ray only for more than one run: an --address (or $RAY_ADDRESS) picks it for
    # one, and under torchrun it is always local (prefopt.batch.pick_engine)
    engine = next(a.help for a in sub.choices["run"]._actions if a.dest == "engine")
    assert "$RAY_ADDRESS" in engine and "torchrun" in engine and "left" in engine
    for name, parser in sub.choices.items():
        for action in parser._actions:
            assert action.help, f"prefopt {name} {'/'.join(action.option_strings) or action.dest}: no help"
