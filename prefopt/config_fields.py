"""The field names of a TRL config class, read from its source without importing it.

`prefopt data` must report the same recipe errors as `prefopt run`, including a misspelt `train.*` key,
but it never imports torch, and every TRL config imports transformers' TrainingArguments, which imports
torch. So this module finds the class's source file, parses it with `ast`, collects the annotated class
attributes (the dataclass fields, less those with init=False) and follows its bases through the file's
`from ... import` statements, all the way down to TrainingArguments. `prefopt run` still checks against
the imported class itself; a test holds the two to the same answer for every registered method.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path


def field_names(target: str) -> frozenset[str] | None:
    """Init fields of the dataclass at "module:Class", or None when its source cannot be found."""
    module, _, name = target.partition(":")
    found = _find_class(name, module)
    if found is None:
        return None
    try:
        return frozenset(_fields(*found, seen=set()))
    except LookupError:  # a base we could not follow: no answer rather than a wrong one
        return None


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


def _fields(path: Path, node: ast.ClassDef, *, seen: set) -> set[str]:
    names: set[str] = set()
    for base_name in _base_names(node):
        if (path, base_name) in seen:
            continue
        seen.add((path, base_name))
        found = _find_class(base_name, _module_of(path))
        if found is None:
            raise LookupError(base_name)
        names |= _fields(*found, seen=seen)
    for stmt in node.body:  # a subclass's own fields come last and may redefine a base's
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and not _init_false(stmt.value):
            names.add(stmt.target.id)
    return names


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
