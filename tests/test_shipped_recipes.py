"""Every shipped recipe opens with what it is for and the command that runs it, and validates fully:
structure, registry names, and every train.* key against its method's TRL config."""

from pathlib import Path

import pytest

from prefopt.methods import get_method
from prefopt.recipe import check_train_fields, load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_the_five_default_recipes_ship():
    assert {p.stem for p in RECIPES} >= {"kto_balanced", "kto_mixed", "kto_natural", "dpo", "orpo"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_header_and_validation(path):
    text = path.read_text()
    header = [l for l in text.splitlines() if l.startswith("#")]
    assert header and text.startswith("# "), "a recipe opens with a comment saying what it is for"
    assert f"python -m prefopt run recipes/{path.name}" in text, "and the command that runs it"
    assert "--set" in text, "and how to override it"
    recipe = load_recipe(str(path))
    assert recipe.name == path.stem
    check_train_fields(recipe, get_method(recipe.method).config_class())
