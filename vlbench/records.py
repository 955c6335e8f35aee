"""A run directory: resolved config, split, per-example scores, trained state, results.

Layout (one directory per task, matcher, resolved config, shots and seed)::

    config.yaml    the resolved run configuration
    identity.json  what the scores are a function of (see `vlbench.identity`)
    split.json     training and evaluation ids with their sha256
    scores.jsonl   one line per evaluated example, appended as it is scored
    examples.jsonl, thumbnails.jsonl, attention.jsonl   what the report shows (see `vlbench.example_records`)
    <file>.rank-R.jsonl   in a multi-process run, rank R's lines until rank 0 merges them
    state.pt       trained parameters (trainable matchers with shots > 0)
    state.sha256   the sha256 of state.pt as training stored it, checked when it is loaded
    sessions.jsonl one line per invocation that trained or scored (code, machine, data root);
                   a process of a multi-process run that stopped early writes sessions.rank-R.jsonl
    results.json   metrics, breakdowns, timings and provenance (schema in the README)

JSON and state files are replaced atomically; line files are append-only, and a line cut off
by a crash is dropped when the run resumes (before anything is appended after it). Readers see the union of `scores.jsonl` and any rank
shards, by example id, so a run killed before its shards were merged resumes where it stopped.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.hashing import short

RESULTS = "results.json"
SHARDED = ("scores", "examples", "thumbnails", "attention")  # append-only files a multi-process run writes per rank
STORED_WORK = ("scores.jsonl", "state.pt", "training-checkpoint.pt")  # besides rank shards of scores: a run was (partly) done
RECORDS = ("results.json", "state.pt", "state.sha256", "training-checkpoint.pt", "sessions.jsonl", "split.json", "config.yaml", "identity.json")


@dataclass(frozen=True)
class ScoredExample:
    """One line of `scores.jsonl`: enough to recompute every metric without data or model."""

    id: str
    scores: list[list[float]]
    positives: list[list[int]]
    tags: dict[str, str]

    def to_line(self) -> str:
        return json.dumps({"id": self.id, "scores": self.scores, "positives": self.positives, "tags": self.tags}) + "\n"


class RunDirectory:
    """The files of one run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def scores_path(self) -> Path:
        return self.path / "scores.jsonl"

    @property
    def state_path(self) -> Path:
        return self.path / "state.pt"

    def store_state(self, state: Any) -> None:
        """Store trained state as `state.pt`, after `state.sha256`: its sha256 and the run it
        belongs to (`state_owner`)."""
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        self.write_text("state.sha256", f"{hashlib.sha256(data).hexdigest()} {self.state_owner()}\n")
        write_atomically(self.state_path, lambda handle: handle.write(data))

    def load_state(self) -> Any:
        """The trained state in `state.pt`, refused unless it is what training stored for this run
        (`store_state`)."""
        import torch

        data = self.state_path.read_bytes()
        recorded = (self.path / "state.sha256").read_text().split() if self.exists("state.sha256") else []
        actual = [hashlib.sha256(data).hexdigest(), *self.state_owner().split()]
        if recorded != actual:
            what = "its sha256 is not recorded" if not recorded else f"sha256 {short(recorded[0])} → {short(actual[0])}" if recorded[0] != actual[0] else "stored for another run or split"
            raise VlbenchError(f"{self.state_path} is not the trained state this run stored ({what}): edited, copied from another run, or stored by an older vlbench; --restart to train again")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def state_owner(self) -> str:
        """The run and split trained state belongs to: `identity.json`'s config_id and
        `split.json`'s split_sha256 (both written before training)."""
        return f"{self.read_json('identity.json').get('config_id')} {self.read_json('split.json').get('split_sha256')}"

    def recorded_code(self) -> dict[str, str] | None:
        """The sha256 of each source file that computed the run, as its `identity.json` records
        them (None where it records none: an older vlbench, or the file is missing)."""
        return self.read_json("identity.json").get("inputs", {}).get("code") if self.exists("identity.json") else None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "training-checkpoint.pt"

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def read_json(self, name: str) -> Any:
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            if name == RESULTS and self.holds_records():
                raise VlbenchError(f"{path} not found: {self.path} is an unfinished run (scores or training stored, no results); run its command again to finish it") from None
            raise VlbenchError(f"{path} not found: is {self.path} a vlbench run directory?") from None
        except json.JSONDecodeError as error:
            raise VlbenchError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from None

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this run exclusively; a second process on the same run gets a clear error."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "run.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise VlbenchError(f"another process is already running this run ({self.path}); wait for it or stop it") from None
            yield

    def holds_records(self) -> bool:
        """Whether a run was stored here: scores (or their shards), trained state (or a training
        checkpoint) or results."""
        return any(self.exists(name) for name in (*STORED_WORK, RESULTS)) or any(_shards(self.path, "scores"))

    def discard_records(self) -> None:
        """Delete everything a run stored here (`--restart`), keeping the lock held by the caller."""
        for stem in (*SHARDED, "sessions"):
            for path in (self.path / f"{stem}.jsonl", *_shards(self.path, stem)):
                path.unlink(missing_ok=True)
        for name in RECORDS:
            (self.path / name).unlink(missing_ok=True)

    def append_session(self, session: dict[str, Any], rank: int | None = None) -> None:
        """Append one invocation's line to `sessions.jsonl`, or with `rank` to that rank's own file
        (ranks stopping at once never write into one file)."""
        with self.line_appender("sessions", rank) as append:
            append([json.dumps(session) + "\n"])

    def sessions(self) -> list[dict[str, Any]]:
        """Every invocation's line (`sessions.jsonl` and the ranks' files), oldest first."""
        lines = [session for path in (self.path / "sessions.jsonl", *_shards(self.path, "sessions")) for session in _read_jsonl(path, ())]
        return sorted(lines, key=lambda session: str(session.get("created", "")))

    def read_scores(self) -> dict[str, ScoredExample]:
        """The scored examples so far, by id, from `scores.jsonl` and any rank shards."""
        return {
            example_id: ScoredExample(item["id"], item["scores"], item["positives"], item["tags"])
            for example_id, item in self.read_lines("scores", ("id", "scores", "positives", "tags")).items()
        }

    def read_lines(self, stem: str, required: Sequence[str] = ("id",)) -> dict[str, dict[str, Any]]:
        """The records of `<stem>.jsonl` and its rank shards, by id (the first of any repeats)."""
        records: dict[str, dict[str, Any]] = {}
        for path in (self.path / f"{stem}.jsonl", *_shards(self.path, stem)):
            for item in _read_jsonl(path, required):
                records.setdefault(item["id"], item)
        return records

    def own_lines(self, stem: str, rank: int | None) -> dict[str, dict[str, Any]]:
        """The records of the files a process of `rank` may read while other ranks append: the
        merged `<stem>.jsonl` (appended to only without ranks) and its own shard."""
        paths = [self.path / f"{stem}.jsonl"] + ([self.path / shard_name(stem, rank)] if rank is not None else [])
        return {item["id"]: item for path in paths for item in _read_jsonl(path, ("id",))}

    def merge_shards(self) -> None:
        """Fold each file's rank shards into it (each id once), then delete them. A crash at any
        point leaves files whose union is unchanged."""
        for stem in SHARDED:
            shards = _shards(self.path, stem)
            if shards:
                merged = self.read_lines(stem)
                atomic_write_text(self.path / f"{stem}.jsonl", "".join(json.dumps(item) + "\n" for item in merged.values()))
                for shard in shards:
                    shard.unlink()

    @contextmanager
    def score_appender(self, rank: int | None = None) -> Iterator[Any]:
        """Yields `append(scored: Sequence[ScoredExample])`, writing to `scores.jsonl`, or with
        `rank` to that rank's shard; each call is flushed to the OS, so a killed process loses
        nothing it appended."""
        with self.line_appender("scores", rank) as append:
            yield lambda scored: append([item.to_line() for item in scored])

    @contextmanager
    def line_appender(self, stem: str, rank: int | None = None) -> Iterator[Any]:
        """Yields `append(lines: Sequence[str])` onto `<stem>.jsonl`, or `<stem>.rank-R.jsonl`."""
        path = self.path / (f"{stem}.jsonl" if rank is None else shard_name(stem, rank))
        _cut_torn_tail(path)
        with open(path, "a") as handle:
            def append(lines: Sequence[str]) -> None:
                handle.write("".join(lines))
                handle.flush()

            yield append
            os.fsync(handle.fileno())


def shard_name(stem: str, rank: int | str) -> str:
    """The file rank `rank` of a multi-process run appends its `<stem>` lines to; rank `"*"` makes the glob of every rank's."""
    return f"{stem}.rank-{rank}.jsonl"


def _shards(directory: Path, stem: str) -> list[Path]:
    return sorted(directory.glob(shard_name(stem, "*")), key=lambda path: int(path.name.split(".")[1][5:]))


def _cut_torn_tail(path: Path) -> None:
    """Drop a partial last line (a write cut off by a crash, a full disk) before appending after
    it, which would otherwise glue the next record onto it in the middle of the file."""
    try:
        with open(path, "r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0 or (handle.seek(size - 1), handle.read(1))[1] == b"\n":
                return
            handle.seek(0)
            handle.truncate(handle.read().rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


def _read_jsonl(path: Path, required: Sequence[str]) -> list[dict[str, Any]]:
    """The records of one append-only JSON-lines file. A partial last line (a crash mid-write) is cut off."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    records = []
    for number, line in enumerate(complete.decode().splitlines(), start=1):
        try:
            item = json.loads(line)
            missing = [key for key in required if key not in item]
        except json.JSONDecodeError as error:
            raise VlbenchError(f"{path}, line {number}: damaged record ({error})") from None
        if missing:
            raise VlbenchError(f"{path}, line {number}: damaged record (no {', '.join(missing)})")
        records.append(item)
    return records


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old file or the new one, never a mix."""
    write_atomically(path, lambda handle: handle.write(text.encode()))


def write_atomically(path: Path, write, durable: bool = True) -> None:
    """Call `write(binary_handle)` on a temporary file next to `path`, then rename it over `path`
    (after an fsync unless `durable` is false, as for caches that can be recomputed; durable, the
    directory is synced after the rename too). The file gets the mode a plain `open` would give it
    (the umask's), not the temporary file's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (where the platform can open a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # file systems that cannot sync a directory
        pass
    finally:
        os.close(descriptor)


def writable_directory(path: Path) -> str | None:
    """Why files cannot be written into `path` (created if missing), or None: the nearest existing
    ancestor must be a directory where a probe file can be created (permissions, a read-only
    mount, …). Nothing is left behind."""
    path = Path(path).absolute()
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{existing} is not writable ({error.strerror}); choose a directory you can write to"
    return None


def writable_file(path: Path, flag: str) -> None:
    """Refuse (naming `flag`) an output file that is a directory or cannot be written."""
    if Path(path).is_dir():
        raise VlbenchError(f"{flag} {path}: is a directory; give a file name")
    problem = writable_directory(Path(path).absolute().parent)
    if problem:
        raise VlbenchError(f"{flag} {path}: {problem}")


@functools.cache
def _umask() -> int:
    """The process's umask (reading it means setting it; done once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
