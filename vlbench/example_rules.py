"""What every example a task hands the harness must be, checked before a run stores anything: a
malformed example would otherwise be scored (an example without texts counts as right) or crash
the run after every example was scored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vlbench.errors import VlbenchError
from vlbench.types import Example, ImageRef


def example_problem(example: object) -> str | None:
    """What is wrong with `example`, as a phrase, or None: an `Example` with a non-empty string id,
    at least one `ImageRef` (with a key), a tuple or list of non-blank string texts, at least one
    matching (image, text) pair of integer indices inside its matrix, and string tags."""
    if not isinstance(example, Example):
        return f"is a {type(example).__name__}, not a vlbench.types.Example"
    if not isinstance(example.id, str) or not example.id:
        return f"has id {example.id!r}; ids are non-empty strings"
    images, texts = example.images, example.texts
    if not _sequence(images) or not images:
        return f"has images {_shown(images)}; give a non-empty tuple of vlbench.types.ImageRef"
    for image in images:
        if not isinstance(image, ImageRef):
            return f"has an image that is a {type(image).__name__}, not a vlbench.types.ImageRef"
        if not isinstance(image.key, str) or not image.key:
            return f"has an image with key {image.key!r}; keys are non-empty strings"
    if not _sequence(texts) or not texts:
        return f"has texts {_shown(texts)}; give a non-empty tuple of strings"
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            return f"has a text {text!r}; texts are non-blank strings"
    if not _sequence(example.positives) or not example.positives:
        return f"has positives {_shown(example.positives)}; give a non-empty tuple of (image index, text index) pairs"
    for pair in example.positives:
        if not _index_pair(pair):
            return f"has a matching pair {pair!r}; give (image index, text index), two integers"
        if not (0 <= pair[0] < len(images) and 0 <= pair[1] < len(texts)):
            return f"has a matching pair {pair!r} outside its {len(images)}×{len(texts)} (images × texts) matrix; indices count from 0"
    if not isinstance(example.tags, Mapping) or not all(isinstance(key, str) and isinstance(value, str) for key, value in example.tags.items()):
        return f"has tags {_shown(example.tags)}; tags map strings to strings"
    return None


def check_examples(task: str, examples: Sequence[object], which: str) -> None:
    """Refuse `which` examples of `task` that are none, repeat an id, or break `example_problem`'s rules."""
    if not examples:
        raise VlbenchError(f"task '{task}' has no {which} examples (check its data and options)")
    seen: set[str] = set()
    for position, example in enumerate(examples):
        problem = example_problem(example)
        if problem:
            name = f"'{example.id}'" if isinstance(example, Example) and isinstance(example.id, str) else f"number {position}"
            raise VlbenchError(f"task '{task}': {which} example {name} {problem}")
        if example.id in seen:
            raise VlbenchError(f"task '{task}': duplicate example id '{example.id}' in the {which} examples")
        seen.add(example.id)


def _sequence(value: object) -> bool:
    return isinstance(value, (tuple, list))


def _index_pair(pair: object) -> bool:
    return _sequence(pair) and len(pair) == 2 and all(isinstance(index, int) and not isinstance(index, bool) for index in pair)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
