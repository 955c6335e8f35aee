"""Leaderboard tables: runs grouped by (task, matcher, configuration, shots), aggregated over seeds.

A pure function of the `results.json` files it is given: no model, no data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlbench.config import Shots
from vlbench.errors import VlbenchError
from vlbench.records import find_results
from vlbench.stats import mean_and_ci


@dataclass
class Row:
    """One (task, matcher, configuration, shots) group and its per-seed records."""

    task: str
    matcher: str
    model: str | None
    config_id: str
    shots: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted(record["protocol"]["seed"] for record in self.records)

    def values(self, column: tuple[str, ...]) -> list[float]:
        """The column's value in each seed's record, where present."""
        found = []
        for record in self.records:
            value: Any = record
            for key in column:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                found.append(float(value))
        return found


def load_records(roots: Sequence[Path]) -> list[dict[str, Any]]:
    import json

    records = []
    for path in find_results(roots):
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise VlbenchError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from None
    if not records:
        raise VlbenchError(f"no results.json found under {', '.join(str(root) for root in roots)}; run `vlbench run` first")
    return records


def group_rows(records: list[dict[str, Any]]) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for record in records:
        key = (record["task"]["name"], record["config_id"])
        row = rows.setdefault(key, Row(record["task"]["name"], record["matcher"]["name"], record["matcher"]["fingerprint"].get("model"), record["config_id"], record["protocol"]["shots"]))
        seed = record["protocol"]["seed"]
        if seed in row.seeds:
            raise VlbenchError(f"two records of the same run ({row.matcher}, config {row.config_id}, seed {seed}); pass each runs directory once")
        row.records.append(record)
    return sorted(rows.values(), key=lambda row: (row.task, _shots_order(row.shots), row.matcher, row.config_id))


def columns_for(rows: list[Row]) -> list[tuple[str, tuple[str, ...]]]:
    """(header, path into results.json): overall metrics, then the first metric per tag value."""
    first = rows[0].records[0]
    metrics = list(first["metrics"])
    columns = [(name, ("metrics", name)) for name in metrics]
    tags = sorted({(tag, value) for row in rows for record in row.records for tag, values in record["breakdown"].items() for value in values})
    columns += [(f"{metrics[0]} {tag}={value}", ("breakdown", tag, value, metrics[0])) for tag, value in tags]
    return columns


def render_markdown(roots: Sequence[Path]) -> str:
    """The leaderboard of all runs under `roots` as markdown, one table per task."""
    rows = group_rows(load_records(roots))
    lines = [
        "# vlbench leaderboard",
        "",
        "Mean ± 95% CI over seeds (Student t), in %. Best mean per shots setting in **bold**.",
        "Rows with one seed have no interval.",
    ]
    for task in sorted({row.task for row in rows}):
        task_rows = [row for row in rows if row.task == task]
        lines += ["", f"## {task}", "", *_table(task_rows)]
    return "\n".join(lines) + "\n"


def _table(rows: list[Row]) -> list[str]:
    columns = columns_for(rows)
    labels = _labels(rows)
    header = ["matcher", "shots", "seeds", "n", *(name for name, _ in columns)]
    cells = {id(row): [_cell(row.values(path)) for _, path in columns] for row in rows}
    for shots in {row.shots for row in rows}:
        same = [row for row in rows if row.shots == shots]
        for index, (_, path) in enumerate(columns):
            means = [mean_and_ci(row.values(path))[0] for row in same if row.values(path)]
            best = max(means, default=None)
            for row in same:
                values = row.values(path)
                if values and len(same) > 1 and mean_and_ci(values)[0] == best:
                    cells[id(row)][index] = f"**{cells[id(row)][index]}**"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        n = sorted({record["n"] for record in row.records})
        lines.append("| " + " | ".join([labels[id(row)], row.shots, str(len(row.records)), "/".join(map(str, n)), *cells[id(row)]]) + " |")
    return lines


def _labels(rows: list[Row]) -> dict[int, str]:
    """Matcher name, with the model and, where one matcher has several configurations, the id."""
    labels = {}
    for row in rows:
        label = row.matcher + (f" ({row.model})" if row.model else "")
        siblings = {other.config_id for other in rows if other.matcher == row.matcher and other.model == row.model and other.shots == row.shots}
        labels[id(row)] = label + (f" [{row.config_id}]" if len(siblings) > 1 else "")
    return labels


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean, half_width = mean_and_ci(values)
    return f"{mean * 100:.2f}" + (f" ± {half_width * 100:.2f}" if half_width is not None else "")


def _shots_order(label: str) -> tuple[int, float]:
    shots = Shots.parse(label)
    return (0, shots.count or 0) if shots.fraction is None else (1, shots.fraction)
