"""Every notebook is a Jupytext pair in sync, runs top to bottom in a real Jupyter kernel and ends in a
servable Panel view."""
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PANEL_OUTPUT = "application/vnd.holoviews_exec.v0+json"  # what a Panel object renders to in Jupyter


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # The last cell is what `panel serve notebooks/NAME.ipynb` shows: a Panel view, rendered.
    last = code_cells(nb)[-1]
    assert last.source.rstrip().endswith(".servable()"), f"{path.name}: the last cell is not servable"
    assert any(PANEL_OUTPUT in o.get("data", {}) for o in last.outputs), \
        f"{path.name}: the last cell rendered no Panel view"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    """Outputs are produced by running a notebook, never stored: a diff shows only code."""
    nb = nbformat.read(path, as_version=4)
    assert not [c for c in code_cells(nb) if c.outputs or c.execution_count], path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_a_jupytext_pair_in_sync(path):
    """Each notebook has its percent-format .py beside it, with the same cells: the .py is
    what a diff and a linter read, the .ipynb what Jupyter opens (`jupytext --sync`)."""
    import jupytext

    text = path.with_suffix(".py")
    assert text.exists(), f"{path.name} has no {text.name}: run jupytext --sync notebooks/{path.name}"
    paired = jupytext.read(text)
    committed = nbformat.read(path, as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == \
        [(c.cell_type, c.source) for c in paired.cells], \
        f"{path.name} and {text.name} differ: run jupytext --sync notebooks/{path.name}"


def test_every_notebook_text_has_its_notebook_and_the_pairing_is_declared():
    import tomllib

    config = tomllib.loads((ROOT / "notebooks" / "jupytext.toml").read_text())
    assert config["formats"] == "ipynb,py:percent"
    orphans = [p.name for p in (ROOT / "notebooks").glob("*.py") if not p.with_suffix(".ipynb").exists()]
    assert not orphans, f"no .ipynb for {orphans}: run jupytext --sync on them"


def wait_port(port: int, proc, timeout: float = 120) -> None:
    """Wait for the server to listen; its page is not polled, since every request to a
    notebook app runs the whole notebook (longer than a polling timeout)."""
    import socket
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"port {port} did not open in {timeout} s")


@pytest.mark.browser
def test_catalog_tour_notebook_is_served_and_renders_in_chromium():
    """`panel serve notebooks/catalog_tour.ipynb` serves the tour; Chromium shows it with no
    failed request and no request leaving the machine."""
    from conftest import chromium_page, free_port, stop
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(ROOT / "notebooks" / "catalog_tour.ipynb"),
         "--port", str(port), "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/catalog_tour"
        wait_port(port, proc)
        with chromium_page((1400, 1000)) as (page, requests, failures):
            page.goto(url, timeout=180_000)
            page.get_by_text("safecity data catalog").first.wait_for(timeout=120_000)
            page.get_by_text("demo_observations").first.wait_for(timeout=30_000)
            try:  # the first tab's plot: wait for its canvas rather than for a fixed time
                page.locator("canvas").first.wait_for(state="attached", timeout=60_000)
            except PlaywrightTimeout:
                pass  # reported by the assertion below, with the screenshot
            page.screenshot(path=str(ROOT / "test-artifacts" / "notebook_catalog_tour.png"), full_page=True)
            canvases = page.locator("canvas").count()
    finally:
        stop(proc)
    assert canvases > 0, "the first tab's plot did not render"
    hosts = {urlparse(u).hostname for u in requests if u.startswith("http")}
    assert hosts <= {"127.0.0.1", "localhost"}, f"requests left the machine: {hosts}"
    assert not failures, failures
