"""A separate package that declares a `vlbench.matchers` entry point is listed and runs."""

import json
import os
import subprocess
import sys

import pytest

from conftest import TESTS

EXAMPLE = TESTS.parent / "examples" / "vlbench-mean-color"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The example plugin, built and installed by pip into its own site directory."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(EXAMPLE)],
        check=True, capture_output=True, text=True,
    )
    return site


def vlbench_with(site, *args, cwd):
    environment = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "vlbench", *args], cwd=cwd, env=environment, capture_output=True, text=True, check=True)


def test_installed_plugin_is_listed_with_its_distribution(plugin_site, tmp_path):
    listing = vlbench_with(plugin_site, "list", "matchers", cwd=tmp_path).stdout
    row = next(line for line in listing.splitlines() if "mean-color" in line)
    assert "vlbench-mean-color" in row and "Example plugin: image mean colour" in row
    assert "built-in" in next(line for line in listing.splitlines() if " random " in line)


def test_installed_plugin_runs_and_trains(plugin_site, tmp_path):
    vlbench_with(plugin_site, "run", "--task", "colors", "--matcher", "mean-color", "--shots", "10%", cwd=tmp_path)
    record = json.loads(next(tmp_path.rglob("results.json")).read_text())
    assert record["matcher"]["name"] == "mean-color" and record["matcher"]["trained"]
    assert record["metrics"]["accuracy"] >= 0.6


def test_readme_shows_the_plugin_exactly(plugin_site):
    readme = (TESTS.parent / "README.md").read_text()
    for name in ("pyproject.toml", "vlbench_mean_color.py"):
        assert (EXAMPLE / name).read_text().strip() in readme, f"README's copy of {name} is out of date"
