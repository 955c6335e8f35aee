import json
from pathlib import Path

import pytest
from scipy import stats

from vlbench.errors import VlbenchError
from vlbench.leaderboard.tables import group_rows, load_records, render_markdown
from vlbench.stats import mean_and_ci

EXPECTED = Path(__file__).parent / "expected" / "leaderboard.md"


def write_record(root: Path, matcher: str, config_id: str, shots: str, seed: int, accuracy: float, by_tag: dict, model=None, task="colors"):
    record = {
        "config_id": config_id,
        "task": {"name": task, "version": "1", "options": {}},
        "matcher": {"name": matcher, "fingerprint": {"name": matcher, "model": model}, "trained": shots != "0"},
        "protocol": {"shots": shots, "seed": seed},
        "n": 100,
        "metrics": {"accuracy": accuracy},
        "breakdown": {"neg_value": {tag: {"n": 50, "accuracy": value} for tag, value in by_tag.items()}},
    }
    path = root / task / matcher / config_id / f"seed-{seed}" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path):
    for seed, accuracy in enumerate((0.50, 0.60, 0.70)):
        write_record(tmp_path, "mean-color", "aaa", "10%", seed, accuracy, {"color": accuracy + 0.2, "shape": accuracy - 0.2})
    for seed, accuracy in enumerate((0.52, 0.48)):
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
    assert mean_and_ci([0.3]) == (0.3, None)


def test_rows_group_seeds_of_one_configuration(runs):
    rows = group_rows(load_records([runs]))
    assert [(row.matcher, row.shots, row.seeds) for row in rows] == [("color-words", "0", [0]), ("random", "0", [0]), ("mean-color", "10%", [0, 1, 2]), ("random", "10%", [0, 1])]


def test_markdown_matches_the_saved_board(runs):
    markdown = render_markdown([runs])
    # 0.6 ± t(0.975, 2) · 0.1 / √3 = 24.84 points
    assert "| mean-color | 10% | 3 | 100 | **60.00 ± 24.84** |" in markdown
    assert markdown == EXPECTED.read_text()


def test_a_run_copied_into_two_runs_directories_is_refused(runs, tmp_path_factory):
    import shutil

    copy = tmp_path_factory.mktemp("copy")
    shutil.copytree(runs / "colors" / "random" / "bbb", copy / "bbb")
    with pytest.raises(VlbenchError, match=r"two records of the same run \(random, config bbb, seed \d\)"):
        group_rows(load_records([runs, copy]))
