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
