"""The demo dashboard under a real ``panel serve``, fetched over HTTP and rendered in Chromium."""
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, chromium_page, free_port, panel_serve, stop, wait_http

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("city") / "data"
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", str(out),
                    "--days", "3", "--no-clips"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def served(city_dir):
    with panel_serve("operations", {"SAFECITY_DATA_DIR": str(city_dir)}) as page:
        yield page


def test_panel_serve_answers(served):
    _, html = served
    assert "safecity" in html and "Bokeh" in html


@pytest.mark.browser
def test_dashboard_renders_offline_in_chromium(served):
    url, _ = served
    with chromium_page((1400, 1000)) as (page, requests, failures):
        page.goto(url)
        page.wait_for_selector("canvas", timeout=60_000)
        page.wait_for_timeout(3000)  # let bokeh lay out and draw every plot
        n_canvas = page.evaluate(
            "() => { const all = []; const walk = r => { r.querySelectorAll('*').forEach(e => {"
            " if (e.tagName === 'CANVAS') all.push(e); if (e.shadowRoot) walk(e.shadowRoot); }); };"
            " walk(document); return all.filter(c => c.width > 100 && c.height > 100).length; }")
        page.screenshot(path=str(ARTIFACTS / "operations.png"), full_page=True)
    hosts = {urlparse(u).hostname for u in requests if u.startswith("http")}
    assert hosts <= {"127.0.0.1", "localhost"}, f"requests left the machine: {hosts}"
    assert not failures, failures
    assert n_canvas >= 2, "the map and the heatmap should each draw a canvas"


@pytest.mark.slow
def test_readme_demo_command_in_a_fresh_copy(tmp_path):
    """``bash dev.sh demo`` in a fresh copy of the repository creates everything and serves."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path / "safecity"
    for name in files:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "SAFECITY_DATA_DIR")}
    env.update(PORT=str(port), PATH=f"{Path(sys.base_prefix) / 'bin'}:{env['PATH']}")
    proc = subprocess.Popen(["bash", "dev.sh", "demo", "--address", "127.0.0.1",
                             "--allow-websocket-origin", f"127.0.0.1:{port}"],
                            cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        html = wait_http(f"http://127.0.0.1:{port}/operations", proc, timeout=480)
    finally:
        stop(proc)
    assert "safecity" in html
    assert (copy / ".venv" / "bin" / "safecity").exists()
    assert (copy / "demo-data" / "history" / "observations").is_dir()
