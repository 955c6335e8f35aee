"""Lazy registries of tasks and matchers, fed by entry points.

Built-ins and third-party plugins are found the same way: through the entry-point groups
`vlbench.tasks` and `vlbench.matchers`. Nothing is imported until an entry is asked for, so
`vlbench --help` stays fast and one broken plugin does not take the others down; `summary` reads
an entry's one-line summary from its source without importing it (no torch to list matchers).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.suggest import unknown_name_message

BUILT_IN = "built-in"


@dataclass
class Entry:
    """One registered name: where it points, who provides it (the distribution and its version;
    "built-in" is vlbench's own), and (once loaded) the class."""

    name: str
    target: str
    origin: str
    distribution: str | None = None
    version: str | None = None
    loaded: Any = None
    rivals: tuple[str, ...] = ()

    def load(self, kind: str) -> Any:
        if self.rivals:
            origins = " and ".join((self.origin, *self.rivals))
            plugins = [origin for origin in (self.origin, *self.rivals) if origin != BUILT_IN]
            remedy = f"uninstall {' or '.join(plugins)}" if len(plugins) < len(self.rivals) + 1 else "uninstall one of them"
            raise VlbenchError(f"{kind} '{self.name}' is declared by both {origins}; {remedy} (pip uninstall <distribution>)")
        if self.loaded is None:
            module_name, _, attribute = self.target.partition(":")
            try:
                obj = importlib.import_module(module_name)
                for part in attribute.split("."):
                    obj = getattr(obj, part)
            except Exception as error:  # a plugin can fail in any way; name it and carry on
                raise VlbenchError(
                    f"{kind} '{self.name}' (from {self.origin}, {self.target}) failed to load: "
                    f"{type(error).__name__}: {error}"
                ) from error
            _check_loaded(obj, kind, self)
            self.loaded = obj
        return self.loaded

    def summary(self, kind: str) -> str:
        """The class's `summary`, read from its source when it is a plain string there (no import),
        else from the loaded class."""
        if self.loaded is None:
            found = _summary_in_source(self.target)
            if found is not None:
                return found
        return self.load(kind).summary


def _check_loaded(obj: Any, kind: str, entry: Entry) -> None:
    """Refuse an entry that loads something other than a Matcher (Task) subclass named as registered."""
    from vlbench.types import Matcher, Task

    base = {"matcher": Matcher, "task": Task}[kind]
    where = f"{kind} '{entry.name}' (from {entry.origin}, {entry.target})"
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise VlbenchError(f"{where} is {type(obj).__name__ if not isinstance(obj, type) else f'class {obj.__name__}'}, not a subclass of vlbench.types.{base.__name__}; point the entry point at one")
    declared = getattr(obj, "name", None)
    if declared != entry.name:
        said = "sets no `name`" if declared is None else f"sets `name = {declared!r}`"
        raise VlbenchError(f"{where} {said}; a class's `name` must be the name it is registered under, which runs record and errors use")


def _summary_in_source(target: str) -> str | None:
    module_name, _, attribute = target.partition(":")
    try:
        spec = importlib.util.find_spec(module_name)
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin and spec.origin.endswith(".py") else None
    except (ImportError, ValueError, OSError):
        return None
    if source is None:
        return None
    try:
        body = ast.parse(source).body
    except SyntaxError:  # importing it fails too, and says so
        return None
    for node in body:
        if isinstance(node, ast.ClassDef) and node.name == attribute:
            for statement in node.body:
                target_node = statement.targets[0] if isinstance(statement, ast.Assign) and len(statement.targets) == 1 else getattr(statement, "target", None)
                value = getattr(statement, "value", None)
                if isinstance(target_node, ast.Name) and target_node.id == "summary" and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    return value.value
    return None


class Registry:
    """Names → classes for one entry-point group, materialised on first use."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] | None = None

    def _discover(self) -> dict[str, Entry]:
        if self._entries is None:
            self._entries = {}
            for entry_point in entry_points(group=self.group):
                entry = _entry_from(entry_point)
                known = self._entries.setdefault(entry.name, entry)
                # The same distribution can be seen twice (a path listed twice); another one
                # declaring the same name is a conflict, never silently resolved.
                if known.origin != entry.origin and entry.origin not in known.rivals:
                    known.rivals += (entry.origin,)
        return self._entries

    def register(self, name: str, target: Any, origin: str = "runtime", version: str | None = None) -> None:
        """Add `name` at run time; `target` is a class or a ``"module:attr"`` string."""
        if isinstance(target, str):
            self._discover()[name] = Entry(name, target, origin, origin, version)
        else:
            self._discover()[name] = Entry(name, f"{target.__module__}:{target.__qualname__}", origin, origin, version, target)

    def unregister(self, name: str) -> None:
        self._discover().pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._discover())

    def entry(self, name: str) -> Entry:
        entries = self._discover()
        if name not in entries:
            raise VlbenchError(unknown_name_message(self.kind, name, list(entries)))
        return entries[name]

    def get(self, name: str) -> Any:
        """The class registered as `name`; unknown names get a "did you mean" error."""
        return self.entry(name).load(self.kind)


def _entry_from(entry_point: EntryPoint) -> Entry:
    distribution = entry_point.dist.name if entry_point.dist is not None else "unknown"
    version = getattr(entry_point.dist, "version", None) if entry_point.dist is not None else None
    origin = BUILT_IN if distribution == "vlbench" else distribution
    return Entry(entry_point.name, entry_point.value, origin, distribution, version)


tasks = Registry("task", "vlbench.tasks")
matchers = Registry("matcher", "vlbench.matchers")
