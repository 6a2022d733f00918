"""The import rule, read from the source of every module (ast):

    utils <- config <- {data, modeling, layers, solver} <- engine <- tools <- main_baseline.py

A module imports only from its own package or from packages on a lower floor (main_baseline.py
may also use tools' fixtures: the synthetic dataset of ``configs/demo.yml``), and every
project import stands at the top of its module: no import hidden in a function to dodge a cycle.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"utils": 0, "config": 1, "data": 2, "modeling": 2, "layers": 2, "solver": 2,
          "engine": 3, "tools": 4, "main_baseline": 5}
SIDEWAYS: set[tuple[str, str]] = set()   # (package, package on its floor) edges allowed
# Public script entries (`python -m data.synthetic`): never imported by library code.
SHIMS = {"data/synthetic/__main__.py": {"tools"}}


def package_of(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def project_imports(tree: ast.Module, package: str) -> list[tuple[str, int, bool]]:
    """(imported top-level package, line, at module top level) of every project import."""
    top = {id(node) for node in tree.body}
    for node in tree.body:   # imports under a module-level `if`/`try` count as top level
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [(node.module or "").split(".")[0]]
        else:
            continue
        found += [(n, node.lineno, id(node) in top) for n in names if n in FLOORS]
    return found


def violations(root: Path) -> list[str]:
    """Every backwards or sideways edge and every function-level project import under root."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        package = package_of(path, root)
        if package not in FLOORS:
            continue   # tests, output folders
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for target, line, at_top in project_imports(tree, package):
            if not at_top:
                problems.append(f"{rel}:{line}: imports {target} inside a function or class")
            allowed = (target == package or FLOORS[target] < FLOORS[package]
                       or (package, target) in SIDEWAYS or target in SHIMS.get(rel, ()))
            if not allowed:
                problems.append(f"{rel}:{line}: {package} (floor {FLOORS[package]}) imports "
                                f"{target} (floor {FLOORS[target]})")
    return problems


def test_the_project_follows_the_import_rule():
    assert violations(ROOT) == []


def test_the_checker_finds_backwards_sideways_and_hidden_imports(tmp_path):
    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "a.py").write_text("from engine.trainer import Trainer\n")
    (tmp_path / "modeling").mkdir()
    (tmp_path / "modeling" / "b.py").write_text(
        "import solver\n\n\ndef f():\n    from config import cfg\n    return cfg\n")
    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "c.py").write_text("from data.datasets import DATASETS\n"
                                              "from .d import x\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "e.py").write_text("import engine\nimport utils.errors\n")
    assert violations(tmp_path) == [
        "layers/c.py:1: layers (floor 2) imports data (floor 2)",
        "modeling/b.py:1: modeling (floor 2) imports solver (floor 2)",
        "modeling/b.py:5: imports config inside a function or class",
        "utils/a.py:1: utils (floor 0) imports engine (floor 3)",
    ]


@pytest.mark.parametrize("package", ["engine", "utils.pictures", "data", "modeling"])
def test_importing_a_library_package_does_not_load_matplotlib(package):
    code = f"import sys, {package}; assert 'matplotlib' not in sys.modules, 'matplotlib loaded'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
