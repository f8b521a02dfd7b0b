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


def test_another_tokenizers_version_or_scoring_code_computes_the_reference_again(write_recipe, tmp_path, monkeypatch):
    """An entry is reused only by what would compute it again: a tokenizers release (it makes the token ids
    scored and decodes the texts) or an edit of prefopt's scoring code names new entries; torch and
    transformers alone were keyed before, and an edit counted only if FORMAT was bumped by hand."""
    import importlib.metadata
    import json

    from prefopt import metrics
    from prefopt.cli import main
    from prefopt.testing import write_feedback, write_test_prompts

    data = write_feedback(tmp_path / "constrained.jsonl", constraints=True)
    prompts = write_test_prompts(tmp_path / "test_prompts.jsonl", prompts=6)
    results = tmp_path / "results"
    recipe = str(write_recipe("kto", data={"path": str(data)}, train={"max_steps": 1},
                              eval={"verifier": "auto", "max_new_tokens": 3, "prompts": str(prompts)}))

    def cached(seed):
        assert main(["run", recipe, "--results", str(results), "--set", f"seed={seed}"]) == 0
        (run,) = (results / "runs" / "tiny_kto").glob(f"seed{seed}-*")
        return json.loads((run / "metrics.json").read_text())["reference_cached"]

    assert cached(0) == {"scores": False, "generations": False}
    assert cached(1) == {"scores": True, "generations": True}  # nothing changed: read back
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0" if name == "tokenizers" else real(name))
    assert cached(2) == {"scores": False, "generations": False}
    monkeypatch.undo()
    edited = tmp_path / "metrics.py"
    edited.write_text(open(metrics.__file__).read() + "\n# an edit\n")
    monkeypatch.setattr(metrics, "__file__", str(edited))
    assert cached(3) == {"scores": False, "generations": False}
