import re
import subprocess
import sys
from pathlib import Path

import pytest

from vlbench import registry
from vlbench.errors import VlbenchError
from vlbench.registry import Registry
from vlbench.types import Matcher


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
        declared("random", "vlbench.matchers.random:RandomMatcher", "first-plugin"),
        declared("random", "vlbench.matchers.random:RandomMatcher", "first-plugin"),  # seen twice
        declared("color-words", "vlbench.matchers.color_words:ColorWordsMatcher", "built-in"),
        declared("color-words", "shadow_plugin:ColorWords", "shadow-plugin"),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: points)
    matchers = Registry("matcher", "vlbench.matchers")
    with pytest.raises(VlbenchError, match="matcher 'twin' is declared by both first-plugin and second-plugin; uninstall one of them"):
        matchers.get("twin")
    assert matchers.get("random").name == "random"
    with pytest.raises(VlbenchError, match=r"matcher 'color-words' is declared by both built-in and shadow-plugin; uninstall shadow-plugin \(pip uninstall <distribution>\)"):
        matchers.get("color-words")
    monkeypatch.setattr(registry_module, "matchers", matchers)
    code, listing, _ = vlbench_here("list", "matchers", cwd=Path.cwd())
    (twin,) = [line for line in listing.splitlines() if "twin" in line]
    assert code == 0 and "first-plugin and second-plugin" in twin and "conflict: declared by both, so runs refuse the name; uninstall one of them." in twin
    (shadowed,) = [line for line in listing.splitlines() if "color-words" in line]
    assert "rename the plugin's entry point or uninstall the plugin." in shadowed


class NamedOtherwise(Matcher):
    name = "something-else"


class Nameless(Matcher):
    pass


@pytest.mark.parametrize(
    ("target", "problem", "summary_in_source"),
    [
        ("vlbench.identity:RESTART_HINT", "is str, not a subclass of vlbench.types.Matcher; point the entry point at one", False),
        ("vlbench.tasks.colors:ColorsTask", "is class ColorsTask, not a subclass of vlbench.types.Matcher", True),
        ("test_registry:NamedOtherwise", "sets `name = 'something-else'`; a class's `name` must be the name it is registered under", False),
        ("test_registry:Nameless", "sets no `name`", False),
    ],
    ids=["not-a-class", "a-task", "another-name", "no-name"],
)
def test_an_entry_loading_something_else_than_a_matcher_of_its_name_is_refused_and_the_others_still_list(target, problem, summary_in_source, vlbench_here, monkeypatch):
    from vlbench import registry as registry_module

    matchers = Registry("matcher", "vlbench.matchers")
    matchers.register("odd", target, origin="odd-plugin")
    with pytest.raises(VlbenchError, match=re.escape(f"matcher 'odd' (from odd-plugin, {target}) {problem}")):
        matchers.get("odd")
    monkeypatch.setattr(registry_module, "matchers", matchers)
    code, listing, _ = vlbench_here("list", "matchers", cwd=Path.cwd())
    (odd,) = [line for line in listing.splitlines() if line.startswith("│ odd ")]
    # A summary written in the source is listed without importing the entry (listing stays fast).
    assert code == 0 and "random" in listing and ("broken" in odd) != summary_in_source, listing
