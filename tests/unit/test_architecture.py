"""The library's shape, checked: module and function sizes, deferred imports, light packages,
and the import-linter contracts in pyproject.toml (layers, no cycles, no Airflow)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "ml").rglob("*.py"))
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _comment_near(lines: list[str], lineno: int, tag: str) -> bool:
    """`# <tag>` at the end of line `lineno` (1-based) or on the line directly above it."""
    here = lines[lineno - 1]
    above = lines[lineno - 2].strip() if lineno >= 2 else ""
    return f"# {tag}" in here or above.startswith(f"# {tag}")


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, line, length) of every function over the limit without a `# long:` reason."""
    lines = source.splitlines()
    found = []
    for fn in _functions(ast.parse(source)):
        length = fn.end_lineno - fn.lineno + 1
        first = fn.decorator_list[0].lineno if fn.decorator_list else fn.lineno
        if length > MAX_FUNCTION_LINES and not _comment_near(lines, first, "long:"):
            found.append((fn.name, fn.lineno, length))
    return found


def undeclared_deferred_imports(source: str) -> list[tuple[str, int]]:
    """Function-level imports of `ml` modules without a `# deferred:` reason."""
    lines = source.splitlines()
    found = []
    for fn in _functions(ast.parse(source)):
        for node in ast.walk(fn):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                names = ["ml (relative)"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                internal = name == "ml" or name.startswith(("ml.", "ml "))
                if internal and not _comment_near(lines, node.lineno, "deferred:"):
                    found.append((name, node.lineno))
    return found


def test_no_library_module_is_over_the_limit():
    over = {
        _rel(p): n for p in LIBRARY if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert over == {}, f"modules over {MAX_MODULE_LINES} lines: split them by job"


def test_no_function_is_over_the_limit_without_a_stated_reason():
    over = {_rel(p): found for p in LIBRARY if (found := long_functions(p.read_text()))}
    assert over == {}, (
        f"functions over {MAX_FUNCTION_LINES} lines; split them, or (DAG builders and pure "
        "declarations only) put `# long: <reason>` above the def"
    )


def test_function_level_imports_of_the_library_say_why():
    found = {_rel(p): f for p in LIBRARY if (f := undeclared_deferred_imports(p.read_text()))}
    assert found == {}, (
        "function-level imports of ml modules hide cycles: import at module level, or keep a "
        "heavy import off a hot or parse-time path with `# deferred: <reason>`"
    )


def test_packages_are_docstrings_only():
    # Importing ml.features.transform must not import the rest of ml.features: the model ships
    # the transform alone.
    for init in (ROOT / "ml").rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        code = [
            n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
        ]
        assert code == [], f"{_rel(init)} holds code; packages hold only a docstring"


def test_the_checks_catch_what_they_guard():
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{long_body}\n") == [("f", 1, MAX_FUNCTION_LINES + 1)]
    assert long_functions(f"# long: a declaration\ndef f():\n{long_body}\n") == []
    assert undeclared_deferred_imports("def f():\n    from ml import storage\n") == [("ml", 2)]
    assert (
        undeclared_deferred_imports("def f():\n    # deferred: heavy\n    import ml.score\n") == []
    )
    assert undeclared_deferred_imports("def f():\n    import numpy\n") == []


def test_import_linter_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a dev dependency: make install"
    out = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
