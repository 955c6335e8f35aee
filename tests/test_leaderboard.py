import csv
import json
import math
import statistics
from pathlib import Path

import pytest
from scipy import stats

from support import results_record
from vlbench.errors import VlbenchError
from vlbench.leaderboard.publish import render_board
from vlbench.leaderboard.tables import group_rows
from vlbench.stats import mean_and_ci
from vlbench.stored_runs import find_runs

EXPECTED = Path(__file__).parent / "expected" / "leaderboard.md"


def write_record(root: Path, matcher: str, config_id: str, shots: str, seed: int, accuracy: float, by_tag: dict, model=None, task="colors"):
    record = results_record(task, matcher, config_id, shots, seed, {"accuracy": accuracy}, {"neg_value": {tag: {"n": 50, "accuracy": value} for tag, value in by_tag.items()}}, 100, model=model)
    path = root / task / matcher / config_id / f"seed-{seed}" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path):
    for seed, accuracy in enumerate((0.50, 0.60, 0.70)):
        write_record(tmp_path, "mean-color", "aaa", "10%", seed, accuracy, {"color": accuracy + 0.2, "shape": accuracy - 0.2})
    for seed, accuracy in enumerate((0.52, 0.48, 0.50)):
        write_record(tmp_path, "random", "bbb", "10%", seed, accuracy, {"color": 0.5, "shape": accuracy})
    write_record(tmp_path, "random", "ccc", "0", 0, 0.49, {"color": 0.5, "shape": 0.48})
    write_record(tmp_path, "color-words", "ddd", "0", 0, 0.525, {"color": 1.0, "shape": 0.0})
    return tmp_path


def test_confidence_interval_matches_scipy():
    values = [0.5, 0.6, 0.7, 0.66]
    mean, half_width = mean_and_ci(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert mean == pytest.approx((low + high) / 2, abs=1e-12)
    assert half_width == pytest.approx((high - low) / 2, abs=1e-12)
    assert type(half_width) is float  # not numpy's: the API returns it beside a plain mean
    assert mean_and_ci([0.3]) == (0.3, None)


def test_rows_group_seeds_of_one_configuration(runs):
    rows = group_rows(find_runs([runs]))
    assert [(row.matcher, row.shots, row.seeds) for row in rows] == [("color-words", "0", [0]), ("random", "0", [0]), ("mean-color", "10%", [0, 1, 2]), ("random", "10%", [0, 1, 2])]


def test_markdown_matches_the_saved_board(runs):
    markdown = render_board([runs])
    # 0.6 ± t(0.975, 2) · 0.1 / √3 = 24.84 points
    assert "| mean-color | 10% | 3 † | 100 | **60.00 ± 24.84** |" in markdown  # results.json alone: taken as recorded
    assert markdown == EXPECTED.read_text()


def test_a_run_copied_into_two_runs_directories_is_refused(runs, tmp_path_factory):
    import shutil

    copy = tmp_path_factory.mktemp("copy")
    shutil.copytree(runs / "colors" / "random" / "bbb", copy / "bbb")
    with pytest.raises(VlbenchError, match=r"two records of the same run \(random, config bbb, seed \d\): .*/bbb/seed-\d and .*/bbb/seed-\d; a runs directory passed twice, or a run copied \(or made again from another data root\) into another one"):
        group_rows(find_runs([runs, copy]))


def test_paired_comparison_s_interval_is_scipy_s_bootstrap_and_its_p_scipy_s_sign_flip_test():
    import numpy as np

    from vlbench.leaderboard.paired import paired_comparison

    rng = np.random.default_rng(1)
    baseline = rng.random(400)
    matcher = baseline + rng.normal(0.04, 0.5, 400)
    differences = matcher - baseline
    result = paired_comparison(matcher, baseline, resamples=20_000, seed=0)
    assert result.difference == pytest.approx(differences.mean(), abs=1e-12) and result.n_pairs == 400
    reference = stats.bootstrap((differences,), np.mean, n_resamples=20_000, method="percentile", random_state=1).confidence_interval
    assert result.low == pytest.approx(reference.low, abs=0.006) and result.high == pytest.approx(reference.high, abs=0.006)
    # One sample under permutation_type="samples": scipy flips each observation's sign.
    flips = stats.permutation_test((differences,), np.mean, permutation_type="samples", n_resamples=20_000, alternative="two-sided", random_state=1)
    assert result.p_value == pytest.approx(flips.pvalue, abs=0.01)
    assert paired_comparison([1.0] * 50 + [0.0] * 50, [0.0] * 100).p_value < 1e-3
    assert paired_comparison([1.0, 0.0], [1.0, 0.0]).p_value == 1.0


@pytest.mark.parametrize(("right_only_in_ours", "right_only_in_theirs", "exact"), [(5, 0, 0.0625), (6, 2, 0.2891), (3, 0, 0.25)])
def test_the_p_value_of_0_1_outcomes_is_mc_nemar_s_exact_test(right_only_in_ours, right_only_in_theirs, exact):
    """Only the examples right in one row decide; the bootstrap p this replaced gave 0.033, 0.203
    and 0.126 here."""
    from vlbench.leaderboard.paired import paired_comparison

    ours = [1.0] * right_only_in_ours + [0.0] * right_only_in_theirs + [1.0] * 50 + [0.0] * 40
    theirs = [0.0] * right_only_in_ours + [1.0] * right_only_in_theirs + [1.0] * 50 + [0.0] * 40
    assert stats.binomtest(right_only_in_ours, right_only_in_ours + right_only_in_theirs).pvalue == pytest.approx(exact, abs=1e-4)
    assert paired_comparison(ours, theirs, resamples=40_000).p_value == pytest.approx(exact, abs=0.006)


def test_a_headline_averaged_over_groups_is_compared_as_such():
    """ComVG's average is the mean over swap types: a row better on the large group and worse on
    the small ones gains on pooled accuracy but loses on the average, and the comparison says the latter."""
    from vlbench.leaderboard.paired import paired_comparison

    groups = ["object"] * 200 + ["subject"] * 50 + ["verb"] * 50
    theirs = [0.0] * 20 + [1.0] * 180 + [1.0] * 30 + [0.0] * 20 + [1.0] * 30 + [0.0] * 20
    ours = [1.0] * 20 + [1.0] * 180 + [1.0] * 26 + [0.0] * 24 + [1.0] * 26 + [0.0] * 24  # +20 right on object, -4 on each of the others
    pooled = (sum(ours) - sum(theirs)) / len(ours)
    result = paired_comparison(ours, theirs, groups)
    assert pooled > 0 and result.difference == pytest.approx((20 / 200 - 4 / 50 - 4 / 50) / 3) and result.difference < 0
    assert result.low < result.difference < result.high


def test_examples_sharing_a_matching_image_are_resampled_and_flipped_as_one_unit():
    """Ten clusters of ten examples with one difference each are ten observations, not a hundred:
    the same draws as ten examples give the same interval and p, where a test of a hundred
    independent examples finds far less room for chance."""
    from vlbench.leaderboard.paired import paired_comparison

    per_cluster = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, -1.0, 1.0]
    clustered = paired_comparison([value for value in per_cluster for _ in range(10)], [0.0] * 100, clusters=[str(c) for c in range(10) for _ in range(10)], resamples=4000)
    alone = paired_comparison(per_cluster, [0.0] * 10, resamples=4000)
    assert (clustered.difference, clustered.low, clustered.high, clustered.p_value) == pytest.approx((alone.difference, alone.low, alone.high, alone.p_value), abs=1e-12)
    assert (clustered.n_pairs, clustered.n_units) == (100, 10)
    independent = paired_comparison([value for value in per_cluster for _ in range(10)], [0.0] * 100, resamples=4000)
    assert independent.p_value < 0.001 < 0.05 < clustered.p_value and independent.high - independent.low < (clustered.high - clustered.low) / 2


def test_under_a_null_where_a_picture_s_rows_move_together_p_below_0_05_is_rare():
    """150 pictures, a row in each swap type; each picture's three rows are won by the matcher, the
    baseline, or neither, alike, with no difference between the rows in expectation. Whole-picture
    units keep p < 0.05 at or below 5% of comparisons; examples resampled one by one reach it in
    about a quarter (these 200 comparisons: 1.0% against 23.0%)."""
    import numpy as np

    from vlbench.leaderboard.paired import paired_comparison

    rng = np.random.default_rng(0)
    groups = [group for _ in range(150) for group in ("subject", "object", "verb")]
    pictures = [f"p{picture}" for picture in range(150) for _ in range(3)]
    rejected = {"pictures": 0, "examples": 0}
    for trial in range(200):
        winner = rng.choice([-1.0, 0.0, 0.0, 1.0], 150)
        ours, theirs = np.repeat((winner > 0).astype(float), 3), np.repeat((winner < 0).astype(float), 3)
        rejected["pictures"] += paired_comparison(ours, theirs, groups, clusters=pictures, resamples=500, seed=trial).p_value < 0.05
        rejected["examples"] += paired_comparison(ours, theirs, groups, resamples=500, seed=trial).p_value < 0.05
    assert rejected["pictures"] / 200 < 0.08 and rejected["examples"] / 200 > 0.15


def test_without_groups_units_of_one_example_draw_what_the_example_level_test_drew():
    """The example-level test vlbench made before it clustered examples, written out: the same
    random numbers give the same interval and p."""
    import numpy as np

    from vlbench.leaderboard.paired import paired_comparison

    ours, theirs = [float(i % 3 == 0) for i in range(50)], [float(i % 4 == 0) for i in range(50)]
    differences = np.subtract(ours, theirs)
    rng = np.random.default_rng(0)
    means = np.concatenate([differences[rng.integers(0, 50, size=(1000, 50))].mean(axis=1) for _ in range(3)])
    flipped = np.concatenate([np.where(rng.random((1000, 50)) < 0.5, -differences, differences).mean(axis=1) for _ in range(3)])
    p_value = (np.count_nonzero(np.abs(flipped) >= abs(differences.mean()) - 1e-12) + 1) / 3001
    expected = (differences.mean(), *np.percentile(means, [2.5, 97.5]), p_value)
    for clusters in (None, [f"c{i}" for i in range(50)]):
        result = paired_comparison(ours, theirs, clusters=clusters, resamples=3000)
        assert (result.difference, result.low, result.high, result.p_value) == pytest.approx(expected, abs=1e-12) and result.n_units == 50


def test_a_picture_s_rows_in_every_swap_type_are_one_unit():
    """ComVG's average over swap types: a picture whose rows fall in three groups moves all three,
    so ten pictures with a row in each group are ten observations, as ten examples without groups."""
    from vlbench.leaderboard.paired import paired_comparison

    per_picture = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    ours = [value for value in per_picture for _ in range(3)]
    groups, clusters = ["subject", "verb", "object"] * 10, [f"p{i}" for i in range(10) for _ in range(3)]
    clustered = paired_comparison(ours, [0.0] * 30, groups, clusters=clusters)
    alone = paired_comparison(per_picture, [0.0] * 10)
    assert (clustered.difference, clustered.low, clustered.high, clustered.p_value) == pytest.approx((alone.difference, alone.low, alone.high, alone.p_value), abs=1e-12)
    assert clustered.n_units == 10 and paired_comparison(ours, [0.0] * 30, groups).p_value < 0.001 < 0.01 < clustered.p_value


def test_a_resample_that_draws_no_example_of_a_group_is_left_out():
    """The rare group's mean is 1 wherever it is drawn: the interval lies within [0.5, 1]; a NaN
    (no example of it drawn) left in would poison the percentiles. Drawing too few resamples to
    have one with every group is refused."""
    from vlbench.leaderboard.paired import paired_comparison

    groups = ["rare"] + ["common"] * 39  # the rare group's one unit is missed by about 36% of the resamples
    result = paired_comparison([1.0] + [float(i % 2) for i in range(39)], [0.0] * 40, groups, clusters=[f"c{i // 2}" for i in range(40)])
    assert result.n_units == 20 and result.difference == pytest.approx((1 + 19 / 39) / 2)
    assert 0.5 <= result.low < result.difference < result.high <= 1.0
    with pytest.raises(ValueError, match="none of the 1 resamples drew an example of every group"):
        paired_comparison([1.0, 0.0], [0.0, 0.0], ["a", "b"], clusters=["x", "y"], resamples=1)


@pytest.mark.parametrize(
    ("ours", "groups", "clusters", "message"),
    [([1.0, 0.0], ["a"], None, "1 group labels for 2 examples"), ([1.0, 0.0], None, ["x"], "1 cluster labels for 2 examples"), ([1.0, float("nan")], None, None, "paired outcomes must be finite numbers")],
)
def test_labels_that_do_not_fit_the_examples_and_non_finite_outcomes_are_refused(ours, groups, clusters, message):
    from vlbench.leaderboard.paired import paired_comparison

    with pytest.raises(ValueError, match=message):
        paired_comparison(ours, [0.0, 0.0], groups, clusters=clusters)


def test_the_board_clusters_examples_by_the_picture_of_their_matching_pair(tmp_path):
    from vlbench.leaderboard.tables import build_board

    ids = [f"e{i}" for i in range(40)]
    pictures = {i: f"picture-{n // 8}" for n, i in enumerate(ids)}  # five pictures, eight questions each
    write_scored_run(tmp_path / "together", "plain", 0, set(ids[:20]), ids, pictures)
    write_scored_run(tmp_path / "together", "good", 0, set(ids[:28]), ids, pictures)
    write_scored_run(tmp_path / "apart", "plain", 0, set(ids[:20]), ids)
    write_scored_run(tmp_path / "apart", "good", 0, set(ids[:28]), ids)
    (together,) = build_board([tmp_path / "together"], baseline="plain")[0].comparisons
    (apart,) = build_board([tmp_path / "apart"], baseline="plain")[0].comparisons
    assert (together.pairs, together.units, apart.units) == (40, 5, 40) and together.difference == apart.difference == pytest.approx(20.0)
    assert apart.p_value < 0.02 and together.p_value == pytest.approx(0.5, abs=0.03)  # the gain lies in two pictures: their signs agree in half the flips
    assert "| 40 in 5 units |" in render_board([tmp_path / "together"], baseline="plain") and "| 40 |" in render_board([tmp_path / "apart"], baseline="plain")


def test_crops_of_one_picture_are_one_unit(tmp_path):
    """RefCOCOg with `view: crop`: each expression shows its object's crop, and the crops of one
    photograph are clustered by the picture `examples.jsonl` records beside each crop's key."""
    from vlbench.leaderboard.tables import build_board

    ids = [f"e{i}" for i in range(40)]
    crops = {i: f"picture-{n // 8}-object-{n % 4}" for n, i in enumerate(ids)}  # five pictures, four objects each, two expressions per object
    for matcher, right in (("plain", ids[:20]), ("good", ids[:28])):
        write_scored_run(tmp_path, matcher, 0, set(right), ids, crops)
        shown = tmp_path / "colors" / matcher / f"cfg-{matcher}" / "seed-0" / "examples.jsonl"
        lines = [json.loads(line) for line in shown.read_text().splitlines()]
        for line in lines:
            line["images"][0]["picture"] = line["images"][0]["key"].rsplit("-object-", 1)[0]
        shown.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (comparison,) = build_board([tmp_path], baseline="plain")[0].comparisons
    assert (comparison.pairs, comparison.units) == (40, 5)


def test_an_example_line_records_the_picture_a_crop_is_cut_from():
    from vlbench.example_records import example_line
    from vlbench.types import Example, ImageRef

    crop = ImageRef("1234@0,0,8,8", path=Path("1234.jpg"), crop=(0, 0, 8, 8), picture="1234")
    example = Example("e0", [crop, ImageRef("99", path=Path("99.jpg"))], ["a dog"], [(0, 0)])
    assert json.loads(example_line(example))["images"] == [{"key": "1234@0,0,8,8", "picture": "1234"}, {"key": "99"}]


def test_a_run_whose_examples_file_lacks_a_scored_example_is_not_compared(tmp_path):
    from vlbench.leaderboard.tables import build_board

    ids = [f"e{i}" for i in range(10)]
    write_scored_run(tmp_path, "plain", 0, set(ids[:5]), ids)
    write_scored_run(tmp_path, "good", 0, set(ids[:8]), ids)
    shown = tmp_path / "colors" / "good" / "cfg-good" / "seed-0" / "examples.jsonl"
    shown.write_text("".join(shown.read_text().splitlines(keepends=True)[1:]))
    (table,) = build_board([tmp_path], baseline="plain")
    assert not table.comparisons and table.uncompared == [f"good (0 shots): {shown.parent} scored example 'e0' but its examples.jsonl, which names the images the comparison clusters examples by, lacks it"]


def test_a_run_whose_examples_file_names_no_image_of_a_matching_pair_is_not_compared(tmp_path):
    from vlbench.leaderboard.tables import build_board

    ids = [f"e{i}" for i in range(10)]
    write_scored_run(tmp_path, "plain", 0, set(ids[:5]), ids)
    write_scored_run(tmp_path, "good", 0, set(ids[:8]), ids)
    shown = tmp_path / "colors" / "plain" / "cfg-plain" / "seed-0" / "examples.jsonl"
    shown.write_text("".join(json.dumps({"id": "e3", "texts": ["red"], "images": []}) + "\n" if '"e3"' in line else line for line in shown.read_text().splitlines(keepends=True)))
    (table,) = build_board([tmp_path], baseline="plain")
    assert not table.comparisons and table.uncompared == [f"good (0 shots): {shown.parent}: the examples.jsonl line of example 'e3' names no key for its image 0, which the comparison clusters examples by"]


def write_scored_run(root, matcher, seed, correct_ids, ids, pictures=None):
    """A colors run whose scores make exactly `correct_ids` right (positive image 0 wins); each
    example's matching image is `pictures[id]` (default: an image of its own)."""
    run = root / "colors" / matcher / f"cfg-{matcher}" / f"seed-{seed}"
    run.mkdir(parents=True)
    lines = [json.dumps({"id": i, "scores": [[1.0], [0.0]] if i in correct_ids else [[0.0], [1.0]], "positives": [[0, 0]], "tags": {"neg_value": "color"}}) for i in ids]
    (run / "scores.jsonl").write_text("\n".join(lines) + "\n")
    shown = [json.dumps({"id": i, "texts": ["red"], "images": [{"key": (pictures or {}).get(i, f"{i}-pos")}, {"key": f"{i}-neg"}]}) for i in ids]
    (run / "examples.jsonl").write_text("\n".join(shown) + "\n")
    (run / "split.json").write_text(json.dumps({"eval_ids": ids, "train_ids": []}))
    accuracy = len(correct_ids) / len(ids)
    record = results_record("colors", matcher, f"cfg-{matcher}", "0", seed, {"accuracy": accuracy}, {"neg_value": {"color": {"n": len(ids), "accuracy": accuracy}}}, len(ids))
    (run / "results.json").write_text(json.dumps(record))


def test_a_run_whose_results_are_not_what_its_scores_give_is_refused_until_rescored(tmp_path):
    from vlbench.leaderboard.tables import build_board
    from vlbench.rescore import rescore

    write_scored_run(tmp_path, "random", 0, {"e0", "e1"}, ["e0", "e1", "e2", "e3"])
    run = tmp_path / "colors" / "random" / "cfg-random" / "seed-0"
    scores = (run / "scores.jsonl").read_text().splitlines()
    assert build_board([tmp_path])[0].rows[0].cells[0].mean == 50.0
    (run / "scores.jsonl").write_text("\n".join([*scores[:3], scores[3].replace("[[0.0], [1.0]]", "[[1.0], [0.0]]")]) + "\n")  # e3 now right
    with pytest.raises(VlbenchError, match=r"seed-0/results.json records accuracy 0.5 where its scores give 0.75 \(1 more differ\): the run's files disagree .* `vlbench score .*seed-0` rewrites"):
        build_board([tmp_path])
    rescore(run)
    assert build_board([tmp_path])[0].rows[0].cells[0].mean == 75.0


def test_the_board_names_the_devices_its_runs_ran_on_and_warns_when_they_differ(tmp_path):
    from vlbench.leaderboard.report import _index_page
    from vlbench.leaderboard.tables import build_board, render_csv, render_markdown

    a, b = "cpu (AMD EPYC, x86_64 AVX512, 2 threads)", "cpu (Intel Xeon, x86_64 AVX2, 1 thread)"
    for seed in (0, 1, 2):
        write_scored_run(tmp_path, "random", seed, {"e0"}, ["e0", "e1"])
    assert "\n3 runs do not record their device (`provenance.sessions[].device`).\n" in render_markdown(build_board([tmp_path]))

    def ran_on(seed, *devices):
        path = tmp_path / "colors" / "random" / "cfg-random" / f"seed-{seed}" / "results.json"
        record = json.loads(path.read_text())
        record["provenance"] = {"sessions": [{"device": device} for device in devices] or [{}]}  # a session before devices were recorded
        path.write_text(json.dumps(record))

    for seed in (0, 1, 2):
        ran_on(seed, a, a)  # resumed on the same device
    assert f"\nTheir runs ran on {a}: 3 runs (`provenance.sessions[].device`).\n" in render_markdown(build_board([tmp_path]))
    ran_on(2)
    assert f"\nTheir runs ran on {a}: 2 runs; 1 run does not record its device (`provenance.sessions[].device`); devices round float32 differently" in render_markdown(build_board([tmp_path]))
    ran_on(1, a, b, a)  # resumed elsewhere, then back
    ran_on(2, b)
    tables = build_board([tmp_path])
    two = f"Their runs ran on {a}: 2 runs, {b}: 2 runs (`provenance.sessions[].device`); devices round float32 differently (on the CPU, by instruction set and thread count), and training can amplify it: compare trained rows made on one device."
    assert two in render_markdown(tables) and two in _index_page(tables, {}, [])
    assert {line["devices"] for line in csv.DictReader(render_csv(tables).splitlines())} == {f"{a}; {b}"}


def test_runs_of_another_task_version_are_shown_as_recorded(tmp_path):
    """Their metrics may have been computed by other code: they are not checked against today's."""
    from vlbench.leaderboard.tables import build_board

    write_scored_run(tmp_path, "random", 0, {"e0", "e1"}, ["e0", "e1", "e2", "e3"])
    results = tmp_path / "colors" / "random" / "cfg-random" / "seed-0" / "results.json"
    record = json.loads(results.read_text())
    record["task"]["version"], record["metrics"]["accuracy"] = "0", 0.75
    results.write_text(json.dumps(record))
    assert build_board([tmp_path])[0].rows[0].cells[0].mean == 75.0


def test_a_seed_taken_as_recorded_is_marked_on_the_board(tmp_path):
    import csv

    from vlbench.leaderboard.report import _index_page
    from vlbench.leaderboard.tables import build_board, render_csv, render_json, render_markdown

    for seed in (0, 1):
        write_scored_run(tmp_path, "random", seed, {"e0", "e1"}, ["e0", "e1", "e2", "e3"])
    checked = render_markdown(build_board([tmp_path]))
    assert "| random | 0 | 2 | 4 |" in checked and "†" not in checked
    (tmp_path / "colors" / "random" / "cfg-random" / "seed-1" / "scores.jsonl").unlink()  # a results.json alone
    marked = render_markdown(build_board([tmp_path]))
    assert "| random | 0 | 2 † seed 1 | 4 |" in marked
    assert "† marks seeds taken as recorded (after the count: all of them): no stored scores to check their numbers against (a results.json alone)" in marked
    assert {line["unchecked_seeds"] for line in csv.DictReader(render_csv(build_board([tmp_path])).splitlines())} == {"1"} and json.loads(render_json(build_board([tmp_path])))[0]["rows"][0]["unchecked_seeds"] == [1]
    page = _index_page(build_board([tmp_path]), {}, [])
    assert "<td>2 † seed 1</td>" in page and "† marks seeds taken as recorded" in page
    assert "Measured rows were computed by sources unrecorded" in page  # hand-made records name no code
    (tmp_path / "colors" / "random" / "cfg-random" / "seed-0" / "scores.jsonl").unlink()
    assert "| random | 0 | 2 † | 4 |" in render_markdown(build_board([tmp_path]))


def test_bootstrap_rows_pair_examples_by_seed_and_id(tmp_path):
    from vlbench.leaderboard.tables import build_board

    ids = [f"colors-{i}" for i in range(100)]
    for seed in (0, 1):
        write_scored_run(tmp_path, "good", seed, set(ids[:80]), ids)
        write_scored_run(tmp_path, "plain", seed, set(ids[:60]), ids)
    (table,) = build_board([tmp_path], baseline="plain")
    (comparison,) = table.comparisons
    assert comparison.label == "good" and comparison.metric == "accuracy" and comparison.pairs == 100  # one pair per example
    assert comparison.difference == pytest.approx(20.0)
    assert comparison.low < 20.0 < comparison.high and comparison.p_value < 1e-3
    markdown = render_board([tmp_path], baseline="plain")
    assert "Paired comparison with `plain`" in markdown and "| good | 0 | accuracy | +20.00 |" in markdown
    with pytest.raises(VlbenchError, match="--baseline plian: no row of that matcher on this board. Did you mean 'plain'"):
        build_board([tmp_path], baseline="plian")


def test_a_baseline_with_two_rows_on_the_same_data_compares_against_neither(tmp_path):
    """Which of them a row was compared with would be an accident of order."""
    import shutil

    from vlbench.leaderboard.tables import build_board

    ids = [f"colors-{i}" for i in range(20)]
    write_scored_run(tmp_path, "good", 0, set(ids[:16]), ids)
    write_scored_run(tmp_path, "plain", 0, set(ids[:12]), ids)
    assert [c.against for c in build_board([tmp_path], baseline="plain")[0].comparisons] == ["plain"]
    other = tmp_path / "colors" / "plain" / "cfg-other"
    shutil.copytree(tmp_path / "colors" / "plain" / "cfg-plain", other)
    results = other / "seed-0" / "results.json"
    record = json.loads(results.read_text())
    record["config_id"], record["matcher"]["fingerprint"]["model"] = "cfg-other", "other-weights"
    results.write_text(json.dumps(record))
    (table,) = build_board([tmp_path], baseline="plain")
    assert table.comparisons == []
    assert table.uncompared == ["good (0 shots): 2 rows could be its baseline (plain, plain (other-weights)); board the runs of one of them to compare against it"]


def test_rows_whose_task_is_at_another_version_here_are_not_compared(tmp_path, monkeypatch):
    """Today's code would judge the examples of runs it did not store: the table takes their
    numbers as recorded (†), and the bootstrap would pair outcomes of another definition."""
    from vlbench.leaderboard.tables import build_board
    from vlbench.tasks.colors import ColorsTask

    ids = [f"colors-{i}" for i in range(20)]
    write_scored_run(tmp_path, "good", 0, set(ids[:16]), ids)
    write_scored_run(tmp_path, "plain", 0, set(ids[:12]), ids)
    assert len(build_board([tmp_path], baseline="plain")[0].comparisons) == 1
    monkeypatch.setattr(ColorsTask, "version", "2")
    (table,) = build_board([tmp_path], baseline="plain")
    assert table.comparisons == [] and [row.unchecked_seeds for row in table.rows] == [[0], [0]]
    assert table.uncompared == ["good (0 shots): judging its examples against plain's needs the code of task 'colors' at version 1, which stored it; this vlbench has version 2, whose outcomes may differ (re-run the run with --restart, or use the vlbench that stored it)"]
    from vlbench.rescore import rescore

    with pytest.raises(VlbenchError, match=r"seed-0: judging its examples needs the code of task 'colors' at version 1, which stored it; this vlbench has version 2"):
        rescore(tmp_path / "colors" / "good" / "cfg-good" / "seed-0")  # would write version 2's numbers under version 1


def test_outlier_seeds_are_flagged(tmp_path):
    from vlbench.leaderboard.tables import build_board

    for seed, accuracy in enumerate((0.50, 0.51, 0.50, 0.90)):
        write_record(tmp_path, "random", "bbb", "0", seed, accuracy, {"color": 0.5})
    (table,) = build_board([tmp_path])
    assert table.rows[0].outlier_seeds == [3]
    assert "| random | 0 | 4 ⚠ seed 3 † |" in render_board([tmp_path])
    # Sampling noise is no outlier, even where two seeds happen to agree closely.
    for seed, accuracy in enumerate((0.50, 0.50, 0.56)):
        write_record(tmp_path, "random", "ccc", "10%", seed, accuracy, {"color": 0.5})
    assert build_board([tmp_path])[0].rows[1].outlier_seeds == []


def test_seeds_at_the_ceiling_do_not_make_a_near_one_an_outlier(tmp_path):
    from vlbench.leaderboard.tables import build_board

    for seed, accuracy in enumerate((1.0, 1.0, 0.99)):  # one example of 100 apart
        write_record(tmp_path, "random", "bbb", "0", seed, accuracy, {"color": 0.5})
    assert build_board([tmp_path])[0].rows[0].outlier_seeds == []


def test_runs_on_other_data_get_their_own_table_and_are_never_compared(tmp_path):
    """A trained row on dataset seed 7 is not paired with the zero-shot row on dataset seed 0
    (their example ids agree, their examples do not), nor ranked beside it."""
    from vlbench.leaderboard.tables import build_board

    ids = [f"colors-{i}" for i in range(20)]
    for matcher, shots, world, correct in (("plain", "0", 0, ids[:10]), ("plain", "10%", 7, ids[:15]), ("plain", "0", 7, ids[:5])):
        run = tmp_path / f"{matcher}-{shots}-{world}"
        write_scored_run(run, matcher, 0, set(correct), ids)
        results = next(run.rglob("results.json"))
        record = json.loads(results.read_text())
        record["task"]["options"] = {"dataset_seed": world}
        record["config_id"] += f"-{shots}-{world}"
        record["protocol"]["shots"] = shots
        record["matcher"]["trained"] = shots != "0"
        results.write_text(json.dumps(record))
    tables = build_board([tmp_path], baseline="zero-shot")
    assert [table.task for table in tables] == ["colors (dataset_seed=0)", "colors (dataset_seed=7)"]
    assert [len(table.rows) for table in tables] == [1, 2] and not tables[0].comparisons
    (comparison,) = tables[1].comparisons
    assert comparison.difference == pytest.approx(50.0) and comparison.pairs == 20  # against seed 7's zero-shot row


def write_trained_or_zero_shot(root, shots, seed, correct_ids, ids):
    run = root / f"plain-{shots}"
    write_scored_run(run, "plain", seed, correct_ids, ids)
    results = next(run.rglob(f"seed-{seed}/results.json"))
    record = json.loads(results.read_text())
    record["config_id"] += f"-{shots}"
    record["protocol"]["shots"] = shots
    record["matcher"]["trained"] = shots != "0"
    results.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("zero_shot_seeds", "difference", "by_seed", "text"),
    [((0, 1), 50.0, [25.0, 75.0], "0: +25.00, 1: +75.00"), ((0,), 100 / 6, [25.0, 25.0], "0: +25.00, 1: +25.00 (mean)"), ((1,), 100 / 6, [-25.0, 75.0], "0: -25.00 (mean), 1: +75.00")],
)
def test_a_trained_seed_pairs_with_the_zero_shot_run_of_its_seed_and_each_seed_s_difference_is_shown(tmp_path, zero_shot_seeds, difference, by_seed, text):
    """Seed s's trained model is compared with seed s's zero-shot one (the same initialisation and
    noise), or, where the zero-shot row lacks seed s, with its mean; each seed evaluated the
    examples its training left out. Resampling examples cannot show how far apart the seeds'
    gains are: the board prints them."""
    from vlbench.leaderboard.tables import build_board, render_csv

    ids = list("abcdef")
    for seed in zero_shot_seeds:
        write_trained_or_zero_shot(tmp_path, "0", seed, ({"a", "b", "c"}, {"d", "e", "f"})[seed], ids)
    write_trained_or_zero_shot(tmp_path, "10%", 0, {"c", "d"}, ["c", "d", "e", "f"])  # a and b trained seed 0
    write_trained_or_zero_shot(tmp_path, "10%", 1, {"a", "b", "c", "d"}, ["a", "b", "c", "d"])
    (comparison,) = build_board([tmp_path], baseline="zero-shot")[0].comparisons
    assert comparison.pairs == 6 and comparison.difference == pytest.approx(difference)
    assert list(comparison.by_seed) == [0, 1] and list(comparison.by_seed.values()) == pytest.approx(by_seed)
    half_width = stats.t.ppf(0.975, 1) * statistics.stdev(by_seed) / math.sqrt(2)  # the seeds' differences: what another seed may do
    assert (comparison.seed_mean, comparison.seed_half_width) == (pytest.approx(sum(by_seed) / 2), pytest.approx(half_width))
    across = f"{sum(by_seed) / 2:+.2f} ± {half_width:.2f}"
    assert f"| {difference:+.2f} | " in render_board([tmp_path], baseline="zero-shot") and f"| {text} | {across} | plain (0 shots) |" in render_board([tmp_path], baseline="zero-shot")
    (line,) = [line for line in csv.DictReader(render_csv(build_board([tmp_path], baseline="zero-shot")).splitlines()) if line["column"] == "accuracy difference"]
    assert line["by_seed"] == " ".join(f"{seed}:{value:.4f}" + ("(mean)" if seed not in zero_shot_seeds else "") for seed, value in enumerate(by_seed))
    assert (float(line["seed_mean"]), float(line["seed_ci95"])) == (pytest.approx(sum(by_seed) / 2, abs=1e-4), pytest.approx(half_width, abs=1e-4))


def test_where_examples_vary_by_seed_a_trained_seed_without_its_zero_shot_run_is_not_paired_with_the_mean(tmp_path, monkeypatch):
    """RefCOCOg and official VQAv2 draw candidates per seed: an id under another seed is another example."""
    from vlbench import registry
    from vlbench.leaderboard.tables import build_board

    monkeypatch.setattr(registry.tasks.get("colors"), "examples_vary_by_seed", True)
    ids = list("abcdef")
    write_trained_or_zero_shot(tmp_path, "0", 0, {"a", "b", "c"}, ids)
    write_trained_or_zero_shot(tmp_path, "10%", 0, {"c", "d"}, ["c", "d", "e", "f"])
    write_trained_or_zero_shot(tmp_path, "10%", 1, {"a", "b", "c", "d"}, ["a", "b", "c", "d"])
    (comparison,) = build_board([tmp_path], baseline="zero-shot")[0].comparisons
    assert comparison.pairs == 4 and comparison.difference == pytest.approx(25.0)
    assert comparison.by_seed == {0: pytest.approx(25.0), 1: None} and comparison.against_mean == []
    assert "| 0: +25.00, 1: – | – | plain (0 shots) |" in render_board([tmp_path], baseline="zero-shot")  # one paired seed: no interval across seeds


def test_a_seed_its_same_shots_baseline_did_not_run_is_left_out_and_shown_as_such(tmp_path):
    from vlbench.leaderboard.tables import build_board

    ids = [f"colors-{i}" for i in range(10)]
    for seed in (0, 1, 2):
        write_scored_run(tmp_path, "good", seed, set(ids[:8]), ids)
    write_scored_run(tmp_path, "plain", 1, set(ids[:4]), ids)
    (comparison,) = build_board([tmp_path], baseline="plain")[0].comparisons
    assert comparison.by_seed == {0: None, 1: pytest.approx(40.0), 2: None} and comparison.difference == pytest.approx(40.0)
    assert "| 0: –, 1: +40.00, 2: – |" in render_board([tmp_path], baseline="plain")


def test_a_row_that_shares_no_seed_with_its_baseline_is_not_compared_and_the_board_says_why(tmp_path):
    from vlbench.leaderboard.tables import build_board

    ids = [f"colors-{i}" for i in range(10)]
    write_scored_run(tmp_path, "good", 5, set(ids[:8]), ids)
    for seed in (0, 1):
        write_scored_run(tmp_path, "plain", seed, set(ids[:4]), ids)
    (table,) = build_board([tmp_path], baseline="plain")
    assert table.comparisons == [] and table.uncompared == ["good (0 shots): no seed in common with plain (0 shots)"]
    others = [f"other-{i}" for i in range(10)]
    write_scored_run(tmp_path, "good", 1, set(others[:8]), others)  # a seed in common, no example
    (table,) = build_board([tmp_path], baseline="plain")
    assert table.comparisons == [] and len(table.uncompared) == 1 and "examples in common with plain (0 shots), under half" in table.uncompared[0]


def test_a_difference_that_rounds_to_zero_is_printed_without_a_minus_sign():
    from vlbench.leaderboard.tables import points

    assert [points(value) for value in (-3.1e-16, -0.004, 0.0, -0.5, 12.345678)] == ["+0.00", "+0.00", "+0.00", "-0.50", "+12.35"]


def test_a_p_value_no_resample_reached_is_printed_as_the_bound_it_is(tmp_path):
    from vlbench.leaderboard.tables import build_board, p_text

    ids = [f"colors-{i}" for i in range(100)]
    write_scored_run(tmp_path, "good", 0, set(ids), ids)
    write_scored_run(tmp_path, "plain", 0, set(ids[:50]), ids)
    (comparison,) = build_board([tmp_path], baseline="plain", resamples=999)[0].comparisons
    assert comparison.p_value == 1 / 1000 and p_text(comparison.p_value, 999) == "≤ 0.001"
    assert p_text(0.0020, 999) == "0.0020" and p_text(1 / 20001, 20_000) == "≤ 5e-05" and p_text(3 / 20001, 20_000) == "0.00015"
    markdown = render_board([tmp_path], baseline="plain")
    assert "| +50.00 | [+40.00, +60.00] | ≤ 0.0001 | 100 | 0: +50.00 |" in markdown and "10,000 resamples" in markdown and "at best 1/10,001" in markdown


def test_rows_that_print_the_same_mean_are_both_bold_and_rows_on_other_seeds_are_ranked_apart(tmp_path):
    """Three seeds at 70% average to 69.99999999999999 in floating point: still 70.00, still best.
    Rows of one seed are ranked among themselves, not beside rows of three, however high: at
    few shots a seed is one split."""
    for seed in range(3):
        write_record(tmp_path, "three", "aaa", "5%", seed, 0.7, {"color": 0.7})
        write_record(tmp_path, "also-three", "ccc", "5%", seed, 0.7 if seed else 0.6999999999999999, {"color": 0.7})
    write_record(tmp_path, "one", "bbb", "5%", 0, 0.9, {"color": 0.9})
    write_record(tmp_path, "another-one", "ddd", "5%", 0, 0.8, {"color": 0.8})
    write_record(tmp_path, "alone", "eee", "5%", 1, 0.95, {"color": 0.95})
    markdown = render_board([tmp_path])
    assert "| three | 5% | 3 † | 100 | **70.00 ± 0.00** |" in markdown and "| also-three | 5% | 3 † | 100 | **70.00 ± 0.00** |" in markdown
    assert "| one | 5% | 1 † | 100 | **90.00** | **90.00** |" in markdown and "| another-one | 5% | 1 † | 100 | 80.00 | 80.00 |" in markdown
    assert "| alone | 5% | 1 † | 100 | 95.00 | 95.00 |" in markdown  # seed 1 alone: nothing to rank it against


@pytest.mark.parametrize(("vary", "limit"), [(False, None), (True, None), (False, 50)])
def test_zero_shot_rows_are_ranked_together_where_every_seed_scores_the_same_examples(tmp_path, vary, limit):
    """At 0 shots on a task whose examples ignore the seed, a row of one seed and a row of three
    scored the same examples: one best among them. Where examples vary by seed, or --limit
    sampled them by seed, they did not."""
    for seed in range(3):
        write_record(tmp_path, "three", "aaa", "0", seed, 0.7, {"color": 0.7})
    write_record(tmp_path, "one", "bbb", "0", 0, 0.9, {"color": 0.9})
    for results in tmp_path.rglob("results.json"):
        record = json.loads(results.read_text())
        record["task"]["examples_vary_by_seed"] = vary
        record["protocol"]["limit"] = limit
        results.write_text(json.dumps(record))
    markdown = render_board([tmp_path])
    (one,) = [line for line in markdown.splitlines() if line.startswith("| one | 0 | 1 † | 100")]
    assert ("**90.00**" in one) is (not vary and limit is None)  # else alone among its seeds
    assert "| three | 0 | 3 † | 100" in markdown and "**70.00" not in markdown


def test_a_cell_fewer_seeds_recorded_says_how_many(tmp_path):
    for seed in range(3):
        write_record(tmp_path, "random", "aaa", "0", seed, 0.5, {"color": 0.5, **({"shape": 0.25 * seed} if seed else {})})
    assert "| random | 0 | 3 † | 100 | 50.00 ± 0.00 | 50.00 ± 0.00 | 37.50 ± 158.83 (2 seeds) |" in render_board([tmp_path])


def test_configurations_of_one_matcher_are_named_by_what_differs_and_uncompared_rows_are_listed(tmp_path):
    """Rows of one matcher at the same shots are labelled by the settings that tell them apart
    (matcher options, training settings), not by a hash; a trained row without a zero-shot row of
    its options is named under the bootstrap rather than left out."""
    from vlbench.leaderboard.tables import build_board

    ids = [f"colors-{i}" for i in range(20)]
    settings = (("0", "both", None, ids[:10]), ("10%", "both", 0.01, ids[:16]), ("10%", "both", 0.001, ids[:12]), ("10%", "text", 0.01, ids[:11]))
    for shots, heads, lr, correct in settings:
        run = tmp_path / f"{shots}-{heads}-{lr}"
        write_scored_run(run, "plain", 0, set(correct), ids)
        results = next(run.rglob("results.json"))
        record = json.loads(results.read_text())
        record["config_id"] += f"-{shots}-{heads}-{lr}"
        record["matcher"]["fingerprint"]["options"] = {"train_heads": heads}
        record["protocol"].update(shots=shots, train=None if lr is None else {"lr": lr, "epochs": 40})
        record["matcher"]["trained"] = shots != "0"
        results.write_text(json.dumps(record))
    (table,) = build_board([tmp_path], baseline="zero-shot")
    assert [row.label for row in table.rows] == ["plain", "plain [train.lr=0.001, train_heads=both]", "plain [train.lr=0.01, train_heads=both]", "plain [train.lr=0.01, train_heads=text]"]
    assert [(c.label, c.difference) for c in table.comparisons] == [("plain [train.lr=0.001, train_heads=both]", pytest.approx(10.0)), ("plain [train.lr=0.01, train_heads=both]", pytest.approx(30.0))]
    assert table.uncompared == ["plain [train.lr=0.01, train_heads=text] (10% shots): no zero-shot row of the same matcher, model, weights, options, versions, code and --limit on these data"]
    assert table.rows[0].line == "plain" and len({row.line for row in table.rows}) == 4  # a plot joins a configuration's rows, not a label's
    assert f"Not compared: {table.uncompared[0]}." in render_board([tmp_path], baseline="zero-shot")
    results = next((tmp_path / "0-both-None").rglob("results.json"))  # the zero-shot row from another release of the matcher
    record = json.loads(results.read_text())
    record["matcher"]["distribution_version"] = "0.1.0"
    results.write_text(json.dumps(record))
    assert build_board([tmp_path], baseline="zero-shot")[0].comparisons == []
    record["matcher"]["distribution_version"], record["code"] = None, {"sources_sha256": "0" * 64}  # from another edit of the code
    results.write_text(json.dumps(record))
    assert build_board([tmp_path], baseline="zero-shot")[0].comparisons == []


def test_a_configuration_without_a_limit_is_labelled_limit_all_beside_a_limited_one(tmp_path):
    from vlbench.stored_runs import RunRecord, configuration_names

    from vlbench.splits import LIMIT_SAMPLE

    documents = [results_record("colors", "plain", f"cfg-{limit}", "0", 0, {"accuracy": 0.5}, {}, 20, limit=limit) for limit in (None, 20)]
    documents[1]["protocol"]["limit_sample"] = LIMIT_SAMPLE
    records = [RunRecord.parse(document, tmp_path) for document in documents]
    assert configuration_names(records) == {"cfg-None": "limit=all", "cfg-20": "limit=20"}


def test_rows_sharing_under_half_their_examples_are_not_compared(tmp_path):
    """Two --limit samples drawn from different evaluation pools share few examples: a bootstrap
    on those few would be read as the rows' difference, so the rows are named instead."""
    from vlbench.leaderboard.tables import build_board

    ids = [f"colors-{i}" for i in range(40)]
    for shots, scored in (("0", ids[:20]), ("10%", ids[15:35])):
        run = tmp_path / shots
        write_scored_run(run, "plain", 0, set(scored[:10]), scored)
        results = next(run.rglob("results.json"))
        record = json.loads(results.read_text())
        record["config_id"] += shots
        record["protocol"].update(shots=shots, limit=20)
        results.write_text(json.dumps(record))
    (table,) = build_board([tmp_path], baseline="zero-shot")
    assert table.comparisons == []
    assert table.uncompared == ["plain (10% shots): 5 examples in common with plain (0 shots), under half of either row's (their `--limit` samples or splits differ)"]


def test_a_limit_sampled_the_old_way_is_never_paired_with_one_sampled_by_id(tmp_path):
    from vlbench.leaderboard.tables import build_board

    ids = [f"colors-{i}" for i in range(40)]
    for name, shots, sample, scored in (("new", "0", "by-id", ids[:20]), ("old", "0", None, ids[20:]), ("trained", "10%", "by-id", ids[:20])):
        run = tmp_path / name
        write_scored_run(run, "plain", 0, set(scored[:10 + (shots != "0") * 5]), scored)
        results = next(run.rglob("results.json"))
        record = json.loads(results.read_text())
        record["config_id"] += name
        record["protocol"].update(shots=shots, limit=20, limit_sample=sample)
        results.write_text(json.dumps(record))
    (table,) = build_board([tmp_path], baseline="zero-shot")
    assert [row.label for row in table.rows] == ["plain [limit=20 (positions sample)]", "plain [limit=20]", "plain"]
    (comparison,) = table.comparisons
    assert comparison.against == "plain [limit=20] (0 shots)" and comparison.difference == pytest.approx(25.0) and table.uncompared == []


def test_tables_of_one_task_are_named_apart_by_options_and_version():
    from vlbench.leaderboard.tables import data_variant_names
    from vlbench.stored_runs import RunRecord

    def record(version, source):
        data = results_record("vqav2", "clip", "cfg", "0", 0, {"top1": 0.5}, {}, 10)
        data["task"].update(version=version, options={"source": source})
        return RunRecord.parse(data, Path("run"))

    records = [record("1", "csv"), record("2", "csv"), record("2", "official")]
    assert sorted(data_variant_names(records).values()) == ["vqav2 (source=csv, version 1)", "vqav2 (source=csv, version 2)", "vqav2 (source=official, version 2)"]
    assert list(data_variant_names(records[:1]).values()) == ["vqav2"]


def test_a_row_whose_seeds_had_other_weights_is_refused(tmp_path):
    for seed in (0, 1):
        write_record(tmp_path, "clip", "aaa", "0", seed, 0.5, {"color": 0.5}, model="model")
    results = tmp_path / "colors" / "clip" / "aaa" / "seed-1" / "results.json"
    record = json.loads(results.read_text())
    record["matcher"]["fingerprint"]["weights_sha256"] = "changed"
    results.write_text(json.dumps(record))
    with pytest.raises(VlbenchError, match=r"seeds 0 and 1 were computed from different inputs \(matcher.fingerprint.weights_sha256: null → \"changed\"\)"):
        render_board([tmp_path])


def test_per_tag_columns_show_the_headline_where_it_is_per_tag(tmp_path):
    """Winoground's per-tag columns are its group score, as its headline."""
    from vlbench.leaderboard.tables import build_board

    run = tmp_path / "winoground" / "clip" / "cfg" / "seed-0"
    run.mkdir(parents=True)
    metrics = {"text": 0.5, "image": 0.4, "group": 0.3}
    breakdown = {"collapsed_tag": {"Object": {"n": 10, "text": 0.6, "image": 0.5, "group": 0.4}}}
    (run / "results.json").write_text(json.dumps(results_record("winoground", "clip", "cfg", "0", 0, metrics, breakdown, 10, headline="group")))
    (table,) = build_board([tmp_path])
    assert table.columns == ["text", "image", "group", "group collapsed_tag=Object"] and table.rows[0].cells[3].mean == pytest.approx(40.0)


def test_reported_rows_are_marked_cited_and_never_bold(runs):
    from vlbench.leaderboard.tables import build_board, render_markdown

    references = [{"task": "colors", "method": "Paper", "shots": "10%", "citation": "Someone et al. 2024", "columns": {"accuracy": 99.0}}]
    (table,) = build_board([runs], references=references)
    reported = [row for row in table.rows if row.reported]
    assert len(reported) == 1 and reported[0].seeds is None and not reported[0].cells[0].best
    markdown = render_markdown([table])
    assert "| *reported:* Paper | 10% | – | – | 99.00 | – | – |" in markdown
    assert "- *Paper*: Someone et al. 2024" in markdown
    assert "| mean-color | 10% | 3 † | 100 | **60.00 ± 24.84** |" in markdown  # results.json alone: taken as recorded  # still the best measured


def test_shipped_reference_numbers_cite_every_row():
    from vlbench.leaderboard.tables import read_references

    references = read_references()
    real = {"comvg", "refcocog", "vqav2", "winoground"}
    assert {reference["task"] for reference in references} == real | {f"mini-{task}" for task in real}
    assert all(reference["citation"] and (reference.get("columns") or reference.get("paper_metrics")) for reference in references)
    dsd = next(reference for reference in references if reference["task"] == "comvg" and reference["method"] == "DSD")
    # The paper's ComVG average is not the mean of its three swap types (the measured `average`):
    # it is shown apart, under its own name.
    assert dsd["paper_metrics"] == {"average": 78.11} and "average" not in dsd["columns"]
    assert round(sum(dsd["columns"].values()) / 3, 2) == 75.83
    # A mini task shows its real task's rows, named as such.
    mirrored = next(reference for reference in references if reference["task"] == "mini-comvg" and reference["method"] == "DSD (real comvg)")
    assert mirrored["columns"] == dsd["columns"] and mirrored["citation"] == dsd["citation"]


def test_table_2_is_reported_apart_under_the_paper_s_metric_names(tmp_path):
    """VQAv2's Table 2 numbers cannot be top-1 over the csv's 10 candidates: they never sit in a
    measured column, only in their own table with the paper's names and the note."""
    from vlbench.leaderboard.tables import build_board, read_references, render_markdown

    record = results_record("vqav2", "clip", "eee", "0", 0, {"top1": 0.4, "top5": 0.8}, {"answer_type": {"other": {"n": 50, "top1": 0.2, "top5": 0.6}}}, 100)
    path = tmp_path / "vqav2" / "clip" / "eee" / "seed-0" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    (table,) = build_board([tmp_path], references=read_references())
    assert [row.label for row in table.rows if row.reported] == ["chance"]
    assert table.reported_apart.columns == ["binary", "other", "all"]
    assert [(row.label, [cell.mean for cell in row.cells]) for row in table.reported_apart.rows][0] == ("DSD", [70.59, 6.77, 20.43])
    markdown = render_markdown([table])
    assert "Reported under the paper's own metric names, not comparable with the columns above: the paper's VQAv2 binary / other / all;" in markdown
    assert "| *reported:* DSD | 5% | 70.59 | 6.77 | 20.43 |" in markdown
    assert "20.43" not in markdown.split("Reported under")[0]  # no measured-table row holds it


def test_csv_and_json_carry_the_markdown_numbers(runs):
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(render_board([runs], "csv"))))
    mean_color = next(row for row in rows if row["matcher"] == "mean-color" and row["column"] == "accuracy")
    assert (float(mean_color["mean"]), float(mean_color["ci95"]), mean_color["seeds"]) == (pytest.approx(60.0), pytest.approx(24.84, abs=0.005), "3")
    assert {(row["column"], row["n"]) for row in rows if row["matcher"] == "mean-color"} == {("accuracy", "100"), ("accuracy neg_value=color", "50"), ("accuracy neg_value=shape", "50")}  # a tag's examples
    tables = json.loads(render_board([runs], "json"))
    assert tables[0]["task"] == "colors" and tables[0]["columns"][0] == "accuracy"
    assert any(row["label"] == "mean-color" and row["cells"][0]["best"] for row in tables[0]["rows"])


def test_csv_carries_the_paired_bootstrap_of_each_row_against_the_baseline(tmp_path):
    import csv
    import io

    from vlbench.leaderboard.tables import build_board

    ids = [f"e{i}" for i in range(40)]
    write_scored_run(tmp_path, "random", 0, set(ids[:20]), ids)
    write_scored_run(tmp_path, "color-words", 0, set(ids[:36]), ids)
    (compared,) = build_board([tmp_path], baseline="random", resamples=2000)[0].comparisons
    (line,) = [row for row in csv.DictReader(io.StringIO(render_board([tmp_path], "csv", baseline="random"))) if row["column"] == "accuracy difference"]
    assert (line["matcher"], line["shots"], line["n"], line["mean"], line["against"]) == ("color-words", "0", "40", "40.0000", compared.against) and compared.against.startswith("random")
    assert float(line["low"]) < 40 < float(line["high"]) and float(line["p"]) < 0.001


def test_plots_are_written_and_linked_from_run_records_alone(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    markdown = render_board([runs], plots=out / "plots", out=out / "board.md")
    for name in ("colors-shots.png", "colors-tags.png"):
        assert (out / "plots" / name).stat().st_size > 1000
        assert f"](plots/{name})" in markdown
    assert markdown.count("Plots: each row's mean over its seeds, its bar the 95% CI over seeds (Student t) cut at 0 and 100%") == 1  # what the bars are, once per table
    assert "Plots:" not in render_board([runs])


def test_plotted_intervals_stop_at_0_and_100_percent():
    from vlbench.leaderboard.plots import _within_percent
    from vlbench.leaderboard.tables import Cell

    below, above = _within_percent([Cell(75.0, 141.18), Cell(4.0, 10.0), Cell(50.0, None), None])
    assert below[:3] == [75.0, 4.0, 0] and above[:3] == [25.0, 10.0, 0]
    assert math.isnan(below[3]) and math.isnan(above[3])


def test_zero_shot_browsers_keep_seeds_apart_and_winoground_compares_on_group(tmp_path):
    from vlbench.leaderboard.outcomes import compared_metric
    from vlbench.leaderboard.report import comparison_groups

    ids = [f"colors-{i}" for i in range(10)]
    for seed in (0, 1, 2):
        write_scored_run(tmp_path, "plain", seed, set(ids[:5]), ids)
    groups = comparison_groups(find_runs([tmp_path]))
    assert [(group.seed, len(group.runs)) for group in groups] == [(0, 1), (1, 1), (2, 1)]

    run = tmp_path / "wino" / "run"
    run.mkdir(parents=True)
    (run / "scores.jsonl").write_text(json.dumps({"id": "w-1", "scores": [[1.0, 0.0], [0.0, 1.0]], "positives": [[0, 0], [1, 1]], "tags": {}}) + "\n")
    (run / "split.json").write_text(json.dumps({"eval_ids": ["w-1"], "train_ids": []}))
    metrics = {"text": 1.0, "image": 1.0, "group": 1.0}
    (run / "results.json").write_text(json.dumps(results_record("winoground", "clip", "cfg", "0", 0, metrics, {}, 1, headline="group")))
    assert compared_metric(find_runs([tmp_path / "wino"])) == ("group", "group", None)


def test_comvg_rows_are_compared_on_their_average_over_swap_types(tmp_path):
    """The board's difference for a ComVG row is exactly the difference of the table's averages
    on the same examples (90 of mini ComVG: the swap types' counts differ), not of pooled accuracy."""
    from conftest import mini_results
    from vlbench.leaderboard.tables import build_board

    results = {matcher: mini_results(tmp_path, "mini-comvg", matcher, "mini" if matcher == "clip" else None, 0, limit=90) for matcher in ("clip", "random")}
    counts = [group["n"] for group in results["clip"]["breakdown"]["neg_value"].values()]
    assert len(set(counts)) > 1
    (table,) = build_board([tmp_path / "runs"], baseline="random")
    (comparison,) = table.comparisons
    averages = {matcher: result["metrics"]["average"] for matcher, result in results.items()}
    assert comparison.metric == "average"
    assert comparison.difference == pytest.approx(100 * (averages["clip"] - averages["random"]), abs=1e-9)
    assert comparison.by_seed == {0: pytest.approx(comparison.difference, abs=1e-9)}
    pooled = 100 * (results["clip"]["metrics"]["accuracy"] - results["random"]["metrics"]["accuracy"])
    assert abs(pooled - comparison.difference) > 0.01


def test_rows_split_otherwise_are_ranked_apart_and_say_their_split(tmp_path):
    """A row trained on the release's first rows evaluates other examples than a grouped row: it
    is not ranked beside it, and its label says so even where its matcher has one configuration."""
    for seed in range(3):
        write_record(tmp_path, "grouped-one", "aaa", "5%", seed, 0.7, {"color": 0.7})
        write_record(tmp_path, "grouped-two", "bbb", "5%", seed, 0.6, {"color": 0.6})
        write_record(tmp_path, "release-cut", "ccc", "5%", seed, 0.8, {"color": 0.8})
        path = tmp_path / "colors" / "release-cut" / "ccc" / f"seed-{seed}" / "results.json"
        record = json.loads(path.read_text())
        record["protocol"]["split"] = "paper-release"
        path.write_text(json.dumps(record))
    markdown = render_board([tmp_path])
    assert "| grouped-one | 5% | 3 † | 100 | **70.00 ± 0.00** |" in markdown and "| grouped-two | 5% | 3 † | 100 | 60.00 ± 0.00 |" in markdown
    assert "| release-cut [split=paper-release] | 5% | 3 † | 100 | 80.00 ± 0.00 |" in markdown
