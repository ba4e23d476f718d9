"""The project installs as documented: environment.yml and pyproject.toml agree."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _split(spec: str) -> tuple[str, str]:
    name, constraint = re.match(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)", spec).groups()
    return name.lower().replace("_", "-"), constraint.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = [d for d in env if isinstance(d, str)]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    listed = dict(_split(s) for s in conda + pip if not s.startswith("-e"))
    del listed["python"], listed["pip"]
    assert listed == wanted


def test_layout_is_complete():
    for path in ["safecity", "notebooks", "dashboards", "tests", "bench", "catalog.yml",
                 "environment.yml", "pyproject.toml", "README.md", ".ci/run"]:
        assert (ROOT / path).exists(), path


def test_opencv_is_the_headless_build_below_5():
    import cv2

    assert int(cv2.__version__.split(".")[0]) == 4
    assert cv2.HOGDescriptor_getDefaultPeopleDetector().size > 0  # missing from OpenCV 5 wheels


def test_every_cli_command_has_help():
    from click import Group

    from safecity.cli import main

    def walk(cmd, path):
        yield path
        if isinstance(cmd, Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])

    for path in walk(main, []):
        out = subprocess.run([sys.executable, "-m", "safecity.cli", *path, "--help"],
                             capture_output=True, text=True, check=True).stdout
        assert "Usage:" in out and "--help" in out, path


def test_the_package_looks_for_the_shared_data_where_the_tests_do(monkeypatch):
    """Without $SAFECITY_SHARED_DATA, the package finds ``../shared/data`` beside the repository
    from wherever its modules sit (a module moved one folder deeper once lost it silently)."""
    from conftest import shared_data

    from safecity.data import catalog, geo

    zones = shared_data("city/marseille")  # skips (fails in CI) when the real data is absent
    root = zones.parents[1]
    monkeypatch.delenv("SAFECITY_SHARED_DATA", raising=False)
    # resolved on both sides: ../shared may be a symbolic link to the data
    assert geo.shared_data_dir().resolve() == root.resolve()
    assert catalog.shared_path("city/marseille").resolve() == root.resolve() / "city" / "marseille"
