"""Failure is boring: a killed run resumes to the same numbers; several processes train one run."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from prefopt.cli import main
from prefopt.resume import last_complete_checkpoint

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def only_run(results, name):
    (run,) = (results / "runs" / name).iterdir()
    return run


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_killed_mid_training_then_resume_matches_uninterrupted(sig, write_recipe, tmp_path):
    recipe = str(write_recipe("kto", train={"max_steps": 40, "save_steps": 4}))
    assert main(["run", recipe, "--results", str(tmp_path / "clean")]) == 0

    results = tmp_path / "killed"
    # Ctrl-C reaches a foreground process; a suite started as a background job (`cmd &`) passes SIGINT down
    # as ignored, and Python then keeps ignoring it, so the child gets the default disposition back.
    err = tmp_path / "stderr"
    proc = subprocess.Popen([sys.executable, "-m", "prefopt", "run", recipe, "--results", str(results)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=err.open("w"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if complete_checkpoint(results):
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    proc.wait()
    # Ctrl-C, and SIGTERM (`timeout`, a scheduler's preemption) alike: prefopt exits 130 with a resume hint (SIGTERM
    # ended it without a word, exit -15, where a batch said what finished); SIGKILL ends the process
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 130), "the run finished before it was stopped"
    if sig != signal.SIGKILL:
        assert err.read_text().strip().splitlines()[-1] == ("prefopt: interrupted; `prefopt run` on the same recipe "
                                                            "resumes from the last checkpoint")
    run = only_run(results, "tiny_kto")
    assert not (run / "metrics.json").exists()  # an unfinished run is not a result
    assert main(["compare", str(results)]) == 0 and not (results / "comparison.csv").exists()
    # the training seconds up to the checkpoint it will resume from were recorded before that checkpoint
    resumed = last_complete_checkpoint(run / "checkpoints")
    before = json.loads((run / "checkpoints" / "clock.json").read_text())[resumed.split("-")[-1]]

    out = subprocess.run([sys.executable, "-m", "prefopt", "run", recipe, "--results", str(results)], env=ENV,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stdout
    clean = only_run(tmp_path / "clean", "tiny_kto")
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (clean, run))
    for key in ("reward_auc", "preference_accuracy", "reward_margin", "kl", "desirable_nll"):
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    # the cost covers every step: the first attempt's seconds up to the checkpoint plus the second attempt's
    assert b["resumed_from_step"] == int(resumed.split("-")[-1]) and a["resumed_from_step"] is None
    # what the first attempt trained under (threads, allocator, versions) stays on record beside the second's
    earlier = json.loads((run / "env.json").read_text())["earlier_attempts"]
    assert len(earlier) == 1 and earlier[0]["seed"] == 0 and "earlier_attempts" not in earlier[0]
    assert b["train_seconds"] > before > 0
    la, lb = (pd.read_csv(r / "train_log.csv").dropna(subset=["loss"]) for r in (clean, run))
    assert la["step"].tolist() == lb["step"].tolist() == list(range(1, 41))
    assert la["loss"].tolist() == pytest.approx(lb["loss"].tolist(), rel=1e-5)
    # every micro-batch of both attempts, not only the last attempt's
    ba, bb = (pd.read_csv(r / "batch_labels.csv") for r in (clean, run))
    assert len(ba) == 40 and ba.equals(bb)
    assert a["single_label_batches_trained"] == b["single_label_batches_trained"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_local_batch_stopped_after_its_first_run_says_what_finished(sig, write_recipe, tmp_path):
    """SIGTERM (`kill`, `timeout`, a scheduler) of `--seeds` on the local engine ended the process without a word
    (exit -15), and Ctrl-C's line said nothing of the finished runs; both now say how many finished and that the
    same command skips them, exit 130, no traceback, and the stopped run holds no metrics.json."""
    recipe = str(write_recipe("kto", train={"max_steps": 40, "save_steps": 4}))
    results = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "prefopt", "run", recipe, "--results", str(results), "--seeds",
                             "1,2", "--engine", "local"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not list(results.glob("runs/*/*/metrics.json")):
        time.sleep(0.01)
    assert proc.poll() is None, "the batch ended before it was stopped"
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == ("prefopt: interrupted; 1 of 2 runs finished (kept): the same command "
                                            "skips the finished runs and resumes the others from their last checkpoint")
    assert "Traceback" not in err
    assert [p.parent.name.split("-")[0] for p in results.glob("runs/*/*/metrics.json")] == ["seed1"]


@pytest.mark.parametrize("select", ["last", "best"])
def test_stopped_after_the_last_checkpoint_trains_no_step_more(select, write_recipe, tmp_path, monkeypatch):
    """Stopped between its final checkpoint and trained.json, a run loads that checkpoint and evaluates:
    resuming into the trainer's loop would train one step past max_steps."""
    from prefopt import results as res

    recipe = str(write_recipe("kto", data={"strategy": "file_order", "validation_fraction": 0.2},
                              train={"max_steps": 6, "save_steps": 3}, eval={"batch_size": 8, "select": select}))
    assert main(["run", recipe, "--results", str(tmp_path / "clean")]) == 0
    write_json = res.write_json

    def stop_at_trained(path, data):
        if path.name == "trained.json":
            raise KeyboardInterrupt
        write_json(path, data)

    monkeypatch.setattr(res, "write_json", stop_at_trained)
    results = tmp_path / "stopped"
    assert main(["run", recipe, "--results", str(results)]) == 130
    run = only_run(results, "tiny_kto")
    assert last_complete_checkpoint(run / "checkpoints").endswith("checkpoint-6")
    monkeypatch.setattr(res, "write_json", write_json)
    assert main(["run", recipe, "--results", str(results)]) == 0
    clean = only_run(tmp_path / "clean", "tiny_kto")
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (clean, run))
    assert b["steps"] == a["steps"] == 6 and b["resumed_from_step"] == 6
    for key in ("reward_auc", "reward_margin", "kl", "desirable_nll", "single_label_batches_trained"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
    assert a.get("selected_step") == b.get("selected_step")
    if select == "best":  # both checkpoints were scored by the stopped attempt: its seconds still count (they
        # were the last attempt's only, 0.0 here, while train_seconds counted every attempt's steps)
        log = pd.read_csv(run / "validation_log.csv")
        assert list(log["step"]) == [3, 6] and (log["seconds"] > 0).all()
        assert b["validation_seconds"] == pytest.approx(log["seconds"].sum())
    assert pd.read_csv(clean / "batch_labels.csv").equals(pd.read_csv(run / "batch_labels.csv"))
    assert (clean / "eval_items.csv").read_text() == (run / "eval_items.csv").read_text()
    assert not (run / "checkpoints").exists()


def complete_checkpoint(results) -> bool:
    """A checkpoint whose trainer_state.json (written last) is whole: seen mid-write, a kill would leave
    nothing to resume from (under load the test could catch the file half-written). The run checks its
    results folders by making and removing them, so a folder can vanish under the glob: not yet, then."""
    try:
        states = list(results.glob("runs/*/*/checkpoints/checkpoint-*/trainer_state.json"))
    except OSError:  # (pathlib's glob raises FileNotFoundError for a folder removed while it scans)
        return False
    for state in states:
        try:
            json.loads(state.read_text())
            return True
        except (OSError, ValueError):
            pass
    return False


def test_half_written_checkpoint_is_ignored(tmp_path):
    from prefopt.resume import last_complete_checkpoint

    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"glob')  # killed mid-write
    (tmp_path / "checkpoint-12").mkdir()  # killed before the state was written
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]


LAUNCHERS = {  # the two ways a user starts several processes; each runs `prefopt run` unchanged
    # Neither gets a port picked here: both default to 29500 (two launches at once, as the suite's two workers
    # make, would collide), and a port picked and released here lay free for the seconds a launcher takes to
    # start, so anything binding or connecting from it meanwhile (the other worker's Ray or gloo) failed the
    # launch: EADDRINUSE, exit 1. torchrun --standalone: its store binds port 0 and the workers share it;
    # accelerate's port 0: it picks one itself just before binding (and picks another when one is taken).
    "torchrun": ["torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"],
    "accelerate": ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0",
                   "-m"],
}


def launcher_args(name) -> list[str]:
    return LAUNCHERS[name]


def launch(name, recipe, results, *extra):
    cmd = [sys.executable, "-m", *launcher_args(name), "prefopt", "run", str(recipe), "--results", str(results), *extra]
    return subprocess.run(cmd, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_every_micro_batch_mixed(launcher, write_recipe, tmp_path):
    recipe = write_recipe("kto", train={"max_steps": 4, "per_device_train_batch_size": 2})
    out = launch(launcher, recipe, tmp_path / "r")
    assert out.returncode == 0, out.stderr[-3000:]
    run = only_run(tmp_path / "r", "tiny_kto")
    batches = pd.read_csv(run / "batch_labels.csv")
    assert sorted(batches["rank"].unique()) == [0, 1]
    assert (batches.groupby("rank").size() == 4).all()
    assert ((batches.desirable > 0) & (batches.undesirable > 0)).all()
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["single_label_batches_trained"] == 0
    assert metrics["processes"] == 2  # one process group, not two lone trainers
    # the two processes trained different micro-batches (each its share of the order), not the same data twice
    by_rank = {rank: group.sort_values("micro_batch")["rows"].tolist() for rank, group in batches.groupby("rank")}
    assert all(a != b for a, b in zip(by_rank[0], by_rank[1]))
    # only rank 0 wrote: one copy of every file, and nothing left by the other process
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)


RUN_FILES = ["adapter", "batch_labels.csv", "data_report.json", "env.json", "eval_items.csv", "metrics.json",
             "recipe.yaml", "train_log.csv", "trained.json"]


def test_killed_two_process_run_resumes(write_recipe, tmp_path):
    recipe = write_recipe("kto", train={"max_steps": 12, "per_device_train_batch_size": 2, "save_steps": 4})
    clean = launch("torchrun", recipe, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    results = tmp_path / "killed"
    cmd = [sys.executable, "-m", *launcher_args("torchrun"), "prefopt", "run", str(recipe), "--results", str(results)]
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env={**ENV, "OMP_NUM_THREADS": "1"}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if complete_checkpoint(results):
            import psutil  # accelerate's dependency

            # the launcher and both workers at once, as a lost machine (the workers have their own groups). The
            # launcher first: killed after its workers, it could see them die and exit 1 on its own before its
            # kill arrived (seen once under load in CI)
            launcher = psutil.Process(proc.pid)
            for p in [launcher, *launcher.children(recursive=True)]:
                p.kill()
            break
        time.sleep(0.01)
    proc.wait()
    time.sleep(1)  # the killed workers' files are closed
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{log.read_text()[-3000:]}"
    run = only_run(results, "tiny_kto")
    assert not (run / "metrics.json").exists()
    again = launch("torchrun", recipe, results)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stdout
    a, b = (json.loads((only_run(r, "tiny_kto") / "metrics.json").read_text()) for r in (tmp_path / "clean", results))
    assert a["steps"] == b["steps"] == 12 and b["processes"] == 2
    for key in ("reward_auc", "kl", "desirable_nll"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), key


@pytest.mark.parametrize("error", ["cuda", "cpu"])
def test_out_of_memory_names_the_setting_to_lower(error, write_recipe, tmp_path, capsys, monkeypatch):
    import torch

    import prefopt.runner as runner

    def boom(*args, **kwargs):
        if error == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(runner, "_train_and_evaluate", boom)
    recipe = write_recipe("dpo")
    assert main(["run", str(recipe), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"prefopt: error: {recipe}: train.per_device_train_batch_size: out of memory; lower")
    assert len(err.splitlines()) == 1


RANKS_SEE_APART = """import os, sys, time
from prefopt import results
from prefopt.cli import main

if os.environ.get("RANK") == "0" and os.environ.get("SLOW_SET_ASIDE"):  # the other rank looks at the run first
    set_aside = results.set_aside

    def late(run):
        time.sleep(3)
        set_aside(run)

    results.set_aside = late
if os.environ.get("RANK") == "1" and os.environ.get("UNFINISHED_ON_RANK1"):  # it looked before another process
    results.is_finished = lambda run: False                                 # finished the run
sys.exit(main())
"""


def test_under_torchrun_the_main_process_decides_whether_a_run_is_finished_or_trained(write_recipe, tmp_path):
    # each rank asked the file system for itself: (1) with --force, rank 1 still found the old trained.json
    # before rank 0 set the run aside, skipped training and left rank 0 alone in the trainer's collectives
    # ("Connection closed by peer", exit 1); (2) a rank that saw the run unfinished while rank 0 saw it finished
    # (another process finishing it in between) went on to train alone, waiting for rank 0 until a timeout
    recipe = write_recipe("kto", train={"max_steps": 2, "per_device_train_batch_size": 2})
    results = tmp_path / "r"
    assert launch("torchrun", recipe, results).returncode == 0
    entry = tmp_path / "ranks_see_apart.py"
    entry.write_text(RANKS_SEE_APART)

    def run(*extra, **env):
        cmd = [sys.executable, "-m", *launcher_args("torchrun")[:-1], str(entry), "run", str(recipe), "--results",
               str(results), *extra]
        proc = subprocess.Popen(cmd, env={**ENV, "OMP_NUM_THREADS": "1", **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return -1, out, "timed out (a rank waited for the other)\n" + err
        return proc.returncode, out, err

    code, out, err = run("--force", SLOW_SET_ASIDE="1")
    assert code == 0, err[-3000:]
    done = only_run(results, "tiny_kto")
    assert sorted(pd.read_csv(done / "batch_labels.csv")["rank"].unique()) == [0, 1]  # both ranks trained the rerun
    assert json.loads((done / "metrics.json").read_text())["processes"] == 2
    stamp = (done / "metrics.json").stat().st_mtime_ns
    code, out, err = run(UNFINISHED_ON_RANK1="1")
    assert code == 0, err[-3000:]
    assert "already finished" in out and (done / "metrics.json").stat().st_mtime_ns == stamp
