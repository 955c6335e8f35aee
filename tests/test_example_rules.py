import dataclasses
from pathlib import Path

import pytest

from vlbench import registry
from vlbench.config import load_run_config
from vlbench.errors import VlbenchError
from vlbench.example_rules import example_problem
from vlbench.runner import prepare, run
from vlbench.tasks.colors import ColorsTask
from vlbench.types import Example, ImageRef


def picture():
    from PIL import Image

    return Image.new("RGB", (4, 4))


GOOD = Example("e1", (ImageRef("a", render=picture), ImageRef("b", render=picture)), ("a red cube", "a blue cube"), ((0, 0), (1, 1)), {"kind": "colour"})

MALFORMED = [
    (dict(id=""), "has id ''"),
    (dict(images=()), "has images ()"),
    (dict(images=(Path("a.png"),)), "an image that is a PosixPath"),
    (dict(texts=()), "has texts ()"),
    (dict(texts="a red cube"), "has texts 'a red cube'"),
    (dict(texts=("a red cube", " ")), "has a text ' '"),
    (dict(texts=("a red cube", 3)), "has a text 3"),
    (dict(positives=()), "has positives ()"),
    (dict(positives=((0, 2),)), "matching pair (0, 2) outside its 2×2"),
    (dict(positives=((0, -1),)), "matching pair (0, -1) outside"),
    (dict(positives=((True, 0),)), "matching pair (True, 0); give (image index, text index), two integers"),
    (dict(positives=((0,),)), "matching pair (0,); give (image index, text index), two integers"),
    (dict(tags={"kind": None}), "has tags {'kind': None}"),
    (dict(tags={"kind": 1}), "has tags {'kind': 1}"),
]


def test_a_well_formed_example_has_no_problem():
    assert example_problem(GOOD) is None
    assert example_problem(dataclasses.replace(GOOD, texts=["a red cube", "a blue cube"], tags={})) is None


@pytest.mark.parametrize(("change", "problem"), MALFORMED, ids=[text for _, text in MALFORMED])
def test_each_malformed_example_is_named_by_its_problem(change, problem):
    assert problem in example_problem(dataclasses.replace(GOOD, **change))


def test_a_task_handing_a_malformed_example_is_refused_before_anything_is_stored(tmp_path, monkeypatch):
    class OneTextlessExample(ColorsTask):
        def examples(self, seed):
            examples = super().examples(seed)
            examples[5] = dataclasses.replace(examples[5], texts=())  # once scored as right: no text outranks its positive
            return examples

    monkeypatch.setattr(registry.tasks, "get", lambda name: OneTextlessExample)
    config = load_run_config(None, {"task": "colors", "matcher": "color-words", "runs_dir": str(tmp_path / "runs"), "task_options": {"n_examples": 12}})
    with pytest.raises(VlbenchError, match=r"task 'colors': evaluation example 'colors-5' has texts \(\); give a non-empty tuple of strings"):
        run(prepare(config), 0)
    assert not list((tmp_path / "runs").rglob("scores.jsonl"))
