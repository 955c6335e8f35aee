"""The conformance kit (`vlbench.testing`) over every registered matcher and task, and the two
example plugins; every name in the registries must be covered here."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import vlbench
from conftest import TESTS
from vlbench import registry
from vlbench.testing import check_matcher, check_task

EXAMPLES = TESTS.parent / "examples"

# Options that keep the Stable Diffusion matchers to a few UNet calls per score.
MATCHERS = {
    "random": {},
    "color-words": {},
    "clip": {"model": "mini"},
    "clip-ft": {"model": "mini"},
    "cocoop": {"model": "mini"},
    "dsd": {"model": "mini", "noise_levels": [0.3, 0.7]},
    "dsd-release": {"model": "mini", "sampling_steps": 2},
    "diffusion-itm": {"model": "mini", "sampling_steps": 2},
}
TASKS = ["colors", "comvg", "refcocog", "vqav2", "winoground", "mini-comvg", "mini-refcocog", "mini-vqav2", "mini-winoground"]


def mixed_examples():
    """Two mini ComVG examples (2 images, 1 text) and a mini Winoground one (2 × 2)."""
    comvg = vlbench.create_task("mini-comvg").examples(seed=0)[:2]
    winoground = vlbench.create_task("mini-winoground").examples(seed=0)[:1]
    return [*winoground, *comvg]


def test_every_registered_entry_is_checked():
    built_in = lambda names, kind: {name for name in names if kind.entry(name).origin == "built-in"}  # noqa: E731
    assert built_in(registry.matchers.names(), registry.matchers) == set(MATCHERS)
    assert built_in(registry.tasks.names(), registry.tasks) == set(TASKS)


@pytest.mark.parametrize("name", sorted(MATCHERS))
def test_built_in_matchers_conform(name):
    options = dict(MATCHERS[name])
    check_matcher(name, mixed_examples(), model=options.pop("model", None), **options)


@pytest.fixture(scope="module")
def generated_world(tmp_path_factory):
    """The mini-world written in the real tasks' layouts."""
    from vlbench.tasks.miniworld.writers import write_all

    root = tmp_path_factory.mktemp("world")
    write_all(root, seed=3)
    return root


@pytest.mark.parametrize("name", TASKS)
def test_built_in_tasks_conform(name, generated_world):
    options = {"vqav2": {"source": "official"}}.get(name, {})
    root = generated_world / name if name in ("comvg", "refcocog", "vqav2", "winoground") else None
    check_task(vlbench.create_task(name, data_root=root, **options))


def test_a_checker_catches_a_matcher_whose_scores_depend_on_companions():
    import torch

    from vlbench.runtime import Runtime
    from vlbench.types import Matcher, NoOptions

    class Softmaxed(Matcher):
        """Softmax over the candidates: a pair's score depends on its companions."""

        name = "softmaxed"
        summary = "Test: normalises over candidates."

        def score(self, images, texts):
            raw = torch.tensor([[float(len(text) + len(image.key)) for text in texts] for image in images])
            return raw.softmax(dim=1)

    with pytest.raises(AssertionError, match="scores differently alone"):
        check_matcher(lambda: Softmaxed(NoOptions(), Runtime()), mixed_examples())


def test_a_trainable_matcher_initialised_by_pytorch_s_defaults_conforms():
    import torch

    from vlbench.runtime import Runtime
    from vlbench.types import Matcher, NoOptions

    class LinearOnLengths(Matcher):
        """A linear layer over (text length, image key length), initialised as PyTorch does: at random."""

        name = "linear-on-lengths"
        summary = "Test: a default-initialised linear head."
        trainable = True

        def __init__(self, options, runtime):
            super().__init__(options, runtime)
            self.trained = torch.nn.Linear(2, 1)

        def score(self, images, texts):
            features = torch.tensor([[[float(len(text)), float(len(image.key))] for text in texts] for image in images])
            return self.trained(features).squeeze(-1)

    check_matcher(lambda: LinearOnLengths(NoOptions(), Runtime()), mixed_examples())

    class Detached(LinearOnLengths):
        def score(self, images, texts):
            return super().score(images, texts).detach()

    with pytest.raises(AssertionError, match="carry none \\(detached\\?\\), so the default fit cannot train it"):
        check_matcher(lambda: Detached(NoOptions(), Runtime()), mixed_examples())


def test_a_checker_catches_a_task_whose_outcomes_name_other_metrics_for_some_examples():
    from vlbench.tasks.colors import ColorsTask

    class Uneven(ColorsTask):
        def outcomes(self, scores, positives):
            return {**super().outcomes(scores, positives), **({"margin": 1.0} if max(map(max, scores)) > 0 else {})}

    with pytest.raises(AssertionError, match="task 'colors': outcomes\\(\\) must give the same metrics for every example and score matrix"):
        check_task(Uneven(ColorsTask.Options(), None))


def test_a_checker_catches_a_task_whose_source_files_are_the_drawn_examples(tmp_path):
    from vlbench.tasks.colors import ColorsTask

    class SavesItsDraw(ColorsTask):
        examples_vary_by_seed = True

        def source_files(self, pool, train_pool):
            drawn = tmp_path / "drawn.json"
            drawn.write_text(str(pool[0].texts))
            return [drawn]

        def examples(self, seed):
            return [dataclasses.replace(example, texts=tuple(f"{text} {seed}" for text in example.texts)) for example in super().examples(seed)]

    with pytest.raises(AssertionError, match="task 'colors': source_files\\(\\) names other files for another seed"):
        check_task(SavesItsDraw(ColorsTask.Options(), None))


def test_a_checker_catches_a_task_whose_examples_vary_by_seed_though_it_says_not():
    from vlbench.tasks.colors import ColorsTask

    class Reseeded(ColorsTask):
        def examples(self, seed):
            return [dataclasses.replace(example, texts=tuple(f"{text} {seed}" for text in example.texts)) for example in super().examples(seed)]

    with pytest.raises(AssertionError, match="task 'colors': examples_vary_by_seed is False, but examples\\(\\) gives another list for another seed"):
        check_task(Reseeded(ColorsTask.Options(), None))


def test_a_checker_catches_a_matcher_that_hashes_pixels_without_saying_so():
    import torch

    from vlbench.runtime import Runtime
    from vlbench.types import Matcher, NoOptions

    class Hashing(Matcher):
        name = "hashing"
        summary = "Test: scores from the pixel hash."

        def score(self, images, texts):
            return torch.tensor([[float(int(image.content_hash[:6], 16) % 97 + len(text)) for text in texts] for image in images])

    with pytest.raises(AssertionError, match="reads LoadedImage.content_hash .* set hashes_pixels = True"):
        check_matcher(lambda: Hashing(NoOptions(), Runtime()), mixed_examples())

    class Declared(Hashing):
        hashes_pixels = True

    check_matcher(lambda: Declared(NoOptions(), Runtime()), mixed_examples())


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """Both example plugins, built and installed by pip into their own site directory."""
    site = tmp_path_factory.mktemp("site")
    for name in ("vlbench-mean-color", "vlbench-foils"):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(EXAMPLES / name)], check=True, capture_output=True, text=True)
    return site


def foils_root(root):
    """A foils data root: coloured squares, each with its caption and a colour foil."""
    from PIL import Image

    colours = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60)}
    (root / "images").mkdir(parents=True)
    lines = []
    for index, (colour, rgb) in enumerate(colours.items()):
        Image.new("RGB", (16, 16), rgb).save(root / "images" / f"{colour}.png")
        other = list(colours)[(index + 1) % len(colours)]
        lines.append({"id": str(index), "image": f"{colour}.png", "caption": f"a {colour} square", "foil": f"a {other} square", "kind": "colour"})
    (root / "foils.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def test_example_plugins_conform_installed_and_run(example_site, tmp_path):
    code = (
        "import sys, vlbench\n"
        "from vlbench.testing import check_matcher, check_task\n"
        "check_task(vlbench.create_task('foils', data_root=sys.argv[1]))\n"
        "check_matcher('mean-color', vlbench.create_task('colors', n_examples=3).examples(seed=0))\n"
        "print('conform')\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(example_site), "COLUMNS": "200"}
    root = foils_root(tmp_path / "foils")
    checked = subprocess.run([sys.executable, "-c", code, str(root)], env=environment, capture_output=True, text=True)
    assert checked.returncode == 0 and "conform" in checked.stdout, checked.stderr
    listing = subprocess.run([sys.executable, "-m", "vlbench", "list", "tasks"], env=environment, capture_output=True, text=True, check=True).stdout
    assert "vlbench-foils 0.1.0" in next(line for line in listing.splitlines() if " foils " in line)
    subprocess.run([sys.executable, "-m", "vlbench", "run", "--task", "foils", "--matcher", "color-words", "--data-root", str(root)], cwd=tmp_path, env=environment, capture_output=True, text=True, check=True)
    record = json.loads(next(tmp_path.rglob("results.json")).read_text())
    # color-words: the caption names the square's colour, the foil another one.
    assert record["metrics"] == {"accuracy": 1.0} and record["task"]["distribution"] == "vlbench-foils"
    (session,) = record["provenance"]["sessions"]
    task = session["plugins"]["task"]  # color-words is built in: vlbench's own commit covers it
    assert list(session["plugins"]) == ["task"] and (task["distribution"], task["version"], task["editable"]) == ("vlbench-foils", "0.1.0", False)
    assert task["url"].startswith("file://") and task["url"].endswith("/examples/vlbench-foils") and "git_commit" not in task  # a copy: the folder may have changed since
