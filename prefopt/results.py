"""Atomic writes and the results layout.

A file is written to a temporary name in its own directory and renamed over the target, so a reader
(or a crash) never sees half of it. A run is finished exactly when its metrics.json exists; it is
written last.

    results/runs/<recipe name>/seed<seed>[-fold<f>]-<recipe fingerprint>/   (fold: cross-fitting, data.folds)
        recipe.yaml  data_report.json  env.json  train_log.csv  adapter/  trained.json  eval_items.csv
        eval_generations.jsonl  metrics.json
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import stat
import tempfile
from pathlib import Path

import yaml


COMPARE_LOCK = ".compare.lock"  # held by prefopt.compare.rebuild while it reads the runs and writes the tables
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, text: str | bytes) -> None:
    path = Path(path)
    for attempt in range(10):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            break
        except FileNotFoundError:  # the folder just made was removed: another process's check_results_dir
            if attempt == 9:       # probing it (runs/<name>, tuned/) found it empty; it is made again
                raise
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clear_temporaries(folder: Path, mine=lambda target: True) -> None:
    """Remove what write_atomic left in `folder` when its process was killed mid-write (SIGKILL, a lost machine:
    nothing else skips its cleanup): `.<target>.<random>.tmp`, for the targets `mine` accepts. Only where no
    other process can be writing: under the run's lock, or the comparison's."""
    for tmp in Path(folder).glob(".*.tmp"):
        if mine(tmp.name[1:].rsplit(".", 2)[0]):
            tmp.unlink(missing_ok=True)


def path_kind(path: Path) -> str:
    """'dir', 'missing' or 'other', from a single stat, so the answer is about one moment."""
    try:
        return "dir" if stat.S_ISDIR(os.stat(path).st_mode) else "other"
    except (FileNotFoundError, NotADirectoryError):  # (under a file: missing, as exists() says; mkdir then fails)
        return "missing"


def check_results_dir(results: Path) -> None:
    """A --results path (or a folder under it: runs/<name>, tuning/<name>, tuned) that cannot hold results is
    the user's to change, said in one line before any training, not an OSError from the first (or last)
    write. Tried by creating the missing folders and removing them again: nothing is left behind by a
    command that fails on its recipe or data afterwards."""
    from .errors import UserError

    results = Path(results)
    # one stat, not exists() then is_dir(): another torchrun rank may remove the folder it probed between
    # the two, and a folder that vanished is not "a file" (CI saw exactly that, once)
    if path_kind(results) == "other":
        raise UserError(str(results), "--results", "is a file, not a folder; move it, or give another directory "
                        "for the results")
    missing = [p for p in (results, *results.parents) if path_kind(p) == "missing"]
    try:
        # torchrun's ranks check at once: one may remove (cleaning up) a folder the other just made, so a
        # folder that vanished is made again rather than called unusable
        for attempt in range(10):
            try:
                results.mkdir(parents=True, exist_ok=True)
            except (FileNotFoundError, FileExistsError):  # a parent removed, or the folder between two checks
                if attempt == 9:
                    raise
                continue
            if os.access(results, os.W_OK | os.X_OK):
                break
            if results.is_dir():
                raise PermissionError(13, "Permission denied")
        else:
            raise FileNotFoundError(2, "No such file or directory")
    except OSError as e:
        raise UserError(str(results), "--results", f"cannot be used as the results folder ({e.strerror}); give a "
                        "directory you can write to") from None
    finally:
        for p in missing:
            try:
                p.rmdir()
            except OSError:  # gone already, or in use: another process (a torchrun rank) made or removed it too
                pass


@contextlib.contextmanager
def hold(run: Path):
    """The run is written by this process alone while the block runs: a second `prefopt run` of the same run
    (started twice, or a rerun after an interrupt meeting a worker that outlived its launcher or Ray driver)
    would resume from the first one's checkpoint in the making, overwrite its env.json and crash on files the
    first one rotated away. The lock file lives under the results' cache, out of the run folder; the OS
    releases it when the process ends, however it ends."""
    from filelock import FileLock, Timeout

    from .errors import UserError

    where = run.parents[2] / "cache" / "locks" / run.parent.name
    where.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(where / f"{run.name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(str(run), "run", "another prefopt process is training or evaluating this run now; let it "
                        "finish (the same command then skips the run) or stop it, then run this again") from None
    try:
        yield
    finally:
        lock.release()


def replaced(run: Path) -> Path:
    """Where `--force` keeps a finished run until its retraining finishes: under the results' cache, out of
    the comparison's sight (results/runs/<recipe>/<run> -> results/cache/replaced/<recipe>/<run>)."""
    return run.parents[2] / "cache" / "replaced" / run.parent.name / run.name


def set_aside(run: Path) -> None:
    """`--force`: move the finished run out of the way rather than delete it, so that an interrupted
    retraining loses nothing finished. A copy already set aside (an earlier forced attempt that did not
    finish) is the finished one and stays; the unfinished run in its place is what goes. When the run in
    place is finished too, it is the newer (its retraining ended, and the process was stopped before it
    removed the copy): the copy goes and the run is set aside."""
    import shutil

    keep, finished = replaced(run), is_finished(run)
    if not finished:
        shutil.rmtree(run)
        return
    # a finished run leaves only between rebuilds of the tables: a rebuild reading the runs (`prefopt compare`,
    # another run's) would otherwise count it finished, then find its records gone and tabulate it without them
    with _between_rebuilds(run.parents[2]):
        shutil.rmtree(keep, ignore_errors=True)
        keep.parent.mkdir(parents=True, exist_ok=True)
        os.replace(run, keep)


@contextlib.contextmanager
def _between_rebuilds(results: Path):
    """Holds the lock prefopt.compare.rebuild holds (waiting, and saying so, while a rebuild runs)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(results / COMPARE_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"prefopt: waiting for the comparison being rebuilt in {results} to finish", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def drop_replaced(run: Path) -> None:
    """The retrained run is finished: the one it replaces is no longer needed."""
    import shutil

    shutil.rmtree(replaced(run), ignore_errors=True)


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_jsonl(path: Path, records) -> None:
    write_atomic(path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records))


def write_yaml(path: Path, data) -> None:
    write_atomic(path, yaml.safe_dump(data, sort_keys=False))


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def run_dir(results: Path, name: str, seed: int, fingerprint: str, fold: int | None = None) -> Path:
    fold_part = "" if fold is None else f"-fold{fold}"
    return Path(results) / "runs" / name / f"seed{seed}{fold_part}-{fingerprint}"


def finished_metrics(results: Path, where: str = "runs") -> list[Path]:
    """<where>/<recipe>/<run>/metrics.json of every finished run under `results` (cache/replaced: the runs a
    --force set aside), sorted. Not pathlib's glob: a recipe folder that vanishes while it scans (a `prefopt
    run` of a new recipe probes runs/<name> by making and removing it, check_results_dir) made Python 3.11's
    glob raise FileNotFoundError, and the rebuild with it."""
    def folders(parent: Path) -> list[Path]:
        try:
            with os.scandir(parent) as entries:
                return [Path(e.path) for e in entries if e.is_dir()]
        except (FileNotFoundError, NotADirectoryError):  # gone: it holds no finished run now
            return []

    return sorted(run / "metrics.json" for recipe in folders(Path(results) / where) for run in folders(recipe)
                  if (run / "metrics.json").is_file())


def is_finished(run: Path) -> bool:
    return (Path(run) / "metrics.json").is_file()


def is_trained(run: Path) -> bool:
    """Training finished and its model was saved (trained.json is written after adapter/)."""
    return (Path(run) / "trained.json").is_file()


def read_trained(run: Path) -> dict:
    return json.loads((Path(run) / "trained.json").read_text())


def environment(seed: int, world_size: int, backend: str, precision: dict | None = None) -> dict:
    """Library versions, hardware and the precision the run used: enough to say what produced a number."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    libs = {}
    for name in ("prefopt", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth"):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    from .allocator import in_effect
    from .models import cpu_has_native_bf16

    return {"seed": seed, "world_size": world_size, "backend": backend, "device": device,
            "precision": precision, "cpu_native_bf16": cpu_has_native_bf16(),
            "cpu_model": cpu_model(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "malloc": in_effect(), "libraries": libs}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
