"""The codebase's own rules: layered imports, lint, types and a small public API.

The layer contracts live in pyproject.toml ([tool.importlinter]); ruff's rules in [tool.ruff]; mypy
checks every annotated function. Each runs as the command a developer would type.
"""

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import landscape

ROOT = Path(__file__).resolve().parent.parent


def _run(*command):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return result.returncode, (result.stdout + result.stderr)[-4000:]


def _tool(name):
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: it is part of the test extras (pip install -e '.[test]')")
    return path


def test_layers_are_respected():
    code, output = _run(_tool("lint-imports"))
    assert code == 0, output


def test_ruff_is_clean():
    code, output = _run(_tool("ruff"), "check", "landscape", "tests", "views", "app.py", "benchmarks")
    assert code == 0, output


def test_mypy_is_clean():
    code, output = _run(sys.executable, "-m", "mypy", "landscape")
    assert code == 0, output


def _public_functions(thing):
    if inspect.isfunction(thing):
        return [thing]
    found = []
    for name, member in vars(thing).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (classmethod, staticmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if inspect.isfunction(member):
            found.append(member)
    return found


def test_public_api_is_small_and_typed():
    assert len(landscape.__all__) <= 30
    assert len(set(landscape.__all__)) == len(landscape.__all__)
    untyped = []
    for name in landscape.__all__:
        for function in _public_functions(getattr(landscape, name)):
            signature = inspect.signature(function)
            missing = [p for p, spec in signature.parameters.items()
                       if p not in ("self", "cls") and spec.annotation is inspect.Parameter.empty]
            if missing or signature.return_annotation is inspect.Signature.empty:
                untyped.append(f"{function.__qualname__} ({', '.join(missing) or 'return'})")
    assert not untyped, "public functions without type annotations: " + "; ".join(untyped)
