"""Where a result came from: versions, commit, machine."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import vlbench

ALWAYS_LISTED = ("torch", "numpy", "pillow")


def provenance(device_description: str, libraries: list[str]) -> dict[str, Any]:
    """The provenance block of `results.json`."""
    commit, dirty = git_state(Path(vlbench.__file__).resolve().parent.parent)
    return {
        "vlbench_version": vlbench.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_description,
        "libraries": {name: library_version(name) for name in (*ALWAYS_LISTED, *libraries)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_state(source: Path) -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of the checkout vlbench runs from; (None, None) if none."""
    if not (source / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(status.strip())
