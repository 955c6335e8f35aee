import pytest
import torch
from PIL import Image

from vlbench.matchers.color_words import ColorWordsMatcher, ColorWordsOptions
from vlbench.matchers.random import RandomMatcher
from vlbench.runtime import Runtime
from vlbench.types import LoadedImage, NoOptions


def runtime(seed=0):
    return Runtime("cpu", seed)


def test_color_words_fraction_by_hand():
    image = Image.new("RGB", (10, 10), (250, 250, 250))  # background, not counted
    image.paste((230, 30, 30), (0, 0, 10, 3))  # 30 red pixels
    image.paste((20, 40, 230), (0, 3, 10, 4))  # 10 blue pixels
    matcher = ColorWordsMatcher(ColorWordsOptions(), runtime())
    scores = matcher.score([LoadedImage("a", image)], ["a red square", "blue", "red and blue", "a square"])
    assert scores.tolist() == [[pytest.approx(0.75), pytest.approx(0.25), pytest.approx(0.5), 0.0]]
    with_background = ColorWordsMatcher(ColorWordsOptions(ignore_background=False), runtime())
    assert with_background.score([LoadedImage("a", image)], ["red"]).item() == pytest.approx(0.30)


def test_random_scores_do_not_depend_on_neighbours_or_order():
    matcher = RandomMatcher(NoOptions(), runtime(seed=5))
    images = [LoadedImage(key, None) for key in ("x", "y", "z")]
    texts = ["one", "two"]
    full = matcher.score(images, texts)
    assert torch.equal(matcher.score(images[::-1], texts[::-1]), full.flip(0).flip(1))
    assert matcher.score(images[1:2], texts[1:]).item() == full[1, 1].item()
    assert not torch.equal(RandomMatcher(NoOptions(), runtime(seed=6)).score(images, texts), full)
