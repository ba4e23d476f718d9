"""Live video code stands on its own: it never imports the simulator or the evaluation
harnesses, and its modules import each other without a cycle (read from the source, not run)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIVE = [*sorted((ROOT / "safecity" / "video").rglob("*.py")), ROOT / "safecity" / "config" / "cameras.py",
        ROOT / "safecity" / "config" / "event_kinds.py", ROOT / "safecity" / "app" / "camera_wall.py",
        ROOT / "safecity" / "app" / "camera_runner.py", ROOT / "safecity" / "data" / "frames.py"]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every safecity module a file imports, at its top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("safecity"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("safecity"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_live_video_code_imports_neither_the_simulator_nor_evaluation():
    bad = {_module(p): sorted(m for m in _imports(p) if m.startswith(("safecity.sim", "safecity.evaluation")))
           for p in LIVE}
    assert {k: v for k, v in bad.items() if v} == {}


def test_sources_do_not_import_the_anomaly_scorer():
    assert not any(m.startswith("safecity.video.anomaly") for m in _imports(ROOT / "safecity/video/sources.py"))


def test_no_import_cycle_among_the_video_modules():
    files = {_module(p): p for p in sorted((ROOT / "safecity").rglob("*.py"))}
    graph = {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()

    for name in sorted(n for n in graph if n.startswith("safecity.video")):
        visit(name)
    # a package's __init__ importing its own modules is not a cycle between ideas
    real = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".")
                                         for a, b in zip(c, c[1:]))]
    assert real == []
