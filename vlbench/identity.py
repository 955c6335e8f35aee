"""What a run's stored scores are a function of, and the check that refuses to resume when it changed.

A run has two parts of identity:
- its configuration (task, task options, matcher, matcher options, `--model`, shots, split
  protocol, limit, training settings): hashed into `config_id`, which names the run directory;
- its inputs: the code that scores (the distribution and version providing the matcher and the
  task, and their own `version`, the sha256 of vlbench's source files and of the plugin packages
  defining the matcher and the task, and the versions of the libraries the scores depend on), the
  model's weights (a content hash), and the task's data (a fingerprint of the examples read).
  Stored in `identity.json`; a resumed run whose inputs differ is refused with one line naming
  what changed.

Batch size, device and number of processes are in neither: they must not change scores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench.hashing import many_files_sha256, short

RESTART_HINT = "use another --runs-dir, or --restart to discard them"
IMAGE_BYTES = "image-bytes:"


@dataclass(frozen=True)
class RunIdentity:
    config: dict[str, Any]
    inputs: dict[str, Any]

    @property
    def config_id(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:10]

    def to_record(self) -> dict[str, Any]:
        """The content of `identity.json`."""
        return {"config_id": self.config_id, "config": self.config, "inputs": self.inputs}


def component_identity(name: str, component: type, entry, **details: Any) -> dict[str, Any]:
    """Who provides a task or matcher and at which version (`entry`: its registry entry)."""
    return {"name": name, "distribution": entry.distribution, "distribution_version": entry.version, "version": component.version, **details}


def examples_fingerprint(examples: Sequence) -> str:
    """A hash of what the examples are: ids, texts, matching pairs, tags, image keys and crops, and
    the bytes of each image file (an image replaced by another, even of the same size, changes it;
    read once and then cached by `hashing.many_files_sha256`). It starts with `IMAGE_BYTES`, which
    an older vlbench's fingerprints (of image file sizes) lack."""
    contents = many_files_sha256(image_files(examples))
    digest = hashlib.sha256()
    for example in examples:
        images = [[ref.key, list(ref.crop) if ref.crop else None, contents.get(ref.path)] for ref in example.images]
        line = [example.id, list(example.texts), [list(pair) for pair in example.positives], dict(sorted(example.tags.items())), images]
        digest.update(json.dumps(line, separators=(",", ":")).encode() + b"\n")
    return IMAGE_BYTES + digest.hexdigest()


def image_files(examples: Sequence) -> list[Path]:
    """The image files the examples name, each once, in order of first mention."""
    return list(dict.fromkeys(ref.path for example in examples for ref in example.images if ref.path is not None))


def files_fingerprint(paths: Sequence[Path]) -> str | None:
    """A hash of the files' bytes, in the order given (not of their paths: a data root moved
    elsewhere keeps it); None for no files. Cached as `examples_fingerprint`'s image hashes are."""
    unique = list(dict.fromkeys(Path(path) for path in paths))
    if not unique:
        return None
    contents = many_files_sha256(unique)
    return hashlib.sha256(json.dumps([contents[path] for path in unique]).encode()).hexdigest()


def changed_inputs(stored: dict[str, Any], current: dict[str, Any], model: str | None, where_data_differs: Callable[[], str]) -> str | None:
    """What differs first between the stored and the current inputs (`inputs` of `identity.json`),
    as a phrase for the refusal; None when they agree. For changed data, `where_data_differs()`
    adds where (`first_changed_example`)."""
    for kind in ("matcher", "task"):
        old, new = stored.get(kind, {}), current[kind]
        name = f"{kind} '{new['name']}'"
        if (old.get("distribution"), old.get("distribution_version")) != (new["distribution"], new["distribution_version"]):
            return f"{name} comes from {new['distribution']} {new['distribution_version']} now, from {old.get('distribution')} {old.get('distribution_version')} when these scores were stored"
        if old.get("version") != new["version"]:
            change = "how it scores" if kind == "matcher" else "what its examples or metrics are"
            return f"{name} changed {change} (version {old.get('version')} → {new['version']}) since these scores were stored"
    code = changed_code(stored.get("code"), current["code"])  # before the rest: other code may hash or fingerprint otherwise
    if code is not None:
        return code
    old_data, new_data = stored.get("task", {}).get("data"), current["task"]["data"]
    if old_data == fingerprint_digest(new_data):  # stored before IMAGE_BYTES by a task with no image files: the same hash
        old_data = new_data
    if old_data != new_data and new_data.startswith(IMAGE_BYTES) and not str(old_data).startswith(IMAGE_BYTES):
        return f"these scores were stored by an older vlbench, which fingerprinted the data of task '{current['task']['name']}' by its image files' sizes, not their bytes: it cannot show whether the images changed since"
    if old_data != new_data:
        return f"the data of task '{current['task']['name']}' changed since these scores were stored (examples fingerprint {short_fingerprint(old_data)} → {short_fingerprint(new_data)}; {where_data_differs()})"
    old_libraries, new_libraries = stored.get("libraries"), current["libraries"]
    if old_libraries is None:
        return "these scores were stored without a record of the library versions that computed them (an older vlbench)"
    for library in sorted(old_libraries.keys() | new_libraries.keys()):
        if old_libraries.get(library) != new_libraries.get(library):
            return f"{library} is at version {new_libraries.get(library)} now, at {old_libraries.get(library)} when these scores were stored"
    old_print, new_print = stored.get("matcher", {}).get("fingerprint", {}), current["matcher"]["fingerprint"]
    if "weights_sha256" in new_print and "weights_sha256" not in old_print:
        return f"these scores were stored by an older vlbench, which did not hash the files of --model {model}: it cannot show whether the weights changed since"
    if old_print.get("weights_sha256") != new_print.get("weights_sha256"):
        return f"weights of --model {model} changed since these scores were stored (sha256 {short(old_print.get('weights_sha256'))} → {short(new_print.get('weights_sha256'))})"
    for key in sorted(old_print.keys() | new_print.keys()):
        if old_print.get(key) != new_print.get(key):
            return f"matcher '{current['matcher']['name']}': its {key} changed since these scores were stored ({_brief(old_print.get(key))} → {_brief(new_print.get(key))})"
    return None


def changed_code(old: dict[str, str] | None, new: dict[str, str]) -> str | None:
    """Which of the source files of vlbench and its plugins (`provenance.source_files_sha256`,
    `provenance.component_sources`) differ, as a phrase."""
    if old is None:
        return "these scores were stored by an older vlbench, which did not record its source files: it cannot show whether the code that computed them changed since"
    files = differing_files(old, new)
    return f"{files.split('/')[0].split('.')[0]}'s code changed since these scores were stored ({files})" if files else None


def differing_files(old: dict[str, str], new: dict[str, str]) -> str:
    """The source files (by name, to sha256) that differ between `old` and `new`, as a phrase
    naming the first, vlbench's before a plugin's, and whether it is new or gone ('' for none)."""
    differing = sorted((name for name in old.keys() | new.keys() if old.get(name) != new.get(name)), key=lambda name: (not name.startswith("vlbench"), name))
    if not differing:
        return ""
    first = differing[0] + (" is new" if differing[0] not in old else " is gone" if differing[0] not in new else " differs")
    return f"{first}, and {len(differing) - 1} more files differ" if len(differing) > 1 else first


def first_changed_example(stored_examples: dict[str, dict[str, Any]], stored_scores: dict[str, Any], examples: Sequence) -> str:
    """Where data that no longer has the stored fingerprint differs from the run's stored records
    (`examples.jsonl` lines and `scores.jsonl`'s scored examples, by id), as a phrase: the first
    stored example that is gone or whose texts, image keys, matching pairs or tags changed, or what
    the records cannot show."""
    current = {example.id: example for example in examples}
    for example_id, line in stored_examples.items():
        example = current.get(example_id)
        if example is None:
            return f"stored example '{example_id}' is no longer in the data"
        scored = stored_scores.get(example_id)
        for what, old, new in (
            ("texts", line.get("texts"), list(example.texts)),
            ("image keys", [image.get("key") for image in line.get("images", [])], list(example.image_keys)),
            ("matching pairs", scored and scored.positives, [list(pair) for pair in example.positives]),
            ("tags", scored and scored.tags, dict(example.tags)),
        ):
            if old is not None and old != new:
                return f"example '{example_id}': its {what} {_brief(old)} → {_brief(new)}"
    return f"the {len(stored_examples)} stored examples' texts, image keys, matching pairs and tags are unchanged: an image file's bytes or an image's crop changed, or examples not scored yet or in the training pool did"


def ranks_disagreement(processes: Sequence[dict[str, Any]]) -> str | None:
    """Where the processes of one run (`{"rank", "host", "inputs", "data"}` each, in rank order:
    its identity's inputs, and the data fingerprint its node computed, or None on a node's other
    processes) do not compute from rank 0's inputs, as a refusal; None where they all do."""
    main = processes[0]
    for process in processes[1:]:
        theirs_on, ours_on = f"rank {process['rank']} (on {process['host']})", f"rank 0 (on {main['host']})"
        difference = first_difference(main["inputs"], process["inputs"])
        if difference is not None:
            return f"the processes of this run compute from different inputs, {ours_on} → {theirs_on}: {difference}; every process must load the same model, code and libraries. Nothing was stored"
        if process["data"] is not None and process["data"] != main["inputs"]["task"]["data"]:
            return (
                f"the processes of this run read different data: the data of task '{main['inputs']['task']['name']}' has fingerprint {short_fingerprint(process['data'])} on {theirs_on}, "
                f"{short_fingerprint(main['inputs']['task']['data'])} on {ours_on}; every node must read the same files (a node's own copy of the data root: make it identical). Nothing was stored"
            )
    return None


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """The first place two JSON values differ, keys in order, as `path: old → new`; None where
    they agree."""
    if json.dumps(old, sort_keys=True, default=str) == json.dumps(new, sort_keys=True, default=str):  # as stored: 1 and 1.0 differ
        return None
    found = None
    if isinstance(old, dict) and isinstance(new, dict):
        found = next(filter(None, (first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key) for key in sorted(old.keys() | new.keys()))), None)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = next(filter(None, (first_difference(left, right, f"{path}[{index}]") for index, (left, right) in enumerate(zip(old, new)))), None)
    return found or f"{path}: {_shortened(old)} → {_shortened(new)}"  # a key missing on one side and None on the other: the whole dicts


def _shortened(value: Any) -> str:
    """`value` as JSON, its middle left out past 60 characters (both ends, quotes included, kept)."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:29]}…{text[-29:]}"


def fingerprint_digest(fingerprint: str | None) -> str | None:
    """A data fingerprint without `IMAGE_BYTES`: an older identity's fingerprint of a task with no
    image files is the same hash without it."""
    return fingerprint.removeprefix(IMAGE_BYTES) if fingerprint else fingerprint


def short_fingerprint(fingerprint: str | None) -> str:
    """A data fingerprint's first digits, for messages (past the prefix every new one shares), and
    those of each hash a task adds to it (`Task.data_fingerprint`: e.g. of its parquet files)."""
    digest = fingerprint_digest(fingerprint)
    return ":".join(short(part) for part in digest.split(":")) if digest else short(digest)


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "…"
