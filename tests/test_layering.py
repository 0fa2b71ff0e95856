"""Layering rules of the package (CODE_REVIEW.md section 1.2), checked so a move cannot undo them."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "medadv_lib"


def _imported_modules(package: str) -> dict[str, set[str]]:
    """Absolute names of the medadv_lib modules each file of ``package`` imports (lazy imports included)."""
    out = {}
    for path in sorted((LIB / package).rglob("*.py")):
        parts = ["medadv_lib", *path.relative_to(LIB).with_suffix("").parts]
        here = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    names.add(".".join(base + ([node.module] if node.module else [])))
                elif node.module:
                    names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        out[str(path.relative_to(LIB))] = {n for n in names if n.startswith("medadv_lib")}
    return out


@pytest.mark.parametrize("forbidden", ["medadv_lib.pipeline", "medadv_lib.plotting", "medadv_lib.tables"])
def test_metrics_imports_neither_stages_nor_presentation(forbidden):
    offenders = {f: sorted(n for n in names if n == forbidden or n.startswith(forbidden + "."))
                 for f, names in _imported_modules("metrics").items()}
    assert not {f: n for f, n in offenders.items() if n}, f"metrics/ must not import {forbidden}"


def test_the_scanner_sees_relative_imports():
    # guards the test above against a scanner that finds nothing
    names = _imported_modules("pipeline")["pipeline/detection.py"]
    assert {"medadv_lib.metrics.protocol", "medadv_lib.pipeline.adversarial", "medadv_lib.cache"} <= names


def test_config_does_not_import_torch():
    code = "import sys, medadv_lib.config; sys.exit('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(LIB.parent)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0, "importing config imported torch"


def test_architecture_names_are_shared():
    from medadv_lib import config, models

    assert models.ARCHITECTURES is config.ARCHITECTURES
