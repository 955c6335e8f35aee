"""Leaderboard tables: runs grouped by (task, data, matcher, configuration, shots), aggregated over seeds.

A pure function of run records (`results.json`, and `scores.jsonl` for the paired comparison), read
through `vlbench.stored_runs`: no model, no data. `build_board` makes the structure;
`render_markdown`, `render_csv` and `render_json` write it. A run limited to a sample of its
evaluation examples (`--limit`) is shown as such (`n` = "300 of 5400") and ranked and compared
only with runs of the same limit.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlbench.config import RunConfig, Shots
from vlbench.errors import VlbenchError
from vlbench.identity import differing_files, first_difference, short_fingerprint
from vlbench.stats import mean_and_ci
from vlbench.stored_runs import RunRecord, StoredRun, configuration_names, find_runs

REFERENCE_NUMBERS = Path(__file__).parent / "reference_numbers.yaml"
DEFAULT_SPLIT = RunConfig.split  # rows split otherwise say so in their label
OUTLIER_SDS = 3.0  # a seed this many standard deviations from the other seeds' mean is flagged
BOLD_NOTE = "Bold: the best mean per shots setting (and split) among rows run on the same seeds; a few-shot seed is its own split, so rows on other seeds are ranked among themselves (zero-shot rows of a task whose examples are the same under every seed, without --limit, are ranked together)."
NO_INTERVAL_NOTE = "Rows with one seed have no interval; a cell whose value fewer of the row's seeds recorded says how many."
OUTLIER_NOTE = (
    f"⚠ marks a seed more than {OUTLIER_SDS:g} SD from the other seeds' mean on the task's headline metric, in rows of three seeds "
    "or more (SD: the other seeds', at least the binomial standard error at n examples, with one success and one failure added)."
)


@dataclass
class Row:
    """One (task, data, matcher, configuration, shots) group and its per-seed runs."""

    task: str
    data: str  # `RunRecord.data_key`: the examples its runs evaluated
    matcher: str
    model: str | None
    config_id: str
    shots: str
    limit: int | None
    limit_sample: str | None  # `RunRecord.limit_sample`
    runs: list[StoredRun] = field(default_factory=list)
    unchecked_seeds: list[int] = field(default_factory=list)  # taken as recorded (`StoredRun.check_metrics`)

    @property
    def records(self) -> list[RunRecord]:
        """The seeds' records, in seed order."""
        return sorted((run.record for run in self.runs), key=lambda record: record.seed)

    @property
    def seeds(self) -> list[int]:
        return [record.seed for record in self.records]

    @property
    def split(self) -> str:
        """How its few-shot examples were split off (`--split`)."""
        return self.records[0].protocol.split

    @property
    def cohort(self) -> tuple[str, str, int | None, str | None, str]:
        """Rows ranked and compared together: the same data, shots, evaluation limit and split."""
        return (self.data, self.shots, self.limit, self.limit_sample, self.split)

    def values(self, column: tuple[str, ...]) -> list[float]:
        """The column's value in each seed's record (in seed order), where present."""
        found = []
        for record in self.records:
            value: Any = record.metrics if column[0] == "metrics" else record.breakdown
            for key in column[1:]:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                found.append(float(value))
        return found


@dataclass
class Cell:
    mean: float  # in %
    half_width: float | None  # 95% CI half-width in points; None for one seed
    best: bool = False
    seeds: int | None = None  # how many seeds recorded the value, where fewer than the row's
    n: str = ""  # the examples it counts where not the row's `n` (a tag's), as `n` writes them


@dataclass
class TableRow:
    label: str
    shots: str
    seeds: int | None  # None for reported rows
    n: str
    cells: list[Cell | None]
    outlier_seeds: list[int] = field(default_factory=list)
    unchecked_seeds: list[int] = field(default_factory=list)
    reported: bool = False
    citation: str = ""
    config_id: str = ""
    line: str = ""  # rows a plot joins across shots share it: one matcher's row where it is alone at its shots, else one configuration's
    sources: str = ""  # `code.sources_sha256` of a measured row's runs (a row's seeds agree on it)
    devices: list[list[str]] = field(default_factory=list)  # per run of a measured row, the devices it ran on (`RunRecord.devices`)


@dataclass
class Comparison:
    """The paired comparison (`paired.paired_comparison`) of one row against its baseline row (`against`)."""

    label: str
    shots: str
    metric: str
    difference: float  # points
    low: float
    high: float
    p_value: float
    pairs: int
    units: int  # what the bootstrap and the sign flips resampled: examples, or clusters of them (`paired.paired_comparison`)
    against: str = ""
    by_seed: dict[int, float | None] = field(default_factory=dict)  # each seed's difference of the metric, in points; None: not paired (`outcomes.PairedOutcomes`)
    against_mean: list[int] = field(default_factory=list)  # seeds paired with the zero-shot row's mean, which lacks them
    seed_mean: float | None = None  # the mean of the seeds' differences, with two or more paired seeds
    seed_half_width: float | None = None  # its Student-t 95% half-width: what another training seed may do to the difference


@dataclass
class ReportedApart:
    """Published numbers under the paper's own metric names, shown beside a task's table and
    never in its columns: what they measure differs from anything measured here (`note`)."""

    columns: list[str]
    rows: list[TableRow]
    note: str


@dataclass
class TaskTable:
    task: str  # the task's name, with the options that tell its data apart where it has several (`data_variant_names`)
    columns: list[str]
    rows: list[TableRow]
    baseline: str | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    uncompared: list[str] = field(default_factory=list)  # rows with nothing to compare against (`uncompared_note`)
    headline: str = ""  # the column plots draw (the task's headline metric)
    reported_apart: ReportedApart | None = None
    resamples: int = 10_000  # of the paired comparison's bootstrap and of its sign flips

    @property
    def slug(self) -> str:
        """The table's name as a file name."""
        return file_name(self.task)


def file_name(text: str) -> str:
    """`text` with every character a file name should not hold replaced by `_`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def group_rows(runs: list[StoredRun]) -> list[Row]:
    rows: dict[tuple[str, str, str], Row] = {}
    for run in runs:
        checked = run.check_metrics()
        record = run.record
        row = rows.setdefault((record.task, record.data_key, record.config_id), Row(record.task, record.data_key, record.matcher, record.model, record.config_id, record.shots, record.protocol.limit, record.limit_sample))
        if record.seed in row.seeds:
            (other,) = [earlier for earlier in row.runs if earlier.record.seed == record.seed]
            raise VlbenchError(
                f"two records of the same run ({row.matcher}, config {row.config_id}, seed {record.seed}): {other.directory} and {run.directory}; "
                "a runs directory passed twice, or a run copied (or made again from another data root) into another one: board one of them"
            )
        row.runs.append(run)
        if not checked:
            row.unchecked_seeds = sorted([*row.unchecked_seeds, record.seed])
    _check_same_data(runs)  # first: its refusal names the evaluation data that differs
    for row in rows.values():
        _check_same_inputs(row)
    return sorted(rows.values(), key=lambda row: (row.task, row.data, shots_order(row.shots), row.limit or 0, row.matcher, row.config_id))


def _check_same_inputs(row: Row) -> None:
    """Refuse a row whose seeds were computed from different inputs (a model changed in place
    between seeds, another library version, edited code: the first file that differs named): its
    mean would mix them."""
    first, *others = sorted(row.runs, key=lambda run: run.record.seed)
    for run in others:
        if run.record.inputs_key != first.record.inputs_key:
            difference = first_difference(json.loads(first.record.inputs_key), json.loads(run.record.inputs_key))
            codes = (first.files.recorded_code(), run.files.recorded_code()) if difference.startswith("code.") else (None, None)
            files = differing_files(*codes) if None not in codes else ""
            remedy = (
                "run the older seeds again (where their examples did not change, that records the files' fingerprint of today; where they did, it is refused, and --restart scores them again)"
                if difference.startswith("task.source_fingerprint") else "rerun the stale seeds (vlbench run --restart)"
            )
            raise VlbenchError(
                f"{row.task}, {row.matcher} (config {row.config_id}): seeds {first.record.seed} and {run.record.seed} were computed from different inputs "
                f"({f'code: {files}' if files else difference}), so they cannot be averaged; {remedy} or keep them in separate runs directories"
            )


def _check_same_data(runs: list[StoredRun]) -> None:
    """Refuse runs on one task's data whose evaluation pools differ where they must agree (a data
    file edited between them): their rows would be ranked and paired as if on the same examples.
    So must few-shot runs' whole data, training pool included (`task.data_fingerprint`; a task's
    training file): their rows would be ranked as if trained on the same examples."""
    evaluated: dict[tuple[str, int | None], RunRecord] = {}
    trained: dict[tuple[str, int | None], RunRecord] = {}
    for run in runs:
        record = run.record
        if record.evaluation_data is None:
            continue
        fingerprint, seed = record.evaluation_data
        first = evaluated.setdefault((record.data_key, seed), record)
        every = "every seed" if seed is None else f"seed {seed}"
        if first.evaluation_data[0] != fingerprint:
            raise VlbenchError(
                f"{record.task}: {first.directory} and {record.directory} evaluated different data ({every} should see the same examples; "
                f"fingerprints {short_fingerprint(first.evaluation_data[0])} → {short_fingerprint(fingerprint)}): the data changed between them; {REDO_HINT}"
            )
        if record.shots == "0":
            continue
        first = trained.setdefault((record.data_key, seed), record)
        old, new = (other.data["task"].get("data_fingerprint") for other in (first, record))
        if old != new:
            raise VlbenchError(
                f"{record.task}: {first.directory} and {record.directory} trained on different data (the training examples {every} should draw from; "
                f"fingerprints {short_fingerprint(old)} → {short_fingerprint(new)}): the data changed between them; {REDO_HINT}"
            )


REDO_HINT = "rerun the older runs (vlbench run --restart) or keep them in separate runs directories"


def data_variant_names(records: Sequence[RunRecord]) -> dict[str, str]:
    """A table name per data key: the task's name, followed, where one task was evaluated on
    several data, by the options and the task version that tell them apart (so names differ
    where keys do)."""
    keys: dict[str, dict[str, RunRecord]] = {}
    for record in records:
        keys.setdefault(record.task, {}).setdefault(record.data_key, record)
    names = {}
    for task, variants in keys.items():
        options = [record.task_options for record in variants.values()]
        differing = sorted({name for option in options for name in option if any(other.get(name) != option.get(name) for other in options)})
        versions = {record.data["task"].get("version") for record in variants.values()}
        for key, record in variants.items():
            parts = [f"{name}={record.task_options.get(name)}" for name in differing]
            parts += [f"version {record.data['task'].get('version')}"] if len(versions) > 1 else []
            names[key] = f"{task} ({', '.join(parts)})" if len(variants) > 1 else task
    return names


def columns_for(rows: list[Row]) -> list[tuple[str, tuple[str, ...]]]:
    """(header, path into the record): the overall metrics, then per tag value the headline
    metric (Winoground's group), or the first metric where the headline is not one per tag
    (ComVG's average is over its tags)."""
    records = [record for row in rows for record in row.records]
    metrics = list(records[0].metrics)
    columns = [(name, ("metrics", name)) for name in metrics]
    tags = sorted({(tag, value) for record in records for tag, values in record.breakdown.items() for value in values})
    per_tag = records[0].headline if any(records[0].headline in values for groups in records[0].breakdown.values() for values in groups.values()) else metrics[0]
    columns += [(f"{per_tag} {tag}={value}", ("breakdown", tag, value, per_tag)) for tag, value in tags]
    return columns


def read_references(path: Path = REFERENCE_NUMBERS) -> list[dict[str, Any]]:
    """The published rows per task; a mini task named in the file's `mirrors` also shows its real
    task's rows, labelled with the real task (beside, for orientation: the data differ)."""
    from vlbench.config import read_yaml

    data = read_yaml(path)
    references = data["references"]
    mirrored = [
        {**reference, "task": mini, "method": f"{reference['method']} (real {real})"}
        for mini, real in data.get("mirrors", {}).items()
        for reference in references
        if reference["task"] == real
    ]
    return references + mirrored


def build_board(roots: Sequence[Path], baseline: str | None = None, references: list[dict[str, Any]] | None = None, resamples: int = 10_000) -> list[TaskTable]:
    """One table per task and data (`data_variant_names`): measured rows (best mean per shots
    setting marked), reported rows for the task from `references`, and with `baseline` a paired
    comparison of rows with a baseline row: a matcher name compares every other row with that
    matcher's row of the same data, shots and limit; `zero-shot` compares every trained row with
    the same matcher's zero-shot row."""
    rows = group_rows(find_runs(roots))
    check_baseline(baseline, [row.matcher for row in rows])
    names = data_variant_names([record for row in rows for record in row.records])
    tables = []
    for task, data in dict.fromkeys((row.task, row.data) for row in rows):
        task_rows = [row for row in rows if row.data == data]
        labels = _labels(task_rows)
        task_rows.sort(key=lambda row: (shots_order(row.shots), row.limit or 0, row.matcher, labels[id(row)]))
        columns = columns_for(task_rows)
        table = TaskTable(names[data], [name for name, _ in columns], _measured_rows(task_rows, columns, labels), baseline, headline=task_rows[0].records[0].headline, resamples=resamples)
        for_task = [reference for reference in references or [] if reference["task"] == task]
        table.rows += [_reported_row(reference, table.columns) for reference in for_task if "columns" in reference]
        table.reported_apart = _reported_apart([reference for reference in for_task if "paper_metrics" in reference])
        if baseline is not None:
            table.comparisons, table.uncompared = _comparisons(task_rows, baseline, resamples, labels)
        tables.append(table)
    return tables


def _measured_rows(rows: list[Row], columns, labels: dict[int, str]) -> list[TableRow]:
    table_rows = []
    cohorts = {}
    for row in rows:
        cells = [_cell(row.values(path), len(row.records), _tag_n(row, path)) for _, path in columns]
        line = labels[id(row)] if labels[id(row)] == _base_label(row) else json.dumps([row.matcher, row.model, row.records[0].settings], sort_keys=True, default=str)
        table_rows.append(TableRow(labels[id(row)], row.shots, len(row.records), _n_label(row), cells, _outlier_seeds(row, ("metrics", row.records[0].headline)), row.unchecked_seeds, config_id=row.config_id, line=line, sources=row.records[0].sources, devices=[record.devices for record in row.records]))
        same_under_every_seed = row.shots == "0" and row.limit is None and not row.records[0].examples_vary_by_seed  # --limit samples by seed
        cohorts.setdefault((*row.cohort, () if same_under_every_seed else tuple(row.seeds)), []).append(table_rows[-1])  # a few-shot seed is its own split
    for same in cohorts.values():
        for index in range(len(columns)):
            best = max((round(row.cells[index].mean, 2) for row in same if row.cells[index] is not None), default=None)
            for row in same:
                if row.cells[index] is not None and len(same) > 1 and round(row.cells[index].mean, 2) == best:  # as printed: rows that read the same are both bold
                    row.cells[index].best = True
    return table_rows


def _n_label(row: Row) -> str:
    """Evaluated examples per seed; a limited run says of how many ("300 of 5400")."""
    n = "/".join(str(value) for value in sorted({record.n for record in row.records}))
    if row.limit is not None and any(record.limited for record in row.records):
        n += " of " + "/".join(str(value) for value in sorted({record.protocol.n_eval for record in row.records}))
    return n


def _cell(values: list[float], seeds: int, n: str = "") -> Cell | None:
    """The mean ± CI of one column over the `seeds` of a row that recorded it (`values`)."""
    if not values:
        return None
    mean, half_width = mean_and_ci(values)
    return Cell(mean * 100, None if half_width is None else half_width * 100, seeds=len(values) if len(values) < seeds else None, n=n)


def _tag_n(row: Row, path: tuple[str, ...]) -> str:
    """A tag column's examples per seed (`189/194` where seeds differ); "" for an overall metric."""
    return "/".join(str(int(n)) for n in sorted(set(row.values((*path[:-1], "n"))))) if path[0] == "breakdown" else ""


def _outlier_seeds(row: Row, column: tuple[str, ...]) -> list[int]:
    """Seeds more than `OUTLIER_SDS` standard deviations from the mean of the other seeds (three
    seeds or more). The SD is the other seeds' SD, but never below the binomial standard error
    of a proportion at that mean over the run's n examples: two seeds that agree by chance do
    not make the third an outlier. The proportion counts one success and one failure more
    (Laplace), so seeds at 100% do not make a third at 99.5% an outlier."""
    values = row.values(column)
    if len(values) < 3 or len(values) != len(row.records):
        return []
    flagged = []
    for index, record in enumerate(row.records):
        others = values[:index] + values[index + 1 :]
        mean = sum(others) / len(others)
        sd = math.sqrt(sum((value - mean) ** 2 for value in others) / (len(others) - 1))
        smoothed = (mean * record.n + 1) / (record.n + 2)
        binomial = math.sqrt(smoothed * (1 - smoothed) / record.n) if 0 <= mean <= 1 else 0.0
        if abs(values[index] - mean) > OUTLIER_SDS * max(sd, binomial, 1e-9):
            flagged.append(record.seed)
    return flagged


def _reported_row(reference: dict[str, Any], columns: list[str]) -> TableRow:
    values = reference["columns"]
    unknown = [name for name in values if name not in columns]
    cells = [Cell(float(values[name]), None) if name in values else None for name in columns]
    if unknown and not any(cells):
        raise VlbenchError(f"reference '{reference['method']}' for {reference['task']}: none of its columns ({', '.join(unknown)}) is a column of the table ({', '.join(columns)})")
    return TableRow(reference["method"], str(reference["shots"]), None, "–", cells, reported=True, citation=reference["citation"])


def _reported_apart(references: list[dict[str, Any]]) -> ReportedApart | None:
    if not references:
        return None
    columns = list(dict.fromkeys(name for reference in references for name in reference["paper_metrics"]))
    rows = [
        TableRow(reference["method"], str(reference["shots"]), None, "–", [Cell(float(reference["paper_metrics"][name]), None) if name in reference["paper_metrics"] else None for name in columns], reported=True, citation=reference["citation"])
        for reference in references
    ]
    return ReportedApart(columns, rows, references[0]["note"])


def _comparisons(rows: list[Row], baseline: str, resamples: int, labels: dict[int, str]) -> tuple[list[Comparison], list[str]]:
    from vlbench.leaderboard.paired import paired_comparison
    from vlbench.leaderboard.outcomes import UnrecordedExample, paired_outcomes

    comparisons, uncompared = [], []
    for row in rows:
        if row.matcher == baseline or (row.shots == "0" and baseline == ZERO_SHOT):
            continue
        name = f"{labels[id(row)]} ({row.shots} shots)"
        references = _baseline_rows(row, rows, baseline)
        if len(references) != 1:
            uncompared.append(f"{name}: no {_wanted(baseline)}" if not references else f"{name}: {len(references)} rows could be its baseline ({', '.join(labels[id(other)] for other in references)}); board the runs of one of them to compare against it")
            continue
        (reference,) = references
        problem = next((run.judging_problem for run in (*row.runs, *reference.runs) if run.judging_problem), "")
        if problem:
            uncompared.append(f"{name}: judging its examples against {labels[id(reference)]}'s needs {problem}")
            continue
        try:
            paired = paired_outcomes(row.runs, reference.runs, same_shots=reference.shots == row.shots)
        except UnrecordedExample as error:
            uncompared.append(f"{name}: {error}")
            continue
        if not any(difference is not None for difference in paired.by_seed.values()) and not set(row.seeds) & set(reference.seeds):
            uncompared.append(f"{name}: no seed in common with {labels[id(reference)]} ({reference.shots} shots)")
            continue
        fewest = min(len({example_id for run in side.runs for example_id in run.evaluated_ids()}) for side in (row, reference))
        if len(paired.ours) < fewest / 2:  # one entry per distinct example, over the seeds
            uncompared.append(f"{name}: {len(paired.ours)} examples in common with {labels[id(reference)]} ({reference.shots} shots), under half of either row's (their `--limit` samples or splits differ)")
            continue
        result = paired_comparison(paired.ours, paired.theirs, paired.groups, clusters=paired.clusters, resamples=resamples)
        against = labels[id(reference)] + (f" ({reference.shots} shots)" if reference.shots != row.shots else "")
        by_seed = {seed: None if difference is None else difference * 100 for seed, difference in paired.by_seed.items()}
        seed_differences = [difference for difference in by_seed.values() if difference is not None]
        seed_mean, seed_half_width = mean_and_ci(seed_differences) if len(seed_differences) > 1 else (None, None)
        comparisons.append(Comparison(labels[id(row)], row.shots, paired.metric, result.difference * 100, result.low * 100, result.high * 100, result.p_value, result.n_pairs, result.n_units, against, by_seed, paired.against_mean, seed_mean, seed_half_width))
    return comparisons, uncompared


def check_baseline(baseline: str | None, matchers: Sequence[str]) -> None:
    """Refuse a `--baseline` that names none of the board's `matchers` (nor `zero-shot`)."""
    matchers = sorted(set(matchers))
    if baseline is not None and baseline != ZERO_SHOT and baseline not in matchers:
        close = difflib.get_close_matches(baseline, matchers + [ZERO_SHOT], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise VlbenchError(f"--baseline {baseline}: no row of that matcher on this board.{hint} Its matchers: {', '.join(matchers)}; or {ZERO_SHOT}, each trained row against its own zero-shot row")


def _wanted(baseline: str) -> str:
    return "zero-shot row of the same matcher, model, weights, options, versions, code and --limit on these data" if baseline == ZERO_SHOT else f"`{baseline}` row with the same shots, --limit and --split on these data"


def uncompared_note(table: TaskTable) -> str:
    """The line under a board's comparisons that names the rows it did not compare, and why."""
    return f"Not compared: {'; '.join(table.uncompared)}."


ZERO_SHOT = "zero-shot"


def _baseline_rows(row: Row, rows: list[Row], baseline: str) -> list[Row]:
    """The rows `row` may be compared with (one, or it is not compared): `baseline`'s in the same
    cohort, or for `zero-shot` the same matcher at shots 0 (`_matcher_fingerprint`; same data and
    limit)."""
    if baseline != ZERO_SHOT:
        return [other for other in rows if other.matcher == baseline and other.cohort == row.cohort]
    fingerprint = _matcher_fingerprint(row)
    return [other for other in rows if other.shots == "0" and other.data == row.data and (other.limit, other.limit_sample) == (row.limit, row.limit_sample) and other.matcher == row.matcher and _matcher_fingerprint(other) == fingerprint]


def _matcher_fingerprint(row: Row) -> Any:
    """The matcher's model, weights and options, its versions and the code that ran it (what a
    zero-shot row must share with a trained one)."""
    record = row.records[0]
    matcher = record.data["matcher"]
    return [matcher["fingerprint"], matcher.get("version"), matcher.get("distribution_version"), record.sources]


def _base_label(row: Row) -> str:
    return row.matcher + (f" ({row.model})" if row.model else "")


def _labels(rows: list[Row]) -> dict[int, str]:
    """Matcher name, with the model and, where one matcher has several configurations at the same
    shots, what tells them apart (`configuration_names`)."""
    labels = {}
    for row in rows:
        label = _base_label(row)
        siblings = [other.records[0] for other in rows if (other.matcher, other.model, other.shots) == (row.matcher, row.model, row.shots)]
        parts = [configuration_names(siblings)[row.config_id]] if len(siblings) > 1 else []
        if row.split != DEFAULT_SPLIT and not any("split=" in part for part in parts):
            parts.append(f"split={row.split}")  # evaluated on other examples than the rows beside it: always said
        labels[id(row)] = label + (f" [{', '.join(parts)}]" if parts else "")
    return labels


def shots_order(label: str) -> tuple[int, float]:
    shots = Shots.parse(label)
    return (0, shots.count or 0) if shots.fraction is None else (1, shots.fraction)


UNCHECKED = "†"
UNCHECKED_NOTE = f"{UNCHECKED} marks seeds taken as recorded (after the count: all of them): no stored scores to check their numbers against (a results.json alone), or a task this vlbench lacks or has at another version."


def sources_note(tables: list[TaskTable]) -> str:
    """The sentence naming the sources (`code.sources_sha256`) that computed the measured rows (none: '')."""
    from vlbench.hashing import short

    sources = sorted({row.sources for table in tables for row in table.rows if not row.reported})
    if not sources:
        return ""
    named = ", ".join(value if value == "unrecorded" else short(value) for value in sources)
    return f"Measured rows were computed by sources {named} (`code.sources_sha256` in their results.json: vlbench's files and their plugins')."


def devices_note(tables: list[TaskTable]) -> str:
    """The sentence naming the devices the measured rows' runs ran on, with how many runs each
    (a run resumed on another device counts for each), and a warning where they are several (none: '')."""
    runs = [devices for table in tables for row in table.rows if not row.reported for devices in row.devices]
    if not runs:
        return ""
    counts = Counter(device for devices in runs for device in devices)
    named = ", ".join(f"{device}: {count} run{'s' if count > 1 else ''}" for device, count in sorted(counts.items()))
    unrecorded = sum(not devices for devices in runs)
    parts = [f"Their runs ran on {named}"] if counts else []
    if unrecorded:
        parts.append(f"{unrecorded} run{'s do' if unrecorded > 1 else ' does'} not record {'their' if unrecorded > 1 else 'its'} device")
    sentence = "; ".join(parts) + " (`provenance.sessions[].device`)"
    if len(counts) > 1 or (counts and unrecorded):
        sentence += "; devices round float32 differently (on the CPU, by instruction set and thread count), and training can amplify it: compare trained rows made on one device"
    return sentence[0].upper() + sentence[1:] + "."


def seeds_text(row: TableRow) -> str:
    """The row's seeds cell: the count, ` ⚠ seed N` for each outlier seed, then ` †` where every
    seed was taken as recorded, else ` † seed N` for each that was; `–` for a reported row."""
    if row.seeds is None:
        return "–"
    unchecked = f" {UNCHECKED}" if row.unchecked_seeds and len(row.unchecked_seeds) == row.seeds else "".join(f" {UNCHECKED} seed {seed}" for seed in row.unchecked_seeds)
    return str(row.seeds) + "".join(f" ⚠ seed {seed}" for seed in row.outlier_seeds) + unchecked


def any_unchecked(tables: list[TaskTable]) -> bool:
    """Whether some row of the tables has a seed taken as recorded."""
    return any(row.unchecked_seeds for table in tables for row in table.rows)


def render_markdown(tables: list[TaskTable], plots: dict[str, list[str]] | None = None) -> str:
    """The board as markdown; `plots` maps a task to image paths to link under its table."""
    lines = [
        "# vlbench leaderboard",
        "",
        f"Mean ± 95% CI over seeds (Student t), in %. {BOLD_NOTE}",
        f"{NO_INTERVAL_NOTE} *Reported* rows are published numbers (cited below each table), not measured here.",
        OUTLIER_NOTE,
    ]
    if any_unchecked(tables):
        lines.append(UNCHECKED_NOTE)
    lines += [note for note in (sources_note(tables), devices_note(tables)) if note]
    for table in tables:
        header = ["matcher", "shots", "seeds", "n", *table.columns]
        lines += ["", f"## {table.task}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in table.rows:
            label = f"*reported:* {row.label}" if row.reported else row.label
            lines.append("| " + " | ".join([label, row.shots, seeds_text(row), row.n, *(_format(cell) for cell in row.cells)]) + " |")
        cited = [row for row in table.rows if row.reported]
        if cited:
            lines += [""] + [f"- *{row.label}*: {row.citation}" for row in cited]
        if table.reported_apart:
            apart = table.reported_apart
            lines += ["", f"Reported under the paper's own metric names, not comparable with the columns above: {apart.note}", ""]
            lines += ["| " + " | ".join(["method", "shots", *apart.columns]) + " |", "|" + "---|" * (2 + len(apart.columns))]
            lines += ["| " + " | ".join([f"*reported:* {row.label}", row.shots, *(_format(cell) for cell in row.cells)]) + " |" for row in apart.rows]
            lines += [""] + [f"- *{row.label}*: {row.citation}" for row in apart.rows]
        if table.comparisons:
            against = table.baseline == ZERO_SHOT  # the baseline row differs per row only then
            header = ["matcher", "shots", "metric", "difference", "95% interval", "p", "pairs", "by seed", "across seeds", *(["against"] if against else [])]
            lines += ["", comparison_caption(table.baseline, table.resamples), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += [f"| {c.label} | {c.shots} | {c.metric} | {points(c.difference)} | {interval_text(c)} | {p_text(c.p_value, table.resamples)} | {pairs_text(c)} | {by_seed_text(c)} | {across_seeds_text(c)} |" + (f" {c.against} |" if against else "") for c in table.comparisons]
        if table.uncompared:
            lines += ["", uncompared_note(table)]
        images = (plots or {}).get(table.task, [])
        if images:
            lines += ["", PLOTS_NOTE]
        for image in images:
            lines += ["", f"![{table.task}]({image})"]
    return "\n".join(lines) + "\n"


PLOTS_NOTE = "Plots: each row's mean over its seeds, its bar the 95% CI over seeds (Student t) cut at 0 and 100%; a row of one seed has no bar. Shots are spaced as categories, not to scale."


def comparison_caption(baseline: str | None, resamples: int) -> str:
    """What the comparison table under a board compares (markdown and HTML share it)."""
    if baseline == ZERO_SHOT:
        pairing = (
            "Paired comparison of each trained row with the same matcher's zero-shot row on the examples both scored (each seed paired with "
            "the zero-shot run of its seed, or marked (mean) with the zero-shot row's mean over its seeds where the task's examples are the same "
            "under every seed, else left out, –"
        )
    else:
        pairing = f"Paired comparison with `{baseline}` at the same shots on the examples both scored (each seed paired with `{baseline}`'s run of its seed, – where it has none"
    return (
        f"{pairing}; each example averaged over the seeds that paired it). The difference is the metric's, in points (a headline that averages groups, as ComVG's "
        f"average does its swap types, as such); the interval a paired bootstrap's ({resamples:,} resamples of the units); p two-sided, "
        f"from {resamples:,} random sign flips of the units' differences (a paired permutation test; at best 1/{resamples + 1:,}). "
        "A unit is one example, or a cluster of examples linked through an image of their matching pairs (VQAv2's questions about one picture, "
        "ComVG's rows of one picture), whose outcomes are not independent (pairs: `N in U units`). "
        "Both hold each seed's trained model fixed: they vary the examples, not the training. How much the training seed (and its split) "
        "moves the difference shows by seed, and across seeds as the mean of the seeds' differences ± its Student-t 95% half-width, which holds "
        "the examples fixed instead (with three seeds, wide): a gain holds for other examples and other seeds only where both exclude 0."
    )


def p_text(p_value: float, resamples: int) -> str:
    """p to 4 decimals, as `≤ 1/(resamples + 1)` where no resample was as extreme as the observed difference."""
    floor = 1 / (resamples + 1)
    if p_value <= floor * (1 + 1e-9):
        return f"≤ {floor:.2g}"
    return f"{p_value:.4f}" if p_value >= 0.001 else f"{p_value:.2g}"


def pairs_text(comparison: Comparison) -> str:
    """The examples paired, and the units resampled where they are fewer (`356 in 60 units`)."""
    return f"{comparison.pairs}" + (f" in {comparison.units} units" if comparison.units < comparison.pairs else "")


def by_seed_text(comparison: Comparison) -> str:
    """Each seed's difference in points (`0: +1.58, 1: +8.07 (mean), 2: –`)."""
    return ", ".join(
        f"{seed}: " + ("–" if difference is None else points(difference) + (" (mean)" if seed in comparison.against_mean else ""))
        for seed, difference in comparison.by_seed.items()
    )


def across_seeds_text(comparison: Comparison) -> str:
    """The seeds' differences as mean ± Student-t 95% half-width (`+6.50 ± 10.79`); `–` for fewer than two."""
    if comparison.seed_half_width is None:  # None exactly where seed_mean is
        return "–"
    return f"{points(comparison.seed_mean)} ± {comparison.seed_half_width:.2f}"


def interval_text(comparison: Comparison) -> str:
    return f"[{points(comparison.low)}, {points(comparison.high)}]"


def points(value: float) -> str:
    """A signed difference in points to two decimals; one that rounds to zero is `+0.00` (a
    difference of exactly zero can come out of the float arithmetic as -1e-16)."""
    return f"{round(value, 2) + 0.0:+.2f}"


def cell_text(cell: Cell) -> str:
    """`mean ± half-width` (just the mean for one seed), in points; `(2 seeds)` after it where
    fewer of the row's seeds recorded the value."""
    return f"{cell.mean:.2f}" + (f" ± {cell.half_width:.2f}" if cell.half_width is not None else "") + (f" ({cell.seeds} seed{'s' if cell.seeds > 1 else ''})" if cell.seeds else "")


def _format(cell: Cell | None) -> str:
    if cell is None:
        return "–"
    return f"**{cell_text(cell)}**" if cell.best else cell_text(cell)


def render_csv(tables: list[TaskTable]) -> str:
    """One line per (row, column): task, matcher, shots, seeds, n (a tag column's: that tag's
    examples, `189/190/194` where seeds differ), column, mean, ci, reported,
    citation, the seeds taken as recorded (`unchecked_seeds`, space-separated) and the sources
    that computed them (`sources_sha256`) and the devices its runs ran on (`devices`, `; `-separated); then, with a baseline, one per paired comparison: the column is "METRIC difference",
    the mean the difference in points, n the examples paired, with its interval (low, high), p,
    the row it is `against`, each seed's difference (`by_seed`: `SEED:POINTS`, space-separated;
    `SEED:` not paired, `(mean)` against the zero-shot mean) and the units its bootstrap and sign
    flips resampled (`units`), and the mean of the seeds' differences with its Student-t 95%
    half-width (`seed_mean`, `seed_ci95`: two or more paired seeds)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["task", "matcher", "config_id", "shots", "seeds", "n", "column", "mean", "ci95", "best", "reported", "citation", "low", "high", "p", "against", "unchecked_seeds", "sources_sha256", "by_seed", "devices", "units", "seed_mean", "seed_ci95"])
    for table in tables:
        apart = table.reported_apart
        for columns, rows in ((table.columns, table.rows), (apart.columns, apart.rows) if apart else ([], [])):
            for row in rows:
                for column, cell in zip(columns, row.cells):
                    if cell is not None:
                        writer.writerow([table.task, row.label, row.config_id, row.shots, row.seeds or "", cell.n or row.n, column, f"{cell.mean:.4f}", "" if cell.half_width is None else f"{cell.half_width:.4f}", cell.best, row.reported, row.citation, "", "", "", "", " ".join(map(str, row.unchecked_seeds)), row.sources, "", "; ".join(dict.fromkeys(device for devices in row.devices for device in devices)), "", "", ""])
        for compared in table.comparisons:
            by_seed = " ".join(f"{seed}:{'' if difference is None else f'{difference:.4f}'}{'(mean)' if seed in compared.against_mean else ''}" for seed, difference in compared.by_seed.items())
            writer.writerow([table.task, compared.label, "", compared.shots, "", compared.pairs, f"{compared.metric} difference", f"{compared.difference:.4f}", "", "", False, "", f"{compared.low:.4f}", f"{compared.high:.4f}", f"{compared.p_value:.4g}", compared.against, "", "", by_seed, "", compared.units, *("" if value is None else f"{value:.4f}" for value in (compared.seed_mean, compared.seed_half_width))])
    return buffer.getvalue()


def render_json(tables: list[TaskTable]) -> str:
    import json

    return json.dumps([asdict(table) for table in tables], indent=1) + "\n"
