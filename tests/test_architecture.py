"""The layout rules of ARCHITECTURE.md, checked on the source (ast): ground rooms (models/,
tracing/, tuning/) import nothing from the wiring wing (app/) nor from each other; only app/ui/
and webui.py import gradio; the door and the tabs stay small enough to read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

GROUND = ("models", "tracing", "tuning")
WIRING = ("app", "service", "store", "metrics", "webui", "webui_snapshot")  # all but "app": old names


def _modules():
    for path in sorted(ROOT.glob("*.py")) + sorted(p for d in (*GROUND, "app") for p in (ROOT / d).rglob("*.py")):
        yield path.relative_to(ROOT), ast.parse(path.read_text(), str(path))


def _imports(tree: ast.AST, path: Path) -> set[str]:
    """Top-level package names a module imports (relative imports resolved to its own package)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.add(path.parts[0] if node.level else (node.module or "").split(".")[0])
    return out


MODULES = list(_modules())


@pytest.mark.parametrize("path,tree", [m for m in MODULES if m[0].parts[0] in GROUND], ids=lambda v: str(v))
def test_ground_rooms_import_no_wiring_and_no_other_room(path, tree):
    own = path.parts[0]
    bad = _imports(tree, path) & ({*WIRING, *GROUND} - {own})
    assert not bad, f"{path} imports {sorted(bad)}: ground rooms stand alone (ARCHITECTURE.md)"


def test_only_the_ui_imports_gradio():
    offenders = [str(p) for p, tree in MODULES
                 if "gradio" in _imports(tree, p)  # gradio_client (a plain HTTP client) is fine
                 and not (p.parts[:2] == ("app", "ui") or str(p) == "webui.py")]
    assert offenders == [], f"only app/ui/ and webui.py may import gradio: {offenders}"


def test_rules_see_a_violation(tmp_path):
    """The checker itself: an import of app from tracing/ and of gradio from models/ are caught."""
    tree = ast.parse("from app.service import Service\nimport gradio as gr\nfrom .window import TraceWindow\n")
    assert _imports(tree, Path("tracing/x.py")) == {"app", "gradio", "tracing"}


def test_door_and_tabs_stay_small():
    assert len((ROOT / "webui.py").read_text().splitlines()) <= 200, "webui.py: parsing, start-up, assembly only"
    long = []
    for p, tree in MODULES:
        if p.parts[:2] != ("app", "ui"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 120:
                long.append(f"{p}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == [], f"functions over 120 lines under app/ui/: {long}"


DEVICE_ANALYSIS = ("tracing/kineto.py", "tracing/clock.py", "tracing/device.py", "tracing/device_report.py",
                   "tracing/timeline_gpu.py", "tracing/timeline_gpu_png.py", "tracing/snapshot_gpu.py")


@pytest.mark.parametrize("name", DEVICE_ANALYSIS)
def test_device_analysis_is_pure_and_torch_free(name):
    """The profile's analysis and its join with the kernel trace are pure code (issue 22): no torch
    (capturing belongs to the wiring, app/device_view.py), no file, process or clock access."""
    path = ROOT / name
    tree = ast.parse(path.read_text(), name)
    bad = _imports(tree, Path(name)) & {"torch", "os", "pathlib", "subprocess", "io", "shutil", "time", "zipfile"}
    calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id in ("open", "print", "input")]
    assert not bad and not calls, f"{name} imports {sorted(bad)} / calls {calls}"
