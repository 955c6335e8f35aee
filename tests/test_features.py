"""Frozen-encoder features are a function of their item alone: the same bits whichever items were
encoded with it, so a feature cache filled by one run cannot change what another run scores or
trains on."""

import pytest
import torch

import vlbench
from vlbench.evaluation import load_images
from vlbench.feature_cache import ENCODE_BATCH
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


def test_images_of_later_examples_fill_up_an_encoder_pass_and_get_the_features_they_get_alone(tmp_path, monkeypatch):
    """The loading threads hand over decoded images of examples not scored yet; they take the
    places of repeats in the last encoder pass, and the call that asks for them encodes nothing."""
    monkeypatch.setattr("vlbench.feature_cache.cache_root", lambda: tmp_path / "features")
    images, _ = mini_comvg(6)
    keys = [image.key for image in images]
    features = vlbench.create_matcher("clip", model="mini", device="cpu").features
    passes = []
    encode = features._encode_images
    monkeypatch.setattr(features, "_encode_images", lambda chosen: passes.append([image.key for image in chosen]) or encode(chosen))
    features.decode_uncached(images[:12])  # as the loading threads do, ahead of scoring
    scored = [features.images(images[:3])]
    assert passes == [keys[:ENCODE_BATCH]]
    scored.append(features.images(images[3:ENCODE_BATCH]))
    assert len(passes) == 1
    scored.append(features.images(images[ENCODE_BATCH:12]))  # the last ones: nothing left ahead of them
    assert passes[1] == keys[ENCODE_BATCH:12] + keys[11:12] * (2 * ENCODE_BATCH - 12)
    alone = vlbench.create_matcher("clip", model="mini", device="cpu", feature_cache=False).features.images(images[:12])
    assert torch.equal(torch.cat(scored), alone)


def test_an_example_with_an_unreadable_image_hands_over_none_of_its_images(tmp_path, monkeypatch):
    """It is not scored: its readable images would wait in memory for a batch to fill."""
    from vlbench.errors import VlbenchError
    from vlbench.types import ImageRef, LoadedImage

    monkeypatch.setattr("vlbench.feature_cache.cache_root", lambda: tmp_path / "features")
    images, _ = mini_comvg(1)
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    features = vlbench.create_matcher("clip", model="mini", device="cpu").features
    with pytest.raises(VlbenchError):
        features.decode_uncached([images[0], LoadedImage.of(ImageRef("broken", path=tmp_path / "broken.png"))])
    assert not features.ahead
    features.decode_uncached(images[:1])
    assert list(features.ahead) == [images[0].content_key]
