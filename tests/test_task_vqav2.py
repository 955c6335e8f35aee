import csv
import json
import shutil
from collections import Counter

import pytest

from conftest import TESTS, vlbench_cli
from placeholders import write_images
from vlbench.errors import VlbenchError
from vlbench.tasks.vqav2 import VQAv2Options, VQAv2Task
from vlbench.testing import check_task

REAL = TESTS / "data" / "real" / "vqav2"


@pytest.fixture(scope="module")
def csv_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa-csv")
    shutil.copy(REAL / "vqa_text_test.csv", root)
    with open(REAL / "vqa_text_test.csv", newline="") as handle:
        ids = {int(row["pos_image_id"]) for row in csv.DictReader(handle)}
    write_images(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg" for image_id in ids)
    return root


def test_reads_the_released_csv_as_it_is(csv_root):
    task = VQAv2Task(VQAv2Options(), csv_root)
    examples = task.examples(seed=0)
    assert len(examples) == 1000 and all(len(e.texts) == 10 for e in examples if e.id != "vqav2-683")
    assert len({e.image_keys[0] for e in examples}) == 198
    assert Counter(e.tags["answer_type"] for e in examples) == {"binary": 386, "number": 131, "other": 483}
    assert examples[0].texts[0] == "What baseball team is on the hat? la"
    assert examples[0].images[0].path == csv_root / "val2014" / "COCO_val2014_000000108327.jpg"
    # line 684 repeats its positive as neg_sentence_5: dropped, or the example could never be right
    repeated = next(e for e in examples if e.id == "vqav2-683")
    assert len(repeated.texts) == 9 and repeated.texts[0] not in repeated.texts[1:] and repeated.texts[0].endswith("orange juice")
    assert task.outcomes([[1.0] + [0.0] * 8], repeated.positives) == {"top1": 1.0, "top5": 1.0}
    assert task.statistics(examples) == {
        "yes/no positives whose negatives are never yes/no (surface shortcut)": 386,
        "examples with fewer than 10 candidates (a negative identical to the positive, dropped)": 1,
    }


def test_answers_sharing_a_prefix_keep_their_type(tmp_path):
    header = "sentence,pos_image_id," + ",".join(f"neg_sentence_{i}" for i in range(1, 10))
    row = "How many dogs? 2,1," + ",".join(["How many dogs? 2 dogs"] + [f"How many dogs? {word}" for word in "abcdefgh"])
    (tmp_path / "vqa_text_test.csv").write_text(f"{header}\n{row}\n")
    (example,) = VQAv2Task(VQAv2Options(), tmp_path).examples(seed=0)
    assert example.tags == {"answer_type": "number"}


def test_top_k_metrics_with_ties():
    task = VQAv2Task(VQAv2Options(), None)
    scores = [[0.5, 0.9, 0.8, 0.7, 0.6, 0.5, 0.1, 0.1, 0.1, 0.1]]
    assert task.outcomes(scores, [[0, 0]]) == {"top1": 0.0, "top5": 0.0}  # rank 6: a tie at 0.5 counts against it
    scores[0][5] = 0.4
    assert task.outcomes(scores, [[0, 0]]) == {"top1": 0.0, "top5": 1.0}


def write_official(root, split="val", answers=None):
    questions = [
        {"image_id": 42, "question": "What color is the bus?", "question_id": 420},
        {"image_id": 42, "question": "Is it raining?", "question_id": 421},
        {"image_id": 7, "question": "How many cats?", "question_id": 70},
    ]
    annotations = [
        {"question_id": 420, "image_id": 42, "answer_type": "other", "multiple_choice_answer": "red", "answers": [{"answer": "red", "answer_confidence": "yes", "answer_id": 1}, {"answer": "orange", "answer_confidence": "maybe", "answer_id": 2}]},
        {"question_id": 421, "image_id": 42, "answer_type": "yes/no", "multiple_choice_answer": "no", "answers": [{"answer": "no", "answer_confidence": "yes", "answer_id": 1}]},
        {"question_id": 70, "image_id": 7, "answer_type": "number", "multiple_choice_answer": "2", "answers": [{"answer": "2", "answer_confidence": "yes", "answer_id": 1}, {"answer": "3", "answer_confidence": "no", "answer_id": 2}]},
    ]
    (root / f"v2_OpenEnded_mscoco_{split}2014_questions.json").write_text(json.dumps({"questions": questions}))
    (root / f"v2_mscoco_{split}2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    vocabulary = answers or ["yes", "no", "red", "orange", "2", "3", "blue", "green", "white", "black", "1", "4", "5", "dog", "cat", "bus"]
    (root / "major_answers.json").write_text(json.dumps({answer: index for index, answer in enumerate(vocabulary)}))
    write_images(root / f"{split}2014" / f"COCO_{split}2014_{image_id:012d}.jpg" for image_id in (42, 7))


def test_official_json_builds_ten_seeded_candidates(tmp_path):
    write_official(tmp_path)
    task = VQAv2Task(VQAv2Options(source="official"), tmp_path)
    examples = task.examples(seed=0)
    bus = examples[0]
    assert bus.id == "vqav2-val-420" and bus.texts[0] == "What color is the bus? red" and len(bus.texts) == 10
    negatives = [text.removeprefix("What color is the bus? ") for text in bus.texts[1:]]
    assert len(set(negatives)) == 9 and not {"red", "orange"} & set(negatives)
    assert [e.tags["answer_type"] for e in examples] == ["other", "binary", "number"]
    assert bus.images[0].path == tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"
    assert task.examples(seed=0) == examples
    assert [e.texts for e in task.examples(seed=1)] != [e.texts for e in examples]


def test_official_negatives_exclude_answers_vqa_counts_as_the_same(tmp_path):
    """The vocabulary holds VQA's normalised forms; the humans' answers are written freely."""
    write_official(tmp_path, answers=["yes", "no", "2", "don't know", "usa", "dog", "red", "3", "blue", "cat", "bus", "1", "4", "green"])
    annotations_path = tmp_path / "v2_mscoco_val2014_annotations.json"
    annotations = json.loads(annotations_path.read_text())
    cats = annotations["annotations"][2]
    cats["multiple_choice_answer"] = "Two"
    cats["answers"] = [{"answer": "Two", "answer_confidence": "yes", "answer_id": 1}, {"answer": "dont know", "answer_confidence": "no", "answer_id": 2}, {"answer": "U.S.A.", "answer_confidence": "no", "answer_id": 3}]
    annotations_path.write_text(json.dumps(annotations))
    task = VQAv2Task(VQAv2Options(source="official"), tmp_path)
    for seed in range(5):
        drawn = [text.removeprefix("How many cats? ") for text in task.examples(seed=seed)[2].texts[1:]]
        assert len(set(drawn)) == 9 and not {"2", "don't know", "usa"} & set(drawn)


def test_a_vocabulary_too_small_to_draw_negatives_is_refused(tmp_path):
    write_official(tmp_path, answers=["yes", "no", "red", "orange", "2", "3", "blue", "green", "white", "black"])
    with pytest.raises(VlbenchError, match=r"major_answers.json: fewer than 9 answers other than question_id 420's \(orange, red\)"):
        VQAv2Task(VQAv2Options(source="official"), tmp_path).examples(seed=0)


def test_the_csv_examples_are_the_same_under_every_seed_official_ones_are_not(csv_root, tmp_path):
    write_official(tmp_path)
    csv, official = VQAv2Task(VQAv2Options(), csv_root), VQAv2Task(VQAv2Options(source="official"), tmp_path)
    assert (csv.examples_vary_by_seed, official.examples_vary_by_seed) == (False, True)
    check_task(csv)  # its examples under another seed are checked to be the same


def test_official_train_split_is_the_train_pool(tmp_path):
    write_official(tmp_path, "val")
    write_official(tmp_path, "train")
    task = VQAv2Task(VQAv2Options(source="official"), tmp_path)
    assert [e.id for e in task.train_pool(seed=0)] == ["vqav2-train-420", "vqav2-train-421", "vqav2-train-70"]


def test_json_that_does_not_parse_names_file_and_line(tmp_path):
    write_official(tmp_path)
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text('{"annotations": [\n  {"question_id": 420,\n  oops}]}')
    with pytest.raises(VlbenchError, match=r"v2_mscoco_val2014_annotations.json, line 3, column 3: not valid JSON"):
        VQAv2Task(VQAv2Options(source="official"), tmp_path).examples(seed=0)


def test_csv_with_a_missing_column_is_named(tmp_path):
    (tmp_path / "vqa_text_test.csv").write_text("sentence,pos_image_id\nq? a,1\n")
    with pytest.raises(VlbenchError, match=r"vqa_text_test.csv: missing column\(s\) neg_sentence_1, .*neg_sentence_9; the header has sentence, pos_image_id"):
        VQAv2Task(VQAv2Options(), tmp_path).examples(seed=0)


def test_data_check_passes_on_a_complete_layout(csv_root, tmp_path):
    result = vlbench_cli("data", "check", "--task", "vqav2", "--data-root", str(csv_root), cwd=tmp_path)
    assert "examples: 1000" in result.stdout and "answer_type: binary 386, number 131, other 483" in result.stdout
    assert "surface shortcut): 386" in result.stdout and "dropped): 1" in result.stdout and "ok: the layout is complete" in result.stdout


def test_a_board_refuses_to_average_seeds_whose_images_changed_between_them(tmp_path):
    """Official VQAv2 draws negatives per seed; the files it draws from, images included, must be
    the same for every seed of a row."""
    from vlbench.api import evaluate
    from vlbench.leaderboard.tables import build_board

    root, runs = tmp_path / "vqav2", tmp_path / "runs"
    root.mkdir()
    write_official(root)
    options = {"data_root": root, "runs_dir": runs, "task_options": {"source": "official"}}
    evaluate("vqav2", "random", seeds=[0, 1], **options)
    (table,) = build_board([runs])
    assert [row.seeds for row in table.rows] == [2]
    write_images([root / "val2014" / "COCO_val2014_000000000007.jpg"], size=(9, 9))
    evaluate("vqav2", "random", seeds=[2], **options)
    with pytest.raises(VlbenchError, match=r"seeds 0 and 2 were computed from different inputs \(task\.source_fingerprint: "):
        build_board([runs])
