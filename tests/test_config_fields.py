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
