"""Keep large freed blocks in the C heap for reuse (glibc only).

glibc hands every block over 32 MB straight from mmap and unmaps it on free. A step's largest tensors are that
size (ORPO's and SimPO's logits over the whole sequence: 4 x 146 positions x 49,152 words, and their
gradients; evaluation's scored logits), so each step asked the kernel for the same memory again and faulted
it in page by page. With mmap off and no trimming, freed blocks stay in the heap and are reused. ORPO here
(scripts/bench_malloc.py, results/bench_malloc.md): 1.17x faster steps, 1.16x faster scoring, about 0.8 GB
more peak memory (the heap keeps what the peak needed until the process exits). Only where memory comes from
changes, never a value: losses, scores and generations are identical to the last digit.

glibc reads these settings when a process starts (mallopt() called later helped far less here), so the entry
points re-execute themselves once with them set; torchrun's processes and Ray's workers inherit them.
"""

from __future__ import annotations

import os
import platform
import sys

# M_MMAP_MAX=0: no block from mmap; M_TRIM_THRESHOLD=1 TiB: never give the heap's top back to the kernel
SETTINGS = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def applies(system: str | None = None, libc: str | None = None) -> bool:
    """Whether the settings mean anything here: Linux with glibc."""
    system = sys.platform if system is None else system
    libc = platform.libc_ver()[0] if libc is None else libc
    return system.startswith("linux") and libc == "glibc"


def wanted(environ=None, **where) -> dict:
    """The settings to add before this process's allocator is worth using: none where they do not apply, where
    the user tuned glibc's malloc themselves (any MALLOC_* variable, or glibc.malloc.* in GLIBC_TUNABLES: their
    choice stands; MMAP_MAX_=0 on top of their own MALLOC_MMAP_THRESHOLD_ would silently undo it), or with
    PREFOPT_MALLOC=system (glibc's own behaviour; setting MALLOC_MMAP_MAX_ to its default is not that: any such
    setting freezes glibc's adaptive threshold)."""
    environ = os.environ if environ is None else environ
    own = any(k.startswith("MALLOC_") for k in environ) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")
    if not applies(**where) or environ.get("PREFOPT_MALLOC") == "system" or own:
        return {}
    return dict(SETTINGS)


def reexec_with_heap_allocator(execve=os.execve) -> None:
    """Replace this process by itself, same interpreter and command line, with SETTINGS in its environment,
    unless they are set already (then this returns at once: the second time through, and under torchrun or
    Ray, whose processes inherit them). Call it first thing in an entry point, before anything is printed
    or written."""
    add = wanted()
    if add:
        sys.stdout.flush()
        sys.stderr.flush()
        execve(sys.executable, list(sys.orig_argv), {**os.environ, **add})


def in_effect() -> dict:
    """The allocator settings this process started with (env.json records them beside the hardware)."""
    return {k: os.environ[k] for k in SETTINGS if k in os.environ}
