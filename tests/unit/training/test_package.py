"""The model package: the shipped modules import only each other and light libraries, and they
are laid out as the `ml` package they are."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from ml.training.package import (
    ENTRY_MODULE,
    SHIPPED_MODULES,
    copy_shipped_code,
    entry_file,
    requirements,
)

pytestmark = pytest.mark.unit

LIGHT = {"numpy", "pandas", "pyarrow", "torch", "mlflow"}
# Imported inside a function the model never calls: `FeatureTransform.fit` on a Dask frame.
# (The integration test blocks dask where the model loads and predicts.)
NOT_ON_THE_MODEL_PATH = {"dask"}


def _imports(tree: ast.Module):
    """(module, names, function-level?) of every import, `TYPE_CHECKING` ones excluded."""
    nested = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(node)
    }
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for child in node.body
        for n in ast.walk(child)
    }
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], id(node) in nested
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, [a.name for a in node.names], id(node) in nested


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


# The entry file runs where the model loads too (MLflow runs it; it is not in `code/`).
@pytest.mark.parametrize("name", [*SHIPPED_MODULES, ENTRY_MODULE])
def test_a_shipped_module_imports_only_shipped_modules_and_light_libraries(name):
    tree = ast.parse(Path(importlib.util.find_spec(name).origin).read_text())
    for module, names, in_function in _imports(tree):
        top = module.split(".")[0]
        if top == "ml":
            assert module in SHIPPED_MODULES, f"{name} imports {module}, which is not shipped"
            for n in names:
                if _is_module(f"{module}.{n}"):
                    assert f"{module}.{n}" in SHIPPED_MODULES, f"{name} imports {module}.{n}"
        else:
            allowed = LIGHT | (NOT_ON_THE_MODEL_PATH if in_function else set())
            assert top in allowed or top in sys.stdlib_module_names, f"{name} imports {module}"


def test_the_shipped_code_is_laid_out_as_the_ml_package(tmp_path):
    root = copy_shipped_code(tmp_path)
    assert root == tmp_path / "ml"
    files = sorted(str(p.relative_to(tmp_path)) for p in root.rglob("*"))
    assert "ml/__init__.py" in files and "ml/training/model.py" in files
    assert "ml/features/transform.py" in files and "ml/features/__init__.py" in files
    assert len([f for f in files if f.endswith(".py")]) == len(SHIPPED_MODULES)


def test_requirements_are_explicit_and_do_not_name_mlpipe():
    reqs = requirements()
    assert reqs[0].startswith("torch==") and "+" not in reqs[0]
    assert {"pandas", "pyarrow"} <= set(reqs) and not any("mlpipe" in r for r in reqs)


def test_the_entry_file_sets_the_model_and_is_not_shipped_as_a_module():
    source = Path(entry_file()).read_text()
    assert Path(entry_file()).name == "model_code.py" and "set_model(DelayModel())" in source
    assert ENTRY_MODULE not in SHIPPED_MODULES
