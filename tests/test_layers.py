"""The import graph: core at the bottom; training and serving each on core only; export, workflows and the
benchmarks on top. Each package is imported in a fresh interpreter with the packages it must not use blocked."""

import ast
import subprocess
import sys

import pytest

from tests.helpers import REPO

# package → the packages it must never import (directly or through another module)
FORBIDDEN = {
    "core": ("training", "export", "serving", "workflows", "tensorflow"),
    "serving": ("training", "export", "workflows"),
    "training": ("serving", "export", "workflows"),
    "export": ("workflows",),
}

_IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
for blocked in {blocked!r}:
    sys.modules[blocked] = None  # `import blocked` now raises ImportError
package = importlib.import_module({package!r})
names = [m.name for m in pkgutil.walk_packages(package.__path__, {package!r} + ".")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


@pytest.mark.slow  # a Python process per package, importing TensorFlow
@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_lies_below_it(package):
    code = _IMPORT_EVERY_MODULE.format(package=package, blocked=FORBIDDEN[package])
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 3  # the modules were really walked


def imports_of(package: str) -> dict[str, set[str]]:
    """module file → the top-level packages it imports anywhere, inside functions too (lazy imports)."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_statement_anywhere_points_up(package):
    wrong = {path: sorted(names & set(FORBIDDEN[package])) for path, names in imports_of(package).items()
             if names & set(FORBIDDEN[package])}
    assert not wrong


@pytest.mark.slow
def test_the_checks_can_fail():
    """workflows.demo uses training and serving: both checks see it when they are forbidden there."""
    assert "training" in imports_of("workflows")["workflows/demo.py"]
    code = _IMPORT_EVERY_MODULE.format(package="workflows", blocked=("serving",))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr and "serving" in result.stderr
