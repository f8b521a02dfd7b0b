"""The TRL config fields read from source (for `prefopt data`, no torch) equal the imported classes' fields."""

import dataclasses

import pytest

from prefopt.config_fields import field_names
from prefopt.methods import methods


@pytest.mark.parametrize("name", sorted(methods()))
def test_source_fields_equal_the_imported_config_fields(name):
    spec = methods()[name]
    real = {f.name for f in dataclasses.fields(spec.config_class()) if f.init}
    assert field_names(spec.config) == real


def test_unknown_class_or_module_gives_no_answer():
    assert field_names("trl:NoSuchConfig") is None
    assert field_names("no_such_package_xyz:Config") is None


@pytest.mark.parametrize("name", sorted(methods()))
def test_source_types_take_every_default_of_the_imported_config(name):
    # the declared types refuse a recipe's wrong value at load time: they must never refuse TRL's own defaults
    from prefopt.config_fields import field_types, type_mismatch

    spec = methods()[name]
    types = field_types(spec.config)
    for f in dataclasses.fields(spec.config_class()):
        if f.init:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            assert not type_mismatch(types[f.name], default), (f.name, default)
    for key, value in {**spec.defaults, **spec.fixed}.items():
        assert not type_mismatch(types[key], value), (key, value)


@pytest.mark.parametrize("annotation, good, bad", [
    ("int", [3, -1], [2.5, "3", True, None]),
    ("float", [1, 1.5], ["1e-4x", False, None]),  # an int is a float; a bool is not a number here
    ("bool", [True], [1, "false"]),
    ("int | None", [None, 2], [2.0]),
    ("Optional[Union[str, int]]", ["a", 1, None], [1.5, [1]]),
    ("SchedulerType | str", ["cosine"], [5]),  # an enum member cannot come from YAML; its text can
    ("list[str] | None", [["a"], None, "a"], [["a", 1], 1]),  # one item alone: TRL wraps it (DPO's loss_type)
    ("str | None | Literal[False]", ["x", None, False], [True, 0]),
    ("dict[str, Any] | str | None", [{"a": 1}, "{}"], [[1]]),
    ("ParallelismConfig", [{"a": 1}, 3], []),  # nothing known: the library's to judge
])
def test_declared_types(annotation, good, bad):
    import ast

    from prefopt.config_fields import type_mismatch

    node = ast.parse(annotation, mode="eval").body
    assert [v for v in good if type_mismatch(node, v)] == [] and all(type_mismatch(node, v) for v in bad)
