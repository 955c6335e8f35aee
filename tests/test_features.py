"""Frozen-encoder features are a function of their item alone: the same bits whichever items were
encoded with it, so a feature cache filled by one run cannot change what another run scores or
trains on."""

import pytest
import torch

import vlbench
from vlbench.evaluation import load_images
from vlbench.tasks.miniworld.tasks import MiniComVGOptions, MiniComVGTask

pytestmark = pytest.mark.usefixtures("offline")


def mini_comvg(count):
    examples = MiniComVGTask(MiniComVGOptions(), None).examples(seed=0)[:count]
    images = list({image.key: image for example in examples for image in load_images(example)}.values())
    texts = list(dict.fromkeys(text for example in examples for text in example.texts))
    return images, texts


def encoders(name):
    """The matcher's feature functions (images, texts), with no cache."""
    matcher = vlbench.create_matcher(name, model="mini", device="cpu", feature_cache=False)
    if name == "clip":
        return matcher.features.images, matcher.features.texts
    return matcher.inputs.latents, matcher.inputs.text_states


@pytest.mark.parametrize("name", ["clip", "dsd"])
def test_an_item_s_features_do_not_depend_on_what_it_was_encoded_with(name):
    images, texts = mini_comvg(24)
    for encode, items in zip(encoders(name), (images, texts)):
        together = encode(items)
        alone = torch.cat([encode([item]) for item in items])
        assert torch.equal(together, alone)
        assert torch.equal(together[:3], encode(items[:3]))  # a batch of three rounds otherwise
        assert torch.equal(together[5:], encode(items[5:]))  # other neighbours, other places in a batch


def test_scores_from_a_warm_feature_cache_equal_those_from_a_cold_one(tmp_path, monkeypatch):
    """The second matcher reads every latent and text state from disk; the first computed them."""
    monkeypatch.setattr("vlbench.feature_cache.cache_root", lambda: tmp_path / "features")
    examples = MiniComVGTask(MiniComVGOptions(), None).examples(seed=0)[:6]
    pairs = [(load_images(example), example.texts) for example in examples]
    cold, warm = (vlbench.create_matcher("dsd", model="mini", device="cpu").score_examples(pairs) for _ in range(2))
    assert all(torch.equal(first, second) for first, second in zip(cold, warm))
