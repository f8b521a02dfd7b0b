"""scripts/bench_malloc.py on the tiny model: both allocators run in alternating rounds, each run really under
its settings, and the results compare identical (the timings are printed, never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prefopt import allocator

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not allocator.applies(), reason="glibc's settings: Linux with glibc only")
def test_bench_malloc_alternates_the_allocators_and_finds_identical_results(write_recipe, tmp_path):
    recipe = write_recipe("dpo")
    md = tmp_path / "malloc.md"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_malloc.py"), str(recipe), "--steps", "2",
                          "--rounds", "2", "--markdown", str(md)], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| (\d) \| (glibc|prefopt heap) \| [\d.]+ \|", md.read_text(), re.M)
    assert rows == [("1", "glibc"), ("1", "prefopt heap"), ("2", "prefopt heap"), ("2", "glibc")]
    assert "identical: True" in md.read_text()
