"""PNG plots of a board (matplotlib, the `plots` extra): per table, the headline metric (ComVG's
average, Winoground's group, …) against shots for each matcher, and the per-tag columns as grouped
bars. Measured rows only."""

from __future__ import annotations

from pathlib import Path

from vlbench.errors import VlbenchError
from vlbench.leaderboard.tables import shots_order


def write_plots(tables, directory: Path) -> dict[str, list[Path]]:
    """Write `{table}-shots.png` and, where the table has tags, `{table}-tags.png` (the table's
    slug); returns them per table name."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VlbenchError("--plots needs matplotlib: pip install 'vlbench[plots]'") from None
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    for table in tables:
        measured = [row for row in table.rows if not row.reported]
        written[table.task] = [_shots_plot(plt, table, measured, directory / f"{table.slug}-shots.png")]
        tags = [index for index, column in enumerate(table.columns) if "=" in column]
        if tags:
            written[table.task].append(_tags_plot(plt, table, measured, tags, directory / f"{table.slug}-tags.png"))
    return written


def _shots_plot(plt, table, rows, path: Path) -> Path:
    shots = sorted({row.shots for row in rows}, key=shots_order)
    figure, axes = plt.subplots(figsize=(8, 4))
    column = table.columns.index(table.headline) if table.headline in table.columns else 0
    for line in dict.fromkeys(row.line for row in rows):
        joined = [row for row in rows if row.line == line]
        points = [(shots.index(row.shots), row.cells[column]) for row in joined if row.cells[column] is not None]
        axes.errorbar([x for x, _ in points], [cell.mean for _, cell in points], yerr=_within_percent([cell for _, cell in points]), marker="o", capsize=3, label=joined[-1].label)
    axes.set_xticks(range(len(shots)), shots)
    axes.set_xlabel("shots")
    axes.set_ylabel(f"{table.columns[column]} (%)")
    axes.set_title(table.task)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _tags_plot(plt, table, rows, tags: list[int], path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(max(8, len(tags) * 1.5), 4))
    width = 0.8 / max(1, len(rows))
    for offset, row in enumerate(rows):
        cells = [row.cells[index] for index in tags]
        axes.bar(
            [index + offset * width for index in range(len(tags))],
            [cell.mean if cell else float("nan") for cell in cells],  # no value: a gap, not a 0% bar
            width,
            yerr=_within_percent(cells),
            capsize=2,
            label=f"{row.label} · {row.shots}",
        )
    axes.set_xticks([index + 0.4 - width / 2 for index in range(len(tags))], [table.columns[index].split(" ", 1)[1] for index in tags], rotation=20, fontsize=8)
    axes.set_ylabel(f"{table.columns[tags[0]].split(' ')[0]} (%)")
    axes.set_title(f"{table.task}: per tag")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _within_percent(cells) -> list[list[float]]:
    """Error bars (below, above) of each cell's interval, cut at 0 and 100 %: with few seeds a
    Student t interval reaches past what a proportion can be. A missing cell: no bar."""
    below = [min(cell.half_width or 0, cell.mean) if cell else float("nan") for cell in cells]
    above = [min(cell.half_width or 0, 100 - cell.mean) if cell else float("nan") for cell in cells]
    return [below, above]
