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


def session_record(prepared, matcher, processes: int, timings: dict[str, Any]) -> dict[str, Any]:
    """One invocation's line of `sessions.jsonl`: the code, machine and data root that scored
    `timings["examples_scored"]` examples (and trained, if it has `fit_seconds`), and its
    `timings`. A resumed run lists every session, so its provenance always describes what
    produced its scores, and how long each part took, after a later invocation had nothing to do."""
    from vlbench.runtime import describe_device

    commit, dirty = git_state(Path(vlbench.__file__).resolve().parent.parent)
    config = prepared.config
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "vlbench_version": vlbench.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": describe_device(prepared.device),
        "libraries": scoring_libraries(matcher),
        "data_root": str(prepared.task.data_root.absolute()) if prepared.task.data_root else None,
        "batch_size": config.batch_size,
        "processes": processes,
        "examples_scored": timings["examples_scored"],
        "trained": timings["fit_seconds"] is not None,
        "timings": {key: timings[key] for key in ("fit_seconds", "score_seconds", "pairs_per_second", "work")},
    }


def scoring_libraries(matcher) -> dict[str, str | None]:
    """The versions of the libraries a matcher's scores depend on (pixels decoded by Pillow, and
    its own: open_clip, diffusers, …); part of a run's identity."""
    return {name: library_version(name) for name in (*ALWAYS_LISTED, *matcher.library_versions())}


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
