import json
from collections import Counter

import pytest

from conftest import vlbench_cli
from placeholders import REAL_COMVG_CSV, comvg_root
from vlbench.config import Shots
from vlbench.splits import make_split
from vlbench.tasks.comvg import ComVGOptions, ComVGTask


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return comvg_root(tmp_path_factory.mktemp("comvg"), REAL_COMVG_CSV)


def test_reads_the_released_csv_as_it_is(root):
    examples = ComVGTask(ComVGOptions(), root).examples(seed=0)
    assert len(examples) == 5400
    assert Counter(e.tags["neg_value"] for e in examples) == {"object": 2584, "subject": 1536, "verb": 1280}
    assert len({key for e in examples for key in e.image_keys}) == 524
    first = examples[0]
    assert (first.id, first.texts, first.image_keys, first.positives) == ("comvg-1", ("a man is sitting at a table",), ("2358258", "2357994"), ((0, 0),))
    assert first.images[0].path == root / "vg_concept" / "2358258.jpg"
    assert len(ComVGTask(ComVGOptions(neg_value="verb"), root).examples(seed=0)) == 1280


def test_metrics_on_hand_built_scores():
    task = ComVGTask(ComVGOptions(), None)
    assert task.outcomes([[0.7], [0.2]], [[0, 0]]) == {"accuracy": 1.0}
    assert task.outcomes([[0.2], [0.7]], [[0, 0]]) == {"accuracy": 0.0}
    assert task.outcomes([[0.5], [0.5]], [[0, 0]]) == {"accuracy": 0.0}  # tie
    breakdown = {"neg_value": {"subject": {"n": 2, "accuracy": 0.5}, "object": {"n": 1, "accuracy": 1.0}, "verb": {"n": 4, "accuracy": 0.25}}}
    assert task.summarize({"metrics": {}, "breakdown": breakdown}) == {"average": pytest.approx((0.5 + 1.0 + 0.25) / 3)}


def test_grouped_split_keeps_every_evaluation_image_unseen(root):
    examples = ComVGTask(ComVGOptions(), root).examples(seed=0)
    split = make_split("comvg", examples, None, Shots.parse("5%"), seed=0, protocol="grouped")
    by_id = {e.id: e for e in examples}
    seen = {key for i in split.train_ids for key in by_id[i].image_keys}
    assert len(split.train_ids) == 270
    assert not seen & {key for i in split.eval_ids for key in by_id[i].image_keys}
    other = make_split("comvg", examples, None, Shots.parse("5%"), seed=1, protocol="grouped")
    assert other.train_ids != split.train_ids


def test_random_matcher_on_all_5400_examples_is_near_chance(root, tmp_path):
    vlbench_cli("run", "--task", "comvg", "--matcher", "random", "--data-root", str(root), "--shots", "0", cwd=tmp_path)
    record = json.loads(next(tmp_path.rglob("results.json")).read_text())
    assert record["n"] == 5400 and record["protocol"]["n_train"] == 0
    assert 0.47 < record["metrics"]["accuracy"] < 0.53
    assert {value: group["n"] for value, group in record["breakdown"]["neg_value"].items()} == {"object": 2584, "subject": 1536, "verb": 1280}
    assert 0.45 < record["metrics"]["average"] < 0.55
    split = json.loads(next(tmp_path.rglob("split.json")).read_text())
    assert len(split["eval_ids"]) == 5400 and split["split_sha256"] == record["protocol"]["split_sha256"]


def test_the_csv_under_comclip_s_name_is_named_with_the_option(tmp_path):
    from vlbench.errors import VlbenchError

    source = tmp_path / "source.csv"
    source.write_text("\n".join(REAL_COMVG_CSV.read_text().splitlines()[:6]) + "\n")
    root = comvg_root(tmp_path / "comvg", source)
    (root / "compositional_visual_genome.csv").rename(root / "ComVG.csv")
    with pytest.raises(VlbenchError, match=r"compositional_visual_genome.csv not found, but ComVG.csv \(ComCLIP's name for the same file\) is there: set `task_options: \{csv: ComVG.csv\}`"):
        ComVGTask(ComVGOptions(), root).examples(seed=0)
    assert len(ComVGTask(ComVGOptions(csv="ComVG.csv"), root).examples(seed=0)) == 5


def test_the_grouped_split_keeps_images_apart_but_not_sentences_and_does_not_stratify(root):
    """What the README's protocol section says of the released csv (seed 0)."""
    pool = ComVGTask(ComVGOptions(), root).examples(seed=0)
    by_id = {example.id: example for example in pool}
    split = make_split("comvg", pool, None, Shots.parse("5%"), seed=0, protocol="grouped")
    trained_sentences = {by_id[i].texts[0] for i in split.train_ids}
    assert not {key for i in split.train_ids for key in by_id[i].image_keys} & {key for i in split.eval_ids for key in by_id[i].image_keys}
    assert (len(split.eval_ids), sum(by_id[i].texts[0] in trained_sentences for i in split.eval_ids)) == (3380, 1019)
    small = make_split("comvg", pool, None, Shots.parse("1%"), seed=0, protocol="grouped")
    assert (len(small.train_ids), sum(by_id[i].tags["neg_value"] == "verb" for i in small.train_ids)) == (54, 6)  # 11%, against 1,280 of 5,400 rows (24%)
