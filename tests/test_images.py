"""Images decoded on first use, the content key that stands for their pixels without decoding
them, and the thumbnail cache that lets a run over known images decode none."""

import shutil

import pytest
from PIL import Image

from vlbench import hashing
from vlbench.errors import VlbenchError
from vlbench.thumbnail_cache import ThumbnailCache
from vlbench.types import ImageRef, LoadedImage


@pytest.fixture
def reads(monkeypatch):
    """The image files read, by key."""
    read = []
    read_bytes = ImageRef.read_bytes
    monkeypatch.setattr(ImageRef, "read_bytes", lambda ref: read.append(ref.key) or read_bytes(ref))
    return read


def picture(path, colour, size=(12, 8)):
    Image.new("RGB", size, colour).save(path)
    return path


def test_a_known_file_s_content_key_is_found_without_reading_it_and_stands_for_its_pixels(tmp_path, reads, settled):
    red, copy, blue = picture(tmp_path / "red.png", (200, 0, 0)), tmp_path / "copy.png", picture(tmp_path / "blue.png", (0, 0, 200))
    shutil.copy(red, copy)
    hashing.many_files_sha256([red, copy, blue])
    keys = {name: LoadedImage.of(ImageRef(name, path=tmp_path / f"{name}.png")).content_key for name in ("red", "copy", "blue")}
    assert reads == []
    assert keys["red"] == keys["copy"] != keys["blue"]  # the same bytes elsewhere: the same pixels
    cropped = LoadedImage.of(ImageRef("red", path=red, crop=(0, 0, 6, 8))).content_key
    assert cropped != keys["red"] and reads == []

    unknown = picture(tmp_path / "unknown.png", (200, 0, 0))  # the same bytes, never hashed: read, not decoded
    image = LoadedImage.of(ImageRef("unknown", path=unknown), on_decode=lambda size: reads.append("decoded"))
    assert image.content_key == keys["red"] and reads == ["unknown"]
    assert image.pixels.getpixel((0, 0)) == (200, 0, 0) and reads == ["unknown", "unknown", "decoded"]


def test_a_file_rewritten_since_it_was_hashed_gets_the_key_of_its_new_bytes(tmp_path, reads, settled):
    path = picture(tmp_path / "a.png", (200, 0, 0))
    hashing.many_files_sha256([path])
    before = LoadedImage.of(ImageRef("a", path=path)).content_key
    picture(path, (0, 200, 0), size=(13, 8))  # another size: the cached hash no longer applies
    after = LoadedImage.of(ImageRef("a", path=path))
    assert after.content_key != before and reads == ["a"]
    assert after.pixels.getpixel((0, 0)) == (0, 200, 0)


@pytest.mark.parametrize("key_from", ["hash cache", "file"])
def test_a_file_that_changes_between_its_key_and_its_decoding_is_refused(tmp_path, settled, key_from):
    path = picture(tmp_path / "a.png", (200, 0, 0))
    if key_from == "hash cache":
        hashing.many_files_sha256([path])
    image = LoadedImage.of(ImageRef("a", path=path))
    image.content_key  # noqa: B018 - taken before the change
    picture(path, (0, 200, 0))
    with pytest.raises(VlbenchError, match="image 'a' at .* changed on disk while this run used it"):
        image.pixels  # noqa: B018


def test_a_missing_file_is_named_when_its_key_or_pixels_are_asked_for(tmp_path):
    image = LoadedImage.of(ImageRef("gone", path=tmp_path / "gone.png"))
    with pytest.raises(VlbenchError, match="image 'gone' not found at .*gone.png"):
        image.content_key  # noqa: B018


def test_an_image_without_a_file_is_keyed_by_its_pixels():
    rendered = LoadedImage.of(ImageRef("r", render=lambda: Image.new("RGB", (4, 4), (1, 2, 3))))
    assert rendered.content_key == rendered.content_hash == LoadedImage("other", Image.new("RGB", (4, 4), (1, 2, 3))).content_hash


def test_thumbnails_are_kept_across_processes_per_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path))
    first = ThumbnailCache("recipe one")
    first.put([("k1", "data:one"), ("k2", "data:two")])
    first.put([("k1", "data:again")])  # a key keeps its first thumbnail
    first.close()
    assert ThumbnailCache("recipe one").get(["k1", "k2", "k3"]) == {"k1": "data:one", "k2": "data:two"}
    assert ThumbnailCache("recipe two").get(["k1"]) == {}


def test_a_damaged_thumbnail_cache_is_left_alone_with_a_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path))
    (tmp_path / "thumbnails.sqlite3").write_bytes(b"not a database, and long enough to be read as a header " * 4)
    cache = ThumbnailCache("recipe")
    cache.put([("k1", "data:one")])
    assert cache.get(["k1"]) == {}
    warnings = capsys.readouterr().err
    assert warnings.count("warning: the thumbnail cache") == 1 and "going on without it" in warnings


def test_an_image_names_exactly_one_source(tmp_path):
    with pytest.raises(ValueError, match="exactly one of path and render"):
        ImageRef("both", path=tmp_path / "a.png", render=lambda: Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="exactly one of path and render"):
        ImageRef("neither")


def test_the_content_key_changes_with_what_decodes_the_file(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = picture(tmp_path / "a.png", (200, 0, 0))
    hashing.many_files_sha256([path])
    plain = LoadedImage.of(ImageRef("a", path=path)).content_key
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # Pillow then decodes what it would refuse
    assert LoadedImage.of(ImageRef("a", path=path)).content_key != plain
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    monkeypatch.setattr("vlbench.types.decoder_identity", lambda: '{"pillow": "another"}')
    assert LoadedImage.of(ImageRef("a", path=path)).content_key != plain


def test_an_image_pickles_with_its_pixels_or_its_source(tmp_path):
    import pickle

    path = picture(tmp_path / "a.png", (200, 0, 0))
    lazy, decoded = LoadedImage.of(ImageRef("a", path=path)), LoadedImage.of(ImageRef("a", path=path))
    decoded.pixels  # noqa: B018
    for image in (lazy, decoded, LoadedImage("b", Image.new("RGB", (2, 2), (1, 2, 3)))):
        copy = pickle.loads(pickle.dumps(image))
        assert copy.key == image.key and copy.pixels.tobytes() == image.pixels.tobytes() and copy.content_key == image.content_key


def test_an_unreadable_image_a_matcher_left_undecoded_is_named_and_skipped_when_scored(tmp_path):
    """A matcher may leave images undecoded in `prepare_images`; one that fails when the matcher
    decodes it while scoring is still found, named, and skipped with "skip"."""
    import torch

    from vlbench.evaluation import score_examples
    from vlbench.types import Example, Matcher

    class Lazy(Matcher):
        name = "lazy"

        def prepare_images(self, images):
            pass  # decodes nothing ahead

        def score(self, images, texts):
            return torch.tensor([[float(image.pixels.getpixel((0, 0))[0])] * len(texts) for image in images])

    for name in "abc":
        picture(tmp_path / f"{name}.png", (10 * "abc".index(name), 0, 0))
    (tmp_path / "b.png").write_bytes(b"not an image")
    examples = [Example(name, (ImageRef(name, path=tmp_path / f"{name}.png"),), ("a text",), ((0, 0),)) for name in "abc"]
    scored = []
    skipped = score_examples(Lazy(None, None), examples, batch_size=3, append=scored.extend, on_bad_example="skip", workers=1)
    assert [example.id for example in scored] == ["a", "c"] and [example.scores for example in scored] == [[[0.0]], [[20.0]]]
    assert list(skipped) == ["b"] and skipped["b"].startswith("example 'b': image 'b' at ") and skipped["b"].endswith("cannot be read: Pillow does not recognise it as an image")
    with pytest.raises(VlbenchError, match="^example 'b': image 'b' at .* cannot be read"):
        score_examples(Lazy(None, None), examples, batch_size=3, append=lambda batch: None, workers=1)
