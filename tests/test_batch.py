"""Batches of runs on Ray (embedded here) and one by one: the same runs, the same numbers."""

import json
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from prefopt import allocator, batch
from prefopt.cli import main
from prefopt.errors import UserError

pytest.importorskip("ray.tune", reason="Ray is in the test extra: pip install -e '.[test]'")

KEYS = ("reward_auc", "preference_accuracy", "reward_margin", "kl", "desirable_nll", "steps")


def metrics_of(results, name):
    return {p.name.split("-")[0]: json.loads((p / "metrics.json").read_text())
            for p in sorted((results / "runs" / name).iterdir())}


@pytest.fixture(scope="module", autouse=True)
def ray_down():
    yield
    import ray

    ray.shutdown()


def test_ray_runs_trials_concurrently_with_the_sequential_numbers(write_recipe, tmp_path):
    recipe = str(write_recipe("dpo"))
    seq, on_ray = tmp_path / "seq", tmp_path / "ray"
    assert main(["run", recipe, "--results", str(seq), "--seeds", "1,2", "--engine", "local"]) == 0
    assert main(["run", recipe, "--results", str(on_ray), "--seeds", "1,2", "--engine", "ray",
                 "--max-concurrent", "2"]) == 0
    a, b = metrics_of(seq, "tiny_dpo"), metrics_of(on_ray, "tiny_dpo")
    assert sorted(a) == sorted(b) == ["seed1", "seed2"]
    for seed in a:
        for key in KEYS:  # (Ray gives each trial one thread: reductions may round differently in the last bits)
            assert b[seed][key] == pytest.approx(a[seed][key], rel=1e-5, abs=1e-9), (seed, key)
    (s1, e1), (s2, e2) = batch.trial_windows(on_ray)
    assert max(s1, s2) < min(e1, e2)  # both trials were running at the same moment
    assert pd.read_csv(on_ray / "summary.csv").query("recipe == 'tiny_dpo'")["n_seeds"].item() == 2


def test_a_killed_run_resumes_as_a_ray_trial(write_recipe, tmp_path):
    from tests.test_faults import complete_checkpoint

    recipe = str(write_recipe("kto", train={"max_steps": 24, "save_steps": 4}))
    assert main(["run", recipe, "--results", str(tmp_path / "clean"), "--engine", "local"]) == 0
    results = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "prefopt", "run", recipe, "--results", str(results)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if complete_checkpoint(results):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it was killed"
    out = subprocess.run([sys.executable, "-m", "prefopt", "run", recipe, "--results", str(results), "--engine", "ray"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stdout + out.stderr  # the trial's own output, forwarded by Ray
    if allocator.wanted():  # the command line re-executed itself with glibc's heap settings; Ray's worker inherited them
        (run,) = (results / "runs" / "tiny_kto").iterdir()
        assert json.loads((run / "env.json").read_text())["malloc"] == allocator.SETTINGS
    (clean,), (resumed,) = (metrics_of(r, "tiny_kto").values() for r in (tmp_path / "clean", results))
    for key in KEYS:
        assert resumed[key] == pytest.approx(clean[key], rel=1e-5, abs=1e-7), key


def test_a_user_error_inside_a_ray_trial_comes_back_as_one_line(write_recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(batch, "check_jobs", lambda recipes: None)  # (it would find this one before Ray)
    recipe = str(write_recipe("dpo", train={"max_length": 8}))  # every prompt is longer: found in the trial
    assert main(["run", recipe, "--results", str(tmp_path / "r"), "--seeds", "1,2", "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert "prefopt: error:" in err and "train.max_length" in err and "Traceback" not in _without_teardown_noise(err)


def test_a_data_error_of_every_fold_is_said_once_before_ray_starts(write_recipe, tmp_path, capsys, monkeypatch):
    """More folds than prompts holding both labels (30 here): `prefopt data` says so at once; `run` said the
    same only after starting and failing all 41 Ray trials (5.5 minutes on 2 cores), with Ray's worker
    tracebacks, and left results/cache/ray behind."""
    monkeypatch.setattr(batch, "_on_ray", lambda *a, **kw: pytest.fail("Ray was started"))
    recipe = str(write_recipe("kto"))
    assert main(["data", recipe, "--set", "data.folds=41"]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "data.folds: 30 prompt(s) carry both labels, fewer than the 41 folds" in said
    results = tmp_path / "r"
    assert main(["run", recipe, "--results", str(results), "--folds", "41", "--engine", "ray"]) == 2
    assert capsys.readouterr().err == said
    assert not any(p.is_file() for p in results.rglob("*"))


def _without_teardown_noise(err: str) -> str:
    """stderr without what a Ray worker forwards after Python's "Exception ignored in: ..." (an exception in a
    weakref callback while Ray stops the worker process, once in five runs on a 2-core CPU); any other
    traceback, the driver's or a trial's, stays."""
    noisy, kept = set(), []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", err).splitlines():
        worker = re.match(r"\((?:trial )?pid=(\d+)\)", line)
        if worker and "Exception ignored in:" in line:
            noisy.add(worker.group(1))
        if not (worker and worker.group(1) in noisy):
            kept.append(line)
    return "\n".join(kept)


def test_engine_choice_and_what_it_says_without_ray(monkeypatch):
    assert batch.pick_engine("auto", 1) == "local"
    assert batch.pick_engine("auto", 3) == "ray"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert batch.pick_engine("auto", 3) == "local"  # under torchrun the processes are the batch's engine
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(batch, "ray_available", lambda: False)
    assert batch.pick_engine("auto", 3) == "local"
    with pytest.raises(UserError, match=r'pip install -e "\.\[ray\]"'):
        batch.pick_engine("ray", 3)


def test_a_cluster_needs_shared_storage(write_recipe, tmp_path):
    from prefopt.recipe import load_recipe

    r = load_recipe(str(write_recipe("dpo")))
    with pytest.raises(UserError, match="--storage.*every node"):
        batch.run_jobs([r, r.for_seed(1)], results=tmp_path, engine="ray", address="10.0.0.1:6379")


def test_jobs_that_are_one_run_run_once_and_bad_concurrency_is_refused(write_recipe, tmp_path, monkeypatch):
    """A repeated seed (or the same tuning settings twice) is one run directory: trained once, returned for
    every job that asked for it, so two trials never write into one directory at once."""
    from prefopt import runner
    from prefopt.recipe import load_recipe

    r = load_recipe(str(write_recipe("dpo")))
    calls = []
    monkeypatch.setattr(runner, "run_one", lambda recipe, *, results, force=False: calls.append(recipe.seed)
                        or results / f"seed{recipe.seed}")
    out = batch.run_jobs([r.for_seed(1), r.for_seed(2), r.for_seed(1)], results=tmp_path, engine="local")
    assert calls == [1, 2] and out == [tmp_path / "seed1", tmp_path / "seed2", tmp_path / "seed1"]
    with pytest.raises(UserError, match="at least 1"):
        batch.run_jobs([r], results=tmp_path, engine="local", max_concurrent=0)


def test_finished_runs_are_skipped_before_the_engine(write_recipe, tmp_path, monkeypatch):
    """A resumed batch sends only its unfinished runs to Ray (a Ray worker per finished run would cost
    seconds each just to skip it); the finished ones are still returned, in job order."""
    from prefopt import results as res
    from prefopt.recipe import load_recipe

    r = load_recipe(str(write_recipe("dpo")))
    jobs = [r.for_seed(1), r.for_seed(2), r.for_seed(3)]
    dirs = [res.run_dir(tmp_path, j.name, j.seed, j.fingerprint(), j.data.fold).resolve() for j in jobs]
    for d in dirs[::2]:  # seeds 1 and 3 finished earlier
        d.mkdir(parents=True)
        (d / "metrics.json").write_text("{}")
    sent = []
    monkeypatch.setattr(batch, "_on_ray", lambda todo, **kw: sent.extend(todo) or [dirs[1]] * len(todo))
    out = batch.run_jobs(jobs, results=tmp_path, engine="ray")
    assert [j.seed for j, _ in sent] == [2] and out == dirs
    sent.clear()
    assert batch.run_jobs([jobs[0], jobs[2]], results=tmp_path, engine="ray") == [dirs[0], dirs[2]] and not sent


def test_sigterm_stops_a_ray_batch_as_ctrl_c_does(write_recipe, tmp_path):
    """`kill` (or `timeout`, a scheduler's preemption) of a batch on Ray: Ray's handler in the driver aborted
    it (exit 134, a C++ stack dump, a core file where cores are kept, not a word on resuming); now Ray Tune
    stops the trials as on Ctrl-C, the CLI says how to resume and exits 130, and the run resumes."""
    from tests.test_faults import complete_checkpoint

    recipe = str(write_recipe("kto", train={"max_steps": 400, "save_steps": 2}))
    results = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "prefopt", "run", recipe, "--results", str(results), "--seeds",
                             "1,2", "--engine", "ray"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not complete_checkpoint(results):
        time.sleep(0.05)
    assert proc.poll() is None, "the batch ended before it was stopped"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "prefopt: interrupted" in err and "SIGTERM received" not in err
    assert not list(results.rglob("metrics.json"))  # stopped, not finished: the next call resumes it
    assert not (results / "cache" / "ray").exists()  # Ray's state of a stopped batch is never read again


def test_every_trial_s_own_problem_comes_back_not_only_the_first(write_recipe, tmp_path, capsys, monkeypatch):
    """Two jobs failing inside their trials for different reasons (found only there: a model directory
    without a model, prompts longer than max_length): both are said, each once, and the exit status is 2."""
    from prefopt.recipe import load_recipe

    monkeypatch.setattr(batch, "check_jobs", lambda recipes: None)  # (it would find the max_length one first)
    (tmp_path / "nomodel").mkdir()
    (tmp_path / "nomodel" / "config.json").write_text("{}")
    short = load_recipe(str(write_recipe("dpo", train={"max_length": 8})))
    nomodel = load_recipe(str(write_recipe("kto", model={"name": str(tmp_path / "nomodel"), "backend": "transformers",
                                                          "dtype": "float32", "lora": {"r": 4, "alpha": 8}})))
    with pytest.raises(UserError) as e:
        batch.run_jobs([short, nomodel], results=tmp_path / "r", engine="ray", max_concurrent=2)
    said = str(e.value)
    assert "train.max_length" in said and "model.name" in said, said
    assert not (tmp_path / "r" / "cache" / "ray").exists()  # nor is a failed batch's


def test_trial_windows_are_the_last_batch_s_only(tmp_path):
    """A results folder keeps each finished Ray batch's folder; the windows read every batch's trials, so a
    second batch's two trials came back as four windows."""
    for start, trials in ((999, 3), (1000, 2)):
        for t in range(trials):
            (tmp_path / "cache" / "ray" / f"prefopt-{start}" / f"trial_{t}").mkdir(parents=True)
            pd.DataFrame({"trial_started": [start + t], "trial_ended": [start + t + 5]}).to_csv(
                tmp_path / "cache" / "ray" / f"prefopt-{start}" / f"trial_{t}" / "progress.csv", index=False)
    assert batch.trial_windows(tmp_path) == [(1000.0, 1005.0), (1001.0, 1006.0)]
    assert batch.trial_windows(tmp_path / "none") == []


def test_a_setting_trl_refuses_is_said_once_before_ray_starts(write_recipe, tmp_path, capsys, monkeypatch):
    """A train.* value TRL's config refuses (warmup_steps: -1) fails every trial alike: said before Ray
    starts, as a data error is, not after each trial started and failed (30 s for two tiny trials)."""
    monkeypatch.setattr(batch, "_on_ray", lambda *a, **kw: pytest.fail("Ray was started"))
    results = tmp_path / "r"
    assert main(["run", str(write_recipe("dpo")), "--results", str(results), "--seeds", "1,2", "--engine", "ray",
                 "--set", "train.warmup_steps=-1"]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "train: DPOConfig rejected the settings" in said and "warmup_steps" in said
    assert not any(p.is_file() for p in results.rglob("*"))


def test_an_address_no_cluster_answers_at_is_one_line(write_recipe, tmp_path, capsys):
    """ray.init retried a dead HOST:PORT for minutes, a C++ warning every few seconds, before failing."""
    import socket

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert main(["run", str(write_recipe("dpo")), "--results", str(tmp_path / "r"), "--seeds", "1,2",
                     "--address", f"127.0.0.1:{port}", "--storage", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--address: 127.0.0.1:{port}: no Ray cluster could be joined" in err, err
