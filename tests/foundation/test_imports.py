"""Import-level rules the code relies on: rag/ never imports api/, and the native libraries one
process may load together (the vector index and OCR) can be loaded in either order."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_rag_never_imports_api() -> None:
    """Imports flow one way (api -> rag): the retrieval and ingestion core stays usable alone."""
    offenders = {str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "api")
                 for path in (ROOT / "rag").rglob("*.py")}
    assert {path: modules for path, modules in offenders.items() if modules} == {}


@pytest.mark.parametrize("first, second", [("rag.nlp.ann_index", "rag.app.parsers.ocr"),
                                           ("rag.app.parsers.ocr", "rag.nlp.ann_index")])
def test_the_vector_index_and_ocr_load_in_either_order(first: str, second: str) -> None:
    """usearch 2.26 made a later onnxruntime import segfault (a test process searching, then
    reading a scan, died); a fresh interpreter loads both, then runs the OCR engine."""
    script = (f"import importlib; importlib.import_module({first!r}); importlib.import_module({second!r}); "
              "import onnxruntime, usearch.index; from rag.app.parsers.ocr import engine; engine(); print('ok')")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]
