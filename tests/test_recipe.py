"""Recipe validation: every problem reported at once, one line each, with a "did you mean"."""

import pytest
import yaml

from prefopt.errors import UserError
from prefopt.errors import UserErrors
from prefopt.recipe import apply_sets, identity_of, load_recipe, parse_set
from prefopt.recipe_checks import check_train_fields


def write(tmp_path, data, name="r.yaml"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(p)


def test_minimal_recipe_gets_defaults(tmp_path):
    r = load_recipe(write(tmp_path, {"name": "x", "method": "kto"}))
    assert (r.seed, r.model.name, r.model.lora.enabled, r.data.eval_fraction) == (42, "smollm2-135m-instruct", True, 0.1)
    assert r.source.endswith("r.yaml")


def test_unknown_keys_at_every_level_are_all_reported(tmp_path):
    path = write(tmp_path, {"name": "x", "method": "kto", "sed": 1, "model": {"lora": {"rank": 4}},
                            "data": {"strategi": "mixed"}, "eval": {"verifer": "instructions"}})
    with pytest.raises(UserErrors) as e:
        load_recipe(path)
    lines = str(e.value).splitlines()
    assert sorted(l.split(": ")[1] for l in lines) == ["data.strategi", "eval.verifer", "model.lora.rank", "sed"]
    assert any("sed: unknown key; did you mean 'seed'?" in l for l in lines)
    assert all(l.startswith(path) for l in lines)


@pytest.mark.parametrize("key,value,field", [
    ("seed", "three", "seed"), ("data", {"eval_fraction": "x"}, "data.eval_fraction"),
    ("model", {"lora": {"enabled": "yes"}}, "model.lora.enabled"), ("seeds", [1, "b"], "seeds"),
    ("train", [1, 2], "train"),
])
def test_wrong_types_name_the_field(tmp_path, key, value, field):
    with pytest.raises(UserError) as e:
        load_recipe(write(tmp_path, {"name": "x", "method": "kto", key: value}))
    assert e.value.field == field and "expected" in e.value.message


@pytest.mark.parametrize("patch,field,fix", [
    ({"method": "ktoo"}, "method", "did you mean 'kto'?"),
    ({"model": {"backend": "unslot"}}, "model.backend", "did you mean 'unsloth'?"),
    ({"model": {"dtype": "fp32"}}, "model.dtype", "choices"),
    ({"data": {"eval_fraction": 1.0}}, "data.eval_fraction", "between 0 and 1"),
    ({"data": {"weights": "equal"}}, "data.weights", "auto or"),
    ({"train": {"per_device_train_batch_size": 1}}, "train.per_device_train_batch_size", "at least 2"),
    ({"train": {"desirable_weight": 2.0}}, "train.desirable_weight", "data.weights"),
    ({"train": {"train_sampling_strategy": "random"}}, "train.train_sampling_strategy", "'sequential'"),
    ({"data": {"validation_fraction": 0.95}}, "data.validation_fraction", "1 - eval_fraction"),
    ({"data": {"validation_fraction": 1.5}}, "data.validation_fraction", "1 - eval_fraction"),
    # a raised eval_fraction beside the default validation_fraction: the fix is one of the two, said as such
    ({"data": {"eval_fraction": 0.9}}, "data.validation_fraction", "lower data.eval_fraction or"),
    ({"eval": {"select": "bset"}}, "eval.select", "did you mean 'best'?"),
    ({"eval": {"select_metric": "auc"}}, "eval.select_metric", "reward_auc"),
    ({"eval": {"select": "best"}, "data": {"validation_fraction": 0}}, "eval.select", "validation split"),
    ({"data": {"folds": 0}}, "data.folds", "from 1"),
    ({"data": {"folds": 5, "fold": 5}}, "data.fold", "0 to 4"),
])
def test_bad_values(tmp_path, patch, field, fix):
    with pytest.raises(UserError) as e:
        load_recipe(write(tmp_path, {"name": "x", "method": "kto", **patch}))
    assert e.value.field == field and fix in e.value.message


def test_missing_required_and_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="required key is missing"):
        load_recipe(write(tmp_path, {"name": "x"}))
    with pytest.raises(UserError) as e:
        load_recipe(write(tmp_path, "name: [x\nmethod: kto\n"))
    assert "invalid YAML" in e.value.message and e.value.field.startswith("line ")
    with pytest.raises(UserError, match="empty"):
        load_recipe(write(tmp_path, ""))
    with pytest.raises(UserError, match="no such file"):
        load_recipe(str(tmp_path / "nope.yaml"))
    (tmp_path / "recipes").mkdir()
    with pytest.raises(UserError, match="is a folder; pass a recipe file in it"):  # was "no such file", of a folder
        load_recipe(str(tmp_path / "recipes"))


def test_set_overrides_and_bad_sets(tmp_path):
    path = write(tmp_path, {"name": "x", "method": "kto"})
    r = load_recipe(path, ["train.max_steps=20", "seed=3", "data.strategy=mixed", "model.lora.enabled=false"])
    assert (r.train["max_steps"], r.seed, r.data.strategy, r.model.lora.enabled) == (20, 3, "mixed", False)
    assert parse_set("a.b=[1, 2]") == (["a", "b"], [1, 2])
    for bad in ("noequals", "=3", "a..b=1"):
        with pytest.raises(UserError, match="KEY=VALUE"):
            parse_set(bad)
    with pytest.raises(UserError, match="not a section"):
        apply_sets({"seed": 1}, ["seed.x=2"])
    with pytest.raises(UserError, match="did you mean 'max_new_tokens'"):
        load_recipe(path, ["eval.max_new_token=3"])


def test_train_fields_checked_against_trl_config(tmp_path):
    from trl import DPOConfig

    r = load_recipe(write(tmp_path, {"name": "x", "method": "dpo", "train": {"learning_rate": 1e-4, "beta": 0.2}}))
    check_train_fields(r, DPOConfig)
    r.train["learning_rat"] = 1e-4  # past load_recipe's own check: the run-time check against the class
    with pytest.raises(UserError) as e:
        check_train_fields(r, DPOConfig)
    assert e.value.field == "train.learning_rat" and "did you mean 'learning_rate'?" in e.value.message


def test_load_recipe_checks_train_fields_without_importing_trl(tmp_path):
    path = write(tmp_path, {"name": "x", "method": "kto", "train": {"learning_rat": 1e-4, "max_step": 3}})
    with pytest.raises(UserErrors) as e:
        load_recipe(path)
    assert [x.field for x in e.value.errors] == ["train.learning_rat", "train.max_step"]
    assert "not a field of KTOConfig; did you mean 'max_steps'?" in str(e.value)


def test_fingerprint_tracks_the_resolved_recipe(tmp_path):
    path = write(tmp_path, {"name": "x", "method": "kto"})
    a, b, c = load_recipe(path), load_recipe(path), load_recipe(path, ["seed=1"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.for_seed(1).fingerprint() == c.fingerprint()


def test_fields_added_later_leave_the_fingerprint_alone_at_their_default(tmp_path):
    """eval.select came after results were made: at its default it does not change a recipe's identity (the
    finished runs stay valid); set to anything else, it does."""
    base = {"name": "x", "method": "kto"}
    plain = load_recipe(write(tmp_path, base)).fingerprint()
    assert load_recipe(write(tmp_path, {**base, "eval": {"select": "last"}})).fingerprint() == plain
    assert load_recipe(write(tmp_path, {**base, "eval": {"select": "best"}})).fingerprint() != plain
    assert load_recipe(write(tmp_path, {**base, "seed": 7})).fingerprint() != plain
    assert load_recipe(write(tmp_path, {**base, "data": {"folds": 1}})).fingerprint() == plain
    # data.split (a saved DatasetDict's split) came later too: unset, as every shipped run, it is no part of it
    assert load_recipe(write(tmp_path, {**base, "data": {"split": None}})).fingerprint() == plain
    assert load_recipe(write(tmp_path, {**base, "data": {"split": "train"}})).fingerprint() != plain
    written = load_recipe(write(tmp_path, base)).to_dict()
    assert written["data"]["split"] is None  # recipe.yaml now holds it; runs written before did not
    assert identity_of(written) == identity_of({**written, "data": {k: v for k, v in written["data"].items()
                                                                     if k != "split"}})
    five = load_recipe(write(tmp_path, {**base, "data": {"folds": 5}}))
    assert five.fingerprint() != plain and five.folds() == [0, 1, 2, 3, 4]
    assert len({five.for_fold(f).fingerprint() for f in range(5)}) == 5  # one run directory per fold


def test_numbers_without_a_dot_are_numbers(write_recipe, tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-4 as a string, which reached TRL's optimizer as text and crashed training
    from prefopt.recipe import load_recipe

    path = write_recipe("dpo", train={"max_steps": 3})
    path.write_text(path.read_text().replace("learning_rate: 0.001", "learning_rate: 1e-4"))
    assert "learning_rate: 1e-4" in path.read_text()
    recipe = load_recipe(str(path), ["train.beta=2E-1"])
    assert recipe.train["learning_rate"] == 0.0001 and recipe.train["beta"] == 0.2
    assert load_recipe(str(path), ["name=1e"]).name == "1e"  # not a number: still a string


def test_a_tuned_recipe_trains_with_what_tuning_chose(tmp_path):
    # the summary credits tuning with tuned.chosen: a --set (or edit) that trains with another value is refused
    tuned = {"recipe": "d", "trials": 3, "trial": 1, "sampler": "grid", "metric": "validation reward_auc",
             "value": 0.7, "chosen": {"beta": 0.2}}
    path = write(tmp_path, {"name": "d_tuned", "method": "dpo", "train": {"beta": 0.2}, "tuned": tuned})
    assert load_recipe(path, ["train.learning_rate=1e-3"]).train["beta"] == 0.2
    with pytest.raises(UserError, match=r"train.beta: is 0.05, but `prefopt tune` chose 0.2"):
        load_recipe(path, ["train.beta=0.05"])
    with pytest.raises(UserError, match="tuned.chosen: missing"):
        load_recipe(write(tmp_path, {"name": "d", "method": "dpo", "tuned": {"recipe": "d", "trials": 3}}))


@pytest.mark.parametrize("patch, field", [
    ({"name": "team/dpo"}, "name"), ({"name": "../../escaped"}, "name"), ({"name": ".."}, "name"),
    ({"seed": -1}, "seed"), ({"eval": {"verifier": "instrucions"}}, "eval.verifier")])
def test_values_that_would_misplace_a_run_or_blame_another_file_are_refused_naming_the_recipe(tmp_path, patch, field):
    path = write(tmp_path, {"name": "x", "method": "kto", **patch})
    with pytest.raises(UserError) as e:
        load_recipe(path)
    assert (e.value.file, e.value.field) == (path, field)


@pytest.mark.parametrize("train, field, fix", [
    ({"max_steps": 2.5}, "train.max_steps", "expected int (KTOConfig declares it so), got 2.5"),
    ({"max_steps": "20"}, "train.max_steps", "expected int"),
    ({"max_steps": True}, "train.max_steps", "expected int"),  # a bool is not a number here
    ({"learning_rate": "fast"}, "train.learning_rate", "expected float"),
    ({"bf16": "yes"}, "train.bf16", "expected bool"),
    ({"lr_scheduler_type": 5}, "train.lr_scheduler_type", "expected SchedulerType | str"),
    ({"learning_rate": -1e-4}, "train.learning_rate", "must be above 0"),
    # NaN passed `<= 0` and torch refused it only as training started; an infinite rate trains to NaN
    ({"learning_rate": float("nan")}, "train.learning_rate", "must be above 0 and finite"),
    ({"learning_rate": float("inf")}, "train.learning_rate", "must be above 0 and finite"),
])
def test_train_values_have_the_types_the_trl_config_declares(tmp_path, train, field, fix):
    # they passed the recipe check and failed in the trainer, after the run's first files were written
    with pytest.raises(UserError) as e:
        load_recipe(write(tmp_path, {"name": "x", "method": "kto", "train": train}))
    assert (e.value.field, fix in e.value.message) == (field, True), str(e.value)


def test_train_values_of_the_declared_types_pass(tmp_path):
    train = {"learning_rate": 1, "max_length": None, "report_to": ["none"], "lr_scheduler_type": "cosine",
             "bf16": False, "warmup_steps": 4, "max_steps": 3}
    assert load_recipe(write(tmp_path, {"name": "x", "method": "kto", "train": train})).train == train


def test_unknown_keys_of_every_section_and_train_come_in_one_error(tmp_path):
    path = write(tmp_path, {"name": "x", "method": "dpo", "sed": 1, "data": {"strategi": "natural"},
                            "train": {"max_stepz": 2, "max_length": 1.5}})
    with pytest.raises(UserErrors) as e:
        load_recipe(path)
    assert sorted(x.field for x in e.value.errors) == ["data.strategi", "sed", "train.max_length", "train.max_stepz"]


def test_an_empty_section_takes_a_set(tmp_path):
    path = write(tmp_path, "name: x\nmethod: kto\ntrain:\nmodel:\n")
    assert load_recipe(path).train == {}
    r = load_recipe(path, ["train.max_steps=3", "model.lora.r=4"])
    assert (r.train, r.model.lora.r) == ({"max_steps": 3}, 4)


def test_a_set_value_is_the_text_after_the_equals_sign(tmp_path):
    # YAML read " #b" as a comment: the model name became "a"
    assert parse_set("model.name=a #b") == (["model", "name"], "a #b")
    assert parse_set("model.name=#b") == (["model", "name"], "#b")
    assert parse_set("eval.verifier=null") == (["eval", "verifier"], None)
    assert parse_set("train.learning_rate=1e-4 ") == (["train", "learning_rate"], 1e-4)
    assert load_recipe(write(tmp_path, {"name": "x", "method": "kto"}), ["model.name=a #b"]).model.name == "a #b"


def test_a_recipe_that_is_not_a_mapping_is_refused_with_or_without_a_set(tmp_path):
    path = write(tmp_path, "- name\n- method\n")
    for sets in ([], ["seed=1"]):
        with pytest.raises(UserError) as e:
            load_recipe(path, sets)
        assert (e.value.field, "expected a mapping" in e.value.message) == ("recipe", True)


def test_every_value_problem_of_every_section_is_reported_in_one_go(tmp_path):
    """The README: "every problem of every section in one go". Value checks (names, ranges) and train.*
    types stopped at the first problem, so a user fixed one line per attempt (found by the README review)."""
    path = write(tmp_path, {"name": "x", "method": "kto", "seed": -1, "model": {"backend": "unslot"},
                            "data": {"strategy": "mixd", "pairing": "al"}, "train": {"max_steps": 2.5},
                            "eval": {"batch_size": 0, "select_metric": "auc"}})
    with pytest.raises(UserErrors) as e:
        load_recipe(path)
    fields = sorted(err.field for err in e.value.errors)
    assert fields == ["data.pairing", "data.strategy", "eval.batch_size", "eval.select_metric", "model.backend",
                      "seed", "train.max_steps"]
    assert "did you mean 'mixed'?" in str(e.value) and len(str(e.value).splitlines()) == 7
