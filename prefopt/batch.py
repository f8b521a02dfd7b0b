"""Running many runs: one by one in this process, or as Ray Tune trials (embedded, or on a cluster).

Either way each job is `runner.run_one` on a resolved recipe, so a run is the same run (directory,
fingerprint, atomic writes, skip-if-finished, resume) whichever engine started it; Ray only decides where
and how many at once. Ray is optional (`pip install -e ".[ray]"`); torch and Ray are imported only here,
inside the functions.

Embedded Ray is started with an explicit CPU count, a small object store and no dashboard. Each trial asks
for a GPU when CUDA is present (so one per GPU at a time), else for all CPUs divided by `max_concurrent`
(default 1 on a CPU: one training already uses every core). With `--address` / RAY_ADDRESS an existing
cluster runs the trials; the results directory must then be on storage every node sees (`--storage`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from .errors import UserError, raise_all

ENGINES = ("auto", "local", "ray")
OBJECT_STORE_BYTES = 128 * 1024**2  # runs pass only paths and small dicts through Ray


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.tune") is not None


def pick_engine(engine: str, n_jobs: int, address: str | None = None) -> str:
    """auto: Ray when it is installed and there is more than one run (or a cluster address), else local;
    under torchrun/accelerate (several processes already) always local."""
    if engine not in ENGINES:
        raise UserError("--engine", engine, f"unknown engine; choices: {', '.join(ENGINES)}")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if engine == "ray" or (address and engine == "auto"):
        if distributed:
            raise UserError("--engine", "ray", "Ray cannot run inside torchrun/accelerate; run prefopt with Ray "
                            "from a plain process (each trial may then use its own GPUs)")
        if not ray_available():
            raise UserError("--engine", "ray", "Ray is not installed; pip install -e \".[ray]\" (or "
                            "pip install 'ray[tune]'), or use --engine local")
        return "ray"
    if engine == "auto" and n_jobs > 1 and not distributed and ray_available():
        return "ray"
    return "local"


def run_jobs(jobs: list, *, results: Path, engine: str = "auto", address: str | None = None,
             storage: str | None = None, max_concurrent: int | None = None, force: bool = False) -> list[Path]:
    """Run every job (a resolved Recipe, or (Recipe, results dir)) and return their run directories, in
    job order. A failed job raises after the others finished (Ray) or at once (local)."""
    from .runner import run_one

    from . import results as res

    check_options(engine, address, storage, max_concurrent)
    jobs = [j if isinstance(j, tuple) else (j, Path(results)) for j in jobs]
    # jobs that are the same run (same directory: a repeated seed, or the same settings twice) run once, so
    # two trials never train into one directory at the same time
    where = [res.run_dir(Path(w), r.name, r.seed, r.fingerprint(), r.data.fold).resolve() for r, w in jobs]
    unique = list(dict.fromkeys(where))
    todo = [jobs[where.index(d)] for d in unique]
    # finished runs are skipped here, not in an engine's worker: Ray would start a process (seconds) for each
    # only to skip it, which made a resumed 36-trial tuning spend minutes before its first unfinished trial.
    # Not under torchrun: there each rank must meet every run in the same order, and the main process tells
    # them which are finished (runner.run_one)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    finished = {d for d in unique if not force and not distributed and res.is_finished(d)}
    by_dir = {d: run_one(recipe, results=Path(w)) for (recipe, w), d in zip(todo, unique) if d in finished}
    pending = [(job, d) for job, d in zip(todo, unique) if d not in finished]
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if not pending:
            done = []
        elif pick_engine(engine, len(pending), address) == "local":
            # an --address here is the environment's (check_options refuses --engine local's own)
            note = _unused_on_local(len(pending), storage, max_concurrent, distributed,
                                    address if engine == "local" else None)
            if note:
                from .console import main_process

                if main_process():
                    print(f"prefopt: note: {note}", file=sys.stderr, flush=True)
            # SIGTERM (`timeout`, a scheduler's preemption) stops as Ctrl-C does: a batch says what finished, one
            # run that it resumes (exit 130), as on Ray; Python's default ended it without a word (exit -15), one
            # run or the last one a batch had left. Not under torchrun, whose launcher stops its ranks with SIGTERM
            with _sigterm_as_interrupt() if not distributed else contextlib.nullcontext():
                done = [run_one(recipe, results=Path(w), force=force) for (recipe, w), _ in pending]
        else:
            check_jobs([recipe for (recipe, _), _ in pending])
            done = _on_ray([job for job, _ in pending], results=Path(results), address=address, storage=storage,
                           max_concurrent=max_concurrent, force=force)
    except KeyboardInterrupt:
        if len(unique) == 1:  # one run: nothing else to count (the CLI says it resumes from its checkpoint)
            raise
        raise Interrupted(sum(res.is_finished(d) for d in unique), len(unique), force) from None
    by_dir.update(zip([d for _, d in pending], done))
    return [by_dir[d] for d in where]


def _unused_on_local(n_runs: int, storage: str | None, max_concurrent: int | None, distributed: bool,
                     env_address: str | None = None) -> str | None:
    """What --engine auto, having chosen local, leaves unused, and why, in one line (None: nothing). A note, not
    the refusal --engine local gets: auto's choice turns on how many runs are left and on this machine, so one
    command line must still work when a batch resumes with one run to go. --address never gets here (auto with
    a cluster address is Ray, or refused); --max-concurrent is moot for one run, on Ray too. `env_address`:
    $RAY_ADDRESS under --engine local, which went unused without a word; a note too, not a refusal, as it may
    be set for the whole machine (--engine local refuses the rest, so it comes alone)."""
    unused = [f"$RAY_ADDRESS {env_address}"] if env_address else []
    if storage:
        unused.append(f"--storage {storage}")
    if (max_concurrent or 1) > 1 and n_runs > 1:
        unused.append(f"--max-concurrent {max_concurrent}")
    if not unused:
        return None
    why = ("--engine local" if env_address else "this is torchrun/accelerate" if distributed else
           "Ray is not installed" if not ray_available() else "one run to do: --engine auto starts Ray for several")
    runs = f"the {n_runs} runs run one at a time" if n_runs > 1 else "the run runs"
    return (f"{' and '.join(unused)} {'is' if len(unused) == 1 else 'are'} for the ray engine, not used here "
            f"({why}): {runs} in this process{', nothing is written under --storage' if storage else ''}")


def check_options(engine: str, address: str | None, storage: str | None, max_concurrent: int | None) -> None:
    """The engine options that contradict each other, refused before any run (prefopt.tuning calls this too:
    an error after the runs' start is one it writes the finished tunings for)."""
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError("--max-concurrent", str(max_concurrent), "must be at least 1")
    if engine == "local" and (max_concurrent or 1) > 1:  # it ran one run at a time without a word
        raise UserError("--max-concurrent", str(max_concurrent), "sets how many Ray trials run at once; --engine "
                        "local runs one run at a time: leave --max-concurrent out, or use --engine ray")
    for option, value, what in (("--address", address, "an existing Ray cluster"),
                                ("--storage", storage, "Ray's trial state")):
        if engine == "local" and value:  # the runs ran here, the cluster never asked, without a word
            raise UserError(option, value, f"is for the ray engine ({what}); --engine local runs every run in this "
                            f"process: leave {option} out, or use --engine ray")


def check_jobs(recipes: list) -> None:
    """Every job's recipe and data checked here, as `prefopt data` checks them, and its TRL config built,
    before Ray starts. Inside the trials an error common to all of them (data.folds above the prompts that hold
    both labels, a data file gone, a setting TRL refuses) came back only after every trial had started and
    failed in turn (41 folds: five and a half minutes), with Ray's worker tracebacks on stderr and cache/ray
    left behind. Each problem said once."""
    from .runner import check_run

    found = {}
    for recipe in recipes:
        try:
            check_run(recipe)
        except UserError as e:
            found.update((str(x), x) for x in getattr(e, "errors", [e]))
    raise_all(list(found.values()))


def _init_ray(address: str | None, max_concurrent: int | None) -> dict:
    """Start (or join) Ray; returns the resources each trial asks for."""
    import ray

    cuda = _cuda_count()
    # Ray starts its workers at nice 15 to favour its daemons; here a trial is the whole job, and at nice 15 it
    # starved beside any ordinary process (seen: a trial at 5% of a core next to another training), so embedded
    # Ray runs its trials at normal priority, as the local path does (a cluster keeps its own setting)
    os.environ.setdefault("RAY_worker_niceness", "0")
    if not ray.is_initialized():
        if address:
            _reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=True)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UserError("--address", address, f"no Ray cluster could be joined there ({e}); check the "
                                "address (ray status prints it) or leave --address out to run Ray here") from None
        else:
            # address "local": a new Ray of our own even when a `ray start` cluster runs on this machine
            ray.init(address="local", num_cpus=os.cpu_count() or 1, num_gpus=cuda,
                     object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False, configure_logging=False,
                     log_to_driver=True)
    # a trial runs on one node, so it asks for a share of the smallest node, never of the cluster's total
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")] or [ray.cluster_resources()]
    gpu_nodes = [r for r in nodes if r.get("GPU")]
    if gpu_nodes:
        return {"cpu": max(1, int(min(r.get("CPU", 1) // r["GPU"] for r in gpu_nodes))), "gpu": 1}
    cpus = int(min(r.get("CPU", os.cpu_count() or 1) for r in nodes))
    return {"cpu": max(1, cpus // max(1, max_concurrent or 1))}


def _reachable(address: str) -> None:
    """A HOST:PORT no cluster answers at is said in one line: ray.init retried it for minutes (over two on
    127.0.0.1:1), printing a C++ warning every few seconds, before the error below. Other forms (auto,
    ray://...) are left to Ray."""
    import re
    import socket

    found = re.fullmatch(r"\[?([^\[\]/]+?)\]?:(\d+)", address)
    if not found:
        return
    try:
        socket.create_connection((found[1], int(found[2])), timeout=10).close()
    except OSError as e:
        raise UserError("--address", address, f"no Ray cluster could be joined there ({e}); check the address "
                        "(ray status prints it) or leave --address out to run Ray here") from None


def _cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # torch not importable here: no GPU to offer
        return 0


def _on_ray(jobs, *, results: Path, address, storage, max_concurrent, force) -> list[Path]:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter is silent at verbose=0
    if address and not storage:
        raise UserError("--storage", "missing", "a Ray cluster needs a storage path every node sees (NFS, a "
                        "shared disk) for Ray's trial state; give --storage PATH, and keep --results on shared "
                        "storage too")
    from ray import tune

    import ray

    ours = not ray.is_initialized()
    resources = _init_ray(address, max_concurrent)
    from . import console

    verbose = console._verbose  # --verbose reaches the trials' processes too
    home = os.getcwd()
    # trials get the jobs by index. Ray moves each trial's working directory; the trial moves back (below), so
    # the recipe's relative paths, which are part of its fingerprint, stay exactly as the caller wrote them
    payload = [(recipe, str(Path(where).resolve())) for recipe, where in jobs]

    def trial(config):
        from prefopt.console import quiet_libraries
        from prefopt.runner import run_one  # (absolute: Ray ships this function by value)

        quiet_libraries(verbose)

        os.chdir(home)  # relative data paths, model aliases and caches as in the caller (a cluster: shared paths)
        recipe, where = payload[config["job"]]
        started = time.time()
        try:
            run = run_one(recipe, results=Path(where), force=force)
        except UserError as e:  # the user's to fix: carried back whole, printed as one line by the CLI
            tune.report({"user_error": json.dumps([[x.file, x.field, x.message] for x in getattr(e, "errors", [e])])})
            return
        metrics = json.loads((run / "metrics.json").read_text())
        tune.report({"run_dir": str(run), "trial_started": started, "trial_ended": time.time(),
                     **{k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}})

    n = len(payload)
    root = Path(storage).resolve() if storage else results.resolve() / "cache" / "ray"
    name = f"prefopt-{int(time.time())}"
    tuner = tune.Tuner(
        tune.with_resources(trial, resources),
        param_space={"job": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or (None if resources.get("gpu") else 1)),
        run_config=tune.RunConfig(name=name, storage_path=str(root), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)))
    finished = False
    try:
        with _sigterm_as_sigint():
            grid = tuner.fit()
        runs = _run_dirs(grid, n)
        finished = True
        return runs
    finally:
        if ours:  # a Ray this batch started (or joined) lives for the batch: its daemons hold memory and CPU
            import ray

            ray.shutdown()
        if not finished:
            # a batch resumes from its run directories, never from Ray's experiment state (the Tuner.restore Ray
            # suggests on Ctrl-C): a stopped or failed batch left a folder of it behind for nothing, one more per
            # attempt. A finished batch's stays: its trials' times (trial_windows)
            import shutil

            shutil.rmtree(root / name, ignore_errors=True)
            if not storage and root.is_dir() and not any(root.iterdir()):
                root.rmdir()


def _run_dirs(grid, n: int) -> list[Path]:
    """Each job's run directory from Ray Tune's results, in job order; the trials' problems raised."""
    # a trial Ctrl-C stopped before it reported comes back without its config
    reports = {r.config["job"]: r for r in grid if r.config}
    # every trial's problems together, each once: the first trial's alone left the others' to be found only
    # by fixing it and running the whole batch again
    found = {}
    for i in sorted(reports):  # (in job order)
        if reports[i].metrics and "user_error" in reports[i].metrics:
            found.update((tuple(x), UserError(*x)) for x in json.loads(reports[i].metrics["user_error"]))
    raise_all(list(found.values()))
    for i in range(n):
        r = reports.get(i)
        if r is not None and r.error:
            raise r.error
        if r is None or not (r.metrics or {}).get("run_dir"):
            # Ray Tune takes Ctrl-C itself and returns; finished runs are kept, the next call resumes the rest
            raise KeyboardInterrupt
    return [Path(reports[i].metrics["run_dir"]) for i in range(n)]


class Interrupted(KeyboardInterrupt):
    """A batch stopped part-way (Ctrl-C, SIGTERM): how many of its runs had finished, for the CLI to say. The
    finished ones are kept and the same command skips them; an unfinished one has no metrics.json, so it never
    passes for finished, and resumes from its last checkpoint."""

    def __init__(self, finished: int, total: int, force: bool = False):
        # with --force the same command trains every run again, the finished ones too
        self.finished, self.total, self.force = finished, total, force
        super().__init__(f"{finished} of {total} runs finished")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt in this process, as Ctrl-C does. Raised here, not re-sent as SIGINT: a
    job started in the background by a shell (`cmd &`) ignores SIGINT, and SIGTERM would then do nothing."""
    import signal
    import threading

    def interrupt(*_):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # (signals are set only there)
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def _sigterm_as_sigint():
    """SIGTERM (`kill`, `timeout`, a scheduler's preemption) stops the trials as Ctrl-C does. Ray's own handler
    in the driver aborted the process instead (exit 134, a C++ stack dump, a core file where cores are kept,
    and no word on resuming); as SIGINT, Ray Tune stops its trials and the CLI says how to resume (exit 130)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # (signals are set only there)
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)  # None: Ray's, set in C


def trial_windows(results: Path) -> list[tuple[float, float]]:
    """(start, end) wall-clock times of the last Ray batch's trials under `results` (for checks that trials
    really overlapped)."""
    import pandas as pd

    # each batch is its own prefopt-<start time> folder, and a results folder keeps every finished one's
    batches = sorted((Path(results) / "cache" / "ray").glob("prefopt-*"), key=lambda p: int(p.name.split("-")[1]))
    windows = []
    for f in sorted(batches[-1].glob("*/progress.csv")) if batches else []:
        log = pd.read_csv(f)
        if {"trial_started", "trial_ended"} <= set(log.columns):
            windows.append((float(log["trial_started"].iloc[-1]), float(log["trial_ended"].iloc[-1])))
    return windows
