"""Recipes: typed YAML, validated before anything heavy is imported.

Every section is a dataclass; `load_recipe` checks keys and types against them and reports every
problem at once (unknown keys with a "did you mean"). `train` is passed by name to the method's TRL
config class; its keys and values are checked against that class's fields and their declared types as read
from TRL's source (no import, so `prefopt data` reports them too, in the same pass as every other section's
keys), and the keys again against the imported class by `check_train_fields` at run time. Those checks,
and every other value check, are in `recipe_checks`; this module reads, builds and identifies recipes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError, did_you_mean, raise_all


# Marks a field added after results were made whose default does what runs did before it existed: at its
# default it is left out of the fingerprint, so adding it does not orphan every finished run.
LATER = {"fingerprint_omits_default": True}


@dataclass
class LoraSection:
    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0  # 0 keeps CPU runs bit-for-bit resumable
    target_modules: typing.Union[str, list[str]] = "all-linear"


@dataclass
class ModelSection:
    name: str = "smollm2-135m-instruct"  # alias (`prefopt list`), local directory or hub id
    backend: str = "auto"  # auto | transformers | unsloth
    dtype: str = "auto"  # auto (bf16 on GPU; bf16 autocast on a CPU with native bf16, else fp32) | float32 | bfloat16 | float16
    lora: LoraSection = field(default_factory=LoraSection)


@dataclass
class DataSection:
    path: str = "data/feedback.jsonl"
    format: str = "auto"  # auto | jsonl | json | csv | parquet | arrow
    # the split of a datasets.save_to_disk DatasetDict to read (null: train, or its only split)
    split: typing.Optional[str] = field(default=None, metadata=LATER)
    strategy: str = "natural"  # unpaired: file_order | natural | balanced | mixed; paired: natural | file_order
    eval_fraction: float = 0.1  # the test split: only the reported metrics are computed on it
    validation_fraction: float = 0.1  # the validation split, from the other prompts: choices are made on it
    split_seed: int = 42  # fixes the held-out split apart from `seed`, so every seed is scored on the same rows
    # cross-fitting: k > 1 partitions the prompts into k folds (by prompt, seeded by split_seed); run f trains on
    # the other folds and is scored on fold f, so every prompt gets one held-out score (eval_fraction unused)
    folds: int = field(default=1, metadata=LATER)
    fold: typing.Optional[int] = field(default=None, metadata=LATER)  # with folds: one fold only (null: every fold)
    weights: typing.Union[str, dict] = "auto"  # auto, or {desirable: x, undesirable: y}
    pairing: str = "one_to_one"  # one_to_one | all
    max_pairs_per_prompt: typing.Optional[int] = None


@dataclass
class EvalSection:
    batch_size: int = 8
    # auto: the verifier whose column the data carries (none, and said so, when it carries none); a name
    # (`prefopt list`) requires its column; null: no generation metric
    verifier: typing.Optional[str] = None
    max_new_tokens: int = 64
    # a file of prompts (+ the verifier's column) for the generation test instead of the held-out prompts:
    # a bigger set of prompts the data never asks (scripts/make_dataset.py --test-prompts)
    prompts: typing.Optional[str] = None
    # which checkpoint the run keeps: the last, or the best on the validation split by select_metric (scored at
    # every checkpoint, train.save_steps apart; the test split is never used for the choice)
    select: str = field(default="last", metadata=LATER)
    select_metric: str = field(default="reward_auc", metadata=LATER)
    # the split the run is scored on: test (the reported numbers) or validation (a tuning trial: choices are made
    # on it, so such a run never scores a test row nor takes the generation test, whose prompts are a test too)
    split: str = field(default="test", metadata=LATER)


@dataclass
class TuneSection:
    """`prefopt tune`: the same search for every recipe, scored on the validation split."""
    trials: int = 8  # every recipe gets the same number (--trials overrides)
    metric: str = "reward_auc"  # a validation metric (prefopt.selection.HIGHER_IS_BETTER says which way is better)
    sampler: str = "random"  # random (seeded draws) | grid
    seed: int = 0  # fixes the sampled settings, so a rerun finds (and skips) the same finished trials
    # train.* key -> {low, high, log} or {values: [...]} ({per: KEY, low, high}: a multiple of another sampled
    # key, e.g. SimPO's gamma as gamma/beta); replaces the method's default range for that key, null drops it
    space: typing.Optional[dict] = None


@dataclass
class Recipe:
    name: str
    method: str
    seed: int = 42
    seeds: typing.Optional[list[int]] = None  # one training per seed; overrides `seed`
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: dict = field(default_factory=dict)  # passed through to the method's TRL config
    eval: EvalSection = field(default_factory=EvalSection)
    # how `prefopt tune` searches; it changes no run, so it is not part of a run's identity
    tune: TuneSection = field(default_factory=TuneSection, metadata={"not_identity": True})
    # set by `prefopt tune` in the recipe it writes: {recipe, trials, trial, sampler, seed, metric, value, chosen}
    tuned: typing.Optional[dict] = field(default=None, metadata=LATER)
    source: str = field(default="", metadata={"internal": True})  # the recipe file, for messages

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def fingerprint(self) -> str:
        """Identifies a resolved recipe: same fingerprint, same run."""
        return hashlib.sha256(json.dumps(_identity(self), sort_keys=True).encode()).hexdigest()[:10]

    def for_seed(self, seed: int) -> "Recipe":
        r = copy.deepcopy(self)
        r.seed, r.seeds = seed, None
        return r

    def for_fold(self, fold: int | None) -> "Recipe":
        r = copy.deepcopy(self)
        r.data.fold = fold
        return r

    def folds(self) -> list:
        """The folds one `prefopt run` trains: [None] without cross-fitting, else data.fold or every fold."""
        if self.data.folds == 1:
            return [None]
        return [self.data.fold] if self.data.fold is not None else list(range(self.data.folds))


def _identity(section) -> dict:
    """to_dict() without the LATER fields that are at their defaults (see LATER)."""
    out = {}
    for f in dataclasses.fields(section):
        if f.metadata.get("internal") or f.metadata.get("not_identity"):
            continue
        value = getattr(section, f.name)
        if f.metadata.get("fingerprint_omits_default") and value == f.default:
            continue
        out[f.name] = _identity(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
        if f.name == "tuned":
            out[f.name] = _tuned_identity(out[f.name])
    return out


def _tuned_identity(tuned):
    """`tuned:` as a run's identity sees it: test_split is a record for a check (the data section, which
    is in the identity, already fixes the split) and seed a record of how the trials were drawn (the chosen
    values are in the identity), so tuned recipes written before either existed keep their runs."""
    return {k: v for k, v in tuned.items() if k not in ("test_split", "seed")} if isinstance(tuned, dict) else tuned


def identity_of(raw: dict, cls=None) -> dict:
    """A resolved recipe as written to recipe.yaml, reduced as `fingerprint` reduces it: fields added later
    at their default and fields that are not part of a run's identity are dropped (so runs written before
    and after a field existed compare equal)."""
    cls = cls or Recipe
    if not isinstance(raw, dict):
        return raw
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in raw.items():
        f = fields.get(key)
        if f is not None and (f.metadata.get("not_identity") or f.metadata.get("internal")):
            continue
        if f is not None and f.metadata.get("fingerprint_omits_default") and value == f.default:
            continue
        out[key] = identity_of(value, hints[key]) if f is not None and dataclasses.is_dataclass(hints[key]) else value
        if cls is Recipe and key == "tuned":
            out[key] = _tuned_identity(value)
    return out


def _type_ok(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(tp) or tp)


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp)).replace("list", "list")


def _build(cls, raw, path: str, file: str, errors: list):
    if not isinstance(raw, dict):
        errors.append(UserError(file, path or "recipe", f"expected a mapping, got {type(raw).__name__}"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            errors.append(UserError(file, where, f"unknown key; {did_you_mean(key, fields)}"))
            continue
        tp = hints[key]
        if value is None and (dataclasses.is_dataclass(tp) or tp is dict):  # `train:` with nothing under it
            value = {}
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, where, file, errors)
        elif not _type_ok(value, tp):
            errors.append(UserError(file, where, f"expected {_type_name(tp)}, got {value!r}"))
        else:
            kwargs[key] = float(value) if tp is float else value
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in raw]
    for name in missing:
        errors.append(UserError(file, f"{path}.{name}" if path else name, "required key is missing; add it"))
    if errors:
        return None
    return cls(**kwargs)


class _Loader(yaml.SafeLoader):
    """YAML as a user writes it: PyYAML follows YAML 1.1, where `1e-4` (no dot) is a string, and a string
    learning rate reaches TRL's optimizer as text; YAML 1.2 and every other reader take it as a number."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:float"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def parse_set(item: str) -> tuple[list[str], object]:
    """`train.max_steps=20` -> (['train', 'max_steps'], 20); the value is read as YAML, but YAML's comments
    are not: `--set model.name="a #b"` is the text a #b, not a (what YAML would cut off makes it text)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
        raise UserError("--set", item, "expected KEY=VALUE with a dotted key, e.g. --set train.max_steps=20")
    try:
        loader = _Loader(value)
        try:
            node = loader.get_single_node()
            parsed = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        if (node is None or node.end_mark.index < len(value.rstrip())) and value.strip():
            parsed = value  # the rest was read as a comment
    except yaml.YAMLError:
        raise UserError("--set", key, f"value {value!r} is not valid YAML; quote strings, e.g. --set "
                        f"{key}='\"text\"'") from None
    return key.strip().split("."), parsed


def apply_sets(raw: dict, sets: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for item in sets:
        keys, value = parse_set(item)
        node = raw
        for k in keys[:-1]:
            if node.get(k) is None:  # absent, or a section left empty (`train:` reads as null)
                node[k] = {}
            if not isinstance(node[k], dict):
                raise UserError("--set", ".".join(keys), f"'{k}' is not a section; it cannot hold '{keys[-1]}'")
            node = node[k]
        node[keys[-1]] = value
    return raw


def read_yaml(path: str) -> dict:
    p = Path(path)
    if p.is_dir():
        raise UserError(path, "recipe", "is a folder; pass a recipe file in it, such as recipes/kto_mixed.yaml")
    if not p.is_file():
        raise UserError(path, "recipe", "no such file; pass a recipe path such as recipes/kto_mixed.yaml")
    try:
        raw = _yaml(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "yaml"
        raise UserError(path, where, f"invalid YAML ({getattr(e, 'problem', None) or e}); fix the syntax") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(path, "recipe", f"cannot read the file ({e.__class__.__name__}); check it is UTF-8 text") from None
    if raw is None:
        raise UserError(path, "recipe", "the file is empty; a recipe needs at least name and method")
    if not isinstance(raw, dict):  # before --set is applied to it
        raise UserError(path, "recipe", f"expected a mapping (name: ..., method: ...), got {type(raw).__name__}")
    return raw


def load_recipe(path: str, sets: list[str] = ()) -> Recipe:
    from .recipe_checks import check_values, train_errors  # here: recipe_checks imports this module

    raw = apply_sets(read_yaml(path), list(sets))
    errors: list[UserError] = []
    recipe = _build(Recipe, raw, "", path, errors)
    if errors:  # no recipe to check values on: train.* is checked in the same pass, so a misspelt train
        from .methods import methods  # key is reported beside a misspelt section key

        spec = methods().get(raw.get("method")) if isinstance(raw.get("method"), str) else None
        if spec is not None and isinstance(raw.get("train"), dict):
            errors += train_errors(spec, raw["train"], path)
        raise_all(errors)
    recipe.source = path
    check_values(recipe)  # train.* among every other value, all reported together
    return recipe
