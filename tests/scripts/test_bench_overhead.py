"""scripts/bench_overhead.py's fidelity half on the tiny model: prefopt and a minimal plain-TRL script,
fed the same model, rows in the same order, config and seed, log the same loss at every step.
(The wall-time ratio it also prints is a benchmark figure, never asserted here.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench_module():
    spec = importlib.util.spec_from_file_location("bench_overhead", ROOT / "scripts" / "bench_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["kto", "dpo", "orpo"])
def test_prefopt_and_plain_trl_log_identical_losses(method, bench_module, tiny_model, tiny_data, tmp_path):
    row = bench_module.bench(method, str(tiny_model), str(tiny_data), 3, tmp_path)
    assert row["steps"] == 3
    assert row["losses_identical"], row
