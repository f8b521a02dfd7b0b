"""Atomic writes: a write that fails midway leaves the previous file whole and no temporary file behind,
and a reader never sees a file half-written while it is being replaced."""

from __future__ import annotations

import os
from pathlib import Path
import threading

import pytest

from prefopt import results


def test_a_write_failing_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "summary.md"
    results.write_atomic(target, "old table\n")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.os, "fsync", disk_full)  # after the bytes went to the temporary file
    with pytest.raises(OSError, match="No space left"):
        results.write_atomic(target, "new table " * 10_000)
    assert target.read_text() == "old table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.md"]


def test_readers_see_the_old_or_the_new_file_never_a_part(tmp_path):
    target = tmp_path / "comparison.csv"
    versions = [f"{i}," * 50_000 + "\n" for i in range(2)]  # ~100-200 kB: many write() calls each
    results.write_atomic(target, versions[0])
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            seen.add(target.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            results.write_atomic(target, versions[i % 2])
    finally:
        stop.set()
        reader.join()
    assert seen <= set(versions) and seen
    assert not [p for p in os.listdir(tmp_path) if p != "comparison.csv"]


def test_two_processes_checking_one_new_results_folder_at_once_both_pass(tmp_path):
    # torchrun's ranks each run the command line's checks: one rank's cleanup could remove the folders the
    # other was trying (FileNotFoundError, a traceback in a two-process run)
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    start = ctx.Barrier(2)
    errors = ctx.Queue()
    rounds = 300

    def check():
        for i in range(rounds):
            start.wait()
            try:
                results.check_results_dir(tmp_path / f"r{i}" / "runs" / "tiny")
            except BaseException as e:  # noqa: BLE001 - reported to the test below
                errors.put(repr(e))

    procs = [ctx.Process(target=check) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    found = [errors.get() for _ in range(errors.qsize())]
    assert not found, found[:3]
    assert all(p.exitcode == 0 for p in procs)


def test_a_results_folder_that_vanishes_while_checked_is_not_called_a_file(tmp_path, monkeypatch):
    # the other torchrun rank removes the folder it probed between this rank's "exists?" and "a folder?"
    # (CI, once: "runs/tiny_kto: --results: is a file, not a folder"); modelled by an exists() that saw it
    target = tmp_path / "r" / "runs" / "tiny"
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self, **kw: True if self == target else real_exists(self, **kw))
    results.check_results_dir(target)  # no UserError
    monkeypatch.undo()
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="is a file, not a folder"):
        results.check_results_dir(tmp_path / "f")


def test_a_folder_removed_by_another_process_probe_between_making_it_and_writing_is_made_again(tmp_path,
                                                                                             monkeypatch):
    # two `prefopt tune`s: one writes tuned/<recipe>.yaml into the tuned/ it just made while the other's
    # check_results_dir, which found tuned/ missing, removes the (still empty) folder it probed: the write
    # failed with FileNotFoundError at the end of the whole tuning
    import tempfile

    target = tmp_path / "tuned" / "dpo.yaml"
    mkstemp = tempfile.mkstemp
    probed = []

    def after_the_probe(**kw):
        if not probed:
            probed.append(target.parent.rmdir())
        return mkstemp(**kw)

    monkeypatch.setattr(tempfile, "mkstemp", after_the_probe)
    results.write_atomic(target, "name: dpo_tuned\n")
    assert probed and target.read_text() == "name: dpo_tuned\n"
