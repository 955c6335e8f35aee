"""The one reader of stored runs: a run directory's `results.json` as a typed record, the ids it
evaluated, its scores and its per-example outcomes. The runner, `vlbench score`, the leaderboard
and the report all read runs through it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlbench.errors import VlbenchError
from vlbench.metrics import compute_metrics
from vlbench.records import RESULTS, STORED_WORK, RunDirectory, ScoredExample, shard_name
from vlbench.splits import LIMIT_SAMPLE, evaluation_ids

if TYPE_CHECKING:
    from vlbench.types import Task

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Protocol:
    """`results.json` → `protocol`: how the split was made, its sizes, and the training settings."""

    split: str
    shots: str
    seed: int
    n_train: int
    n_eval: int
    dropped_for_shared_images: int
    split_sha256: str
    limit: int | None
    train: dict[str, Any] | None
    limit_sample: str | None = None  # how --limit sampled (`splits.evaluation_ids`); absent before `by-id`


@dataclass(frozen=True)
class RunRecord:
    """A run's `results.json` (schema in the README), typed."""

    directory: Path
    config_id: str
    task: str
    task_options: dict[str, Any]
    headline: str
    matcher: str
    model: str | None
    trained: bool
    protocol: Protocol
    n: int
    metrics: dict[str, float]
    breakdown: dict[str, dict[str, dict[str, float]]]
    skipped_ids: tuple[str, ...]
    data: dict[str, Any]  # the whole document, for fields no reader needs typed

    @classmethod
    def parse(cls, data: dict[str, Any], directory: Path) -> RunRecord:
        where = directory / RESULTS
        if data.get("schema_version") != SCHEMA_VERSION:
            raise VlbenchError(f"{where}: schema version {data.get('schema_version')}, but this vlbench reads {SCHEMA_VERSION}; re-run the run with --restart (its scores cannot be trusted to match this code)")
        try:
            protocol = data["protocol"]
            return cls(
                directory=directory,
                config_id=data["config_id"],
                task=data["task"]["name"],
                task_options=data["task"]["options"],
                headline=data["task"]["headline"],
                matcher=data["matcher"]["name"],
                model=data["matcher"]["fingerprint"].get("model"),
                trained=data["matcher"]["trained"],
                protocol=Protocol(**{name: protocol[name] for name in Protocol.__dataclass_fields__ if name != "limit_sample"}, limit_sample=protocol.get("limit_sample")),
                n=data["n"],
                metrics=data["metrics"],
                breakdown=data["breakdown"],
                skipped_ids=tuple(item["id"] for item in data["skipped"]),
                data=data,
            )
        except (KeyError, TypeError) as error:
            raise VlbenchError(f"{where}: not a vlbench results record (missing {error})") from None

    @property
    def seed(self) -> int:
        return self.protocol.seed

    @property
    def sources(self) -> str:
        """`code.sources_sha256`: which code (vlbench's and its plugins') computed the scores (`unrecorded` before it was recorded)."""
        return self.data.get("code", {}).get("sources_sha256") or "unrecorded"

    @property
    def devices(self) -> list[str]:
        """The distinct devices its sessions ran on (`provenance.sessions[].device`), in order of
        first use; empty where none says."""
        sessions = self.data.get("provenance", {}).get("sessions", [])
        return list(dict.fromkeys(session["device"] for session in sessions if session.get("device")))

    @property
    def shots(self) -> str:
        return self.protocol.shots

    @property
    def data_key(self) -> str:
        """Which data the run evaluated on: the task, its version and its options. Runs of one task
        with different keys saw different examples (even where example ids agree, as a
        mini-world's do across world seeds), so they are never ranked or paired together. The
        data fingerprint is not part of it: it covers the training pool too (absent at zero
        shots) and, where negatives are drawn per seed (RefCOCOg, official VQAv2), the seed."""
        task = self.data["task"]
        return json.dumps([task["name"], task.get("version"), task["options"]], sort_keys=True)

    @property
    def evaluation_data(self) -> tuple[str, int | None] | None:
        """The fingerprint of the run's evaluation pool and the seed it holds for (None where the
        task's examples do not vary by seed: then every seed's); None for a run stored before it
        was recorded. Runs on one `data_key` that share this seed must share the fingerprint."""
        task = self.data["task"]
        if "evaluation_fingerprint" not in task:
            return None
        return task["evaluation_fingerprint"], (self.seed if self.examples_vary_by_seed else None)

    @property
    def examples_vary_by_seed(self) -> bool:
        """Whether the run's task draws other evaluation examples for another seed (so assumed for
        a run stored before it was recorded)."""
        return self.data["task"].get("examples_vary_by_seed", True)

    @property
    def inputs_key(self) -> str:
        """What the run's scores were computed from, besides its seed and data (`data_key`): the
        matcher (its code's version, weights, options), the task's code version, the source files of
        vlbench and its plugins (`code`, absent before it was recorded) and the library versions of its sessions. The
        seeds of one configuration must agree on it to be averaged. So must the fingerprint of its
        data, training pool included (a `train_file` edited between seeds), where the task's
        examples do not vary by seed; where they do, that of the files they were drawn from
        (`source_fingerprint`, for a task that names them: `Task.source_files`)."""
        left_out = ("evaluation_fingerprint", "examples_vary_by_seed", "headline", *(("data_fingerprint",) if self.examples_vary_by_seed else ()))
        task = {key: value for key, value in self.data["task"].items() if key not in left_out}
        sessions = self.data.get("provenance", {}).get("sessions", [])
        libraries = [json.loads(text) for text in sorted({json.dumps(session.get("libraries"), sort_keys=True) for session in sessions})]
        return json.dumps({"task": task, "matcher": self.data["matcher"], "code": self.data.get("code"), "libraries": libraries}, sort_keys=True)

    @property
    def settings(self) -> dict[str, Any]:
        """What a user chose for this configuration beyond matcher, model, shots and data: the
        matcher's options, the training settings (as `train.<name>`), the split protocol and `--limit`."""
        train = {f"train.{name}": value for name, value in (self.protocol.train or {}).items()}
        limit = self.protocol.limit if self.limit_sample in (None, LIMIT_SAMPLE) else f"{self.protocol.limit} ({self.limit_sample} sample)"
        return {**self.data["matcher"]["fingerprint"].get("options", {}), **train, "split": self.protocol.split, "limit": limit}

    @property
    def limit_sample(self) -> str | None:
        """How the run's `--limit` sample was drawn (None without a limit): runs of one limit drawn
        otherwise scored other examples."""
        return None if self.protocol.limit is None else self.protocol.limit_sample or "positions"

    @property
    def limited(self) -> bool:
        """Whether the run evaluated a sample of its split's evaluation examples (`--limit`)."""
        return self.protocol.limit is not None and self.protocol.limit < self.protocol.n_eval


def configuration_names(records: Sequence[RunRecord]) -> dict[str, str]:
    """Per configuration id among `records` (runs of one matcher and model): the settings that
    tell it from the others, as "name=value, …" (`RunRecord.settings`; "default" for an option a
    record leaves out, `options.ADDED_LATER`), or its id where those agree (e.g. other weights
    under one model name)."""
    settings = {record.config_id: record.settings for record in records}
    differing = sorted({name for one in settings.values() for name in one if any(other.get(name) != one.get(name) for other in settings.values())})
    names = {config: ", ".join(f"{name}={_setting(name, one)}" for name in differing) for config, one in settings.items()}
    taken = list(names.values())
    return {config: name if name and taken.count(name) == 1 else config for config, name in names.items()}


def _setting(name: str, settings: dict[str, Any]) -> str:
    """A setting's value as a label shows it: "default" where absent (an option added later, at
    its default), "all" for no `--limit`."""
    if name not in settings:
        return "default"
    if name == "limit" and settings[name] is None:
        return "all"
    return str(settings[name])


class StoredRun:
    """One run directory, read lazily: its record, split, scores and outcomes."""

    def __init__(self, directory: Path) -> None:
        self.files = RunDirectory(directory)

    @property
    def directory(self) -> Path:
        return self.files.path

    @cached_property
    def record(self) -> RunRecord:
        return RunRecord.parse(self.files.read_json(RESULTS), self.directory)

    @cached_property
    def split(self) -> dict[str, Any]:
        return self.files.read_json("split.json")

    def evaluated_ids(self) -> list[str]:
        """The evaluation examples this run's metrics cover, in split order."""
        skipped = set(self.record.skipped_ids)
        chosen = evaluation_ids(self.split["eval_ids"], self.record.protocol.limit, self.record.seed, self.record.limit_sample or LIMIT_SAMPLE)
        return [example_id for example_id in chosen if example_id not in skipped]

    @cached_property
    def scores(self) -> dict[str, ScoredExample]:
        return self.files.read_scores()

    def evaluated_scores(self) -> list[ScoredExample]:
        """The stored scores of every evaluated example; an example without them, or scores of an
        example outside them, is an error."""
        evaluated = self.evaluated_ids()
        foreign = sorted(set(self.scores) - set(evaluated) - set(self.record.skipped_ids))  # a skipped example scored by a later session is its own
        if foreign:
            raise VlbenchError(f"{self.files.scores_path} holds scores of {len(foreign)} examples outside this run's evaluation examples (first: '{foreign[0]}'): the files of two runs mixed; re-run it with --restart")
        missing = [example_id for example_id in evaluated if example_id not in self.scores]
        if missing:
            raise VlbenchError(f"{self.files.scores_path} lacks {len(missing)} evaluation examples (first: '{missing[0]}'); re-run the run to finish it")
        return [self.scores[example_id] for example_id in evaluated]

    @cached_property
    def task(self) -> Task:
        """The run's task with its recorded options (no data: what its metrics need); refused where
        this vlbench cannot judge the run's examples as it did (`judging_problem`)."""
        from vlbench import registry
        from vlbench.options import build

        if self.judging_problem:
            raise VlbenchError(f"{self.directory}: judging its examples needs {self.judging_problem}")
        task_class = registry.tasks.get(self.record.task)
        return task_class(build(task_class.Options, self.record.task_options, f"{self.directory / RESULTS} task.options"), None)

    @cached_property
    def judging_problem(self) -> str:
        """Why this vlbench cannot judge the run's examples as the run did ('' where it can): its
        task's code is not installed, or is at another version (whose outcomes may differ)."""
        from vlbench import registry

        task = self.record.data["task"]
        if self.record.task not in registry.tasks.names():
            return f"the code of task '{self.record.task}', from {task.get('distribution')} {task.get('distribution_version')}, which is not installed here (install it, or leave these runs out)"
        installed = str(registry.tasks.get(self.record.task).version)
        if installed != str(task.get("version")):
            return (
                f"the code of task '{self.record.task}' at version {task.get('version')}, which stored it; this vlbench has version {installed}, whose outcomes may differ "
                "(re-run the run with --restart, or use the vlbench that stored it)"
            )
        return ""

    @cached_property
    def outcomes(self) -> dict[str, dict[str, float]]:
        """Per evaluated example, the task's per-example metric values."""
        return {item.id: self.task.outcomes(item.scores, item.positives) for item in self.evaluated_scores()}

    def check_records(self) -> None:
        """Refuse a run whose `results.json` says another configuration, seed or split than its
        other files (`identity.json`, `config.yaml`, `split.json`, each where present): an edited
        or mixed record would otherwise be labelled, grouped or averaged as what it says."""
        from vlbench.identity import RunIdentity, fingerprint_digest

        record, protocol = self.record, self.record.data["protocol"]
        where = self.directory / RESULTS
        pairs: list[tuple[str, Any, str, Any]] = []
        if self.files.exists("identity.json"):
            identity = self.files.read_json("identity.json")
            config = identity.get("config", {})
            pairs += [
                ("config_id", record.config_id, "identity.json's config_id", identity.get("config_id")),
                ("config_id", record.config_id, "the hash of identity.json's configuration", RunIdentity(config, {}).config_id),
                ("task.name", record.task, "identity.json's task", config.get("task")),
                ("task.options", record.task_options, "identity.json's task_options", config.get("task_options")),
                ("matcher.name", record.matcher, "identity.json's matcher", config.get("matcher")),
                ("matcher.fingerprint.options", record.data["matcher"]["fingerprint"].get("options"), "identity.json's matcher_options", config.get("matcher_options")),
                *((f"protocol.{name}", protocol.get(name), f"identity.json's {name}", config.get(name)) for name in ("shots", "split", "limit", "train")),
            ]
            inputs = identity.get("inputs", {})
            if "fingerprint" in inputs.get("matcher", {}):
                pairs.append(("matcher.fingerprint", record.data["matcher"]["fingerprint"], "identity.json's matcher fingerprint", inputs["matcher"]["fingerprint"]))
            if "data" in inputs.get("task", {}):  # an older identity's fingerprint of rendered images lacks the prefix
                pairs.append(("task.data_fingerprint", fingerprint_digest(record.data["task"].get("data_fingerprint")), "identity.json's data fingerprint", fingerprint_digest(inputs["task"]["data"])))
            if "code" in inputs and "code" in record.data:
                from vlbench.provenance import sources_sha256

                pairs.append(("code.sources_sha256", record.data["code"].get("sources_sha256"), "the hash of identity.json's source files", sources_sha256(inputs["code"])))
        if self.files.exists("config.yaml"):
            from vlbench.config import read_yaml

            pairs.append(("protocol.seed", record.seed, "config.yaml's seed", read_yaml(self.files.path / "config.yaml").get("seed")))
        if self.files.exists("split.json"):
            split = self.split
            summary = ("split", "shots", "seed", "n_train", "n_eval", "dropped_for_shared_images", "split_sha256")
            pairs += [(f"protocol.{name}", protocol.get(name), f"split.json's {name}", split[name]) for name in summary if name in split]
            pairs += [(f"protocol.{size}", protocol.get(size), f"split.json's {ids}", len(split[ids])) for size, ids in (("n_eval", "eval_ids"), ("n_train", "train_ids")) if size in split]
        for name, recorded, source, other in pairs:
            if json.dumps(recorded, sort_keys=True) != json.dumps(other, sort_keys=True):
                raise VlbenchError(f"{where} records {name} {json.dumps(recorded, sort_keys=True)} where {source} is {json.dumps(other, sort_keys=True)}: the run's files disagree (mixed from two runs, or edited); re-run it with --restart")

    def check_metrics(self) -> bool:
        """Refuse a run whose files disagree (`check_records`), or whose `results.json` does not
        hold what its stored scores give (n, metrics, breakdown): the files of two runs mixed, or one
        edited. Returns whether its numbers were checked against its scores. Taken as they are: a run stored
        without scores (a results file alone), and one whose task this vlbench lacks (a plugin not
        installed here) or has at another version (`judging_problem`)."""
        self.check_records()
        if not self.scores or self.judging_problem:
            return False
        scored = self.evaluated_scores()
        metrics, breakdown = compute_metrics(self.task, scored)
        recorded = {"n": self.record.n, **self.record.metrics, **_flat(self.record.breakdown)}
        computed = {"n": len(scored), **metrics, **_flat(breakdown)}
        differing = [name for name in dict.fromkeys([*recorded, *computed]) if json.dumps(recorded.get(name)) != json.dumps(computed.get(name))]
        if differing:
            name = differing[0]
            found = f"{self.directory / RESULTS} records {name} {_shown(recorded.get(name))} where its scores give {_shown(computed.get(name))}{f' ({len(differing) - 1} more differ)' if len(differing) > 1 else ''}"
            changed = self.changed_code()
            if changed:
                raise VlbenchError(
                    f"{found} by today's code, which differs from the code that stored the run ({changed}): if a change altered the task's outcomes, bump its version "
                    f"(runs stored before are then taken as recorded, †) or re-run the run with --restart; if not, the run's files disagree (mixed from two runs, or edited)"
                )
            raise VlbenchError(f"{found}: the run's files disagree (mixed from two runs, or edited); `vlbench score {self.directory}` rewrites its results from its scores, if the scores are the ones to keep")
        return True

    def changed_code(self) -> str:
        """Which of the files the run's `identity.json` recorded (vlbench's and its task plugin's)
        differ today, as a phrase ('' for none, or none recorded)."""
        from vlbench import registry
        from vlbench.identity import differing_files
        from vlbench.provenance import run_code_sha256

        stored = self.files.recorded_code()
        if stored is None:
            return ""
        today = run_code_sha256(registry.tasks.get(self.record.task))
        return differing_files({name: digest for name, digest in stored.items() if name in today}, today)

def _flat(breakdown: dict[str, Any]) -> dict[str, Any]:
    """A breakdown's values by "tag=value metric" name."""
    return {f"{tag}={value} {name}": number for tag, values in breakdown.items() for value, group in values.items() for name, number in group.items()}


def _shown(value: Any) -> str:
    return "nothing" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def unfinished_runs(roots: Sequence[Path]) -> list[Path]:
    """Run directories under `roots` holding scores, trained state or a training checkpoint but no
    `results.json` (interrupted, or still running): boards leave them out."""
    patterns = (*STORED_WORK, shard_name("scores", "*"))
    found = {path.parent for root in roots if Path(root).is_dir() for pattern in patterns for path in Path(root).rglob(pattern)}
    return sorted(directory for directory in found if not (directory / RESULTS).exists())


def find_runs(roots: Sequence[Path]) -> list[StoredRun]:
    """Every run (a directory holding `results.json`) under `roots`, sorted by path."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if root.is_file() and root.name == RESULTS:
            found.add(root.parent)
        elif root.is_dir():
            found.update(path.parent for path in root.rglob(RESULTS))
        else:
            raise VlbenchError(f"{root}: no such run directory or results file")
    if not found:
        unfinished = unfinished_runs(roots)
        there = f"; {len(unfinished)} unfinished run(s) there (scores or training stored, no results.json), e.g. {unfinished[0]}: run their commands again to finish them" if unfinished else "; run `vlbench run` first"
        raise VlbenchError(f"no results.json found under {', '.join(str(root) for root in roots)}{there}")
    return [StoredRun(directory) for directory in sorted(found)]
