import subprocess
import sys
from pathlib import Path

import pytest

from vlbench import registry
from vlbench.errors import VlbenchError
from vlbench.registry import Registry


def test_built_ins_come_from_entry_points():
    assert {"random", "color-words"} <= set(registry.matchers.names())
    assert registry.matchers.entry("random").origin == "built-in"
    assert registry.matchers.entry("random").target == "vlbench.matchers.random:RandomMatcher"
    assert registry.tasks.get("colors").name == "colors"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(VlbenchError, match=r"unknown matcher 'randon'. Did you mean 'random'\? Known matchers: .*color-words.*random"):
        registry.matchers.get("randon")


def test_a_broken_entry_is_named_and_the_others_still_load():
    matchers = Registry("matcher", "vlbench.matchers")
    matchers.register("broken", "no_such_module_anywhere:Thing", origin="broken-plugin")
    with pytest.raises(VlbenchError, match=r"matcher 'broken' \(from broken-plugin, no_such_module_anywhere:Thing\) failed to load: ModuleNotFoundError"):
        matchers.get("broken")
    assert matchers.get("random").name == "random"


@pytest.mark.parametrize("args", [["--help"], ["list", "matchers"], ["list", "tasks"]])
def test_cli_start_and_listing_import_no_heavy_library(args):
    code = (
        "import sys\n"
        f"sys.argv = ['vlbench', *{args!r}]\n"
        "from vlbench.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [name for name in ('torch', 'diffusers', 'open_clip', 'transformers', 'numpy') if name in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**__import__("os").environ, "COLUMNS": "200"}).stdout
    assert "HEAVY []" in output
    if args[0] == "list":
        assert "Discriminative Stable Diffusion" in output or "ComVG" in output


def test_two_distributions_declaring_one_name_is_an_error(monkeypatch, vlbench_here):
    from types import SimpleNamespace

    from vlbench import registry as registry_module

    def declared(name, value, distribution):
        """What the registry reads of an importlib.metadata.EntryPoint."""
        return SimpleNamespace(name=name, value=value, dist=SimpleNamespace(name=distribution))

    points = [
        declared("twin", "first_plugin:Twin", "first-plugin"),
        declared("twin", "second_plugin:Twin", "second-plugin"),
        declared("solo", "vlbench.matchers.random:RandomMatcher", "first-plugin"),
        declared("solo", "vlbench.matchers.random:RandomMatcher", "first-plugin"),  # seen twice
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: points)
    matchers = Registry("matcher", "vlbench.matchers")
    with pytest.raises(VlbenchError, match="matcher 'twin' is declared by both first-plugin and second-plugin; uninstall one of them"):
        matchers.get("twin")
    assert matchers.get("solo").name == "random"
    monkeypatch.setattr(registry_module, "matchers", matchers)
    code, listing, _ = vlbench_here("list", "matchers", cwd=Path.cwd())
    (twin,) = [line for line in listing.splitlines() if "twin" in line]
    assert code == 0 and "first-plugin and second-plugin" in twin and "conflict: declared by both; uninstall one of them" in twin
