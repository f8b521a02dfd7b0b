"""prefopt.evaluation: what names the cached reference."""

from __future__ import annotations

from types import SimpleNamespace

from prefopt.evaluation import _reference_keys
from prefopt.methods import get_method
from prefopt.models import load_model
from prefopt.recipe import load_recipe
from prefopt.preflight import prepare_data


def test_the_reference_cache_is_keyed_by_the_backend_that_was_picked(write_recipe, tiny_model):
    # a LoRA model is a peft class under either backend: its type cannot tell transformers from unsloth
    recipe = load_recipe(str(write_recipe("dpo")))
    prepared, _ = prepare_data(recipe, get_method(recipe.method))
    model, _ = load_model(str(tiny_model), dtype="float32")
    args = SimpleNamespace(max_length=64, bf16=False)
    plain, unsloth = (_reference_keys(recipe, model, prepared, args, b) for b in ("transformers", "unsloth"))
    assert plain["scores"] != unsloth["scores"]
    assert plain == _reference_keys(recipe, model, prepared, args, "transformers")  # and stable


def test_the_reference_cache_is_keyed_by_the_chip_it_was_computed_on(write_recipe, tiny_model, monkeypatch):
    # an image carrying the converted model (same folder, same dates) on nodes of two instruction sets, one
    # results folder between them: the AVX2 node must not be served the AVX-512 node's float32 reference
    import torch

    recipe = load_recipe(str(write_recipe("dpo")))
    prepared, _ = prepare_data(recipe, get_method(recipe.method))
    model, _ = load_model(str(tiny_model), dtype="float32")
    args = SimpleNamespace(max_length=64, bf16=False)
    keys = {}
    for chip in ("AVX512", "AVX2", "AVX512"):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda chip=chip: chip)
        keys.setdefault(chip, []).append(_reference_keys(recipe, model, prepared, args, "transformers"))
    assert keys["AVX512"][0] == keys["AVX512"][1]
    assert keys["AVX2"][0]["scores"] != keys["AVX512"][0]["scores"]  # (generations share the same parts)
