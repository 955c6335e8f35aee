"""Conformance checks for matchers and tasks: what every entry must do so the protocol's numbers mean
something. A plugin author calls them from their own tests; vlbench's suite runs them over every
registered entry.

    from vlbench.testing import check_matcher, check_task

    def test_my_matcher_conforms():
        examples = vlbench.create_task("colors", n_examples=4).examples(seed=0)
        check_matcher("my-matcher", examples)

    def test_my_task_conforms():
        check_task(vlbench.create_task("my-task", data_root="tests/data"))

Each check raises `AssertionError` naming the rule broken and the example it broke on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from vlbench.errors import VlbenchError
from vlbench.evaluation import checked_scores, prepared_images
from vlbench.identity import files_fingerprint
from vlbench.types import Example, LoadedImage, Matcher, Task


def check_matcher(matcher: str | Callable[[], Matcher], examples: Sequence[Example], *, model: str | None = None, tolerance: float = 1e-5, **options: Any) -> None:
    """Check a matcher on a few examples (two or three suffice; at least two):

    - its options: a dataclass whose defaults build, round-trip through plain data, refuse an
      unknown key;
    - scores: a finite `[n_images, n_texts]` tensor per example;
    - batching: `score_examples` of several examples equals `score` of each;
    - candidate order: reversing the images and texts reverses the matrix;
    - companions: a pair scores the same alone, and next to another example's candidates;
    - determinism: a second matcher built the same way gives the same scores (torch is seeded
      before each is built, as a run seeds it, so PyTorch's default initialisation is fine);
    - trained state (trainable matchers): perturbed parameters survive `state_dict` →
      `load_state_dict` into a fresh matcher, and change the scores; others store nothing; with
      the default `fit`, `score` with gradients on gives the trainable parameters a gradient;
    - a JSON-serialisable `fingerprint` and a one-line `summary`;
    - `hashes_pixels`: a matcher that reads `LoadedImage.content_hash` while scoring (not only in
      its `prepare_images`) declares it (the loading threads then compute it ahead of scoring).

    `matcher` is a registered name (built with `vlbench.create_matcher(name, model, **options)`
    on the CPU) or a function returning a new matcher."""
    import torch

    build = matcher if callable(matcher) else _factory(matcher, model, options)

    def make() -> Matcher:
        torch.manual_seed(0)  # as a run seeds torch with its seed before it builds its matcher
        return build()

    first = make()
    _check_options(type(first).Options, f"matcher '{first.name}'")
    assert first.summary and "\n" not in first.summary, f"matcher '{first.name}': give a one-line summary"
    json.dumps(first.fingerprint())
    if len(examples) < 2:
        raise ValueError("check_matcher needs at least two examples")
    loaded = [(prepared_images(example, None, first.prepare_images), list(example.texts)) for example in examples]  # as a run's loading threads hand them over
    hashed_ahead = {id(image) for images, _ in loaded for image in images if "content_hash" in vars(image)}  # a cached_property, once read
    with torch.no_grad():
        alone = [first.score(images, texts) for images, texts in loaded]
        for scores, example in zip(alone, examples):
            _check_matrix(first, example, scores)
        batched = first.score_examples(loaded)
        _close(batched, alone, tolerance, f"matcher '{first.name}': score_examples of several examples differs from score of each")
        for (images, texts), scores, example in zip(loaded, alone, examples):
            reverse = first.score(images[::-1], texts[::-1]).flip(0).flip(1)
            _close([reverse], [scores], tolerance, f"matcher '{first.name}': reversing the candidates of '{example.id}' changed its scores")
        (images, texts), (others, other_texts) = loaded[0], loaded[1]
        for i, image in enumerate(images):
            for t, text in enumerate(texts):
                single = first.score([image], [text])
                _close([single], [alone[0][i : i + 1, t : t + 1]], tolerance, f"matcher '{first.name}': pair ({i}, {t}) of '{examples[0].id}' scores differently alone")
                mixed = first.score([image, *others], [text, *other_texts])
                _close([mixed[:1, :1]], [alone[0][i : i + 1, t : t + 1]], tolerance, f"matcher '{first.name}': pair ({i}, {t}) of '{examples[0].id}' scores differently next to other candidates")
        again = make()
        _close([again.score(images, texts) for images, texts in loaded], alone, tolerance, f"matcher '{first.name}': a second matcher built the same way scores differently")
        _check_state(first, make, loaded, tolerance)
        _check_pixel_hashing(first, loaded, examples, hashed_ahead)


def check_task(task: Task, seed: int = 0, sample: int = 5) -> None:
    """Check a task (built with its data root):

    - options: a dataclass whose defaults build and round-trip, refusing an unknown key;
    - examples: a non-empty list of examples as a run requires them (`example_rules`: unique
      string ids, images, non-blank texts, matching pairs inside the matrix, string tags); the
      same list on a second call, and for another seed where `examples_vary_by_seed` is False;
    - the train pool, if any: examples as those, whose ids are not evaluation ids;
    - metrics: on the first `sample` examples, a matrix that scores every matching pair 1 and every
      other pair 0 gets every per-example metric 1, and an all-tied matrix gets 0 (ties count as
      wrong); values are in [0, 1]; `headline_metric` names one of the aggregated metrics;
    - images: the first example's images load as RGB;
    - the data fingerprint is the same for the same examples, and the files `source_files` names
      the same for another seed; `describe()` says something."""
    name = task.name
    _check_options(type(task).Options, f"task '{name}'")
    examples = task.examples(seed)
    assert isinstance(examples, list) and examples, f"task '{name}': examples() must return a non-empty list"
    _assert_examples(name, examples, "evaluation")
    ids = [example.id for example in examples]
    again = task.examples(seed)
    assert _drawn(again) == _drawn(examples), f"task '{name}': examples() gives another list the second time"
    train_pool = task.train_pool(seed)
    if train_pool is not None:
        _assert_examples(name, train_pool, "training")
        assert not {example.id for example in train_pool} & set(ids), f"task '{name}': train pool and evaluation examples share ids"
    outcomes = []
    for example in examples[:sample]:
        perfect = [[1.0 if (i, t) in example.positives else 0.0 for t in range(len(example.texts))] for i in range(len(example.images))]
        tied = [[0.0] * len(example.texts) for _ in example.images]
        best, ties = task.outcomes(perfect, example.positives), task.outcomes(tied, example.positives)
        assert best and all(value == 1.0 for value in best.values()), f"task '{name}': a perfect score matrix of '{example.id}' gets {best}"
        assert all(value == 0.0 for value in ties.values()), f"task '{name}': an all-tied matrix of '{example.id}' gets {ties} (ties count as wrong)"
        assert set(best) == set(ties) == set(outcomes[0] if outcomes else best), f"task '{name}': outcomes() must give the same metrics for every example and score matrix"
        outcomes.append(best)
    from vlbench.metrics import aggregate

    metrics, breakdown = aggregate(outcomes, [example.tags for example in examples[:sample]])
    metrics.update(task.summarize({"metrics": metrics, "breakdown": breakdown}))
    assert task.headline_metric(metrics) in metrics, f"task '{name}': its headline metric is not one of {list(metrics)}"
    images = [LoadedImage(ref.key, ref.load()) for ref in examples[0].images]
    assert all(image.pixels.mode == "RGB" for image in images), f"task '{name}': images must load as RGB"
    assert task.data_fingerprint(examples) == task.data_fingerprint(again), f"task '{name}': the data fingerprint changes between calls"
    other_seed = task.examples(seed + 1)
    if not task.examples_vary_by_seed:
        assert _drawn(other_seed) == _drawn(examples), f"task '{name}': examples_vary_by_seed is False, but examples() gives another list for another seed; boards would pair and average seeds over different examples"
    sources = files_fingerprint(task.source_files(examples, train_pool))
    assert sources is None or sources == files_fingerprint(task.source_files(other_seed, task.train_pool(seed + 1))), f"task '{name}': source_files() names other files for another seed; it names what examples are drawn from, which the seed does not choose"
    assert task.describe(), f"task '{name}': describe() must say what data it reads"


def _drawn(examples: list) -> list[tuple]:
    """What makes examples the same examples: ids, texts, images, matching pairs and tags."""
    return [(example.id, example.texts, example.image_keys, example.positives, example.tags) for example in examples]


def _assert_examples(name: str, examples: list, which: str) -> None:
    """The run's rules (`example_rules.check_examples`), as an assertion."""
    from vlbench.example_rules import check_examples

    try:
        check_examples(name, examples, which)
    except VlbenchError as error:
        raise AssertionError(str(error)) from None


def _factory(name: str, model: str | None, options: dict[str, Any]) -> Callable[[], Matcher]:
    from vlbench.api import create_matcher

    return lambda: create_matcher(name, model, device="cpu", **options)


def _check_options(options_class: type, who: str) -> None:
    from vlbench.options import as_dict, build

    assert dataclasses.is_dataclass(options_class), f"{who}: Options must be a dataclass"
    defaults = build(options_class, {}, "options")
    assert build(options_class, as_dict(defaults), "options") == defaults, f"{who}: options must round-trip through plain data (YAML)"
    try:
        build(options_class, {"no_such_option_anywhere": 1}, "options")
    except VlbenchError:
        return
    raise AssertionError(f"{who}: an unknown option key must be refused")


def _check_matrix(matcher: Matcher, example: Example, scores) -> None:
    """The run's check of a score matrix (`evaluation.checked_scores`), as an assertion."""
    try:
        checked_scores(matcher, example, scores)
    except VlbenchError as error:
        raise AssertionError(str(error)) from None


def _check_pixel_hashing(matcher: Matcher, loaded, examples: Sequence[Example], hashed_ahead: set[int]) -> None:
    hashed = [example.id for (images, _), example in zip(loaded, examples) if any("content_hash" in vars(image) and id(image) not in hashed_ahead for image in images)]
    assert matcher.hashes_pixels or not hashed, f"matcher '{matcher.name}': it reads LoadedImage.content_hash (of '{hashed[0] if hashed else ''}'; content_key reads it for an image without a file) while scoring: set hashes_pixels = True, or read it in prepare_images, so the loading threads compute it ahead of scoring"


def _close(actual, expected, tolerance: float, message: str) -> None:
    for a, b in zip(actual, expected, strict=True):
        difference = (a.double() - b.double()).abs().max().item()
        assert difference <= tolerance, f"{message} (by {difference:.3g})"


def _check_state(matcher: Matcher, make: Callable[[], Matcher], loaded, tolerance: float) -> None:
    import torch

    if not matcher.trainable:
        assert matcher.state_dict() == {}, f"matcher '{matcher.name}' does not train but returns a state"
        return
    parameters = matcher.trainable_parameters()
    assert parameters and all(parameter.requires_grad for parameter in parameters), f"matcher '{matcher.name}': trainable_parameters() must return tensors that require gradients"
    before = [matcher.score(images, texts) for images, texts in loaded]
    generator = torch.Generator().manual_seed(0)
    for parameter in parameters:
        parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator).to(parameter))
    after = [matcher.score(images, texts) for images, texts in loaded]
    assert any(not torch.allclose(a, b) for a, b in zip(after, before)), f"matcher '{matcher.name}': changing its trainable parameters does not change its scores"
    if type(matcher).fit is Matcher.fit:  # the protocol's loop trains through score()
        with torch.enable_grad():
            scores = matcher.score(*loaded[0])
            assert scores.requires_grad, f"matcher '{matcher.name}': score() with gradients on returns scores that carry none (detached?), so the default fit cannot train it"
            gradients = torch.autograd.grad(scores.sum(), parameters, allow_unused=True)
        assert any(gradient is not None and bool(gradient.any()) for gradient in gradients), f"matcher '{matcher.name}': score() gives its trainable parameters no gradient"
    state = matcher.state_dict()
    assert state and all(isinstance(value, torch.Tensor) and value.device.type == "cpu" for value in state.values()), f"matcher '{matcher.name}': state_dict() must hold CPU tensors"
    fresh = make()
    fresh.load_state_dict(state)
    _close([fresh.score(images, texts) for images, texts in loaded], after, tolerance, f"matcher '{matcher.name}': scores after load_state_dict differ from the scores of the state saved")
