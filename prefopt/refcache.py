"""The untrained reference's evaluation, computed once per split and reused by every run.

Its held-out scores and greedy generations depend on the model, the rows or prompts, the evaluation
settings, the precision and the libraries, never on the method, strategy or seed of the recipe being
evaluated. So they are kept under `<results>/cache/reference/`, one file per entry named by a hash of
everything that determines it (`key`): a change to any input is a different name, never a stale read.
The runner writes entries atomically (rename over the target), so two runs that finish at once each
write the same bytes and either rename wins. Pure: the runner does the reading and writing.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from pathlib import Path

FORMAT = 1  # bump when what an entry holds changes (how it is computed is in `computed_by`)

# What computes an entry besides its inputs. The libraries: torch and transformers run the model, tokenizers
# makes the token ids it scores and decodes the texts, peft turns the adapter off for pi_ref, unsloth (when
# installed) patches the forward. prefopt's modules that tokenize, load, score and generate: an edit to them
# would otherwise be served the entries its predecessor computed (token counts that no longer match, or texts
# another padding would not give), unless whoever edited remembered FORMAT.
LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "unsloth")
SCORING_CODE = ("prefopt.metrics", "prefopt.models", "prefopt.evaluation", "prefopt.refcache")


def model_identity(name: str) -> dict:
    """The model's local folder with its files' sizes and modification times (a reconverted or replaced
    model is a new identity), or the bare name when it is not on disk yet. A Hub id is read from the local
    Hugging Face cache, as the loader reads it: its snapshot folder is named by the revision's commit, so
    a model updated there is a new identity too."""
    from .models import local_model_dir

    folder = local_model_dir(name) or _hub_snapshot(name)
    if folder is None:
        return {"name": name}
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    return {"name": name, "folder": str(Path(folder).resolve()),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def model_files(name: str) -> list | None:
    """The files of model_identity's folder as [name, size, sha256 of the bytes] (None: a Hub id not on disk):
    what a resumed run must find again. By content, not date as above: the same model copied (cp without -p)
    or downloaded again is the same model, and refusing it would cost the run's training so far."""
    identity = model_identity(name)
    if "folder" not in identity:
        return None
    return [[file, size, _digest(str(Path(identity["folder"]) / file), size, mtime)]
            for file, size, mtime in identity["files"]]


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """(size, mtime_ns) key the cache: a batch of runs in one process hashes a model once, a changed file again."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()[:16]


def _hub_snapshot(name: str) -> Path | None:
    """The cached snapshot folder of Hub id `name` (refs/main's commit), without any network; None if absent."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not a Hub id, or not in the cache: the bare name is all there is
        return None


def computed_by() -> dict:
    """The installed versions of LIBRARIES and a hash of the source of SCORING_CODE (see above)."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            pass
    code = hashlib.sha256()
    for module in SCORING_CODE:
        code.update(Path(importlib.import_module(module).__file__).read_bytes())
    return {"libraries": libraries, "code": code.hexdigest()[:16]}


def hardware(device) -> dict:
    """The chip an entry was computed on: float32 kernels round differently on another instruction set (an
    AVX2 and an AVX-512 CPU agree to about 6 digits, README), and greedy texts can follow a rounding. The
    model's folder and dates do not tell machines apart when an image carries the converted model and a
    results folder on shared storage serves several kinds of node (Ray)."""
    import torch

    if getattr(device, "type", str(device).split(":")[0]) == "cuda":
        return {"gpu": torch.cuda.get_device_name(device)}
    from .results import cpu_model

    return {"cpu": cpu_model(), "kernels": torch.backends.cpu.get_cpu_capability()}


def key(kind: str, **parts) -> str:
    """`kind` (scores | generations) plus a hash of every input that determines the entry."""
    blob = json.dumps({"format": FORMAT, "kind": kind, **parts}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def path(results: Path, entry: str) -> Path:
    return Path(results) / "cache" / "reference" / (entry + (".npz" if entry.startswith("scores") else ".json"))


def dump_scores(reference: dict) -> bytes:
    """score_rows' "reference" part as the bytes of an .npz file."""
    import numpy as np

    from .metrics import pack_reference

    buffer = io.BytesIO()
    np.savez(buffer, **pack_reference(reference))
    return buffer.getvalue()


def load_scores(file: Path) -> dict | None:
    import numpy as np

    from .metrics import unpack_reference

    try:
        with np.load(file) as arrays:
            return unpack_reference({k: arrays[k] for k in arrays.files})
    except (OSError, ValueError, KeyError):  # missing or unreadable: compute it again
        return None


def dump_texts(generations: tuple[list[str], list[bool]]) -> str:
    texts, ended = generations
    return json.dumps({"texts": texts, "ended": ended}, ensure_ascii=False) + "\n"


def load_texts(file: Path) -> tuple[list[str], list[bool]] | None:
    """(texts, ended) or None; an entry written before `ended` was kept is computed again."""
    try:
        entry = json.loads(Path(file).read_text(encoding="utf-8"))
        return entry["texts"], entry["ended"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
