"""The house rules of the code: ``core`` runs without Streamlit, and no module or function grows too long."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 120


def test_core_never_imports_streamlit() -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "core").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_modules_and_functions_stay_short() -> None:
    too_long = []
    for folder in ("core", "pages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text()
            if (n := len(source.splitlines())) > MAX_MODULE_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {n} lines")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                        too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, too_long
