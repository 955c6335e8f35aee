import json
import pickle

import pytest

from placeholders import write_images
from vlbench.tasks.refcocog import RefCOCOgOptions, RefCOCOgTask


def write_refcocog(root, refs_name="refs(umd).p", shared=None):
    """Refs in the refer toolkit's pickle layout: 10 images (1-4 train, 5-10 val), 2 refs each,
    2 sentences per ref (with `shared`, every image's first ref says it as its second sentence)."""
    refs, annotations = [], []
    sent_id = 0
    for image_id in range(1, 11):
        split = "train" if image_id <= 4 else "val"
        for slot in range(2):
            ann_id = image_id * 10 + slot
            sentences = []
            for variant in range(2):
                text = shared if shared and (slot, variant) == (0, 1) else f"object {slot} of image {image_id}, phrasing {variant}"
                sentences.append({"raw": text, "sent": text, "tokens": text.split(), "sent_id": sent_id})
                sent_id += 1
            refs.append({"ref_id": ann_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1, "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg", "sentences": sentences})
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": [4.0 * slot, 2.0, 10.0, 20.0], "area": 200.0, "iscrowd": 0})
    with open(root / refs_name, "wb") as handle:
        pickle.dump(refs, handle)
    instances = {"images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": 40, "height": 30} for i in range(1, 11)], "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    (root / "instances.json").write_text(json.dumps(instances))
    write_images((root / "images" / "train2014" / f"COCO_train2014_{i:012d}.jpg" for i in range(1, 11)), size=(40, 30))


@pytest.fixture
def root(tmp_path):
    write_refcocog(tmp_path)
    return tmp_path


def test_one_example_per_sentence_of_the_evaluation_split(root):
    examples = RefCOCOgTask(RefCOCOgOptions(), root).examples(seed=0)
    assert len(examples) == 24 and {e.image_keys[0] for e in examples} == {str(i) for i in range(5, 11)}
    for example in examples:
        assert len(example.texts) == 10 and len(set(example.texts)) == 10 and example.positives == ((0, 0),)
        own_image = f"of image {example.image_keys[0]},"
        assert own_image in example.texts[0] and not any(own_image in text for text in example.texts[1:])
    assert len(RefCOCOgTask(RefCOCOgOptions(), root).train_pool(seed=0)) == 16


def test_no_negative_is_a_sentence_said_of_the_positive_s_image(tmp_path):
    """A sentence refs on several images share describes each of them: drawn from another image as
    a negative, it would still be true of this one, and choosing it counted wrong."""
    write_refcocog(tmp_path, shared="the thing on the left")
    with open(tmp_path / "refs(umd).p", "rb") as handle:
        refs = pickle.load(handle)
    said = {}
    for ref in refs:
        said.setdefault(str(ref["image_id"]), set()).update(sentence["sent"] for sentence in ref["sentences"])
    for seed in range(5):
        for example in RefCOCOgTask(RefCOCOgOptions(), tmp_path).examples(seed=seed):
            assert not set(example.texts[1:]) & said[example.image_keys[0]], example


def test_negatives_follow_the_seed(root):
    task = RefCOCOgTask(RefCOCOgOptions(), root)
    assert task.examples(seed=3) == task.examples(seed=3)
    assert [e.texts for e in task.examples(seed=3)] != [e.texts for e in task.examples(seed=4)]


def test_crop_view_scores_the_padded_box(root):
    (example, *_) = RefCOCOgTask(RefCOCOgOptions(view="crop", crop_padding=0.1), root).examples(seed=0)
    image = example.images[0]
    assert image.key == "5@50" and image.crop == pytest.approx((-1.0, 0.0, 11.0, 24.0))
    assert image.load().size == (11, 24)  # clamped at the left edge
    whole = RefCOCOgTask(RefCOCOgOptions(), root).examples(seed=0)[0].images[0]
    assert whole.load().size == (40, 30)


@pytest.mark.parametrize("view", ["whole", "crop"])
def test_the_few_shot_split_keeps_each_photograph_on_one_side(root, view):
    """Each image holds two refs: with `view=crop` their boxes are two images of one photograph,
    which the split must not put on both sides."""
    from vlbench.config import Shots
    from vlbench.splits import make_split

    pool = RefCOCOgTask(RefCOCOgOptions(view=view, eval_split="all"), root).examples(seed=0)
    split = make_split("refcocog", pool, None, Shots.parse("25%"), seed=0, protocol="grouped")
    photograph = {example.id: example.images[0].path.name for example in pool}
    assert split.train_ids and split.eval_ids
    assert not {photograph[i] for i in split.train_ids} & {photograph[i] for i in split.eval_ids}


def test_top_k_metrics():
    task = RefCOCOgTask(RefCOCOgOptions(), None)
    assert task.outcomes([[9, 1, 2, 3, 4, 5, 6, 7, 8, 0]], [[0, 0]]) == {"top1": 1.0, "top5": 1.0}
    assert task.outcomes([[5, 1, 2, 3, 4, 5, 6, 7, 8, 0]], [[0, 0]]) == {"top1": 0.0, "top5": 1.0}
    assert task.outcomes([[4, 1, 2, 3, 4, 5, 6, 7, 8, 0]], [[0, 0]]) == {"top1": 0.0, "top5": 0.0}


def test_a_folder_with_only_the_google_split_names_the_option_that_reads_it(tmp_path):
    from vlbench.errors import VlbenchError

    write_refcocog(tmp_path, refs_name="refs(google).p")
    with pytest.raises(VlbenchError, match=r"refs\(umd\)\.p not found, but refs\(google\)\.p is there: to use it, set `task_options: \{refs: refs\(google\)\.p\}`"):
        RefCOCOgTask(RefCOCOgOptions(), tmp_path).examples(seed=0)
    assert len(RefCOCOgTask(RefCOCOgOptions(refs="refs(google).p"), tmp_path).examples(seed=0)) == 24


def test_texts_are_the_sentences_as_written_as_the_release_reads_them(root):
    with open(root / "refs(umd).p", "rb") as handle:
        refs = pickle.load(handle)
    for ref in refs:
        for sentence in ref["sentences"]:
            sentence["raw"] = sentence["sent"].capitalize() + "."
    with open(root / "refs(umd).p", "wb") as handle:
        pickle.dump(refs, handle)
    (raw,) = [e for e in RefCOCOgTask(RefCOCOgOptions(), root).examples(seed=0) if e.id == "refcocog-16"]
    (sent,) = [e for e in RefCOCOgTask(RefCOCOgOptions(text="sent"), root).examples(seed=0) if e.id == "refcocog-16"]
    assert raw.texts[0] == "Object 0 of image 5, phrasing 0." and sent.texts[0] == "object 0 of image 5, phrasing 0"
    assert all(text.endswith(".") for text in raw.texts) and not any(text.endswith(".") for text in sent.texts)


def test_a_split_the_refs_file_lacks_names_the_splits_it_has(root):
    from vlbench.errors import VlbenchError

    with pytest.raises(VlbenchError, match=r"task 'refcocog': refs\(umd\)\.p has no refs of split 'test'; its splits: train, val \(or 'all' for every ref\)"):
        RefCOCOgTask(RefCOCOgOptions(eval_split="test"), root).examples(seed=0)


def test_a_python_2_pickle_with_non_ascii_text_is_named_in_one_line(tmp_path):
    from vlbench.errors import VlbenchError

    (tmp_path / "refs(umd).p").write_bytes(b"\x80\x02]q\x00U\x03\xc3\xa9tq\x01a.")  # protocol 2: a list of one byte string, UTF-8 'ét'
    with pytest.raises(VlbenchError, match=r"refs\(umd\)\.p: a Python 2 pickle with non-ASCII byte strings \('ascii' codec can't decode byte 0xc3"):
        RefCOCOgTask(RefCOCOgOptions(), tmp_path).examples(seed=0)


def test_images_where_the_refer_toolkit_keeps_them_are_named_with_the_option(tmp_path):
    from vlbench.errors import VlbenchError

    root = tmp_path / "data" / "refcocog"
    root.mkdir(parents=True)
    write_refcocog(root)
    toolkit = tmp_path / "data" / "images" / "mscoco" / "images"
    toolkit.mkdir(parents=True)
    (root / "images" / "train2014").rename(toolkit / "train2014")
    with pytest.raises(VlbenchError, match=r"image folder .*refcocog/images/train2014 not found\. The refer toolkit keeps them at .*: set `task_options: \{images: \.\./images/mscoco/images/train2014\}` in the run's --config$"):
        RefCOCOgTask(RefCOCOgOptions(), root).examples(seed=0)
    assert len(RefCOCOgTask(RefCOCOgOptions(images="../images/mscoco/images/train2014"), root).examples(seed=0)) == 24


def test_sentences_are_told_apart_by_their_normalised_form_not_their_writing(tmp_path):
    """Shown as written, a sentence said of this image in other case or punctuation on another
    image must still never be its negative (a true description counted wrong)."""
    write_refcocog(tmp_path, shared="the thing on the left")
    with open(tmp_path / "refs(umd).p", "rb") as handle:
        refs = pickle.load(handle)
    for ref in refs:
        for sentence in ref["sentences"]:
            sentence["raw"] = sentence["sent"].upper() if ref["image_id"] % 2 else sentence["sent"].capitalize() + "."
    with open(tmp_path / "refs(umd).p", "wb") as handle:
        pickle.dump(refs, handle)
    said = {}
    for ref in refs:
        said.setdefault(str(ref["image_id"]), set()).update(sentence["sent"] for sentence in ref["sentences"])
    for seed in range(5):
        for example in RefCOCOgTask(RefCOCOgOptions(), tmp_path).examples(seed=seed):
            normalised = [text.lower().rstrip(".") for text in example.texts]
            assert not set(normalised[1:]) & said[example.image_keys[0]] and len(set(normalised)) == 10, example


def test_a_refcoco_folder_is_not_taken_for_refcocog(tmp_path):
    from vlbench.errors import VlbenchError

    write_refcocog(tmp_path, refs_name="refs(unc).p")
    with pytest.raises(VlbenchError, match=r"refs\(umd\)\.p not found; refs\(unc\)\.p here are the splits of RefCOCO or RefCOCO\+ .*not RefCOCOg's"):
        RefCOCOgTask(RefCOCOgOptions(), tmp_path).examples(seed=0)


def test_a_board_refuses_to_average_seeds_drawn_from_a_refs_file_edited_between_them(root, tmp_path):
    """Negatives are drawn per seed, so the seeds' data fingerprints differ anyway; the refs file
    they were drawn from must not."""
    from vlbench.api import evaluate
    from vlbench.errors import VlbenchError
    from vlbench.leaderboard.tables import build_board

    runs = tmp_path / "runs"
    evaluate("refcocog", "random", seeds=[0, 1], data_root=root, runs_dir=runs)
    (table,) = build_board([runs])
    assert [row.seeds for row in table.rows] == [2]
    refs = pickle.loads((root / "refs(umd).p").read_bytes())
    refs[0]["sentences"][0]["raw"] = "an edited sentence"  # of a train ref: no zero-shot example shows it
    (root / "refs(umd).p").write_bytes(pickle.dumps(refs))
    evaluate("refcocog", "random", seeds=[2], data_root=root, runs_dir=runs)
    with pytest.raises(VlbenchError, match=r"seeds 0 and 2 were computed from different inputs \(task\.source_fingerprint: .*\), so they cannot be averaged; run the older seeds again"):
        build_board([runs])
    # The older seeds' examples are the same today: running them again records today's files.
    evaluate("refcocog", "random", seeds=[0, 1], data_root=root, runs_dir=runs)
    (table,) = build_board([runs])
    assert [row.seeds for row in table.rows] == [3]
