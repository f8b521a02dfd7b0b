"""prefopt.allocator: when the entry point re-executes itself with glibc's heap settings, that glibc honours
them, and that a real `python -m prefopt run` records them in env.json (the user's own values kept)."""

import json
import os
import subprocess
import sys

import pytest

from prefopt import allocator

ENV = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | {"HF_HUB_OFFLINE": "1"}  # none of the user's own
glibc_only = pytest.mark.skipif(not allocator.applies(), reason="glibc's settings: Linux with glibc only")


def test_settings_are_wanted_on_linux_glibc_only_and_never_over_the_users_own():
    assert allocator.wanted({}, system="linux", libc="glibc") == allocator.SETTINGS
    assert allocator.wanted({}, system="darwin", libc="") == {}
    assert allocator.wanted({}, system="linux", libc="musl") == {}
    assert allocator.wanted({"MALLOC_TRIM_THRESHOLD_": "0"}, system="linux", libc="glibc") == {}
    assert allocator.wanted({"PREFOPT_MALLOC": "system"}, system="linux", libc="glibc") == {}


def test_any_malloc_setting_of_the_users_own_keeps_glibc_as_it_is():
    """The README: "PREFOPT_MALLOC=system, or any MALLOC_* value of your own, keeps glibc as it is". Only
    prefopt's own two variables counted: a user's MALLOC_MMAP_THRESHOLD_ got MALLOC_MMAP_MAX_=0 added on top,
    turning mmap off altogether (found by the README review)."""
    for own in ({"MALLOC_MMAP_THRESHOLD_": "65536"}, {"MALLOC_ARENA_MAX": "2"},
                {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}):
        assert allocator.wanted(own, system="linux", libc="glibc") == {}, own
    assert allocator.wanted({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, system="linux", libc="glibc") == allocator.SETTINGS


def test_reexec_replaces_the_process_once_with_the_same_command_line(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "applies", lambda **_: True)
    for k in allocator.SETTINGS:
        monkeypatch.delenv(k, raising=False)
    allocator.reexec_with_heap_allocator(execve=lambda *a: calls.append(a))
    assert len(calls) == 1
    path, argv, env = calls[0]
    assert path == sys.executable and argv == list(sys.orig_argv)
    assert all(env[k] == v for k, v in allocator.SETTINGS.items()) and env["PATH"] == os.environ["PATH"]
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")  # the second time through (or under torchrun/Ray): no exec
    allocator.reexec_with_heap_allocator(execve=lambda *a: calls.append(a))
    assert len(calls) == 1


MMAPPED = """
import ctypes, numpy as np
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
block = np.ones(64 << 20, dtype=np.uint8)  # a 64 MB block, over glibc's largest mmap threshold
print(libc.mallinfo2().hblkhd)
"""


@glibc_only
def test_glibc_serves_large_blocks_from_the_heap_under_the_settings():
    if not hasattr(__import__("ctypes").CDLL("libc.so.6"), "mallinfo2"):
        pytest.skip("mallinfo2 needs glibc 2.33")

    def mmapped(env):
        out = subprocess.run([sys.executable, "-c", MMAPPED], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    assert mmapped(ENV) >= 64 << 20  # glibc's default: the block came from mmap (unmapped again when freed)
    assert mmapped(ENV | allocator.SETTINGS) < 1 << 20  # nothing mmapped: the heap holds it and keeps it


@glibc_only
def test_the_command_line_runs_under_the_settings_and_records_them(write_recipe, tmp_path):
    recipe = write_recipe("dpo")
    results = tmp_path / "res"
    for env, expected in ((ENV, allocator.SETTINGS), (ENV | {"MALLOC_MMAP_MAX_": "65536"}, {"MALLOC_MMAP_MAX_": "65536"})):
        out = subprocess.run([sys.executable, "-m", "prefopt", "run", str(recipe), "--results", str(results),
                              "--force"], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        (run,) = (results / "runs" / "tiny_dpo").iterdir()
        assert json.loads((run / "env.json").read_text())["malloc"] == expected
