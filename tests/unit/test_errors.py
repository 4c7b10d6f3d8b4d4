"""One error hierarchy: every exception class of the library is an `MlpipeError` of one kind."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from ml import errors

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def exception_classes() -> dict[str, tuple[str, list[str]]]:
    """class name -> (module file, base names) of every class in ml/ that derives from an
    exception (a builtin one, or one of ours, followed transitively)."""
    classes: dict[str, tuple[str, list[str]]] = {}
    for path in (ROOT / "ml").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                classes[node.name] = (str(path.relative_to(ROOT)), bases)
    found: dict[str, tuple[str, list[str]]] = {}
    changed = True
    while changed:
        changed = False
        for name, (where, bases) in classes.items():
            short = [b.rsplit(".", 1)[-1] for b in bases]
            if name not in found and any(b in BUILTIN_EXCEPTIONS or b in found for b in short):
                found[name] = (where, short)
                changed = True
    return found


def test_every_library_exception_is_an_mlpipe_error_of_one_kind():
    found = exception_classes()
    assert set(errors.KINDS) <= set(found)
    mixed = {
        name: bases
        for name, (_, bases) in found.items()
        if name != "MlpipeError" and any(b in BUILTIN_EXCEPTIONS for b in bases)
    }
    assert mixed == {}, "derive from a kind in ml.errors only, not from a builtin exception"
    rooted = {name for name, (_, bases) in found.items() if "MlpipeError" in bases}
    assert rooted == set(errors.KINDS) | {"AirflowAPIError", "StackError"}, (
        "outside the dev tools, a new class derives from a kind, not from the root"
    )


def test_kinds_are_named_by_path_for_retry_policies():
    for name, path in errors.KINDS.items():
        assert path == f"ml.errors.{name}" and issubclass(getattr(errors, name), errors.MlpipeError)
