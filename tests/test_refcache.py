"""prefopt.refcache: what names a cached reference entry."""

from __future__ import annotations

from huggingface_hub import constants

from prefopt import refcache


def _snapshot(cache, repo, commit):
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "snapshots" / commit).mkdir(parents=True)
    (root / "snapshots" / commit / "config.json").write_text('{"model_type": "llama"}')
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)


def test_a_hub_model_is_named_by_its_cached_revision(tmp_path, monkeypatch):
    # loaded from the local Hugging Face cache: an updated snapshot there must not reuse the old reference
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _snapshot(tmp_path, "org/tiny", "a" * 40)
    first = refcache.model_identity("org/tiny")
    assert ("a" * 40) in first["folder"] and first["files"][0][0] == "config.json"
    _snapshot(tmp_path, "org/tiny", "b" * 40)  # refs/main now names a new commit
    assert refcache.model_identity("org/tiny") != first
    assert refcache.model_identity("org/absent") == {"name": "org/absent"}  # not cached: the name alone
