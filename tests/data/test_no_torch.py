"""prefopt.data is pure: importing and using it never imports torch, transformers or trl, and it keeps
working when they cannot be imported at all."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "trl")

CODE = r"""
import importlib.abc, json, sys, tempfile, os
import pandas as pd

if sys.argv[1] == "block":  # make the heavy libraries unimportable, as on a machine without them
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "trl"}:
                raise ImportError(f"blocked: {name}")
    sys.meta_path.insert(0, Block())

import prefopt.data
from prefopt.data import prepare
from prefopt.data.io import load_rows
from prefopt.data.report import format_report

rows = [{"prompt": f"p{i // 3}", "completion": f"c{i}", "label": i % 3 != 0} for i in range(60)]
folder = tempfile.mkdtemp()
paths = [os.path.join(folder, n) for n in ("d.jsonl", "d.csv", "d.parquet")]
pd.DataFrame(rows).to_json(paths[0], orient="records", lines=True)
pd.DataFrame(rows).to_csv(paths[1], index=False)
pd.DataFrame(rows).to_parquet(paths[2])
for path in paths:
    df = load_rows(path)
    for form, strategy in (("unpaired", "mixed"), ("paired", "natural")):
        p = prepare(df, file=path, method="m", form=form, strategy=strategy, eval_fraction=0.2)
        format_report(p.report)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "transformers", "trl", "datasets"})))
"""


def run(mode):
    out = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_no_heavy_imports():
    import json

    loaded = json.loads(run("watch"))
    assert loaded == [], f"prefopt.data imported {loaded}"  # not even datasets for jsonl/csv/parquet


def test_works_with_heavy_libraries_blocked():
    assert run("block") == "[]"


def test_no_heavy_import_statements_in_source():
    from pathlib import Path

    import prefopt.data

    for path in Path(prefopt.data.__file__).parent.glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in HEAVY, f"{path.name}: {line}"
