"""The package's import graph follows the data flow (docs/architecture.md).

Two checks on the graph grimp builds, where an import inside a function counts
like any other (a lazy import still couples two modules):

- import-linter's contracts in pyproject.toml, as ``lint-imports`` runs them: live
  code (all but ``sim/``, ``evaluation/`` and ``cli/``) imports neither the simulator
  nor the evaluation harnesses, imports point down the layers, and sibling packages
  import each other one way only;
- no cycle between any two modules (strongly connected components of the graph).

Both fail naming the chain of imports, with line numbers.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "safecity"
#: Where the simulator and the evaluation harnesses may be imported: themselves and the CLI
#: (``safecity simulate``, the evaluation commands). Every other top-level package is live code.
NOT_LIVE = {"safecity.sim", "safecity.evaluation", "safecity.cli"}

#: Violations that other parts of issue 11 remove, excused until they land, as
#: ``(importer, imported): what removes it``. Any other violation fails. Empty this at
#: merge: an entry whose import is gone fails test_known_violations_are_still_there.
KNOWN: dict[tuple[str, str], str] = {
    # (importer, imported): why it is tolerated for now; empty: every contract holds as written
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    import safecity

    assert Path(safecity.__file__).parent == ROOT / PACKAGE, "the graph would be another checkout's"
    return grimp.build_graph(PACKAGE, cache_dir=None)


@pytest.fixture(scope="module")
def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _top_level(graph) -> set[str]:
    return set(graph.find_children(PACKAGE))


def _line(graph, importer: str, imported: str) -> str:
    lines = sorted(d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported))
    return f"{importer} -> {imported} (l.{', '.join(map(str, lines))})"


def test_known_violations_are_still_there(graph):
    gone = [f"{a} -> {b}" for a, b in KNOWN
            if not {a, b} <= graph.modules or not graph.direct_import_exists(importer=a, imported=b)]
    assert not gone, "no longer imported: remove from KNOWN in tests/test_layout.py:\n" + "\n".join(gone)


def test_no_import_cycle(graph):
    edges = nx.DiGraph()
    for module in graph.modules:
        edges.add_node(module)
        edges.add_edges_from((module, imported) for imported in graph.find_modules_directly_imported_by(module)
                             if (module, imported) not in KNOWN)
    cycles = []
    for component in nx.strongly_connected_components(edges):
        if len(component) > 1:
            cycle = nx.find_cycle(edges.subgraph(component))
            cycles.append("\n".join(_line(graph, a, b) for a, b in cycle))
    assert not cycles, "import cycles:\n\n" + "\n\n".join(cycles)


def test_import_contracts_hold(contracts, tmp_path):
    """``lint-imports`` on pyproject.toml's contracts, with only the KNOWN imports ignored."""
    ignore = [f"{a} -> {b}" for a, b in sorted(KNOWN)]
    lines = ["[tool.importlinter]", f"root_package = {json.dumps(PACKAGE)}"]
    for contract in contracts:
        lines.append("\n[[tool.importlinter.contracts]]")
        options = {**contract, "ignore_imports": contract.get("ignore_imports", []) + ignore,
                   "unmatched_ignore_imports_alerting": "none"}  # a stale KNOWN: the test above
        lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    config = tmp_path / "importlinter.toml"
    config.write_text("\n".join(lines) + "\n")
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                          str(config), "--no-cache", "--no-logo"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in run.stdout, run.stdout


def test_contracts_name_every_package(graph, contracts):
    """A new top-level package is live code, and has a place in the layers."""
    by_id = {c["id"]: c for c in contracts}
    assert set(by_id["live-code"]["source_modules"]) == _top_level(graph) - NOT_LIVE
    assert set(by_id["live-code"]["forbidden_modules"]) == NOT_LIVE - {"safecity.cli"}
    layered = [m.strip() for layer in by_id["layers"]["layers"] for m in layer.replace(":", "|").split("|")]
    assert sorted(layered) == sorted(_top_level(graph))
    assert by_id["no-cycles"]["ancestors"] == [PACKAGE]
