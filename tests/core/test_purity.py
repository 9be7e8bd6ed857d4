"""service/core is pure: importing it pulls in no framework, and its source imports only stdlib."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "service" / "core"
REPO = CORE.parents[1]
FORBIDDEN = [
    "flask", "celery", "boto3", "botocore", "slack_sdk", "slack_bolt", "sqlalchemy", "redis", "marshmallow",
]
CORE_FILES = sorted(CORE.glob("*.py"))
MODULES = ["service.core" if p.stem == "__init__" else f"service.core.{p.stem}" for p in CORE_FILES]

_PROBE = """
import importlib, json, sys
mods = json.loads(sys.argv[1])
for m in mods:
    importlib.import_module(m)
print(json.dumps({"imported": [m for m in mods if m in sys.modules], "loaded": sorted(sys.modules)}))
"""


def test_core_has_the_expected_modules() -> None:
    assert {"service.core.durations", "service.core.states", "service.core.rules", "service.core.policy"} <= set(
        MODULES
    )


def test_importing_the_core_loads_no_framework() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(MODULES)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["imported"] == MODULES
    roots = {name.split(".")[0] for name in report["loaded"]}
    assert sorted(roots & set(FORBIDDEN)) == []


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # relative imports (level > 0) stay inside service/core
            found.append((node.lineno, "service.core" if node.level else node.module or ""))
    return found


def _allowed(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names or module == "service.core" or module.startswith(
        "service.core."
    )


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in CORE_FILES])
def test_core_sources_import_only_stdlib_and_core(path: Path) -> None:
    bad = [f"{path.name}:{line}: {module}" for line, module in _imports(path) if not _allowed(module)]
    assert bad == []


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        pytest.param("datetime", True, id="stdlib"),
        pytest.param("service.core.states", True, id="core"),
        pytest.param("service.catalog", False, id="rest-of-service"),
        pytest.param("service.corex", False, id="prefix-lookalike"),
        pytest.param("boto3", False, id="third-party"),
    ],
)
def test_the_import_rule_itself(module: str, allowed: bool) -> None:
    assert _allowed(module) is allowed
