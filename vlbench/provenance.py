"""Where a result came from: versions, commit, machine."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import platform
import subprocess
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from vlbench.version import __version__

ALWAYS_LISTED = {"torch": "torch", "numpy": "numpy", "pillow": "PIL"}  # distribution: module, for every matcher
SCORING_PACKAGES = ("vlbench", "vlbench.matchers", "vlbench.tasks")  # their folders hold every built-in's code
NOT_SCORING = ("stats.py", "suites.py", "cluster.py", "gpu_shares.py", "testing.py")  # vlbench's modules no scoring code imports (tested): board statistics, suite scheduling, the plugin conformance kit


def session_record(prepared, matcher, processes: int, timings: dict[str, Any]) -> dict[str, Any]:
    """One invocation's line of `sessions.jsonl`: the code, machine and data root that scored
    `timings["examples_scored"]` examples (and trained, if it has `fit_seconds`), and its
    `timings`. A resumed run lists every session, so its provenance always describes what
    produced its scores, and how long each part took, after a later invocation had nothing to do."""
    from vlbench.runtime import describe_device

    commit, dirty = checkout_state()
    config = prepared.config
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "vlbench_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": describe_device(prepared.device),
        "libraries": scoring_libraries(matcher),
        "data_root": str(prepared.task.data_root.absolute()) if prepared.task.data_root else None,
        "batch_size": config.batch_size,
        "processes": processes,
        "plugins": plugin_sources(config.matcher, config.task),
        "examples_scored": timings["examples_scored"],
        "trained": timings["fit_seconds"] is not None,
        "timings": {key: timings[key] for key in ("fit_seconds", "score_seconds", "pairs_per_second", "work")},
    }


def plugin_sources(matcher: str, task: str) -> dict[str, dict[str, Any]]:
    """Where the code of a run's plugin matcher and task came from (built-ins: vlbench's own
    `git_commit`), so provenance covers a plugin edited without a version bump."""
    from vlbench import registry

    entries = {"matcher": registry.matchers.entry(matcher), "task": registry.tasks.entry(task)}
    return {kind: install_source(entry.distribution) for kind, entry in entries.items() if entry.origin != registry.BUILT_IN and entry.distribution}


def install_source(distribution: str) -> dict[str, Any]:
    """How `distribution` was installed: its version, the URL pip installed it from (none for an
    index), editable or not, the VCS commit, and for an editable install from a git checkout that
    checkout's commit and whether it has uncommitted changes."""
    try:
        found = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return {}
    source: dict[str, Any] = {"distribution": distribution, "version": found.version}
    try:
        direct = json.loads(found.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    if not isinstance(direct, dict):
        return source
    source.update(url=direct.get("url"), editable=bool((direct.get("dir_info") or {}).get("editable")))
    if isinstance(direct.get("vcs_info"), dict):
        source["vcs_commit"] = direct["vcs_info"].get("commit_id")
    elif source["editable"] and str(direct.get("url", "")).startswith("file://"):  # a copy installed from a folder may differ from it now
        source["git_commit"], source["git_dirty"] = git_state(Path(unquote(urlparse(direct["url"]).path)))
    return source


def scoring_libraries(matcher) -> dict[str, str | None]:
    """The versions of the libraries a matcher's scores depend on (pixels decoded by Pillow, and
    its own: open_clip, diffusers, …), by normalised distribution name (`open-clip-torch`); part of
    a run's identity. A name that is no installed distribution is refused: its version would be
    recorded as nothing, and a change of it never seen."""
    import re

    from vlbench.errors import VlbenchError

    listed = dict.fromkeys(re.sub(r"[-_.]+", "-", name).lower() for name in matcher.library_versions())
    versions = {name: library_version(name) or _module_version(module) for name, module in ALWAYS_LISTED.items()}  # Pillow-SIMD, say, installs PIL under another name
    versions.update({name: library_version(name) for name in listed if name not in versions})
    unknown = [name for name in listed if versions[name] is None]
    if unknown:
        raise VlbenchError(f"matcher '{matcher.name}': library_versions() names '{unknown[0]}', which is no installed distribution; name each as pip knows it (pip show NAME)")
    return versions


def _module_version(module: str) -> str | None:
    import importlib

    return getattr(importlib.import_module(module), "__version__", None)


def library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def checkout_state() -> tuple[str | None, bool | None]:
    """`git_state` of the source tree this vlbench runs from, whose Markdown and PNG files
    (documentation, boards and their plots) do not count as changes: a board drawn after another
    board was written is not drawn by other code. Found from this file, not from
    `vlbench.__file__`, which is None where a folder named vlbench in the working directory
    shadows the package."""
    return git_state(Path(__file__).resolve().parent.parent, not_code=(".md", ".png"))


def git_state(folder: Path, not_code: tuple[str, ...] = ()) -> tuple[str | None, bool | None]:
    """(commit, whether `folder`'s tracked files have uncommitted changes, other than files whose
    names end in `not_code`) of the git checkout that tracks files in `folder`; (None, None) if
    none does: not a checkout, or an installed copy in a checkout's ignored folder (a virtual
    environment inside a repository)."""

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=folder, capture_output=True, text=True, check=True).stdout

    try:
        if not git("ls-files", "--", ".").strip():
            return None, None
        return git("rev-parse", "HEAD").strip(), any(not path.lower().endswith(not_code) for path in _changed_paths(git("status", "--porcelain", "-z", "--untracked-files=no", "--", ".")))
    except (OSError, subprocess.CalledProcessError):
        return None, None


def _changed_paths(status: str) -> list[str]:
    """The paths `git status --porcelain -z` lists: both names of a rename or copy."""
    fields = iter(status.split("\0"))
    paths = []
    for entry in fields:
        if entry:
            paths.append(entry[3:])
            if "R" in entry[:2] or "C" in entry[:2]:
                paths.append(next(fields, ""))
    return paths


@cache
def source_files_sha256() -> dict[str, str]:
    """The sha256 of every Python file of the code that computes scores, by path: `vlbench`'s own
    modules (not its `cli` or `leaderboard`, which parse arguments and render boards, nor
    `NOT_SCORING`) and the
    `vlbench.matchers` and `vlbench.tasks` packages, e.g. `vlbench/runner.py`,
    `vlbench.matchers/clip/zero_shot.py`. Part of a run's identity, so scores stored by other code
    (an edit, another commit) are not resumed or averaged with these; the same for an editable
    install and a wheel of one commit."""
    folders = {package: Path(importlib.util.find_spec(package).submodule_search_locations[0]) for package in SCORING_PACKAGES}
    return scoring_sources(folders)


def scoring_sources(folders: dict[str, Path]) -> dict[str, str]:
    """`source_files_sha256` of the packages in `folders` (`SCORING_PACKAGES` to their folders)."""
    files: dict[str, str] = {}
    for package, folder in folders.items():
        paths = folder.glob("*.py") if package == "vlbench" else folder.rglob("*.py")  # vlbench's subpackages: cli, and in a wheel leaderboard, matchers, tasks
        for path in paths:
            if package != "vlbench" or path.name not in NOT_SCORING:
                files[f"{package}/{path.relative_to(folder).as_posix()}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(files.items()))


def run_code_sha256(*components: type) -> dict[str, str]:
    """What `identity.json` records as the code of a run of `components` (its matcher and task
    classes): `source_files_sha256` and `component_sources`."""
    return {**source_files_sha256(), **component_sources(*components)}


def component_sources(*components: type) -> dict[str, str]:
    """`source_files_sha256` for the code of plugins: the sha256 of every Python file of the
    package (or module) that defines each of `components` (a matcher or task class) outside
    vlbench, by `<package>/<path>`, e.g. `mypkg/matchers.py`: its first regular package (inside a
    namespace package such as `acme.vlplugin`, that one), so a plugin's edit changes a run's
    identity as an edit of vlbench does. A class defined in a script or notebook (`__main__`) is
    hashed by its own source and what it names from the script (`_script_source`), not the whole
    script's."""
    import sys

    files: dict[str, str] = {}
    for component in components:
        parts = component.__module__.split(".")
        name = next((".".join(parts[:end]) for end in range(1, len(parts) + 1) if getattr(sys.modules.get(".".join(parts[:end])), "__file__", None)), component.__module__)
        module = sys.modules.get(name)
        if name == "vlbench" or module is None:  # vlbench's own: its first regular package is vlbench
            continue
        if name == "__main__" or not getattr(module, "__file__", None):
            source = _script_source(component, module)
            if source is None:  # typed into an interpreter: no source to hash
                continue
            files[f"{name}:{component.__qualname__}"] = hashlib.sha256(source.encode()).hexdigest()
        elif hasattr(module, "__path__"):
            files.update(scoring_sources({name: Path(module.__path__[0])}))
        else:
            files[f"{name}.py"] = hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()
    return dict(sorted(files.items()))


def _script_source(component: type, module) -> str | None:
    """What a class defined in a script or notebook (`__main__`) computes with, as source text:
    the top-level statement defining it and, recursively, those defining the names it uses (its
    bases and decorators, the script's helpers and classes, constants: `SCALE = 2.0`), read from
    the script's file, not from live objects; not the script's other lines (its seeds, say). The
    class's own source where the script has no file (a notebook); None where neither can be read
    (typed into an interpreter)."""
    import inspect

    try:
        source = Path(module.__file__).read_text() if getattr(module, "__file__", None) else inspect.getsource(component)
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, UnicodeDecodeError):
        return None
    defining: dict[str, list[ast.stmt]] = {}
    for statement in tree.body:
        for name in _defined_names(statement):
            defining.setdefault(name, []).append(statement)
    lines, included, wanted = source.splitlines(), {}, [component.__qualname__.split(".")[0]]  # a nested class: the statement holding it
    while wanted:
        for statement in defining.get(wanted.pop(), []):
            if id(statement) not in included:
                included[id(statement)] = statement
                wanted += [node.id for node in ast.walk(statement) if isinstance(node, ast.Name)]
    if not included:
        return None
    return "\n".join("\n".join(lines[_first_line(statement) - 1 : statement.end_lineno]) for statement in sorted(included.values(), key=_first_line))


def _defined_names(statement: ast.stmt) -> list[str]:
    """The top-level names a statement of a script binds (imports aside: libraries are versioned)."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target] if isinstance(statement, (ast.AnnAssign, ast.AugAssign)) else []
    return [node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)]


def _first_line(statement: ast.stmt) -> int:
    """A statement's first line, its decorators included."""
    return min([statement.lineno, *(decorator.lineno for decorator in getattr(statement, "decorator_list", []))])


def sources_sha256(files: dict[str, str]) -> str:
    """One hash of `source_files_sha256`'s files and hashes."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
