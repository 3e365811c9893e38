"""`handoff` is pure logic: stdlib, `kb` and `gateway.message` only — never aiohttp or SQLAlchemy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

# From this file, not `handoff.__file__`: under pytest's rootdir-relative sys.path the name `handoff` can
# resolve to this tests/handoff directory (a namespace package) rather than the real package.
REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "handoff"
ALLOWED_FIRST_PARTY = {"handoff", "kb"}
ALLOWED_GATEWAY = {"gateway.message"}


def imported_modules(source: str) -> set[str]:
    """Absolute module names a source file imports (relative imports stay inside the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def forbidden(modules: set[str]) -> set[str]:
    """The imports a handoff module must not have."""
    bad = set()
    for name in modules:
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in ALLOWED_FIRST_PARTY:
            continue
        if top == "gateway" and name in ALLOWED_GATEWAY:
            continue
        bad.add(name)
    return bad


def test_the_checker_catches_what_it_should() -> None:
    source = "import aiohttp\nfrom sqlalchemy.ext.asyncio import AsyncSession\nfrom gateway.storage import x\nimport json\n"
    assert forbidden(imported_modules(source)) == {"aiohttp", "sqlalchemy.ext.asyncio", "gateway.storage"}
    assert (
        forbidden(imported_modules("from gateway.message import Message\nfrom kb.model import RuleIntent"))
        == set()
    )


def test_no_handoff_module_imports_a_framework_or_the_gateway() -> None:
    files = sorted(PACKAGE_DIR.glob("*.py"))
    assert len(files) >= 10  # the walk really found the modules
    offenders = {
        f.name: sorted(bad)
        for f in files
        if (bad := forbidden(imported_modules(f.read_text(encoding="utf-8"))))
    }
    assert offenders == {}


def test_importing_every_handoff_module_loads_no_framework() -> None:
    # Catches transitive imports too (e.g. through kb or gateway/__init__), in a clean interpreter.
    modules = [f"handoff.{f.stem}" for f in sorted(PACKAGE_DIR.glob("*.py")) if f.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'sqlalchemy')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
