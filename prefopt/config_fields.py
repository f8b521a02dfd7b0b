"""The field names and declared types of a TRL config class, read from its source without importing it.

`prefopt data` must report the same recipe errors as `prefopt run`, including a misspelt `train.*` key,
but it never imports torch, and every TRL config imports transformers' TrainingArguments, which imports
torch. So this module finds the class's source file, parses it with `ast`, collects the annotated class
attributes (the dataclass fields, less those with init=False) and follows its bases through the file's
`from ... import` statements, all the way down to TrainingArguments. `prefopt run` still checks against
the imported class itself; a test holds the two to the same answer for every registered method.
A field's annotation (`int | None`, `dict[str, Any] | str | None`) also says which YAML values it takes:
`max_steps: 2.5` reached the trainer, which failed only after the run's first files were written.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path


def field_names(target: str) -> frozenset[str] | None:
    """Init fields of the dataclass at "module:Class", or None when its source cannot be found."""
    types = field_types(target)
    return None if types is None else frozenset(types)


def field_types(target: str) -> dict[str, ast.expr] | None:
    """Init field -> its annotation (the most derived definition), or None when the source cannot be read."""
    module, _, name = target.partition(":")
    found = _find_class(name, module)
    try:
        return _annotations(*found, seen=set()) if found else None
    except LookupError:  # a base we could not follow: no answer rather than a wrong one
        return None


def type_mismatch(annotation: ast.expr, value) -> bool:
    """True when a YAML value cannot be what `annotation` declares. An int is a float here, a bool is not an
    int, a Union takes any member, a list one item alone; a class a YAML value cannot be (an enum,
    ParallelismConfig) takes nothing beside known members, and an annotation naming no known type takes anything."""
    return _known(annotation) and not _fits(annotation, value)


_CHECKS = {"float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
           "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
           "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
           "dict": lambda v: isinstance(v, dict), "Dict": lambda v: isinstance(v, dict),
           "list": lambda v: isinstance(v, list), "List": lambda v: isinstance(v, list),
           "tuple": lambda v: isinstance(v, list), "Any": lambda v: True, "object": lambda v: True}


def _name(node) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _members(node: ast.expr) -> list[ast.expr]:
    """The members of `A | B`, `Union[A, B]`, `Optional[A]` (a string annotation parsed first)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _members(ast.parse(node.value, mode="eval").body)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _members(node.left) + _members(node.right)
    if isinstance(node, ast.Subscript) and _name(node.value) in ("Union", "Optional"):
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        optional = [ast.Constant(None)] if _name(node.value) == "Optional" else []
        return [m for a in args for m in _members(a)] + optional
    return [node]


def _known(node: ast.expr) -> bool:
    return any(isinstance(m, ast.Constant) or _name(m.value if isinstance(m, ast.Subscript) else m) in
               (*_CHECKS, "Literal") for m in _members(node))


def _fits(node: ast.expr, value) -> bool:
    for m in _members(node):
        if isinstance(m, ast.Constant):
            if m.value is None and value is None:
                return True
            continue
        if isinstance(m, ast.Subscript):
            base, args = _name(m.value), m.slice.elts if isinstance(m.slice, ast.Tuple) else [m.slice]
            if base == "Literal":
                if any(isinstance(a, ast.Constant) and type(a.value) is type(value) and a.value == value for a in args):
                    return True
            elif base in ("list", "List", "tuple"):
                # one item alone is a list of it (DPOConfig's `loss_type: list[str]` takes `loss_type: ipo` and
                # wraps it); items of a type we do not know (list[DebugOption]) are the library's to convert
                items = value if isinstance(value, list) else [value]
                if all(not _known(args[0]) or _fits(args[0], v) for v in items):
                    return True
            elif base in _CHECKS and _CHECKS[base](value):
                return True
        elif _name(m) in _CHECKS and _CHECKS[_name(m)](value):
            return True
    return False


def _annotations(path: Path, node: ast.ClassDef, *, seen: set) -> dict[str, ast.expr]:
    out: dict[str, ast.expr] = {}
    for base_name in _base_names(node):
        if (path, base_name) in seen:
            continue
        seen.add((path, base_name))
        found = _find_class(base_name, _module_of(path))
        if found is None:
            raise LookupError(base_name)
        out.update(_annotations(*found, seen=seen))
    for stmt in node.body:  # a subclass's own definition wins
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if _init_false(stmt.value):
                out.pop(stmt.target.id, None)
            else:
                out[stmt.target.id] = stmt.annotation
    return out


def field_default(target: str, name: str):
    """The literal default of field `name` of the dataclass at "module:Class" (`= 1024` or
    `field(default=1024)`), the most derived definition winning; None when there is none to read."""
    module, _, cls = target.partition(":")
    found = _find_class(cls, module)
    try:
        return _default(*found, name, depth=0) if found else None
    except (LookupError, ValueError):
        return None


def _default(path: Path, node: ast.ClassDef, name: str, *, depth: int):
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
            value = stmt.value
            if isinstance(value, ast.Call):
                value = next((k.value for k in value.keywords if k.arg == "default"), None)
            return ast.literal_eval(value) if value is not None else None
    for base_name in _base_names(node) if depth < 8 else ():
        found = _find_class(base_name, _module_of(path))
        if found:
            value = _default(*found, name, depth=depth + 1)
            if value is not None:
                return value
    return None


def _base_names(node: ast.ClassDef) -> list[str]:
    """The names of a class's bases as written (`Base`, `module.Base`), less `object`."""
    names = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else None for b in node.bases]
    return [n for n in names if n not in (None, "object")]


def _init_false(value) -> bool:
    return isinstance(value, ast.Call) and any(
        k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False for k in value.keywords)


def _imported_from(path: Path, name: str) -> tuple[str, str] | None:
    """(absolute module, name there) that `path` imports `name` from, if it does. Imports under
    `if TYPE_CHECKING:` count: that is where lazily-exporting packages (trl, transformers) name them."""
    for stmt in ast.walk(_parse(path)):
        if not isinstance(stmt, ast.ImportFrom):
            continue
        for alias in stmt.names:
            if (alias.asname or alias.name) == name:
                if not stmt.level:
                    return stmt.module, alias.name
                package = _module_of(path).split(".")
                package = package[:len(package) - stmt.level + (path.name == "__init__.py")]
                return ".".join(package + ([stmt.module] if stmt.module else [])), alias.name
    return None


def _find_class(name: str, module: str, depth: int = 0) -> tuple[Path, ast.ClassDef] | None:
    """The class as `module` defines or imports it (followed through re-exports), else the first
    definition anywhere in its top-level package."""
    path = _module_file(module)
    if path is not None:
        found = _class_in(path, name)
        if found:
            return found
        imported = _imported_from(path, name) if depth < 8 else None
        if imported:
            found = _find_class(imported[1], imported[0], depth + 1)
            if found:
                return found
    root = _module_file(module.split(".")[0])
    if root is None or root.name != "__init__.py":
        return None
    needle = f"class {name}("
    for candidate in sorted(root.parent.rglob("*.py")):
        try:
            if needle in candidate.read_text(encoding="utf-8"):
                found = _class_in(candidate, name)
                if found:
                    return found
        except (OSError, UnicodeDecodeError):
            continue
    return None


def _class_in(path: Path, name: str) -> tuple[Path, ast.ClassDef] | None:
    for stmt in _parse(path).body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == name:
            return path, stmt
    return None


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _module_file(module: str) -> Path | None:
    """The source file of a module, found by path alone (find_spec on a dotted name would import its
    parents)."""
    head, *rest = module.split(".")
    spec = importlib.util.find_spec(head)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin)
    for part in rest:
        base = path.parent / part
        path = base / "__init__.py" if (base / "__init__.py").is_file() else base.with_suffix(".py")
        if not path.is_file():
            return None
    return path


def _module_of(path: Path) -> str:
    """The dotted module name of a source file inside an installed package."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)
