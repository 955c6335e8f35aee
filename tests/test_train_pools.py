"""Where few-shot examples come from: the release's training files (ComVG, VQA csv), RefCOCOg's
splits that share images, and `--split paper-release` only where the release cut that way."""

from __future__ import annotations

import csv
import json
import pickle
import re
from pathlib import Path

import pytest
from PIL import Image

from vlbench.api import create_task, evaluate
from vlbench.config import Shots
from vlbench.errors import VlbenchError
from vlbench.splits import check_protocol, make_split

COMVG_COLUMNS = ["id", "sentence", "pos_triplet", "neg_triplet", "pos_image_id", "neg_image_id", "neg_value"]


def _image(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(path)


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def comvg_with_training(tmp_path: Path) -> Path:
    """12 test rows over images 1..24, and a training csv of 10 rows over images 101..110 that
    also uses test image 1 (Visual Genome ids are one space: VG_100K and vg_concept share them)."""
    root = tmp_path / "comvg"
    parts = ("subject", "object", "verb")
    _csv(root / "compositional_visual_genome.csv", COMVG_COLUMNS, [
        [i, f"sentence {i}", "a,b,c", "('d', 'b', 'c')", 2 * i - 1, 2 * i, parts[i % 3]] for i in range(1, 13)
    ])
    for image_id in range(1, 25):
        _image(root / "vg_concept" / f"{image_id}.jpg", image_id)
    train_rows = [[f"train sentence {i}", 100 + i, 1 if i == 1 else 100 + (i % 10) + 1] for i in range(1, 11)]
    _csv(root / "comvg_train.csv", ["sentence", "pos_image_id", "neg_image_id"], train_rows)
    for image_id in [*range(101, 111), 1]:
        _image(root / "VG_100K" / f"{image_id}.jpg", image_id)
    return root


def test_comvg_trains_on_its_training_file_and_evaluates_the_whole_test_file(comvg_with_training):
    task = create_task("comvg", comvg_with_training, train_file="comvg_train.csv")
    pool, train_pool = task.examples(0), task.train_pool(0)
    assert [e.id for e in train_pool] == [f"comvg-train-{i}" for i in range(1, 11)]
    assert train_pool[0].images[0].path == comvg_with_training / "VG_100K" / "101.jpg"
    split = make_split("comvg", pool, train_pool, Shots.parse("10"), seed=0, protocol="grouped")
    # Every training row is drawn; the one test row showing image 1 (a training negative) is dropped.
    assert set(split.train_ids) == {e.id for e in train_pool}
    assert split.eval_ids == tuple(e.id for e in pool if e.id != "comvg-1") and split.dropped == 1


def test_a_board_refuses_to_average_seeds_whose_training_file_differs(comvg_with_training, tmp_path):
    """ComVG's examples do not vary by seed, so neither may its data's fingerprint, training file
    included: seeds trained on an edited file are not one configuration's seeds."""
    from vlbench.leaderboard.tables import build_board

    options = {"data_root": comvg_with_training, "runs_dir": tmp_path / "runs", "task_options": {"train_file": "comvg_train.csv"}}
    evaluate("comvg", "random", shots="3", seeds=[0], **options)
    training = comvg_with_training / "comvg_train.csv"
    training.write_text(training.read_text().replace("train sentence 1,", "edited sentence 1,"))
    evaluate("comvg", "random", shots="3", seeds=[1], **options)
    with pytest.raises(VlbenchError, match=r"comvg: \S+/seed-0 and \S+/seed-1 trained on different data \(the training examples every seed should draw from; "):
        build_board([tmp_path / "runs"])


def test_a_board_refuses_to_rank_rows_trained_on_different_training_files_beside_each_other(comvg_with_training, tmp_path):
    """Two matchers' few-shot rows on one seed, the training file edited between them (its ids
    unchanged): they evaluated the same examples, but their shots came from different data."""
    from vlbench.leaderboard.tables import build_board

    options = {"data_root": comvg_with_training, "runs_dir": tmp_path / "runs", "task_options": {"train_file": "comvg_train.csv"}, "shots": "3"}
    evaluate("comvg", "random", **options)
    build_board([tmp_path / "runs"])
    training = comvg_with_training / "comvg_train.csv"
    training.write_text(training.read_text().replace("train sentence 1,", "edited sentence 1,"))
    evaluate("comvg", "color-words", **options)
    with pytest.raises(VlbenchError, match=r"comvg: \S+/(random|color-words)/\S+ and \S+/(random|color-words)/\S+ trained on different data \(the training examples every seed should draw from; fingerprints \S+ → \S+\): "):
        build_board([tmp_path / "runs"])


def test_a_run_with_train_file_records_the_training_file_and_the_whole_evaluation(comvg_with_training, tmp_path):
    result = evaluate("comvg", "random", shots="3", data_root=comvg_with_training, runs_dir=tmp_path / "runs", task_options={"train_file": "comvg_train.csv"})
    record = json.loads((result.run_dirs[0] / "results.json").read_text())
    split = json.loads((result.run_dirs[0] / "split.json").read_text())
    assert all(i.startswith("comvg-train-") for i in split["train_ids"]) and len(split["train_ids"]) == 3
    assert record["task"]["options"]["train_file"] == "comvg_train.csv"
    assert record["n"] + record["protocol"]["dropped_for_shared_images"] == 12


def test_vqa_csv_trains_on_its_training_file(tmp_path):
    root = tmp_path / "vqav2"
    header = ["sentence", "pos_image_id", *(f"neg_sentence_{i}" for i in range(1, 10))]
    for name, folder, split, first_id in (("vqa_text_test.csv", "val2014", "val2014", 1), ("vqa_text_train.csv", "train2014", "train2014", 50)):
        rows = [[f"what is it? answer{i}", first_id + i, *(f"what is it? other{i}-{k}" for k in range(9))] for i in range(6)]
        _csv(root / name, header, rows)
        for row in rows:
            _image(root / folder / f"COCO_{split}_{row[1]:012d}.jpg", row[1])
    task = create_task("vqav2", root, train_file="vqa_text_train.csv")
    train_pool = task.train_pool(0)
    assert [e.id for e in train_pool] == [f"vqav2-train-{i}" for i in range(1, 7)]
    assert train_pool[2].images[0].path == root / "train2014" / "COCO_train2014_000000000052.jpg"
    assert train_pool[2].texts[0] == "what is it? answer2"
    split = make_split("vqav2", task.examples(0), train_pool, Shots.parse("50%"), seed=0, protocol="grouped")
    assert len(split.train_ids) == 3 and len(split.eval_ids) == 6 and split.dropped == 0


def _google_refs(root: Path) -> None:
    """Google's RefCOCOg split divides objects: images 1 and 2 have refs in train and in val."""
    refs, sent_id = [], 0
    for ref_id, (image_id, split) in enumerate([(1, "train"), (1, "val"), (2, "train"), (2, "val"), (3, "val"), (4, "train"), (5, "val"), (6, "train")] * 2):
        sentences = []
        for _ in range(3):
            sent_id += 1
            sentences.append({"sent_id": sent_id, "raw": f"The thing number {sent_id}.", "sent": f"the thing number {sent_id}"})
        refs.append({"ref_id": ref_id, "ann_id": ref_id, "image_id": image_id, "split": split, "sentences": sentences})
    root.mkdir(parents=True)
    with open(root / "refs(google).p", "wb") as handle:
        pickle.dump(refs, handle)


def test_refcocog_drops_evaluation_examples_whose_image_was_trained_on(tmp_path):
    _google_refs(tmp_path / "refcocog")
    task = create_task("refcocog", tmp_path / "refcocog", refs="refs(google).p")
    pool, train_pool = task.examples(0), task.train_pool(0)
    assert {e.image_keys[0] for e in pool} & {e.image_keys[0] for e in train_pool} == {"1", "2"}
    split = make_split("refcocog", pool, train_pool, Shots.parse(str(len(train_pool))), seed=0, protocol="grouped")
    by_id = {e.id: e for e in pool}
    evaluated_images = {by_id[i].image_keys[0] for i in split.eval_ids}
    assert evaluated_images == {"3", "5"}
    assert split.dropped == sum(1 for e in pool if e.image_keys[0] in ("1", "2")) == 12


def test_refcocog_all_splits_is_the_release_pool_and_paper_release_cuts_its_first_rows(tmp_path):
    _google_refs(tmp_path / "refcocog")
    task = create_task("refcocog", tmp_path / "refcocog", refs="refs(google).p", eval_split="all")
    pool = task.examples(0)
    assert task.train_pool(0) is None and len(pool) == 48
    check_protocol("refcocog", task.release_cut, False, Shots.parse("5%"), "paper-release")
    split = make_split("refcocog", pool, None, Shots.parse("5%"), seed=0, protocol="paper-release")
    assert split.train_ids == tuple(e.id for e in pool[:2]) and split.eval_ids == tuple(e.id for e in pool[2:])


@pytest.mark.parametrize(("task", "release_cut", "has_train_pool", "shots", "message"), [
    ("comvg", False, False, "5%", "--split paper-release: the released DSD code does not cut the evaluation rows of task 'comvg'"),
    ("refcocog", True, True, "5%", "--split paper-release: task 'refcocog' trains on its train pool with these options"),
    ("refcocog", True, False, "0", "--split paper-release: with --shots 0 nothing is cut off for training"),
])
def test_paper_release_is_refused_where_it_has_no_meaning(task, release_cut, has_train_pool, shots, message):
    with pytest.raises(VlbenchError, match=re.escape(message)):
        check_protocol(task, release_cut, has_train_pool, Shots.parse(shots), "paper-release")


def test_data_check_and_a_suite_name_missing_training_images_before_any_run(comvg_with_training, tmp_path):
    from conftest import vlbench_cli
    from vlbench.datacheck import check_data

    (comvg_with_training / "VG_100K" / "105.jpg").unlink()
    report = check_data(create_task("comvg", comvg_with_training, train_file="comvg_train.csv"))
    assert report.problems == ["1 of 11 training image files cannot be used (few-shot runs train on them)"]
    assert report.bad_images == [f"{comvg_with_training / 'VG_100K' / '105.jpg'}: missing"]
    assert check_data(create_task("comvg", comvg_with_training)).problems == [], "without the training file, its images are not needed"
    suite = "seeds: [0]\ntasks: [{task: comvg, data_root: comvg, task_options: {train_file: comvg_train.csv}}]\nruns:\n  - {matcher: random}\n  - {matcher: random, shots: '10'}\n"
    (tmp_path / "s.yaml").write_text(suite)
    expected = f"missing: data for comvg: task 'comvg': 1 of 35 image files are missing, e.g. {comvg_with_training / 'VG_100K' / '105.jpg'} (vlbench data check lists them)"
    plan = vlbench_cli("suite", "plan", "s.yaml", "--data-dir", str(tmp_path), cwd=tmp_path).stdout.splitlines()
    assert expected in plan, plan
    refused = vlbench_cli("suite", "run", "s.yaml", "--data-dir", str(tmp_path), cwd=tmp_path, check=False)
    assert refused.returncode == 2 and expected in refused.stderr.splitlines()
    assert "error: the 1 missing models and datasets listed above cannot be fetched by a run (data is never downloaded; models are not while the hub is offline); nothing was run" in refused.stderr
    assert not (tmp_path / "runs").exists()
    # Only what runs read counts: without the training run, that image is not needed; an evaluation
    # image missing where runs skip bad examples is not either.
    (comvg_with_training / "vg_concept" / "3.jpg").unlink()
    (tmp_path / "s.yaml").write_text(suite.replace("  - {matcher: random, shots: '10'}\n", "").replace("{matcher: random}", "{matcher: random, on_bad_example: skip}"))
    assert vlbench_cli("suite", "run", "s.yaml", "--data-dir", str(tmp_path), cwd=tmp_path).returncode == 0
