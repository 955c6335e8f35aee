"""`vlbench report --html`: a static site from run records alone (no model, no data root).

`index.html` holds the leaderboard tables and plots, and links one example browser per group of
runs that evaluated the same split (same task, shots and seed): `browse-<task>-shots-<s>-seed-<k>.html`,
whose data (each example's texts, thumbnails, every run's scores and outcomes, and attention maps
where a run saved them) is a script next to it, so the site opens from disk without a server.
"""

from __future__ import annotations

import contextlib
import html
import importlib.util
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.leaderboard.tables import BOLD_NOTE, NO_INTERVAL_NOTE, OUTLIER_NOTE, PLOTS_NOTE, UNCHECKED_NOTE, Cell, TaskTable, across_seeds_text, any_unchecked, build_board, by_seed_text, cell_text, comparison_caption, data_variant_names, file_name, interval_text, p_text, pairs_text, points, read_references, seeds_text, shots_order, devices_note, sources_note, uncompared_note
from vlbench.records import atomic_write_text
from vlbench.splits import LIMIT_SAMPLE
from vlbench.stored_runs import StoredRun, configuration_names, find_runs

ASSETS = Path(__file__).parent / "report_assets"


@dataclass
class Group:
    """Runs that evaluated the same examples (same split, same limit): their examples can be
    compared one by one."""

    task: str  # the name of its task's table (`data_variant_names`)
    shots: str
    seed: int
    limit: int | None
    limit_sample: str | None  # `RunRecord.limit_sample`: named where it is not today's
    runs: list[StoredRun] = field(default_factory=list)

    @property
    def slug(self) -> str:
        limited = f"-limit-{self.limit}" + (f"-{self.limit_sample}" if self.limit_sample != LIMIT_SAMPLE else "") if self.limit is not None else ""
        return file_name(f"browse-{self.task}-shots-{self.shots}-seed-{self.seed}{limited}".replace("%", "pct"))

    @property
    def title(self) -> str:
        return f"{self.task} · shots {self.shots} · seed {self.seed}" + (f" · limit {self.limit}" + (f" ({self.limit_sample} sample)" if self.limit_sample != LIMIT_SAMPLE else "") if self.limit is not None else "")


REPORT_MANIFEST = ".vlbench-report.json"  # the files a report wrote, so the next one into its directory can remove the stale


def write_report(roots: Sequence[Path], out: Path, baseline: str | None = None, references: bool = True, plots: bool = True) -> Path:
    """Write the site into `out`; returns the path of its `index.html`."""
    from vlbench.leaderboard.plots import write_plots

    if plots and importlib.util.find_spec("matplotlib") is None:
        raise VlbenchError("vlbench report draws its plots with matplotlib: pip install 'vlbench[plots]', or pass --no-plots")
    _check_destination(out)
    tables = build_board(roots, baseline, read_references() if references else None)
    runs = find_runs(roots)
    unbrowsed = [run for run in runs if run.judging_problem]  # its examples cannot be judged here: on the board, not in a browser
    groups = comparison_groups([run for run in runs if not run.judging_problem])
    earlier = _listed(out)
    out.mkdir(parents=True, exist_ok=True)
    # Listed before anything is written: a report stopped midway leaves a directory the next one
    # recognises as a report's and cleans up.
    pages = [name for group in groups for name in (f"data/{group.slug}.js", f"{group.slug}.html")]
    planned = {*earlier, "report.css", "report.js", "index.html", *pages}
    atomic_write_text(out / REPORT_MANIFEST, json.dumps(sorted(planned), indent=0) + "\n")
    (out / "data").mkdir(exist_ok=True)
    for asset in ("report.css", "report.js"):
        shutil.copyfile(ASSETS / asset, out / asset)
    drawn = write_plots(tables, out / "plots") if plots else {}
    images = {task: [path.relative_to(out).as_posix() for path in paths] for task, paths in drawn.items()}
    planned.update(path for paths in images.values() for path in paths)
    atomic_write_text(out / REPORT_MANIFEST, json.dumps(sorted(planned), indent=0) + "\n")
    for group in groups:
        data = group_data(group)
        atomic_write_text(out / "data" / f"{group.slug}.js", "window.VLBENCH_GROUP = " + json.dumps(data, separators=(",", ":")) + ";\n")
        atomic_write_text(out / f"{group.slug}.html", _browser_page(group))
    atomic_write_text(out / "index.html", _index_page(tables, images, groups, unbrowsed))
    written = ["report.css", "report.js", "index.html", *(path for paths in images.values() for path in paths), *pages]
    _remove_earlier(out, earlier, written)
    return out / "index.html"


def _listed(out: Path) -> list[str]:
    """The files an earlier report in `out` wrote, as its manifest lists them (none without one)."""
    try:
        earlier = json.loads((out / REPORT_MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    return [name for name in earlier if isinstance(name, str) and not Path(name).is_absolute() and ".." not in Path(name).parts] if isinstance(earlier, list) else []


def _remove_earlier(out: Path, earlier: list[str], written: list[str]) -> None:
    """Delete what an earlier report in `out` wrote and this one did not (plots, browsers of runs no
    longer there), and the folders that held only those; then list this report's files. Other
    files stay."""
    for name in set(earlier) - set(written):
        (out / name).unlink(missing_ok=True)
        for folder in Path(name).parents[:-1]:  # innermost first, `out` itself not
            with contextlib.suppress(OSError):  # not empty, or a link: left as it is
                (out / folder).rmdir()
    atomic_write_text(out / REPORT_MANIFEST, json.dumps(sorted(written), indent=0) + "\n")


def comparison_groups(runs: list[StoredRun]) -> list[Group]:
    """Runs grouped by (task data, split, limit): every matcher with the same shots, seed and limit
    evaluated the same examples. Zero-shot runs of different seeds share a split but are never
    grouped: a seed can change a zero-shot matcher's scores (noise, sampled negatives)."""
    names = data_variant_names([run.record for run in runs])
    groups: dict[tuple[str, str, int, int | None], Group] = {}
    for run in runs:
        record = run.record
        key = (record.data_key, record.protocol.split_sha256, record.seed, record.protocol.limit, record.limit_sample)
        groups.setdefault(key, Group(names[record.data_key], record.shots, record.seed, record.protocol.limit, record.limit_sample)).runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda run: (run.record.matcher, run.record.config_id))
    return sorted(groups.values(), key=lambda group: (group.task, shots_order(group.shots), group.seed, group.limit or 0))


@dataclass
class _Shown:
    """What one run of a group stored for the browser, by example id."""

    run: StoredRun
    shown: dict[str, dict[str, Any]]  # examples.jsonl: texts and image keys
    thumbnails: dict[str, str]  # thumbnails.jsonl: data URI by image key
    attention: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, run: StoredRun) -> _Shown:
        shown = run.files.read_lines("examples")
        thumbnails = {key: item["uri"] for key, item in run.files.read_lines("thumbnails").items()}
        for example in shown.values():  # runs of vlbench 0.2 kept each thumbnail inline, per example
            for image in example["images"]:
                if uri := image.pop("thumbnail", None):
                    thumbnails.setdefault(image["key"], uri)
        return cls(run, shown, thumbnails, run.files.read_lines("attention"))

    def view(self, example_id: str) -> dict[str, Any] | None:
        """This run's scores, outcomes and maps of the example, or None if it did not score it."""
        if example_id not in self.run.outcomes:
            return None
        return {"scores": self.run.scores[example_id].scores, "outcomes": self.run.outcomes[example_id], "attention": _without_id(self.attention.get(example_id))}


def _run_labels(group: Group) -> list[str]:
    """Each run's column label: its matcher, and where the group has several runs of one matcher
    what tells them apart (`configuration_names`)."""
    names = [run.record.matcher for run in group.runs]
    return [run.record.matcher + (f" ({configuration_names([other.record for other in group.runs if other.record.matcher == run.record.matcher])[run.record.config_id]})" if names.count(run.record.matcher) > 1 else "") for run in group.runs]


def group_data(group: Group) -> dict[str, Any]:
    """What a browser page shows: per example, its texts, image keys and each run's scores,
    outcomes and (when saved) attention maps (`null` where a run did not score the example); and
    each image's thumbnail once, by key."""
    runs, stored = [], []
    for run, label in zip(group.runs, _run_labels(group)):
        shown = _Shown.read(run)
        runs.append({"label": label, "matcher": run.record.matcher, "config_id": run.record.config_id, "has_attention": bool(shown.attention)})
        stored.append(shown)
    order = group.runs[0].split["eval_ids"]
    examples = []
    for example_id in order:
        scoring = [shown for shown in stored if example_id in shown.run.outcomes]
        if not scoring:
            continue
        shown = next((run.shown[example_id] for run in stored if example_id in run.shown), None)
        first = scoring[0].run.scores[example_id]
        examples.append({
            "id": example_id,
            "tags": first.tags,
            "positives": first.positives,
            "texts": shown["texts"] if shown else None,
            "images": shown["images"] if shown else None,
            "runs": [run.view(example_id) for run in stored],
        })
    if not examples:
        raise VlbenchError(f"{group.title}: no run of this group has stored scores to browse")
    metrics = list(next(view for view in examples[0]["runs"] if view)["outcomes"])
    shown_keys = {image["key"] for example in examples for image in example["images"] or ()}
    thumbnails = {key: uri for run in reversed(stored) for key, uri in run.thumbnails.items() if key in shown_keys}
    return {"title": group.title, "task": group.task, "shots": group.shots, "seed": group.seed, "metrics": metrics, "runs": runs, "examples": examples, "thumbnails": thumbnails}


def _check_destination(out: Path) -> None:
    """The site goes into a new or empty directory, or one holding an earlier report; anything else
    (a file, someone's directory, no write permission) is refused before writing."""
    from vlbench.records import writable_directory

    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").exists() and not (out / REPORT_MANIFEST).exists():
        raise VlbenchError(f"--html {out}: the directory holds other files; give a new or empty directory (or one holding an earlier report)")
    problem = writable_directory(out)
    if problem:
        raise VlbenchError(f"--html {out}: {problem}")


def _without_id(record: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if record is None else {key: value for key, value in record.items() if key != "id"}


def _page(title: str, body: str, scripts: Sequence[str] = ()) -> str:
    tags = "".join(f'<script src="{html.escape(src)}"></script>' for src in scripts)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<link rel=\"stylesheet\" href=\"report.css\"></head>\n<body>\n{body}\n{tags}\n</body></html>\n"
    )


def _index_page(tables: list[TaskTable], plots: dict[str, list[str]], groups: list[Group], unbrowsed: Sequence[StoredRun] = ()) -> str:
    parts = [
        "<h1>vlbench report</h1>",
        f"<p class=\"note\">Mean ± 95% CI over seeds (Student t), in %. {html.escape(BOLD_NOTE)} "
        f"{html.escape(NO_INTERVAL_NOTE)} <em>Reported</em> rows are published numbers, not measured here. {html.escape(OUTLIER_NOTE)}"
        + "".join(f" {html.escape(note)}" for note in (UNCHECKED_NOTE if any_unchecked(tables) else "", sources_note(tables), devices_note(tables)) if note) + "</p>",
    ]
    for table in tables:
        parts.append(f"<section><h2>{html.escape(table.task)}</h2>{_table_html(table)}")
        parts += [f"<p>{html.escape(PLOTS_NOTE)}</p>"] if plots.get(table.task) else []
        parts += [f"<img class=\"plot\" src=\"{html.escape(path)}\" alt=\"{html.escape(table.task)} plot\">" for path in plots.get(table.task, [])]
        browsers = [group for group in groups if group.task == table.task]
        if browsers:
            links = "".join(f"<li><a href=\"{group.slug}.html\">{html.escape(group.title)}</a> ({len(group.runs)} runs)</li>" for group in browsers)
            parts.append(f"<h3>Examples</h3><ul class=\"browsers\">{links}</ul>")
        parts.append("</section>")
    if unbrowsed:
        items = "".join(f"<li>{html.escape(str(run.directory))}: judging its examples needs {html.escape(run.judging_problem)}</li>" for run in unbrowsed)
        parts.append(f"<section><h2>Not in an example browser</h2><ul class=\"unbrowsed\">{items}</ul></section>")
    return _page("vlbench report", "\n".join(parts))


def _table_html(table: TaskTable) -> str:
    header = "".join(f"<th>{html.escape(name)}</th>" for name in ["matcher", "shots", "seeds", "n", *table.columns])
    rows = []
    for row in table.rows:
        label = f"<em>reported:</em> {html.escape(row.label)}" if row.reported else html.escape(row.label)
        cells = "".join(f"<td>{_cell_html(cell)}</td>" for cell in row.cells)
        rows.append(f"<tr class=\"{'reported' if row.reported else 'measured'}\"><td>{label}</td><td>{html.escape(row.shots)}</td><td>{html.escape(seeds_text(row))}</td><td>{html.escape(row.n)}</td>{cells}</tr>")
    body = f"<table class=\"board\"><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    cited = [row for row in table.rows if row.reported]
    if cited:
        body += "<ul class=\"citations\">" + "".join(f"<li><em>{html.escape(row.label)}</em>: {html.escape(row.citation)}</li>" for row in cited) + "</ul>"
    if table.reported_apart:
        apart = table.reported_apart
        header = "".join(f"<th>{html.escape(name)}</th>" for name in ["method", "shots", *apart.columns])
        rows = "".join(
            f"<tr class=\"reported\"><td><em>reported:</em> {html.escape(row.label)}</td><td>{html.escape(row.shots)}</td>" + "".join(f"<td>{_cell_html(cell)}</td>" for cell in row.cells) + "</tr>"
            for row in apart.rows
        )
        body += f"<p class=\"apart\">Reported under the paper's own metric names, not comparable with the columns above: {html.escape(apart.note)}</p>"
        body += f"<table class=\"board\"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
        body += "<ul class=\"citations\">" + "".join(f"<li><em>{html.escape(row.label)}</em>: {html.escape(row.citation)}</li>" for row in apart.rows) + "</ul>"
    if table.comparisons:
        lines = "".join(
            f"<tr><td>{html.escape(c.label)}</td><td>{html.escape(c.shots)}</td><td>{html.escape(c.metric)}</td><td>{points(c.difference)}</td>"
            f"<td>{interval_text(c)}</td><td>{html.escape(p_text(c.p_value, table.resamples))}</td><td>{pairs_text(c)}</td><td>{by_seed_text(c)}</td><td>{across_seeds_text(c)}</td><td>{html.escape(c.against)}</td></tr>"
            for c in table.comparisons
        )
        body += (
            f"<p>{html.escape(comparison_caption(table.baseline, table.resamples))}</p>"
            f"<table class=\"board\"><thead><tr><th>matcher</th><th>shots</th><th>metric</th><th>difference</th><th>95% interval</th><th>p</th><th>pairs</th><th>by seed</th><th>across seeds</th><th>against</th></tr></thead><tbody>{lines}</tbody></table>"
        )
    if table.uncompared:
        body += f"<p>{html.escape(uncompared_note(table))}</p>"
    return body


def _cell_html(cell: Cell | None) -> str:
    if cell is None:
        return "–"
    return f"<strong>{cell_text(cell)}</strong>" if cell.best else cell_text(cell)


def _browser_page(group: Group) -> str:
    body = f"""<p><a href="index.html">← leaderboard</a></p>
<h1>{html.escape(group.title)}</h1>
<form id="filters" class="filters" onsubmit="return false">
  <label>metric <select id="metric"></select></label>
  <span id="tag-filters"></span>
  <label><select id="right"></select> right,</label>
  <label><select id="wrong"></select> wrong</label>
</form>
<p id="shown" class="note"></p>
<div class="layout">
  <table id="examples" class="examples"><thead></thead><tbody></tbody></table>
  <aside id="detail" class="detail"><p class="note">Click an example to see every run's scores and, where a run saved them, its attention maps.</p></aside>
</div>"""
    return _page(group.title, body, [f"data/{group.slug}.js", "report.js"])
