"""A board from run directories, in the format asked for, with plots and reference rows."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from vlbench.leaderboard.tables import build_board, read_references, render_csv, render_json, render_markdown

Format = Literal["markdown", "csv", "json"]


def render_board(roots: Sequence[Path], format: Format = "markdown", baseline: str | None = None, plots: Path | None = None, references: bool = True, out: Path | None = None) -> str:
    """The board of every run under `roots`. `plots` (markdown only) writes PNGs there and links
    them relative to `out` (or to the working directory)."""
    tables = build_board(roots, baseline, read_references() if references else None)
    if format == "csv":
        return render_csv(tables)
    if format == "json":
        return render_json(tables)
    images = {}
    if plots is not None:
        from vlbench.leaderboard.plots import write_plots

        base = out.parent if out else Path.cwd()
        images = {task: [Path(os.path.relpath(path, base)).as_posix() for path in paths] for task, paths in write_plots(tables, plots).items()}
    return render_markdown(tables, images)
