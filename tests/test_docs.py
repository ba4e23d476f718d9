"""The documentation stays true: the site builds without a warning, and the README's
layout table and command list match the package as it is."""
import re
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from safecity.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _section(title: str) -> list[str]:
    """The lines of the README's '## title' section."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def _layout_paths() -> list[str]:
    """First cell of each row of the README's layout table, without backticks."""
    rows = [line for line in _section("Layout") if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    return [page for value in nav.values() for page in _nav_pages(value)]


def _commands(args: list[str]) -> list[str]:
    """Command names listed by `safecity ARGS --help`."""
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    listing = result.output.split("Commands:\n", 1)
    if len(listing) == 1:
        return []
    return [line.split()[0] for line in listing[1].splitlines() if line.startswith("  ") and line.split()]


def _leaf_commands(prefix: list[str] | None = None) -> list[str]:
    """Every runnable command path under `safecity PREFIX`, e.g. 'forecast backtest'."""
    prefix = prefix or []
    paths = []
    for name in _commands(prefix):
        sub = _commands([*prefix, name])
        paths.extend(_leaf_commands([*prefix, name]) if sub else [" ".join([*prefix, name])])
    return paths


def test_site_builds_strict_without_warnings(tmp_path):
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                          str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                         capture_output=True, text=True, cwd=ROOT)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "WARNING" not in log, log
    assert (site / "index.html").exists() and (site / "evaluation" / "index.html").exists()
    # like the dashboards, the site loads nothing from outside (no CDN script or stylesheet)
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", html), page


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(_nav_pages(config["nav"])) == pages


def test_readme_is_under_200_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 200


def test_readme_links_to_docs_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text(encoding="utf-8"))
    assert links
    for link in links:
        assert (ROOT / link).is_file(), link


def test_readme_layout_lists_every_package_folder():
    listed = _layout_paths()
    assert len(listed) == len(set(listed)), "one line per folder"
    for path in listed:
        assert (ROOT / path).exists(), f"the layout table lists {path}, which does not exist"
    folders = {f"safecity/{p.name}/" for p in (ROOT / "safecity").iterdir()
               if p.is_dir() and not p.name.startswith(("_", "."))}
    assert {p for p in listed if re.fullmatch(r"safecity/[^/]+/", p)} == folders


def test_readme_layout_lists_every_top_level_folder():
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT,
                             check=True).stdout.splitlines()
    top = {f"{path.split('/')[0]}/" for path in tracked if "/" in path and not path.startswith(".")}
    assert top <= set(_layout_paths())


def test_readme_command_list_names_every_command():
    lines = [line for line in _section("Command line") if line.startswith("- `safecity ")]
    listed = [re.match(r"- `safecity ([^`]+)`", line).group(1) for line in lines]
    leaves = _leaf_commands()
    assert set(_commands([])) <= {path.split()[0] for path in leaves}  # every top-level command
    assert "serve" in leaves and "users add" in leaves
    assert sorted(listed) == sorted(leaves)
